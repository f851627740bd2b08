//! Reporting content: users report events and rooms to the server's moderators. Reports are
//! stored for the admin API; nothing is forwarded.

use crate::services::rooms::RoomsFace;
use ruma::{RoomId, UserId};

use crate::{util, Error, Result};

/// Longest report reason, in bytes.
pub const MAX_REASON_BYTES: usize = 4096;

fn check_reason(reason: Option<&str>) -> Result<()> {
    if reason.is_some_and(|r| r.len() > MAX_REASON_BYTES) {
        return Err(Error::too_large(format!(
            "The reason must be at most {MAX_REASON_BYTES} bytes"
        )));
    }
    Ok(())
}

impl RoomsFace<'_> {
    /// `POST /rooms/{id}/report/{event}`: only an event the reporter can see, in a room they
    /// are joined to; anything else is "not found" (nothing leaks about rooms or events).
    pub async fn report_event(
        self,
        user: &UserId,
        room: &RoomId,
        event_id: &str,
        reason: Option<&str>,
        score: Option<i64>,
    ) -> Result<()> {
        check_reason(reason)?;
        if score.is_some_and(|s| !(-100..=0).contains(&s)) {
            return Err(Error::invalid_param("score must be between -100 and 0"));
        }
        self.ratelimit
            .check("report", user.as_str(), self.config.rate_limits.message)?;
        let not_found = || Error::not_found("Event not found, or you cannot see it");
        let joined = self
            .db
            .membership(user.as_str(), room.as_str())
            .await?
            .is_some_and(|m| m.membership == "join");
        if !joined {
            return Err(not_found());
        }
        let row = self
            .db
            .get_event(event_id)
            .await?
            .filter(|r| r.room_id == room.as_str())
            .ok_or_else(not_found)?;
        if self.filter_visible(user, vec![row]).await?.is_empty() {
            return Err(not_found());
        }
        self.db
            .insert_report(
                room.as_str(),
                Some(event_id),
                user.as_str(),
                reason,
                score,
                util::now_ms(),
            )
            .await?;
        tracing::info!(reporter = %user, room = %room, event = %event_id, "event reported");
        Ok(())
    }

    /// `POST /rooms/{id}/report`: any room known here; the reporter need not be a member.
    pub async fn report_room(self, user: &UserId, room: &RoomId, reason: &str) -> Result<()> {
        check_reason(Some(reason))?;
        self.ratelimit
            .check("report", user.as_str(), self.config.rate_limits.message)?;
        if self.db.room_version(room.as_str()).await?.is_none() {
            return Err(Error::not_found("Unknown room"));
        }
        self.db
            .insert_report(
                room.as_str(),
                None,
                user.as_str(),
                Some(reason),
                None,
                util::now_ms(),
            )
            .await?;
        tracing::info!(reporter = %user, room = %room, "room reported");
        Ok(())
    }
}
