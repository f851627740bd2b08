//! Media repository: uploads streamed to disk under a content-hash name (identical files are
//! stored once), metadata and ownership in the database, downloads streamed back.

crate::services::face!(
    /// The face of media: uploads, downloads, thumbnails, previews, remote media.
    MediaFace
);

mod cleanup;
pub mod multipart;
pub mod preview;
pub mod remote;
pub mod thumbnail;

use std::path::PathBuf;

use axum::body::Bytes;
use futures_util::{Stream, StreamExt};
use ruma::{ServerName, UserId};
use sha2::{Digest, Sha256};
use tokio::io::AsyncWriteExt;

use crate::{store::media::MediaRow, util, Error, Result};

/// How long an asynchronous upload (`/create`) may wait for its content.
const PENDING_LIFETIME_MS: i64 = 24 * 60 * 60 * 1000;
/// Asynchronous uploads a user may have waiting at once.
const MAX_PENDING: i64 = 50;
/// Longest wait for the content of a pending upload on download.
const MAX_WAIT_MS: u64 = 20_000;
/// Read size when streaming a file out.
const CHUNK: usize = 64 * 1024;

/// Content types a browser may render inline: everything else is served as an attachment.
const INLINE_TYPES: &[&str] = &[
    "text/css",
    "text/plain",
    "text/csv",
    "application/json",
    "application/ld+json",
    "image/jpeg",
    "image/gif",
    "image/png",
    "image/apng",
    "image/webp",
    "image/avif",
    "video/mp4",
    "video/webm",
    "video/ogg",
    "video/quicktime",
    "audio/mp4",
    "audio/webm",
    "audio/aac",
    "audio/mpeg",
    "audio/ogg",
    "audio/wave",
    "audio/wav",
    "audio/x-wav",
    "audio/x-pn-wav",
    "audio/flac",
    "audio/x-flac",
];

/// Whether a content type is safe to show inline (parameters such as charset ignored).
pub fn inline_allowed(content_type: &str) -> bool {
    let base = content_type
        .split(';')
        .next()
        .unwrap_or_default()
        .trim()
        .to_ascii_lowercase();
    INLINE_TYPES.contains(&base.as_str())
}

/// RFC 5987 `attr-char`s stay as they are in `filename*`; everything else is percent-encoded.
const ATTR_CHAR: &percent_encoding::AsciiSet = &percent_encoding::NON_ALPHANUMERIC
    .remove(b'!')
    .remove(b'#')
    .remove(b'$')
    .remove(b'&')
    .remove(b'+')
    .remove(b'-')
    .remove(b'.')
    .remove(b'^')
    .remove(b'_')
    .remove(b'`')
    .remove(b'|')
    .remove(b'~');

/// The `Content-Disposition` a media is served with: inline only for the safe types.
pub fn content_disposition(content_type: &str, filename: Option<&str>) -> String {
    let disposition = if inline_allowed(content_type) {
        "inline"
    } else {
        "attachment"
    };
    match filename {
        Some(f) => format!(
            "{disposition}; filename*=utf-8''{}",
            percent_encoding::utf8_percent_encode(f, ATTR_CHAR)
        ),
        None => disposition.to_owned(),
    }
}

/// A file ready to be streamed to a client.
pub struct Download {
    pub body: std::pin::Pin<Box<dyn Stream<Item = std::io::Result<Bytes>> + Send>>,
    pub size: u64,
    pub content_type: String,
    pub filename: Option<String>,
}

/// Checks a client-supplied content type (a header value) and filename.
fn clean_meta<'a>(
    content_type: Option<&'a str>,
    filename: Option<&'a str>,
) -> Result<(Option<&'a str>, Option<&'a str>)> {
    if content_type.is_some_and(|c| c.len() > 255 || c.chars().any(char::is_control)) {
        return Err(Error::invalid_param("Invalid content type"));
    }
    if filename.is_some_and(|f| f.len() > 255 || f.chars().any(char::is_control)) {
        return Err(Error::invalid_param("Invalid filename"));
    }
    Ok((
        content_type.filter(|c| !c.is_empty()),
        filename.filter(|f| !f.is_empty()),
    ))
}

impl MediaFace<'_> {
    fn media_dir(self) -> PathBuf {
        self.config.data_dir.join("media")
    }

    /// Where the file with this SHA-256 (hex) lives.
    fn media_path(self, sha256: &str) -> PathBuf {
        self.media_dir()
            .join(&sha256[..2])
            .join(&sha256[2..4])
            .join(sha256)
    }

    fn mxc(self, media_id: &str) -> String {
        format!("mxc://{}/{}", self.server_name, media_id)
    }

    /// Refuses an upload that would take the user past the quota.
    async fn check_quota(self, uploader: &UserId, adding: u64) -> Result<()> {
        let quota = self.config.media.quota_bytes_per_user;
        if quota == 0 || adding == 0 {
            return Ok(());
        }
        let (used, _) = self
            .db
            .media_usage(uploader.as_str(), util::now_ms())
            .await?;
        if used as u64 + adding > quota {
            return Err(Error::resource_limit_exceeded("Media quota exceeded"));
        }
        Ok(())
    }

    /// Streams an upload into a temporary file, hashing it; refuses past `max_upload_bytes`.
    /// Returns (sha256 hex, size, temporary path).
    async fn receive<S, E>(self, body: &mut S) -> Result<(String, u64, PathBuf)>
    where
        S: Stream<Item = std::result::Result<Bytes, E>> + Unpin,
        E: std::fmt::Display,
    {
        self.receive_from(body, None).await
    }

    /// `receive` for bytes from a client (`origin` None) or from another server: a remote
    /// file past the limit or cut short is that server's failure (502), and is not drained.
    async fn receive_from<S, E>(
        self,
        body: &mut S,
        origin: Option<&ServerName>,
    ) -> Result<(String, u64, PathBuf)>
    where
        S: Stream<Item = std::result::Result<Bytes, E>> + Unpin,
        E: std::fmt::Display,
    {
        let max = self.config.media.max_upload_bytes;
        let tmp_dir = self.media_dir().join("tmp");
        tokio::fs::create_dir_all(&tmp_dir)
            .await
            .map_err(|e| Error::unknown(format!("media storage: {e}")))?;
        let tmp = tmp_dir.join(util::random_string(24));
        let res: Result<(String, u64)> = async {
            let mut file = tokio::fs::File::create(&tmp)
                .await
                .map_err(|e| Error::unknown(format!("media storage: {e}")))?;
            let mut hasher = Sha256::new();
            let mut size = 0u64;
            while let Some(chunk) = body.next().await {
                let chunk = chunk.map_err(|e| match origin {
                    None => Error::bad_json(format!("Upload interrupted: {e}")),
                    Some(o) => remote::bad_gateway(o, format!("download interrupted: {e}")),
                })?;
                size += chunk.len() as u64;
                if size > max {
                    return Err(match origin {
                        None => {
                            drain(body).await;
                            Error::too_large(format!("Upload larger than the {max} bytes allowed"))
                        }
                        Some(o) => remote::too_large(o, max),
                    });
                }
                hasher.update(&chunk);
                file.write_all(&chunk)
                    .await
                    .map_err(|e| Error::unknown(format!("media storage: {e}")))?;
            }
            file.sync_all()
                .await
                .map_err(|e| Error::unknown(format!("media storage: {e}")))?;
            let hex: String = hasher
                .finalize()
                .iter()
                .map(|b| format!("{b:02x}"))
                .collect();
            Ok((hex, size))
        }
        .await;
        match res {
            Ok((hex, size)) => Ok((hex, size, tmp)),
            Err(e) => {
                let _ = tokio::fs::remove_file(&tmp).await;
                Err(e)
            }
        }
    }

    /// Moves a received file to its content-addressed place (or drops it if already stored).
    async fn keep(self, tmp: PathBuf, sha256: &str) -> Result<()> {
        let dest = self.media_path(sha256);
        let io = |e: std::io::Error| Error::unknown(format!("media storage: {e}"));
        if tokio::fs::try_exists(&dest).await.map_err(io)? {
            tokio::fs::remove_file(&tmp).await.map_err(io)?;
            return Ok(());
        }
        if let Some(parent) = dest.parent() {
            tokio::fs::create_dir_all(parent).await.map_err(io)?;
        }
        tokio::fs::rename(&tmp, &dest).await.map_err(io)
    }

    /// Stores bytes already in memory (thumbnails); returns their SHA-256.
    async fn keep_bytes(self, data: &[u8]) -> Result<String> {
        let mut stream = futures_util::stream::iter([Ok::<_, std::convert::Infallible>(
            Bytes::copy_from_slice(data),
        )]);
        let (sha, _, tmp) = self.receive(&mut stream).await?;
        self.keep(tmp, &sha).await?;
        Ok(sha)
    }

    /// `POST /upload`: stores the content and answers its `mxc://` URI.
    pub async fn upload_media<S, E>(
        self,
        uploader: &UserId,
        content_type: Option<&str>,
        filename: Option<&str>,
        declared_len: Option<u64>,
        mut body: S,
    ) -> Result<String>
    where
        S: Stream<Item = std::result::Result<Bytes, E>> + Unpin,
        E: std::fmt::Display,
    {
        let (content_type, filename) = clean_meta(content_type, filename)?;
        let early = match self.check_declared(declared_len) {
            Ok(()) => self.check_quota(uploader, declared_len.unwrap_or(0)).await,
            Err(e) => Err(e),
        };
        if let Err(e) = early {
            drain(&mut body).await;
            return Err(e);
        }
        let (sha, size, tmp) = self.receive(&mut body).await?;
        if let Err(e) = self.check_quota(uploader, size).await {
            let _ = tokio::fs::remove_file(&tmp).await;
            return Err(e);
        }
        self.keep(tmp, &sha).await?;
        let id = util::random_string(24);
        self.db
            .insert_media(
                &id,
                uploader.as_str(),
                util::now_ms(),
                content_type,
                filename,
                Some((size as i64, &sha)),
                None,
            )
            .await?;
        self.quarantine_known_content(&sha, std::slice::from_ref(&id), &[])
            .await?;
        Ok(self.mxc(&id))
    }

    fn check_declared(self, declared_len: Option<u64>) -> Result<()> {
        let max = self.config.media.max_upload_bytes;
        if declared_len.is_some_and(|n| n > max) {
            return Err(Error::too_large(format!(
                "Upload larger than the {max} bytes allowed"
            )));
        }
        Ok(())
    }

    /// `POST /create`: reserves a media id for a later `PUT /upload/{server}/{id}`.
    pub async fn create_media(self, uploader: &UserId) -> Result<(String, i64)> {
        let now = util::now_ms();
        let (_, pending) = self.db.media_usage(uploader.as_str(), now).await?;
        if pending >= MAX_PENDING {
            return Err(Error::limit_exceeded(60_000));
        }
        let id = util::random_string(24);
        let expires = now + PENDING_LIFETIME_MS;
        self.db
            .insert_media(&id, uploader.as_str(), now, None, None, None, Some(expires))
            .await?;
        Ok((self.mxc(&id), expires))
    }

    /// `PUT /upload/{server}/{id}`: the content of a reserved media id, once, by its creator.
    #[allow(clippy::too_many_arguments)]
    pub async fn upload_pending<S, E>(
        self,
        uploader: &UserId,
        server: &str,
        media_id: &str,
        content_type: Option<&str>,
        filename: Option<&str>,
        declared_len: Option<u64>,
        mut body: S,
    ) -> Result<()>
    where
        S: Stream<Item = std::result::Result<Bytes, E>> + Unpin,
        E: std::fmt::Display,
    {
        let (content_type, filename) = clean_meta(content_type, filename)?;
        if server != self.server_name.as_str() {
            return Err(Error::not_found("Unknown media"));
        }
        let row = self
            .db
            .get_media(media_id)
            .await?
            .ok_or_else(|| Error::not_found("Unknown media"))?;
        if row.uploader != uploader.as_str() {
            return Err(Error::forbidden(
                "This media id was created by another user",
            ));
        }
        if row.size.is_some() {
            return Err(Error::cannot_overwrite_media("Media already uploaded"));
        }
        if row.expires_ts.is_some_and(|t| t < util::now_ms()) {
            return Err(Error::not_found(
                "The upload window of this media id expired",
            ));
        }
        let early = match self.check_declared(declared_len) {
            Ok(()) => self.check_quota(uploader, declared_len.unwrap_or(0)).await,
            Err(e) => Err(e),
        };
        if let Err(e) = early {
            drain(&mut body).await;
            return Err(e);
        }
        let (sha, size, tmp) = self.receive(&mut body).await?;
        if let Err(e) = self.check_quota(uploader, size).await {
            let _ = tokio::fs::remove_file(&tmp).await;
            return Err(e);
        }
        self.keep(tmp, &sha).await?;
        if !self
            .db
            .complete_media(media_id, content_type, filename, size as i64, &sha)
            .await?
        {
            return Err(Error::cannot_overwrite_media("Media already uploaded"));
        }
        self.quarantine_known_content(&sha, &[media_id.to_owned()], &[])
            .await?;
        Ok(())
    }

    /// The row of a local media with content, waiting up to `timeout_ms` for a pending upload.
    /// `legacy`: the unauthenticated endpoints, which only serve media from before the freeze.
    async fn media_row(
        self,
        server: &str,
        media_id: &str,
        timeout_ms: Option<u64>,
        legacy: bool,
    ) -> Result<MediaRow> {
        let not_found = || Error::not_found("Media not found");
        if ServerName::parse(server).is_err() || server != self.server_name.as_str() {
            // Remote media is fetched over federation once it exists.
            return Err(not_found());
        }
        let deadline = tokio::time::Instant::now()
            + std::time::Duration::from_millis(timeout_ms.unwrap_or(MAX_WAIT_MS).min(MAX_WAIT_MS));
        loop {
            let row = self.db.get_media(media_id).await?.ok_or_else(not_found)?;
            if row.quarantined {
                return Err(not_found());
            }
            let frozen = self
                .config
                .media
                .legacy_freeze_ts
                .is_some_and(|t| row.created_ts < t);
            if legacy && !frozen {
                return Err(not_found());
            }
            if row.size.is_some() {
                return Ok(row);
            }
            if row.expires_ts.is_some_and(|t| t < util::now_ms()) {
                return Err(not_found());
            }
            if tokio::time::Instant::now() >= deadline {
                return Err(Error::not_yet_uploaded(
                    "The content has not been uploaded yet",
                ));
            }
            tokio::time::sleep(std::time::Duration::from_millis(200)).await;
        }
    }

    /// Opens a stored file for streaming.
    async fn open_media(
        self,
        sha256: &str,
        size: u64,
        content_type: String,
        filename: Option<String>,
    ) -> Result<Download> {
        let file = tokio::fs::File::open(self.media_path(sha256))
            .await
            .map_err(|e| {
                tracing::error!(sha256, error = %e, "media file missing");
                Error::not_found("Media not found")
            })?;
        let body = futures_util::stream::unfold(file, |mut file| async move {
            use tokio::io::AsyncReadExt;
            let mut buf = vec![0u8; CHUNK];
            match file.read(&mut buf).await {
                Ok(0) => None,
                Ok(n) => {
                    buf.truncate(n);
                    Some((Ok(Bytes::from(buf)), file))
                }
                Err(e) => Some((Err(e), file)),
            }
        });
        Ok(Download {
            body: Box::pin(body),
            size,
            content_type,
            filename,
        })
    }

    /// A media's content: this server's, or another's (fetched over federation once, then
    /// served from the local copy). The legacy endpoints serve no remote media.
    pub async fn download_media(
        self,
        server: &str,
        media_id: &str,
        timeout_ms: Option<u64>,
        legacy: bool,
    ) -> Result<Download> {
        if server != self.server_name.as_str() && !legacy {
            let origin =
                ServerName::parse(server).map_err(|_| Error::not_found("Media not found"))?;
            return self.remote_download(&origin, media_id, timeout_ms).await;
        }
        let row = self.media_row(server, media_id, timeout_ms, legacy).await?;
        self.touch(None, media_id, row.last_access_ts).await;
        let (Some(size), Some(sha)) = (row.size, row.sha256) else {
            return Err(Error::not_found("Media not found"));
        };
        self.open_media(
            &sha,
            size as u64,
            row.content_type
                .unwrap_or_else(|| "application/octet-stream".into()),
            row.filename,
        )
        .await
    }
}

/// The most of a refused upload read (and dropped) before answering: a client still sending a
/// small body would otherwise see the connection reset instead of the error.
const DRAIN_BYTES: u64 = 1 << 20;

async fn drain<S, E>(body: &mut S)
where
    S: Stream<Item = std::result::Result<Bytes, E>> + Unpin,
{
    let mut read = 0u64;
    while read < DRAIN_BYTES {
        match body.next().await {
            Some(Ok(chunk)) => read += chunk.len() as u64,
            _ => break,
        }
    }
}
