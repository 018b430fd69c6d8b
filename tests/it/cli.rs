//! The `samsa-relay` binary as operators run it: `check-config` and `serve`, exit codes,
//! environment overrides, SIGTERM and a restart on the same database.

use crate::common;

use std::fs::File;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Output, Stdio};
use std::time::{Duration, Instant};

use common::{alert, free_port, payload};
use serde_json::{Value, json};

const BINARY: &str = env!("CARGO_BIN_EXE_samsa-relay");

/// The token in the config file; the environment overrides it in the `serve` test.
const FILE_TOKEN: &str = "token-from-the-file-0123456789";
const ENV_TOKEN: &str = "token-from-the-environment-0123456789";
const LINK_SECRET: &str = "cli-test-link-secret-0123456789-0123456789";

/// How long a process may take to start, answer or stop.
const DEADLINE: Duration = Duration::from_secs(30);

/// A command for the binary that inherits none of the relay's environment overrides,
/// log filters or proxies from whoever runs the tests.
fn relay_command(folder: &Path) -> Command {
    let mut command = Command::new(BINARY);
    command.current_dir(folder).stdin(Stdio::null());
    for (variable, _) in samsa_relay::config::ENV_OVERRIDES {
        command.env_remove(variable);
    }
    for variable in [
        "RUST_LOG",
        "HTTP_PROXY",
        "HTTPS_PROXY",
        "ALL_PROXY",
        "http_proxy",
        "https_proxy",
        "all_proxy",
    ] {
        command.env_remove(variable);
    }
    command
}

fn manifest_path(relative: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join(relative)
}

/// Runs the binary to completion (it must finish within the deadline).
fn run(folder: &Path, args: &[&str]) -> Output {
    let mut child = relay_command(folder)
        .args(args)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start samsa-relay");
    let started = Instant::now();
    loop {
        if child.try_wait().expect("poll samsa-relay").is_some() {
            return child.wait_with_output().expect("samsa-relay output");
        }
        if started.elapsed() > DEADLINE {
            let _ = child.kill();
            let _ = child.wait();
            panic!("samsa-relay {args:?} did not finish within {DEADLINE:?}");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// A complete config for `serve`, everything inside `folder`.
fn serve_config(folder: &Path, port: u16, token: &str) -> String {
    format!(
        r#"
[server]
listen = "127.0.0.1:{port}"
public_url = "http://127.0.0.1:{port}"
shutdown_grace = "5s"

[database]
url = "sqlite://{database}"

[webhook]
token = "{token}"

[smtp]
url = "file://{mail}"

[links]
secret = "{LINK_SECRET}"

[logging]
format = "json"
level = "info"
"#,
        database = folder.join("data").join("relay.db").display(),
        mail = folder.join("mail").display(),
    )
}

/// A `serve` child. Dropping it kills the process (by its PID) and, when the test is
/// failing, prints what it logged.
struct Relay {
    child: Child,
    address: String,
    log_path: PathBuf,
}

impl Relay {
    fn start(folder: &Path, config: &Path, port: u16, environment: &[(&str, &str)]) -> Relay {
        let log_path = folder.join(format!("relay-{port}.log"));
        let log = File::create(&log_path).expect("log file");
        let child = relay_command(folder)
            .args(["serve", "--config"])
            .arg(config)
            .envs(environment.iter().copied())
            .stdout(log.try_clone().expect("log file handle"))
            .stderr(log)
            .spawn()
            .expect("start samsa-relay serve");
        Relay {
            child,
            address: format!("http://127.0.0.1:{port}"),
            log_path,
        }
    }

    fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Polls `/readyz` until 200; fails at once if the process exits.
    async fn wait_until_ready(&mut self, client: &reqwest::Client) {
        let url = format!("{}/readyz", self.address);
        let started = Instant::now();
        loop {
            if let Some(status) = self.child.try_wait().expect("poll samsa-relay") {
                panic!("samsa-relay exited before it was ready ({status})");
            }
            if let Ok(response) = client.get(&url).send().await
                && response.status() == 200
            {
                return;
            }
            if started.elapsed() > DEADLINE {
                panic!("samsa-relay not ready at {url} after {DEADLINE:?}");
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    async fn post_webhook(
        &self,
        client: &reqwest::Client,
        token: &str,
        body: &str,
    ) -> reqwest::Response {
        client
            .post(format!("{}/webhook/alertmanager", self.address))
            .bearer_auth(token)
            .header("content-type", "application/json")
            .body(body.to_owned())
            .send()
            .await
            .expect("webhook request sent")
    }

    /// Sends SIGTERM to the process and waits for it to exit.
    async fn terminate(&mut self) -> ExitStatus {
        let pid = self.pid().to_string();
        // The kill(2) call itself rather than the `kill` program (procps), which a machine
        // with only Rust may lack.
        rustix::process::kill_process(
            rustix::process::Pid::from_child(&self.child),
            rustix::process::Signal::TERM,
        )
        .unwrap_or_else(|error| panic!("kill -TERM {pid} failed: {error}"));
        let started = Instant::now();
        loop {
            if let Some(status) = self.child.try_wait().expect("poll samsa-relay") {
                return status;
            }
            if started.elapsed() > DEADLINE {
                panic!("samsa-relay (pid {pid}) still running {DEADLINE:?} after SIGTERM");
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

impl Drop for Relay {
    fn drop(&mut self) {
        // Child::kill sends SIGKILL to this child's PID only; a no-op once it has exited.
        let _ = self.child.kill();
        let _ = self.child.wait();
        if std::thread::panicking() {
            let log = std::fs::read_to_string(&self.log_path)
                .unwrap_or_else(|error| format!("(no log: {error})"));
            eprintln!(
                "---- samsa-relay log ({}) ----\n{log}\n---- end of samsa-relay log ----",
                self.log_path.display()
            );
        }
    }
}

fn client() -> reqwest::Client {
    reqwest::Client::builder()
        .no_proxy()
        .timeout(Duration::from_secs(10))
        .build()
        .expect("client")
}

fn webhook_body() -> String {
    payload(
        "firing",
        vec![alert(
            "c11c11c11c11c11c",
            "firing",
            json!({"alertname": "SamsaLoginDown", "service": "samsa", "actor": "kommun-alingsas"}),
            "2026-11-28T04:12:00Z",
        )],
    )
    .to_string()
}

#[test]
fn check_config_accepts_the_shipped_config() {
    let folder = tempfile::tempdir().expect("temporary folder");
    let config = manifest_path("deploy/samsa-relay.toml");
    let output = run(
        folder.path(),
        &[
            "check-config",
            "--config",
            config.to_str().expect("UTF-8 path"),
        ],
    );
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        output.status.success(),
        "check-config failed ({}):\n{stderr}",
        output.status
    );
    assert!(stdout.contains("valid"), "stdout: {stdout}");
    assert!(
        !stdout.contains("note:"),
        "the shipped banner works on any login page: {stdout}"
    );
}

#[test]
fn check_config_lists_every_problem_on_its_own_line() {
    let folder = tempfile::tempdir().expect("temporary folder");
    let config = folder.path().join("broken.toml");
    std::fs::write(
        &config,
        format!(
            r#"
[server]
listen = "nowhere"
colour = "blue"

[database]
url = "mysql://127.0.0.1/samsa"

[webhook]
token = "{FILE_TOKEN}"

[links]
"#
        ),
    )
    .expect("write config");
    let planted = [
        "server.colour:",
        "server.listen:",
        "database.url:",
        "links.secret:",
    ];

    let output = run(
        folder.path(),
        &[
            "check-config",
            "--config",
            config.to_str().expect("UTF-8 path"),
        ],
    );
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(!output.status.success(), "a broken config must fail");
    let lines: Vec<&str> = stderr.lines().collect();
    for prefix in planted {
        assert_eq!(
            lines.iter().filter(|line| line.starts_with(prefix)).count(),
            1,
            "expected one line starting with {prefix:?} in:\n{stderr}"
        );
    }
    assert_eq!(
        lines.len(),
        planted.len(),
        "one line per problem:\n{stderr}"
    );
}

#[test]
fn serve_refuses_an_invalid_config_with_code_2_before_binding() {
    let folder = tempfile::tempdir().expect("temporary folder");
    let port = free_port();
    let config = folder.path().join("invalid.toml");
    std::fs::write(&config, serve_config(folder.path(), port, "too-short")).expect("write config");

    let output = run(
        folder.path(),
        &["serve", "--config", config.to_str().expect("UTF-8 path")],
    );
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(2), "stderr:\n{stderr}");
    assert!(
        stderr
            .lines()
            .any(|line| line.starts_with("webhook.token:")),
        "the problem is named:\n{stderr}"
    );
    std::net::TcpListener::bind(("127.0.0.1", port))
        .unwrap_or_else(|error| panic!("port {port} should still be free: {error}"));
    assert!(
        !folder.path().join("data").exists(),
        "no database is created for an invalid config"
    );
}

#[tokio::test]
async fn serve_takes_the_token_from_the_environment_stops_on_sigterm_and_keeps_its_data() {
    let folder = tempfile::tempdir().expect("temporary folder");
    let port = free_port();
    let config = folder.path().join("relay.toml");
    std::fs::write(&config, serve_config(folder.path(), port, FILE_TOKEN)).expect("write config");
    let client = client();
    let body = webhook_body();

    let mut relay = Relay::start(
        folder.path(),
        &config,
        port,
        &[("SAMSA_RELAY_WEBHOOK_TOKEN", ENV_TOKEN)],
    );
    relay.wait_until_ready(&client).await;

    let accepted = relay.post_webhook(&client, ENV_TOKEN, &body).await;
    assert_eq!(accepted.status(), 200);
    let accepted: Value = accepted.json().await.expect("JSON answer");
    assert_eq!(accepted["duplicate"], false);
    assert_eq!(accepted["alerts"], 1);

    let refused = relay.post_webhook(&client, FILE_TOKEN, &body).await;
    assert_eq!(
        refused.status(),
        401,
        "the environment replaces the file's token"
    );

    let status = relay.terminate().await;
    assert!(
        status.success(),
        "SIGTERM must end with exit 0, got {status}"
    );
    drop(relay);

    // Same config and database, another port through the environment.
    let second_port = free_port();
    let second_listen = format!("127.0.0.1:{second_port}");
    let mut relay = Relay::start(
        folder.path(),
        &config,
        second_port,
        &[
            ("SAMSA_RELAY_WEBHOOK_TOKEN", ENV_TOKEN),
            ("SAMSA_RELAY_LISTEN", &second_listen),
        ],
    );
    relay.wait_until_ready(&client).await;
    let resend = relay.post_webhook(&client, ENV_TOKEN, &body).await;
    assert_eq!(resend.status(), 200);
    let resend: Value = resend.json().await.expect("JSON answer");
    assert_eq!(
        resend["duplicate"], true,
        "the first run's receipt survived"
    );
    assert_eq!(resend["receipt_id"], accepted["receipt_id"]);

    let status = relay.terminate().await;
    assert!(
        status.success(),
        "SIGTERM must end with exit 0, got {status}"
    );
}

#[tokio::test]
async fn subscribers_are_imported_listed_counted_exported_removed_and_deleted() {
    let folder = tempfile::tempdir().unwrap();
    let config_path = folder.path().join("relay.toml");
    std::fs::write(&config_path, serve_config(folder.path(), 9, FILE_TOKEN)).unwrap();
    let config = config_path.to_str().unwrap().to_owned();
    let subscribers = |args: &[&str]| {
        let mut all = vec!["subscribers", "--config", config.as_str()];
        all.extend_from_slice(args);
        run(folder.path(), &all)
    };
    // No database yet: refused, none created.
    let refused = subscribers(&["count"]);
    assert_eq!(refused.status.code(), Some(1));
    assert!(!folder.path().join("data").join("relay.db").exists());
    let loaded = samsa_relay::config::Config::load(&config_path).unwrap();
    samsa_relay::storage::Storage::open(&loaded.database)
        .await
        .unwrap()
        .close()
        .await;

    let bad = folder.path().join("bad.csv");
    std::fs::write(
        &bad,
        "E-post;Organisationer\nanna@boras.example;Borås\nnot an address;Skövde\nbo@x.example;Atlantis\n",
    )
    .unwrap();
    let output = subscribers(&["import", bad.to_str().unwrap(), "--by", "Åsa Lindqvist"]);
    assert_eq!(output.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("line 3")
            && stderr.contains("line 4")
            && stderr.contains("nothing imported"),
        "{stderr}"
    );
    let count = subscribers(&["count"]);
    assert!(
        String::from_utf8_lossy(&count.stdout).contains("confirmed\t0"),
        "nothing was imported"
    );

    let good = folder.path().join("good.csv");
    std::fs::write(
        &good,
        "Namn,E-post,Organisationer\nAnna,Anna@Boras.example,\"Borås, Skövde\"\nBo,bo@vgr.example,alla\n",
    )
    .unwrap();
    let output = subscribers(&["import", good.to_str().unwrap(), "--by", "Åsa Lindqvist"]);
    assert!(output.status.success(), "{output:?}");
    assert_eq!(
        String::from_utf8_lossy(&output.stdout),
        "2 imported, 0 subscribed already (left as they were)\n"
    );
    let again = subscribers(&["import", good.to_str().unwrap(), "--by", "Bo"]);
    assert!(String::from_utf8_lossy(&again.stdout).starts_with("0 imported, 2 subscribed already"));

    let list = String::from_utf8_lossy(&subscribers(&["list"]).stdout).into_owned();
    assert!(
        list.contains("anna@boras.example\tconfirmed\tSkövde och Borås\timport by Åsa Lindqvist\t"),
        "{list}"
    );
    assert!(
        list.contains("bo@vgr.example\tconfirmed\talla störningar"),
        "{list}"
    );

    let export = subscribers(&["export", "ANNA@boras.example"]);
    assert!(export.status.success());
    let json: serde_json::Value = serde_json::from_slice(&export.stdout).unwrap();
    assert_eq!(json["address"], "anna@boras.example");
    assert_eq!(json["source"], "import by Åsa Lindqvist");
    assert_eq!(
        json["choices"]["organisations"],
        serde_json::json!(["kommun-skovde", "kommun-boras"])
    );
    assert!(json["consented_at"].is_string());
    assert!(
        json.get("nonce").is_none(),
        "no link material in the export"
    );

    let removed = subscribers(&["remove", "bo@vgr.example", "--by", "Åsa"]);
    assert!(removed.status.success());
    let count = String::from_utf8_lossy(&subscribers(&["count"]).stdout).into_owned();
    assert_eq!(
        count,
        "pending\t0\nconfirmed\t1\nunsubscribed\t1\nsuspended\t0\n"
    );

    let deleted = subscribers(&["delete", "anna@boras.example"]);
    assert!(deleted.status.success());
    let gone = subscribers(&["export", "anna@boras.example"]);
    assert_eq!(gone.status.code(), Some(1));
    assert_eq!(
        subscribers(&["delete", "anna@boras.example"]).status.code(),
        Some(1)
    );
}
