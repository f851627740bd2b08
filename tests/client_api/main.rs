//! Black-box tests of the client-server API: each test starts a real server on an ephemeral
//! port and talks HTTP to it, once on SQLite and once on PostgreSQL.

mod common;

mod accounts;
mod crash;
mod directory;
mod e2ee;
mod ephemeral;
mod errors;
mod media;
mod messaging;
mod push;
mod relations;
mod rooms;
mod search;
mod signatures;
mod sync;
mod tls;
