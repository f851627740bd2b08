//! Reports (Synapse's `event_reports.py` and `user_reports.py`), and the client's
//! `POST /_matrix/client/v3/users/{userId}/report` that feeds the user reports.

use axum::{
    extract::{RawQuery, State},
    routing::{get, post},
    Router,
};
use serde::Deserialize;
use serde_json::json;

use super::{audit, Admin, Params};
use crate::{
    api::{ok, ApiResult, AppState, Auth, Json, Path},
    services::admin::ReportQuery,
    util::parse_user_id,
    Error,
};

pub fn routes(r: Router<AppState>) -> Router<AppState> {
    r.route("/_synapse/admin/v1/event_reports", get(event_reports))
        .route(
            "/_synapse/admin/v1/event_reports/{id}",
            get(event_report).delete(delete_event_report),
        )
        .route("/_synapse/admin/v1/user_reports", get(user_reports))
        .route(
            "/_synapse/admin/v1/user_reports/{id}",
            get(user_report).delete(delete_user_report),
        )
        .route(
            "/_matrix/client/v3/users/{user_id}/report",
            post(report_user),
        )
}

fn report_id(id: &str) -> Result<i64, Error> {
    id.parse().map_err(|_| {
        Error::invalid_param(
            "The report_id parameter must be a string representing a positive integer.",
        )
    })
}

async fn event_reports(
    State(s): State<AppState>,
    Admin(_): Admin,
    RawQuery(q): RawQuery,
) -> ApiResult {
    let p = Params::parse(q.as_deref());
    ok(s.admin()
        .event_reports(ReportQuery {
            from: p.int("from")?,
            limit: p.int("limit")?,
            dir: p.str("dir"),
            room_id: p.str("room_id"),
            user_id: p.str("user_id"),
            target: p.str("event_sender_user_id"),
        })
        .await?)
}

async fn event_report(
    State(s): State<AppState>,
    Admin(_): Admin,
    Path(id): Path<String>,
) -> ApiResult {
    ok(s.admin().event_report(report_id(&id)?).await?)
}

async fn delete_event_report(
    State(s): State<AppState>,
    Admin(a): Admin,
    Path(id): Path<String>,
) -> ApiResult {
    s.admin().delete_report(false, report_id(&id)?).await?;
    audit(&a, "delete_event_report", &id);
    ok(json!({}))
}

async fn user_reports(
    State(s): State<AppState>,
    Admin(_): Admin,
    RawQuery(q): RawQuery,
) -> ApiResult {
    let p = Params::parse(q.as_deref());
    ok(s.admin()
        .user_reports(ReportQuery {
            from: p.int("from")?,
            limit: p.int("limit")?,
            dir: p.str("dir"),
            room_id: None,
            user_id: p.str("user_id"),
            target: p.str("target_user_id"),
        })
        .await?)
}

async fn user_report(
    State(s): State<AppState>,
    Admin(_): Admin,
    Path(id): Path<String>,
) -> ApiResult {
    ok(s.admin().user_report(report_id(&id)?).await?)
}

async fn delete_user_report(
    State(s): State<AppState>,
    Admin(a): Admin,
    Path(id): Path<String>,
) -> ApiResult {
    s.admin().delete_report(true, report_id(&id)?).await?;
    audit(&a, "delete_user_report", &id);
    ok(json!({}))
}

#[derive(Deserialize)]
struct ReportBody {
    reason: String,
}

async fn report_user(
    State(s): State<AppState>,
    Auth(r): Auth,
    Path(user): Path<String>,
    Json(b): Json<ReportBody>,
) -> ApiResult {
    let target = parse_user_id(&user)?;
    s.admin()
        .report_user(&r.user_id, &target, &b.reason)
        .await?;
    ok(json!({}))
}
