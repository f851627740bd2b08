//! Simplified sliding sync (MSC4186): the connections' remembered state, and the two room
//! reads its lists need (each room's bump stamp, the rooms with events in a window).

use sqlx::Row;

use super::Db;

/// The event types that move a room up a list (as Synapse's `DEFAULT_BUMP_EVENT_TYPES`).
pub const BUMP_TYPES: &[&str] = &[
    "m.room.create",
    "m.room.message",
    "m.room.encrypted",
    "m.sticker",
    "m.call.invite",
    "m.poll.start",
    "m.beacon_info",
];

fn bump_list() -> String {
    BUMP_TYPES
        .iter()
        .map(|t| format!("'{t}'"))
        .collect::<Vec<_>>()
        .join(",")
}

/// A connection as stored: the current version of its state and the one before.
pub struct ConnRow {
    pub gen: i64,
    pub state: String,
    pub prev_gen: i64,
    pub prev_state: String,
}

/// One room with events in a window: its last event and its last bump (if any).
pub struct RoomActivity {
    pub room_id: String,
    pub last: i64,
    pub bump: Option<i64>,
}

impl Db {
    pub async fn sliding_connection(
        &self,
        user: &str,
        device: &str,
        conn: &str,
    ) -> sqlx::Result<Option<ConnRow>> {
        let row = sqlx::query(
            "SELECT gen, state, prev_gen, prev_state FROM sliding_sync_connections \
             WHERE user_id = $1 AND device_id = $2 AND conn_id = $3",
        )
        .bind(user)
        .bind(device)
        .bind(conn)
        .fetch_optional(&self.pool)
        .await?;
        row.map(|r| {
            Ok(ConnRow {
                gen: r.try_get(0)?,
                state: r.try_get(1)?,
                prev_gen: r.try_get(2)?,
                prev_state: r.try_get(3)?,
            })
        })
        .transpose()
    }

    /// A new connection (replacing any of the same name): its first state.
    pub async fn sliding_start(
        &self,
        user: &str,
        device: &str,
        conn: &str,
        gen: i64,
        state: &str,
    ) -> sqlx::Result<()> {
        sqlx::query(
            "INSERT INTO sliding_sync_connections \
             (user_id, device_id, conn_id, gen, state, prev_gen, prev_state, updated_ts) \
             VALUES ($1, $2, $3, $4, $5, -1, '', $6) \
             ON CONFLICT (user_id, device_id, conn_id) DO UPDATE SET gen = $4, state = $5, \
             prev_gen = -1, prev_state = '', updated_ts = $6",
        )
        .bind(user)
        .bind(device)
        .bind(conn)
        .bind(gen)
        .bind(state)
        .bind(crate::util::now_ms())
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// The next version of a connection's state, made from version `base`: the current one
    /// (which becomes the previous) or the previous one (a retry: the previous stays). False
    /// when the connection moved meanwhile (another request on it won).
    pub async fn sliding_advance(
        &self,
        user: &str,
        device: &str,
        conn: &str,
        (current, base): (i64, i64),
        (gen, state): (i64, &str),
    ) -> sqlx::Result<bool> {
        let sql = if base == current {
            "UPDATE sliding_sync_connections SET prev_gen = gen, prev_state = state, \
             gen = $5, state = $6, updated_ts = $7 \
             WHERE user_id = $1 AND device_id = $2 AND conn_id = $3 AND gen = $4"
        } else {
            "UPDATE sliding_sync_connections SET gen = $5, state = $6, updated_ts = $7 \
             WHERE user_id = $1 AND device_id = $2 AND conn_id = $3 AND gen = $4"
        };
        let done = sqlx::query(sql)
            .bind(user)
            .bind(device)
            .bind(conn)
            .bind(current)
            .bind(gen)
            .bind(state)
            .bind(crate::util::now_ms())
            .execute(&self.pool)
            .await?;
        Ok(done.rows_affected() == 1)
    }

    /// Each room's bump stamp: the position of its last event of a bumping type (rooms with
    /// none are left out). One indexed walk back per room.
    pub async fn bump_stamps(&self, rooms: &[String]) -> sqlx::Result<Vec<(String, i64)>> {
        let sql = format!(
            "SELECT r.room_id, (SELECT e.stream_ordering FROM events e WHERE e.room_id = r.room_id \
               AND e.type IN ({}) AND e.rejected = 0 AND e.outlier = 0 AND e.soft_failed = 0 \
               ORDER BY e.stream_ordering DESC LIMIT 1) FROM rooms r WHERE r.room_id IN ({{in}})",
            bump_list()
        );
        let rows = self.select_in_rows(&sql, &[], rooms).await?;
        let mut out = Vec::with_capacity(rows.len());
        for r in rows {
            if let Some(b) = r.try_get::<Option<i64>, _>(1)? {
                out.push((r.try_get(0)?, b));
            }
        }
        Ok(out)
    }

    /// The rooms the user has a membership in that got events in `(lower, upper]`: a walk of
    /// the events of the window (not of the user's rooms).
    pub async fn rooms_with_events(
        &self,
        user: &str,
        lower: i64,
        upper: i64,
    ) -> sqlx::Result<Vec<RoomActivity>> {
        let sql = format!(
            "SELECT e.room_id, MAX(e.stream_ordering), \
               MAX(CASE WHEN e.type IN ({}) THEN e.stream_ordering END) \
             FROM events e WHERE e.stream_ordering > $2 AND e.stream_ordering <= $3 \
               AND e.rejected = 0 AND e.outlier = 0 AND e.soft_failed = 0 \
               AND e.room_id IN (SELECT m.room_id FROM memberships m WHERE m.user_id = $1) \
             GROUP BY e.room_id",
            bump_list()
        );
        let rows = sqlx::query(&sql)
            .bind(user)
            .bind(lower)
            .bind(upper)
            .fetch_all(&self.pool)
            .await?;
        rows.into_iter()
            .map(|r| {
                Ok(RoomActivity {
                    room_id: r.try_get(0)?,
                    last: r.try_get(1)?,
                    bump: r.try_get(2)?,
                })
            })
            .collect()
    }

    /// Forgets the connections of deleted devices.
    pub(super) async fn delete_device_sliding(
        tx: &mut super::Tx,
        user: &str,
        devices: &[String],
    ) -> sqlx::Result<()> {
        for d in devices {
            sqlx::query(
                "DELETE FROM sliding_sync_connections WHERE user_id = $1 AND device_id = $2",
            )
            .bind(user)
            .bind(d)
            .execute(&mut **tx)
            .await?;
        }
        Ok(())
    }
}
