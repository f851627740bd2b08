//! Federation destinations as Synapse's admin API shows them (`/v1/federation/destinations`):
//! the retry state the federation sender persists for every server it sent to or retries, the
//! rooms sent to each, and the reset of a backoff. Also the admin's permission for a user to
//! replace its cross-signing keys without UIA for a while (Synapse's
//! `_allow_cross_signing_replacement_without_uia`).

use axum::http::StatusCode;
use ruma::UserId;
use serde_json::{json, Value};

use super::{backwards, AdminFace, Page};
use crate::{
    store::admin_destinations::{DestinationOrder, DestinationQuery, DestinationRow},
    util, Error, Result,
};

/// How long the admin's permission to replace cross-signing keys without UIA lasts (Synapse's).
const REPLACEMENT_PERIOD_MS: i64 = 10 * 60 * 1000;

/// The query of `GET /_synapse/admin/v1/federation/destinations`.
#[derive(Debug, Default, Clone)]
pub struct DestinationListParams {
    pub from: Option<i64>,
    pub limit: Option<i64>,
    pub order_by: Option<String>,
    pub dir: Option<String>,
    /// Substring of the server name.
    pub destination: Option<String>,
}

fn destination_json(r: &DestinationRow) -> Value {
    json!({
        "destination": r.destination,
        "retry_last_ts": r.retry_last_ts,
        "retry_interval": r.retry_interval,
        "failure_ts": r.failure_ts,
        "last_successful_stream_ordering": r.last_successful_stream_ordering,
    })
}

fn unknown_destination() -> Error {
    Error::not_found("Unknown destination")
}

impl AdminFace<'_> {
    /// `GET /_synapse/admin/v1/federation/destinations`.
    pub async fn list_destinations(self, p: &DestinationListParams) -> Result<Value> {
        let page = Page::new(p.from, p.limit, 100)?;
        let order = match p.order_by.as_deref() {
            None => DestinationOrder::Destination,
            Some(o) => DestinationOrder::parse(o).ok_or_else(|| {
                Error::invalid_param(
                    "Query parameter \"order_by\" must be one of [destination, retry_last_ts, \
                     retry_interval, failure_ts, last_successful_stream_ordering]",
                )
            })?,
        };
        let (rows, total) = self
            .db
            .list_destinations(&DestinationQuery {
                from: page.from,
                limit: page.limit,
                order,
                backwards: backwards(p.dir.as_deref())?,
                contains: p.destination.as_deref().filter(|d| !d.is_empty()),
            })
            .await?;
        let mut out = json!({
            "destinations": rows.iter().map(destination_json).collect::<Vec<_>>(),
            "total": total,
        });
        if let Some(next) = page.next_token(rows.len(), total) {
            out["next_token"] = next;
        }
        Ok(out)
    }

    async fn destination_row(self, dest: &str) -> Result<DestinationRow> {
        self.db
            .destination(dest)
            .await?
            .ok_or_else(unknown_destination)
    }

    /// `GET /_synapse/admin/v1/federation/destinations/{destination}`.
    pub async fn destination(self, dest: &str) -> Result<Value> {
        Ok(destination_json(&self.destination_row(dest).await?))
    }

    /// `GET /_synapse/admin/v1/federation/destinations/{destination}/rooms`.
    pub async fn destination_rooms(
        self,
        dest: &str,
        from: Option<i64>,
        limit: Option<i64>,
        dir: Option<&str>,
    ) -> Result<Value> {
        self.destination_row(dest).await?;
        let page = Page::new(from, limit, 100)?;
        let (rows, total) = self
            .db
            .destination_rooms(dest, page.from, page.limit, backwards(dir)?)
            .await?;
        let rooms: Vec<Value> = rows
            .iter()
            .map(|(room, so)| json!({ "room_id": room, "stream_ordering": so }))
            .collect();
        let mut out = json!({ "rooms": rooms, "total": total });
        if let Some(next) = page.next_token(rows.len(), total) {
            out["next_token"] = next;
        }
        Ok(out)
    }

    /// `POST /_synapse/admin/v1/federation/destinations/{destination}/reset_connection`: ends the
    /// backoff and has the sender retry at once; 400 when the destination is not in backoff.
    pub async fn reset_destination_connection(self, dest: &str) -> Result<()> {
        let row = self.destination_row(dest).await?;
        if row.retry_last_ts == 0 {
            return Err(Error::new(
                StatusCode::BAD_REQUEST,
                "M_UNKNOWN",
                "The retry timing does not need to be reset for this destination.",
            ));
        }
        self.federation().reset_destination(dest).await
    }

    /// `POST /_synapse/admin/v1/users/{user_id}/_allow_cross_signing_replacement_without_uia`:
    /// for the next 10 minutes the user may upload new cross-signing keys without UIA.
    pub async fn allow_cross_signing_replacement(self, user: &UserId) -> Result<Value> {
        self.user_row(user).await?;
        let before = util::now_ms() + REPLACEMENT_PERIOD_MS;
        if !self
            .db
            .allow_cross_signing_replacement(user.as_str(), before)
            .await?
        {
            return Err(Error::not_found("User has no master cross-signing key"));
        }
        Ok(json!({ "updatable_without_uia_before_ms": before }))
    }
}
