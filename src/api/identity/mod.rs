//! The built-in identity mapping (TCHAP.md §1): which server hosts an email address. Present
//! only with Tchap on (`[tchap]`); otherwise these paths are unknown, as on any homeserver.

use axum::{
    extract::{FromRequest, Request, State},
    http::{header, HeaderValue},
    response::{IntoResponse, Response},
    routing::get,
    Router,
};
use serde_json::json;

use super::{federation::auth::FedRequest, form_pairs, ApiResult, AppState, ClientIp, ClientPeer};
use crate::{services::policy::annuaire::InternalInfoCaller, Error};

pub fn routes() -> Router<AppState> {
    Router::new()
        .route(
            "/_matrix/identity/api/v1/info",
            get(info).options(preflight),
        )
        .route("/_matrix/identity/api/v1/internal-info", get(internal_info))
}

fn cors(mut r: Response) -> Response {
    let h = r.headers_mut();
    h.insert(
        header::ACCESS_CONTROL_ALLOW_ORIGIN,
        HeaderValue::from_static("*"),
    );
    h.insert(
        header::ACCESS_CONTROL_ALLOW_METHODS,
        HeaderValue::from_static("GET, OPTIONS"),
    );
    h.insert(
        header::ACCESS_CONTROL_ALLOW_HEADERS,
        HeaderValue::from_static("Origin, X-Requested-With, Content-Type, Accept, Authorization"),
    );
    r
}

/// The email address of `?medium=email&address=`.
fn address(query: Option<&str>) -> Result<String, Error> {
    let pairs = form_pairs(query.unwrap_or(""));
    let get = |k: &str| pairs.iter().find(|(n, _)| n == k).map(|(_, v)| v.clone());
    let (Some(medium), Some(address)) = (get("medium"), get("address")) else {
        return Err(Error::missing_params("medium and address are required"));
    };
    if medium != "email" {
        return Err(Error::invalid_param("Only the email medium is supported"));
    }
    Ok(address)
}

fn enabled(s: &AppState) -> Result<(), Error> {
    if s.policy_rules.enabled() {
        Ok(())
    } else {
        Err(Error::unrecognized("Unrecognized request"))
    }
}

async fn preflight(State(s): State<AppState>) -> ApiResult {
    enabled(&s)?;
    Ok(cors(axum::Json(json!({})).into_response()))
}

/// `GET /_matrix/identity/api/v1/info?medium=email&address=`: no auth, CORS `*`.
async fn info(State(s): State<AppState>, ClientIp(ip): ClientIp, req: Request) -> ApiResult {
    enabled(&s)?;
    let address = address(req.uri().query())?;
    s.ratelimit
        .check("identity_info", &ip, s.config.rate_limits.search)?;
    let v = s.policy().identity_info(&address).await?;
    Ok(cors(axum::Json(v).into_response()))
}

/// `GET /_matrix/identity/api/v1/internal-info?medium=email&address=`: for the federation's
/// servers only — a request signed (X-Matrix) by a peer, or an unsigned request from the
/// loopback interface that no proxy forwarded (neither forwarding headers nor a socket peer
/// that is a trusted proxy: a proxy on the same host connects from loopback too). Everything
/// else: 403.
async fn internal_info(
    State(s): State<AppState>,
    ClientPeer(peer): ClientPeer,
    req: Request,
) -> ApiResult {
    enabled(&s)?;
    let address = address(req.uri().query())?;
    let signed = req
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|h| h.to_str().ok())
        .is_some_and(|h| h.trim_start().starts_with("X-Matrix"));
    let v = if signed {
        let fed = FedRequest::from_request(req, &s).await?;
        s.policy()
            .identity_internal_info(InternalInfoCaller::Signed(&fed.origin), &address)
            .await?
    } else {
        let via_proxy = peer.is_some_and(|p| p.via_proxy);
        let proxied = via_proxy
            || req.headers().contains_key("x-forwarded-for")
            || req.headers().contains_key(header::FORWARDED)
            || req.headers().contains_key("x-real-ip");
        // Without a proxy `peer.ip` is the socket peer itself.
        let loopback = peer.is_some_and(|p| !p.via_proxy && p.ip.is_loopback());
        s.policy()
            .identity_internal_info(InternalInfoCaller::Unsigned { loopback, proxied }, &address)
            .await?
    };
    Ok(axum::Json(v).into_response())
}
