//! Applying redactions (spec: Client-Server API, Redactions; room versions ≥ 3 leave the check
//! to the server that applies them): a redaction blanks its target only when its sender has the
//! room's `redact` power level at the redaction, or is on the same server as the target's
//! sender. A redaction whose target is not known yet waits in `pending_redactions` and is judged
//! by the same rule when the target arrives. Local, received and backfilled events all go
//! through [`Services::apply_redactions`] inside the transaction that stores them.

use crate::services::rooms::RoomsFace;
use std::collections::HashMap;

use crate::{
    store::{redactions::PendingRedaction, Db, Tx},
    Result,
};

/// A redaction being stored.
pub struct RedactionIn<'a> {
    pub event_id: &'a str,
    pub sender: &'a str,
    pub target: &'a str,
    /// Whether the sender had the `redact` power in the state before the redaction.
    pub may_redact_any: bool,
}

/// The server part of a user id.
fn server_of(user: &str) -> &str {
    user.split_once(':').map(|(_, s)| s).unwrap_or("")
}

/// The rule: the `redact` power, or a redaction from the original sender's own server.
fn applies(may_redact_any: bool, redaction_sender: &str, original_sender: &str) -> bool {
    may_redact_any || server_of(redaction_sender) == server_of(original_sender)
}

impl RoomsFace<'_> {
    /// Applies the redactions of a batch being stored in `tx` and the pending redactions of the
    /// batch's other events. `stored` are the batch's events as (event id, sender); they are
    /// already inserted in `tx`.
    pub(super) async fn apply_redactions(
        self,
        tx: &mut Tx,
        room_id: &str,
        redactions: &[RedactionIn<'_>],
        stored: &[(&str, &str)],
    ) -> Result<()> {
        let mut apply: Vec<(&str, &str)> = vec![];
        if !redactions.is_empty() {
            let mut senders: HashMap<String, String> = stored
                .iter()
                .map(|(id, s)| ((*id).to_owned(), (*s).to_owned()))
                .collect();
            let unknown: Vec<&str> = redactions
                .iter()
                .map(|r| r.target)
                .filter(|t| !senders.contains_key(*t))
                .collect();
            let (here, elsewhere) = Db::event_senders(tx, room_id, &unknown).await?;
            senders.extend(here);
            let mut pending: Vec<PendingRedaction> = vec![];
            for r in redactions {
                match senders.get(r.target) {
                    Some(original) => {
                        if applies(r.may_redact_any, r.sender, original) {
                            apply.push((r.target, r.event_id));
                        } else {
                            tracing::info!(
                                redaction = r.event_id,
                                target = r.target,
                                "redaction not applied: the sender may not redact that event"
                            );
                        }
                    }
                    // An event of another room is never redacted from this one.
                    None if elsewhere.contains(r.target) => {}
                    None => pending.push(PendingRedaction {
                        target: r.target.to_owned(),
                        redaction_id: r.event_id.to_owned(),
                        sender: r.sender.to_owned(),
                        may_redact_any: r.may_redact_any,
                    }),
                }
            }
            Db::insert_pending_redactions(tx, room_id, &pending).await?;
        }
        // Events of the batch that redactions were waiting for. Only events from other servers
        // can be awaited: a local event's id is its hash, made just now (this spares local
        // sends a statement).
        let ids: Vec<&str> = stored
            .iter()
            .filter(|(_, sender)| !ruma::UserId::parse(*sender).is_ok_and(|u| self.is_local(&u)))
            .map(|(id, _)| *id)
            .collect();
        let waiting = if ids.is_empty() {
            vec![]
        } else {
            Db::take_pending_redactions(tx, room_id, &ids).await?
        };
        let senders: HashMap<&str, &str> = stored.iter().copied().collect();
        for w in &waiting {
            if let Some(original) = senders.get(w.target.as_str()) {
                if applies(w.may_redact_any, &w.sender, original) {
                    apply.push((w.target.as_str(), w.redaction_id.as_str()));
                }
            }
        }
        for (target, redaction) in apply {
            Db::mark_redacted(tx, room_id, target, redaction).await?;
            Db::delete_relation(tx, room_id, target).await?;
            Db::delete_push_actions(tx, room_id, target).await?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::applies;

    #[test]
    fn rule() {
        assert!(applies(true, "@mod:b.org", "@alice:a.org"));
        assert!(applies(false, "@admin:a.org", "@alice:a.org"));
        assert!(!applies(false, "@eve:b.org", "@alice:a.org"));
        assert!(!applies(false, "@eve:a.org.b.org", "@alice:a.org"));
    }
}
