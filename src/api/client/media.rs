//! Content repository (spec: Content repository), authenticated media (v1.11) and the legacy
//! `/_matrix/media/v3` endpoints.

use axum::{
    body::Body,
    extract::State,
    http::{header, HeaderMap, HeaderValue},
    response::{IntoResponse, Response},
};
use serde::Deserialize;
use serde_json::json;

use crate::{
    api::{ok, ApiResult, AppState, Auth, Path, Query},
    services::media::{content_disposition, thumbnail::Method, Download},
};

/// No script may run from served media, whatever its type.
const CSP: &str = "sandbox; default-src 'none'; script-src 'none'; plugin-types application/pdf; \
                   style-src 'unsafe-inline'; media-src 'self'; object-src 'self';";

fn declared(headers: &HeaderMap) -> (Option<&str>, Option<u64>) {
    let content_type = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok());
    let len = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse().ok());
    (content_type, len)
}

fn serve(d: Download, filename: Option<&str>) -> Response {
    let disposition = content_disposition(&d.content_type, filename.or(d.filename.as_deref()));
    let content_type = HeaderValue::from_str(&d.content_type)
        .unwrap_or(HeaderValue::from_static("application/octet-stream"));
    let mut resp = Body::from_stream(d.body).into_response();
    let h = resp.headers_mut();
    h.insert(header::CONTENT_TYPE, content_type);
    h.insert(header::CONTENT_LENGTH, HeaderValue::from(d.size));
    if let Ok(v) = HeaderValue::from_str(&disposition) {
        h.insert(header::CONTENT_DISPOSITION, v);
    }
    h.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(CSP),
    );
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    h.insert(
        "cross-origin-resource-policy",
        HeaderValue::from_static("cross-origin"),
    );
    resp
}

#[derive(Deserialize)]
pub struct UploadQuery {
    filename: Option<String>,
}

pub async fn upload(
    State(s): State<AppState>,
    Auth(r): Auth,
    Query(q): Query<UploadQuery>,
    headers: HeaderMap,
    body: Body,
) -> ApiResult {
    let (content_type, len) = declared(&headers);
    let uri = s
        .media()
        .upload_media(
            &r.user_id,
            content_type,
            q.filename.as_deref(),
            len,
            body.into_data_stream(),
        )
        .await?;
    ok(json!({ "content_uri": uri }))
}

pub async fn create(State(s): State<AppState>, Auth(r): Auth) -> ApiResult {
    let (uri, expires) = s.media().create_media(&r.user_id).await?;
    ok(json!({ "content_uri": uri, "unused_expires_at": expires }))
}

pub async fn upload_pending(
    State(s): State<AppState>,
    Auth(r): Auth,
    Path((server, id)): Path<(String, String)>,
    Query(q): Query<UploadQuery>,
    headers: HeaderMap,
    body: Body,
) -> ApiResult {
    let (content_type, len) = declared(&headers);
    s.media()
        .upload_pending(
            &r.user_id,
            &server,
            &id,
            content_type,
            q.filename.as_deref(),
            len,
            body.into_data_stream(),
        )
        .await?;
    ok(json!({}))
}

pub async fn config(State(s): State<AppState>, Auth(_r): Auth) -> ApiResult {
    ok(json!({ "m.upload.size": s.config.media.max_upload_bytes }))
}

#[derive(Deserialize)]
pub struct PreviewQuery {
    url: String,
    /// The preview "as of" a time: accepted, the newest cached one is served.
    #[allow(dead_code)]
    ts: Option<i64>,
}

pub async fn preview_url(
    State(s): State<AppState>,
    Auth(r): Auth,
    Query(q): Query<PreviewQuery>,
) -> ApiResult {
    ok(s.media().preview_url(&r.user_id, &q.url).await?)
}

#[derive(Deserialize)]
pub struct DownloadQuery {
    timeout_ms: Option<u64>,
}

pub async fn download(
    State(s): State<AppState>,
    Auth(_r): Auth,
    Path((server, id)): Path<(String, String)>,
    Query(q): Query<DownloadQuery>,
) -> ApiResult {
    Ok(serve(
        s.media()
            .download_media(&server, &id, q.timeout_ms, false)
            .await?,
        None,
    ))
}

pub async fn download_named(
    State(s): State<AppState>,
    Auth(_r): Auth,
    Path((server, id, name)): Path<(String, String, String)>,
    Query(q): Query<DownloadQuery>,
) -> ApiResult {
    Ok(serve(
        s.media()
            .download_media(&server, &id, q.timeout_ms, false)
            .await?,
        Some(&name),
    ))
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
    Auth(_r): Auth,
    Path((server, id)): Path<(String, String)>,
    Query(q): Query<ThumbnailQuery>,
) -> ApiResult {
    thumbnail_for(s, server, id, q, false).await
}

async fn thumbnail_for(
    s: AppState,
    server: String,
    id: String,
    q: ThumbnailQuery,
    legacy: bool,
) -> ApiResult {
    let method = Method::parse(q.method.as_deref())?;
    Ok(serve(
        s.media()
            .thumbnail(
                &server,
                &id,
                q.width,
                q.height,
                method,
                q.timeout_ms,
                legacy,
            )
            .await?,
        None,
    ))
}

/// Legacy unauthenticated download: only media from before the configured freeze.
pub async fn legacy_download(
    State(s): State<AppState>,
    Path((server, id)): Path<(String, String)>,
    Query(q): Query<DownloadQuery>,
) -> ApiResult {
    Ok(serve(
        s.media()
            .download_media(&server, &id, q.timeout_ms, true)
            .await?,
        None,
    ))
}

pub async fn legacy_download_named(
    State(s): State<AppState>,
    Path((server, id, name)): Path<(String, String, String)>,
    Query(q): Query<DownloadQuery>,
) -> ApiResult {
    Ok(serve(
        s.media()
            .download_media(&server, &id, q.timeout_ms, true)
            .await?,
        Some(&name),
    ))
}

pub async fn legacy_thumbnail(
    State(s): State<AppState>,
    Path((server, id)): Path<(String, String)>,
    Query(q): Query<ThumbnailQuery>,
) -> ApiResult {
    thumbnail_for(s, server, id, q, true).await
}
