//! Operator mail: emails to operators (review links, escalations, reminders, login
//! links), deduplicated by key and sent by their own worker with a lease like the outbox.

use std::time::Duration;

use async_trait::async_trait;
use jiff::Timestamp;

use super::{DeliveryResult, StorageError};
use crate::incident::{DeliveryState, IncidentKind};
use crate::notice::NoticeKind;

/// Operator mail, outside a transaction.
#[async_trait]
pub trait OperatorMail: Send + Sync {
    /// Which of `keys` no operator mail has yet.
    async fn missing_operator_mail_keys(
        &self,
        keys: &[String],
    ) -> Result<Vec<String>, StorageError>;

    /// Enqueues operator mail; a key already present is skipped. Returns how many were new.
    async fn enqueue_operator_mail(
        &self,
        mails: &[OperatorMailWrite],
        now: Timestamp,
    ) -> Result<u64, StorageError>;

    /// Claims up to `max` due emails for `lease`, counting the attempt.
    async fn claim_operator_mail(
        &self,
        max: usize,
        now: Timestamp,
        lease: Duration,
    ) -> Result<Vec<ClaimedOperatorMail>, StorageError>;

    /// Records how operator mail attempts ended (`outbox_id` is the mail's id).
    async fn record_operator_mail(&self, results: &[DeliveryResult]) -> Result<(), StorageError>;

    /// Every operator mail as (dedupe key, to, subject, state), oldest first.
    async fn operator_mail(
        &self,
    ) -> Result<Vec<(String, String, String, DeliveryState)>, StorageError>;

    /// The drafts waiting for an operator, with when a review mail last went out.
    async fn pending_drafts_overview(&self) -> Result<Vec<PendingDraftOverview>, StorageError>;

    /// Operator links issued at or before this time are revoked; none when no link ever
    /// was.
    async fn links_valid_from(&self) -> Result<Option<Timestamp>, StorageError>;

    /// Revokes every operator link issued at or before `now` (never moves the time back).
    async fn revoke_links(&self, now: Timestamp) -> Result<(), StorageError>;
}

/// Operator mail, inside a write transaction.
#[async_trait]
pub trait OperatorMailTx: Send {
    /// Enqueues operator mail in this transaction, so that it commits together with what
    /// it tells about; a key already present is skipped. Returns how many were new.
    async fn enqueue_operator_mail(
        &mut self,
        mails: &[OperatorMailWrite],
        now: Timestamp,
    ) -> Result<u64, StorageError>;
}

/// An email to an operator, to enqueue.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OperatorMailWrite {
    /// Makes the mail unique: enqueuing the same key twice sends once.
    pub dedupe_key: String,
    /// review, escalation, reminder, monitoring, delivery_failed, login.
    pub purpose: String,
    pub incident_id: Option<i64>,
    pub draft_id: Option<i64>,
    pub draft_version: Option<i64>,
    pub to_address: String,
    pub subject: String,
    pub body: String,
}

/// An operator email a worker claimed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClaimedOperatorMail {
    pub mail_id: i64,
    pub dedupe_key: String,
    pub purpose: String,
    pub incident_id: Option<i64>,
    pub to_address: String,
    pub subject: String,
    pub body: String,
    pub attempt: i64,
}

/// A draft waiting for an operator, for the notifier.
#[derive(Debug, Clone, PartialEq)]
pub struct PendingDraftOverview {
    pub draft_id: i64,
    pub incident_id: i64,
    pub incident_kind: IncidentKind,
    pub kind: NoticeKind,
    pub created_at: Timestamp,
    pub latest_version: i64,
    pub last_mailed_version: Option<i64>,
    pub last_mailed_at: Option<Timestamp>,
}
