//! The real Prometheus (Debian package `prometheus`) for the dashboard and end-to-end
//! tests.

use std::time::Duration;

use serde_json::Value;

use super::process::{ChildProcess, debian_binary};
use super::{eventually, free_port, local_client};

/// The real Prometheus (Debian package `prometheus`), with its own storage and config in a
/// temporary folder, listening on a free port of 127.0.0.1.
pub struct Prometheus {
    pub address: String,
    pub process: ChildProcess,
    /// Its config, storage and log; removed when dropped.
    _folder: tempfile::TempDir,
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
            _folder: folder,
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
