//! HTTP <-> service calls. No SQL and no business rule here: extract, call, answer.

pub mod admin;
pub mod client;
pub mod federation;
mod health;
pub mod identity;
pub mod metrics;

use std::{net::SocketAddr, sync::Arc};

use axum::{
    extract::{ConnectInfo, FromRequest, FromRequestParts, Request},
    http::{request::Parts, Method, StatusCode},
    response::{IntoResponse, Response},
    Router,
};
use serde::de::DeserializeOwned;
use serde_json::Value;

use crate::{
    services::{requester::Requester, Services},
    Error,
};

pub type AppState = Arc<Services>;

/// The authenticated caller (`Authorization: Bearer …`, or `?access_token=` for old clients).
pub struct Auth(pub Requester);

impl FromRequestParts<AppState> for Auth {
    type Rejection = Error;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, Error> {
        let token = match parts.headers.get(axum::http::header::AUTHORIZATION) {
            Some(h) => {
                let h = h
                    .to_str()
                    .map_err(|_| Error::unknown_token("Invalid Authorization header"))?;
                h.strip_prefix("Bearer ")
                    .ok_or_else(|| Error::unknown_token("Invalid Authorization header"))?
                    .trim()
                    .to_owned()
            }
            None => parts
                .uri
                .query()
                .and_then(|q| {
                    form_pairs(q)
                        .into_iter()
                        .find(|(k, _)| k == "access_token")
                        .map(|(_, v)| v)
                })
                .ok_or_else(|| Error::missing_token("Missing access token"))?,
        };
        let requester = state.accounts().authenticate(&token).await?;
        Caller::set(parts, requester.user_id.as_str());
        if !expiry_exempt(parts) && state.policy().account_expired(&requester.user_id).await? {
            return Err(Error::expired_account("User account has expired"));
        }
        Ok(Auth(requester))
    }
}

/// The caller when an access token is given (`None` without one); a bad token is still 401.
/// For the endpoints a token is optional on (room summaries, a password reset by email).
pub struct MaybeAuth(pub Option<Requester>);

impl FromRequestParts<AppState> for MaybeAuth {
    type Rejection = Error;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, Error> {
        let given = parts
            .headers
            .contains_key(axum::http::header::AUTHORIZATION)
            || parts
                .uri
                .query()
                .is_some_and(|q| form_pairs(q).iter().any(|(k, _)| k == "access_token"));
        if !given {
            return Ok(MaybeAuth(None));
        }
        let Auth(r) = Auth::from_request_parts(parts, state).await?;
        Ok(MaybeAuth(Some(r)))
    }
}

/// Routes an expired account may still call (TCHAP.md §5): logging out and asking for a new
/// renewal link. Decided by the matched route template.
fn expiry_exempt(parts: &Parts) -> bool {
    let Some(path) = parts.extensions.get::<axum::extract::MatchedPath>() else {
        return false;
    };
    let path = path.as_str();
    (path.starts_with("/_matrix/client/")
        && (path.ends_with("/logout") || path.ends_with("/logout/all")))
        || path == client::account_validity::SEND_MAIL
        || path == client::account_validity::SEND_MAIL_SYNAPSE
}

/// The decoded `key=value` pairs of a query string (`+` as a space, pairs that are not UTF-8
/// once decoded left out). Public so that the fuzz targets (`fuzz/`) reach it.
pub fn form_pairs(q: &str) -> Vec<(String, String)> {
    q.split('&')
        .filter_map(|kv| {
            let (k, v) = kv.split_once('=').unwrap_or((kv, ""));
            let dec = |s: &str| {
                percent_encoding::percent_decode_str(&s.replace('+', " "))
                    .decode_utf8()
                    .ok()
                    .map(|c| c.into_owned())
            };
            Some((dec(k)?, dec(v)?))
        })
        .collect()
}

/// The connection's client: the socket peer, or the address a trusted proxy forwarded
/// (`[proxy] trusted_proxies`, see `services::client_ip`). None when the server was not
/// started with connection info (never the case in `server::start`).
pub struct ClientPeer(pub Option<crate::services::client_ip::Peer>);

impl FromRequestParts<AppState> for ClientPeer {
    type Rejection = Error;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, Error> {
        let plain = parts
            .extensions
            .get::<ConnectInfo<SocketAddr>>()
            .map(|c| c.0);
        let tls = parts
            .extensions
            .get::<ConnectInfo<crate::tls::TlsPeer>>()
            .map(|c| c.0 .0);
        let forwarded = parts
            .headers
            .get_all("x-forwarded-for")
            .iter()
            .filter_map(|v| v.to_str().ok());
        Ok(ClientPeer(
            plain
                .or(tls)
                .map(|a| state.proxies.resolve(a.ip(), forwarded)),
        ))
    }
}

/// The client's IP address (for rate limits), as [`ClientPeer`] finds it.
pub struct ClientIp(pub String);

impl FromRequestParts<AppState> for ClientIp {
    type Rejection = Error;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, Error> {
        let ClientPeer(peer) = ClientPeer::from_request_parts(parts, state).await?;
        Ok(ClientIp(
            peer.map(|p| p.ip.to_string())
                .unwrap_or_else(|| "unknown".into()),
        ))
    }
}

/// A JSON body: `M_NOT_JSON` when it is not JSON, `M_BAD_JSON` when it has the wrong shape,
/// `M_TOO_LARGE` past the configured size. An empty body reads as `{}`.
pub struct Json<T>(pub T);

impl<T: DeserializeOwned, S: Send + Sync> FromRequest<S> for Json<T> {
    type Rejection = Error;

    async fn from_request(req: Request, state: &S) -> Result<Self, Error> {
        let bytes = axum::body::Bytes::from_request(req, state)
            .await
            .map_err(|e| {
                if e.status() == StatusCode::PAYLOAD_TOO_LARGE {
                    Error::too_large("Request body too large")
                } else {
                    Error::not_json(e.body_text())
                }
            })?;
        json_body(&bytes, Nul::Refused).map(Json)
    }
}

/// Whether a JSON body may hold NUL characters.
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Nul {
    /// Refused anywhere (keys and strings): PostgreSQL text cannot hold them, so a NUL reaching
    /// a column would fail there only (500) and pass on SQLite; both refuse it here instead.
    Refused,
    /// The body is a container whose parts are judged one by one (a federation transaction:
    /// one bad PDU must not refuse the others).
    PerItem,
}

/// A request body as JSON of the expected shape: `{}` when empty, `M_NOT_JSON` when not JSON,
/// `M_BAD_JSON` when of the wrong shape or holding a NUL character.
pub fn json_body<T: DeserializeOwned>(bytes: &[u8], nul: Nul) -> Result<T, Error> {
    let bytes: &[u8] = if bytes.iter().all(u8::is_ascii_whitespace) {
        b"{}"
    } else {
        bytes
    };
    let value: Value =
        serde_json::from_slice(bytes).map_err(|e| Error::not_json(format!("Invalid JSON: {e}")))?;
    if nul == Nul::Refused && crate::util::has_nul(&value) {
        return Err(Error::bad_json("Strings must not contain NUL (U+0000)"));
    }
    serde_json::from_value(value).map_err(|e| Error::bad_json(e.to_string()))
}

/// Refuses a request whose path or query string holds an encoded NUL (`%00`), for every route
/// at once: path parameters and query values end in database columns (see [`Nul`]).
async fn refuse_nul(req: Request, next: axum::middleware::Next) -> Response {
    let uri = req.uri();
    if uri.path().contains("%00") || uri.query().is_some_and(|q| q.contains("%00")) {
        return Error::invalid_param(
            "NUL characters (%00) are not allowed in a request path or query",
        )
        .into_response();
    }
    next.run(req).await
}

/// Query parameters, with Matrix errors.
pub struct Query<T>(pub T);

impl<T: DeserializeOwned, S: Send + Sync> FromRequestParts<S> for Query<T> {
    type Rejection = Error;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Error> {
        axum::extract::Query::<T>::from_request_parts(parts, state)
            .await
            .map(|q| Query(q.0))
            .map_err(|e| Error::invalid_param(e.body_text()))
    }
}

/// Path parameters, with Matrix errors.
pub struct Path<T>(pub T);

impl<T: DeserializeOwned + Send, S: Send + Sync> FromRequestParts<S> for Path<T> {
    type Rejection = Error;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Error> {
        axum::extract::Path::<T>::from_request_parts(parts, state)
            .await
            .map(|p| Path(p.0))
            .map_err(|e| Error::invalid_param(e.body_text()))
    }
}

pub type ApiResult = Result<Response, Error>;

pub fn ok(v: Value) -> ApiResult {
    Ok(axum::Json(v).into_response())
}

async fn unrecognized() -> Error {
    Error::unrecognized("Unrecognized request")
}

async fn method_not_allowed() -> Error {
    Error::method_not_allowed("Method not allowed")
}

/// The whole HTTP surface.
pub fn router(state: AppState) -> Router {
    let cors = tower_http::cors::CorsLayer::new()
        .allow_origin(tower_http::cors::Any)
        .allow_methods([
            Method::GET,
            Method::POST,
            Method::PUT,
            Method::DELETE,
            Method::OPTIONS,
        ])
        .allow_headers([
            axum::http::header::AUTHORIZATION,
            axum::http::header::CONTENT_TYPE,
            axum::http::header::ACCEPT,
            axum::http::HeaderName::from_static("x-requested-with"),
        ]);
    let limit = state.config.max_request_bytes;
    Router::new()
        .merge(client::routes())
        .merge(admin::routes())
        .merge(federation::routes())
        .merge(identity::routes())
        .merge(health::routes())
        .fallback(unrecognized)
        .method_not_allowed_fallback(method_not_allowed)
        .layer(axum::extract::DefaultBodyLimit::max(limit))
        .layer(axum::middleware::from_fn(refuse_nul))
        .layer(axum::middleware::from_fn_with_state(
            state.clone(),
            trace_request,
        ))
        .layer(cors)
        .with_state(state)
}

/// Who made a request, once authentication knows (a user id, or a server name for
/// federation): filled by the extractors, read by the access log.
#[derive(Clone, Default)]
pub struct Caller(Arc<std::sync::OnceLock<String>>);

impl Caller {
    /// Records the authenticated caller of the request these parts belong to.
    pub fn set(parts: &Parts, who: &str) {
        if let Some(c) = parts.extensions.get::<Caller>() {
            let _ = c.0.set(who.to_owned());
        }
    }
}

/// The access log: one span per request (its events carry the request id, method and route
/// template), and one line at the end (status, duration, caller, response bytes), at `info`
/// (`error` for a 5xx). The response carries the same id in `X-Request-Id` (made here: an
/// incoming one is the client's word, not ours). The same figures feed the request metrics
/// (`palabre_http_*`: method, route template — `unmatched` for no route —, status, latency).
async fn trace_request(
    axum::extract::State(s): axum::extract::State<AppState>,
    mut req: Request,
    next: axum::middleware::Next,
) -> Response {
    let route = req
        .extensions()
        .get::<axum::extract::MatchedPath>()
        .map(|p| p.as_str().to_owned())
        .unwrap_or_else(|| "unmatched".into());
    let method = req.method().clone();
    let start = std::time::Instant::now();
    let in_flight = s.metrics.in_flight();
    let request_id = crate::util::random_string(16);
    let caller = Caller::default();
    req.extensions_mut().insert(caller.clone());
    let span = tracing::info_span!("request", id = %request_id, %method, route = %route);
    let mut resp = tracing::Instrument::instrument(next.run(req), span.clone()).await;
    drop(in_flight);
    let status = resp.status().as_u16();
    let elapsed = start.elapsed().as_secs_f64();
    s.metrics
        .http_request(method.as_str(), &route, status, elapsed);
    let ms = elapsed * 1000.0;
    let bytes = axum::body::HttpBody::size_hint(resp.body()).exact();
    let who = caller.0.get().map(String::as_str).unwrap_or("-");
    span.in_scope(|| {
        if status >= 500 {
            tracing::error!(
                status,
                latency_ms = ms,
                caller = who,
                bytes,
                "request failed"
            );
        } else {
            tracing::info!(status, latency_ms = ms, caller = who, bytes, "request");
        }
    });
    if let Ok(v) = axum::http::HeaderValue::from_str(&request_id) {
        resp.headers_mut().insert("x-request-id", v);
    }
    resp
}
