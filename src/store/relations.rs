//! Event relations (`m.relates_to`): the index behind /relations, /threads and the bundled
//! aggregations of served events.

use sqlx::Row;

use super::{events::EVENT_COLS, placeholders, push_rows_from, Db, Tx};
use crate::store::events::EventRow;

/// One relation of a new event.
pub struct NewRelation<'a> {
    pub event_id: &'a str,
    pub relates_to: &'a str,
    pub rel_type: &'a str,
    pub sender: &'a str,
    pub kind: &'a str,
    pub stream_ordering: i64,
}

/// A stored relation, for aggregation.
#[derive(Debug, Clone)]
pub struct RelationRow {
    pub event_id: String,
    pub relates_to: String,
    pub rel_type: String,
    pub sender: String,
    pub kind: String,
    pub stream_ordering: i64,
}

/// Per (parent, rel_type): how many children and the newest one's position.
#[derive(Debug, Clone)]
pub struct RelationCount {
    pub relates_to: String,
    pub rel_type: String,
    pub count: i64,
    pub latest_stream: i64,
}

/// Which relations of a parent a page asks for.
pub struct RelationQuery<'a> {
    pub room_id: &'a str,
    pub parents: &'a [String],
    pub rel_type: Option<&'a str>,
    pub event_type: Option<&'a str>,
    /// Exclusive bounds on stream ordering.
    pub after: i64,
    pub before: i64,
    pub newest_first: bool,
    pub limit: i64,
}

const LIVE: &str =
    "e.rejected = 0 AND e.outlier = 0 AND e.soft_failed = 0 AND e.redacted_by IS NULL";
/// Joins a relation `r` to its child event `e` and to its parent `p` IN THE SAME ROOM: a
/// relation whose parent is in another room (or not known here) never counts.
const SAME_ROOM: &str = "JOIN events e ON e.event_id = r.event_id \
     JOIN events p ON p.event_id = r.relates_to_id AND p.room_id = r.room_id";

impl Db {
    pub async fn insert_relations(
        tx: &mut Tx,
        room_id: &str,
        rels: &[NewRelation<'_>],
    ) -> sqlx::Result<()> {
        for chunk in rels.chunks(100) {
            let mut sql = String::from(
                "INSERT INTO event_relations (event_id, relates_to_id, rel_type, room_id, sender, type, \
                 stream_ordering) VALUES ",
            );
            push_rows_from(&mut sql, 1, chunk.len(), 7);
            sql.push_str(" ON CONFLICT DO NOTHING");
            let mut q = sqlx::query(&sql);
            for r in chunk {
                q = q
                    .bind(r.event_id)
                    .bind(r.relates_to)
                    .bind(r.rel_type)
                    .bind(room_id)
                    .bind(r.sender)
                    .bind(r.kind)
                    .bind(r.stream_ordering);
            }
            q.execute(&mut **tx).await?;
        }
        Ok(())
    }

    /// A redacted event no longer relates to anything.
    pub async fn delete_relation(tx: &mut Tx, room_id: &str, event_id: &str) -> sqlx::Result<()> {
        sqlx::query("DELETE FROM event_relations WHERE event_id = $1 AND room_id = $2")
            .bind(event_id)
            .bind(room_id)
            .execute(&mut **tx)
            .await?;
        Ok(())
    }

    /// Count and newest position of the children of each parent, per relation type.
    pub async fn relation_counts(
        &self,
        parents: &[String],
        rel_types: &[&str],
    ) -> sqlx::Result<Vec<RelationCount>> {
        if parents.is_empty() {
            return Ok(vec![]);
        }
        let sql = format!(
            "SELECT r.relates_to_id, r.rel_type, COUNT(*), MAX(r.stream_ordering) FROM event_relations r \
             {SAME_ROOM} WHERE r.relates_to_id IN ({}) AND r.rel_type IN ({}) AND {LIVE} \
             GROUP BY r.relates_to_id, r.rel_type",
            placeholders(1, parents.len()),
            placeholders(1 + parents.len(), rel_types.len())
        );
        let mut q = sqlx::query(&sql);
        for p in parents {
            q = q.bind(p);
        }
        for t in rel_types {
            q = q.bind(*t);
        }
        q.fetch_all(&self.pool)
            .await?
            .into_iter()
            .map(|r| {
                Ok(RelationCount {
                    relates_to: r.try_get(0)?,
                    rel_type: r.try_get(1)?,
                    count: r.try_get(2)?,
                    latest_stream: r.try_get(3)?,
                })
            })
            .collect()
    }

    /// Every child of the given parents with one of the relation types (any type when
    /// `rel_types` is empty), oldest first.
    pub async fn relations_of(
        &self,
        parents: &[String],
        rel_types: &[&str],
    ) -> sqlx::Result<Vec<RelationRow>> {
        if parents.is_empty() {
            return Ok(vec![]);
        }
        let types = if rel_types.is_empty() {
            String::new()
        } else {
            format!(
                " AND r.rel_type IN ({})",
                placeholders(1 + parents.len(), rel_types.len())
            )
        };
        let sql = format!(
            "SELECT r.event_id, r.relates_to_id, r.rel_type, r.sender, r.type, r.stream_ordering \
             FROM event_relations r {SAME_ROOM} WHERE r.relates_to_id IN ({}){types} AND {LIVE} \
             ORDER BY r.stream_ordering",
            placeholders(1, parents.len()),
        );
        let mut q = sqlx::query(&sql);
        for p in parents {
            q = q.bind(p);
        }
        for t in rel_types {
            q = q.bind(*t);
        }
        q.fetch_all(&self.pool)
            .await?
            .into_iter()
            .map(|r| {
                Ok(RelationRow {
                    event_id: r.try_get(0)?,
                    relates_to: r.try_get(1)?,
                    rel_type: r.try_get(2)?,
                    sender: r.try_get(3)?,
                    kind: r.try_get(4)?,
                    stream_ordering: r.try_get(5)?,
                })
            })
            .collect()
    }

    /// Thread roots among `parents` in which `user` sent a reply.
    pub async fn threads_participated(
        &self,
        parents: &[String],
        user: &str,
    ) -> sqlx::Result<Vec<String>> {
        if parents.is_empty() {
            return Ok(vec![]);
        }
        let sql = format!(
            "SELECT DISTINCT r.relates_to_id FROM event_relations r {SAME_ROOM} \
             WHERE r.rel_type = 'm.thread' AND r.sender = $1 AND r.relates_to_id IN ({}) AND {LIVE}",
            placeholders(2, parents.len())
        );
        let mut q = sqlx::query(&sql).bind(user);
        for p in parents {
            q = q.bind(p);
        }
        q.fetch_all(&self.pool)
            .await?
            .into_iter()
            .map(|r| r.try_get(0))
            .collect()
    }

    /// A page of the live children of some parents in a room, in stream order.
    pub async fn relation_page(&self, q: &RelationQuery<'_>) -> sqlx::Result<Vec<EventRow>> {
        if q.parents.is_empty() {
            return Ok(vec![]);
        }
        let mut sql = format!(
            "SELECT {EVENT_COLS} FROM event_relations r {SAME_ROOM} \
             WHERE r.room_id = $1 AND r.stream_ordering > $2 AND r.stream_ordering < $3 AND {LIVE} \
             AND r.relates_to_id IN ({})",
            placeholders(4, q.parents.len())
        );
        let mut n = 4 + q.parents.len();
        if q.rel_type.is_some() {
            sql.push_str(&format!(" AND r.rel_type = ${n}"));
            n += 1;
        }
        if q.event_type.is_some() {
            sql.push_str(&format!(" AND r.type = ${n}"));
            n += 1;
        }
        sql.push_str(&format!(
            " ORDER BY r.stream_ordering {} LIMIT ${n}",
            if q.newest_first { "DESC" } else { "ASC" }
        ));
        let mut query = sqlx::query_as(&sql)
            .bind(q.room_id)
            .bind(q.after)
            .bind(q.before);
        for p in q.parents {
            query = query.bind(p);
        }
        if let Some(t) = q.rel_type {
            query = query.bind(t);
        }
        if let Some(t) = q.event_type {
            query = query.bind(t);
        }
        query.bind(q.limit).fetch_all(&self.pool).await
    }

    /// Thread roots of a room ordered by their latest reply, newest first, strictly before
    /// `before` (a latest-reply position); with `participant`, only threads they started or
    /// replied to. Returns (root id, latest reply position).
    pub async fn thread_roots(
        &self,
        room_id: &str,
        before: i64,
        participant: Option<&str>,
        limit: i64,
    ) -> sqlx::Result<Vec<(String, i64)>> {
        let filter = if participant.is_some() {
            " AND (MAX(CASE WHEN r.sender = $4 THEN 1 ELSE 0 END) = 1 OR root.sender = $4)"
        } else {
            ""
        };
        let wrapped = format!(
            "SELECT r.relates_to_id, MAX(r.stream_ordering) AS latest FROM event_relations r \
             JOIN events root ON root.event_id = r.relates_to_id AND root.room_id = r.room_id \
             JOIN events e ON e.event_id = r.event_id \
             WHERE r.room_id = $1 AND r.rel_type = 'm.thread' AND root.redacted_by IS NULL AND {LIVE} \
             GROUP BY r.relates_to_id, root.sender HAVING MAX(r.stream_ordering) < $2{filter} \
             ORDER BY latest DESC LIMIT $3"
        );
        let mut q = sqlx::query(&wrapped).bind(room_id).bind(before).bind(limit);
        if let Some(p) = participant {
            q = q.bind(p);
        }
        q.fetch_all(&self.pool)
            .await?
            .into_iter()
            .map(|r| Ok((r.try_get(0)?, r.try_get(1)?)))
            .collect()
    }
}
