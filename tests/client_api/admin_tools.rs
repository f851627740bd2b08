//! synapse-admin's screens replayed: every request its data provider, auth provider and
//! helpers build (same paths, same query parameters in the order `query-string` writes them,
//! same bodies, `null`s and unknown fields included), and every field its `map` functions and
//! `data`/`total` keys read from the answer, checked for presence and JSON type.

use reqwest::{Method, StatusCode};
use serde_json::{json, Value};

use crate::{
    common::*,
    media::{mxc_path, upload},
};

crate::both_backends!(
    login_flow,
    user_screens,
    room_screens,
    media_token_screens,
    draupnir_server_admin
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
