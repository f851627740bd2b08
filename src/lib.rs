//! Palabre: a Matrix homeserver for state administrations.
//!
//! Layers (see docs/architecture.md): `api` translates HTTP to service calls, `services` hold the
//! rules, `store` is the only place with SQL.

pub mod api;
pub mod config;
pub mod error;
pub mod metrics;
pub mod server;
pub mod services;
pub mod store;
pub mod tls;
pub mod util;

pub use error::{Error, Result};
