//! Idempotency by `request_id` for the routes that change something, and the audit context of
//! their transaction.
//!
//! The request id is claimed first, inside the route's transaction, with a fingerprint of the
//! request: a duplicate delivered at the same moment waits on that row until the first
//! transaction ends, then replays its stored reply (or, if that one was rejected and rolled back,
//! runs afresh). The same id with another request is `conflict`. Routes wrap their change in
//! [`once`]; `apartments_link` claims by hand (a failed attempt commits its count, unclaimed), and
//! `payments` claims a whole batch at once.

use serde::Serialize;
use serde_json::Value;
use sha2::{Digest, Sha256};
use tokio_postgres::Transaction;

use crate::call::Call;
use crate::error::{ErrorCode, HandlerError};
use crate::routes::{Context, Kind};
use crate::types::UserId;

/// What the claim found.
pub enum Claim {
    /// The request is new: run it, then [`record`] its reply.
    New,
    /// The same request ran before: this was its reply.
    Replay(Value),
}

/// SHA-256 of the request's canonical form: its kind and its parsed request.
pub fn fingerprint(kind: Kind, request: &impl Serialize) -> Vec<u8> {
    let canonical = serde_json::to_string(request).expect("a request always serialises");
    Sha256::digest(format!("{kind}\n{canonical}").as_bytes()).to_vec()
}

/// Sets who and which request the audit trail records for this transaction's changes, and
/// claims the request id for `user`.
pub async fn claim(
    tx: &Transaction<'_>,
    call: &Call,
    user: UserId,
    kind: Kind,
    fingerprint: &[u8],
) -> Result<Claim, HandlerError> {
    tx.execute(
        "SELECT set_config('qbill.actor', $1, true), set_config('qbill.request_id', $2, true)",
        &[&user.0.to_string(), &call.request_id.to_string()],
    )
    .await?;
    let claimed = tx
        .query_opt(
            "INSERT INTO processed_requests (request_id, user_id, kind, fingerprint) VALUES ($1, $2, $3, $4)
             ON CONFLICT (request_id) DO NOTHING RETURNING 1",
            &[&call.request_id.0, &user.0, &kind.as_str(), &fingerprint],
        )
        .await?;
    if claimed.is_some() {
        return Ok(Claim::New);
    }
    replay(tx, call, user, kind, fingerprint)
        .await
        .map(Claim::Replay)
}

/// The request id was claimed before: the same request (same user, kind and fingerprint) gets
/// the reply kept for it; another request is `conflict`.
pub async fn replay(
    tx: &Transaction<'_>,
    call: &Call,
    user: UserId,
    kind: Kind,
    fingerprint: &[u8],
) -> Result<Value, HandlerError> {
    let row = tx
        .query_one(
            "SELECT user_id, kind, fingerprint, reply FROM processed_requests WHERE request_id = $1",
            &[&call.request_id.0],
        )
        .await?;
    judge(&row, user, kind, fingerprint)
}

/// [`replay`] over the claim's row, read already: `user_id, kind, fingerprint, reply`.
pub fn judge(
    row: &tokio_postgres::Row,
    user: UserId,
    kind: Kind,
    fingerprint: &[u8],
) -> Result<Value, HandlerError> {
    let same = row.get::<_, i64>("user_id") == user.0
        && row.get::<_, &str>("kind") == kind.as_str()
        && row.get::<_, &[u8]>("fingerprint") == fingerprint;
    if !same {
        return Err(HandlerError::rejected(
            ErrorCode::Conflict,
            "this request_id was already used for a different request; use a new request_id",
        ));
    }
    tracing::info!(
        billing.replayed = true,
        "request seen before; replaying its reply"
    );
    let reply = row.get::<_, Option<Value>>("reply").ok_or_else(|| {
        HandlerError::internal(anyhow::anyhow!("processed request without a stored reply"))
    })?;
    if reply == erased() {
        return Err(HandlerError::rejected(
            ErrorCode::Unauthorized,
            "the account this request belonged to was deleted",
        ));
    }
    if let Some(refused) = reply.get("refused") {
        let code: ErrorCode = serde_json::from_value(refused["code"].clone())
            .map_err(|e| HandlerError::internal(anyhow::anyhow!("a kept refusal's code: {e}")))?;
        let message = refused["message"].as_str().unwrap_or_default().to_owned();
        return Err(HandlerError::rejected(code, message));
    }
    Ok(reply)
}

/// A refusal kept for repeats, as its stored reply: most refused requests give their claim back
/// and are judged afresh if they come again, but one whose answer could change while it waits
/// for a redelivery (a bill reserved by a card payment under way, paid or released later) keeps
/// it, so that one request id has one outcome.
pub fn kept_refusal(code: ErrorCode, message: &str) -> Value {
    serde_json::json!({ "refused": { "code": code, "message": message } })
}

/// What a stored reply becomes when its account is deleted (`me_delete`).
pub fn erased() -> Value {
    serde_json::json!({ "erased": true })
}

/// Keeps `reply` for repeats of the request, in its transaction.
pub async fn record(tx: &Transaction<'_>, call: &Call, reply: &Value) -> Result<(), HandlerError> {
    tx.execute(
        "UPDATE processed_requests SET reply = $2 WHERE request_id = $1",
        &[&call.request_id.0, reply],
    )
    .await?;
    Ok(())
}

/// Runs `change` once per request id, in one transaction: after claiming the id (a repeat gets
/// the stored reply instead), keeping the reply `change` gives for repeats, then committing. A
/// rejection rolls everything back, the claim included.
pub async fn once<R: Serialize>(
    cx: &Context<'_>,
    kind: Kind,
    request: &R,
    change: impl AsyncFnOnce(&deadpool_postgres::Transaction<'_>) -> Result<Value, HandlerError>,
) -> Result<Value, HandlerError> {
    once_as(cx, cx.caller()?.user_id, kind, request, change).await
}

/// [`once`] for a route without a caller, on behalf of `user` (whom a mailed token names).
pub async fn once_as<R: Serialize>(
    cx: &Context<'_>,
    user: UserId,
    kind: Kind,
    request: &R,
    change: impl AsyncFnOnce(&deadpool_postgres::Transaction<'_>) -> Result<Value, HandlerError>,
) -> Result<Value, HandlerError> {
    let mut client = crate::store::client(&cx.services.store).await?;
    let tx = client.transaction().await?;
    if let Claim::Replay(reply) =
        claim(&tx, cx.call, user, kind, &fingerprint(kind, request)).await?
    {
        return Ok(reply);
    }
    let data = change(&tx).await?;
    record(&tx, cx.call, &data).await?;
    tx.commit().await?;
    Ok(data)
}
