//! From stored webhooks to incidents and drafts, through the real app and its worker.

mod common;

use std::time::Duration;

use common::{TestApp, alert, payload, spawn_app, spawn_app_with_tables};
use samsa_relay::storage::{DraftRecord, IncidentRecord};
use serde_json::{Value, json};

const DEADLINE: Duration = Duration::from_secs(20);

fn down(fingerprint: &str, status: &str, labels: Value) -> Value {
    let mut labels = labels;
    labels["alertname"] = json!("SamsaLoginDown");
    labels["service"] = json!("samsa");
    alert(fingerprint, status, labels, "2026-11-28T04:10:00Z")
}

async fn incident(app: &TestApp, incident_id: i64) -> Option<IncidentRecord> {
    app.state
        .storage
        .incidents()
        .await
        .unwrap()
        .into_iter()
        .find(|record| record.incident_id == incident_id)
}

async fn drafts(app: &TestApp, incident_id: i64) -> Vec<DraftRecord> {
    app.state.storage.drafts(incident_id).await.unwrap()
}

async fn processed(app: &TestApp) {
    common::eventually("every receipt processed", DEADLINE, || async {
        (app.state.storage.n_unprocessed_receipts().await.unwrap() == 0).then_some(())
    })
    .await;
}

async fn events(app: &TestApp, incident_id: i64) -> Vec<String> {
    app.state
        .storage
        .incident_events(incident_id)
        .await
        .unwrap()
        .into_iter()
        .map(|event| event.event)
        .collect()
}

#[tokio::test]
async fn an_outage_grows_and_the_pending_draft_is_revised_then_withdrawn_on_resolution() {
    let app = spawn_app().await;

    let first = payload(
        "firing",
        vec![down("a1", "firing", json!({"actor": "kommun-uddevalla"}))],
    );
    assert_eq!(app.post_webhook(first.to_string()).await.status(), 200);
    processed(&app).await;
    let record = incident(&app, 1).await.expect("incident 1 opened");
    assert_eq!(record.kind, "outage");
    assert_eq!(record.incident.summary.n_affected, 1);
    assert_eq!(record.incident.classification.level.as_number(), 1);
    let draft_list = drafts(&app, 1).await;
    assert_eq!(draft_list.len(), 1);
    assert_eq!(draft_list[0].state, "pending");
    assert_eq!(draft_list[0].versions.len(), 1);
    let rendered = &draft_list[0].versions[0].rendered;
    assert!(
        rendered.email_text.contains("Uddevalla"),
        "{}",
        rendered.email_text
    );
    assert!(
        rendered.email_text.contains("dygnet runt") || rendered.email_text.contains("hela dygnet")
    );
    assert!(
        rendered.email_text.contains("/public/feedback/1"),
        "{}",
        rendered.email_text
    );

    // The whole of Fyrbodal goes down: same incident, level 2, the draft revised in place.
    let second = payload(
        "firing",
        vec![
            down("a1", "firing", json!({"actor": "kommun-uddevalla"})),
            down("s1", "firing", json!({"subregion": "fyrbodal"})),
        ],
    );
    assert_eq!(app.post_webhook(second.to_string()).await.status(), 200);
    processed(&app).await;
    let record = incident(&app, 1).await.unwrap();
    assert_eq!(record.incident.classification.level.as_number(), 2);
    assert!(record.incident.summary.n_affected > 14);
    let draft_list = drafts(&app, 1).await;
    assert_eq!(draft_list.len(), 1, "revised in place, never duplicated");
    assert_eq!(draft_list[0].versions.len(), 2);
    assert_eq!(app.state.storage.incidents().await.unwrap().len(), 1);

    // Everything resolves before anyone published: the draft is withdrawn, no resolution
    // notice is drafted.
    let resolved = payload(
        "resolved",
        vec![
            down("a1", "resolved", json!({"actor": "kommun-uddevalla"})),
            down("s1", "resolved", json!({"subregion": "fyrbodal"})),
        ],
    );
    assert_eq!(app.post_webhook(resolved.to_string()).await.status(), 200);
    processed(&app).await;
    let record = incident(&app, 1).await.unwrap();
    assert!(record.resolved_at.is_some());
    let draft_list = drafts(&app, 1).await;
    assert_eq!(draft_list.len(), 1);
    assert_eq!(draft_list[0].state, "withdrawn");
    assert!(draft_list[0].state_reason.is_some());

    let log = events(&app, 1).await;
    for expected in [
        "incident_opened",
        "alert_firing",
        "draft_created",
        "scope_changed",
        "level_changed",
        "draft_revised",
        "alert_resolved",
        "incident_resolved",
        "draft_withdrawn",
    ] {
        assert!(
            log.iter().any(|event| event == expected),
            "{expected} missing from {log:?}"
        );
    }
    assert_eq!(app.metric("samsa_relay_incidents_opened_total").await, 1.0);
    app.stop().await;
}

#[tokio::test]
async fn a_duplicate_webhook_changes_no_incident() {
    let app = spawn_app().await;
    let body = payload(
        "firing",
        vec![down("a1", "firing", json!({"actor": "kommun-boras"}))],
    )
    .to_string();
    app.post_webhook(body.clone()).await;
    app.post_webhook(body).await;
    processed(&app).await;
    assert_eq!(app.state.storage.incidents().await.unwrap().len(), 1);
    assert_eq!(drafts(&app, 1).await[0].versions.len(), 1);
    app.stop().await;
}

#[tokio::test]
async fn the_whole_service_down_suggests_level_3_with_crisis() {
    let app = spawn_app().await;
    let body = payload(
        "firing",
        vec![down("all", "firing", json!({"scope": "all"}))],
    );
    app.post_webhook(body.to_string()).await;
    processed(&app).await;
    let record = incident(&app, 1).await.unwrap();
    assert!(record.incident.summary.whole_service);
    assert_eq!(record.incident.classification.level.as_number(), 3);
    assert!(record.incident.classification.crisis);
    assert!(
        !drafts(&app, 1).await[0].versions[0]
            .rendered
            .crisis_text
            .is_empty()
    );
    app.stop().await;
}

#[tokio::test]
async fn a_10000_alert_payload_becomes_one_incident_with_one_draft() {
    let app = spawn_app().await;
    let inventory = samsa_relay::inventory::Inventory::default_samsa();
    let ids: Vec<String> = inventory
        .actors()
        .iter()
        .map(|actor| actor.id.clone())
        .collect();
    let alerts = (0..10_000)
        .map(|index| {
            down(
                &format!("{index:016x}"),
                "firing",
                json!({"actor": ids[index % ids.len()]}),
            )
        })
        .collect();
    let response = app
        .post_webhook(payload("firing", alerts).to_string())
        .await;
    assert_eq!(response.status(), 200);
    processed(&app).await;
    let record = incident(&app, 1).await.unwrap();
    assert_eq!(record.incident.alerts.len(), 10_000);
    assert_eq!(record.incident.summary.n_affected, ids.len());
    assert_eq!(record.incident.classification.level.as_number(), 3);
    assert_eq!(drafts(&app, 1).await.len(), 1);
    app.stop().await;
}

#[tokio::test]
async fn a_silent_watchdog_opens_an_internal_incident_and_its_return_resolves_it() {
    let app = spawn_app_with_tables("[incidents]\nwatchdog_timeout = \"1s\"\n").await;
    let record = common::eventually("the monitoring incident", DEADLINE, || async {
        app.state
            .storage
            .incidents()
            .await
            .unwrap()
            .into_iter()
            .find(|record| record.kind == "monitoring")
    })
    .await;
    assert!(record.resolved_at.is_none());
    assert!(
        drafts(&app, record.incident_id).await.is_empty(),
        "never a public notice"
    );

    let watchdog = payload(
        "firing",
        vec![alert(
            "wd",
            "firing",
            json!({"alertname": "Watchdog", "severity": "none"}),
            "2026-11-28T00:00:00Z",
        )],
    );
    assert_eq!(app.post_webhook(watchdog.to_string()).await.status(), 200);
    common::eventually("the monitoring incident resolved", DEADLINE, || async {
        let records = app.state.storage.incidents().await.unwrap();
        records
            .into_iter()
            .find(|found| found.incident_id == record.incident_id && found.resolved_at.is_some())
    })
    .await;
    // The Watchdog itself never opens an outage.
    processed(&app).await;
    assert!(
        app.state
            .storage
            .incidents()
            .await
            .unwrap()
            .iter()
            .all(|record| record.kind == "monitoring")
    );
    let log = events(&app, record.incident_id).await;
    assert_eq!(
        log,
        vec!["monitoring_chain_broken", "monitoring_chain_restored"]
    );
    app.stop().await;
}
