//! Test harness: start the real app on port 0 with a throwaway database, and build
//! Alertmanager payloads. `smtp_sink` runs the email tests' SMTP server.
#![allow(dead_code)]

pub mod smtp_sink;

use std::collections::BTreeMap;
use std::time::Duration;

use samsa_relay::app::App;
use samsa_relay::config::Config;
use samsa_relay::http::AppState;
use serde_json::{Value, json};
use tokio::sync::oneshot;

pub const TOKEN: &str = "test-webhook-token-0123456789";
pub const LINK_SECRET: &str = "test-link-secret-0123456789-0123456789";

pub struct TestApp {
    pub address: String,
    pub state: AppState,
    pub folder: tempfile::TempDir,
    pub client: reqwest::Client,
    shutdown: Option<oneshot::Sender<()>>,
    task: Option<tokio::task::JoinHandle<anyhow::Result<()>>>,
}

/// The base TOML every test starts from; `extra` is appended (later keys of a table must
/// not repeat earlier ones, so tests add whole tables or use [`spawn_app_with`]).
pub fn base_config(
    folder: &std::path::Path,
    server_extra: &str,
    database_extra: &str,
    webhook_extra: &str,
) -> String {
    format!(
        r#"
[server]
listen = "127.0.0.1:0"
public_url = "http://127.0.0.1:9095"
shutdown_grace = "5s"
{server_extra}

[database]
url = "sqlite://{database}"
{database_extra}

[webhook]
token = "{TOKEN}"
{webhook_extra}

[smtp]
url = "file://{mail}"

[links]
secret = "{LINK_SECRET}"
"#,
        database = folder.join("relay.db").display(),
        mail = folder.join("mail").display(),
    )
}

pub async fn spawn_app() -> TestApp {
    spawn_app_with("", "", "").await
}

/// Starts the app with whole TOML tables appended to the base config (tables the base does
/// not have, such as `[incidents]`).
pub async fn spawn_app_with_tables(tables: &str) -> TestApp {
    let folder = tempfile::tempdir().expect("temporary folder");
    let text = format!("{}\n{tables}", base_config(folder.path(), "", "", ""));
    let config = Config::from_toml(&text, &BTreeMap::new()).expect("test config is valid");
    start(config, folder).await
}

pub async fn spawn_app_with(
    server_extra: &str,
    database_extra: &str,
    webhook_extra: &str,
) -> TestApp {
    let folder = tempfile::tempdir().expect("temporary folder");
    let text = base_config(folder.path(), server_extra, database_extra, webhook_extra);
    let config = Config::from_toml(&text, &BTreeMap::new()).expect("test config is valid");
    start(config, folder).await
}

pub async fn start(config: Config, folder: tempfile::TempDir) -> TestApp {
    let app = App::build(config).await.expect("app builds");
    let address = format!("http://{}", app.local_addr());
    let state = app.state().clone();
    let (sender, receiver) = oneshot::channel::<()>();
    let task = tokio::spawn(app.run(async move {
        let _ = receiver.await;
    }));
    TestApp {
        address,
        state,
        folder,
        client: reqwest::Client::builder()
            .timeout(Duration::from_secs(30))
            .no_proxy()
            .build()
            .expect("client"),
        shutdown: Some(sender),
        task: Some(task),
    }
}

impl TestApp {
    pub async fn post_webhook(&self, body: impl Into<reqwest::Body>) -> reqwest::Response {
        self.client
            .post(format!("{}/webhook/alertmanager", self.address))
            .bearer_auth(TOKEN)
            .header("content-type", "application/json")
            .body(body)
            .send()
            .await
            .expect("request sent")
    }

    /// The `alerts` table once the incident worker has taken every stored receipt into
    /// account: it writes each receipt's alerts there as it processes it.
    pub async fn alerts_when_processed(&self) -> Vec<samsa_relay::storage::AlertRecord> {
        self.state.incident_wake.notify_one();
        eventually(
            "every receipt processed",
            Duration::from_secs(30),
            || async {
                let backlog = self
                    .state
                    .storage
                    .n_unprocessed_receipts()
                    .await
                    .expect("backlog");
                (backlog == 0).then_some(())
            },
        )
        .await;
        self.state.storage.alerts().await.expect("alerts")
    }

    pub async fn get(&self, path: &str) -> reqwest::Response {
        self.client
            .get(format!("{}{path}", self.address))
            .send()
            .await
            .expect("request sent")
    }

    pub async fn metrics(&self) -> String {
        self.get("/metrics")
            .await
            .text()
            .await
            .expect("metrics body")
    }

    /// The value of one sample line in /metrics, e.g. `samsa_relay_webhook_duplicates_total`
    /// or `samsa_relay_webhook_requests_total{outcome="accepted"}`.
    pub async fn metric(&self, series: &str) -> f64 {
        let text = self.metrics().await;
        text.lines()
            .find_map(|line| {
                let (name, value) = line.rsplit_once(' ')?;
                (name == series).then(|| value.parse::<f64>().expect("numeric sample"))
            })
            .unwrap_or_else(|| panic!("series {series} not in /metrics:\n{text}"))
    }

    /// Stops the app gracefully and hands back its folder (database, mail) for a restart.
    pub async fn stop(mut self) -> tempfile::TempDir {
        if let Some(sender) = self.shutdown.take() {
            let _ = sender.send(());
        }
        if let Some(task) = self.task.take() {
            task.await.expect("app task").expect("app stopped cleanly");
        }
        self.folder
    }
}

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

/// Polls `check` until it returns Some or the deadline passes.
pub async fn eventually<T, F, Fut>(what: &str, deadline: Duration, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let start = tokio::time::Instant::now();
    loop {
        if let Some(value) = check().await {
            return value;
        }
        if start.elapsed() > deadline {
            panic!("timed out after {deadline:?} waiting for {what}");
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Sends a POST with a chunked body (no Content-Length) over a plain TCP connection and
/// returns the whole response as text.
pub async fn post_chunked(address: &str, path: &str, token: &str, body: &[u8]) -> String {
    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
    let host = address.trim_start_matches("http://");
    let mut stream = tokio::net::TcpStream::connect(host).await.expect("connect");
    let head = format!(
        "POST {path} HTTP/1.1\r\nHost: {host}\r\nAuthorization: Bearer {token}\r\n\
         Content-Type: application/json\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n"
    );
    stream.write_all(head.as_bytes()).await.expect("write head");
    for chunk in body.chunks(1000) {
        let frame = format!("{:x}\r\n", chunk.len());
        // The server may answer and close before the whole body is sent.
        if stream.write_all(frame.as_bytes()).await.is_err()
            || stream.write_all(chunk).await.is_err()
            || stream.write_all(b"\r\n").await.is_err()
        {
            break;
        }
    }
    let _ = stream.write_all(b"0\r\n\r\n").await;
    let mut response = Vec::new();
    let _ = stream.read_to_end(&mut response).await;
    String::from_utf8_lossy(&response).into_owned()
}

/// The config `spawn_app_with_tables(tables)` would build, over the database in `folder`:
/// for a second view of the same database (say, a channel the running app has no worker
/// for, driven by the test itself).
pub fn config_with_tables(folder: &std::path::Path, tables: &str) -> Config {
    let text = format!("{}\n{tables}", base_config(folder, "", "", ""));
    Config::from_toml(&text, &BTreeMap::new()).expect("test config is valid")
}

/// Waits for the pending draft of `kind` of an incident; returns its id, latest version
/// and the level that version was rendered for.
pub async fn pending_draft(
    app: &TestApp,
    incident_id: i64,
    kind: samsa_relay::notice::NoticeKind,
) -> (i64, i64, samsa_relay::classify::Level) {
    eventually(
        &format!(
            "a pending {} draft of incident {incident_id}",
            kind.as_str()
        ),
        Duration::from_secs(20),
        || async {
            let drafts = app.state.storage.drafts(incident_id).await.ok()?;
            let draft = drafts
                .into_iter()
                .find(|draft| draft.state == "pending" && draft.kind == kind)?;
            let version = draft.versions.last()?;
            let input: samsa_relay::notice::NoticeInput =
                serde_json::from_value(version.input.clone()).expect("stored notice input");
            Some((draft.draft_id, version.version, input.classification.level))
        },
    )
    .await
}

/// The publish request an operator would send for a draft at the level it was rendered
/// for, with the decision levels 2 and 3 require.
pub fn publish_request(
    draft_id: i64,
    draft_version: i64,
    level: samsa_relay::classify::Level,
    channels: &[&str],
) -> samsa_relay::publishing::PublishRequest {
    use samsa_relay::classify::Level;
    use samsa_relay::publishing::{Decision, DecisionRole, PublishRequest};
    let decision = match level {
        Level::One => None,
        Level::Two => Some(Decision {
            decided_by: "Test Testsson".to_owned(),
            role: DecisionRole::Subregional,
        }),
        Level::Three => Some(Decision {
            decided_by: "Test Testsson".to_owned(),
            role: DecisionRole::CouncilChair,
        }),
    };
    PublishRequest {
        draft_id,
        draft_version,
        level,
        channels: channels.iter().map(|name| (*name).to_owned()).collect(),
        decision,
        operator: "operatör@example.org".to_owned(),
    }
}

/// Waits for the pending draft of `kind` and publishes it through the app on `channels`.
pub async fn publish_pending(
    app: &TestApp,
    incident_id: i64,
    kind: samsa_relay::notice::NoticeKind,
    channels: &[&str],
) -> samsa_relay::publishing::Publication {
    let (draft_id, version, level) = pending_draft(app, incident_id, kind).await;
    app.state
        .publisher
        .publish(&publish_request(draft_id, version, level, channels))
        .await
        .expect("the draft publishes")
}

/// The outbox rows of one channel, oldest first.
pub async fn outbox_rows(app: &TestApp, channel: &str) -> Vec<samsa_relay::storage::OutboxRecord> {
    app.state
        .storage
        .outbox(None)
        .await
        .expect("outbox readable")
        .into_iter()
        .filter(|row| row.channel == channel)
        .collect()
}

/// The base config with its `[smtp]` table replaced by `smtp_table` (a whole `[smtp]`
/// table) and `tables` appended, for tests that send mail.
pub fn config_with_smtp(folder: &std::path::Path, smtp_table: &str, tables: &str) -> Config {
    let base = base_config(folder, "", "", "");
    let file_smtp = format!(
        "[smtp]\nurl = \"file://{}\"\n",
        folder.join("mail").display()
    );
    assert!(
        base.contains(&file_smtp),
        "base_config's [smtp] table is no longer what config_with_smtp replaces"
    );
    let text = format!("{}\n{tables}", base.replace(&file_smtp, smtp_table));
    Config::from_toml(&text, &BTreeMap::new()).expect("test config is valid")
}

/// Starts the app (server and every worker) with the given `[smtp]` table and tables.
pub async fn spawn_app_with_smtp(smtp_table: &str, tables: &str) -> TestApp {
    let folder = tempfile::tempdir().expect("temporary folder");
    let config = config_with_smtp(folder.path(), smtp_table, tables);
    start(config, folder).await
}

/// Builds the app without running it: no server, no incident or delivery worker. The test
/// drives each step itself (ingest, `worker().process_next_receipt()`, its own
/// `DeliveryWorker`).
pub async fn build_app_with_smtp(smtp_table: &str, tables: &str) -> (App, tempfile::TempDir) {
    let folder = tempfile::tempdir().expect("temporary folder");
    let config = config_with_smtp(folder.path(), smtp_table, tables);
    let app = App::build(config).await.expect("app builds");
    (app, folder)
}

// ---- Real monitoring programs and the Grafana dashboards (tests/dashboards.rs and
// ---- tests/end_to_end.rs) ----------------------------------------------------------

/// Variables a child process must not inherit: every request it makes stays on 127.0.0.1.
pub const PROXY_VARIABLES: &[&str] = &[
    "HTTP_PROXY",
    "HTTPS_PROXY",
    "ALL_PROXY",
    "NO_PROXY",
    "http_proxy",
    "https_proxy",
    "all_proxy",
    "no_proxy",
];

/// A port that was free a moment ago on 127.0.0.1.
pub fn free_port() -> u16 {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1:0");
    listener.local_addr().expect("local address").port()
}

/// A binary from a Debian package, at /usr/bin or else on PATH; fails the test naming the
/// package that `scripts/test-all.sh` installs.
pub fn debian_binary(binary: &str, package: &str) -> std::path::PathBuf {
    let debian_path = std::path::Path::new("/usr/bin").join(binary);
    if debian_path.is_file() {
        return debian_path;
    }
    std::env::var_os("PATH")
        .and_then(|path| {
            std::env::split_paths(&path)
                .map(|folder| folder.join(binary))
                .find(|candidate| candidate.is_file())
        })
        .unwrap_or_else(|| {
            panic!(
                "{binary} not found at /usr/bin nor on PATH; run scripts/test-all.sh, which \
                 installs the Debian package {package}"
            )
        })
}

/// A child process whose output goes to a log file. Dropping it kills the process (by its
/// own PID) and, when the test is failing, prints the log.
pub struct ChildProcess {
    pub name: String,
    child: std::process::Child,
    log_path: std::path::PathBuf,
}

impl ChildProcess {
    /// Starts `command` with stdin closed, stdout and stderr to `log_path` and no proxy
    /// variables.
    pub fn spawn(
        name: &str,
        mut command: std::process::Command,
        log_path: std::path::PathBuf,
    ) -> ChildProcess {
        let log = std::fs::File::create(&log_path).expect("log file");
        command
            .stdin(std::process::Stdio::null())
            .stdout(log.try_clone().expect("log file handle"))
            .stderr(log);
        for variable in PROXY_VARIABLES {
            command.env_remove(variable);
        }
        let child = command
            .spawn()
            .unwrap_or_else(|error| panic!("cannot start {name} ({command:?}): {error}"));
        ChildProcess {
            name: name.to_owned(),
            child,
            log_path,
        }
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log_path).unwrap_or_else(|error| format!("(no log: {error})"))
    }

    /// Fails the test, with the log, if the process has exited.
    pub fn assert_running(&mut self) {
        if let Some(status) = self.child.try_wait().expect("poll the child process") {
            panic!("{} exited ({status}); its log:\n{}", self.name, self.log());
        }
    }

    /// Polls GET `url` until it answers 2xx; fails at once if the process exits.
    pub async fn wait_until_answers(
        &mut self,
        client: &reqwest::Client,
        url: &str,
        deadline: Duration,
    ) {
        let started = tokio::time::Instant::now();
        loop {
            self.assert_running();
            if let Ok(response) = client.get(url).send().await
                && response.status().is_success()
            {
                return;
            }
            if started.elapsed() > deadline {
                panic!(
                    "{} did not answer {url} within {deadline:?}; its log:\n{}",
                    self.name,
                    self.log()
                );
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

impl Drop for ChildProcess {
    fn drop(&mut self) {
        // Child::kill sends SIGKILL to this child's PID only.
        let _ = self.child.kill();
        let _ = self.child.wait();
        if std::thread::panicking() {
            eprintln!(
                "---- {} log ({}) ----\n{}\n---- end of {} log ----",
                self.name,
                self.log_path.display(),
                self.log(),
                self.name
            );
        }
    }
}

/// A client for the local programs: no proxy, short timeouts.
pub fn local_client() -> reqwest::Client {
    reqwest::Client::builder()
        .no_proxy()
        .timeout(Duration::from_secs(10))
        .build()
        .expect("client")
}

/// The real Prometheus (Debian package `prometheus`), with its own storage and config in a
/// temporary folder, listening on a free port of 127.0.0.1.
pub struct Prometheus {
    pub address: String,
    pub process: ChildProcess,
    pub folder: tempfile::TempDir,
}

impl Prometheus {
    /// Writes `config` as prometheus.yml, and each of `files` (relative path, text) beside
    /// it, then starts Prometheus with `flags` added and waits until it is ready.
    pub async fn start(config: &str, files: &[(&str, String)], flags: &[&str]) -> Prometheus {
        let binary = debian_binary("prometheus", "prometheus");
        let folder = tempfile::tempdir().expect("temporary folder");
        let config_path = folder.path().join("prometheus.yml");
        std::fs::write(&config_path, config).expect("write prometheus.yml");
        for (relative, text) in files {
            let path = folder.path().join(relative);
            std::fs::create_dir_all(path.parent().expect("a parent folder")).expect("folder");
            std::fs::write(&path, text).expect("write a Prometheus file");
        }
        let port = free_port();
        let mut command = std::process::Command::new(binary);
        command
            .arg(format!("--config.file={}", config_path.display()))
            .arg(format!(
                "--storage.tsdb.path={}",
                folder.path().join("data").display()
            ))
            .arg(format!("--web.listen-address=127.0.0.1:{port}"))
            .args(flags)
            .current_dir(folder.path());
        let process =
            ChildProcess::spawn("Prometheus", command, folder.path().join("prometheus.log"));
        let mut prometheus = Prometheus {
            address: format!("http://127.0.0.1:{port}"),
            process,
            folder,
        };
        let ready = format!("{}/-/ready", prometheus.address);
        prometheus
            .process
            .wait_until_answers(&local_client(), &ready, Duration::from_secs(30))
            .await;
        prometheus
    }

    /// An instant query through the HTTP API: the `result` array, or the error Prometheus
    /// gave (a query that does not parse, for one).
    pub async fn query(&self, expr: &str) -> Result<Vec<Value>, String> {
        let response = local_client()
            .get(format!("{}/api/v1/query", self.address))
            .query(&[("query", expr)])
            .send()
            .await
            .unwrap_or_else(|error| panic!("GET /api/v1/query for {expr}: {error}"));
        let body: Value = response.json().await.expect("a JSON answer");
        if body["status"] == "success" {
            Ok(body["data"]["result"]
                .as_array()
                .cloned()
                .unwrap_or_default())
        } else {
            Err(format!("{}: {}", body["errorType"], body["error"]))
        }
    }

    /// Polls `expr` until it returns a series, and returns the first one's value.
    pub async fn wait_for_value(&self, expr: &str, deadline: Duration) -> f64 {
        eventually(
            &format!("Prometheus to return {expr}"),
            deadline,
            || async {
                let result = self.query(expr).await.ok()?;
                let value = result.first()?["value"][1].as_str()?.parse::<f64>().ok()?;
                Some(value)
            },
        )
        .await
    }

    /// The values of `label` on the series `selector` selects: Grafana's
    /// `label_values(selector, label)`.
    pub async fn label_values(&self, selector: &str, label: &str) -> Vec<String> {
        let response = local_client()
            .get(format!("{}/api/v1/label/{label}/values", self.address))
            .query(&[("match[]", selector)])
            .send()
            .await
            .expect("GET /api/v1/label/…/values");
        let body: Value = response.json().await.expect("a JSON answer");
        assert_eq!(
            body["status"], "success",
            "label_values({selector}, {label}): {body}"
        );
        body["data"]
            .as_array()
            .expect("a list of values")
            .iter()
            .map(|value| value.as_str().expect("a string value").to_owned())
            .collect()
    }
}

/// A dashboard of `dashboards/` (by file name without `.json`), parsed.
pub fn load_dashboard(name: &str) -> Value {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("dashboards")
        .join(format!("{name}.json"));
    let text = std::fs::read_to_string(&path)
        .unwrap_or_else(|error| panic!("cannot read {}: {error}", path.display()));
    serde_json::from_str(&text)
        .unwrap_or_else(|error| panic!("{} is not JSON: {error}", path.display()))
}

/// Every panel of a dashboard, rows and the panels inside collapsed rows included.
pub fn dashboard_panels(dashboard: &Value) -> Vec<&Value> {
    let mut panels = Vec::new();
    for panel in dashboard["panels"].as_array().expect("a panels list") {
        panels.push(panel);
        if let Some(inner) = panel["panels"].as_array() {
            panels.extend(inner);
        }
    }
    panels
}

/// One query of one panel.
#[derive(Debug, Clone)]
pub struct PanelQuery {
    pub panel_title: String,
    pub ref_id: String,
    /// The expression as written, with Grafana's variables.
    pub expr: String,
    pub legend: String,
}

/// Every PromQL query of a dashboard's panels.
pub fn dashboard_queries(dashboard: &Value) -> Vec<PanelQuery> {
    dashboard_panels(dashboard)
        .into_iter()
        .filter(|panel| panel["type"] != "row")
        .flat_map(|panel| {
            let title = panel["title"].as_str().unwrap_or_default().to_owned();
            panel["targets"]
                .as_array()
                .cloned()
                .unwrap_or_default()
                .into_iter()
                .map(move |target| PanelQuery {
                    panel_title: title.clone(),
                    ref_id: target["refId"].as_str().unwrap_or_default().to_owned(),
                    expr: target["expr"].as_str().unwrap_or_default().to_owned(),
                    legend: target["legendFormat"]
                        .as_str()
                        .unwrap_or_default()
                        .to_owned(),
                })
        })
        .collect()
}

/// The names of a dashboard's template variables.
pub fn dashboard_variables(dashboard: &Value) -> Vec<String> {
    dashboard["templating"]["list"]
        .as_array()
        .expect("a templating list")
        .iter()
        .map(|variable| {
            variable["name"]
                .as_str()
                .expect("a variable name")
                .to_owned()
        })
        .collect()
}

/// `expr` as Grafana would send it with every variable set to All: the dashboard's own
/// variables become `.*` (their allValue), and Grafana's interval variables fixed values
/// that suit a Prometheus scraping every second.
pub fn expand_dashboard_variables(expr: &str, variables: &[String]) -> String {
    let mut expanded = expr
        .replace("$__rate_interval", "1m")
        .replace("${__rate_interval}", "1m")
        .replace("$__interval", "15s")
        .replace("${__interval}", "15s")
        .replace("$__range", "1h")
        .replace("${__range}", "1h");
    // Longest names first, so that $instance is not read as $inst + "ance".
    let mut names: Vec<&String> = variables.iter().collect();
    names.sort_by_key(|name| std::cmp::Reverse(name.len()));
    for name in names {
        expanded = expanded
            .replace(&format!("${{{name}}}"), ".*")
            .replace(&format!("${name}"), ".*");
    }
    expanded
}

// ---- The review page as an operator's browser uses it (tests/dashboards.rs and
// ---- tests/end_to_end.rs) -----------------------------------------------------------

/// `link`, which starts with the configured public URL, on the test app's own address.
pub fn on_test_address(app: &TestApp, link: &str) -> String {
    let url = url::Url::parse(link).unwrap_or_else(|error| panic!("{link:?}: {error}"));
    format!("{}{}", app.address, url.path())
}

/// The signed review link the relay would mail to `operator_email` for a draft, on the test
/// app's own address.
pub fn review_link(app: &TestApp, operator_email: &str, draft_id: i64, version: i64) -> String {
    let operator = app
        .state
        .config
        .review
        .operator(operator_email)
        .unwrap_or_else(|| panic!("{operator_email} is not a configured operator"));
    let (link, _) = samsa_relay::operators::signed_link(
        &app.state.config,
        &app.state.signer,
        operator,
        samsa_relay::links::LinkPurpose::Review { draft_id, version },
        jiff::Timestamp::now(),
    );
    on_test_address(app, &link)
}

/// What a browser submits from the review page's form: the hidden fields, the checked level
/// and channels, the chosen role and the text fields as the page shows them. The button
/// (`action`) is left to the caller.
pub fn review_form_fields(html: &str) -> Vec<(String, String)> {
    let start = html
        .find("class=\"review\"")
        .unwrap_or_else(|| panic!("no review form in the page:\n{html}"));
    let form = &html[start..];
    let form = &form[..form.find("</form>").expect("the form ends")];
    let mut fields = Vec::new();
    let mut rest = form;
    while let Some(open) = rest.find('<') {
        rest = &rest[open..];
        let tag_end = rest.find('>').expect("a tag ends");
        let tag = &rest[..=tag_end];
        let after = &rest[tag_end + 1..];
        if tag.starts_with("<input") {
            let kind = html_attribute(tag, "type").unwrap_or_default();
            let checkable = kind == "radio" || kind == "checkbox";
            if let Some(name) = html_attribute(tag, "name")
                && (!checkable || tag.contains(" checked"))
            {
                fields.push((name, html_attribute(tag, "value").unwrap_or_default()));
            }
        } else if tag.starts_with("<textarea") {
            let name = html_attribute(tag, "name").expect("a named textarea");
            let text = &after[..after.find("</textarea>").expect("the textarea ends")];
            fields.push((name, unescape_html(text)));
        } else if tag.starts_with("<select") {
            let name = html_attribute(tag, "name").expect("a named select");
            let options = &after[..after.find("</select>").expect("the select ends")];
            let chosen = options
                .split("<option")
                .skip(1)
                .find(|option| option.contains(" selected"))
                .or_else(|| options.split("<option").nth(1))
                .and_then(|option| html_attribute(&format!("<option{option}"), "value"))
                .unwrap_or_default();
            fields.push((name, chosen));
        }
        rest = after;
    }
    fields
}

/// The value of `name="…"` in one HTML tag, unescaped.
fn html_attribute(tag: &str, name: &str) -> Option<String> {
    let marker = format!(" {name}=\"");
    let start = tag.find(&marker)? + marker.len();
    let end = tag[start..].find('"')? + start;
    Some(unescape_html(&tag[start..end]))
}

fn unescape_html(text: &str) -> String {
    text.replace("&lt;", "<")
        .replace("&gt;", ">")
        .replace("&quot;", "\"")
        .replace("&#39;", "'")
        .replace("&#x27;", "'")
        .replace("&amp;", "&")
}

/// Opens a review page and presses "Publicera" with the form as the page shows it, plus
/// `extra` fields (a decision-maker for levels 2 and 3). Returns the answer's status and
/// page.
pub async fn publish_through_review_page(
    app: &TestApp,
    url: &str,
    extra: &[(&str, &str)],
) -> (u16, String) {
    let response = app
        .client
        .get(url)
        .send()
        .await
        .expect("GET the review page");
    let status = response.status().as_u16();
    let html = response.text().await.expect("the review page");
    assert_eq!(status, 200, "the review page opens:\n{html}");
    let mut fields = review_form_fields(&html);
    for (name, value) in extra {
        fields.retain(|(field, _)| field != name);
        fields.push(((*name).to_owned(), (*value).to_owned()));
    }
    fields.push(("action".to_owned(), "publish".to_owned()));
    let body: String = url::form_urlencoded::Serializer::new(String::new())
        .extend_pairs(fields.iter())
        .finish();
    let response = app
        .client
        .post(url)
        .header("content-type", "application/x-www-form-urlencoded")
        .body(body)
        .send()
        .await
        .expect("POST the review form");
    let status = response.status().as_u16();
    (status, response.text().await.expect("the answer page"))
}

/// `label_values(SELECTOR, LABEL)`, a query variable's definition, split into its selector
/// and label.
pub fn label_values_call(definition: &str) -> Option<(String, String)> {
    let inner = definition
        .strip_prefix("label_values(")?
        .strip_suffix(')')?;
    let (selector, label) = inner.rsplit_once(',')?;
    Some((selector.trim().to_owned(), label.trim().to_owned()))
}

/// The labels a legend format names, as in `{{channel}} p99`.
pub fn legend_labels(legend: &str) -> Vec<String> {
    legend
        .split("{{")
        .skip(1)
        .filter_map(|part| part.split_once("}}"))
        .map(|(label, _)| label.trim().to_owned())
        .collect()
}

/// Runs every query variable and every panel query of dashboard `name` (with All chosen)
/// through `prometheus` and returns how many panel queries ran and what failed: a query
/// Prometheus refuses, a variable without values (or whose `instance` lacks
/// `relay_instance`), a query without series (polled until `deadline`) unless
/// `no_data_expected` lists it as (dashboard, panel title, refId), a listed one that does
/// return series, and a legend naming a label its series lack.
pub async fn dashboard_query_failures(
    prometheus: &Prometheus,
    name: &str,
    no_data_expected: &[(&str, &str, &str)],
    relay_instance: &str,
    deadline: std::time::Instant,
) -> (usize, Vec<String>) {
    let dashboard = load_dashboard(name);
    let variables = dashboard_variables(&dashboard);
    let mut failures = Vec::new();
    for variable in dashboard["templating"]["list"]
        .as_array()
        .expect("variables")
    {
        if variable["type"] != "query" {
            continue;
        }
        let definition = variable["definition"].as_str().expect("a definition");
        let (selector, label) = label_values_call(definition).expect("label_values");
        let selector = expand_dashboard_variables(&selector, &variables);
        let values = prometheus.label_values(&selector, &label).await;
        if values.is_empty() {
            failures.push(format!("{name}: variable {}: no values", variable["name"]));
        }
        if variable["name"] == "instance" && !values.iter().any(|value| value == relay_instance) {
            failures.push(format!(
                "{name}: $instance lacks {relay_instance}: {values:?}"
            ));
        }
    }
    let queries = dashboard_queries(&dashboard);
    for query in &queries {
        let expr = expand_dashboard_variables(&query.expr, &variables);
        let expected_empty =
            no_data_expected.contains(&(name, query.panel_title.as_str(), query.ref_id.as_str()));
        let at = format!("{name}: {:?} {}: {expr}", query.panel_title, query.ref_id);
        let answer = loop {
            match prometheus.query(&expr).await {
                Err(error) => break Err(error),
                Ok(series) if !series.is_empty() || expected_empty => break Ok(series),
                Ok(series) if std::time::Instant::now() > deadline => break Ok(series),
                Ok(_) => tokio::time::sleep(Duration::from_millis(200)).await,
            }
        };
        match answer {
            Err(error) => failures.push(format!("{at}: Prometheus refused it: {error}")),
            Ok(series) if series.is_empty() && !expected_empty => {
                failures.push(format!("{at}: no series"))
            }
            Ok(series) if !series.is_empty() && expected_empty => failures.push(format!(
                "{at}: returns series now; take it out of the no-data list"
            )),
            Ok(series) => {
                for label in legend_labels(&query.legend) {
                    if let Some(without) = series
                        .iter()
                        .find(|one| one["metric"].get(&label).is_none())
                    {
                        failures.push(format!(
                            "{at}: the legend {:?} names {label}, which {} lacks",
                            query.legend, without["metric"]
                        ));
                    }
                }
            }
        }
    }
    (queries.len(), failures)
}
