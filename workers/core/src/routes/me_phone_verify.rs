//! `me_phone_verify`: the caller proves the number `me_profile` texted a code to
//! (`POST /me/phone/verify` {`code`}, reply kind `me`): the right code within its 10 minutes
//! makes it the account's number, the one texts go to.
//!
//! A code is tried at most [`MAX_TRIES`] times: each wrong one is counted (in a transaction of
//! its own, kept though the request fails), and the last wrong one ends the code, so six digits
//! cannot be guessed; a new code takes a new request, throttled per user and per number. The
//! code is compared with the one derived from the verification's nonce, never stored.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use subtle::ConstantTimeEq;

use super::{Callers, Context, ErrorCode, HandlerError, HandlerResult, Kind, Route, body};
use crate::call::Path;
use crate::idempotency::{self, Claim};
use crate::notify::sms;
use crate::types::{ParseError, Role};

/// Wrong codes before a code stops working.
pub const MAX_TRIES: i32 = 5;

#[derive(Debug, Serialize, JsonSchema)]
pub struct Request {
    #[serde(skip)]
    pub code: String,
}

/// Six digits.
fn code_schema(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
    schemars::json_schema!({ "type": "string", "pattern": "^[0-9]{6}$" })
}

#[derive(Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Body {
    /// The six digits texted to the number.
    #[schemars(schema_with = "code_schema")]
    pub code: String,
}

impl Route for Request {
    const PATH: &str = "/me/phone/verify";
    const SUMMARY: &str =
        "Verifies the phone number given in the profile with the six-digit code texted to it.";
    type Body = Body;
    type Reply = crate::accounts::profile::MeData;
    const CALLERS: Callers = Callers::Roles(Role::EVERYONE);

    fn parse(_: &Path, raw: Map<String, Value>) -> Result<Self, ParseError> {
        let b: Body = body(raw)?;
        let code = b.code.trim().to_owned();
        if code.len() != 6 || !code.chars().all(|c| c.is_ascii_digit()) {
            return Err(ParseError::new("`code` is the six digits of the text"));
        }
        Ok(Self { code })
    }

    async fn run(&self, cx: &Context<'_>) -> HandlerResult {
        let user = cx.caller()?.user_id;
        let mut client = crate::store::client(&cx.services.store).await?;
        let tx = client.transaction().await?;
        let fingerprint = idempotency::fingerprint(Kind::MePhoneVerify, self);
        // The verification locked: two tries at once are counted one after the other.
        let pending = tx
            .query_opt(
                "SELECT phone, nonce, failed_attempts, expires_at > now() AS live
                 FROM phone_verifications WHERE user_id = $1 FOR UPDATE",
                &[&user.0],
            )
            .await?;
        let Some(pending) = pending else {
            // A repeat of a verification that succeeded gets its reply.
            if let Claim::Replay(reply) =
                idempotency::claim(&tx, cx.call, user, Kind::MePhoneVerify, &fingerprint).await?
            {
                return Ok(reply);
            }
            return Err(HandlerError::rejected(
                ErrorCode::NotFound,
                "no number is waiting for a code: give one in your profile (`phone`) first",
            ));
        };
        if !pending.get::<_, bool>("live") {
            return Err(HandlerError::rejected(
                ErrorCode::Conflict,
                "the code has expired: ask for a new one by giving the number in your profile again",
            ));
        }
        let nonce: String = pending.get("nonce");
        let expected = sms::code(&cx.services.tokens, &nonce);
        let right: bool = expected.as_bytes().ct_eq(self.code.as_bytes()).into();
        if !right {
            let failed: i32 = pending.get::<_, i32>("failed_attempts") + 1;
            if failed >= MAX_TRIES {
                tx.execute(
                    "DELETE FROM phone_verifications WHERE user_id = $1",
                    &[&user.0],
                )
                .await?;
            } else {
                tx.execute(
                    "UPDATE phone_verifications SET failed_attempts = $2 WHERE user_id = $1",
                    &[&user.0, &failed],
                )
                .await?;
            }
            tx.commit().await?;
            let left = MAX_TRIES - failed;
            return Err(HandlerError::rejected(
                ErrorCode::InvalidRequest,
                if left > 0 {
                    format!("that is not the code; {left} tries left")
                } else {
                    "that is not the code, and it was the last try: ask for a new code by giving the number in your profile again".to_owned()
                },
            ));
        }
        if let Claim::Replay(reply) =
            idempotency::claim(&tx, cx.call, user, Kind::MePhoneVerify, &fingerprint).await?
        {
            return Ok(reply);
        }
        let phone: String = pending.get("phone");
        tx.execute(
            "UPDATE users SET phone = $2, phone_verified_at = now() WHERE id = $1",
            &[&user.0, &phone],
        )
        .await?;
        tx.execute(
            "DELETE FROM phone_verifications WHERE user_id = $1",
            &[&user.0],
        )
        .await?;
        let data = Self::reply(&crate::accounts::profile::data(&tx, cx.services, user).await?)?;
        idempotency::record(&tx, cx.call, &data).await?;
        tx.commit().await?;
        Ok(data)
    }
}
