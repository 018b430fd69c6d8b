//! The SQLite backend: one file in WAL mode with `synchronous=FULL`, so that a commit is on
//! disk before the webhook is acknowledged. Writes go through a pool of one connection and
//! start with `BEGIN IMMEDIATE` (the write lock up front, never an upgrade that can fail
//! half-way); reads use their own pool and never wait for writers.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::path::Path;
use std::str::FromStr as _;
use std::time::Duration;

use anyhow::Context as _;
use jiff::Timestamp;
use sqlx::sqlite::{
    SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqlitePoolOptions, SqliteSynchronous,
};
use sqlx::{QueryBuilder, Row as _, Sqlite};

use super::{
    AlertRecord, AlreadyPublished, ClaimedDelivery, CorrelationState, DeliveryResult, DraftFields,
    DraftForPublish, DraftRecord, DraftVersionRecord, DraftWrite, EventRecord, EventWrite,
    IncidentBatch, IncidentRecord, IncidentWrite, NewReceipt, OutboxRecord, PendingDraft,
    PublicationWrite, PublishedNoticeRecord, ReceiptRecord, ReceivedAlerts, StorageError,
    StoredReceipt, UnprocessedReceipt, format_time, parse_time,
};
use crate::alertmanager::{Alert, AlertStatus};
use crate::incident::{AlertKey, FiringScopes, Incident, IncidentEngine, Phase, TrackedAlert};
use crate::notice::{NoticeKind, RenderedNotice};

/// Rows per multi-row INSERT: 10 parameters each stays far below SQLite's 32,766.
const ALERT_ROWS_PER_STATEMENT: usize = 500;

/// WAL pages after which a commit checkpoints by itself, in the committing request's
/// time. The checkpointer ([`SqliteStorage::checkpoint`], run by the app every
/// [`super::CHECKPOINT_INTERVAL`]) does it long before, off the commit path; this is the
/// bound if it cannot (80 MB with 4 KiB pages).
const WAL_AUTOCHECKPOINT_PAGES: u32 = 20_000;

#[derive(Clone)]
pub struct SqliteStorage {
    pub(super) writer: SqlitePool,
    pub(super) reader: SqlitePool,
    /// The database file's folder and the free space it must keep.
    folder: std::path::PathBuf,
    min_free_bytes: u64,
}

impl SqliteStorage {
    pub async fn open(
        path: &Path,
        busy_timeout: Duration,
        min_free_bytes: u64,
    ) -> anyhow::Result<SqliteStorage> {
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
            .busy_timeout(busy_timeout)
            .pragma("wal_autocheckpoint", WAL_AUTOCHECKPOINT_PAGES.to_string());
        // Waiting for the single writer connection is bounded like waiting for a lock.
        let acquire_timeout = busy_timeout + Duration::from_secs(1);
        let writer = SqlitePoolOptions::new()
            .max_connections(1)
            .min_connections(1)
            .acquire_timeout(acquire_timeout)
            // A connection whose transaction could neither commit nor roll back (a full
            // disk, an I/O error) would refuse every later BEGIN: close it instead of
            // reusing it, and the pool opens a fresh one.
            .after_release(|connection, _| {
                Box::pin(async move {
                    use sqlx::Connection as _;
                    Ok(!connection.is_in_transaction())
                })
            })
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
        let folder = match path
            .parent()
            .filter(|folder| !folder.as_os_str().is_empty())
        {
            Some(folder) => folder.to_owned(),
            None => std::path::PathBuf::from("."),
        };
        Ok(SqliteStorage {
            writer,
            reader,
            folder,
            min_free_bytes,
        })
    }

    /// Copies committed WAL pages into the database file without waiting for any reader or
    /// writer (a passive checkpoint), on a reading connection so that commits go on.
    /// Returns the WAL's pages and how many of them are in the database now.
    pub async fn checkpoint(&self) -> Result<(i64, i64), StorageError> {
        let row = sqlx::query("PRAGMA wal_checkpoint(PASSIVE)")
            .fetch_one(&self.reader)
            .await
            .map_err(|source| StorageError::new("checkpoint", source))?;
        let pages: i64 = row
            .try_get(1)
            .map_err(|source| StorageError::new("checkpoint", source))?;
        let checkpointed: i64 = row
            .try_get(2)
            .map_err(|source| StorageError::new("checkpoint", source))?;
        Ok((pages, checkpointed))
    }

    pub async fn close(&self) {
        self.reader.close().await;
        self.writer.close().await;
    }

    /// Stores a batch of notifications in one transaction (group commit): one answer per
    /// notification, in order. A notification already stored (before, or earlier in the
    /// same batch) is answered as a duplicate. A few statements serve the whole batch, since
    /// every statement is a round trip to the connection's thread.
    pub async fn store_notifications(
        &self,
        batch: &[NewReceipt<'_>],
    ) -> Result<Vec<StoredReceipt>, StorageError> {
        let error = |source: sqlx::Error| StorageError::new(STORE_NOTIFICATION, source);
        let mut transaction = self
            .writer
            .begin_with("BEGIN IMMEDIATE")
            .await
            .map_err(error)?;
        let receipts = insert_receipts(&mut transaction, batch).await?;
        transaction.commit().await.map_err(error)?;
        Ok(receipts)
    }

    pub async fn check_writable(&self) -> Result<(), StorageError> {
        let error = |source: sqlx::Error| StorageError::new("check_writable", source);
        // A write of a few bytes can still succeed on a disk too full for a webhook.
        let free = rustix::fs::statvfs(&self.folder)
            .map(|stats| stats.f_bavail.saturating_mul(stats.f_frsize))
            .map_err(|source| {
                StorageError::new("check_free_space", std::io::Error::from(source))
            })?;
        if free < self.min_free_bytes {
            return Err(StorageError::new(
                "check_free_space",
                anyhow::anyhow!(
                    "{free} bytes free, below the {} required",
                    self.min_free_bytes
                ),
            ));
        }
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

/// The operation name of storing webhooks, in errors and metrics.
const STORE_NOTIFICATION: &str = "store_notification";

/// The highest receipt id the incident worker has processed (0 for none): receipts are
/// processed in id order and ids only grow, so every receipt above it is waiting.
const LAST_PROCESSED: &str = "(SELECT COALESCE(MAX(receipt_id), 0) FROM receipts_processed)";

/// Rows per multi-row INSERT of receipts: 9 parameters each.
const RECEIPT_ROWS_PER_STATEMENT: usize = 1_000;

/// Inserts the receipts of a batch inside the caller's transaction; one answer per
/// receipt, in order. Their alerts go into `alerts` when the incident worker processes
/// them ([`finish_incident_batch`]), so that a webhook's commit writes its receipt only.
async fn insert_receipts(
    connection: &mut Connection,
    batch: &[NewReceipt<'_>],
) -> Result<Vec<StoredReceipt>, StorageError> {
    let error = |source: sqlx::Error| StorageError::new(STORE_NOTIFICATION, source);
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
    let mut inserted: HashMap<String, i64> = HashMap::with_capacity(candidates.len());
    for chunk in candidates.chunks(RECEIPT_ROWS_PER_STATEMENT) {
        let mut builder: QueryBuilder<Sqlite> = QueryBuilder::new(
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
        builder.push(" ON CONFLICT (dedupe_key) DO NOTHING RETURNING id, dedupe_key");
        let rows = builder
            .build()
            .fetch_all(&mut *connection)
            .await
            .map_err(error)?;
        for row in rows {
            inserted.insert(
                row.try_get("dedupe_key").map_err(error)?,
                row.try_get("id").map_err(error)?,
            );
        }
    }
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
        for row in builder
            .build()
            .fetch_all(&mut *connection)
            .await
            .map_err(error)?
        {
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
                (None, None) => Err(StorageError::new(
                    STORE_NOTIFICATION,
                    anyhow::anyhow!("receipt {key:?} neither inserted nor found"),
                )),
            }
        })
        .collect()
}

/// Upserts the alerts the receipts of a batch carried into `alerts`, in receipt order, so
/// that a later webhook's copy of an alert is applied after an earlier one's.
async fn upsert_received_alerts(
    connection: &mut Connection,
    received: &[ReceivedAlerts],
) -> Result<(), StorageError> {
    const OPERATION: &str = "upsert_alerts";
    let error = |source: sqlx::Error| StorageError::new(OPERATION, source);
    let mut alert_rows: Vec<(&Alert, i64, String)> = Vec::new();
    for receipt in received {
        let updated_at = format_time(receipt.received_at);
        for alert in latest_per_key(&receipt.alerts) {
            alert_rows.push((alert, receipt.receipt_id, updated_at.clone()));
        }
    }
    for chunk in alert_rows.chunks(ALERT_ROWS_PER_STATEMENT) {
        let mut builder: QueryBuilder<Sqlite> = QueryBuilder::new(
            "INSERT INTO alerts (fingerprint, starts_at, status, labels, annotations, ends_at, \
             generator_url, first_receipt_id, last_receipt_id, updated_at) ",
        );
        builder.push_values(chunk, |mut row, (alert, receipt_id, updated_at)| {
            row.push_bind(alert.fingerprint.as_str())
                .push_bind(format_time(alert.starts_at))
                .push_bind(alert.status.as_str())
                .push_bind(serde_json::to_string(&alert.labels).expect("map of strings"))
                .push_bind(serde_json::to_string(&alert.annotations).expect("map of strings"))
                .push_bind(alert.ends_at.map(format_time))
                .push_bind(alert.generator_url.as_str())
                .push_bind(*receipt_id)
                .push_bind(*receipt_id)
                .push_bind(updated_at.as_str());
        });
        // A resolved alert stays resolved: a late "firing" for the same
        // (fingerprint, startsAt) is an older message, not a new outage (a re-fire has a
        // new startsAt). SQLite applies the rows in order, so when several webhooks of
        // the batch carry the same alert, each later copy updates the earlier one.
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
            .execute(&mut *connection)
            .await
            .map_err(error)?;
    }
    Ok(())
}

/// One alert per (fingerprint, startsAt) of one webhook: a resolved copy wins, otherwise
/// the last one.
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

// ---------------------------------------------------------------------------------------
// Incidents: the functions below run inside a write transaction (see WriteTransaction).

pub(super) type Connection = sqlx::SqliteConnection;

pub(super) const INCIDENT_COLUMNS: &str =
    "id, kind, phase, started_at, resolved_at, n_reopened, summary, classification, published";

impl SqliteStorage {
    pub async fn begin_write(&self) -> Result<sqlx::Transaction<'static, Sqlite>, StorageError> {
        self.writer
            .begin_with("BEGIN IMMEDIATE")
            .await
            .map_err(|source| StorageError::new("begin_write", source))
    }

    pub async fn incidents(&self) -> Result<Vec<IncidentRecord>, StorageError> {
        const OPERATION: &str = "incidents";
        let mut connection = self
            .reader
            .acquire()
            .await
            .map_err(|source| StorageError::new(OPERATION, source))?;
        let rows = sqlx::query(&format!(
            "SELECT {INCIDENT_COLUMNS} FROM incidents ORDER BY id"
        ))
        .fetch_all(&mut *connection)
        .await
        .map_err(|source| StorageError::new(OPERATION, source))?;
        let mut records = Vec::with_capacity(rows.len());
        for row in &rows {
            let incident_id: i64 = row
                .try_get("id")
                .map_err(|source| StorageError::new(OPERATION, source))?;
            let alerts = load_incident_alerts(&mut connection, incident_id).await?;
            let mut record = incident_from_row(row, alerts)
                .map_err(|source| StorageError::new(OPERATION, source))?;
            let pending: Option<String> = sqlx::query_scalar(
                "SELECT kind FROM drafts WHERE incident_id = ? AND state = 'pending'",
            )
            .bind(incident_id)
            .fetch_optional(&mut *connection)
            .await
            .map_err(|source| StorageError::new(OPERATION, source))?;
            record.incident.pending_draft = pending
                .map(parse_kind)
                .transpose()
                .map_err(|source| StorageError::new(OPERATION, source))?;
            records.push(record);
        }
        Ok(records)
    }

    pub async fn drafts(&self, incident_id: i64) -> Result<Vec<DraftRecord>, StorageError> {
        const OPERATION: &str = "drafts";
        let error = |source: sqlx::Error| StorageError::new(OPERATION, source);
        let drafts = sqlx::query(
            "SELECT id, incident_id, kind, state, state_reason FROM drafts WHERE incident_id = ? ORDER BY id",
        )
        .bind(incident_id)
        .fetch_all(&self.reader)
        .await
        .map_err(error)?;
        let versions = sqlx::query(
            "SELECT v.draft_id, v.version, v.created_at, v.created_by, v.fields, v.input, v.rendered \
             FROM draft_versions v JOIN drafts d ON d.id = v.draft_id \
             WHERE d.incident_id = ? ORDER BY v.draft_id, v.version",
        )
        .bind(incident_id)
        .fetch_all(&self.reader)
        .await
        .map_err(error)?;
        let parse = || -> anyhow::Result<Vec<DraftRecord>> {
            let mut records = Vec::with_capacity(drafts.len());
            for row in &drafts {
                let draft_id: i64 = row.try_get("id")?;
                let mut record_versions = Vec::new();
                for version in versions
                    .iter()
                    .filter(|version| version.get::<i64, _>("draft_id") == draft_id)
                {
                    record_versions.push(DraftVersionRecord {
                        version: version.try_get("version")?,
                        created_at: parse_time(version.try_get("created_at")?)?,
                        created_by: version.try_get("created_by")?,
                        fields: serde_json::from_str(version.try_get("fields")?)?,
                        input: serde_json::from_str(version.try_get("input")?)?,
                        rendered: serde_json::from_str(version.try_get("rendered")?)?,
                    });
                }
                records.push(DraftRecord {
                    draft_id,
                    incident_id: row.try_get("incident_id")?,
                    kind: parse_kind(row.try_get("kind")?)?,
                    state: row.try_get("state")?,
                    state_reason: row.try_get("state_reason")?,
                    versions: record_versions,
                });
            }
            Ok(records)
        };
        parse().map_err(|source| StorageError::new(OPERATION, source))
    }

    pub async fn incident_events(
        &self,
        incident_id: i64,
    ) -> Result<Vec<EventRecord>, StorageError> {
        const OPERATION: &str = "incident_events";
        let rows = sqlx::query(
            "SELECT id, incident_id, at, source, event, detail FROM incident_events \
             WHERE incident_id = ? ORDER BY id",
        )
        .bind(incident_id)
        .fetch_all(&self.reader)
        .await
        .map_err(|source| StorageError::new(OPERATION, source))?;
        rows.iter()
            .map(event_from_row)
            .collect::<anyhow::Result<_>>()
            .map_err(|source| StorageError::new(OPERATION, source))
    }

    pub async fn n_unprocessed_receipts(&self) -> Result<i64, StorageError> {
        sqlx::query_scalar(&format!(
            "SELECT COUNT(*) FROM webhook_receipts WHERE id > {LAST_PROCESSED}"
        ))
        .fetch_one(&self.reader)
        .await
        .map_err(|source| StorageError::new("n_unprocessed_receipts", source))
    }
}

pub(super) async fn next_unprocessed_receipts(
    connection: &mut Connection,
    limit: usize,
) -> Result<Vec<UnprocessedReceipt>, StorageError> {
    const OPERATION: &str = "next_unprocessed_receipts";
    let rows = sqlx::query(&format!(
        "SELECT id, received_at, payload FROM webhook_receipts WHERE id > {LAST_PROCESSED} \
             ORDER BY id LIMIT ?"
    ))
    .bind(i64::try_from(limit).unwrap_or(i64::MAX))
    .fetch_all(&mut *connection)
    .await
    .map_err(|source| StorageError::new(OPERATION, source))?;
    rows.iter()
        .map(|row| -> anyhow::Result<UnprocessedReceipt> {
            Ok(UnprocessedReceipt {
                receipt_id: row.try_get("id")?,
                received_at: parse_time(row.try_get("received_at")?)?,
                payload: row.try_get("payload")?,
            })
        })
        .collect::<anyhow::Result<_>>()
        .map_err(|source| StorageError::new(OPERATION, source))
}

pub(super) async fn load_correlation(
    connection: &mut Connection,
    keys: &[AlertKey],
    previous: Option<IncidentEngine>,
) -> Result<CorrelationState, StorageError> {
    const OPERATION: &str = "load_correlation";
    let error = |source: sqlx::Error| StorageError::new(OPERATION, source);
    let next_incident_id: i64 =
        sqlx::query_scalar("SELECT COALESCE(MAX(id), 0) + 1 FROM incidents")
            .fetch_one(&mut *connection)
            .await
            .map_err(error)?;
    let latest_row = sqlx::query(&format!(
        "SELECT {INCIDENT_COLUMNS} FROM incidents WHERE kind = 'outage' ORDER BY id DESC LIMIT 1"
    ))
    .fetch_optional(&mut *connection)
    .await
    .map_err(error)?;
    let mut latest = None;
    let mut pending_draft = None;
    let mut firing_scopes = FiringScopes::default();
    if let Some(row) = latest_row {
        let incident_id: i64 = row.try_get("id").map_err(error)?;
        // Only the incident worker changes an outage incident's alerts, so those of the
        // last committed step are still what the database holds.
        let kept = previous.and_then(|previous| {
            let kept_latest = previous.latest?;
            (kept_latest.incident_id == incident_id)
                .then_some((kept_latest.alerts, previous.firing_scopes))
        });
        let alerts = match kept {
            Some((alerts, scopes)) => {
                firing_scopes = scopes;
                alerts
            }
            None => load_incident_alerts(connection, incident_id).await?,
        };
        let record = incident_from_row(&row, alerts)
            .map_err(|source| StorageError::new(OPERATION, source))?;
        latest = Some(record.incident);
        let pending = sqlx::query(
            "SELECT d.id, d.kind, v.version, v.fields FROM drafts d JOIN draft_versions v ON v.draft_id = d.id \
             WHERE d.incident_id = ? AND d.state = 'pending' ORDER BY v.version DESC LIMIT 1",
        )
        .bind(incident_id)
        .fetch_optional(&mut *connection)
        .await
        .map_err(error)?;
        if let Some(pending) = pending {
            let parse = || -> anyhow::Result<PendingDraft> {
                Ok(PendingDraft {
                    draft_id: pending.try_get("id")?,
                    kind: parse_kind(pending.try_get("kind")?)?,
                    version: pending.try_get("version")?,
                    fields: serde_json::from_str(pending.try_get("fields")?)?,
                })
            };
            pending_draft = Some(parse().map_err(|source| StorageError::new(OPERATION, source))?);
        }
        if let Some(incident) = latest.as_mut() {
            incident.pending_draft = pending_draft
                .as_ref()
                .map(|pending: &PendingDraft| pending.kind);
        }
    }
    let latest_id = latest
        .as_ref()
        .map(|incident: &Incident| incident.incident_id);

    let mut retired_alerts = HashSet::new();
    for chunk in keys.chunks(ALERT_ROWS_PER_STATEMENT) {
        let mut builder: QueryBuilder<Sqlite> = QueryBuilder::new(
            "SELECT fingerprint, starts_at FROM incident_alerts WHERE (fingerprint, starts_at) IN (",
        );
        let mut separated = builder.separated(", ");
        for key in chunk {
            separated.push("(");
            separated.push_bind_unseparated(key.fingerprint.as_str());
            separated.push_unseparated(", ");
            separated.push_bind_unseparated(format_time(key.starts_at));
            separated.push_unseparated(")");
        }
        builder.push(") AND (incident_id IS NULL OR incident_id <> ");
        builder.push_bind(latest_id.unwrap_or(0));
        builder.push(")");
        let rows = builder
            .build()
            .fetch_all(&mut *connection)
            .await
            .map_err(error)?;
        for row in rows {
            let fingerprint: String = row.try_get("fingerprint").map_err(error)?;
            let starts_at: String = row.try_get("starts_at").map_err(error)?;
            let starts_at =
                parse_time(&starts_at).map_err(|source| StorageError::new(OPERATION, source))?;
            retired_alerts.insert(AlertKey {
                fingerprint,
                starts_at,
            });
        }
    }
    Ok(CorrelationState {
        engine: IncidentEngine {
            latest,
            retired_alerts,
            next_incident_id,
            firing_scopes,
        },
        pending_draft,
    })
}

/// Writes what one step must write at once (a new incident's row, its drafts, whose ids
/// later steps of the batch need) and adds the rest to `batch`, which
/// [`finish_incident_batch`] writes in a few statements. Returns the id of the draft
/// created, if any.
pub(super) async fn stage_incident_step(
    connection: &mut Connection,
    write: &IncidentWrite,
    batch: &mut IncidentBatch,
) -> Result<Option<i64>, StorageError> {
    batch
        .retired_unseen
        .extend(write.retired_unseen.iter().cloned());
    let Some(change) = &write.change else {
        return Ok(None);
    };
    const OPERATION: &str = "stage_incident_step";
    let error = |source: sqlx::Error| StorageError::new(OPERATION, source);
    let incident = &change.incident;
    let incident_id = incident.incident_id;
    let at = format_time(write.at);
    if change.is_new {
        // The previous incident's last state first: at most one outage is open.
        update_headers(connection, &batch.headers).await?;
        batch.headers.clear();
        let header =
            IncidentHeader::of(incident).map_err(|source| StorageError::new(OPERATION, source))?;
        sqlx::query(
            "INSERT INTO incidents (id, kind, phase, started_at, resolved_at, n_reopened, summary, classification, \
             published, created_at, updated_at) VALUES (?, 'outage', ?, ?, ?, ?, ?, ?, ?, ?, ?)",
        )
        .bind(incident_id)
        .bind(header.phase)
        .bind(&header.started_at)
        .bind(&header.resolved_at)
        .bind(header.n_reopened)
        .bind(&header.summary)
        .bind(&header.classification)
        .bind(&header.published)
        .bind(&at)
        .bind(&at)
        .execute(&mut *connection)
        .await
        .map_err(error)?;
    }
    // The header as the last step of the batch leaves it is written once, at the end.
    batch
        .headers
        .insert(incident_id, (incident.clone(), write.at));
    for (key, alert) in &change.alerts {
        batch.alerts.push((incident_id, key.clone(), alert.clone()));
    }
    batch.events.extend(
        change
            .events
            .iter()
            .map(|event| (incident_id, event.clone())),
    );

    let now = write.at;
    let mut created = None;
    for draft in &change.drafts {
        match draft {
            DraftWrite::Create {
                kind,
                fields,
                input,
                rendered,
            } => {
                let draft_id: i64 = sqlx::query_scalar(
                    "INSERT INTO drafts (incident_id, kind, state, created_at, updated_at) \
                     VALUES (?, ?, 'pending', ?, ?) RETURNING id",
                )
                .bind(incident_id)
                .bind(kind.as_str())
                .bind(&at)
                .bind(&at)
                .fetch_one(&mut *connection)
                .await
                .map_err(error)?;
                insert_draft_version(
                    connection, draft_id, 1, &at, "relay", fields, input, rendered,
                )
                .await?;
                created = Some(draft_id);
                batch.events.push((
                    incident_id,
                    EventWrite {
                        at: now,
                        source: "relay".to_owned(),
                        event: "draft_created".to_owned(),
                        detail: serde_json::json!({"draft_id": draft_id, "kind": kind, "version": 1}),
                    },
                ));
            }
            DraftWrite::Revise {
                draft_id,
                fields,
                input,
                rendered,
            } => {
                let version: i64 = sqlx::query_scalar(
                    "SELECT COALESCE(MAX(version), 0) + 1 FROM draft_versions WHERE draft_id = ?",
                )
                .bind(draft_id)
                .fetch_one(&mut *connection)
                .await
                .map_err(error)?;
                insert_draft_version(
                    connection, *draft_id, version, &at, "relay", fields, input, rendered,
                )
                .await?;
                sqlx::query("UPDATE drafts SET updated_at = ? WHERE id = ?")
                    .bind(&at)
                    .bind(draft_id)
                    .execute(&mut *connection)
                    .await
                    .map_err(error)?;
                batch.events.push((
                    incident_id,
                    EventWrite {
                        at: now,
                        source: "relay".to_owned(),
                        event: "draft_revised".to_owned(),
                        detail: serde_json::json!({"draft_id": draft_id, "version": version}),
                    },
                ));
            }
            DraftWrite::Withdraw { draft_id, reason } => {
                sqlx::query(
                    "UPDATE drafts SET state = 'withdrawn', state_reason = ?, updated_at = ? \
                     WHERE id = ? AND state = 'pending'",
                )
                .bind(reason)
                .bind(&at)
                .bind(draft_id)
                .execute(&mut *connection)
                .await
                .map_err(error)?;
                batch.events.push((
                    incident_id,
                    EventWrite {
                        at: now,
                        source: "relay".to_owned(),
                        event: "draft_withdrawn".to_owned(),
                        detail: serde_json::json!({"draft_id": draft_id, "reason": reason}),
                    },
                ));
            }
        }
    }
    Ok(created)
}

/// Writes what the steps of a batch left in `batch`, in the order they left it, and marks
/// the receipts processed.
pub(super) async fn finish_incident_batch(
    connection: &mut Connection,
    batch: &IncidentBatch,
    processed_at: Timestamp,
) -> Result<(), StorageError> {
    const OPERATION: &str = "finish_incident_batch";
    let error = |source: sqlx::Error| StorageError::new(OPERATION, source);
    for chunk in batch.retired_unseen.chunks(ALERT_ROWS_PER_STATEMENT) {
        let mut builder: QueryBuilder<Sqlite> = QueryBuilder::new(
            "INSERT INTO incident_alerts (fingerprint, starts_at, incident_id, status, labels) ",
        );
        builder.push_values(chunk, |mut row, key| {
            row.push_bind(key.fingerprint.as_str())
                .push_bind(format_time(key.starts_at))
                .push_bind(None::<i64>)
                .push_bind("resolved")
                .push_bind("{}");
        });
        builder.push(" ON CONFLICT (fingerprint, starts_at) DO NOTHING");
        builder
            .build()
            .execute(&mut *connection)
            .await
            .map_err(error)?;
    }
    upsert_received_alerts(connection, &batch.received).await?;
    update_headers(connection, &batch.headers).await?;
    // SQLite applies the rows in order: a later step's copy of an alert wins.
    for chunk in batch.alerts.chunks(ALERT_ROWS_PER_STATEMENT) {
        let mut builder: QueryBuilder<Sqlite> = QueryBuilder::new(
            "INSERT INTO incident_alerts (fingerprint, starts_at, incident_id, status, labels) ",
        );
        builder.push_values(chunk, |mut row, (incident_id, key, alert)| {
            row.push_bind(key.fingerprint.as_str())
                .push_bind(format_time(key.starts_at))
                .push_bind(*incident_id)
                .push_bind(alert.status.as_str())
                .push_bind(serde_json::to_string(&alert.labels).expect("map of strings"));
        });
        builder.push(
            " ON CONFLICT (fingerprint, starts_at) DO UPDATE SET incident_id = excluded.incident_id, \
             status = excluded.status, labels = excluded.labels",
        );
        builder
            .build()
            .execute(&mut *connection)
            .await
            .map_err(error)?;
    }
    let events: Vec<(i64, &EventWrite)> = batch
        .events
        .iter()
        .map(|(incident_id, event)| (*incident_id, event))
        .collect();
    insert_events_of(connection, &events).await?;
    let processed_at = format_time(processed_at);
    for chunk in batch.receipt_ids.chunks(RECEIPT_ROWS_PER_STATEMENT) {
        let mut builder: QueryBuilder<Sqlite> =
            QueryBuilder::new("INSERT INTO receipts_processed (receipt_id, processed_at) ");
        builder.push_values(chunk, |mut row, receipt_id| {
            row.push_bind(*receipt_id).push_bind(processed_at.as_str());
        });
        builder
            .build()
            .execute(&mut *connection)
            .await
            .map_err(error)?;
    }
    Ok(())
}

/// Writes each incident's header as the last step left it.
async fn update_headers(
    connection: &mut Connection,
    headers: &BTreeMap<i64, (Incident, Timestamp)>,
) -> Result<(), StorageError> {
    const OPERATION: &str = "update_incident_headers";
    for (incident_id, (incident, at)) in headers {
        let header =
            IncidentHeader::of(incident).map_err(|source| StorageError::new(OPERATION, source))?;
        sqlx::query(
            "UPDATE incidents SET phase = ?, started_at = ?, resolved_at = ?, n_reopened = ?, summary = ?, \
             classification = ?, published = ?, updated_at = ? WHERE id = ?",
        )
        .bind(header.phase)
        .bind(&header.started_at)
        .bind(&header.resolved_at)
        .bind(header.n_reopened)
        .bind(&header.summary)
        .bind(&header.classification)
        .bind(&header.published)
        .bind(format_time(*at))
        .bind(incident_id)
        .execute(&mut *connection)
        .await
        .map_err(|source| StorageError::new(OPERATION, source))?;
    }
    Ok(())
}

/// An incident's columns as stored.
struct IncidentHeader {
    phase: &'static str,
    started_at: String,
    resolved_at: Option<String>,
    n_reopened: i64,
    summary: String,
    classification: String,
    published: Option<String>,
}

impl IncidentHeader {
    fn of(incident: &Incident) -> Result<IncidentHeader, serde_json::Error> {
        let (phase, resolved_at) = match incident.phase {
            Phase::Open => ("open", None),
            Phase::Resolved { at } => ("resolved", Some(format_time(at))),
        };
        Ok(IncidentHeader {
            phase,
            started_at: format_time(incident.started_at),
            resolved_at,
            n_reopened: i64::from(incident.n_reopened),
            summary: serde_json::to_string(&incident.summary)?,
            classification: serde_json::to_string(&incident.classification)?,
            published: incident
                .published
                .as_ref()
                .map(serde_json::to_string)
                .transpose()?,
        })
    }
}

#[allow(clippy::too_many_arguments)]
pub(super) async fn add_draft_version(
    connection: &mut Connection,
    incident_id: i64,
    draft_id: i64,
    version: i64,
    created_by: &str,
    fields: &DraftFields,
    input: &serde_json::Value,
    rendered: &RenderedNotice,
    at: Timestamp,
) -> Result<(), StorageError> {
    let at_text = format_time(at);
    insert_draft_version(
        connection, draft_id, version, &at_text, created_by, fields, input, rendered,
    )
    .await?;
    sqlx::query("UPDATE drafts SET updated_at = ? WHERE id = ?")
        .bind(&at_text)
        .bind(draft_id)
        .execute(&mut *connection)
        .await
        .map_err(|source| StorageError::new("add_draft_version", source))?;
    insert_events(
        connection,
        incident_id,
        &[EventWrite {
            at,
            source: created_by.to_owned(),
            event: "draft_edited".to_owned(),
            detail: serde_json::json!({"draft_id": draft_id, "version": version, "fields": fields}),
        }],
    )
    .await
}

#[allow(clippy::too_many_arguments)]
pub(super) async fn insert_draft_version(
    connection: &mut Connection,
    draft_id: i64,
    version: i64,
    at: &str,
    created_by: &str,
    fields: &DraftFields,
    input: &serde_json::Value,
    rendered: &RenderedNotice,
) -> Result<(), StorageError> {
    const OPERATION: &str = "insert_draft_version";
    let json_error = |source: serde_json::Error| StorageError::new(OPERATION, source);
    sqlx::query(
        "INSERT INTO draft_versions (draft_id, version, created_at, created_by, fields, input, rendered) \
         VALUES (?, ?, ?, ?, ?, ?, ?)",
    )
    .bind(draft_id)
    .bind(version)
    .bind(at)
    .bind(created_by)
    .bind(serde_json::to_string(fields).map_err(json_error)?)
    .bind(serde_json::to_string(input).map_err(json_error)?)
    .bind(serde_json::to_string(rendered).map_err(json_error)?)
    .execute(&mut *connection)
    .await
    .map_err(|source| StorageError::new(OPERATION, source))?;
    Ok(())
}

pub(super) async fn insert_events(
    connection: &mut Connection,
    incident_id: i64,
    events: &[EventWrite],
) -> Result<(), StorageError> {
    let events: Vec<(i64, &EventWrite)> = events.iter().map(|event| (incident_id, event)).collect();
    insert_events_of(connection, &events).await
}

/// Appends log entries of one or more incidents, in order.
async fn insert_events_of(
    connection: &mut Connection,
    events: &[(i64, &EventWrite)],
) -> Result<(), StorageError> {
    for chunk in events.chunks(ALERT_ROWS_PER_STATEMENT) {
        let mut builder: QueryBuilder<Sqlite> = QueryBuilder::new(
            "INSERT INTO incident_events (incident_id, at, source, event, detail) ",
        );
        builder.push_values(chunk, |mut row, (incident_id, event)| {
            row.push_bind(*incident_id)
                .push_bind(format_time(event.at))
                .push_bind(event.source.as_str())
                .push_bind(event.event.as_str())
                .push_bind(event.detail.to_string());
        });
        builder
            .build()
            .execute(&mut *connection)
            .await
            .map_err(|source| StorageError::new("insert_events", source))?;
    }
    Ok(())
}

/// One row of `incident_events` (id, incident_id, at, source, event, detail), read back.
pub(super) fn event_from_row(row: &sqlx::sqlite::SqliteRow) -> anyhow::Result<EventRecord> {
    Ok(EventRecord {
        event_id: row.try_get("id")?,
        incident_id: row.try_get("incident_id")?,
        at: parse_time(row.try_get("at")?)?,
        source: row.try_get("source")?,
        event: row.try_get("event")?,
        detail: serde_json::from_str(row.try_get("detail")?)?,
    })
}

pub(super) async fn load_incident_alerts(
    connection: &mut Connection,
    incident_id: i64,
) -> Result<BTreeMap<AlertKey, TrackedAlert>, StorageError> {
    const OPERATION: &str = "load_incident_alerts";
    let rows = sqlx::query(
        "SELECT fingerprint, starts_at, status, labels FROM incident_alerts WHERE incident_id = ?",
    )
    .bind(incident_id)
    .fetch_all(&mut *connection)
    .await
    .map_err(|source| StorageError::new(OPERATION, source))?;
    let mut alerts = BTreeMap::new();
    for row in rows {
        let parse = || -> anyhow::Result<(AlertKey, TrackedAlert)> {
            Ok((
                AlertKey {
                    fingerprint: row.try_get("fingerprint")?,
                    starts_at: parse_time(row.try_get("starts_at")?)?,
                },
                TrackedAlert {
                    status: parse_status(row.try_get("status")?)?,
                    labels: parse_map(row.try_get("labels")?)?,
                },
            ))
        };
        let (key, alert) = parse().map_err(|source| StorageError::new(OPERATION, source))?;
        alerts.insert(key, alert);
    }
    Ok(alerts)
}

pub(super) fn incident_from_row(
    row: &sqlx::sqlite::SqliteRow,
    alerts: BTreeMap<AlertKey, TrackedAlert>,
) -> anyhow::Result<IncidentRecord> {
    let resolved_at: Option<String> = row.try_get("resolved_at")?;
    let resolved_at = resolved_at.as_deref().map(parse_time).transpose()?;
    let phase: String = row.try_get("phase")?;
    let phase = match (phase.as_str(), resolved_at) {
        ("open", _) => Phase::Open,
        ("resolved", Some(at)) => Phase::Resolved { at },
        (other, _) => anyhow::bail!("incident phase {other:?} without its time"),
    };
    let published: Option<String> = row.try_get("published")?;
    let n_reopened: i64 = row.try_get("n_reopened")?;
    Ok(IncidentRecord {
        incident_id: row.try_get("id")?,
        kind: row.try_get("kind")?,
        resolved_at,
        incident: Incident {
            incident_id: row.try_get("id")?,
            phase,
            started_at: parse_time(row.try_get("started_at")?)?,
            alerts,
            summary: serde_json::from_str(row.try_get("summary")?)?,
            classification: serde_json::from_str(row.try_get("classification")?)?,
            published: published.as_deref().map(serde_json::from_str).transpose()?,
            // Derived from the drafts table by the caller: one source of truth.
            pending_draft: None,
            n_reopened: u32::try_from(n_reopened)?,
        },
    })
}

pub(super) fn parse_kind(text: String) -> anyhow::Result<NoticeKind> {
    match text.as_str() {
        "initial" => Ok(NoticeKind::Initial),
        "update" => Ok(NoticeKind::Update),
        "resolved" => Ok(NoticeKind::Resolved),
        other => anyhow::bail!("unknown stored notice kind {other:?}"),
    }
}

impl SqliteStorage {
    pub async fn open_monitoring_incident(
        &self,
        now: Timestamp,
        summary: &crate::classify::ScopeSummary,
        classification: &crate::classify::Classification,
        detail: serde_json::Value,
    ) -> Result<Option<i64>, StorageError> {
        const OPERATION: &str = "open_monitoring_incident";
        let error = |source: sqlx::Error| StorageError::new(OPERATION, source);
        let json_error = |source: serde_json::Error| StorageError::new(OPERATION, source);
        let mut transaction = self.begin_write().await?;
        let open: Option<i64> = sqlx::query_scalar(
            "SELECT id FROM incidents WHERE kind = 'monitoring' AND phase = 'open'",
        )
        .fetch_optional(&mut *transaction)
        .await
        .map_err(error)?;
        if open.is_some() {
            return Ok(None);
        }
        let at = format_time(now);
        let incident_id: i64 = sqlx::query_scalar(
            "INSERT INTO incidents (kind, phase, started_at, n_reopened, summary, classification, created_at, updated_at) \
             VALUES ('monitoring', 'open', ?, 0, ?, ?, ?, ?) RETURNING id",
        )
        .bind(&at)
        .bind(serde_json::to_string(summary).map_err(json_error)?)
        .bind(serde_json::to_string(classification).map_err(json_error)?)
        .bind(&at)
        .bind(&at)
        .fetch_one(&mut *transaction)
        .await
        .map_err(error)?;
        insert_events(
            &mut transaction,
            incident_id,
            &[EventWrite {
                at: now,
                source: "relay".to_owned(),
                event: "monitoring_chain_broken".to_owned(),
                detail,
            }],
        )
        .await?;
        transaction.commit().await.map_err(error)?;
        Ok(Some(incident_id))
    }

    pub async fn resolve_monitoring_incident(
        &self,
        now: Timestamp,
    ) -> Result<Option<i64>, StorageError> {
        const OPERATION: &str = "resolve_monitoring_incident";
        let error = |source: sqlx::Error| StorageError::new(OPERATION, source);
        // Cheap check on the reader first: the common case is that nothing is open.
        let open: Option<i64> = sqlx::query_scalar(
            "SELECT id FROM incidents WHERE kind = 'monitoring' AND phase = 'open'",
        )
        .fetch_optional(&self.reader)
        .await
        .map_err(error)?;
        if open.is_none() {
            return Ok(None);
        }
        let mut transaction = self.begin_write().await?;
        let at = format_time(now);
        let resolved: Option<i64> = sqlx::query_scalar(
            "UPDATE incidents SET phase = 'resolved', resolved_at = ?, updated_at = ? \
             WHERE kind = 'monitoring' AND phase = 'open' RETURNING id",
        )
        .bind(&at)
        .bind(&at)
        .fetch_optional(&mut *transaction)
        .await
        .map_err(error)?;
        if let Some(incident_id) = resolved {
            insert_events(
                &mut transaction,
                incident_id,
                &[EventWrite {
                    at: now,
                    source: "relay".to_owned(),
                    event: "monitoring_chain_restored".to_owned(),
                    detail: serde_json::json!({}),
                }],
            )
            .await?;
        }
        transaction.commit().await.map_err(error)?;
        Ok(resolved)
    }
}

// ---------------------------------------------------------------------------------------
// Publishing and the outbox.

pub(super) const NOTICE_COLUMNS: &str = "p.id, p.incident_id, p.draft_id, p.draft_version, p.kind, p.level, p.decided_by, \
     p.decided_role, p.published_by, p.channels, p.rendered, p.published_at";

pub(super) async fn draft_for_publish(
    connection: &mut Connection,
    draft_id: i64,
    version: i64,
) -> Result<Option<DraftForPublish>, StorageError> {
    const OPERATION: &str = "draft_for_publish";
    let error = |source: sqlx::Error| StorageError::new(OPERATION, source);
    let Some(row) = sqlx::query(
        "SELECT d.id, d.incident_id, d.kind, d.state, \
         (SELECT MAX(version) FROM draft_versions v WHERE v.draft_id = d.id) AS latest_version \
         FROM drafts d WHERE d.id = ?",
    )
    .bind(draft_id)
    .fetch_optional(&mut *connection)
    .await
    .map_err(error)?
    else {
        return Ok(None);
    };
    let version_row = sqlx::query(
        "SELECT version, created_at, created_by, fields, input, rendered FROM draft_versions \
         WHERE draft_id = ? AND version = ?",
    )
    .bind(draft_id)
    .bind(version)
    .fetch_optional(&mut *connection)
    .await
    .map_err(error)?;
    let parse = || -> anyhow::Result<DraftForPublish> {
        let version = match &version_row {
            Some(version) => Some(DraftVersionRecord {
                version: version.try_get("version")?,
                created_at: parse_time(version.try_get("created_at")?)?,
                created_by: version.try_get("created_by")?,
                fields: serde_json::from_str(version.try_get("fields")?)?,
                input: serde_json::from_str(version.try_get("input")?)?,
                rendered: serde_json::from_str(version.try_get("rendered")?)?,
            }),
            None => None,
        };
        Ok(DraftForPublish {
            draft_id: row.try_get("id")?,
            incident_id: row.try_get("incident_id")?,
            kind: parse_kind(row.try_get("kind")?)?,
            state: row.try_get("state")?,
            latest_version: row
                .try_get::<Option<i64>, _>("latest_version")?
                .unwrap_or(0),
            version,
        })
    };
    parse()
        .map(Some)
        .map_err(|source| StorageError::new(OPERATION, source))
}

pub(super) async fn insert_publication(
    connection: &mut Connection,
    write: &PublicationWrite,
) -> Result<Result<i64, AlreadyPublished>, StorageError> {
    const OPERATION: &str = "insert_publication";
    let error = |source: sqlx::Error| StorageError::new(OPERATION, source);
    let json_error = |source: serde_json::Error| StorageError::new(OPERATION, source);
    let at = format_time(write.published_at);
    let inserted: Option<i64> = sqlx::query_scalar(
        "INSERT INTO published_notices (incident_id, draft_id, draft_version, kind, level, decided_by, decided_role, \
         published_by, channels, rendered, published_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) \
         ON CONFLICT (draft_id) DO NOTHING RETURNING id",
    )
    .bind(write.incident_id)
    .bind(write.draft_id)
    .bind(write.draft_version)
    .bind(write.kind.as_str())
    .bind(i64::from(write.level))
    .bind(&write.decided_by)
    .bind(&write.decided_role)
    .bind(&write.published_by)
    .bind(serde_json::to_string(&write.channels).map_err(json_error)?)
    .bind(serde_json::to_string(&write.rendered).map_err(json_error)?)
    .bind(&at)
    .fetch_optional(&mut *connection)
    .await
    .map_err(error)?;
    let Some(notice_id) = inserted else {
        return Ok(Err(AlreadyPublished));
    };
    let updated = sqlx::query(
        "UPDATE drafts SET state = 'published', updated_at = ? WHERE id = ? AND state = 'pending'",
    )
    .bind(&at)
    .bind(write.draft_id)
    .execute(&mut *connection)
    .await
    .map_err(error)?;
    if updated.rows_affected() != 1 {
        return Ok(Err(AlreadyPublished));
    }
    sqlx::query("UPDATE incidents SET published = ?, updated_at = ? WHERE id = ?")
        .bind(serde_json::to_string(&write.published).map_err(json_error)?)
        .bind(&at)
        .bind(write.incident_id)
        .execute(&mut *connection)
        .await
        .map_err(error)?;
    for chunk in write.deliveries.chunks(ALERT_ROWS_PER_STATEMENT) {
        let mut builder: QueryBuilder<Sqlite> = QueryBuilder::new(
            "INSERT INTO outbox (notice_id, channel, recipient, delivery_id, state, attempts, next_attempt_at, created_at) ",
        );
        builder.push_values(chunk, |mut row, (channel, recipient)| {
            row.push_bind(notice_id)
                .push_bind(channel.as_str())
                .push_bind(recipient.as_str())
                .push_bind(delivery_id(notice_id, channel, recipient))
                .push_bind("pending")
                .push_bind(0_i64)
                .push_bind(at.as_str())
                .push_bind(at.as_str());
        });
        builder
            .build()
            .execute(&mut *connection)
            .await
            .map_err(error)?;
    }
    let mut events = write.events.clone();
    for event in &mut events {
        if let Some(detail) = event.detail.as_object_mut() {
            detail.insert("notice_id".to_owned(), serde_json::json!(notice_id));
        }
    }
    insert_events(connection, write.incident_id, &events).await?;
    Ok(Ok(notice_id))
}

/// A stable id for one (notice, channel, recipient): the same on every retry.
fn delivery_id(notice_id: i64, channel: &str, recipient: &str) -> String {
    use sha2::{Digest as _, Sha256};
    let digest = Sha256::digest(format!("{notice_id}\0{channel}\0{recipient}").as_bytes());
    format!("{notice_id}-{}", &crate::alertmanager::hex(&digest)[..24])
}

impl SqliteStorage {
    pub async fn claim_deliveries(
        &self,
        channel: &str,
        max: usize,
        now: Timestamp,
        lease: Duration,
    ) -> Result<Vec<ClaimedDelivery>, StorageError> {
        const OPERATION: &str = "claim_deliveries";
        let error = |source: sqlx::Error| StorageError::new(OPERATION, source);
        let mut transaction = self.begin_write().await?;
        let rows = super::sqlite_outbox::claim_due(
            &mut transaction,
            &super::sqlite_outbox::OUTBOX,
            Some(("channel", channel)),
            max,
            now,
            lease,
        )
        .await
        .map_err(error)?;
        let mut notices: HashMap<i64, PublishedNoticeRecord> = HashMap::new();
        let mut claimed = Vec::with_capacity(rows.len());
        for row in &rows {
            let notice_id: i64 = row.try_get("notice_id").map_err(error)?;
            if let std::collections::hash_map::Entry::Vacant(entry) = notices.entry(notice_id) {
                let notice_row = sqlx::query(&format!(
                    "SELECT {NOTICE_COLUMNS} FROM published_notices p WHERE p.id = ?"
                ))
                .bind(notice_id)
                .fetch_one(&mut *transaction)
                .await
                .map_err(error)?;
                let notice = notice_from_row(&notice_row)
                    .map_err(|source| StorageError::new(OPERATION, source))?;
                entry.insert(notice);
            }
            let parse = || -> anyhow::Result<ClaimedDelivery> {
                Ok(ClaimedDelivery {
                    outbox_id: row.try_get("id")?,
                    channel: row.try_get("channel")?,
                    recipient: row.try_get("recipient")?,
                    delivery_id: row.try_get("delivery_id")?,
                    attempt: row.try_get("attempts")?,
                    created_at: parse_time(row.try_get("created_at")?)?,
                    notice: notices[&notice_id].clone(),
                })
            };
            claimed.push(parse().map_err(|source| StorageError::new(OPERATION, source))?);
        }
        transaction.commit().await.map_err(error)?;
        claimed.sort_by_key(|delivery| delivery.outbox_id);
        Ok(claimed)
    }

    pub async fn record_deliveries(&self, results: &[DeliveryResult]) -> Result<(), StorageError> {
        self.record_sends(&super::sqlite_outbox::OUTBOX, "record_deliveries", results)
            .await
    }

    pub async fn release_delivery_leases(&self) -> Result<u64, StorageError> {
        let mut transaction = self.begin_write().await?;
        let released = sqlx::query("UPDATE outbox SET lease_until = NULL WHERE state = 'pending' AND lease_until IS NOT NULL")
            .execute(&mut *transaction)
            .await
            .map_err(|source| StorageError::new("release_delivery_leases", source))?
            .rows_affected();
        transaction
            .commit()
            .await
            .map_err(|source| StorageError::new("release_delivery_leases", source))?;
        Ok(released)
    }

    pub async fn retry_failed_delivery(
        &self,
        outbox_id: i64,
        now: Timestamp,
        operator: &str,
    ) -> Result<bool, StorageError> {
        const OPERATION: &str = "retry_failed_delivery";
        let error = |source: sqlx::Error| StorageError::new(OPERATION, source);
        let mut transaction = self.begin_write().await?;
        let incident_id: Option<i64> = sqlx::query_scalar(
            "UPDATE outbox SET state = 'pending', next_attempt_at = ?, lease_until = NULL \
             WHERE id = ? AND state = 'failed' \
             RETURNING (SELECT incident_id FROM published_notices p WHERE p.id = outbox.notice_id)",
        )
        .bind(format_time(now))
        .bind(outbox_id)
        .fetch_optional(&mut *transaction)
        .await
        .map_err(error)?;
        if let Some(incident_id) = incident_id {
            insert_events(
                &mut transaction,
                incident_id,
                &[EventWrite {
                    at: now,
                    source: operator.to_owned(),
                    event: "delivery_retried".to_owned(),
                    detail: serde_json::json!({"outbox_id": outbox_id}),
                }],
            )
            .await?;
        }
        transaction.commit().await.map_err(error)?;
        Ok(incident_id.is_some())
    }

    pub async fn outbox(
        &self,
        incident_id: Option<i64>,
    ) -> Result<Vec<OutboxRecord>, StorageError> {
        const OPERATION: &str = "outbox";
        let rows = sqlx::query(
            "SELECT o.id, o.notice_id, p.incident_id, o.channel, o.recipient, o.delivery_id, o.state, o.attempts, \
             o.next_attempt_at, o.last_error, o.created_at, o.sent_at \
             FROM outbox o JOIN published_notices p ON p.id = o.notice_id \
             WHERE (? IS NULL OR p.incident_id = ?) ORDER BY o.id",
        )
        .bind(incident_id)
        .bind(incident_id)
        .fetch_all(&self.reader)
        .await
        .map_err(|source| StorageError::new(OPERATION, source))?;
        rows.iter()
            .map(|row| -> anyhow::Result<OutboxRecord> {
                let sent_at: Option<String> = row.try_get("sent_at")?;
                Ok(OutboxRecord {
                    outbox_id: row.try_get("id")?,
                    notice_id: row.try_get("notice_id")?,
                    incident_id: row.try_get("incident_id")?,
                    channel: row.try_get("channel")?,
                    recipient: row.try_get("recipient")?,
                    delivery_id: row.try_get("delivery_id")?,
                    state: row.try_get("state")?,
                    attempts: row.try_get("attempts")?,
                    next_attempt_at: parse_time(row.try_get("next_attempt_at")?)?,
                    last_error: row.try_get("last_error")?,
                    created_at: parse_time(row.try_get("created_at")?)?,
                    sent_at: sent_at.as_deref().map(parse_time).transpose()?,
                })
            })
            .collect::<anyhow::Result<_>>()
            .map_err(|source| StorageError::new(OPERATION, source))
    }

    pub async fn published_notices(
        &self,
        channels: Option<&[String]>,
        limit: i64,
    ) -> Result<Vec<PublishedNoticeRecord>, StorageError> {
        const OPERATION: &str = "published_notices";
        let mut builder: QueryBuilder<Sqlite> =
            QueryBuilder::new(format!("SELECT {NOTICE_COLUMNS} FROM published_notices p"));
        if let Some(channels) = channels {
            if channels.is_empty() {
                return Ok(Vec::new());
            }
            builder.push(
                " WHERE EXISTS (SELECT 1 FROM outbox o WHERE o.notice_id = p.id AND o.channel IN (",
            );
            let mut separated = builder.separated(", ");
            for channel in channels {
                separated.push_bind(channel.as_str());
            }
            builder.push("))");
        }
        builder.push(" ORDER BY p.id DESC LIMIT ");
        builder.push_bind(limit);
        let rows = builder
            .build()
            .fetch_all(&self.reader)
            .await
            .map_err(|source| StorageError::new(OPERATION, source))?;
        rows.iter()
            .map(notice_from_row)
            .collect::<anyhow::Result<_>>()
            .map_err(|source| StorageError::new(OPERATION, source))
    }

    pub async fn current_banner(
        &self,
        banner_channels: &[String],
    ) -> Result<Option<PublishedNoticeRecord>, StorageError> {
        const OPERATION: &str = "current_banner";
        if banner_channels.is_empty() {
            return Ok(None);
        }
        let mut builder: QueryBuilder<Sqlite> = QueryBuilder::new(format!(
            "SELECT {NOTICE_COLUMNS} FROM published_notices p WHERE p.kind <> 'resolved' \
             AND NOT EXISTS (SELECT 1 FROM published_notices r WHERE r.incident_id = p.incident_id \
                             AND r.kind = 'resolved' AND r.id > p.id) \
             AND EXISTS (SELECT 1 FROM outbox o WHERE o.notice_id = p.id AND o.channel IN ("
        ));
        let mut separated = builder.separated(", ");
        for channel in banner_channels {
            separated.push_bind(channel.as_str());
        }
        builder.push(")) ORDER BY p.id DESC LIMIT 1");
        let row = builder
            .build()
            .fetch_optional(&self.reader)
            .await
            .map_err(|source| StorageError::new(OPERATION, source))?;
        row.as_ref()
            .map(notice_from_row)
            .transpose()
            .map_err(|source| StorageError::new(OPERATION, source))
    }
}

pub(super) fn notice_from_row(
    row: &sqlx::sqlite::SqliteRow,
) -> anyhow::Result<PublishedNoticeRecord> {
    let level: i64 = row.try_get("level")?;
    Ok(PublishedNoticeRecord {
        notice_id: row.try_get("id")?,
        incident_id: row.try_get("incident_id")?,
        draft_id: row.try_get("draft_id")?,
        draft_version: row.try_get("draft_version")?,
        kind: parse_kind(row.try_get("kind")?)?,
        level: u8::try_from(level)?,
        decided_by: row.try_get("decided_by")?,
        decided_role: row.try_get("decided_role")?,
        published_by: row.try_get("published_by")?,
        channels: serde_json::from_str(row.try_get("channels")?)?,
        rendered: serde_json::from_str(row.try_get("rendered")?)?,
        published_at: parse_time(row.try_get("published_at")?)?,
    })
}
