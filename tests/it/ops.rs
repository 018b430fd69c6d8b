//! The operator pages over real HTTP: signed links, CSRF, the review and publish flow,
//! discard, login links, the dashboard's actions (drill, drafts by hand), escalation and
//! single sign-on.

use crate::common;

use std::time::Duration;

use common::{TestApp, alert, payload, spawn_app_with_tables};
use jiff::Timestamp;
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

async fn spawn_with_operators(review: &str) -> TestApp {
    spawn_app_with_tables(&format!("{OPERATORS}\n[review]\n{review}\n")).await
}

fn down(fingerprint: &str, labels: Value) -> Value {
    let mut labels = labels;
    labels["alertname"] = json!("SamsaLoginDown");
    labels["service"] = json!("samsa");
    alert(fingerprint, "firing", labels, "2026-11-28T04:10:00Z")
}

/// Posts one alert and waits for its incident's pending draft; returns the draft id.
async fn outage(app: &TestApp, labels: Value) -> i64 {
    let response = app
        .post_webhook(payload("firing", vec![down("a1", labels)]).to_string())
        .await;
    assert_eq!(response.status(), 200);
    common::eventually("a pending draft", DEADLINE, || async {
        let drafts = app.state.storage.pending_drafts_overview().await.unwrap();
        drafts.first().map(|draft| draft.draft_id)
    })
    .await
}

fn link(app: &TestApp, email: &str, purpose: LinkPurpose, expires_at: i64) -> String {
    let token = app.state.signer.sign(&LinkClaims {
        purpose: purpose.clone(),
        operator: email.to_owned(),
        expires_at,
    });
    match purpose {
        LinkPurpose::Review { .. } => format!("{}/ops/r/{token}", app.address),
        LinkPurpose::Dashboard => format!("{}/ops/d/{token}", app.address),
    }
}

fn in_an_hour() -> i64 {
    Timestamp::now().as_second() + 3600
}

async fn get_page(app: &TestApp, url: &str) -> (u16, String) {
    let response = app.client.get(url).send().await.unwrap();
    let status = response.status().as_u16();
    (status, response.text().await.unwrap())
}

async fn post_form(app: &TestApp, url: &str, fields: &[(&str, &str)]) -> (u16, String) {
    let body: String = url::form_urlencoded::Serializer::new(String::new())
        .extend_pairs(fields)
        .finish();
    let response = app
        .client
        .post(url)
        .header("content-type", "application/x-www-form-urlencoded")
        .body(body)
        .send()
        .await
        .unwrap();
    let status = response.status().as_u16();
    (status, response.text().await.unwrap())
}

fn csrf_of(html: &str) -> String {
    let start =
        html.find("name=\"csrf\" value=\"").expect("a CSRF field") + "name=\"csrf\" value=\"".len();
    html[start..].split('"').next().unwrap().to_owned()
}

#[tokio::test]
async fn the_on_duty_operator_is_mailed_a_review_link_and_get_changes_nothing() {
    let app = spawn_with_operators("").await;
    let draft_id = outage(&app, json!({"actor": "kommun-boras"})).await;
    let mails = common::eventually("the review email sent", DEADLINE, || async {
        let mails = app.state.storage.operator_mail().await.unwrap();
        mails
            .iter()
            .any(|(_, _, _, state)| state == "sent")
            .then_some(mails)
    })
    .await;
    let (key, to, subject, _) = &mails[0];
    assert_eq!(key, &format!("review:{draft_id}:1:anna@example.org"));
    assert_eq!(to, "anna@example.org");
    assert!(subject.starts_with("Granska utkast"), "{subject}");
    assert_eq!(
        mails.len(),
        1,
        "the escalation group is not mailed before the draft waited"
    );
    // The message itself is in the mail folder (file transport) and carries the link.
    let folder = app.folder.path().join("mail");
    let files: Vec<_> = std::fs::read_dir(&folder).unwrap().collect();
    assert_eq!(files.len(), 1);
    // It names who is affected, a municipality as one.
    let bytes = std::fs::read(files[0].as_ref().unwrap().path()).unwrap();
    let message = mail_parser::MessageParser::default().parse(&bytes).unwrap();
    let mail = message.body_text(0).unwrap().into_owned();
    assert!(
        mail.contains("1 av 67 aktörer påverkas: kommunen Borås"),
        "{mail}"
    );

    let url = link(
        &app,
        "anna@example.org",
        LinkPurpose::Review {
            draft_id,
            version: 1,
        },
        in_an_hour(),
    );
    for _ in 0..2 {
        let (status, html) = get_page(&app, &url).await;
        assert_eq!(status, 200);
        assert!(html.contains("<html lang=\"sv\">"));
        assert!(html.contains("Övrig information om störningen (frivilligt)"));
        // Channels by their Swedish names, never by their ids.
        assert!(html.contains(">Inloggningssidan</label>"), "{html}");
        assert!(!html.contains("(banner)") && !html.contains("(email)"));
    }
    let response = app.client.get(&url).send().await.unwrap();
    let headers = response.headers();
    assert_eq!(headers["cache-control"], "no-store");
    assert_eq!(headers["referrer-policy"], "no-referrer");
    assert!(
        headers["content-security-policy"]
            .to_str()
            .unwrap()
            .contains("frame-ancestors 'none'")
    );
    let drafts = app.state.storage.drafts(1).await.unwrap();
    assert_eq!(drafts[0].versions.len(), 1, "GET changed nothing");
    assert!(
        app.state
            .storage
            .published_notices(None, 10)
            .await
            .unwrap()
            .is_empty()
    );
    app.stop().await;
}

#[tokio::test]
async fn links_that_are_expired_tampered_or_for_someone_else_are_refused() {
    let app = spawn_with_operators("").await;
    let draft_id = outage(&app, json!({"actor": "kommun-boras"})).await;
    let review = LinkPurpose::Review {
        draft_id,
        version: 1,
    };

    let expired = link(
        &app,
        "anna@example.org",
        review.clone(),
        Timestamp::now().as_second() - 1,
    );
    let (status, html) = get_page(&app, &expired).await;
    assert_eq!(status, 403);
    assert!(html.contains("Länken har gått ut"));

    let good = link(&app, "anna@example.org", review.clone(), in_an_hour());
    let mut tampered = good.clone();
    let last = tampered.pop().unwrap();
    tampered.push(if last == 'A' { 'B' } else { 'A' });
    let (status, html) = get_page(&app, &tampered).await;
    assert_eq!(status, 403);
    assert!(html.contains("Länken gäller inte"));

    let stranger = link(&app, "mallory@example.org", review.clone(), in_an_hour());
    assert_eq!(get_page(&app, &stranger).await.0, 403);

    // A review link does not open the dashboard.
    let token = good.rsplit('/').next().unwrap();
    assert_eq!(
        get_page(&app, &format!("{}/ops/d/{token}", app.address))
            .await
            .0,
        403
    );
    app.stop().await;
}

#[tokio::test]
async fn posts_need_the_csrf_token_and_publishing_consumes_the_link() {
    let app = spawn_with_operators("").await;
    let draft_id = outage(&app, json!({"actor": "kommun-boras"})).await;
    let url = link(
        &app,
        "anna@example.org",
        LinkPurpose::Review {
            draft_id,
            version: 1,
        },
        in_an_hour(),
    );
    let (_, html) = get_page(&app, &url).await;
    let csrf = csrf_of(&html);
    let publish = [
        ("version", "1"),
        ("level", "1"),
        ("channels", "banner"),
        ("channels", "website"),
        ("action", "publish"),
    ];
    assert_eq!(
        post_form(&app, &url, &publish).await.0,
        403,
        "no CSRF token"
    );
    let mut wrong = publish.to_vec();
    wrong.push(("csrf", "d3Jvbmc"));
    assert_eq!(
        post_form(&app, &url, &wrong).await.0,
        403,
        "a wrong CSRF token"
    );
    assert!(
        app.state
            .storage
            .published_notices(None, 10)
            .await
            .unwrap()
            .is_empty()
    );

    // Two concurrent publishes of the same reviewed version: exactly one publication.
    let mut fields = publish.to_vec();
    fields.push(("csrf", &csrf));
    let fields: Vec<(String, String)> = fields
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    let mut tasks = Vec::new();
    for _ in 0..4 {
        let client = app.client.clone();
        let url = url.clone();
        let body: String = url::form_urlencoded::Serializer::new(String::new())
            .extend_pairs(fields.iter())
            .finish();
        tasks.push(tokio::spawn(async move {
            let response = client
                .post(url)
                .header("content-type", "application/x-www-form-urlencoded")
                .body(body)
                .send()
                .await
                .unwrap();
            (response.status().as_u16(), response.text().await.unwrap())
        }));
    }
    let mut n_published = 0;
    for task in tasks {
        let (status, html) = task.await.unwrap();
        if status == 200 && html.contains("<h1>Publicerat</h1>") {
            n_published += 1;
            // The login page and the feed are shown, not counted as recipients.
            assert!(
                html.contains("Inloggningssidan: visas på inloggningssidan"),
                "{html}"
            );
            assert!(html.contains("publiceras i flödet"), "{html}");
            assert!(!html.contains("mottagare får det nu"), "{html}");
        }
    }
    assert_eq!(n_published, 1);
    let notices = app.state.storage.published_notices(None, 10).await.unwrap();
    assert_eq!(notices.len(), 1);
    assert_eq!(notices[0].published_by, "Anna Andersson");
    assert_eq!(notices[0].channels, vec!["banner", "website"]);

    // The same link again: the draft is published; nothing more happens.
    let (status, html) = post_form(
        &app,
        &url,
        &fields
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_str()))
            .collect::<Vec<_>>(),
    )
    .await;
    assert_ne!(status, 500);
    assert!(!html.contains("<h1>Publicerat</h1>"));
    assert_eq!(
        app.state
            .storage
            .published_notices(None, 10)
            .await
            .unwrap()
            .len(),
        1
    );
    app.stop().await;
}

#[tokio::test]
async fn an_edit_is_saved_and_confirmed_before_it_is_published_and_decisions_are_required() {
    let app = spawn_with_operators("").await;
    let draft_id = outage(&app, json!({"subregion": "fyrbodal"})).await;
    let url = link(
        &app,
        "anna@example.org",
        LinkPurpose::Review {
            draft_id,
            version: 1,
        },
        in_an_hour(),
    );
    let (_, html) = get_page(&app, &url).await;
    let csrf = csrf_of(&html);
    assert!(
        html.contains("Nivå 2: Övergång till reservrutin i delar av verksamheterna (föreslagen)")
    );
    // The page leads with what goes out, per channel in Swedish, before the choices; and
    // offers no button that publishes.
    let texts_at = html.find("Det här skickas ut").expect("the texts");
    let choices_at = html.find("Dina val").expect("the choices");
    assert!(texts_at < choices_at, "the texts come first");
    assert!(
        html.contains("<h3 id=\"out-banner\">Inloggningssidan</h3>"),
        "{html}"
    );
    assert!(
        !html.contains("value=\"publish\""),
        "no Publicera on the first view"
    );
    assert!(html.contains("Granska och publicera"));

    // Spara ändringar: a new version, and a plain word that nothing is published.
    let (status, html) = post_form(
        &app,
        &url,
        &[
            ("csrf", &csrf),
            ("version", "1"),
            ("level", "2"),
            ("additional_information", "Cerner felsöker <inloggningen>."),
            ("expected_resolution", "2026-11-28T09:30"),
            ("channels", "banner"),
            ("channels", "website"),
            ("action", "save"),
        ],
    )
    .await;
    assert_eq!(status, 200);
    assert!(
        html.contains("Dina ändringar är sparade som version 2. Inget är publicerat ännu."),
        "{html}"
    );
    assert!(
        !html.contains("class=\"flash\""),
        "no success box for a save"
    );
    assert!(
        html.contains("Cerner felsöker &lt;inloggningen&gt;."),
        "escaped in the page"
    );
    assert!(html.contains("28 november 2026 kl. 09:30"));
    assert!(
        app.state
            .storage
            .published_notices(None, 10)
            .await
            .unwrap()
            .is_empty()
    );

    // Level 2 without a decision-maker: the errors at their fields, a summary first.
    let (status, html) = post_form(
        &app,
        &url,
        &[
            ("csrf", &csrf),
            ("version", "2"),
            ("level", "2"),
            ("additional_information", "Cerner felsöker <inloggningen>."),
            ("expected_resolution", "2026-11-28T09:30"),
            ("channels", "banner"),
            ("channels", "website"),
            ("action", "confirm"),
        ],
    )
    .await;
    assert_eq!(status, 422);
    assert!(html.contains("<title>Fel: Granska utkast"), "{html}");
    assert!(html.contains("id=\"error-summary\" tabindex=\"-1\" autofocus"));
    assert!(
        html.contains("<a href=\"#decided_by\">Nivå 2 är ett beslut: ange vem som beslutade.</a>")
    );
    assert!(html.contains(
        "<a href=\"#role\">Nivå 2 är ett beslut: välj i vilken roll beslutet fattades.</a>"
    ));
    assert!(html.contains(
        "<input id=\"decided_by\" name=\"decided_by\" type=\"text\" maxlength=\"200\" value=\"\" autocomplete=\"off\" aria-invalid=\"true\" aria-describedby=\"decided_by-error\">"
    ), "{html}");
    assert!(html.contains("<span class=\"field-error\" id=\"decided_by-error\">"));
    assert!(html.contains(
        "<select id=\"role\" name=\"role\" aria-invalid=\"true\" aria-describedby=\"role-error\">"
    ));
    let summary_at = html.find("error-summary").unwrap();
    assert!(
        summary_at < html.find("<h1>").unwrap(),
        "the summary is at the top"
    );

    // With the decision: the confirmation page, nothing published yet.
    let (status, html) = post_form(
        &app,
        &url,
        &[
            ("csrf", &csrf),
            ("version", "2"),
            ("level", "2"),
            ("decided_by", "Bo Berg"),
            ("role", "subregional"),
            ("additional_information", "Cerner felsöker <inloggningen>."),
            ("expected_resolution", "2026-11-28T09:30"),
            ("channels", "banner"),
            ("channels", "website"),
            ("action", "confirm"),
        ],
    )
    .await;
    assert_eq!(status, 200, "{html}");
    assert!(
        html.contains("<h1>Bekräfta publicering: första meddelande – incident 1</h1>"),
        "{html}"
    );
    assert!(
        html.contains("<strong>Inloggningssidan</strong>: visas på inloggningssidan"),
        "{html}"
    );
    assert!(
        html.contains("<strong>Nyhet på webbplatsen</strong>: publiceras i flödet"),
        "{html}"
    );
    assert!(html.contains("Beslut: Bo Berg (delregional nivå)."));
    assert!(
        app.state
            .storage
            .published_notices(None, 10)
            .await
            .unwrap()
            .is_empty(),
        "the confirmation publishes nothing"
    );
    let mut confirm = common::confirm_form_fields(&html);
    confirm.push(("action".to_owned(), "publish".to_owned()));
    let (status, html) = common::post_fields(&app, &url, &confirm).await;
    assert_eq!(status, 200, "{html}");
    assert!(html.contains("<h1>Publicerat</h1>"));
    let notice = &app.state.storage.published_notices(None, 1).await.unwrap()[0];
    assert_eq!(notice.level, 2);
    assert_eq!(notice.draft_version, 2);
    assert_eq!(notice.decided_by.as_deref(), Some("Bo Berg"));
    assert_eq!(notice.channels, ["banner", "website"]);
    assert!(
        notice
            .rendered
            .email_text
            .contains("Cerner felsöker <inloggningen>.")
    );
    let events = app.state.storage.incident_events(1).await.unwrap();
    assert!(
        events
            .iter()
            .any(|event| event.event == "draft_edited" && event.source == "Anna Andersson")
    );
    app.stop().await;
}

#[tokio::test]
async fn publicera_nu_with_changed_text_saves_it_and_asks_again_and_a_stale_version_publishes_nothing()
 {
    let app = spawn_with_operators("").await;
    let draft_id = outage(&app, json!({"actor": "kommun-boras"})).await;
    let url = link(
        &app,
        "anna@example.org",
        LinkPurpose::Review {
            draft_id,
            version: 1,
        },
        in_an_hour(),
    );
    let csrf = csrf_of(&get_page(&app, &url).await.1);
    let (status, html) = post_form(
        &app,
        &url,
        &[
            ("csrf", &csrf),
            ("version", "1"),
            ("level", "1"),
            ("additional_information", "Ny text"),
            ("channels", "banner"),
            ("action", "publish"),
        ],
    )
    .await;
    assert_eq!(status, 200);
    assert!(html.contains("Bekräfta publicering"), "{html}");
    assert!(html.contains("sparade som version 2"), "{html}");
    let (status, html) = post_form(
        &app,
        &url,
        &[
            ("csrf", &csrf),
            ("version", "1"),
            ("level", "1"),
            ("channels", "banner"),
            ("action", "publish"),
        ],
    )
    .await;
    assert_eq!(status, 409, "{html}");
    assert!(html.contains("Inget publicerades"), "{html}");
    assert!(
        app.state
            .storage
            .published_notices(None, 10)
            .await
            .unwrap()
            .is_empty()
    );
    app.stop().await;
}

#[tokio::test]
async fn a_draft_can_be_discarded_with_a_reason() {
    let app = spawn_with_operators("").await;
    let draft_id = outage(&app, json!({"actor": "kommun-boras"})).await;
    let url = link(
        &app,
        "anna@example.org",
        LinkPurpose::Review {
            draft_id,
            version: 1,
        },
        in_an_hour(),
    );
    let csrf = csrf_of(&get_page(&app, &url).await.1);
    let (status, _) = post_form(
        &app,
        &url,
        &[
            ("csrf", &csrf),
            ("action", "discard"),
            ("discard_reason", ""),
        ],
    )
    .await;
    assert_eq!(status, 422, "a reason is required");
    let (status, html) = post_form(
        &app,
        &url,
        &[
            ("csrf", &csrf),
            ("action", "discard"),
            ("discard_reason", "Falsklarm från sonden"),
        ],
    )
    .await;
    assert_eq!(status, 200);
    assert!(html.contains("Utkastet är kasserat"));
    let drafts = app.state.storage.drafts(1).await.unwrap();
    assert_eq!(drafts[0].state, "discarded");
    assert_eq!(
        drafts[0].state_reason.as_deref(),
        Some("Falsklarm från sonden")
    );
    let events = app.state.storage.incident_events(1).await.unwrap();
    let discarded = events
        .iter()
        .find(|event| event.event == "draft_discarded")
        .unwrap();
    assert_eq!(discarded.source, "Anna Andersson");
    app.stop().await;
}

#[tokio::test]
async fn login_links_go_only_to_operators_and_the_answer_is_the_same() {
    let app = spawn_with_operators("").await;
    let (_, html) = get_page(&app, &format!("{}/ops/login", app.address)).await;
    let csrf = csrf_of(&html);
    let login = format!("{}/ops/login", app.address);
    let (status_stranger, answer_stranger) = post_form(
        &app,
        &login,
        &[("csrf", &csrf), ("email", "mallory@example.org")],
    )
    .await;
    let (status_operator, answer_operator) = post_form(
        &app,
        &login,
        &[("csrf", &csrf), ("email", "Anna@Example.org")],
    )
    .await;
    assert_eq!((status_stranger, status_operator), (200, 200));
    assert_eq!(answer_stranger, answer_operator);
    let mails = common::eventually("the login email", DEADLINE, || async {
        let mails = app.state.storage.operator_mail().await.unwrap();
        (!mails.is_empty()).then_some(mails)
    })
    .await;
    assert_eq!(mails.len(), 1);
    assert!(mails[0].0.starts_with("login:anna@example.org:"));
    assert_eq!(
        post_form(&app, &login, &[("email", "anna@example.org")])
            .await
            .0,
        403
    );
    app.stop().await;
}

#[tokio::test]
async fn the_dashboard_starts_drills_that_go_only_to_drill_channels() {
    let tables = format!(
        "{OPERATORS}\n[channels.banner]\ncontent = \"banner\"\ntransport = \"banner\"\ndrill = true\n\
         [channels.website]\ncontent = \"website\"\ntransport = \"feed\"\n\
         [plan]\nlevel_1 = [\"banner\", \"website\"]\nlevel_2 = [\"banner\", \"website\"]\nlevel_3 = [\"banner\", \"website\"]\n"
    );
    let app = spawn_app_with_tables(&tables).await;
    let url = link(
        &app,
        "anna@example.org",
        LinkPurpose::Dashboard,
        in_an_hour(),
    );
    let (status, html) = get_page(&app, &url).await;
    assert_eq!(status, 200);
    assert!(html.contains("Inga pågående incidenter."));
    let csrf = csrf_of(&html);
    let (status, html) = post_form(
        &app,
        &url,
        &[
            ("csrf", &csrf),
            ("action", "drill"),
            ("drill_scope", "subregion:skaraborg"),
        ],
    )
    .await;
    assert_eq!(status, 200, "{html}");
    assert!(html.contains("Övningen är startad"));
    let incidents = app.state.storage.incidents().await.unwrap();
    assert_eq!(incidents[0].kind, "drill");
    let drafts = app
        .state
        .storage
        .drafts(incidents[0].incident_id)
        .await
        .unwrap();
    let rendered = &drafts[0].versions[0].rendered;
    assert!(
        rendered.email_subject.starts_with("ÖVNING"),
        "{}",
        rendered.email_subject
    );
    assert!(rendered.banner_text.starts_with("ÖVNING"));

    // Publishing a drill on a channel not marked for drills is refused.
    let request = |channels: &[&str]| samsa_relay::publishing::PublishRequest {
        draft_id: drafts[0].draft_id,
        draft_version: 1,
        level: samsa_relay::classify::Level::Two,
        channels: channels.iter().map(|name| (*name).to_owned()).collect(),
        decision: Some(samsa_relay::publishing::Decision {
            decided_by: "Övningsledare".to_owned(),
            role: samsa_relay::publishing::DecisionRole::Subregional,
        }),
        operator: "Anna Andersson".to_owned(),
    };
    let refused = app
        .state
        .publisher
        .publish(&request(&["banner", "website"]))
        .await
        .unwrap_err();
    assert!(refused.to_string().contains("övningar"), "{refused}");
    app.state
        .publisher
        .publish(&request(&["banner"]))
        .await
        .unwrap();

    // A second drill while one is open is refused.
    let (_, html) = post_form(
        &app,
        &url,
        &[("csrf", &csrf), ("action", "drill"), ("drill_scope", "all")],
    )
    .await;
    assert!(html.contains("En övning pågår redan"), "{html}");
    app.stop().await;
}

#[tokio::test]
async fn an_update_or_a_resolution_can_be_drafted_by_hand() {
    let app = spawn_with_operators("").await;
    let draft_id = outage(&app, json!({"actor": "kommun-boras"})).await;
    let draft = app.state.storage.drafts(1).await.unwrap().remove(0);
    app.state
        .publisher
        .publish(&samsa_relay::publishing::PublishRequest {
            draft_id,
            draft_version: draft.versions[0].version,
            level: samsa_relay::classify::Level::One,
            channels: vec!["banner".to_owned()],
            decision: None,
            operator: "Anna Andersson".to_owned(),
        })
        .await
        .unwrap();
    let url = link(
        &app,
        "anna@example.org",
        LinkPurpose::Dashboard,
        in_an_hour(),
    );
    let csrf = csrf_of(&get_page(&app, &url).await.1);
    let (status, html) = post_form(
        &app,
        &url,
        &[("csrf", &csrf), ("action", "resolve"), ("incident_id", "1")],
    )
    .await;
    assert_eq!(status, 200, "{html}");
    assert!(html.contains("åtgärdat-meddelande är skapat"));
    let drafts = app.state.storage.drafts(1).await.unwrap();
    let resolved = drafts
        .iter()
        .find(|draft| draft.state == "pending")
        .unwrap();
    assert_eq!(resolved.kind.as_str(), "resolved");
    // Only one pending draft at a time.
    let (_, html) = post_form(
        &app,
        &url,
        &[("csrf", &csrf), ("action", "update"), ("incident_id", "1")],
    )
    .await;
    assert!(
        html.contains("Granska utkast"),
        "the pending draft is offered instead: {html}"
    );
    app.stop().await;
}

#[tokio::test]
async fn a_draft_nobody_acts_on_is_escalated_once() {
    let app = spawn_with_operators("escalate_after = \"1s\"").await;
    let draft_id = outage(&app, json!({"actor": "kommun-boras"})).await;
    let mails = common::eventually("escalation emails", DEADLINE, || async {
        let mails = app.state.storage.operator_mail().await.unwrap();
        (mails
            .iter()
            .filter(|(key, ..)| key.starts_with("escalate:"))
            .count()
            == 2)
            .then_some(mails)
    })
    .await;
    let escalated: Vec<&str> = mails
        .iter()
        .filter(|(key, ..)| key.starts_with("escalate:"))
        .map(|(_, to, ..)| to.as_str())
        .collect();
    assert_eq!(escalated, vec!["anna@example.org", "erik@example.org"]);
    assert!(mails.iter().any(|(key, _, subject, _)| key
        == &format!("escalate:{draft_id}:erik@example.org")
        && subject.starts_with("Väntar fortfarande")));
    // A second look sends nothing more.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let again = app.state.storage.operator_mail().await.unwrap();
    assert_eq!(again.len(), mails.len());
    assert!(app.metric("samsa_relay_draft_escalations_total").await >= 2.0);
    app.stop().await;
}

#[tokio::test]
async fn single_sign_on_trusts_the_configured_header_only() {
    let app = spawn_with_operators("trusted_user_header = \"X-Forwarded-Email\"").await;
    let url = format!("{}/ops/sso/d", app.address);
    let response = app
        .client
        .get(&url)
        .header("X-Forwarded-Email", "anna@example.org")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    assert!(
        response
            .text()
            .await
            .unwrap()
            .contains("Inloggad som Anna Andersson")
    );
    assert_eq!(app.client.get(&url).send().await.unwrap().status(), 403);
    let stranger = app
        .client
        .get(&url)
        .header("X-Forwarded-Email", "mallory@example.org")
        .send()
        .await
        .unwrap();
    assert_eq!(stranger.status(), 403);
    app.stop().await;
}

#[tokio::test]
async fn each_page_is_one_handler_for_the_link_and_for_single_sign_on() {
    let app = spawn_with_operators("trusted_user_header = \"X-Forwarded-Email\"").await;
    let draft_id = outage(&app, json!({"actor": "kommun-boras"})).await;
    let sso = |path: &str| {
        app.client
            .get(format!("{}{path}", app.address))
            .header("X-Forwarded-Email", "anna@example.org")
    };

    // The dashboard's pages and the review page answer behind single sign-on as under a
    // link, with forms that post back to the same form of URL.
    let response = sso("/ops/sso/d/followup").send().await.unwrap();
    assert_eq!(response.status(), 200);
    assert!(
        response
            .text()
            .await
            .unwrap()
            .contains("&#x2f;ops&#x2f;sso&#x2f;d&#x2f;followup")
    );
    let response = sso(&format!("/ops/sso/r/{draft_id}")).send().await.unwrap();
    assert_eq!(response.status(), 200);
    let html = response.text().await.unwrap();
    assert!(html.contains(&format!(
        "action=\"&#x2f;ops&#x2f;sso&#x2f;r&#x2f;{draft_id}"
    )));
    assert_eq!(
        sso("/ops/sso/r/not-a-number")
            .send()
            .await
            .unwrap()
            .status(),
        404
    );

    // A dashboard link opens no review page, and a review link none of the dashboard's.
    let dashboard = link(
        &app,
        "anna@example.org",
        LinkPurpose::Dashboard,
        in_an_hour(),
    );
    let token = dashboard.rsplit('/').next().unwrap();
    let (status, html) = get_page(&app, &format!("{}/ops/r/{token}", app.address)).await;
    assert_eq!(status, 403);
    assert!(html.contains("Länken gäller inte"));
    let review = link(
        &app,
        "anna@example.org",
        LinkPurpose::Review {
            draft_id,
            version: 1,
        },
        in_an_hour(),
    );
    let token = review.rsplit('/').next().unwrap();
    for path in ["", "/followup", "/followup/1", "/followup/1/report.json"] {
        let (status, _) = get_page(&app, &format!("{}/ops/d/{token}{path}", app.address)).await;
        assert_eq!(status, 403, "{path}");
    }

    // A form that is not URL-encoded is refused with a Swedish page, not axum's text.
    let response = app
        .client
        .post(&dashboard)
        .header("content-type", "application/json")
        .body("{}")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 415);
    assert!(
        response
            .text()
            .await
            .unwrap()
            .contains("Formuläret kunde inte läsas")
    );
    app.stop().await;
}

#[tokio::test]
async fn an_update_shows_its_changes_and_a_level_3_resolution_keeps_the_decision_and_asks_no_times()
{
    let app = spawn_with_operators("").await;
    let draft_id = outage(&app, json!({"scope": "all"})).await;
    let draft = app.state.storage.drafts(1).await.unwrap().remove(0);
    assert_eq!(
        draft.versions[0].input["classification"]["level"], 3,
        "the whole service down is level 3"
    );
    app.state
        .publisher
        .publish(&samsa_relay::publishing::PublishRequest {
            draft_id,
            draft_version: 1,
            level: samsa_relay::classify::Level::Three,
            channels: vec!["banner".to_owned(), "website".to_owned()],
            decision: Some(samsa_relay::publishing::Decision {
                decided_by: "Karin Öberg".to_owned(),
                role: samsa_relay::publishing::DecisionRole::CouncilChair,
            }),
            operator: "Anna Andersson".to_owned(),
        })
        .await
        .unwrap();
    let dashboard = link(
        &app,
        "anna@example.org",
        LinkPurpose::Dashboard,
        in_an_hour(),
    );
    let csrf = csrf_of(&get_page(&app, &dashboard).await.1);
    let (status, _) = post_form(
        &app,
        &dashboard,
        &[("csrf", &csrf), ("action", "update"), ("incident_id", "1")],
    )
    .await;
    assert_eq!(status, 200);
    let update_id = app.state.storage.drafts(1).await.unwrap()[1].draft_id;
    let update_url = format!("{}/r/{update_id}", dashboard.trim_end_matches('/'));
    let (status, html) = get_page(&app, &update_url).await;
    assert_eq!(status, 200, "{html}");
    assert!(html.contains("Ändringar mot förra meddelandet"), "{html}");
    let review_csrf = csrf_of(&html);
    let (status, html) = post_form(
        &app,
        &update_url,
        &[
            ("csrf", &review_csrf),
            ("version", "1"),
            ("level", "3"),
            (
                "additional_information",
                "Leverantören byter en nätverksswitch.",
            ),
            ("expected_resolution", ""),
            ("next_update", "2026-11-28T10:00"),
            ("channels", "banner"),
            ("channels", "website"),
            ("action", "save"),
        ],
    )
    .await;
    assert_eq!(status, 200, "{html}");
    let changes = &html[html.find("Ändringar mot förra meddelandet").unwrap()..];
    assert!(
        changes.contains("<ins><span class=\"visually-hidden\">Tillagt: </span>Leverantören byter en nätverksswitch.</ins>"),
        "{changes}"
    );
    assert!(
        changes.contains("<del><span class=\"visually-hidden\">Borttaget: </span>"),
        "{changes}"
    );
    // Discard the update; resolve by hand.
    let (status, _) = post_form(
        &app,
        &update_url,
        &[
            ("csrf", &review_csrf),
            ("action", "discard"),
            ("discard_reason", "Provade"),
        ],
    )
    .await;
    assert_eq!(status, 200);
    let (status, _) = post_form(
        &app,
        &dashboard,
        &[("csrf", &csrf), ("action", "resolve"), ("incident_id", "1")],
    )
    .await;
    assert_eq!(status, 200);
    let resolution_id = app.state.storage.drafts(1).await.unwrap()[2].draft_id;
    let resolution_url = format!("{}/r/{resolution_id}", dashboard.trim_end_matches('/'));
    let (status, html) = get_page(&app, &resolution_url).await;
    assert_eq!(status, 200, "{html}");
    assert!(!html.contains("Beräknas vara löst (svensk tid)"), "{html}");
    assert!(!html.contains("Nästa uppdatering (svensk tid)"), "{html}");
    assert!(
        !html.contains("id=\"decided_by\""),
        "no new decision asked for"
    );
    assert!(html.contains(
        "Beslutet om incidenten står fast: Karin Öberg (ordförande i Ledningsråd Samordnad hälsa, vård och omsorg)."
    ));
    let mut fields =
        common::confirm_form_fields(&html.replace("class=\"review\"", "class=\"confirm\""));
    fields.push(("action".to_owned(), "confirm".to_owned()));
    let (status, html) = common::post_fields(&app, &resolution_url, &fields).await;
    assert_eq!(status, 200, "{html}");
    assert!(html.contains("Beslutet står fast: Karin Öberg"), "{html}");
    let mut fields = common::confirm_form_fields(&html);
    fields.push(("action".to_owned(), "publish".to_owned()));
    let (status, html) = common::post_fields(&app, &resolution_url, &fields).await;
    assert_eq!(status, 200, "{html}");
    assert!(html.contains("<h1>Publicerat</h1>"), "{html}");
    let notices = app.state.storage.published_notices(None, 10).await.unwrap();
    assert_eq!(notices[0].kind.as_str(), "resolved");
    assert_eq!(notices[0].level, samsa_relay::classify::Level::Three);
    assert_eq!(notices[0].decided_by.as_deref(), Some("Karin Öberg"));
    app.stop().await;
}
