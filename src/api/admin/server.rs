//! `GET /_synapse/admin/v1/server_version` and `GET /_synapse/admin/v1/scheduled_tasks`.

use axum::extract::{RawQuery, State};
use serde_json::json;

use super::{Admin, Params};
use crate::api::{ok, ApiResult, AppState};

/// Unauthenticated, as Synapse's: synapse-admin asks it on its login page, before any token.
pub async fn version() -> ApiResult {
    ok(json!({ "server_version": env!("CARGO_PKG_VERSION") }))
}

/// Filters: `action_name`, `resource_id`, `job_status` (Synapse's names).
pub async fn scheduled_tasks(
    State(s): State<AppState>,
    Admin(_): Admin,
    RawQuery(q): RawQuery,
) -> ApiResult {
    let p = Params::parse(q.as_deref());
    ok(s.admin()
        .scheduled_tasks(
            p.str("action_name").as_deref(),
            p.str("job_status").as_deref(),
            p.str("resource_id").as_deref(),
        )
        .await?)
}
