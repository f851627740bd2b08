//! Domain logic. Services hold the rules and never see HTTP.

pub mod accounts;
pub mod admin;
pub mod client_ip;
pub mod cluster;
pub mod e2ee;
pub mod federation;
pub mod filter;
pub mod gauges;
pub mod health;
pub mod mail;
pub mod media;
pub mod outbound;
pub mod policy;
pub mod push;
pub mod ratelimit;
pub mod requester;
pub mod rooms;
pub mod server_keys;
pub mod streams;
pub mod sync;
pub mod thirdparty;
pub mod voip;

use std::sync::Arc;

/// Declares an area's face: a borrowed view of [`Services`] that carries the area's methods, so
/// a call site reads `s.rooms().send_event(…)` and an area's surface is what its face exposes.
/// The face derefs to `Services` for the shared state (the store, the configuration, caches).
macro_rules! face {
    ($(#[$doc:meta])* $name:ident) => {
        $(#[$doc])*
        #[derive(Clone, Copy)]
        pub struct $name<'a> {
            pub(in crate::services) s: &'a crate::services::Services,
        }

        impl std::ops::Deref for $name<'_> {
            type Target = crate::services::Services;
            fn deref(&self) -> &Self::Target {
                self.s
            }
        }
    };
}
pub(crate) use face;

use ruma::{OwnedServerName, ServerName, UserId};

use crate::{config::Config, store::Db};

pub struct Services {
    /// This very object, for work spawned into its own task.
    pub me: std::sync::Weak<Services>,
    pub config: Config,
    pub db: Db,
    pub server_name: OwnedServerName,
    pub keys: server_keys::ServerKeys,
    /// Positions of events (timeline, state, membership).
    pub events_stream: streams::StreamTracker,
    /// Positions of account data.
    pub account_data_stream: streams::StreamTracker,
    /// Positions of to-device messages.
    pub to_device_stream: streams::StreamTracker,
    /// Positions of device-list changes (devices and cross-signing keys).
    pub device_list_stream: streams::StreamTracker,
    /// Positions of read receipts.
    pub receipt_stream: streams::StreamTracker,
    pub typing: sync::typing::Typing,
    /// The users each user ignores (`m.ignored_user_list`), cached.
    pub ignored: sync::ignored::IgnoredLists,
    /// Simplified sliding sync connections, cached (the database holds them).
    pub sliding: sync::sliding::conn::Connections,
    pub state_group_ids: cluster::IdGen,
    /// This node's place among the nodes sharing the database (alone on SQLite).
    pub cluster: cluster::Cluster,
    pub room_cache: rooms::RoomCache,
    pub notifier: streams::Notifier,
    pub tokens: accounts::TokenCache,
    pub ratelimit: ratelimit::RateLimiter,
    /// `[proxy] trusted_proxies`: whose `X-Forwarded-For` names the client.
    pub proxies: client_ip::TrustedProxies,
    pub presence: sync::presence::Presence,
    pub push_state: push::PushState,
    pub federation_state: federation::Federation,
    /// Where outbound requests may connect (`[outbound]`, URL preview and media redirect
    /// allow-lists).
    pub outbound: outbound::Outbound,
    /// Inbound federation requests in hand, per origin (`[inbound_federation]`).
    pub inbound: federation::inbound::InboundLimits,
    /// The Tchap rules (`[tchap]`); with the section absent every check allows.
    pub policy_rules: policy::Policy,
    /// Outgoing email (`[email]`).
    pub mailer: mail::Mailer,
    /// Account validity: the expiration cache and this process's job lease id.
    pub validity: policy::validity::Validity,
    /// Server notices (one notices room created at a time).
    pub server_notices: rooms::server_notices::ServerNotices,
    /// The federated user directory (Tchap): search index and replication state.
    pub annuaire: policy::annuaire::Annuaire,
    /// Recent Tchap searchers' room co-members (`user_directory`).
    pub directory_members: accounts::user_directory::MemberCache,
    /// Serialises each user's room tag changes (read, edit, write back).
    pub tag_locks: sync::tags::TagLocks,
    /// URL previews already fetched: url -> (fetched at, Open Graph data).
    pub preview_cache:
        parking_lot::Mutex<std::collections::HashMap<String, (i64, serde_json::Value)>>,
    /// Remote media being fetched (one fetch per media at a time).
    pub media_inflight: media::remote::Inflight,
    /// Thumbnail generation: the decode bound and the generations in flight.
    pub thumbnailer: media::thumbnail::Thumbnailer,
    /// Suspended accounts (a small set, kept in memory for the send path).
    pub admin_state: admin::AdminState,
    /// Readiness (database reachable, not draining).
    pub health: health::Health,
    /// Password hashes in flight (each costs a core and `memory_kib` of memory).
    pub hashing: tokio::sync::Semaphore,
    /// The Prometheus metric families of this server (docs/operations.md).
    pub metrics: crate::metrics::Metrics,
}

/// Checks a configuration as the services will read it: [`Config::check`] plus what only the
/// services can judge (the default room version is one they speak, the Tchap rules, the trusted
/// proxies' and outbound IP ranges). Every command runs it right after loading the file.
pub fn check_config(config: &Config) -> anyhow::Result<()> {
    check_default_room_version(config)?;
    if let Some(t) = &config.tchap {
        policy::Policy::new(&config.server_name, Some(t))?;
    }
    client_ip::TrustedProxies::new(&config.proxy.trusted_proxies)
        .map_err(|e| anyhow::anyhow!("proxy.trusted_proxies: {e}"))?;
    outbound::Outbound::new(config).map_err(|e| anyhow::anyhow!(e))?;
    Ok(())
}

/// [`Config::check`] and the default room version: what `Services::start` does not judge by
/// building the policy, the proxies and the outbound policy itself.
fn check_default_room_version(config: &Config) -> anyhow::Result<()> {
    config.check()?;
    if ruma::RoomVersionId::try_from(config.default_room_version.as_str())
        .ok()
        .and_then(|v| rooms::version::supported(&v))
        .is_none()
    {
        anyhow::bail!(
            "default_room_version {:?} is not supported",
            config.default_room_version
        );
    }
    Ok(())
}

impl Services {
    /// Connects to the database, applies migrations, loads the signing key and the stream heads.
    pub async fn start(config: Config) -> anyhow::Result<Arc<Self>> {
        check_default_room_version(&config)?;
        let db = Db::connect(&config.database_url(), config.database_max_connections).await?;
        let applied = db.migrate().await?;
        if !applied.is_empty() {
            tracing::info!(?applied, "database migrations applied");
        }
        // The configured registration tokens seed the table; the admin API manages it after.
        let seeded = db
            .seed_registration_tokens(&config.registration_tokens)
            .await?;
        if !seeded.is_empty() {
            tracing::info!(
                count = seeded.len(),
                "registration tokens added from the configuration"
            );
        }
        let keys = server_keys::ServerKeys::load_or_generate(&config.data_dir)?;
        let server_name = ServerName::parse(&config.server_name)?;
        let cluster = if db.shared() {
            cluster::Cluster::join(&config.database_url()).await?
        } else {
            cluster::Cluster::alone()
        };
        // Each stream restarts after its rows and its recorded head, whichever is higher (the
        // head covers positions abandoned by failed writes, which clients may have seen). On
        // PostgreSQL the stream's counter is shared: raised to that (never lowered), and the
        // stream starts at what the database says is persisted up to.
        let head = |name: &'static str, rows: i64| {
            let db = &db;
            async move {
                let recorded = db.stream_head(name).await?;
                if db.shared() {
                    db.init_stream_counter(name, rows.max(recorded)).await?;
                    return anyhow::Ok(streams::StreamTracker::shared(
                        name,
                        db.stream_upto(name).await?,
                    ));
                }
                anyhow::Ok(streams::StreamTracker::new(name, rows.max(recorded)))
            }
        };
        let events_stream = head("events", db.max_stream_ordering().await?).await?;
        let account_data_stream = head("account_data", db.max_account_data_stream().await?).await?;
        let to_device_stream = head(e2ee::to_device::STREAM, 0).await?;
        let device_list_stream = head("device_lists", db.max_device_list_stream().await?).await?;
        let receipt_stream = head("receipts", db.max_receipt_stream().await?).await?;
        let state_group_ids = cluster::IdGen::default();
        state_group_ids.start(db.max_state_group().await?, &cluster);
        let outbound = outbound::Outbound::new(&config).map_err(|e| anyhow::anyhow!(e))?;
        let federation = federation::Federation::new(&config.federation, outbound.general.clone())?;
        federation.queues.next_id.start(0, &cluster);
        let policy = policy::Policy::new(&config.server_name, config.tchap.as_ref())?;
        let mailer = mail::Mailer::new(&config.email)?;
        let proxies = client_ip::TrustedProxies::new(&config.proxy.trusted_proxies)
            .map_err(|e| anyhow::anyhow!("proxy.trusted_proxies: {e}"))?;
        let metrics = crate::metrics::Metrics::new();
        db.set_timers(metrics.db.clone());
        Ok(Arc::new_cyclic(|me| Self {
            me: me.clone(),
            config,
            db,
            server_name,
            keys,
            events_stream,
            account_data_stream,
            to_device_stream,
            device_list_stream,
            receipt_stream,
            typing: sync::typing::Typing::default(),
            ignored: Default::default(),
            sliding: Default::default(),
            state_group_ids,
            cluster,
            room_cache: rooms::RoomCache::default(),
            notifier: streams::Notifier::default(),
            tokens: accounts::TokenCache::default(),
            ratelimit: ratelimit::RateLimiter::default(),
            proxies,
            presence: sync::presence::Presence::default(),
            push_state: push::PushState::default(),
            federation_state: federation,
            outbound,
            inbound: Default::default(),
            policy_rules: policy,
            mailer,
            validity: Default::default(),
            server_notices: Default::default(),
            annuaire: Default::default(),
            directory_members: Default::default(),
            tag_locks: sync::tags::TagLocks::default(),
            preview_cache: Default::default(),
            media_inflight: Default::default(),
            thumbnailer: Default::default(),
            admin_state: Default::default(),
            health: Default::default(),
            hashing: tokio::sync::Semaphore::new(
                std::thread::available_parallelism()
                    .map(|n| n.get())
                    .unwrap_or(2),
            ),
            metrics,
        }))
    }

    /// The door to rooms: the event DAG, sending, reading, membership, the room directory.
    pub fn rooms(&self) -> rooms::RoomsFace<'_> {
        rooms::RoomsFace { s: self }
    }

    /// The door to federation: talking to other servers, both ways.
    pub fn federation(&self) -> federation::FederationFace<'_> {
        federation::FederationFace { s: self }
    }

    /// The door to end-to-end encryption: device keys, cross-signing, to-device, backup.
    pub fn e2ee(&self) -> e2ee::E2eeFace<'_> {
        e2ee::E2eeFace { s: self }
    }

    /// The door to sync and what it delivers besides room events.
    pub fn sync(&self) -> sync::SyncFace<'_> {
        sync::SyncFace { s: self }
    }

    /// The door to accounts: registration, login, tokens, devices, profiles, 3PIDs.
    pub fn accounts(&self) -> accounts::AccountsFace<'_> {
        accounts::AccountsFace { s: self }
    }

    /// The door to media: uploads, downloads, thumbnails, previews, remote media.
    pub fn media(&self) -> media::MediaFace<'_> {
        media::MediaFace { s: self }
    }

    /// The door to the Tchap policy: agents and externals, access rules, the annuaire, validity.
    pub fn policy(&self) -> policy::PolicyFace<'_> {
        policy::PolicyFace { s: self }
    }

    /// The door to server administration: the admin API's listings, account flags, room
    /// shutdowns and the background admin jobs.
    pub fn admin(&self) -> admin::AdminFace<'_> {
        admin::AdminFace { s: self }
    }

    /// The door to push: rules, notification counts, pushers.
    pub fn push(&self) -> push::PushFace<'_> {
        push::PushFace { s: self }
    }

    pub fn is_local(&self, user: &UserId) -> bool {
        user.server_name() == self.server_name
    }
}
