//! Storage: the only module that knows SQL. Callers use [`Storage`] and its record types;
//! each backend (today SQLite, PostgreSQL later) lives in a submodule with its own
//! migrations, so a new backend is a new submodule and a new arm in each method.

mod sqlite;

use jiff::Timestamp;

use crate::alertmanager::{AlertStatus, Notification};
use crate::config::{DatabaseConfig, DatabaseUrl};

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

/// The one text form of a time in the database: UTC, fixed width, so text order is time
/// order.
pub(crate) fn format_time(timestamp: Timestamp) -> String {
    format!(
        "{}.{:06}Z",
        timestamp.strftime("%Y-%m-%dT%H:%M:%S"),
        timestamp.subsec_microsecond()
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
        assert_eq!(format_time(earlier), "2026-11-28T05:12:00.000000Z");
        assert!(format_time(earlier) < format_time(later));
        assert_eq!(parse_time(&format_time(later)).unwrap(), later);
    }
}
