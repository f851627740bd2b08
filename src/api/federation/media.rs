//! Content repository over federation (spec: Server-server API, Content repository): this
//! server's media for other servers, as `multipart/mixed` (a JSON metadata part, then the file),
//! streamed from disk.

use axum::{
    body::{Body, Bytes},
    extract::State,
    http::{header, HeaderValue},
    response::{IntoResponse, Response},
};
use futures_util::StreamExt;
use serde::Deserialize;

use super::auth::FedRequest;
use crate::{
    api::{ApiResult, AppState, Path, Query},
    services::media::{content_disposition, thumbnail::Method, Download},
    util,
};

/// The two parts: `{}` metadata, then the file with its type and disposition.
fn multipart(d: Download) -> Response {
    let boundary = util::random_string(32);
    let disposition = content_disposition(&d.content_type, d.filename.as_deref());
    let head = format!(
        "--{boundary}\r\nContent-Type: application/json\r\n\r\n{{}}\r\n\
         --{boundary}\r\nContent-Type: {}\r\nContent-Disposition: {disposition}\r\n\r\n",
        d.content_type
    );
    let tail = format!("\r\n--{boundary}--\r\n");
    let length = head.len() as u64 + d.size + tail.len() as u64;
    let body = futures_util::stream::once(async move { Ok(Bytes::from(head)) })
        .chain(d.body)
        .chain(futures_util::stream::once(
            async move { Ok(Bytes::from(tail)) },
        ));
    let mut resp = Body::from_stream(body).into_response();
    let h = resp.headers_mut();
    if let Ok(v) = HeaderValue::from_str(&format!("multipart/mixed; boundary={boundary}")) {
        h.insert(header::CONTENT_TYPE, v);
    }
    h.insert(header::CONTENT_LENGTH, HeaderValue::from(length));
    resp
}

#[derive(Deserialize)]
pub struct DownloadQuery {
    timeout_ms: Option<u64>,
}

pub async fn download(
    State(s): State<AppState>,
    Path(id): Path<String>,
    Query(q): Query<DownloadQuery>,
    _req: FedRequest,
) -> ApiResult {
    let d = s
        .media()
        .download_media(s.server_name.as_str(), &id, q.timeout_ms, false)
        .await?;
    Ok(multipart(d))
}

#[derive(Deserialize)]
pub struct ThumbnailQuery {
    width: u32,
    height: u32,
    method: Option<String>,
    /// Accepted; thumbnails are still images (allowed by the spec).
    #[allow(dead_code)]
    animated: Option<bool>,
    timeout_ms: Option<u64>,
}

pub async fn thumbnail(
    State(s): State<AppState>,
    Path(id): Path<String>,
    Query(q): Query<ThumbnailQuery>,
    _req: FedRequest,
) -> ApiResult {
    let method = Method::parse(q.method.as_deref())?;
    let d = s
        .media()
        .thumbnail(
            s.server_name.as_str(),
            &id,
            q.width,
            q.height,
            method,
            q.timeout_ms,
            false,
        )
        .await?;
    Ok(multipart(d))
}
