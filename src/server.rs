//! Starting and stopping the HTTP listener(s).

use std::{net::SocketAddr, sync::Arc};

use tokio::net::TcpListener;

use crate::{api, config::Config, services::Services};

/// A running server: its address, its services, and a way to stop it.
pub struct Running {
    pub addr: SocketAddr,
    /// The TLS listener's address, when one is configured.
    pub tls_addr: Option<SocketAddr>,
    /// The metrics listener's address, when `[metrics] listen` is set.
    pub metrics_addr: Option<SocketAddr>,
    pub services: Arc<Services>,
    shutdown: tokio::sync::watch::Sender<bool>,
    /// The SQLite database's one-process lock, held until the process ends.
    _sqlite_lock: Option<crate::store::process_lock::ProcessLock>,
    tasks: Vec<tokio::task::JoinHandle<std::io::Result<()>>>,
}

impl Running {
    /// Stops: readiness says "not ready" at once, the listeners stop accepting and finish
    /// the requests in hand, then the background leases and the database pool are released.
    pub async fn stop(self) {
        self.services.health.begin_drain();
        let cfg = self.services.config.shutdown.clone();
        if cfg.drain_delay_ms > 0 {
            tracing::info!(
                drain_delay_ms = cfg.drain_delay_ms,
                "not ready; serving on while the load balancer notices"
            );
            tokio::time::sleep(std::time::Duration::from_millis(cfg.drain_delay_ms)).await;
        }
        // Long-polls answer now (with what they have), new ones do not wait.
        self.services.notifier.notify_all();
        let _ = self.shutdown.send(true);
        let finish = futures_util::future::join_all(self.tasks);
        if tokio::time::timeout(std::time::Duration::from_millis(cfg.grace_ms), finish)
            .await
            .is_err()
        {
            tracing::warn!(
                grace_ms = cfg.grace_ms,
                "requests still in hand after the grace period; leaving anyway"
            );
        }
        self.services.policy().release_validity_lease().await;
        self.services.cluster.leave().await;
        self.services.db.close().await;
    }
}

/// Starts the services and the plain-HTTP listener (`listen`; port 0 picks a free port).
pub async fn start(config: Config) -> anyhow::Result<Running> {
    let listen = config.listen.clone();
    let sqlite_lock = crate::store::process_lock::lock_sqlite(&config.database_url())?;
    let services = Services::start(config).await?;
    services.start_cluster();
    let listener = TcpListener::bind(&listen)
        .await
        .map_err(|e| anyhow::anyhow!("cannot listen on {listen}: {e}"))?;
    let addr = listener.local_addr()?;
    let app = api::router(services.clone());
    let (tx, rx) = tokio::sync::watch::channel(false);
    let stopped = |mut rx: tokio::sync::watch::Receiver<bool>| async move {
        let _ = rx.changed().await;
    };
    let mut tasks = vec![];
    let plain = axum::serve(
        listener,
        app.clone()
            .into_make_service_with_connect_info::<SocketAddr>(),
    )
    .with_graceful_shutdown(stopped(rx.clone()));
    tasks.push(tokio::spawn(async move { plain.await }));
    let mut tls_addr = None;
    if let Some(tls) = &services.config.tls {
        let listener = crate::tls::TlsListener::bind(tls).await?;
        tls_addr = Some(axum::serve::Listener::local_addr(&listener)?);
        let secure = axum::serve(
            listener,
            app.into_make_service_with_connect_info::<crate::tls::TlsPeer>(),
        )
        .with_graceful_shutdown(stopped(rx.clone()));
        tasks.push(tokio::spawn(async move { secure.await }));
        tracing::info!(addr = ?tls_addr, "TLS listener started");
    }
    let mut metrics_addr = None;
    if let Some(listen) = services.config.metrics.listener() {
        let listener = TcpListener::bind(listen)
            .await
            .map_err(|e| anyhow::anyhow!("metrics: cannot listen on {listen}: {e}"))?;
        metrics_addr = Some(listener.local_addr()?);
        let metrics = axum::serve(listener, api::metrics::router(services.clone()))
            .with_graceful_shutdown(stopped(rx.clone()));
        tasks.push(tokio::spawn(async move { metrics.await }));
        tracing::info!(addr = ?metrics_addr, path = api::metrics::PATH, "metrics listener started");
    }
    services.push().start_pusher_task();
    // The annuaire's entries and search index are made while the server serves (searches
    // meanwhile see what is indexed so far); its replication starts once they are.
    let annuaire = Arc::downgrade(&services);
    tokio::spawn(async move {
        let mut delay = std::time::Duration::from_secs(1);
        loop {
            let Some(s) = annuaire.upgrade() else { return };
            match s.policy().annuaire_start().await {
                Ok(()) => {
                    s.policy().start_annuaire_tasks();
                    return;
                }
                Err(e) => tracing::error!(error = %e.message, "annuaire start failed; retrying"),
            }
            drop(s);
            tokio::time::sleep(delay).await;
            delay = (delay * 2).min(std::time::Duration::from_secs(60));
        }
    });
    services
        .federation()
        .resume_outbox()
        .await
        .map_err(|e| anyhow::anyhow!("federation queue: {}", e.message))?;
    services
        .admin()
        .start()
        .await
        .map_err(|e| anyhow::anyhow!("admin jobs: {}", e.message))?;
    let pruner = services.clone();
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(std::time::Duration::from_secs(60));
        for minute in 0u64.. {
            tick.tick().await;
            if Arc::strong_count(&pruner) == 1 {
                break;
            }
            pruner.notifier.prune();
            if minute % 60 == 0 {
                // Delivered to-device EDU ids are kept a week (retries come back sooner).
                let week_ago = crate::util::now_ms() - 7 * 24 * 3600 * 1000;
                if let Err(e) = pruner.db.prune_received_edus(week_ago).await {
                    tracing::warn!(error = %e, "pruning received EDU ids");
                }
            }
        }
    });
    if let Some(cfg) = services.policy().validity_config() {
        // Account validity: reminders, expiries, deactivations (one process per database).
        let every = std::time::Duration::from_secs(cfg.job_interval_secs.max(1));
        let job = Arc::downgrade(&services);
        let mut stop = rx.clone();
        tokio::spawn(async move {
            // First run one interval after start (tests drive the job themselves).
            let mut tick = tokio::time::interval_at(tokio::time::Instant::now() + every, every);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tokio::select! {
                    _ = tick.tick() => {}
                    _ = stop.changed() => break,
                }
                let Some(s) = job.upgrade() else { break };
                match s.policy().run_validity_job_once().await {
                    Ok(r) if r.ran => tracing::debug!(?r, "account validity job"),
                    Ok(_) => {}
                    Err(e) => tracing::warn!(error = %e, "account validity job"),
                }
            }
        });
    }
    tracing::info!(%addr, server_name = %services.server_name, "Palabre listening");
    Ok(Running {
        addr,
        tls_addr,
        metrics_addr,
        services,
        shutdown: tx,
        _sqlite_lock: sqlite_lock,
        tasks,
    })
}
