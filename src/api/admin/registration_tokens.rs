//! The registration token admin API (Synapse's `registration_tokens.py`): list, create, show,
//! change and delete the tokens the `m.login.registration_token` stage accepts.

use axum::{
    extract::{RawQuery, State},
    routing::{get, post},
    Router,
};
use serde_json::{json, Map, Value};

use super::{audit, Admin, Params};
use crate::api::{ok, ApiResult, AppState, Json, Path};

pub fn routes(r: Router<AppState>) -> Router<AppState> {
    // `new` is also a token's name for GET, PUT and DELETE, as with Synapse, whose
    // `/registration_tokens/new` pattern only answers POST.
    r.route("/_synapse/admin/v1/registration_tokens", get(list))
        .route(
            "/_synapse/admin/v1/registration_tokens/new",
            post(create)
                .get(show_new)
                .put(update_new)
                .delete(delete_new),
        )
        .route(
            "/_synapse/admin/v1/registration_tokens/{token}",
            get(show).put(update).delete(delete),
        )
}

async fn list(State(s): State<AppState>, Admin(_): Admin, RawQuery(q): RawQuery) -> ApiResult {
    let valid = Params::parse(q.as_deref()).bool("valid")?;
    ok(s.admin().registration_tokens(valid).await?)
}

async fn create(
    State(s): State<AppState>,
    Admin(a): Admin,
    Json(b): Json<Map<String, Value>>,
) -> ApiResult {
    let v = s.admin().create_registration_token(&b).await?;
    audit(
        &a,
        "create_registration_token",
        v["token"].as_str().unwrap_or_default(),
    );
    ok(v)
}

async fn show(State(s): State<AppState>, Admin(_): Admin, Path(token): Path<String>) -> ApiResult {
    ok(s.admin().registration_token(&token).await?)
}

async fn update(
    State(s): State<AppState>,
    Admin(a): Admin,
    Path(token): Path<String>,
    Json(b): Json<Map<String, Value>>,
) -> ApiResult {
    let v = s.admin().update_registration_token(&token, &b).await?;
    audit(&a, "update_registration_token", &token);
    ok(v)
}

async fn delete(
    State(s): State<AppState>,
    Admin(a): Admin,
    Path(token): Path<String>,
) -> ApiResult {
    s.admin().delete_registration_token(&token).await?;
    audit(&a, "delete_registration_token", &token);
    ok(json!({}))
}

async fn show_new(s: State<AppState>, a: Admin) -> ApiResult {
    show(s, a, Path("new".to_owned())).await
}

async fn update_new(s: State<AppState>, a: Admin, b: Json<Map<String, Value>>) -> ApiResult {
    update(s, a, Path("new".to_owned()), b).await
}

async fn delete_new(s: State<AppState>, a: Admin) -> ApiResult {
    delete(s, a, Path("new".to_owned())).await
}
