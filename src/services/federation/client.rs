//! Signed requests to other servers (`Authorization: X-Matrix …`, ruma's signing).

use crate::services::federation::FederationFace;
use axum::http::{Method, StatusCode};
use ruma::{
    api::federation::authentication::{XMatrix, XMatrixSigningInput},
    ServerName,
};
use serde_json::Value;

use super::allowed;
use crate::services::outbound::read_capped;
use crate::{Error, Result};

/// Largest JSON answer accepted from another server.
const MAX_RESPONSE_BYTES: usize = 32 * 1024 * 1024;

/// The one answer for a server that could not be talked to, whatever the reason (refused
/// address, refused or reset connection, TLS failure, timeout, oversized or cut answer): the
/// reason goes to the log only, so that requests naming other servers cannot be used to map
/// which addresses and ports answer.
fn unreachable(server: &ServerName, e: impl std::fmt::Display) -> Error {
    tracing::info!(%server, error = %e, "federation request failed");
    Error::bad_gateway(format!("{server} could not be reached"))
}

impl FederationFace<'_> {
    /// Sends a signed request and returns the raw response (any status).
    pub async fn federation_send(
        self,
        dest: &ServerName,
        method: Method,
        path_and_query: &str,
        body: Option<&Value>,
    ) -> Result<reqwest::Response> {
        self.federation_send_within(dest, method, path_and_query, body, None)
            .await
    }

    /// `federation_send` with its own bound on the whole exchange (body included) instead of
    /// the client's default minute: long media downloads.
    pub async fn federation_send_within(
        self,
        dest: &ServerName,
        method: Method,
        path_and_query: &str,
        body: Option<&Value>,
        timeout: Option<std::time::Duration>,
    ) -> Result<reqwest::Response> {
        if dest == self.server_name {
            return Err(Error::invalid_param("That is this server"));
        }
        if !allowed(&self.config.federation, dest) {
            return Err(Error::forbidden(format!(
                "Federation with {dest} is not allowed"
            )));
        }
        let bytes = match body {
            Some(b) => serde_json::to_vec(b)?,
            None => vec![],
        };
        let signing = axum::http::Request::builder()
            .method(method.clone())
            .uri(path_and_query)
            .body(bytes.clone())
            .map_err(|e| Error::unknown(format!("bad federation request: {e}")))?;
        let auth = XMatrix::sign_http_request(
            &signing,
            XMatrixSigningInput::new(self.server_name.clone(), dest.to_owned(), &self.keys.pair),
        )
        .map_err(|e| Error::unknown(format!("cannot sign request: {e}")))?;
        let fed = &self.federation_state;
        let d = fed.resolver.resolve(dest, &fed.well_known_http).await;
        let url = reqwest::Url::parse(&format!("{}{path_and_query}", d.base_url))
            .map_err(|e| unreachable(dest, e))?;
        if !fed.ip_policy.url_allowed(&url) {
            return Err(unreachable(dest, "address refused by the outbound policy"));
        }
        let mut req = fed
            .http
            .request(method, url)
            .header(reqwest::header::AUTHORIZATION, auth.to_string());
        if body.is_some() {
            req = req
                .header(reqwest::header::CONTENT_TYPE, "application/json")
                .body(bytes);
        }
        if let Some(t) = timeout {
            req = req.timeout(t);
        }
        req.send().await.map_err(|e| unreachable(dest, e))
    }

    /// A signed request whose answer is JSON; a Matrix error from the other server comes back
    /// as the same error.
    pub async fn federation_request(
        self,
        dest: &ServerName,
        method: Method,
        path_and_query: &str,
        body: Option<&Value>,
    ) -> Result<Value> {
        let resp = self
            .federation_send(dest, method, path_and_query, body)
            .await?;
        let status = resp.status();
        let bytes = read_capped(resp, MAX_RESPONSE_BYTES)
            .await
            .map_err(|e| unreachable(dest, e))?;
        let value: Value = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
        if status.is_success() {
            return Ok(value);
        }
        Err(remote_error(dest, status, &value))
    }
}

/// The error to answer when another server answered `status` with `value` (a Matrix error
/// body or anything else). Only statuses that mean the same to a client pass through (400,
/// 403, 404, 409, 413, 429, with the errcodes clients act on); anything else — a remote 401
/// (which a client would read as "your token is bad" and log out), 5xx, odd codes — is a 502.
pub fn remote_error(dest: &ServerName, status: reqwest::StatusCode, value: &Value) -> Error {
    let passes = matches!(status.as_u16(), 400 | 403 | 404 | 409 | 413 | 429);
    if !passes {
        tracing::info!(%dest, status = status.as_u16(), "remote server answered with an error");
        return Error::bad_gateway(format!("{dest} answered with an error"));
    }
    let code = StatusCode::from_u16(status.as_u16()).unwrap_or(StatusCode::BAD_GATEWAY);
    let errcode = match value.get("errcode").and_then(Value::as_str) {
        Some("M_NOT_FOUND") => "M_NOT_FOUND",
        Some("M_FORBIDDEN") => "M_FORBIDDEN",
        Some("M_UNRECOGNIZED") => "M_UNRECOGNIZED",
        Some("M_UNSUPPORTED_ROOM_VERSION") => "M_UNSUPPORTED_ROOM_VERSION",
        Some("M_INCOMPATIBLE_ROOM_VERSION") => "M_INCOMPATIBLE_ROOM_VERSION",
        Some("M_LIMIT_EXCEEDED") => "M_LIMIT_EXCEEDED",
        Some("M_INVALID_PARAM") => "M_INVALID_PARAM",
        Some("M_BAD_JSON") => "M_BAD_JSON",
        Some("M_NOT_YET_UPLOADED") => "M_NOT_YET_UPLOADED",
        Some("M_TOO_LARGE") => "M_TOO_LARGE",
        _ => "M_UNKNOWN",
    };
    let message: String = value
        .get("error")
        .and_then(Value::as_str)
        .unwrap_or("request failed")
        .chars()
        .take(200)
        .collect();
    Error::new(code, errcode, format!("{dest}: {message}"))
}
