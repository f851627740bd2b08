//! `GET /_palabre/metrics`: the Prometheus text of this server, on the metrics listener only
//! (`[metrics] listen`; the public router has no such route).

use axum::{extract::State, http::header, response::IntoResponse, routing::get, Router};

use super::AppState;

/// Path of the metrics on the metrics listener.
pub const PATH: &str = "/_palabre/metrics";

/// The metrics listener's whole surface.
pub fn router(state: AppState) -> Router {
    Router::new().route(PATH, get(scrape)).with_state(state)
}

async fn scrape(State(s): State<AppState>) -> impl IntoResponse {
    s.sample_gauges().await;
    (
        [(header::CONTENT_TYPE, crate::metrics::CONTENT_TYPE)],
        s.metrics.render(),
    )
}
