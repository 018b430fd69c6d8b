//! The app under test: [`TestApp`] starts the real app (server and every worker) on port 0
//! of 127.0.0.1 with a throwaway SQLite database and a file mail folder in a temporary
//! folder; the configs it starts from; and requests to it.

use std::collections::BTreeMap;
use std::time::Duration;

use samsa_relay::app::App;
use samsa_relay::config::Config;
use samsa_relay::http::AppState;
use tokio::sync::oneshot;

use super::eventually;

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

    /// Every alert's state (derived from the stored receipts) once the incident worker
    /// has taken every stored receipt into account.
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

/// The config `spawn_app_with_tables(tables)` would build, over the database in `folder`:
/// for a second view of the same database (say, a channel the running app has no worker
/// for, driven by the test itself).
pub fn config_with_tables(folder: &std::path::Path, tables: &str) -> Config {
    let text = format!("{}\n{tables}", base_config(folder, "", "", ""));
    Config::from_toml(&text, &BTreeMap::new()).expect("test config is valid")
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
#[cfg(feature = "system-tests")]
pub async fn build_app_with_smtp(smtp_table: &str, tables: &str) -> (App, tempfile::TempDir) {
    let folder = tempfile::tempdir().expect("temporary folder");
    let config = config_with_smtp(folder.path(), smtp_table, tables);
    let app = App::build(config).await.expect("app builds");
    (app, folder)
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
