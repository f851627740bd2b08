//! Registration tokens as Synapse's admin API manages them (`/v1/registration_tokens`): list
//! (by validity), create (given or generated), show, change `uses_allowed` / `expiry_time`,
//! delete. The bodies are checked as Synapse checks them: a wrong type or value is 400
//! `M_INVALID_PARAM`. The registration stage that spends them is `s.accounts()`'s.

use serde_json::{json, Map, Value};

use super::AdminFace;
use crate::{
    store::registration_tokens::{RegistrationTokenRow, TokenChanges},
    util, Error, Result,
};

/// The characters of a registration token (Synapse's).
const TOKEN_CHARS: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789._~-";

/// Longest token, given or generated.
const MAX_TOKEN: usize = 64;

/// Length of a generated token when the body gives none.
const DEFAULT_LENGTH: i64 = 16;

/// Tries at generating a token not taken yet before giving up.
const GENERATE_TRIES: usize = 3;

fn token_json(r: &RegistrationTokenRow) -> Value {
    json!({
        "token": r.token,
        "uses_allowed": r.uses_allowed,
        "pending": r.pending,
        "completed": r.completed,
        "expiry_time": r.expiry_time,
    })
}

fn not_found(token: &str) -> Error {
    Error::not_found(format!("No such registration token: {token}"))
}

/// `uses_allowed`: null or a non-negative integer (a JSON boolean or float is not one).
fn uses_allowed(v: &Value) -> Result<Option<i64>> {
    match v {
        Value::Null => Ok(None),
        Value::Number(n) if n.as_i64().is_some_and(|n| n >= 0) => Ok(n.as_i64()),
        _ => Err(Error::invalid_param(
            "uses_allowed must be a non-negative integer or null",
        )),
    }
}

/// `expiry_time`: null or an integer of milliseconds not in the past.
fn expiry_time(v: &Value, now: i64) -> Result<Option<i64>> {
    let t = match v {
        Value::Null => return Ok(None),
        Value::Number(n) => n.as_i64(),
        _ => None,
    }
    .ok_or_else(|| Error::invalid_param("expiry_time must be an integer or null"))?;
    if t < now {
        return Err(Error::invalid_param("expiry_time must not be in the past"));
    }
    Ok(Some(t))
}

/// A token given in a creation body: 1 to 64 characters of `[A-Za-z0-9._~-]`.
fn given_token(v: &Value) -> Result<String> {
    let t = v
        .as_str()
        .ok_or_else(|| Error::invalid_param("token must be a string"))?;
    if t.is_empty() || t.len() > MAX_TOKEN {
        return Err(Error::invalid_param(
            "token must not be empty and must not be longer than 64 characters",
        ));
    }
    if !t.bytes().all(|b| TOKEN_CHARS.contains(&b)) {
        return Err(Error::invalid_param(
            "token must consist only of characters matched by the regex [A-Za-z0-9._~-]",
        ));
    }
    Ok(t.to_owned())
}

/// The `length` of a token to generate: an integer from 1 to 64, 16 when absent.
fn length(v: Option<&Value>) -> Result<usize> {
    let n = match v {
        None => DEFAULT_LENGTH,
        Some(Value::Number(n)) => n
            .as_i64()
            .ok_or_else(|| Error::invalid_param("length must be an integer"))?,
        Some(_) => return Err(Error::invalid_param("length must be an integer")),
    };
    if !(1..=MAX_TOKEN as i64).contains(&n) {
        return Err(Error::invalid_param(
            "length must be greater than zero and not greater than 64",
        ));
    }
    Ok(n as usize)
}

impl AdminFace<'_> {
    /// `GET /_synapse/admin/v1/registration_tokens`: `valid` true keeps the usable tokens,
    /// false the expired or used-up ones.
    pub async fn registration_tokens(self, valid: Option<bool>) -> Result<Value> {
        let rows = self
            .db
            .list_registration_tokens(valid, util::now_ms())
            .await?;
        let list: Vec<Value> = rows.iter().map(token_json).collect();
        Ok(json!({ "registration_tokens": list }))
    }

    /// `GET /_synapse/admin/v1/registration_tokens/{token}`.
    pub async fn registration_token(self, token: &str) -> Result<Value> {
        let row = self.db.registration_token(token).await?;
        row.as_ref().map(token_json).ok_or_else(|| not_found(token))
    }

    /// `POST /_synapse/admin/v1/registration_tokens/new`: the body's `token`, or one of
    /// `length` characters generated; `uses_allowed` and `expiry_time` default to null. A token
    /// that exists already is 400 `M_INVALID_PARAM`, as with Synapse.
    pub async fn create_registration_token(self, body: &Map<String, Value>) -> Result<Value> {
        let now = util::now_ms();
        let given = body.get("token").map(given_token).transpose()?;
        let length = match given {
            Some(_) => 0,
            None => length(body.get("length"))?,
        };
        let uses = uses_allowed(body.get("uses_allowed").unwrap_or(&Value::Null))?;
        let expiry = expiry_time(body.get("expiry_time").unwrap_or(&Value::Null), now)?;
        let token = match given {
            Some(t) => {
                if !self.db.insert_registration_token(&t, uses, expiry).await? {
                    return Err(Error::invalid_param(format!("Token already exists: {t}")));
                }
                t
            }
            None => self.generate_token(length, uses, expiry).await?,
        };
        Ok(json!({
            "token": token,
            "uses_allowed": uses,
            "pending": 0,
            "completed": 0,
            "expiry_time": expiry,
        }))
    }

    async fn generate_token(
        self,
        length: usize,
        uses: Option<i64>,
        expiry: Option<i64>,
    ) -> Result<String> {
        for _ in 0..GENERATE_TRIES {
            let t = util::random_from(TOKEN_CHARS, length);
            if self.db.insert_registration_token(&t, uses, expiry).await? {
                return Ok(t);
            }
        }
        Err(Error::unknown(
            "Unable to generate a unique registration token. Try again with a greater length",
        ))
    }

    /// `PUT /_synapse/admin/v1/registration_tokens/{token}`: `uses_allowed` and `expiry_time`
    /// when present (null clears them), the others ignored. The token as it is now.
    pub async fn update_registration_token(
        self,
        token: &str,
        body: &Map<String, Value>,
    ) -> Result<Value> {
        let now = util::now_ms();
        let changes = TokenChanges {
            uses_allowed: body.get("uses_allowed").map(uses_allowed).transpose()?,
            expiry_time: body
                .get("expiry_time")
                .map(|v| expiry_time(v, now))
                .transpose()?,
        };
        let row = self.db.update_registration_token(token, changes).await?;
        row.as_ref().map(token_json).ok_or_else(|| not_found(token))
    }

    /// `DELETE /_synapse/admin/v1/registration_tokens/{token}`. UIA sessions holding a pending
    /// use of it cannot register with it any more.
    pub async fn delete_registration_token(self, token: &str) -> Result<()> {
        if !self.db.delete_registration_token(token).await? {
            return Err(not_found(token));
        }
        Ok(())
    }
}
