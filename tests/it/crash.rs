//! Crash suites: the real binary killed with SIGKILL at random moments, then restarted on
//! the same database. Every webhook that got a 2xx must be stored whole; every recipient of
//! a published notice must get it, with duplicates only for sends in flight at a kill.
//! Bounded in cycles and time; prints its figures.

use crate::common;

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::{TOKEN, alert, payload};
use samsa_relay::config::Config;
use samsa_relay::storage::Storage;
use serde_json::json;

const INGEST_CYCLES: usize = 200;
const PUBLISH_CYCLES: usize = 25;

struct Relay {
    child: Child,
}

impl Drop for Relay {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn config_text(folder: &Path, extra: &str) -> String {
    format!(
        "{}\n{extra}",
        common::base_config(folder, "", "busy_timeout = \"2s\"", "")
    )
}

async fn start(config_file: &Path, port: u16, client: &reqwest::Client) -> Relay {
    let child = Command::new(env!("CARGO_BIN_EXE_samsa-relay"))
        .args(["serve", "--config"])
        .arg(config_file)
        .env("SAMSA_RELAY_LISTEN", format!("127.0.0.1:{port}"))
        .env("RUST_LOG", "error")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("the relay starts");
    let relay = Relay { child };
    let url = format!("http://127.0.0.1:{port}/healthz");
    common::eventually("the relay answers", Duration::from_secs(20), || async {
        client
            .get(&url)
            .send()
            .await
            .ok()
            .filter(|response| response.status() == 200)
    })
    .await;
    relay
}

fn distinct_payload(cycle: usize, request: usize) -> String {
    let alerts = (0..3)
        .map(|index| {
            alert(
                &format!("c{cycle}r{request}a{index}"),
                "firing",
                json!({"alertname": "SamsaLoginDown", "service": "samsa", "actor": "kommun-boras"}),
                "2026-11-28T04:10:00Z",
            )
        })
        .collect();
    payload("firing", alerts).to_string()
}

async fn open_storage(folder: &Path) -> Storage {
    let text = config_text(folder, "");
    let config = Config::from_toml(&text, &Default::default()).unwrap();
    Storage::open(&config.database).await.unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_acknowledged_webhook_survives_sigkill_at_any_moment() {
    let folder = tempfile::tempdir().unwrap();
    let config_file = folder.path().join("relay.toml");
    std::fs::write(&config_file, config_text(folder.path(), "")).unwrap();
    let client = common::local_client();
    let started = Instant::now();
    let mut acknowledged: BTreeMap<String, i64> = BTreeMap::new();
    let mut n_refused = 0;
    let mut n_sent = 0;
    for cycle in 0..INGEST_CYCLES {
        let port = common::free_port();
        let relay = start(&config_file, port, &client).await;
        let url = format!("http://127.0.0.1:{port}/webhook/alertmanager");
        let mut posts = Vec::new();
        for request in 0..8 {
            let client = client.clone();
            let url = url.clone();
            let body = distinct_payload(cycle, request);
            posts.push(tokio::spawn(async move {
                let answer = client
                    .post(url)
                    .bearer_auth(TOKEN)
                    .body(body.clone())
                    .send()
                    .await;
                match answer {
                    Ok(response) if response.status().is_success() => {
                        let value: serde_json::Value = response.json().await.ok()?;
                        Some((body, value["receipt_id"].as_i64()?))
                    }
                    _ => None,
                }
            }));
        }
        // Kill at a random moment while the posts are in flight.
        tokio::time::sleep(Duration::from_micros(fastrand::u64(0..40_000))).await;
        drop(relay);
        for post in posts {
            n_sent += 1;
            match post.await.unwrap() {
                Some((body, receipt_id)) => {
                    acknowledged.insert(body, receipt_id);
                }
                None => n_refused += 1,
            }
        }
        assert!(
            started.elapsed() < Duration::from_secs(600),
            "bounded in time"
        );
    }

    // A last start works off what the kills left unprocessed.
    let relay = start(&config_file, common::free_port(), &client).await;
    let storage = open_storage(folder.path()).await;
    common::eventually(
        "the backlog is processed",
        Duration::from_secs(60),
        || async { (storage.n_unprocessed_receipts().await.unwrap() == 0).then_some(()) },
    )
    .await;
    drop(relay);
    let receipts = storage.receipts().await.unwrap();
    let stored: BTreeMap<&str, i64> = receipts
        .iter()
        .map(|receipt| (receipt.payload.as_str(), receipt.receipt_id))
        .collect();
    let mut n_lost = 0;
    for (body, receipt_id) in &acknowledged {
        match stored.get(body.as_str()) {
            Some(stored_id) => assert_eq!(stored_id, receipt_id),
            None => n_lost += 1,
        }
    }
    // Nothing half-written or skipped: once processed, every alert of every stored
    // receipt belongs to the incident (the worker's write of a batch is all or nothing).
    let tracked: BTreeSet<(String, jiff::Timestamp)> = storage
        .incidents()
        .await
        .unwrap()
        .iter()
        .flat_map(|record| record.incident.alerts.keys())
        .map(|key| (key.fingerprint.clone(), key.starts_at))
        .collect();
    for receipt in &receipts {
        let parsed =
            samsa_relay::alertmanager::Notification::parse(receipt.payload.as_bytes()).unwrap();
        for alert in &parsed.alerts {
            assert!(
                tracked.contains(&(alert.fingerprint.clone(), alert.starts_at)),
                "receipt {} is missing alert {}",
                receipt.receipt_id,
                alert.fingerprint
            );
        }
    }
    storage.close().await;
    println!(
        "crash/ingest: {INGEST_CYCLES} SIGKILL cycles in {:.1} s; {n_sent} webhooks sent, {} acknowledged, \
         {n_refused} unanswered (killed in flight, Alertmanager would retry), {} stored, {n_lost} acknowledged but lost",
        started.elapsed().as_secs_f64(),
        acknowledged.len(),
        receipts.len(),
    );
    assert_eq!(n_lost, 0, "an acknowledged webhook was lost");
    assert!(!acknowledged.is_empty(), "some webhooks were acknowledged");
}

const N_RECIPIENTS: usize = 40;

fn recipients_of(mail_folder: &Path) -> (BTreeMap<String, usize>, BTreeSet<String>) {
    let mut per_recipient: BTreeMap<String, usize> = BTreeMap::new();
    let mut message_ids = BTreeSet::new();
    let Ok(entries) = std::fs::read_dir(mail_folder) else {
        return (per_recipient, message_ids);
    };
    for entry in entries.flatten() {
        let Ok(text) = std::fs::read_to_string(entry.path()) else {
            continue;
        };
        // A file cut short by a kill has no end of headers; it was never sent.
        if !text.contains("\r\n\r\n") {
            continue;
        }
        let header = |name: &str| {
            text.lines()
                .find(|line| {
                    line.to_ascii_lowercase()
                        .starts_with(&format!("{}:", name.to_ascii_lowercase()))
                })
                .map(|line| line[name.len() + 1..].trim().to_owned())
        };
        if header("Subject").is_some_and(|subject| subject.contains("Granska")) {
            continue;
        }
        if let Some(to) = header("To")
            && to.contains("@kommun.example")
        {
            *per_recipient.entry(to).or_default() += 1;
            if let Some(id) = header("Message-ID") {
                message_ids.insert(id);
            }
        }
    }
    (per_recipient, message_ids)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_recipient_gets_the_notice_through_kills_during_drafting_and_publishing() {
    let folder = tempfile::tempdir().unwrap();
    let recipients: Vec<String> = (0..N_RECIPIENTS)
        .map(|index| format!("support{index}@kommun.example"))
        .collect();
    let tables = format!(
        "[[operators]]\nname = \"Anna Andersson\"\nemail = \"anna@example.org\"\ngroups = [\"on-duty\"]\n\
         [channels.banner]\ncontent = \"banner\"\ntransport = \"banner\"\n\
         [channels.email]\ncontent = \"email\"\ntransport = \"email\"\nrecipients = {recipients:?}\nconcurrency = 4\n\
         [plan]\nlevel_1 = [\"banner\", \"email\"]\nlevel_2 = [\"banner\", \"email\"]\nlevel_3 = [\"banner\", \"email\"]\n"
    );
    let text = config_text(folder.path(), &tables);
    let config_file = folder.path().join("relay.toml");
    std::fs::write(&config_file, &text).unwrap();
    let config = Config::from_toml(&text, &Default::default()).unwrap();
    let signer = samsa_relay::links::LinkSigner::new(&config.links.secret);
    let mail_folder: PathBuf = folder.path().join("mail");
    let client = common::local_client();
    let started = Instant::now();
    let mut published = false;
    let mut n_kills = 0;
    for cycle in 0..PUBLISH_CYCLES {
        let port = common::free_port();
        let relay = start(&config_file, port, &client).await;
        let base = format!("http://127.0.0.1:{port}");
        if cycle == 0 {
            let body = payload(
                "firing",
                vec![alert(
                    "crash-1",
                    "firing",
                    json!({"alertname": "SamsaLoginDown", "service": "samsa", "actor": "kommun-boras"}),
                    "2026-11-28T04:10:00Z",
                )],
            );
            let response = client
                .post(format!("{base}/webhook/alertmanager"))
                .bearer_auth(TOKEN)
                .body(body.to_string())
                .send()
                .await
                .unwrap();
            assert_eq!(response.status(), 200);
        }
        if !published && cycle >= 2 {
            // Publish through the review page, as an operator would.
            let token = signer.sign(&samsa_relay::links::LinkClaims {
                purpose: samsa_relay::links::LinkPurpose::Review {
                    draft_id: 1,
                    version: 1,
                },
                operator: "anna@example.org".to_owned(),
                expires_at: jiff::Timestamp::now().as_second() + 3600,
            });
            let url = format!("{base}/ops/r/{token}");
            let page = client.get(&url).send().await.unwrap();
            if page.status() == 200 {
                let html = page.text().await.unwrap();
                if let Some(start) = html.find("name=\"csrf\" value=\"") {
                    let csrf = html[start + 19..].split('"').next().unwrap().to_owned();
                    let version = html
                        .find("name=\"version\" value=\"")
                        .map(|at| html[at + 22..].split('"').next().unwrap().to_owned())
                        .unwrap_or_else(|| "1".to_owned());
                    let form: String = url::form_urlencoded::Serializer::new(String::new())
                        .extend_pairs([
                            ("csrf", csrf.as_str()),
                            ("version", version.as_str()),
                            ("level", "1"),
                            ("channels", "banner"),
                            ("channels", "email"),
                            ("action", "publish"),
                        ])
                        .finish();
                    let answer = client
                        .post(&url)
                        .header("content-type", "application/x-www-form-urlencoded")
                        .body(form)
                        .send()
                        .await
                        .unwrap();
                    published = answer.text().await.unwrap().contains("<h1>Publicerat</h1>");
                }
            }
        }
        // Kill at a random moment: while drafting, confirming or delivering.
        tokio::time::sleep(Duration::from_millis(fastrand::u64(5..120))).await;
        drop(relay);
        n_kills += 1;
        assert!(
            started.elapsed() < Duration::from_secs(300),
            "bounded in time"
        );
    }
    assert!(published, "the notice was published in one of the cycles");

    // A last run without kills lets the outbox drain.
    let port = common::free_port();
    let relay = start(&config_file, port, &client).await;
    let delivered = common::eventually(
        "every recipient has the notice",
        Duration::from_secs(60),
        || async {
            let (per_recipient, _) = recipients_of(&mail_folder);
            (per_recipient.len() == N_RECIPIENTS).then_some(per_recipient)
        },
    )
    .await;
    drop(relay);
    let (_, message_ids) = recipients_of(&mail_folder);
    let n_duplicates: usize = delivered.values().map(|count| count - 1).sum();
    println!(
        "crash/publish: {n_kills} SIGKILLs during drafting, review and delivery; {N_RECIPIENTS} recipients all \
         delivered; {n_duplicates} duplicate messages (sends in flight at a kill), {} distinct Message-IDs",
        message_ids.len()
    );
    assert_eq!(
        message_ids.len(),
        N_RECIPIENTS,
        "a resend is the same message (same Message-ID)"
    );
    // At most the sends in flight at each kill can repeat: concurrency 4 per kill.
    assert!(
        n_duplicates <= n_kills * 4,
        "{n_duplicates} duplicates for {n_kills} kills"
    );
    let storage = open_storage(folder.path()).await;
    let outbox = storage.outbox(Some(1)).await.unwrap();
    assert!(
        outbox.iter().all(|row| row.state == "sent"),
        "every outbox row ends sent"
    );
    assert_eq!(
        storage.published_notices(None, 10).await.unwrap().len(),
        1,
        "published once"
    );
    storage.close().await;
}
