//! Subscriptions: the subscribers of the notices, their choices and consent, and what
//! their deliveries did to them (suspension after repeated permanent failures). Rows hold
//! only the address, the choices, the consent time and the source; deleting one leaves no
//! address anywhere else (the outbox names subscribers by id, their confirmation mails are
//! deleted with them).

use async_trait::async_trait;
use jiff::Timestamp;

use super::StorageError;
use crate::subscription::{Choices, SubscriberState};

/// The text every pending delivery of a subscription that ended before it was sent is
/// marked failed with.
pub const CANCELLED_DELIVERY: &str = "not sent: the subscription ended before sending";

/// Subscriptions, outside a transaction.
#[async_trait]
pub trait Subscriptions: Send + Sync {
    async fn subscriber(
        &self,
        subscriber_id: i64,
    ) -> Result<Option<SubscriberRecord>, StorageError>;

    /// The subscriber of an address (compared in lower case).
    async fn subscriber_by_address(
        &self,
        address: &str,
    ) -> Result<Option<SubscriberRecord>, StorageError>;

    /// Every subscriber, by address.
    async fn subscribers(&self) -> Result<Vec<SubscriberRecord>, StorageError>;

    /// How many subscribers are in each state (states with none left out).
    async fn subscriber_counts(&self) -> Result<Vec<(SubscriberState, i64)>, StorageError>;

    /// Every confirmed subscriber's choices, by id.
    async fn confirmed_choices(&self) -> Result<Vec<(i64, Choices)>, StorageError>;

    /// The confirmed subscribers with a delivery (sent or pending) of an earlier notice of
    /// this incident.
    async fn earlier_subscriber_recipients(
        &self,
        incident_id: i64,
    ) -> Result<Vec<i64>, StorageError>;

    /// Confirms a pending subscription whose nonce is `nonce` (double opt-in), recording
    /// the consent time; a confirmed one stays as it is. The subscription after, or
    /// `None` when there is none with this id and nonce, or it is not pending or
    /// confirmed.
    async fn confirm_subscriber(
        &self,
        subscriber_id: i64,
        nonce: &str,
        now: Timestamp,
    ) -> Result<Option<SubscriberRecord>, StorageError>;

    /// Replaces a confirmed subscription's choices. False when there is no confirmed
    /// subscription with this id and nonce.
    async fn change_choices(
        &self,
        subscriber_id: i64,
        nonce: &str,
        choices: &Choices,
        now: Timestamp,
    ) -> Result<bool, StorageError>;

    /// Ends a subscription (pending, confirmed or suspended) with this id and nonce, and
    /// cancels its pending deliveries. False when there was none to end.
    async fn unsubscribe(
        &self,
        subscriber_id: i64,
        nonce: &str,
        now: Timestamp,
    ) -> Result<bool, StorageError>;

    /// Ends the subscription of an address on an operator's word (`by`), as
    /// [`Subscriptions::unsubscribe`] does. False when it had none to end.
    async fn remove_subscriber(
        &self,
        address: &str,
        by: &str,
        now: Timestamp,
    ) -> Result<bool, StorageError>;

    /// Deletes everything stored about an address: the subscription, its confirmation
    /// mails; its pending deliveries are cancelled and the errors of its deliveries
    /// (which may quote the address) cleared. False when nothing was stored.
    async fn delete_subscriber(&self, address: &str) -> Result<bool, StorageError>;

    /// Deletes a subscription by its id and nonce (the subscriber's own page), as
    /// [`Subscriptions::delete_subscriber`]. False when there was none.
    async fn delete_own_subscription(
        &self,
        subscriber_id: i64,
        nonce: &str,
    ) -> Result<bool, StorageError>;

    /// Adds confirmed subscriptions on an operator's word (`source`, e.g. "import by
    /// Anna"), consent recorded as now; an address that has a subscription already is
    /// left as it is. Returns the addresses added and those left.
    async fn import_subscribers(
        &self,
        subscribers: &[NewSubscriber],
        source: &str,
        now: Timestamp,
    ) -> Result<ImportOutcome, StorageError>;

    /// The deliveries to a subscriber: (notice id, incident id, channel, state, sent at).
    async fn subscriber_deliveries(
        &self,
        subscriber_id: i64,
    ) -> Result<Vec<SubscriberDelivery>, StorageError>;

    /// Records what sends did to their subscribers: a delivery resets the count of
    /// permanent failures, a bounce adds one, and a confirmed subscription reaching
    /// `suspend_after` is suspended (its pending deliveries cancelled). Returns the
    /// subscribers suspended now.
    async fn record_subscriber_outcomes(
        &self,
        outcomes: &[(i64, SubscriberOutcome)],
        suspend_after: u32,
        now: Timestamp,
    ) -> Result<Vec<i64>, StorageError>;

    /// Deletes pending subscriptions requested before `pending_before`, subscriptions
    /// unsubscribed or suspended before `ended_before`, and confirmation mails older
    /// than `pending_before` that are no longer waiting. Returns how many subscriptions
    /// went.
    async fn purge_subscribers(
        &self,
        pending_before: Timestamp,
        ended_before: Timestamp,
    ) -> Result<u64, StorageError>;
}

/// Subscriptions, inside a write transaction.
#[async_trait]
pub trait SubscriptionsTx: Send {
    /// A subscription asked for on the public page (or again): a new or ended one becomes
    /// pending with these choices, this `nonce` and `source`; a pending one takes the new
    /// choices and keeps its nonce; a confirmed one is left as it is.
    async fn request_subscription(
        &mut self,
        address: &str,
        choices: &Choices,
        source: &str,
        nonce: &str,
        now: Timestamp,
    ) -> Result<RequestOutcome, StorageError>;

    /// [`Subscriptions::confirmed_choices`], in this transaction.
    async fn confirmed_choices(&mut self) -> Result<Vec<(i64, Choices)>, StorageError>;

    /// [`Subscriptions::earlier_subscriber_recipients`], in this transaction.
    async fn earlier_subscriber_recipients(
        &mut self,
        incident_id: i64,
    ) -> Result<Vec<i64>, StorageError>;
}

/// A stored subscription.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SubscriberRecord {
    pub subscriber_id: i64,
    pub address: String,
    pub state: SubscriberState,
    pub choices: Choices,
    pub source: String,
    pub nonce: String,
    pub requested_at: Timestamp,
    pub consented_at: Option<Timestamp>,
    pub ended_at: Option<Timestamp>,
    pub updated_at: Timestamp,
    pub permanent_failures: i64,
    pub last_failure: Option<String>,
}

/// What a request on the public page did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RequestOutcome {
    /// The subscription waits for its confirmation (new, ended before, or pending).
    Pending { subscriber_id: i64, nonce: String },
    /// The address is subscribed already; nothing changed.
    AlreadyConfirmed { subscriber_id: i64, nonce: String },
}

/// A subscription to import.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewSubscriber {
    pub address: String,
    pub choices: Choices,
    pub nonce: String,
}

/// What an import did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ImportOutcome {
    pub added: Vec<String>,
    pub already_subscribed: Vec<String>,
}

/// One delivery to a subscriber, for their export.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SubscriberDelivery {
    pub notice_id: i64,
    pub incident_id: i64,
    pub channel: String,
    pub state: String,
    pub sent_at: Option<Timestamp>,
}

/// What a send did to its subscriber.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SubscriberOutcome {
    /// The mail server took it.
    Delivered,
    /// The mail server refused it for good (SMTP 5xx), with its answer.
    Bounced(String),
}
