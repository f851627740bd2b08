//! Media as the admin API sees them (Synapse's `media.py` and `statistics.py`): one media's
//! details, a user's uploads, quarantine (by id, room or user) and protection, deletions (one,
//! by age and size, a user's) and the purge of the remote cache. Deletions run as admin jobs,
//! awaited by the request (Synapse answers with what was deleted) but recorded, logged with
//! their progress and resumed after a restart like the others.

use ruma::{RoomId, UserId};
use serde_json::{json, Value};

use super::{
    jobs::{Progress, DELETE_MEDIA, PURGE_REMOTE_MEDIA},
    AdminFace, Page,
};
use crate::{
    store::admin_media::{media_order_column, AdminMediaRow, MediaStatsQuery},
    Error, Result,
};

/// Synapse refuses a `before_ts` that looks like seconds, not milliseconds.
const MIN_BEFORE_TS: i64 = 30_000_000_000;

/// `GET`/`DELETE /users/{id}/media`, `GET /statistics/users/media`.
#[derive(Debug, Clone, Default)]
pub struct MediaListParams {
    pub from: Option<i64>,
    pub limit: Option<i64>,
    pub order_by: Option<String>,
    pub dir: Option<String>,
    pub from_ts: Option<i64>,
    pub until_ts: Option<i64>,
    pub search_term: Option<String>,
}

/// `POST /media/delete`.
#[derive(Debug, Clone, Copy)]
pub struct DeleteOldMedia {
    pub before_ts: i64,
    pub size_gt: i64,
    pub keep_profiles: bool,
}

fn user_media_entry(m: &AdminMediaRow) -> Value {
    json!({
        "media_id": m.media_id,
        "media_type": m.content_type,
        "media_length": m.size,
        "upload_name": m.filename,
        "created_ts": m.created_ts,
        "last_access_ts": m.last_access_ts,
        "quarantined_by": m.quarantined_by,
        "safe_from_quarantine": m.safe_from_quarantine == 1,
    })
}

/// The `mxc://server/id` URIs an event's content names (a file, an image and its thumbnail).
fn event_media(content: &Value, out: &mut Vec<String>) {
    for uri in [
        &content["url"],
        &content["info"]["thumbnail_url"],
        &content["file"]["url"],
        &content["info"]["thumbnail_file"]["url"],
    ] {
        if let Some(u) = uri.as_str() {
            out.push(u.to_owned());
        }
    }
}

/// `mxc://server/id` as (server, id).
fn parse_mxc(uri: &str) -> Option<(&str, &str)> {
    let rest = uri.strip_prefix("mxc://")?;
    let (server, id) = rest.split_once('/')?;
    (!server.is_empty() && crate::services::media::remote::valid_media_id(id))
        .then_some((server, id))
}

impl AdminFace<'_> {
    fn check_local_server(self, server: &str) -> Result<()> {
        if server != self.server_name.as_str() {
            return Err(Error::invalid_param("Can only delete local media"));
        }
        Ok(())
    }

    /// `GET /v1/media/{server}/{id}`.
    pub async fn media_info(self, server: &str, media_id: &str) -> Result<Value> {
        let not_found = || Error::not_found("Unknown media");
        let info = if server == self.server_name.as_str() {
            let m = self
                .db
                .admin_local_media(media_id)
                .await?
                .ok_or_else(not_found)?;
            json!({
                "media_origin": server,
                "user_id": m.uploader,
                "media_id": m.media_id,
                "media_type": m.content_type,
                "media_length": m.size,
                "upload_name": m.filename,
                "created_ts": m.created_ts,
                "last_access_ts": m.last_access_ts,
                "quarantined_by": m.quarantined_by,
                "authenticated": true,
                "safe_from_quarantine": m.safe_from_quarantine == 1,
                "sha256": m.sha256,
            })
        } else {
            let m = self
                .db
                .admin_remote_media(server, media_id)
                .await?
                .filter(|m| !m.sha256.is_empty())
                .ok_or_else(not_found)?;
            json!({
                "media_origin": m.origin,
                "user_id": null,
                "media_id": m.media_id,
                "media_type": m.content_type,
                "media_length": m.size,
                "upload_name": m.filename,
                "created_ts": m.fetched_ts,
                "last_access_ts": m.last_access_ts,
                "quarantined_by": m.quarantined_by,
                "authenticated": true,
                "safe_from_quarantine": false,
                "sha256": m.sha256,
            })
        };
        Ok(json!({ "media_info": info }))
    }

    /// One user's uploads, a page at a time (`GET /v1/users/{id}/media`).
    pub async fn user_media(
        self,
        user: &UserId,
        p: &MediaListParams,
    ) -> Result<(Vec<AdminMediaRow>, Page, i64)> {
        self.local_user(user)?;
        if !self.db.user_exists(user.localpart()).await? {
            return Err(Error::not_found("Unknown user"));
        }
        let page = Page::new(p.from, p.limit, 100)?;
        let column = media_order_column(p.order_by.as_deref().unwrap_or("created_ts"))
            .ok_or_else(|| Error::invalid_param("Unknown value for order_by"))?;
        let back = super::backwards(p.dir.as_deref())?;
        let (rows, total) = self
            .db
            .user_media(user.as_str(), column, back, page.from, page.limit)
            .await?;
        Ok((rows, page, total))
    }

    pub async fn user_media_page(self, user: &UserId, p: &MediaListParams) -> Result<Value> {
        let (rows, page, total) = self.user_media(user, p).await?;
        let mut out = json!({
            "media": rows.iter().map(user_media_entry).collect::<Vec<_>>(),
            "total": total,
        });
        if let Some(next) = page.next(rows.len(), total) {
            out["next_token"] = json!(next);
        }
        Ok(out)
    }

    /// Quarantines (`by` set) or releases one media.
    pub async fn quarantine_media(
        self,
        by: Option<&UserId>,
        server: &str,
        media_id: &str,
    ) -> Result<()> {
        if !crate::services::media::remote::valid_media_id(media_id) || server.is_empty() {
            return Err(Error::invalid_param("Invalid media id"));
        }
        let by = by.map(|u| u.as_str());
        if server == self.server_name.as_str() {
            self.media()
                .set_quarantine(&[media_id.to_owned()], &[], by)
                .await?;
        } else {
            self.media()
                .set_quarantine(&[], &[(server.to_owned(), media_id.to_owned())], by)
                .await?;
        }
        Ok(())
    }

    /// `GET /v1/media/quarantine_changes`: the changes after `from`, oldest first, 100 a page;
    /// `next_batch` is where the next page starts.
    pub async fn quarantine_changes(self, from: Option<i64>) -> Result<Value> {
        let from = from.unwrap_or(0);
        let (rows, max) = self.db.quarantine_changes(from.max(0), 100).await?;
        if from < 0 || from > max {
            return Err(Error::invalid_param(
                "Query parameter from must be a positive integer and behind the current stream position.",
            ));
        }
        let next = rows.last().map_or(from, |r| r.0);
        let changes: Vec<Value> = rows
            .into_iter()
            .map(|(_, origin, media_id, q)| {
                json!({
                    "origin": origin.unwrap_or_else(|| self.server_name.to_string()),
                    "media_id": media_id,
                    "quarantined": q == 1,
                })
            })
            .collect();
        Ok(json!({ "next_batch": next, "changes": changes }))
    }

    /// Quarantines every media a local user uploaded (those protected excepted).
    pub async fn quarantine_user_media(self, by: &UserId, user: &UserId) -> Result<u64> {
        self.local_user(user)?;
        let ids = self.db.user_media_ids(user.as_str()).await?;
        self.media()
            .set_quarantine(&ids, &[], Some(by.as_str()))
            .await
    }

    /// The media a room's (unencrypted) events name: this server's and others'.
    pub async fn room_media(self, room: &RoomId) -> Result<(Vec<String>, Vec<String>)> {
        if self.db.room_version(room.as_str()).await?.is_none() {
            return Err(Error::not_found("Room not found"));
        }
        let mut uris = vec![];
        for json in self.db.room_events_with_media(room.as_str()).await? {
            if let Ok(ev) = serde_json::from_str::<Value>(&json) {
                event_media(&ev["content"], &mut uris);
            }
        }
        uris.sort();
        uris.dedup();
        let (mut local, mut remote) = (vec![], vec![]);
        for uri in uris {
            match parse_mxc(&uri) {
                Some((server, _)) if server == self.server_name.as_str() => local.push(uri),
                Some(_) => remote.push(uri),
                None => {}
            }
        }
        Ok((local, remote))
    }

    /// Quarantines every media a room's events name.
    pub async fn quarantine_room_media(self, by: &UserId, room: &RoomId) -> Result<u64> {
        let (local, remote) = self.room_media(room).await?;
        let local: Vec<String> = local
            .iter()
            .filter_map(|u| parse_mxc(u).map(|(_, id)| id.to_owned()))
            .collect();
        let remote: Vec<(String, String)> = remote
            .iter()
            .filter_map(|u| parse_mxc(u).map(|(s, id)| (s.to_owned(), id.to_owned())))
            .collect();
        self.media()
            .set_quarantine(&local, &remote, Some(by.as_str()))
            .await
    }

    /// Protects a local media from quarantine (or stops protecting it).
    pub async fn protect_media(self, media_id: &str, protect: bool) -> Result<()> {
        if !self.media().set_protected(media_id, protect).await? {
            return Err(Error::not_found("Unknown media"));
        }
        Ok(())
    }

    /// `DELETE /v1/media/{server}/{id}`.
    pub async fn delete_one_media(self, server: &str, media_id: &str) -> Result<Value> {
        self.check_local_server(server)?;
        if self.db.admin_local_media(media_id).await?.is_none() {
            return Err(Error::not_found("Unknown media"));
        }
        self.run_job_inline(DELETE_MEDIA, media_id, json!({ "ids": [media_id] }))
            .await
    }

    /// `POST /v1/media/delete`: local media not served since `before_ts`, at least `size_gt`
    /// bytes, not protected, and (`keep_profiles`) not a profile or room avatar.
    pub async fn delete_old_media(self, server: Option<&str>, d: DeleteOldMedia) -> Result<Value> {
        if let Some(s) = server {
            self.check_local_server(s)?;
        }
        check_before_ts(d.before_ts)?;
        if d.size_gt < 0 {
            return Err(Error::invalid_param(
                "Query parameter size_gt must be a string representing a positive integer.",
            ));
        }
        let params = json!({
            "before_ts": d.before_ts, "size_gt": d.size_gt, "keep_profiles": d.keep_profiles,
        });
        self.run_job_inline(DELETE_MEDIA, self.server_name.as_str(), params)
            .await
    }

    /// `DELETE /v1/users/{id}/media`: the page of the user's uploads the parameters select.
    pub async fn delete_user_media(self, user: &UserId, p: &MediaListParams) -> Result<Value> {
        let (rows, _, _) = self.user_media(user, p).await?;
        let ids: Vec<String> = rows.into_iter().map(|m| m.media_id).collect();
        self.run_job_inline(DELETE_MEDIA, user.as_str(), json!({ "ids": ids }))
            .await
    }

    /// `POST /v1/purge_media_cache`: cached remote media not served since `before_ts`.
    pub async fn purge_remote_media(self, before_ts: i64) -> Result<Value> {
        check_before_ts(before_ts)?;
        self.run_job_inline(
            PURGE_REMOTE_MEDIA,
            "remote",
            json!({ "before_ts": before_ts }),
        )
        .await
    }

    /// The ids a `delete_media` job deletes: listed, or chosen by age and size.
    async fn media_to_delete(self, params: &Value) -> Result<Vec<String>> {
        if let Some(ids) = params["ids"].as_array() {
            return Ok(ids
                .iter()
                .filter_map(|v| v.as_str().map(str::to_owned))
                .collect());
        }
        let before = params["before_ts"].as_i64().unwrap_or(0);
        let size_gt = params["size_gt"].as_i64().unwrap_or(0);
        let mut ids = self.db.local_media_unused_since(before, size_gt).await?;
        if params["keep_profiles"].as_bool().unwrap_or(true) {
            let avatars: std::collections::HashSet<String> = self
                .db
                .avatar_uris()
                .await?
                .iter()
                .filter_map(|u| match parse_mxc(u) {
                    Some((s, id)) if s == self.server_name.as_str() => Some(id.to_owned()),
                    _ => None,
                })
                .collect();
            ids.retain(|id| !avatars.contains(id));
        }
        Ok(ids)
    }

    /// The `delete_media` job, in chunks (`media().delete_local` removes rows and files).
    pub(super) async fn run_media_delete(self, progress: &mut Progress) -> Result<Value> {
        let params: Value = serde_json::from_str(&progress.row.params).unwrap_or_default();
        let ids = self.media_to_delete(&params).await?;
        progress.total(ids.len() as i64);
        let mut deleted = vec![];
        for chunk in ids.chunks(100) {
            deleted.extend(self.media().delete_local(chunk).await?);
            progress.advance(self, chunk.len() as i64).await?;
        }
        Ok(json!({ "deleted_media": deleted, "total": deleted.len() }))
    }

    /// The `purge_remote_media_cache` job.
    pub(super) async fn run_remote_purge(self, progress: &mut Progress) -> Result<Value> {
        let params: Value = serde_json::from_str(&progress.row.params).unwrap_or_default();
        let before = params["before_ts"].as_i64().unwrap_or(0);
        let n = self.media().purge_remote_cache(before).await?;
        progress.total(n as i64);
        progress.advance(self, n as i64).await?;
        Ok(json!({ "deleted": n }))
    }

    /// `GET /v1/statistics/users/media`.
    pub async fn media_statistics(self, p: &MediaListParams) -> Result<Value> {
        let page = Page::new(p.from, p.limit, 100)?;
        let order_by = match p.order_by.as_deref().unwrap_or("user_id") {
            "user_id" => "user_id",
            "displayname" => "displayname",
            "media_length" => "media_length",
            "media_count" => "media_count",
            _ => return Err(Error::invalid_param("Unknown value for order_by")),
        };
        if p.from_ts.is_some_and(|t| t < 0) {
            return Err(Error::invalid_param(
                "Query parameter from_ts must be a string representing a positive integer.",
            ));
        }
        if let Some(until) = p.until_ts {
            if until < 0 {
                return Err(Error::invalid_param(
                    "Query parameter until_ts must be a string representing a positive integer.",
                ));
            }
            if p.from_ts.is_some_and(|f| until <= f) {
                return Err(Error::invalid_param(
                    "Query parameter until_ts must be greater than from_ts.",
                ));
            }
        }
        if p.search_term.as_deref() == Some("") {
            return Err(Error::invalid_param(
                "Query parameter search_term cannot be empty.",
            ));
        }
        let q = MediaStatsQuery {
            order_by,
            descending: super::backwards(p.dir.as_deref())?,
            from: page.from,
            limit: page.limit,
            from_ts: p.from_ts,
            until_ts: p.until_ts,
            search: p
                .search_term
                .as_deref()
                .map(|t| format!("%{}%", crate::store::directory::like_escape(t))),
        };
        let (rows, total) = self.db.media_stats(&q).await?;
        let users: Vec<Value> = rows
            .iter()
            .map(|r| {
                json!({
                    "user_id": r.user_id, "displayname": r.displayname,
                    "media_count": r.media_count, "media_length": r.media_length,
                })
            })
            .collect();
        let mut out = json!({ "users": users, "total": total });
        if let Some(next) = page.next(rows.len(), total) {
            out["next_token"] = json!(next);
        }
        Ok(out)
    }

    /// `GET /v1/statistics/database/rooms`: the ten largest rooms (the length of their events'
    /// JSON, the bulk of what a room stores).
    pub async fn room_sizes(self) -> Result<Value> {
        let rooms: Vec<Value> = self
            .db
            .largest_rooms(10)
            .await?
            .into_iter()
            .map(|(room_id, size)| json!({ "room_id": room_id, "estimated_size": size }))
            .collect();
        Ok(json!({ "rooms": rooms }))
    }
}

fn check_before_ts(before_ts: i64) -> Result<()> {
    if before_ts < 0 {
        return Err(Error::invalid_param(
            "Query parameter before_ts must be a positive integer.",
        ));
    }
    if before_ts < MIN_BEFORE_TS {
        return Err(Error::invalid_param(
            "Query parameter before_ts you provided is from the year 1970. Double check that you are providing a timestamp in milliseconds.",
        ));
    }
    Ok(())
}
