//! Server discovery and capabilities (spec: Server discovery, Capabilities negotiation).

use axum::extract::State;
use serde_json::json;

use crate::{
    api::{ok, ApiResult, AppState, Auth},
    services::rooms::version::SUPPORTED,
};

/// `GET /versions`. The spec versions whose client-server features Palabre serves
/// (docs/architecture.md, "Requests, responses and ruma"), and the unstable features that
/// clients look for before using something served here.
pub async fn versions(State(s): State<AppState>) -> ApiResult {
    let (public, private) = s.rooms().encryption_forced_by_preset();
    ok(json!({
        "versions": [
            "r0.5.0", "r0.6.0", "r0.6.1", "v1.1", "v1.2", "v1.3", "v1.4", "v1.5", "v1.6", "v1.7", "v1.8",
            "v1.9", "v1.10", "v1.11", "v1.12", "v1.13", "v1.14", "v1.15", "v1.16"
        ],
        "unstable_features": {
            // Cross-signing (keys/device_signing/upload, keys/signatures/upload): older Element
            // sets cross-signing up after registration only when this is present.
            "org.matrix.e2e_cross_signing": true,
            // GET /rooms/{roomId}/aliases and the alias semantics of MSC2432.
            "org.matrix.msc2432": true,
            // Private read receipts (m.read.private).
            "org.matrix.msc2285.stable": true,
            // publicRooms filtered by room type: Element only sends `room_types` with this.
            "org.matrix.msc3827.stable": true,
            // Threads: relations, /threads, thread receipts and per-thread unread counts.
            "org.matrix.msc3440.stable": true,
            "org.matrix.msc3771": true,
            "org.matrix.msc3773": true,
            // Relations with `recurse`.
            "org.matrix.msc3981": true,
            // Authenticated media (/_matrix/client/v1/media/*).
            "org.matrix.msc3916.stable": true,
            // Dehydrated devices (/unstable/org.matrix.msc3814.v1/dehydrated_device).
            "org.matrix.msc3814": true,
            // Extended profiles (v1.16; clients of servers before it look for this).
            "uk.tcpip.msc4133.stable": true,
            // Room summaries (v1.15; the unstable im.nheko.summary path is served too).
            "im.nheko.summary": true,
            // Whether createRoom encrypts rooms of each preset by itself (Element then shows
            // encryption as on, without a switch).
            "io.element.e2ee_forced.public": public,
            "io.element.e2ee_forced.private": private,
            "io.element.e2ee_forced.trusted_private": private,
        }
    }))
}

pub async fn well_known_client(State(s): State<AppState>) -> ApiResult {
    let base = s.config.public_baseurl();
    ok(json!({ "m.homeserver": { "base_url": base } }))
}

pub async fn well_known_server(State(s): State<AppState>) -> ApiResult {
    let server = if s.server_name.port().is_some() {
        s.server_name.to_string()
    } else {
        format!("{}:443", s.server_name)
    };
    ok(json!({ "m.server": server }))
}

pub async fn capabilities(State(s): State<AppState>, Auth(_): Auth) -> ApiResult {
    let available: serde_json::Map<String, serde_json::Value> = SUPPORTED
        .iter()
        .map(|v| ((*v).to_owned(), json!("stable")))
        .collect();
    ok(json!({
        "capabilities": {
            "m.change_password": { "enabled": true },
            "m.room_versions": { "default": s.config.default_room_version, "available": available },
            "m.set_displayname": { "enabled": true },
            "m.set_avatar_url": { "enabled": true },
            "m.3pid_changes": { "enabled": s.mailer.enabled() },
            "m.get_login_token": { "enabled": false },
            "m.profile_fields": { "enabled": true },
        }
    }))
}
