//! The feed: events in the order their transactions are known to be over.
//!
//! Events are read by (tx, id), and only those whose transaction is older than every transaction
//! still running (`pg_snapshot_xmin` of the reader's snapshot): every transaction that could
//! still add an event before the last one read is over by then, so a reader that goes on from
//! its last event never skips one that committed late. (A transaction left open holds the feed
//! back until it ends.)

use deadpool_postgres::GenericClient;

use super::{Event, Type};
use crate::types::ProviderId;

/// Where a reader is: after the event (tx, id), or at the start.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Position {
    /// The transaction id (`xid8`), as text is how it travels.
    pub tx: u64,
    pub id: i64,
}

/// A provider's events after `from`, of `types` (all when empty), at most `limit`.
pub async fn page(
    client: &impl GenericClient,
    provider: Option<ProviderId>,
    from: Position,
    types: &[Type],
    limit: i64,
) -> anyhow::Result<Vec<(Position, Event)>> {
    let types: Vec<&str> = types.iter().map(|t| t.as_str()).collect();
    let statement = client
        .prepare_cached(
            "SELECT id, type, provider_id, occurred_at, data, tx::text AS tx FROM events
             WHERE ($1::bigint IS NULL OR provider_id = $1)
               AND (tx, id) > ($2::text::xid8, $3)
               AND tx < pg_snapshot_xmin(pg_current_snapshot())
               AND (cardinality($4::text[]) = 0 OR type = ANY ($4))
             ORDER BY tx, id LIMIT $5",
        )
        .await?;
    let rows = client
        .query(
            &statement,
            &[
                &provider.map(|p| p.0),
                &from.tx.to_string(),
                &from.id,
                &types,
                &limit,
            ],
        )
        .await?;
    rows.iter()
        .map(|row| {
            let tx: &str = row.try_get("tx")?;
            Ok((
                Position {
                    tx: tx.parse()?,
                    id: row.try_get("id")?,
                },
                Event::from_row(row)?,
            ))
        })
        .collect()
}

/// Where the event `id` of `provider` is in the feed, if it is still kept.
pub async fn position_of(
    client: &impl GenericClient,
    provider: ProviderId,
    id: i64,
) -> anyhow::Result<Option<Position>> {
    let row = client
        .query_opt(
            "SELECT tx::text FROM events WHERE id = $1 AND provider_id = $2",
            &[&id, &provider.0],
        )
        .await?;
    row.map(|r| {
        let tx: &str = r.get(0);
        Ok(Position {
            tx: tx.parse()?,
            id,
        })
    })
    .transpose()
}
