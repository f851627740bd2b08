//! Inbound request authentication (spec: Request Authentication): the `X-Matrix` header is
//! verified against the origin's keys, for this server as destination, before any handler runs.
//! The header, the origin, the declared length and the key are checked before the body is read;
//! the body is read through the route's cap with a deadline, in one of the origin's slots
//! (`services::federation::inbound`).

use std::time::Duration;

use axum::{
    body::{Body, Bytes},
    extract::{FromRequest, Request},
    http::StatusCode,
};
use futures_util::StreamExt;
use ruma::{api::federation::authentication::XMatrix, OwnedServerName};
use serde::de::DeserializeOwned;

use crate::{
    api::AppState,
    services::federation::{allowed, inbound},
    util, Error,
};

/// An authenticated request from another server: its name and its body.
pub struct FedRequest {
    pub origin: OwnedServerName,
    pub body: Bytes,
    /// One of the origin's slots (`max_concurrent_per_origin`), freed when the handler is done
    /// with the request.
    _slot: tokio::sync::OwnedSemaphorePermit,
}

impl FedRequest {
    /// The body as JSON of the expected shape (`{}` when empty), without NUL characters.
    pub fn json<T: DeserializeOwned>(&self) -> Result<T, Error> {
        crate::api::json_body(&self.body, crate::api::Nul::Refused)
    }

    /// The body of a transaction, whose PDUs and EDUs are each refused if they hold a NUL.
    pub fn transaction<T: DeserializeOwned>(&self) -> Result<T, Error> {
        crate::api::json_body(&self.body, crate::api::Nul::PerItem)
    }
}

impl FromRequest<AppState> for FedRequest {
    type Rejection = Error;

    async fn from_request(req: Request, state: &AppState) -> Result<Self, Error> {
        if !state.config.federation.enabled {
            return Err(Error::forbidden("Federation is disabled on this server"));
        }
        let (parts, body) = req.into_parts();
        // Everything the headers can tell is checked before a byte of the body is read.
        let xm = XMatrix::extract_from_http_headers(&parts.headers)
            .map_err(|e| Error::unauthorized(format!("Missing or invalid X-Matrix header: {e}")))?;
        if xm
            .destination
            .as_ref()
            .is_some_and(|d| d != &state.server_name)
        {
            return Err(Error::unauthorized("This request is for another server"));
        }
        if !allowed(&state.config.federation, &xm.origin) {
            return Err(Error::forbidden(format!(
                "Federation with {} is not allowed",
                xm.origin
            )));
        }
        let cfg = &state.config.inbound_federation;
        let cap = inbound::body_cap(
            cfg,
            parts
                .extensions
                .get::<axum::extract::MatchedPath>()
                .map(|p| p.as_str()),
        );
        let declared = parts
            .headers
            .get(axum::http::header::CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok()?.parse::<u64>().ok());
        if declared.is_some_and(|l| l > cap as u64) {
            return Err(Error::too_large("Request body too large"));
        }
        let keys = state
            .federation()
            .server_verify_keys(&xm.origin, &[xm.key.to_string()], util::now_ms())
            .await
            .map_err(|e| {
                if e.status == StatusCode::UNAUTHORIZED {
                    e
                } else {
                    Error::unauthorized(format!("Cannot get {}'s keys: {}", xm.origin, e.message))
                }
            })?;
        let permit = state
            .inbound
            .try_acquire(&xm.origin, cfg.max_concurrent_per_origin)
            .ok_or_else(|| {
                let mut e = Error::limit_exceeded(1000);
                e.message = format!("Too many requests from {} at once", xm.origin);
                e
            })?;
        let deadline = Duration::from_secs(cfg.body_timeout_secs.max(1));
        let body = tokio::time::timeout(deadline, read_capped(body, cap, declared))
            .await
            .map_err(|_| Error::request_timeout("Request body not received in time"))??;
        let map = std::collections::BTreeMap::from([(xm.origin.to_string(), keys)]);
        let path = parts
            .uri
            .path_and_query()
            .map(|p| p.as_str())
            .unwrap_or("/");
        let signed = axum::http::Request::builder()
            .method(parts.method.clone())
            .uri(path)
            .body(body.as_ref())
            .map_err(|_| Error::unauthorized("Bad request line"))?;
        xm.verify_http_request(&signed, &state.server_name, &map)
            .map_err(|e| Error::unauthorized(format!("Request signature check failed: {e}")))?;
        crate::api::Caller::set(&parts, xm.origin.as_str());
        // The server is up: end any backoff towards it.
        state
            .federation()
            .wake_destination(xm.origin.as_str(), true);
        Ok(FedRequest {
            origin: xm.origin,
            body,
            _slot: permit,
        })
    }
}

/// The body, at most `cap` bytes (413 past it, whatever the declared length).
async fn read_capped(body: Body, cap: usize, declared: Option<u64>) -> Result<Bytes, Error> {
    let mut stream = body.into_data_stream();
    // The declared length is the sender's word: it sizes the first allocation up to 64 KiB
    // only, so unfinished bodies reserve nothing they did not send.
    let mut buf = Vec::with_capacity(declared.map_or(0, |l| l as usize).min(cap).min(64 * 1024));
    while let Some(chunk) = stream.next().await {
        let chunk = chunk.map_err(|_| Error::bad_json("Request body could not be read"))?;
        if buf.len() + chunk.len() > cap {
            return Err(Error::too_large("Request body too large"));
        }
        buf.extend_from_slice(&chunk);
    }
    Ok(Bytes::from(buf))
}
