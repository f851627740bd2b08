//! The Tchap layer as the issue checks it: the three servers of `config/tchap-example/` (two
//! ministries and the externals server, their `[tchap]` sections taken from the example files
//! with the example's server names replaced by this run's), as separate processes over TLS.
//! Registration by email for each kind of address (emails read from each server's outbox
//! directory), an agent inviting an external into an `unrestricted` and a `restricted` room,
//! directory searches from both kinds of user, a room rule exercised from a second server, and
//! expiry forced through the admin endpoint.

use std::{path::Path, time::Duration};

use reqwest::{Method, StatusCode};
use serde_json::{json, Value};

use crate::harness::{
    client::{Client, Session},
    enc, Homeserver, Net, Palabre, PalabreOptions, FED_WAIT,
};

const EXAMPLE_NAMES: [&str; 3] = ["localhost:8448", "localhost:8449", "localhost:8450"];
const FILES: [&str; 3] = ["interieur", "finances", "externes"];
const PASSWORD: &str = "Correct-Horse-42-battery";

/// The example's `[server_notices]` and `[tchap]` sections for server `i`, with this run's names.
fn example_sections(i: usize, names: &[String]) -> String {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("config/tchap-example")
        .join(format!("{}.toml", FILES[i]));
    let text = std::fs::read_to_string(&path).expect("example config");
    let start = text
        .find("[server_notices]")
        .expect("[server_notices] in the example");
    let mut part = text[start..].to_owned();
    for (example, real) in EXAMPLE_NAMES.iter().zip(names) {
        part = part.replace(example, real);
    }
    part
}

/// The newest email written for `address` in a server's outbox, after `already` of them.
async fn wait_mail(outbox: &Path, address: &str, already: usize) -> String {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    loop {
        let mut mails: Vec<(std::path::PathBuf, String)> = std::fs::read_dir(outbox)
            .map(|d| {
                d.filter_map(|e| e.ok())
                    .map(|e| e.path())
                    .filter_map(|p| std::fs::read_to_string(&p).ok().map(|t| (p, t)))
                    .filter(|(_, t)| t.contains(&format!("To: {address}")))
                    .collect()
            })
            .unwrap_or_default();
        mails.sort();
        if mails.len() > already {
            return mails.pop().unwrap().1;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "no email for {address} in {}",
            outbox.display()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

fn mails_for(outbox: &Path, address: &str) -> usize {
    std::fs::read_dir(outbox)
        .map(|d| {
            d.filter_map(|e| e.ok())
                .filter(|e| {
                    std::fs::read_to_string(e.path())
                        .is_ok_and(|t| t.contains(&format!("To: {address}")))
                })
                .count()
        })
        .unwrap_or(0)
}

fn link_in(text: &str) -> String {
    let start = text.find("http").expect("a link in the email");
    text[start..].split_whitespace().next().unwrap().to_owned()
}

/// `POST /register/email/requestToken`.
async fn request_token(c: &Client, address: &str, secret: &str) -> (StatusCode, Value) {
    c.call(
        Method::POST,
        "/_matrix/client/v3/register/email/requestToken",
        None,
        Some(&json!({ "client_secret": secret, "email": address, "send_attempt": 1 })),
    )
    .await
}

/// Registers `address` on `server` as a new user would: request a token, follow the emailed
/// link, complete the `m.login.email.identity` stage.
async fn register_by_email(server: &Palabre, outbox: &Path, address: &str) -> Session {
    let c = server.client();
    let secret = format!("secret{}", address.len());
    let already = mails_for(outbox, address);
    let (st, v) = request_token(&c, address, &secret).await;
    assert_eq!(st, StatusCode::OK, "requestToken {address}: {v}");
    let sid = v["sid"].as_str().expect("sid").to_owned();
    let mail = wait_mail(outbox, address, already).await;
    let link = link_in(&mail);
    let resp = reqwest::get(&link).await.expect("validation link");
    assert!(resp.status().is_success(), "{link}: {}", resp.status());

    let path = "/_matrix/client/v3/register";
    let mut body = json!({ "password": PASSWORD, "initial_device_display_name": "tchap" });
    let (st, v) = c.call(Method::POST, path, None, Some(&body)).await;
    assert_eq!(st, StatusCode::UNAUTHORIZED, "{v}");
    let flows = v["flows"].to_string();
    assert!(flows.contains("m.login.email.identity"), "{flows}");
    body["auth"] = json!({
        "type": "m.login.email.identity",
        "session": v["session"],
        "threepid_creds": { "sid": sid, "client_secret": secret },
    });
    let (st, v) = c.call(Method::POST, path, None, Some(&body)).await;
    assert_eq!(st, StatusCode::OK, "register {address}: {v}");
    c.session(&v)
}

async fn search(s: &Session, term: &str) -> Vec<String> {
    let (st, v) = s
        .post(
            "/_matrix/client/v3/user_directory/search",
            json!({ "search_term": term, "limit": 20 }),
        )
        .await;
    assert_eq!(st, StatusCode::OK, "search {term}: {v}");
    v["results"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["user_id"].as_str().unwrap().to_owned())
        .collect()
}

/// Waits until `s`'s search for `term` finds (or no longer finds) `user`.
async fn search_until(s: &Session, term: &str, user: &str, found: bool) {
    let deadline = tokio::time::Instant::now() + FED_WAIT;
    loop {
        if search(s, term).await.iter().any(|u| u == user) == found {
            return;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "{} searching {term:?}: {user} found = {} (wanted {found})",
            s.user_id,
            !found
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn tchap_two_ministries_and_externals() {
    let net = Net::new();
    let ports: Vec<u16> = (0..3)
        .map(|_| crate::harness::process::free_port())
        .collect();
    let names: Vec<String> = ports.iter().map(|p| format!("localhost:{p}")).collect();
    let outbox: Vec<std::path::PathBuf> = FILES
        .iter()
        .map(|f| net.root().join(f).join("mail"))
        .collect();
    let mut servers = vec![];
    for i in 0..3 {
        let extra = format!(
            "[email]\napp_name = \"Tchap\"\noutbox_dir = {:?}\n\n{}",
            outbox[i].display().to_string(),
            example_sections(i, &names)
        );
        servers.push(
            net.palabre(
                FILES[i],
                PalabreOptions {
                    fed_port: Some(ports[i]),
                    allow_list: Some(names.clone()),
                    extra_toml: extra,
                    ..Default::default()
                },
            )
            .await,
        );
    }
    let (interieur, finances, externes) = (&servers[0], &servers[1], &servers[2]);

    // 1. Any server tells where an address lives (public, CORS).
    let resp = reqwest::Client::new()
        .get(format!(
            "{}/_matrix/identity/api/v1/info?medium=email&address={}",
            finances.client_base(),
            enc("jean.dupont@interieur.gouv.fr")
        ))
        .send()
        .await
        .unwrap();
    assert_eq!(
        resp.headers()
            .get("access-control-allow-origin")
            .map(|h| h.to_str().unwrap().to_owned()),
        Some("*".into())
    );
    let v: Value = resp.json().await.unwrap();
    assert_eq!(v["hs"], json!(names[0]), "{v}");

    // 2. Registration by email, for each kind of address.
    let jean = register_by_email(interieur, &outbox[0], "jean.dupont@interieur.gouv.fr").await;
    assert_eq!(
        jean.user_id,
        format!("@jean.dupont-interieur.gouv.fr:{}", names[0])
    );
    let (_, profile) = jean.profile(&jean.user_id).await;
    assert_eq!(profile["displayname"], json!("Jean Dupont [Interieur]"));
    let helene = register_by_email(finances, &outbox[1], "hélène.martin@finances.gouv.fr").await;
    assert_eq!(
        helene.user_id,
        format!("@helene.martin-finances.gouv.fr:{}", names[1])
    );
    // An address of another ministry, and an uninvited external, are refused with no email.
    for (server, box_, address) in [
        (finances, &outbox[1], "paul.durand@interieur.gouv.fr"),
        (externes, &outbox[2], "partner@example.com"),
        (interieur, &outbox[0], "partner@example.com"),
    ] {
        let (st, v) = request_token(&server.client(), address, "s1").await;
        assert_eq!(st, StatusCode::FORBIDDEN, "{address}: {v}");
        assert_eq!(v["errcode"], "M_THREEPID_DENIED");
        assert_eq!(mails_for(box_, address), 0);
    }

    // 3. Jean invites the partner by email into an `unrestricted` room.
    let open_room = jean
        .create_room(json!({
            "preset": "private_chat",
            "name": "Projet ouvert",
            "initial_state": [{
                "type": "im.vector.room.access_rules", "state_key": "",
                "content": { "rule": "unrestricted" }
            }],
        }))
        .await;
    let closed_room = jean
        .create_room(json!({ "preset": "private_chat", "name": "Agents seulement" }))
        .await;
    let (st, v) = jean
        .post(
            &format!("/_matrix/client/v3/rooms/{}/invite", enc(&open_room)),
            json!({ "id_server": names[0], "medium": "email", "address": "partner@example.com" }),
        )
        .await;
    assert_eq!(st, StatusCode::OK, "email invite: {v}");
    // The partner may now register on the externals server, and finds the invitation.
    let partner = register_by_email(externes, &outbox[2], "partner@example.com").await;
    assert_eq!(
        partner.user_id,
        format!("@partner-example.com:{}", names[2])
    );
    partner.wait_for_invite(&open_room, FED_WAIT).await;
    partner.join(&open_room, &[&names[0]]).await;
    jean.wait_for_membership(&open_room, &partner.user_id, "join", FED_WAIT)
        .await;
    // Not into the `restricted` room.
    let (st, v) = jean
        .post(
            &format!("/_matrix/client/v3/rooms/{}/invite", enc(&closed_room)),
            json!({ "user_id": partner.user_id }),
        )
        .await;
    assert_eq!(st, StatusCode::FORBIDDEN, "{v}");

    // 4. Directory searches: an agent finds an agent of another ministry (replicated), with or
    // without accents; the external only finds people sharing a room.
    search_until(&jean, "helene", &helene.user_id, true).await;
    search_until(&jean, "Hélène Mar", &helene.user_id, true).await;
    search_until(&helene, "jean dup", &jean.user_id, true).await;
    assert!(search(&partner, "helene").await.is_empty());
    assert_eq!(search(&partner, "jean").await, vec![jean.user_id.clone()]);

    // 5. A room rule exercised from a second server: Hélène joins the open room; the rule
    // cannot go back to `restricted` nor become `direct`, from her server either.
    jean.invite(&open_room, &helene.user_id).await;
    helene.wait_for_invite(&open_room, FED_WAIT).await;
    helene.join(&open_room, &[&names[0]]).await;
    let pl_path = format!(
        "/_matrix/client/v3/rooms/{}/state/m.room.power_levels/",
        enc(&open_room)
    );
    let (st, mut pl) = jean.get(&pl_path).await;
    assert_eq!(st, StatusCode::OK, "{pl}");
    pl["users"][&helene.user_id] = json!(100);
    let (st, v) = jean.put(&pl_path, pl).await;
    assert_eq!(st, StatusCode::OK, "{v}");
    let helene_id = helene.user_id.clone();
    helene
        .wait_for_event(&open_room, "Hélène at 100", FED_WAIT, |e| {
            e["type"] == "m.room.power_levels" && e["content"]["users"][&helene_id] == 100
        })
        .await;
    for rule in ["restricted", "direct"] {
        let (st, v) = helene
            .put(
                &format!(
                    "/_matrix/client/v3/rooms/{}/state/im.vector.room.access_rules/",
                    enc(&open_room)
                ),
                json!({ "rule": rule }),
            )
            .await;
        assert_eq!(st, StatusCode::FORBIDDEN, "{rule}: {v}");
    }

    // 6. Expiry forced through the admin endpoint, then renewed by the emailed link.
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_palabre"))
        .args([
            "user",
            "create",
            "admin",
            "--password",
            PASSWORD,
            "--admin",
            "--config",
        ])
        .arg(interieur.config_file())
        .output()
        .expect("palabre user create");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let admin_c = interieur.client();
    let (st, v) = admin_c
        .call(
            Method::POST,
            "/_matrix/client/v3/login",
            None,
            Some(&json!({
                "type": "m.login.password",
                "identifier": { "type": "m.id.user", "user": "admin" },
                "password": PASSWORD,
            })),
        )
        .await;
    assert_eq!(st, StatusCode::OK, "admin login: {v}");
    let admin = admin_c.session(&v);
    let (st, v) = admin
        .post(
            "/_synapse/admin/v1/account_validity/validity",
            json!({ "user_id": jean.user_id, "expiration_ts": 1000 }),
        )
        .await;
    assert_eq!(st, StatusCode::OK, "{v}");
    let (st, v) = jean.get("/_matrix/client/v3/account/whoami").await;
    assert_eq!(st, StatusCode::FORBIDDEN, "{v}");
    assert_eq!(v["errcode"], "ORG_MATRIX_EXPIRED_ACCOUNT");
    let already = mails_for(&outbox[0], "jean.dupont@interieur.gouv.fr");
    let (st, v) = jean
        .post(
            "/_matrix/client/unstable/account_validity/send_mail",
            json!({}),
        )
        .await;
    assert_eq!(st, StatusCode::OK, "{v}");
    let mail = wait_mail(&outbox[0], "jean.dupont@interieur.gouv.fr", already).await;
    let link = link_in(&mail);
    assert!(
        link.contains("/_synapse/client/email_account_validity/renew?token="),
        "{link}"
    );
    let resp = reqwest::get(&link).await.unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
    let (st, v) = jean.get("/_matrix/client/v3/account/whoami").await;
    assert_eq!(st, StatusCode::OK, "{v}");
}
