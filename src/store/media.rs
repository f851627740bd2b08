//! Media metadata and thumbnails (the bytes are files, see services/media).

use sqlx::Row;

use super::Db;

#[derive(Debug, Clone)]
pub struct MediaRow {
    pub media_id: String,
    pub uploader: String,
    pub created_ts: i64,
    pub content_type: Option<String>,
    pub filename: Option<String>,
    pub size: Option<i64>,
    pub sha256: Option<String>,
    pub expires_ts: Option<i64>,
    pub quarantined: bool,
    pub last_access_ts: Option<i64>,
}

#[derive(Debug, Clone)]
pub struct ThumbnailRow {
    pub content_type: String,
    pub sha256: String,
    pub size: i64,
}

impl Db {
    #[allow(clippy::too_many_arguments)]
    pub async fn insert_media(
        &self,
        media_id: &str,
        uploader: &str,
        now: i64,
        content_type: Option<&str>,
        filename: Option<&str>,
        content: Option<(i64, &str)>,
        expires_ts: Option<i64>,
    ) -> sqlx::Result<()> {
        let mut tx = self.begin_write().await?;
        sqlx::query(
            "INSERT INTO media (media_id, uploader, created_ts, content_type, filename, size, sha256, expires_ts) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
        )
        .bind(media_id)
        .bind(uploader)
        .bind(now)
        .bind(content_type)
        .bind(filename)
        .bind(content.map(|c| c.0))
        .bind(content.map(|c| c.1))
        .bind(expires_ts)
        .execute(&mut *tx.tx)
        .await?;
        tx.commit().await
    }

    /// Fills a pending (asynchronous) upload; false if it is not pending any more.
    pub async fn complete_media(
        &self,
        media_id: &str,
        content_type: Option<&str>,
        filename: Option<&str>,
        size: i64,
        sha256: &str,
    ) -> sqlx::Result<bool> {
        let mut tx = self.begin_write().await?;
        let res = sqlx::query(
            "UPDATE media SET content_type = $2, filename = $3, size = $4, sha256 = $5, expires_ts = NULL \
             WHERE media_id = $1 AND size IS NULL",
        )
        .bind(media_id)
        .bind(content_type)
        .bind(filename)
        .bind(size)
        .bind(sha256)
        .execute(&mut *tx.tx)
        .await?;
        tx.commit().await?;
        Ok(res.rows_affected() == 1)
    }

    pub async fn get_media(&self, media_id: &str) -> sqlx::Result<Option<MediaRow>> {
        let row = sqlx::query(
            "SELECT media_id, uploader, created_ts, content_type, filename, size, sha256, expires_ts, quarantined, \
             last_access_ts FROM media WHERE media_id = $1",
        )
        .bind(media_id)
        .fetch_all(&self.pool)
        .await
        .map(super::first)?;
        row.map(|r| {
            Ok(MediaRow {
                media_id: r.try_get(0)?,
                uploader: r.try_get(1)?,
                created_ts: r.try_get(2)?,
                content_type: r.try_get(3)?,
                filename: r.try_get(4)?,
                size: r.try_get(5)?,
                sha256: r.try_get(6)?,
                expires_ts: r.try_get(7)?,
                quarantined: r.try_get::<i64, _>(8)? != 0,
                last_access_ts: r.try_get(9)?,
            })
        })
        .transpose()
    }

    /// (bytes uploaded, pending asynchronous uploads not expired) of a user.
    pub async fn media_usage(&self, uploader: &str, now: i64) -> sqlx::Result<(i64, i64)> {
        let r = sqlx::query(
            "SELECT CAST(COALESCE(SUM(size), 0) AS BIGINT), \
             CAST(COALESCE(SUM(CASE WHEN size IS NULL AND expires_ts > $2 THEN 1 ELSE 0 END), 0) AS BIGINT) \
             FROM media WHERE uploader = $1",
        )
        .bind(uploader)
        .bind(now)
        .fetch_all(&self.pool)
        .await
        .and_then(super::one)?;
        Ok((r.try_get(0)?, r.try_get(1)?))
    }

    pub async fn get_thumbnail(
        &self,
        sha256: &str,
        width: i64,
        height: i64,
        method: &str,
    ) -> sqlx::Result<Option<ThumbnailRow>> {
        let row = sqlx::query(
            "SELECT content_type, thumb_sha256, size FROM media_thumbnails \
             WHERE sha256 = $1 AND width = $2 AND height = $3 AND method = $4",
        )
        .bind(sha256)
        .bind(width)
        .bind(height)
        .bind(method)
        .fetch_all(&self.pool)
        .await
        .map(super::first)?;
        row.map(|r| thumbnail_row(&r)).transpose()
    }

    #[allow(clippy::too_many_arguments)]
    pub async fn put_thumbnail(
        &self,
        sha256: &str,
        width: i64,
        height: i64,
        method: &str,
        t: &ThumbnailRow,
    ) -> sqlx::Result<()> {
        let mut tx = self.begin_write().await?;
        sqlx::query(
            "INSERT INTO media_thumbnails (sha256, width, height, method, content_type, thumb_sha256, size) \
             VALUES ($1, $2, $3, $4, $5, $6, $7) ON CONFLICT DO NOTHING",
        )
        .bind(sha256)
        .bind(width)
        .bind(height)
        .bind(method)
        .bind(&t.content_type)
        .bind(&t.sha256)
        .bind(t.size)
        .execute(&mut *tx.tx)
        .await?;
        tx.commit().await
    }
}

/// A media of another server cached here.
#[derive(Debug, Clone)]
pub struct RemoteMediaRow {
    pub content_type: Option<String>,
    pub filename: Option<String>,
    pub size: i64,
    pub sha256: String,
    pub quarantined: bool,
    pub last_access_ts: Option<i64>,
}

impl Db {
    pub async fn get_remote_media(
        &self,
        origin: &str,
        media_id: &str,
    ) -> sqlx::Result<Option<RemoteMediaRow>> {
        let row = sqlx::query(
            "SELECT content_type, filename, size, sha256, quarantined, last_access_ts FROM remote_media \
             WHERE origin = $1 AND media_id = $2",
        )
        .bind(origin)
        .bind(media_id)
        .fetch_all(&self.pool)
        .await
        .map(super::first)?;
        row.map(|r| {
            Ok(RemoteMediaRow {
                content_type: r.try_get(0)?,
                filename: r.try_get(1)?,
                size: r.try_get(2)?,
                sha256: r.try_get(3)?,
                quarantined: r.try_get::<i64, _>(4)? != 0,
                last_access_ts: r.try_get(5)?,
            })
        })
        .transpose()
    }

    /// Records a fetched remote media (a re-fetch, after its file went missing, replaces it).
    pub async fn put_remote_media(
        &self,
        origin: &str,
        media_id: &str,
        m: &RemoteMediaRow,
        now: i64,
    ) -> sqlx::Result<()> {
        let mut tx = self.begin_write().await?;
        sqlx::query(
            "INSERT INTO remote_media (origin, media_id, content_type, filename, size, sha256, fetched_ts) \
             VALUES ($1, $2, $3, $4, $5, $6, $7) ON CONFLICT (origin, media_id) DO UPDATE SET \
             content_type = $3, filename = $4, size = $5, sha256 = $6, fetched_ts = $7",
        )
        .bind(origin)
        .bind(media_id)
        .bind(&m.content_type)
        .bind(&m.filename)
        .bind(m.size)
        .bind(&m.sha256)
        .bind(now)
        .execute(&mut *tx.tx)
        .await?;
        tx.commit().await
    }

    pub async fn get_remote_thumbnail(
        &self,
        origin: &str,
        media_id: &str,
        width: i64,
        height: i64,
        method: &str,
    ) -> sqlx::Result<Option<ThumbnailRow>> {
        let row = sqlx::query(
            "SELECT content_type, sha256, size FROM remote_media_thumbnails \
             WHERE origin = $1 AND media_id = $2 AND width = $3 AND height = $4 AND method = $5",
        )
        .bind(origin)
        .bind(media_id)
        .bind(width)
        .bind(height)
        .bind(method)
        .fetch_all(&self.pool)
        .await
        .map(super::first)?;
        row.map(|r| thumbnail_row(&r)).transpose()
    }

    #[allow(clippy::too_many_arguments)]
    pub async fn put_remote_thumbnail(
        &self,
        origin: &str,
        media_id: &str,
        width: i64,
        height: i64,
        method: &str,
        t: &ThumbnailRow,
    ) -> sqlx::Result<()> {
        let mut tx = self.begin_write().await?;
        sqlx::query(
            "INSERT INTO remote_media_thumbnails (origin, media_id, width, height, method, content_type, sha256, size) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8) ON CONFLICT (origin, media_id, width, height, method) \
             DO UPDATE SET content_type = $6, sha256 = $7, size = $8",
        )
        .bind(origin)
        .bind(media_id)
        .bind(width)
        .bind(height)
        .bind(method)
        .bind(&t.content_type)
        .bind(&t.sha256)
        .bind(t.size)
        .execute(&mut *tx.tx)
        .await?;
        tx.commit().await
    }
}

/// (content_type, sha256, size) columns as a thumbnail.
fn thumbnail_row(r: &sqlx::any::AnyRow) -> sqlx::Result<ThumbnailRow> {
    Ok(ThumbnailRow {
        content_type: r.try_get(0)?,
        sha256: r.try_get(1)?,
        size: r.try_get(2)?,
    })
}
