//! The one error type of Palabre: a Matrix error (errcode + message + HTTP status).
//!
//! Services return it; the API layer turns it into a JSON response.

use axum::{
    http::StatusCode,
    response::{IntoResponse, Response},
    Json,
};
use serde_json::{json, Map, Value};

#[derive(Debug, Clone)]
pub struct Error {
    pub status: StatusCode,
    pub errcode: &'static str,
    pub message: String,
    /// Extra top-level fields (e.g. `retry_after_ms`, UIA flows).
    pub extra: Option<Map<String, Value>>,
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

macro_rules! ctor {
    ($(#[$doc:meta])* $name:ident, $status:ident, $code:literal) => {
        $(#[$doc])*
        pub fn $name(msg: impl Into<String>) -> Self {
            Self::new(StatusCode::$status, $code, msg)
        }
    };
}

impl Error {
    pub fn new(status: StatusCode, errcode: &'static str, msg: impl Into<String>) -> Self {
        Self {
            status,
            errcode,
            message: msg.into(),
            extra: None,
        }
    }
    ctor!(forbidden, FORBIDDEN, "M_FORBIDDEN");
    ctor!(not_found, NOT_FOUND, "M_NOT_FOUND");
    ctor!(bad_json, BAD_REQUEST, "M_BAD_JSON");
    ctor!(not_json, BAD_REQUEST, "M_NOT_JSON");
    ctor!(invalid_param, BAD_REQUEST, "M_INVALID_PARAM");
    ctor!(missing_param, BAD_REQUEST, "M_MISSING_PARAM");
    ctor!(unknown_token, UNAUTHORIZED, "M_UNKNOWN_TOKEN");
    ctor!(unauthorized, UNAUTHORIZED, "M_UNAUTHORIZED");
    ctor!(missing_token, UNAUTHORIZED, "M_MISSING_TOKEN");
    ctor!(user_in_use, BAD_REQUEST, "M_USER_IN_USE");
    ctor!(invalid_username, BAD_REQUEST, "M_INVALID_USERNAME");
    ctor!(room_in_use, BAD_REQUEST, "M_ROOM_IN_USE");
    ctor!(too_large, PAYLOAD_TOO_LARGE, "M_TOO_LARGE");
    ctor!(unrecognized, NOT_FOUND, "M_UNRECOGNIZED");
    ctor!(
        unsupported_room_version,
        BAD_REQUEST,
        "M_UNSUPPORTED_ROOM_VERSION"
    );
    ctor!(user_deactivated, FORBIDDEN, "M_USER_DEACTIVATED");
    ctor!(user_suspended, FORBIDDEN, "M_USER_SUSPENDED");
    ctor!(user_locked, UNAUTHORIZED, "M_USER_LOCKED");
    ctor!(exclusive, BAD_REQUEST, "M_EXCLUSIVE");
    ctor!(weak_password, BAD_REQUEST, "M_WEAK_PASSWORD");
    ctor!(threepid_denied, FORBIDDEN, "M_THREEPID_DENIED");
    ctor!(threepid_in_use, BAD_REQUEST, "M_THREEPID_IN_USE");
    ctor!(threepid_not_found, BAD_REQUEST, "M_THREEPID_NOT_FOUND");
    ctor!(threepid_auth_failed, BAD_REQUEST, "M_THREEPID_AUTH_FAILED");
    ctor!(expired_account, FORBIDDEN, "ORG_MATRIX_EXPIRED_ACCOUNT");
    ctor!(password_too_short, BAD_REQUEST, "M_PASSWORD_TOO_SHORT");
    ctor!(password_no_digit, BAD_REQUEST, "M_PASSWORD_NO_DIGIT");
    ctor!(password_no_symbol, BAD_REQUEST, "M_PASSWORD_NO_SYMBOL");
    ctor!(
        password_no_uppercase,
        BAD_REQUEST,
        "M_PASSWORD_NO_UPPERCASE"
    );
    ctor!(
        password_no_lowercase,
        BAD_REQUEST,
        "M_PASSWORD_NO_LOWERCASE"
    );
    ctor!(missing_params, BAD_REQUEST, "M_MISSING_PARAMS");
    ctor!(
        threepid_medium_not_supported,
        BAD_REQUEST,
        "M_THREEPID_MEDIUM_NOT_SUPPORTED"
    );
    ctor!(
        incompatible_room_version,
        BAD_REQUEST,
        "M_INCOMPATIBLE_ROOM_VERSION"
    );
    ctor!(
        guest_access_forbidden,
        FORBIDDEN,
        "M_GUEST_ACCESS_FORBIDDEN"
    );
    ctor!(
        resource_limit_exceeded,
        FORBIDDEN,
        "M_RESOURCE_LIMIT_EXCEEDED"
    );
    ctor!(
        wrong_room_keys_version,
        FORBIDDEN,
        "M_WRONG_ROOM_KEYS_VERSION"
    );
    ctor!(cannot_overwrite_media, CONFLICT, "M_CANNOT_OVERWRITE_MEDIA");
    ctor!(not_yet_uploaded, GATEWAY_TIMEOUT, "M_NOT_YET_UPLOADED");
    ctor!(method_not_allowed, METHOD_NOT_ALLOWED, "M_UNRECOGNIZED");
    ctor!(
        /// A request the spec gives no errcode of its own (400 `M_UNKNOWN`).
        bad_request,
        BAD_REQUEST,
        "M_UNKNOWN"
    );
    ctor!(
        /// A state the request conflicts with (409 `M_UNKNOWN`), e.g. an alias already taken.
        conflict,
        CONFLICT,
        "M_UNKNOWN"
    );
    ctor!(
        /// A quota that is not a rate (a full queue): 429 without `retry_after_ms`.
        queue_full,
        TOO_MANY_REQUESTS,
        "M_LIMIT_EXCEEDED"
    );
    ctor!(
        /// The client did not send its body in time.
        request_timeout,
        REQUEST_TIMEOUT,
        "M_UNKNOWN"
    );
    ctor!(
        /// Another server failed or answered nonsense (502 `M_UNKNOWN`).
        bad_gateway,
        BAD_GATEWAY,
        "M_UNKNOWN"
    );
    ctor!(
        /// Another server's answer is over our size limit.
        remote_too_large,
        BAD_GATEWAY,
        "M_TOO_LARGE"
    );
    ctor!(
        /// Another server did not answer in time.
        gateway_timeout,
        GATEWAY_TIMEOUT,
        "M_UNKNOWN"
    );
    ctor!(
        /// User-interactive auth needs another stage (401 `M_FORBIDDEN`); add the flows with
        /// [`Self::with_extra`].
        auth_required,
        UNAUTHORIZED,
        "M_FORBIDDEN"
    );

    /// The first answer of user-interactive auth: 401 with no errcode (only the flows, params
    /// and session added with [`Self::with_extra`]).
    pub fn auth_challenge() -> Self {
        Self::new(StatusCode::UNAUTHORIZED, "", "")
    }

    pub fn unknown(msg: impl Into<String>) -> Self {
        Self::new(StatusCode::INTERNAL_SERVER_ERROR, "M_UNKNOWN", msg)
    }

    pub fn limit_exceeded(retry_after_ms: u64) -> Self {
        let mut e = Self::new(
            StatusCode::TOO_MANY_REQUESTS,
            "M_LIMIT_EXCEEDED",
            "Too many requests",
        );
        e.extra = Some(Map::from_iter([(
            "retry_after_ms".to_owned(),
            json!(retry_after_ms),
        )]));
        e
    }

    pub fn with_extra(mut self, key: &str, value: Value) -> Self {
        self.extra
            .get_or_insert_with(Map::new)
            .insert(key.to_owned(), value);
        self
    }

    pub fn soft_logout(mut self) -> Self {
        self.extra
            .get_or_insert_with(Map::new)
            .insert("soft_logout".into(), json!(true));
        self
    }
}

impl std::fmt::Display for Error {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} {}: {}",
            self.status.as_u16(),
            self.errcode,
            self.message
        )
    }
}

impl std::error::Error for Error {}

impl From<sqlx::Error> for Error {
    fn from(e: sqlx::Error) -> Self {
        tracing::error!(error = %e, "database error");
        Self::unknown("Internal database error")
    }
}

impl From<serde_json::Error> for Error {
    fn from(e: serde_json::Error) -> Self {
        Self::bad_json(e.to_string())
    }
}

impl IntoResponse for Error {
    fn into_response(self) -> Response {
        let mut body = self.extra.unwrap_or_default();
        // UIA challenges carry no errcode (an empty one) unless a stage failed.
        if !self.errcode.is_empty() {
            body.insert("errcode".into(), Value::String(self.errcode.to_owned()));
            body.insert("error".into(), Value::String(self.message));
        }
        (self.status, Json(Value::Object(body))).into_response()
    }
}
