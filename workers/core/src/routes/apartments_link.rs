//! `apartments_link`: a household attaches a provider's account to one of its apartments, or to
//! a new apartment at the account's address (`POST /apartments/link`), with the activation code
//! printed on the provider's bill.
//!
//! A code works once. An unknown account, a wrong code and an account linked already (whatever
//! the code) get the same `not_found`, and count as a failed attempt; the owners of an account's
//! apartment are told of every attempt on it (`account.security`, `link_attempt`), and it stays
//! theirs: moving an account is an operator's command (`qbill admin move-account`). Failed
//! attempts are counted per user: [`MAX_FAILURES`] within [`WINDOW`] refuse further attempts until
//! the window has passed, like failed logins. A link voids the code (the next ingest that names the
//! account gives the provider a new one) and brings the account's bills that have no apartment
//! yet. The apartment gets its version bumped, and the user's apartment list too, so the login
//! reply and every apartment route see the change at once.

use std::time::Duration;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use super::{Callers, Context, ErrorCode, HandlerError, HandlerResult, Kind, Route, body};
use crate::activation::code_hash;
use crate::call::Path;
use crate::common::bump_apartments;
use crate::contract;
use crate::idempotency::{self, Claim};
use crate::notify::{self, Event};
use crate::types::{ApartmentId, ParseError, ProviderId, Role, UserId};

/// Failed attempts of one user that stop its attempts for the rest of the window.
pub const MAX_FAILURES: i64 = 5;
/// Failures count for this long.
pub const WINDOW: Duration = Duration::from_secs(15 * 60);

#[derive(Debug, Serialize, JsonSchema)]
pub struct Request {
    pub provider_id: ProviderId,
    pub account_number: String,
    #[serde(skip)]
    pub activation_code: String,
    pub apartment_id: Option<ApartmentId>,
}

#[derive(Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Body {
    #[schemars(range(min = 1))]
    pub provider_id: i64,
    #[schemars(with = "contract::ProviderIdentifier")]
    pub account_number: String,
    #[schemars(regex(pattern = "^[A-Za-z0-9 -]{1,32}$"))]
    pub activation_code: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1))]
    pub apartment_id: Option<i64>,
}

/// The reply's data, kind `apartments_link`.
#[derive(Debug, Serialize, JsonSchema)]
pub struct LinkData {
    pub apartment: LinkedApartment,
    pub provider_id: ProviderId,
    pub account_number: String,
}

#[derive(Debug, Serialize, JsonSchema)]
pub struct LinkedApartment {
    pub id: ApartmentId,
    pub address: String,
}

impl Route for Request {
    const PATH: &str = "/apartments/link";
    const SUMMARY: &str = "Links a provider account to an apartment with its activation code.";
    type Body = Body;
    type Reply = LinkData;
    const CALLERS: Callers = Callers::Roles(&[Role::Household]);

    fn parse(_: &Path, raw: Map<String, Value>) -> Result<Self, ParseError> {
        let b: Body = body(raw)?;
        let code_ok = (1..=32).contains(&b.activation_code.len())
            && b.activation_code
                .bytes()
                .all(|c| c.is_ascii_alphanumeric() || c == b'-' || c == b' ');
        if !code_ok {
            return Err(ParseError::new(
                "`activation_code` must be the code printed on the bill, like ABCD-EFGH-JKLM",
            ));
        }
        let number = b.account_number.trim();
        if number.is_empty() || number.len() > crate::activation::MAX_ID_CHARS {
            return Err(ParseError::new(format!(
                "`account_number` must be 1 to {} characters",
                crate::activation::MAX_ID_CHARS
            )));
        }
        Ok(Self {
            provider_id: ProviderId::from_body("provider_id", b.provider_id)?,
            account_number: number.to_owned(),
            activation_code: b.activation_code,
            apartment_id: b
                .apartment_id
                .map(|id| ApartmentId::from_body("apartment_id", id))
                .transpose()?,
        })
    }

    fn apartment(&self) -> Option<ApartmentId> {
        self.apartment_id
    }

    async fn run(&self, cx: &Context<'_>) -> HandlerResult {
        let user = cx.caller()?.user_id;
        let mut client = crate::store::client(&cx.services.store).await?;
        let tx = client.transaction().await?;
        // One attempt of a user at a time, so concurrent wrong guesses cannot pass the limit.
        tx.execute(
            "SELECT pg_advisory_xact_lock(7251400, hashtext($1::text))",
            &[&user.0.to_string()],
        )
        .await?;
        let fingerprint = idempotency::fingerprint(Kind::ApartmentsLink, self);
        // A repeat of a link that succeeded gets its reply, though its code is spent. (A repeat
        // delivered at the same moment waited on the lock above for the first to commit.)
        let earlier = tx
            .query_opt(
                "SELECT user_id, kind, fingerprint, reply FROM processed_requests WHERE request_id = $1",
                &[&cx.call.request_id.0],
            )
            .await?;
        if let Some(row) = earlier {
            return idempotency::judge(&row, user, Kind::ApartmentsLink, &fingerprint);
        }
        let window = WINDOW.as_secs_f64();
        tx.execute(
            "DELETE FROM link_failures WHERE user_id = $1 AND failed_at <= now() - make_interval(secs => $2)",
            &[&user.0, &window],
        )
        .await?;
        let failures: i64 = tx
            .query_one(
                "SELECT count(*) FROM link_failures
                 WHERE user_id = $1 AND failed_at > now() - make_interval(secs => $2)",
                &[&user.0, &window],
            )
            .await?
            .get(0);
        if failures >= MAX_FAILURES {
            return Err(HandlerError::rejected(
                ErrorCode::Forbidden,
                format!(
                    "too many failed attempts to link an account; try again in {} minutes",
                    WINDOW.as_secs() / 60
                ),
            ));
        }
        let account = tx
            .query_opt(
                "SELECT s.id, s.address, s.apartment_id, p.currency, p.name AS provider,
                        coalesce(s.activation_code_hash = $3, false) AS code_matches
                 FROM service_accounts s JOIN providers p ON p.id = s.provider_id
                 WHERE s.provider_id = $1 AND s.account_number = $2
                 FOR UPDATE OF s",
                &[
                    &self.provider_id.0,
                    &self.account_number,
                    &code_hash(&self.activation_code),
                ],
            )
            .await?;
        let linked_to: Option<(i64, String)> = account.as_ref().and_then(|a| {
            a.get::<_, Option<i64>>("apartment_id")
                .map(|apartment| (apartment, a.get("provider")))
        });
        let Some(account) =
            account.filter(|a| linked_to.is_none() && a.get::<_, bool>("code_matches"))
        else {
            // No such account, a wrong code, or an account linked already: one answer, one
            // failure, and the owners of a linked account hear of it.
            tx.execute(
                "INSERT INTO link_failures (user_id) VALUES ($1)",
                &[&user.0],
            )
            .await?;
            let mails = match linked_to {
                Some((apartment, provider)) => {
                    self.tell_owners(cx, &tx, apartment, &provider).await?
                }
                None => Vec::new(),
            };
            tx.commit().await?;
            for mail in mails {
                cx.mail_after_commit(Some(mail));
            }
            return Err(HandlerError::rejected(
                ErrorCode::NotFound,
                "no account of that provider has this number and activation code",
            ));
        };
        if let Claim::Replay(reply) =
            idempotency::claim(&tx, cx.call, user, Kind::ApartmentsLink, &fingerprint).await?
        {
            return Ok(reply);
        }
        let account_id: i64 = account.get("id");
        let address: String = account.get("address");
        let currency: String = account.get("currency");

        let apartment = match self.apartment_id {
            Some(apartment) => {
                let row = tx
                    .query_opt(
                        "SELECT a.address, a.currency FROM apartments a
                         JOIN apartment_owners o ON o.apartment_id = a.id AND o.user_id = $2
                         WHERE a.id = $1",
                        &[&apartment.0, &user.0],
                    )
                    .await?;
                let Some(row) = row else {
                    return Err(HandlerError::rejected(
                        ErrorCode::NotFound,
                        format!("you have no apartment {apartment}"),
                    ));
                };
                if row.get::<_, String>("currency") != currency {
                    return Err(HandlerError::rejected(
                        ErrorCode::Conflict,
                        format!(
                            "apartment {apartment} is billed in {}, the provider bills in {currency}",
                            row.get::<_, String>("currency")
                        ),
                    ));
                }
                LinkedApartment {
                    id: apartment,
                    address: row.get("address"),
                }
            }
            None => {
                let id: i64 = tx
                    .query_one(
                        "INSERT INTO apartments (address, currency) VALUES ($1, $2) RETURNING id",
                        &[&address, &currency],
                    )
                    .await?
                    .get(0);
                tx.execute(
                    "INSERT INTO apartment_owners (apartment_id, user_id) VALUES ($1, $2)",
                    &[&id, &user.0],
                )
                .await?;
                LinkedApartment {
                    id: ApartmentId(id),
                    address,
                }
            }
        };

        // The link voids the code (a trigger does, for every change of the link), and the bills
        // that came while the account was nobody's become the apartment's.
        tx.execute(
            "UPDATE service_accounts SET apartment_id = $2, linked_at = now() WHERE id = $1",
            &[&account_id, &apartment.id.0],
        )
        .await?;
        tx.execute(
            "UPDATE bills SET apartment_id = $2
             WHERE id IN (SELECT id FROM bills WHERE account_id = $1 AND apartment_id IS NULL ORDER BY id FOR UPDATE)",
            &[&account_id, &apartment.id.0],
        )
        .await?;
        bump_apartments(&tx, &[apartment.id.0]).await?;
        tx.execute(
            "UPDATE users SET apartments_version = cache_version() WHERE id = $1",
            &[&user.0],
        )
        .await?;
        let data = Request::reply(&LinkData {
            apartment,
            provider_id: self.provider_id,
            account_number: self.account_number.clone(),
        })?;
        idempotency::record(&tx, cx.call, &data).await?;
        tx.commit().await?;
        Ok(data)
    }
}

impl Request {
    /// Records a `link_attempt` security notification for each owner of `apartment`, which the
    /// account is linked to, keyed by the request (a redelivery records it once). Returns the
    /// mails to send.
    async fn tell_owners(
        &self,
        cx: &Context<'_>,
        tx: &deadpool_postgres::Transaction<'_>,
        apartment: i64,
        provider: &str,
    ) -> Result<Vec<i64>, HandlerError> {
        let owners = tx
            .query(
                "SELECT user_id FROM apartment_owners WHERE apartment_id = $1 ORDER BY user_id",
                &[&apartment],
            )
            .await?;
        let mut data = notify::security("link_attempt");
        data["provider"] = provider.into();
        data["account_number"] = self.account_number.clone().into();
        let mut mails = Vec::new();
        for owner in owners {
            let owner = UserId(owner.get(0));
            let key = format!("link_attempt:{}:{owner}", cx.call.request_id);
            let mail = notify::record(tx, owner, Event::AccountSecurity, &key, &data, None).await?;
            mails.extend(mail);
        }
        Ok(mails)
    }
}
