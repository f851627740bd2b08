//! Prometheus metrics (docs/operations.md, "Metrics"): the families of one server, in a registry
//! of its own (several servers in one test process never mix their figures), rendered in the
//! Prometheus text format by the metrics listener (`[metrics] listen`, never the public port).
//!
//! Counters and histograms are updated where things happen (the access log, the event writer,
//! the federation sender and receiver, sync, the admin jobs); gauges of state that lives
//! elsewhere (database pool, caches, queues, the process) are sampled when scraped. No label
//! names a room or a user: routes are route templates, origins and outcomes small fixed sets.

use prometheus::{
    Counter, Encoder, Gauge, Histogram, HistogramOpts, HistogramVec, IntCounter, IntCounterVec,
    IntGauge, IntGaugeVec, Opts, Registry, TextEncoder,
};

/// Latency buckets of HTTP requests, in seconds (long-polls end in the 30 s and 60 s buckets).
const HTTP_BUCKETS: &[f64] = &[
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0,
];
/// Latency buckets of event writes (one database transaction), in seconds.
const PERSIST_BUCKETS: &[f64] = &[
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0,
];

/// Every metric family of a server.
pub struct Metrics {
    registry: Registry,
    pub http_requests: IntCounterVec,
    pub http_duration: HistogramVec,
    pub http_in_flight: IntGauge,
    pub sync_long_polls: IntGauge,
    pub events_persisted: IntCounterVec,
    pub persist_duration: Histogram,
    /// The database's own timings (write transactions, waits for a connection).
    pub db: DbTimers,
    pub federation_transactions: IntCounterVec,
    pub federation_retries: IntCounter,
    pub federation_queue_depth: IntGaugeVec,
    pub federation_incoming_pdus: IntCounterVec,
    pub to_device_queue: IntGauge,
    pub db_connections: IntGaugeVec,
    pub db_max_connections: IntGauge,
    pub cache_hits: IntCounterVec,
    pub cache_misses: IntCounterVec,
    pub cache_size: IntGaugeVec,
    pub jobs: IntCounterVec,
    pub jobs_active: IntGaugeVec,
    /// 1 for each cluster singleton this node holds now (always 1 alone, on SQLite).
    pub cluster_singletons: IntGaugeVec,
    process: Process,
    /// Serialises scrapes (the CPU counter is brought up to date by difference).
    scrape: parking_lot::Mutex<()>,
}

/// Timings the store records itself (`Db::set_timers`).
#[derive(Clone)]
pub struct DbTimers {
    /// From `begin_write` (SQLite's writer queue included) to the commit.
    pub write_transaction: Histogram,
    /// Waiting for a pool connection to begin a write transaction.
    pub acquire: Histogram,
}

/// The process's own figures, read from `/proc/self` at scrape time (Linux).
struct Process {
    cpu_seconds: Counter,
    resident_bytes: IntGauge,
    open_fds: IntGauge,
    start_time: Gauge,
    uptime: Gauge,
    started: std::time::Instant,
}

/// `cache` label of the access-token cache (token hash -> user and device).
pub const CACHE_TOKENS: &str = "access_tokens";
/// `cache` label of the rooms' state kept in memory for the writers.
pub const CACHE_ROOMS: &str = "room_state";

/// Outcome labels of incoming PDUs (`palabre_federation_incoming_pdus_total`).
#[derive(Debug, Clone, Copy)]
pub enum PduOutcome {
    Accepted,
    /// Known already (sent again, or fetched before).
    AlreadyKnown,
    SoftFailed,
    /// Refused: invalid, failing the auth rules, or following events that could not be found.
    Rejected,
}

impl PduOutcome {
    fn label(self) -> &'static str {
        match self {
            Self::Accepted => "accepted",
            Self::AlreadyKnown => "already_known",
            Self::SoftFailed => "soft_failed",
            Self::Rejected => "rejected",
        }
    }
}

fn must<T>(r: prometheus::Result<T>) -> T {
    // The names, labels and buckets below are constants: an error is a bug of this file.
    r.unwrap_or_else(|e| panic!("metric definition: {e}"))
}

impl Metrics {
    /// A registry holding every family, with the build info set.
    pub fn new() -> Self {
        let registry = Registry::new();
        let reg = |c: Box<dyn prometheus::core::Collector>| must(registry.register(c));
        macro_rules! family {
            ($ty:ty, $opts:expr) => {{
                let m = must(<$ty>::with_opts($opts));
                reg(Box::new(m.clone()));
                m
            }};
            ($ty:ty, $opts:expr, $labels:expr) => {{
                let m = must(<$ty>::new($opts, $labels));
                reg(Box::new(m.clone()));
                m
            }};
        }
        let hist = |name: &str, help: &str, buckets: &[f64]| {
            HistogramOpts::new(name, help).buckets(buckets.to_vec())
        };
        let build = family!(
            IntGaugeVec,
            Opts::new(
                "palabre_build_info",
                "Always 1; the version of this server."
            ),
            &["version"]
        );
        build.with_label_values(&[env!("CARGO_PKG_VERSION")]).set(1);
        let process = Process {
            cpu_seconds: family!(
                Counter,
                Opts::new(
                    "palabre_process_cpu_seconds_total",
                    "CPU time used by the process (user and system), in seconds."
                )
            ),
            resident_bytes: family!(
                IntGauge,
                Opts::new(
                    "palabre_process_resident_memory_bytes",
                    "Resident memory of the process (VmRSS), in bytes."
                )
            ),
            open_fds: family!(
                IntGauge,
                Opts::new(
                    "palabre_process_open_fds",
                    "File descriptors open in the process (sockets, database files, logs)."
                )
            ),
            start_time: family!(
                Gauge,
                Opts::new(
                    "palabre_process_start_time_seconds",
                    "When the process started, in seconds since the Unix epoch."
                )
            ),
            uptime: family!(
                Gauge,
                Opts::new(
                    "palabre_uptime_seconds",
                    "Time since this server started serving, in seconds."
                )
            ),
            started: std::time::Instant::now(),
        };
        Self {
            http_requests: family!(
                IntCounterVec,
                Opts::new(
                    "palabre_http_requests_total",
                    "HTTP requests answered, by method, route template and status."
                ),
                &["method", "route", "status"]
            ),
            http_duration: family!(
                HistogramVec,
                hist(
                    "palabre_http_request_duration_seconds",
                    "Time to answer an HTTP request (long-polls included), by method and route template.",
                    HTTP_BUCKETS
                ),
                &["method", "route"]
            ),
            http_in_flight: family!(
                IntGauge,
                Opts::new(
                    "palabre_http_requests_in_flight",
                    "HTTP requests being handled now."
                )
            ),
            sync_long_polls: family!(
                IntGauge,
                Opts::new(
                    "palabre_sync_long_polls",
                    "/sync requests waiting for something to happen."
                )
            ),
            events_persisted: family!(
                IntCounterVec,
                Opts::new(
                    "palabre_events_persisted_total",
                    "Events written to the database, by origin (local: sent by a user of this server)."
                ),
                &["origin"]
            ),
            persist_duration: family!(
                Histogram,
                hist(
                    "palabre_event_persist_duration_seconds",
                    "Time of one event write (one database transaction, one or more events).",
                    PERSIST_BUCKETS
                )
            ),
            db: DbTimers {
                write_transaction: family!(
                    Histogram,
                    hist(
                        "palabre_db_write_transaction_seconds",
                        "Time of a database write transaction, from its start (waiting for SQLite's single writer included) to its commit.",
                        PERSIST_BUCKETS
                    )
                ),
                acquire: family!(
                    Histogram,
                    hist(
                        "palabre_db_acquire_seconds",
                        "Time waited for a pool connection to begin a write transaction (a pool too small for the load shows here).",
                        PERSIST_BUCKETS
                    )
                ),
            },
            federation_transactions: family!(
                IntCounterVec,
                Opts::new(
                    "palabre_federation_outgoing_transactions_total",
                    "Transactions sent to other servers, by result (ok or error)."
                ),
                &["result"]
            ),
            federation_retries: family!(
                IntCounter,
                Opts::new(
                    "palabre_federation_send_retries_total",
                    "Retries scheduled after a failed send to another server."
                )
            ),
            federation_queue_depth: family!(
                IntGaugeVec,
                Opts::new(
                    "palabre_federation_queue_depth",
                    "Items waiting to be sent to other servers: pdu and edu (queued in the database), ephemeral (in memory)."
                ),
                &["kind"]
            ),
            federation_incoming_pdus: family!(
                IntCounterVec,
                Opts::new(
                    "palabre_federation_incoming_pdus_total",
                    "PDUs received in federation transactions, by outcome."
                ),
                &["outcome"]
            ),
            to_device_queue: family!(
                IntGauge,
                Opts::new(
                    "palabre_to_device_queue_size",
                    "To-device messages waiting for their device to sync."
                )
            ),
            db_connections: family!(
                IntGaugeVec,
                Opts::new(
                    "palabre_db_pool_connections",
                    "Database connections of the pool, by state (in_use or idle)."
                ),
                &["state"]
            ),
            db_max_connections: family!(
                IntGauge,
                Opts::new(
                    "palabre_db_pool_max_connections",
                    "Largest number of database connections of the pool."
                )
            ),
            cache_hits: family!(
                IntCounterVec,
                Opts::new(
                    "palabre_cache_hits_total",
                    "Lookups answered by an in-memory cache."
                ),
                &["cache"]
            ),
            cache_misses: family!(
                IntCounterVec,
                Opts::new(
                    "palabre_cache_misses_total",
                    "Lookups an in-memory cache could not answer (read from the database)."
                ),
                &["cache"]
            ),
            cache_size: family!(
                IntGaugeVec,
                Opts::new("palabre_cache_entries", "Entries of an in-memory cache."),
                &["cache"]
            ),
            jobs: family!(
                IntCounterVec,
                Opts::new(
                    "palabre_background_jobs_total",
                    "Background admin jobs, by kind and status (started, completed, failed)."
                ),
                &["kind", "status"]
            ),
            jobs_active: family!(
                IntGaugeVec,
                Opts::new(
                    "palabre_background_jobs_active",
                    "Background admin jobs running now, by kind."
                ),
                &["kind"]
            ),
            cluster_singletons: family!(
                IntGaugeVec,
                Opts::new(
                    "palabre_cluster_singleton",
                    "1 when this node holds the singleton (the work one node does for the cluster)."
                ),
                &["singleton"]
            ),
            process,
            scrape: parking_lot::Mutex::new(()),
            registry,
        }
        .with_known_labels()
    }

    /// Series of the fixed label values, at 0 until something happens: a family is then in
    /// every scrape from the start (a dashboard or an alert needs no first event to see it).
    fn with_known_labels(self) -> Self {
        for origin in ["local", "remote"] {
            self.events_persisted.with_label_values(&[origin]);
        }
        for result in ["ok", "error"] {
            self.federation_transactions.with_label_values(&[result]);
        }
        for kind in ["pdu", "edu", "ephemeral"] {
            self.federation_queue_depth.with_label_values(&[kind]);
        }
        for outcome in [
            PduOutcome::Accepted,
            PduOutcome::AlreadyKnown,
            PduOutcome::SoftFailed,
            PduOutcome::Rejected,
        ] {
            self.federation_incoming_pdus
                .with_label_values(&[outcome.label()]);
        }
        for state in ["in_use", "idle"] {
            self.db_connections.with_label_values(&[state]);
        }
        for cache in [CACHE_TOKENS, CACHE_ROOMS] {
            self.cache_hits.with_label_values(&[cache]);
            self.cache_misses.with_label_values(&[cache]);
            self.cache_size.with_label_values(&[cache]);
        }
        self
    }

    /// Makes the series of a background job kind (at 0 until a job of that kind runs).
    pub fn job_kind(&self, kind: &str) {
        for status in ["started", "completed", "failed"] {
            self.jobs.with_label_values(&[kind, status]);
        }
        self.jobs_active.with_label_values(&[kind]);
    }

    /// One answered HTTP request.
    pub fn http_request(&self, method: &str, route: &str, status: u16, seconds: f64) {
        self.http_requests
            .with_label_values(&[method, route, &status.to_string()])
            .inc();
        self.http_duration
            .with_label_values(&[method, route])
            .observe(seconds);
    }

    /// Counts a request in flight until the guard is dropped (answered or abandoned).
    pub fn in_flight(&self) -> GaugeGuard {
        GaugeGuard::new(self.http_in_flight.clone())
    }

    /// Counts a waiting `/sync` until the guard is dropped.
    pub fn long_poll(&self) -> GaugeGuard {
        GaugeGuard::new(self.sync_long_polls.clone())
    }

    /// One event write: `local` and `remote` events, in `seconds`.
    pub fn events_written(&self, local: u64, remote: u64, seconds: f64) {
        if local > 0 {
            self.events_persisted
                .with_label_values(&["local"])
                .inc_by(local);
        }
        if remote > 0 {
            self.events_persisted
                .with_label_values(&["remote"])
                .inc_by(remote);
        }
        self.persist_duration.observe(seconds);
    }

    pub fn incoming_pdus(&self, outcome: PduOutcome, n: u64) {
        if n > 0 {
            self.federation_incoming_pdus
                .with_label_values(&[outcome.label()])
                .inc_by(n);
        }
    }

    pub fn outgoing_transaction(&self, ok: bool) {
        self.federation_transactions
            .with_label_values(&[if ok { "ok" } else { "error" }])
            .inc();
    }

    /// A cache lookup: `hit` or not.
    pub fn cache_lookup(&self, cache: &'static str, hit: bool) {
        if hit {
            self.cache_hits.with_label_values(&[cache]).inc();
        } else {
            self.cache_misses.with_label_values(&[cache]).inc();
        }
    }

    /// A background job started; the guard counts it active until dropped.
    pub fn job_started(&self, kind: &str) -> GaugeGuard {
        self.jobs.with_label_values(&[kind, "started"]).inc();
        GaugeGuard::new(self.jobs_active.with_label_values(&[kind]))
    }

    pub fn job_ended(&self, kind: &str, ok: bool) {
        let status = if ok { "completed" } else { "failed" };
        self.jobs.with_label_values(&[kind, status]).inc();
    }

    /// Every family in the Prometheus text format (version 0.0.4), the process's figures read
    /// first. The gauges sampled from the services are set by the caller before.
    pub fn render(&self) -> String {
        let _one = self.scrape.lock();
        self.process.sample();
        let mut out = vec![];
        if let Err(e) = TextEncoder::new().encode(&self.registry.gather(), &mut out) {
            tracing::warn!(error = %e, "encoding metrics");
        }
        String::from_utf8(out).unwrap_or_default()
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

/// The content type of [`Metrics::render`]'s text.
pub const CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

/// Decrements its gauge when dropped (a finished or cancelled request, job or long-poll).
pub struct GaugeGuard(IntGauge);

impl GaugeGuard {
    fn new(g: IntGauge) -> Self {
        g.inc();
        Self(g)
    }
}

impl Drop for GaugeGuard {
    fn drop(&mut self) {
        self.0.dec();
    }
}

impl Process {
    fn sample(&self) {
        self.uptime.set(self.started.elapsed().as_secs_f64());
        let Some(p) = proc_self() else { return };
        let cpu = p.cpu_seconds - self.cpu_seconds.get();
        if cpu > 0.0 {
            self.cpu_seconds.inc_by(cpu);
        }
        self.resident_bytes.set(p.resident_bytes);
        self.open_fds.set(p.open_fds);
        self.start_time.set(p.start_time);
    }
}

/// What `/proc` says of this process.
struct ProcSelf {
    cpu_seconds: f64,
    resident_bytes: i64,
    open_fds: i64,
    start_time: f64,
}

/// Reads `/proc/self/stat` (CPU ticks, start time), `/proc/self/status` (VmRSS),
/// `/proc/self/fd` and `/proc/stat` (boot time). None where there is no `/proc` (not Linux).
fn proc_self() -> Option<ProcSelf> {
    let stat = std::fs::read_to_string("/proc/self/stat").ok()?;
    // The command name (field 2) is in parentheses and may hold spaces: fields after it.
    let after = stat.rsplit_once(')')?.1;
    let fields: Vec<&str> = after.split_whitespace().collect();
    // Field 3 (state) is fields[0]: utime is field 14, stime 15, starttime 22.
    let field = |n: usize| fields.get(n - 3).and_then(|f| f.parse::<f64>().ok());
    // SAFETY: sysconf only reads a system constant.
    let ticks = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    let ticks = if ticks > 0 { ticks as f64 } else { 100.0 };
    let cpu_seconds = (field(14)? + field(15)?) / ticks;
    let boot = std::fs::read_to_string("/proc/stat")
        .ok()?
        .lines()
        .find_map(|l| l.strip_prefix("btime "))
        .and_then(|v| v.trim().parse::<f64>().ok())?;
    let start_time = boot + field(22)? / ticks;
    let resident_bytes = std::fs::read_to_string("/proc/self/status")
        .ok()?
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<i64>().ok())?
        * 1024;
    // Counting the entries opens one more descriptor for the listing itself.
    let open_fds = std::fs::read_dir("/proc/self/fd").ok()?.count() as i64 - 1;
    Some(ProcSelf {
        cpu_seconds,
        resident_bytes,
        open_fds: open_fds.max(0),
        start_time,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_every_family_with_its_prefix() {
        let m = Metrics::new();
        m.http_request("GET", "/health", 200, 0.002);
        m.events_written(2, 1, 0.001);
        let text = m.render();
        assert!(text.contains("palabre_build_info{version=\""), "{text}");
        assert!(
            text.contains(
                "palabre_http_requests_total{method=\"GET\",route=\"/health\",status=\"200\"} 1"
            ),
            "{text}"
        );
        assert!(text.contains("palabre_events_persisted_total{origin=\"local\"} 2"));
        for line in text.lines().filter(|l| !l.starts_with('#')) {
            assert!(line.starts_with("palabre_"), "{line}");
        }
        #[cfg(target_os = "linux")]
        assert!(text.contains("palabre_process_resident_memory_bytes "));
    }

    #[test]
    fn guards_give_back_what_they_took() {
        let m = Metrics::new();
        {
            let _a = m.in_flight();
            let _b = m.in_flight();
            assert_eq!(m.http_in_flight.get(), 2);
        }
        assert_eq!(m.http_in_flight.get(), 0);
    }
}
