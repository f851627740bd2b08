//! Media of other servers (spec: Server-server API, Content repository): fetched once through
//! `/_matrix/federation/v1/media/download|thumbnail` (a `multipart/mixed` answer whose second
//! part is the file or a `Location` to fetch it from), stored as content-addressed files like
//! local uploads, and recorded by (origin, media id) so later requests never leave this server.
//!
//! Thumbnails of a remote media: generated here when the original is already cached, otherwise
//! asked of the origin at the size this server would serve, and cached per size.

use crate::services::media::MediaFace;
use std::{collections::HashMap, sync::Arc, time::Duration};

use axum::{body::Bytes, http::StatusCode};
use futures_util::StreamExt;
use ruma::ServerName;
use serde_json::Value;

use super::{
    multipart::{self, ByteStream, MultipartReader},
    preview::{open_public, PublicFetch},
    thumbnail::{pick, Method},
    Download,
};
use crate::{
    services::federation::remote_error,
    store::media::{RemoteMediaRow, ThumbnailRow},
    util, Error, Result,
};

/// A whole remote download (connection to last byte) may take this long.
const FETCH_TIMEOUT: Duration = Duration::from_secs(600);
/// Longest silence from the other server in the middle of a download.
const IDLE_TIMEOUT: Duration = Duration::from_secs(60);
/// Longest wait the origin is asked to grant a pending (asynchronous) upload.
const MAX_WAIT_MS: u64 = 20_000;
/// Largest JSON metadata part, or error body, read from the other server.
const MAX_JSON: usize = 64 * 1024;

pub fn bad_gateway(origin: &ServerName, msg: impl std::fmt::Display) -> Error {
    Error::bad_gateway(format!("{origin}: {msg}"))
}

pub fn too_large(origin: &ServerName, max: u64) -> Error {
    Error::remote_too_large(format!(
        "The media of {origin} is larger than the {max} bytes allowed"
    ))
}

/// Media ids are `[A-Za-z0-9_-]` (spec: Matrix Content URIs): anything else could change the
/// path of the request sent to the origin.
pub fn valid_media_id(id: &str) -> bool {
    !id.is_empty()
        && id.len() <= 255
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
}

/// A header value kept only when it is short and has no control characters.
fn clean(v: Option<String>) -> Option<String> {
    v.filter(|s| !s.is_empty() && s.len() <= 255 && !s.chars().any(char::is_control))
}

/// The file part of an answer: its bytes as a stream, and what its headers say.
struct RemoteFile {
    body: ByteStream,
    content_type: Option<String>,
    filename: Option<String>,
    length: Option<u64>,
}

/// One lock per remote media (or thumbnail size) being fetched, so concurrent requests fetch
/// it once: the later ones wait and find the cached copy.
#[derive(Default)]
pub struct Inflight(parking_lot::Mutex<HashMap<String, Arc<tokio::sync::Mutex<()>>>>);

pub struct InflightGuard<'a> {
    map: &'a Inflight,
    key: String,
    guard: Option<tokio::sync::OwnedMutexGuard<()>>,
}

impl Inflight {
    async fn lock(&self, key: String) -> InflightGuard<'_> {
        let m = self.0.lock().entry(key.clone()).or_default().clone();
        let guard = m.lock_owned().await;
        InflightGuard {
            map: self,
            key,
            guard: Some(guard),
        }
    }
}

impl Drop for InflightGuard<'_> {
    fn drop(&mut self) {
        let mut map = self.map.0.lock();
        drop(self.guard.take());
        if map
            .get(&self.key)
            .is_some_and(|m| Arc::strong_count(m) == 1)
        {
            map.remove(&self.key);
        }
    }
}

/// Ends the stream with an error when the other server stays silent too long.
fn with_idle_timeout(body: ByteStream) -> ByteStream {
    Box::pin(futures_util::stream::unfold(
        Some(body),
        |state| async move {
            let mut body = state?;
            match tokio::time::timeout(IDLE_TIMEOUT, body.next()).await {
                Ok(Some(item)) => Some((item, Some(body))),
                Ok(None) => None,
                Err(_) => Some((Err("the server stopped sending".to_owned()), None)),
            }
        },
    ))
}

impl MediaFace<'_> {
    /// The media `media_id` of `origin`, from the local copy or fetched now.
    pub(super) async fn remote_download(
        self,
        origin: &ServerName,
        media_id: &str,
        timeout_ms: Option<u64>,
    ) -> Result<Download> {
        let row = self
            .cached_remote_media(origin, media_id, timeout_ms)
            .await?;
        self.open_media(
            &row.sha256,
            row.size as u64,
            row.content_type
                .unwrap_or_else(|| "application/octet-stream".into()),
            row.filename,
        )
        .await
    }

    /// The cached copy of a remote media, fetched first if needed. The fetch runs in its own
    /// task: a client that hangs up does not waste a download half done.
    async fn cached_remote_media(
        self,
        origin: &ServerName,
        media_id: &str,
        timeout_ms: Option<u64>,
    ) -> Result<RemoteMediaRow> {
        if !valid_media_id(media_id) {
            return Err(Error::not_found("Media not found"));
        }
        if let Some(row) = self.local_copy(origin, media_id).await? {
            return Ok(row);
        }
        let me = self
            .me
            .upgrade()
            .ok_or_else(|| Error::unknown("Server shutting down"))?;
        let (origin, media_id) = (origin.to_owned(), media_id.to_owned());
        tokio::spawn(async move {
            let _g = me.media_inflight.lock(format!("{origin}/{media_id}")).await;
            if let Some(row) = me.media().local_copy(&origin, &media_id).await? {
                return Ok(row);
            }
            me.media()
                .fetch_remote_media(&origin, &media_id, timeout_ms)
                .await
        })
        .await
        .map_err(|e| Error::unknown(format!("media fetch: {e}")))?
    }

    /// The row of a cached remote media whose file is present (quarantined: not found).
    async fn local_copy(
        self,
        origin: &ServerName,
        media_id: &str,
    ) -> Result<Option<RemoteMediaRow>> {
        let Some(row) = self.db.get_remote_media(origin.as_str(), media_id).await? else {
            return Ok(None);
        };
        if row.quarantined {
            return Err(Error::not_found("Media not found"));
        }
        self.touch(Some(origin.as_str()), media_id, row.last_access_ts)
            .await;
        let present = tokio::fs::try_exists(self.media_path(&row.sha256))
            .await
            .unwrap_or(false);
        Ok(present.then_some(row))
    }

    async fn fetch_remote_media(
        self,
        origin: &ServerName,
        media_id: &str,
        timeout_ms: Option<u64>,
    ) -> Result<RemoteMediaRow> {
        let wait = timeout_ms.unwrap_or(MAX_WAIT_MS).min(MAX_WAIT_MS);
        let path = format!("/_matrix/federation/v1/media/download/{media_id}?timeout_ms={wait}");
        let file = self.remote_file(origin, &path).await?;
        let (sha, size) = self
            .store_remote_file(origin, file.body, file.length)
            .await?;
        let row = RemoteMediaRow {
            content_type: file.content_type,
            filename: file.filename,
            size: size as i64,
            sha256: sha,
            quarantined: false,
            last_access_ts: None,
        };
        self.db
            .put_remote_media(origin.as_str(), media_id, &row, util::now_ms())
            .await?;
        if self
            .quarantine_known_content(
                &row.sha256,
                &[],
                &[(origin.to_string(), media_id.to_owned())],
            )
            .await?
        {
            return Err(Error::not_found("Media not found"));
        }
        Ok(row)
    }

    /// Streams a remote file into the content-addressed store; (sha256, size).
    async fn store_remote_file(
        self,
        origin: &ServerName,
        body: ByteStream,
        length: Option<u64>,
    ) -> Result<(String, u64)> {
        let max = self.config.media.max_upload_bytes;
        if length.is_some_and(|l| l > max) {
            return Err(too_large(origin, max));
        }
        let mut body = with_idle_timeout(body);
        let (sha, size, tmp) = self.receive_from(&mut body, Some(origin)).await?;
        self.keep(tmp, &sha).await?;
        Ok((sha, size))
    }

    /// Asks `origin` for a media endpoint and opens the file part of its answer (following a
    /// `Location` part).
    async fn remote_file(self, origin: &ServerName, path: &str) -> Result<RemoteFile> {
        let resp = self
            .federation()
            .federation_send_within(
                origin,
                axum::http::Method::GET,
                path,
                None,
                Some(FETCH_TIMEOUT),
            )
            .await?;
        let status = resp.status();
        if !status.is_success() {
            let body = crate::services::outbound::read_capped(resp, MAX_JSON)
                .await
                .unwrap_or_default();
            let value: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
            let e = remote_error(origin, status, &value);
            return Err(match e.status {
                StatusCode::NOT_FOUND => Error::not_found("Media not found"),
                StatusCode::GATEWAY_TIMEOUT => e,
                s if s.is_server_error() => bad_gateway(origin, e.message),
                _ => e,
            });
        }
        let content_type = resp
            .headers()
            .get(reqwest::header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_owned();
        let boundary = multipart::boundary(&content_type).ok_or_else(|| {
            bad_gateway(
                origin,
                format!("not a multipart/mixed answer ({content_type})"),
            )
        })?;
        let stream: ByteStream =
            Box::pin(resp.bytes_stream().map(|c| c.map_err(|e| e.to_string())));
        let mut reader = MultipartReader::new(stream, &boundary);
        let bad = |e: String| bad_gateway(origin, e);
        if !reader.start().await.map_err(bad)? {
            return Err(bad_gateway(origin, "empty multipart answer"));
        }
        reader.headers().await.map_err(bad)?;
        let (meta, more) = reader.read_part(MAX_JSON).await.map_err(bad)?;
        if !more || serde_json::from_slice::<Value>(&meta).map_or(true, |v| !v.is_object()) {
            return Err(bad_gateway(
                origin,
                "the metadata part is not a JSON object",
            ));
        }
        let headers = reader.headers().await.map_err(bad)?;
        if let Some(location) = headers.get("location") {
            return self.follow_location(origin, location).await;
        }
        Ok(RemoteFile {
            content_type: clean(headers.get("content-type").map(str::to_owned)),
            filename: clean(
                headers
                    .get("content-disposition")
                    .and_then(multipart::disposition_filename),
            ),
            length: headers.get("content-length").and_then(|l| l.parse().ok()),
            body: reader.into_part_stream(),
        })
    }

    /// The file behind a `Location` part: fetched without credentials, with the same address
    /// checks as URL previews (a remote server must not make this one reach its own network).
    async fn follow_location(self, origin: &ServerName, location: &str) -> Result<RemoteFile> {
        let url = reqwest::Url::parse(location)
            .map_err(|_| bad_gateway(origin, "invalid Location in the media answer"))?;
        let how = PublicFetch {
            policy: &self.outbound.media_redirects,
            timeout: FETCH_TIMEOUT,
            extra_roots: &self.federation_state.extra_roots,
            user_agent: concat!("Palabre/", env!("CARGO_PKG_VERSION")),
        };
        let resp = open_public(url, &how).await.map_err(|e| {
            bad_gateway(origin, format!("media Location not fetched: {}", e.message))
        })?;
        let header = |name: reqwest::header::HeaderName| {
            resp.headers()
                .get(name)
                .and_then(|v| v.to_str().ok())
                .map(str::to_owned)
        };
        Ok(RemoteFile {
            content_type: clean(header(reqwest::header::CONTENT_TYPE)),
            filename: clean(
                header(reqwest::header::CONTENT_DISPOSITION)
                    .as_deref()
                    .and_then(multipart::disposition_filename),
            ),
            length: resp.content_length(),
            body: Box::pin(
                resp.bytes_stream()
                    .map(|c: reqwest::Result<Bytes>| c.map_err(|e| e.to_string())),
            ),
        })
    }

    /// A thumbnail of a remote media: generated here from the cached original when there is
    /// one, else asked of the origin at the size this server would serve and cached.
    #[allow(clippy::too_many_arguments)]
    pub(super) async fn remote_thumbnail(
        self,
        origin: &ServerName,
        media_id: &str,
        width: u32,
        height: u32,
        method: Method,
        timeout_ms: Option<u64>,
    ) -> Result<Download> {
        if !valid_media_id(media_id) {
            return Err(Error::not_found("Media not found"));
        }
        if let Some(row) = self.local_copy(origin, media_id).await? {
            return self
                .thumbnail_of(&row.sha256, row.size as u64, width, height, method)
                .await;
        }
        let (tw, th) = pick(width, height, method);
        if let Some(t) = self
            .remote_thumbnail_copy(origin, media_id, tw, th, method)
            .await?
        {
            return self
                .open_media(&t.sha256, t.size as u64, t.content_type, None)
                .await;
        }
        let me = self
            .me
            .upgrade()
            .ok_or_else(|| Error::unknown("Server shutting down"))?;
        let (origin, media_id) = (origin.to_owned(), media_id.to_owned());
        let t = tokio::spawn(async move {
            let key = format!("{origin}/{media_id}/{tw}x{th}/{}", method.as_str());
            let _g = me.media_inflight.lock(key).await;
            if let Some(t) = me
                .media().remote_thumbnail_copy(&origin, &media_id, tw, th, method)
                .await?
            {
                return Ok(t);
            }
            let wait = timeout_ms.unwrap_or(MAX_WAIT_MS).min(MAX_WAIT_MS);
            let path = format!(
                "/_matrix/federation/v1/media/thumbnail/{media_id}?width={tw}&height={th}&method={}&animated=false&timeout_ms={wait}",
                method.as_str()
            );
            let file = me.media().remote_file(&origin, &path).await?;
            let (sha, size) = me.media().store_remote_file(&origin, file.body, file.length).await?;
            let t = ThumbnailRow {
                content_type: file
                    .content_type
                    .unwrap_or_else(|| "application/octet-stream".into()),
                sha256: sha,
                size: size as i64,
            };
            me.db
                .put_remote_thumbnail(
                    origin.as_str(),
                    &media_id,
                    tw.into(),
                    th.into(),
                    method.as_str(),
                    &t,
                )
                .await?;
            Ok::<_, Error>(t)
        })
        .await
        .map_err(|e| Error::unknown(format!("thumbnail fetch: {e}")))??;
        self.open_media(&t.sha256, t.size as u64, t.content_type, None)
            .await
    }

    async fn remote_thumbnail_copy(
        self,
        origin: &ServerName,
        media_id: &str,
        tw: u32,
        th: u32,
        method: Method,
    ) -> Result<Option<ThumbnailRow>> {
        let Some(t) = self
            .db
            .get_remote_thumbnail(
                origin.as_str(),
                media_id,
                tw.into(),
                th.into(),
                method.as_str(),
            )
            .await?
        else {
            return Ok(None);
        };
        let present = tokio::fs::try_exists(self.media_path(&t.sha256))
            .await
            .unwrap_or(false);
        Ok(present.then_some(t))
    }
}
