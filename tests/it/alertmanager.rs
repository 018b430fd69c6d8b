//! The relay behind a real Alertmanager (the Debian `prometheus-alertmanager` binary that
//! `scripts/test-all.sh` installs): an alert posted to Alertmanager's API reaches the
//! relay through a webhook receiver with bearer authentication, firing and then resolved.

use crate::common;

use std::fs::File;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use common::{PROXY_VARIABLES, TOKEN, debian_binary, eventually, free_port, spawn_app};
use jiff::Timestamp;
use samsa_relay::alertmanager::AlertStatus;
use serde_json::{Value, json};

/// The receiver name Alertmanager puts in every webhook it sends to the relay.
const RECEIVER: &str = "samsa-relay";

/// How long each step (readiness, a notification to arrive) may take.
const STEP_DEADLINE: Duration = Duration::from_secs(30);

/// A running Alertmanager child. Dropping it kills the process (by its PID) and, when the
/// test is failing, prints what Alertmanager logged.
pub(crate) struct Alertmanager {
    child: Child,
    pub(crate) address: String,
    log_path: PathBuf,
    _folder: tempfile::TempDir,
}

impl Alertmanager {
    /// Writes the config and starts Alertmanager with its own storage, HA gossip off.
    pub(crate) fn start(relay_address: &str) -> Alertmanager {
        let binary = debian_binary("prometheus-alertmanager", "prometheus-alertmanager");
        let folder = tempfile::tempdir().expect("temporary folder");
        let token_path = folder.path().join("relay-token");
        std::fs::write(&token_path, format!("{TOKEN}\n")).expect("write the token file");
        let config_path = folder.path().join("alertmanager.yml");
        std::fs::write(&config_path, config(relay_address, &token_path))
            .expect("write the Alertmanager config");
        let storage_path = folder.path().join("data");
        std::fs::create_dir(&storage_path).expect("storage folder");
        let log_path = folder.path().join("alertmanager.log");
        let log = File::create(&log_path).expect("log file");
        let port = free_port();
        let mut command = Command::new(&binary);
        command
            .arg(format!("--config.file={}", config_path.display()))
            .arg(format!("--storage.path={}", storage_path.display()))
            .arg(format!("--web.listen-address=127.0.0.1:{port}"))
            .arg("--cluster.listen-address=")
            .arg("--log.level=debug")
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("log file handle"))
            .stderr(log);
        for variable in PROXY_VARIABLES {
            command.env_remove(variable);
        }
        let child = command
            .spawn()
            .unwrap_or_else(|error| panic!("cannot start {}: {error}", binary.display()));
        Alertmanager {
            child,
            address: format!("http://127.0.0.1:{port}"),
            log_path,
            _folder: folder,
        }
    }

    fn log(&self) -> String {
        std::fs::read_to_string(&self.log_path).unwrap_or_else(|error| format!("(no log: {error})"))
    }

    /// Polls `GET /-/ready` until it answers 200; fails at once if the process exits.
    pub(crate) async fn wait_until_ready(&mut self, client: &reqwest::Client) {
        let url = format!("{}/-/ready", self.address);
        let started = tokio::time::Instant::now();
        loop {
            if let Some(status) = self
                .child
                .try_wait()
                .expect("poll the Alertmanager process")
            {
                panic!("Alertmanager exited before it was ready ({status})");
            }
            if let Ok(response) = client.get(&url).send().await
                && response.status().is_success()
            {
                return;
            }
            if started.elapsed() > STEP_DEADLINE {
                panic!("Alertmanager not ready at {url} after {STEP_DEADLINE:?}");
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Posts alerts to the API v2, as Prometheus does.
    pub(crate) async fn post_alerts(&self, client: &reqwest::Client, alerts: Value) {
        let response = client
            .post(format!("{}/api/v2/alerts", self.address))
            .json(&alerts)
            .send()
            .await
            .expect("POST /api/v2/alerts");
        let status = response.status();
        let body = response.text().await.unwrap_or_default();
        assert!(
            status.is_success(),
            "Alertmanager refused the alerts: {status} {body}"
        );
    }
}

impl Drop for Alertmanager {
    fn drop(&mut self) {
        // Child::kill sends SIGKILL to this child's PID only.
        let _ = self.child.kill();
        let _ = self.child.wait();
        if std::thread::panicking() {
            eprintln!(
                "---- Alertmanager log ({}) ----\n{}\n---- end of Alertmanager log ----",
                self.log_path.display(),
                self.log()
            );
        }
    }
}

/// Routes `service="samsa"` to the relay; everything else to a receiver that drops it.
fn config(relay_address: &str, token_path: &Path) -> String {
    format!(
        r#"
route:
  receiver: discard
  group_by: ["alertname"]
  group_wait: 1s
  group_interval: 1s
  repeat_interval: 1h
  routes:
    - matchers:
        - service="samsa"
      receiver: {RECEIVER}
receivers:
  - name: discard
  - name: {RECEIVER}
    webhook_configs:
      - url: "{relay_address}/webhook/alertmanager"
        send_resolved: true
        max_alerts: 0
        http_config:
          authorization:
            type: Bearer
            credentials_file: "{token}"
"#,
        token = token_path.display()
    )
}

fn labels() -> Value {
    json!({
        "alertname": "SamsaLoginDown",
        "service": "samsa",
        "actor": "kommun-boras",
        "subregion": "sjuharad",
    })
}

fn api_alert(starts_at: Timestamp, ends_at: Option<Timestamp>) -> Value {
    let mut alert = json!({
        "labels": labels(),
        "annotations": {
            "summary": "SAMSA login page unreachable",
            "description": "The SAMSA login page has not answered for 5 minutes.",
        },
        "startsAt": starts_at.to_string(),
        "generatorURL": "http://prometheus.example/graph",
    });
    if let Some(ends_at) = ends_at {
        alert["endsAt"] = json!(ends_at.to_string());
    }
    json!([alert])
}

#[tokio::test]
async fn alerts_from_a_real_alertmanager_are_stored_firing_then_resolved() {
    let app = spawn_app().await;
    let client = reqwest::Client::builder()
        .no_proxy()
        .timeout(Duration::from_secs(10))
        .build()
        .expect("client");
    let mut alertmanager = Alertmanager::start(&app.address);
    alertmanager.wait_until_ready(&client).await;

    // Millisecond precision, as Prometheus sends.
    let starts_at = Timestamp::now()
        .round(jiff::Unit::Millisecond)
        .expect("round the start time");
    alertmanager
        .post_alerts(&client, api_alert(starts_at, None))
        .await;

    let storage = &app.state.storage;
    let firing = eventually("the firing alert to be stored", STEP_DEADLINE, || async {
        let alerts = storage.alerts().await.expect("read alerts");
        alerts
            .into_iter()
            .find(|alert| alert.labels.get("actor").map(String::as_str) == Some("kommun-boras"))
    })
    .await;
    assert_eq!(firing.status, AlertStatus::Firing);
    assert_eq!(firing.starts_at, starts_at);
    let expected_labels: std::collections::BTreeMap<String, String> =
        serde_json::from_value(labels()).unwrap();
    assert_eq!(firing.labels, expected_labels);
    assert_eq!(
        firing.annotations["summary"],
        "SAMSA login page unreachable"
    );
    assert_eq!(firing.generator_url, "http://prometheus.example/graph");

    let receipts = storage.receipts().await.expect("read receipts");
    let receipt = receipts
        .iter()
        .find(|receipt| receipt.status == AlertStatus::Firing)
        .expect("a firing receipt");
    assert_eq!(receipt.receiver, RECEIVER);
    assert_eq!(receipt.n_alerts, 1);
    let payload: Value = serde_json::from_str(&receipt.payload).expect("stored payload is JSON");
    assert_eq!(payload["version"], "4");
    assert_eq!(payload["receiver"], RECEIVER);
    assert_eq!(payload["status"], "firing");
    assert_eq!(payload["commonLabels"]["service"], "samsa");
    assert_eq!(payload["alerts"][0]["labels"]["subregion"], "sjuharad");

    // Resolve it, as Prometheus does: the same alert with an end time that has passed.
    let ends_at = Timestamp::now()
        .round(jiff::Unit::Millisecond)
        .expect("round the end time");
    alertmanager
        .post_alerts(&client, api_alert(starts_at, Some(ends_at)))
        .await;

    let resolved = eventually("the alert to be stored resolved", STEP_DEADLINE, || async {
        let alerts = storage.alerts().await.expect("read alerts");
        alerts
            .into_iter()
            .find(|alert| alert.status == AlertStatus::Resolved)
    })
    .await;
    assert_eq!(resolved.fingerprint, firing.fingerprint);
    assert_eq!(resolved.starts_at, starts_at);
    assert_eq!(resolved.ends_at, Some(ends_at));
    assert_eq!(
        storage.alerts().await.expect("read alerts").len(),
        1,
        "the resolution updates the one stored alert"
    );
    let receipts = eventually("a resolved receipt", STEP_DEADLINE, || async {
        let receipts = storage.receipts().await.expect("read receipts");
        receipts
            .iter()
            .any(|receipt| receipt.status == AlertStatus::Resolved)
            .then_some(receipts)
    })
    .await;
    let resolved_receipt = receipts
        .iter()
        .find(|receipt| receipt.status == AlertStatus::Resolved)
        .expect("a resolved receipt");
    assert_eq!(resolved_receipt.receiver, RECEIVER);
    let payload: Value =
        serde_json::from_str(&resolved_receipt.payload).expect("stored payload is JSON");
    assert_eq!(payload["receiver"], RECEIVER);
    assert_eq!(payload["alerts"][0]["status"], "resolved");

    assert!(
        app.metric(r#"samsa_relay_webhook_requests_total{outcome="accepted"}"#)
            .await
            >= 2.0
    );
    assert_eq!(
        app.metric(r#"samsa_relay_webhook_requests_total{outcome="unauthorized"}"#)
            .await,
        0.0
    );
    assert_eq!(
        app.metric(r#"samsa_relay_webhook_requests_total{outcome="bad_request"}"#)
            .await,
        0.0
    );

    drop(alertmanager);
    app.stop().await;
}
