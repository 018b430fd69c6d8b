//! Alertmanager webhook payloads, and receipts stored as if they had arrived at a given
//! time.

use serde_json::{Value, json};

/// One alert in the Alertmanager v4 webhook form.
pub fn alert(fingerprint: &str, status: &str, labels: Value, starts_at: &str) -> Value {
    let ends_at = if status == "resolved" {
        "2026-11-28T06:00:00Z"
    } else {
        "0001-01-01T00:00:00Z"
    };
    json!({
        "status": status,
        "labels": labels,
        "annotations": {"summary": "SAMSA login page unreachable"},
        "startsAt": starts_at,
        "endsAt": ends_at,
        "generatorURL": "http://prometheus.example/graph",
        "fingerprint": fingerprint,
    })
}

/// Stores a webhook body as if it had arrived at `received_at`, past HTTP and the clock.
pub async fn store_at(
    storage: &samsa_relay::storage::Storage,
    received_at: jiff::Timestamp,
    body: &Value,
) -> samsa_relay::storage::StoredReceipt {
    let text = body.to_string();
    let notification =
        samsa_relay::alertmanager::Notification::parse(text.as_bytes()).expect("a valid payload");
    storage
        .store_notification(
            &notification,
            &notification.dedupe_key(),
            &text,
            received_at,
        )
        .await
        .expect("stored")
}

/// A whole webhook payload around `alerts`.
pub fn payload(status: &str, alerts: Vec<Value>) -> Value {
    json!({
        "version": "4",
        "groupKey": "{}/{service=\"samsa\"}:{alertname=\"SamsaLoginDown\"}",
        "truncatedAlerts": 0,
        "status": status,
        "receiver": "samsa-relay",
        "groupLabels": {"alertname": "SamsaLoginDown"},
        "commonLabels": {"service": "samsa"},
        "commonAnnotations": {},
        "externalURL": "http://alertmanager.example:9093",
        "alerts": alerts,
    })
}

/// A firing payload with `n` distinct alerts, one per actor-like id.
pub fn many_alerts(n: usize) -> Value {
    let alerts = (0..n)
        .map(|index| {
            alert(
                &format!("{index:016x}"),
                "firing",
                json!({"alertname": "SamsaLoginDown", "service": "samsa", "actor": format!("actor-{index}")}),
                "2026-11-28T04:12:00Z",
            )
        })
        .collect();
    payload("firing", alerts)
}
