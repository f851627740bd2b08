//! Keeping the store in step with the admin API: content already quarantined stays
//! quarantined under any new id, served media record when they were last served, and files
//! no row names any more are removed.

use super::MediaFace;
use crate::{util, Result};

/// `last_access_ts` is written at most once per this period per media (a download must not
/// cost a write each time).
const TOUCH_EVERY_MS: i64 = 3_600_000;

impl MediaFace<'_> {
    /// Quarantines (`by` set) or releases media, with every other copy of the same content;
    /// a remote media not fetched yet is never fetched while quarantined. Returns how many
    /// changed (each change is recorded for `quarantine_changes`).
    pub async fn set_quarantine(
        self,
        local: &[String],
        remote: &[(String, String)],
        by: Option<&str>,
    ) -> Result<u64> {
        Ok(self.db.set_quarantine(local, remote, by).await?)
    }

    /// Protects a local media from quarantine (or stops); false when it does not exist.
    pub async fn set_protected(self, media_id: &str, protect: bool) -> Result<bool> {
        Ok(self.db.set_media_protected(media_id, protect).await?)
    }

    /// Content (by SHA-256) quarantined under another id is quarantined under these ids too;
    /// true when it was.
    pub(super) async fn quarantine_known_content(
        self,
        sha256: &str,
        local: &[String],
        remote: &[(String, String)],
    ) -> Result<bool> {
        if !self.db.sha256_quarantined(sha256).await? {
            return Ok(false);
        }
        tracing::info!(
            sha256,
            ?local,
            ?remote,
            "new copy of quarantined content quarantined"
        );
        self.db
            .set_quarantine(
                local,
                remote,
                Some("system: same content as quarantined media"),
            )
            .await?;
        Ok(true)
    }

    /// Records that a media (`origin` None: this server's) was served, when the last record
    /// is older than an hour. A failure is logged, never the download's.
    pub(super) async fn touch(self, origin: Option<&str>, media_id: &str, last: Option<i64>) {
        let now = util::now_ms();
        if last.is_some_and(|t| now - t < TOUCH_EVERY_MS) {
            return;
        }
        if let Err(e) = self
            .db
            .touch_media(origin, media_id, now, TOUCH_EVERY_MS)
            .await
        {
            tracing::warn!(media_id, error = %e, "recording a media access");
        }
    }

    /// Deletes local media (rows, then the files no row names any more); returns the ids
    /// that existed.
    pub async fn delete_local(self, ids: &[String]) -> Result<Vec<String>> {
        let gone = self.db.delete_local_media(ids).await?;
        let shas = gone.iter().filter_map(|g| g.1.clone()).collect();
        self.remove_unused_files(shas).await?;
        Ok(gone.into_iter().map(|g| g.0).collect())
    }

    /// Deletes the cached copies of other servers' media not served since `before_ts`
    /// (quarantined ones stay: their mark is what refuses them); returns how many went.
    pub async fn purge_remote_cache(self, before_ts: i64) -> Result<u64> {
        let (n, shas) = self.db.delete_remote_cache_before(before_ts).await?;
        self.remove_unused_files(shas).await?;
        Ok(n)
    }

    /// Removes the files of content that no row names any more (after media rows were
    /// deleted), with the thumbnails made of it. Returns how many files went.
    async fn remove_unused_files(self, shas: Vec<String>) -> Result<u64> {
        let mut queue = shas;
        queue.sort();
        queue.dedup();
        let mut removed = 0;
        while let Some(sha) = queue.pop() {
            if sha.len() != 64 || !sha.bytes().all(|b| b.is_ascii_hexdigit()) {
                continue;
            }
            queue.extend(self.db.delete_orphan_thumbnails(&sha).await?);
            if self.db.sha256_in_use(&sha).await? {
                continue;
            }
            match tokio::fs::remove_file(self.media_path(&sha)).await {
                Ok(()) => removed += 1,
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => tracing::warn!(sha256 = %sha, error = %e, "removing a media file"),
            }
        }
        Ok(removed)
    }
}
