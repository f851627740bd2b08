//! What the admin API reads about rooms: the room list with the fields Synapse shows (name,
//! alias, member counts, state settings), one room's details, and room blocks.
//!
//! The settings are read from the current state events' JSON in the query itself, in each
//! dialect's JSON syntax ([`Db::state_field`]): the list sorts and filters on them, and a
//! listing is rare (an operator's screen), so no table is kept in step on the write path.

use sqlx::Row;

use super::{directory::like_escape, Db, Dialect};

/// A room as the admin API lists it.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct AdminRoomRow {
    pub room_id: String,
    pub room_version: String,
    pub creator: String,
    pub is_public: i64,
    pub name: Option<String>,
    pub canonical_alias: Option<String>,
    pub topic: Option<String>,
    pub avatar: Option<String>,
    pub join_rules: Option<String>,
    pub guest_access: Option<String>,
    pub history_visibility: Option<String>,
    pub encryption: Option<String>,
    pub room_type: Option<String>,
    /// `m.federate` of the create event as text (`false` when the room is local only).
    pub federate: Option<String>,
    pub joined_members: i64,
    pub joined_local_members: i64,
    pub state_events: i64,
}

/// Which rooms to list and in which order (`GET /_synapse/admin/v1/rooms`).
#[derive(Debug, Clone, Default)]
pub struct RoomListQuery {
    /// Substring of the name or the canonical alias, or the exact room id.
    pub search_term: Option<String>,
    pub public_rooms: Option<bool>,
    /// Some(true): only rooms nobody is joined to; Some(false): only the others.
    pub empty_rooms: Option<bool>,
    /// The ORDER BY expression (a fixed column of the listing, never the caller's text).
    pub order_by: &'static str,
    pub descending: bool,
    pub from: i64,
    pub limit: i64,
}

/// The state fields of the listing: (column alias, event type, content key).
const FIELDS: &[(&str, &str, &str)] = &[
    ("name", "m.room.name", "name"),
    ("canonical_alias", "m.room.canonical_alias", "alias"),
    ("topic", "m.room.topic", "topic"),
    ("avatar", "m.room.avatar", "url"),
    ("join_rules", "m.room.join_rules", "join_rule"),
    ("guest_access", "m.room.guest_access", "guest_access"),
    (
        "history_visibility",
        "m.room.history_visibility",
        "history_visibility",
    ),
    ("encryption", "m.room.encryption", "algorithm"),
    ("room_type", "m.room.create", "type"),
    ("federate", "m.room.create", "m.federate"),
];

impl Db {
    /// `content.<key>` of an event's JSON column, as text, in this database's syntax. `key` is
    /// one of this module's constants (never a caller's text).
    pub(super) fn state_field(&self, json: &str, key: &str) -> String {
        match self.dialect {
            Dialect::Sqlite => format!("CAST(json_extract({json}, '$.content.\"{key}\"') AS TEXT)"),
            Dialect::Postgres => format!("(CAST({json} AS jsonb) -> 'content' ->> '{key}')"),
        }
    }

    /// Every room with its listing fields, as a subquery (bind `$1`: the local users'
    /// `LIKE` pattern).
    fn room_listing(&self) -> String {
        let mut cols = vec![
            "r.room_id".to_owned(),
            "r.room_version".into(),
            "r.creator".into(),
            "r.is_public".into(),
        ];
        let mut joins = String::new();
        for (i, (alias, kind, key)) in FIELDS.iter().enumerate() {
            cols.push(format!(
                "{} AS {alias}",
                self.state_field(&format!("e{i}.json"), key)
            ));
            joins.push_str(&format!(
                " LEFT JOIN current_state c{i} ON c{i}.room_id = r.room_id AND c{i}.type = '{kind}' \
                 AND c{i}.state_key = '' LEFT JOIN events e{i} ON e{i}.event_id = c{i}.event_id"
            ));
        }
        cols.push(
            "(SELECT COUNT(*) FROM memberships m WHERE m.room_id = r.room_id \
             AND m.membership = 'join') AS joined_members"
                .into(),
        );
        cols.push(
            "(SELECT COUNT(*) FROM memberships m WHERE m.room_id = r.room_id \
             AND m.membership = 'join' AND m.user_id LIKE $1 ESCAPE '\\') AS joined_local_members"
                .into(),
        );
        cols.push(
            "(SELECT COUNT(*) FROM current_state s WHERE s.room_id = r.room_id) AS state_events"
                .into(),
        );
        format!("SELECT {} FROM rooms r{joins}", cols.join(", "))
    }

    /// A page of rooms and the number of rooms the filter matches.
    pub async fn admin_list_rooms(
        &self,
        server_name: &str,
        q: &RoomListQuery,
    ) -> sqlx::Result<(Vec<AdminRoomRow>, i64)> {
        let mut conds = vec![];
        let mut term = None;
        if let Some(t) = &q.search_term {
            term = Some((format!("%{}%", like_escape(&t.to_lowercase())), t.clone()));
            conds.push(
                "(LOWER(t.name) LIKE $2 ESCAPE '\\' OR LOWER(t.canonical_alias) LIKE $2 ESCAPE '\\' \
                 OR t.room_id = $3)",
            );
        }
        match q.public_rooms {
            Some(true) => conds.push("t.is_public = 1"),
            Some(false) => conds.push("t.is_public = 0"),
            None => {}
        }
        match q.empty_rooms {
            Some(true) => conds.push("t.joined_members = 0"),
            Some(false) => conds.push("t.joined_members > 0"),
            None => {}
        }
        let clause = if conds.is_empty() {
            String::new()
        } else {
            format!(" WHERE {}", conds.join(" AND "))
        };
        let (limit_at, offset_at) = if term.is_some() { (4, 5) } else { (2, 3) };
        let dir = if q.descending { "DESC" } else { "ASC" };
        let inner = self.room_listing();
        let sql = format!(
            "SELECT * FROM ({inner}) t{clause} ORDER BY {} {dir}, t.room_id {dir} \
             LIMIT ${limit_at} OFFSET ${offset_at}",
            q.order_by
        );
        let local = super::rooms::users_of(server_name);
        let mut query = sqlx::query_as(&sql).bind(&local);
        if let Some((pattern, exact)) = &term {
            query = query.bind(pattern).bind(exact);
        }
        let rows = query
            .bind(q.limit)
            .bind(q.from)
            .fetch_all(&self.pool)
            .await?;
        let count_sql = format!("SELECT COUNT(*) FROM ({inner}) t{clause}");
        let mut count = sqlx::query(&count_sql).bind(&local);
        if let Some((pattern, exact)) = &term {
            count = count.bind(pattern).bind(exact);
        }
        let total: i64 = count
            .fetch_all(&self.pool)
            .await
            .and_then(super::one)?
            .try_get(0)?;
        Ok((rows, total))
    }

    /// One room's listing fields.
    pub async fn admin_room(
        &self,
        server_name: &str,
        room_id: &str,
    ) -> sqlx::Result<Option<AdminRoomRow>> {
        let sql = format!(
            "SELECT * FROM ({}) t WHERE t.room_id = $2",
            self.room_listing()
        );
        sqlx::query_as(&sql)
            .bind(super::rooms::users_of(server_name))
            .bind(room_id)
            .fetch_all(&self.pool)
            .await
            .map(super::first)
    }

    /// How many devices the room's joined local members have.
    pub async fn room_local_devices(&self, room_id: &str, server_name: &str) -> sqlx::Result<i64> {
        sqlx::query(
            "SELECT COUNT(*) FROM devices d JOIN memberships m ON m.user_id = d.user_id \
             WHERE m.room_id = $1 AND m.membership = 'join' AND m.user_id LIKE $2 ESCAPE '\\'",
        )
        .bind(room_id)
        .bind(super::rooms::users_of(server_name))
        .fetch_all(&self.pool)
        .await
        .and_then(super::one)?
        .try_get(0)
    }

    /// Who blocked the room, if it is blocked.
    pub async fn room_block(&self, room_id: &str) -> sqlx::Result<Option<String>> {
        let row = sqlx::query("SELECT user_id FROM blocked_rooms WHERE room_id = $1")
            .bind(room_id)
            .fetch_all(&self.pool)
            .await
            .map(super::first)?;
        row.map(|r| r.try_get(0)).transpose()
    }

    /// Blocks (by `Some(admin)`) or unblocks (`None`) a room.
    pub async fn set_room_block(&self, room_id: &str, by: Option<&str>) -> sqlx::Result<()> {
        let mut tx = self.begin_write().await?;
        match by {
            Some(user) => {
                sqlx::query(
                    "INSERT INTO blocked_rooms (room_id, user_id, blocked_ts) VALUES ($1, $2, $3) \
                     ON CONFLICT (room_id) DO NOTHING",
                )
                .bind(room_id)
                .bind(user)
                .bind(crate::util::now_ms())
                .execute(&mut *tx.tx)
                .await?;
            }
            None => {
                sqlx::query("DELETE FROM blocked_rooms WHERE room_id = $1")
                    .bind(room_id)
                    .execute(&mut *tx.tx)
                    .await?;
            }
        }
        tx.commit().await
    }

    /// The room's forward extremities: (event id, depth, state group, origin ts).
    pub async fn extremities_detail(
        &self,
        room_id: &str,
    ) -> sqlx::Result<Vec<(String, i64, Option<i64>, i64)>> {
        let rows = sqlx::query(
            "SELECT f.event_id, e.depth, e.state_group, e.origin_server_ts \
             FROM forward_extremities f JOIN events e ON e.event_id = f.event_id \
             WHERE f.room_id = $1 ORDER BY e.depth DESC, e.stream_ordering DESC",
        )
        .bind(room_id)
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|r| Ok((r.try_get(0)?, r.try_get(1)?, r.try_get(2)?, r.try_get(3)?)))
            .collect()
    }

    /// Removes these forward extremities of the room; returns how many went.
    pub async fn delete_extremities(&self, room_id: &str, events: &[String]) -> sqlx::Result<u64> {
        let mut tx = self.begin_write().await?;
        let mut n = 0;
        for e in events {
            n +=
                sqlx::query("DELETE FROM forward_extremities WHERE room_id = $1 AND event_id = $2")
                    .bind(room_id)
                    .bind(e)
                    .execute(&mut *tx.tx)
                    .await?
                    .rows_affected();
        }
        tx.commit().await?;
        Ok(n)
    }
}
