//! Several replicas over one PostgreSQL, with real processes and no mocks: three relay
//! processes (the real binary) sharing one real PostgreSQL server, two real Alertmanagers
//! peered as an HA cluster (`--cluster.peer`) that each send to a different replica, and
//! the real SMTP test server. Replicas are killed with SIGKILL and the database is
//! stopped, each in a test of its own.
//!
//! Publishing is done through the `Publisher` of in-process apps built on the same
//! database (an operator's POST reaches one replica's `Publisher` the same way; the HTTP
//! review flow itself is covered by `ops.rs` and `browser.rs`).
//!
//! Run alone with `cargo test --features system-tests --test it cluster:: -- --nocapture`:
//! each test prints its figures (failover time, duplicates, 503s).

use crate::common;

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use common::smtp_sink::SmtpSink;
use common::{
    ChildProcess, LINK_SECRET, PostgresServer, TOKEN, alert, debian_binary, eventually, free_port,
    local_client, payload, publish_request,
};
use samsa_relay::config::Config;
use samsa_relay::notice::NoticeKind;
use samsa_relay::storage::Storage;
use serde_json::{Value, json};

/// How long one step (a program starting, an alert travelling, a delivery) may take.
const STEP: Duration = Duration::from_secs(60);
/// The lease time of the test replicas: short, so that a failover is quick.
const LEASE_TTL: &str = "2s";
const OPERATORS: [&str; 2] = ["anna@example.org", "bertil@example.org"];

/// Actor ids of the shipped inventory, in three sub-regions.
const ACTORS: [&str; 20] = [
    "kommun-bengtsfors",
    "kommun-dals-ed",
    "kommun-fargelanda",
    "kommun-lysekil",
    "kommun-mellerud",
    "kommun-munkedal",
    "kommun-orust",
    "kommun-sotenas",
    "kommun-stromstad",
    "kommun-tanum",
    "kommun-trollhattan",
    "kommun-uddevalla",
    "kommun-vanersborg",
    "kommun-amal",
    "sjukhus-nal",
    "sjukhus-uddevalla",
    "kommun-ale",
    "kommun-alingsas",
    "kommun-goteborg",
    "kommun-harryda",
];

/// The cluster of one test: the database, the SMTP server and the replicas' shared config.
/// Fields drop in this order: the replicas (printing their logs on failure) before the
/// database and the folder that holds the logs.
struct Cluster {
    replicas: Vec<Option<Replica>>,
    postgres: PostgresServer,
    sink: SmtpSink,
    config_text: String,
    folder: tempfile::TempDir,
}

/// One relay process.
struct Replica {
    name: String,
    address: String,
    process: ChildProcess,
}

fn config_text(database_url: &str, sink: &SmtpSink, recipients: &[String], extra: &str) -> String {
    let operators: String = OPERATORS
        .iter()
        .enumerate()
        .map(|(index, email)| {
            format!(
                "[[operators]]\nname = \"Operatör {index}\"\nemail = \"{email}\"\ngroups = [\"on-duty\"]\n"
            )
        })
        .collect();
    format!(
        r#"
[server]
listen = "127.0.0.1:0"
public_url = "http://127.0.0.1:9095"
shutdown_grace = "5s"

[database]
url = "{database_url}"

[webhook]
token = "{TOKEN}"

[smtp]
url = "{smtp}"
from = "SAMSA driftinformation <driftinfo@example.org>"
starttls = "none"
timeout = "3s"
pool_max_connections = 8

[links]
secret = "{LINK_SECRET}"

[cluster]
lease_ttl = "{LEASE_TTL}"

{operators}
[channels.banner]
content = "banner"
transport = "banner"

[channels.email]
content = "email"
transport = "email"
recipients = {recipients:?}
concurrency = 8

[plan]
level_1 = ["banner", "email"]
level_2 = ["banner", "email"]
level_3 = ["banner", "email"]
{extra}
"#,
        smtp = sink.url(),
    )
}

impl Cluster {
    /// A PostgreSQL server with an empty database, the SMTP server, and `n` replicas
    /// started at the same moment (so that their migrations race).
    async fn start(n: usize, recipients: &[String], extra: &str) -> Cluster {
        let postgres = PostgresServer::start().await;
        let url = postgres.create_database("relay").await;
        let sink = SmtpSink::start();
        let folder = tempfile::tempdir().expect("temporary folder");
        let mut cluster = Cluster {
            config_text: config_text(&url, &sink, recipients, extra),
            postgres,
            sink,
            folder,
            replicas: Vec::new(),
        };
        for index in 0..n {
            let replica = cluster.spawn(index);
            cluster.replicas.push(Some(replica));
        }
        let client = local_client();
        for replica in cluster.replicas.iter_mut().flatten() {
            let url = format!("{}/readyz", replica.address);
            replica
                .process
                .wait_until_answers(&client, &url, STEP)
                .await;
        }
        cluster
    }

    fn spawn(&self, index: usize) -> Replica {
        let name = format!("replica-{index}");
        let config_file = self.folder.path().join("relay.toml");
        if !config_file.exists() {
            std::fs::write(&config_file, &self.config_text).expect("write the config");
        }
        let port = free_port();
        let mut command = Command::new(env!("CARGO_BIN_EXE_samsa-relay"));
        command
            .args(["serve", "--config"])
            .arg(&config_file)
            .env("SAMSA_RELAY_LISTEN", format!("127.0.0.1:{port}"))
            .env("SAMSA_RELAY_REPLICA_NAME", &name)
            .env("RUST_LOG", "info,sqlx=warn");
        let log = self.folder.path().join(format!("{name}.log"));
        Replica {
            address: format!("http://127.0.0.1:{port}"),
            process: ChildProcess::spawn(&name, command, log),
            name,
        }
    }

    fn replica(&self, index: usize) -> &Replica {
        self.replicas[index].as_ref().expect("a running replica")
    }

    /// SIGKILL to one replica (by its PID, through the process handle).
    fn kill(&mut self, index: usize) {
        drop(self.replicas[index].take());
    }

    /// The config as the replicas read it.
    fn config(&self) -> Config {
        Config::from_toml(&self.config_text, &BTreeMap::new()).expect("the test config is valid")
    }

    async fn storage(&self) -> Storage {
        Storage::open(&self.config().database)
            .await
            .expect("the database opens")
    }

    /// An in-process app on the same database, not running: its `Publisher` stands for
    /// an operator's POST to one more replica.
    async fn publishing_app(&self) -> samsa_relay::app::App {
        samsa_relay::app::App::build(self.config())
            .await
            .expect("an app on the shared database builds")
    }

    /// Which replica holds `lease` now.
    async fn lease_holder(&self, storage: &Storage, lease: &str) -> Option<usize> {
        let leases = storage.leases().await.ok()?;
        let now = jiff::Timestamp::now();
        let lease = leases
            .into_iter()
            .find(|record| record.name == lease && record.expires_at > now)?;
        self.replicas.iter().position(|replica| {
            replica
                .as_ref()
                .is_some_and(|replica| lease.holder.starts_with(&format!("{}/", replica.name)))
        })
    }

    /// The sum over the running replicas of one metric series.
    async fn metric_sum(&self, series: &str) -> f64 {
        let client = local_client();
        let mut sum = 0.0;
        for replica in self.replicas.iter().flatten() {
            let Ok(response) = client
                .get(format!("{}/metrics", replica.address))
                .send()
                .await
            else {
                continue;
            };
            let text = response.text().await.unwrap_or_default();
            sum += text
                .lines()
                .find_map(|line| line.strip_prefix(series)?.trim().parse::<f64>().ok())
                .unwrap_or(0.0);
        }
        sum
    }
}

/// Notice mails (not the operators' review mails) per recipient, and their Message-IDs.
fn notices_received(sink: &SmtpSink) -> (BTreeMap<String, usize>, BTreeSet<String>) {
    let mut per_recipient: BTreeMap<String, usize> = BTreeMap::new();
    let mut message_ids = BTreeSet::new();
    for message in sink.messages() {
        if message
            .header("subject")
            .is_some_and(|subject| subject.contains("Granska"))
        {
            continue;
        }
        for recipient in message.rcpt_tos() {
            if recipient.ends_with("@kommun.example") {
                *per_recipient.entry(recipient.to_owned()).or_default() += 1;
            }
        }
        if let Some(id) = message.header("message-id") {
            message_ids.insert(id.to_owned());
        }
    }
    (per_recipient, message_ids)
}

/// Review mails per operator.
fn review_mails(sink: &SmtpSink) -> BTreeMap<String, usize> {
    let mut per_operator: BTreeMap<String, usize> = BTreeMap::new();
    for message in sink.messages() {
        if message
            .header("subject")
            .is_some_and(|subject| subject.contains("Granska"))
        {
            for recipient in message.rcpt_tos() {
                *per_operator.entry(recipient.to_owned()).or_default() += 1;
            }
        }
    }
    per_operator
}

fn recipients(n: usize) -> Vec<String> {
    (0..n)
        .map(|index| format!("support{index}@kommun.example"))
        .collect()
}

fn outage_alerts(actors: &[&str], status: &str) -> Vec<Value> {
    actors
        .iter()
        .map(|actor| {
            alert(
                &format!("fp-{actor}"),
                status,
                json!({"alertname": "SamsaLoginDown", "service": "samsa", "actor": actor}),
                "2026-12-03T04:10:00Z",
            )
        })
        .collect()
}

async fn post_webhook(
    client: &reqwest::Client,
    address: &str,
    body: &Value,
) -> reqwest::StatusCode {
    match client
        .post(format!("{address}/webhook/alertmanager"))
        .bearer_auth(TOKEN)
        .timeout(Duration::from_secs(30))
        .body(body.to_string())
        .send()
        .await
    {
        Ok(response) => response.status(),
        Err(_) => reqwest::StatusCode::SERVICE_UNAVAILABLE,
    }
}

/// Waits for the one open outage incident; returns its id.
async fn one_outage_incident(storage: &Storage) -> i64 {
    eventually("one outage incident", STEP, || async {
        let incidents = storage.incidents().await.ok()?;
        let outages: Vec<_> = incidents
            .iter()
            .filter(|incident| incident.kind == "outage")
            .collect();
        (outages.len() == 1).then(|| outages[0].incident_id)
    })
    .await
}

/// Publishes the pending draft of `kind` through an in-process app on the shared database.
async fn publish(cluster: &Cluster, incident_id: i64, kind: NoticeKind) {
    let app = cluster.publishing_app().await;
    let storage = &app.state().storage;
    let (draft_id, version, level) = eventually("a pending draft", STEP, || async {
        let drafts = storage.drafts(incident_id).await.ok()?;
        let draft = drafts
            .into_iter()
            .find(|draft| draft.state == "pending" && draft.kind == kind)?;
        let version = draft.versions.last()?;
        let input: samsa_relay::notice::NoticeInput =
            serde_json::from_value(version.input.clone()).expect("stored notice input");
        Some((draft.draft_id, version.version, input.classification.level))
    })
    .await;
    app.state()
        .publisher
        .publish(&publish_request(
            draft_id,
            version,
            level,
            &["banner", "email"],
        ))
        .await
        .expect("the draft publishes");
}

/// Waits until every recipient has the notice, then a little longer for late duplicates.
async fn every_recipient_has_it(sink: &SmtpSink, recipients: &[String]) -> BTreeMap<String, usize> {
    eventually(
        "every recipient has the notice",
        Duration::from_secs(120),
        || async {
            let (per_recipient, _) = notices_received(sink);
            (per_recipient.len() == recipients.len()).then_some(())
        },
    )
    .await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    notices_received(sink).0
}

/// An Alertmanager of an HA pair: its own cluster port, peering with the other's, sending
/// every alert to `relay_address` within a second.
struct Alertmanager {
    address: String,
    _process: ChildProcess,
}

fn start_alertmanager(
    folder: &Path,
    name: &str,
    relay_address: &str,
    cluster_port: u16,
    peer_port: u16,
) -> Alertmanager {
    let binary = debian_binary("prometheus-alertmanager", "prometheus-alertmanager");
    let token_path = folder.join(format!("{name}-token"));
    std::fs::write(&token_path, format!("{TOKEN}\n")).expect("write the token file");
    let config = format!(
        r#"
route:
  receiver: samsa-relay
  group_by: [service]
  group_wait: 1s
  group_interval: 1s
  repeat_interval: 4h
receivers:
  - name: samsa-relay
    webhook_configs:
      - url: "{relay_address}/webhook/alertmanager"
        send_resolved: true
        http_config:
          authorization:
            credentials_file: {token}
"#,
        token = token_path.display()
    );
    let config_path = folder.join(format!("{name}.yml"));
    std::fs::write(&config_path, config).expect("write the Alertmanager config");
    let storage = folder.join(format!("{name}-data"));
    std::fs::create_dir_all(&storage).expect("storage folder");
    let port = free_port();
    let mut command = Command::new(binary);
    command
        .arg(format!("--config.file={}", config_path.display()))
        .arg(format!("--storage.path={}", storage.display()))
        .arg(format!("--web.listen-address=127.0.0.1:{port}"))
        .arg(format!("--cluster.listen-address=127.0.0.1:{cluster_port}"))
        .arg(format!("--cluster.peer=127.0.0.1:{peer_port}"))
        .arg("--cluster.peer-timeout=2s");
    let process = ChildProcess::spawn(name, command, folder.join(format!("{name}.log")));
    Alertmanager {
        address: format!("http://127.0.0.1:{port}"),
        _process: process,
    }
}

/// Posts alerts to an Alertmanager's API v2, as Prometheus sends them to every member.
async fn post_alerts(client: &reqwest::Client, alertmanager: &Alertmanager, actors: &[&str]) {
    let alerts: Vec<Value> = actors
        .iter()
        .map(|actor| {
            json!({
                "labels": {"alertname": "SamsaLoginDown", "service": "samsa", "actor": actor},
                "annotations": {"summary": "SAMSA login page unreachable"},
                "startsAt": jiff::Timestamp::now().to_string(),
            })
        })
        .collect();
    let response = client
        .post(format!("{}/api/v2/alerts", alertmanager.address))
        .json(&alerts)
        .send()
        .await
        .expect("Alertmanager answers");
    assert!(
        response.status().is_success(),
        "Alertmanager took the alerts: {}",
        response.status()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_alertmanagers_and_three_replicas_make_one_incident_one_review_mail_each_and_one_notice_per_recipient()
 {
    let recipients = recipients(20);
    let cluster = Cluster::start(3, &recipients, "").await;
    let client = local_client();
    let folder = tempfile::tempdir().expect("temporary folder");
    let (first_port, second_port) = (free_port(), free_port());
    let first = start_alertmanager(
        folder.path(),
        "alertmanager-1",
        &cluster.replica(0).address,
        first_port,
        second_port,
    );
    let second = start_alertmanager(
        folder.path(),
        "alertmanager-2",
        &cluster.replica(1).address,
        second_port,
        first_port,
    );
    for alertmanager in [&first, &second] {
        eventually("Alertmanager is ready", STEP, || async {
            let response = client
                .get(format!("{}/-/ready", alertmanager.address))
                .send()
                .await
                .ok()?;
            response.status().is_success().then_some(())
        })
        .await;
    }
    // The pair gossips: each sees the other as a peer.
    eventually("the Alertmanagers are peered", STEP, || async {
        let status: Value = client
            .get(format!("{}/api/v2/status", first.address))
            .send()
            .await
            .ok()?
            .json()
            .await
            .ok()?;
        (status["cluster"]["peers"].as_array()?.len() == 2).then_some(())
    })
    .await;

    // Prometheus sends every alert to both members of the pair.
    for alertmanager in [&first, &second] {
        post_alerts(&client, alertmanager, &ACTORS).await;
    }
    let storage = cluster.storage().await;
    let incident_id = one_outage_incident(&storage).await;
    eventually("every operator has a review mail", STEP, || async {
        let mails = review_mails(&cluster.sink);
        OPERATORS
            .iter()
            .all(|operator| mails.contains_key(*operator))
            .then_some(())
    })
    .await;
    // The webhooks of both Alertmanagers have been processed, and the notifier ran more
    // than once on whichever replica held the timers lease.
    eventually("every receipt is processed", STEP, || async {
        (storage.n_unprocessed_receipts().await.ok()? == 0).then_some(())
    })
    .await;
    tokio::time::sleep(Duration::from_secs(3)).await;
    let incidents = storage.incidents().await.expect("incidents");
    assert_eq!(
        incidents
            .iter()
            .filter(|incident| incident.kind == "outage")
            .count(),
        1,
        "one outage, one incident: {incidents:?}"
    );
    let mails = review_mails(&cluster.sink);
    for operator in OPERATORS {
        assert_eq!(mails.get(operator), Some(&1), "review mails: {mails:?}");
    }
    let receipts = storage.receipts().await.expect("receipts");
    println!(
        "cluster: {} webhooks from the Alertmanager pair stored, one incident, one review mail per operator",
        receipts.len()
    );

    // Two operators publish the same draft at the same moment on two replicas: it is
    // published once.
    let (draft_id, version, level) = eventually("a pending draft", STEP, || async {
        let drafts = storage.drafts(incident_id).await.ok()?;
        let draft = drafts.into_iter().find(|draft| draft.state == "pending")?;
        let version = draft.versions.last()?;
        let input: samsa_relay::notice::NoticeInput =
            serde_json::from_value(version.input.clone()).ok()?;
        Some((draft.draft_id, version.version, input.classification.level))
    })
    .await;
    let (one, other) = (
        cluster.publishing_app().await,
        cluster.publishing_app().await,
    );
    let request = publish_request(draft_id, version, level, &["banner", "email"]);
    let (first_answer, second_answer) = tokio::join!(
        one.state().publisher.publish(&request),
        other.state().publisher.publish(&request),
    );
    assert_eq!(
        u8::from(first_answer.is_ok()) + u8::from(second_answer.is_ok()),
        1,
        "exactly one publish succeeds: {:?} / {:?}",
        first_answer.as_ref().map(|_| "published"),
        second_answer.as_ref().map(|_| "published"),
    );
    let delivered = every_recipient_has_it(&cluster.sink, &recipients).await;
    assert!(
        delivered.values().all(|count| *count == 1),
        "every recipient exactly once: {delivered:?}"
    );
    // Every replica answers the banner the same.
    for index in 0..3 {
        let banner: Value = client
            .get(format!(
                "{}/public/banner.json",
                cluster.replica(index).address
            ))
            .send()
            .await
            .expect("the banner answers")
            .json()
            .await
            .expect("banner JSON");
        assert_eq!(banner["active"], true, "replica {index}: {banner}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killing_the_correlation_lease_holder_hands_its_role_to_another_replica() {
    let cluster_recipients = recipients(3);
    let mut cluster = Cluster::start(3, &cluster_recipients, "").await;
    let client = local_client();
    let storage = cluster.storage().await;
    let holder = eventually("a replica holds the correlation lease", STEP, || async {
        cluster.lease_holder(&storage, "correlation").await
    })
    .await;
    let other = (holder + 1) % 3;
    let body = payload("firing", outage_alerts(&ACTORS[..2], "firing"));
    assert_eq!(
        post_webhook(&client, &cluster.replica(other).address, &body).await,
        200
    );
    let incident_id = one_outage_incident(&storage).await;

    cluster.kill(holder);
    let killed_at = Instant::now();
    // The next step arrives at a survivor and is processed once another replica has
    // taken the lease.
    let body = payload("firing", outage_alerts(&ACTORS[..4], "firing"));
    assert_eq!(
        post_webhook(&client, &cluster.replica(other).address, &body).await,
        200
    );
    eventually("the webhook after the kill is processed", STEP, || async {
        (storage.n_unprocessed_receipts().await.ok()? == 0).then_some(())
    })
    .await;
    let failover = killed_at.elapsed();
    let new_holder = cluster
        .lease_holder(&storage, "correlation")
        .await
        .expect("a survivor holds the lease");
    assert_ne!(new_holder, holder);
    // The same incident grew: one outage stays one incident across the failover.
    assert_eq!(one_outage_incident(&storage).await, incident_id);
    let takeovers = cluster
        .metric_sum("samsa_relay_lease_acquisitions_total{lease=\"correlation\"}")
        .await;
    assert!(takeovers >= 1.0, "the survivor counted its takeover");
    println!(
        "cluster: correlation lease holder killed; replica-{new_holder} took over and processed the next webhook after {:.2} s (lease_ttl {LEASE_TTL})",
        failover.as_secs_f64()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killing_a_delivering_replica_mid_delivery_loses_no_recipient() {
    const N_RECIPIENTS: usize = 500;
    let recipients = recipients(N_RECIPIENTS);
    let mut cluster = Cluster::start(3, &recipients, "").await;
    let client = local_client();
    let storage = cluster.storage().await;
    let body = payload("firing", outage_alerts(&ACTORS[..1], "firing"));
    assert_eq!(
        post_webhook(&client, &cluster.replica(0).address, &body).await,
        200
    );
    let incident_id = one_outage_incident(&storage).await;
    publish(&cluster, incident_id, NoticeKind::Initial).await;
    // Mid-delivery: hold every send at the end of its data for a moment, so that each
    // replica has sends in flight, and kill one of them then.
    eventually("the delivery is under way", STEP, || async {
        (notices_received(&cluster.sink).0.len() >= N_RECIPIENTS / 5).then_some(())
    })
    .await;
    cluster.sink.control(json!({"stall_data": true}));
    tokio::time::sleep(Duration::from_millis(500)).await;
    let victim = 2;
    let before_kill = notices_received(&cluster.sink).0.len();
    cluster.kill(victim);
    tokio::time::sleep(Duration::from_millis(300)).await;
    cluster.sink.control(json!({"stall_data": false}));

    // The killed replica's sends in flight stay leased until their lease runs out; then a
    // survivor takes them over. Count once every row is sent.
    every_recipient_has_it(&cluster.sink, &recipients).await;
    eventually(
        "every outbox row is sent",
        Duration::from_secs(120),
        || async {
            let outbox = storage.outbox(Some(incident_id)).await.ok()?;
            outbox
                .iter()
                .filter(|row| row.channel == "email")
                .all(|row| row.state == "sent")
                .then_some(())
        },
    )
    .await;
    tokio::time::sleep(Duration::from_secs(1)).await;
    let (delivered, message_ids) = notices_received(&cluster.sink);
    assert_eq!(
        delivered.len(),
        N_RECIPIENTS,
        "every recipient has the notice"
    );
    let n_duplicates: usize = delivered.values().map(|count| count - 1).sum();
    let reclaimed = cluster
        .metric_sum("samsa_relay_deliveries_reclaimed_total{channel=\"email\"}")
        .await;
    println!(
        "cluster: replica-{victim} killed with {before_kill} of {N_RECIPIENTS} recipients served; all delivered, \
         {n_duplicates} duplicates, {reclaimed} deliveries reclaimed by the survivors"
    );
    assert_eq!(
        message_ids.len(),
        N_RECIPIENTS,
        "a resend is the same message (same Message-ID)"
    );
    // The killed replica had sends in flight, and the survivors took them over.
    assert!(reclaimed >= 1.0, "no delivery was taken over");
    // Only the killed replica's sends in flight can repeat: its channel concurrency.
    assert!(
        reclaimed <= 8.0,
        "{reclaimed} reclaimed, more than one replica's sends in flight"
    );
    assert!(
        n_duplicates as f64 <= reclaimed,
        "duplicates ({n_duplicates}) are among the reclaimed deliveries ({reclaimed})"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_stopped_for_30_seconds_during_a_storm_loses_nothing_acknowledged() {
    const STORM: Duration = Duration::from_secs(45);
    const MAX_WEBHOOKS: usize = 20_000;
    let mut cluster = Cluster::start(3, &recipients(2), "").await;
    let client = local_client();
    let addresses: Vec<String> = (0..3)
        .map(|index| cluster.replica(index).address.clone())
        .collect();
    let storm = {
        let client = client.clone();
        tokio::spawn(async move {
            let started = Instant::now();
            let mut acknowledged = BTreeSet::new();
            let mut n_unavailable = 0usize;
            let mut n_other = 0usize;
            let mut sent = 0usize;
            while started.elapsed() < STORM && sent < MAX_WEBHOOKS {
                let mut batch = Vec::new();
                for lane in 0..8 {
                    let address = addresses[(sent + lane) % addresses.len()].clone();
                    let fingerprint = format!("storm-{}", sent + lane);
                    let client = client.clone();
                    batch.push(tokio::spawn(async move {
                        let body = payload(
                            "firing",
                            vec![alert(
                                &fingerprint,
                                "firing",
                                json!({"alertname": "SamsaLoginDown", "service": "samsa", "actor": "kommun-boras"}),
                                "2026-12-03T04:10:00Z",
                            )],
                        );
                        (fingerprint, post_webhook(&client, &address, &body).await)
                    }));
                }
                sent += batch.len();
                for task in batch {
                    let (fingerprint, status) = task.await.expect("a post");
                    if status.is_success() {
                        acknowledged.insert(fingerprint);
                    } else if status == reqwest::StatusCode::SERVICE_UNAVAILABLE {
                        n_unavailable += 1;
                    } else {
                        n_other += 1;
                    }
                }
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            (acknowledged, n_unavailable, n_other, sent)
        })
    };
    tokio::time::sleep(Duration::from_secs(5)).await;
    cluster.postgres.stop();
    let stopped_at = Instant::now();
    tokio::time::sleep(Duration::from_secs(3)).await;
    // Not ready while the database is away.
    let readyz = client
        .get(format!("{}/readyz", cluster.replica(0).address))
        .timeout(Duration::from_secs(30))
        .send()
        .await
        .expect("readyz answers");
    assert_eq!(readyz.status(), 503, "/readyz fails without the database");
    tokio::time::sleep(Duration::from_secs(30).saturating_sub(stopped_at.elapsed())).await;
    cluster.postgres.start_again().await;
    let (acknowledged, n_unavailable, n_other, sent) = storm.await.expect("the storm");
    assert_eq!(n_other, 0, "every refusal is a 503");
    assert!(
        n_unavailable > 0,
        "webhooks during the stop were refused with 503"
    );

    let storage = cluster.storage().await;
    eventually("every acknowledged webhook is processed", STEP, || async {
        (storage.n_unprocessed_receipts().await.ok()? == 0).then_some(())
    })
    .await;
    let stored: BTreeSet<String> = storage
        .alerts()
        .await
        .expect("alerts")
        .into_iter()
        .map(|alert| alert.fingerprint)
        .collect();
    let lost: Vec<&String> = acknowledged.difference(&stored).collect();
    assert!(lost.is_empty(), "acknowledged but lost: {lost:?}");
    for index in 0..3 {
        let replica = cluster.replica(index);
        let ready = client
            .get(format!("{}/readyz", replica.address))
            .send()
            .await
            .expect("readyz answers");
        assert_eq!(ready.status(), 200, "{} is ready again", replica.name);
    }
    println!(
        "cluster: PostgreSQL stopped 30 s during a storm of {sent} webhooks: {} acknowledged and all processed, {n_unavailable} answered 503",
        acknowledged.len()
    );
}
