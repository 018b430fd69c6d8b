//! Receipts: every accepted webhook (deduplicated by key), the current state of every
//! alert received (derived from them), and the incident worker's backlog of unprocessed
//! receipts.

use async_trait::async_trait;
use jiff::Timestamp;

use super::StorageError;
use crate::alertmanager::{Alert, AlertStatus, Notification};

/// Receipts, outside a transaction.
#[async_trait]
pub trait Receipts: Send + Sync {
    /// Stores notifications in one transaction (group commit), answering each in order:
    /// a notification whose dedupe key was stored before (or earlier in the same batch)
    /// is a duplicate and writes nothing. Returns only after the commit is durable.
    async fn store_notifications(
        &self,
        batch: &[NewReceipt<'_>],
    ) -> Result<Vec<StoredReceipt>, StorageError>;

    /// The receipts in the order they were stored.
    async fn receipts(&self) -> Result<Vec<ReceiptRecord>, StorageError>;

    /// Every alert's current state, ordered by fingerprint then start, as the stored
    /// receipts give it ([`alerts_of_receipts`]): the relay keeps no table of alerts
    /// beside the receipts, which hold every copy Alertmanager sent. For audit and tests;
    /// it reads every receipt.
    async fn alerts(&self) -> Result<Vec<AlertRecord>, StorageError> {
        Ok(alerts_of_receipts(&self.receipts().await?))
    }

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

/// Every alert's current state from `receipts` applied in order: per (fingerprint,
/// startsAt) its latest copy, except that a resolved alert stays resolved (a late
/// "firing" for the same key is an older message, not a new outage: a re-fire has a new
/// startsAt), keeping the state, labels and annotations it resolved with. Within one
/// webhook a resolved copy wins, otherwise the last. A payload that no longer parses
/// contributes nothing, as the incident worker skips it.
pub fn alerts_of_receipts(receipts: &[ReceiptRecord]) -> Vec<AlertRecord> {
    let mut alerts: std::collections::BTreeMap<(String, Timestamp), AlertRecord> =
        std::collections::BTreeMap::new();
    for receipt in receipts {
        let Ok(notification) = Notification::parse(receipt.payload.as_bytes()) else {
            continue;
        };
        for alert in latest_per_key(&notification.alerts) {
            let key = (alert.fingerprint.clone(), alert.starts_at);
            match alerts.get_mut(&key) {
                Some(known) => {
                    if known.status != AlertStatus::Resolved {
                        known.status = alert.status;
                        known.ends_at = alert.ends_at;
                        known.labels = alert.labels.to_map();
                        known.annotations = alert.annotations.to_map();
                    }
                    known.generator_url = alert.generator_url.clone();
                    known.last_receipt_id = receipt.receipt_id;
                }
                None => {
                    alerts.insert(
                        key,
                        AlertRecord {
                            fingerprint: alert.fingerprint.clone(),
                            starts_at: alert.starts_at,
                            status: alert.status,
                            labels: alert.labels.to_map(),
                            annotations: alert.annotations.to_map(),
                            ends_at: alert.ends_at,
                            generator_url: alert.generator_url.clone(),
                            first_receipt_id: receipt.receipt_id,
                            last_receipt_id: receipt.receipt_id,
                        },
                    );
                }
            }
        }
    }
    alerts.into_values().collect()
}

/// One alert per (fingerprint, startsAt) of one webhook: a resolved copy wins, otherwise
/// the last one.
fn latest_per_key(alerts: &[Alert]) -> Vec<&Alert> {
    let mut position: std::collections::HashMap<(&str, Timestamp), usize> =
        std::collections::HashMap::with_capacity(alerts.len());
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

#[cfg(test)]
mod tests {
    use super::*;

    fn receipt(receipt_id: i64, alerts: &str) -> ReceiptRecord {
        ReceiptRecord {
            receipt_id,
            received_at: "2026-11-28T05:00:00Z".parse().unwrap(),
            group_key: "g".to_owned(),
            status: AlertStatus::Firing,
            receiver: "r".to_owned(),
            n_alerts: 1,
            payload: format!(
                r#"{{"version":"4","groupKey":"g","truncatedAlerts":0,"status":"firing","receiver":"r","groupLabels":{{}},"commonLabels":{{}},"commonAnnotations":{{}},"externalURL":"http://am","alerts":[{alerts}]}}"#
            ),
        }
    }

    fn alert(fingerprint: &str, status: &str, actor: &str, url: &str) -> String {
        format!(
            r#"{{"status":"{status}","labels":{{"alertname":"SamsaLoginDown","actor":"{actor}"}},"annotations":{{}},"startsAt":"2026-11-28T04:00:00Z","endsAt":"0001-01-01T00:00:00Z","generatorURL":"{url}","fingerprint":"{fingerprint}"}}"#
        )
    }

    #[test]
    fn alerts_are_the_receipts_applied_in_order_and_resolved_is_final() {
        let receipts = [
            receipt(1, &alert("b", "firing", "kommun-ale", "http://one")),
            receipt(
                2,
                &[
                    alert("a", "firing", "kommun-boras", "http://one"),
                    // Within one webhook a resolved copy wins over a later firing one.
                    alert("b", "resolved", "kommun-ale", "http://two"),
                    alert("b", "firing", "kommun-ale", "http://three"),
                ]
                .join(","),
            ),
            ReceiptRecord {
                payload: "not json".to_owned(),
                ..receipt(3, "")
            },
            // A late firing copy with other labels: the resolution and its labels stay.
            receipt(
                4,
                &[
                    alert("b", "firing", "kommun-mark", "http://four"),
                    alert("a", "firing", "kommun-lerum", "http://four"),
                ]
                .join(","),
            ),
        ];
        let alerts = alerts_of_receipts(&receipts);
        let summary: Vec<(&str, AlertStatus, &str, &str, i64, i64)> = alerts
            .iter()
            .map(|alert| {
                (
                    alert.fingerprint.as_str(),
                    alert.status,
                    alert.labels["actor"].as_str(),
                    alert.generator_url.as_str(),
                    alert.first_receipt_id,
                    alert.last_receipt_id,
                )
            })
            .collect();
        assert_eq!(
            summary,
            [
                (
                    "a",
                    AlertStatus::Firing,
                    "kommun-lerum",
                    "http://four",
                    2,
                    4
                ),
                (
                    "b",
                    AlertStatus::Resolved,
                    "kommun-ale",
                    "http://four",
                    1,
                    4
                ),
            ]
        );
    }
}
