//! Inbound request authentication (spec: Request Authentication): the `X-Matrix` header is
//! verified against the origin's keys, for this server as destination, before any handler runs.

use axum::{
    body::Bytes,
    extract::{FromRequest, Request},
    http::StatusCode,
};
use ruma::{api::federation::authentication::XMatrix, OwnedServerName};
use serde::de::DeserializeOwned;
use serde_json::Value;

use crate::{api::AppState, services::federation::allowed, util, Error};

/// An authenticated request from another server: its name and its body.
pub struct FedRequest {
    pub origin: OwnedServerName,
    pub body: Bytes,
}

impl FedRequest {
    /// The body as JSON of the expected shape (`{}` when empty).
    pub fn json<T: DeserializeOwned>(&self) -> Result<T, Error> {
        let bytes: &[u8] = if self.body.is_empty() {
            b"{}"
        } else {
            &self.body
        };
        let value: Value = serde_json::from_slice(bytes)
            .map_err(|e| Error::not_json(format!("Invalid JSON: {e}")))?;
        serde_json::from_value(value).map_err(|e| Error::bad_json(e.to_string()))
    }
}

impl FromRequest<AppState> for FedRequest {
    type Rejection = Error;

    async fn from_request(req: Request, state: &AppState) -> Result<Self, Error> {
        if !state.config.federation.enabled {
            return Err(Error::forbidden("Federation is disabled on this server"));
        }
        let (parts, body) = req.into_parts();
        let xm = XMatrix::extract_from_http_headers(&parts.headers)
            .map_err(|e| Error::unauthorized(format!("Missing or invalid X-Matrix header: {e}")))?;
        if !allowed(&state.config.federation, &xm.origin) {
            return Err(Error::forbidden(format!(
                "Federation with {} is not allowed",
                xm.origin
            )));
        }
        let body = axum::body::to_bytes(body, 64 * 1024 * 1024)
            .await
            .map_err(|_| Error::too_large("Request body too large"))?;
        let keys = state
            .server_verify_keys(&xm.origin, &[xm.key.to_string()], util::now_ms())
            .await
            .map_err(|e| {
                if e.status == StatusCode::UNAUTHORIZED {
                    e
                } else {
                    Error::unauthorized(format!("Cannot get {}'s keys: {}", xm.origin, e.message))
                }
            })?;
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
        // The server is up: end any backoff towards it.
        state.wake_destination(xm.origin.as_str(), true);
        Ok(FedRequest {
            origin: xm.origin,
            body,
        })
    }
}
