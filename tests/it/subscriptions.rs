//! Subscriptions per organisation (issue 18), core tier: the real app with SQLite and the
//! file mail transport, driven over HTTP as a subscriber's browser and mail client would,
//! and through the publisher as an operator's Publish does. The same flow in a real
//! Chromium with a real SMTP server is `browser::a_subscriber_…` (system tier).
//!
//! - double opt-in: the mail, a scanner's GETs confirm nothing, the button does;
//! - the same answer for a known and an unknown address;
//! - hostile input in every field and every link;
//! - targeting: Borås and Skövde get Borås, not Lerum, and a whole-service outage; each
//!   person once; updates and the resolution to whoever heard of the incident;
//! - RFC 8058 one-click, the subscriber's own page (change, end, delete);
//! - the purge; the command line.

use crate::common;

use std::collections::BTreeMap;
use std::path::Path;
use std::time::Duration;

use common::{TestApp, alert, payload, spawn_app_with_tables};
use mail_parser::MessageParser;
use samsa_relay::notice::NoticeKind;
use samsa_relay::storage::NewSubscriber;
use samsa_relay::subscription::{Choices, SubscriberState};
use serde_json::{Value, json};

const DEADLINE: Duration = Duration::from_secs(30);
/// `server.public_url` of the test config: links in mails start with it.
const PUBLIC_URL: &str = "http://127.0.0.1:9095";
/// No flapping: a resolved incident stays resolved, the next alert opens a new one.
const TABLES: &str = "[incidents]\nflap_window = \"0s\"\n";

/// One mail the file transport wrote.
#[derive(Debug, Clone)]
pub struct Mail {
    pub to: String,
    pub subject: String,
    pub headers: BTreeMap<String, String>,
    pub text: String,
}

/// Every mail in the app's mail folder.
pub fn mails(folder: &Path) -> Vec<Mail> {
    let Ok(entries) = std::fs::read_dir(folder.join("mail")) else {
        return Vec::new();
    };
    let mut mails = Vec::new();
    for entry in entries {
        let path = entry.unwrap().path();
        let bytes = std::fs::read(&path).unwrap();
        let message = MessageParser::default().parse(&bytes).unwrap();
        let headers = message
            .headers()
            .iter()
            .map(|header| {
                let raw = &bytes[header.offset_start() as usize..header.offset_end() as usize];
                (
                    header.name().to_lowercase(),
                    String::from_utf8_lossy(raw)
                        .replace("\r\n", "")
                        .trim()
                        .to_owned(),
                )
            })
            .collect();
        mails.push(Mail {
            to: message
                .to()
                .and_then(|to| to.first())
                .and_then(|to| to.address())
                .unwrap_or_default()
                .to_owned(),
            subject: message.subject().unwrap_or_default().to_owned(),
            headers,
            text: message
                .body_text(0)
                .map(|text| text.into_owned())
                .unwrap_or_default(),
        });
    }
    mails
}

/// The first link in `text` under `PUBLIC_URL` + `path_prefix`, made to point at the app.
pub fn link_in(text: &str, path_prefix: &str, app_address: &str) -> String {
    let start = format!("{PUBLIC_URL}{path_prefix}");
    let line = text
        .split_whitespace()
        .find(|word| word.starts_with(&start))
        .unwrap_or_else(|| panic!("no {start} link in:\n{text}"));
    line.replacen(PUBLIC_URL, app_address, 1)
}

/// Waits for `n` mails to `to` whose subject contains `subject`.
async fn mails_to(app: &TestApp, to: &str, subject: &str, n: usize) -> Vec<Mail> {
    common::eventually(
        &format!("{n} mail(s) {subject:?} to {to}"),
        DEADLINE,
        || async {
            let found: Vec<Mail> = mails(app.folder.path())
                .into_iter()
                .filter(|mail| mail.to == to && mail.subject.contains(subject))
                .collect();
            (found.len() >= n).then_some(found)
        },
    )
    .await
}

fn choose(actors: &[&str], subregions: &[&str], all: bool) -> Choices {
    Choices {
        all,
        actors: actors.iter().map(|id| (*id).to_owned()).collect(),
        subregions: subregions.iter().map(|id| (*id).to_owned()).collect(),
        min_level: 1,
    }
}

async fn import(app: &TestApp, subscribers: &[(&str, Choices)]) {
    let subscribers: Vec<NewSubscriber> = subscribers
        .iter()
        .map(|(address, choices)| NewSubscriber {
            address: (*address).to_owned(),
            choices: choices.clone(),
            nonce: samsa_relay::subscription::new_nonce(),
        })
        .collect();
    app.state
        .storage
        .import_subscribers(&subscribers, "import by test", jiff::Timestamp::now())
        .await
        .unwrap();
}

async fn post_alert(app: &TestApp, fingerprint: &str, status: &str, labels: Value) {
    let mut labels = labels;
    labels["alertname"] = json!("SamsaLoginDown");
    labels["service"] = json!("samsa");
    let body = payload(
        status,
        vec![alert(fingerprint, status, labels, "2026-11-28T04:10:00Z")],
    );
    assert_eq!(app.post_webhook(body.to_string()).await.status(), 200);
}

/// The subscribers (addresses, sorted) one notice's newsletter rows go to.
async fn newsletter_addresses(app: &TestApp, notice_id: i64) -> Vec<String> {
    let mut addresses = Vec::new();
    for row in common::outbox_rows(app, "newsletter").await {
        if row.notice_id != notice_id {
            continue;
        }
        assert!(
            row.recipient.starts_with("subscriber:"),
            "no address in the outbox: {}",
            row.recipient
        );
        let id = samsa_relay::subscription::subscriber_of_recipient(&row.recipient).unwrap();
        let subscriber = app.state.storage.subscriber(id).await.unwrap().unwrap();
        addresses.push(subscriber.address);
    }
    let n = addresses.len();
    addresses.sort();
    addresses.dedup();
    assert_eq!(addresses.len(), n, "each person once: {addresses:?}");
    addresses
}

async fn publish(app: &TestApp, incident_id: i64, kind: NoticeKind) -> i64 {
    let publication =
        common::publish_pending(app, incident_id, kind, &["banner", "newsletter"]).await;
    publication.notice_id
}

fn form(pairs: &[(&str, &str)]) -> String {
    url::form_urlencoded::Serializer::new(String::new())
        .extend_pairs(pairs)
        .finish()
}

async fn post_form(app: &TestApp, path: &str, body: String) -> reqwest::Response {
    app.client
        .post(format!("{}{path}", app.address))
        .header("content-type", "application/x-www-form-urlencoded")
        .body(body)
        .send()
        .await
        .unwrap()
}

#[tokio::test]
async fn double_opt_in_confirms_by_the_button_and_never_by_a_scanners_get() {
    let app = spawn_app_with_tables(TABLES).await;
    let page = app.get("/public/subscribe").await;
    assert_eq!(page.status(), 200);
    let html = page.text().await.unwrap();
    for expected in [
        "<html lang=\"sv\">",
        "Prenumerera på driftinformation om SAMSA",
        "Det här sparas",
        "Vi sparar bara din e-postadress, dina val, när du bekräftade och hur prenumerationen kom till",
        "<legend>Skaraborg</legend>",
        "Hela Södra Älvsborg",
        "value=\"kommun-boras\"",
    ] {
        assert!(html.contains(expected), "{expected} missing");
    }
    let answer = post_form(
        &app,
        "/public/subscribe",
        form(&[
            ("email", " Anna.Berg@Boras.example "),
            ("scope", "chosen"),
            ("actor", "kommun-boras"),
            ("actor", "kommun-skovde"),
            ("level", "1"),
            ("action", "subscribe"),
        ]),
    )
    .await;
    assert_eq!(answer.status(), 200);
    assert!(
        answer
            .text()
            .await
            .unwrap()
            .contains("Kontrollera din e-post")
    );
    let mail = mails_to(
        &app,
        "anna.berg@boras.example",
        "Bekräfta din prenumeration",
        1,
    )
    .await
    .remove(0);
    assert!(mail.text.contains("Skövde och Borås"), "{}", mail.text);
    let confirm = link_in(&mail.text, "/public/subscribe/confirm/", &app.address);
    let stored = app
        .state
        .storage
        .subscriber_by_address("anna.berg@boras.example")
        .await
        .unwrap()
        .unwrap();
    assert_eq!(stored.state, SubscriberState::Pending);
    assert_eq!(stored.source, "self-service");

    // A mail scanner follows every link, twice: nothing is confirmed.
    for _ in 0..2 {
        let page = app.client.get(&confirm).send().await.unwrap();
        assert_eq!(page.status(), 200);
        assert!(
            page.text()
                .await
                .unwrap()
                .contains("Bekräfta prenumerationen")
        );
        let head = app.client.head(&confirm).send().await.unwrap();
        assert!(head.status().is_success());
    }
    assert_eq!(
        app.state
            .storage
            .subscriber(stored.subscriber_id)
            .await
            .unwrap()
            .unwrap()
            .state,
        SubscriberState::Pending
    );
    let confirmed = app.client.post(&confirm).send().await.unwrap();
    assert_eq!(confirmed.status(), 200);
    let html = confirmed.text().await.unwrap();
    assert!(html.contains("Prenumerationen är bekräftad"), "{html}");
    let after = app
        .state
        .storage
        .subscriber(stored.subscriber_id)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(after.state, SubscriberState::Confirmed);
    assert!(after.consented_at.is_some());
    assert_eq!(
        after.choices,
        choose(&["kommun-skovde", "kommun-boras"], &[], false)
    );
    app.stop().await;
}

#[tokio::test]
async fn a_known_and_an_unknown_address_get_the_same_answer() {
    let app = spawn_app_with_tables(TABLES).await;
    import(
        &app,
        &[("known@example.org", choose(&["kommun-ale"], &[], false))],
    )
    .await;
    let mut answers = Vec::new();
    for address in ["known@example.org", "fresh@example.org"] {
        let answer = post_form(
            &app,
            "/public/subscribe",
            form(&[
                ("email", address),
                ("scope", "all"),
                ("level", "1"),
                ("action", "subscribe"),
            ]),
        )
        .await;
        let status = answer.status();
        let headers: Vec<String> = answer
            .headers()
            .iter()
            .filter(|(name, _)| *name != "date" && *name != "content-length")
            .map(|(name, value)| format!("{name}: {value:?}"))
            .collect();
        let body = answer.text().await.unwrap().replace(address, "ADDRESS");
        answers.push((status, headers, body));
    }
    assert_eq!(answers[0], answers[1]);
    // Each gets the mail that fits; the subscribed address keeps its choices.
    let known = mails_to(&app, "known@example.org", "Du prenumererar redan", 1).await;
    assert!(
        known[0].text.contains("/public/subscription/"),
        "{}",
        known[0].text
    );
    mails_to(&app, "fresh@example.org", "Bekräfta din prenumeration", 1).await;
    let kept = app
        .state
        .storage
        .subscriber_by_address("known@example.org")
        .await
        .unwrap()
        .unwrap();
    assert_eq!(kept.choices, choose(&["kommun-ale"], &[], false));
    assert_eq!(kept.state, SubscriberState::Confirmed);
    app.stop().await;
}

#[tokio::test]
async fn hostile_input_in_every_field_and_link_changes_nothing_and_is_escaped() {
    let app = spawn_app_with_tables(TABLES).await;
    let script = "<script>alert(1)</script>";
    let many_actors: Vec<(&str, &str)> = std::iter::repeat_n(("actor", "kommun-boras"), 2_000)
        .chain([
            ("email", "many@example.org"),
            ("scope", "chosen"),
            ("action", "subscribe"),
        ])
        .collect();
    let long_email = format!("{}@example.org", "a".repeat(5_000));
    let cases: Vec<(&str, String)> = vec![
        (
            "header injection",
            form(&[
                ("email", "x@example.org\r\nBcc: victim@example.org"),
                ("scope", "all"),
                ("action", "subscribe"),
            ]),
        ),
        (
            "script in the address",
            form(&[("email", script), ("scope", "all"), ("action", "subscribe")]),
        ),
        (
            "an address too long",
            form(&[
                ("email", &long_email),
                ("scope", "all"),
                ("action", "subscribe"),
            ]),
        ),
        (
            "no address",
            form(&[("scope", "all"), ("action", "subscribe")]),
        ),
        (
            "an unknown organisation",
            form(&[
                ("email", "a@example.org"),
                ("scope", "chosen"),
                ("actor", script),
                ("action", "subscribe"),
            ]),
        ),
        (
            "an unknown sub-region",
            form(&[
                ("email", "a@example.org"),
                ("scope", "chosen"),
                ("subregion", "'; DROP TABLE subscribers; --"),
                ("action", "subscribe"),
            ]),
        ),
        (
            "nothing chosen",
            form(&[
                ("email", "a@example.org"),
                ("scope", "chosen"),
                ("action", "subscribe"),
            ]),
        ),
        (
            "a level out of range",
            form(&[
                ("email", "a@example.org"),
                ("scope", "all"),
                ("level", "9"),
                ("action", "subscribe"),
            ]),
        ),
        (
            "a level that is no number",
            form(&[
                ("email", "a@example.org"),
                ("scope", "all"),
                ("level", script),
                ("action", "subscribe"),
            ]),
        ),
        (
            "a script in the search",
            form(&[
                ("email", "a@example.org"),
                ("q", script),
                ("action", "search"),
            ]),
        ),
        (
            "an unknown action",
            form(&[
                ("email", "a@example.org"),
                ("scope", "all"),
                ("action", script),
            ]),
        ),
        (
            "a scope that is neither",
            form(&[
                ("email", "a@example.org"),
                ("scope", script),
                ("action", "subscribe"),
            ]),
        ),
        (
            "control characters",
            form(&[
                ("email", "a\u{0}@example.org"),
                ("scope", "all"),
                ("action", "subscribe"),
            ]),
        ),
        ("2,000 repeated values", form(&many_actors)),
    ];
    for (what, body) in cases {
        let answer = post_form(&app, "/public/subscribe", body).await;
        let status = answer.status().as_u16();
        let html = answer.text().await.unwrap();
        assert!(
            [200, 400, 422].contains(&status),
            "{what}: {status}\n{html}"
        );
        assert!(!html.contains(script), "{what}: not escaped");
    }
    // Not a form, and too large: refused before anything is read.
    let json = app
        .client
        .post(format!("{}/public/subscribe", app.address))
        .header("content-type", "application/json")
        .body("{}")
        .send()
        .await
        .unwrap();
    assert_eq!(json.status(), 415);
    let huge = post_form(
        &app,
        "/public/subscribe",
        format!("email={}", "a".repeat(70_000)),
    )
    .await;
    assert_eq!(huge.status(), 413);
    // From another site: refused.
    let cross = app
        .client
        .post(format!("{}/public/subscribe", app.address))
        .header("content-type", "application/x-www-form-urlencoded")
        .header("origin", "https://evil.example")
        .body(form(&[
            ("email", "x@example.org"),
            ("scope", "all"),
            ("action", "subscribe"),
        ]))
        .send()
        .await
        .unwrap();
    assert_eq!(cross.status(), 403);

    // The 2,000 repeated values were one valid choice: only that address is stored,
    // after the answer.
    common::eventually("the valid request stored", DEADLINE, || async {
        app.state
            .storage
            .subscriber_by_address("many@example.org")
            .await
            .unwrap()
    })
    .await;
    let stored: Vec<String> = app
        .state
        .storage
        .subscribers()
        .await
        .unwrap()
        .into_iter()
        .map(|subscriber| subscriber.address)
        .collect();
    assert_eq!(stored, ["many@example.org"]);

    // Links: forged, tampered, an operator's link, garbage: the same "not valid" page.
    import(&app, &[("anna@example.org", choose(&[], &[], true))]).await;
    let signer =
        samsa_relay::links::LinkSigner::new(&samsa_relay::config::Secret::new(common::LINK_SECRET));
    let operator_link = signer.sign(&samsa_relay::links::LinkClaims {
        purpose: samsa_relay::links::LinkPurpose::Dashboard,
        operator: "anna@example.org".to_owned(),
        expires_at: i64::from(i32::MAX),
    });
    let other_secret = samsa_relay::links::LinkSigner::new(&samsa_relay::config::Secret::new(
        "another-secret-that-is-long-enough-0123456789",
    ))
    .sign_subscription(&samsa_relay::links::SubscriptionClaims {
        action: samsa_relay::links::SubscriptionAction::Manage,
        subscriber_id: 2,
        nonce: "0".to_owned(),
        expires_at: None,
    });
    for token in [
        operator_link.as_str(),
        other_secret.as_str(),
        "garbage",
        "a.b",
        &"x".repeat(5_000),
        "%3Cscript%3E",
    ] {
        for path in [
            format!("/public/subscribe/confirm/{token}"),
            format!("/public/subscription/{token}"),
            format!("/public/subscription/{token}/unsubscribe"),
        ] {
            let get = app.get(&path).await;
            assert!(
                matches!(get.status().as_u16(), 404 | 414 | 431),
                "GET {path}: {}",
                get.status()
            );
            let post = post_form(&app, &path, form(&[("action", "delete")])).await;
            assert!(
                matches!(post.status().as_u16(), 404 | 414 | 431),
                "POST {path}: {}",
                post.status()
            );
        }
    }
    assert_eq!(
        app.state
            .storage
            .subscriber_by_address("anna@example.org")
            .await
            .unwrap()
            .unwrap()
            .state,
        SubscriberState::Confirmed
    );
    app.stop().await;
}

#[tokio::test]
async fn notices_reach_whom_they_concern_once_each_and_updates_reach_earlier_recipients() {
    let app = spawn_app_with_tables(TABLES).await;
    import(
        &app,
        &[
            (
                "anna@boras.example",
                choose(&["kommun-boras", "kommun-skovde"], &[], false),
            ),
            ("bo@lerum.example", choose(&["kommun-lerum"], &[], false)),
            ("cia@vgr.example", choose(&[], &[], true)),
            // Borås by name and by its sub-region: still one notice.
            (
                "dan@sas.example",
                choose(&["kommun-boras"], &["sodra-alvsborg"], false),
            ),
            ("eva@skovde.example", choose(&["kommun-skovde"], &[], false)),
        ],
    )
    .await;

    // Lerum: not the Borås and Skövde subscriber.
    post_alert(&app, "lerum", "firing", json!({"actor": "kommun-lerum"})).await;
    let notice = publish(&app, 1, NoticeKind::Initial).await;
    assert_eq!(
        newsletter_addresses(&app, notice).await,
        ["bo@lerum.example", "cia@vgr.example"]
    );
    post_alert(&app, "lerum", "resolved", json!({"actor": "kommun-lerum"})).await;
    let notice = publish(&app, 1, NoticeKind::Resolved).await;
    assert_eq!(
        newsletter_addresses(&app, notice).await,
        ["bo@lerum.example", "cia@vgr.example"]
    );

    // Borås: a new incident.
    post_alert(&app, "boras", "firing", json!({"actor": "kommun-boras"})).await;
    let publication =
        common::publish_pending(&app, 2, NoticeKind::Initial, &["banner", "newsletter"]).await;
    assert_eq!(
        publication.deliveries_per_channel,
        [("banner".to_owned(), 1), ("newsletter".to_owned(), 3)],
        "the confirmation counts people per channel"
    );
    assert_eq!(
        newsletter_addresses(&app, publication.notice_id).await,
        ["anna@boras.example", "cia@vgr.example", "dan@sas.example"]
    );
    // Anna changes her mind before the resolution: she heard of the incident, so she
    // still hears that it is over.
    let anna = app
        .state
        .storage
        .subscriber_by_address("anna@boras.example")
        .await
        .unwrap()
        .unwrap();
    app.state
        .storage
        .change_choices(
            anna.subscriber_id,
            &anna.nonce,
            &choose(&["kommun-ale"], &[], false),
            jiff::Timestamp::now(),
        )
        .await
        .unwrap();
    post_alert(&app, "boras", "resolved", json!({"actor": "kommun-boras"})).await;
    let notice = publish(&app, 2, NoticeKind::Resolved).await;
    assert_eq!(
        newsletter_addresses(&app, notice).await,
        ["anna@boras.example", "cia@vgr.example", "dan@sas.example"]
    );

    // The whole service: everyone.
    post_alert(&app, "all", "firing", json!({"scope": "all"})).await;
    let notice = publish(&app, 3, NoticeKind::Initial).await;
    assert_eq!(
        newsletter_addresses(&app, notice).await,
        [
            "anna@boras.example",
            "bo@lerum.example",
            "cia@vgr.example",
            "dan@sas.example",
            "eva@skovde.example"
        ]
    );

    // The mails: one per row, to the address, with the one-click headers and the footer.
    let to_eva = mails_to(&app, "eva@skovde.example", "", 1).await;
    assert_eq!(
        to_eva.len(),
        1,
        "Eva heard only of the whole-service outage"
    );
    let mail = &to_eva[0];
    let unsubscribe = mail
        .headers
        .get("list-unsubscribe")
        .unwrap_or_else(|| panic!("{:?}", mail.headers));
    assert!(
        unsubscribe.starts_with(&format!("<{PUBLIC_URL}/public/subscription/"))
            && unsubscribe.ends_with("/unsubscribe>"),
        "{unsubscribe}"
    );
    assert_eq!(
        mail.headers
            .get("list-unsubscribe-post")
            .map(String::as_str),
        Some("List-Unsubscribe=One-Click")
    );
    assert!(mail.headers.contains_key("list-id"), "{:?}", mail.headers);
    assert!(
        mail.text
            .contains("du prenumererar på driftinformation om SAMSA: Skövde"),
        "{}",
        mail.text
    );
    let to_anna = mails_to(&app, "anna@boras.example", "", 3).await;
    assert_eq!(to_anna.len(), 3, "Borås, its resolution, the whole service");
    let to_cia = mails_to(&app, "cia@vgr.example", "", 5).await;
    assert_eq!(to_cia.len(), 5);

    // The review page of the next draft says whom it would reach and why.
    post_alert(&app, "all", "resolved", json!({"scope": "all"})).await;
    let (draft_id, _, _) = common::pending_draft(&app, 3, NoticeKind::Resolved).await;
    let reach = samsa_relay::subscribers::reach(
        &app.state.storage,
        &app.state.config,
        3,
        &app.state
            .storage
            .drafts(3)
            .await
            .unwrap()
            .into_iter()
            .find(|d| d.draft_id == draft_id)
            .map(|d| {
                serde_json::from_value::<samsa_relay::notice::NoticeInput>(
                    d.versions.last().unwrap().input.clone(),
                )
                .unwrap()
                .summary
            })
            .unwrap(),
        samsa_relay::classify::Level::Three,
    )
    .await
    .unwrap();
    assert_eq!(reach.n_people, 5);
    app.stop().await;
}

#[tokio::test]
async fn one_click_ends_only_that_subscription_and_the_own_page_changes_and_deletes() {
    let app = spawn_app_with_tables(TABLES).await;
    import(
        &app,
        &[
            ("anna@boras.example", choose(&["kommun-boras"], &[], false)),
            ("bo@boras.example", choose(&["kommun-boras"], &[], false)),
        ],
    )
    .await;
    post_alert(&app, "boras", "firing", json!({"actor": "kommun-boras"})).await;
    publish(&app, 1, NoticeKind::Initial).await;
    let mail = mails_to(&app, "anna@boras.example", "", 1).await.remove(0);
    let header = mail.headers["list-unsubscribe"].clone();
    let one_click = header
        .trim_start_matches('<')
        .trim_end_matches('>')
        .replacen(PUBLIC_URL, &app.address, 1);
    // A scanner's GET ends nothing.
    let page = app.client.get(&one_click).send().await.unwrap();
    assert_eq!(page.status(), 200);
    assert!(
        page.text()
            .await
            .unwrap()
            .contains("Avsluta prenumerationen?")
    );
    // RFC 8058: a POST of List-Unsubscribe=One-Click, no cookie, no form token.
    let answer = app
        .client
        .post(&one_click)
        .header("content-type", "application/x-www-form-urlencoded")
        .body("List-Unsubscribe=One-Click")
        .send()
        .await
        .unwrap();
    assert_eq!(answer.status(), 200);
    let state = |address: &'static str| {
        let storage = app.state.storage.clone();
        async move {
            storage
                .subscriber_by_address(address)
                .await
                .unwrap()
                .unwrap()
                .state
        }
    };
    assert_eq!(
        state("anna@boras.example").await,
        SubscriberState::Unsubscribed
    );
    assert_eq!(state("bo@boras.example").await, SubscriberState::Confirmed);

    // The next notice reaches Bo only.
    post_alert(&app, "boras", "resolved", json!({"actor": "kommun-boras"})).await;
    let notice = publish(&app, 1, NoticeKind::Resolved).await;
    assert_eq!(
        newsletter_addresses(&app, notice).await,
        ["bo@boras.example"]
    );

    // Bo's own page: change the choices, then delete everything.
    let bo_mail = mails_to(&app, "bo@boras.example", "", 1).await.remove(0);
    let manage = link_in(&bo_mail.text, "/public/subscription/", &app.address);
    let page = app
        .client
        .get(&manage)
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(page.contains("bo@boras.example") && page.contains("Radera mina uppgifter nu"));
    let path = manage.trim_start_matches(&app.address).to_owned();
    let saved = post_form(
        &app,
        &path,
        form(&[
            ("scope", "chosen"),
            ("subregion", "skaraborg"),
            ("level", "2"),
            ("action", "save"),
        ]),
    )
    .await;
    assert_eq!(saved.status(), 200);
    assert!(saved.text().await.unwrap().contains("Dina val är sparade"));
    let bo = app
        .state
        .storage
        .subscriber_by_address("bo@boras.example")
        .await
        .unwrap()
        .unwrap();
    assert_eq!(bo.choices.subregions, ["skaraborg"]);
    assert_eq!(bo.choices.min_level, 2);
    let deleted = post_form(&app, &path, form(&[("action", "delete")])).await;
    assert_eq!(deleted.status(), 200);
    assert!(
        deleted
            .text()
            .await
            .unwrap()
            .contains("Dina uppgifter är raderade")
    );
    assert!(
        app.state
            .storage
            .subscriber_by_address("bo@boras.example")
            .await
            .unwrap()
            .is_none()
    );
    // The link of a deleted subscription opens nothing.
    assert_eq!(app.client.get(&manage).send().await.unwrap().status(), 404);
    app.stop().await;
}

#[tokio::test]
async fn unconfirmed_requests_and_ended_subscriptions_are_purged() {
    let app = spawn_app_with_tables(TABLES).await;
    let answer = post_form(
        &app,
        "/public/subscribe",
        form(&[
            ("email", "late@example.org"),
            ("scope", "all"),
            ("action", "subscribe"),
        ]),
    )
    .await;
    assert_eq!(answer.status(), 200);
    mails_to(&app, "late@example.org", "Bekräfta", 1).await;
    import(
        &app,
        &[
            ("kept@example.org", choose(&[], &[], true)),
            ("gone@example.org", choose(&[], &[], true)),
        ],
    )
    .await;
    let now = jiff::Timestamp::now();
    app.state
        .storage
        .remove_subscriber("gone@example.org", "test", now)
        .await
        .unwrap();
    let upkeep = samsa_relay::subscribers::SubscriptionUpkeep {
        storage: app.state.storage.clone(),
        config: app.state.config.clone(),
    };
    assert_eq!(upkeep.step(now).await.unwrap(), 0, "nothing is old yet");
    let two_days = now + jiff::SignedDuration::from_hours(49);
    assert_eq!(
        upkeep.step(two_days).await.unwrap(),
        1,
        "the unconfirmed request"
    );
    assert!(
        mails(app.folder.path())
            .iter()
            .any(|mail| mail.to == "late@example.org"),
        "the mail file itself is the mail server's"
    );
    assert!(
        app.state
            .storage
            .operator_mail()
            .await
            .unwrap()
            .iter()
            .all(|(_, to, _, _)| to != "late@example.org"),
        "its confirmation mail is gone from the database"
    );
    let a_month = now + jiff::SignedDuration::from_hours(24 * 31);
    assert_eq!(
        upkeep.step(a_month).await.unwrap(),
        1,
        "the ended subscription"
    );
    let left: Vec<String> = app
        .state
        .storage
        .subscribers()
        .await
        .unwrap()
        .into_iter()
        .map(|subscriber| subscriber.address)
        .collect();
    assert_eq!(left, ["kept@example.org"]);
    app.stop().await;
}

/// A real SMTP server refuses one address for good: after two notices it is suspended,
/// the third does not go to it; its bounces alarm no operator and stay out of the
/// incident log (the server's answer quotes the address).
#[cfg(feature = "system-tests")]
#[tokio::test]
async fn an_address_refused_for_good_is_suspended_after_the_configured_count() {
    let sink = common::smtp_sink::SmtpSink::start();
    sink.control(json!({"rules": [
        {"pattern": "^nobody@", "reply": "550 5.1.1 <nobody@kommun.example>: no such user"}
    ]}));
    let app = common::spawn_app_with_smtp(
        &format!("[smtp]\nurl = \"{}\"\nstarttls = \"none\"\n", sink.url()),
        &format!(
            "{TABLES}\n[subscriptions]\nsuspend_after_failures = 2\n\n[[operators]]\nname = \"Åsa\"\nemail = \"asa@example.org\"\ngroups = [\"on-duty\"]\n"
        ),
    )
    .await;
    import(
        &app,
        &[
            ("nobody@kommun.example", choose(&[], &[], true)),
            ("anna@kommun.example", choose(&[], &[], true)),
        ],
    )
    .await;
    let nobody = || async {
        app.state
            .storage
            .subscriber_by_address("nobody@kommun.example")
            .await
            .unwrap()
            .unwrap()
    };
    post_alert(&app, "boras", "firing", json!({"actor": "kommun-boras"})).await;
    publish(&app, 1, NoticeKind::Initial).await;
    common::eventually("the first bounce counted", DEADLINE, || async {
        (nobody().await.permanent_failures == 1).then_some(())
    })
    .await;
    assert_eq!(nobody().await.state, SubscriberState::Confirmed);
    post_alert(&app, "boras", "resolved", json!({"actor": "kommun-boras"})).await;
    publish(&app, 1, NoticeKind::Resolved).await;
    common::eventually("suspended at the second bounce", DEADLINE, || async {
        (nobody().await.state == SubscriberState::Suspended).then_some(())
    })
    .await;
    assert!(
        nobody()
            .await
            .last_failure
            .unwrap()
            .contains("no such user")
    );
    post_alert(&app, "all", "firing", json!({"scope": "all"})).await;
    let notice = publish(&app, 2, NoticeKind::Initial).await;
    assert_eq!(
        newsletter_addresses(&app, notice).await,
        ["anna@kommun.example"]
    );
    // No operator was alarmed, and no incident log holds the answer.
    assert!(
        app.state
            .storage
            .failed_deliveries(50)
            .await
            .unwrap()
            .is_empty()
    );
    for incident_id in [1, 2] {
        let events = app
            .state
            .storage
            .incident_events(incident_id)
            .await
            .unwrap();
        let text = format!("{events:?}");
        assert!(!text.contains("nobody@"), "{text}");
    }
    let mails = app.state.storage.operator_mail().await.unwrap();
    assert!(
        mails
            .iter()
            .all(|(key, _, _, _)| !key.starts_with("failed:")),
        "{mails:?}"
    );
    app.stop().await;
}
