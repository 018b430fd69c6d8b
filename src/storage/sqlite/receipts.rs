//! Receipts in SQLite: `webhook_receipts` (unique by dedupe key) in the receipts file,
//! written by ingest on its own connection; the backlog is every receipt above the highest
//! id in `receipts_processed`, in the relay's database. Every other connection sees the
//! receipts file as the schema `receipts`.

use std::collections::HashMap;

use async_trait::async_trait;
use sqlx::{QueryBuilder, Row as _, Sqlite};

use super::rows::parse_status;
use super::{Connection, SqliteStorage, format_time, parse_time, storage_error};
use crate::storage::{
    NewReceipt, ReceiptRecord, Receipts, StorageError, StoredReceipt, UnprocessedReceipt,
};

#[async_trait]
impl Receipts for SqliteStorage {
    /// Stores a batch of notifications in one transaction (group commit): one answer per
    /// notification, in order. A notification already stored (before, or earlier in the
    /// same batch) is answered as a duplicate. The transaction is one command to the
    /// connection's thread (see [`insert_receipts`]).
    async fn store_notifications(
        &self,
        batch: &[NewReceipt<'_>],
    ) -> Result<Vec<StoredReceipt>, StorageError> {
        let error = |source: sqlx::Error| storage_error(STORE_NOTIFICATION, source);
        let mut connection =
            ClosedUnlessReleased(Some(self.receipts_writer.acquire().await.map_err(error)?));
        let receipts = insert_receipts(connection.get(), batch).await?;
        connection.release();
        Ok(receipts)
    }

    async fn receipts(&self) -> Result<Vec<ReceiptRecord>, StorageError> {
        const OPERATION: &str = "receipts";
        let rows = sqlx::query(
            "SELECT id, received_at, group_key, status, receiver, n_alerts, payload \
             FROM receipts.webhook_receipts ORDER BY id",
        )
        .fetch_all(&self.reader)
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
        sqlx::query_scalar(&format!(
            "SELECT COUNT(*) FROM receipts.webhook_receipts WHERE id > {LAST_PROCESSED}"
        ))
        .fetch_one(&self.reader)
        .await
        .map_err(|source| storage_error("n_unprocessed_receipts", source))
    }

    async fn backlog_bounds(&self) -> Result<(i64, i64), StorageError> {
        sqlx::query_as(&format!(
            "SELECT (SELECT COALESCE(MAX(id), 0) FROM receipts.webhook_receipts), {LAST_PROCESSED}"
        ))
        .fetch_one(&self.reader)
        .await
        .map_err(|source| storage_error("backlog_bounds", source))
    }
}

/// The operation name of storing webhooks, in errors and metrics.
const STORE_NOTIFICATION: &str = "store_notification";

/// The highest receipt id the incident worker has processed (0 for none): receipts are
/// processed in id order and ids only grow, so every receipt above it is waiting.
const LAST_PROCESSED: &str = "(SELECT COALESCE(MAX(receipt_id), 0) FROM main.receipts_processed)";

/// Rows per multi-row INSERT of receipts: 9 parameters each.
pub(super) const RECEIPT_ROWS_PER_STATEMENT: usize = 1_000;

/// The receipts writer's connection while [`insert_receipts`] runs: closed, not returned
/// to the pool, unless released after the commit. The transaction is begun and committed
/// by statements that sqlx does not track, so a failure (or a cancelled future) between
/// the two could otherwise leave it open on a pooled connection and every later `BEGIN`
/// refused; closing the connection rolls it back, and the pool opens a fresh one.
struct ClosedUnlessReleased(Option<sqlx::pool::PoolConnection<Sqlite>>);

impl ClosedUnlessReleased {
    fn get(&mut self) -> &mut Connection {
        self.0.as_mut().expect("not yet released")
    }

    /// Back to the pool: the transaction committed.
    fn release(mut self) {
        self.0.take();
    }
}

impl Drop for ClosedUnlessReleased {
    fn drop(&mut self) {
        if let Some(mut connection) = self.0.take() {
            connection.close_on_drop();
        }
    }
}

/// Inserts the receipts of a batch in one transaction; one answer per receipt, in order.
/// `BEGIN IMMEDIATE`, the multi-row inserts and `COMMIT` go to the connection's thread as
/// one command: sqlx's own `begin` and `commit` are a command each, and each waits for
/// the calling task to acknowledge it, so that a commit of 8 webhooks cost about 10
/// context switches of that thread (docs/performance.md). The ids of keys stored by an
/// earlier batch are read after the commit: a receipt is never changed or deleted once
/// stored. Their alerts go to the incident worker, which reads the stored payloads.
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
    let mut builder: QueryBuilder<Sqlite> = QueryBuilder::new("BEGIN IMMEDIATE; ");
    for chunk in candidates.chunks(RECEIPT_ROWS_PER_STATEMENT) {
        builder.push(
            "INSERT INTO webhook_receipts \
             (dedupe_key, received_at, group_key, status, receiver, external_url, n_alerts, truncated_alerts, payload) ",
        );
        builder.push_values(chunk, |mut row, receipt| {
            let notification = receipt.notification;
            row.push_bind(receipt.dedupe_key)
                .push_bind(format_time(receipt.received_at))
                .push_bind(notification.group_key.as_str())
                .push_bind(notification.status.as_str())
                .push_bind(notification.receiver.as_str())
                .push_bind(notification.external_url.as_str())
                .push_bind(notification.alerts.len() as i64)
                .push_bind(notification.truncated_alerts as i64)
                .push_bind(receipt.raw_payload);
        });
        builder.push(" ON CONFLICT (dedupe_key) DO NOTHING RETURNING id, dedupe_key; ");
    }
    builder.push("COMMIT");
    let mut inserted: HashMap<String, i64> = HashMap::with_capacity(candidates.len());
    let rows = builder
        .build()
        .fetch_all(&mut *connection)
        .await
        .map_err(error)?;
    ids_by_key(&rows, &mut inserted)?;
    // Keys stored by an earlier batch.
    let mut existing: HashMap<String, i64> = HashMap::new();
    let stored_before: Vec<&str> = candidates
        .iter()
        .map(|receipt| receipt.dedupe_key)
        .filter(|key| !inserted.contains_key(*key))
        .collect();
    for chunk in stored_before.chunks(RECEIPT_ROWS_PER_STATEMENT) {
        let mut builder: QueryBuilder<Sqlite> =
            QueryBuilder::new("SELECT id, dedupe_key FROM webhook_receipts WHERE dedupe_key IN (");
        let mut separated = builder.separated(", ");
        for key in chunk {
            separated.push_bind(*key);
        }
        builder.push(")");
        let rows = builder
            .build()
            .fetch_all(&mut *connection)
            .await
            .map_err(error)?;
        ids_by_key(&rows, &mut existing)?;
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

/// Adds each row's `dedupe_key` and `id` to `ids`.
fn ids_by_key(
    rows: &[sqlx::sqlite::SqliteRow],
    ids: &mut HashMap<String, i64>,
) -> Result<(), StorageError> {
    for row in rows {
        ids.insert(
            row.try_get("dedupe_key")
                .map_err(|source| storage_error(STORE_NOTIFICATION, source))?,
            row.try_get("id")
                .map_err(|source| storage_error(STORE_NOTIFICATION, source))?,
        );
    }
    Ok(())
}

pub(super) async fn next_unprocessed_receipts(
    connection: &mut Connection,
    limit: usize,
    alert_budget: usize,
) -> Result<Vec<UnprocessedReceipt>, StorageError> {
    const OPERATION: &str = "next_unprocessed_receipts";
    // The receipts are chosen by their alert counts first, so that the payloads of those
    // left for the next batch are never read (a backlog of 10,000-alert webhooks is
    // megabytes each).
    let rows = sqlx::query(&format!(
        "WITH next AS (SELECT id, n_alerts FROM receipts.webhook_receipts WHERE id > {LAST_PROCESSED} \
             ORDER BY id LIMIT ?), \
         counted AS (SELECT id, ROW_NUMBER() OVER w AS position, SUM(n_alerts) OVER w AS running \
             FROM next WINDOW w AS (ORDER BY id ROWS UNBOUNDED PRECEDING)) \
         SELECT r.id, r.received_at, r.payload FROM receipts.webhook_receipts r JOIN counted c ON c.id = r.id \
         WHERE c.position = 1 OR c.running <= ? ORDER BY r.id"
    ))
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

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use jiff::Timestamp;

    use sqlx::Connection as _;

    use super::super::{SqliteStorage, receipts_path};
    use crate::alertmanager::Notification;
    use crate::storage::{Backend as _, NewReceipt, Receipts as _};

    fn body(group_key: &str) -> String {
        format!(
            r#"{{"version":"4","groupKey":"{group_key}","truncatedAlerts":0,"status":"firing","receiver":"r","groupLabels":{{}},"commonLabels":{{}},"commonAnnotations":{{}},"externalURL":"http://am","alerts":[]}}"#
        )
    }

    async fn store(
        storage: &SqliteStorage,
        webhooks: &[(&str, &str)],
    ) -> Result<Vec<(i64, bool)>, crate::storage::StorageError> {
        let bodies: Vec<String> = webhooks.iter().map(|(group, _)| body(group)).collect();
        let notifications: Vec<Notification> = bodies
            .iter()
            .map(|body| Notification::parse(body.as_bytes()).unwrap())
            .collect();
        let batch: Vec<NewReceipt<'_>> = webhooks
            .iter()
            .enumerate()
            .map(|(index, (_, key))| NewReceipt {
                notification: &notifications[index],
                dedupe_key: key,
                raw_payload: &bodies[index],
                received_at: Timestamp::now(),
            })
            .collect();
        Ok(storage
            .store_notifications(&batch)
            .await?
            .into_iter()
            .map(|stored| (stored.receipt_id, stored.duplicate))
            .collect())
    }

    #[tokio::test]
    async fn a_batch_that_fails_midway_stores_nothing_and_the_next_batch_is_stored() {
        let folder = tempfile::tempdir().unwrap();
        let path = folder.path().join("relay.db");
        let storage = SqliteStorage::open(&path, Duration::from_secs(1), 0)
            .await
            .unwrap();
        assert_eq!(
            store(&storage, &[("g", "a"), ("g", "b"), ("g", "a")])
                .await
                .unwrap(),
            vec![(1, false), (2, false), (1, true)]
        );
        // A fault inside the transaction, after its BEGIN and its first rows: the insert
        // of a webhook whose group key is "fail" aborts.
        let mut other = sqlx::SqliteConnection::connect(&format!(
            "sqlite://{}",
            receipts_path(&path).display()
        ))
        .await
        .unwrap();
        sqlx::query(
            "CREATE TRIGGER injected_fault BEFORE INSERT ON webhook_receipts \
             WHEN NEW.group_key = 'fail' BEGIN SELECT RAISE(ABORT, 'injected fault'); END",
        )
        .execute(&mut other)
        .await
        .unwrap();
        let error = store(&storage, &[("g", "c"), ("fail", "d")])
            .await
            .unwrap_err();
        assert!(
            format!("{:#}", error.source).contains("injected fault"),
            "{error:?}"
        );
        sqlx::query("DROP TRIGGER injected_fault")
            .execute(&mut other)
            .await
            .unwrap();
        other.close().await.unwrap();
        // Nothing of the failed batch is stored, and its transaction is not left open on
        // the connection: the next batch (with a key stored before) is taken. (An insert
        // that meets a stored key still uses up an id of the AUTOINCREMENT sequence.)
        let stored = store(&storage, &[("g", "b"), ("g", "c"), ("g", "d")])
            .await
            .unwrap();
        assert_eq!(stored[0], (2, true));
        assert!(!stored[1].1 && !stored[2].1, "{stored:?}");
        assert!(2 < stored[1].0 && stored[1].0 < stored[2].0, "{stored:?}");
        let keys: Vec<String> =
            sqlx::query_scalar("SELECT dedupe_key FROM receipts.webhook_receipts ORDER BY id")
                .fetch_all(&storage.reader)
                .await
                .unwrap();
        assert_eq!(keys, ["a", "b", "c", "d"]);
        storage.close().await;
    }
}
