//! Small helpers shared by every layer: time, random strings, hashing.

use base64::Engine;
use rand::RngExt;
use sha2::{Digest, Sha256};

pub fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

/// A random URL-safe string of `len` characters from [A-Za-z0-9].
pub fn random_string(len: usize) -> String {
    random_from(
        b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789",
        len,
    )
}

/// `len` characters drawn uniformly from `chars` (ASCII).
pub fn random_from(chars: &[u8], len: usize) -> String {
    let mut rng = rand::rng();
    (0..len)
        .map(|_| chars[rng.random_range(0..chars.len())] as char)
        .collect()
}

/// A secret token: 32 random bytes, URL-safe base64, with a recognisable prefix.
pub fn random_token(prefix: &str) -> String {
    let mut bytes = [0u8; 32];
    rand::fill(&mut bytes);
    format!(
        "{prefix}_{}",
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
    )
}

/// SHA-256 of a secret, hex encoded: what the database stores instead of tokens.
pub fn hash_secret(secret: &str) -> String {
    let digest = Sha256::digest(secret.as_bytes());
    let mut out = String::with_capacity(64);
    for b in digest.iter() {
        out.push_str(&format!("{b:02x}"));
    }
    out
}

/// A user id from a request, or `M_INVALID_PARAM`.
pub fn parse_user_id(s: &str) -> crate::Result<ruma::OwnedUserId> {
    ruma::UserId::parse(s)
        .map_err(|_| crate::Error::invalid_param(format!("Invalid user id {s:?}")))
}

/// A room id from a request, or `M_INVALID_PARAM`.
pub fn parse_room_id(s: &str) -> crate::Result<ruma::OwnedRoomId> {
    ruma::RoomId::parse(s)
        .map_err(|_| crate::Error::invalid_param(format!("Invalid room id {s:?}")))
}

/// Percent-encodes a query-string or path value (everything but unreserved characters).
pub fn query_encode(s: &str) -> String {
    const SET: &percent_encoding::AsciiSet = &percent_encoding::NON_ALPHANUMERIC
        .remove(b'-')
        .remove(b'.')
        .remove(b'_')
        .remove(b'~');
    percent_encoding::utf8_percent_encode(s, SET).to_string()
}

/// Whether any string in a JSON value (keys included) holds a NUL character, which PostgreSQL
/// text cannot store.
pub fn has_nul(v: &serde_json::Value) -> bool {
    use serde_json::Value;
    match v {
        Value::String(s) => s.contains('\0'),
        Value::Array(a) => a.iter().any(has_nul),
        Value::Object(o) => o.iter().any(|(k, v)| k.contains('\0') || has_nul(v)),
        _ => false,
    }
}

/// The next position of a stream kept in memory whose positions follow the clock: the next
/// integer, or the time in milliseconds if that is later. Positions never go back across
/// restarts, and the nodes of a cluster, each with its own counter, stay close to one another
/// (a client that moves to another node is not held back by a counter far behind).
pub fn clock_position(stream: &std::sync::atomic::AtomicI64) -> i64 {
    use std::sync::atomic::Ordering;
    let now = now_ms();
    let prev = stream
        .fetch_update(Ordering::AcqRel, Ordering::Acquire, |c| {
            Some((c + 1).max(now))
        })
        .unwrap_or(now);
    (prev + 1).max(now)
}
