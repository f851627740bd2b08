//! Server-side search: the full-text index over message bodies, room names and topics, and the
//! reads behind `POST /search`.
//!
//! The two dialects differ here, and only here: SQLite keeps an FTS5 table whose rowid is the
//! event's stream ordering; PostgreSQL keeps a `tsvector` column ('simple' configuration) with a
//! GIN index. Both are written in the event's own transaction and lose the event in its
//! redaction's transaction. Query words arrive already split into letters and digits only (see
//! `services/search.rs`), and are quoted anyway, so no user input reaches a query operator.

use serde::Deserialize;
use sqlx::{AnyConnection, FromRow, Row};

use super::{events::EventRow, events::NewEvent, events::EVENT_COLS, placeholders, Db, Tx};

/// What is indexed: (event type, search key, content field).
pub const INDEXED: &[(&str, &str, &str)] = &[
    ("m.room.message", "content.body", "body"),
    ("m.room.name", "content.name", "name"),
    ("m.room.topic", "content.topic", "topic"),
];

/// Largest indexed text, in bytes (events are at most 64 KiB anyway).
const MAX_TEXT: usize = 65_536;

/// Where a search page starts.
#[derive(Debug, Clone, Copy)]
pub enum SearchCursor {
    /// Best first: rows at or below stream position `upper` (fixed at the first page, so new
    /// events do not shift the pages), skipping the first `offset`.
    Rank { upper: i64, offset: i64 },
    /// Newest first: rows strictly before stream position `before`.
    Recent { before: i64 },
}

/// A search over the rooms `user_id` is joined to.
pub struct SearchQuery<'a> {
    pub user_id: &'a str,
    /// Only these rooms (still only those the user is joined to).
    pub rooms: Option<&'a [String]>,
    pub not_rooms: &'a [String],
    /// Search keys (`content.body`, `content.name`, `content.topic`).
    pub keys: &'a [&'a str],
    /// Lower-case words made of letters and digits; every word must match (as a prefix).
    pub words: &'a [String],
    pub cursor: SearchCursor,
}

#[derive(Deserialize)]
struct Doc {
    content: serde_json::Map<String, serde_json::Value>,
}

fn is_sqlite(conn: &AnyConnection) -> bool {
    conn.backend_name() == "SQLite"
}

/// The searchable text of an event, if it is one of [`INDEXED`].
fn search_doc<'a>(ev: &NewEvent<'a>) -> Option<(i64, &'a str, &'static str, String)> {
    let (_, key, field) = INDEXED.iter().find(|(kind, _, _)| *kind == ev.kind)?;
    let state_ok = match ev.kind {
        "m.room.message" => ev.state_key.is_none(),
        _ => ev.state_key == Some(""),
    };
    if !state_ok {
        return None;
    }
    let doc: Doc = serde_json::from_str(ev.json).ok()?;
    let text = doc.content.get(*field)?.as_str()?;
    // PostgreSQL text cannot hold NUL; to both indexes it only separates words.
    let mut text: String = text.replace('\0', " ");
    if text.len() > MAX_TEXT {
        let mut cut = MAX_TEXT;
        while !text.is_char_boundary(cut) {
            cut -= 1;
        }
        text.truncate(cut);
    }
    if text.trim().is_empty() {
        return None;
    }
    Some((ev.stream_ordering, ev.room_id, key, text))
}

impl Db {
    /// Indexes the searchable events of a batch being persisted (same transaction).
    pub async fn index_for_search(tx: &mut Tx, events: &[NewEvent<'_>]) -> sqlx::Result<()> {
        let docs: Vec<_> = events.iter().filter_map(search_doc).collect();
        if docs.is_empty() {
            return Ok(());
        }
        let sqlite = is_sqlite(tx);
        for chunk in docs.chunks(100) {
            let mut sql = String::from(if sqlite {
                "INSERT INTO event_search (rowid, room_id, key, body) VALUES "
            } else {
                "INSERT INTO event_search (stream_ordering, room_id, key, vector) VALUES "
            });
            for i in 0..chunk.len() {
                if i > 0 {
                    sql.push(',');
                }
                let b = 4 * i;
                if sqlite {
                    sql.push_str(&format!("(${}, ${}, ${}, ${})", b + 1, b + 2, b + 3, b + 4));
                } else {
                    sql.push_str(&format!(
                        "(${}, ${}, ${}, to_tsvector('simple', ${}))",
                        b + 1,
                        b + 2,
                        b + 3,
                        b + 4
                    ));
                }
            }
            let mut q = sqlx::query(&sql);
            for (stream, room, key, text) in chunk {
                q = q.bind(*stream).bind(*room).bind(*key).bind(text.as_str());
            }
            q.execute(&mut **tx).await?;
        }
        Ok(())
    }

    /// Removes a redacted event from the index (the redaction's transaction).
    pub async fn unindex_for_search(
        tx: &mut Tx,
        room_id: &str,
        event_id: &str,
    ) -> sqlx::Result<()> {
        let col = if is_sqlite(tx) {
            "rowid"
        } else {
            "stream_ordering"
        };
        sqlx::query(&format!(
            "DELETE FROM event_search WHERE {col} IN \
             (SELECT stream_ordering FROM events WHERE event_id = $1 AND room_id = $2)"
        ))
        .bind(event_id)
        .bind(room_id)
        .execute(&mut **tx)
        .await?;
        Ok(())
    }

    /// The FROM/WHERE shared by the search reads, and its bound values after the user id:
    /// `$1` is the match expression, `$2` the user, then rooms, not_rooms, keys, the position.
    fn search_from(&self, q: &SearchQuery<'_>) -> (String, String, &'static str) {
        let sqlite = self.dialect == super::Dialect::Sqlite;
        let (t, pos) = if sqlite {
            ("event_search", "event_search.rowid")
        } else {
            ("s", "s.stream_ordering")
        };
        let (from, matches) = if sqlite {
            (
                format!("event_search JOIN events e ON e.stream_ordering = {pos}"),
                "event_search MATCH $1".to_owned(),
            )
        } else {
            (
                format!("event_search s JOIN events e ON e.stream_ordering = {pos}"),
                "s.vector @@ to_tsquery('simple', $1)".to_owned(),
            )
        };
        let mut n = 3;
        let mut sql = format!(
            "{from} WHERE {matches} AND {t}.room_id IN \
             (SELECT room_id FROM memberships WHERE user_id = $2 AND membership = 'join')"
        );
        if let Some(rooms) = q.rooms {
            sql.push_str(&format!(
                " AND {t}.room_id IN ({})",
                placeholders(n, rooms.len())
            ));
            n += rooms.len();
        }
        if !q.not_rooms.is_empty() {
            sql.push_str(&format!(
                " AND {t}.room_id NOT IN ({})",
                placeholders(n, q.not_rooms.len())
            ));
            n += q.not_rooms.len();
        }
        sql.push_str(&format!(
            " AND {t}.key IN ({})",
            placeholders(n, q.keys.len())
        ));
        n += q.keys.len();
        let op = match q.cursor {
            SearchCursor::Rank { .. } => "<=",
            SearchCursor::Recent { .. } => "<",
        };
        sql.push_str(&format!(
            " AND {pos} {op} ${n} AND e.redacted_by IS NULL \
             AND e.rejected = 0 AND e.outlier = 0 AND e.soft_failed = 0"
        ));
        let rank = if sqlite {
            "-bm25(event_search)".to_owned()
        } else {
            "CAST(ts_rank(s.vector, to_tsquery('simple', $1)) AS DOUBLE PRECISION)".to_owned()
        };
        (sql, rank, pos)
    }

    /// The match expression of the dialect: every word as a quoted prefix.
    fn search_match(&self, words: &[String]) -> String {
        match self.dialect {
            super::Dialect::Sqlite => words
                .iter()
                .map(|w| format!("\"{}\"*", w.replace('"', "\"\"")))
                .collect::<Vec<_>>()
                .join(" "),
            super::Dialect::Postgres => words
                .iter()
                .map(|w| format!("'{}':*", w.replace('\\', "").replace('\'', "''")))
                .collect::<Vec<_>>()
                .join(" & "),
        }
    }

    fn bind_search<'q>(
        &self,
        mut qry: sqlx::query::Query<'q, sqlx::Any, sqlx::any::AnyArguments<'q>>,
        q: &'q SearchQuery<'q>,
        matches: String,
    ) -> sqlx::query::Query<'q, sqlx::Any, sqlx::any::AnyArguments<'q>> {
        qry = qry.bind(matches).bind(q.user_id);
        for r in q.rooms.unwrap_or(&[]) {
            qry = qry.bind(r.as_str());
        }
        for r in q.not_rooms {
            qry = qry.bind(r.as_str());
        }
        for k in q.keys {
            qry = qry.bind(*k);
        }
        qry.bind(match q.cursor {
            SearchCursor::Rank { upper, .. } => upper,
            SearchCursor::Recent { before } => before,
        })
    }

    /// One page of matching events with their rank (higher is better), in the cursor's order.
    pub async fn search_events<'q>(
        &self,
        q: &'q SearchQuery<'q>,
        limit: i64,
    ) -> sqlx::Result<Vec<(f64, EventRow)>> {
        if q.words.is_empty() || q.keys.is_empty() || q.rooms.is_some_and(|r| r.is_empty()) {
            return Ok(vec![]);
        }
        let (from, rank, pos) = self.search_from(q);
        let next = 4 + q.rooms.map_or(0, |r| r.len()) + q.not_rooms.len() + q.keys.len();
        // Newest first reads the index in its own order (FTS5 walks rowids backwards).
        let (order, offset) = match q.cursor {
            SearchCursor::Rank { offset, .. } => (format!("score DESC, {pos} DESC"), offset),
            SearchCursor::Recent { .. } => (format!("{pos} DESC"), 0),
        };
        let sql = format!(
            "SELECT {rank} AS score, {EVENT_COLS} FROM {from} ORDER BY {order} LIMIT ${} OFFSET ${}",
            next,
            next + 1
        );
        let matches = self.search_match(q.words);
        let rows = self
            .bind_search(sqlx::query(&sql), q, matches)
            .bind(limit)
            .bind(offset)
            .fetch_all(&self.pool)
            .await?;
        rows.iter()
            .map(|r| Ok((r.try_get::<f64, _>("score")?, EventRow::from_row(r)?)))
            .collect()
    }

    /// Up to `cap` matching events without their JSON (to count what the user may see).
    pub async fn search_candidates<'q>(
        &self,
        q: &'q SearchQuery<'q>,
        cap: i64,
    ) -> sqlx::Result<Vec<EventRow>> {
        if q.words.is_empty() || q.keys.is_empty() || q.rooms.is_some_and(|r| r.is_empty()) {
            return Ok(vec![]);
        }
        let (from, _, _) = self.search_from(q);
        let next = 4 + q.rooms.map_or(0, |r| r.len()) + q.not_rooms.len() + q.keys.len();
        let sql = format!(
            "SELECT e.stream_ordering, e.event_id, e.room_id, e.sender, e.type, e.state_key, \
             e.state_group, e.redacted_by, e.sender_device, e.txn_id, '' AS json, e.outlier, e.rejected, \
             e.soft_failed FROM {from} LIMIT ${next}"
        );
        let matches = self.search_match(q.words);
        let rows = self
            .bind_search(sqlx::query(&sql), q, matches)
            .bind(cap)
            .fetch_all(&self.pool)
            .await?;
        rows.iter().map(EventRow::from_row).collect()
    }

    /// For each anchor (room, stream position), up to `before` live events just before it and
    /// `after` just after it, in two queries whatever the number of anchors: first each side's
    /// far bound (an indexed correlated sub-query per anchor), then the events within the bounds.
    /// Returns, per anchor in the given order, (events before in stream order, events after).
    pub async fn events_around(
        &self,
        anchors: &[(String, i64)],
        before: i64,
        after: i64,
    ) -> sqlx::Result<Vec<(Vec<EventRow>, Vec<EventRow>)>> {
        let mut out: Vec<(Vec<EventRow>, Vec<EventRow>)> =
            anchors.iter().map(|_| (vec![], vec![])).collect();
        if anchors.is_empty() || (before <= 0 && after <= 0) {
            return Ok(out);
        }
        let mut values = String::new();
        super::push_rows_from(&mut values, 3, anchors.len(), 2);
        let bounds_sql = format!(
            "WITH t(room, anchor) AS (VALUES {values}) \
             SELECT t.room, t.anchor, \
               (SELECT b.stream_ordering FROM events b WHERE b.room_id = t.room AND b.stream_ordering < t.anchor \
                AND b.rejected = 0 AND b.outlier = 0 AND b.soft_failed = 0 ORDER BY b.stream_ordering DESC LIMIT 1 OFFSET $1) AS lo, \
               (SELECT a.stream_ordering FROM events a WHERE a.room_id = t.room AND a.stream_ordering > t.anchor \
                AND a.rejected = 0 AND a.outlier = 0 AND a.soft_failed = 0 ORDER BY a.stream_ordering ASC LIMIT 1 OFFSET $2) AS hi \
             FROM t"
        );
        let mut q = sqlx::query(&bounds_sql)
            .bind((before - 1).max(0))
            .bind((after - 1).max(0));
        for (room, anchor) in anchors {
            q = q.bind(room.as_str()).bind(*anchor);
        }
        let mut ranges: Vec<(String, i64, i64)> = vec![];
        for row in q.fetch_all(&self.pool).await? {
            let room: String = row.try_get(0)?;
            let anchor: i64 = row.try_get(1)?;
            let lo: Option<i64> = row.try_get(2)?;
            let hi: Option<i64> = row.try_get(3)?;
            let lo = if before > 0 { lo.unwrap_or(0) } else { anchor };
            let hi = if after > 0 {
                hi.unwrap_or(i64::MAX)
            } else {
                anchor
            };
            ranges.push((room, lo, hi));
        }
        let mut cond = String::new();
        for i in 0..ranges.len() {
            if i > 0 {
                cond.push_str(" OR ");
            }
            cond.push_str(&format!(
                "(e.room_id = ${} AND e.stream_ordering >= ${} AND e.stream_ordering <= ${})",
                1 + 3 * i,
                2 + 3 * i,
                3 + 3 * i
            ));
        }
        let sql = format!(
            "SELECT {EVENT_COLS} FROM events e WHERE ({cond}) \
             AND e.rejected = 0 AND e.outlier = 0 AND e.soft_failed = 0 ORDER BY e.stream_ordering"
        );
        let mut q = sqlx::query_as::<_, EventRow>(&sql);
        for (room, lo, hi) in &ranges {
            q = q.bind(room.as_str()).bind(*lo).bind(*hi);
        }
        let rows = q.fetch_all(&self.pool).await?;
        for (i, (room, anchor)) in anchors.iter().enumerate() {
            let in_room = rows.iter().filter(|r| &r.room_id == room);
            let mut b: Vec<EventRow> = in_room
                .clone()
                .filter(|r| r.stream_ordering < *anchor)
                .cloned()
                .collect();
            if b.len() as i64 > before {
                b.drain(..b.len() - before.max(0) as usize);
            }
            let a: Vec<EventRow> = in_room
                .filter(|r| r.stream_ordering > *anchor)
                .take(after.max(0) as usize)
                .cloned()
                .collect();
            out[i] = (b, a);
        }
        Ok(out)
    }
}
