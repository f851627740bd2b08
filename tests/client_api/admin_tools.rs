//! synapse-admin's screens replayed: every request its data provider, auth provider and
//! helpers build (same paths, same query parameters in the order `query-string` writes them,
//! same bodies, `null`s and unknown fields included), and every field its `map` functions and
//! `data`/`total` keys read from the answer, checked for presence and JSON type.

use reqwest::{Method, StatusCode};
use serde_json::{json, Value};

use crate::{
    admin_federation::cross_keys,
    common::*,
    media::{mxc_path, upload},
};

crate::both_backends!(
    login_flow,
    user_screens,
    room_screens,
    media_token_screens,
    draupnir_server_admin,
    ketesa_screens
);

/// The JSON type synapse-admin expects of a field.
#[derive(Clone, Copy)]
enum K {
    Str,
    Num,
    Bool,
    Arr,
    Obj,
    /// `0 | 1` in Synapse's answer, read through `!!`: a number or a bool.
    Flag,
    /// Optional: absent, null or a string.
    OptStr,
    /// Optional: absent, null or a number.
    OptNum,
}

/// Collects every mismatch of one screen, so a run names them all at once.
#[derive(Default)]
struct Check(Vec<String>);

impl Check {
    fn field(&mut self, ctx: &str, v: &Value, name: &str, k: K) {
        let f = &v[name];
        let ok = match k {
            K::Str => f.is_string(),
            K::Num => f.is_number(),
            K::Bool => f.is_boolean(),
            K::Arr => f.is_array(),
            K::Obj => f.is_object(),
            K::Flag => f.is_number() || f.is_boolean(),
            K::OptStr => f.is_null() || f.is_string(),
            K::OptNum => f.is_null() || f.is_number(),
        };
        if !ok {
            self.0.push(format!("{ctx}: `{name}` is {f}"));
        }
    }
    fn fields(&mut self, ctx: &str, v: &Value, spec: &[(&str, K)]) {
        for (n, k) in spec {
            self.field(ctx, v, n, *k);
        }
    }
    fn status(&mut self, ctx: &str, st: StatusCode, v: &Value) -> bool {
        if st != StatusCode::OK {
            self.0.push(format!("{ctx}: {st} {v}"));
            return false;
        }
        true
    }
    /// A list answer: `json[data]` an array of at least `min` rows, each checked against
    /// `spec`; returns the rows.
    fn list(
        &mut self,
        ctx: &str,
        v: &Value,
        data: &str,
        min: usize,
        spec: &[(&str, K)],
    ) -> Vec<Value> {
        let Some(rows) = v[data].as_array() else {
            self.0.push(format!("{ctx}: `{data}` is not an array: {v}"));
            return vec![];
        };
        if rows.len() < min {
            self.0
                .push(format!("{ctx}: {} rows, wanted {min}: {v}", rows.len()));
        }
        for r in rows {
            self.fields(ctx, r, spec);
        }
        rows.clone()
    }
    fn done(self) {
        assert!(
            self.0.is_empty(),
            "synapse-admin mismatches:\n{}",
            self.0.join("\n")
        );
    }
}

/// `getList`/`getManyReference`'s query for page 1 of 10, without filters: `query-string`
/// sorts keys and drops undefined ones.
fn page(order_by: &str, dir: &str) -> String {
    format!("dir={dir}&from=0&limit=10&order_by={order_by}")
}

/// The server name as synapse-admin stores it from the login answer (`home_server`).
fn home_server(u: &User) -> String {
    u.user_id.split_once(':').unwrap().1.to_owned()
}

/// authProvider.login with credentials, whoami with a token, logout; synapse.ts helpers.
async fn login_flow(b: Backend) {
    let s = TestServer::start(b).await;
    s.admin_user("root").await;
    let mut c = Check::default();

    // getSupportedFeatures, getSupportedLoginFlows.
    let (st, v) = s
        .call(Method::GET, "/_matrix/client/versions", None, None)
        .await;
    if c.status("versions", st, &v) {
        c.field("versions", &v, "versions", K::Arr);
    }
    let (st, v) = s
        .call(Method::GET, "/_matrix/client/r0/login", None, None)
        .await;
    if c.status("login flows", st, &v) {
        c.list("login flows", &v, "flows", 1, &[("type", K::Str)]);
        let password = v["flows"]
            .as_array()
            .into_iter()
            .flatten()
            .any(|f| f["type"] == "m.login.password");
        assert!(password, "{v}");
    }

    // The login body: `device_id` from storage (null the first time), a display name.
    let body = json!({
        "device_id": null,
        "initial_device_display_name": "Synapse Admin",
        "type": "m.login.password",
        "identifier": {"type": "m.id.user", "user": "root"},
        "password": "correct horse 1",
    });
    let (st, v) = s
        .call(Method::POST, "/_matrix/client/r0/login", None, Some(body))
        .await;
    assert_eq!(st, StatusCode::OK, "{v}");
    c.fields(
        "login",
        &v,
        &[
            ("home_server", K::Str),
            ("user_id", K::Str),
            ("access_token", K::Str),
            ("device_id", K::Str),
        ],
    );
    let device = v["device_id"].as_str().unwrap().to_owned();
    assert_eq!(
        v["home_server"],
        v["user_id"].as_str().unwrap().split_once(':').unwrap().1
    );

    // A second login reuses the stored device id.
    let body = json!({
        "device_id": device,
        "initial_device_display_name": "Synapse Admin",
        "type": "m.login.password",
        "identifier": {"type": "m.id.user", "user": "root"},
        "password": "correct horse 1",
    });
    let (st, v) = s
        .call(Method::POST, "/_matrix/client/r0/login", None, Some(body))
        .await;
    assert_eq!(st, StatusCode::OK, "{v}");
    assert_eq!(v["device_id"], device);
    let token2 = v["access_token"].as_str().unwrap().to_owned();

    // Login with an access token: whoami validates it.
    let (st, v) = s
        .call(
            Method::GET,
            "/_matrix/client/v3/account/whoami",
            Some(&token2),
            None,
        )
        .await;
    if c.status("whoami", st, &v) {
        c.fields("whoami", &v, &[("user_id", K::Str), ("device_id", K::Str)]);
    }

    // getServerVersion: synapse-admin sends no token (Synapse answers it unauthenticated).
    let (st, v) = s
        .call(Method::GET, "/_synapse/admin/v1/server_version", None, None)
        .await;
    if c.status("server_version", st, &v) {
        c.field("server_version", &v, "server_version", K::Str);
    }

    // getWellKnownUrl reads `m.homeserver.base_url` when there is a document.
    let (st, v) = s
        .call(Method::GET, "/.well-known/matrix/client", None, None)
        .await;
    if st == StatusCode::OK {
        c.field("well-known", &v["m.homeserver"], "base_url", K::Str);
    }

    // logout: POST /_matrix/client/r0/logout, no body.
    let resp = s
        .http
        .post(format!("{}/_matrix/client/r0/logout", s.base))
        .bearer_auth(&token2)
        .send()
        .await
        .unwrap();
    let st = resp.status();
    let v: Value = resp.json().await.unwrap_or(Value::Null);
    c.status("logout", st, &v);
    c.done();
    s.stop().await;
}

const USER: &[(&str, K)] = &[
    ("name", K::Str),
    ("displayname", K::OptStr),
    ("avatar_url", K::OptStr),
    ("is_guest", K::Flag),
    ("admin", K::Flag),
    ("deactivated", K::Flag),
    ("shadow_banned", K::Flag),
    ("creation_ts", K::Num),
    ("user_type", K::OptStr),
    ("locked", K::Bool),
];
const USER_ONE: &[(&str, K)] = &[
    ("threepids", K::Arr),
    ("external_ids", K::Arr),
    ("erased", K::Bool),
];
const DEVICE: &[(&str, K)] = &[
    ("device_id", K::Str),
    ("display_name", K::OptStr),
    ("last_seen_ip", K::OptStr),
    ("last_seen_user_agent", K::OptStr),
    ("last_seen_ts", K::OptNum),
    ("user_id", K::Str),
];

/// The user list, one user's page with its tabs (devices, connections, pushers, joined rooms,
/// media), create, update with the whole record sent back, delete (deactivate with erase).
async fn user_screens(b: Backend) {
    let s = TestServer::start(b).await;
    let root = s.admin_user("root").await;
    let alice = s.register("alice").await;
    let _bob = s.register("bob").await;
    let room = s.create_room(&alice, json!({"name": "Lobby"})).await;
    s.send_text(&alice, &room, "t1", "hello").await;
    let (st, up) = upload(&s, &alice, "text/plain", Some("a.txt"), b"hello".to_vec()).await;
    assert_eq!(st, StatusCode::OK, "{up}");
    let hs = home_server(&root);
    let a = enc(&alice.user_id);
    let mut c = Check::default();

    // UserList: filterDefaultValues guests=true, deactivated=false, locked=false; sort name ASC.
    let q = "deactivated=false&dir=f&from=0&guests=true&limit=10&locked=false&order_by=name";
    let (st, v) = s.get(&root, &format!("/_synapse/admin/v2/users?{q}")).await;
    if c.status("users getList", st, &v) {
        let rows = c.list("users getList", &v, "users", 3, USER);
        c.field("users getList", &v, "total", K::Num);
        let names: Vec<&str> = rows.iter().filter_map(|r| r["name"].as_str()).collect();
        let mut sorted = names.clone();
        sorted.sort();
        assert_eq!(names, sorted);
    }
    // The name search and a descending sort by creation time.
    let q = "deactivated=false&dir=b&from=0&guests=true&limit=10&locked=false&name=ali&order_by=creation_ts";
    let (st, v) = s.get(&root, &format!("/_synapse/admin/v2/users?{q}")).await;
    if c.status("users name filter", st, &v) {
        let rows = c.list("users name filter", &v, "users", 1, USER);
        assert_eq!(rows.len(), 1, "{v}");
        assert_eq!(v["total"], 1);
    }

    // getOne / getMany.
    let (st, one) = s.get(&root, &format!("/_synapse/admin/v2/users/{a}")).await;
    if c.status("users getOne", st, &one) {
        c.fields("users getOne", &one, USER);
        c.fields("users getOne", &one, USER_ONE);
    }

    // update: the mapped record, nulls dropped, sent back whole (id, avatar_src,
    // creation_ts_ms and booleans in place of 0/1 included), with a new display name.
    let mut rec = one.clone();
    let o = rec.as_object_mut().unwrap();
    o.retain(|k, v| !v.is_null() || k == "user_type");
    o.insert("id".into(), json!(alice.user_id));
    o.insert("is_guest".into(), json!(false));
    o.insert("admin".into(), json!(false));
    o.insert("deactivated".into(), json!(false));
    o.insert(
        "creation_ts_ms".into(),
        json!(one["creation_ts"].as_i64().unwrap_or(0) * 1000),
    );
    o.insert("displayname".into(), json!("Alice A."));
    let (st, v) = s
        .put(&root, &format!("/_synapse/admin/v2/users/{a}"), rec)
        .await;
    if c.status("users update", st, &v) {
        c.field("users update", &v, "name", K::Str);
        assert_eq!(v["displayname"], "Alice A.", "{v}");
    }

    // create: PUT @{id}:{home_server} with the form's record.
    let body = json!({
        "id": "carol",
        "displayname": "Carol",
        "password": "correct horse 2",
        "user_type": null,
        "admin": false,
        "threepids": [],
        "external_ids": [],
    });
    let (st, v) = s
        .put(
            &root,
            &format!("/_synapse/admin/v2/users/@{}:{hs}", enc("carol")),
            body,
        )
        .await;
    if st != StatusCode::CREATED {
        c.0.push(format!("users create: {st} {v}"));
    } else {
        c.field("users create", &v, "name", K::Str);
    }

    // devices (getManyReference), then delete one.
    let ref_q = page("device_id", "f");
    let (st, v) = s
        .get(
            &root,
            &format!("/_synapse/admin/v2/users/{a}/devices?{ref_q}"),
        )
        .await;
    if c.status("devices", st, &v) {
        c.list("devices", &v, "devices", 1, DEVICE);
        c.field("devices", &v, "total", K::Num);
    }

    // connections: getOne on whois.
    let (st, v) = s.get(&root, &format!("/_synapse/admin/v1/whois/{a}")).await;
    if c.status("whois", st, &v) {
        c.field("whois", &v, "user_id", K::Str);
        c.field("whois", &v, "devices", K::Obj);
        for (d, dev) in v["devices"].as_object().into_iter().flatten() {
            let ctx = format!("whois {d}");
            for sess in c.list(&ctx, dev, "sessions", 1, &[("connections", K::Arr)]) {
                c.list(
                    &ctx,
                    &sess,
                    "connections",
                    0,
                    &[
                        ("ip", K::Str),
                        ("last_seen", K::Num),
                        ("user_agent", K::Str),
                    ],
                );
            }
        }
    }

    // pushers.
    let (st, v) = s
        .get(
            &root,
            &format!(
                "/_synapse/admin/v1/users/{a}/pushers?{}",
                page("pushkey", "f")
            ),
        )
        .await;
    if c.status("pushers", st, &v) {
        c.list("pushers", &v, "pushers", 0, &[("pushkey", K::Str)]);
        c.field("pushers", &v, "total", K::Num);
    }

    // joined_rooms.
    let (st, v) = s
        .get(
            &root,
            &format!(
                "/_synapse/admin/v1/users/{a}/joined_rooms?{}",
                page("id", "f")
            ),
        )
        .await;
    if c.status("joined_rooms", st, &v) {
        c.field("joined_rooms", &v, "joined_rooms", K::Arr);
        assert_eq!(v["joined_rooms"], json!([room]), "{v}");
        c.field("joined_rooms", &v, "total", K::Num);
    }

    // users_media: sorted by created_ts descending.
    let (st, v) = s
        .get(
            &root,
            &format!(
                "/_synapse/admin/v1/users/{a}/media?{}",
                page("created_ts", "b")
            ),
        )
        .await;
    if c.status("users_media", st, &v) {
        c.list(
            "users_media",
            &v,
            "media",
            1,
            &[
                ("created_ts", K::Num),
                ("last_access_ts", K::OptNum),
                ("media_id", K::Str),
                ("media_length", K::Num),
                ("media_type", K::Str),
                ("quarantined_by", K::OptStr),
                ("safe_from_quarantine", K::Bool),
                ("upload_name", K::OptStr),
            ],
        );
        c.field("users_media", &v, "total", K::Num);
    }

    // reset_password (the user edit form's password field goes through update; Synapse's
    // endpoint is checked as well).
    let (st, v) = s
        .post(
            &root,
            &format!("/_synapse/admin/v1/reset_password/{a}"),
            json!({"new_password": "another horse 3", "logout_devices": false}),
        )
        .await;
    c.status("reset_password", st, &v);

    // servernotices create is in media_token_screens (needs the notices config).

    // delete a device: DELETE without a body.
    let (st, v) = s
        .call(
            Method::DELETE,
            &format!("/_synapse/admin/v2/users/{a}/devices/{}", alice.device_id),
            Some(&root.token),
            None,
        )
        .await;
    c.status("devices delete", st, &v);

    // users delete: deactivate with erase.
    let (st, v) = s
        .post(
            &root,
            &format!("/_synapse/admin/v1/deactivate/{a}"),
            json!({"erase": true}),
        )
        .await;
    c.status("users delete", st, &v);
    // The list with deactivated=true shows her, flagged.
    let q = "deactivated=true&dir=f&from=0&guests=true&limit=10&locked=false&order_by=name";
    let (st, v) = s.get(&root, &format!("/_synapse/admin/v2/users?{q}")).await;
    if c.status("users deactivated", st, &v) {
        let rows = c.list("users deactivated", &v, "users", 1, USER);
        let al = rows.iter().find(|r| r["name"] == alice.user_id.as_str());
        let flag = al.map(|r| r["deactivated"] == 1 || r["deactivated"] == true);
        assert_eq!(flag, Some(true), "{v}");
    }
    c.done();
    s.stop().await;
}

const ROOM: &[(&str, K)] = &[
    ("room_id", K::Str),
    ("name", K::OptStr),
    ("canonical_alias", K::OptStr),
    ("avatar_url", K::OptStr),
    ("joined_members", K::Num),
    ("joined_local_members", K::Num),
    ("version", K::Str),
    ("creator", K::Str),
    ("encryption", K::OptStr),
    ("federatable", K::Bool),
    ("public", K::Bool),
    ("join_rules", K::Str),
    ("guest_access", K::OptStr),
    ("history_visibility", K::Str),
    ("state_events", K::Num),
    ("room_type", K::OptStr),
];

/// Rooms list and page (members, state, forward extremities), the room directory, event
/// reports, federation destinations, room deletion.
async fn room_screens(b: Backend) {
    let s = TestServer::start(b).await;
    let root = s.admin_user("root").await;
    let alice = s.register("alice").await;
    let bob = s.register("bob").await;
    let room = s
        .create_room(
            &alice,
            json!({"name": "Lobby", "preset": "public_chat", "room_alias_name": "lobby"}),
        )
        .await;
    s.join(&bob, &room).await;
    let ev = s.send_text(&alice, &room, "t1", "buy cheap watches").await;
    let (st, v) = s
        .post(
            &bob,
            &format!(
                "/_matrix/client/v3/rooms/{}/report/{}",
                enc(&room),
                enc(&ev)
            ),
            json!({"reason": "spam", "score": -100}),
        )
        .await;
    assert_eq!(st, StatusCode::OK, "{v}");
    let mut c = Check::default();

    // RoomList: sort name ASC, search_term filter.
    let (st, v) = s
        .get(
            &root,
            &format!("/_synapse/admin/v1/rooms?{}", page("name", "f")),
        )
        .await;
    if c.status("rooms getList", st, &v) {
        c.list("rooms getList", &v, "rooms", 1, ROOM);
        c.field("rooms getList", &v, "total_rooms", K::Num);
    }
    let q = "dir=b&from=0&limit=10&order_by=joined_members&search_term=Lob";
    let (st, v) = s.get(&root, &format!("/_synapse/admin/v1/rooms?{q}")).await;
    if c.status("rooms search", st, &v) {
        let rows = c.list("rooms search", &v, "rooms", 1, ROOM);
        assert_eq!(rows.len(), 1, "{v}");
        assert_eq!(v["total_rooms"], 1, "{v}");
    }
    let (st, v) = s
        .get(&root, &format!("/_synapse/admin/v1/rooms/{}", enc(&room)))
        .await;
    if c.status("rooms getOne", st, &v) {
        c.fields("rooms getOne", &v, ROOM);
        assert_eq!(
            v["canonical_alias"],
            format!("#lobby:{}", home_server(&root))
        );
        assert_eq!(v["joined_members"], 2);
    }

    // room_members, room_state, forward_extremities: the id goes into the path as it is.
    let (st, v) = s
        .get(
            &root,
            &format!(
                "/_synapse/admin/v1/rooms/{room}/members?{}",
                page("id", "f")
            ),
        )
        .await;
    if c.status("room_members", st, &v) {
        c.field("room_members", &v, "members", K::Arr);
        assert!(
            v["members"]
                .as_array()
                .unwrap()
                .iter()
                .all(Value::is_string),
            "{v}"
        );
        c.field("room_members", &v, "total", K::Num);
    }
    let (st, v) = s
        .get(
            &root,
            &format!(
                "/_synapse/admin/v1/rooms/{room}/state?{}",
                page("type", "f")
            ),
        )
        .await;
    if c.status("room_state", st, &v) {
        c.list(
            "room_state",
            &v,
            "state",
            5,
            &[
                ("content", K::Obj),
                ("event_id", K::Str),
                ("origin_server_ts", K::Num),
                ("room_id", K::Str),
                ("sender", K::Str),
                ("state_key", K::Str),
                ("type", K::Str),
            ],
        );
    }
    let (st, v) = s
        .get(
            &root,
            &format!(
                "/_synapse/admin/v1/rooms/{room}/forward_extremities?{}",
                page("depth", "b")
            ),
        )
        .await;
    if c.status("forward_extremities", st, &v) {
        c.list(
            "forward_extremities",
            &v,
            "results",
            1,
            &[
                ("event_id", K::Str),
                ("state_group", K::Num),
                ("depth", K::Num),
                ("received_ts", K::Num),
            ],
        );
        c.field("forward_extremities", &v, "count", K::Num);
    }

    // room_directory: getList on /r0/publicRooms with the admin list's query, create and
    // delete put the visibility.
    let (st, v) = s
        .get(
            &root,
            &format!("/_matrix/client/r0/publicRooms?{}", page("name", "f")),
        )
        .await;
    if c.status("room_directory", st, &v) {
        c.list(
            "room_directory",
            &v,
            "chunk",
            0,
            &[("room_id", K::Str), ("num_joined_members", K::Num)],
        );
        c.field("room_directory", &v, "total_room_count_estimate", K::Num);
    }
    let (st, v) = s
        .put(
            &root,
            &format!("/_matrix/client/r0/directory/list/room/{room}"),
            json!({"visibility": "public"}),
        )
        .await;
    c.status("room_directory create", st, &v);
    let (st, v) = s
        .get(
            &root,
            &format!("/_matrix/client/r0/publicRooms?{}", page("name", "f")),
        )
        .await;
    if c.status("room_directory after", st, &v) {
        let ids: Vec<&Value> = v["chunk"]
            .as_array()
            .into_iter()
            .flatten()
            .map(|r| &r["room_id"])
            .collect();
        assert!(ids.contains(&&json!(room)), "{v}");
    }
    let (st, v) = s
        .put(
            &root,
            &format!("/_matrix/client/r0/directory/list/room/{room}"),
            json!({"visibility": "private"}),
        )
        .await;
    c.status("room_directory delete", st, &v);

    // reports: sort received_ts DESC; getOne.
    let (st, v) = s
        .get(
            &root,
            &format!(
                "/_synapse/admin/v1/event_reports?{}",
                page("received_ts", "b")
            ),
        )
        .await;
    let report_spec = &[
        ("id", K::Num),
        ("received_ts", K::Num),
        ("room_id", K::Str),
        ("name", K::OptStr),
        ("event_id", K::Str),
        ("user_id", K::Str),
        ("reason", K::OptStr),
        ("score", K::OptNum),
        ("sender", K::Str),
        ("canonical_alias", K::OptStr),
    ];
    if c.status("reports getList", st, &v) {
        let rows = c.list("reports getList", &v, "event_reports", 1, report_spec);
        c.field("reports getList", &v, "total", K::Num);
        if let Some(id) = rows.first().map(|r| r["id"].to_string()) {
            let (st, v) = s
                .get(&root, &format!("/_synapse/admin/v1/event_reports/{id}"))
                .await;
            if c.status("reports getOne", st, &v) {
                c.fields("reports getOne", &v, report_spec);
                c.field("reports getOne", &v, "event_json", K::Obj);
            }
        }
    }

    // destinations: none on a lone server, the list's shape still read; the destination
    // filter passed along.
    let q = "destination=example&dir=f&from=0&limit=10&order_by=destination";
    let (st, v) = s
        .get(
            &root,
            &format!("/_synapse/admin/v1/federation/destinations?{q}"),
        )
        .await;
    if c.status("destinations", st, &v) {
        c.list(
            "destinations",
            &v,
            "destinations",
            0,
            &[
                ("destination", K::Str),
                ("retry_last_ts", K::Num),
                ("retry_interval", K::Num),
                ("failure_ts", K::OptNum),
                ("last_successful_stream_ordering", K::OptNum),
            ],
        );
        c.field("destinations", &v, "total", K::Num);
    }

    // rooms delete: DELETE v2 with {block: false}.
    let (st, v) = s
        .call(
            Method::DELETE,
            &format!("/_synapse/admin/v2/rooms/{room}"),
            Some(&root.token),
            Some(json!({"block": false})),
        )
        .await;
    if c.status("rooms delete", st, &v) {
        c.field("rooms delete", &v, "delete_id", K::Str);
    }
    c.done();
    s.stop().await;
}

/// Media (protect, quarantine, delete one, delete by date), media statistics, registration
/// tokens (list, create, update with the record sent back, delete), server notices.
async fn media_token_screens(b: Backend) {
    let s = TestServer::start_with(b, |c| c.server_notices = Some(Default::default())).await;
    let root = s.admin_user("root").await;
    let alice = s.register("alice").await;
    let hs = home_server(&root);
    let (st, up) = upload(&s, &alice, "text/plain", Some("a.txt"), b"hello".to_vec()).await;
    assert_eq!(st, StatusCode::OK, "{up}");
    let (_, up2) = upload(&s, &alice, "text/plain", Some("b.txt"), b"world".to_vec()).await;
    let m1 = mxc_path(&up).split_once('/').unwrap().1.to_owned();
    let m2 = mxc_path(&up2).split_once('/').unwrap().1.to_owned();
    let mut c = Check::default();

    // protect_media / quarantine_media: POST without a body.
    for (ctx, path) in [
        ("protect", format!("/_synapse/admin/v1/media/protect/{m1}")),
        (
            "unprotect",
            format!("/_synapse/admin/v1/media/unprotect/{m1}"),
        ),
        (
            "quarantine",
            format!("/_synapse/admin/v1/media/quarantine/{hs}/{m1}"),
        ),
        (
            "unquarantine",
            format!("/_synapse/admin/v1/media/unquarantine/{hs}/{m1}"),
        ),
    ] {
        let (st, v) = s.call(Method::POST, &path, Some(&root.token), None).await;
        c.status(ctx, st, &v);
    }

    // user_media_statistics: sort media_length DESC, search_term.
    let (st, v) = s
        .get(
            &root,
            &format!(
                "/_synapse/admin/v1/statistics/users/media?{}",
                page("media_length", "b")
            ),
        )
        .await;
    let stat = &[
        ("displayname", K::OptStr),
        ("media_count", K::Num),
        ("media_length", K::Num),
        ("user_id", K::Str),
    ];
    if c.status("user_media_statistics", st, &v) {
        c.list("user_media_statistics", &v, "users", 1, stat);
        c.field("user_media_statistics", &v, "total", K::Num);
    }
    let q = "dir=b&from=0&limit=10&order_by=media_length&search_term=ali";
    let (st, v) = s
        .get(
            &root,
            &format!("/_synapse/admin/v1/statistics/users/media?{q}"),
        )
        .await;
    if c.status("user_media_statistics search", st, &v) {
        c.list("user_media_statistics search", &v, "users", 1, stat);
    }

    // users_media delete: DELETE /media/{home_server}/{id}.
    let (st, v) = s
        .call(
            Method::DELETE,
            &format!("/_synapse/admin/v1/media/{hs}/{m2}"),
            Some(&root.token),
            None,
        )
        .await;
    if c.status("media delete", st, &v) {
        c.field("media delete", &v, "deleted_media", K::Arr);
        c.field("media delete", &v, "total", K::Num);
    }

    // deleteMedia: by date, with home_server in the path (pre-1.78 form).
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis();
    let (st, v) = s
        .call(
            Method::POST,
            &format!(
                "/_synapse/admin/v1/media/{hs}/delete?before_ts={}&size_gt=0&keep_profiles=true",
                now - 3_600_000
            ),
            Some(&root.token),
            None,
        )
        .await;
    if c.status("deleteMedia", st, &v) {
        c.field("deleteMedia", &v, "deleted_media", K::Arr);
        c.field("deleteMedia", &v, "total", K::Num);
    }

    // registration_tokens: create from the form, list (valid filter), getOne, update with the
    // record sent back, delete.
    let tok_spec = &[
        ("token", K::Str),
        ("uses_allowed", K::OptNum),
        ("pending", K::Num),
        ("completed", K::Num),
        ("expiry_time", K::OptNum),
    ];
    let (st, v) = s
        .post(
            &root,
            "/_synapse/admin/v1/registration_tokens/new",
            json!({"token": "abcd", "uses_allowed": 5}),
        )
        .await;
    if c.status("registration_tokens create", st, &v) {
        c.fields("registration_tokens create", &v, tok_spec);
    }
    let (st, v) = s
        .post(
            &root,
            "/_synapse/admin/v1/registration_tokens/new",
            json!({"length": 12}),
        )
        .await;
    c.status("registration_tokens create length", st, &v);
    let (st, v) = s
        .get(
            &root,
            &format!(
                "/_synapse/admin/v1/registration_tokens?{}",
                page("token", "f")
            ),
        )
        .await;
    if c.status("registration_tokens getList", st, &v) {
        c.list(
            "registration_tokens getList",
            &v,
            "registration_tokens",
            2,
            tok_spec,
        );
    }
    let q = "dir=f&from=0&limit=10&order_by=token&valid=true";
    let (st, v) = s
        .get(
            &root,
            &format!("/_synapse/admin/v1/registration_tokens?{q}"),
        )
        .await;
    if c.status("registration_tokens valid", st, &v) {
        c.list(
            "registration_tokens valid",
            &v,
            "registration_tokens",
            2,
            tok_spec,
        );
    }
    let (st, one) = s
        .get(&root, "/_synapse/admin/v1/registration_tokens/abcd")
        .await;
    if c.status("registration_tokens getOne", st, &one) {
        c.fields("registration_tokens getOne", &one, tok_spec);
        let mut rec = one.clone();
        let o = rec.as_object_mut().unwrap();
        o.retain(|_, v| !v.is_null());
        o.insert("id".into(), json!("abcd"));
        o.insert("uses_allowed".into(), json!(7));
        let (st, v) = s
            .put(&root, "/_synapse/admin/v1/registration_tokens/abcd", rec)
            .await;
        if c.status("registration_tokens update", st, &v) {
            c.fields("registration_tokens update", &v, tok_spec);
            assert_eq!(v["uses_allowed"], 7, "{v}");
        }
    }
    let (st, v) = s
        .call(
            Method::DELETE,
            "/_synapse/admin/v1/registration_tokens/abcd",
            Some(&root.token),
            None,
        )
        .await;
    c.status("registration_tokens delete", st, &v);

    // servernotices create.
    let (st, v) = s
        .post(
            &root,
            "/_synapse/admin/v1/send_server_notice",
            json!({"user_id": alice.user_id, "content": {"msgtype": "m.text", "body": "hi"}}),
        )
        .await;
    if c.status("servernotices", st, &v) {
        c.field("servernotices", &v, "event_id", K::Str);
    }
    c.done();
    s.stop().await;
}

/// Draupnir's server-admin calls (matrix-protection-suite-for-matrix-bot-sdk's
/// `SynapseAdminClient`): each request as it builds it, each answer decoded against the
/// typebox schema it declares (`Type.Boolean` is a real bool, `Type.Integer` a number).
async fn draupnir_server_admin(b: Backend) {
    let s = TestServer::start(b).await;
    let root = s.admin_user("root").await;
    let alice = s.register("alice").await;
    let bob = s.register("bob").await;
    let carol = s.register("carol").await;
    let room = s
        .create_room(&alice, json!({"name": "Lobby", "preset": "public_chat"}))
        .await;
    s.join(&bob, &room).await;
    let ev = s.send_text(&alice, &room, "t1", "buy cheap watches").await;
    let (st, v) = s
        .post(
            &bob,
            &format!(
                "/_matrix/client/v3/rooms/{}/report/{}",
                enc(&room),
                enc(&ev)
            ),
            json!({"reason": "spam"}),
        )
        .await;
    assert_eq!(st, StatusCode::OK, "{v}");
    let r = enc(&room);
    let a = enc(&alice.user_id);
    let mut c = Check::default();

    // isSynapseAdmin: GET v1/users/{self}/admin, reads `admin`.
    let (st, v) = s
        .get(
            &root,
            &format!("/_synapse/admin/v1/users/{}/admin", enc(&root.user_id)),
        )
        .await;
    if c.status("is admin", st, &v) {
        assert_eq!(v["admin"], true, "{v}");
    }

    // getAbuseReports: `from` only when truthy, `dir`, `limit`; `event_reports` of
    // SynapseReport, `next_token` and `total` optional integers or null.
    let report = &[
        ("id", K::Num),
        ("room_id", K::Str),
        ("name", K::OptStr),
        ("event_id", K::Str),
        ("sender", K::Str),
        ("user_id", K::Str),
        ("reason", K::OptStr),
    ];
    for q in ["", "?dir=f&limit=100", "?from=1&dir=f&limit=100"] {
        let ctx = format!("event_reports{q}");
        let (st, v) = s
            .get(&root, &format!("/_synapse/admin/v1/event_reports{q}"))
            .await;
        if c.status(&ctx, st, &v) {
            let min = usize::from(!q.contains("from"));
            c.list(&ctx, &v, "event_reports", min, report);
            c.field(&ctx, &v, "next_token", K::OptNum);
            c.field(&ctx, &v, "total", K::OptNum);
        }
    }

    // The reported event's context, as the report poller fetches it.
    let (st, v) = s
        .get(
            &root,
            &format!("/_synapse/admin/v1/rooms/{r}/context/{}?limit=1", enc(&ev)),
        )
        .await;
    if c.status("room context", st, &v) {
        c.field("room context", &v, "event", K::Obj);
        c.field("room context", &v, "events_before", K::Arr);
        c.field("room context", &v, "events_after", K::Arr);
        assert_eq!(v["event"]["event_id"], ev.as_str(), "{v}");
    }

    // getRoomDetails: RoomDetailsResponse; `creator` a user id (or "" / null).
    let (st, v) = s.get(&root, &format!("/_synapse/admin/v1/rooms/{r}")).await;
    if c.status("room details", st, &v) {
        c.fields(
            "room details",
            &v,
            &[
                ("room_id", K::Str),
                ("name", K::OptStr),
                ("topic", K::OptStr),
                ("avatar", K::OptStr),
                ("canonical_alias", K::OptStr),
                ("joined_members", K::OptNum),
                ("joined_local_members", K::OptNum),
                ("joined_local_devices", K::OptNum),
                ("version", K::OptStr),
                ("creator", K::OptStr),
                ("encryption", K::OptStr),
                ("join_rules", K::OptStr),
                ("guest_access", K::OptStr),
                ("history_visibility", K::OptStr),
                ("state_events", K::OptNum),
                ("room_type", K::OptStr),
            ],
        );
        for f in ["federatable", "public", "forgotten"] {
            if !(v[f].is_null() || v[f].is_boolean()) {
                c.0.push(format!("room details: `{f}` is {}", v[f]));
            }
        }
        assert_eq!(v["creator"], alice.user_id.as_str(), "{v}");
    }
    // getRoomDetails of an unknown room: a 404 read as "no such room".
    let (st, v) = s
        .get(
            &root,
            &format!("/_synapse/admin/v1/rooms/{}", enc("!nope:localhost")),
        )
        .await;
    assert_eq!(st, StatusCode::NOT_FOUND, "{v}");

    // getBlockStatus: `block` a bool, `user_id` only when blocked.
    let (st, v) = s
        .get(&root, &format!("/_synapse/admin/v1/rooms/{r}/block"))
        .await;
    if c.status("block status", st, &v) {
        assert_eq!(v["block"], false, "{v}");
    }

    // makeUserRoomAdmin: POST {user_id}.
    let (st, v) = s
        .post(
            &root,
            &format!("/_synapse/admin/v1/rooms/{r}/make_room_admin"),
            json!({"user_id": root.user_id}),
        )
        .await;
    c.status("make_room_admin", st, &v);

    // getUserDetails: UserDetailsResponse, every flag a real bool.
    let user_details = &[
        ("name", K::Str),
        // Draupnir declares `Type.Boolean` for is_guest, admin, deactivated and shadow_banned,
        // as Synapse's details (its `UserInfo`) answer them.
        ("is_guest", K::Bool),
        ("admin", K::Bool),
        ("user_type", K::OptStr),
        ("deactivated", K::Bool),
        ("erased", K::Bool),
        ("shadow_banned", K::Bool),
        ("displayname", K::OptStr),
        ("avatar_url", K::OptStr),
        ("creation_ts", K::Num),
        // Synapse answers null for a user never seen; typebox's Integer would reject it,
        // Draupnir only reads the flags below.
        ("last_seen_ts", K::OptNum),
        ("locked", K::Bool),
        ("suspended", K::Bool),
    ];
    let b_ = enc(&bob.user_id);
    let (st, v) = details(&s, &root, &b_.clone()).await;
    if c.status("user details", st, &v) {
        c.fields("user details", &v, user_details);
    }

    // suspendUser / unsuspendUser: PUT v1/suspend/{user} {suspend}.
    for on in [true, false] {
        let (st, v) = s
            .put(
                &root,
                &format!("/_synapse/admin/v1/suspend/{b_}"),
                json!({"suspend": on}),
            )
            .await;
        if c.status(&format!("suspend {on}"), st, &v) {
            let (_, d) = details(&s, &root, &b_.clone()).await;
            assert_eq!(d["suspended"], on, "{d}");
        }
    }

    // shadowBanUser: POST {}; unshadowBanUser: DELETE {}.
    let (st, v) = s
        .post(
            &root,
            &format!("/_synapse/admin/v1/users/{b_}/shadow_ban"),
            json!({}),
        )
        .await;
    if c.status("shadow_ban", st, &v) {
        let (_, d) = details(&s, &root, &b_.clone()).await;
        assert!(truthy(&d["shadow_banned"]), "{d}");
    }
    let (st, v) = s
        .call(
            Method::DELETE,
            &format!("/_synapse/admin/v1/users/{b_}/shadow_ban"),
            Some(&root.token),
            Some(json!({})),
        )
        .await;
    if c.status("unshadow_ban", st, &v) {
        let (_, d) = details(&s, &root, &b_.clone()).await;
        assert!(!truthy(&d["shadow_banned"]), "{d}");
    }

    // redactUser: PUT v1/user/{user}/redact {} -> `redact_id`; getUserRedactionStatus:
    // `status` one of four, `failed_redactions` an object.
    // Left unchecked: Draupnir sends PUT with `{}`, which Synapse answers 405 (its route is
    // POST) and would then refuse for the missing `rooms`; Palabre does the same. Replayed
    // as Synapse accepts it: POST with `rooms: []` (every room the user is in).
    let (st, _) = s
        .put(
            &root,
            &format!("/_synapse/admin/v1/user/{a}/redact"),
            json!({}),
        )
        .await;
    assert_eq!(st, StatusCode::METHOD_NOT_ALLOWED);
    let (st, v) = s
        .post(
            &root,
            &format!("/_synapse/admin/v1/user/{a}/redact"),
            json!({"rooms": []}),
        )
        .await;
    if c.status("user redact", st, &v) {
        c.field("user redact", &v, "redact_id", K::Str);
        if let Some(id) = v["redact_id"].as_str() {
            let mut status = Value::Null;
            for _ in 0..50 {
                let (st, v) = s
                    .get(
                        &root,
                        &format!("/_synapse/admin/v1/user/redact_status/{}", enc(id)),
                    )
                    .await;
                if !c.status("redact_status", st, &v) {
                    break;
                }
                c.field("redact_status", &v, "failed_redactions", K::Obj);
                status = v["status"].clone();
                if status == "completed" || status == "failed" {
                    break;
                }
                tokio::time::sleep(std::time::Duration::from_millis(100)).await;
            }
            let known = ["scheduled", "active", "completed", "failed"];
            assert!(known.iter().any(|k| status == *k), "{status}");
        }
    }

    // deactivateUser: POST v1/deactivate/{user} {erase}.
    let (st, v) = s
        .post(
            &root,
            &format!("/_synapse/admin/v1/deactivate/{}", enc(&carol.user_id)),
            json!({"erase": false}),
        )
        .await;
    if c.status("deactivate", st, &v) {
        let (_, d) = details(&s, &root, &enc(&carol.user_id)).await;
        assert!(truthy(&d["deactivated"]), "{d}");
    }

    // shutdownRoomV2: DELETE v2/rooms/{room} with the takedown options, then the status.
    let room2 = s.create_room(&alice, json!({"name": "Bad"})).await;
    let r2 = enc(&room2);
    let (st, v) = s
        .call(
            Method::DELETE,
            &format!("/_synapse/admin/v2/rooms/{r2}"),
            Some(&root.token),
            Some(json!({"new_room_user_id": root.user_id, "block": true, "purge": true})),
        )
        .await;
    if c.status("shutdown v2", st, &v) {
        c.field("shutdown v2", &v, "delete_id", K::Str);
        let mut done = false;
        for _ in 0..50 {
            let (st, v) = s
                .get(
                    &root,
                    &format!("/_synapse/admin/v2/rooms/{r2}/delete_status"),
                )
                .await;
            if !c.status("delete_status", st, &v) {
                break;
            }
            let rows = c.list(
                "delete_status",
                &v,
                "results",
                1,
                &[("delete_id", K::Str), ("status", K::Str)],
            );
            if rows.iter().any(|r| r["status"] == "complete") {
                done = true;
                break;
            }
            tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        }
        assert!(done, "shutdown v2 never completed");
        let (st, v) = s
            .get(&root, &format!("/_synapse/admin/v1/rooms/{r2}/block"))
            .await;
        if c.status("block status after", st, &v) {
            assert_eq!(v["block"], true, "{v}");
            c.field("block status after", &v, "user_id", K::Str);
        }
    }

    // deleteRoom (v1): DELETE {new_room_user_id: self, block: true}.
    let (st, v) = s
        .call(
            Method::DELETE,
            &format!("/_synapse/admin/v1/rooms/{r}"),
            Some(&root.token),
            Some(json!({"new_room_user_id": root.user_id, "block": true})),
        )
        .await;
    c.status("delete room v1", st, &v);
    c.done();
    s.stop().await;
}

/// Draupnir's getUserDetails: GET v2/users/{user}.
async fn details(s: &TestServer, root: &User, u: &str) -> (StatusCode, Value) {
    s.get(root, &format!("/_synapse/admin/v2/users/{u}")).await
}

/// A `0 | 1 | bool` flag read as JavaScript's truthiness.
fn truthy(v: &Value) -> bool {
    v == &json!(true) || v == &json!(1)
}

/// Ketesa's query for a list page (`buildSynapseListQuery` through `URLSearchParams`): keys in
/// the order the object is built (from, limit, the filters, order_by, dir, the room filters),
/// undefined ones dropped; `filters` and `room_filters` are already `k=v&…` strings.
fn kq(per_page: u32, filters: &str, order_by: &str, dir: &str, room_filters: &str) -> String {
    let mut q = format!("from=0&limit={per_page}");
    if !filters.is_empty() {
        q.push('&');
        q.push_str(filters);
    }
    q.push_str(&format!("&order_by={order_by}&dir={dir}"));
    if !room_filters.is_empty() {
        q.push('&');
        q.push_str(room_filters);
    }
    q
}

/// Ketesa's `getManyReference` query: from, limit, order_by, dir in that order.
fn kref(order_by: &str, dir: &str) -> String {
    format!("from=0&limit=10&order_by={order_by}&dir={dir}")
}

/// Ketesa (etkecc/ketesa, a synapse-admin fork): the requests it builds beyond synapse-admin's
/// (the v3 user list and its sorts, the user page's side calls, the actions of its users,
/// rooms, media and federation screens, the client-side admin config) replayed as it sends
/// them, each field it reads checked for presence and type.
async fn ketesa_screens(b: Backend) {
    let s = TestServer::start_with(b, |c| c.admin.login_as_user = true).await;
    let root = s.admin_user("root").await;
    let alice = s.register("alice").await;
    let bob = s.register("bob").await;
    let carol = s.register("carol").await;
    let hs = home_server(&root);
    let room = s
        .create_room(
            &alice,
            json!({"name": "Lobby", "preset": "public_chat", "room_alias_name": "lobby", "visibility": "public"}),
        )
        .await;
    s.join(&bob, &room).await;
    let ev = s.send_text(&alice, &room, "t1", "buy cheap watches").await;
    let (st, up) = upload(&s, &alice, "image/png", Some("a.png"), b"png?".to_vec()).await;
    assert_eq!(st, StatusCode::OK, "{up}");
    let mxc = up["content_uri"].as_str().unwrap().to_owned();
    let (st, v) = s
        .put(
            &alice,
            &format!(
                "/_matrix/client/v3/rooms/{}/send/m.room.message/t2",
                enc(&room)
            ),
            json!({"msgtype": "m.image", "body": "a.png", "url": mxc}),
        )
        .await;
    assert_eq!(st, StatusCode::OK, "{v}");
    let (st, v) = s
        .post(
            &bob,
            &format!(
                "/_matrix/client/v3/rooms/{}/report/{}",
                enc(&room),
                enc(&ev)
            ),
            json!({"reason": "spam", "score": -100}),
        )
        .await;
    assert_eq!(st, StatusCode::OK, "{v}");
    let (st, v) = s
        .post(
            &bob,
            &format!("/_matrix/client/v3/users/{}/report", enc(&alice.user_id)),
            json!({"reason": "rude"}),
        )
        .await;
    assert_eq!(st, StatusCode::OK, "{v}");
    let a = enc(&alice.user_id);
    let bb = enc(&bob.user_id);
    let r = enc(&room);
    let mut c = Check::default();

    // Login page: flows on v3, the auth metadata probe (no OIDC here: an error, then the
    // unstable path, also an error; Ketesa falls back to the password form).
    let (st, v) = s
        .call(Method::GET, "/_matrix/client/v3/login", None, None)
        .await;
    if c.status("v3 login flows", st, &v) {
        c.list("v3 login flows", &v, "flows", 1, &[("type", K::Str)]);
    }
    for p in [
        "/_matrix/client/v1/auth_metadata",
        "/_matrix/client/unstable/org.matrix.msc2965/auth_metadata",
    ] {
        let (st, v) = s.call(Method::GET, p, None, None).await;
        assert!(
            st.is_client_error() && v["issuer"].is_null(),
            "{p}: {st} {v}"
        );
    }

    // UserList: v3, 50 a page, sort name ASC, no default filter; then each sortable column
    // (creation_ts_ms is sent as creation_ts) and the filters of its filter bar.
    let user_row: &[(&str, K)] = &[
        ("name", K::Str),
        ("displayname", K::OptStr),
        ("avatar_url", K::OptStr),
        ("is_guest", K::Flag),
        ("admin", K::Flag),
        ("deactivated", K::Flag),
        ("shadow_banned", K::Flag),
        ("locked", K::Bool),
        ("erased", K::Bool),
        ("creation_ts", K::Num),
        ("user_type", K::OptStr),
    ];
    let (st, v) = s
        .get(
            &root,
            &format!("/_synapse/admin/v3/users?{}", kq(50, "", "name", "f", "")),
        )
        .await;
    if c.status("v3 users", st, &v) {
        let rows = c.list("v3 users", &v, "users", 4, user_row);
        c.field("v3 users", &v, "total", K::Num);
        let names: Vec<&str> = rows.iter().filter_map(|r| r["name"].as_str()).collect();
        let mut sorted = names.clone();
        sorted.sort();
        assert_eq!(names, sorted, "{v}");
    }
    for col in [
        "avatar_url",
        "displayname",
        "is_guest",
        "admin",
        "deactivated",
        "locked",
        "shadow_banned",
        "creation_ts",
    ] {
        let ctx = format!("v3 users order_by={col}");
        let (st, v) = s
            .get(
                &root,
                &format!("/_synapse/admin/v3/users?{}", kq(50, "", col, "b", "")),
            )
            .await;
        if c.status(&ctx, st, &v) {
            c.list(&ctx, &v, "users", 4, user_row);
        }
    }
    // URLSearchParams keeps the object's order: name, guests, deactivated, locked.
    let q = kq(
        50,
        "name=ali&guests=false&deactivated=false&locked=false",
        "name",
        "f",
        "",
    );
    let (st, v) = s.get(&root, &format!("/_synapse/admin/v3/users?{q}")).await;
    if c.status("v3 users filters", st, &v) {
        let rows = c.list("v3 users filters", &v, "users", 1, user_row);
        assert_eq!(rows.len(), 1, "{v}");
    }

    // The user page: getOne (suspended shown as a chip), then its side calls.
    let (st, v) = s.get(&root, &format!("/_synapse/admin/v2/users/{a}")).await;
    if c.status("user getOne", st, &v) {
        c.fields("user getOne", &v, USER);
        c.fields("user getOne", &v, USER_ONE);
        c.field("user getOne", &v, "suspended", K::Bool);
    }
    // getSentInviteCount / getCumulativeJoinedRoomCount: from_ts=0.
    let (st, v) = s
        .get(
            &root,
            &format!("/_synapse/admin/v1/users/{a}/sent_invite_count?from_ts=0"),
        )
        .await;
    if c.status("sent_invite_count", st, &v) {
        c.field("sent_invite_count", &v, "invite_count", K::Num);
    }
    let (st, v) = s
        .get(
            &root,
            &format!("/_synapse/admin/v1/users/{a}/cumulative_joined_room_count?from_ts=0"),
        )
        .await;
    if c.status("cumulative_joined_room_count", st, &v) {
        c.field(
            "cumulative_joined_room_count",
            &v,
            "cumulative_joined_room_count",
            K::Num,
        );
        assert!(v["cumulative_joined_room_count"].as_i64() >= Some(1), "{v}");
    }
    // getAccountData: `account_data.global`, `account_data.rooms`.
    let (st, v) = s
        .get(&root, &format!("/_synapse/admin/v1/users/{a}/accountdata"))
        .await;
    if c.status("accountdata", st, &v) {
        c.field("accountdata", &v, "account_data", K::Obj);
        c.field("accountdata", &v["account_data"], "global", K::Obj);
        c.field("accountdata", &v["account_data"], "rooms", K::Obj);
    }
    // getFeatures: `features`, an object of booleans; updateFeatures sends it back whole.
    let (st, v) = s
        .get(
            &root,
            &format!("/_synapse/admin/v1/experimental_features/{a}"),
        )
        .await;
    if c.status("experimental_features", st, &v) {
        c.field("experimental_features", &v, "features", K::Obj);
        let all_bool = v["features"]
            .as_object()
            .into_iter()
            .flatten()
            .all(|(_, f)| f.is_boolean());
        assert!(all_bool, "{v}");
        let (st, v) = s
            .put(
                &root,
                &format!("/_synapse/admin/v1/experimental_features/{a}"),
                json!({"features": v["features"]}),
            )
            .await;
        c.status("experimental_features put", st, &v);
    }
    // getRateLimits: `{}` or both numbers; setRateLimits POSTs the non-null ones, DELETE when
    // none is left.
    let rl = format!("/_synapse/admin/v1/users/{a}/override_ratelimit");
    let (st, v) = s.get(&root, &rl).await;
    if c.status("override_ratelimit get", st, &v) {
        assert!(v.is_object(), "{v}");
    }
    let (st, v) = s
        .post(
            &root,
            &rl,
            json!({"messages_per_second": 5, "burst_count": 10}),
        )
        .await;
    if c.status("override_ratelimit set", st, &v) {
        let (_, v) = s.get(&root, &rl).await;
        c.field("override_ratelimit", &v, "messages_per_second", K::Num);
        c.field("override_ratelimit", &v, "burst_count", K::Num);
    }
    let (st, v) = s.call(Method::DELETE, &rl, Some(&root.token), None).await;
    c.status("override_ratelimit delete", st, &v);

    // memberships (getManyReference): `memberships` a room -> membership map.
    let (st, v) = s
        .get(
            &root,
            &format!(
                "/_synapse/admin/v1/users/{a}/memberships?{}",
                kref("id", "f")
            ),
        )
        .await;
    if c.status("memberships", st, &v) {
        c.field("memberships", &v, "memberships", K::Obj);
        assert_eq!(v["memberships"][&room], "join", "{v}");
    }

    // The user create form: username availability, free and taken.
    let (st, v) = s
        .get(&root, "/_synapse/admin/v1/username_available?username=dave")
        .await;
    if c.status("username_available", st, &v) {
        assert_eq!(v["available"], true, "{v}");
    }
    let (st, v) = s
        .get(
            &root,
            "/_synapse/admin/v1/username_available?username=alice",
        )
        .await;
    assert_eq!(st, StatusCode::BAD_REQUEST, "{v}");
    assert_eq!(v["errcode"], "M_USER_IN_USE", "{v}");
    c.field("username taken", &v, "error", K::Str);

    // FindUserButton: by threepid (none bound: 404 read as "not found"), by auth provider.
    let (st, v) = s
        .get(
            &root,
            &format!(
                "/_synapse/admin/v1/threepid/email/users/{}",
                enc("nobody@example.org")
            ),
        )
        .await;
    assert_eq!(st, StatusCode::NOT_FOUND, "{v}");
    c.field("threepid 404", &v, "errcode", K::Str);
    let (st, v) = s
        .get(&root, "/_synapse/admin/v1/auth_providers/oidc/users/abc")
        .await;
    assert_eq!(st, StatusCode::NOT_FOUND, "{v}");
    c.field("auth_provider 404", &v, "errcode", K::Str);

    // Devices: create one (POST {device_id}), rename it (PUT {display_name}), delete several
    // (POST delete_devices {devices}).
    let (st, v) = s
        .post(
            &root,
            &format!("/_synapse/admin/v2/users/{a}/devices"),
            json!({"device_id": "KETESA1"}),
        )
        .await;
    if st != StatusCode::CREATED && st != StatusCode::OK {
        c.0.push(format!("device create: {st} {v}"));
    }
    let (st, v) = s
        .put(
            &root,
            &format!("/_synapse/admin/v2/users/{a}/devices/KETESA1"),
            json!({"display_name": "Phone"}),
        )
        .await;
    c.status("device rename", st, &v);
    let (st, v) = s
        .post(
            &root,
            &format!("/_synapse/admin/v2/users/{a}/delete_devices"),
            json!({"devices": ["KETESA1"]}),
        )
        .await;
    c.status("delete_devices", st, &v);

    // The danger zone: suspend (PUT {suspend}), shadow ban (POST / DELETE without a body),
    // login as the user ({} or {valid_until_ms}), cross-signing replacement ({}).
    let (st, v) = s
        .put(
            &root,
            &format!("/_synapse/admin/v1/suspend/{bb}"),
            json!({"suspend": true}),
        )
        .await;
    c.status("suspend", st, &v);
    let (_, v) = s
        .get(&root, &format!("/_synapse/admin/v2/users/{bb}"))
        .await;
    assert_eq!(v["suspended"], true, "{v}");
    let (st, v) = s
        .put(
            &root,
            &format!("/_synapse/admin/v1/suspend/{bb}"),
            json!({"suspend": false}),
        )
        .await;
    c.status("unsuspend", st, &v);
    for m in [Method::POST, Method::DELETE] {
        let ctx = format!("shadow_ban {m}");
        let (st, v) = s
            .call(
                m,
                &format!("/_synapse/admin/v1/users/{bb}/shadow_ban"),
                Some(&root.token),
                None,
            )
            .await;
        c.status(&ctx, st, &v);
    }
    for body in [json!({}), json!({"valid_until_ms": 4_102_444_800_000_i64})] {
        let ctx = format!("login as {body}");
        let (st, v) = s
            .post(&root, &format!("/_synapse/admin/v1/users/{bb}/login"), body)
            .await;
        if c.status(&ctx, st, &v) {
            c.field(&ctx, &v, "access_token", K::Str);
        }
    }
    // (Bob has cross-signing keys: without a master key the answer is Synapse's 404.)
    let (st, v) = s
        .post(
            &bob,
            "/_matrix/client/v3/keys/device_signing/upload",
            cross_keys(&bob.user_id),
        )
        .await;
    assert_eq!(st, StatusCode::OK, "{v}");
    let (st, v) = s
        .post(
            &root,
            &format!("/_synapse/admin/v1/users/{bb}/_allow_cross_signing_replacement_without_uia"),
            json!({}),
        )
        .await;
    if c.status("allow cross-signing replacement", st, &v) {
        c.field(
            "allow cross-signing replacement",
            &v,
            "updatable_without_uia_before_ms",
            K::Num,
        );
    }
    // renewAccountValidity: {user_id, enable_renewal_emails, expiration_ts?}. Account
    // validity is Tchap's, off here: 404 M_UNRECOGNIZED, which Ketesa shows as the error it
    // is (its errcode and message read from the body).
    for body in [
        json!({"user_id": bob.user_id, "enable_renewal_emails": true}),
        json!({"user_id": bob.user_id, "enable_renewal_emails": false, "expiration_ts": 4_102_444_800_000_i64}),
    ] {
        let (st, v) = s
            .post(&root, "/_synapse/admin/v1/account_validity/validity", body)
            .await;
        assert_eq!(st, StatusCode::NOT_FOUND, "{v}");
        c.field("account_validity off", &v, "errcode", K::Str);
        c.field("account_validity off", &v, "error", K::Str);
    }

    // RoomList with its filters (public_rooms, empty_rooms after order_by and dir).
    let q = kq(10, "", "name", "f", "public_rooms=true&empty_rooms=false");
    let (st, v) = s.get(&root, &format!("/_synapse/admin/v1/rooms?{q}")).await;
    if c.status("rooms filters", st, &v) {
        let rows = c.list("rooms filters", &v, "rooms", 1, ROOM);
        assert_eq!(rows.len(), 1, "{v}");
        c.field("rooms filters", &v, "total_rooms", K::Num);
    }
    let q = kq(10, "search_term=Lob", "joined_members", "b", "");
    let (st, v) = s.get(&root, &format!("/_synapse/admin/v1/rooms?{q}")).await;
    if c.status("rooms search", st, &v) {
        c.list("rooms search", &v, "rooms", 1, ROOM);
    }

    // The room page's tools: block (PUT {block}) and its status, join a user (POST
    // {user_id}), make room admin, timestamp_to_event, context (limit=5), messages,
    // hierarchy, fetch_event.
    for on in [true, false] {
        let (st, v) = s
            .put(
                &root,
                &format!("/_synapse/admin/v1/rooms/{r}/block"),
                json!({"block": on}),
            )
            .await;
        if c.status(&format!("block {on}"), st, &v) {
            let (_, v) = s
                .get(&root, &format!("/_synapse/admin/v1/rooms/{r}/block"))
                .await;
            assert_eq!(v["block"], on, "{v}");
        }
    }
    let (st, v) = s
        .post(
            &root,
            &format!("/_synapse/admin/v1/join/{r}"),
            json!({"user_id": carol.user_id}),
        )
        .await;
    if c.status("join", st, &v) {
        c.field("join", &v, "room_id", K::Str);
    }
    let (st, v) = s
        .post(
            &root,
            &format!("/_synapse/admin/v1/rooms/{r}/make_room_admin"),
            json!({"user_id": bob.user_id}),
        )
        .await;
    c.status("make_room_admin", st, &v);
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64;
    for dir in ["f", "b"] {
        let ts = if dir == "f" { 0 } else { now + 60_000 };
        let ctx = format!("timestamp_to_event {dir}");
        let (st, v) = s
            .get(
                &root,
                &format!("/_synapse/admin/v1/rooms/{r}/timestamp_to_event?ts={ts}&dir={dir}"),
            )
            .await;
        if c.status(&ctx, st, &v) {
            c.field(&ctx, &v, "event_id", K::Str);
            c.field(&ctx, &v, "origin_server_ts", K::Num);
        }
    }
    let event_spec = &[
        ("event_id", K::Str),
        ("type", K::Str),
        ("sender", K::Str),
        ("origin_server_ts", K::Num),
        ("content", K::Obj),
    ];
    let (st, v) = s
        .get(
            &root,
            &format!("/_synapse/admin/v1/rooms/{r}/context/{}?limit=5", enc(&ev)),
        )
        .await;
    if c.status("context", st, &v) {
        c.fields("context", &v["event"], event_spec);
        c.list("context", &v, "events_before", 1, event_spec);
        c.list("context", &v, "events_after", 1, event_spec);
        c.list("context", &v, "state", 1, event_spec);
        c.field("context", &v, "start", K::Str);
        c.field("context", &v, "end", K::Str);
    }
    // getRoomMessages: `from` always in the query (replayed empty and as `END`, both of which
    // Synapse reads as absent), then limit, dir, filter when given.
    let filter = enc(r#"{"types":["m.room.message"]}"#);
    let mut end = String::new();
    for q in [
        "from=&limit=20&dir=b".to_owned(),
        format!("from=&limit=20&dir=b&filter={filter}"),
        "from=END&limit=20&dir=b".to_owned(),
    ] {
        let ctx = format!("messages {q}");
        let (st, v) = s
            .get(&root, &format!("/_synapse/admin/v1/rooms/{r}/messages?{q}"))
            .await;
        if c.status(&ctx, st, &v) {
            c.list(&ctx, &v, "chunk", 1, event_spec);
            c.field(&ctx, &v, "start", K::Str);
            if let Some(e) = v["end"].as_str() {
                end = e.to_owned();
            }
        }
    }
    if !end.is_empty() {
        let (st, v) = s
            .get(
                &root,
                &format!(
                    "/_synapse/admin/v1/rooms/{r}/messages?from={}&limit=20&dir=b",
                    enc(&end)
                ),
            )
            .await;
        if c.status("messages page 2", st, &v) {
            c.field("messages page 2", &v, "chunk", K::Arr);
        }
    }
    for q in ["", "?limit=50&max_depth=1"] {
        let ctx = format!("hierarchy{q}");
        let (st, v) = s
            .get(&root, &format!("/_synapse/admin/v1/rooms/{r}/hierarchy{q}"))
            .await;
        if c.status(&ctx, st, &v) {
            c.list(
                &ctx,
                &v,
                "rooms",
                1,
                &[
                    ("room_id", K::Str),
                    ("num_joined_members", K::Num),
                    ("children_state", K::Arr),
                ],
            );
        }
    }
    let (st, v) = s
        .get(
            &root,
            &format!("/_synapse/admin/v1/fetch_event/{}", enc(&ev)),
        )
        .await;
    if c.status("fetch_event", st, &v) {
        c.fields("fetch_event", &v["event"], event_spec);
        c.field("fetch_event", &v["event"], "room_id", K::Str);
    }

    // room_media (getManyReference): `local` mxc URIs.
    let (st, v) = s
        .get(
            &root,
            &format!("/_synapse/admin/v1/room/{room}/media?{}", kref("id", "f")),
        )
        .await;
    if c.status("room_media", st, &v) {
        c.field("room_media", &v, "local", K::Arr);
        assert_eq!(v["local"], json!([mxc]), "{v}");
    }
    // quarantineRoomMedia / quarantineUserMedia: POST "{}", read `num_quarantined`.
    for (ctx, p) in [
        (
            "quarantine room media",
            format!("/_synapse/admin/v1/room/{r}/media/quarantine"),
        ),
        (
            "quarantine user media",
            format!("/_synapse/admin/v1/user/{a}/media/quarantine"),
        ),
    ] {
        let (st, v) = s.post(&root, &p, json!({})).await;
        if c.status(ctx, st, &v) {
            c.field(ctx, &v, "num_quarantined", K::Num);
        }
    }

    // forward_extremities delete: `deleted`.
    let (st, v) = s
        .call(
            Method::DELETE,
            &format!("/_synapse/admin/v1/rooms/{room}/forward_extremities"),
            Some(&root.token),
            None,
        )
        .await;
    if c.status("forward_extremities delete", st, &v) {
        c.field("forward_extremities delete", &v, "deleted", K::Num);
    }

    // purgeHistory: POST {purge_up_to_ts, delete_local_events}, then the status.
    let (st, v) = s
        .post(
            &root,
            &format!("/_synapse/admin/v1/purge_history/{r}"),
            json!({"purge_up_to_ts": now - 3_600_000, "delete_local_events": false}),
        )
        .await;
    if c.status("purge_history", st, &v) {
        c.field("purge_history", &v, "purge_id", K::Str);
        if let Some(id) = v["purge_id"].as_str() {
            let (st, v) = s
                .get(
                    &root,
                    &format!("/_synapse/admin/v1/purge_history_status/{}", enc(id)),
                )
                .await;
            if c.status("purge_history_status", st, &v) {
                c.field("purge_history_status", &v, "status", K::Str);
            }
        }
    }

    // Event and user reports: the list as Ketesa queries it, getOne, delete.
    let q = kq(10, "", "received_ts", "b", "");
    let (st, v) = s
        .get(&root, &format!("/_synapse/admin/v1/event_reports?{q}"))
        .await;
    if c.status("event_reports", st, &v) {
        let rows = c.list(
            "event_reports",
            &v,
            "event_reports",
            1,
            &[
                ("id", K::Num),
                ("received_ts", K::Num),
                ("event_id", K::Str),
            ],
        );
        c.field("event_reports", &v, "total", K::Num);
        if let Some(id) = rows.first().map(|r| r["id"].to_string()) {
            let (st, v) = s
                .call(
                    Method::DELETE,
                    &format!("/_synapse/admin/v1/event_reports/{id}"),
                    Some(&root.token),
                    None,
                )
                .await;
            c.status("event_reports delete", st, &v);
        }
    }
    let user_report = &[
        ("id", K::Num),
        ("received_ts", K::Num),
        ("target_user_id", K::Str),
        ("user_id", K::Str),
        ("reason", K::OptStr),
    ];
    let (st, v) = s
        .get(&root, &format!("/_synapse/admin/v1/user_reports?{q}"))
        .await;
    if c.status("user_reports", st, &v) {
        let rows = c.list("user_reports", &v, "user_reports", 1, user_report);
        c.field("user_reports", &v, "total", K::Num);
        if let Some(id) = rows.first().map(|r| r["id"].to_string()) {
            let (st, v) = s
                .get(&root, &format!("/_synapse/admin/v1/user_reports/{id}"))
                .await;
            if c.status("user_reports getOne", st, &v) {
                c.fields("user_reports getOne", &v, user_report);
            }
            let (st, v) = s
                .call(
                    Method::DELETE,
                    &format!("/_synapse/admin/v1/user_reports/{id}"),
                    Some(&root.token),
                    None,
                )
                .await;
            c.status("user_reports delete", st, &v);
        }
    }

    // database_room_statistics: no query parameters; `rooms` of {room_id, estimated_size}.
    let (st, v) = s
        .get(&root, "/_synapse/admin/v1/statistics/database/rooms")
        .await;
    if c.status("database rooms", st, &v) {
        c.list(
            "database rooms",
            &v,
            "rooms",
            1,
            &[("room_id", K::Str), ("estimated_size", K::Num)],
        );
    }

    // Federation: a destination's page on a lone server (unknown: 404), its rooms, reset.
    for (m, p) in [
        (
            Method::GET,
            "/_synapse/admin/v1/federation/destinations/example.org".to_owned(),
        ),
        (
            Method::GET,
            format!(
                "/_synapse/admin/v1/federation/destinations/example.org/rooms?{}",
                kref("room_id", "f")
            ),
        ),
        (
            Method::POST,
            "/_synapse/admin/v1/federation/destinations/example.org/reset_connection".to_owned(),
        ),
    ] {
        let (st, v) = s.call(m, &p, Some(&root.token), None).await;
        if st != StatusCode::NOT_FOUND || !v["errcode"].is_string() {
            c.0.push(format!("{p}: {st} {v}"));
        }
    }

    // scheduled_tasks: the list query with its filters (Ketesa names the status `status`).
    let sched = &[
        ("id", K::Str),
        ("action", K::Str),
        ("status", K::Str),
        ("timestamp_ms", K::Num),
        ("resource_id", K::OptStr),
        ("error", K::OptStr),
    ];
    for filters in ["", "action_name=purge_history&status=complete"] {
        let q = kq(10, "", "timestamp_ms", "b", filters);
        let ctx = format!("scheduled_tasks {q}");
        let (st, v) = s
            .get(&root, &format!("/_synapse/admin/v1/scheduled_tasks?{q}"))
            .await;
        if c.status(&ctx, st, &v) {
            c.list(&ctx, &v, "scheduled_tasks", 1, sched);
        }
    }

    // Media tools: the media of a user deleted (DELETE, no query), by date (POST
    // media/delete), the remote cache purge.
    let (_, up2) = upload(&s, &bob, "text/plain", Some("b.txt"), b"bob".to_vec()).await;
    assert!(up2["content_uri"].is_string(), "{up2}");
    let (st, v) = s
        .call(
            Method::DELETE,
            &format!("/_synapse/admin/v1/users/{bb}/media"),
            Some(&root.token),
            None,
        )
        .await;
    if c.status("delete user media", st, &v) {
        c.field("delete user media", &v, "deleted_media", K::Arr);
        c.field("delete user media", &v, "total", K::Num);
        assert_eq!(v["total"], 1, "{v}");
    }
    let (st, v) = s
        .call(
            Method::POST,
            &format!(
                "/_synapse/admin/v1/media/delete?before_ts={}&size_gt=0&keep_profiles=true",
                now - 3_600_000
            ),
            Some(&root.token),
            None,
        )
        .await;
    if c.status("media delete by date", st, &v) {
        c.field("media delete by date", &v, "deleted_media", K::Arr);
        c.field("media delete by date", &v, "total", K::Num);
    }
    let (st, v) = s
        .call(
            Method::POST,
            &format!("/_synapse/admin/v1/purge_media_cache?before_ts={now}"),
            Some(&root.token),
            None,
        )
        .await;
    if c.status("purge_media_cache", st, &v) {
        // Ketesa reads `total`; Synapse answers `deleted` (Ketesa then says "nothing purged").
        c.field("purge_media_cache", &v, "deleted", K::Num);
    }

    // The media viewer downloads through the authenticated media API.
    let path = mxc_path(&up);
    let (sv, id) = path.split_once('/').unwrap();
    let resp = s
        .http
        .get(format!(
            "{}/_matrix/client/v1/media/download/{sv}/{id}",
            s.base
        ))
        .bearer_auth(&root.token)
        .send()
        .await
        .unwrap();
    // Quarantined above with the room's media: refused.
    assert_eq!(resp.status(), StatusCode::NOT_FOUND);
    assert_eq!(sv, hs);

    // The admin client config: account data of the admin, read (absent: 404) then written.
    let cfg = format!(
        "/_matrix/client/v3/user/{}/account_data/io.element.synapse.admin_client_config",
        enc(&root.user_id)
    );
    let (st, v) = s.get(&root, &cfg).await;
    assert_eq!(st, StatusCode::NOT_FOUND, "{v}");
    let body =
        json!({"return_soft_failed_events": false, "return_policy_server_spammy_events": false});
    let (st, v) = s.put(&root, &cfg, body.clone()).await;
    c.status("admin_client_config put", st, &v);
    let (st, v) = s.get(&root, &cfg).await;
    if c.status("admin_client_config get", st, &v) {
        assert_eq!(v, body);
    }

    // Room deletion from the room page: DELETE v2 {block, purge, force_purge}, then the status
    // by delete id.
    let (st, v) = s
        .call(
            Method::DELETE,
            &format!("/_synapse/admin/v2/rooms/{r}"),
            Some(&root.token),
            Some(json!({"block": true, "purge": true, "force_purge": false})),
        )
        .await;
    if c.status("delete room", st, &v) {
        c.field("delete room", &v, "delete_id", K::Str);
        if let Some(id) = v["delete_id"].as_str() {
            let mut done = false;
            for _ in 0..50 {
                let (st, v) = s
                    .get(
                        &root,
                        &format!("/_synapse/admin/v2/rooms/delete_status/{}", enc(id)),
                    )
                    .await;
                if !c.status("delete_status by id", st, &v) {
                    break;
                }
                c.field("delete_status by id", &v, "status", K::Str);
                if v["status"] == "complete" {
                    done = true;
                    break;
                }
                tokio::time::sleep(std::time::Duration::from_millis(100)).await;
            }
            assert!(done, "room deletion never completed");
        }
    }
    c.done();
    s.stop().await;
}
