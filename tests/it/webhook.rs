//! Webhook delivery against a real HTTP receiver: a small axum server in the test process
//! stands in for the website CMS (which belongs to others). It records every request and
//! answers as each test scripts it: 500, 429 with Retry-After, 400, or no answer in time.
//!
//! The first test goes through the app's own delivery worker, as in production. The others
//! publish on a channel the running app has no worker for (a second config over the same
//! database) and drive `DeliveryWorker::try_deliver_next` themselves with a short retry
//! policy, so nothing races and no test waits for the default 5-second backoff.

use crate::common;

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use common::{
    TestApp, alert, config_with_tables, eventually, outbox_rows, payload, pending_draft,
    publish_pending, publish_request, spawn_app_with_tables,
};
use samsa_relay::config::Config;
use samsa_relay::delivery::webhook::WebhookSender;
use samsa_relay::delivery::{ChannelSender, DeliveryWorker, RetryPolicy, StepCounts};
use samsa_relay::notice::NoticeKind;
use samsa_relay::storage::PublishedNoticeRecord;
use serde_json::{Value, json};

const DEADLINE: Duration = Duration::from_secs(20);
const CMS_TOKEN: &str = "cms-secret-token-0123456789";

// ---------------------------------------------------------------------------------------
// The receiver.

/// How the receiver answers one request.
#[derive(Debug, Clone)]
enum Answer {
    Status {
        status: u16,
        headers: Vec<(&'static str, &'static str)>,
        body: &'static str,
    },
    /// Answers 200, but only after this long.
    Stall(Duration),
}

#[derive(Debug, Clone)]
struct Received {
    at: Instant,
    path_and_query: String,
    headers: HeaderMap,
    body: Vec<u8>,
}

impl Received {
    fn header(&self, name: &str) -> &str {
        self.headers
            .get(name)
            .unwrap_or_else(|| panic!("request has no {name} header"))
            .to_str()
            .expect("a text header")
    }

    fn json(&self) -> Value {
        serde_json::from_slice(&self.body).expect("the body is JSON")
    }
}

/// A real HTTP server on 127.0.0.1: answers requests under `/cms` with the scripted
/// answers in order, then 200; any other path with 200.
#[derive(Clone, Default)]
struct Receiver {
    base_url: String,
    received: Arc<Mutex<Vec<Received>>>,
    script: Arc<Mutex<VecDeque<Answer>>>,
}

impl Receiver {
    async fn start(script: Vec<Answer>) -> Receiver {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("receiver binds");
        let mut receiver = Receiver {
            base_url: format!("http://{}", listener.local_addr().expect("address")),
            ..Receiver::default()
        };
        receiver.script = Arc::new(Mutex::new(script.into()));
        let router = axum::Router::new()
            .fallback(receive)
            .with_state(receiver.clone());
        tokio::spawn(async move {
            axum::serve(listener, router)
                .await
                .expect("receiver serves");
        });
        receiver
    }

    fn received(&self) -> Vec<Received> {
        self.received.lock().unwrap().clone()
    }

    /// Waits until at least `n` requests have arrived.
    async fn wait_for(&self, n: usize) -> Vec<Received> {
        eventually(
            &format!("{n} requests at the receiver"),
            DEADLINE,
            || async {
                let received = self.received();
                (received.len() >= n).then_some(received)
            },
        )
        .await
    }
}

async fn receive(
    State(receiver): State<Receiver>,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    receiver.received.lock().unwrap().push(Received {
        at: Instant::now(),
        path_and_query: uri
            .path_and_query()
            .map(|path| path.as_str().to_owned())
            .unwrap_or_default(),
        headers,
        body: body.to_vec(),
    });
    // Only the CMS is scripted; anything else (the banner's push URL) is simply taken.
    let answer = if uri.path().starts_with("/cms") {
        receiver.script.lock().unwrap().pop_front()
    } else {
        None
    };
    match answer {
        None => (StatusCode::OK, "{\"ok\":true}").into_response(),
        Some(Answer::Status {
            status,
            headers,
            body,
        }) => {
            let mut response = (StatusCode::from_u16(status).unwrap(), body).into_response();
            for (name, value) in headers {
                response
                    .headers_mut()
                    .insert(name, value.parse().expect("a header value"));
            }
            response
        }
        Some(Answer::Stall(duration)) => {
            tokio::time::sleep(duration).await;
            (StatusCode::OK, "{\"ok\":true}").into_response()
        }
    }
}

// ---------------------------------------------------------------------------------------
// Helpers.

fn down(fingerprint: &str, actor: &str) -> Value {
    alert(
        fingerprint,
        "firing",
        json!({"alertname": "SamsaLoginDown", "service": "samsa", "actor": actor}),
        "2026-11-28T04:10:00Z",
    )
}

/// Posts one firing alert for Uddevalla: incident 1 with a level-1 draft.
async fn open_incident(app: &TestApp) {
    let body = payload("firing", vec![down("a1", "kommun-uddevalla")]);
    assert_eq!(app.post_webhook(body.to_string()).await.status(), 200);
}

async fn notice(app: &TestApp, notice_id: i64) -> PublishedNoticeRecord {
    app.state
        .storage
        .published_notices(None, 100)
        .await
        .unwrap()
        .into_iter()
        .find(|notice| notice.notice_id == notice_id)
        .expect("the published notice")
}

/// The app's own tables: the login-page banner only.
const APP_TABLES: &str = r#"
[channels.banner]
content = "banner"
transport = "banner"

[plan]
level_1 = ["banner"]
level_2 = ["banner"]
level_3 = ["banner"]
"#;

/// The same database seen with one more channel, `cms`, which the app has no worker for.
fn direct_config(app: &TestApp, cms_table: &str) -> Arc<Config> {
    let tables = format!(
        r#"
[channels.banner]
content = "banner"
transport = "banner"

{cms_table}

[plan]
level_1 = ["banner", "cms"]
level_2 = ["banner", "cms"]
level_3 = ["banner", "cms"]
"#
    );
    Arc::new(config_with_tables(app.folder.path(), &tables))
}

/// A worker for `cms` with a short backoff, driven by the test.
fn direct_worker(app: &TestApp, config: &Arc<Config>) -> DeliveryWorker {
    let channel = config.channels["cms"].clone();
    let sender =
        ChannelSender::Webhook(WebhookSender::new(config, &channel).expect("the sender builds"));
    let mut worker = DeliveryWorker::new(
        app.state.storage.clone(),
        config.clone(),
        app.state.metrics.clone(),
        channel,
        sender,
        Arc::new(tokio::sync::Notify::new()),
    );
    worker.policy = RetryPolicy {
        base: Duration::from_millis(100),
        max: Duration::from_millis(400),
    };
    worker
}

/// Opens incident 1 and publishes its first draft on `cms` (and the banner) through
/// `config`; returns the notice id.
async fn publish_on_cms(app: &TestApp, config: &Config) -> i64 {
    open_incident(app).await;
    let (draft_id, version, level) = pending_draft(app, 1, NoticeKind::Initial).await;
    samsa_relay::publishing::publish(
        &app.state.storage,
        config,
        &publish_request(draft_id, version, level, &["banner", "cms"]),
    )
    .await
    .expect("the draft publishes")
    .notice_id
}

/// Steps the worker until the `cms` row is no longer pending.
async fn deliver_until_settled(app: &TestApp, worker: &DeliveryWorker) -> StepCounts {
    let started = Instant::now();
    let mut total = StepCounts::default();
    loop {
        let counts = worker.try_deliver_next().await.expect("a delivery step");
        total.sent += counts.sent;
        total.retried += counts.retried;
        total.failed += counts.failed;
        let rows = outbox_rows(app, "cms").await;
        if !rows.is_empty() && rows.iter().all(|row| row.state != "pending") {
            return total;
        }
        assert!(
            started.elapsed() < DEADLINE,
            "the cms row is still pending after {DEADLINE:?}: {rows:?}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

// ---------------------------------------------------------------------------------------
// Tests.

#[tokio::test]
async fn the_website_gets_the_notice_as_json_with_one_delivery_id_across_retries() {
    let cms = Receiver::start(vec![Answer::Status {
        status: 500,
        headers: vec![],
        body: "internt fel",
    }])
    .await;
    let app = spawn_app_with_tables(&format!(
        r#"
[channels.banner]
content = "banner"
transport = "banner"
url = "{base}/banner-push"

[channels.website]
content = "website"
transport = "webhook"
url = "{base}/cms/news?site=samsa"
bearer_token = "{CMS_TOKEN}"
timeout = "5s"

[channels.website.headers]
X-Cms-Site = "samsa-driftinfo"

[plan]
level_1 = ["banner", "website"]
level_2 = ["banner", "website"]
level_3 = ["banner", "website"]
"#,
        base = cms.base_url
    ))
    .await;

    open_incident(&app).await;
    let publication = publish_pending(&app, 1, NoticeKind::Initial, &["banner", "website"]).await;
    let published = notice(&app, publication.notice_id).await;

    // The app's own worker: 500 first, then (after its backoff) 200.
    eventually("the website row sent", DEADLINE, || async {
        let rows = outbox_rows(&app, "website").await;
        (rows.len() == 1 && rows[0].state == "sent").then_some(())
    })
    .await;
    let website: Vec<Received> = cms
        .received()
        .into_iter()
        .filter(|request| request.path_and_query.starts_with("/cms/"))
        .collect();
    assert_eq!(website.len(), 2, "one failed attempt and one retry");
    let row = &outbox_rows(&app, "website").await[0];
    assert_eq!(row.attempts, 2);

    for request in &website {
        assert_eq!(request.path_and_query, "/cms/news?site=samsa");
        assert_eq!(request.header("content-type"), "application/json");
        assert_eq!(
            request.header("authorization"),
            format!("Bearer {CMS_TOKEN}")
        );
        assert_eq!(request.header("x-cms-site"), "samsa-driftinfo");
        assert_eq!(request.header("idempotency-key"), row.delivery_id);
        assert_eq!(request.header("x-samsa-delivery-id"), row.delivery_id);
        assert!(request.header("user-agent").starts_with("samsa-relay/"));
        let body = request.json();
        assert_eq!(body["delivery_id"], row.delivery_id.as_str());
        assert_eq!(body["notice_id"], publication.notice_id);
        assert_eq!(body["incident_id"], 1);
        assert_eq!(body["channel"], "website");
        assert_eq!(body["kind"], "initial");
        assert_eq!(body["level"], 1);
        assert_eq!(body["drill"], false);
        assert_eq!(body["title"], published.rendered.website_title.as_str());
        assert_eq!(body["body"], published.rendered.website_body.as_str());
        assert!(body["title"].as_str().unwrap().contains("SAMSA"));
        let published_at: jiff::Timestamp = body["published_at"].as_str().unwrap().parse().unwrap();
        assert_eq!(published_at, published.published_at);
        assert_eq!(
            body["feedback_url"],
            "http://127.0.0.1:9095/public/feedback/1"
        );
    }
    assert_eq!(
        website[0].body, website[1].body,
        "a retry sends the same body"
    );

    // The banner's push URL gets the banner line; the login page itself needs no request.
    let banner_rows = eventually("the banner rows sent", DEADLINE, || async {
        let rows = outbox_rows(&app, "banner").await;
        (rows.len() == 2 && rows.iter().all(|row| row.state == "sent")).then_some(rows)
    })
    .await;
    let push_row = banner_rows
        .iter()
        .find(|row| row.recipient.ends_with("/banner-push"))
        .expect("a row for the push URL");
    let pushes: Vec<Received> = cms
        .received()
        .into_iter()
        .filter(|request| request.path_and_query == "/banner-push")
        .collect();
    assert_eq!(pushes.len(), 1);
    assert_eq!(pushes[0].header("idempotency-key"), push_row.delivery_id);
    assert!(pushes[0].headers.get("authorization").is_none());
    let body = pushes[0].json();
    assert_eq!(body["channel"], "banner");
    assert_eq!(body["title"], published.rendered.banner_text.as_str());
    assert_eq!(body["body"], published.rendered.banner_text.as_str());
}

#[tokio::test]
async fn a_429_is_retried_no_sooner_than_its_retry_after() {
    let cms = Receiver::start(vec![Answer::Status {
        status: 429,
        headers: vec![("retry-after", "1")],
        body: "för många anrop",
    }])
    .await;
    let app = spawn_app_with_tables(APP_TABLES).await;
    let config = direct_config(
        &app,
        &format!(
            "[channels.cms]\ncontent = \"website\"\ntransport = \"webhook\"\nurl = \"{}/cms\"\n",
            cms.base_url
        ),
    );
    let worker = direct_worker(&app, &config);
    publish_on_cms(&app, &config).await;

    let first = worker.try_deliver_next().await.unwrap();
    assert_eq!(first.retried, 1);
    let row = &outbox_rows(&app, "cms").await[0];
    assert_eq!(row.state, "pending");
    let error = row.last_error.as_deref().unwrap_or_default();
    assert!(error.contains("429"), "{error}");
    let wait = row.next_attempt_at.duration_since(jiff::Timestamp::now());
    assert!(
        wait > jiff::SignedDuration::from_millis(500),
        "the next attempt is due in {wait:?}, not after Retry-After"
    );

    let counts = deliver_until_settled(&app, &worker).await;
    assert_eq!(counts.sent, 1);
    let row = &outbox_rows(&app, "cms").await[0];
    assert_eq!((row.state.as_str(), row.attempts), ("sent", 2));
    let received = cms.received();
    assert_eq!(received.len(), 2);
    let gap = received[1].at.duration_since(received[0].at);
    assert!(
        gap >= Duration::from_millis(990),
        "the retry came {gap:?} after the 429, before Retry-After: 1"
    );
    assert_eq!(
        received[0].header("idempotency-key"),
        received[1].header("idempotency-key")
    );
}

#[tokio::test]
async fn a_400_fails_the_delivery_with_the_status_and_the_answer() {
    let cms = Receiver::start(vec![Answer::Status {
        status: 400,
        headers: vec![("content-type", "application/json")],
        body: "{\"error\":\"ogiltig kategori\"}",
    }])
    .await;
    let app = spawn_app_with_tables(APP_TABLES).await;
    let config = direct_config(
        &app,
        &format!(
            "[channels.cms]\ncontent = \"website\"\ntransport = \"webhook\"\nurl = \"{}/cms\"\n",
            cms.base_url
        ),
    );
    let worker = direct_worker(&app, &config);
    publish_on_cms(&app, &config).await;

    let counts = worker.try_deliver_next().await.unwrap();
    assert_eq!(counts.failed, 1);
    let row = &outbox_rows(&app, "cms").await[0];
    assert_eq!(row.state, "failed");
    let error = row.last_error.as_deref().unwrap_or_default();
    assert!(
        error.contains("400") && error.contains("ogiltig kategori"),
        "{error}"
    );
    // A failed row stays failed until an operator retries it.
    for _ in 0..5 {
        assert_eq!(worker.try_deliver_next().await.unwrap().attempted(), 0);
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(cms.received().len(), 1);
}

#[tokio::test]
async fn a_receiver_that_does_not_answer_in_time_is_retried() {
    let cms = Receiver::start(vec![Answer::Stall(Duration::from_secs(4))]).await;
    let app = spawn_app_with_tables(APP_TABLES).await;
    let config = direct_config(
        &app,
        &format!(
            "[channels.cms]\ncontent = \"website\"\ntransport = \"webhook\"\nurl = \"{}/cms\"\ntimeout = \"1s\"\n",
            cms.base_url
        ),
    );
    let worker = direct_worker(&app, &config);
    publish_on_cms(&app, &config).await;

    let started = Instant::now();
    let first = worker.try_deliver_next().await.unwrap();
    let took = started.elapsed();
    assert_eq!(first.retried, 1, "a timeout is transient");
    assert!(
        took >= Duration::from_millis(900) && took < Duration::from_secs(3),
        "the step took {took:?} with a 1 s timeout"
    );
    let row = &outbox_rows(&app, "cms").await[0];
    let error = row.last_error.as_deref().unwrap_or_default();
    assert!(error.contains("no answer"), "{error}");

    let counts = deliver_until_settled(&app, &worker).await;
    assert_eq!(counts.sent, 1);
    let received = cms.received();
    assert_eq!(received.len(), 2);
    assert_eq!(
        received[0].header("x-samsa-delivery-id"),
        received[1].header("x-samsa-delivery-id")
    );
    assert_eq!(received[0].body, received[1].body);
}

#[tokio::test]
async fn a_body_template_shapes_the_json_and_escapes_every_value() {
    let cms = Receiver::start(vec![]).await;
    let app = spawn_app_with_tables(APP_TABLES).await;
    let config = direct_config(
        &app,
        &format!(
            r#"[channels.cms]
content = "itnytt"
transport = "webhook"
url = "{}/cms"
body_template = '{{"rubrik": {{{{ title }}}}, "tecken": {{{{ body|length }}}}, "text": {{{{ body }}}}, "nyckel": {{{{ delivery_id|tojson }}}}, "nivå": {{{{ level }}}}, "övning": {{{{ drill }}}}}}'
"#,
            cms.base_url
        ),
    );
    let worker = direct_worker(&app, &config);
    let notice_id = publish_on_cms(&app, &config).await;
    let published = notice(&app, notice_id).await;

    let counts = deliver_until_settled(&app, &worker).await;
    assert_eq!(counts.sent, 1);
    let received = cms.wait_for(1).await;
    let body = received[0].json();
    assert_eq!(body["rubrik"], published.rendered.itnytt_title.as_str());
    assert_eq!(body["text"], published.rendered.itnytt_body.as_str());
    assert!(
        published.rendered.itnytt_body.contains('\n'),
        "a multi-line body"
    );
    assert_eq!(body["nyckel"], received[0].header("idempotency-key"));
    assert_eq!(body["nivå"], 1);
    assert_eq!(body["övning"], false);
    assert_eq!(
        body["tecken"],
        published.rendered.itnytt_body.chars().count()
    );
}

#[tokio::test]
async fn a_body_template_that_is_not_json_is_refused_by_check_config() {
    let app = spawn_app_with_tables(APP_TABLES).await;
    let text = format!(
        "{}\n{}",
        common::base_config(app.folder.path(), "", "", ""),
        r#"[channels.cms]
content = "website"
transport = "webhook"
url = "http://127.0.0.1:9/cms"
body_template = '{"rubrik": "{{ title }}"}'
"#
    );
    let errors = samsa_relay::config::Config::from_toml(&text, &Default::default())
        .expect_err("a quoted value is refused");
    let message = errors.to_string();
    assert!(message.contains("channels.cms.body_template"), "{message}");
    assert!(message.contains("not JSON"), "{message}");
    app.stop().await;
}
