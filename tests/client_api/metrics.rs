//! Prometheus metrics: served on the metrics listener only (`[metrics] listen`), never on the
//! public port; the families move with what the server does.

use std::collections::BTreeMap;

use reqwest::{Method, StatusCode};
use serde_json::json;

use crate::common::*;

/// One sample of a scrape: the family name (with `_bucket`/`_sum`/`_count` for histograms), its
/// labels and its value.
#[derive(Debug, Clone)]
struct Sample {
    name: String,
    labels: BTreeMap<String, String>,
    value: f64,
}

/// Parses the Prometheus text format: `name{label="value",…} value` lines, `#` lines skipped.
/// Label values are quoted and may hold `{`, `}`, `,` and escapes (route templates do).
fn parse(text: &str) -> Vec<Sample> {
    let mut out = vec![];
    for line in text.lines() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let name_end = line
            .find(['{', ' '])
            .unwrap_or_else(|| panic!("no value: {line}"));
        let name = line[..name_end].to_owned();
        let mut labels = BTreeMap::new();
        let mut rest = &line[name_end..];
        if let Some(after) = rest.strip_prefix('{') {
            let mut chars = after.char_indices();
            let mut key = String::new();
            let end = loop {
                let (i, c) = chars.next().unwrap_or_else(|| panic!("unclosed: {line}"));
                match c {
                    '}' => break i + 1,
                    ',' | ' ' => {}
                    '=' => {
                        assert_eq!(chars.next().map(|(_, c)| c), Some('"'), "{line}");
                        let mut value = String::new();
                        loop {
                            match chars.next().map(|(_, c)| c) {
                                Some('"') => break,
                                Some('\\') => match chars.next().map(|(_, c)| c) {
                                    Some('n') => value.push('\n'),
                                    Some(c) => value.push(c),
                                    None => panic!("bad escape: {line}"),
                                },
                                Some(c) => value.push(c),
                                None => panic!("unclosed value: {line}"),
                            }
                        }
                        labels.insert(std::mem::take(&mut key), value);
                    }
                    c => key.push(c),
                }
            };
            rest = &after[end..];
        }
        let value = rest
            .split_whitespace()
            .next()
            .unwrap_or_else(|| panic!("no value: {line}"));
        let value = match value {
            "+Inf" => f64::INFINITY,
            "-Inf" => f64::NEG_INFINITY,
            v => v.parse().unwrap_or_else(|_| panic!("bad value: {line}")),
        };
        out.push(Sample {
            name,
            labels,
            value,
        });
    }
    out
}

struct Scrape(Vec<Sample>);

impl Scrape {
    /// The samples of a name whose labels include `with`.
    fn find<'a>(
        &'a self,
        name: &'a str,
        with: &'a [(&str, &str)],
    ) -> impl Iterator<Item = &'a Sample> {
        self.0.iter().filter(move |s| {
            s.name == name
                && with
                    .iter()
                    .all(|(k, v)| s.labels.get(*k).map(String::as_str) == Some(*v))
        })
    }

    /// The sum of the matching samples (0 when none).
    fn sum(&self, name: &str, with: &[(&str, &str)]) -> f64 {
        self.find(name, with).map(|s| s.value).sum()
    }

    /// The one matching sample's value.
    fn value(&self, name: &str, with: &[(&str, &str)]) -> f64 {
        let found: Vec<&Sample> = self.find(name, with).collect();
        assert_eq!(found.len(), 1, "{name} {with:?}: {found:?}");
        found[0].value
    }

    fn has(&self, name: &str) -> bool {
        self.0.iter().any(|s| s.name == name)
    }
}

async fn scrape(s: &TestServer, url: &str) -> Scrape {
    let resp = s.http.get(url).send().await.expect("scrape");
    assert_eq!(resp.status(), StatusCode::OK);
    let kind = resp
        .headers()
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_owned();
    assert!(kind.starts_with("text/plain"), "{kind}");
    Scrape(parse(&resp.text().await.expect("scrape body")))
}

const FAMILIES: &[&str] = &[
    "palabre_build_info",
    "palabre_http_requests_total",
    "palabre_http_request_duration_seconds_bucket",
    "palabre_http_request_duration_seconds_count",
    "palabre_http_requests_in_flight",
    "palabre_sync_long_polls",
    "palabre_events_persisted_total",
    "palabre_event_persist_duration_seconds_bucket",
    "palabre_db_write_transaction_seconds_bucket",
    "palabre_db_acquire_seconds_bucket",
    "palabre_federation_outgoing_transactions_total",
    "palabre_federation_send_retries_total",
    "palabre_federation_queue_depth",
    "palabre_federation_incoming_pdus_total",
    "palabre_to_device_queue_size",
    "palabre_db_pool_connections",
    "palabre_db_pool_max_connections",
    "palabre_cache_hits_total",
    "palabre_cache_misses_total",
    "palabre_cache_entries",
    "palabre_background_jobs_total",
    "palabre_background_jobs_active",
    "palabre_process_cpu_seconds_total",
    "palabre_process_resident_memory_bytes",
    "palabre_process_open_fds",
    "palabre_process_start_time_seconds",
    "palabre_uptime_seconds",
];

const SEND: &str = "/_matrix/client/v3/rooms/{room_id}/send/{event_type}/{txn_id}";
const SYNC: &str = "/_matrix/client/v3/sync";

async fn scrape_moves_with_load(b: Backend) {
    assert!(
        palabre::config::Config::default()
            .metrics
            .listener()
            .is_none(),
        "no metrics listener unless configured"
    );
    let s = TestServer::start_with(b, |c| c.metrics.listen = Some("127.0.0.1:0".into())).await;
    let addr = s
        .running
        .as_ref()
        .unwrap()
        .metrics_addr
        .expect("metrics listener");
    let url = format!("http://{addr}/_palabre/metrics");

    // Never on the public port; the metrics listener serves nothing else.
    let (st, _) = s.call(Method::GET, "/_palabre/metrics", None, None).await;
    assert_eq!(st, StatusCode::NOT_FOUND);
    let other = s
        .http
        .get(format!("http://{addr}/_matrix/client/versions"))
        .send()
        .await
        .unwrap();
    assert_eq!(other.status(), StatusCode::NOT_FOUND);

    let alice = s.register("alice").await;
    let before = scrape(&s, &url).await;
    for f in FAMILIES {
        assert!(before.has(f), "family {f} missing");
    }
    for line in before.0.iter() {
        assert!(line.name.starts_with("palabre_"), "{line:?}");
        for key in line.labels.keys() {
            assert!(
                !matches!(key.as_str(), "user" | "user_id" | "room" | "room_id"),
                "{line:?}"
            );
        }
    }
    assert_eq!(
        before.value(
            "palabre_build_info",
            &[("version", env!("CARGO_PKG_VERSION"))]
        ),
        1.0
    );
    assert!(before.value("palabre_process_resident_memory_bytes", &[]) > 0.0);
    assert!(before.value("palabre_process_open_fds", &[]) > 0.0);
    assert!(before.value("palabre_process_start_time_seconds", &[]) > 1.6e9);
    assert_eq!(before.value("palabre_http_requests_in_flight", &[]), 0.0);
    assert!(before.value("palabre_db_pool_max_connections", &[]) >= 2.0);
    assert!(
        before.sum("palabre_db_pool_connections", &[]) >= 1.0,
        "the pool holds a connection"
    );
    // The 404 of the public port is counted under `unmatched`, never under its path.
    assert_eq!(
        before.value(
            "palabre_http_requests_total",
            &[("route", "unmatched"), ("status", "404")]
        ),
        1.0
    );
    assert!(before
        .find(
            "palabre_http_requests_total",
            &[("route", "/_palabre/metrics")]
        )
        .next()
        .is_none());

    // A small load: a room, a few messages, a sync.
    let room = s.create_room(&alice, json!({})).await;
    for i in 0..3 {
        s.send_text(&alice, &room, &format!("t{i}"), &format!("hello {i}"))
            .await;
    }
    let first = s.sync(&alice, None, 0).await;
    let since = first["next_batch"].as_str().unwrap().to_owned();
    let after = scrape(&s, &url).await;

    let requests = |sc: &Scrape| sc.sum("palabre_http_requests_total", &[]);
    assert!(requests(&after) >= requests(&before) + 5.0);
    assert_eq!(
        after.value(
            "palabre_http_requests_total",
            &[("method", "PUT"), ("route", SEND), ("status", "200")]
        ),
        3.0
    );
    assert_eq!(
        after.value(
            "palabre_http_request_duration_seconds_count",
            &[("method", "PUT"), ("route", SEND)]
        ),
        3.0
    );
    assert_eq!(
        after.value(
            "palabre_http_request_duration_seconds_bucket",
            &[("method", "PUT"), ("route", SEND), ("le", "+Inf")]
        ),
        3.0
    );
    assert!(
        after.value(
            "palabre_http_requests_total",
            &[("method", "GET"), ("route", SYNC), ("status", "200")]
        ) >= 1.0
    );
    let local = |sc: &Scrape| sc.value("palabre_events_persisted_total", &[("origin", "local")]);
    // createRoom writes several events (create, member, power levels, …), then three messages.
    assert!(
        local(&after) >= local(&before) + 3.0 + 3.0,
        "{} -> {}",
        local(&before),
        local(&after)
    );
    assert_eq!(
        after.value("palabre_events_persisted_total", &[("origin", "remote")]),
        0.0
    );
    let writes = |sc: &Scrape| sc.value("palabre_event_persist_duration_seconds_count", &[]);
    assert!(writes(&after) >= writes(&before) + 4.0);
    // Every write transaction is timed: at least one per event write.
    let tx = |sc: &Scrape| sc.value("palabre_db_write_transaction_seconds_count", &[]);
    assert!(
        tx(&after) - tx(&before) >= writes(&after) - writes(&before),
        "{} -> {}",
        tx(&before),
        tx(&after)
    );
    let acq = |sc: &Scrape| sc.value("palabre_db_acquire_seconds_count", &[]);
    assert!(acq(&after) >= tx(&after) - tx(&before) + acq(&before));
    assert!(after.value("palabre_cache_hits_total", &[("cache", "access_tokens")]) >= 4.0);
    assert!(after.value("palabre_cache_entries", &[("cache", "access_tokens")]) >= 1.0);
    assert!(after.value("palabre_cache_entries", &[("cache", "room_state")]) >= 1.0);
    assert!(after.value("palabre_process_cpu_seconds_total", &[]) > 0.0);
    assert!(
        after.value("palabre_uptime_seconds", &[]) >= before.value("palabre_uptime_seconds", &[])
    );
    // Nothing federates here.
    assert_eq!(
        after.sum("palabre_federation_outgoing_transactions_total", &[]),
        0.0
    );
    assert_eq!(after.sum("palabre_federation_queue_depth", &[]), 0.0);

    // A waiting /sync is counted while it waits, and no longer once woken.
    let poll = {
        let (http, base, token, since) = (
            s.http.clone(),
            s.base.clone(),
            alice.token.clone(),
            since.clone(),
        );
        tokio::spawn(async move {
            http.get(format!(
                "{base}/_matrix/client/v3/sync?timeout=20000&since={}",
                enc(&since)
            ))
            .bearer_auth(token)
            .send()
            .await
            .map(|r| r.status())
        })
    };
    let mut waiting = false;
    for _ in 0..100 {
        let now = scrape(&s, &url).await;
        if now.value("palabre_sync_long_polls", &[]) == 1.0 {
            assert_eq!(now.value("palabre_http_requests_in_flight", &[]), 1.0);
            waiting = true;
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    assert!(waiting, "the long-poll was never counted");
    s.send_text(&alice, &room, "wake", "wake up").await;
    assert_eq!(poll.await.unwrap().unwrap(), StatusCode::OK);
    let end = scrape(&s, &url).await;
    assert_eq!(end.value("palabre_sync_long_polls", &[]), 0.0);
    assert_eq!(end.value("palabre_http_requests_in_flight", &[]), 0.0);
    assert!(local(&end) > local(&after));
    s.stop().await;
}

/// The metrics URL of a server started with a metrics listener.
fn metrics_url(s: &TestServer) -> String {
    let addr = s
        .running
        .as_ref()
        .unwrap()
        .metrics_addr
        .expect("metrics listener");
    format!("http://{addr}/_palabre/metrics")
}

/// Federation moves the federation families: A sends its message in a transaction that B
/// accepts, and B writes it as a remote event.
async fn federation_families_move(b: Backend) {
    let on = |c: &mut palabre::config::Config| c.metrics.listen = Some("127.0.0.1:0".into());
    let (a, bs, _cert) = two_servers_with(b, on, on).await;
    let (url_a, url_b) = (metrics_url(&a), metrics_url(&bs));
    let a_name = a.name();
    let alice = a.register("alice").await;
    let bob = bs.register("bob").await;
    let room = a
        .create_room(&alice, json!({ "preset": "public_chat" }))
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
    assert_eq!(st, StatusCode::OK, "remote join: {v}");
    let sent = |sc: &Scrape| {
        sc.value(
            "palabre_federation_outgoing_transactions_total",
            &[("result", "ok")],
        )
    };
    let accepted = |sc: &Scrape| {
        sc.value(
            "palabre_federation_incoming_pdus_total",
            &[("outcome", "accepted")],
        )
    };
    let remote = |sc: &Scrape| sc.value("palabre_events_persisted_total", &[("origin", "remote")]);
    // B waits until A knows bob joined, so that A's next message goes to B.
    eventually(|| async {
        let (_, m) = a
            .get(
                &alice,
                &format!("/_matrix/client/v3/rooms/{}/joined_members", enc(&room)),
            )
            .await;
        m["joined"].get(&bob.user_id).is_some()
    })
    .await;
    let (a0, b0) = (scrape(&a, &url_a).await, scrape(&bs, &url_b).await);
    assert!(remote(&b0) >= 1.0, "the room's state came from A");
    a.send_text(&alice, &room, "m1", "to bob").await;
    let mut moved = false;
    for _ in 0..100 {
        let (a1, b1) = (scrape(&a, &url_a).await, scrape(&bs, &url_b).await);
        if sent(&a1) > sent(&a0) && accepted(&b1) > accepted(&b0) && remote(&b1) > remote(&b0) {
            assert_eq!(
                a1.value("palabre_federation_queue_depth", &[("kind", "pdu")]),
                0.0,
                "the outbox is drained once B accepted"
            );
            moved = true;
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    assert!(moved, "federation counters never moved");
    a.stop().await;
    bs.stop().await;
}

crate::both_backends!(scrape_moves_with_load, federation_families_move);

/// `[metrics]`: off unless `listen` is set, `enabled = false` closes it,
/// `PALABRE_METRICS_LISTEN` sets it, and a public listener's address is refused. (That the
/// example documents both keys is checked by config_example.rs.)
#[test]
fn metrics_config() {
    let text = "[metrics]\nlisten = \"127.0.0.1:9090\"\nenabled = true\n";
    let cfg: palabre::config::Config = toml::from_str(text).expect("parses");
    palabre::services::check_config(&cfg).expect("example checks");
    assert_eq!(cfg.metrics.listener(), Some("127.0.0.1:9090"));
    let mut off = cfg.clone();
    off.metrics.enabled = false;
    assert_eq!(off.metrics.listener(), None);
    let mut public = cfg.clone();
    public.metrics.listen = Some(public.listen.clone());
    assert!(palabre::services::check_config(&public).is_err());
    let mut env = palabre::config::Config::default();
    assert_eq!(env.metrics.listener(), None);
    env.apply_env(|k| (k == "PALABRE_METRICS_LISTEN").then(|| "127.0.0.1:9191".to_owned()))
        .unwrap();
    assert_eq!(env.metrics.listener(), Some("127.0.0.1:9191"));
}
