//! From stored webhooks to incidents and drafts, through the real app and its worker.

use crate::common;

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

/// Webhooks of a whole outage and the next one: opened, grown, raised to level 3,
/// resolved before publication (draft withdrawn), a new incident after the flap window,
/// a resend that changes nothing, and its resolution. Times are fixed, so two databases
/// that process them must end up identical.
fn two_outages() -> Vec<(jiff::Timestamp, Value)> {
    let at = |text: &str| text.parse::<jiff::Timestamp>().expect("a valid time");
    let login = |fingerprint: &str, status: &str, labels: Value, starts_at: &str| {
        let mut labels = labels;
        labels["alertname"] = json!("SamsaLoginDown");
        labels["service"] = json!("samsa");
        alert(fingerprint, status, labels, starts_at)
    };
    let first = "2026-11-28T04:10:00Z";
    let second = "2026-11-28T08:00:00Z";
    vec![
        (
            at("2026-11-28T04:11:00Z"),
            payload(
                "firing",
                vec![login(
                    "a1",
                    "firing",
                    json!({"actor": "kommun-uddevalla"}),
                    first,
                )],
            ),
        ),
        (
            at("2026-11-28T04:12:00Z"),
            payload(
                "firing",
                vec![login(
                    "a2",
                    "firing",
                    json!({"actor": "kommun-boras"}),
                    first,
                )],
            ),
        ),
        (
            at("2026-11-28T04:13:00Z"),
            payload(
                "firing",
                vec![login("a3", "firing", json!({"scope": "all"}), first)],
            ),
        ),
        (
            at("2026-11-28T04:40:00Z"),
            payload(
                "resolved",
                vec![
                    login(
                        "a1",
                        "resolved",
                        json!({"actor": "kommun-uddevalla"}),
                        first,
                    ),
                    login("a2", "resolved", json!({"actor": "kommun-boras"}), first),
                    login("a3", "resolved", json!({"scope": "all"}), first),
                ],
            ),
        ),
        (
            at("2026-11-28T08:01:00Z"),
            payload(
                "firing",
                vec![login(
                    "b1",
                    "firing",
                    json!({"subregion": "skaraborg"}),
                    second,
                )],
            ),
        ),
        (
            at("2026-11-28T08:02:00Z"),
            payload(
                "firing",
                vec![
                    login("b1", "firing", json!({"subregion": "skaraborg"}), second),
                    login("b2", "firing", json!({"actor": "kommun-mark"}), second),
                ],
            ),
        ),
        (
            at("2026-11-28T08:30:00Z"),
            payload(
                "resolved",
                vec![login(
                    "b2",
                    "resolved",
                    json!({"actor": "kommun-mark"}),
                    second,
                )],
            ),
        ),
    ]
}

/// Everything the worker wrote, read back: incidents, their drafts and their logs.
async fn everything_written(
    app: &samsa_relay::app::App,
) -> Vec<(
    IncidentRecord,
    Vec<DraftRecord>,
    Vec<samsa_relay::storage::EventRecord>,
)> {
    let storage = &app.state().storage;
    let mut written = Vec::new();
    for record in storage.incidents().await.unwrap() {
        let drafts = storage.drafts(record.incident_id).await.unwrap();
        let events = storage.incident_events(record.incident_id).await.unwrap();
        written.push((record, drafts, events));
    }
    written
}

#[tokio::test]
async fn a_batch_of_receipts_writes_exactly_what_one_step_per_receipt_writes() {
    use samsa_relay::incident_worker::StepOutcome;

    let mut apps = Vec::new();
    for _ in 0..2 {
        let folder = tempfile::tempdir().expect("temporary folder");
        let config = common::config_with_tables(folder.path(), "");
        let app = samsa_relay::app::App::build(config)
            .await
            .expect("app builds");
        for (received_at, body) in two_outages() {
            common::store_at(&app.state().storage, received_at, &body).await;
        }
        apps.push((app, folder));
    }
    let n_receipts = two_outages().len();

    // One step per receipt, as a quiet relay would do them.
    let (one_by_one, _) = &apps[0];
    for _ in 0..n_receipts {
        let outcome = one_by_one.worker().process_next_receipt().await.unwrap();
        assert!(
            matches!(outcome, StepOutcome::Processed { .. }),
            "{outcome:?}"
        );
    }
    assert_eq!(
        one_by_one.worker().process_next_receipt().await.unwrap(),
        StepOutcome::Idle
    );

    // All of them in one transaction, as a busy relay does: a draft created early in the
    // batch is revised and withdrawn later in the same batch.
    let (batched, _) = &apps[1];
    let outcomes = batched.worker().process_receipts(64).await.unwrap();
    assert_eq!(outcomes.len(), n_receipts, "{outcomes:?}");
    assert!(
        batched
            .worker()
            .process_receipts(64)
            .await
            .unwrap()
            .is_empty()
    );

    let expected = everything_written(one_by_one).await;
    let written = everything_written(batched).await;
    assert_eq!(expected.len(), 2, "two incidents: {expected:#?}");
    let first_drafts = &expected[0].1;
    assert_eq!(first_drafts.len(), 1);
    assert_eq!(first_drafts[0].state, "withdrawn");
    assert!(first_drafts[0].versions.len() >= 2, "{first_drafts:#?}");
    assert_eq!(written, expected);
}

/// Two replicas over one database (two apps on one file stand for them): only the holder
/// of the correlation lease processes receipts; when it gives the lease up, the other
/// takes over, and drops nothing.
#[tokio::test]
async fn only_the_replica_holding_the_correlation_lease_processes_receipts() {
    use samsa_relay::incident_worker::StepOutcome;

    let folder = tempfile::tempdir().expect("temporary folder");
    let first = samsa_relay::app::App::build(common::config_with_tables(folder.path(), ""))
        .await
        .expect("first replica builds");
    let second = samsa_relay::app::App::build(common::config_with_tables(folder.path(), ""))
        .await
        .expect("second replica builds");
    let outages = two_outages();
    let (received_at, body) = &outages[0];
    common::store_at(&first.state().storage, *received_at, body).await;

    let outcome = first.worker().process_next_receipt().await.unwrap();
    assert!(
        matches!(outcome, StepOutcome::Processed { .. }),
        "{outcome:?}"
    );
    assert!(first.worker().lease.is_held());
    let (received_at, body) = &outages[1];
    common::store_at(&second.state().storage, *received_at, body).await;
    // The second replica meets the first's lease and leaves the receipt to it.
    assert!(
        second
            .worker()
            .process_receipts(64)
            .await
            .unwrap()
            .is_empty()
    );
    assert!(!second.worker().lease.is_held());
    let storage = &first.state().storage;
    assert_eq!(storage.n_unprocessed_receipts().await.unwrap(), 1);

    // The first gives the lease up (as at shutdown): the second takes it and the receipt.
    let lease = &first.worker().lease;
    storage
        .release_lease(lease.name(), lease.holder())
        .await
        .unwrap();
    let outcomes = second.worker().process_receipts(64).await.unwrap();
    assert_eq!(outcomes.len(), 1, "{outcomes:?}");
    assert!(second.worker().lease.is_held());
    assert_eq!(storage.n_unprocessed_receipts().await.unwrap(), 0);
    // The first still counts itself the holder until its last renewal runs out, but the
    // fence inside the transaction stops it from writing.
    let (received_at, body) = &outages[2];
    common::store_at(storage, *received_at, body).await;
    assert!(
        first
            .worker()
            .process_receipts(64)
            .await
            .unwrap()
            .is_empty()
    );
    assert_eq!(storage.n_unprocessed_receipts().await.unwrap(), 1);
    let leases = storage.leases().await.unwrap();
    let correlation = leases
        .iter()
        .find(|lease| lease.name == "correlation")
        .expect("the correlation lease is stored");
    assert_eq!(correlation.holder, second.worker().lease.holder());
}

/// An app over a fresh database with no loops running: the test drives the worker.
async fn quiet_app() -> (samsa_relay::app::App, tempfile::TempDir) {
    let folder = tempfile::tempdir().expect("temporary folder");
    let config = common::config_with_tables(folder.path(), "");
    let app = samsa_relay::app::App::build(config)
        .await
        .expect("app builds");
    (app, folder)
}

#[tokio::test]
async fn an_operators_change_between_plan_and_write_makes_the_worker_plan_again() {
    let at = |text: &str| text.parse::<jiff::Timestamp>().unwrap();
    let opened = payload(
        "firing",
        vec![down("a1", "firing", json!({"actor": "kommun-uddevalla"}))],
    );
    let grown = payload(
        "firing",
        vec![
            down("a1", "firing", json!({"actor": "kommun-uddevalla"})),
            down("s1", "firing", json!({"subregion": "fyrbodal"})),
        ],
    );
    // The same two receipts in two relays; in both the operator discards the first draft
    // before the second receipt is written. In `raced` the worker had already planned the
    // second receipt (a revision of that draft) when the operator acted.
    let (raced, _raced_folder) = quiet_app().await;
    let (reference, _reference_folder) = quiet_app().await;
    for app in [&raced, &reference] {
        let storage = &app.state().storage;
        common::store_at(storage, at("2026-11-28T04:11:00Z"), &opened).await;
        assert_eq!(app.worker().process_receipts(64).await.unwrap().len(), 1);
        common::store_at(storage, at("2026-11-28T04:12:00Z"), &grown).await;
    }
    let discard = |app: &samsa_relay::app::App| {
        let storage = app.state().storage.clone();
        async move {
            let drafts = storage.drafts(1).await.unwrap();
            assert_eq!(drafts.len(), 1);
            storage
                .discard_draft(
                    drafts[0].draft_id,
                    "Fel larm",
                    "Operatör",
                    at("2026-11-28T04:13:00Z"),
                )
                .await
                .unwrap()
                .expect("the pending draft is discarded");
        }
    };

    let plan = raced
        .worker()
        .plan(64, &mut None, at("2026-11-28T04:14:00Z"))
        .await
        .unwrap()
        .expect("one receipt waits");
    discard(&raced).await;
    assert!(
        raced.worker().write(plan).await.unwrap().is_none(),
        "a plan made before the discard must not be written"
    );
    assert_eq!(
        raced
            .state()
            .storage
            .n_unprocessed_receipts()
            .await
            .unwrap(),
        1
    );
    assert_eq!(raced.worker().process_receipts(64).await.unwrap().len(), 1);

    discard(&reference).await;
    assert_eq!(
        reference.worker().process_receipts(64).await.unwrap().len(),
        1
    );

    let written = everything_written(&raced).await;
    let first_drafts = &written[0].1;
    assert_eq!(first_drafts[0].state, "discarded", "{first_drafts:#?}");
    assert_eq!(
        first_drafts[0].versions.len(),
        1,
        "the discarded draft is never revised"
    );
    // Times of the log entries the discard wrote are the same in both (the test's clock).
    assert_eq!(written, everything_written(&reference).await);
}

#[tokio::test]
async fn the_worker_keeps_no_alerts_between_batches_and_counts_scopes_from_the_database() {
    let at = |text: &str| text.parse::<jiff::Timestamp>().unwrap();
    let (app, _folder) = quiet_app().await;
    let storage = &app.state().storage;
    let actors = ["kommun-boras", "kommun-skovde", "kommun-uddevalla"];
    // Three actors, 30 alerts each, over three webhooks.
    for (index, actor) in actors.iter().enumerate() {
        let alerts = (0..30)
            .map(|n| down(&format!("{actor}-{n}"), "firing", json!({"actor": actor})))
            .collect();
        common::store_at(
            storage,
            at(&format!("2026-11-28T04:1{index}:00Z")),
            &payload("firing", alerts),
        )
        .await;
        assert_eq!(app.worker().process_receipts(64).await.unwrap().len(), 1);
        let kept = app.worker().kept_engine.lock().await;
        let (_, engine) = kept.as_ref().expect("the engine is kept between batches");
        let latest = engine.latest.as_ref().expect("an incident");
        assert!(
            latest.alerts.is_empty(),
            "{} alerts kept",
            latest.alerts.len()
        );
        assert!(engine.retired_alerts.is_empty());
    }
    assert_eq!(incident_summary(&app).await, 3);
    // An idle call keeps the engine (its scope counts) for the next batch.
    assert!(app.worker().process_receipts(64).await.unwrap().is_empty());
    assert!(app.worker().kept_engine.lock().await.is_some());

    // The engine is lost (a restart, a lease taken over): its scopes are counted again from
    // the database. Boras resolves: two actors remain.
    *app.worker().kept_engine.lock().await = None;
    let resolved = (0..30)
        .map(|n| {
            down(
                &format!("kommun-boras-{n}"),
                "resolved",
                json!({"actor": "kommun-boras"}),
            )
        })
        .collect();
    common::store_at(
        storage,
        at("2026-11-28T04:20:00Z"),
        &payload("resolved", resolved),
    )
    .await;
    assert_eq!(app.worker().process_receipts(64).await.unwrap().len(), 1);
    assert_eq!(incident_summary(&app).await, 2);
    assert!(storage.incidents().await.unwrap()[0].resolved_at.is_none());

    // The rest resolves in one more webhook, alert by alert counted down: resolved.
    *app.worker().kept_engine.lock().await = None;
    let resolved = ["kommun-skovde", "kommun-uddevalla"]
        .iter()
        .flat_map(|actor| {
            (0..30).map(move |n| down(&format!("{actor}-{n}"), "resolved", json!({"actor": actor})))
        })
        .collect();
    common::store_at(
        storage,
        at("2026-11-28T04:21:00Z"),
        &payload("resolved", resolved),
    )
    .await;
    assert_eq!(app.worker().process_receipts(64).await.unwrap().len(), 1);
    let record = &storage.incidents().await.unwrap()[0];
    assert!(record.resolved_at.is_some(), "{record:#?}");
}

async fn incident_summary(app: &samsa_relay::app::App) -> usize {
    let records = app.state().storage.incidents().await.unwrap();
    assert_eq!(records.len(), 1, "one incident");
    records[0].incident.summary.n_affected
}

#[tokio::test]
async fn a_webhooks_alerts_are_logged_in_one_row_and_read_as_one_entry_each() {
    use sqlx::Connection;
    let app = spawn_app().await;
    let actors = [
        "kommun-boras",
        "kommun-ale",
        "kommun-uddevalla",
        "kommun-mark",
        "kommun-lerum",
    ];
    let alerts: Vec<Value> = actors
        .iter()
        .enumerate()
        .map(|(index, actor)| down(&format!("f{index}"), "firing", json!({"actor": actor})))
        .collect();
    let firing = payload("firing", alerts.clone());
    assert_eq!(app.post_webhook(firing.to_string()).await.status(), 200);
    processed(&app).await;

    let log = app.state.storage.incident_events(1).await.unwrap();
    let fingerprints: Vec<&str> = log
        .iter()
        .filter(|event| event.event == "alert_firing")
        .map(|event| event.detail["fingerprint"].as_str().unwrap())
        .collect();
    assert_eq!(fingerprints, ["f0", "f1", "f2", "f3", "f4"]);
    for event in log.iter().filter(|event| event.event == "alert_firing") {
        assert_eq!(event.source, "alertmanager");
        assert!(event.detail["labels"]["actor"].is_string(), "{event:?}");
    }

    let resolved = payload(
        "resolved",
        alerts
            .iter()
            .map(|alert| {
                let mut alert = alert.clone();
                alert["status"] = json!("resolved");
                alert
            })
            .collect(),
    );
    assert_eq!(app.post_webhook(resolved.to_string()).await.status(), 200);
    processed(&app).await;
    let log = app.state.storage.incident_events(1).await.unwrap();
    assert_eq!(
        log.iter()
            .filter(|event| event.event == "alert_resolved")
            .count(),
        5
    );

    // Stored: one row per webhook for its alerts.
    let database = app.folder.path().join("relay.db");
    let mut connection =
        sqlx::SqliteConnection::connect(&format!("sqlite://{}", database.display()))
            .await
            .unwrap();
    let rows: Vec<(String, i64)> = sqlx::query_as(
        "SELECT event, json_array_length(detail, '$.alerts') FROM incident_events \
         WHERE event LIKE 'alert%' ORDER BY id",
    )
    .fetch_all(&mut connection)
    .await
    .unwrap();
    assert_eq!(
        rows,
        [
            ("alerts_firing".to_owned(), 5),
            ("alerts_resolved".to_owned(), 5)
        ]
    );
    connection.close().await.unwrap();
    app.stop().await;
}
