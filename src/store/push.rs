//! Push: per-user notification actions of events (unread counts, /notifications, pushers) and
//! the pushers themselves.

use sqlx::Row;

use super::{placeholders, push_rows_from, Db, Tx};

/// The actions one user's push rules gave one new event.
pub struct NewPushAction<'a> {
    pub user_id: &'a str,
    pub event_id: &'a str,
    pub stream_ordering: i64,
    pub thread_id: &'a str,
    pub notify: bool,
    pub highlight: bool,
    pub actions: &'a str,
}

/// Unread counts of one (room, thread) for one user.
#[derive(Debug, Clone)]
pub struct UnreadCount {
    pub room_id: String,
    pub thread_id: String,
    pub notifications: i64,
    pub highlights: i64,
}

/// A stored notification (GET /notifications, pushers).
#[derive(Debug, Clone)]
pub struct PushActionRow {
    pub event_id: String,
    pub room_id: String,
    pub stream_ordering: i64,
    pub actions: String,
    pub is_read: bool,
    pub ts: i64,
    pub highlight: bool,
}

#[derive(Debug, Clone, sqlx::FromRow)]
pub struct PusherRow {
    pub user_id: String,
    pub app_id: String,
    pub pushkey: String,
    pub kind: String,
    pub app_display_name: String,
    pub device_display_name: String,
    pub profile_tag: Option<String>,
    pub lang: String,
    pub data: String,
    pub device_id: Option<String>,
    pub created_ts: i64,
    pub last_stream: i64,
}

const PUSHER_COLS: &str = "user_id, app_id, pushkey, kind, app_display_name, device_display_name, \
     profile_tag, lang, data, device_id, created_ts, last_stream";

impl Db {
    pub async fn insert_push_actions(
        tx: &mut Tx,
        room_id: &str,
        ts: i64,
        rows: &[NewPushAction<'_>],
    ) -> sqlx::Result<()> {
        // Small chunks: sqlx looks each SQLite parameter up by name, a cost quadratic in the
        // number of parameters of a statement.
        for chunk in rows.chunks(25) {
            let mut sql = String::from(
                "INSERT INTO event_push_actions (user_id, event_id, room_id, stream_ordering, thread_id, \
                 notify, highlight, actions, ts) VALUES ",
            );
            push_rows_from(&mut sql, 1, chunk.len(), 9);
            let mut q = sqlx::query(&sql);
            for r in chunk {
                q = q
                    .bind(r.user_id)
                    .bind(r.event_id)
                    .bind(room_id)
                    .bind(r.stream_ordering)
                    .bind(r.thread_id)
                    .bind(i64::from(r.notify))
                    .bind(i64::from(r.highlight))
                    .bind(r.actions)
                    .bind(ts);
            }
            q.execute(&mut **tx).await?;
        }
        Ok(())
    }

    /// Marks the user's notifications of a room up to `upto` read: all of them, or one thread's
    /// (`Some("main")` for the main timeline).
    pub async fn mark_push_read(
        tx: &mut Tx,
        user: &str,
        room: &str,
        upto: i64,
        thread: Option<&str>,
    ) -> sqlx::Result<()> {
        let mut sql = String::from(
            "UPDATE event_push_actions SET is_read = 1 WHERE user_id = $1 AND is_read = 0 \
             AND room_id = $2 AND stream_ordering <= $3",
        );
        if thread.is_some() {
            sql.push_str(" AND thread_id = $4");
        }
        let mut q = sqlx::query(&sql).bind(user).bind(room).bind(upto);
        if let Some(t) = thread {
            q = q.bind(t);
        }
        q.execute(&mut **tx).await?;
        Ok(())
    }

    /// Marks read, for each (user, position), that user's notifications of the room up to the
    /// position: one statement for a whole batch of senders.
    pub async fn mark_push_read_many(
        tx: &mut Tx,
        room: &str,
        upto: &[(&str, i64)],
    ) -> sqlx::Result<()> {
        if upto.is_empty() {
            return Ok(());
        }
        let rows: Vec<String> = (0..upto.len())
            .map(|i| format!("(${}, CAST(${} AS BIGINT))", 2 + 2 * i, 3 + 2 * i))
            .collect();
        let sql = format!(
            "UPDATE event_push_actions SET is_read = 1 FROM (VALUES {}) AS v \
             WHERE event_push_actions.user_id = v.column1 AND event_push_actions.room_id = $1 \
             AND event_push_actions.is_read = 0 AND event_push_actions.stream_ordering <= v.column2",
            rows.join(", ")
        );
        let mut q = sqlx::query(&sql).bind(room);
        for (user, pos) in upto {
            q = q.bind(*user).bind(*pos);
        }
        q.execute(&mut **tx).await?;
        Ok(())
    }

    /// A redacted event notifies no one any more.
    pub async fn delete_push_actions(
        tx: &mut Tx,
        room_id: &str,
        event_id: &str,
    ) -> sqlx::Result<()> {
        sqlx::query("DELETE FROM event_push_actions WHERE event_id = $1 AND room_id = $2")
            .bind(event_id)
            .bind(room_id)
            .execute(&mut **tx)
            .await?;
        Ok(())
    }

    /// Unread notification and highlight counts of a user per (room, thread) for events up to
    /// `upto`, in one query. The unread queries are written so that SQLite's planner (no
    /// statistics) picks the small partial index of unread rows rather than the user's whole
    /// history: `+stream_ordering` and `room_id > ''` keep the stream index out of the race.
    pub async fn unread_counts(&self, user: &str, upto: i64) -> sqlx::Result<Vec<UnreadCount>> {
        sqlx::query(
            "SELECT room_id, thread_id, CAST(SUM(notify) AS BIGINT), CAST(SUM(highlight) AS BIGINT) FROM event_push_actions \
             WHERE user_id = $1 AND is_read = 0 AND +stream_ordering <= $2 GROUP BY room_id, thread_id",
        )
        .bind(user)
        .bind(upto)
        .fetch_all(&self.pool)
        .await?
        .into_iter()
        .map(|r| {
            Ok(UnreadCount {
                room_id: r.try_get(0)?,
                thread_id: r.try_get(1)?,
                notifications: r.try_get(2)?,
                highlights: r.try_get(3)?,
            })
        })
        .collect()
    }

    /// The number of unread notifying events of a user across rooms (the badge on a phone).
    pub async fn total_unread(&self, user: &str) -> sqlx::Result<i64> {
        let row = sqlx::query(
            "SELECT COUNT(*) FROM event_push_actions WHERE user_id = $1 AND is_read = 0 AND notify = 1 \
             AND room_id > ''",
        )
        .bind(user)
        .fetch_all(&self.pool)
        .await
        .and_then(super::one)?;
        row.try_get(0)
    }

    /// Notifying events of a user, newest first, strictly before `before`.
    pub async fn notifications(
        &self,
        user: &str,
        before: i64,
        only_highlight: bool,
        limit: i64,
    ) -> sqlx::Result<Vec<PushActionRow>> {
        let extra = if only_highlight {
            " AND highlight = 1"
        } else {
            ""
        };
        let sql = format!(
            "SELECT event_id, room_id, stream_ordering, actions, is_read, ts, highlight \
             FROM event_push_actions WHERE user_id = $1 AND stream_ordering < $2 AND notify = 1{extra} \
             ORDER BY stream_ordering DESC LIMIT $3"
        );
        rows_to_actions(
            sqlx::query(&sql)
                .bind(user)
                .bind(before)
                .bind(limit)
                .fetch_all(&self.pool)
                .await?,
        )
    }

    /// Notifying events of a user after `after` (a pusher's progress), oldest first.
    pub async fn notifications_after(
        &self,
        user: &str,
        after: i64,
        limit: i64,
    ) -> sqlx::Result<Vec<PushActionRow>> {
        rows_to_actions(
            sqlx::query(
                "SELECT event_id, room_id, stream_ordering, actions, is_read, ts, highlight \
                 FROM event_push_actions WHERE user_id = $1 AND stream_ordering > $2 AND notify = 1 \
                 ORDER BY stream_ordering LIMIT $3",
            )
            .bind(user)
            .bind(after)
            .bind(limit)
            .fetch_all(&self.pool)
            .await?,
        )
    }

    pub async fn pushers_of(&self, user: &str) -> sqlx::Result<Vec<PusherRow>> {
        sqlx::query_as(&format!(
            "SELECT {PUSHER_COLS} FROM pushers WHERE user_id = $1 ORDER BY created_ts"
        ))
        .bind(user)
        .fetch_all(&self.pool)
        .await
    }

    /// Pushers of several users (delivery), in one query.
    pub async fn pushers_of_users(&self, users: &[String]) -> sqlx::Result<Vec<PusherRow>> {
        if users.is_empty() {
            return Ok(vec![]);
        }
        let sql = format!(
            "SELECT {PUSHER_COLS} FROM pushers WHERE user_id IN ({}) AND kind = 'http'",
            placeholders(1, users.len())
        );
        let mut q = sqlx::query_as(&sql);
        for u in users {
            q = q.bind(u);
        }
        q.fetch_all(&self.pool).await
    }

    /// Users with at least one HTTP pusher (catch-up at start).
    pub async fn users_with_pushers(&self) -> sqlx::Result<Vec<String>> {
        sqlx::query("SELECT DISTINCT user_id FROM pushers WHERE kind = 'http'")
            .fetch_all(&self.pool)
            .await?
            .into_iter()
            .map(|r| r.try_get(0))
            .collect()
    }

    /// Adds or replaces a pusher. Without `append`, the same app_id/pushkey of other users is
    /// removed (a phone belongs to one account at a time).
    pub async fn upsert_pusher(&self, p: &PusherRow, append: bool) -> sqlx::Result<()> {
        let mut tx = self.begin_write().await?;
        if !append {
            sqlx::query("DELETE FROM pushers WHERE app_id = $1 AND pushkey = $2 AND user_id <> $3")
                .bind(&p.app_id)
                .bind(&p.pushkey)
                .bind(&p.user_id)
                .execute(&mut *tx.tx)
                .await?;
        }
        sqlx::query(
            "INSERT INTO pushers (user_id, app_id, pushkey, kind, app_display_name, device_display_name, \
             profile_tag, lang, data, device_id, created_ts, last_stream) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12) \
             ON CONFLICT (app_id, pushkey, user_id) DO UPDATE SET kind = $4, app_display_name = $5, \
             device_display_name = $6, profile_tag = $7, lang = $8, data = $9, device_id = $10",
        )
        .bind(&p.user_id)
        .bind(&p.app_id)
        .bind(&p.pushkey)
        .bind(&p.kind)
        .bind(&p.app_display_name)
        .bind(&p.device_display_name)
        .bind(&p.profile_tag)
        .bind(&p.lang)
        .bind(&p.data)
        .bind(&p.device_id)
        .bind(p.created_ts)
        .bind(p.last_stream)
        .execute(&mut *tx.tx)
        .await?;
        tx.commit().await
    }

    pub async fn delete_pusher(&self, user: &str, app_id: &str, pushkey: &str) -> sqlx::Result<()> {
        let mut tx = self.begin_write().await?;
        sqlx::query("DELETE FROM pushers WHERE user_id = $1 AND app_id = $2 AND pushkey = $3")
            .bind(user)
            .bind(app_id)
            .bind(pushkey)
            .execute(&mut *tx.tx)
            .await?;
        tx.commit().await
    }

    /// Pushers tied to devices that are being deleted go with them.
    pub async fn delete_device_pushers(
        tx: &mut Tx,
        user: &str,
        devices: &[String],
    ) -> sqlx::Result<()> {
        if devices.is_empty() {
            return Ok(());
        }
        let sql = format!(
            "DELETE FROM pushers WHERE user_id = $1 AND device_id IN ({})",
            placeholders(2, devices.len())
        );
        let mut q = sqlx::query(&sql).bind(user);
        for d in devices {
            q = q.bind(d);
        }
        q.execute(&mut **tx).await?;
        Ok(())
    }

    pub async fn set_pusher_progress(
        &self,
        user: &str,
        app_id: &str,
        pushkey: &str,
        last_stream: i64,
    ) -> sqlx::Result<()> {
        let mut tx = self.begin_write().await?;
        sqlx::query(
            "UPDATE pushers SET last_stream = $4 WHERE user_id = $1 AND app_id = $2 AND pushkey = $3 \
             AND last_stream < $4",
        )
        .bind(user)
        .bind(app_id)
        .bind(pushkey)
        .bind(last_stream)
        .execute(&mut *tx.tx)
        .await?;
        tx.commit().await
    }
}

fn rows_to_actions(rows: Vec<sqlx::any::AnyRow>) -> sqlx::Result<Vec<PushActionRow>> {
    rows.into_iter()
        .map(|r| {
            Ok(PushActionRow {
                event_id: r.try_get(0)?,
                room_id: r.try_get(1)?,
                stream_ordering: r.try_get(2)?,
                actions: r.try_get(3)?,
                is_read: r.try_get::<i64, _>(4)? != 0,
                ts: r.try_get(5)?,
                highlight: r.try_get::<i64, _>(6)? != 0,
            })
        })
        .collect()
}
