//! Invites over federation (spec: Inviting to a room, Leaving rooms): `PUT /v2/invite` as the
//! invitee's server sees it (refusals, co-signature, the invite in /sync with the stripped state
//! sent, retries), rejection when no server takes the leave, and an invite into a room this
//! server already knows (arriving by /v2/invite and again by /send, shown once).

use reqwest::{Method, StatusCode};
use ruma::{
    signatures::{hash_and_sign_event, reference_hash},
    CanonicalJsonObject, CanonicalJsonValue, RoomVersionId, ServerName,
};
use serde_json::{json, Value};

use crate::common::*;

/// An invite event built and signed by `s` (as if one of its users invited `target`).
fn signed_event(s: &TestServer, v: Value, version: &str) -> (String, Value) {
    let srv = s.services();
    let rules = RoomVersionId::try_from(version).unwrap().rules().unwrap();
    let CanonicalJsonValue::Object(mut obj) = CanonicalJsonValue::try_from(v).unwrap() else {
        panic!("not an object")
    };
    hash_and_sign_event(
        srv.server_name.as_str(),
        &srv.keys.pair,
        &mut obj,
        &rules.redaction,
    )
    .unwrap();
    let id = format!("${}", reference_hash(&obj, &rules).unwrap());
    (id, serde_json::to_value(&obj).unwrap())
}

fn invite_event(room: &str, sender: &str, target: &str) -> Value {
    json!({
        "type": "m.room.member",
        "room_id": room,
        "sender": sender,
        "state_key": target,
        "content": { "membership": "invite" },
        "auth_events": [],
        "prev_events": [],
        "depth": 7,
        "origin_server_ts": 1_700_000_000_000i64,
    })
}

/// `PUT /v2/invite/{room}/{event}` from `from` to `to`, signed by `from` (X-Matrix).
async fn put_invite(
    from: &TestServer,
    to: &TestServer,
    room: &str,
    event_id: &str,
    body: &Value,
) -> (StatusCode, Value) {
    let path = format!(
        "/_matrix/federation/v2/invite/{}/{}",
        enc(room),
        enc(event_id)
    );
    let resp = from
        .services()
        .federation()
        .federation_send(
            &ServerName::parse(to.name()).unwrap(),
            Method::PUT,
            &path,
            Some(body),
        )
        .await
        .unwrap();
    let st = resp.status();
    (st, resp.json().await.unwrap_or(Value::Null))
}

async fn invite_endpoint(b: Backend) {
    let (a, bs, _dir) = two_servers(b, |_| {}).await;
    let (a_name, b_name) = (a.name(), bs.name());
    let bob = bs.register("bob").await;
    let alice = format!("@alice:{a_name}");
    // A room only A would know; B never heard of it.
    let room = format!("!invitation:{a_name}");
    let stripped = json!([
        { "type": "m.room.name", "state_key": "", "sender": alice, "content": { "name": "Ministère" } },
        { "type": "m.room.join_rules", "state_key": "", "sender": alice, "content": { "join_rule": "invite" } },
    ]);
    let body = |ev: &Value, version: &str| json!({ "room_version": version, "event": ev, "invite_room_state": stripped });
    let first = bs.sync(&bob, None, 0).await;
    let since = first["next_batch"].as_str().unwrap().to_owned();

    // Refusals. Someone else's user as the inviter: wrong origin.
    let (id, ev) = signed_event(
        &a,
        invite_event(&room, "@eve:elsewhere.example", &bob.user_id),
        "10",
    );
    let (st, v) = put_invite(&a, &bs, &room, &id, &body(&ev, "10")).await;
    assert_eq!(st, StatusCode::FORBIDDEN, "wrong origin: {v}");
    // A bad signature: the event changed after signing.
    let (id, mut ev) = signed_event(&a, invite_event(&room, &alice, &bob.user_id), "10");
    ev["origin_server_ts"] = json!(1_700_000_000_001i64);
    let (st, v) = put_invite(&a, &bs, &room, &id, &body(&ev, "10")).await;
    assert_eq!(st, StatusCode::FORBIDDEN, "bad signature: {v}");
    // No such user here, or not a user of this server.
    let nobody = format!("@nobody:{b_name}");
    let (id, ev) = signed_event(&a, invite_event(&room, &alice, &nobody), "10");
    let (st, v) = put_invite(&a, &bs, &room, &id, &body(&ev, "10")).await;
    assert_eq!(st, StatusCode::NOT_FOUND, "unknown user: {v}");
    assert_eq!(v["errcode"], "M_NOT_FOUND");
    let (id, ev) = signed_event(&a, invite_event(&room, &alice, &alice), "10");
    let (st, v) = put_invite(&a, &bs, &room, &id, &body(&ev, "10")).await;
    assert_eq!(st, StatusCode::BAD_REQUEST, "not our user: {v}");
    // A room version this server does not speak.
    let (id, ev) = signed_event(&a, invite_event(&room, &alice, &bob.user_id), "5");
    let (st, v) = put_invite(&a, &bs, &room, &id, &body(&ev, "5")).await;
    assert_eq!(st, StatusCode::BAD_REQUEST, "{v}");
    assert_eq!(v["errcode"], "M_INCOMPATIBLE_ROOM_VERSION", "{v}");
    assert_eq!(v["room_version"], "5", "{v}");
    // Not an invite; an event id that is not the event's; malformed stripped state.
    let mut leave = invite_event(&room, &alice, &bob.user_id);
    leave["content"]["membership"] = json!("join");
    let (id, ev) = signed_event(&a, leave, "10");
    let (st, v) = put_invite(&a, &bs, &room, &id, &body(&ev, "10")).await;
    assert_eq!(st, StatusCode::BAD_REQUEST, "{v}");
    let (_, ev) = signed_event(&a, invite_event(&room, &alice, &bob.user_id), "10");
    let (st, v) = put_invite(&a, &bs, &room, "$notthisone", &body(&ev, "10")).await;
    assert_eq!(st, StatusCode::BAD_REQUEST, "{v}");
    let (id, ev) = signed_event(&a, invite_event(&room, &alice, &bob.user_id), "10");
    let bad = json!({ "room_version": "10", "event": ev, "invite_room_state": [{ "type": 3 }] });
    let (st, v) = put_invite(&a, &bs, &room, &id, &bad).await;
    assert_eq!(st, StatusCode::BAD_REQUEST, "{v}");
    // An unsigned request.
    let (st, _) = bs
        .call(
            Method::PUT,
            &format!("/_matrix/federation/v2/invite/{}/{}", enc(&room), enc(&id)),
            None,
            Some(body(&ev, "10")),
        )
        .await;
    assert_eq!(st, StatusCode::UNAUTHORIZED);
    // None of these reached bob.
    let v = bs.sync(&bob, Some(&since), 0).await;
    assert!(
        v["rooms"]["invite"]
            .as_object()
            .is_none_or(|m| m.is_empty()),
        "{v}"
    );

    // A good invite: answered co-signed by B, shown to bob with the stripped state.
    let (st, v) = put_invite(&a, &bs, &room, &id, &body(&ev, "10")).await;
    assert_eq!(st, StatusCode::OK, "{v}");
    let CanonicalJsonValue::Object(signed) =
        CanonicalJsonValue::try_from(v["event"].clone()).unwrap()
    else {
        panic!("no event: {v}")
    };
    let rules = RoomVersionId::V10.rules().unwrap();
    a.services()
        .federation()
        .verify_signed_by(&signed, &ServerName::parse(&b_name).unwrap(), &rules)
        .await
        .expect("B's signature on the invite");
    assert!(v["event"]["signatures"][&a_name].is_object(), "{v}");
    let got: CanonicalJsonObject = signed.clone();
    assert_eq!(
        format!("${}", reference_hash(&got, &rules).unwrap()),
        id,
        "same event"
    );
    let v = bs.sync(&bob, Some(&since), 0).await;
    let events = v["rooms"]["invite"][&room]["invite_state"]["events"]
        .as_array()
        .cloned()
        .unwrap_or_else(|| panic!("bob sees the invite: {v}"));
    assert!(
        events
            .iter()
            .any(|e| e["type"] == "m.room.name" && e["content"]["name"] == "Ministère"),
        "{v}"
    );
    let inv = events
        .iter()
        .find(|e| e["type"] == "m.room.member")
        .unwrap_or_else(|| panic!("the invite event: {v}"));
    assert_eq!(inv["event_id"], id.as_str());
    assert_eq!(inv["sender"], alice.as_str());
    assert_eq!(inv["content"]["membership"], "invite");
    let since = v["next_batch"].as_str().unwrap().to_owned();
    // A retried request is answered again and changes nothing.
    let (st, _) = put_invite(&a, &bs, &room, &id, &body(&ev, "10")).await;
    assert_eq!(st, StatusCode::OK);
    let v = bs.sync(&bob, Some(&since), 0).await;
    assert!(v["rooms"]["invite"].get(&room).is_none(), "shown once: {v}");
    // The room is not known here: its state is not readable, only the invite.
    let (st, _) = bs
        .get(
            &bob,
            &format!("/_matrix/client/v3/rooms/{}/state/m.room.name/", enc(&room)),
        )
        .await;
    assert_ne!(st, StatusCode::OK);

    // Bob rejects; A does not know the room (make_leave 404), so B rejects it locally: the
    // invite leaves /sync for rooms.leave with bob's leave.
    let (st, v) = bs
        .post(
            &bob,
            &format!("/_matrix/client/v3/rooms/{}/leave", enc(&room)),
            json!({ "reason": "non merci" }),
        )
        .await;
    assert_eq!(st, StatusCode::OK, "{v}");
    let v = bs.sync(&bob, Some(&since), 0).await;
    assert!(v["rooms"]["invite"].get(&room).is_none(), "{v}");
    let left = &v["rooms"]["leave"][&room]["timeline"]["events"];
    let leave = left
        .as_array()
        .and_then(|a| a.iter().find(|e| e["type"] == "m.room.member"))
        .unwrap_or_else(|| panic!("bob's leave in rooms.leave: {v}"));
    assert_eq!(leave["content"]["membership"], "leave");
    assert_eq!(leave["state_key"], bob.user_id.as_str());
    // Gone: leaving again is a no-op, joining has nobody to ask.
    let (st, _) = bs
        .post(
            &bob,
            &format!("/_matrix/client/v3/rooms/{}/leave", enc(&room)),
            json!({}),
        )
        .await;
    assert_eq!(st, StatusCode::OK);
    let (st, v) = bs
        .post(
            &bob,
            &format!("/_matrix/client/v3/join/{}", enc(&room)),
            json!({}),
        )
        .await;
    assert_eq!(st, StatusCode::NOT_FOUND, "{v}");
    a.stop().await;
    bs.stop().await;
}

/// Alice (A) invites carol (B) into a room bob (B) is already in: B takes the invite into the
/// room it knows, shows it to carol once (it comes again through /send), and carol joins
/// locally. A remote invite of a user already invited is a no-op; of an unknown user, a 404
/// from the remote server.
async fn invite_into_known_room(b: Backend) {
    let (a, bs, _dir) = two_servers(b, |_| {}).await;
    let a_name = a.name();
    let alice = a.register("alice").await;
    let bob = bs.register("bob").await;
    let carol = bs.register("carol").await;
    let room = a
        .create_room(&alice, json!({ "preset": "public_chat", "name": "Commun" }))
        .await;
    let (st, v) = bs
        .post(
            &bob,
            &format!(
                "/_matrix/client/v3/join/{}?server_name={}",
                enc(&room),
                enc(&a_name)
            ),
            json!({}),
        )
        .await;
    assert_eq!(st, StatusCode::OK, "{v}");
    let first = bs.sync(&carol, None, 0).await;
    let since = first["next_batch"].as_str().unwrap().to_owned();
    a.invite(&alice, &room, &carol).await;
    // Already invited: nothing new.
    a.invite(&alice, &room, &carol).await;
    let (st, v) = a
        .post(
            &alice,
            &format!("/_matrix/client/v3/rooms/{}/invite", enc(&room)),
            json!({ "user_id": format!("@nobody:{}", bs.name()) }),
        )
        .await;
    assert_eq!(st, StatusCode::NOT_FOUND, "{v}");
    let mut seen = 0;
    let mut since = since;
    for _ in 0..10 {
        let v = bs.sync(&carol, Some(&since), 200).await;
        if let Some(inv) = v["rooms"]["invite"].get(&room) {
            seen += 1;
            let events = inv["invite_state"]["events"].as_array().unwrap();
            assert!(
                events
                    .iter()
                    .any(|e| e["type"] == "m.room.name" && e["content"]["name"] == "Commun"),
                "{inv}"
            );
        }
        since = v["next_batch"].as_str().unwrap().to_owned();
    }
    assert_eq!(seen, 1, "the invite is shown once");
    // B knows carol is invited: she joins locally, and A sees it.
    bs.join(&carol, &room).await;
    eventually(|| async {
        let (_, m) = a
            .get(
                &alice,
                &format!("/_matrix/client/v3/rooms/{}/joined_members", enc(&room)),
            )
            .await;
        m["joined"].get(&carol.user_id).is_some()
    })
    .await;
    a.stop().await;
    bs.stop().await;
}

crate::both_backends!(invite_endpoint, invite_into_known_room);
