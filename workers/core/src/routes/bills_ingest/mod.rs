//! `bills_ingest`: a provider sends a batch of its bills (`POST /providers/{provider_id}/bills`).
//!
//! The whole batch is stored, or nothing is: an invalid item is `invalid_request` naming its
//! index. Each bill is known by the provider's own id for it (`external_id`): the same item sent
//! again is `unchanged`, the same id with other content is `conflict` (void it and send a new one
//! instead). The first bill of an account the engine does not know creates the account, with the
//! activation code the provider prints on its paper bill (`new_accounts`); a household links the
//! account to an apartment with that code (`apartments_link`), and the account's bills are that
//! apartment's. A code works once: linking voids it, and the next batch that names the account
//! issues a new one (`rotated_codes`), once.
//!
//! Codes are never stored. A code is derived from the account and a nonce under the signing key
//! ([`crate::activation::activation_code`]); the account keeps the code's hash and the nonce, and the reply kept for
//! repeats keeps the nonce ([`Kept`]), from which the reply the client gets is made afresh each
//! time ([`reveal`]): a repeat gets the same codes, or none for a code that is no longer the
//! account's.
//!
//! Rows are locked in one order, accounts (by number), then bills (by external id), then
//! apartments (by id), as linking and paying do, so concurrent batches never deadlock; the same
//! batch sent twice at once stores every bill once.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use chrono::NaiveDate;
use rust_decimal::Decimal;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

pub mod item;

pub use item::Item;
use item::{content_hash, parse_item};

use super::{Callers, Context, ErrorCode, HandlerError, HandlerResult, Kind, Route, body};
use crate::activation::{activation_code, code_hash};
use crate::call::Path;
use crate::common::provider_access;
use crate::idempotency;
use crate::notify::{self, Event};
use crate::token::Tokens;
use crate::types::{ApartmentId, BillId, ParseError, ProviderId, Role};

/// The most bills one request carries.
pub const MAX_BILLS: usize = 100;
/// The most lines one bill carries.
pub const MAX_LINES: usize = 5;
/// Bounds of the texts, in characters. With these, the largest valid request in compact JSON is
/// under 256 KiB whatever the texts hold (see `gateway-config/openapi.yaml`).
pub use crate::activation::MAX_ID_CHARS;
pub const MAX_ADDRESS_CHARS: usize = 120;
pub const MAX_DESCRIPTION_CHARS: usize = 60;
pub const MAX_UTILITY_CHARS: usize = 32;

#[derive(Debug, Serialize, JsonSchema)]
pub struct Request {
    pub provider_id: ProviderId,
    pub bills: Vec<Item>,
}

#[derive(Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Body {
    #[schemars(with = "Vec<item::ItemBody>", length(min = 1, max = 100))]
    pub bills: Vec<Value>,
}

/// The reply's data, kind `bills_ingest`: the kept reply's ([`Kept`]) with its codes derived.
#[derive(Debug, Serialize, JsonSchema)]
pub struct IngestData {
    pub provider_id: ProviderId,
    pub bills: Vec<Ingested>,
    /// The accounts this request created, with their codes.
    pub new_accounts: Vec<AccountCode>,
    /// The accounts whose code was used or voided since they were last named, with their new codes.
    pub rotated_codes: Vec<AccountCode>,
}

#[derive(Debug, Serialize, Deserialize, JsonSchema)]
pub struct Ingested {
    pub external_id: String,
    pub bill_id: BillId,
    pub status: String,
}

/// An account's code as the client gets it.
#[derive(Debug, Serialize, JsonSchema)]
pub struct AccountCode {
    pub account_number: String,
    /// `None` on a repeat when the code is no longer the account's (used since, or the signing
    /// key rotated): never a code that does not work.
    pub activation_code: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub note: Option<&'static str>,
}

/// What the reply kept for repeats holds: the reply, with what derives each code instead of it.
#[derive(Debug, Serialize, Deserialize, JsonSchema)]
pub struct Kept {
    pub provider_id: ProviderId,
    pub bills: Vec<Ingested>,
    pub new_accounts: Vec<KeptCode>,
    /// Absent from replies kept before codes rotated.
    #[serde(default)]
    pub rotated_codes: Vec<KeptCode>,
}

/// An account's code as a kept reply holds it: the account and the code's nonce, never the code
/// (replies kept before codes were derived have neither).
#[derive(Debug, Serialize, Deserialize, JsonSchema)]
pub struct KeptCode {
    pub account_number: String,
    #[serde(default)]
    pub account_id: Option<i64>,
    #[serde(default)]
    pub code_nonce: Option<String>,
}

/// The note of a code a repeat cannot give again.
pub const CODE_GONE: &str = "this code is no longer the account's (it was used, or replaced, since); a later reply carries the new one";

impl Route for Request {
    const PATH: &str = "/providers/{provider_id}/bills";
    const SUMMARY: &str = "A provider sends 1 to 100 bills, all stored or none.";
    type Body = Body;
    type Reply = IngestData;
    const CALLERS: Callers = Callers::Roles(&[Role::Provider, Role::Operator]);

    fn parse(path: &Path, raw: Map<String, Value>) -> Result<Self, ParseError> {
        let b: Body = body(raw)?;
        if b.bills.is_empty() || b.bills.len() > MAX_BILLS {
            return Err(ParseError::new(format!(
                "`bills` must hold 1 to {MAX_BILLS} bills"
            )));
        }
        let mut seen = BTreeSet::new();
        let mut bills = Vec::with_capacity(b.bills.len());
        for (index, raw) in b.bills.into_iter().enumerate() {
            let item =
                parse_item(raw).map_err(|e| ParseError::new(format!("bills[{index}]: {}", e.0)))?;
            if !seen.insert(item.external_id.clone()) {
                return Err(ParseError::new(format!(
                    "bills[{index}]: `external_id` {} is listed twice",
                    item.external_id
                )));
            }
            bills.push(item);
        }
        Ok(Self {
            provider_id: path.provider()?,
            bills,
        })
    }

    async fn run(&self, cx: &Context<'_>) -> HandlerResult {
        let mut mails = Vec::new();
        let kept = idempotency::once(cx, Kind::BillsIngest, self, async |tx| {
            let provider = provider_access(cx, tx, self.provider_id).await?;
            let invalid = |index: usize, message: String| {
                HandlerError::rejected(
                    ErrorCode::InvalidRequest,
                    format!("bills[{index}]: {message}"),
                )
            };
            for (index, item) in self.bills.iter().enumerate() {
                if item.money.currency() != provider.currency {
                    return Err(invalid(
                        index,
                        format!(
                            "`currency` must be the provider's, {}, not {}",
                            provider.currency,
                            item.money.currency()
                        ),
                    ));
                }
            }
            let utilities: Vec<&str> = self.bills.iter().map(|b| b.utility.as_str()).collect();
            let known: BTreeSet<String> = tx
                .query(
                    "SELECT code FROM utility_types WHERE code = ANY($1)",
                    &[&utilities],
                )
                .await?
                .iter()
                .map(|r| r.get(0))
                .collect();
            if let Some(index) = self.bills.iter().position(|b| !known.contains(&b.utility)) {
                return Err(invalid(
                    index,
                    format!(
                        "`utility` {:?} is not a utility qbill knows",
                        self.bills[index].utility
                    ),
                ));
            }

            let (accounts, created) = accounts(tx, &self.bills, self.provider_id).await?;
            let ingested = bills(tx, &self.bills, self.provider_id, &accounts).await?;
            let (new_accounts, rotated_codes) =
                issue_codes(tx, &cx.services.tokens, &accounts, &created).await?;

            // Every apartment that gained a bill: its version is bumped, so no cached read of its
            // bills outlives this commit.
            let touched: BTreeSet<i64> = self
                .bills
                .iter()
                .zip(&ingested)
                .filter(|(_, i)| i.status == "created")
                .filter_map(|(item, _)| accounts[&item.account_number].apartment)
                .map(|a| a.0)
                .collect();
            crate::common::bump_apartments(tx, &touched.into_iter().collect::<Vec<_>>()).await?;

            // `bill.created` for the households of linked accounts.
            let created: Vec<i64> = ingested
                .iter()
                .filter(|i| i.status == "created")
                .map(|i| i.bill_id.0)
                .collect();
            mails = notify::bills(tx, Event::BillCreated, &created).await?;

            serde_json::to_value(&Kept {
                provider_id: self.provider_id,
                bills: ingested,
                new_accounts,
                rotated_codes,
            })
            .map_err(HandlerError::internal)
        })
        .await?;
        for mail in mails {
            cx.mail_after_commit(Some(mail));
        }
        reveal(cx, kept).await
    }
}

/// The accounts of the batch by number, with their ids and apartments, creating those the
/// engine does not know (without a code yet: [`issue_codes`] gives it), and the numbers of those
/// it created. They are locked against a concurrent link, and for their codes to be issued.
async fn accounts(
    tx: &tokio_postgres::Transaction<'_>,
    items: &[Item],
    provider: ProviderId,
) -> Result<(BTreeMap<String, Account>, BTreeSet<String>), HandlerError> {
    // The first item of an account gives its address.
    let mut addresses: BTreeMap<&str, &str> = BTreeMap::new();
    for item in items {
        addresses
            .entry(item.account_number.as_str())
            .or_insert(item.address.as_str());
    }
    let numbers: Vec<&str> = addresses.keys().copied().collect();
    let addresses: Vec<&str> = addresses.values().copied().collect();
    let created = tx
        .query(
            "INSERT INTO service_accounts (provider_id, account_number, address)
             SELECT $1, n, a FROM unnest($2::text[], $3::text[]) AS t(n, a) ORDER BY n
             ON CONFLICT (provider_id, account_number) DO NOTHING
             RETURNING account_number",
            &[&provider.0, &numbers, &addresses],
        )
        .await?;
    let created: BTreeSet<String> = created.iter().map(|r| r.get(0)).collect();
    let rows = tx
        .query(
            "SELECT account_number, id, apartment_id, activation_code_hash IS NULL AS voided
             FROM service_accounts
             WHERE provider_id = $1 AND account_number = ANY($2) ORDER BY account_number FOR NO KEY UPDATE",
            &[&provider.0, &numbers],
        )
        .await?;
    let accounts = rows
        .iter()
        .map(|r| {
            (
                r.get::<_, String>("account_number"),
                Account {
                    id: r.get("id"),
                    apartment: r.get::<_, Option<i64>>("apartment_id").map(ApartmentId),
                    voided: r.get("voided"),
                },
            )
        })
        .collect();
    Ok((accounts, created))
}

/// An account a batch names, as it stood when the batch locked it.
struct Account {
    id: i64,
    apartment: Option<ApartmentId>,
    /// It has no code: created now, or its code was used or voided since it was last named.
    voided: bool,
}

/// Issues a code to each account of the batch that has none, and says which (in the kept
/// reply's form): those the batch created, and those whose code was rotated.
async fn issue_codes(
    tx: &tokio_postgres::Transaction<'_>,
    tokens: &Tokens,
    accounts: &BTreeMap<String, Account>,
    created: &BTreeSet<String>,
) -> Result<(Vec<KeptCode>, Vec<KeptCode>), HandlerError> {
    let voided: Vec<(&String, &Account)> = accounts.iter().filter(|(_, a)| a.voided).collect();
    if voided.is_empty() {
        return Ok((Vec::new(), Vec::new()));
    }
    let ids: Vec<i64> = voided.iter().map(|(_, a)| a.id).collect();
    let nonces: Vec<String> = voided
        .iter()
        .map(|_| crate::types::hex(&rand::random::<[u8; 16]>()))
        .collect();
    let hashes: Vec<Vec<u8>> = ids
        .iter()
        .zip(&nonces)
        .map(|(id, nonce)| code_hash(&activation_code(tokens, *id, nonce)))
        .collect();
    let issued: BTreeSet<i64> = tx
        .query(
            "SELECT issue_activation_codes($1, $2, $3)",
            &[&ids, &hashes, &nonces],
        )
        .await?
        .iter()
        .map(|r| r.get(0))
        .collect();
    let (mut new_accounts, mut rotated) = (Vec::new(), Vec::new());
    for ((number, account), nonce) in voided.into_iter().zip(nonces) {
        if !issued.contains(&account.id) {
            continue;
        }
        let kept = KeptCode {
            account_number: number.clone(),
            account_id: Some(account.id),
            code_nonce: Some(nonce),
        };
        if created.contains(number) {
            new_accounts.push(kept);
        } else {
            rotated.push(kept);
        }
    }
    Ok((new_accounts, rotated))
}

/// The client's reply from the kept one, on the first run and on every repeat: each code derived
/// again from its nonce, and given only if it is still the account's.
async fn reveal(cx: &Context<'_>, kept: Value) -> HandlerResult {
    let kept: Kept = serde_json::from_value(kept)
        .map_err(|e| HandlerError::internal(anyhow::anyhow!("a kept ingest reply: {e}")))?;
    let ids: Vec<i64> = kept
        .new_accounts
        .iter()
        .chain(&kept.rotated_codes)
        .filter_map(|k| k.account_id)
        .collect();
    let current: HashMap<i64, Option<Vec<u8>>> = if ids.is_empty() {
        HashMap::new()
    } else {
        let client = crate::store::client(&cx.services.store).await?;
        client
            .query(
                "SELECT id, activation_code_hash FROM service_accounts WHERE id = ANY($1)",
                &[&ids],
            )
            .await?
            .iter()
            .map(|r| (r.get("id"), r.get("activation_code_hash")))
            .collect()
    };
    let show = |codes: Vec<KeptCode>| -> Vec<AccountCode> {
        codes
            .into_iter()
            .map(|k| {
                let code = k.account_id.zip(k.code_nonce).and_then(|(id, nonce)| {
                    let code = activation_code(&cx.services.tokens, id, &nonce);
                    let hash = current.get(&id)?.as_deref()?;
                    (hash == code_hash(&code).as_slice()).then_some(code)
                });
                AccountCode {
                    account_number: k.account_number,
                    note: code.is_none().then_some(CODE_GONE),
                    activation_code: code,
                }
            })
            .collect()
    };
    Request::reply(&IngestData {
        provider_id: kept.provider_id,
        bills: kept.bills,
        new_accounts: show(kept.new_accounts),
        rotated_codes: show(kept.rotated_codes),
    })
}

/// Stores the bills not stored yet, in the order of their external ids, and says of each item
/// whether it was created or was there already; one there already with other content is
/// `conflict`.
async fn bills(
    tx: &tokio_postgres::Transaction<'_>,
    items: &[Item],
    provider: ProviderId,
    accounts: &BTreeMap<String, Account>,
) -> Result<Vec<Ingested>, HandlerError> {
    let mut order: Vec<usize> = (0..items.len()).collect();
    order.sort_by(|a, b| items[*a].external_id.cmp(&items[*b].external_id));
    let pick = |i: &usize| &items[*i];
    let external: Vec<&str> = order.iter().map(|i| pick(i).external_id.as_str()).collect();
    let account: Vec<i64> = order
        .iter()
        .map(|i| accounts[&pick(i).account_number].id)
        .collect();
    let apartment: Vec<Option<i64>> = order
        .iter()
        .map(|i| accounts[&pick(i).account_number].apartment.map(|a| a.0))
        .collect();
    let utility: Vec<&str> = order.iter().map(|i| pick(i).utility.as_str()).collect();
    let start: Vec<NaiveDate> = order.iter().map(|i| pick(i).period_start).collect();
    let end: Vec<NaiveDate> = order.iter().map(|i| pick(i).period_end).collect();
    let due: Vec<NaiveDate> = order.iter().map(|i| pick(i).due_date).collect();
    let amount: Vec<Decimal> = order.iter().map(|i| pick(i).money.amount()).collect();
    let currencies: Vec<crate::types::Currency> =
        order.iter().map(|i| pick(i).money.currency()).collect();
    let currency: Vec<&str> = currencies.iter().map(|c| c.as_str()).collect();
    let hash: Vec<Vec<u8>> = order.iter().map(|i| content_hash(pick(i))).collect();
    let lines: Vec<Option<Value>> = order
        .iter()
        .map(|i| pick(i).lines.as_ref().map(|l| serde_json::json!(l)))
        .collect();
    let created = tx
        .query(
            "INSERT INTO bills (provider_id, external_id, account_id, apartment_id, utility, period_start,
                                period_end, due_date, amount, currency, content_hash, lines)
             SELECT $1, e, ac, ap, u, s, pe, d, am, c, h, l
             FROM unnest($2::text[], $3::bigint[], $4::bigint[], $5::text[], $6::date[], $7::date[],
                         $8::date[], $9::numeric[], $10::text[], $11::bytea[], $12::jsonb[])
                  AS t(e, ac, ap, u, s, pe, d, am, c, h, l)
             ORDER BY e
             ON CONFLICT (provider_id, external_id) WHERE external_id IS NOT NULL DO NOTHING
             RETURNING external_id, id",
            &[
                &provider.0,
                &external,
                &account,
                &apartment,
                &utility,
                &start,
                &end,
                &due,
                &amount,
                &currency,
                &hash,
                &lines,
            ],
        )
        .await?;
    let mut ids: HashMap<String, (BillId, &'static str)> = created
        .iter()
        .map(|r| (r.get("external_id"), (BillId(r.get("id")), "created")))
        .collect();
    let again: Vec<&str> = external
        .iter()
        .copied()
        .filter(|e| !ids.contains_key(*e))
        .collect();
    if !again.is_empty() {
        let stored = tx
            .query(
                "SELECT external_id, id, content_hash FROM bills WHERE provider_id = $1 AND external_id = ANY($2)",
                &[&provider.0, &again],
            )
            .await?;
        for row in &stored {
            let external_id: String = row.get("external_id");
            let index = items
                .iter()
                .position(|i| i.external_id == external_id)
                .unwrap_or_default();
            if row.get::<_, Option<&[u8]>>("content_hash")
                != Some(content_hash(&items[index]).as_slice())
            {
                return Err(HandlerError::rejected(
                    ErrorCode::Conflict,
                    format!(
                        "bills[{index}]: bill {external_id} was sent before with other content; \
                         void it and send the corrected bill under a new external_id"
                    ),
                ));
            }
            ids.insert(external_id, (BillId(row.get("id")), "unchanged"));
        }
    }
    items
        .iter()
        .map(|item| {
            let (bill_id, status) = ids.get(&item.external_id).copied().ok_or_else(|| {
                HandlerError::internal(anyhow::anyhow!(
                    "bill {} neither stored nor found",
                    item.external_id
                ))
            })?;
            Ok(Ingested {
                external_id: item.external_id.clone(),
                bill_id,
                status: status.to_owned(),
            })
        })
        .collect()
}
