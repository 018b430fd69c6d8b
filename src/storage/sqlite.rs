//! The SQLite backend: one file in WAL mode with `synchronous=FULL`, so that a commit is on
//! disk before the webhook is acknowledged. Writes go through a pool of one connection and
//! start with `BEGIN IMMEDIATE` (the write lock up front, never an upgrade that can fail
//! half-way); reads use their own pool and never wait for writers.

use std::collections::{BTreeMap, HashMap};
use std::path::Path;
use std::str::FromStr as _;
use std::time::Duration;

use anyhow::Context as _;
use jiff::Timestamp;
use sqlx::sqlite::{
    SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqlitePoolOptions, SqliteSynchronous,
};
use sqlx::{QueryBuilder, Row as _, Sqlite};

use super::{AlertRecord, ReceiptRecord, StorageError, StoredReceipt, format_time, parse_time};
use crate::alertmanager::{Alert, AlertStatus, Notification};

/// Rows per multi-row INSERT: 10 parameters each stays far below SQLite's 32,766.
const ALERT_ROWS_PER_STATEMENT: usize = 500;

#[derive(Clone)]
pub struct SqliteStorage {
    writer: SqlitePool,
    reader: SqlitePool,
}

impl SqliteStorage {
    pub async fn open(path: &Path, busy_timeout: Duration) -> anyhow::Result<SqliteStorage> {
        if let Some(folder) = path
            .parent()
            .filter(|folder| !folder.as_os_str().is_empty())
        {
            std::fs::create_dir_all(folder).with_context(|| {
                format!("cannot create the database folder {}", folder.display())
            })?;
        }
        let options = SqliteConnectOptions::from_str("sqlite://")
            .context("sqlite options")?
            .filename(path)
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            .synchronous(SqliteSynchronous::Full)
            .foreign_keys(true)
            .busy_timeout(busy_timeout);
        // Waiting for the single writer connection is bounded like waiting for a lock.
        let acquire_timeout = busy_timeout + Duration::from_secs(1);
        let writer = SqlitePoolOptions::new()
            .max_connections(1)
            .min_connections(1)
            .acquire_timeout(acquire_timeout)
            .connect_with(options.clone())
            .await
            .with_context(|| format!("cannot open the database {}", path.display()))?;
        sqlx::migrate!("./migrations/sqlite")
            .run(&writer)
            .await
            .context("cannot migrate the database")?;
        let reader = SqlitePoolOptions::new()
            .max_connections(4)
            .min_connections(0)
            .acquire_timeout(acquire_timeout)
            .connect_with(options)
            .await
            .with_context(|| format!("cannot open the database {} for reading", path.display()))?;
        Ok(SqliteStorage { writer, reader })
    }

    pub async fn close(&self) {
        self.reader.close().await;
        self.writer.close().await;
    }

    pub async fn store_notification(
        &self,
        notification: &Notification,
        dedupe_key: &str,
        raw_payload: &str,
        received_at: Timestamp,
    ) -> Result<StoredReceipt, StorageError> {
        const OPERATION: &str = "store_notification";
        let error = |source: sqlx::Error| StorageError::new(OPERATION, source);
        let mut transaction = self
            .writer
            .begin_with("BEGIN IMMEDIATE")
            .await
            .map_err(error)?;
        let inserted: Option<i64> = sqlx::query_scalar(
            "INSERT INTO webhook_receipts \
             (dedupe_key, received_at, group_key, status, receiver, external_url, n_alerts, truncated_alerts, payload) \
             VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?) \
             ON CONFLICT (dedupe_key) DO NOTHING RETURNING id",
        )
        .bind(dedupe_key)
        .bind(format_time(received_at))
        .bind(&notification.group_key)
        .bind(notification.status.as_str())
        .bind(&notification.receiver)
        .bind(&notification.external_url)
        .bind(notification.alerts.len() as i64)
        .bind(notification.truncated_alerts as i64)
        .bind(raw_payload)
        .fetch_optional(&mut *transaction)
        .await
        .map_err(error)?;
        let Some(receipt_id) = inserted else {
            let existing: i64 =
                sqlx::query_scalar("SELECT id FROM webhook_receipts WHERE dedupe_key = ?")
                    .bind(dedupe_key)
                    .fetch_one(&mut *transaction)
                    .await
                    .map_err(error)?;
            transaction.rollback().await.map_err(error)?;
            return Ok(StoredReceipt {
                receipt_id: existing,
                duplicate: true,
            });
        };

        let updated_at = format_time(received_at);
        let alerts = latest_per_key(&notification.alerts);
        for chunk in alerts.chunks(ALERT_ROWS_PER_STATEMENT) {
            let mut builder: QueryBuilder<Sqlite> = QueryBuilder::new(
                "INSERT INTO alerts (fingerprint, starts_at, status, labels, annotations, ends_at, \
                 generator_url, first_receipt_id, last_receipt_id, updated_at) ",
            );
            builder.push_values(chunk, |mut row, alert| {
                row.push_bind(alert.fingerprint.as_str())
                    .push_bind(format_time(alert.starts_at))
                    .push_bind(alert.status.as_str())
                    .push_bind(serde_json::to_string(&alert.labels).expect("map of strings"))
                    .push_bind(serde_json::to_string(&alert.annotations).expect("map of strings"))
                    .push_bind(alert.ends_at.map(format_time))
                    .push_bind(alert.generator_url.as_str())
                    .push_bind(receipt_id)
                    .push_bind(receipt_id)
                    .push_bind(updated_at.as_str());
            });
            // A resolved alert stays resolved: a late "firing" for the same
            // (fingerprint, startsAt) is an older message, not a new outage (a re-fire
            // has a new startsAt).
            builder.push(
                " ON CONFLICT (fingerprint, starts_at) DO UPDATE SET \
                 status = CASE WHEN alerts.status = 'resolved' THEN alerts.status ELSE excluded.status END, \
                 ends_at = CASE WHEN alerts.status = 'resolved' THEN alerts.ends_at ELSE excluded.ends_at END, \
                 labels = CASE WHEN alerts.status = 'resolved' THEN alerts.labels ELSE excluded.labels END, \
                 annotations = CASE WHEN alerts.status = 'resolved' THEN alerts.annotations ELSE excluded.annotations END, \
                 generator_url = excluded.generator_url, \
                 last_receipt_id = excluded.last_receipt_id, \
                 updated_at = excluded.updated_at",
            );
            builder
                .build()
                .execute(&mut *transaction)
                .await
                .map_err(error)?;
        }
        transaction.commit().await.map_err(error)?;
        Ok(StoredReceipt {
            receipt_id,
            duplicate: false,
        })
    }

    pub async fn check_writable(&self) -> Result<(), StorageError> {
        let error = |source: sqlx::Error| StorageError::new("check_writable", source);
        let mut transaction = self
            .writer
            .begin_with("BEGIN IMMEDIATE")
            .await
            .map_err(error)?;
        sqlx::query("UPDATE relay_heartbeat SET checked_at = ? WHERE id = 1")
            .bind(format_time(Timestamp::now()))
            .execute(&mut *transaction)
            .await
            .map_err(error)?;
        transaction.commit().await.map_err(error)?;
        Ok(())
    }

    pub async fn receipts(&self) -> Result<Vec<ReceiptRecord>, StorageError> {
        const OPERATION: &str = "receipts";
        let rows = sqlx::query(
            "SELECT id, received_at, group_key, status, receiver, n_alerts, payload \
             FROM webhook_receipts ORDER BY id",
        )
        .fetch_all(&self.reader)
        .await
        .map_err(|source| StorageError::new(OPERATION, source))?;
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
            .map_err(|source| StorageError::new(OPERATION, source))
    }

    pub async fn alerts(&self) -> Result<Vec<AlertRecord>, StorageError> {
        const OPERATION: &str = "alerts";
        let rows = sqlx::query(
            "SELECT fingerprint, starts_at, status, labels, annotations, ends_at, generator_url, \
             first_receipt_id, last_receipt_id FROM alerts ORDER BY fingerprint, starts_at",
        )
        .fetch_all(&self.reader)
        .await
        .map_err(|source| StorageError::new(OPERATION, source))?;
        rows.iter()
            .map(|row| -> anyhow::Result<AlertRecord> {
                let ends_at: Option<String> = row.try_get("ends_at")?;
                Ok(AlertRecord {
                    fingerprint: row.try_get("fingerprint")?,
                    starts_at: parse_time(row.try_get("starts_at")?)?,
                    status: parse_status(row.try_get("status")?)?,
                    labels: parse_map(row.try_get("labels")?)?,
                    annotations: parse_map(row.try_get("annotations")?)?,
                    ends_at: ends_at.as_deref().map(parse_time).transpose()?,
                    generator_url: row.try_get("generator_url")?,
                    first_receipt_id: row.try_get("first_receipt_id")?,
                    last_receipt_id: row.try_get("last_receipt_id")?,
                })
            })
            .collect::<anyhow::Result<_>>()
            .map_err(|source| StorageError::new(OPERATION, source))
    }
}

/// One alert per (fingerprint, startsAt), so that one statement never touches a row twice
/// (PostgreSQL refuses that); a resolved copy wins, otherwise the last one.
fn latest_per_key(alerts: &[Alert]) -> Vec<&Alert> {
    let mut position: HashMap<(&str, Timestamp), usize> = HashMap::with_capacity(alerts.len());
    let mut chosen: Vec<&Alert> = Vec::with_capacity(alerts.len());
    for alert in alerts {
        match position.get(&(alert.fingerprint.as_str(), alert.starts_at)) {
            Some(&index) => {
                if chosen[index].status != AlertStatus::Resolved {
                    chosen[index] = alert;
                }
            }
            None => {
                position.insert((alert.fingerprint.as_str(), alert.starts_at), chosen.len());
                chosen.push(alert);
            }
        }
    }
    chosen
}

fn parse_status(text: String) -> anyhow::Result<AlertStatus> {
    AlertStatus::parse(&text).with_context(|| format!("unknown stored status {text:?}"))
}

fn parse_map(text: String) -> anyhow::Result<BTreeMap<String, String>> {
    serde_json::from_str(&text).context("stored labels are not a JSON object of strings")
}
