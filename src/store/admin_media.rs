//! The media admin API's queries: media of a user, quarantine and protection, deletions of
//! local media and of the remote cache, statistics. Files are content-addressed, so a file is
//! removed only when no row names its SHA-256 any more (see `sha256_in_use`).

use sqlx::Row;

use super::{placeholders, Db};

/// A local media as the admin API shows it.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct AdminMediaRow {
    pub media_id: String,
    pub uploader: String,
    pub created_ts: i64,
    pub content_type: Option<String>,
    pub filename: Option<String>,
    pub size: Option<i64>,
    pub sha256: Option<String>,
    pub quarantined: i64,
    pub quarantined_by: Option<String>,
    pub safe_from_quarantine: i64,
    pub last_access_ts: Option<i64>,
}

const MEDIA_COLS: &str = "media_id, uploader, created_ts, content_type, filename, size, sha256, \
     quarantined, quarantined_by, safe_from_quarantine, last_access_ts";

/// A cached remote media as the admin API shows it.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct AdminRemoteMediaRow {
    pub origin: String,
    pub media_id: String,
    pub content_type: Option<String>,
    pub filename: Option<String>,
    pub size: i64,
    pub sha256: String,
    pub fetched_ts: i64,
    pub quarantined: i64,
    pub quarantined_by: Option<String>,
    pub last_access_ts: Option<i64>,
}

/// The columns `GET /users/{id}/media` may sort by (Synapse's names -> ours).
pub fn media_order_column(order_by: &str) -> Option<&'static str> {
    Some(match order_by {
        "media_id" => "media_id",
        "upload_name" => "filename",
        "created_ts" => "created_ts",
        "last_access_ts" => "last_access_ts",
        "media_length" => "size",
        "media_type" => "content_type",
        "quarantined_by" => "quarantined_by",
        "safe_from_quarantine" => "safe_from_quarantine",
        _ => return None,
    })
}

/// Per-user media statistics (`GET /statistics/users/media`).
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct MediaStatsRow {
    pub user_id: String,
    pub displayname: Option<String>,
    pub media_count: i64,
    pub media_length: i64,
}

#[derive(Debug, Clone, Default)]
pub struct MediaStatsQuery {
    /// `user_id`, `displayname`, `media_length` or `media_count`.
    pub order_by: &'static str,
    pub descending: bool,
    pub from: i64,
    pub limit: i64,
    pub from_ts: Option<i64>,
    pub until_ts: Option<i64>,
    /// A LIKE pattern, matched against the user id and the display name.
    pub search: Option<String>,
}

impl Db {
    pub async fn admin_local_media(&self, media_id: &str) -> sqlx::Result<Option<AdminMediaRow>> {
        sqlx::query_as(&format!(
            "SELECT {MEDIA_COLS} FROM media WHERE media_id = $1"
        ))
        .bind(media_id)
        .fetch_all(&self.pool)
        .await
        .map(super::first)
    }

    pub async fn admin_remote_media(
        &self,
        origin: &str,
        media_id: &str,
    ) -> sqlx::Result<Option<AdminRemoteMediaRow>> {
        sqlx::query_as(
            "SELECT origin, media_id, content_type, filename, size, sha256, fetched_ts, quarantined, \
             quarantined_by, last_access_ts FROM remote_media WHERE origin = $1 AND media_id = $2",
        )
        .bind(origin)
        .bind(media_id)
        .fetch_all(&self.pool)
        .await
        .map(super::first)
    }

    /// A page of one user's uploads and how many there are in all.
    pub async fn user_media(
        &self,
        user_id: &str,
        order_column: &str,
        descending: bool,
        from: i64,
        limit: i64,
    ) -> sqlx::Result<(Vec<AdminMediaRow>, i64)> {
        let dir = if descending { "DESC" } else { "ASC" };
        let rows = sqlx::query_as(&format!(
            "SELECT {MEDIA_COLS} FROM media WHERE uploader = $1 \
             ORDER BY {order_column} {dir}, media_id {dir} LIMIT $2 OFFSET $3"
        ))
        .bind(user_id)
        .bind(limit)
        .bind(from)
        .fetch_all(&self.pool)
        .await?;
        let total: i64 = sqlx::query("SELECT COUNT(*) FROM media WHERE uploader = $1")
            .bind(user_id)
            .fetch_all(&self.pool)
            .await
            .and_then(super::one)?
            .try_get(0)?;
        Ok((rows, total))
    }

    /// The ids of every media a user uploaded.
    pub async fn user_media_ids(&self, user_id: &str) -> sqlx::Result<Vec<String>> {
        let rows: Vec<(String,)> = sqlx::query_as("SELECT media_id FROM media WHERE uploader = $1")
            .bind(user_id)
            .fetch_all(&self.pool)
            .await?;
        Ok(rows.into_iter().map(|r| r.0).collect())
    }

    /// Quarantines (`by` set) or releases (`by` None) local and remote media, and every other
    /// copy of the same content (same SHA-256), so the bytes cannot be fetched under another
    /// id. Media protected from quarantine are left alone. A remote media not cached here gets
    /// a placeholder row, so it is never fetched while quarantined (and the placeholder goes
    /// when it is released). Returns how many media changed.
    pub async fn set_quarantine(
        &self,
        local: &[String],
        remote: &[(String, String)],
        by: Option<&str>,
    ) -> sqlx::Result<u64> {
        let mut tx = self.begin_write().await?;
        let mut shas: Vec<String> = vec![];
        let mut placeholders_added: Vec<(Option<String>, String)> = vec![];
        for chunk in local.chunks(500) {
            let sql = format!(
                "SELECT sha256 FROM media WHERE sha256 IS NOT NULL AND media_id IN ({})",
                placeholders(1, chunk.len())
            );
            let mut q = sqlx::query_as::<_, (String,)>(&sql);
            for id in chunk {
                q = q.bind(id);
            }
            shas.extend(q.fetch_all(&mut *tx.tx).await?.into_iter().map(|r| r.0));
        }
        for (origin, id) in remote {
            let row: Option<(String,)> = sqlx::query_as(
                "SELECT sha256 FROM remote_media WHERE origin = $1 AND media_id = $2",
            )
            .bind(origin)
            .bind(id)
            .fetch_all(&mut *tx.tx)
            .await
            .map(super::first)?;
            match row {
                Some((sha,)) => shas.push(sha),
                None if by.is_some() => {
                    sqlx::query(
                        "INSERT INTO remote_media (origin, media_id, size, sha256, fetched_ts, quarantined, quarantined_by) \
                         VALUES ($1, $2, 0, '', 0, 1, $3)",
                    )
                    .bind(origin)
                    .bind(id)
                    .bind(by)
                    .execute(&mut *tx.tx)
                    .await?;
                    placeholders_added.push((Some(origin.clone()), id.clone()));
                }
                None => {}
            }
        }
        shas.retain(|s| !s.is_empty());
        shas.sort();
        shas.dedup();
        let flag = i64::from(by.is_some());
        let guard = if by.is_some() {
            " AND safe_from_quarantine = 0"
        } else {
            ""
        };
        // (origin — None for this server's —, media id) of every media whose mark changed.
        let mut changes: Vec<(Option<String>, String)> = placeholders_added;
        for chunk in local.chunks(500) {
            let sql = format!(
                "UPDATE media SET quarantined = $1, quarantined_by = $2 \
                 WHERE quarantined <> $1{guard} AND media_id IN ({}) RETURNING media_id",
                placeholders(3, chunk.len())
            );
            let mut q = sqlx::query_as::<_, (String,)>(&sql).bind(flag).bind(by);
            for id in chunk {
                q = q.bind(id);
            }
            changes.extend(
                q.fetch_all(&mut *tx.tx)
                    .await?
                    .into_iter()
                    .map(|r| (None, r.0)),
            );
        }
        for (origin, id) in remote {
            let rows: Vec<(String, String)> = sqlx::query_as(
                "UPDATE remote_media SET quarantined = $1, quarantined_by = $2 \
                 WHERE quarantined <> $1 AND origin = $3 AND media_id = $4 RETURNING origin, media_id",
            )
            .bind(flag)
            .bind(by)
            .bind(origin)
            .bind(id)
            .fetch_all(&mut *tx.tx)
            .await?;
            changes.extend(rows.into_iter().map(|(o, m)| (Some(o), m)));
        }
        for chunk in shas.chunks(500) {
            let list = placeholders(3, chunk.len());
            let sql = format!(
                "UPDATE media SET quarantined = $1, quarantined_by = $2 \
                 WHERE quarantined <> $1{guard} AND sha256 IN ({list}) RETURNING media_id"
            );
            let mut q = sqlx::query_as::<_, (String,)>(&sql).bind(flag).bind(by);
            for sha in chunk {
                q = q.bind(sha);
            }
            changes.extend(
                q.fetch_all(&mut *tx.tx)
                    .await?
                    .into_iter()
                    .map(|r| (None, r.0)),
            );
            let sql = format!(
                "UPDATE remote_media SET quarantined = $1, quarantined_by = $2 \
                 WHERE quarantined <> $1 AND sha256 IN ({list}) RETURNING origin, media_id"
            );
            let mut q = sqlx::query_as::<_, (String, String)>(&sql)
                .bind(flag)
                .bind(by);
            for sha in chunk {
                q = q.bind(sha);
            }
            changes.extend(
                q.fetch_all(&mut *tx.tx)
                    .await?
                    .into_iter()
                    .map(|(o, m)| (Some(o), m)),
            );
        }
        let now = crate::util::now_ms();
        for (origin, id) in &changes {
            sqlx::query(
                "INSERT INTO media_quarantine_changes (origin, media_id, quarantined, changed_ts) \
                 VALUES ($1, $2, $3, $4)",
            )
            .bind(origin.as_deref())
            .bind(id)
            .bind(flag)
            .bind(now)
            .execute(&mut *tx.tx)
            .await?;
        }
        let changed = changes.len() as u64;
        if by.is_none() {
            sqlx::query("DELETE FROM remote_media WHERE sha256 = '' AND quarantined = 0")
                .execute(&mut *tx.tx)
                .await?;
        }
        tx.commit().await?;
        Ok(changed)
    }

    /// A page of quarantine changes after `from` (oldest first): (stream id, origin — None for
    /// this server —, media id, quarantined), and the highest stream id there is.
    pub async fn quarantine_changes(
        &self,
        from: i64,
        limit: i64,
    ) -> sqlx::Result<(Vec<(i64, Option<String>, String, i64)>, i64)> {
        let rows = sqlx::query_as(
            "SELECT stream_id, origin, media_id, quarantined FROM media_quarantine_changes \
             WHERE stream_id > $1 ORDER BY stream_id LIMIT $2",
        )
        .bind(from)
        .bind(limit)
        .fetch_all(&self.pool)
        .await?;
        let max: (i64,) = sqlx::query_as(
            "SELECT CAST(COALESCE(MAX(stream_id), 0) AS BIGINT) FROM media_quarantine_changes",
        )
        .fetch_all(&self.pool)
        .await
        .and_then(super::one)?;
        Ok((rows, max.0))
    }

    /// Whether content with this SHA-256 is quarantined anywhere (a new upload of it is
    /// quarantined at once).
    pub async fn sha256_quarantined(&self, sha256: &str) -> sqlx::Result<bool> {
        let row = sqlx::query(
            "SELECT 1 FROM media WHERE sha256 = $1 AND quarantined = 1 \
             UNION ALL SELECT 1 FROM remote_media WHERE sha256 = $1 AND quarantined = 1 LIMIT 1",
        )
        .bind(sha256)
        .fetch_all(&self.pool)
        .await?;
        Ok(!row.is_empty())
    }

    /// Marks a local media protected from quarantine (or not); false when it does not exist.
    pub async fn set_media_protected(&self, media_id: &str, protected: bool) -> sqlx::Result<bool> {
        let mut tx = self.begin_write().await?;
        let n = sqlx::query("UPDATE media SET safe_from_quarantine = $1 WHERE media_id = $2")
            .bind(i64::from(protected))
            .bind(media_id)
            .execute(&mut *tx.tx)
            .await?
            .rows_affected();
        tx.commit().await?;
        Ok(n > 0)
    }

    /// Local media last served (or, never served, uploaded) before `before_ts`, larger than
    /// `size_gt` bytes, not protected.
    pub async fn local_media_unused_since(
        &self,
        before_ts: i64,
        size_gt: i64,
    ) -> sqlx::Result<Vec<String>> {
        let rows: Vec<(String,)> = sqlx::query_as(
            "SELECT media_id FROM media WHERE COALESCE(last_access_ts, created_ts) < $1 \
             AND COALESCE(size, 0) > $2 AND safe_from_quarantine = 0",
        )
        .bind(before_ts)
        .bind(size_gt)
        .fetch_all(&self.pool)
        .await?;
        Ok(rows.into_iter().map(|r| r.0).collect())
    }

    /// The `mxc://` URIs used as images: profile avatars and current room avatars.
    pub async fn avatar_uris(&self) -> sqlx::Result<Vec<String>> {
        let mut uris: Vec<String> = sqlx::query_as::<_, (String,)>(
            "SELECT avatar_url FROM users WHERE avatar_url IS NOT NULL",
        )
        .fetch_all(&self.pool)
        .await?
        .into_iter()
        .map(|r| r.0)
        .collect();
        let rooms: Vec<(String,)> = sqlx::query_as(
            "SELECT e.json FROM current_state cs JOIN events e ON e.event_id = cs.event_id \
             WHERE cs.type = 'm.room.avatar' AND cs.state_key = ''",
        )
        .fetch_all(&self.pool)
        .await?;
        for (json,) in rooms {
            if let Ok(v) = serde_json::from_str::<serde_json::Value>(&json) {
                if let Some(u) = v["content"]["url"].as_str() {
                    uris.push(u.to_owned());
                }
            }
        }
        Ok(uris)
    }

    /// Deletes local media rows; returns the deleted ids with their content's SHA-256.
    pub async fn delete_local_media(
        &self,
        ids: &[String],
    ) -> sqlx::Result<Vec<(String, Option<String>)>> {
        let mut out = vec![];
        for chunk in ids.chunks(500) {
            let mut tx = self.begin_write().await?;
            let list = placeholders(1, chunk.len());
            let sql = format!("SELECT media_id, sha256 FROM media WHERE media_id IN ({list})");
            let mut q = sqlx::query_as::<_, (String, Option<String>)>(&sql);
            for id in chunk {
                q = q.bind(id);
            }
            let found = q.fetch_all(&mut *tx.tx).await?;
            let sql = format!("DELETE FROM media WHERE media_id IN ({list})");
            let mut q = sqlx::query(&sql);
            for id in chunk {
                q = q.bind(id);
            }
            q.execute(&mut *tx.tx).await?;
            tx.commit().await?;
            out.extend(found);
        }
        Ok(out)
    }

    /// Deletes the cached copies of remote media last served (or fetched) before `before_ts`
    /// and their thumbnails; returns the SHA-256s they named.
    pub async fn delete_remote_cache_before(
        &self,
        before_ts: i64,
    ) -> sqlx::Result<(u64, Vec<String>)> {
        let mut tx = self.begin_write().await?;
        let old: Vec<(String, String, String)> = sqlx::query_as(
            "SELECT origin, media_id, sha256 FROM remote_media \
             WHERE COALESCE(last_access_ts, fetched_ts) < $1 AND quarantined = 0",
        )
        .bind(before_ts)
        .fetch_all(&mut *tx.tx)
        .await?;
        let mut shas = vec![];
        for (origin, id, sha) in &old {
            let thumbs: Vec<(String,)> = sqlx::query_as(
                "DELETE FROM remote_media_thumbnails WHERE origin = $1 AND media_id = $2 RETURNING sha256",
            )
            .bind(origin)
            .bind(id)
            .fetch_all(&mut *tx.tx)
            .await?;
            shas.extend(thumbs.into_iter().map(|t| t.0));
            sqlx::query("DELETE FROM remote_media WHERE origin = $1 AND media_id = $2")
                .bind(origin)
                .bind(id)
                .execute(&mut *tx.tx)
                .await?;
            shas.push(sha.clone());
        }
        tx.commit().await?;
        Ok((old.len() as u64, shas))
    }

    /// Whether any row still names content with this SHA-256 (media, remote media, their
    /// thumbnails).
    pub async fn sha256_in_use(&self, sha256: &str) -> sqlx::Result<bool> {
        let rows = sqlx::query(
            "SELECT 1 FROM media WHERE sha256 = $1 \
             UNION ALL SELECT 1 FROM remote_media WHERE sha256 = $1 \
             UNION ALL SELECT 1 FROM media_thumbnails WHERE thumb_sha256 = $1 \
             UNION ALL SELECT 1 FROM remote_media_thumbnails WHERE sha256 = $1 LIMIT 1",
        )
        .bind(sha256)
        .fetch_all(&self.pool)
        .await?;
        Ok(!rows.is_empty())
    }

    /// Forgets the thumbnails made of content no media names any more; returns their files'
    /// SHA-256s.
    pub async fn delete_orphan_thumbnails(&self, source_sha256: &str) -> sqlx::Result<Vec<String>> {
        let mut tx = self.begin_write().await?;
        let used: Vec<(i64,)> = sqlx::query_as(
            "SELECT 1 FROM media WHERE sha256 = $1 UNION ALL SELECT 1 FROM remote_media WHERE sha256 = $1 LIMIT 1",
        )
        .bind(source_sha256)
        .fetch_all(&mut *tx.tx)
        .await?;
        if !used.is_empty() {
            return Ok(vec![]);
        }
        let thumbs: Vec<(String,)> =
            sqlx::query_as("DELETE FROM media_thumbnails WHERE sha256 = $1 RETURNING thumb_sha256")
                .bind(source_sha256)
                .fetch_all(&mut *tx.tx)
                .await?;
        tx.commit().await?;
        Ok(thumbs.into_iter().map(|t| t.0).collect())
    }

    /// Records that a media was served (at most once per `granularity_ms`).
    pub async fn touch_media(
        &self,
        origin: Option<&str>,
        media_id: &str,
        now: i64,
        granularity_ms: i64,
    ) -> sqlx::Result<()> {
        let mut tx = self.begin_write().await?;
        let q = match origin {
            None => sqlx::query(
                "UPDATE media SET last_access_ts = $1 WHERE media_id = $2 \
                 AND (last_access_ts IS NULL OR last_access_ts < $3)",
            )
            .bind(now)
            .bind(media_id)
            .bind(now - granularity_ms),
            Some(o) => sqlx::query(
                "UPDATE remote_media SET last_access_ts = $1 WHERE media_id = $2 \
                 AND (last_access_ts IS NULL OR last_access_ts < $3) AND origin = $4",
            )
            .bind(now)
            .bind(media_id)
            .bind(now - granularity_ms)
            .bind(o),
        };
        q.execute(&mut *tx.tx).await?;
        tx.commit().await
    }

    /// Per-uploader media counts and sizes, a page and the number of uploaders.
    pub async fn media_stats(
        &self,
        q: &MediaStatsQuery,
    ) -> sqlx::Result<(Vec<MediaStatsRow>, i64)> {
        let mut conds = vec!["m.size IS NOT NULL".to_owned()];
        let mut n = 0;
        let mut next = || {
            n += 1;
            format!("${n}")
        };
        if q.from_ts.is_some() {
            conds.push(format!("m.created_ts >= {}", next()));
        }
        if q.until_ts.is_some() {
            conds.push(format!("m.created_ts <= {}", next()));
        }
        if q.search.is_some() {
            let (a, b) = (next(), next());
            conds.push(format!(
                "(m.uploader LIKE {a} ESCAPE '\\' OR u.displayname LIKE {b} ESCAPE '\\')"
            ));
        }
        let (lim, off) = (next(), next());
        let dir = if q.descending { "DESC" } else { "ASC" };
        let grouped = format!(
            "SELECT m.uploader AS user_id, u.displayname AS displayname, COUNT(*) AS media_count, \
             CAST(COALESCE(SUM(m.size), 0) AS BIGINT) AS media_length FROM media m \
             LEFT JOIN users u ON u.user_id = m.uploader WHERE {} GROUP BY m.uploader, u.displayname",
            conds.join(" AND ")
        );
        let page_sql = format!(
            "SELECT * FROM ({grouped}) g ORDER BY {} {dir}, user_id {dir} LIMIT {lim} OFFSET {off}",
            q.order_by
        );
        let count_sql = format!("SELECT COUNT(*) FROM ({grouped}) g");
        macro_rules! bind_filters {
            ($query:expr) => {{
                let mut query = $query;
                if let Some(t) = q.from_ts {
                    query = query.bind(t);
                }
                if let Some(t) = q.until_ts {
                    query = query.bind(t);
                }
                if let Some(s) = &q.search {
                    query = query.bind(s.clone()).bind(s.clone());
                }
                query
            }};
        }
        let rows = bind_filters!(sqlx::query_as::<_, MediaStatsRow>(&page_sql))
            .bind(q.limit)
            .bind(q.from)
            .fetch_all(&self.pool)
            .await?;
        let total: i64 = bind_filters!(sqlx::query(&count_sql))
            .fetch_all(&self.pool)
            .await
            .and_then(super::one)?
            .try_get(0)?;
        Ok((rows, total))
    }

    /// The rooms whose events take the most room in the database (their JSON's length).
    pub async fn largest_rooms(&self, limit: i64) -> sqlx::Result<Vec<(String, i64)>> {
        sqlx::query_as(
            "SELECT room_id, CAST(SUM(LENGTH(json)) AS BIGINT) AS size FROM events \
             GROUP BY room_id ORDER BY size DESC, room_id LIMIT $1",
        )
        .bind(limit)
        .fetch_all(&self.pool)
        .await
    }

    /// The JSON of a room's events that name an `mxc://` URI.
    pub async fn room_events_with_media(&self, room_id: &str) -> sqlx::Result<Vec<String>> {
        let rows: Vec<(String,)> = sqlx::query_as(
            "SELECT json FROM events WHERE room_id = $1 AND json LIKE '%mxc://%' \
             AND redacted_by IS NULL",
        )
        .bind(room_id)
        .fetch_all(&self.pool)
        .await?;
        Ok(rows.into_iter().map(|r| r.0).collect())
    }
}
