//! Configuration: a TOML file (see config/palabre.example.toml) overridden by `PALABRE_*`
//! environment variables.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum RegistrationMode {
    Open,
    Token,
    Closed,
}

impl std::str::FromStr for RegistrationMode {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "open" => Ok(Self::Open),
            "token" => Ok(Self::Token),
            "closed" => Ok(Self::Closed),
            _ => Err(format!(
                "registration must be open, token or closed, not {s:?}"
            )),
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    /// The server name: the part after `:` in user ids. Cannot change once users exist.
    pub server_name: String,
    /// Plain HTTP listener, host:port.
    pub listen: String,
    /// Public base URL of the client API (used in `/.well-known/matrix/client`).
    pub public_baseurl: Option<String>,
    /// `sqlite://PATH` or `postgres://user:pass@host:port/db`. Default: SQLite in `data_dir`.
    pub database_url: Option<String>,
    /// Where the signing key and the SQLite database live.
    pub data_dir: PathBuf,
    /// `open`, `token` (needs a registration token, see the admin API) or `closed`.
    pub registration: RegistrationMode,
    /// Registration tokens inserted at start when absent from the database (unlimited, no
    /// expiry); never overwritten. The admin API manages them after.
    pub registration_tokens: Vec<String>,
    /// Presence (`m.presence`); Tchap runs with it off.
    pub presence: bool,
    /// Largest accepted request body, in bytes.
    pub max_request_bytes: usize,
    /// Room version used by createRoom when the client does not ask for one.
    pub default_room_version: String,
    /// Lifetime of access tokens issued with a refresh token, in milliseconds.
    pub refreshable_access_token_lifetime_ms: i64,
    pub log: LogConfig,
    pub tls: Option<TlsConfig>,
    pub rate_limits: RateLimits,
    pub proxy: ProxyConfig,
    pub outbound: OutboundConfig,
    pub password_hashing: PasswordHashing,
    /// Pool size for the database connections.
    pub database_max_connections: u32,
    /// Rooms created with `m.room.encryption` (megolm) already set: `all`, `invite` (rooms
    /// created with the private_chat / trusted_private_chat presets, which covers DMs) or `off`.
    pub encryption_by_default: EncryptionByDefault,
    /// Only members (joined) of a room may give it an alias (`PUT /directory/room/{alias}`);
    /// server admins always may. Synapse's setting of the same name, same default (true).
    pub require_membership_for_aliases: bool,
    pub media: MediaConfig,
    pub federation: FederationConfig,
    pub inbound_federation: InboundFederationConfig,
    /// Outgoing email (address validation, password reset, expiry reminders, invitations).
    pub email: EmailConfig,
    /// The Tchap layer (docs/tchap.md). Absent: a plain Matrix homeserver.
    pub tchap: Option<TchapConfig>,
    /// Server notices (`/_synapse/admin/v1/send_server_notice`). Absent: off.
    pub server_notices: Option<ServerNoticesConfig>,
    /// The admin API's optional powers.
    pub admin: AdminConfig,
    /// Prometheus metrics on a listener of their own.
    pub metrics: MetricsConfig,
    pub shutdown: ShutdownConfig,
    /// The TURN server handed to clients for VoIP (`GET /voip/turnServer`).
    pub turn: TurnConfig,
}

/// `[turn]`: the TURN server clients use for calls (`GET /_matrix/client/v3/voip/turnServer`).
/// Without `uris` and credentials the endpoint answers `{}` (no TURN server), as Synapse does.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct TurnConfig {
    /// TURN URIs handed to clients, e.g. `turn:turn.example.org:3478?transport=udp`.
    pub uris: Vec<String>,
    /// The secret shared with the TURN server (coturn's `use-auth-secret` /
    /// `static-auth-secret`): each user gets a username `{expiry}:{user_id}` and a password
    /// HMAC-SHA1(secret, username), valid `user_lifetime_ms`. Takes precedence over
    /// `username` / `password`.
    pub shared_secret: Option<String>,
    /// A fixed TURN username given to every user (without `shared_secret`).
    pub username: Option<String>,
    /// The fixed TURN password that goes with `username`.
    pub password: Option<String>,
    /// How long the credentials are valid, in milliseconds (the answer's `ttl` is in seconds).
    pub user_lifetime_ms: u64,
}

impl Default for TurnConfig {
    fn default() -> Self {
        Self {
            uris: vec![],
            shared_secret: None,
            username: None,
            password: None,
            user_lifetime_ms: 86_400_000,
        }
    }
}

/// `[admin]`: what the admin API may do beyond the defaults.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct AdminConfig {
    /// `POST /_synapse/admin/v1/users/{id}/login` (an admin opens a session as a user). Off by
    /// default: an operator who needs it turns it on.
    pub login_as_user: bool,
    /// The secret of `/_synapse/admin/v1/register` (Synapse's `registration_shared_secret`,
    /// what `register_new_matrix_user` uses). Absent: that endpoint is off.
    pub registration_shared_secret: Option<String>,
}

/// `[metrics]`: Prometheus metrics (`GET /_palabre/metrics`) on their own listener, never on the
/// public one. Off unless `listen` is set.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct MetricsConfig {
    /// host:port of the metrics listener, e.g. `127.0.0.1:9090`. Unset: no metrics listener.
    pub listen: Option<String>,
    /// `false` keeps the listener closed even with `listen` set.
    pub enabled: bool,
}

impl Default for MetricsConfig {
    fn default() -> Self {
        Self {
            listen: None,
            enabled: true,
        }
    }
}

/// `[shutdown]`: how a stopping node (SIGTERM) leaves. Readiness says "not ready" at once;
/// the node keeps serving for `drain_delay_ms` (so a load balancer polling readiness stops
/// sending it requests), then answers its long-polls, stops accepting and gives the requests
/// in hand up to `grace_ms` to finish.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ShutdownConfig {
    /// Milliseconds between "not ready" and closing the listeners. 0 alone; behind a load
    /// balancer, a little more than its health-check interval.
    pub drain_delay_ms: u64,
    /// Milliseconds the requests in hand get to finish once the listeners are closed.
    pub grace_ms: u64,
}

impl Default for ShutdownConfig {
    fn default() -> Self {
        Self {
            drain_delay_ms: 0,
            grace_ms: 10_000,
        }
    }
}

impl MetricsConfig {
    /// Where the metrics listener listens, when it is on.
    pub fn listener(&self) -> Option<&str> {
        self.listen.as_deref().filter(|_| self.enabled)
    }
}

/// `[server_notices]`: the system user that sends notices and the name of its rooms.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ServerNoticesConfig {
    /// Localpart of the system user (created on first use; it has no password).
    pub system_mxid_localpart: String,
    /// Its display name.
    pub system_mxid_display_name: Option<String>,
    /// Name of each user's notices room.
    pub room_name: String,
}

impl Default for ServerNoticesConfig {
    fn default() -> Self {
        Self {
            system_mxid_localpart: "notices".into(),
            system_mxid_display_name: Some("Server Notices".into()),
            room_name: "Server Notices".into(),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SmtpSecurity {
    /// Plain SMTP (a relay on loopback or a trusted network).
    None,
    /// Plain connection upgraded with STARTTLS (required).
    Starttls,
    /// TLS from the first byte (port 465).
    Tls,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct EmailConfig {
    /// SMTP relay host. Unset: this server sends no email, and every feature that needs one
    /// (address validation, password reset by email, renewal reminders) is unavailable.
    pub smtp_host: Option<String>,
    pub smtp_port: u16,
    pub smtp_security: SmtpSecurity,
    pub smtp_username: Option<String>,
    pub smtp_password: Option<String>,
    /// `From:` of every email, e.g. `Tchap <noreply@tchap.gouv.fr>`.
    pub from: String,
    /// Product name used in the emails' text.
    pub app_name: String,
    /// Instead of SMTP, write each email as a text file in this directory (trial set-ups on one
    /// machine, see docs/tchap.md). Ignored when `smtp_host` is set.
    pub outbox_dir: Option<PathBuf>,
}

impl Default for EmailConfig {
    fn default() -> Self {
        Self {
            smtp_host: None,
            smtp_port: 25,
            smtp_security: SmtpSecurity::Starttls,
            smtp_username: None,
            smtp_password: None,
            from: "Palabre <noreply@localhost>".into(),
            app_name: "Palabre".into(),
            outbox_dir: None,
        }
    }
}

/// `[tchap]`: email-routed accounts, agents and externals, room access rules, account expiry
/// and the federated annuaire. See docs/tchap.md and ../shared/TCHAP.md.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct TchapConfig {
    /// Servers whose users are externals (invited partners), e.g. the externals server.
    pub externals_servers: Vec<String>,
    /// Which server hosts an email address: exact `address` rules first, then `pattern` rules
    /// (anchored regular expressions, first match wins), then `catch_all`. Shared by every
    /// server of the federation (the same list everywhere).
    pub email_rules: Vec<EmailRule>,
    /// Where every address no rule matches goes (in Tchap: the externals server).
    pub catch_all: Option<EmailTarget>,
    /// Further Palabre servers of the federation besides those named in the rules (they take
    /// part in the annuaire replication and answer `internal-info`).
    pub peers: Vec<String>,
    pub password_policy: PasswordPolicyConfig,
    /// Accounts expire unless renewed (absent: accounts never expire).
    pub account_validity: Option<AccountValidityConfig>,
    pub annuaire: AnnuaireConfig,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EmailRule {
    /// An exact address (case-insensitive).
    pub address: Option<String>,
    /// A regular expression matched against the whole lower-cased address.
    pub pattern: Option<String>,
    pub server: String,
    #[serde(default)]
    pub requires_invite: bool,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EmailTarget {
    pub server: String,
    #[serde(default)]
    pub requires_invite: bool,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct PasswordPolicyConfig {
    pub enabled: bool,
    pub minimum_length: usize,
    pub require_digit: bool,
    pub require_symbol: bool,
    pub require_lowercase: bool,
    pub require_uppercase: bool,
}

impl Default for PasswordPolicyConfig {
    fn default() -> Self {
        Self {
            enabled: true,
            minimum_length: 12,
            require_digit: true,
            require_symbol: true,
            require_lowercase: true,
            require_uppercase: true,
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct AccountValidityConfig {
    /// Lifetime of an account from registration or renewal, in days.
    pub period_days: u32,
    /// Reminder emails, in days before expiry.
    pub reminder_days: Vec<u32>,
    /// Days after expiry before the account is deactivated.
    pub grace_days: u32,
    /// How often the background job runs, in seconds.
    pub job_interval_secs: u64,
}

impl Default for AccountValidityConfig {
    fn default() -> Self {
        Self {
            period_days: 180,
            reminder_days: vec![28, 7, 1],
            grace_days: 30,
            job_interval_secs: 3600,
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct AnnuaireConfig {
    /// How often every peer's change stream is pulled even without a push, in seconds.
    pub pull_interval_secs: u64,
}

impl Default for AnnuaireConfig {
    fn default() -> Self {
        Self {
            pull_interval_secs: 300,
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct FederationConfig {
    /// Talk to other servers at all.
    pub enabled: bool,
    /// When set, the only servers this one talks to: others get 403 and are never contacted.
    pub allow_list: Option<Vec<String>>,
    /// Notary servers asked for other servers' keys (`/_matrix/key/v2/query`), with their
    /// own verify keys: `{ "server_name": "...", "verify_keys": { "ed25519:x": "base64" } }`.
    /// Empty (the default): a closed federation asks each server directly.
    pub trusted_key_servers: Vec<TrustedKeyServer>,
    /// PEM file of extra certificate authorities trusted for federation TLS, besides the
    /// system's roots (a ministry's private CA).
    pub extra_ca_file: Option<PathBuf>,
    /// FOR TESTS ONLY: server name -> host:port, bypassing server discovery.
    pub resolve_overrides: std::collections::BTreeMap<String, String>,
    /// FOR TESTS ONLY: accept any TLS certificate from other servers (logged at start).
    pub insecure_skip_tls_verify: bool,
    /// Longest wait between retries to an unreachable server, in milliseconds.
    pub max_retry_interval_ms: u64,
    /// How long this server's published key responses say they are valid, in seconds
    /// (`valid_until_ts`; Synapse's `key_refresh_interval`). Peers trust a key at most 7 days
    /// after fetching it whatever this says (spec).
    pub key_validity_secs: u64,
    /// Other servers may list this server's published rooms (`/_matrix/federation/v1/publicRooms`).
    /// Synapse's `allow_public_rooms_over_federation` is off by default for open federation;
    /// a closed federation of ministries wants it on.
    pub public_rooms_over_federation: bool,
    /// Device display names are sent to other servers (`/user/devices`, `/user/keys/query`).
    /// Synapse's `allow_device_name_lookup_over_federation` (off by default there).
    pub device_names_over_federation: bool,
}

/// `[inbound_federation]`: what other servers may make this one read and hold.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct InboundFederationConfig {
    /// Largest body of a `/send` transaction, in bytes: at most 50 PDUs of at most 64 KiB and
    /// 100 EDUs (whose size the spec does not bound). Synapse's 200 × 64 KiB (12.5 MiB).
    pub max_transaction_bytes: usize,
    /// Largest body of every other federation request, in bytes (queries, key claims and
    /// queries, `/get_missing_events`, and the one-event bodies of `send_join`, `invite` —
    /// the event plus its stripped state, a few small events — `send_leave`, `send_knock`).
    pub max_request_bytes: usize,
    /// Requests of one origin server handled at once (bodies being read included); beyond,
    /// 429 `M_LIMIT_EXCEEDED`. 0: no bound.
    pub max_concurrent_per_origin: usize,
    /// Time allowed to receive a request body once its headers are in, in seconds (408 after).
    pub body_timeout_secs: u64,
}

impl Default for InboundFederationConfig {
    fn default() -> Self {
        Self {
            max_transaction_bytes: 200 * 64 * 1024,
            max_request_bytes: 1024 * 1024,
            max_concurrent_per_origin: 50,
            body_timeout_secs: 30,
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TrustedKeyServer {
    pub server_name: String,
    pub verify_keys: std::collections::BTreeMap<String, String>,
}

impl Default for FederationConfig {
    fn default() -> Self {
        Self {
            enabled: true,
            allow_list: None,
            trusted_key_servers: vec![],
            extra_ca_file: None,
            resolve_overrides: Default::default(),
            insecure_skip_tls_verify: false,
            max_retry_interval_ms: 24 * 3600 * 1000,
            key_validity_secs: 7 * 24 * 3600,
            public_rooms_over_federation: true,
            device_names_over_federation: true,
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct MediaConfig {
    /// Largest accepted upload, in bytes.
    pub max_upload_bytes: u64,
    /// Total bytes of media a user may have uploaded (0: no quota).
    pub quota_bytes_per_user: u64,
    /// Images with more pixels than this are never decoded (no thumbnail).
    pub max_image_pixels: u64,
    /// Media uploaded before this time (milliseconds since the epoch) stays readable through the
    /// legacy unauthenticated `/_matrix/media/v3/download` and `/thumbnail`; later media is only
    /// served by the authenticated endpoints. Unset: no legacy access at all.
    pub legacy_freeze_ts: Option<i64>,
    pub url_preview: UrlPreviewConfig,
    /// CIDR ranges a remote server's media `Location` redirect may point into although they are
    /// private or loopback (refused otherwise, like URL previews).
    pub redirect_ip_allow_list: Vec<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct UrlPreviewConfig {
    /// `/preview_url` fetches pages on behalf of users: off unless enabled.
    pub enabled: bool,
    /// CIDR ranges fetched even though they are private, loopback or otherwise refused.
    pub ip_allow_list: Vec<String>,
    /// Largest page or image fetched, in bytes.
    pub max_bytes: u64,
    /// Time allowed for a whole fetch (redirects included), in milliseconds.
    pub timeout_ms: u64,
}

impl Default for UrlPreviewConfig {
    fn default() -> Self {
        Self {
            enabled: false,
            ip_allow_list: vec![],
            max_bytes: 10 * 1024 * 1024,
            timeout_ms: 10_000,
        }
    }
}

impl Default for MediaConfig {
    fn default() -> Self {
        Self {
            max_upload_bytes: 100 * 1024 * 1024,
            quota_bytes_per_user: 0,
            max_image_pixels: 32_000_000,
            legacy_freeze_ts: None,
            url_preview: UrlPreviewConfig::default(),
            redirect_ip_allow_list: vec![],
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum EncryptionByDefault {
    All,
    Invite,
    Off,
}

impl std::str::FromStr for EncryptionByDefault {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "all" => Ok(Self::All),
            "invite" => Ok(Self::Invite),
            "off" => Ok(Self::Off),
            _ => Err(format!(
                "encryption_by_default must be all, invite or off, not {s:?}"
            )),
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct LogConfig {
    /// A tracing filter such as `info` or `palabre=debug,sqlx=warn`.
    pub filter: String,
    /// `text` or `json`.
    pub format: String,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TlsConfig {
    pub listen: String,
    pub certificate: PathBuf,
    pub private_key: PathBuf,
}

#[derive(Debug, Clone, Copy, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RateLimit {
    /// Sustained requests per second (0 disables the limit).
    pub per_second: f64,
    /// Requests allowed in a burst.
    pub burst: f64,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RateLimits {
    /// Per client IP address.
    pub login: RateLimit,
    /// Per account: failed password checks (login and the UIA password stage), whatever the
    /// client's address. Once spent, even the right password gets 429 until a token refills.
    pub login_failures: RateLimit,
    /// Per client IP address: registrations, availability checks and registration-token
    /// checks, counted before any other check.
    pub registration: RateLimit,
    /// Per user.
    pub message: RateLimit,
    /// Per user: room directory, user directory and message searches.
    pub search: RateLimit,
    /// Per user: emails a user makes the server send to others (email invitations).
    pub email_invite: RateLimit,
}

/// `[outbound]`: the addresses this server's own requests may go to (federation, well-known,
/// key fetches and the notary, pushers, remote media).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct OutboundConfig {
    /// Addresses or `addr/len` ranges never connected to (Synapse's `ip_range_blacklist`).
    /// The default is loopback, RFC 1918, link-local, CGNAT, ULA, NAT64, 6to4, Teredo,
    /// multicast, documentation and reserved ranges; setting it replaces that list.
    pub ip_range_denylist: Vec<String>,
    /// Ranges connected to even when denied (Synapse's `ip_range_whitelist`): the private
    /// network of a closed federation, e.g. `["10.0.0.0/8"]`. Empty by default.
    pub ip_range_allowlist: Vec<String>,
}

impl Default for OutboundConfig {
    fn default() -> Self {
        Self {
            ip_range_denylist: DEFAULT_IP_RANGE_DENYLIST
                .iter()
                .map(|s| s.to_string())
                .collect(),
            ip_range_allowlist: vec![],
        }
    }
}

/// `[proxy]`: the reverse proxies in front of this server.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ProxyConfig {
    /// Addresses or `addr/len` ranges of the reverse proxies whose `X-Forwarded-For` header
    /// names the client (rate limits, `internal-info`). The client is the right-most address
    /// of the header that is not a trusted proxy; from any other peer the header is ignored.
    /// Empty (the default): the socket peer is the client.
    pub trusted_proxies: Vec<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct PasswordHashing {
    /// Argon2id memory cost in KiB.
    pub memory_kib: u32,
    /// Argon2id iterations.
    pub iterations: u32,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            server_name: "localhost".into(),
            listen: "127.0.0.1:8008".into(),
            public_baseurl: None,
            database_url: None,
            data_dir: PathBuf::from("data"),
            registration: RegistrationMode::Closed,
            registration_tokens: vec![],
            presence: false,
            max_request_bytes: 1024 * 1024,
            default_room_version: "12".into(),
            refreshable_access_token_lifetime_ms: 5 * 60 * 1000,
            log: LogConfig::default(),
            tls: None,
            rate_limits: RateLimits::default(),
            proxy: ProxyConfig::default(),
            outbound: OutboundConfig::default(),
            password_hashing: PasswordHashing::default(),
            database_max_connections: 8,
            encryption_by_default: EncryptionByDefault::Invite,
            require_membership_for_aliases: true,
            media: MediaConfig::default(),
            federation: FederationConfig::default(),
            inbound_federation: InboundFederationConfig::default(),
            email: EmailConfig::default(),
            tchap: None,
            server_notices: None,
            admin: AdminConfig::default(),
            metrics: MetricsConfig::default(),
            shutdown: ShutdownConfig::default(),
            turn: TurnConfig::default(),
        }
    }
}

impl Default for LogConfig {
    fn default() -> Self {
        Self {
            filter: "info,ruma_state_res=warn,sqlx=warn".into(),
            format: "text".into(),
        }
    }
}

impl Default for RateLimits {
    fn default() -> Self {
        Self {
            login: RateLimit {
                per_second: 1.0,
                burst: 10.0,
            },
            // Synapse's rc_login.failed_attempts.
            login_failures: RateLimit {
                per_second: 0.17,
                burst: 3.0,
            },
            registration: RateLimit {
                per_second: 1.0,
                burst: 10.0,
            },
            message: RateLimit {
                per_second: 200.0,
                burst: 1000.0,
            },
            search: RateLimit {
                per_second: 5.0,
                burst: 30.0,
            },
            email_invite: RateLimit {
                per_second: 1.0 / 60.0,
                burst: 20.0,
            },
        }
    }
}

impl Default for PasswordHashing {
    fn default() -> Self {
        // OWASP's argon2id recommendation (m=19 MiB, t=2, p=1).
        Self {
            memory_kib: 19 * 1024,
            iterations: 2,
        }
    }
}

/// Synapse's default `ip_range_blacklist`, with `0.0.0.0/8`, `::/128` (Synapse adds both
/// always), `240.0.0.0/4` (reserved), NAT64 (`64:ff9b::/96`, `64:ff9b:1::/48`), 6to4
/// (`2002::/16`) and Teredo (`2001::/32`), which reach IPv4 addresses through IPv6 ones.
pub const DEFAULT_IP_RANGE_DENYLIST: &[&str] = &[
    "0.0.0.0/8",
    "10.0.0.0/8",
    "100.64.0.0/10",
    "127.0.0.0/8",
    "169.254.0.0/16",
    "172.16.0.0/12",
    "192.0.0.0/24",
    "192.0.2.0/24",
    "192.88.99.0/24",
    "192.168.0.0/16",
    "198.18.0.0/15",
    "198.51.100.0/24",
    "203.0.113.0/24",
    "224.0.0.0/4",
    "240.0.0.0/4",
    "::/128",
    "::1/128",
    "64:ff9b::/96",
    "64:ff9b:1::/48",
    "2001::/32",
    "2001:db8::/32",
    "2002::/16",
    "fc00::/7",
    "fe80::/10",
    "fec0::/10",
    "ff00::/8",
];

impl Config {
    /// Reads the file at `path`, else the one `PALABRE_CONFIG` names, else the defaults; then
    /// applies the `PALABRE_*` overrides and checks.
    pub fn load(path: Option<&Path>) -> anyhow::Result<Self> {
        let from_env = std::env::var_os("PALABRE_CONFIG").map(std::path::PathBuf::from);
        let mut cfg = match path.or(from_env.as_deref()) {
            Some(p) => {
                let text = std::fs::read_to_string(p)
                    .map_err(|e| anyhow::anyhow!("cannot read {}: {e}", p.display()))?;
                toml::from_str(&text).map_err(|e| anyhow::anyhow!("{}: {e}", p.display()))?
            }
            None => Config::default(),
        };
        cfg.apply_env(|k| std::env::var(k).ok())?;
        cfg.check()?;
        Ok(cfg)
    }

    pub fn apply_env(&mut self, get: impl Fn(&str) -> Option<String>) -> anyhow::Result<()> {
        if let Some(v) = get("PALABRE_SERVER_NAME") {
            self.server_name = v;
        }
        if let Some(v) = get("PALABRE_REGISTRATION_SHARED_SECRET") {
            self.admin.registration_shared_secret = Some(v);
        }
        if let Some(v) = get("PALABRE_LISTEN") {
            self.listen = v;
        }
        if let Some(v) = get("PALABRE_PUBLIC_BASEURL") {
            self.public_baseurl = Some(v);
        }
        if let Some(v) = get("PALABRE_DATABASE_URL") {
            self.database_url = Some(v);
        }
        if let Some(v) = get("PALABRE_DATA_DIR") {
            self.data_dir = PathBuf::from(v);
        }
        if let Some(v) = get("PALABRE_REGISTRATION") {
            self.registration = v.parse().map_err(anyhow::Error::msg)?;
        }
        if let Some(v) = get("PALABRE_REGISTRATION_TOKENS") {
            self.registration_tokens = v
                .split(',')
                .filter(|s| !s.is_empty())
                .map(str::to_owned)
                .collect();
        }
        if let Some(v) = get("PALABRE_ENCRYPTION_BY_DEFAULT") {
            self.encryption_by_default = v.parse().map_err(anyhow::Error::msg)?;
        }
        if let Some(v) = get("PALABRE_PRESENCE") {
            self.presence = matches!(v.as_str(), "1" | "true" | "on");
        }
        if get("PALABRE_RATE_LIMITS").as_deref() == Some("off") {
            let off = RateLimit {
                per_second: 0.0,
                burst: 0.0,
            };
            self.rate_limits = RateLimits {
                login: off,
                login_failures: off,
                registration: off,
                message: off,
                search: off,
                email_invite: off,
            };
        }
        if let Some(v) = get("PALABRE_LOG") {
            self.log.filter = v;
        }
        if let Some(v) = get("PALABRE_LOG_FORMAT") {
            self.log.format = v;
        }
        if let Some(v) = get("PALABRE_METRICS_LISTEN") {
            self.metrics.listen = Some(v).filter(|v| !v.is_empty());
        }
        Ok(())
    }

    /// Checks what the configuration can judge alone (names, formats). What only the services
    /// can judge (room versions, the Tchap rules, IP ranges) is `services::check_config`.
    pub fn check(&self) -> anyhow::Result<()> {
        ruma::ServerName::parse(&self.server_name)
            .map_err(|e| anyhow::anyhow!("server_name {:?} is invalid: {e}", self.server_name))?;
        if !matches!(self.log.format.as_str(), "text" | "json") {
            anyhow::bail!("log.format must be text or json");
        }
        if let Some(u) = self.turn.uris.iter().find(|u| {
            !["turn:", "turns:", "stun:"]
                .iter()
                .any(|scheme| u.starts_with(scheme))
        }) {
            anyhow::bail!("turn.uris: {u:?} is not a turn:, turns: or stun: URI");
        }
        if self.turn.user_lifetime_ms == 0 {
            anyhow::bail!("turn.user_lifetime_ms must be more than 0");
        }
        if let Some(m) = self.metrics.listener() {
            let public = std::iter::once(self.listen.as_str())
                .chain(self.tls.as_ref().map(|t| t.listen.as_str()));
            if public.into_iter().any(|l| l == m && !l.ends_with(":0")) {
                anyhow::bail!("metrics.listen must not be a public listener's address ({m})");
            }
        }
        Ok(())
    }

    pub fn database_url(&self) -> String {
        self.database_url
            .clone()
            .unwrap_or_else(|| format!("sqlite://{}/palabre.db", self.data_dir.display()))
    }

    pub fn public_baseurl(&self) -> String {
        self.public_baseurl
            .clone()
            .unwrap_or_else(|| format!("http://{}/", self.listen))
    }
}
