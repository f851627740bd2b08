//! Third-party networks (spec: Third-party networks): the protocols that application services
//! bridge, and the users and locations they know. Palabre hosts no application service, so no
//! network is bridged: no protocol is known and every lookup finds nothing — what Synapse
//! answers with no application service registered.

use serde_json::{Map, Value};

use crate::{Error, Result};

/// `GET /thirdparty/protocols`: protocol name → description; none.
pub fn protocols() -> Map<String, Value> {
    Map::new()
}

/// `GET /thirdparty/protocol/{protocol}`: no protocol is known, so 404 `M_NOT_FOUND`.
pub fn protocol(name: &str) -> Result<Value> {
    match protocols().remove(name) {
        Some(p) => Ok(p),
        None => Err(Error::not_found("Unknown protocol")),
    }
}

/// `GET /thirdparty/{user,location}[/{protocol}]`: the users or locations the bridges of
/// `protocol` (all bridges when `None`) return for the query; none.
pub fn lookup(_kind: Kind, _protocol: Option<&str>) -> Vec<Value> {
    vec![]
}

/// What a third-party lookup looks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    User,
    Location,
}
