//! Relations (spec: Relationships, Threading, Event replacements, Reference relations): the
//! `m.relates_to` index, `/relations`, `/threads`, and the bundled aggregations attached to
//! served events (`unsigned.m.relations`).

use crate::services::rooms::RoomsFace;
use std::collections::{HashMap, HashSet};

use ruma::{RoomId, UserId};
use serde_json::{json, Map, Value};

use crate::services::rooms::client_event::Format;
use crate::{
    store::{
        events::EventRow,
        relations::{NewRelation, RelationCount, RelationQuery, RelationRow},
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
/// Edits of one event looked at, newest first, for one the viewer may see.
const MAX_EDIT_CANDIDATES: usize = 20;
/// Replies of a thread looked at, newest first, when its newest reply is hidden from the viewer.
const MAX_HIDDEN_WALK: usize = 50;

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

/// A relations pagination token (`r<n>`, `t<n>` or a bare number) as a stream position;
/// public so the fuzz targets (`fuzz/`) reach it.
pub fn parse_token(t: &str) -> Result<i64> {
    t.strip_prefix('r')
        .or_else(|| t.strip_prefix('t'))
        .unwrap_or(t)
        .parse()
        .map_err(|_| Error::invalid_param("Invalid pagination token"))
}

impl RoomsFace<'_> {
    /// `unsigned.m.relations` for each event that has any, for `viewer`: the latest valid
    /// `m.replace`, the `m.thread` summary and the `m.reference` chunk, all limited to what the
    /// viewer may see (history visibility). A few queries whatever the number of events. State
    /// events get none (as Synapse), nor does a formatting without a viewer.
    pub async fn aggregations<'a>(
        self,
        rows: impl IntoIterator<Item = &'a EventRow>,
        viewer: Option<(&UserId, &str)>,
    ) -> Result<HashMap<String, Value>> {
        let Some((user, _)) = viewer else {
            return Ok(HashMap::new());
        };
        let parents: Vec<&EventRow> = rows
            .into_iter()
            .filter(|r| r.redacted_by.is_none() && r.state_key.is_none())
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

        let (edit_candidates, references) = edits_and_references(&others, &by_id);
        // Every event that may be embedded or listed, then only those the viewer may see.
        let latest_streams: Vec<i64> = threads.iter().map(|t| t.latest_stream).collect();
        let mut candidates = self.db.events_at_streams(&latest_streams).await?;
        let listed: Vec<String> = edit_candidates
            .values()
            .chain(references.values())
            .flatten()
            .map(|id| (*id).to_owned())
            .collect();
        candidates.extend(self.db.get_events(&listed).await?);
        let mut visible: HashMap<String, EventRow> = self
            .filter_visible(user, candidates)
            .await?
            .into_iter()
            .map(|r| (r.event_id.clone(), r))
            .collect();
        let latest = self
            .latest_visible_replies(user, &threads, &mut visible)
            .await?;

        let edits: HashMap<&str, &str> = edit_candidates
            .iter()
            .filter_map(|(parent, c)| {
                let newest = c.iter().find(|id| visible.contains_key(**id))?;
                Some((*parent, *newest))
            })
            .collect();
        let mut embed: Vec<EventRow> = edits
            .values()
            .filter_map(|id| visible.get(*id).cloned())
            .collect();
        embed.extend(
            latest
                .values()
                .filter_map(|(id, _)| visible.get(id).cloned()),
        );
        let formatted = self
            .format_plain(&embed, viewer, Format::Client, &HashMap::new())
            .await?;
        let embedded: HashMap<&str, &Value> = embed
            .iter()
            .map(|r| r.event_id.as_str())
            .zip(formatted.iter())
            .collect();

        let mut out = Bundles::new();
        bundle_edits_and_references(&mut out, &edits, &embedded, references, &visible);
        self.bundle_threads(&mut out, user, &latest, &embedded, &by_id)
            .await?;
        Ok(out
            .into_iter()
            .map(|(k, v)| (k, Value::Object(v)))
            .collect())
    }

    /// The `m.thread` summaries: the latest visible reply, the count, and whether the viewer
    /// took part (replied, or wrote the root).
    async fn bundle_threads(
        self,
        out: &mut Bundles,
        user: &UserId,
        latest: &HashMap<String, (String, i64)>,
        embedded: &HashMap<&str, &Value>,
        by_id: &HashMap<&str, &EventRow>,
    ) -> Result<()> {
        let roots: Vec<String> = latest.keys().cloned().collect();
        let participated: HashSet<String> = self
            .db
            .threads_participated(&roots, user.as_str())
            .await?
            .into_iter()
            .collect();
        for (root, (latest_id, count)) in latest {
            let Some(latest) = embedded.get(latest_id.as_str()) else {
                continue;
            };
            let root_sender = by_id.get(root.as_str()).map(|r| r.sender.as_str());
            let mine = participated.contains(root) || root_sender == Some(user.as_str());
            out.entry(root.clone()).or_default().insert(
                "m.thread".into(),
                json!({
                    "latest_event": latest,
                    "count": count,
                    "current_user_participated": mine,
                }),
            );
        }
        Ok(())
    }

    /// Per thread root, the newest reply `user` may see and the number of replies up to it.
    /// `visible` holds the visible candidates already read (each thread's newest reply among
    /// them); a thread whose newest reply is hidden (the user left, say) is walked back through
    /// its `MAX_HIDDEN_WALK` newest replies, and its count stops at the reply found. A thread
    /// with no visible reply there gets no summary.
    async fn latest_visible_replies(
        self,
        user: &UserId,
        threads: &[RelationCount],
        visible: &mut HashMap<String, EventRow>,
    ) -> Result<HashMap<String, (String, i64)>> {
        let by_stream: HashMap<i64, &str> = visible
            .values()
            .map(|r| (r.stream_ordering, r.event_id.as_str()))
            .collect();
        let mut out: HashMap<String, (String, i64)> = HashMap::new();
        let mut hidden: Vec<String> = vec![];
        for t in threads {
            match by_stream.get(&t.latest_stream) {
                Some(id) => {
                    out.insert(t.relates_to.clone(), ((*id).to_owned(), t.count));
                }
                None => hidden.push(t.relates_to.clone()),
            }
        }
        if hidden.is_empty() {
            return Ok(out);
        }
        let replies = self.db.relations_of(&hidden, &["m.thread"]).await?;
        let mut per_root: HashMap<&str, Vec<&RelationRow>> = HashMap::new();
        for r in replies.iter().rev() {
            let list = per_root.entry(r.relates_to.as_str()).or_default();
            if list.len() < MAX_HIDDEN_WALK {
                list.push(r);
            }
        }
        let ids: Vec<String> = per_root
            .values()
            .flatten()
            .map(|r| r.event_id.clone())
            .collect();
        let rows = self.db.get_events(&ids).await?;
        let seen = self.filter_visible(user, rows).await?;
        let seen_ids: HashSet<&str> = seen.iter().map(|r| r.event_id.as_str()).collect();
        let totals: HashMap<&str, i64> = threads
            .iter()
            .map(|t| (t.relates_to.as_str(), t.count))
            .collect();
        let mut found: Vec<(String, String, i64)> = vec![];
        for (root, list) in &per_root {
            // `list` is newest first: the replies skipped are the hidden newer ones.
            if let Some(pos) = list
                .iter()
                .position(|r| seen_ids.contains(r.event_id.as_str()))
            {
                let total = totals.get(root).copied().unwrap_or(0);
                found.push((
                    (*root).to_owned(),
                    list[pos].event_id.clone(),
                    total - pos as i64,
                ));
            }
        }
        drop(seen_ids);
        visible.extend(seen.into_iter().map(|r| (r.event_id.clone(), r)));
        for (root, id, count) in found {
            out.insert(root, (id, count));
        }
        Ok(out)
    }

    /// Refuses a new local event whose relation points at an event of another room (Synapse's
    /// "Relations must be in the same room"); a parent not known here is allowed, as Synapse.
    pub(super) async fn check_relation_room(self, room_id: &RoomId, content: &Value) -> Result<()> {
        let Some((_, parent)) = relation_of(content) else {
            return Ok(());
        };
        let rooms = self.db.event_rooms(&[parent]).await?;
        if rooms.iter().any(|(_, r)| r != room_id.as_str()) {
            return Err(Error::bad_request("Relations must be in the same room"));
        }
        Ok(())
    }

    /// The relations to index for new events of `room_id`: those whose parent is in the same
    /// room or not known here (relation queries also join the parent in the child's room, so
    /// a parent that turns up later in another room never counts either).
    pub(super) async fn relations_in_room<'a>(
        self,
        room_id: &str,
        rels: Vec<NewRelation<'a>>,
    ) -> Result<Vec<NewRelation<'a>>> {
        if rels.is_empty() {
            return Ok(rels);
        }
        let parents: Vec<&str> = rels.iter().map(|r| r.relates_to).collect();
        let elsewhere: HashSet<String> = self
            .db
            .event_rooms(&parents)
            .await?
            .into_iter()
            .filter(|(_, r)| r != room_id)
            .map(|(id, _)| id)
            .collect();
        Ok(rels
            .into_iter()
            .filter(|r| !elsewhere.contains(r.relates_to))
            .collect())
    }

    /// GET /rooms/{roomId}/relations/{eventId}[/{relType}[/{eventType}]].
    pub async fn relations(
        self,
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
        self,
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

/// Bundled aggregations being built: per parent event, `m.replace` / `m.reference` / `m.thread`.
type Bundles = HashMap<String, Map<String, Value>>;

/// Related event ids by parent event id.
type ByParent<'a> = HashMap<&'a str, Vec<&'a str>>;

/// Edit candidates (newest first: replacements by the original sender, of the same type, of
/// an event that is not itself an edit) and references, by parent.
fn edits_and_references<'a>(
    others: &'a [RelationRow],
    by_id: &HashMap<&str, &'a EventRow>,
) -> (ByParent<'a>, ByParent<'a>) {
    let mut edit_candidates: HashMap<&str, Vec<&str>> = HashMap::new();
    let mut references: HashMap<&str, Vec<&str>> = HashMap::new();
    for rel in others.iter().rev() {
        let Some(parent) = by_id.get(rel.relates_to.as_str()) else {
            continue;
        };
        match rel.rel_type.as_str() {
            "m.replace"
                if rel.sender == parent.sender && rel.kind == parent.kind && !is_edit(parent) =>
            {
                let c = edit_candidates.entry(parent.event_id.as_str()).or_default();
                if c.len() < MAX_EDIT_CANDIDATES {
                    c.push(rel.event_id.as_str());
                }
            }
            "m.reference" => references
                .entry(parent.event_id.as_str())
                .or_default()
                .push(rel.event_id.as_str()),
            _ => {}
        }
    }
    (edit_candidates, references)
}

/// The `m.replace` (the newest visible edit, embedded) and `m.reference` (visible references,
/// oldest first) bundles.
fn bundle_edits_and_references(
    out: &mut Bundles,
    edits: &HashMap<&str, &str>,
    embedded: &HashMap<&str, &Value>,
    references: HashMap<&str, Vec<&str>>,
    visible: &HashMap<String, EventRow>,
) {
    for (parent, edit) in edits {
        if let Some(ev) = embedded.get(edit) {
            out.entry((*parent).to_owned())
                .or_default()
                .insert("m.replace".into(), (*ev).clone());
        }
    }
    for (parent, refs) in references {
        let chunk: Vec<Value> = refs
            .iter()
            .rev()
            .filter(|id| visible.contains_key(**id))
            .map(|id| json!({ "event_id": id }))
            .collect();
        if !chunk.is_empty() {
            out.entry(parent.to_owned())
                .or_default()
                .insert("m.reference".into(), json!({ "chunk": chunk }));
        }
    }
}
