//! Third-party networks (spec: Third-party networks). Palabre bridges none (see
//! `services::thirdparty`); the endpoints answer so, for an authenticated caller.

use serde_json::{json, Value};

use crate::{
    api::{ok, ApiResult, Auth, Path},
    services::thirdparty::{self, Kind},
};

pub async fn protocols(Auth(_): Auth) -> ApiResult {
    ok(Value::Object(thirdparty::protocols()))
}

pub async fn protocol(Auth(_): Auth, Path(name): Path<String>) -> ApiResult {
    ok(thirdparty::protocol(&name)?)
}

pub async fn location(Auth(_): Auth, Path(name): Path<String>) -> ApiResult {
    ok(json!(thirdparty::lookup(Kind::Location, Some(&name))))
}

pub async fn user(Auth(_): Auth, Path(name): Path<String>) -> ApiResult {
    ok(json!(thirdparty::lookup(Kind::User, Some(&name))))
}

/// `GET /thirdparty/location?alias=`: the locations behind a Matrix room alias.
pub async fn location_by_alias(Auth(_): Auth) -> ApiResult {
    ok(json!(thirdparty::lookup(Kind::Location, None)))
}

/// `GET /thirdparty/user?userid=`: the third-party users behind a Matrix user ID.
pub async fn user_by_id(Auth(_): Auth) -> ApiResult {
    ok(json!(thirdparty::lookup(Kind::User, None)))
}
