//! Who is calling and how they prove it: the types every area and the API share (the access
//! token's user and device, and the user-interactive auth data of a request body).

use ruma::OwnedUserId;

use crate::{Error, Result};
use serde::Deserialize;

/// Who is calling: resolved from the access token.
#[derive(Debug, Clone)]
pub struct Requester {
    pub user_id: OwnedUserId,
    pub device_id: String,
}

impl Requester {
    /// The "only your own" rule of the endpoints under `/user/{userId}/…` (account data, tags,
    /// filters, presence, typing, OpenID tokens): `user`, from the path, must be the caller.
    /// A path that is no user ID is `M_INVALID_PARAM`, another user `M_FORBIDDEN` with
    /// `refusal` as the message.
    pub fn only_own(&self, user: &str, refusal: &str) -> Result<()> {
        if crate::util::parse_user_id(user)? != self.user_id {
            return Err(Error::forbidden(refusal));
        }
        Ok(())
    }
}

#[derive(Debug, Deserialize, Default)]
pub struct AuthData {
    #[serde(rename = "type")]
    pub kind: Option<String>,
    pub session: Option<String>,
    pub token: Option<String>,
    pub password: Option<String>,
    pub identifier: Option<Identifier>,
    pub user: Option<String>,
    /// `m.login.email.identity` (`threepidCreds` is the old spelling).
    #[serde(alias = "threepidCreds")]
    pub threepid_creds: Option<ThreepidCreds>,
    /// Deprecated top-level third-party identifier of `/login`.
    pub medium: Option<String>,
    pub address: Option<String>,
}

#[derive(Debug, Deserialize, Default, Clone)]
pub struct Identifier {
    #[serde(rename = "type")]
    pub kind: String,
    pub user: Option<String>,
    /// `m.id.thirdparty`.
    pub medium: Option<String>,
    pub address: Option<String>,
}

/// `threepid_creds` of the `m.login.email.identity` stage, and the body of `/account/3pid/add`.
#[derive(Debug, Clone, Deserialize, serde::Serialize, PartialEq, Eq)]
pub struct ThreepidCreds {
    pub sid: String,
    pub client_secret: String,
}
