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
/// `whsec_` + base64 of the bytes 0, 1, …, 31.
const CMS_SIGNING_SECRET: &str = "whsec_AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=";
/// The Standard Webhooks spec's example secret (24 bytes).
const BANNER_SIGNING_SECRET: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";

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

// ---------------------------------------------------------------------------------------
// Signatures (Standard Webhooks), plain HTTP and what is kept of an error answer.

/// Verifies a request the way the Standard Webhooks reference libraries do, written from
/// the spec and independent of the relay's signing code: the key is the base64 after
/// `whsec_`; the timestamp must be within 5 minutes of `now` either way; the signed
/// content is `{webhook-id}.{webhook-timestamp}.{body}`; `webhook-signature` holds
/// space-separated `VERSION,BASE64` entries, of which one `v1` must match (compared in
/// constant time by `Mac::verify_slice`).
fn verify_standard_webhook(
    secret: &str,
    headers: &HeaderMap,
    body: &[u8],
    now: i64,
) -> Result<(), String> {
    use base64::Engine as _;
    use base64::engine::general_purpose::STANDARD;
    use hmac::{Hmac, Mac as _};
    const TOLERANCE_SECONDS: i64 = 5 * 60;
    let text = |name: &str| {
        headers
            .get(name)
            .and_then(|value| value.to_str().ok())
            .ok_or_else(|| format!("no {name}"))
    };
    let key = STANDARD
        .decode(secret.strip_prefix("whsec_").unwrap_or(secret))
        .map_err(|error| format!("the secret: {error}"))?;
    let id = text("webhook-id")?;
    let timestamp: i64 = text("webhook-timestamp")?
        .parse()
        .map_err(|_| "the timestamp is not a number".to_owned())?;
    if (now - timestamp).abs() > TOLERANCE_SECONDS {
        return Err("the timestamp is outside the tolerance".to_owned());
    }
    let mut mac = Hmac::<sha2::Sha256>::new_from_slice(&key).unwrap();
    mac.update(format!("{id}.{timestamp}.").as_bytes());
    mac.update(body);
    for entry in text("webhook-signature")?.split(' ') {
        let Some((version, encoded)) = entry.split_once(',') else {
            continue;
        };
        if version != "v1" {
            continue;
        }
        let Ok(signature) = STANDARD.decode(encoded) else {
            continue;
        };
        if mac.clone().verify_slice(&signature).is_ok() {
            return Ok(());
        }
    }
    Err("no signature matches".to_owned())
}

fn signature_headers(id: &str, timestamp: i64, signature: &str) -> HeaderMap {
    let mut headers = HeaderMap::new();
    headers.insert("webhook-id", id.parse().unwrap());
    headers.insert("webhook-timestamp", timestamp.to_string().parse().unwrap());
    headers.insert("webhook-signature", signature.parse().unwrap());
    headers
}

#[test]
fn signatures_match_fixed_vectors_computed_with_python() {
    use samsa_relay::notice::webhook_body::WebhookSigningKey;
    // Computed once, independently, with
    //   python3 -c 'import base64,hmac,hashlib; key = base64.b64decode(SECRET[6:]);
    //     print("v1," + base64.b64encode(hmac.new(key, CONTENT, hashlib.sha256).digest()).decode())'
    // The first is the Standard Webhooks spec's own example (its reference libraries
    // test the same secret, id, timestamp and body).
    let vectors = [
        (
            BANNER_SIGNING_SECRET,
            "msg_p5jXN8AQM9LWM0D4loKWxJek",
            1_614_265_330,
            r#"{"test": 2432232314}"#,
            "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=",
        ),
        (
            CMS_SIGNING_SECRET,
            "1-9e02ab09674f74db7ed513ea",
            1_796_112_000,
            r#"{"title":"Driftstörning i SAMSA"}"#,
            "v1,plz6FV88Y0TvvHVYBYnvQg+HFYqB+9kVylu6no/CWgY=",
        ),
    ];
    for (secret, id, timestamp, body, expected) in vectors {
        let key = WebhookSigningKey::parse(secret).unwrap();
        assert_eq!(key.sign(id, timestamp, body.as_bytes()), expected);
        let headers = signature_headers(id, timestamp, expected);
        verify_standard_webhook(secret, &headers, body.as_bytes(), timestamp).unwrap();
        // The spec's rules: 5 minutes either way, any of several signatures, only `v1`.
        verify_standard_webhook(secret, &headers, body.as_bytes(), timestamp + 300).unwrap();
        verify_standard_webhook(secret, &headers, body.as_bytes(), timestamp - 300).unwrap();
        assert!(
            verify_standard_webhook(secret, &headers, body.as_bytes(), timestamp + 301).is_err()
        );
        assert!(
            verify_standard_webhook(secret, &headers, body.as_bytes(), timestamp - 301).is_err()
        );
        let several = format!(
            "v1,bm90IHRoZSBzaWduYXR1cmU= v2,{} {expected}",
            &expected[3..]
        );
        let headers_several = signature_headers(id, timestamp, &several);
        verify_standard_webhook(secret, &headers_several, body.as_bytes(), timestamp).unwrap();
        let only_v2 = signature_headers(id, timestamp, &format!("v2,{}", &expected[3..]));
        assert!(verify_standard_webhook(secret, &only_v2, body.as_bytes(), timestamp).is_err());
        assert!(
            verify_standard_webhook(secret, &headers, b"{\"test\": 1}", timestamp).is_err(),
            "another body"
        );
        let other_id = signature_headers("msg_other", timestamp, expected);
        assert!(verify_standard_webhook(secret, &other_id, body.as_bytes(), timestamp).is_err());
    }
}

#[tokio::test]
async fn deliveries_and_the_banner_push_are_signed_the_standard_webhooks_way() {
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
signing_secret = "{BANNER_SIGNING_SECRET}"

[channels.website]
content = "website"
transport = "webhook"
url = "{base}/cms/news"
signing_secret = "{CMS_SIGNING_SECRET}"

[plan]
level_1 = ["banner", "website"]
level_2 = ["banner", "website"]
level_3 = ["banner", "website"]
"#,
        base = cms.base_url
    ))
    .await;
    open_incident(&app).await;
    publish_pending(&app, 1, NoticeKind::Initial, &["banner", "website"]).await;
    eventually("the website row sent", DEADLINE, || async {
        let rows = outbox_rows(&app, "website").await;
        (rows.len() == 1 && rows[0].state == "sent").then_some(())
    })
    .await;
    let row = &outbox_rows(&app, "website").await[0];
    let website: Vec<Received> = cms
        .received()
        .into_iter()
        .filter(|request| request.path_and_query.starts_with("/cms/"))
        .collect();
    assert_eq!(website.len(), 2, "one failed attempt and one retry");
    let now = jiff::Timestamp::now().as_second();
    for request in &website {
        // The delivery id is the webhook id, the same on the retry.
        assert_eq!(request.header("webhook-id"), row.delivery_id);
        // Signed when sent: within a minute of when the fake CMS received it (not of
        // now, which a loaded machine can put minutes after the first attempt).
        let timestamp: i64 = request.header("webhook-timestamp").parse().unwrap();
        let received_at = now - i64::try_from(request.at.elapsed().as_secs()).unwrap();
        assert!(
            (received_at - timestamp).abs() < 60,
            "{timestamp} is not when it was received ({received_at})"
        );
        verify_standard_webhook(CMS_SIGNING_SECRET, &request.headers, &request.body, now).unwrap();
        // Another secret, another body or a replay long after do not verify.
        assert!(
            verify_standard_webhook(BANNER_SIGNING_SECRET, &request.headers, &request.body, now)
                .is_err()
        );
        let mut tampered = request.body.clone();
        tampered.extend_from_slice(b" ");
        assert!(
            verify_standard_webhook(CMS_SIGNING_SECRET, &request.headers, &tampered, now).is_err()
        );
        assert!(
            verify_standard_webhook(
                CMS_SIGNING_SECRET,
                &request.headers,
                &request.body,
                now + 10 * 60
            )
            .is_err()
        );
    }

    // The banner's push, with the banner channel's own secret.
    let push_row = eventually("the banner push sent", DEADLINE, || async {
        outbox_rows(&app, "banner")
            .await
            .into_iter()
            .find(|row| row.recipient.ends_with("/banner-push") && row.state == "sent")
    })
    .await;
    let pushes: Vec<Received> = cms
        .received()
        .into_iter()
        .filter(|request| request.path_and_query == "/banner-push")
        .collect();
    assert_eq!(pushes.len(), 1);
    assert_eq!(pushes[0].header("webhook-id"), push_row.delivery_id);
    verify_standard_webhook(
        BANNER_SIGNING_SECRET,
        &pushes[0].headers,
        &pushes[0].body,
        jiff::Timestamp::now().as_second(),
    )
    .unwrap();
    app.stop().await;
}

#[tokio::test]
async fn a_receiver_that_echoes_the_request_leaves_only_a_short_excerpt_without_secrets() {
    const ECHO: &str = "{\"error\":\"unauthorized\",\"authorization\":\"Bearer cms-secret-token-0123456789\",\"signing\":\"whsec_AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=\"}\r\n\u{1b}[2J\u{202e}AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA";
    let cms = Receiver::start(vec![Answer::Status {
        status: 400,
        headers: vec![("content-type", "application/json")],
        body: ECHO,
    }])
    .await;
    let app = spawn_app_with_tables(APP_TABLES).await;
    let config = direct_config(
        &app,
        &format!(
            "[channels.cms]\ncontent = \"website\"\ntransport = \"webhook\"\nurl = \"{}/cms\"\nbearer_token = \"{CMS_TOKEN}\"\nsigning_secret = \"{CMS_SIGNING_SECRET}\"\n",
            cms.base_url
        ),
    );
    let worker = direct_worker(&app, &config);
    publish_on_cms(&app, &config).await;
    let counts = worker.try_deliver_next().await.unwrap();
    assert_eq!(counts.failed, 1);
    let row = &outbox_rows(&app, "cms").await[0];
    let error = row.last_error.as_deref().unwrap_or_default();
    assert!(
        error.contains("400") && error.contains("unauthorized"),
        "{error}"
    );
    assert!(!error.contains(CMS_TOKEN), "{error}");
    assert!(!error.contains(CMS_SIGNING_SECRET), "{error}");
    assert!(error.contains("Bearer ***"), "{error}");
    assert!(
        !error.contains('\u{1b}') && !error.contains('\u{202e}'),
        "{error:?}"
    );
    assert!(error.contains("\\u{1b}[2J\\u{202e}"), "escaped: {error}");
    assert!(error.ends_with('…'), "cut short: {error}");
    assert!(
        error.chars().count() < 160,
        "{} characters",
        error.chars().count()
    );
    // Nor in the incident's log (which the report and the operators' mail read).
    for event in app.state.storage.incident_events(1).await.unwrap() {
        let detail = event.detail.to_string();
        assert!(!detail.contains(CMS_TOKEN), "{detail}");
    }
    app.stop().await;
}

#[tokio::test]
async fn plain_http_to_another_host_and_misplaced_signing_keys_are_config_problems() {
    let folder = tempfile::tempdir().unwrap();
    // Each table is the only channel; the plan uses it on every level.
    let load = |tables: &str| {
        let name = tables
            .trim_start_matches("[channels.")
            .split(']')
            .next()
            .unwrap();
        let text = format!(
            "{}\n{tables}\n[plan]\nlevel_1 = [\"{name}\"]\nlevel_2 = [\"{name}\"]\nlevel_3 = [\"{name}\"]\n",
            common::base_config(folder.path(), "", "", "")
        );
        samsa_relay::config::Config::from_toml(&text, &Default::default())
    };
    let webhook = |url: &str, extra: &str| {
        format!(
            "[channels.cms]\ncontent = \"website\"\ntransport = \"webhook\"\nurl = \"{url}\"\n{extra}"
        )
    };
    let problem = |tables: &str| load(tables).expect_err("refused").to_string();

    let message = problem(&webhook("http://cms.example.org/hook", ""));
    assert!(
        message.contains("channels.cms.url") && message.contains("https://"),
        "{message}"
    );
    let message = problem(
        "[channels.banner]\ncontent = \"banner\"\ntransport = \"banner\"\nurl = \"http://intranet.example.org/push\"\n",
    );
    assert!(message.contains("channels.banner.url"), "{message}");
    for tables in [
        webhook("https://cms.example.org/hook", ""),
        webhook("http://127.0.0.1:8080/hook", ""),
        webhook("http://[::1]:8080/hook", ""),
        webhook("http://localhost:8080/hook", ""),
        webhook("http://cms.example.org/hook", "allow_http = true\n"),
        "[channels.banner]\ncontent = \"banner\"\ntransport = \"banner\"\nurl = \"http://intranet.example.org/push\"\nallow_http = true\n".to_owned(),
    ] {
        load(&tables).unwrap_or_else(|problems| panic!("{tables}: {problems}"));
    }

    // The secret: whsec_ and base64 of 24 to 64 bytes, inline or in a file.
    let secret_file = folder.path().join("cms-signing-secret");
    std::fs::write(&secret_file, format!("{CMS_SIGNING_SECRET}\n")).unwrap();
    let config = load(&webhook(
        "https://cms.example.org/hook",
        &format!(
            "signing_secret_file = {:?}\n",
            secret_file.display().to_string()
        ),
    ))
    .unwrap();
    let key = config.channels["cms"].signing_key.as_ref().expect("a key");
    assert_eq!(key.expose(), CMS_SIGNING_SECRET);
    assert!(!format!("{:?}", config.channels["cms"]).contains(CMS_SIGNING_SECRET));
    for (extra, key) in [
        (
            "signing_secret = \"not-whsec\"\n",
            "channels.cms.signing_secret",
        ),
        (
            "signing_secret = \"whsec_c2hvcnQ=\"\n",
            "channels.cms.signing_secret",
        ),
    ] {
        let message = problem(&webhook("https://cms.example.org/hook", extra));
        assert!(message.contains(key), "{message}");
        assert!(
            !message.contains("c2hvcnQ"),
            "the secret is not printed: {message}"
        );
    }
    // Only what the relay POSTs is signed: not a feed, not a banner without url.
    let message = problem(&format!(
        "[channels.website]\ncontent = \"website\"\ntransport = \"feed\"\nsigning_secret = \"{CMS_SIGNING_SECRET}\"\n"
    ));
    assert!(
        message.contains("channels.website.signing_secret"),
        "{message}"
    );
    let message = problem(
        "[channels.banner]\ncontent = \"banner\"\ntransport = \"banner\"\nallow_http = true\n",
    );
    assert!(message.contains("channels.banner.allow_http"), "{message}");
}
