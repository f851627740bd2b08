//! The `palabre` command: serve, migrate, user create, generate-config, check-config.

use std::path::PathBuf;

use clap::{Parser, Subcommand};
use palabre::{config::Config, services::Services};

#[derive(Parser)]
#[command(
    name = "palabre",
    version,
    about = "A Matrix homeserver for state administrations"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the homeserver.
    Serve {
        #[arg(long, short)]
        config: Option<PathBuf>,
    },
    /// Apply database migrations and exit.
    Migrate {
        #[arg(long, short)]
        config: Option<PathBuf>,
    },
    /// Print a documented default configuration.
    GenerateConfig,
    /// Validate a configuration file (and the environment overrides).
    CheckConfig {
        #[arg(long, short)]
        config: Option<PathBuf>,
    },
    /// Ask a running server whether it is ready (exit status 0) or not (1): for Docker's
    /// `HEALTHCHECK` and scripts. Asks `--url`, else the configured `listen` address.
    Health {
        #[arg(long, short)]
        config: Option<PathBuf>,
        /// The server's base URL (default: `http://` + `listen`, a wildcard address read as
        /// loopback).
        #[arg(long)]
        url: Option<String>,
    },
    /// Manage users.
    User {
        #[command(subcommand)]
        command: UserCommand,
    },
}

#[derive(Subcommand)]
enum UserCommand {
    /// Create a local user.
    Create {
        localpart: String,
        #[arg(long)]
        password: String,
        #[arg(long)]
        admin: bool,
        #[arg(long, short)]
        config: Option<PathBuf>,
    },
}

/// Loads the configuration and checks it the way the services will read it.
fn load(path: Option<&std::path::Path>) -> anyhow::Result<Config> {
    let cfg = Config::load(path)?;
    palabre::services::check_config(&cfg)?;
    Ok(cfg)
}

fn init_logging(cfg: &Config) {
    let filter = tracing_subscriber::EnvFilter::try_new(&cfg.log.filter)
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    // Colour codes only on a terminal: a log file or journald would get escape sequences.
    let ansi = std::io::IsTerminal::is_terminal(&std::io::stdout());
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(ansi);
    if cfg.log.format == "json" {
        builder.json().init();
    } else {
        builder.init();
    }
}

fn main() -> anyhow::Result<()> {
    tune_allocator();
    let cli = Cli::parse();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    rt.block_on(async move {
        match cli.command {
            Command::GenerateConfig => {
                print!("{}", include_str!("../config/palabre.example.toml"));
                Ok(())
            }
            Command::CheckConfig { config } => {
                let cfg = load(config.as_deref())?;
                println!(
                    "configuration OK: server_name={} database={}",
                    cfg.server_name,
                    redact_url(&cfg.database_url())
                );
                Ok(())
            }
            Command::Migrate { config } => {
                let cfg = load(config.as_deref())?;
                init_logging(&cfg);
                let db = palabre::store::Db::connect(&cfg.database_url(), 2).await?;
                let applied = db.migrate().await?;
                println!("applied {} migration(s): {:?}", applied.len(), applied);
                Ok(())
            }
            Command::User {
                command:
                    UserCommand::Create {
                        localpart,
                        password,
                        admin,
                        config,
                    },
            } => {
                let cfg = load(config.as_deref())?;
                init_logging(&cfg);
                let services = Services::start(cfg).await?;
                let user = services
                    .accounts()
                    .create_user_cli(&localpart, &password, admin)
                    .await
                    .map_err(|e| anyhow::anyhow!("{e}"))?;
                println!("created {user}{}", if admin { " (admin)" } else { "" });
                Ok(())
            }
            Command::Health { config, url } => {
                let base = match url {
                    Some(u) => u,
                    None => local_url(&load(config.as_deref())?.listen),
                };
                check_health(&base).await
            }
            Command::Serve { config } => {
                let cfg = load(config.as_deref())?;
                init_logging(&cfg);
                let running = palabre::server::start(cfg).await?;
                shutdown_signal().await;
                tracing::info!("shutting down");
                running.stop().await;
                Ok(())
            }
        }
    })
}

async fn shutdown_signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        let mut term =
            match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                Ok(t) => t,
                Err(_) => return ctrl_c.await.unwrap_or(()),
            };
        tokio::select! {
            _ = ctrl_c => {},
            _ = term.recv() => {},
        }
    }
    #[cfg(not(unix))]
    ctrl_c.await.unwrap_or(());
}

/// The URL this machine reaches a listener on: `0.0.0.0` and `[::]` are read as loopback.
fn local_url(listen: &str) -> String {
    let addr = match listen.rsplit_once(':') {
        Some(("0.0.0.0", port)) => format!("127.0.0.1:{port}"),
        Some(("[::]", port)) => format!("[::1]:{port}"),
        _ => listen.to_owned(),
    };
    format!("http://{addr}")
}

async fn check_health(base: &str) -> anyhow::Result<()> {
    let url = format!("{}/health/ready", base.trim_end_matches('/'));
    let client = reqwest::Client::builder()
        .timeout(std::time::Duration::from_secs(5))
        .build()?;
    let resp = client
        .get(&url)
        .send()
        .await
        .map_err(|e| anyhow::anyhow!("{url}: {e}"))?;
    let status = resp.status();
    let body = resp.text().await.unwrap_or_default();
    if status.is_success() {
        println!("{body}");
        Ok(())
    } else {
        anyhow::bail!("{url}: {status} {body}")
    }
}

fn redact_url(url: &str) -> String {
    match (url.find("://"), url.rfind('@')) {
        (Some(s), Some(a)) if a > s => format!("{}://***{}", &url[..s], &url[a..]),
        _ => url.to_owned(),
    }
}

/// glibc raises its mmap threshold after large blocks are freed, after which big transient
/// buffers (argon2's 19 MiB per password hash) come from the heap and are never given back.
/// A fixed threshold keeps them mmapped, so they return to the system when freed.
fn tune_allocator() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: mallopt only sets allocator parameters; called before any other thread exists.
    unsafe {
        libc::mallopt(libc::M_MMAP_THRESHOLD, 256 * 1024);
    }
}
