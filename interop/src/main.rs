//! The signer sees his own verification (issue 15 item 4): alice and bob cross-sign, share a
//! room, alice verifies bob's identity (her user-signing key signs his master key); after a
//! sync alice's client must report bob's identity as verified. It only can if the server tells
//! alice's devices that bob's keys changed (device_lists.changed), so that the client queries
//! them again and sees alice's signature.

use std::time::Duration;

use anyhow::{bail, Context};
use matrix_sdk::{config::SyncSettings, Client};
use serde_json::json;

const PASSWORD: &str = "interop password 1";

/// Registers `name` (m.login.dummy, open registration) through raw HTTP; its user id.
async fn register(base: &str, name: &str) -> anyhow::Result<String> {
    let resp: serde_json::Value = reqwest::Client::new()
        .post(format!("{base}/_matrix/client/v3/register"))
        .json(&json!({"username": name, "password": PASSWORD, "auth": {"type": "m.login.dummy"}}))
        .send()
        .await?
        .json()
        .await?;
    resp["user_id"]
        .as_str()
        .map(str::to_owned)
        .with_context(|| format!("register {name}: {resp}"))
}

async fn client(base: &str, user: &str, store: &std::path::Path) -> anyhow::Result<Client> {
    let c = Client::builder()
        .homeserver_url(base)
        .sqlite_store(store, None)
        .build()
        .await?;
    c.matrix_auth()
        .login_username(user, PASSWORD)
        .initial_device_display_name("interop")
        .send()
        .await?;
    c.sync_once(SyncSettings::default().timeout(Duration::from_millis(0)))
        .await?;
    c.encryption()
        .bootstrap_cross_signing_if_needed(None)
        .await
        .context("bootstrap cross-signing")?;
    Ok(c)
}

async fn sync(c: &Client) -> anyhow::Result<()> {
    c.sync_once(SyncSettings::default().timeout(Duration::from_millis(500)))
        .await?;
    Ok(())
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let base = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "http://127.0.0.1:8008".into());
    let stamp = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)?
        .as_millis();
    let dir = tempfile::tempdir()?;
    let alice_id = register(&base, &format!("alice{stamp}")).await?;
    let bob_id = register(&base, &format!("bob{stamp}")).await?;
    let alice = client(&base, &alice_id, &dir.path().join("alice")).await?;
    let bob = client(&base, &bob_id, &dir.path().join("bob")).await?;

    // A shared room, so that each tracks the other's keys.
    let bob_uid = matrix_sdk::ruma::UserId::parse(&bob_id)?;
    let room = alice
        .create_room(matrix_sdk::ruma::api::client::room::create_room::v3::Request::new())
        .await?;
    room.invite_user_by_id(&bob_uid).await?;
    sync(&bob).await?;
    bob.join_room_by_id(room.room_id()).await?;
    for _ in 0..3 {
        sync(&alice).await?;
        sync(&bob).await?;
    }

    let identity = alice
        .encryption()
        .request_user_identity(&bob_uid)
        .await?
        .context("bob's identity is not known to alice")?;
    if identity.is_verified() {
        bail!("bob is verified before alice verified him");
    }
    identity.verify().await.context("alice verifies bob")?;
    let mut verified = false;
    for _ in 0..10 {
        sync(&alice).await?;
        let seen = alice
            .encryption()
            .get_user_identity(&bob_uid)
            .await?
            .context("bob's identity vanished")?;
        if seen.is_verified() {
            verified = true;
            break;
        }
    }
    if !verified {
        bail!("alice's client does not report bob's identity as verified after her verification");
    }
    println!("ok: alice's client (matrix-rust-sdk 0.18) reports bob as verified after signing his master key");
    Ok(())
}
