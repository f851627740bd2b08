//! Liveness and readiness, for load balancers, orchestrators and Docker's `HEALTHCHECK`.
//! `/health` answers while the process serves HTTP at all (liveness); `/health/ready` also
//! checks the database and says 503 once a stop has begun (readiness).

use axum::{extract::State, http::StatusCode, response::IntoResponse, routing::get, Json, Router};
use serde_json::json;

use super::AppState;

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/health", get(|| async { "OK" }))
        .route("/health/ready", get(ready))
}

async fn ready(State(s): State<AppState>) -> impl IntoResponse {
    match s.health.ready(&s.db).await {
        Ok(()) => (StatusCode::OK, Json(json!({ "status": "ready" }))),
        Err(reason) => (
            StatusCode::SERVICE_UNAVAILABLE,
            Json(json!({ "status": "not ready", "reason": reason })),
        ),
    }
}
