//! The only place with SQL. One module per table family; every query is written once in the
//! dialect SQLite and PostgreSQL share (`$1` placeholders, `ON CONFLICT`, `RETURNING`); the few
//! differences live in [`Dialect`].
//!
//! Integers are BIGINT everywhere (booleans are 0/1) so the `Any` driver decodes them as `i64` on
//! both databases.

pub mod account_data;
pub mod admin_destinations;
pub mod admin_jobs;
pub mod admin_media;
pub mod admin_purge;
pub mod admin_rooms;
pub mod admin_users;
pub mod annuaire;
pub mod backup;
pub mod cluster;
pub mod dag;
pub mod directory;
pub mod e2ee_keys;
pub mod events;
pub mod federation;
pub mod media;
pub mod openid;
pub mod process_lock;
pub mod push;
pub mod receipts;
pub mod redactions;
pub mod registration_tokens;
pub mod relations;
pub mod remote_memberships;
pub mod reports;
pub mod rooms;
pub mod search;
pub mod sliding;
pub mod spaces;
pub mod state;
pub mod threepid_sessions;
pub mod threepids;
pub mod to_device;
pub mod users;
pub mod validity;

use std::time::Duration;

use sqlx::{
    any::{AnyConnectOptions, AnyPoolOptions, AnyRow},
    AnyPool, ConnectOptions, Executor,
};

pub type Tx = sqlx::Transaction<'static, sqlx::Any>;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Dialect {
    Sqlite,
    Postgres,
}

pub struct Db {
    pub pool: AnyPool,
    pub dialect: Dialect,
    /// SQLite has one writer: writers queue here instead of spinning on SQLITE_BUSY.
    write_lock: tokio::sync::Mutex<()>,
    /// Where write transactions record their timings (set once the metrics exist).
    timers: std::sync::OnceLock<crate::metrics::DbTimers>,
}

pub struct WriteTx<'a> {
    pub tx: Tx,
    _guard: Option<tokio::sync::MutexGuard<'a, ()>>,
    started: std::time::Instant,
    timers: Option<&'a crate::metrics::DbTimers>,
}

impl WriteTx<'_> {
    pub async fn commit(self) -> Result<(), sqlx::Error> {
        let res = self.tx.commit().await;
        if let Some(t) = self.timers {
            t.write_transaction
                .observe(self.started.elapsed().as_secs_f64());
        }
        res
    }
}

/// The migration files of a dialect, in order (both folders hold the same names).
macro_rules! migrations {
    ($dir:literal: $($name:literal),* $(,)?) => {
        &[$(($name, include_str!(concat!("../../migrations/", $dir, "/", $name, ".sql")))),*]
    };
}

const SQLITE_MIGRATIONS: &[(&str, &str)] = migrations!("sqlite": "0001_init", "0002_current_state_stream", "0003_refresh_rotation", "0004_e2ee", "0005_media", "0006_receipts", "0007_relations_push", "0008_directory_search", "0009_reports_openid", "0010_federation", "0011_remote_cache", "0012_remote_memberships", "0013_backfill", "0014_edu_outbox", "0015_threepids", "0016_threepid_sessions", "0018_account_validity", "0019_annuaire", "0020_pending_redactions", "0021_signature_changes", "0024_admin", "0025_registration_tokens", "0026_media_admin", "0027_destinations", "0028_quarantine_changes", "0029_cluster", "0030_profile_fields", "0031_sliding_sync");
const POSTGRES_MIGRATIONS: &[(&str, &str)] = migrations!("postgres": "0001_init", "0002_current_state_stream", "0003_refresh_rotation", "0004_e2ee", "0005_media", "0006_receipts", "0007_relations_push", "0008_directory_search", "0009_reports_openid", "0010_federation", "0011_remote_cache", "0012_remote_memberships", "0013_backfill", "0014_edu_outbox", "0015_threepids", "0016_threepid_sessions", "0018_account_validity", "0019_annuaire", "0020_pending_redactions", "0021_signature_changes", "0024_admin", "0025_registration_tokens", "0026_media_admin", "0027_destinations", "0028_quarantine_changes", "0029_cluster", "0030_profile_fields", "0031_sliding_sync");

/// The advisory lock key under which a PostgreSQL node applies migrations.
const MIGRATION_LOCK: i64 = 0x7061_6c61_6272_6501;

impl Db {
    pub async fn connect(url: &str, max_connections: u32) -> anyhow::Result<Self> {
        sqlx::any::install_default_drivers();
        let dialect = if url.starts_with("sqlite:") {
            Dialect::Sqlite
        } else if url.starts_with("postgres:") || url.starts_with("postgresql:") {
            Dialect::Postgres
        } else {
            anyhow::bail!("database_url must start with sqlite:// or postgres://");
        };
        let url = match dialect {
            Dialect::Sqlite if !url.contains('?') => format!("{url}?mode=rwc"),
            _ => url.to_owned(),
        };
        if dialect == Dialect::Sqlite {
            if let Some(parent) = std::path::Path::new(
                url.trim_start_matches("sqlite://")
                    .split('?')
                    .next()
                    .unwrap_or(""),
            )
            .parent()
            {
                if !parent.as_os_str().is_empty() {
                    std::fs::create_dir_all(parent)?;
                }
            }
        }
        let opts: AnyConnectOptions = url.parse()?;
        let opts = opts.log_statements(tracing::log::LevelFilter::Trace);
        let pool = AnyPoolOptions::new()
            .max_connections(max_connections.max(2))
            .acquire_timeout(Duration::from_secs(30))
            .after_connect(move |conn, _| {
                Box::pin(async move {
                    if dialect == Dialect::Sqlite {
                        // WAL + synchronous=NORMAL: a process crash loses nothing committed; a
                        // power loss may lose the last transactions (docs/operations.md).
                        conn.execute("PRAGMA journal_mode=WAL").await?;
                        conn.execute("PRAGMA synchronous=NORMAL").await?;
                        conn.execute("PRAGMA busy_timeout=10000").await?;
                        conn.execute("PRAGMA foreign_keys=OFF").await?;
                        conn.execute("PRAGMA cache_size=-16000").await?;
                    }
                    Ok(())
                })
            })
            .connect_with(opts)
            .await?;
        Ok(Self {
            pool,
            dialect,
            write_lock: tokio::sync::Mutex::new(()),
            timers: std::sync::OnceLock::new(),
        })
    }

    /// Applies the migrations not applied yet, each in its own transaction. On PostgreSQL the
    /// nodes of a cluster may start together: one of them migrates while the others wait on an
    /// advisory lock (held by this connection's session, so a node that dies mid-way frees it).
    pub async fn migrate(&self) -> anyhow::Result<Vec<String>> {
        use sqlx::Connection;
        let list = match self.dialect {
            Dialect::Sqlite => SQLITE_MIGRATIONS,
            Dialect::Postgres => POSTGRES_MIGRATIONS,
        };
        let mut conn = self.pool.acquire().await?;
        if self.dialect == Dialect::Postgres {
            sqlx::query("SELECT pg_advisory_lock($1)")
                .bind(MIGRATION_LOCK)
                .execute(&mut *conn)
                .await?;
        }
        let res = async {
            sqlx::query(
                "CREATE TABLE IF NOT EXISTS schema_migrations (name TEXT PRIMARY KEY, applied_ts BIGINT NOT NULL)",
            )
            .execute(&mut *conn)
            .await?;
            let mut applied = vec![];
            for (name, sql) in list {
                let mut tx = conn.begin().await?;
                let done: Option<(String,)> =
                    sqlx::query_as("SELECT name FROM schema_migrations WHERE name = $1")
                        .bind(*name)
                        .fetch_all(&mut *tx)
                        .await
                        .map(first)?;
                if done.is_some() {
                    tx.rollback().await?;
                    continue;
                }
                let without_comments: String = sql
                    .lines()
                    .filter(|l| !l.trim_start().starts_with("--"))
                    .collect::<Vec<_>>()
                    .join("\n");
                for stmt in without_comments
                    .split(';')
                    .map(str::trim)
                    .filter(|s| !s.is_empty())
                {
                    sqlx::query(stmt).execute(&mut *tx).await?;
                }
                sqlx::query("INSERT INTO schema_migrations (name, applied_ts) VALUES ($1, $2)")
                    .bind(*name)
                    .bind(crate::util::now_ms())
                    .execute(&mut *tx)
                    .await?;
                tx.commit().await?;
                applied.push((*name).to_owned());
            }
            anyhow::Ok(applied)
        }
        .await;
        if self.dialect == Dialect::Postgres {
            // On an error the connection is closed rather than returned with the lock held.
            let unlocked = sqlx::query("SELECT pg_advisory_unlock($1)")
                .bind(MIGRATION_LOCK)
                .execute(&mut *conn)
                .await;
            if res.is_err() || unlocked.is_err() {
                let _ = conn.detach().close().await;
            }
        }
        res
    }

    /// Starts a write transaction (queued behind other writers on SQLite).
    pub async fn begin_write(&self) -> Result<WriteTx<'_>, sqlx::Error> {
        let started = std::time::Instant::now();
        let guard = match self.dialect {
            Dialect::Sqlite => Some(self.write_lock.lock().await),
            Dialect::Postgres => None,
        };
        let asked = std::time::Instant::now();
        let tx = self.pool.begin().await?;
        let timers = self.timers.get();
        if let Some(t) = timers {
            t.acquire.observe(asked.elapsed().as_secs_f64());
        }
        Ok(WriteTx {
            tx,
            _guard: guard,
            started,
            timers,
        })
    }

    /// Where write transactions record their timings from now on (once).
    pub fn set_timers(&self, timers: crate::metrics::DbTimers) {
        let _ = self.timers.set(timers);
    }

    pub async fn close(&self) {
        self.pool.close().await;
    }

    /// One round trip to the database (readiness).
    pub async fn ping(&self) -> sqlx::Result<()> {
        sqlx::query("SELECT 1").execute(&self.pool).await?;
        Ok(())
    }
}

/// Builds `$start, $start+1, …` placeholders for an `IN (…)` list.
pub fn placeholders(start: usize, n: usize) -> String {
    (start..start + n)
        .map(|i| format!("${i}"))
        .collect::<Vec<_>>()
        .join(",")
}

/// Keys per statement of [`Db::select_in`]: under SQLite's 32 766 and PostgreSQL's 65 535
/// parameters, and big enough that a big room's state is a few statements (the recursive
/// auth-chain walks overlap from chunk to chunk: fewer, bigger chunks walk less).
pub const IN_CHUNK: usize = 10_000;

/// A parameter bound before the `IN (…)` keys of [`Db::select_in`].
#[derive(Clone, Copy)]
pub enum Bind<'a> {
    Text(&'a str),
    Int(i64),
}

/// Where [`select_in_on`] runs: the pool, or the caller's transaction.
enum On<'a> {
    Pool(&'a AnyPool),
    Tx(&'a mut Tx),
}

/// The one `IN (…)` query over any number of (text) keys. `sql` holds `{in}` where the placeholders of
/// the keys go; they are numbered after the `fixed` parameters (`$1…$n`, bound first, in order).
/// One statement per [`IN_CHUNK`] keys; the rows of all of them, in statement order (a query
/// that orders or groups its rows does so per chunk only: the caller sorts or merges if it matters).
async fn select_in_on<K: AsRef<str> + Sync>(
    mut on: On<'_>,
    sql: &str,
    fixed: &[Bind<'_>],
    keys: &[K],
) -> sqlx::Result<Vec<AnyRow>> {
    let mut out = vec![];
    for chunk in keys.chunks(IN_CHUNK) {
        let statement = sql.replace("{in}", &placeholders(fixed.len() + 1, chunk.len()));
        let mut q = sqlx::query(&statement);
        for b in fixed {
            q = match *b {
                Bind::Text(t) => q.bind(t),
                Bind::Int(i) => q.bind(i),
            };
        }
        for k in chunk {
            q = q.bind(k.as_ref());
        }
        out.extend(match &mut on {
            On::Pool(pool) => q.fetch_all(*pool).await?,
            On::Tx(tx) => q.fetch_all(&mut ***tx).await?,
        });
    }
    Ok(out)
}

/// Rows decoded as `T` (a tuple, or a `FromRow` struct).
fn decoded<T: for<'r> sqlx::FromRow<'r, AnyRow>>(rows: Vec<AnyRow>) -> sqlx::Result<Vec<T>> {
    rows.iter().map(T::from_row).collect()
}

impl Db {
    /// [`select_in_on`] on the pool, each row decoded as `T`.
    pub async fn select_in<T, K>(
        &self,
        sql: &str,
        fixed: &[Bind<'_>],
        keys: &[K],
    ) -> sqlx::Result<Vec<T>>
    where
        T: for<'r> sqlx::FromRow<'r, AnyRow>,
        K: AsRef<str> + Sync,
    {
        decoded(select_in_on(On::Pool(&self.pool), sql, fixed, keys).await?)
    }

    /// [`select_in_on`] on the pool, the rows as they come (for a hand-written row mapper).
    pub async fn select_in_rows<K: AsRef<str> + Sync>(
        &self,
        sql: &str,
        fixed: &[Bind<'_>],
        keys: &[K],
    ) -> sqlx::Result<Vec<AnyRow>> {
        select_in_on(On::Pool(&self.pool), sql, fixed, keys).await
    }
}

/// [`select_in_on`] in the caller's transaction (also for `DELETE … RETURNING`).
pub async fn select_in_tx<T, K>(
    tx: &mut Tx,
    sql: &str,
    fixed: &[Bind<'_>],
    keys: &[K],
) -> sqlx::Result<Vec<T>>
where
    T: for<'r> sqlx::FromRow<'r, AnyRow>,
    K: AsRef<str> + Sync,
{
    decoded(select_in_on(On::Tx(tx), sql, fixed, keys).await?)
}

/// Appends `($start,…),(…)`: `n` tuples of `width` placeholders numbered from `start`.
pub fn push_rows_from(sql: &mut String, start: usize, n: usize, width: usize) {
    use std::fmt::Write;
    for i in 0..n {
        if i > 0 {
            sql.push(',');
        }
        sql.push('(');
        for j in 0..width {
            if j > 0 {
                sql.push(',');
            }
            let _ = write!(sql, "${}", start + i * width + j);
        }
        sql.push(')');
    }
}

// sqlx's SQLite driver resets a statement on its worker thread only once its rows are fully
// read; `fetch_one`/`fetch_optional` drop the stream early and can leave the connection on a
// stale WAL snapshot (sqlx issue #2543: reads missing rows committed just before). Every read
// here therefore reads its rows to the end, through these two helpers.

/// The first row of a fully-read result, if any.
pub fn first<T>(rows: Vec<T>) -> Option<T> {
    rows.into_iter().next()
}

/// The first row of a fully-read result, or `RowNotFound`.
pub fn one<T>(rows: Vec<T>) -> Result<T, sqlx::Error> {
    rows.into_iter().next().ok_or(sqlx::Error::RowNotFound)
}
