//! Storage faults: the database on a small tmpfs that the test fills up. The relay must answer 503 (so that Alertmanager retries) and report not
//! ready, lose nothing it acknowledged, and recover fully when the fault clears. Mounting
//! needs root, as scripts/test-all.sh runs the tests.

use crate::common;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use common::{alert, payload, start};
use samsa_relay::config::Config;
use serde_json::{Value, json};

/// A tmpfs mounted for one test, unmounted when dropped.
struct Tmpfs {
    path: PathBuf,
}

impl Tmpfs {
    fn mount(path: &Path, size: &str) -> Tmpfs {
        std::fs::create_dir_all(path).unwrap();
        let status = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
            .arg(path)
            .status()
            .expect("mount runs");
        assert!(
            status.success(),
            "mounting a tmpfs failed: these fault tests need root (run scripts/test-all.sh as root, as CI does)"
        );
        Tmpfs {
            path: path.to_owned(),
        }
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(&self.path).status();
    }
}

fn webhook(index: usize) -> String {
    payload(
        "firing",
        vec![alert(
            &format!("fault-{index}"),
            "firing",
            json!({"alertname": "SamsaLoginDown", "service": "samsa", "actor": "kommun-boras"}),
            "2026-11-28T04:10:00Z",
        )],
    )
    .to_string()
}

async fn app_on(mount: &Path, folder: tempfile::TempDir) -> common::TestApp {
    let text = common::base_config(
        mount,
        "",
        "busy_timeout = \"500ms\"\nmin_free_bytes = 262144",
        "",
    );
    let mut config = Config::from_toml(&text, &Default::default()).unwrap();
    // Mail goes elsewhere: only the database lives on the faulty file system.
    config.smtp.url = samsa_relay::config::SmtpUrl::File {
        folder: folder.path().join("mail"),
    };
    start(config, folder).await
}

async fn eventually_ready(app: &common::TestApp, ready: bool) {
    common::eventually(
        &format!("readiness {ready}"),
        Duration::from_secs(20),
        || async {
            let status = app.get("/readyz").await.status();
            ((status == 200) == ready).then_some(())
        },
    )
    .await;
}

#[tokio::test]
async fn a_full_disk_answers_503_loses_nothing_and_recovers() {
    let folder = tempfile::tempdir().unwrap();
    let mount = Tmpfs::mount(&folder.path().join("db"), "4m");
    let app = app_on(&mount.path, tempfile::tempdir().unwrap()).await;
    assert_eq!(app.post_webhook(webhook(0)).await.status(), 200);

    // Fill the file system to the last byte.
    let filler = mount.path.join("filler");
    let _ = Command::new("dd")
        .args(["if=/dev/zero", "bs=64k", "count=200"])
        .arg(format!("of={}", filler.display()))
        .stderr(std::process::Stdio::null())
        .status();
    let mut n_refused = 0;
    let mut acknowledged = vec![0];
    for index in 1..40 {
        let response = app.post_webhook(webhook(index)).await;
        match response.status().as_u16() {
            200 => acknowledged.push(index),
            503 => {
                n_refused += 1;
                let body: Value = response.json().await.unwrap();
                assert_eq!(body["error"], "temporarily unavailable");
            }
            other => panic!("unexpected status {other}"),
        }
    }
    assert!(n_refused > 0, "a full disk must refuse with 503");
    eventually_ready(&app, false).await;

    std::fs::remove_file(&filler).unwrap();
    eventually_ready(&app, true).await;
    // Alertmanager's retries now land.
    for index in 1..40 {
        assert_eq!(
            app.post_webhook(webhook(index)).await.status(),
            200,
            "webhook {index} after recovery"
        );
    }
    let stored: Vec<String> = app
        .state
        .storage
        .receipts()
        .await
        .unwrap()
        .into_iter()
        .map(|receipt| receipt.payload)
        .collect();
    for index in &acknowledged {
        assert!(
            stored.contains(&webhook(*index)),
            "acknowledged webhook {index} lost"
        );
    }
    assert_eq!(stored.len(), 40);
    println!(
        "faults/disk-full: {n_refused} webhooks refused with 503 while full, 0 lost, all 40 stored after recovery"
    );
    app.stop().await;
}
