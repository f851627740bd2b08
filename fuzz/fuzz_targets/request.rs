//! Request bodies and query strings as clients and servers send them: the JSON extractor
//! (`api::Json`, through axum as a handler gets it, and `json_body` with both NUL policies)
//! into the request shapes the services take, then what the services first do with them
//! (filters matched against event types, search terms split); and the query-string reader.
//!
//! Input: one byte choosing the request shape, then the body (or query string).

#![no_main]

use axum::extract::FromRequest;
use futures_util::FutureExt;
use libfuzzer_sys::fuzz_target;
use palabre::{
    api::{form_pairs, json_body, Json, Nul},
    services::{
        accounts::AuthData,
        filter::{glob, Filter, RoomEventFilter},
        push::{pusher::SetPusher, RuleBody},
        rooms::{create::CreateRoomRequest, directory::PublicRoomsRequest},
        search::{search_words, SearchRequest},
    },
};
use serde::de::DeserializeOwned;
use serde_json::Value;

/// `json_body` with both NUL policies: what `Refused` takes, `PerItem` takes too.
fn body<T: DeserializeOwned>(data: &[u8]) -> Option<T> {
    let refused = json_body::<T>(data, Nul::Refused);
    let per_item = json_body::<T>(data, Nul::PerItem);
    assert!(refused.is_err() || per_item.is_ok());
    per_item.ok()
}

fn event_filter(f: &RoomEventFilter) {
    for kind in ["m.room.message", "m.room.member", "", "*"] {
        let _ = f.allows_type(kind);
    }
    let _ = f.limit_or(10);
}

fuzz_target!(|data: &[u8]| {
    let Some((&shape, data)) = data.split_first() else {
        return;
    };

    // The extractor itself, as axum runs it for a handler (the body is all there at once).
    let request = axum::http::Request::builder()
        .method("POST")
        .header("content-type", "application/json")
        .body(axum::body::Body::from(data.to_vec()))
        .expect("request");
    let extracted = Json::<Value>::from_request(request, &())
        .now_or_never()
        .expect("a body in memory is read at once");
    assert_eq!(
        extracted.is_ok(),
        json_body::<Value>(data, Nul::Refused).is_ok()
    );

    match shape % 9 {
        0 => {
            if let Some(f) = body::<Filter>(data) {
                let _ = f.account_data.allows_type("m.direct");
                let _ = f.presence.allows_type("m.presence");
                let _ = f.room.allows_room("!r:a.test");
                for e in [&f.room.timeline, &f.room.state, &f.room.ephemeral] {
                    event_filter(e);
                }
                // A filter is stored as JSON and read back for later syncs.
                let text = serde_json::to_string(&f).expect("a filter serializes");
                let _: Filter = serde_json::from_str(&text).expect("a stored filter reads back");
            }
        }
        1 => {
            let _ = body::<CreateRoomRequest>(data);
        }
        2 => {
            if let Some(req) = body::<SearchRequest>(data) {
                if let Some(c) = req.search_categories.room_events {
                    let _ = search_words(&c.search_term);
                    if let Some(f) = &c.filter {
                        event_filter(f);
                    }
                }
            }
        }
        3 => {
            let _ = body::<PublicRoomsRequest>(data);
        }
        4 => {
            let _ = body::<SetPusher>(data);
        }
        5 => {
            let _ = body::<RuleBody>(data);
        }
        6 => {
            let _ = body::<AuthData>(data);
        }
        7 => {
            // Type filters are globs: pattern and value from the input, never slow.
            if let Ok(s) = std::str::from_utf8(data) {
                let (p, v) = s.split_once('\n').unwrap_or((s, s));
                let _ = glob(p, v);
            }
        }
        _ => {
            if let Ok(q) = std::str::from_utf8(data) {
                // A decoded key holds a `&` only where the query had it encoded.
                for (k, _) in form_pairs(q) {
                    assert!(!k.contains('&') || q.contains("%26"));
                }
            }
        }
    }
});
