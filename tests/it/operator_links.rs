//! What operator links and the login form let an attacker do (issue 15, findings 3, 4 and
//! 10): the login form is rate-limited per client and per address, answers known and
//! unknown addresses alike and in the same time, and takes only fresh CSRF tokens; a
//! review link opens one draft and mints no broader link, the dashboard mints none
//! either; links can be revoked, also by the command line against a running relay;
//! dashboard links are short-lived; behind single sign-on CSRF tokens expire.

use crate::common;

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use common::{TestApp, alert, payload};
use jiff::{SignedDuration, Timestamp};
use samsa_relay::config::Config;
use samsa_relay::links::{LinkClaims, LinkPurpose};
use serde_json::{Value, json};

const DEADLINE: Duration = Duration::from_secs(20);

const OPERATORS: &str = r#"
[[operators]]
name = "Anna Andersson"
email = "anna@example.org"
groups = ["on-duty"]

[[operators]]
name = "Erik Eriksson"
email = "erik@example.org"
groups = ["escalation"]
"#;

/// The config text: the base, `server_extra` in `[server]`, the operators and `review`.
fn config_text(folder: &std::path::Path, server_extra: &str, review: &str) -> String {
    format!(
        "{}\n{OPERATORS}\n[review]\n{review}\n",
        common::base_config(folder, server_extra, "", "")
    )
}

async fn spawn(server_extra: &str, review: &str) -> TestApp {
    let folder = tempfile::tempdir().expect("temporary folder");
    let text = config_text(folder.path(), server_extra, review);
    let config = Config::from_toml(&text, &BTreeMap::new()).expect("test config is valid");
    common::start(config, folder).await
}

/// Posts one alert and waits for its incident's pending draft; returns the draft id.
async fn outage(app: &TestApp) -> i64 {
    let mut labels = json!({"actor": "kommun-boras"});
    labels["alertname"] = json!("SamsaLoginDown");
    labels["service"] = json!("samsa");
    let down: Value = alert("a1", "firing", labels, "2026-11-28T04:10:00Z");
    let response = app
        .post_webhook(payload("firing", vec![down]).to_string())
        .await;
    assert_eq!(response.status(), 200);
    common::eventually("a pending draft", DEADLINE, || async {
        let drafts = app.state.storage.pending_drafts_overview().await.unwrap();
        drafts.first().map(|draft| draft.draft_id)
    })
    .await
}

/// A link path signed as issued `issued_at`, valid for an hour.
fn link_issued(app: &TestApp, purpose: LinkPurpose, issued_at: Timestamp) -> String {
    let token = app.state.signer.sign_issued(
        &LinkClaims {
            purpose: purpose.clone(),
            operator: "anna@example.org".to_owned(),
            expires_at: Timestamp::now().as_second() + 3600,
        },
        issued_at,
    );
    match purpose {
        LinkPurpose::Review { .. } => format!("/ops/r/{token}"),
        LinkPurpose::Dashboard => format!("/ops/d/{token}"),
    }
}

async fn get(app: &TestApp, path: &str, headers: &[(&str, &str)]) -> (u16, String) {
    let mut request = app.client.get(format!("{}{path}", app.address));
    for (name, value) in headers {
        request = request.header(*name, *value);
    }
    let response = request.send().await.unwrap();
    let status = response.status().as_u16();
    (status, response.text().await.unwrap())
}

async fn post(
    app: &TestApp,
    path: &str,
    headers: &[(&str, &str)],
    fields: &[(&str, &str)],
) -> reqwest::Response {
    let body: String = url::form_urlencoded::Serializer::new(String::new())
        .extend_pairs(fields)
        .finish();
    let mut request = app
        .client
        .post(format!("{}{path}", app.address))
        .header("content-type", "application/x-www-form-urlencoded")
        .body(body);
    for (name, value) in headers {
        request = request.header(*name, *value);
    }
    request.send().await.unwrap()
}

async fn post_text(
    app: &TestApp,
    path: &str,
    headers: &[(&str, &str)],
    fields: &[(&str, &str)],
) -> (u16, String) {
    let response = post(app, path, headers, fields).await;
    let status = response.status().as_u16();
    (status, response.text().await.unwrap())
}

fn csrf_of(html: &str) -> String {
    let start =
        html.find("name=\"csrf\" value=\"").expect("a CSRF field") + "name=\"csrf\" value=\"".len();
    html[start..].split('"').next().unwrap().to_owned()
}

async fn login_csrf(app: &TestApp) -> String {
    csrf_of(&get(app, "/ops/login", &[]).await.1)
}

async fn login_mails(app: &TestApp) -> Vec<String> {
    app.state
        .storage
        .operator_mail()
        .await
        .unwrap()
        .into_iter()
        .map(|(key, ..)| key)
        .filter(|key| key.starts_with("login:"))
        .collect()
}

// ---------------------------------------------------------------------------------------
// Finding 3: the login form.

#[tokio::test]
async fn login_is_limited_per_client_and_per_address_alike_for_known_and_unknown() {
    let app = spawn("trusted_proxies = [\"127.0.0.1/32\"]", "").await;
    let csrf = login_csrf(&app).await;
    // Per address: three at once, from four different clients, known or not. Each allowed
    // request for the operator sends a link (awaited one by one: the email's dedupe key
    // has the millisecond it was asked for); the refused one sends none.
    for email in ["anna@example.org", "nobody@example.org"] {
        let mut statuses = Vec::new();
        for client in 1..=4 {
            let forwarded = format!("10.0.0.{client}");
            let (status, _) = post_text(
                &app,
                "/ops/login",
                &[("x-forwarded-for", &forwarded)],
                &[("csrf", &csrf), ("email", email)],
            )
            .await;
            statuses.push(status);
            if email.starts_with("anna") && status == 200 {
                common::eventually("the login email", DEADLINE, || async {
                    (login_mails(&app).await.len() == client).then_some(())
                })
                .await;
            }
        }
        assert_eq!(statuses, [200, 200, 200, 429], "{email}");
    }
    assert_eq!(login_mails(&app).await.len(), 3);
    // Per client: ten at once, whatever the addresses.
    let mut statuses = Vec::new();
    for index in 0..11 {
        let email = format!("someone{index}@example.org");
        let response = post(
            &app,
            "/ops/login",
            &[("x-forwarded-for", "10.0.1.1")],
            &[("csrf", &csrf), ("email", &email)],
        )
        .await;
        statuses.push(response.status().as_u16());
        if response.status() == 429 {
            assert!(response.headers().contains_key("retry-after"));
            assert!(response.text().await.unwrap().contains("För många försök"));
        }
    }
    assert_eq!(statuses, [[200; 10].as_slice(), &[429]].concat());
    app.stop().await;
}

#[tokio::test]
async fn login_answers_an_operator_as_fast_as_a_stranger_even_while_storage_is_busy() {
    let app = spawn("", "").await;
    let csrf = login_csrf(&app).await;
    // Hold the one write connection: an answer that waited for the email to be stored
    // would wait for this transaction.
    let transaction = app.state.storage.begin_write().await.unwrap();
    let mut answers = Vec::new();
    for email in ["nobody@example.org", "anna@example.org"] {
        let started = Instant::now();
        let (status, html) = post_text(
            &app,
            "/ops/login",
            &[],
            &[("csrf", &csrf), ("email", email)],
        )
        .await;
        let elapsed = started.elapsed();
        assert_eq!(status, 200, "{email}");
        assert!(
            elapsed < Duration::from_secs(1),
            "{email} answered after {elapsed:?}"
        );
        answers.push(html);
    }
    assert_eq!(answers[0], answers[1]);
    drop(transaction);
    let mails = common::eventually("the login email", DEADLINE, || async {
        let mails = login_mails(&app).await;
        (!mails.is_empty()).then_some(mails)
    })
    .await;
    assert_eq!(mails.len(), 1);
    assert!(mails[0].starts_with("login:anna@example.org:"));
    app.stop().await;
}

#[tokio::test]
async fn login_csrf_tokens_are_fresh_per_page_and_expire() {
    let app = spawn("", "").await;
    let first = login_csrf(&app).await;
    let second = login_csrf(&app).await;
    assert_ne!(first, second, "each page gets its own token");
    let signer = &app.state.signer;
    let three_hours_ago = Timestamp::now() - SignedDuration::from_hours(3);
    for refused in [
        // The fixed token of before: one HMAC of the form's label, forever.
        signer.csrf_token("login form"),
        signer.fresh_csrf_token("login form", three_hours_ago),
        signer.fresh_csrf_token("another form", Timestamp::now()),
    ] {
        let (status, html) = post_text(
            &app,
            "/ops/login",
            &[],
            &[("csrf", &refused), ("email", "nobody@example.org")],
        )
        .await;
        assert_eq!(status, 403, "{refused}");
        assert!(html.contains("Formuläret gäller inte"));
    }
    for fresh in [&first, &second] {
        let (status, _) = post_text(
            &app,
            "/ops/login",
            &[],
            &[("csrf", fresh), ("email", "nobody@example.org")],
        )
        .await;
        assert_eq!(status, 200);
    }
    app.stop().await;
}

// ---------------------------------------------------------------------------------------
// Finding 10: CSRF behind single sign-on.

#[tokio::test]
async fn sso_csrf_tokens_are_fresh_per_page_and_expire() {
    let app = spawn("", "trusted_user_header = \"X-Forwarded-Email\"").await;
    let sso = [("x-forwarded-email", "anna@example.org")];
    let first = csrf_of(&get(&app, "/ops/sso/d", &sso).await.1);
    let second = csrf_of(&get(&app, "/ops/sso/d", &sso).await.1);
    assert_ne!(first, second, "each page gets its own token");
    let signer = &app.state.signer;
    for refused in [
        // The fixed token of before: one HMAC of the operator's address, forever.
        signer.csrf_token("sso\0anna@example.org"),
        signer.fresh_csrf_token(
            "sso\0anna@example.org",
            Timestamp::now() - SignedDuration::from_hours(3),
        ),
        signer.fresh_csrf_token("sso\0erik@example.org", Timestamp::now()),
    ] {
        let (status, html) = post_text(
            &app,
            "/ops/sso/d",
            &sso,
            &[("csrf", &refused), ("action", "x")],
        )
        .await;
        assert_eq!(status, 403, "{refused}");
        assert!(html.contains("Formuläret gäller inte"));
    }
    let (status, html) = post_text(
        &app,
        "/ops/sso/d",
        &sso,
        &[("csrf", &first), ("action", "x")],
    )
    .await;
    assert_eq!(status, 200);
    assert!(html.contains("Okänd åtgärd"));
    app.stop().await;
}

// ---------------------------------------------------------------------------------------
// Finding 4: links.

#[tokio::test]
async fn a_review_link_mints_no_dashboard_link() {
    let app = spawn("", "").await;
    let draft_id = outage(&app).await;
    let review = link_issued(
        &app,
        LinkPurpose::Review {
            draft_id,
            version: 1,
        },
        Timestamp::now(),
    );
    let (status, html) = get(&app, &review, &[]).await;
    assert_eq!(status, 200);
    assert!(!html.contains("&#x2f;ops&#x2f;d&#x2f;") && !html.contains("/ops/d/"));
    let (status, html) = post_text(
        &app,
        &review,
        &[],
        &[
            ("csrf", &csrf_of(&html)),
            ("action", "discard"),
            ("discard_reason", "Falsklarm"),
        ],
    )
    .await;
    assert_eq!(status, 200);
    assert!(html.contains("Utkastet är kasserat"));
    assert!(
        !html.contains("&#x2f;ops&#x2f;d&#x2f;") && !html.contains("/ops/d/"),
        "no dashboard link minted: {html}"
    );
    assert!(html.contains("Be om en länk till översikten"));
    // Nor does the review link open a draft's page under the dashboard's prefix.
    let token = review.rsplit('/').next().unwrap();
    let (status, _) = get(&app, &format!("/ops/d/{token}/r/{draft_id}"), &[]).await;
    assert_eq!(status, 403);
    app.stop().await;
}

#[tokio::test]
async fn the_dashboard_opens_review_pages_under_its_own_link_and_mints_none() {
    let app = spawn("", "").await;
    let draft_id = outage(&app).await;
    let dashboard = link_issued(&app, LinkPurpose::Dashboard, Timestamp::now());
    let (status, html) = get(&app, &dashboard, &[]).await;
    assert_eq!(status, 200);
    assert!(
        !html.contains("&#x2f;ops&#x2f;r&#x2f;") && !html.contains("/ops/r/"),
        "no review link minted"
    );
    let review_path = format!("{dashboard}/r/{draft_id}");
    assert!(html.contains(&review_path.replace('/', "&#x2f;")), "{html}");
    let (status, html) = get(&app, &review_path, &[]).await;
    assert_eq!(status, 200);
    assert!(html.contains(&format!(
        "action=\"{}\"",
        review_path.replace('/', "&#x2f;")
    )));
    let (status, html) = post_text(
        &app,
        &review_path,
        &[],
        &[
            ("csrf", &csrf_of(&html)),
            ("action", "discard"),
            ("discard_reason", "Falsklarm"),
        ],
    )
    .await;
    assert_eq!(status, 200);
    assert!(html.contains("Utkastet är kasserat"));
    assert!(html.contains("Till översikten"));
    app.stop().await;
}

#[tokio::test]
async fn revoked_links_are_refused_at_once_and_new_ones_work() {
    let app = spawn("", "").await;
    let draft_id = outage(&app).await;
    let review_purpose = LinkPurpose::Review {
        draft_id,
        version: 1,
    };
    let before = Timestamp::now() - SignedDuration::from_secs(1);
    let dashboard = link_issued(&app, LinkPurpose::Dashboard, before);
    let review = link_issued(&app, review_purpose.clone(), before);
    for path in [&dashboard, &review] {
        assert_eq!(get(&app, path, &[]).await.0, 200, "{path}");
    }

    // The command line, against the running relay's database.
    // The command waits for the running relay's write lock; on a loaded test machine a
    // commit's fsync can take seconds, so it waits longer than the default 5 s.
    let config_file = app.folder.path().join("relay.toml");
    let text = format!(
        "{}\n{OPERATORS}\n[review]\n",
        common::base_config(app.folder.path(), "", "busy_timeout = \"60s\"", "")
    );
    std::fs::write(&config_file, text).unwrap();
    let output = std::process::Command::new(env!("CARGO_BIN_EXE_samsa-relay"))
        .arg("revoke-links")
        .arg("--config")
        .arg(&config_file)
        .output()
        .unwrap();
    assert!(output.status.success(), "{output:?}");

    for path in [
        dashboard.clone(),
        review.clone(),
        format!("{dashboard}/followup"),
        format!("{dashboard}/r/{draft_id}"),
    ] {
        let (status, html) = get(&app, &path, &[]).await;
        assert_eq!(status, 403, "{path}");
        assert!(html.contains("Länken är återkallad"), "{path}");
    }
    let after = Timestamp::now() + SignedDuration::from_millis(5);
    for path in [
        link_issued(&app, LinkPurpose::Dashboard, after),
        link_issued(&app, review_purpose, after),
    ] {
        assert_eq!(get(&app, &path, &[]).await.0, 200, "{path}");
    }
    app.stop().await;
}

#[test]
fn dashboard_links_expire_after_two_hours_and_review_links_after_a_day() {
    let folder = tempfile::tempdir().unwrap();
    let text = config_text(folder.path(), "", "");
    let config = Config::from_toml(&text, &BTreeMap::new()).unwrap();
    let signer = samsa_relay::links::LinkSigner::new(&config.links.secret);
    let operator = config.review.operator("anna@example.org").unwrap();
    let now = Timestamp::from_second(1_800_000_000).unwrap();
    let expiry =
        |purpose| samsa_relay::operators::signed_link(&config, &signer, operator, purpose, now).1;
    assert_eq!(
        expiry(LinkPurpose::Dashboard),
        now + SignedDuration::from_hours(2)
    );
    assert_eq!(
        expiry(LinkPurpose::Review {
            draft_id: 1,
            version: 1
        }),
        now + SignedDuration::from_hours(24)
    );
}
