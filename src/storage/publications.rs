//! Publications and the outbox: the notices operators published, and one outbox row per
//! (notice, channel, recipient) that the delivery workers claim with a lease.

use std::time::Duration;

use async_trait::async_trait;
use jiff::Timestamp;

use super::{DraftVersionRecord, StorageError};
use crate::classify::Level;
use crate::incident::{DeliveryState, DraftState};
use crate::notice::{NoticeKind, RenderedNotice};

/// Publications and the outbox, outside a transaction.
#[async_trait]
pub trait Publications: Send + Sync {
    /// Claims up to `max` due deliveries of `channel` for `lease`, counting the attempt.
    /// A row whose lease ran out is due again.
    async fn claim_deliveries(
        &self,
        channel: &str,
        max: usize,
        now: Timestamp,
        lease: Duration,
    ) -> Result<Vec<ClaimedDelivery>, StorageError>;

    /// Records how attempts ended, releasing their leases; only a pending row changes.
    /// A delivery that failed for good is logged as `delivery_failed` in its incident.
    async fn record_deliveries(&self, results: &[DeliveryResult]) -> Result<(), StorageError>;

    /// Releases every delivery lease: at start-up, when the database is not shared
    /// ([`super::Backend::is_shared`]), since any lease was left by a run that died.
    async fn release_delivery_leases(&self) -> Result<u64, StorageError>;

    /// Makes a failed delivery pending again (an operator's retry) and logs
    /// `delivery_retried`. False when it was not failed.
    async fn retry_failed_delivery(
        &self,
        outbox_id: i64,
        now: Timestamp,
        operator: &str,
    ) -> Result<bool, StorageError>;

    /// The outbox of an incident (or all, with `None`), oldest first.
    async fn outbox(&self, incident_id: Option<i64>) -> Result<Vec<OutboxRecord>, StorageError>;

    /// Published notices, newest first; only those delivered on one of `channels` when
    /// given.
    async fn published_notices(
        &self,
        channels: Option<&[String]>,
        limit: i64,
    ) -> Result<Vec<PublishedNoticeRecord>, StorageError>;

    /// The notice the login-page banner shows, on one of `banner_channels`: the newest
    /// publication of an incident whose resolution has not been published since; or,
    /// when there is none, the newest resolution published at or after `resolved_since`
    /// (the all-clear). Drill incidents count only with `include_drills`; maintenance
    /// windows never (the banner shows them by their times, `http/public/maintenance.rs`).
    async fn current_banner(
        &self,
        banner_channels: &[String],
        include_drills: bool,
        resolved_since: Timestamp,
    ) -> Result<Option<BannerRecord>, StorageError>;

    /// Open incidents whose last publication promised the next update by a time now past.
    async fn next_updates_due(&self, now: Timestamp) -> Result<Vec<NextUpdateDue>, StorageError>;

    /// Deliveries that failed for good, newest first: (outbox id, incident id, channel,
    /// recipient, error).
    async fn failed_deliveries(
        &self,
        limit: i64,
    ) -> Result<Vec<(i64, i64, String, String, String)>, StorageError>;

    /// (notice id, channel, state, count) for the newest `limit` notices.
    async fn delivery_summary(
        &self,
        limit: i64,
    ) -> Result<Vec<(i64, String, DeliveryState, i64)>, StorageError>;

    /// Per channel: (channel, deliveries waiting, when the oldest waiting was enqueued).
    async fn outbox_backlog(&self) -> Result<Vec<(String, i64, Option<Timestamp>)>, StorageError>;
}

/// Publications, inside a write transaction.
#[async_trait]
pub trait PublicationsTx: Send {
    /// A draft as publishing sees it, with the requested version if it exists.
    async fn draft_for_publish(
        &mut self,
        draft_id: i64,
        version: i64,
    ) -> Result<Option<DraftForPublish>, StorageError>;

    /// Writes the publication (one per draft), marks the draft published (it must still
    /// be pending), records what the incident published, enqueues the outbox rows and
    /// appends `write.events`, each with the new `notice_id` added to its detail.
    /// Returns the notice id, or [`AlreadyPublished`].
    async fn insert_publication(
        &mut self,
        write: &PublicationWrite,
    ) -> Result<Result<i64, AlreadyPublished>, StorageError>;
}

/// A draft as publishing sees it, read inside the publishing transaction.
#[derive(Debug, Clone, PartialEq)]
pub struct DraftForPublish {
    pub draft_id: i64,
    pub incident_id: i64,
    pub kind: NoticeKind,
    pub state: DraftState,
    pub latest_version: i64,
    /// The requested version, if it exists.
    pub version: Option<DraftVersionRecord>,
}

/// Everything a publication writes, in one transaction.
#[derive(Debug, Clone)]
pub struct PublicationWrite {
    pub incident_id: i64,
    pub draft_id: i64,
    pub draft_version: i64,
    pub kind: NoticeKind,
    pub level: Level,
    pub decided_by: Option<String>,
    pub decided_role: Option<String>,
    pub published_by: String,
    pub channels: Vec<String>,
    pub rendered: RenderedNotice,
    pub published_at: Timestamp,
    /// What the incident now says was published (drives update and resolution drafts).
    pub published: crate::incident::Published,
    /// One outbox row per (channel, recipient).
    pub deliveries: Vec<(String, String)>,
    pub events: Vec<super::EventWrite>,
}

/// The draft was published already (the unique constraint said so).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AlreadyPublished;

/// A published notice, read back.
#[derive(Debug, Clone, PartialEq)]
pub struct PublishedNoticeRecord {
    pub notice_id: i64,
    pub incident_id: i64,
    pub draft_id: i64,
    pub draft_version: i64,
    pub kind: NoticeKind,
    pub level: Level,
    pub decided_by: Option<String>,
    pub decided_role: Option<String>,
    pub published_by: String,
    pub channels: Vec<String>,
    pub rendered: RenderedNotice,
    pub published_at: Timestamp,
}

/// The banner's notice with what the banner shows besides its text.
#[derive(Debug, Clone, PartialEq)]
pub struct BannerRecord {
    pub notice: PublishedNoticeRecord,
    /// The notice is about a drill incident.
    pub drill: bool,
    /// The operator's fields of the published version (next update, extra information).
    pub fields: crate::notice::DraftFields,
}

/// An outbox row a worker claimed, with what it must send.
#[derive(Debug, Clone, PartialEq)]
pub struct ClaimedDelivery {
    pub outbox_id: i64,
    pub channel: String,
    pub recipient: String,
    pub delivery_id: String,
    /// This attempt's number, from 1.
    pub attempt: i64,
    pub created_at: Timestamp,
    /// The row was still leased by an attempt that never recorded its result (a replica
    /// died or stalled while sending): the recipient may get this notice twice.
    pub reclaimed: bool,
    pub notice: PublishedNoticeRecord,
}

/// How one delivery attempt ended.
#[derive(Debug, Clone, PartialEq)]
pub enum DeliveryResult {
    Sent {
        outbox_id: i64,
        at: Timestamp,
    },
    Retry {
        outbox_id: i64,
        next_attempt_at: Timestamp,
        error: String,
    },
    Failed {
        outbox_id: i64,
        at: Timestamp,
        error: String,
    },
}

/// An outbox row, read back for operators and tests.
#[derive(Debug, Clone, PartialEq)]
pub struct OutboxRecord {
    pub outbox_id: i64,
    pub notice_id: i64,
    pub incident_id: i64,
    pub channel: String,
    pub recipient: String,
    pub delivery_id: String,
    pub state: DeliveryState,
    pub attempts: i64,
    pub next_attempt_at: Timestamp,
    pub last_error: Option<String>,
    pub created_at: Timestamp,
    pub sent_at: Option<Timestamp>,
}

/// An open incident whose promised next update is due.
#[derive(Debug, Clone, PartialEq)]
pub struct NextUpdateDue {
    pub incident_id: i64,
    pub notice_id: i64,
    pub next_update: Timestamp,
}
