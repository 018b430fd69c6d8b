//! The whole chain, with the real programs of a deployment: the blackbox exporter probes a
//! fake SAMSA login page per actor, Prometheus evaluates the shipped rules, Alertmanager
//! routes to the relay, the relay drafts, the on-duty operator publishes through the link
//! in the review email, the deliveries go out, and bringing the pages back resolves it all
//! the same way.
//!
//! Run it alone with
//! `cargo test --features system-tests --test it end_to_end:: -- --nocapture` (it prints each step
//! with its time).
//!
//! What is real: `prometheus`, `prometheus-alertmanager` and
//! `prometheus-blackbox-exporter` from their Debian packages (`scripts/test-all.sh`
//! installs them), the relay with its operator pages, and the shipped configuration:
//! `deploy/blackbox/blackbox.yml` as it is, and `deploy/prometheus/prometheus.yml`,
//! `deploy/prometheus/samsa-rules.yml`, `deploy/prometheus/targets/samsa-login.yml` and
//! `deploy/alertmanager/alertmanager.yml` with only these textual changes, each checked to
//! apply:
//!
//! - addresses: every host becomes a local program (the relay, the exporter, Alertmanager,
//!   the fake login pages); the SMTP smarthost of the operations receiver becomes a closed
//!   local port, so nothing leaves 127.0.0.1 even if an operations alert fires;
//! - time: scrape and evaluation every second, scrape timeouts of one second, Alertmanager
//!   grouping of one second, and `for: 0s` on the two outage alerts (the shipped `for: 2m`
//!   would make the test last minutes); the relay's own alerts keep their `for:`;
//! - the token file: a temporary one holding the test relay's token.
//!
//! The login pages are served by the test over HTTPS, because the shipped module demands
//! TLS (`fail_if_not_ssl`): a small axum app answers `/login/ACTOR` (and `/` for the central
//! page) with a page showing "Logga in", or 503 while the test has taken that actor down.
//! Its certificate, for 127.0.0.1, is made by rcgen for the run; the exporter trusts it
//! through `SSL_CERT_FILE`, as it would trust a site's own CA.

use crate::common;

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::extract::{Path as UrlPath, State};
use axum::http::StatusCode;
use axum::response::{Html, IntoResponse, Response};
use common::{ChildProcess, Prometheus, TOKEN, TestApp, debian_binary, free_port, local_client};
use mail_parser::MessageParser;
use samsa_relay::notice::{NoticeInput, NoticeKind};
use serde_json::Value;
use tower::ServiceExt as _;

/// How long one step (a program starting, an alert travelling the chain) may take.
const STEP_DEADLINE: Duration = Duration::from_secs(30);

const OPERATOR_NAME: &str = "Anna Andersson";
const OPERATOR_EMAIL: &str = "anna@example.org";
const EMAIL_RECIPIENTS: [&str; 2] = ["support@example.org", "it-lista@example.org"];

/// The actors whose login pages the test takes down: one in each of three sub-regions, so
/// three of the nine probed actors (not more than half: no SamsaDown) and no sub-region
/// broadly affected, which makes a level 1 incident.
const ACTORS_DOWN: [&str; 3] = ["kommun-trollhattan", "kommun-goteborg", "kommun-boras"];

#[tokio::test]
async fn an_outage_seen_by_the_probes_is_drafted_confirmed_delivered_and_resolved() {
    let started = Instant::now();
    let step = |what: &str| eprintln!("[{:>6.1} s] {what}", started.elapsed().as_secs_f64());
    let client = local_client();

    let site = LoginSite::start().await;
    let app = common::spawn_app_with_tables(RELAY_TABLES).await;
    let relay_host = app.address.trim_start_matches("http://").to_owned();
    let mut blackbox = start_blackbox_exporter(&site);
    blackbox
        .process
        .wait_until_answers(
            &client,
            &format!("{}/-/healthy", blackbox.address),
            STEP_DEADLINE,
        )
        .await;
    // The shipped module accepts the fake page (TLS, HTTP version, the login text) before
    // anything depends on it.
    let probe_url = format!(
        "{}/probe?module=samsa_login&target={}/login/kommun-boras",
        blackbox.address, site.https_base
    );
    common::eventually(
        "the samsa_login module to accept the fake login page",
        STEP_DEADLINE,
        || async {
            let body = client
                .get(&probe_url)
                .send()
                .await
                .ok()?
                .text()
                .await
                .ok()?;
            body.lines()
                .any(|line| line == "probe_success 1")
                .then_some(())
        },
    )
    .await;
    let mut alertmanager = start_alertmanager(&app.address);
    alertmanager
        .process
        .wait_until_answers(
            &client,
            &format!("{}/-/ready", alertmanager.address),
            STEP_DEADLINE,
        )
        .await;
    let (config, files) =
        prometheus_files(&relay_host, &blackbox.address, &alertmanager.address, &site);
    // Prometheus sends a firing alert again only after the resend delay (1m by default):
    // the Watchdog, firing before Alertmanager is discovered, would wait that long.
    let prometheus = Prometheus::start(&config, &files, &["--rules.alert.resend-delay=1s"]).await;
    step("relay, blackbox exporter, Alertmanager and Prometheus started");
    // Prometheus discovers Alertmanagers in batches (every 5 s).
    let alertmanagers = format!("{}/api/v1/alertmanagers", prometheus.address);
    common::eventually(
        "Prometheus to discover Alertmanager",
        STEP_DEADLINE,
        || async {
            let body: Value = client
                .get(&alertmanagers)
                .send()
                .await
                .ok()?
                .json()
                .await
                .ok()?;
            let active = body["data"]["activeAlertmanagers"].as_array()?;
            (!active.is_empty()).then_some(())
        },
    )
    .await;

    prometheus
        .wait_for_value(
            "samsa:login_probes:count == 9 and on() samsa:login_probes_failing:count == 0",
            STEP_DEADLINE,
        )
        .await;
    // The Watchdog went Prometheus -> Alertmanager -> relay: the chain works.
    common::eventually("the Watchdog to reach the relay", STEP_DEADLINE, || async {
        let receipts = app.state.storage.receipts().await.ok()?;
        receipts
            .iter()
            .any(|receipt| receipt.payload.contains("\"alertname\":\"Watchdog\""))
            .then_some(())
    })
    .await;
    assert!(outage_incidents(&app).await.is_empty(), "no outage yet");
    step("all nine login pages probed up; the Watchdog reached the relay");

    // ---- three actors down --------------------------------------------------------------
    site.take_down(&ACTORS_DOWN);
    let (incident_id, draft_id, input) =
        common::eventually("a draft naming the three actors", STEP_DEADLINE, || async {
            let incident = outage_incidents(&app).await.into_iter().next()?;
            let draft = pending_draft_of(&app, incident.incident_id, NoticeKind::Initial).await?;
            let input = latest_input(&draft);
            (affected_actors(&input) == ACTORS_DOWN.iter().map(|actor| actor.to_string()).collect())
                .then_some((incident.incident_id, draft.draft_id, input))
        })
        .await;
    step("Prometheus fired, Alertmanager routed, the relay drafted");
    assert!(
        !input.summary.whole_service,
        "three of nine is not the whole service"
    );
    assert_eq!(input.classification.level.as_number(), 1);
    let alerts = app.alerts_when_processed().await;
    assert!(
        alerts
            .iter()
            .all(|alert| alert.labels.get("alertname").map(String::as_str) != Some("SamsaDown")),
        "SamsaDown stays silent for three of nine actors"
    );
    for actor in ACTORS_DOWN {
        let alert = alerts
            .iter()
            .find(|alert| alert.labels.get("actor").map(String::as_str) == Some(actor))
            .unwrap_or_else(|| panic!("no stored alert for {actor}"));
        assert_eq!(alert.labels["alertname"], "SamsaLoginDown");
        assert_eq!(alert.labels["service"], "samsa");
        assert_eq!(alert.labels["job"], "samsa-login");
        assert_eq!(
            alert.labels["instance"],
            format!("{}/login/{actor}", site.https_base)
        );
    }

    let link = review_link_from_mail(&app, draft_id).await;
    let (status, page) = common::publish_through_review_page(&app, &link, &[]).await;
    assert_eq!(status, 200, "{page}");
    assert!(page.contains("<h1>Publicerat</h1>"), "{page}");
    step("the operator published through the link in the review email");

    let outbox = wait_until_sent(&app, incident_id, 4).await;
    let mut deliveries: Vec<(String, String)> = outbox
        .iter()
        .map(|row| (row.channel.clone(), row.recipient.clone()))
        .collect();
    deliveries.sort();
    assert_eq!(
        deliveries,
        [
            ("banner", "login-page"),
            ("email", EMAIL_RECIPIENTS[1]),
            ("email", EMAIL_RECIPIENTS[0]),
            ("website", "feed"),
        ]
        .map(|(channel, recipient)| (channel.to_owned(), recipient.to_owned()))
    );
    let banner = banner_json(&app).await;
    assert_eq!(banner["active"], true, "{banner}");
    assert_eq!(banner["incident_id"], incident_id, "{banner}");
    let notice_email = mail_bodies(&app.folder.path().join("mail"), EMAIL_RECIPIENTS[0]);
    assert_eq!(
        notice_email.len(),
        1,
        "one notice to {}",
        EMAIL_RECIPIENTS[0]
    );
    let (subject, text) = &notice_email[0];
    assert!(subject.starts_with("Driftstörning i SAMSA"), "{subject}");
    for name in ["Trollhättan", "Göteborg", "Borås"] {
        assert!(text.contains(name), "the notice names {name}:\n{text}");
    }
    step("banner, feed and two emails delivered");

    // The availability dashboard, against the real exporter's series.
    let (n_queries, failures) = common::dashboard_query_failures(
        &prometheus,
        "samsa-availability",
        &[],
        &relay_host,
        Instant::now() + STEP_DEADLINE,
    )
    .await;
    assert!(failures.is_empty(), "{}", failures.join("\n"));
    step(&format!(
        "the availability dashboard's {n_queries} queries return series"
    ));

    // ---- the pages come back ------------------------------------------------------------
    site.bring_back();
    let resolution_draft_id = common::eventually(
        "the incident resolved, with a resolution draft",
        STEP_DEADLINE,
        || async {
            let incident = outage_incidents(&app)
                .await
                .into_iter()
                .find(|incident| incident.incident_id == incident_id)?;
            incident.resolved_at?;
            let draft = pending_draft_of(&app, incident_id, NoticeKind::Resolved).await?;
            Some(draft.draft_id)
        },
    )
    .await;
    step(
        "the probes recovered; Alertmanager's resolution reached the relay; a resolution draft waits",
    );

    let link = review_link_from_mail(&app, resolution_draft_id).await;
    let (status, page) = common::publish_through_review_page(&app, &link, &[]).await;
    assert_eq!(status, 200, "{page}");
    assert!(page.contains("<h1>Publicerat</h1>"), "{page}");
    wait_until_sent(&app, incident_id, 8).await;
    let banner = banner_json(&app).await;
    assert_eq!(banner["active"], true, "the all-clear: {banner}");
    assert_eq!(banner["kind"], "resolved", "the all-clear: {banner}");
    assert!(
        banner["text"]
            .as_str()
            .unwrap_or("")
            .contains("är åtgärdad"),
        "{banner}"
    );
    let resolution_email = mail_bodies(&app.folder.path().join("mail"), EMAIL_RECIPIENTS[0]);
    assert_eq!(resolution_email.len(), 2, "the notice and its resolution");
    step("the resolution is published and delivered; the banner shows the all-clear");

    assert_eq!(
        app.metric(r#"samsa_relay_webhook_requests_total{outcome="unauthorized"}"#)
            .await,
        0.0,
        "Alertmanager's token file matches the relay"
    );
    drop(prometheus);
    drop(alertmanager);
    drop(blackbox);
    app.stop().await;
    drop(site);
    step("done");
}

// ---------------------------------------------------------------------------------------
// The relay
// ---------------------------------------------------------------------------------------

/// One on-duty operator; the banner, the website feed and email to two addresses (the
/// base config's file transport writes them to the test's mail folder).
const RELAY_TABLES: &str = r#"
[[operators]]
name = "Anna Andersson"
email = "anna@example.org"
groups = ["on-duty"]

[channels.banner]
content = "banner"
transport = "banner"

[channels.website]
content = "website"
transport = "feed"

[channels.email]
content = "email"
transport = "email"
recipients = ["support@example.org", "it-lista@example.org"]

[plan]
level_1 = ["banner", "website", "email"]
level_2 = ["banner", "website", "email"]
level_3 = ["banner", "website", "email"]
"#;

async fn outage_incidents(app: &TestApp) -> Vec<samsa_relay::storage::IncidentRecord> {
    app.state
        .storage
        .incidents()
        .await
        .expect("incidents")
        .into_iter()
        .filter(|incident| incident.kind == "outage")
        .collect()
}

async fn pending_draft_of(
    app: &TestApp,
    incident_id: i64,
    kind: NoticeKind,
) -> Option<samsa_relay::storage::DraftRecord> {
    app.state
        .storage
        .drafts(incident_id)
        .await
        .ok()?
        .into_iter()
        .find(|draft| draft.state == "pending" && draft.kind == kind)
}

fn latest_input(draft: &samsa_relay::storage::DraftRecord) -> NoticeInput {
    let version = draft.versions.last().expect("a version");
    serde_json::from_value(version.input.clone()).expect("a stored notice input")
}

fn affected_actors(input: &NoticeInput) -> BTreeSet<String> {
    input
        .summary
        .subregions
        .iter()
        .flat_map(|subregion| subregion.affected.iter().cloned())
        .collect()
}

/// Waits for the review email of a draft to the on-duty operator and returns its link, on
/// the test relay's own address (the link starts with the configured public URL).
async fn review_link_from_mail(app: &TestApp, draft_id: i64) -> String {
    let subject = common::eventually("the review email sent", STEP_DEADLINE, || async {
        let mails = app.state.storage.operator_mail().await.ok()?;
        mails.into_iter().find_map(|(key, to, subject, state)| {
            (key.starts_with(&format!("review:{draft_id}:")) && state == "sent").then(|| {
                assert_eq!(to, OPERATOR_EMAIL);
                subject
            })
        })
    })
    .await;
    let bodies = mail_bodies(&app.folder.path().join("mail"), OPERATOR_EMAIL);
    let (_, body) = bodies
        .iter()
        .rev()
        .find(|(found, _)| *found == subject)
        .unwrap_or_else(|| panic!("no email with the subject {subject:?}"));
    assert!(body.starts_with(&format!("Hej {OPERATOR_NAME},")), "{body}");
    let link = body
        .lines()
        .map(str::trim)
        .find(|line| line.contains("/ops/r/"))
        .unwrap_or_else(|| panic!("no review link in the email:\n{body}"));
    common::on_test_address(app, link)
}

/// The (subject, text) of every message in `folder` to `to`, oldest first.
fn mail_bodies(folder: &Path, to: &str) -> Vec<(String, String)> {
    let mut messages = Vec::new();
    for entry in std::fs::read_dir(folder).expect("the mail folder exists") {
        let path = entry.expect("a folder entry").path();
        let bytes = std::fs::read(&path).expect("a readable message file");
        let message = MessageParser::default()
            .parse(&bytes)
            .unwrap_or_else(|| panic!("{} is not a message", path.display()));
        let addressed = message
            .to()
            .and_then(|list| list.first())
            .and_then(|address| address.address())
            == Some(to);
        if addressed {
            let modified = std::fs::metadata(&path)
                .and_then(|metadata| metadata.modified())
                .expect("a modification time");
            messages.push((
                modified,
                message.subject().unwrap_or_default().to_owned(),
                message.body_text(0).unwrap_or_default().into_owned(),
            ));
        }
    }
    messages.sort_by_key(|(modified, _, _)| *modified);
    messages
        .into_iter()
        .map(|(_, subject, text)| (subject, text))
        .collect()
}

/// Waits until the incident has `n_rows` outbox rows, all sent.
async fn wait_until_sent(
    app: &TestApp,
    incident_id: i64,
    n_rows: usize,
) -> Vec<samsa_relay::storage::OutboxRecord> {
    common::eventually("every delivery sent", STEP_DEADLINE, || async {
        let outbox = app.state.storage.outbox(Some(incident_id)).await.ok()?;
        (outbox.len() == n_rows && outbox.iter().all(|row| row.state == "sent")).then_some(outbox)
    })
    .await
}

async fn banner_json(app: &TestApp) -> Value {
    app.get("/public/banner.json")
        .await
        .json()
        .await
        .expect("banner.json is JSON")
}

// ---------------------------------------------------------------------------------------
// The fake SAMSA login pages, over HTTPS
// ---------------------------------------------------------------------------------------

/// The login page per actor, over HTTPS: `GET /login/ACTOR` and `GET /` (the central page)
/// answer 200 with the page, or 503 for an actor in the down set.
struct LoginSite {
    /// `https://127.0.0.1:PORT`
    https_base: String,
    down: Arc<Mutex<BTreeSet<String>>>,
    /// The site's certificate (PEM), which the exporter is told to trust.
    certificate: PathBuf,
    task: tokio::task::JoinHandle<()>,
    _folder: tempfile::TempDir,
}

const LOGIN_PAGE: &str = "<!doctype html>\n<html lang=\"sv\"><head><meta charset=\"utf-8\">\
    <title>SAMSA</title></head>\n<body><h1>SAMSA</h1><form method=\"post\" action=\"/sso\">\
    <button type=\"submit\">Logga in</button></form></body></html>\n";

const MAINTENANCE_PAGE: &str = "<!doctype html>\n<html lang=\"sv\"><head><meta charset=\"utf-8\">\
    <title>SAMSA</title></head>\n<body><h1>Tjänsten är inte tillgänglig</h1></body></html>\n";

impl LoginSite {
    async fn start() -> LoginSite {
        let folder = tempfile::tempdir().expect("temporary folder");
        let certified = rcgen::generate_simple_self_signed(vec!["127.0.0.1".to_owned()])
            .expect("a certificate for 127.0.0.1");
        let certificate = folder.path().join("login-page.crt");
        std::fs::write(&certificate, certified.cert.pem()).expect("write the certificate");
        let key =
            rustls::pki_types::PrivateKeyDer::Pkcs8(certified.signing_key.serialize_der().into());
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let tls = rustls::ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .expect("TLS versions")
            .with_no_client_auth()
            .with_single_cert(vec![certified.cert.der().clone()], key)
            .expect("the certificate and its key");
        let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(tls));

        let down = Arc::new(Mutex::new(BTreeSet::new()));
        let router = axum::Router::new()
            .route("/", axum::routing::get(central_page))
            .route("/login/{actor}", axum::routing::get(actor_page))
            .with_state(down.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind the login site's port");
        let port = listener.local_addr().expect("address").port();
        let task = tokio::spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    continue;
                };
                let acceptor = acceptor.clone();
                let router = router.clone();
                tokio::spawn(async move {
                    let Ok(stream) = acceptor.accept(stream).await else {
                        return;
                    };
                    let service = hyper::service::service_fn(
                        move |request: hyper::Request<hyper::body::Incoming>| {
                            router.clone().oneshot(request)
                        },
                    );
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(hyper_util::rt::TokioIo::new(stream), service)
                        .await;
                });
            }
        });
        LoginSite {
            https_base: format!("https://127.0.0.1:{port}"),
            down,
            certificate,
            task,
            _folder: folder,
        }
    }

    fn take_down(&self, actors: &[&str]) {
        let mut down = self.down.lock().expect("the down set");
        down.extend(actors.iter().map(|actor| (*actor).to_owned()));
    }

    fn bring_back(&self) {
        self.down.lock().expect("the down set").clear();
    }
}

impl Drop for LoginSite {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn central_page() -> Html<&'static str> {
    Html(LOGIN_PAGE)
}

async fn actor_page(
    State(down): State<Arc<Mutex<BTreeSet<String>>>>,
    UrlPath(actor): UrlPath<String>,
) -> Response {
    if down.lock().expect("the down set").contains(&actor) {
        (StatusCode::SERVICE_UNAVAILABLE, Html(MAINTENANCE_PAGE)).into_response()
    } else {
        Html(LOGIN_PAGE).into_response()
    }
}

// ---------------------------------------------------------------------------------------
// The blackbox exporter, Alertmanager and Prometheus with the shipped configuration
// ---------------------------------------------------------------------------------------

struct Program {
    address: String,
    process: ChildProcess,
    _folder: tempfile::TempDir,
}

fn deploy_path(relative: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("deploy")
        .join(relative)
}

fn deploy_text(relative: &str) -> String {
    let path = deploy_path(relative);
    std::fs::read_to_string(&path)
        .unwrap_or_else(|error| panic!("cannot read {}: {error}", path.display()))
}

/// `text` with each (from, to) replaced everywhere; fails if a `from` does not occur, so
/// that a change to a shipped file cannot silently leave a production value in the test.
fn substitute(file: &str, text: &str, replacements: &[(&str, &str)]) -> String {
    let mut result = text.to_owned();
    for (from, to) in replacements {
        assert!(
            result.contains(from),
            "{file} no longer contains {from:?}; update tests/it/end_to_end.rs"
        );
        result = result.replace(from, to);
    }
    result
}

/// The Debian blackbox exporter with deploy/blackbox/blackbox.yml unchanged, trusting the
/// fake login pages' certificate.
fn start_blackbox_exporter(site: &LoginSite) -> Program {
    let binary = debian_binary(
        "prometheus-blackbox-exporter",
        "prometheus-blackbox-exporter",
    );
    let folder = tempfile::tempdir().expect("temporary folder");
    let port = free_port();
    let mut command = Command::new(binary);
    command
        .arg(format!(
            "--config.file={}",
            deploy_path("blackbox/blackbox.yml").display()
        ))
        .arg(format!("--web.listen-address=127.0.0.1:{port}"))
        .env("SSL_CERT_FILE", &site.certificate)
        .env_remove("SSL_CERT_DIR");
    let process = ChildProcess::spawn(
        "blackbox exporter",
        command,
        folder.path().join("blackbox.log"),
    );
    Program {
        address: format!("http://127.0.0.1:{port}"),
        process,
        _folder: folder,
    }
}

/// The Debian Alertmanager with deploy/alertmanager/alertmanager.yml, pointed at the relay
/// with a token file, grouping within a second, HA gossip off.
fn start_alertmanager(relay_address: &str) -> Program {
    let binary = debian_binary("prometheus-alertmanager", "prometheus-alertmanager");
    let folder = tempfile::tempdir().expect("temporary folder");
    let token_path = folder.path().join("samsa-relay-token");
    std::fs::write(&token_path, format!("{TOKEN}\n")).expect("write the token file");
    let webhook_url = format!("url: \"{relay_address}/webhook/alertmanager\"");
    let credentials = format!("credentials_file: {}", token_path.display());
    let smarthost = format!("smtp_smarthost: \"127.0.0.1:{}\"", free_port());
    let config = substitute(
        "deploy/alertmanager/alertmanager.yml",
        &deploy_text("alertmanager/alertmanager.yml"),
        &[
            (
                "url: \"http://samsa-relay:9095/webhook/alertmanager\"",
                &webhook_url,
            ),
            (
                "credentials_file: /etc/alertmanager/secrets/samsa-relay-token",
                &credentials,
            ),
            ("smtp_smarthost: \"smtp.example.org:587\"", &smarthost),
            ("group_wait: 30s", "group_wait: 1s"),
            ("group_interval: 1m", "group_interval: 1s"),
            ("group_interval: 5m", "group_interval: 1s"),
        ],
    );
    let config_path = folder.path().join("alertmanager.yml");
    std::fs::write(&config_path, config).expect("write the Alertmanager config");
    let storage = folder.path().join("data");
    std::fs::create_dir(&storage).expect("storage folder");
    let port = free_port();
    let mut command = Command::new(binary);
    command
        .arg(format!("--config.file={}", config_path.display()))
        .arg(format!("--storage.path={}", storage.display()))
        .arg(format!("--web.listen-address=127.0.0.1:{port}"))
        .arg("--cluster.listen-address=");
    let process = ChildProcess::spawn(
        "Alertmanager",
        command,
        folder.path().join("alertmanager.log"),
    );
    Program {
        address: format!("http://127.0.0.1:{port}"),
        process,
        _folder: folder,
    }
}

/// deploy/prometheus/prometheus.yml, its rule file and its file_sd targets, with local
/// addresses and one-second timing.
fn prometheus_files(
    relay_host: &str,
    blackbox_address: &str,
    alertmanager_address: &str,
    site: &LoginSite,
) -> (String, Vec<(&'static str, String)>) {
    let blackbox_host = blackbox_address.trim_start_matches("http://");
    let alertmanager_host = alertmanager_address.trim_start_matches("http://");
    let central = format!("{}/", site.https_base);
    let config = substitute(
        "deploy/prometheus/prometheus.yml",
        &deploy_text("prometheus/prometheus.yml"),
        &[
            ("scrape_interval: 30s", "scrape_interval: 1s"),
            ("evaluation_interval: 30s", "evaluation_interval: 1s"),
            ("scrape_timeout: 10s", "scrape_timeout: 1s"),
            ("scrape_timeout: 15s", "scrape_timeout: 1s"),
            ("alertmanager:9093", alertmanager_host),
            ("samsa-relay:9095", relay_host),
            // /metrics: its own listener in the shipped config; the test relay serves it on the
            // main port (no `server.metrics_listen`).
            ("samsa-relay:9096", relay_host),
            ("blackbox-exporter:9115", blackbox_host),
            ("https://samsa.example.org/", &central),
        ],
    );
    let rules = deploy_text("prometheus/samsa-rules.yml");
    // Only the availability group's alerts (SamsaLoginDown, SamsaDown) fire at once; the
    // groups after it keep their durations, so no alert about the relay fires in passing.
    let (availability, rest) = rules
        .split_once("  - name: samsa-monitoring")
        .expect("samsa-rules.yml has the samsa-monitoring group");
    let availability = substitute(
        "deploy/prometheus/samsa-rules.yml",
        availability,
        &[("for: 2m", "for: 0s")],
    );
    let rules = substitute(
        "deploy/prometheus/samsa-rules.yml",
        &format!("{availability}  - name: samsa-monitoring{rest}"),
        &[("interval: 30s", "interval: 1s")],
    );
    let targets = substitute(
        "deploy/prometheus/targets/samsa-login.yml",
        &deploy_text("prometheus/targets/samsa-login.yml"),
        &[("https://samsa.example.org", &site.https_base)],
    );
    for (file, text) in [
        ("prometheus.yml", &config),
        ("samsa-rules.yml", &rules),
        ("targets/samsa-login.yml", &targets),
    ] {
        assert!(
            !text.contains("example.org"),
            "{file} still names a host beyond 127.0.0.1:\n{text}"
        );
    }
    (
        config,
        vec![
            ("samsa-rules.yml", rules),
            ("targets/samsa-login.yml", targets),
        ],
    )
}
