//! The per-room writer. Local events are built and persisted under the room's lock; requests
//! that arrive while a batch is being written wait in the room's queue and go into the next
//! batch together (group commit: one transaction, a few multi-row statements, for many events).
//! The work runs in its own task, so a client hanging up can never leave the in-memory room state
//! ahead of the database.

use crate::services::rooms::RoomsFace;
use ruma::{OwnedEventId, OwnedUserId, RoomId};
use tokio::sync::oneshot;

use super::{EventSpec, RoomState};
use crate::{Error, Result};

/// A condition checked against the room state right before the event is built:
/// `Ok(false)` means there is nothing to send (the request is already satisfied).
pub type Check = Box<dyn FnOnce(&RoomState) -> Result<bool> + Send>;

/// Recent transaction ids kept per room before the map is cleared (older ones are found in the
/// database before a request is queued).
const RECENT_TXNS: usize = 10_000;

pub struct Job {
    pub sender: OwnedUserId,
    pub device: Option<String>,
    pub txn: Option<String>,
    pub txn_key: Option<String>,
    pub spec: EventSpec,
    pub check: Option<Check>,
    reply: oneshot::Sender<Result<Option<OwnedEventId>>>,
}

impl RoomsFace<'_> {
    /// Queues an event for a room and waits for it to be persisted. `Ok(None)` when the check
    /// found nothing to do.
    pub async fn submit(
        self,
        room_id: &RoomId,
        sender: OwnedUserId,
        device: Option<String>,
        txn: Option<(String, String)>,
        spec: EventSpec,
        check: Option<Check>,
    ) -> Result<Option<OwnedEventId>> {
        let (reply, rx) = oneshot::channel();
        let (txn, txn_key) = txn.unzip();
        let job = Job {
            sender,
            device,
            txn,
            txn_key,
            spec,
            check,
            reply,
        };
        self.room_cache
            .pending
            .lock()
            .entry(room_id.to_owned())
            .or_default()
            .push(job);
        let me = self
            .me
            .upgrade()
            .ok_or_else(|| Error::unknown("Server shutting down"))?;
        let room = room_id.to_owned();
        tokio::spawn(async move { me.rooms().drain(&room).await });
        rx.await
            .unwrap_or_else(|_| Err(Error::unknown("The event could not be written")))
    }

    /// Takes the room lock, then builds and persists every queued event of the room.
    async fn drain(self, room_id: &RoomId) {
        let locked = self.lock_room(room_id).await;
        let jobs = self
            .room_cache
            .pending
            .lock()
            .remove(room_id)
            .unwrap_or_default();
        let mut guard = match locked {
            Ok(g) => g,
            Err(e) => {
                for j in jobs {
                    let _ = j.reply.send(Err(e.clone()));
                }
                return;
            }
        };
        if jobs.is_empty() {
            return; // an earlier drain took them
        }
        let Some(room) = guard.as_mut() else {
            for j in jobs {
                let _ = j.reply.send(Err(Error::not_found("Unknown room")));
            }
            return;
        };
        let mut built = vec![];
        let mut replies = vec![];
        for job in jobs {
            let key = match (&job.device, &job.txn_key) {
                (Some(d), Some(t)) => Some((job.sender.clone(), d.clone(), t.clone())),
                _ => None,
            };
            if let Some(id) = key.as_ref().and_then(|k| room.recent_txns.get(k)) {
                let _ = job.reply.send(Ok(Some(id.clone())));
                continue;
            }
            if let Some(check) = job.check {
                match check(room) {
                    Ok(true) => {}
                    Ok(false) => {
                        let _ = job.reply.send(Ok(None));
                        continue;
                    }
                    Err(e) => {
                        let _ = job.reply.send(Err(e));
                        continue;
                    }
                }
            }
            match room.build(
                self.s,
                &job.sender,
                job.spec,
                job.device.as_deref(),
                job.txn.as_deref(),
            ) {
                Ok(mut n) => {
                    n.txn_key = job.txn_key.clone();
                    if let Some(k) = key {
                        if room.recent_txns.len() >= RECENT_TXNS {
                            room.recent_txns.clear();
                        }
                        room.recent_txns.insert(k, n.pdu.event_id.clone());
                    }
                    replies.push((job.reply, n.pdu.event_id.clone()));
                    built.push(n);
                }
                Err(e) => {
                    let _ = job.reply.send(Err(e));
                }
            }
        }
        if built.is_empty() {
            return;
        }
        match self.persist(&mut guard, built, None).await {
            Ok(_) => {
                for (r, id) in replies {
                    let _ = r.send(Ok(Some(id)));
                }
            }
            Err(e) => {
                for (r, _) in replies {
                    let _ = r.send(Err(e.clone()));
                }
            }
        }
    }
}
