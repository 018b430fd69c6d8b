//! Storage: the only module that knows SQL. Callers use [`Storage`] and its record types;
//! each backend (today SQLite, PostgreSQL later) lives in a submodule with its own
//! migrations, so a new backend is a new submodule and a new arm in each method.

mod sqlite;

use jiff::Timestamp;
use serde::{Deserialize, Serialize};

use crate::alertmanager::{AlertStatus, Notification};
use crate::config::{DatabaseConfig, DatabaseUrl};
use crate::incident::{AlertKey, IncidentEngine, TrackedAlert};
use crate::notice::{NoticeKind, RenderedNotice};

pub use sqlite::SqliteStorage;

/// The relay's durable state.
#[derive(Clone)]
pub enum Storage {
    Sqlite(SqliteStorage),
}

/// What storing a notification did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StoredReceipt {
    pub receipt_id: i64,
    /// True when the same notification had been stored before; nothing was written.
    pub duplicate: bool,
}

/// A stored webhook receipt, read back for audit and tests.
#[derive(Debug, Clone, PartialEq)]
pub struct ReceiptRecord {
    pub receipt_id: i64,
    pub received_at: Timestamp,
    pub group_key: String,
    pub status: AlertStatus,
    pub receiver: String,
    pub n_alerts: i64,
    pub payload: String,
}

/// The current state of one alert, per (fingerprint, startsAt).
#[derive(Debug, Clone, PartialEq)]
pub struct AlertRecord {
    pub fingerprint: String,
    pub starts_at: Timestamp,
    pub status: AlertStatus,
    pub labels: std::collections::BTreeMap<String, String>,
    pub annotations: std::collections::BTreeMap<String, String>,
    pub ends_at: Option<Timestamp>,
    pub generator_url: String,
    pub first_receipt_id: i64,
    pub last_receipt_id: i64,
}

/// A receipt the incident worker has not taken into account yet.
#[derive(Debug, Clone)]
pub struct UnprocessedReceipt {
    pub receipt_id: i64,
    pub received_at: Timestamp,
    pub payload: String,
}

/// The operator's fields of a draft, carried from version to version.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct DraftFields {
    pub expected_resolution: Option<Timestamp>,
    pub next_update: Option<Timestamp>,
    pub additional_information: Option<String>,
}

/// The draft waiting for an operator, with its latest version.
#[derive(Debug, Clone, PartialEq)]
pub struct PendingDraft {
    pub draft_id: i64,
    pub kind: NoticeKind,
    pub version: i64,
    pub fields: DraftFields,
}

/// What the incident worker needs to correlate one receipt.
#[derive(Debug, Clone)]
pub struct CorrelationState {
    pub engine: IncidentEngine,
    pub pending_draft: Option<PendingDraft>,
}

/// One entry of an incident's log.
#[derive(Debug, Clone, PartialEq)]
pub struct EventWrite {
    pub at: Timestamp,
    pub source: String,
    pub event: String,
    pub detail: serde_json::Value,
}

/// A change to the notices of an incident.
#[derive(Debug, Clone, PartialEq)]
pub enum DraftWrite {
    Create {
        kind: NoticeKind,
        fields: DraftFields,
        input: serde_json::Value,
        rendered: RenderedNotice,
    },
    Revise {
        draft_id: i64,
        fields: DraftFields,
        input: serde_json::Value,
        rendered: RenderedNotice,
    },
    Withdraw {
        draft_id: i64,
        reason: String,
    },
}

/// Everything one correlation step writes, in one transaction.
#[derive(Debug, Clone)]
pub struct IncidentWrite {
    pub at: Timestamp,
    /// Alerts first seen resolved: final, recorded so that they never open an incident.
    pub retired_unseen: Vec<AlertKey>,
    pub change: Option<IncidentChange>,
}

/// The latest incident after a step, and what the step added to it.
#[derive(Debug, Clone)]
pub struct IncidentChange {
    pub incident: crate::incident::Incident,
    pub is_new: bool,
    /// Alerts of the incident that the step added or changed.
    pub alerts: Vec<(AlertKey, TrackedAlert)>,
    pub events: Vec<EventWrite>,
    pub drafts: Vec<DraftWrite>,
}

/// A stored incident, read back.
#[derive(Debug, Clone, PartialEq)]
pub struct IncidentRecord {
    pub incident_id: i64,
    pub kind: String,
    pub incident: crate::incident::Incident,
    pub resolved_at: Option<Timestamp>,
}

/// A stored draft with its versions, oldest first.
#[derive(Debug, Clone, PartialEq)]
pub struct DraftRecord {
    pub draft_id: i64,
    pub incident_id: i64,
    pub kind: NoticeKind,
    pub state: String,
    pub state_reason: Option<String>,
    pub versions: Vec<DraftVersionRecord>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct DraftVersionRecord {
    pub version: i64,
    pub created_at: Timestamp,
    pub created_by: String,
    pub fields: DraftFields,
    pub input: serde_json::Value,
    pub rendered: RenderedNotice,
}

/// A stored log entry.
#[derive(Debug, Clone, PartialEq)]
pub struct EventRecord {
    pub event_id: i64,
    pub incident_id: i64,
    pub at: Timestamp,
    pub source: String,
    pub event: String,
    pub detail: serde_json::Value,
}

/// A write transaction (`BEGIN IMMEDIATE`): the domain reads state through it, decides,
/// and writes the decision before committing, with no other writer in between. Never hold
/// one across a network call.
pub enum WriteTransaction {
    Sqlite(sqlx::Transaction<'static, sqlx::Sqlite>),
}

impl WriteTransaction {
    /// The oldest receipt the incident worker has not processed.
    pub async fn next_unprocessed_receipt(
        &mut self,
    ) -> Result<Option<UnprocessedReceipt>, StorageError> {
        match self {
            WriteTransaction::Sqlite(transaction) => {
                sqlite::next_unprocessed_receipt(transaction).await
            }
        }
    }

    /// The latest outage incident, its pending draft, and which of `keys` belong elsewhere.
    pub async fn load_correlation(
        &mut self,
        keys: &[AlertKey],
    ) -> Result<CorrelationState, StorageError> {
        match self {
            WriteTransaction::Sqlite(transaction) => {
                sqlite::load_correlation(transaction, keys).await
            }
        }
    }

    pub async fn write_incident_step(&mut self, write: &IncidentWrite) -> Result<(), StorageError> {
        match self {
            WriteTransaction::Sqlite(transaction) => {
                sqlite::write_incident_step(transaction, write).await
            }
        }
    }

    pub async fn mark_receipt_processed(
        &mut self,
        receipt_id: i64,
        at: Timestamp,
    ) -> Result<(), StorageError> {
        match self {
            WriteTransaction::Sqlite(transaction) => {
                sqlite::mark_receipt_processed(transaction, receipt_id, at).await
            }
        }
    }

    pub async fn commit(self) -> Result<(), StorageError> {
        match self {
            WriteTransaction::Sqlite(transaction) => transaction
                .commit()
                .await
                .map_err(|source| StorageError::new("commit", source)),
        }
    }
}

/// A storage operation failed. Every such failure is treated as transient by the HTTP
/// layer (503, so that Alertmanager retries): a busy lock, a full disk or a read-only
/// file clear up without the payload changing.
#[derive(Debug, thiserror::Error)]
#[error("storage operation {operation} failed")]
pub struct StorageError {
    pub operation: &'static str,
    #[source]
    pub source: anyhow::Error,
}

impl StorageError {
    pub(crate) fn new(operation: &'static str, source: impl Into<anyhow::Error>) -> StorageError {
        StorageError {
            operation,
            source: source.into(),
        }
    }
}

impl Storage {
    /// Opens (creating if missing) and migrates the configured database.
    pub async fn open(config: &DatabaseConfig) -> anyhow::Result<Storage> {
        match &config.url {
            DatabaseUrl::Sqlite { path } => Ok(Storage::Sqlite(
                SqliteStorage::open(path, config.busy_timeout).await?,
            )),
        }
    }

    /// Stores a notification and its alerts in one transaction, unless the same
    /// notification was stored before. Returns only after the commit is durable.
    pub async fn store_notification(
        &self,
        notification: &Notification,
        dedupe_key: &str,
        raw_payload: &str,
        received_at: Timestamp,
    ) -> Result<StoredReceipt, StorageError> {
        match self {
            Storage::Sqlite(sqlite) => {
                sqlite
                    .store_notification(notification, dedupe_key, raw_payload, received_at)
                    .await
            }
        }
    }

    /// Starts a write transaction (the write lock taken up front).
    pub async fn begin_write(&self) -> Result<WriteTransaction, StorageError> {
        match self {
            Storage::Sqlite(sqlite) => Ok(WriteTransaction::Sqlite(sqlite.begin_write().await?)),
        }
    }

    /// Every incident, oldest first.
    pub async fn incidents(&self) -> Result<Vec<IncidentRecord>, StorageError> {
        match self {
            Storage::Sqlite(sqlite) => sqlite.incidents().await,
        }
    }

    /// An incident's drafts with all their versions, oldest first.
    pub async fn drafts(&self, incident_id: i64) -> Result<Vec<DraftRecord>, StorageError> {
        match self {
            Storage::Sqlite(sqlite) => sqlite.drafts(incident_id).await,
        }
    }

    /// An incident's log, in order.
    pub async fn incident_events(
        &self,
        incident_id: i64,
    ) -> Result<Vec<EventRecord>, StorageError> {
        match self {
            Storage::Sqlite(sqlite) => sqlite.incident_events(incident_id).await,
        }
    }

    /// Opens the internal "monitoring chain broken" incident unless one is open.
    pub async fn open_monitoring_incident(
        &self,
        now: Timestamp,
        summary: &crate::classify::ScopeSummary,
        classification: &crate::classify::Classification,
        detail: serde_json::Value,
    ) -> Result<Option<i64>, StorageError> {
        match self {
            Storage::Sqlite(sqlite) => {
                sqlite
                    .open_monitoring_incident(now, summary, classification, detail)
                    .await
            }
        }
    }

    /// Resolves the open monitoring incident, if any.
    pub async fn resolve_monitoring_incident(
        &self,
        now: Timestamp,
    ) -> Result<Option<i64>, StorageError> {
        match self {
            Storage::Sqlite(sqlite) => sqlite.resolve_monitoring_incident(now).await,
        }
    }

    /// How many receipts wait for the incident worker.
    pub async fn n_unprocessed_receipts(&self) -> Result<i64, StorageError> {
        match self {
            Storage::Sqlite(sqlite) => sqlite.n_unprocessed_receipts().await,
        }
    }

    /// Proves that the database takes a durable write.
    pub async fn check_writable(&self) -> Result<(), StorageError> {
        match self {
            Storage::Sqlite(sqlite) => sqlite.check_writable().await,
        }
    }

    /// The receipts in the order they were stored.
    pub async fn receipts(&self) -> Result<Vec<ReceiptRecord>, StorageError> {
        match self {
            Storage::Sqlite(sqlite) => sqlite.receipts().await,
        }
    }

    /// Every alert's current state, ordered by fingerprint then start.
    pub async fn alerts(&self) -> Result<Vec<AlertRecord>, StorageError> {
        match self {
            Storage::Sqlite(sqlite) => sqlite.alerts().await,
        }
    }

    /// Closes the connections, flushing the write-ahead log.
    pub async fn close(&self) {
        match self {
            Storage::Sqlite(sqlite) => sqlite.close().await,
        }
    }
}

/// The one text form of a time in the database: UTC, fixed width with nanoseconds (as
/// Alertmanager's own times have), so text order is time order and nothing is rounded.
pub(crate) fn format_time(timestamp: Timestamp) -> String {
    format!(
        "{}.{:09}Z",
        timestamp.strftime("%Y-%m-%dT%H:%M:%S"),
        timestamp.subsec_nanosecond()
    )
}

pub(crate) fn parse_time(text: &str) -> anyhow::Result<Timestamp> {
    use anyhow::Context as _;
    text.parse::<Timestamp>()
        .with_context(|| format!("stored time {text:?} is not RFC 3339"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stored_times_sort_as_text_in_time_order() {
        let earlier: Timestamp = "2026-11-28T05:12:00Z".parse().unwrap();
        let later: Timestamp = "2026-11-28T05:12:00.5Z".parse().unwrap();
        assert_eq!(format_time(earlier), "2026-11-28T05:12:00.000000000Z");
        assert!(format_time(earlier) < format_time(later));
        assert_eq!(parse_time(&format_time(later)).unwrap(), later);
    }
}
