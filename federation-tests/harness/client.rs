//! A small Matrix client over the client-server API, the same for Palabre and Synapse: what
//! the scenarios need (register, profiles, rooms, invites, joins, messages, /sync until a
//! condition with a deadline, full history through /messages).

use std::{
    sync::{
        atomic::{AtomicU64, Ordering},
        Mutex,
    },
    time::{Duration, Instant},
};

use reqwest::{Method, StatusCode};
use serde_json::{json, Value};

pub fn enc(s: &str) -> String {
    percent_encoding::utf8_percent_encode(s, percent_encoding::NON_ALPHANUMERIC).to_string()
}

/// The client API of one server.
#[derive(Clone)]
pub struct Client {
    /// `http://127.0.0.1:PORT`
    pub base: String,
    pub server_name: String,
    http: reqwest::Client,
}

impl Client {
    pub fn new(base: String, server_name: String) -> Client {
        let http = reqwest::Client::builder()
            .no_proxy()
            .timeout(Duration::from_secs(120))
            .build()
            .expect("http client");
        Client {
            base,
            server_name,
            http,
        }
    }

    /// One request; `Err` when the server cannot be reached (stopped, restarting).
    pub async fn try_call(
        &self,
        method: Method,
        path: &str,
        token: Option<&str>,
        body: Option<&Value>,
    ) -> Result<(StatusCode, Value), reqwest::Error> {
        let mut req = self.http.request(method, format!("{}{path}", self.base));
        if let Some(t) = token {
            req = req.bearer_auth(t);
        }
        if let Some(b) = body {
            req = req.json(b);
        }
        let resp = req.send().await?;
        let status = resp.status();
        let text = resp.text().await?;
        Ok((status, serde_json::from_str(&text).unwrap_or(Value::Null)))
    }

    /// One request that must reach the server: status and JSON body (Null if not JSON).
    pub async fn call(
        &self,
        method: Method,
        path: &str,
        token: Option<&str>,
        body: Option<&Value>,
    ) -> (StatusCode, Value) {
        let m = method.clone();
        self.try_call(method, path, token, body)
            .await
            .unwrap_or_else(|e| panic!("{m} {}{path}: {e}", self.base))
    }

    /// Registers `localpart` (open registration, `m.login.dummy`) and logs it in.
    pub async fn register(&self, localpart: &str) -> Session {
        let mut body = json!({
            "username": localpart,
            "password": format!("{localpart} correct horse battery"),
            "initial_device_display_name": "federation-tests",
            "auth": { "type": "m.login.dummy" },
        });
        let path = "/_matrix/client/v3/register";
        let (mut st, mut v) = self.call(Method::POST, path, None, Some(&body)).await;
        // Servers that want the user-interactive session first answer 401 with one.
        if st == StatusCode::UNAUTHORIZED {
            if let Some(session) = v["session"].as_str() {
                body["auth"]["session"] = json!(session);
                (st, v) = self.call(Method::POST, path, None, Some(&body)).await;
            }
        }
        assert_eq!(
            st,
            StatusCode::OK,
            "register {localpart} on {}: {v}",
            self.server_name
        );
        self.session(&v)
    }
}

impl Client {
    /// The session of a successful `/register` or `/login` answer.
    pub fn session(&self, v: &Value) -> Session {
        Session {
            client: self.clone(),
            user_id: v["user_id"].as_str().expect("user_id").to_owned(),
            token: v["access_token"].as_str().expect("access_token").to_owned(),
            device_id: v["device_id"].as_str().expect("device_id").to_owned(),
            since: Mutex::new(None),
            txn: AtomicU64::new(0),
        }
    }

    /// A new device of a user registered by `register`: logs in with their password.
    pub async fn login(&self, user_id: &str) -> Session {
        let localpart = user_id
            .trim_start_matches('@')
            .split(':')
            .next()
            .unwrap_or_default();
        let body = json!({
            "type": "m.login.password",
            "identifier": { "type": "m.id.user", "user": localpart },
            "password": format!("{localpart} correct horse battery"),
            "initial_device_display_name": "federation-tests second device",
        });
        let (st, v) = self
            .call(Method::POST, "/_matrix/client/v3/login", None, Some(&body))
            .await;
        assert_eq!(
            st,
            StatusCode::OK,
            "login {user_id} on {}: {v}",
            self.server_name
        );
        self.session(&v)
    }
}

/// A logged-in user (one device) with its own /sync position.
pub struct Session {
    pub client: Client,
    pub user_id: String,
    pub token: String,
    pub device_id: String,
    since: Mutex<Option<String>>,
    txn: AtomicU64,
}

/// The events of `room`'s timeline in a /sync response (joined rooms).
pub fn timeline<'a>(sync: &'a Value, room: &str) -> &'a [Value] {
    sync["rooms"]["join"][room]["timeline"]["events"]
        .as_array()
        .map(Vec::as_slice)
        .unwrap_or(&[])
}

/// The inline /sync filter: timelines long enough that the scenarios never see a gap.
const SYNC_FILTER: &str = r#"{"room":{"timeline":{"limit":1000}}}"#;

impl Session {
    pub fn server_name(&self) -> &str {
        &self.client.server_name
    }

    pub async fn get(&self, path: &str) -> (StatusCode, Value) {
        self.client
            .call(Method::GET, path, Some(&self.token), None)
            .await
    }

    pub async fn post(&self, path: &str, body: Value) -> (StatusCode, Value) {
        self.client
            .call(Method::POST, path, Some(&self.token), Some(&body))
            .await
    }

    pub async fn put(&self, path: &str, body: Value) -> (StatusCode, Value) {
        self.client
            .call(Method::PUT, path, Some(&self.token), Some(&body))
            .await
    }

    /// A transaction id unique for this session.
    pub fn next_txn(&self) -> String {
        format!("ft{}", self.txn.fetch_add(1, Ordering::Relaxed))
    }

    pub async fn set_displayname(&self, name: &str) {
        let (st, v) = self
            .put(
                &format!(
                    "/_matrix/client/v3/profile/{}/displayname",
                    enc(&self.user_id)
                ),
                json!({ "displayname": name }),
            )
            .await;
        assert_eq!(
            st,
            StatusCode::OK,
            "set displayname of {}: {v}",
            self.user_id
        );
    }

    /// `GET /profile/{userId}` (local or remote user).
    pub async fn profile(&self, user_id: &str) -> (StatusCode, Value) {
        self.get(&format!("/_matrix/client/v3/profile/{}", enc(user_id)))
            .await
    }

    /// `POST /createRoom`; returns the room id.
    pub async fn create_room(&self, body: Value) -> String {
        let (st, v) = self.post("/_matrix/client/v3/createRoom", body).await;
        assert_eq!(
            st,
            StatusCode::OK,
            "createRoom on {}: {v}",
            self.server_name()
        );
        v["room_id"].as_str().expect("room_id").to_owned()
    }

    /// A public room with the alias `#alias_localpart:server`; returns (room id, alias).
    pub async fn create_public_room(&self, alias_localpart: &str) -> (String, String) {
        let room = self
            .create_room(json!({
                "preset": "public_chat",
                "room_alias_name": alias_localpart,
                "name": format!("Room {alias_localpart}"),
            }))
            .await;
        (room, format!("#{alias_localpart}:{}", self.server_name()))
    }

    pub async fn invite(&self, room: &str, user_id: &str) {
        let (st, v) = self
            .post(
                &format!("/_matrix/client/v3/rooms/{}/invite", enc(room)),
                json!({ "user_id": user_id }),
            )
            .await;
        assert_eq!(st, StatusCode::OK, "invite {user_id} to {room}: {v}");
    }

    /// `POST /join/{roomIdOrAlias}?server_name=…`: status and body.
    pub async fn try_join(&self, room_or_alias: &str, via: &[&str]) -> (StatusCode, Value) {
        let query: Vec<String> = via
            .iter()
            .map(|s| format!("server_name={}", enc(s)))
            .collect();
        let path = format!(
            "/_matrix/client/v3/join/{}{}{}",
            enc(room_or_alias),
            if query.is_empty() { "" } else { "?" },
            query.join("&")
        );
        self.post(&path, json!({})).await
    }

    /// Joins by room id or alias through the servers `via`; returns the room id.
    pub async fn join(&self, room_or_alias: &str, via: &[&str]) -> String {
        let (st, v) = self.try_join(room_or_alias, via).await;
        assert_eq!(
            st,
            StatusCode::OK,
            "{} joins {room_or_alias} via {via:?}: {v}",
            self.user_id
        );
        v["room_id"].as_str().expect("room_id").to_owned()
    }

    /// `POST /knock/{roomIdOrAlias}?server_name=…`: status and body.
    pub async fn try_knock(&self, room_or_alias: &str, via: &[&str]) -> (StatusCode, Value) {
        let query: Vec<String> = via
            .iter()
            .map(|s| format!("server_name={}", enc(s)))
            .collect();
        let path = format!(
            "/_matrix/client/v3/knock/{}{}{}",
            enc(room_or_alias),
            if query.is_empty() { "" } else { "?" },
            query.join("&")
        );
        self.post(&path, json!({ "reason": "let me in" })).await
    }

    pub async fn leave(&self, room: &str) {
        let (st, v) = self
            .post(
                &format!("/_matrix/client/v3/rooms/{}/leave", enc(room)),
                json!({}),
            )
            .await;
        assert_eq!(st, StatusCode::OK, "{} leaves {room}: {v}", self.user_id);
    }

    /// Sends an event; returns its id.
    pub async fn send(&self, room: &str, event_type: &str, content: Value) -> String {
        let (st, v) = self
            .put(
                &format!(
                    "/_matrix/client/v3/rooms/{}/send/{}/{}",
                    enc(room),
                    enc(event_type),
                    self.next_txn()
                ),
                content,
            )
            .await;
        assert_eq!(st, StatusCode::OK, "{} sends in {room}: {v}", self.user_id);
        v["event_id"].as_str().expect("event_id").to_owned()
    }

    pub async fn send_text(&self, room: &str, body: &str) -> String {
        self.send(
            room,
            "m.room.message",
            json!({ "msgtype": "m.text", "body": body }),
        )
        .await
    }

    /// One /sync from this session's position (initial sync the first time); moves the
    /// position on. `Err` while the server cannot be reached.
    pub async fn try_sync(&self, timeout_ms: u64) -> Result<Value, String> {
        let since = self.since.lock().unwrap().clone();
        let mut path = format!(
            "/_matrix/client/v3/sync?timeout={timeout_ms}&filter={}",
            enc(SYNC_FILTER)
        );
        if let Some(s) = &since {
            path.push_str(&format!("&since={}", enc(s)));
        }
        let (st, v) = self
            .client
            .try_call(Method::GET, &path, Some(&self.token), None)
            .await
            .map_err(|e| e.to_string())?;
        if st != StatusCode::OK {
            return Err(format!("/sync: {st} {v}"));
        }
        let next = v["next_batch"].as_str().ok_or("/sync: no next_batch")?;
        *self.since.lock().unwrap() = Some(next.to_owned());
        Ok(v)
    }

    /// /sync (long-polling) until `f` finds what it looks for in a response, for at most
    /// `within`; panics with `what` after that. Every response is shown to `f` once.
    pub async fn sync_until<T>(
        &self,
        what: &str,
        within: Duration,
        mut f: impl FnMut(&Value) -> Option<T>,
    ) -> T {
        let deadline = Instant::now() + within;
        let mut last_error = String::new();
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                panic!(
                    "{} did not see {what} within {within:?} (last /sync error: {last_error:?})",
                    self.user_id
                );
            }
            let poll = left.min(Duration::from_secs(2)).as_millis() as u64;
            match self.try_sync(poll).await {
                Ok(v) => {
                    if let Some(t) = f(&v) {
                        return t;
                    }
                }
                Err(e) => {
                    last_error = e;
                    tokio::time::sleep(Duration::from_millis(200)).await;
                }
            }
        }
    }

    /// Waits for an invite to `room` in /sync.
    pub async fn wait_for_invite(&self, room: &str, within: Duration) {
        self.sync_until(&format!("an invite to {room}"), within, |v| {
            v["rooms"]["invite"].get(room).map(|_| ())
        })
        .await
    }

    /// Waits for `room` in the `section` of /sync (`invite`, `knock`, `leave`, `join`);
    /// returns the room's entry.
    pub async fn wait_for_section(&self, room: &str, section: &str, within: Duration) -> Value {
        self.sync_until(&format!("{room} in rooms.{section}"), within, |v| {
            v["rooms"][section].get(room).cloned()
        })
        .await
    }

    /// Waits for an event of `room` (timeline or state of a joined room) matching `pred`.
    pub async fn wait_for_event(
        &self,
        room: &str,
        what: &str,
        within: Duration,
        pred: impl Fn(&Value) -> bool,
    ) -> Value {
        self.sync_until(what, within, |v| {
            let r = &v["rooms"]["join"][room];
            ["timeline", "state"]
                .iter()
                .filter_map(|k| r[k]["events"].as_array())
                .flatten()
                .find(|e| pred(e))
                .cloned()
        })
        .await
    }

    /// Waits until `user_id`'s membership in `room` is `membership`, as this user sees it.
    pub async fn wait_for_membership(
        &self,
        room: &str,
        user_id: &str,
        membership: &str,
        within: Duration,
    ) {
        // The member event may already have arrived in an earlier /sync: ask the room first.
        let path = format!(
            "/_matrix/client/v3/rooms/{}/state/m.room.member/{}",
            enc(room),
            enc(user_id)
        );
        let (st, v) = self.get(&path).await;
        if st == StatusCode::OK && v["membership"] == membership {
            return;
        }
        self.wait_for_event(
            room,
            &format!("{user_id} {membership} in {room}"),
            within,
            |e| {
                e["type"] == "m.room.member"
                    && e["state_key"] == user_id
                    && e["content"]["membership"] == membership
            },
        )
        .await;
    }

    /// Waits for a message with `body` in `room`; returns the event.
    pub async fn wait_for_text(&self, room: &str, body: &str, within: Duration) -> Value {
        self.wait_for_event(room, &format!("the message {body:?}"), within, |e| {
            e["type"] == "m.room.message" && e["content"]["body"] == body
        })
        .await
    }

    /// The whole visible history of `room`, oldest first, through /messages.
    pub async fn messages(&self, room: &str) -> Vec<Value> {
        let mut out = Vec::new();
        let mut from: Option<String> = None;
        for _ in 0..1000 {
            let mut path = format!(
                "/_matrix/client/v3/rooms/{}/messages?dir=b&limit=100",
                enc(room)
            );
            if let Some(f) = &from {
                path.push_str(&format!("&from={}", enc(f)));
            }
            let (st, v) = self.get(&path).await;
            assert_eq!(st, StatusCode::OK, "/messages in {room}: {v}");
            let chunk = v["chunk"].as_array().cloned().unwrap_or_default();
            let end = v["end"].as_str().map(str::to_owned);
            if chunk.is_empty() || end.is_none() || end == from {
                out.extend(chunk);
                break;
            }
            out.extend(chunk);
            from = end;
        }
        out.reverse();
        out
    }

    /// The user ids joined to `room`, as this user's server sees them.
    pub async fn joined_members(&self, room: &str) -> Vec<String> {
        let (st, v) = self
            .get(&format!(
                "/_matrix/client/v3/rooms/{}/joined_members",
                enc(room)
            ))
            .await;
        assert_eq!(st, StatusCode::OK, "joined_members of {room}: {v}");
        let mut users: Vec<String> = v["joined"]
            .as_object()
            .map(|m| m.keys().cloned().collect())
            .unwrap_or_default();
        users.sort();
        users
    }
}
