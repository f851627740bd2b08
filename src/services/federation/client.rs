//! Signed requests to other servers (`Authorization: X-Matrix …`, ruma's signing).

use crate::services::federation::FederationFace;
use axum::http::{Method, StatusCode};
use ruma::{
    api::{
        federation::authentication::{ServerSignatures, XMatrix, XMatrixSigningInput},
        path_builder::SinglePath,
        Metadata, OutgoingRequest, OutgoingRequestExt,
    },
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
        let base_url = self.destination_base_url(dest).await?;
        let bytes = match body {
            Some(b) => serde_json::to_vec(b)?,
            None => vec![],
        };
        let mut request = axum::http::Request::builder()
            .method(method)
            .uri(format!("{base_url}{path_and_query}"))
            .body(bytes)
            .map_err(|e| Error::unknown(format!("bad federation request: {e}")))?;
        if body.is_some() {
            request.headers_mut().insert(
                axum::http::header::CONTENT_TYPE,
                axum::http::HeaderValue::from_static("application/json"),
            );
        }
        let auth = XMatrix::sign_http_request(&request, signing_input(self.s, dest))
            .map_err(|e| Error::unknown(format!("cannot sign request: {e}")))?;
        request.headers_mut().insert(
            axum::http::header::AUTHORIZATION,
            axum::http::HeaderValue::from(&auth),
        );
        self.dispatch(dest, request, timeout).await
    }

    /// A request of ruma's federation API (the path, query and body the spec gives it), signed
    /// by ruma's X-Matrix scheme and sent like any other; the raw response (any status).
    pub async fn call_raw<R>(
        self,
        dest: &ServerName,
        request: R,
        timeout: Option<std::time::Duration>,
    ) -> Result<reqwest::Response>
    where
        R: OutgoingRequest + Metadata<Authentication = ServerSignatures, PathBuilder = SinglePath>,
    {
        let base_url = self.destination_base_url(dest).await?;
        let request = request
            .try_into_http_request::<Vec<u8>>(&base_url, signing_input(self.s, dest), ())
            .map_err(|e| Error::unknown(format!("bad federation request: {e}")))?;
        self.dispatch(dest, request, timeout).await
    }

    /// [`Self::call_raw`] whose answer is JSON, checked by the caller (another server's answer
    /// is hostile: read field by field, not trusted to fit a type); a Matrix error from the
    /// other server comes back as the same error.
    pub async fn call<R>(self, dest: &ServerName, request: R) -> Result<Value>
    where
        R: OutgoingRequest + Metadata<Authentication = ServerSignatures, PathBuilder = SinglePath>,
    {
        let resp = self.call_raw(dest, request, None).await?;
        json_answer(dest, resp).await
    }

    /// The base URL of a server this one may talk to (not itself, allowed by the federation
    /// lists), resolved (well-known, SRV, port 8448).
    async fn destination_base_url(self, dest: &ServerName) -> Result<String> {
        if dest == self.server_name {
            return Err(Error::invalid_param("That is this server"));
        }
        if !allowed(&self.config.federation, dest) {
            return Err(Error::forbidden(format!(
                "Federation with {dest} is not allowed"
            )));
        }
        let fed = &self.federation_state;
        Ok(fed
            .resolver
            .resolve(dest, &fed.well_known_http)
            .await
            .base_url)
    }

    /// Sends a signed request to the resolved address, if the outbound policy allows it.
    async fn dispatch(
        self,
        dest: &ServerName,
        request: axum::http::Request<Vec<u8>>,
        timeout: Option<std::time::Duration>,
    ) -> Result<reqwest::Response> {
        let mut request = reqwest::Request::try_from(request).map_err(|e| unreachable(dest, e))?;
        if !self.federation_state.ip_policy.url_allowed(request.url()) {
            return Err(unreachable(dest, "address refused by the outbound policy"));
        }
        if let Some(t) = timeout {
            *request.timeout_mut() = Some(t);
        }
        self.federation_state
            .http
            .execute(request)
            .await
            .map_err(|e| unreachable(dest, e))
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
        json_answer(dest, resp).await
    }
}

/// A request body part as raw JSON (what ruma's request types carry for PDUs).
pub fn raw_json(v: &impl serde::Serialize) -> Result<Box<serde_json::value::RawValue>> {
    Ok(serde_json::value::to_raw_value(v)?)
}

/// An id given by this server or checked before (an event id, a room id) as ruma's owned id;
/// a malformed one is a bad request, never sent.
pub fn owned<T: TryFrom<String>>(id: impl Into<String>) -> Result<T> {
    let id = id.into();
    T::try_from(id).map_err(|_| Error::bad_json("Malformed identifier"))
}

/// What signs a request of this server to `dest`.
fn signing_input<'a>(
    s: &'a crate::services::Services,
    dest: &ServerName,
) -> XMatrixSigningInput<'a> {
    XMatrixSigningInput::new(s.server_name.clone(), dest.to_owned(), &s.keys.pair)
}

/// A JSON answer of another server: the value on success, else the error to pass on.
async fn json_answer(dest: &ServerName, resp: reqwest::Response) -> Result<Value> {
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
