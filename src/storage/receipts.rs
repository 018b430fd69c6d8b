//! Receipts: every accepted webhook (deduplicated by key), the current state of every
//! alert received, and the incident worker's backlog of unprocessed receipts.

use async_trait::async_trait;
use jiff::Timestamp;

use super::StorageError;
use crate::alertmanager::{AlertStatus, Notification};

/// Receipts, outside a transaction.
#[async_trait]
pub trait Receipts: Send + Sync {
    /// Stores notifications in one transaction (group commit), answering each in order:
    /// a notification whose dedupe key was stored before (or earlier in the same batch)
    /// is a duplicate and writes nothing. Returns only after the commit is durable. The
    /// alerts reach [`Receipts::alerts`] when the incident worker processes the receipt.
    async fn store_notifications(
        &self,
        batch: &[NewReceipt<'_>],
    ) -> Result<Vec<StoredReceipt>, StorageError>;

    /// The receipts in the order they were stored.
    async fn receipts(&self) -> Result<Vec<ReceiptRecord>, StorageError>;

    /// Every alert's current state, ordered by fingerprint then start. A resolved alert
    /// stays resolved per (fingerprint, startsAt).
    async fn alerts(&self) -> Result<Vec<AlertRecord>, StorageError>;

    /// How many receipts wait for the incident worker.
    async fn n_unprocessed_receipts(&self) -> Result<i64, StorageError>;

    /// `(highest_receipt_id, processed_up_to)`: the highest receipt id stored, and an id
    /// up to which every receipt is processed (0 for none), for the backlog estimate
    /// ([`crate::backlog::Backlog`]). Two index lookups on the read pool, never a count.
    async fn backlog_bounds(&self) -> Result<(i64, i64), StorageError>;
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

/// A webhook to store: the parsed notification and its raw body.
#[derive(Debug, Clone, Copy)]
pub struct NewReceipt<'a> {
    pub notification: &'a Notification,
    pub dedupe_key: &'a str,
    pub raw_payload: &'a str,
    pub received_at: Timestamp,
}
