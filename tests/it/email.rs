//! Email delivery against a real SMTP server: `tests/support/smtp_sink.py` (aiosmtpd, the
//! Debian package python3-aiosmtpd), started as a child process on a free local port
//! (`common::smtp_sink`). It records each message it accepts, parsed by Python's own email
//! package, and can refuse recipients (4xx a number of times, or 5xx always) or stall
//! after the data. Delivery over TLS is in tests/email_tls.rs.
//!
//! Tests that need fast retries build the app without running it and drive their own
//! `DeliveryWorker` with a short retry policy, one step at a time; the others run the
//! whole app.

use crate::common;

use std::time::Duration;

use common::TestApp;
use samsa_relay::classify::Level;
use samsa_relay::delivery::email::message_id;
use samsa_relay::http::AppState;
use samsa_relay::publishing::{Publication, PublishRequest};
use samsa_relay::storage::OutboxRecord;
use serde_json::json;

// The tests against the real SMTP server (system tier).
#[cfg(feature = "system-tests")]
use {
    common::smtp_sink::{Received, SmtpSink, lines},
    samsa_relay::app::App,
    samsa_relay::delivery::email::EmailTransport,
    samsa_relay::delivery::{ChannelSender, DeliveryWorker, RetryPolicy, StepCounts},
    samsa_relay::storage::PublishedNoticeRecord,
    std::collections::{BTreeSet, HashSet},
};

const DEADLINE: Duration = Duration::from_secs(30);
#[cfg(feature = "system-tests")]
const FROM_ADDRESS: &str = "noreply.samsa@samsa.example";
const FROM: &str = "SAMSA förvaltning <noreply.samsa@samsa.example>";
const REPLY_TO_ADDRESS: &str = "info.samsa@samsa.example";

#[cfg(feature = "system-tests")]
#[tokio::test]
async fn every_recipient_of_a_list_gets_exactly_one_message_with_the_right_headers() {
    const N_RECIPIENTS: usize = 50;
    let sink = SmtpSink::start();
    let lists = tempfile::tempdir().unwrap();
    let csv = lists.path().join("kontakter.csv");
    let mut contacts = String::from("Organisation;Roll;E-post\n");
    for index in 0..N_RECIPIENTS {
        contacts.push_str(&format!(
            "Kommun {index};IT-support;\"it-{index:02}@kommun-{index:02}.example\"\n"
        ));
    }
    std::fs::write(&csv, contacts).unwrap();
    let app = common::spawn_app_with_smtp(
        &smtp_table(&sink.url(), "5s"),
        &email_channel(&format!("recipients_file = \"{}\"", csv.display())),
    )
    .await;

    let incident_id = open_incident_over_http(&app).await;
    let publication = publish_pending_draft(&app.state, incident_id).await;
    assert_eq!(publication.n_deliveries, N_RECIPIENTS);
    let outbox = all_settled(&app.state, incident_id).await;

    assert!(outbox.iter().all(|row| row.state == "sent"), "{outbox:#?}");
    assert!(outbox.iter().all(|row| row.attempts == 1), "{outbox:#?}");
    let notice = published_notice(&app.state, publication.notice_id).await;
    let messages = sink.messages();
    assert_eq!(messages.len(), N_RECIPIENTS);
    let mut message_ids = HashSet::new();
    for row in &outbox {
        let received: Vec<&Received> = messages
            .iter()
            .filter(|message| message.rcpt_tos() == [row.recipient.as_str()])
            .collect();
        assert_eq!(
            received.len(),
            1,
            "{} got {}",
            row.recipient,
            received.len()
        );
        let message = received[0];
        assert_eq!(message.mail_from(), FROM_ADDRESS);
        assert_eq!(message.header("from"), Some(FROM));
        assert_eq!(message.header("to"), Some(row.recipient.as_str()));
        assert!(
            message
                .header("reply-to")
                .is_some_and(|reply_to| reply_to.contains(REPLY_TO_ADDRESS)),
            "{:?}",
            message.header("reply-to")
        );
        assert_eq!(
            message.header("subject"),
            Some(notice.rendered.email_subject.as_str())
        );
        assert_eq!(
            message.header("message-id"),
            Some(message_id(&row.delivery_id, "samsa.example").as_str())
        );
        assert!(message_ids.insert(message.header("message-id").unwrap().to_owned()));
        assert_eq!(message.header("auto-submitted"), Some("auto-generated"));
        assert_eq!(
            message.header("x-samsa-incident"),
            Some(incident_id.to_string().as_str())
        );
        assert!(message.header("date").is_some());
        assert_eq!(message.content_type(), "multipart/alternative");
        assert_eq!(
            message.parts(),
            vec![
                ("text/plain".to_owned(), lines(&notice.rendered.email_text)),
                ("text/html".to_owned(), lines(&notice.rendered.email_html)),
            ]
        );
        assert!(message.defects().is_empty(), "{:?}", message.defects());
    }
    assert_eq!(
        message_ids.len(),
        N_RECIPIENTS,
        "one Message-ID per recipient"
    );
    // The pool hands connections on: fewer connections than messages.
    let n_connections = messages
        .iter()
        .map(Received::peer)
        .collect::<BTreeSet<_>>()
        .len();
    assert!(n_connections < N_RECIPIENTS, "{n_connections} connections");
    assert_eq!(
        app.metric(r#"samsa_relay_deliveries_total{channel="email",outcome="sent"}"#)
            .await,
        N_RECIPIENTS as f64
    );
    assert_eq!(
        app.metric(r#"samsa_relay_deliveries_total{channel="email",outcome="retry"}"#)
            .await,
        0.0
    );
    app.stop().await;
}

#[cfg(feature = "system-tests")]
#[tokio::test]
async fn a_4xx_answer_is_retried_until_delivered_and_the_counts_reconcile() {
    let sink = SmtpSink::start();
    sink.control(json!({"rules": [
        {"pattern": "^slow@", "reply": "451 4.7.1 Greylisted, try again later", "times": 2}
    ]}));
    let direct = DirectApp::build(
        &sink,
        "5s",
        r#"recipients = ["a@kommun.example", "b@kommun.example", "c@kommun.example", "d@kommun.example", "slow@kommun.example"]"#,
    )
    .await;
    let incident_id = direct.open_incident().await;
    publish_pending_draft(direct.state(), incident_id).await;

    let first = direct.worker.try_deliver_next().await.unwrap();
    assert_eq!(
        first,
        StepCounts {
            sent: 4,
            retried: 1,
            failed: 0
        }
    );
    let slow = outbox_row(direct.state(), incident_id, "slow@kommun.example").await;
    assert_eq!((slow.state.as_str(), slow.attempts), ("pending", 1));
    let last_error = slow.last_error.unwrap_or_default();
    assert!(
        last_error.contains("451") && last_error.contains("Greylisted, try again later"),
        "{last_error}"
    );

    let rest = direct.deliver_until_settled(incident_id).await;
    let outbox = direct
        .state()
        .storage
        .outbox(Some(incident_id))
        .await
        .unwrap();
    assert!(outbox.iter().all(|row| row.state == "sent"), "{outbox:#?}");
    let slow = outbox_row(direct.state(), incident_id, "slow@kommun.example").await;
    assert_eq!(slow.attempts, 3);
    assert_eq!(slow.last_error, None);
    assert_eq!(first.retried + rest.retried, 2);

    let rejections = sink.rejections();
    assert_eq!(rejections.len(), 2, "{rejections:?}");
    assert!(
        rejections
            .iter()
            .all(|rejection| rejection["rcpt"] == "slow@kommun.example")
    );
    let messages = sink.messages();
    for row in &outbox {
        let n_received = messages
            .iter()
            .filter(|message| message.rcpt_tos() == [row.recipient.as_str()])
            .count();
        assert_eq!(n_received, 1, "{}", row.recipient);
    }
    // Every attempt is in the outbox, in the metrics and at the server, once.
    let metrics = direct.state().metrics.render();
    let sent = sample(&metrics, "sent");
    let retried = sample(&metrics, "retry");
    assert_eq!((sent, retried, sample(&metrics, "failed")), (5, 2, 0));
    let n_attempts: i64 = outbox.iter().map(|row| row.attempts).sum();
    assert_eq!(n_attempts, sent + retried);
    assert_eq!(n_attempts as usize, messages.len() + rejections.len());
}

#[cfg(feature = "system-tests")]
#[tokio::test]
async fn a_5xx_answer_fails_the_row_with_the_server_text_until_an_operator_retries_it() {
    let sink = SmtpSink::start();
    sink.control(json!({"rules": [
        {"pattern": "^nobody@", "reply": "550 5.1.1 No such user here"}
    ]}));
    let direct = DirectApp::build(
        &sink,
        "5s",
        r#"recipients = ["a@kommun.example", "b@kommun.example", "c@kommun.example", "nobody@kommun.example"]"#,
    )
    .await;
    let incident_id = direct.open_incident().await;
    publish_pending_draft(direct.state(), incident_id).await;

    let counts = direct.deliver_until_settled(incident_id).await;
    assert_eq!(
        counts,
        StepCounts {
            sent: 3,
            retried: 0,
            failed: 1
        }
    );
    let nobody = outbox_row(direct.state(), incident_id, "nobody@kommun.example").await;
    assert_eq!((nobody.state.as_str(), nobody.attempts), ("failed", 1));
    let last_error = nobody.last_error.clone().unwrap_or_default();
    assert!(
        last_error.contains("550") && last_error.contains("No such user here"),
        "{last_error}"
    );
    let events = direct
        .state()
        .storage
        .incident_events(incident_id)
        .await
        .unwrap();
    let failed = events
        .iter()
        .find(|event| event.event == "delivery_failed")
        .expect("a delivery_failed event");
    assert_eq!(failed.detail["outbox_id"], json!(nobody.outbox_id));
    let outbox = direct
        .state()
        .storage
        .outbox(Some(incident_id))
        .await
        .unwrap();
    assert_eq!(outbox.iter().filter(|row| row.state == "sent").count(), 3);
    assert_eq!(sink.messages().len(), 3);
    let metrics = direct.state().metrics.render();
    assert_eq!(
        (sample(&metrics, "sent"), sample(&metrics, "failed")),
        (3, 1)
    );

    // The mailbox is fixed; an operator sends it again.
    sink.control(json!({"rules": []}));
    assert!(
        direct
            .state()
            .storage
            .retry_failed_delivery(nobody.outbox_id, jiff::Timestamp::now(), "Anna Operatör")
            .await
            .unwrap()
    );
    let again = outbox_row(direct.state(), incident_id, "nobody@kommun.example").await;
    assert_eq!(again.state, "pending");
    let counts = direct.deliver_until_settled(incident_id).await;
    assert_eq!(counts.sent, 1);
    let again = outbox_row(direct.state(), incident_id, "nobody@kommun.example").await;
    assert_eq!((again.state.as_str(), again.attempts), ("sent", 2));
    let received: Vec<Received> = sink
        .messages()
        .into_iter()
        .filter(|message| message.rcpt_tos() == ["nobody@kommun.example"])
        .collect();
    assert_eq!(received.len(), 1);
    let events = direct
        .state()
        .storage
        .incident_events(incident_id)
        .await
        .unwrap();
    assert!(events.iter().any(|event| event.event == "delivery_retried"));
}

#[cfg(feature = "system-tests")]
#[tokio::test]
async fn a_stalled_server_times_out_and_the_retry_uses_a_fresh_connection() {
    let sink = SmtpSink::start();
    // One send per step, in recipient order: "a-before" goes first and leaves its
    // connection in the pool.
    let direct = DirectApp::build(
        &sink,
        "2s",
        "recipients = [\"a-before@kommun.example\", \"b-stalled@kommun.example\"]\nconcurrency = 1",
    )
    .await;
    let incident_id = direct.open_incident().await;
    publish_pending_draft(direct.state(), incident_id).await;
    let before = direct.worker.try_deliver_next().await.unwrap();
    assert_eq!(before.sent, 1);

    sink.control(json!({"stall_data": true}));
    let stalled = direct.worker.try_deliver_next().await.unwrap();
    assert_eq!(stalled.retried, 1, "the timeout is transient");
    let row = outbox_row(direct.state(), incident_id, "b-stalled@kommun.example").await;
    assert_eq!((row.state.as_str(), row.attempts), ("pending", 1));
    let last_error = row.last_error.unwrap_or_default();
    assert!(last_error.contains("no answer within 2 s"), "{last_error}");

    // The server recovers and accepts the stalled message late, on the connection the
    // relay gave up on. That connection must never carry another command.
    sink.control(json!({"stall_data": false}));
    let late = common::eventually("the stalled message accepted late", DEADLINE, || async {
        sink.messages()
            .into_iter()
            .find(|message| message.stalled())
    })
    .await;
    let counts = direct.deliver_until_settled(incident_id).await;
    assert_eq!(counts.sent, 1);
    let row = outbox_row(direct.state(), incident_id, "b-stalled@kommun.example").await;
    assert_eq!((row.state.as_str(), row.attempts), ("sent", 2));

    let copies: Vec<Received> = sink
        .messages()
        .into_iter()
        .filter(|message| message.rcpt_tos() == ["b-stalled@kommun.example"])
        .collect();
    assert_eq!(copies.len(), 2, "the late copy and the retry");
    let retry = copies
        .iter()
        .find(|message| !message.stalled())
        .expect("the retry");
    assert_ne!(
        retry.peer(),
        late.peer(),
        "the retry reused the connection that timed out"
    );
    // At least once: the duplicate is the same message to the recipient's mail system.
    assert_eq!(retry.header("message-id"), late.header("message-id"));
    assert_eq!(
        retry.header("message-id"),
        Some(message_id(&row.delivery_id, "samsa.example").as_str())
    );
    let metrics = direct.state().metrics.render();
    assert_eq!(
        (sample(&metrics, "sent"), sample(&metrics, "retry")),
        (2, 1)
    );
}

/// The relay's own SMTP pool: the next send takes the idle connection, and after the
/// server restarts (the idle connection is dead) the send opens a new one at once: no
/// attempt fails.
#[cfg(feature = "system-tests")]
#[tokio::test]
async fn an_idle_connection_is_reused_and_a_dead_one_replaced_without_a_failed_send() {
    let sink = SmtpSink::start();
    // One send per step, in recipient order.
    let direct = DirectApp::build(
        &sink,
        "5s",
        "recipients = [\"a-first@kommun.example\", \"b-second@kommun.example\", \"c-after-restart@kommun.example\"]\nconcurrency = 1",
    )
    .await;
    let incident_id = direct.open_incident().await;
    publish_pending_draft(direct.state(), incident_id).await;
    for _ in 0..2 {
        let step = direct.worker.try_deliver_next().await.unwrap();
        assert_eq!((step.sent, step.retried), (1, 0));
    }
    let before = sink.messages();
    assert_eq!(before.len(), 2);
    assert_eq!(
        before[0].peer(),
        before[1].peer(),
        "the second send reused the first one's connection"
    );

    let port = sink.port();
    drop(sink);
    let sink = SmtpSink::start_on(&common::smtp_sink::SinkTls::None, port);
    let step = direct.worker.try_deliver_next().await.unwrap();
    assert_eq!(
        (step.sent, step.retried),
        (1, 0),
        "the dead idle connection was noticed before sending"
    );
    let row = outbox_row(
        direct.state(),
        incident_id,
        "c-after-restart@kommun.example",
    )
    .await;
    assert_eq!((row.state.as_str(), row.attempts), ("sent", 1));
    let after = sink.messages();
    assert_eq!(after.len(), 1);
    assert_eq!(after[0].rcpt_tos(), ["c-after-restart@kommun.example"]);
}

#[cfg(feature = "system-tests")]
#[tokio::test]
async fn the_rate_limit_never_lets_more_than_its_share_into_any_second() {
    const N_RECIPIENTS: usize = 20;
    // 600 a minute is one every 100 ms: at most 10 sends start in any one second.
    const PER_SECOND: usize = 10;
    // The limiter spaces the starts of sends; the sink sees their ends, which move with
    // each send's own latency (a new connection, a busy machine). Eleven starts may be
    // exactly 1 s apart, so a window of 1 s minus this slack must never hold eleven ends.
    // A burst of two would bring eleven ends within 0.9 s.
    const SLACK_SECONDS: f64 = 0.05;
    let sink = SmtpSink::start();
    let recipients: Vec<String> = (0..N_RECIPIENTS)
        .map(|index| format!("\"it-{index:02}@kommun.example\""))
        .collect();
    let app = common::spawn_app_with_smtp(
        &smtp_table(&sink.url(), "5s"),
        &email_channel(&format!(
            "recipients = [{}]\nrate_limit_per_minute = 600",
            recipients.join(", ")
        )),
    )
    .await;
    let incident_id = open_incident_over_http(&app).await;
    publish_pending_draft(&app.state, incident_id).await;
    let outbox = all_settled(&app.state, incident_id).await;
    assert!(outbox.iter().all(|row| row.state == "sent"), "{outbox:#?}");

    let mut times: Vec<f64> = sink.messages().iter().map(Received::received_at).collect();
    assert_eq!(times.len(), N_RECIPIENTS);
    times.sort_by(f64::total_cmp);
    for window in times.windows(PER_SECOND + 1) {
        let span = window[PER_SECOND] - window[0];
        assert!(
            span >= 1.0 - SLACK_SECONDS,
            "{} messages within {span:.3} s: {times:?}",
            PER_SECOND + 1
        );
    }
    app.stop().await;
}

#[tokio::test]
async fn the_file_transport_writes_one_message_file_per_recipient() {
    let mail = tempfile::tempdir().unwrap();
    let folder = mail.path().join("outgoing");
    let app = common::spawn_app_with_smtp(
        &format!(
            "[smtp]\nurl = \"file://{}\"\nfrom = \"{FROM}\"\nreply_to = \"{REPLY_TO_ADDRESS}\"\n",
            folder.display()
        ),
        &email_channel(
            r#"recipients = ["a@kommun.example", "b@kommun.example", "c@kommun.example"]"#,
        ),
    )
    .await;
    assert!(folder.is_dir(), "the mail folder is created at start");
    let incident_id = open_incident_over_http(&app).await;
    publish_pending_draft(&app.state, incident_id).await;
    let outbox = all_settled(&app.state, incident_id).await;
    assert!(outbox.iter().all(|row| row.state == "sent"), "{outbox:#?}");

    let files: Vec<String> = std::fs::read_dir(&folder)
        .unwrap()
        .map(|entry| std::fs::read_to_string(entry.unwrap().path()).unwrap())
        .collect();
    assert_eq!(files.len(), outbox.len());
    for row in &outbox {
        let message_id_line = format!(
            "Message-ID: {}\r\n",
            message_id(&row.delivery_id, "samsa.example")
        );
        let matching: Vec<&String> = files
            .iter()
            .filter(|file| file.contains(&message_id_line))
            .collect();
        assert_eq!(matching.len(), 1, "{}", row.recipient);
        assert!(
            matching[0].contains(&format!("To: {}\r\n", row.recipient)),
            "{}",
            matching[0]
        );
    }
    app.stop().await;
}

// ---- the relay -----------------------------------------------------------------------

#[cfg(feature = "system-tests")]
fn smtp_table(url: &str, timeout: &str) -> String {
    format!(
        "[smtp]\nurl = \"{url}\"\nfrom = \"{FROM}\"\nreply_to = \"SAMSA förvaltning <{REPLY_TO_ADDRESS}>\"\nstarttls = \"none\"\ntimeout = \"{timeout}\"\npool_max_connections = 4\n"
    )
}

/// `[channels.email]` with the given extra keys, and a plan that uses it at every level.
fn email_channel(keys: &str) -> String {
    format!(
        "[channels.email]\ncontent = \"email\"\ntransport = \"email\"\n{keys}\n\n[plan]\nlevel_1 = [\"email\"]\nlevel_2 = [\"email\"]\nlevel_3 = [\"email\"]\n"
    )
}

/// One actor down: a level 1 incident with a pending draft.
fn one_actor_down() -> String {
    common::payload(
        "firing",
        vec![common::alert(
            "e1",
            "firing",
            json!({"alertname": "SamsaLoginDown", "service": "samsa", "actor": "kommun-uddevalla"}),
            "2026-11-28T04:10:00Z",
        )],
    )
    .to_string()
}

async fn open_incident_over_http(app: &TestApp) -> i64 {
    assert_eq!(app.post_webhook(one_actor_down()).await.status(), 200);
    common::eventually("a pending draft", DEADLINE, || async {
        for incident in app.state.storage.incidents().await.unwrap() {
            let drafts = app
                .state
                .storage
                .drafts(incident.incident_id)
                .await
                .unwrap();
            if drafts.iter().any(|draft| draft.state == "pending") {
                return Some(incident.incident_id);
            }
        }
        None
    })
    .await
}

async fn publish_pending_draft(state: &AppState, incident_id: i64) -> Publication {
    let drafts = state.storage.drafts(incident_id).await.unwrap();
    let draft = drafts
        .iter()
        .find(|draft| draft.state == "pending")
        .expect("a pending draft");
    state
        .publisher
        .publish(&PublishRequest {
            draft_id: draft.draft_id,
            draft_version: draft.versions.last().expect("a version").version,
            level: Level::One,
            channels: vec!["email".to_owned()],
            decision: None,
            operator: "Anna Operatör".to_owned(),
        })
        .await
        .expect("published")
}

#[cfg(feature = "system-tests")]
async fn published_notice(state: &AppState, notice_id: i64) -> PublishedNoticeRecord {
    state
        .storage
        .published_notices(None, 100)
        .await
        .unwrap()
        .into_iter()
        .find(|notice| notice.notice_id == notice_id)
        .expect("the published notice")
}

/// The outbox once no row is pending any more.
async fn all_settled(state: &AppState, incident_id: i64) -> Vec<OutboxRecord> {
    common::eventually("every delivery settled", DEADLINE, || async {
        let outbox = state.storage.outbox(Some(incident_id)).await.unwrap();
        (!outbox.is_empty() && outbox.iter().all(|row| row.state != "pending")).then_some(outbox)
    })
    .await
}

#[cfg(feature = "system-tests")]
async fn outbox_row(state: &AppState, incident_id: i64, recipient: &str) -> OutboxRecord {
    state
        .storage
        .outbox(Some(incident_id))
        .await
        .unwrap()
        .into_iter()
        .find(|row| row.recipient == recipient)
        .unwrap_or_else(|| panic!("no outbox row for {recipient}"))
}

/// `samsa_relay_deliveries_total{channel="email",outcome=OUTCOME}` in rendered metrics.
#[cfg(feature = "system-tests")]
fn sample(metrics: &str, outcome: &str) -> i64 {
    let series = format!(r#"samsa_relay_deliveries_total{{channel="email",outcome="{outcome}"}} "#);
    metrics
        .lines()
        .find_map(|line| line.strip_prefix(&series))
        .unwrap_or_else(|| panic!("no {series} in\n{metrics}"))
        .parse()
        .unwrap()
}

/// The app built but not running, with a delivery worker for `email` that this test
/// steps itself, retrying within a fraction of a second.
#[cfg(feature = "system-tests")]
struct DirectApp {
    app: App,
    worker: DeliveryWorker,
    _folder: tempfile::TempDir,
}

#[cfg(feature = "system-tests")]
impl DirectApp {
    async fn build(sink: &SmtpSink, timeout: &str, channel_keys: &str) -> DirectApp {
        let (app, folder) = common::build_app_with_smtp(
            &smtp_table(&sink.url(), timeout),
            &email_channel(channel_keys),
        )
        .await;
        let state = app.state().clone();
        let channel = state.config.channels["email"].clone();
        let transport = EmailTransport::new(&state.config).unwrap();
        let sender =
            ChannelSender::for_channel(&state.config, &channel, &transport, &state.storage)
                .unwrap();
        let mut worker = DeliveryWorker::new(
            state.storage.clone(),
            state.config.clone(),
            state.metrics.clone(),
            channel,
            sender,
            state.delivery_wake.clone(),
        );
        worker.policy = RetryPolicy {
            base: Duration::from_millis(100),
            max: Duration::from_millis(400),
        };
        DirectApp {
            app,
            worker,
            _folder: folder,
        }
    }

    fn state(&self) -> &AppState {
        self.app.state()
    }

    /// Stores the webhook and runs the incident worker's step on it.
    async fn open_incident(&self) -> i64 {
        self.state()
            .ingest
            .ingest_webhook(one_actor_down().as_bytes())
            .await
            .expect("webhook stored");
        match self.app.worker().process_next_receipt().await.unwrap() {
            samsa_relay::incident_worker::StepOutcome::Processed {
                incident_id: Some(incident_id),
                ..
            } => incident_id,
            other => panic!("no incident: {other:?}"),
        }
    }

    /// Steps the delivery worker until no row of the incident is pending; returns what
    /// the steps did together.
    async fn deliver_until_settled(&self, incident_id: i64) -> StepCounts {
        let started = tokio::time::Instant::now();
        let mut total = StepCounts::default();
        for _ in 0..10_000 {
            let counts = self.worker.try_deliver_next().await.unwrap();
            total.sent += counts.sent;
            total.retried += counts.retried;
            total.failed += counts.failed;
            let outbox = self
                .state()
                .storage
                .outbox(Some(incident_id))
                .await
                .unwrap();
            if outbox.iter().all(|row| row.state != "pending") {
                return total;
            }
            assert!(
                started.elapsed() < DEADLINE,
                "deliveries still pending after {DEADLINE:?}: {outbox:#?}"
            );
            if counts.attempted() == 0 {
                // A retry is not due yet.
                tokio::time::sleep(Duration::from_millis(25)).await;
            }
        }
        panic!("deliveries never settled");
    }
}
