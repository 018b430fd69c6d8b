//! Email delivery over TLS to a real SMTP server (`tests/support/smtp_sink.py`, see
//! `common::smtp_sink`) whose certificate comes from a CA made for the test, trusted
//! through `smtp.ca_file`: STARTTLS (required) and implicit TLS (`smtps://`) deliver, and
//! the same server without `smtp.ca_file` gets nothing, the rows waiting with a reason
//! that names the certificate.
//!
//! The CA and the server certificate are made by rcgen for each test. The relay connects
//! to 127.0.0.1, so the server certificate names that IP address (a SAN of type IP), and
//! the TLS name checked is the address itself.

use crate::common;

use std::path::{Path, PathBuf};
use std::time::Duration;

use common::TestApp;
use common::smtp_sink::{SinkTls, SmtpSink};
use samsa_relay::delivery::email::message_id;
use samsa_relay::notice::NoticeKind;
use samsa_relay::storage::OutboxRecord;
use serde_json::json;

const DEADLINE: Duration = Duration::from_secs(30);
const FROM_ADDRESS: &str = "noreply.samsa@samsa.example";
const FROM: &str = "SAMSA förvaltning <noreply.samsa@samsa.example>";
const REPLY_TO: &str = "SAMSA förvaltning <info.samsa@samsa.example>";
const RECIPIENTS: [&str; 3] = [
    "it-support@kommun-ale.example",
    "it-support@kommun-lerum.example",
    "servicedesk@region.example",
];

#[tokio::test]
async fn starttls_with_the_ca_file_delivers_every_message_inside_tls() {
    delivers_inside_tls_with_the_ca_file(TlsMode::StartTls).await;
}

#[tokio::test]
async fn implicit_tls_with_the_ca_file_delivers_every_message_inside_tls() {
    delivers_inside_tls_with_the_ca_file(TlsMode::Implicit).await;
}

/// How the server speaks TLS, and so how the relay is configured to.
#[derive(Clone, Copy)]
enum TlsMode {
    /// `smtp://` with STARTTLS required.
    StartTls,
    /// `smtps://`.
    Implicit,
}

/// A server with a certificate from a test CA, and the relay trusting that CA through
/// `smtp.ca_file`: every recipient gets the notice, each inside a TLS session of `mode`.
async fn delivers_inside_tls_with_the_ca_file(mode: TlsMode) {
    let ca = TestCa::new("SAMSA test-CA");
    let (certificate, key) = (ca.server_certificate.clone(), ca.server_key.clone());
    let (sink_tls, scheme, starttls, session_mode) = match mode {
        TlsMode::StartTls => (
            SinkTls::RequiredStartTls { certificate, key },
            "smtp://127.0.0.1:",
            Some("required"),
            "starttls",
        ),
        TlsMode::Implicit => (
            SinkTls::Implicit { certificate, key },
            "smtps://127.0.0.1:",
            None,
            "implicit",
        ),
    };
    let sink = SmtpSink::start_with_tls(&sink_tls);
    assert!(sink.url().starts_with(scheme), "{}", sink.url());
    let app = common::spawn_app_with_smtp(
        &smtp_table(&sink.url(), starttls, Some(&ca.ca_file)),
        &email_channel(),
    )
    .await;

    let outbox = publish_and_try_once(&app).await;

    assert_delivered_over_tls(&sink, &outbox, session_mode);
    app.stop().await;
}

#[tokio::test]
async fn without_the_ca_file_nothing_is_delivered_and_the_rows_wait_naming_the_certificate() {
    let ca = TestCa::new("SAMSA test-CA");
    let sink = SmtpSink::start_with_tls(&SinkTls::RequiredStartTls {
        certificate: ca.server_certificate.clone(),
        key: ca.server_key.clone(),
    });
    let app = common::spawn_app_with_smtp(
        &smtp_table(&sink.url(), Some("required"), None),
        &email_channel(),
    )
    .await;
    assert!(app.state.config.smtp.details.ca_certificates_pem.is_none());

    // The worker tries each row again after seconds of backoff; the first attempts are
    // enough.
    let outbox = publish_and_try_once(&app).await;

    for row in &outbox {
        // Transient: the row waits for the next attempt instead of failing.
        assert_eq!(row.state, "pending", "{row:#?}");
        assert_eq!(row.sent_at, None, "{row:#?}");
        // Today "SMTP 127.0.0.1:PORT: Connection error: Connection error: invalid peer
        // certificate: UnknownIssuer" (lettre around rustls); matched loosely, so that a
        // rewording of the prefix does not break the test.
        let reason = row.last_error.as_deref().expect("a reason");
        assert!(
            reason.to_lowercase().contains("certificate") || reason.contains("UnknownIssuer"),
            "{reason}"
        );
    }
    // The relay reached the server and broke off the STARTTLS handshake itself: the
    // server saw its alert for an unknown CA, and not one message.
    let failures = common::eventually("the server to see the handshake fail", DEADLINE, || {
        let failures = sink.tls_failures();
        async move { (!failures.is_empty()).then_some(failures) }
    })
    .await;
    assert!(
        failures.iter().all(|failure| failure["error"]
            .as_str()
            .is_some_and(|error| error.to_lowercase().contains("unknown ca"))),
        "{failures:?}"
    );
    assert!(sink.messages().is_empty(), "{:?}", sink.messages());
    assert_eq!(
        app.metric(r#"samsa_relay_deliveries_total{channel="email",outcome="sent"}"#)
            .await,
        0.0
    );
    // The worker counts a step's attempts just after it stores them.
    common::eventually("every failed attempt counted", DEADLINE, || async {
        let retried = app
            .metric(r#"samsa_relay_deliveries_total{channel="email",outcome="retry"}"#)
            .await;
        (retried >= RECIPIENTS.len() as f64).then_some(())
    })
    .await;
    app.stop().await;
}

// ---- the certificates ----------------------------------------------------------------

/// A CA made for the test and a server certificate it signed for 127.0.0.1, as PEM files
/// in a temporary folder (removed when dropped).
struct TestCa {
    /// The CA's certificate: what `smtp.ca_file` names.
    ca_file: PathBuf,
    /// The server's certificate and its private key, for the sink.
    server_certificate: PathBuf,
    server_key: PathBuf,
    _folder: tempfile::TempDir,
}

impl TestCa {
    fn new(name: &str) -> TestCa {
        use rcgen::{
            BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer,
            KeyPair, KeyUsagePurpose,
        };
        let folder = tempfile::tempdir().unwrap();

        let ca_key = KeyPair::generate().unwrap();
        let mut ca_params = CertificateParams::new(Vec::<String>::new()).unwrap();
        ca_params.distinguished_name.push(DnType::CommonName, name);
        ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        ca_params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
        let ca_certificate = ca_params.self_signed(&ca_key).unwrap();
        let issuer = Issuer::new(ca_params, ca_key);

        let server_key = KeyPair::generate().unwrap();
        // A string that parses as an IP address becomes a SAN of type IP.
        let mut server_params = CertificateParams::new(vec!["127.0.0.1".to_owned()]).unwrap();
        server_params
            .distinguished_name
            .push(DnType::CommonName, "127.0.0.1");
        server_params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
        server_params.use_authority_key_identifier_extension = true;
        let server_certificate = server_params.signed_by(&server_key, &issuer).unwrap();

        let write = |file: &str, pem: String| {
            let path = folder.path().join(file);
            std::fs::write(&path, pem).unwrap();
            path
        };
        TestCa {
            ca_file: write("ca.pem", ca_certificate.pem()),
            server_certificate: write("server.pem", server_certificate.pem()),
            server_key: write("server-key.pem", server_key.serialize_pem()),
            _folder: folder,
        }
    }
}

// ---- the relay -----------------------------------------------------------------------

/// `[smtp]` for the sink at `url`; `starttls` only for `smtp://`.
fn smtp_table(url: &str, starttls: Option<&str>, ca_file: Option<&Path>) -> String {
    let mut table = format!(
        "[smtp]\nurl = \"{url}\"\nfrom = \"{FROM}\"\nreply_to = \"{REPLY_TO}\"\ntimeout = \"5s\"\npool_max_connections = 2\n"
    );
    if let Some(starttls) = starttls {
        table.push_str(&format!("starttls = \"{starttls}\"\n"));
    }
    if let Some(ca_file) = ca_file {
        table.push_str(&format!("ca_file = \"{}\"\n", ca_file.display()));
    }
    table
}

/// `[channels.email]` to [`RECIPIENTS`], and a plan that uses it at every level.
fn email_channel() -> String {
    let recipients: Vec<String> = RECIPIENTS
        .iter()
        .map(|recipient| format!("\"{recipient}\""))
        .collect();
    format!(
        "[channels.email]\ncontent = \"email\"\ntransport = \"email\"\nrecipients = [{}]\n\n[plan]\nlevel_1 = [\"email\"]\nlevel_2 = [\"email\"]\nlevel_3 = [\"email\"]\n",
        recipients.join(", ")
    )
}

/// One actor down over the webhook; the incident it opens.
async fn open_incident(app: &TestApp) -> i64 {
    let payload = common::payload(
        "firing",
        vec![common::alert(
            "t1",
            "firing",
            json!({"alertname": "SamsaLoginDown", "service": "samsa", "actor": "kommun-ale"}),
            "2026-11-28T04:10:00Z",
        )],
    );
    assert_eq!(app.post_webhook(payload.to_string()).await.status(), 200);
    common::eventually("an incident", DEADLINE, || async {
        let incidents = app.state.storage.incidents().await.unwrap();
        incidents.first().map(|incident| incident.incident_id)
    })
    .await
}

/// Opens an incident, publishes its first notice on `email` and waits until every row's
/// first attempt has finished: sent or failed, or back to pending with a reason.
async fn publish_and_try_once(app: &TestApp) -> Vec<OutboxRecord> {
    let incident_id = open_incident(app).await;
    let publication =
        common::publish_pending(app, incident_id, NoticeKind::Initial, &["email"]).await;
    assert_eq!(publication.n_deliveries, RECIPIENTS.len());
    common::eventually("every delivery tried once", DEADLINE, || async {
        let outbox = app.state.storage.outbox(Some(incident_id)).await.unwrap();
        // A claimed row counts its attempt before the send ends; a reason or another
        // state says it has ended.
        (outbox.len() == RECIPIENTS.len()
            && outbox
                .iter()
                .all(|row| row.state != "pending" || row.last_error.is_some()))
        .then_some(outbox)
    })
    .await
}

/// Every row sent at the first attempt, and the sink holds exactly one message per
/// recipient, each received in a session protected by TLS of `mode`.
fn assert_delivered_over_tls(sink: &SmtpSink, outbox: &[OutboxRecord], mode: &str) {
    assert!(
        outbox
            .iter()
            .all(|row| row.state == "sent" && row.attempts == 1 && row.last_error.is_none()),
        "{outbox:#?}"
    );
    let messages = sink.messages();
    assert_eq!(messages.len(), RECIPIENTS.len(), "{messages:#?}");
    for recipient in RECIPIENTS {
        let row = outbox
            .iter()
            .find(|row| row.recipient == recipient)
            .unwrap_or_else(|| panic!("no outbox row for {recipient}"));
        let received: Vec<_> = messages
            .iter()
            .filter(|message| message.rcpt_tos() == [recipient])
            .collect();
        assert_eq!(received.len(), 1, "{recipient} got {}", received.len());
        let message = received[0];
        assert_eq!(message.mail_from(), FROM_ADDRESS);
        assert_eq!(message.header("to"), Some(recipient));
        assert_eq!(
            message.header("message-id"),
            Some(message_id(&row.delivery_id, "samsa.example").as_str())
        );
        let (tls_mode, version) = message
            .tls()
            .unwrap_or_else(|| panic!("the message to {recipient} came in plain text"));
        assert_eq!(tls_mode, mode, "{recipient}");
        assert!(
            version == "TLSv1.2" || version == "TLSv1.3",
            "{recipient}: {version}"
        );
    }
    assert!(sink.tls_failures().is_empty(), "{:?}", sink.tls_failures());
}
