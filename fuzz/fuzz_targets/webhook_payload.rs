//! The Alertmanager webhook body, as it arrives at `POST /webhook/alertmanager`: any bytes
//! go to `Notification::parse`. Checks, besides "never panics":
//!
//! - a refusal says what and where (`error` and `detail` are not empty);
//! - parsing is deterministic, and the dedupe key is 64 hex digits;
//! - an accepted payload, written back as a version 4 payload, parses to the same
//!   notification with the same dedupe key (no field is lost or changed on the way);
//! - what the worker does next with it (`alert_updates`, `alert_scopes`, `summarize`,
//!   `classify`) does not panic, and every id taken from a label is trimmed, not empty and
//!   at most `MAX_LABEL_VALUE_CHARS` characters.
//!
//! Seeds: fuzz/corpus/webhook_payload (the payloads of deploy/examples and edge cases).
#![no_main]

use std::sync::LazyLock;

use libfuzzer_sys::fuzz_target;
use samsa_relay::alertmanager::{AlertStatus, Notification};
use samsa_relay::classify::{AlertScope, MAX_LABEL_VALUE_CHARS, alert_scopes, classify, summarize};
use samsa_relay::config::IncidentsConfig;
use samsa_relay::incident_worker::alert_updates;
use samsa_relay::inventory::Inventory;
use serde_json::json;

static INCIDENTS: LazyLock<IncidentsConfig> = LazyLock::new(IncidentsConfig::default);
static INVENTORY: LazyLock<Inventory> = LazyLock::new(Inventory::default_samsa);

/// Go's zero time: what Alertmanager sends as `endsAt` of an alert with no end.
const GO_ZERO_TIME: &str = "0001-01-01T00:00:00Z";

fuzz_target!(|data: &[u8]| {
    let notification = match Notification::parse(data) {
        Ok(notification) => notification,
        Err(problem) => {
            assert!(!problem.error.is_empty(), "a refusal without an error");
            assert!(
                !problem.detail.is_empty(),
                "a refusal without a detail: {problem:?}"
            );
            return;
        }
    };
    assert_eq!(
        Notification::parse(data).as_ref(),
        Ok(&notification),
        "parsing is not deterministic"
    );
    let key = notification.dedupe_key();
    assert!(
        key.len() == 64 && key.bytes().all(|byte| byte.is_ascii_hexdigit()),
        "dedupe key {key:?}"
    );

    // Written back as Alertmanager would send it, the notification comes back unchanged.
    let alerts: Vec<_> = notification
        .alerts
        .iter()
        .map(|alert| {
            assert!(!alert.fingerprint.trim().is_empty());
            json!({
                "status": alert.status.as_str(),
                "labels": alert.labels,
                "annotations": alert.annotations,
                "startsAt": alert.starts_at.to_string(),
                "endsAt": alert.ends_at.map_or_else(|| GO_ZERO_TIME.to_owned(), |at| at.to_string()),
                "generatorURL": alert.generator_url,
                "fingerprint": alert.fingerprint,
            })
        })
        .collect();
    let rewritten = json!({
        "version": "4",
        "groupKey": notification.group_key,
        "truncatedAlerts": notification.truncated_alerts,
        "status": notification.status.as_str(),
        "receiver": notification.receiver,
        "externalURL": notification.external_url,
        "alerts": alerts,
    });
    let rewritten = serde_json::to_vec(&rewritten).expect("a JSON value serializes");
    let again = Notification::parse(&rewritten).unwrap_or_else(|problem| {
        panic!(
            "the payload written back is refused: {problem:?}\n{}",
            String::from_utf8_lossy(&rewritten)
        )
    });
    assert_eq!(
        again, notification,
        "the round trip changed the notification"
    );
    assert_eq!(
        again.dedupe_key(),
        key,
        "the round trip changed the dedupe key"
    );

    // What the incident worker does with it next, up to (not including) rendering, which
    // fuzz_targets/render_hostile_labels.rs covers.
    let updates = alert_updates(&notification, &INCIDENTS.watchdog_alertname);
    assert!(updates.len() <= notification.alerts.len());
    let mut scopes = Vec::new();
    for alert in &notification.alerts {
        if alert.status != AlertStatus::Firing {
            continue;
        }
        for scope in alert_scopes(&alert.labels, &INCIDENTS) {
            if let AlertScope::Actor(id) | AlertScope::Subregion(id) = &scope {
                assert!(!id.is_empty() && id.trim() == id, "label id {id:?}");
                assert!(
                    id.chars().count() <= MAX_LABEL_VALUE_CHARS,
                    "label id {id:?}"
                );
            }
            scopes.push(scope);
        }
    }
    let summary = summarize(&scopes, &INVENTORY);
    assert!(summary.n_affected <= summary.n_actors);
    let _ = classify(&summary, INCIDENTS.broad_subregion_share);
});
