//! The room directory (published rooms) and the user directory.

use sqlx::Row;

use super::{events::EventRow, events::EVENT_COLS, Db, Dialect};

/// State read for every room listed in the room directory.
pub const DIRECTORY_STATE: &[&str] = &[
    "m.room.create",
    "m.room.name",
    "m.room.topic",
    "m.room.canonical_alias",
    "m.room.avatar",
    "m.room.join_rules",
    "m.room.history_visibility",
    "m.room.guest_access",
];

/// Whom a user directory search may return. The service decides which scope applies
/// (`services/user_directory.rs`); this module only turns it into SQL.
#[derive(Debug, Clone, Copy)]
pub enum UserScope<'a> {
    /// Users joined to a room `searcher` is joined to, and users joined to a public room
    /// (published in the room directory, or with join rule `public`).
    SharedOrPublicRooms { searcher: &'a str },
}

/// A user directory hit.
#[derive(Debug, Clone)]
pub struct UserHit {
    pub user_id: String,
    pub displayname: Option<String>,
    pub avatar_url: Option<String>,
}

/// `LIKE` patterns must match the user's text literally (`\` is the escape character).
pub(crate) fn like_escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        if matches!(c, '%' | '_' | '\\') {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

impl Db {
    /// Published rooms that have at least one joined member, with that count.
    pub async fn published_rooms(&self) -> sqlx::Result<Vec<(String, i64)>> {
        let rows = sqlx::query(
            "SELECT r.room_id, COUNT(*) FROM rooms r \
             JOIN memberships m ON m.room_id = r.room_id AND m.membership = 'join' \
             WHERE r.is_public = 1 GROUP BY r.room_id",
        )
        .fetch_all(&self.pool)
        .await?;
        rows.into_iter()
            .map(|r| Ok((r.try_get(0)?, r.try_get(1)?)))
            .collect()
    }

    /// The [`DIRECTORY_STATE`] events of every published room, in one query.
    pub async fn published_rooms_state(&self) -> sqlx::Result<Vec<EventRow>> {
        let sql = format!(
            "SELECT {EVENT_COLS} FROM rooms r JOIN current_state cs ON cs.room_id = r.room_id \
             JOIN events e ON e.event_id = cs.event_id \
             WHERE r.is_public = 1 AND cs.state_key = '' AND cs.type IN ({})",
            super::placeholders(1, DIRECTORY_STATE.len())
        );
        let mut q = sqlx::query_as(&sql);
        for t in DIRECTORY_STATE {
            q = q.bind(*t);
        }
        q.fetch_all(&self.pool).await
    }

    /// Users in `scope` whose localpart or user id starts with `term`, or whose display name
    /// or localpart contains it (case-insensitive; `term` is lower case), best matches first:
    /// exact, then prefix, then a display name word starting with it, then anywhere. Deactivated
    /// users never. At most `limit` rows. One query; the cost follows the number of matching
    /// users, each checked through primary-key lookups.
    pub async fn search_users(
        &self,
        scope: UserScope<'_>,
        term: &str,
        limit: i64,
    ) -> sqlx::Result<Vec<UserHit>> {
        // Is the room's current join rule `public`? (JSON read in SQL: the one dialect
        // difference; PostgreSQL compares the raw JSON value, which never fails on odd text.)
        let public_rule = match self.dialect {
            Dialect::Sqlite => "json_extract(e.json, '$.content.join_rule') = 'public'",
            Dialect::Postgres => "(e.json::json -> 'content' -> 'join_rule')::text = '\"public\"'",
        };
        let (visible, searcher) = match scope {
            UserScope::SharedOrPublicRooms { searcher } => (format!(
                "EXISTS (SELECT 1 FROM memberships m WHERE m.user_id = u.user_id AND m.membership = 'join' AND ( \
                   EXISTS (SELECT 1 FROM memberships me WHERE me.user_id = $1 AND me.room_id = m.room_id \
                           AND me.membership = 'join') \
                   OR EXISTS (SELECT 1 FROM rooms r WHERE r.room_id = m.room_id AND r.is_public = 1) \
                   OR EXISTS (SELECT 1 FROM current_state cs JOIN events e ON e.event_id = cs.event_id \
                              WHERE cs.room_id = m.room_id AND cs.type = 'm.room.join_rules' \
                              AND cs.state_key = '' AND {public_rule})))"
            ), searcher),
        };
        let sql = format!(
            "SELECT u.user_id, u.displayname, u.avatar_url, \
               CASE WHEN LOWER(u.localpart) = $2 OR LOWER(u.user_id) = $2 OR LOWER(u.displayname) = $2 THEN 0 \
                    WHEN LOWER(u.localpart) LIKE $3 ESCAPE '\\' OR LOWER(u.user_id) LIKE $3 ESCAPE '\\' \
                      OR LOWER(u.displayname) LIKE $3 ESCAPE '\\' THEN 1 \
                    WHEN LOWER(u.displayname) LIKE $4 ESCAPE '\\' THEN 2 \
                    ELSE 3 END AS score \
             FROM users u WHERE u.deactivated = 0 \
             AND (LOWER(u.user_id) LIKE $3 ESCAPE '\\' OR LOWER(u.localpart) LIKE $5 ESCAPE '\\' \
                  OR LOWER(u.displayname) LIKE $5 ESCAPE '\\') \
             AND {visible} \
             ORDER BY score, LOWER(COALESCE(u.displayname, u.localpart)), u.user_id LIMIT $6"
        );
        let escaped = like_escape(term);
        let rows = sqlx::query(&sql)
            .bind(searcher)
            .bind(term)
            .bind(format!("{escaped}%"))
            .bind(format!("% {escaped}%"))
            .bind(format!("%{escaped}%"))
            .bind(limit)
            .fetch_all(&self.pool)
            .await?;
        rows.into_iter()
            .map(|r| {
                Ok(UserHit {
                    user_id: r.try_get(0)?,
                    displayname: r.try_get(1)?,
                    avatar_url: r.try_get(2)?,
                })
            })
            .collect()
    }
}
