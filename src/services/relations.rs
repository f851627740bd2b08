//! Relations (spec: Relationships, Threading, Event replacements, Reference relations): the
//! `m.relates_to` index, `/relations`, `/threads`, and the bundled aggregations attached to
//! served events (`unsigned.m.relations`).

use std::collections::{HashMap, HashSet};

use ruma::{RoomId, UserId};
use serde_json::{json, Map, Value};

use super::{rooms::client_event::Format, Services};
use crate::{
    store::{
        events::EventRow,
        relations::{RelationQuery, RelationRow},
    },
    Error, Result,
};

/// The `(rel_type, parent event id)` an event's content declares, if any. Replies
/// (`m.in_reply_to`) are not relations.
pub fn relation_of(content: &Value) -> Option<(&str, &str)> {
    let rel = content.get("m.relates_to")?;
    let rel_type = rel.get("rel_type")?.as_str()?;
    let parent = rel.get("event_id")?.as_str()?;
    (!rel_type.is_empty() && rel_type.len() <= 255 && parent.starts_with('$'))
        .then_some((rel_type, parent))
}

/// The thread an event belongs to for receipts and unread counts: its root, or `main`.
pub fn thread_of(content: &Value) -> &str {
    match relation_of(content) {
        Some(("m.thread", root)) => root,
        _ => "main",
    }
}

/// How deep `recurse=true` follows relations of relations.
const MAX_RECURSION: usize = 3;
/// The most parents a recursive query gathers.
const MAX_RECURSIVE_PARENTS: usize = 2_000;

/// Parameters of GET /relations.
pub struct RelationsRequest<'a> {
    pub parent: &'a str,
    pub rel_type: Option<&'a str>,
    pub event_type: Option<&'a str>,
    pub from: Option<&'a str>,
    pub to: Option<&'a str>,
    pub backward: bool,
    pub limit: i64,
    pub recurse: bool,
}

fn parse_token(t: &str) -> Result<i64> {
    t.strip_prefix('r')
        .or_else(|| t.strip_prefix('t'))
        .unwrap_or(t)
        .parse()
        .map_err(|_| Error::invalid_param("Invalid pagination token"))
}

impl Services {
    /// `unsigned.m.relations` for each event that has any, for `viewer`: the latest valid
    /// `m.replace`, the `m.thread` summary and the `m.reference` chunk. A few queries whatever
    /// the number of events.
    pub async fn aggregations<'a>(
        &self,
        rows: impl IntoIterator<Item = &'a EventRow>,
        viewer: Option<(&UserId, &str)>,
    ) -> Result<HashMap<String, Value>> {
        let parents: Vec<&EventRow> = rows
            .into_iter()
            .filter(|r| r.redacted_by.is_none())
            .collect();
        if parents.is_empty() {
            return Ok(HashMap::new());
        }
        let ids: Vec<String> = parents.iter().map(|r| r.event_id.clone()).collect();
        let threads = self.db.relation_counts(&ids, &["m.thread"]).await?;
        let others = self
            .db
            .relations_of(&ids, &["m.replace", "m.reference"])
            .await?;
        if threads.is_empty() && others.is_empty() {
            return Ok(HashMap::new());
        }
        let by_id: HashMap<&str, &EventRow> =
            parents.iter().map(|r| (r.event_id.as_str(), *r)).collect();

        // Edits: the newest replacement by the original sender, of the same type, of a
        // non-state event that is not itself an edit.
        let mut edits: HashMap<&str, &RelationRow> = HashMap::new();
        let mut references: HashMap<&str, Vec<&str>> = HashMap::new();
        for rel in &others {
            let Some(parent) = by_id.get(rel.relates_to.as_str()) else {
                continue;
            };
            match rel.rel_type.as_str() {
                "m.replace"
                    if rel.sender == parent.sender
                        && rel.kind == parent.kind
                        && parent.state_key.is_none()
                        && !is_edit(parent) =>
                {
                    edits.insert(parent.event_id.as_str(), rel);
                }
                "m.reference" => references
                    .entry(parent.event_id.as_str())
                    .or_default()
                    .push(rel.event_id.as_str()),
                _ => {}
            }
        }
        let thread_roots: Vec<String> = threads.iter().map(|t| t.relates_to.clone()).collect();
        let participated: HashSet<String> = match viewer {
            Some((user, _)) if !thread_roots.is_empty() => self
                .db
                .threads_participated(&thread_roots, user.as_str())
                .await?
                .into_iter()
                .collect(),
            _ => HashSet::new(),
        };
        // The events to embed: edits and each thread's latest reply.
        let latest_streams: Vec<i64> = threads.iter().map(|t| t.latest_stream).collect();
        let mut embed = self.db.events_at_streams(&latest_streams).await?;
        let edit_ids: Vec<String> = edits.values().map(|r| r.event_id.clone()).collect();
        embed.extend(self.db.get_events(&edit_ids).await?);
        let formatted = self
            .format_plain(&embed, viewer, Format::Client, &HashMap::new())
            .await?;
        let embedded: HashMap<&str, &Value> = embed
            .iter()
            .map(|r| r.event_id.as_str())
            .zip(formatted.iter())
            .collect();
        let by_stream: HashMap<i64, &str> = embed
            .iter()
            .map(|r| (r.stream_ordering, r.event_id.as_str()))
            .collect();

        let mut out: HashMap<String, Map<String, Value>> = HashMap::new();
        for (parent, rel) in &edits {
            if let Some(ev) = embedded.get(rel.event_id.as_str()) {
                out.entry((*parent).to_owned())
                    .or_default()
                    .insert("m.replace".into(), (*ev).clone());
            }
        }
        for (parent, refs) in references {
            let chunk: Vec<Value> = refs.iter().map(|id| json!({ "event_id": id })).collect();
            out.entry(parent.to_owned())
                .or_default()
                .insert("m.reference".into(), json!({ "chunk": chunk }));
        }
        for t in &threads {
            let latest = by_stream
                .get(&t.latest_stream)
                .and_then(|id| embedded.get(id));
            let Some(latest) = latest else { continue };
            let root_sender = by_id.get(t.relates_to.as_str()).map(|r| r.sender.as_str());
            let mine = viewer.is_some_and(|(u, _)| {
                participated.contains(&t.relates_to) || root_sender == Some(u.as_str())
            });
            out.entry(t.relates_to.clone()).or_default().insert(
                "m.thread".into(),
                json!({
                    "latest_event": latest,
                    "count": t.count,
                    "current_user_participated": mine,
                }),
            );
        }
        Ok(out
            .into_iter()
            .map(|(k, v)| (k, Value::Object(v)))
            .collect())
    }

    /// GET /rooms/{roomId}/relations/{eventId}[/{relType}[/{eventType}]].
    pub async fn relations(
        &self,
        user: &UserId,
        device: &str,
        room_id: &RoomId,
        req: RelationsRequest<'_>,
    ) -> Result<Value> {
        // The parent must be visible to the requester.
        self.get_room_event(user, device, room_id, req.parent)
            .await?;
        let limit = req.limit.clamp(1, 1000);
        let mut parents = vec![req.parent.to_owned()];
        let mut depth = 1;
        if req.recurse {
            let mut frontier = parents.clone();
            while depth < MAX_RECURSION && !frontier.is_empty() {
                let children: Vec<String> = self
                    .db
                    .relations_of(&frontier, &[])
                    .await?
                    .into_iter()
                    .map(|r| r.event_id)
                    .filter(|id| !parents.contains(id))
                    .collect();
                if children.is_empty() || parents.len() + children.len() > MAX_RECURSIVE_PARENTS {
                    break;
                }
                parents.extend(children.iter().cloned());
                frontier = children;
                depth += 1;
            }
        }
        let from = req.from.map(parse_token).transpose()?;
        let to = req.to.map(parse_token).transpose()?;
        let (after, before) = if req.backward {
            (to.unwrap_or(-1), from.unwrap_or(i64::MAX))
        } else {
            (from.unwrap_or(-1), to.unwrap_or(i64::MAX))
        };
        let rows = self
            .db
            .relation_page(&RelationQuery {
                room_id: room_id.as_str(),
                parents: &parents,
                rel_type: req.rel_type,
                event_type: req.event_type,
                after,
                before,
                newest_first: req.backward,
                limit,
            })
            .await?;
        let next = (rows.len() as i64 == limit)
            .then(|| rows.last().map(|r| format!("r{}", r.stream_ordering)))
            .flatten();
        let rows = self.filter_visible(user, rows).await?;
        let mut out = json!({
            "chunk": self.format_events(&rows, Some((user, device)), Format::Client).await?,
        });
        if let Some(n) = next {
            out["next_batch"] = json!(n);
        }
        if req.recurse {
            out["recursion_depth"] = json!(depth);
        }
        Ok(out)
    }

    /// GET /rooms/{roomId}/threads: thread roots by latest activity, newest first.
    pub async fn threads(
        &self,
        user: &UserId,
        device: &str,
        room_id: &RoomId,
        participated_only: bool,
        from: Option<&str>,
        limit: i64,
    ) -> Result<Value> {
        let membership = self.db.membership(user.as_str(), room_id.as_str()).await?;
        if !membership.is_some_and(|m| m.membership == "join" || m.membership == "leave") {
            // Same answer as /messages for rooms one may not read.
            self.room_state(user, room_id).await?;
        }
        let limit = limit.clamp(1, 100);
        let before = from.map(parse_token).transpose()?.unwrap_or(i64::MAX);
        let roots = self
            .db
            .thread_roots(
                room_id.as_str(),
                before,
                participated_only.then_some(user.as_str()),
                limit,
            )
            .await?;
        let next = (roots.len() as i64 == limit)
            .then(|| roots.last().map(|(_, s)| format!("r{s}")))
            .flatten();
        let ids: Vec<String> = roots.iter().map(|(id, _)| id.clone()).collect();
        let mut rows = self.db.get_events(&ids).await?;
        let rank: HashMap<&str, usize> = ids
            .iter()
            .enumerate()
            .map(|(i, id)| (id.as_str(), i))
            .collect();
        rows.sort_by_key(|r| rank.get(r.event_id.as_str()).copied().unwrap_or(usize::MAX));
        let rows = self.filter_visible(user, rows).await?;
        let mut out = json!({
            "chunk": self.format_events(&rows, Some((user, device)), Format::Client).await?,
        });
        if let Some(n) = next {
            out["next_batch"] = json!(n);
        }
        Ok(out)
    }
}

fn is_edit(row: &EventRow) -> bool {
    serde_json::from_str::<Value>(&row.json)
        .ok()
        .and_then(|v| {
            v.get("content")
                .and_then(relation_of)
                .map(|(t, _)| t == "m.replace")
        })
        .unwrap_or(false)
}
