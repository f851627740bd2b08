//! The user admin API (Synapse's `users.py` and `devices.py`): listing, details,
//! create-or-modify, the admin flag, whois, deactivation, password reset, suspension, lock,
//! rooms, account data, pushers and devices.

use axum::{
    extract::{RawQuery, State},
    http::StatusCode,
    response::IntoResponse,
    routing::{get, post, put},
    Router,
};
use serde::Deserialize;
use serde_json::{json, Value};

use super::{audit, Admin, Params};
use crate::{
    api::{ok, ApiResult, AppState, Auth, Json, Path},
    services::admin::{UserListParams, UserUpsert},
    util::parse_user_id,
    Error,
};

pub fn routes(r: axum::Router<AppState>) -> Router<AppState> {
    r.route("/_synapse/admin/v2/users", get(list_v2))
        .route("/_synapse/admin/v3/users", get(list_v3))
        .route(
            "/_synapse/admin/v2/users/{user_id}",
            get(details).put(upsert),
        )
        .route(
            "/_synapse/admin/v1/users/{user_id}/admin",
            get(get_admin).put(set_admin),
        )
        .route("/_synapse/admin/v1/whois/{user_id}", get(whois))
        .route(
            "/_matrix/client/v3/admin/whois/{user_id}",
            get(client_whois),
        )
        .route(
            "/_matrix/client/r0/admin/whois/{user_id}",
            get(client_whois),
        )
        .route("/_synapse/admin/v1/deactivate/{user_id}", post(deactivate))
        .route(
            "/_synapse/admin/v1/reset_password/{user_id}",
            post(reset_password),
        )
        .route("/_synapse/admin/v1/suspend/{user_id}", put(suspend))
        .route(
            "/_synapse/admin/v1/users/{user_id}/joined_rooms",
            get(joined_rooms),
        )
        .route(
            "/_synapse/admin/v1/users/{user_id}/memberships",
            get(memberships),
        )
        .route(
            "/_synapse/admin/v1/users/{user_id}/accountdata",
            get(account_data),
        )
        .route("/_synapse/admin/v1/users/{user_id}/pushers", get(pushers))
        .route(
            "/_synapse/admin/v1/username_available",
            get(username_available),
        )
        .route(
            "/_synapse/admin/v1/threepid/{medium}/users/{address}",
            get(threepid_user),
        )
        .route("/_synapse/admin/v2/users/{user_id}/devices", get(devices))
        .route(
            "/_synapse/admin/v2/users/{user_id}/devices/{device_id}",
            get(device).put(rename_device).delete(delete_device),
        )
        .route(
            "/_synapse/admin/v2/users/{user_id}/delete_devices",
            post(delete_devices),
        )
}

fn list_params(q: Option<&str>, v3: bool) -> Result<UserListParams, Error> {
    let p = Params::parse(q);
    Ok(UserListParams {
        from: p.int("from")?,
        limit: p.int("limit")?,
        user_id: p.str("user_id"),
        name: p.str("name"),
        guests: p.bool("guests")?,
        admins: p.bool("admins")?,
        deactivated: p.bool("deactivated")?,
        locked: p.bool("locked")?,
        user_types: p.all("user_types"),
        order_by: p.str("order_by"),
        dir: p.str("dir"),
        v3,
    })
}

async fn list_v2(State(s): State<AppState>, Admin(_): Admin, RawQuery(q): RawQuery) -> ApiResult {
    ok(s.admin()
        .list_users(list_params(q.as_deref(), false)?)
        .await?)
}

async fn list_v3(State(s): State<AppState>, Admin(_): Admin, RawQuery(q): RawQuery) -> ApiResult {
    ok(s.admin()
        .list_users(list_params(q.as_deref(), true)?)
        .await?)
}

async fn details(
    State(s): State<AppState>,
    Admin(_): Admin,
    Path(user): Path<String>,
) -> ApiResult {
    ok(s.admin().user_details(&parse_user_id(&user)?).await?)
}

/// 201 with the new account's details, 200 with the changed one's.
async fn upsert(
    State(s): State<AppState>,
    Admin(a): Admin,
    Path(user): Path<String>,
    Json(b): Json<UserUpsert>,
) -> ApiResult {
    let user = parse_user_id(&user)?;
    let (created, v) = s.admin().upsert_user(&user, b).await?;
    audit(
        &a,
        if created {
            "create_user"
        } else {
            "modify_user"
        },
        user.as_str(),
    );
    let status = if created {
        StatusCode::CREATED
    } else {
        StatusCode::OK
    };
    Ok((status, axum::Json(v)).into_response())
}

async fn get_admin(
    State(s): State<AppState>,
    Admin(_): Admin,
    Path(user): Path<String>,
) -> ApiResult {
    let admin = s.admin().is_user_admin(&parse_user_id(&user)?).await?;
    ok(json!({ "admin": admin }))
}

#[derive(Deserialize)]
struct AdminBody {
    admin: bool,
}

async fn set_admin(
    State(s): State<AppState>,
    Admin(a): Admin,
    Path(user): Path<String>,
    Json(b): Json<AdminBody>,
) -> ApiResult {
    let user = parse_user_id(&user)?;
    s.admin().set_user_admin(&a.user_id, &user, b.admin).await?;
    audit(
        &a,
        if b.admin {
            "make_admin"
        } else {
            "revoke_admin"
        },
        user.as_str(),
    );
    ok(json!({}))
}

async fn whois(State(s): State<AppState>, Admin(_): Admin, Path(user): Path<String>) -> ApiResult {
    ok(s.admin().whois(&parse_user_id(&user)?).await?)
}

/// The client-server `whois`: a server admin, or the user himself.
async fn client_whois(
    State(s): State<AppState>,
    Auth(r): Auth,
    Path(user): Path<String>,
) -> ApiResult {
    let user = parse_user_id(&user)?;
    if user != r.user_id && !s.accounts().is_admin(&r.user_id).await? {
        return Err(Error::forbidden("You are not a server admin"));
    }
    ok(s.admin().whois(&user).await?)
}

#[derive(Deserialize, Default)]
#[serde(default)]
struct DeactivateBody {
    erase: bool,
}

async fn deactivate(
    State(s): State<AppState>,
    Admin(a): Admin,
    Path(user): Path<String>,
    body: axum::body::Bytes,
) -> ApiResult {
    // An empty body is allowed (Synapse's backwards compatibility).
    let b: DeactivateBody = if body.is_empty() {
        DeactivateBody::default()
    } else {
        crate::api::json_body(&body, crate::api::Nul::Refused)?
    };
    let user = parse_user_id(&user)?;
    s.admin().deactivate_user(&user, b.erase).await?;
    audit(
        &a,
        if b.erase {
            "deactivate_erase"
        } else {
            "deactivate"
        },
        user.as_str(),
    );
    ok(json!({ "id_server_unbind_result": "success" }))
}

#[derive(Deserialize)]
struct ResetPassword {
    new_password: String,
    #[serde(default = "yes")]
    logout_devices: bool,
}

fn yes() -> bool {
    true
}

async fn reset_password(
    State(s): State<AppState>,
    Admin(a): Admin,
    Path(user): Path<String>,
    Json(b): Json<ResetPassword>,
) -> ApiResult {
    let user = parse_user_id(&user)?;
    s.admin()
        .reset_password(&user, &b.new_password, b.logout_devices)
        .await?;
    audit(&a, "reset_password", user.as_str());
    ok(json!({}))
}

#[derive(Deserialize)]
struct SuspendBody {
    suspend: bool,
}

async fn suspend(
    State(s): State<AppState>,
    Admin(a): Admin,
    Path(user): Path<String>,
    Json(b): Json<SuspendBody>,
) -> ApiResult {
    let user = parse_user_id(&user)?;
    s.admin().set_suspended(&user, b.suspend).await?;
    audit(
        &a,
        if b.suspend { "suspend" } else { "unsuspend" },
        user.as_str(),
    );
    ok(json!({ format!("user_{user}_suspended"): b.suspend }))
}

async fn joined_rooms(
    State(s): State<AppState>,
    Admin(_): Admin,
    Path(user): Path<String>,
) -> ApiResult {
    ok(s.admin().joined_rooms(&parse_user_id(&user)?).await?)
}

async fn memberships(
    State(s): State<AppState>,
    Admin(_): Admin,
    Path(user): Path<String>,
) -> ApiResult {
    ok(s.admin().memberships(&parse_user_id(&user)?).await?)
}

async fn account_data(
    State(s): State<AppState>,
    Admin(_): Admin,
    Path(user): Path<String>,
) -> ApiResult {
    ok(s.admin().account_data(&parse_user_id(&user)?).await?)
}

async fn pushers(
    State(s): State<AppState>,
    Admin(_): Admin,
    Path(user): Path<String>,
) -> ApiResult {
    ok(s.admin().pushers(&parse_user_id(&user)?).await?)
}

async fn username_available(
    State(s): State<AppState>,
    Admin(_): Admin,
    RawQuery(q): RawQuery,
) -> ApiResult {
    let name = Params::parse(q.as_deref())
        .str("username")
        .ok_or_else(|| Error::missing_param("Missing string query parameter 'username'"))?;
    ok(s.admin().username_available(&name).await?)
}

async fn threepid_user(
    State(s): State<AppState>,
    Admin(_): Admin,
    Path((medium, address)): Path<(String, String)>,
) -> ApiResult {
    ok(s.admin().threepid_user(&medium, &address).await?)
}

async fn devices(
    State(s): State<AppState>,
    Admin(_): Admin,
    Path(user): Path<String>,
) -> ApiResult {
    ok(s.admin().devices(&parse_user_id(&user)?).await?)
}

async fn device(
    State(s): State<AppState>,
    Admin(_): Admin,
    Path((user, device)): Path<(String, String)>,
) -> ApiResult {
    ok(s.admin().device(&parse_user_id(&user)?, &device).await?)
}

#[derive(Deserialize)]
struct RenameBody {
    display_name: Option<String>,
}

async fn rename_device(
    State(s): State<AppState>,
    Admin(a): Admin,
    Path((user, device)): Path<(String, String)>,
    Json(b): Json<RenameBody>,
) -> ApiResult {
    let user = parse_user_id(&user)?;
    s.admin().device(&user, &device).await?;
    s.accounts()
        .rename_device(&user, &device, b.display_name.as_deref())
        .await?;
    audit(&a, "rename_device", &format!("{user} {device}"));
    ok(json!({}))
}

async fn delete_device(
    State(s): State<AppState>,
    Admin(a): Admin,
    Path((user, device)): Path<(String, String)>,
) -> ApiResult {
    let user = parse_user_id(&user)?;
    s.admin().devices(&user).await?;
    s.accounts()
        .delete_devices(&user, std::slice::from_ref(&device))
        .await?;
    audit(&a, "delete_device", &format!("{user} {device}"));
    ok(json!({}))
}

#[derive(Deserialize)]
struct DeleteDevices {
    devices: Vec<String>,
}

async fn delete_devices(
    State(s): State<AppState>,
    Admin(a): Admin,
    Path(user): Path<String>,
    Json(b): Json<DeleteDevices>,
) -> ApiResult {
    if b.devices.len() > 1000 {
        return Err(Error::invalid_param("Too many devices at once"));
    }
    let user = parse_user_id(&user)?;
    s.admin().devices(&user).await?;
    s.accounts().delete_devices(&user, &b.devices).await?;
    audit(&a, "delete_devices", user.as_str());
    ok(Value::Object(Default::default()))
}
