//! Receipts in PostgreSQL: `webhook_receipts` (unique by dedupe key) and the
//! incident worker's backlog `receipts_backlog` (see the migration for why it is a table
//! here and not "every id above the highest processed" as on SQLite).

use std::collections::HashMap;

use async_trait::async_trait;
use sqlx::Row as _;

use super::rows::parse_status;
use super::{Connection, PgStorage, format_time, parse_time, storage_error};
use crate::storage::{
    NewReceipt, ReceiptRecord, Receipts, StorageError, StoredReceipt, UnprocessedReceipt,
};

#[async_trait]
impl Receipts for PgStorage {
    /// Stores a batch of notifications in one statement (group commit), committed on its
    /// own: one round trip for a batch of new notifications. One answer per notification,
    /// in order. A notification already stored (before, earlier in the same batch, or at
    /// the same moment by another replica) is answered as a duplicate.
    async fn store_notifications(
        &self,
        batch: &[NewReceipt<'_>],
    ) -> Result<Vec<StoredReceipt>, StorageError> {
        let mut connection = self
            .pool
            .acquire()
            .await
            .map_err(|source| storage_error(STORE_NOTIFICATION, source))?;
        insert_receipts(&mut connection, batch).await
    }

    async fn receipts(&self) -> Result<Vec<ReceiptRecord>, StorageError> {
        const OPERATION: &str = "receipts";
        let rows = sqlx::query(
            "SELECT id, received_at, group_key, status, receiver, n_alerts, payload \
             FROM webhook_receipts ORDER BY id",
        )
        .fetch_all(&self.pool)
        .await
        .map_err(|source| storage_error(OPERATION, source))?;
        rows.iter()
            .map(|row| -> anyhow::Result<ReceiptRecord> {
                Ok(ReceiptRecord {
                    receipt_id: row.try_get("id")?,
                    received_at: parse_time(row.try_get("received_at")?)?,
                    group_key: row.try_get("group_key")?,
                    status: parse_status(row.try_get("status")?)?,
                    receiver: row.try_get("receiver")?,
                    n_alerts: row.try_get("n_alerts")?,
                    payload: row.try_get("payload")?,
                })
            })
            .collect::<anyhow::Result<_>>()
            .map_err(|source| storage_error(OPERATION, source))
    }

    async fn n_unprocessed_receipts(&self) -> Result<i64, StorageError> {
        sqlx::query_scalar("SELECT COUNT(*) FROM receipts_backlog")
            .fetch_one(&self.pool)
            .await
            .map_err(|source| storage_error("n_unprocessed_receipts", source))
    }

    /// Processed up to just below the oldest receipt in `receipts_backlog`, or everything
    /// stored when it is empty: not the highest id in `receipts_processed`, since a lower
    /// id may commit (and wait) after a higher one was processed.
    async fn backlog_bounds(&self) -> Result<(i64, i64), StorageError> {
        sqlx::query_as(
            "SELECT highest, COALESCE((SELECT MIN(receipt_id) - 1 FROM receipts_backlog), highest) \
             FROM (SELECT COALESCE(MAX(id), 0) AS highest FROM webhook_receipts) AS stored",
        )
        .fetch_one(&self.pool)
        .await
        .map_err(|source| storage_error("backlog_bounds", source))
    }
}

/// The operation name of storing webhooks, in errors and metrics.
const STORE_NOTIFICATION: &str = "store_notification";

/// Inserts the receipts of a batch, each new one with its place in the backlog, in one
/// statement (arrays unnested, so that one prepared statement serves every batch size);
/// then reads the ids of those stored before. One answer per receipt, in order. Their
/// alerts go into `alerts` when the incident worker processes them.
///
/// Two replicas storing the same key at once: `ON CONFLICT DO NOTHING` makes the second
/// wait for the first's commit and then skip the row, and the read that follows finds it.
/// The batch's new keys are inserted in key order, so that two batches sharing keys lock
/// them in the same order and never deadlock.
async fn insert_receipts(
    connection: &mut Connection,
    batch: &[NewReceipt<'_>],
) -> Result<Vec<StoredReceipt>, StorageError> {
    let error = |source: sqlx::Error| storage_error(STORE_NOTIFICATION, source);
    // The first of a dedupe key in the batch is the one that may be new.
    let mut first_of_key: HashMap<&str, usize> = HashMap::with_capacity(batch.len());
    let mut candidates: Vec<&NewReceipt<'_>> = Vec::with_capacity(batch.len());
    for (index, receipt) in batch.iter().enumerate() {
        if let std::collections::hash_map::Entry::Vacant(entry) =
            first_of_key.entry(receipt.dedupe_key)
        {
            entry.insert(index);
            candidates.push(receipt);
        }
    }
    candidates.sort_by_key(|receipt| receipt.dedupe_key);
    let column = |value: fn(&NewReceipt<'_>) -> String| -> Vec<String> {
        candidates.iter().map(|receipt| value(receipt)).collect()
    };
    let rows = sqlx::query(
        "WITH new AS ( \
           INSERT INTO webhook_receipts (dedupe_key, received_at, group_key, status, receiver, \
             external_url, n_alerts, truncated_alerts, payload) \
           SELECT * FROM UNNEST($1::text[], $2::text[], $3::text[], $4::text[], $5::text[], \
             $6::text[], $7::int8[], $8::int8[], $9::text[]) \
           ON CONFLICT (dedupe_key) DO NOTHING RETURNING id, dedupe_key), \
         queued AS (INSERT INTO receipts_backlog (receipt_id) SELECT id FROM new) \
         SELECT id, dedupe_key FROM new",
    )
    .bind(column(|receipt| receipt.dedupe_key.to_owned()))
    .bind(column(|receipt| format_time(receipt.received_at)))
    .bind(column(|receipt| receipt.notification.group_key.clone()))
    .bind(column(|receipt| {
        receipt.notification.status.as_str().to_owned()
    }))
    .bind(column(|receipt| receipt.notification.receiver.clone()))
    .bind(column(|receipt| receipt.notification.external_url.clone()))
    .bind(
        candidates
            .iter()
            .map(|receipt| receipt.notification.alerts.len() as i64)
            .collect::<Vec<i64>>(),
    )
    .bind(
        candidates
            .iter()
            .map(|receipt| receipt.notification.truncated_alerts as i64)
            .collect::<Vec<i64>>(),
    )
    .bind(
        candidates
            .iter()
            .map(|receipt| receipt.raw_payload)
            .collect::<Vec<&str>>(),
    )
    .fetch_all(&mut *connection)
    .await
    .map_err(error)?;
    let mut inserted: HashMap<String, i64> = HashMap::with_capacity(candidates.len());
    for row in rows {
        inserted.insert(
            row.try_get("dedupe_key").map_err(error)?,
            row.try_get("id").map_err(error)?,
        );
    }
    // Keys stored before (by an earlier batch or another replica).
    let stored_before: Vec<&str> = candidates
        .iter()
        .map(|receipt| receipt.dedupe_key)
        .filter(|key| !inserted.contains_key(*key))
        .collect();
    let mut existing: HashMap<String, i64> = HashMap::new();
    if !stored_before.is_empty() {
        let rows = sqlx::query(
            "SELECT id, dedupe_key FROM webhook_receipts WHERE dedupe_key = ANY($1::text[])",
        )
        .bind(&stored_before)
        .fetch_all(&mut *connection)
        .await
        .map_err(error)?;
        for row in rows {
            existing.insert(
                row.try_get("dedupe_key").map_err(error)?,
                row.try_get("id").map_err(error)?,
            );
        }
    }

    batch
        .iter()
        .enumerate()
        .map(|(index, receipt)| {
            let key = receipt.dedupe_key;
            let is_first = first_of_key.get(key) == Some(&index);
            match (inserted.get(key), existing.get(key)) {
                (Some(&receipt_id), _) => Ok(StoredReceipt {
                    receipt_id,
                    duplicate: !is_first,
                }),
                (None, Some(&receipt_id)) => Ok(StoredReceipt {
                    receipt_id,
                    duplicate: true,
                }),
                (None, None) => Err(storage_error(
                    STORE_NOTIFICATION,
                    anyhow::anyhow!("receipt {key:?} neither inserted nor found"),
                )),
            }
        })
        .collect()
}

/// The next receipts of the backlog (`$1` at most, oldest first) whose alerts fit the
/// budget `$2` (the first always), with their payloads. Each backlog row's alert count
/// is read by a lookup of its receipt: as a join, PostgreSQL merged the backlog with
/// `webhook_receipts` from its first row, so that every batch walked all the receipts
/// ever processed (7,000 rows and 4 ms per batch after a minute of 20-alert webhooks,
/// and growing), where this reads the batch's rows only (docs/performance.md).
pub const NEXT_RECEIPTS: &str = "WITH next AS (SELECT b.receipt_id AS id, \
         (SELECT r.n_alerts FROM webhook_receipts r WHERE r.id = b.receipt_id) AS n_alerts \
         FROM receipts_backlog b ORDER BY b.receipt_id LIMIT $1), \
     counted AS (SELECT id, ROW_NUMBER() OVER w AS position, SUM(n_alerts) OVER w AS running \
         FROM next WINDOW w AS (ORDER BY id ROWS UNBOUNDED PRECEDING)) \
     SELECT r.id, r.received_at, r.payload FROM webhook_receipts r JOIN counted c ON c.id = r.id \
     WHERE c.position = 1 OR c.running <= $2 ORDER BY r.id";

pub(super) async fn next_unprocessed_receipts(
    connection: &mut Connection,
    limit: usize,
    alert_budget: usize,
) -> Result<Vec<UnprocessedReceipt>, StorageError> {
    const OPERATION: &str = "next_unprocessed_receipts";
    // Oldest first. A receipt whose transaction drew a lower id but committed later than
    // one already processed is taken in a later batch. The receipts are chosen by their
    // alert counts first, so that the payloads of those left for the next batch are never
    // read.
    let rows = sqlx::query(NEXT_RECEIPTS)
        .bind(i64::try_from(limit).unwrap_or(i64::MAX))
        .bind(i64::try_from(alert_budget).unwrap_or(i64::MAX))
        .fetch_all(&mut *connection)
        .await
        .map_err(|source| storage_error(OPERATION, source))?;
    rows.iter()
        .map(|row| -> anyhow::Result<UnprocessedReceipt> {
            Ok(UnprocessedReceipt {
                receipt_id: row.try_get("id")?,
                received_at: parse_time(row.try_get("received_at")?)?,
                payload: row.try_get("payload")?,
            })
        })
        .collect::<anyhow::Result<_>>()
        .map_err(|source| storage_error(OPERATION, source))
}
