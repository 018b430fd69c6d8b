//! `POST /webhook/alertmanager` end to end against the real app and a real SQLite file.

use crate::common;

use common::{TOKEN, alert, many_alerts, payload, spawn_app, spawn_app_with};
use samsa_relay::alertmanager::AlertStatus;
use serde_json::{Value, json};
use sqlx::Connection as _;

fn samsa_down(actor: &str, fingerprint: &str, status: &str) -> Value {
    payload(
        status,
        vec![alert(
            fingerprint,
            status,
            json!({"alertname": "SamsaLoginDown", "service": "samsa", "actor": actor, "subregion": "fyrbodal"}),
            "2026-11-28T04:12:00.5Z",
        )],
    )
}

#[tokio::test]
async fn a_payload_is_persisted_and_read_back() {
    let app = spawn_app().await;
    let body = samsa_down("kommun-uddevalla", "f00d", "firing").to_string();
    let response = app.post_webhook(body.clone()).await;
    assert_eq!(response.status(), 200);
    let answer: Value = response.json().await.unwrap();
    assert_eq!(answer["duplicate"], false);
    assert_eq!(answer["alerts"], 1);
    let receipt_id = answer["receipt_id"].as_i64().unwrap();

    let receipts = app.state.storage.receipts().await.unwrap();
    assert_eq!(receipts.len(), 1);
    assert_eq!(receipts[0].receipt_id, receipt_id);
    assert_eq!(
        receipts[0].payload, body,
        "the raw payload is kept byte for byte"
    );
    assert_eq!(receipts[0].status, AlertStatus::Firing);
    assert_eq!(receipts[0].receiver, "samsa-relay");

    let alerts = app.alerts_when_processed().await;
    assert_eq!(alerts.len(), 1);
    assert_eq!(alerts[0].fingerprint, "f00d");
    assert_eq!(alerts[0].labels["actor"], "kommun-uddevalla");
    assert_eq!(
        alerts[0].annotations["summary"],
        "SAMSA login page unreachable"
    );
    assert_eq!(alerts[0].starts_at.to_string(), "2026-11-28T04:12:00.5Z");
    assert_eq!(alerts[0].ends_at, None);
    assert_eq!(alerts[0].generator_url, "http://prometheus.example/graph");
    assert_eq!(
        app.metric(r#"samsa_relay_alerts_received_total{status="firing"}"#)
            .await,
        1.0
    );
    app.stop().await;
}

#[tokio::test]
async fn a_resend_is_counted_as_duplicate_and_stored_once() {
    let app = spawn_app().await;
    let body = samsa_down("kommun-uddevalla", "f00d", "firing");
    let first: Value = app
        .post_webhook(body.to_string())
        .await
        .json()
        .await
        .unwrap();
    // An HA peer sends the same notification with its own external URL.
    let mut from_peer = body.clone();
    from_peer["externalURL"] = json!("http://alertmanager-2.example:9093");
    let second = app.post_webhook(from_peer.to_string()).await;
    assert_eq!(second.status(), 200);
    let second: Value = second.json().await.unwrap();
    assert_eq!(second["duplicate"], true);
    assert_eq!(second["receipt_id"], first["receipt_id"]);
    assert_eq!(app.state.storage.receipts().await.unwrap().len(), 1);
    assert_eq!(app.alerts_when_processed().await.len(), 1);
    assert_eq!(
        app.metric("samsa_relay_webhook_duplicates_total").await,
        1.0
    );
    assert_eq!(
        app.metric(r#"samsa_relay_alerts_received_total{status="firing"}"#)
            .await,
        1.0
    );
    app.stop().await;
}

#[tokio::test]
async fn concurrent_resends_store_exactly_one_receipt() {
    let app = spawn_app().await;
    let body = samsa_down("kommun-tanum", "beef", "firing").to_string();
    let mut tasks = Vec::new();
    for _ in 0..16 {
        let client = app.client.clone();
        let url = format!("{}/webhook/alertmanager", app.address);
        let body = body.clone();
        tasks.push(tokio::spawn(async move {
            let response = client
                .post(url)
                .bearer_auth(TOKEN)
                .body(body)
                .send()
                .await
                .unwrap();
            assert_eq!(response.status(), 200);
            response.json::<Value>().await.unwrap()["duplicate"]
                .as_bool()
                .unwrap()
        }));
    }
    let mut n_new = 0;
    for task in tasks {
        if !task.await.unwrap() {
            n_new += 1;
        }
    }
    assert_eq!(n_new, 1);
    assert_eq!(app.state.storage.receipts().await.unwrap().len(), 1);
    assert_eq!(
        app.metric("samsa_relay_webhook_duplicates_total").await,
        15.0
    );
    app.stop().await;
}

#[tokio::test]
async fn resolution_updates_the_alert_and_a_late_firing_does_not_undo_it() {
    let app = spawn_app().await;
    app.post_webhook(samsa_down("kommun-lysekil", "abc", "firing").to_string())
        .await;
    let resolved = app
        .post_webhook(samsa_down("kommun-lysekil", "abc", "resolved").to_string())
        .await;
    assert_eq!(resolved.status(), 200);
    let alerts = app.alerts_when_processed().await;
    assert_eq!(alerts.len(), 1);
    assert_eq!(alerts[0].status, AlertStatus::Resolved);
    assert_eq!(
        alerts[0].ends_at.unwrap().to_string(),
        "2026-11-28T06:00:00Z"
    );

    // A delayed copy of the firing notification with other annotations (so not a duplicate).
    let mut late = samsa_down("kommun-lysekil", "abc", "firing");
    late["alerts"][0]["annotations"]["summary"] = json!("late copy");
    assert_eq!(app.post_webhook(late.to_string()).await.status(), 200);
    let alerts = app.alerts_when_processed().await;
    assert_eq!(alerts[0].status, AlertStatus::Resolved);
    assert_eq!(app.state.storage.receipts().await.unwrap().len(), 3);
    app.stop().await;
}

/// What one group commit must do with a batch: the first copy of a notification is new,
/// a later copy in the same batch and a copy stored by an earlier batch are duplicates of
/// it, and the alerts of several webhooks apply in arrival order (a resolution in the
/// batch wins over the firing before it, and a late firing after it does not undo it).
#[tokio::test]
async fn one_group_commit_dedupes_within_and_across_batches_and_applies_alerts_in_order() {
    use samsa_relay::alertmanager::Notification;
    use samsa_relay::storage::NewReceipt;

    let app = spawn_app().await;
    let storage = &app.state.storage;
    let at =
        |second: i64| jiff::Timestamp::from_second(1_795_000_000 + second).expect("a valid time");
    let earlier = samsa_down("kommun-mark", "e1", "firing").to_string();
    let earlier_notification = Notification::parse(earlier.as_bytes()).unwrap();
    let stored = storage
        .store_notification(
            &earlier_notification,
            &earlier_notification.dedupe_key(),
            &earlier,
            at(0),
        )
        .await
        .unwrap();
    assert!(!stored.duplicate);

    let firing = samsa_down("kommun-tanum", "a1", "firing").to_string();
    let resolved = samsa_down("kommun-tanum", "a1", "resolved").to_string();
    let mut late = samsa_down("kommun-tanum", "a1", "firing");
    late["alerts"][0]["annotations"]["summary"] = json!("late copy");
    let late = late.to_string();
    let bodies = [&firing, &resolved, &firing, &earlier, &late];
    let notifications: Vec<Notification> = bodies
        .iter()
        .map(|body| Notification::parse(body.as_bytes()).unwrap())
        .collect();
    let keys: Vec<String> = notifications.iter().map(Notification::dedupe_key).collect();
    let batch: Vec<NewReceipt<'_>> = (0..bodies.len())
        .map(|index| NewReceipt {
            notification: &notifications[index],
            dedupe_key: &keys[index],
            raw_payload: bodies[index],
            received_at: at(index as i64 + 1),
        })
        .collect();
    let answers = storage.store_notifications(&batch).await.unwrap();
    let duplicates: Vec<bool> = answers.iter().map(|answer| answer.duplicate).collect();
    assert_eq!(duplicates, [false, false, true, true, false]);
    assert_eq!(answers[2].receipt_id, answers[0].receipt_id);
    assert_eq!(answers[3].receipt_id, stored.receipt_id);
    let ids: std::collections::BTreeSet<i64> =
        answers.iter().map(|answer| answer.receipt_id).collect();
    assert_eq!(ids.len(), 4, "{answers:?}");

    let receipts = storage.receipts().await.unwrap();
    assert_eq!(receipts.len(), 4);
    let alerts = app.alerts_when_processed().await;
    let a1 = alerts
        .iter()
        .find(|alert| alert.fingerprint == "a1")
        .unwrap();
    assert_eq!(a1.status, AlertStatus::Resolved);
    assert_eq!(a1.annotations["summary"], "SAMSA login page unreachable");
    assert_eq!(a1.first_receipt_id, answers[0].receipt_id);
    assert_eq!(a1.last_receipt_id, answers[4].receipt_id);
    app.stop().await;
}

#[tokio::test]
async fn missing_or_wrong_credentials_get_401_with_a_json_error() {
    let app = spawn_app().await;
    let url = format!("{}/webhook/alertmanager", app.address);
    let body = samsa_down("kommun-orust", "1", "firing").to_string();
    let attempts = [
        None,
        Some("Bearer wrong-token-0123456789".to_owned()),
        Some(format!("Bearer {TOKEN}x")),
        Some(format!("Token {TOKEN}")),
        Some("Basic dXNlcjpwYXNz".to_owned()),
    ];
    for authorization in attempts {
        let mut request = app.client.post(&url).body(body.clone());
        if let Some(value) = &authorization {
            request = request.header("authorization", value);
        }
        let response = request.send().await.unwrap();
        assert_eq!(response.status(), 401, "{authorization:?}");
        assert!(response.headers().contains_key("www-authenticate"));
        let error: Value = response.json().await.unwrap();
        assert_eq!(error["error"], "unauthorized");
        assert!(error["detail"].is_string());
    }
    assert!(app.state.storage.receipts().await.unwrap().is_empty());
    assert_eq!(
        app.metric(r#"samsa_relay_webhook_requests_total{outcome="unauthorized"}"#)
            .await,
        5.0
    );
    app.stop().await;
}

#[tokio::test]
async fn basic_auth_is_accepted_where_configured() {
    let app = spawn_app_with(
        "",
        "",
        "basic_username = \"alertmanager\"\nbasic_password = \"basic-secret-123\"",
    )
    .await;
    let url = format!("{}/webhook/alertmanager", app.address);
    let body = samsa_down("kommun-orust", "1", "firing").to_string();
    let good = app
        .client
        .post(&url)
        .basic_auth("alertmanager", Some("basic-secret-123"))
        .body(body.clone())
        .send()
        .await
        .unwrap();
    assert_eq!(good.status(), 200);
    let bad = app
        .client
        .post(&url)
        .basic_auth("alertmanager", Some("wrong"))
        .body(body)
        .send()
        .await
        .unwrap();
    assert_eq!(bad.status(), 401);
    app.stop().await;
}

#[tokio::test]
async fn bad_payloads_get_400_naming_what_and_where() {
    let app = spawn_app().await;
    let mut missing_fingerprint = samsa_down("kommun-orust", "1", "firing");
    missing_fingerprint["alerts"][0]
        .as_object_mut()
        .unwrap()
        .remove("fingerprint");
    let mut missing_group_key = samsa_down("kommun-orust", "1", "firing");
    missing_group_key
        .as_object_mut()
        .unwrap()
        .remove("groupKey");
    let mut wrong_version = samsa_down("kommun-orust", "1", "firing");
    wrong_version["version"] = json!("3");
    let mut bad_status = samsa_down("kommun-orust", "1", "firing");
    bad_status["alerts"][0]["status"] = json!("sleeping");

    let cases = [
        (
            "{\"version\": \"4\", ".to_owned(),
            "invalid JSON",
            "line 1 column",
        ),
        ("[]".to_owned(), "expected a JSON object", "the payload"),
        (
            missing_fingerprint.to_string(),
            "missing field `fingerprint`",
            "alerts[0]",
        ),
        (
            missing_group_key.to_string(),
            "missing field `groupKey`",
            "",
        ),
        (
            wrong_version.to_string(),
            "unsupported payload version",
            "version",
        ),
        (
            bad_status.to_string(),
            "unknown variant `sleeping`",
            "alerts[0].status",
        ),
    ];
    for (body, error_starts, detail_starts) in cases {
        let response = app.post_webhook(body.clone()).await;
        assert_eq!(response.status(), 400, "{body}");
        let error: Value = response.json().await.unwrap();
        let text = error["error"].as_str().unwrap();
        assert!(text.starts_with(error_starts), "{text:?} for {body}");
        assert!(
            error["detail"].as_str().unwrap().starts_with(detail_starts),
            "{error}"
        );
    }
    assert!(app.state.storage.receipts().await.unwrap().is_empty());
    assert_eq!(
        app.metric(r#"samsa_relay_webhook_requests_total{outcome="bad_request"}"#)
            .await,
        6.0
    );
    app.stop().await;
}

#[tokio::test]
async fn unknown_fields_are_accepted() {
    let app = spawn_app().await;
    let mut body = samsa_down("kommun-orust", "1", "firing");
    body["someFutureField"] = json!({"nested": [1, 2, 3]});
    body["alerts"][0]["silencedBy"] = json!([]);
    let response = app.post_webhook(body.to_string()).await;
    assert_eq!(response.status(), 200);
    assert_eq!(app.alerts_when_processed().await.len(), 1);
    app.stop().await;
}

#[tokio::test]
async fn bodies_over_the_limit_get_413() {
    let app = spawn_app_with("max_body_bytes = 4096", "", "").await;
    let big = many_alerts(40).to_string();
    assert!(big.len() > 4096);
    let response = app.post_webhook(big.clone()).await;
    assert_eq!(response.status(), 413);
    let error: Value = response.json().await.unwrap();
    assert_eq!(error["error"], "payload too large");

    // The same without a Content-Length: the limit holds while reading a chunked body.
    let response =
        common::post_chunked(&app.address, "/webhook/alertmanager", TOKEN, big.as_bytes()).await;
    assert!(response.starts_with("HTTP/1.1 413"), "{response}");
    assert!(app.state.storage.receipts().await.unwrap().is_empty());
    app.stop().await;
}

#[tokio::test]
async fn a_10000_alert_payload_is_accepted_and_every_alert_stored() {
    let app = spawn_app().await;
    let body = many_alerts(10_000).to_string();
    let response = app.post_webhook(body).await;
    assert_eq!(response.status(), 200);
    let answer: Value = response.json().await.unwrap();
    assert_eq!(answer["alerts"], 10_000);
    assert_eq!(app.alerts_when_processed().await.len(), 10_000);
    assert_eq!(
        app.metric(r#"samsa_relay_alerts_received_total{status="firing"}"#)
            .await,
        10_000.0
    );
    app.stop().await;
}

#[tokio::test]
async fn storage_that_cannot_be_written_gives_503_then_recovers() {
    let app = spawn_app_with("", "busy_timeout = \"200ms\"", "").await;
    // Another process holds the receipts file's write lock.
    let mut blocker = hold_write_lock(&samsa_relay::storage::sqlite_receipts_path(
        &app.folder.path().join("relay.db"),
    ))
    .await;

    let body = samsa_down("kommun-orust", "1", "firing").to_string();
    let response = app.post_webhook(body.clone()).await;
    assert_eq!(response.status(), 503);
    assert!(response.headers().contains_key("retry-after"));
    let error: Value = response.json().await.unwrap();
    assert_eq!(error["error"], "temporarily unavailable");
    assert_eq!(app.get("/readyz").await.status(), 503);
    assert_eq!(
        app.get("/healthz").await.status(),
        200,
        "the process itself is alive"
    );
    assert!(
        app.metric(r#"samsa_relay_storage_errors_total{operation="store_notification"}"#)
            .await
            >= 1.0
    );
    assert_eq!(app.metric("samsa_relay_storage_writable").await, 0.0);

    sqlx::query("ROLLBACK").execute(&mut blocker).await.unwrap();
    blocker.close().await.unwrap();
    // Alertmanager retries; now it lands.
    let response = app.post_webhook(body).await;
    assert_eq!(response.status(), 200);
    assert_eq!(response.json::<Value>().await.unwrap()["duplicate"], false);
    assert_eq!(app.get("/readyz").await.status(), 200);
    assert_eq!(app.state.storage.receipts().await.unwrap().len(), 1);
    app.stop().await;
}

/// A connection of another process's kind that holds `file`'s write lock until it rolls
/// back (as a backup tool or a stuck writer would).
async fn hold_write_lock(file: &std::path::Path) -> sqlx::SqliteConnection {
    let mut blocker = sqlx::SqliteConnection::connect(&format!("sqlite://{}", file.display()))
        .await
        .unwrap();
    sqlx::query("BEGIN EXCLUSIVE")
        .execute(&mut blocker)
        .await
        .unwrap();
    blocker
}

/// Webhooks have a file of their own: a writer stuck on the relay's database (where the
/// incident worker and the operators write) does not stop them from being stored, and
/// the worker takes them into account once it is free.
#[tokio::test]
async fn a_stuck_writer_on_the_database_does_not_stop_webhooks() {
    let app = spawn_app_with("", "busy_timeout = \"200ms\"", "").await;
    let mut blocker = hold_write_lock(&app.folder.path().join("relay.db")).await;

    for n in 0..3 {
        let response = app
            .post_webhook(samsa_down("kommun-orust", &format!("f{n}"), "firing").to_string())
            .await;
        assert_eq!(response.status(), 200, "webhook {n}");
    }
    assert_eq!(app.state.storage.receipts().await.unwrap().len(), 3);
    assert_eq!(
        app.get("/readyz").await.status(),
        503,
        "the database does not take writes"
    );

    sqlx::query("ROLLBACK").execute(&mut blocker).await.unwrap();
    blocker.close().await.unwrap();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    while app.state.storage.n_unprocessed_receipts().await.unwrap() > 0 {
        assert!(
            std::time::Instant::now() < deadline,
            "the incident worker did not catch up"
        );
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    assert_eq!(app.state.storage.alerts().await.unwrap().len(), 3);
    assert_eq!(app.get("/readyz").await.status(), 200);
    app.stop().await;
}

#[tokio::test]
async fn health_readiness_and_metrics_answer() {
    let app = spawn_app().await;
    assert_eq!(app.get("/healthz").await.status(), 200);
    assert_eq!(app.get("/readyz").await.status(), 200);
    app.post_webhook(samsa_down("kommun-orust", "1", "firing").to_string())
        .await;
    let metrics = app.metrics().await;
    for name in [
        "samsa_relay_webhook_requests_total{outcome=\"accepted\"} 1",
        "samsa_relay_ingest_duration_seconds_count 1",
        "samsa_relay_build_info{version=",
        "samsa_relay_http_requests_total{method=\"POST\",route=\"/webhook/alertmanager\",status=\"2xx\"} 1",
        "samsa_relay_storage_writable 1",
    ] {
        assert!(metrics.contains(name), "{name} missing from\n{metrics}");
    }
    app.stop().await;
}

#[tokio::test]
async fn stored_webhooks_survive_a_restart() {
    let app = spawn_app().await;
    app.post_webhook(samsa_down("kommun-orust", "1", "firing").to_string())
        .await;
    let config_text = common::base_config(app.folder.path(), "", "", "");
    let receipts_before = app.state.storage.receipts().await.unwrap();
    let alerts_before = app.alerts_when_processed().await;
    let folder = app.stop().await;

    let config = samsa_relay::config::Config::from_toml(&config_text, &Default::default()).unwrap();
    let again = common::start(config, folder).await;
    assert_eq!(
        again.state.storage.receipts().await.unwrap(),
        receipts_before
    );
    assert_eq!(again.alerts_when_processed().await, alerts_before);
    let resend = again
        .post_webhook(samsa_down("kommun-orust", "1", "firing").to_string())
        .await;
    assert_eq!(resend.json::<Value>().await.unwrap()["duplicate"], true);
    again.stop().await;
}

/// A database written before migration 0006 (when a receipt's own `processed_at` marked
/// it) keeps its backlog exactly: processed receipts stay processed, the rest is still
/// waiting, in order.
#[tokio::test]
async fn a_database_from_before_receipts_processed_keeps_its_backlog() {
    use sha2::{Digest as _, Sha384};

    let folder = tempfile::tempdir().expect("temporary folder");
    let path = folder.path().join("relay.db");
    let options = sqlx::sqlite::SqliteConnectOptions::new()
        .filename(&path)
        .create_if_missing(true);
    let mut connection = sqlx::SqliteConnection::connect_with(&options)
        .await
        .unwrap();
    let earlier: [(i64, &str, &str); 5] = [
        (
            1,
            "ingest",
            include_str!("../../migrations/sqlite/0001_ingest.sql"),
        ),
        (
            2,
            "incidents",
            include_str!("../../migrations/sqlite/0002_incidents.sql"),
        ),
        (
            3,
            "publishing",
            include_str!("../../migrations/sqlite/0003_publishing.sql"),
        ),
        (
            4,
            "operators",
            include_str!("../../migrations/sqlite/0004_operators.sql"),
        ),
        (
            5,
            "followup",
            include_str!("../../migrations/sqlite/0005_followup.sql"),
        ),
    ];
    sqlx::raw_sql(
        "CREATE TABLE _sqlx_migrations (version BIGINT PRIMARY KEY, description TEXT NOT NULL, \
         installed_on TIMESTAMP NOT NULL DEFAULT CURRENT_TIMESTAMP, success BOOLEAN NOT NULL, \
         checksum BLOB NOT NULL, execution_time BIGINT NOT NULL)",
    )
    .execute(&mut connection)
    .await
    .unwrap();
    for (version, description, sql) in earlier {
        sqlx::raw_sql(sql).execute(&mut connection).await.unwrap();
        sqlx::query(
            "INSERT INTO _sqlx_migrations (version, description, success, checksum, execution_time) \
             VALUES (?, ?, TRUE, ?, 0)",
        )
        .bind(version)
        .bind(description)
        .bind(Sha384::digest(sql.as_bytes()).to_vec())
        .execute(&mut connection)
        .await
        .unwrap();
    }
    for (id, processed_at) in [
        (1, Some("2026-11-28T04:12:01.000000000Z")),
        (2, Some("2026-11-28T04:12:02.000000000Z")),
        (3, None),
        (4, None),
    ] {
        let body = samsa_down("kommun-mark", &format!("f{id}"), "firing").to_string();
        sqlx::query(
            "INSERT INTO webhook_receipts (id, dedupe_key, received_at, group_key, status, receiver, \
             external_url, n_alerts, truncated_alerts, payload, processed_at) \
             VALUES (?, ?, '2026-11-28T04:12:00.000000000Z', 'g', 'firing', 'samsa-relay', 'http://am', 1, 0, ?, ?)",
        )
        .bind(id)
        .bind(format!("key-{id}"))
        .bind(body)
        .bind(processed_at)
        .execute(&mut connection)
        .await
        .unwrap();
    }
    connection.close().await.unwrap();

    let config = common::config_with_tables(folder.path(), "");
    let app = samsa_relay::app::App::build(config)
        .await
        .expect("the app migrates and starts");
    assert_eq!(
        app.state().storage.n_unprocessed_receipts().await.unwrap(),
        2
    );
    let outcome = app.worker().process_next_receipt().await.unwrap();
    assert!(
        matches!(
            outcome,
            samsa_relay::incident_worker::StepOutcome::Processed { receipt_id: 3, .. }
        ),
        "{outcome:?}"
    );
    assert_eq!(
        app.state().storage.n_unprocessed_receipts().await.unwrap(),
        1
    );
}

/// An app built over a database in `folder` whose backlog limit is `max_backlog`, not run:
/// no server and no incident worker, so that receipts wait until the test processes them.
async fn built_app(folder: &std::path::Path, max_backlog: u64) -> samsa_relay::app::App {
    let text = common::base_config(folder, "", "", &format!("max_backlog = {max_backlog}"));
    let config = samsa_relay::config::Config::from_toml(&text, &Default::default())
        .expect("test config is valid");
    samsa_relay::app::App::build(config)
        .await
        .expect("app builds")
}

/// Posts a webhook through the app's router (the same handlers, middleware and metrics
/// as the server): the status, the `Retry-After` header if any, and the JSON body.
async fn post_to(app: &samsa_relay::app::App, body: &Value) -> (u16, Option<String>, Value) {
    use tower::ServiceExt as _;

    let request = axum::http::Request::post("/webhook/alertmanager")
        .header("authorization", format!("Bearer {TOKEN}"))
        .header("content-type", "application/json")
        .body(axum::body::Body::from(body.to_string()))
        .expect("a request");
    let response = samsa_relay::http::router(app.state().clone())
        .oneshot(request)
        .await
        .expect("the router answers");
    let status = response.status().as_u16();
    let retry_after = response
        .headers()
        .get("retry-after")
        .map(|value| value.to_str().expect("ASCII").to_owned());
    let bytes = axum::body::to_bytes(response.into_body(), usize::MAX)
        .await
        .expect("the body");
    (
        status,
        retry_after,
        serde_json::from_slice(&bytes).expect("a JSON body"),
    )
}

/// One sample of the app's metrics, e.g. `samsa_relay_ingest_backlog`.
fn sample(app: &samsa_relay::app::App, series: &str) -> f64 {
    let text = app.state().metrics.render();
    text.lines()
        .find_map(|line| {
            let (name, value) = line.rsplit_once(' ')?;
            (name == series).then(|| value.parse::<f64>().expect("numeric sample"))
        })
        .unwrap_or_else(|| panic!("series {series} not in the metrics:\n{text}"))
}

const BACKLOG_FULL: &str = r#"samsa_relay_webhook_requests_total{outcome="backlog_full"}"#;

#[tokio::test]
async fn a_full_backlog_answers_503_with_retry_after_until_the_worker_catches_up() {
    use samsa_relay::incident_worker::StepOutcome;

    let folder = tempfile::tempdir().expect("temporary folder");
    let app = built_app(folder.path(), 3).await;
    assert_eq!(sample(&app, BACKLOG_FULL), 0.0, "shown before the first");
    let webhook = |n: usize| samsa_down("kommun-lysekil", &format!("f{n}"), "firing");

    let mut accepted = Vec::new();
    for n in 0..3 {
        let (status, _, answer) = post_to(&app, &webhook(n)).await;
        assert_eq!(status, 200, "{answer}");
        assert_eq!(answer["duplicate"], false);
        accepted.push(answer["receipt_id"].as_i64().unwrap());
    }
    assert_eq!(sample(&app, "samsa_relay_ingest_backlog"), 3.0);

    let (status, retry_after, answer) = post_to(&app, &webhook(3)).await;
    assert_eq!(status, 503, "{answer}");
    let retry_after: u64 = retry_after
        .expect("a Retry-After header")
        .parse()
        .expect("Retry-After in whole seconds");
    assert!((1..=60).contains(&retry_after), "{retry_after}");
    assert_eq!(answer["error"], "temporarily unavailable");
    let detail = answer["detail"].as_str().unwrap();
    assert!(
        detail.contains("backlog") && detail.contains("retry"),
        "{detail}"
    );
    // A resend of a stored webhook cannot be told from a new one before storing.
    let (status, _, _) = post_to(&app, &webhook(0)).await;
    assert_eq!(status, 503);
    assert_eq!(sample(&app, BACKLOG_FULL), 2.0);
    assert_eq!(
        sample(
            &app,
            r#"samsa_relay_webhook_requests_total{outcome="accepted"}"#
        ),
        3.0
    );
    let storage = &app.state().storage;
    assert_eq!(
        storage.receipts().await.unwrap().len(),
        3,
        "nothing refused is stored"
    );

    // The worker catches up; the refused webhook's retry is taken.
    let outcomes = app.worker().process_receipts(64).await.unwrap();
    let processed: Vec<i64> = outcomes
        .iter()
        .map(|outcome| match outcome {
            StepOutcome::Processed { receipt_id, .. } => *receipt_id,
            StepOutcome::Idle => panic!("{outcomes:?}"),
        })
        .collect();
    assert_eq!(processed, accepted);
    assert_eq!(sample(&app, "samsa_relay_ingest_backlog"), 0.0);
    let (status, _, answer) = post_to(&app, &webhook(3)).await;
    assert_eq!(status, 200, "{answer}");
    assert_eq!(answer["duplicate"], false);
    let retried = answer["receipt_id"].as_i64().unwrap();
    let (status, _, answer) = post_to(&app, &webhook(0)).await;
    assert_eq!((status, &answer["duplicate"]), (200, &json!(true)));
    assert_eq!(app.worker().backlog.len(), 1);

    // Every receipt answered 200 is processed, the retried one last.
    let outcomes = app.worker().process_receipts(64).await.unwrap();
    assert!(
        matches!(outcomes[..], [StepOutcome::Processed { receipt_id, .. }] if receipt_id == retried),
        "{outcomes:?}"
    );
    assert_eq!(storage.n_unprocessed_receipts().await.unwrap(), 0);
    assert_eq!(app.worker().backlog.len(), 0);
    assert_eq!(storage.receipts().await.unwrap().len(), 4);
    storage.close().await;
}

#[tokio::test]
async fn a_relay_starts_with_the_backlog_left_in_its_database() {
    let folder = tempfile::tempdir().expect("temporary folder");
    let webhook = |n: usize| samsa_down("kommun-sotenas", &format!("f{n}"), "firing");
    let first = built_app(folder.path(), 3).await;
    for n in 0..3 {
        assert_eq!(post_to(&first, &webhook(n)).await.0, 200);
    }
    first.worker().process_next_receipt().await.unwrap();
    first.state().storage.close().await;
    drop(first);

    // Two receipts still wait: the new process counts them before any webhook arrives.
    let again = built_app(folder.path(), 3).await;
    assert_eq!(again.worker().backlog.len(), 2);
    assert_eq!(sample(&again, "samsa_relay_ingest_backlog"), 2.0);
    assert_eq!(post_to(&again, &webhook(3)).await.0, 200);
    let (status, retry_after, _) = post_to(&again, &webhook(4)).await;
    assert_eq!(status, 503);
    assert!(retry_after.is_some());
    again.state().storage.close().await;
}

/// Two replicas over one database (two apps on one file stand for them): the one that
/// stored the receipts learns that the other processed them from the database.
#[tokio::test]
async fn a_replica_that_does_not_correlate_reads_the_backlog_from_the_database() {
    let folder = tempfile::tempdir().expect("temporary folder");
    let webhook = |n: usize| samsa_down("kommun-strömstad", &format!("f{n}"), "firing");
    let correlating = built_app(folder.path(), 2).await;
    let ingesting = built_app(folder.path(), 2).await;
    for n in 0..2 {
        assert_eq!(post_to(&ingesting, &webhook(n)).await.0, 200);
    }
    assert_eq!(
        correlating
            .worker()
            .process_receipts(64)
            .await
            .unwrap()
            .len(),
        2
    );
    assert!(!ingesting.worker().lease.is_held());
    assert_eq!(
        post_to(&ingesting, &webhook(2)).await.0,
        503,
        "not read yet"
    );

    ingesting.worker().refresh_backlog().await;
    assert_eq!(ingesting.worker().backlog.len(), 0);
    assert_eq!(post_to(&ingesting, &webhook(2)).await.0, 200);
    for app in [correlating, ingesting] {
        app.state().storage.close().await;
    }
}

/// A receipts file lost (or restored from an older backup than the database): the relay
/// starts, and new webhooks get ids above every receipt the database has processed, so
/// that the incident worker takes them into account instead of counting them as done.
#[tokio::test]
async fn a_lost_receipts_file_gives_new_webhooks_ids_above_the_processed_ones() {
    let folder = tempfile::tempdir().expect("temporary folder");
    let webhook = |n: usize| samsa_down("kommun-tjorn", &format!("f{n}"), "firing");
    let first = built_app(folder.path(), 100).await;
    for n in 0..3 {
        assert_eq!(post_to(&first, &webhook(n)).await.0, 200);
    }
    while first
        .state()
        .storage
        .n_unprocessed_receipts()
        .await
        .unwrap()
        > 0
    {
        first.worker().process_next_receipt().await.unwrap();
    }
    first.state().storage.close().await;
    drop(first);
    let receipts = samsa_relay::storage::sqlite_receipts_path(&folder.path().join("relay.db"));
    for suffix in ["", "-wal", "-shm"] {
        let mut file = receipts.clone().into_os_string();
        file.push(suffix);
        let _ = std::fs::remove_file(file);
    }

    let again = built_app(folder.path(), 100).await;
    let (status, _, body) = post_to(&again, &webhook(3)).await;
    assert_eq!(status, 200);
    assert_eq!(body["duplicate"], false);
    let receipts = again.state().storage.receipts().await.unwrap();
    assert_eq!(receipts.len(), 1);
    assert!(
        receipts[0].receipt_id > 3,
        "id {} reuses one the worker processed",
        receipts[0].receipt_id
    );
    assert_eq!(
        again
            .state()
            .storage
            .n_unprocessed_receipts()
            .await
            .unwrap(),
        1
    );
    let outcome = again.worker().process_next_receipt().await.unwrap();
    assert!(
        matches!(
            outcome,
            samsa_relay::incident_worker::StepOutcome::Processed { receipt_id, .. }
                if receipt_id == receipts[0].receipt_id
        ),
        "{outcome:?}"
    );
    // The alerts read from the receipts are those the file now holds; the incident,
    // kept in the database, still has the three from before the loss and the new one.
    assert_eq!(again.state().storage.alerts().await.unwrap().len(), 1);
    let incidents = again.state().storage.incidents().await.unwrap();
    assert_eq!(incidents.len(), 1);
    assert_eq!(
        incidents[0].incident.alerts.len(),
        4,
        "three before the loss and the new one"
    );
    again.state().storage.close().await;
}
