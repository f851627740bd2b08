//! The Tchap policy (../shared/TCHAP.md): who is an agent and who is an external, which server
//! hosts an email address, and the rules built on those facts. Driven by the `[tchap]` config
//! section; with the section absent every check here allows what plain Matrix allows.
//!
//! The services call into this module at named points (registration, room creation, invites,
//! joins, state events local and federated, directory search, profile); the rules themselves
//! live here and nowhere else.

crate::services::face!(
    /// The face of the Tchap policy: agents and externals, access rules, the annuaire, validity.
    PolicyFace
);

pub mod access_rules;
pub mod annuaire;
pub mod email;
pub mod email_invites;
mod hooks;
pub mod profiles;
pub mod registration;
pub mod room_creation;
pub mod room_defaults;
pub mod validity;

use std::collections::BTreeSet;

use ruma::{OwnedServerName, ServerName, UserId};

use crate::config::TchapConfig;

/// Where an email address belongs, according to the rules.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EmailHome {
    pub server: OwnedServerName,
    pub requires_invite: bool,
}

struct PatternRule {
    regex: regex::Regex,
    home: EmailHome,
}

/// The compiled `[tchap]` section.
pub struct Policy {
    enabled: bool,
    me: String,
    externals: BTreeSet<String>,
    exact: std::collections::HashMap<String, EmailHome>,
    patterns: Vec<PatternRule>,
    catch_all: Option<EmailHome>,
    peers: Vec<OwnedServerName>,
}

fn server(name: &str) -> anyhow::Result<OwnedServerName> {
    ServerName::parse(name).map_err(|e| anyhow::anyhow!("tchap: server {name:?} is invalid: {e}"))
}

impl Policy {
    /// Compiles the section (`None`: Tchap off). Errors name the bad rule.
    pub fn new(me: &str, cfg: Option<&TchapConfig>) -> anyhow::Result<Self> {
        let mut p = Policy {
            enabled: cfg.is_some(),
            me: me.to_owned(),
            externals: BTreeSet::new(),
            exact: Default::default(),
            patterns: vec![],
            catch_all: None,
            peers: vec![],
        };
        let Some(cfg) = cfg else { return Ok(p) };
        let mut servers = BTreeSet::new();
        for s in &cfg.externals_servers {
            servers.insert(server(s)?);
            p.externals.insert(s.clone());
        }
        for rule in &cfg.email_rules {
            let home = EmailHome {
                server: server(&rule.server)?,
                requires_invite: rule.requires_invite,
            };
            servers.insert(home.server.clone());
            match (&rule.address, &rule.pattern) {
                (Some(a), None) => {
                    p.exact.insert(email::normalise(a), home);
                }
                (None, Some(pat)) => {
                    let regex = regex::Regex::new(&format!("^(?:{pat})$"))
                        .map_err(|e| anyhow::anyhow!("tchap: email rule pattern {pat:?}: {e}"))?;
                    p.patterns.push(PatternRule { regex, home });
                }
                _ => anyhow::bail!(
                    "tchap: each email rule needs exactly one of `address` or `pattern` (server {})",
                    rule.server
                ),
            }
        }
        if let Some(c) = &cfg.catch_all {
            let home = EmailHome {
                server: server(&c.server)?,
                requires_invite: c.requires_invite,
            };
            servers.insert(home.server.clone());
            p.catch_all = Some(home);
        }
        for s in &cfg.peers {
            servers.insert(server(s)?);
        }
        p.peers = servers.into_iter().filter(|s| s.as_str() != me).collect();
        Ok(p)
    }

    /// Whether the `[tchap]` section is present.
    pub fn enabled(&self) -> bool {
        self.enabled
    }

    /// The server the rules give for an address (any case; `None` when nothing matches).
    pub fn home_for_email(&self, address: &str) -> Option<EmailHome> {
        let address = email::normalise(address);
        if let Some(h) = self.exact.get(&address) {
            return Some(h.clone());
        }
        self.patterns
            .iter()
            .find(|r| r.regex.is_match(&address))
            .map(|r| r.home.clone())
            .or_else(|| self.catch_all.clone())
    }

    /// Whether users of `server` are externals.
    pub fn is_external_server(&self, server: &ServerName) -> bool {
        self.externals.contains(server.as_str())
    }

    /// Whether `user` is an external (always false with Tchap off).
    pub fn is_external(&self, user: &UserId) -> bool {
        self.is_external_server(user.server_name())
    }

    /// Whether this server is an externals server.
    pub fn this_server_is_external(&self) -> bool {
        self.externals.contains(&self.me)
    }

    /// The other Palabre servers of the federation: every server named in the rules, the
    /// externals servers and `peers`, without this one.
    pub fn peers(&self) -> &[OwnedServerName] {
        &self.peers
    }

    /// Whether `server` is one of [`Self::peers`].
    pub fn is_peer(&self, server: &ServerName) -> bool {
        self.peers.iter().any(|p| p == server)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{EmailRule, EmailTarget};

    fn cfg() -> TchapConfig {
        TchapConfig {
            externals_servers: vec!["externes.example".into()],
            email_rules: vec![
                EmailRule {
                    address: None,
                    pattern: Some(r".*@(.+\.)?interieur\.gouv\.fr".into()),
                    server: "interieur.example".into(),
                    requires_invite: false,
                },
                EmailRule {
                    address: Some("Boss@Interieur.gouv.fr".into()),
                    server: "elysee.example".into(),
                    pattern: None,
                    requires_invite: false,
                },
            ],
            catch_all: Some(EmailTarget {
                server: "externes.example".into(),
                requires_invite: true,
            }),
            ..Default::default()
        }
    }

    #[test]
    fn exact_then_patterns_then_catch_all() {
        let p = Policy::new("interieur.example", Some(&cfg())).unwrap();
        let home = |a: &str| p.home_for_email(a).unwrap();
        assert_eq!(
            home("boss@interieur.gouv.fr").server.as_str(),
            "elysee.example"
        );
        assert_eq!(
            home("a.b@sg.interieur.gouv.fr").server.as_str(),
            "interieur.example"
        );
        assert_eq!(
            home("A.B@INTERIEUR.GOUV.FR").server.as_str(),
            "interieur.example"
        );
        // Anchored: a suffix elsewhere does not match.
        let h = home("x@interieur.gouv.fr.evil.com");
        assert_eq!(h.server.as_str(), "externes.example");
        assert!(h.requires_invite);
        assert_eq!(p.peers().len(), 2);
        assert!(p.is_external(ruma::user_id!("@a:externes.example")));
        assert!(!p.is_external(ruma::user_id!("@a:interieur.example")));
    }

    #[test]
    fn off_without_section() {
        let p = Policy::new("x.example", None).unwrap();
        assert!(!p.enabled());
        assert!(p.home_for_email("a@b.fr").is_none());
        assert!(!p.is_external(ruma::user_id!("@a:externes.example")));
    }

    #[test]
    fn bad_rules_are_named() {
        let mut c = cfg();
        c.email_rules[0].pattern = Some("(".into());
        assert!(Policy::new("x.example", Some(&c)).is_err());
        let mut c = cfg();
        c.email_rules[1].pattern = Some("a".into());
        assert!(Policy::new("x.example", Some(&c)).is_err());
    }
}
