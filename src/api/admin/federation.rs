//! The federation admin API (Synapse's `federation.py`): destinations with their retry state,
//! the rooms sent to each, the reset of a backoff; and the user endpoint that lets an account
//! replace its cross-signing keys without UIA for 10 minutes.

use axum::{
    extract::{RawQuery, State},
    routing::{get, post},
    Router,
};
use serde_json::json;

use super::{audit, Admin, Params};
use crate::{
    api::{ok, ApiResult, AppState, Path},
    services::admin::DestinationListParams,
    util::parse_user_id,
};

pub fn routes(r: Router<AppState>) -> Router<AppState> {
    r.route("/_synapse/admin/v1/federation/destinations", get(list))
        .route(
            "/_synapse/admin/v1/federation/destinations/{destination}",
            get(show),
        )
        .route(
            "/_synapse/admin/v1/federation/destinations/{destination}/rooms",
            get(rooms),
        )
        .route(
            "/_synapse/admin/v1/federation/destinations/{destination}/reset_connection",
            post(reset_connection),
        )
        .route(
            "/_synapse/admin/v1/users/{user_id}/_allow_cross_signing_replacement_without_uia",
            post(allow_cross_signing_replacement),
        )
}

async fn list(State(s): State<AppState>, Admin(_): Admin, RawQuery(q): RawQuery) -> ApiResult {
    let p = Params::parse(q.as_deref());
    let params = DestinationListParams {
        from: p.int("from")?,
        limit: p.int("limit")?,
        order_by: p.str("order_by"),
        dir: p.str("dir"),
        destination: p.str("destination"),
    };
    ok(s.admin().list_destinations(&params).await?)
}

async fn show(State(s): State<AppState>, Admin(_): Admin, Path(dest): Path<String>) -> ApiResult {
    ok(s.admin().destination(&dest).await?)
}

async fn rooms(
    State(s): State<AppState>,
    Admin(_): Admin,
    Path(dest): Path<String>,
    RawQuery(q): RawQuery,
) -> ApiResult {
    let p = Params::parse(q.as_deref());
    let dir = p.str("dir");
    ok(s.admin()
        .destination_rooms(&dest, p.int("from")?, p.int("limit")?, dir.as_deref())
        .await?)
}

async fn reset_connection(
    State(s): State<AppState>,
    Admin(a): Admin,
    Path(dest): Path<String>,
) -> ApiResult {
    s.admin().reset_destination_connection(&dest).await?;
    audit(&a, "reset_federation_connection", &dest);
    ok(json!({}))
}

async fn allow_cross_signing_replacement(
    State(s): State<AppState>,
    Admin(a): Admin,
    Path(user): Path<String>,
) -> ApiResult {
    let user = parse_user_id(&user)?;
    let v = s.admin().allow_cross_signing_replacement(&user).await?;
    audit(
        &a,
        "allow_cross_signing_replacement_without_uia",
        user.as_str(),
    );
    ok(v)
}
