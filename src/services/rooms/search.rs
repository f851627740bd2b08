//! Server-side search (spec: Server Side Search, `POST /search`, category `room_events`).
//!
//! Only rooms the user is joined to now, only events history visibility lets them see (the
//! visibility service, in batch), never redacted, rejected, outlier or soft-failed events. The
//! index is written with the events (`store/search.rs`).

use crate::services::rooms::RoomsFace;
use std::collections::{HashMap, HashSet};

use ruma::UserId;
use serde::Deserialize;
use serde_json::{json, Map, Value};

use crate::services::{filter::RoomEventFilter, rooms::client_event::Format};
use crate::{
    store::{
        events::EventRow,
        search::{SearchCursor, SearchQuery, INDEXED},
    },
    Error, Result,
};

/// Longest search term, in bytes, and most words used from it.
const MAX_TERM: usize = 512;
const MAX_WORDS: usize = 16;
/// Results per page by default and at most.
const DEFAULT_LIMIT: i64 = 10;
const MAX_LIMIT: i64 = 50;
/// Context events on each side at most.
const MAX_CONTEXT: i64 = 20;
/// Most rooms in `filter.rooms` / `filter.not_rooms`.
const MAX_FILTER_ROOMS: usize = 500;
/// Index rounds per page when history visibility hides what the index found.
const MAX_ROUNDS: usize = 5;
/// `count` is exact up to this many matches, then a lower bound.
const COUNT_CAP: i64 = 1000;

#[derive(Debug, Deserialize)]
pub struct SearchRequest {
    pub search_categories: Categories,
}

#[derive(Debug, Deserialize)]
pub struct Categories {
    pub room_events: Option<RoomEventsCriteria>,
}

#[derive(Debug, Deserialize)]
pub struct RoomEventsCriteria {
    pub search_term: String,
    pub keys: Option<Vec<String>>,
    pub filter: Option<RoomEventFilter>,
    pub order_by: Option<String>,
    pub event_context: Option<EventContext>,
    pub include_state: Option<bool>,
    pub groupings: Option<Groupings>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub struct EventContext {
    pub before_limit: Option<i64>,
    pub after_limit: Option<i64>,
    pub include_profile: Option<bool>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub struct Groupings {
    pub group_by: Vec<Group>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub struct Group {
    pub key: Option<String>,
}

/// The words of a search term: runs of letters and digits, lower-cased. Everything else
/// (quotes, `*`, parentheses, operators) separates words, so no input reaches the index's
/// query syntax.
pub fn search_words(term: &str) -> Vec<String> {
    let mut words: Vec<String> = vec![];
    for w in term
        .split(|c: char| !c.is_alphanumeric())
        .filter(|w| !w.is_empty())
    {
        let w = w.to_lowercase();
        if !words.contains(&w) {
            words.push(w);
        }
        if words.len() == MAX_WORDS {
            break;
        }
    }
    words
}

/// The cursor a search `next_batch` token names (`k<upper>_<offset>` by rank, `r<before>` by
/// date), or the first page's; public so the fuzz targets (`fuzz/`) reach it.
pub fn parse_cursor(token: Option<&str>, rank: bool, head: i64) -> Result<SearchCursor> {
    let bad = || Error::invalid_param("Invalid next_batch token");
    match (token, rank) {
        (None, true) => Ok(SearchCursor::Rank {
            upper: head,
            offset: 0,
        }),
        (None, false) => Ok(SearchCursor::Recent { before: i64::MAX }),
        (Some(t), true) => {
            let (upper, offset) = t
                .strip_prefix('k')
                .and_then(|r| r.split_once('_'))
                .ok_or_else(bad)?;
            let upper = upper.parse::<i64>().map_err(|_| bad())?;
            let offset = offset.parse::<i64>().map_err(|_| bad())?;
            if offset < 0 {
                return Err(bad());
            }
            Ok(SearchCursor::Rank { upper, offset })
        }
        (Some(t), false) => {
            let before = t
                .strip_prefix('r')
                .and_then(|r| r.parse::<i64>().ok())
                .ok_or_else(bad)?;
            Ok(SearchCursor::Recent { before })
        }
    }
}

/// The `next_batch` token of a cursor, read back by [`parse_cursor`].
pub fn cursor_token(c: SearchCursor) -> String {
    match c {
        SearchCursor::Rank { upper, offset } => format!("k{upper}_{offset}"),
        SearchCursor::Recent { before } => format!("r{before}"),
    }
}

/// The cursor just after `row`, the `index`-th row read from `from`.
fn advance(from: SearchCursor, index: usize, row: &EventRow) -> SearchCursor {
    match from {
        SearchCursor::Rank { upper, offset } => SearchCursor::Rank {
            upper,
            // The offset comes from the client's `next_batch`: saturate near i64::MAX.
            offset: offset.saturating_add(index as i64).saturating_add(1),
        },
        SearchCursor::Recent { .. } => SearchCursor::Recent {
            before: row.stream_ordering,
        },
    }
}

impl RoomsFace<'_> {
    /// `POST /search`.
    pub async fn search(
        self,
        user: &UserId,
        device: &str,
        next_batch: Option<&str>,
        req: SearchRequest,
    ) -> Result<Value> {
        self.ratelimit
            .check("search", user.as_str(), self.config.rate_limits.search)?;
        let Some(c) = req.search_categories.room_events else {
            return Ok(json!({ "search_categories": {} }));
        };
        let room_events = self.search_room_events(user, device, next_batch, c).await?;
        Ok(json!({ "search_categories": { "room_events": room_events } }))
    }

    async fn search_room_events(
        self,
        user: &UserId,
        device: &str,
        next_batch: Option<&str>,
        c: RoomEventsCriteria,
    ) -> Result<Value> {
        let (keys, rank_order, f) = checked_criteria(&c)?;
        let limit = f.limit.unwrap_or(DEFAULT_LIMIT).clamp(1, MAX_LIMIT);
        let words = search_words(&c.search_term);
        let start = parse_cursor(next_batch, rank_order, self.events_stream.current())?;
        let not_rooms = f.not_rooms.clone().unwrap_or_default();
        let mut q = SearchQuery {
            user_id: user.as_str(),
            rooms: f.rooms.as_deref(),
            not_rooms: &not_rooms,
            keys: &keys,
            words: &words,
            cursor: start,
        };
        let (page, next) = self.search_page(user, &mut q, &f, limit).await?;
        let count = self.search_count(user, &mut q, start, &f).await?;
        let rows: Vec<EventRow> = page.iter().map(|(_, r)| r.clone()).collect();
        let results = self
            .search_results(user, device, &page, &rows, c.event_context.as_ref())
            .await?;
        let mut out = json!({
            "count": count,
            "highlights": words,
            "results": results,
        });
        if let Some(n) = next {
            out["next_batch"] = json!(cursor_token(n));
        }
        if c.include_state == Some(true) {
            out["state"] = self.search_state(&rows).await?;
        }
        if let Some(g) = &c.groupings {
            out["groups"] = search_groups(g, &rows)?;
        }
        Ok(out)
    }

    /// One page of visible matches: the index is read in rounds until `limit` events the user
    /// may see are found (history visibility may hide some), with the cursor after the page
    /// when more may follow.
    async fn search_page(
        self,
        user: &UserId,
        q: &mut SearchQuery<'_>,
        f: &RoomEventFilter,
        limit: i64,
    ) -> Result<(Vec<(f64, EventRow)>, Option<SearchCursor>)> {
        let mut page: Vec<(f64, EventRow)> = vec![];
        let mut next: Option<SearchCursor> = None;
        let batch = limit.max(20);
        for round in 0..MAX_ROUNDS {
            let positions = self.db.search_events(q, batch).await?;
            let exhausted = (positions.len() as i64) < batch;
            let candidates: Vec<EventRow> = positions.iter().map(|(_, r)| r.clone()).collect();
            let visible: HashSet<String> = self
                .filter_visible(user, candidates)
                .await?
                .into_iter()
                .filter(|r| f.allows(r))
                .map(|r| r.event_id)
                .collect();
            let mut cursor = q.cursor;
            let mut stopped_at = None;
            for (i, (rank, row)) in positions.iter().enumerate() {
                cursor = advance(q.cursor, i, row);
                if visible.contains(&row.event_id) {
                    page.push((*rank, row.clone()));
                    if page.len() as i64 == limit {
                        stopped_at = Some(i);
                        break;
                    }
                }
            }
            if let Some(i) = stopped_at {
                // More may follow: the rest of this batch, or what the index holds beyond it.
                if i + 1 < positions.len() || !exhausted {
                    next = Some(cursor);
                }
                break;
            }
            if exhausted {
                break;
            }
            q.cursor = cursor;
            if round + 1 == MAX_ROUNDS {
                next = Some(cursor);
            }
        }
        Ok((page, next))
    }

    /// The count: what the user may see among the first matches (up to [`COUNT_CAP`]),
    /// `contains_url` aside.
    async fn search_count(
        self,
        user: &UserId,
        q: &mut SearchQuery<'_>,
        start: SearchCursor,
        f: &RoomEventFilter,
    ) -> Result<usize> {
        q.cursor = match start {
            SearchCursor::Rank { upper, .. } => SearchCursor::Rank { upper, offset: 0 },
            SearchCursor::Recent { .. } => SearchCursor::Recent { before: i64::MAX },
        };
        let count_filter = RoomEventFilter {
            contains_url: None,
            ..f.clone()
        };
        let candidates = self.db.search_candidates(q, COUNT_CAP).await?;
        Ok(self
            .filter_visible(user, candidates)
            .await?
            .iter()
            .filter(|r| count_filter.allows(r))
            .count())
    }

    /// The page's results as the client sees them: rank, event, and its context if asked.
    async fn search_results(
        self,
        user: &UserId,
        device: &str,
        page: &[(f64, EventRow)],
        rows: &[EventRow],
        event_context: Option<&EventContext>,
    ) -> Result<Vec<Value>> {
        let viewer = Some((user, device));
        let formatted = self.format_events(rows, viewer, Format::Client).await?;
        let mut by_id: HashMap<String, Value> = formatted
            .into_iter()
            .filter_map(|v| Some((v["event_id"].as_str()?.to_owned(), v)))
            .collect();
        let contexts = match event_context {
            Some(ctx) => Some(self.search_contexts(user, device, rows, ctx).await?),
            None => None,
        };
        let mut results = vec![];
        for (i, (rank, row)) in page.iter().enumerate() {
            let Some(ev) = by_id.remove(&row.event_id) else {
                continue;
            };
            let mut r = json!({ "rank": rank, "result": ev });
            if let Some(ctx) = contexts.as_ref().and_then(|c| c.get(i)) {
                r["context"] = ctx.clone();
            }
            results.push(r);
        }
        Ok(results)
    }

    /// `include_state`: the current state of the rooms of the results, by room.
    async fn search_state(self, rows: &[EventRow]) -> Result<Value> {
        let mut rooms: Vec<String> = rows.iter().map(|r| r.room_id.clone()).collect();
        rooms.sort();
        rooms.dedup();
        let state = self.db.current_state_events(&rooms, None).await?;
        let formatted = self.format_events(&state, None, Format::Client).await?;
        let mut map: HashMap<String, Vec<Value>> = HashMap::new();
        for ev in formatted {
            if let Some(room) = ev["room_id"].as_str().map(str::to_owned) {
                map.entry(room).or_default().push(ev);
            }
        }
        Ok(json!(map))
    }

    /// The context of each result, in batch: events around every result (two queries), their
    /// visibility (one pass), their senders' profiles (one query).
    async fn search_contexts(
        self,
        user: &UserId,
        device: &str,
        rows: &[EventRow],
        ctx: &EventContext,
    ) -> Result<Vec<Value>> {
        let before = ctx.before_limit.unwrap_or(5).clamp(0, MAX_CONTEXT);
        let after = ctx.after_limit.unwrap_or(5).clamp(0, MAX_CONTEXT);
        let anchors: Vec<(String, i64)> = rows
            .iter()
            .map(|r| (r.room_id.clone(), r.stream_ordering))
            .collect();
        let around = self.db.events_around(&anchors, before, after).await?;
        let mut all: Vec<EventRow> = vec![];
        let mut seen = HashSet::new();
        for (b, a) in &around {
            for r in b.iter().chain(a) {
                if seen.insert(r.event_id.clone()) {
                    all.push(r.clone());
                }
            }
        }
        let visible = self.filter_visible(user, all).await?;
        let visible_ids: HashSet<&str> = visible.iter().map(|r| r.event_id.as_str()).collect();
        let formatted: HashMap<String, Value> = self
            .format_events(&visible, Some((user, device)), Format::Client)
            .await?
            .into_iter()
            .filter_map(|v| Some((v["event_id"].as_str()?.to_owned(), v)))
            .collect();

        // Profiles of the senders, from their current member events in each room.
        let mut profiles: HashMap<(String, String), Value> = HashMap::new();
        if ctx.include_profile == Some(true) {
            let mut rooms: Vec<String> = rows.iter().map(|r| r.room_id.clone()).collect();
            rooms.sort();
            rooms.dedup();
            let mut senders: Vec<String> = rows
                .iter()
                .chain(visible.iter())
                .map(|r| r.sender.clone())
                .collect();
            senders.sort();
            senders.dedup();
            for m in self.db.current_members(&rooms, &senders).await? {
                let content = serde_json::from_str::<Value>(&m.json)
                    .ok()
                    .and_then(|mut v| v.get_mut("content").map(Value::take))
                    .unwrap_or_default();
                let mut p = json!({});
                for f in ["displayname", "avatar_url"] {
                    if let Some(v) = content.get(f).filter(|v| v.is_string()) {
                        p[f] = v.clone();
                    }
                }
                if let Some(k) = m.state_key {
                    profiles.insert((m.room_id, k), p);
                }
            }
        }

        let mut out = vec![];
        for (row, (b, a)) in rows.iter().zip(&around) {
            let pick = |list: &[EventRow]| -> Vec<Value> {
                list.iter()
                    .filter(|r| visible_ids.contains(r.event_id.as_str()))
                    .filter_map(|r| formatted.get(&r.event_id).cloned())
                    .collect()
            };
            // events_before is newest first (as Synapse sends it).
            let mut events_before = pick(b);
            events_before.reverse();
            let events_after = pick(a);
            let start = b
                .first()
                .map(|r| r.stream_ordering - 1)
                .unwrap_or(row.stream_ordering - 1);
            let end = a
                .last()
                .map(|r| r.stream_ordering)
                .unwrap_or(row.stream_ordering);
            let mut v = json!({
                "events_before": events_before,
                "events_after": events_after,
                "start": format!("t{start}"),
                "end": format!("t{end}"),
            });
            if ctx.include_profile == Some(true) {
                let mut info = Map::new();
                for r in b.iter().chain(a).chain(std::iter::once(row)) {
                    if r.event_id != row.event_id && !visible_ids.contains(r.event_id.as_str()) {
                        continue;
                    }
                    if let Some(p) = profiles.get(&(r.room_id.clone(), r.sender.clone())) {
                        info.insert(r.sender.clone(), p.clone());
                    }
                }
                v["profile_info"] = Value::Object(info);
            }
            out.push(v);
        }
        Ok(out)
    }
}

/// The criteria checked: a term of bounded size, known keys (all of them by default), the
/// order (rank unless `recent`), a filter naming a bounded number of rooms.
fn checked_criteria(c: &RoomEventsCriteria) -> Result<(Vec<&'static str>, bool, RoomEventFilter)> {
    if c.search_term.trim().is_empty() {
        return Err(Error::invalid_param("search_term must not be empty"));
    }
    if c.search_term.len() > MAX_TERM {
        return Err(Error::invalid_param(format!(
            "search_term is longer than {MAX_TERM} bytes"
        )));
    }
    let mut keys: Vec<&'static str> = vec![];
    for k in c.keys.iter().flatten() {
        let known = INDEXED
            .iter()
            .find(|(_, key, _)| key == k)
            .ok_or_else(|| Error::invalid_param(format!("Unknown search key {k:?}")))?;
        if !keys.contains(&known.1) {
            keys.push(known.1);
        }
    }
    if keys.is_empty() {
        keys = INDEXED.iter().map(|(_, k, _)| *k).collect();
    }
    let rank_order = match c.order_by.as_deref() {
        None | Some("rank") => true,
        Some("recent") => false,
        Some(_) => return Err(Error::invalid_param("order_by must be rank or recent")),
    };
    let f = c.filter.clone().unwrap_or_default();
    let too_many = |r: &Option<Vec<String>>| r.as_ref().is_some_and(|r| r.len() > MAX_FILTER_ROOMS);
    if too_many(&f.rooms) || too_many(&f.not_rooms) {
        return Err(Error::invalid_param(format!(
            "At most {MAX_FILTER_ROOMS} rooms in a search filter"
        )));
    }
    Ok((keys, rank_order, f))
}

/// `groupings`: the results' event ids by room or by sender, in order of first appearance.
fn search_groups(g: &Groupings, rows: &[EventRow]) -> Result<Value> {
    let mut groups = Map::new();
    for key in g.group_by.iter().filter_map(|g| g.key.as_deref()) {
        let field: fn(&EventRow) -> &str = match key {
            "room_id" => |r| r.room_id.as_str(),
            "sender" => |r| r.sender.as_str(),
            _ => {
                return Err(Error::invalid_param(
                    "group_by key must be room_id or sender",
                ))
            }
        };
        let mut by: Map<String, Value> = Map::new();
        for r in rows {
            let n = by.len();
            let entry = by
                .entry(field(r).to_owned())
                .or_insert_with(|| json!({ "results": [], "order": n + 1 }));
            if let Some(a) = entry["results"].as_array_mut() {
                a.push(json!(r.event_id));
            }
        }
        groups.insert(key.to_owned(), Value::Object(by));
    }
    Ok(Value::Object(groups))
}
