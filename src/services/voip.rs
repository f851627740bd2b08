//! VoIP (spec: Voice over IP): the TURN credentials of `GET /voip/turnServer`, from `[turn]`.
//! With a shared secret they are the TURN REST API's time-limited ones (coturn's
//! `use-auth-secret`), computed as Synapse does; with a fixed username and password those are
//! handed out; with neither, or without URIs, there is no TURN server to offer.

use base64::Engine;
use hmac::{Hmac, Mac};
use ruma::UserId;
use serde::Serialize;

use crate::config::TurnConfig;

/// The answer of `GET /voip/turnServer` when a TURN server is configured.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct TurnCredentials {
    pub username: String,
    pub password: String,
    pub uris: Vec<String>,
    /// Seconds the credentials stay valid.
    pub ttl: u64,
}

/// The credentials for `user` at `now_ms`, or `None` when no TURN server is configured.
/// Shared secret: username `{expiry}:{user}` (expiry in seconds since the epoch, now plus
/// `user_lifetime_ms`), password the standard (padded) base64 of HMAC-SHA1(secret, username),
/// what the TURN server recomputes.
pub fn turn_credentials(cfg: &TurnConfig, user: &UserId, now_ms: u64) -> Option<TurnCredentials> {
    if cfg.uris.is_empty() {
        return None;
    }
    let (username, password) = match (&cfg.shared_secret, &cfg.username, &cfg.password) {
        (Some(secret), _, _) => {
            let expiry = now_ms.saturating_add(cfg.user_lifetime_ms) / 1000;
            let username = format!("{expiry}:{user}");
            let mut mac = Hmac::<sha1::Sha1>::new_from_slice(secret.as_bytes())
                .expect("HMAC takes a key of any length");
            mac.update(username.as_bytes());
            let password =
                base64::engine::general_purpose::STANDARD.encode(mac.finalize().into_bytes());
            (username, password)
        }
        (None, Some(username), Some(password)) => (username.clone(), password.clone()),
        _ => return None,
    };
    Some(TurnCredentials {
        username,
        password,
        uris: cfg.uris.clone(),
        ttl: cfg.user_lifetime_ms / 1000,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg() -> TurnConfig {
        TurnConfig {
            uris: vec!["turn:turn.example.org:3478?transport=udp".into()],
            shared_secret: Some("s3cret".into()),
            ..TurnConfig::default()
        }
    }

    #[test]
    fn shared_secret_credentials() {
        let user = UserId::parse("@alice:example.org").unwrap();
        let c = turn_credentials(&cfg(), &user, 1_700_000_000_123).unwrap();
        assert_eq!(c.username, "1700086400:@alice:example.org");
        assert_eq!(c.ttl, 86_400);
        // The padded base64 of a 20-byte HMAC-SHA1.
        assert_eq!(c.password.len(), 28);
        assert!(c.password.ends_with('='));
    }

    #[test]
    fn nothing_configured() {
        let user = UserId::parse("@alice:example.org").unwrap();
        assert_eq!(turn_credentials(&TurnConfig::default(), &user, 0), None);
        let no_credentials = TurnConfig {
            shared_secret: None,
            ..cfg()
        };
        assert_eq!(turn_credentials(&no_credentials, &user, 0), None);
        let no_uris = TurnConfig {
            uris: vec![],
            ..cfg()
        };
        assert_eq!(turn_credentials(&no_uris, &user, 0), None);
    }

    #[test]
    fn fixed_credentials() {
        let user = UserId::parse("@alice:example.org").unwrap();
        let fixed = TurnConfig {
            shared_secret: None,
            username: Some("u".into()),
            password: Some("p".into()),
            ..cfg()
        };
        let c = turn_credentials(&fixed, &user, 0).unwrap();
        assert_eq!((c.username.as_str(), c.password.as_str()), ("u", "p"));
    }
}
