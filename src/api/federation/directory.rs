//! This server's room directory for other servers (spec: Server-server API, Public Room
//! Directory).

use axum::extract::State;
use serde::Deserialize;

use super::auth::FedRequest;
use crate::{
    api::{ok, ApiResult, AppState, Query},
    services::rooms::directory::PublicRoomsRequest,
    Error,
};

#[derive(Deserialize)]
pub struct PublicRoomsQuery {
    limit: Option<String>,
    since: Option<String>,
    include_all_networks: Option<String>,
    third_party_instance_id: Option<String>,
}

async fn answer(s: &AppState, origin: &ruma::ServerName, req: PublicRoomsRequest) -> ApiResult {
    if !s.config.federation.public_rooms_over_federation {
        return Err(Error::forbidden(
            "This server does not share its room directory",
        ));
    }
    s.ratelimit
        .check("search", origin.as_str(), s.config.rate_limits.search)?;
    ok(s.rooms().local_public_rooms(req).await?)
}

pub async fn get_public_rooms(
    State(s): State<AppState>,
    Query(q): Query<PublicRoomsQuery>,
    req: FedRequest,
) -> ApiResult {
    let limit = q
        .limit
        .map(|l| {
            l.parse::<i64>()
                .map_err(|_| Error::invalid_param("limit must be an integer"))
        })
        .transpose()?;
    let include_all_networks = match q.include_all_networks.as_deref() {
        None => None,
        Some("true") => Some(true),
        Some("false") => Some(false),
        Some(_) => {
            return Err(Error::invalid_param(
                "include_all_networks must be true or false",
            ))
        }
    };
    let body = PublicRoomsRequest {
        limit,
        since: q.since,
        include_all_networks,
        third_party_instance_id: q.third_party_instance_id,
        ..Default::default()
    };
    answer(&s, &req.origin, body).await
}

pub async fn post_public_rooms(State(s): State<AppState>, req: FedRequest) -> ApiResult {
    let body: PublicRoomsRequest = req.json()?;
    answer(&s, &req.origin, body).await
}
