//! Redactions waiting for their target (`pending_redactions`, migration 0020).

use std::collections::{HashMap, HashSet};

use super::{push_rows_from, select_in_tx, Bind, Db, Tx};

/// A redaction whose target was not known when it was stored.
pub struct PendingRedaction {
    pub target: String,
    pub redaction_id: String,
    pub sender: String,
    /// The sender had the `redact` power at the redaction.
    pub may_redact_any: bool,
}

impl Db {
    /// Of these events: the senders of those stored in `room_id`, and the ids of those stored
    /// in another room.
    pub async fn event_senders(
        tx: &mut Tx,
        room_id: &str,
        ids: &[&str],
    ) -> sqlx::Result<(HashMap<String, String>, HashSet<String>)> {
        let (mut here, mut elsewhere) = (HashMap::new(), HashSet::new());
        let rows: Vec<(String, String, String)> = select_in_tx(
            tx,
            "SELECT event_id, sender, room_id FROM events WHERE event_id IN ({in})",
            &[],
            ids,
        )
        .await?;
        for (id, sender, room) in rows {
            if room == room_id {
                here.insert(id, sender);
            } else {
                elsewhere.insert(id);
            }
        }
        Ok((here, elsewhere))
    }

    pub async fn insert_pending_redactions(
        tx: &mut Tx,
        room_id: &str,
        rows: &[PendingRedaction],
    ) -> sqlx::Result<()> {
        for chunk in rows.chunks(100) {
            let mut sql = String::from(
                "INSERT INTO pending_redactions (room_id, target_id, redaction_id, sender, may_redact_any) VALUES ",
            );
            push_rows_from(&mut sql, 1, chunk.len(), 5);
            sql.push_str(" ON CONFLICT DO NOTHING");
            let mut q = sqlx::query(&sql);
            for r in chunk {
                q = q
                    .bind(room_id)
                    .bind(&r.target)
                    .bind(&r.redaction_id)
                    .bind(&r.sender)
                    .bind(i64::from(r.may_redact_any));
            }
            q.execute(&mut **tx).await?;
        }
        Ok(())
    }

    /// Removes and returns the redactions waiting for these events of `room_id`.
    pub async fn take_pending_redactions(
        tx: &mut Tx,
        room_id: &str,
        targets: &[&str],
    ) -> sqlx::Result<Vec<PendingRedaction>> {
        let rows: Vec<(String, String, String, i64)> = select_in_tx(
            tx,
            "DELETE FROM pending_redactions WHERE room_id = $1 AND target_id IN ({in}) \
             RETURNING target_id, redaction_id, sender, may_redact_any",
            &[Bind::Text(room_id)],
            targets,
        )
        .await?;
        Ok(rows
            .into_iter()
            .map(|(target, redaction_id, sender, any)| PendingRedaction {
                target,
                redaction_id,
                sender,
                may_redact_any: any != 0,
            })
            .collect())
    }
}
