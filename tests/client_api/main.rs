//! Black-box tests of the client-server API: each test starts a real server on an ephemeral
//! port and talks HTTP to it, once on SQLite and once on PostgreSQL.

mod common;
mod smtp_sink;

mod accounts;
mod crash;
mod directory;
mod durability_input;
mod e2ee;
mod ephemeral;
mod errors;
mod federation;
mod federation_invites;
mod federation_queries;
mod federation_reads;
mod knock;
mod mailer;
mod media;
mod messaging;
mod openid;
mod push;
mod relations;
mod reports;
mod rooms;
mod search;
mod security_aliases;
mod security_auth;
mod security_creators;
mod security_inbound;
mod security_inbound_limits;
mod security_inbound_tokens;
mod security_keys;
mod security_media;
mod security_net;
mod security_profiles;
mod security_rooms;
mod signatures;
mod spaces;
mod sync;
mod tags;
mod tchap_accounts;
mod tchap_annuaire;
mod tchap_rooms;
mod tchap_validity;
mod tls;
mod upgrade;
