//! The operator pages in a real browser: headless Chromium (the Debian packages `chromium`
//! and `chromium-driver`, which `scripts/test-all.sh` installs), driven through WebDriver by
//! fantoccini, in a phone-sized window. The relay runs for real with the file mail
//! transport, and the review link is read from the email it writes, as an operator's mail
//! client would show it.
//!
//! chromedriver is started as a child process on a free local port and stopped by its PID
//! when the test ends, also when it fails. Chromium gets a fresh profile and resolves no
//! host but 127.0.0.1, so nothing leaves the machine.
//!
//! Screenshots go to `target/test-artifacts/screenshots/` (`target/` is never committed):
//! `phone-PAGE.png` (and `-full.png`, the whole page) for every page and state at 320 px;
//! each test prints their paths. The axe test (`every_page_and_state_passes_axe_and_fits_320_px`)
//! injects axe-core, pinned by `tests/browser/package-lock.json` and installed there by
//! `npm ci` (scripts/test-all.sh), into every page and fails on any WCAG 2.0/2.1 A or AA
//! violation, listing them all.

use crate::common;

use std::io::{Read as _, Write as _};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use base64::Engine as _;
use common::TestApp;
use fantoccini::actions::{InputSource as _, KeyAction, KeyActions};
use fantoccini::elements::Element;
use fantoccini::key::Key;
use fantoccini::{Client, ClientBuilder, Locator};
use hyper_util::client::legacy::connect::HttpConnector;
use mail_parser::MessageParser;
use samsa_relay::links::{LinkClaims, LinkPurpose};
use serde_json::{Value, json};

const CHROMIUM: &str = "/usr/bin/chromium";
const CHROMEDRIVER: &str = "/usr/bin/chromedriver";
/// A common phone viewport (CSS pixels).
const PHONE_WIDTH: u32 = 390;
const PHONE_HEIGHT: u32 = 844;
const DEADLINE: Duration = Duration::from_secs(20);
/// What `base_config` puts in `server.public_url`; links in emails start with it.
const PUBLIC_URL: &str = "http://127.0.0.1:9095";

const OPERATOR_NAME: &str = "Åsa Lindqvist";
const OPERATOR_EMAIL: &str = "asa.lindqvist@example.org";
const OPERATORS: &str = r#"
[[operators]]
name = "Åsa Lindqvist"
email = "asa.lindqvist@example.org"
groups = ["on-duty"]
"#;

const ADDED_INFORMATION: &str =
    "Vårdcentralerna i Fyrbodal använder reservrutinen på papper. Nästa avstämning sker kl. 07.00.";
const DECIDED_BY: &str = "Karin Öberg, samordnare Fyrbodal";

#[tokio::test]
async fn an_operator_reads_saves_confirms_and_publishes_a_level_2_notice_on_a_phone() {
    let started = Instant::now();
    let browser = Browser::start().await;
    let app = common::spawn_app_with_tables(OPERATORS).await;
    let (incident_id, review_path) = whole_subregion_outage_and_review_link(&app).await;
    let client = &browser.client;
    let shots = Screenshots::new("review");

    client
        .goto(&format!("{}{review_path}", app.address))
        .await
        .expect("the review page opens");
    assert_eq!(
        client.title().await.unwrap(),
        format!("Granska utkast – incident {incident_id} – samsa-relay")
    );
    assert_eq!(
        script(client, "return document.documentElement.lang;").await,
        "sv"
    );
    assert_eq!(
        heading(client).await,
        format!("Granska utkast: första meddelande – incident {incident_id}")
    );
    assert_no_horizontal_overflow(client, "the review page").await;
    // What goes out starts on the phone's first screen, and nothing there publishes.
    let preview_top = client
        .execute(
            "return document.getElementById('preview-heading').getBoundingClientRect().top;",
            vec![],
        )
        .await
        .unwrap()
        .as_f64()
        .unwrap();
    assert!(
        preview_top < f64::from(PHONE_HEIGHT) / 2.0,
        "the texts start {preview_top} px down"
    );
    assert_eq!(
        script(
            client,
            "return String(document.querySelectorAll('button[value=publish]').length);"
        )
        .await,
        "0",
        "no Publicera on the review page"
    );
    assert_eq!(
        script(
            client,
            "return [...document.querySelectorAll('section[aria-labelledby=preview-heading] h3')].map(h => h.textContent).join(' | ');"
        )
        .await,
        "Inloggningssidan | Nyhet på webbplatsen | Nyhetsbrev till prenumeranter",
        "the chosen channels by their Swedish names"
    );
    let level_2 = labelled_control(client, "Nivå 2:").await;
    assert!(
        level_2.is_selected().await.unwrap(),
        "the suggested level 2 is preselected"
    );
    shots.save(&browser, "1-before-edit").await;

    let information =
        labelled_control(client, "Övrig information om störningen (frivilligt)").await;
    assert_eq!(information.tag_name().await.unwrap(), "textarea");
    information.send_keys(ADDED_INFORMATION).await.unwrap();
    // A tap on the label chooses the radio button.
    label(client, "Nivå 2:").await.click().await.unwrap();
    assert!(level_2.is_selected().await.unwrap());
    labelled_control(client, "Vem beslutade")
        .await
        .send_keys(DECIDED_BY)
        .await
        .unwrap();
    labelled_control(client, "I vilken roll")
        .await
        .select_by_label("delregional nivå")
        .await
        .unwrap();

    click_and_wait_for_next_page(client, button(client, "Spara ändringar").await).await;
    let status = script(
        client,
        "return document.querySelector('[role=status]')?.textContent.trim() ?? '';",
    )
    .await;
    assert!(
        status.starts_with("Dina ändringar är sparade som version 2. Inget är publicerat ännu."),
        "{status}"
    );
    assert_eq!(
        script(
            client,
            "return String(document.querySelectorAll('.flash').length);"
        )
        .await,
        "0",
        "a save is no success box"
    );
    assert_eq!(
        script(
            client,
            "return document.getElementById('preview-heading').textContent.trim();"
        )
        .await,
        "Det här skickas ut (version 2, nivå 2)"
    );
    let previewed_website = preview_text(client, "Nyhet på webbplatsen", "Text").await;
    assert!(
        previewed_website.contains(ADDED_INFORMATION),
        "the texts show the added text:\n{previewed_website}"
    );
    // The choices survive the round trip.
    assert!(
        labelled_control(client, "Nivå 2:")
            .await
            .is_selected()
            .await
            .unwrap()
    );
    assert_eq!(
        labelled_control(client, "Vem beslutade")
            .await
            .prop("value")
            .await
            .unwrap()
            .as_deref(),
        Some(DECIDED_BY)
    );
    assert_eq!(
        labelled_control(client, "I vilken roll")
            .await
            .prop("value")
            .await
            .unwrap()
            .as_deref(),
        Some("subregional")
    );
    assert_no_horizontal_overflow(client, "the review page after a save").await;
    shots.save(&browser, "2-after-save").await;

    click_and_wait_for_next_page(client, button(client, "Granska och publicera").await).await;
    assert_eq!(
        heading(client).await,
        format!("Bekräfta publicering: första meddelande – incident {incident_id}")
    );
    assert_eq!(
        client.title().await.unwrap(),
        format!("Bekräfta publicering – incident {incident_id} – samsa-relay")
    );
    assert!(
        app.state
            .storage
            .published_notices(None, 10)
            .await
            .unwrap()
            .is_empty(),
        "nothing is published before Publicera nu"
    );
    assert_no_horizontal_overflow(client, "the confirmation page").await;
    shots.save(&browser, "3-confirm").await;

    click_and_wait_for_next_page(client, button(client, "Publicera nu").await).await;
    assert_eq!(heading(client).await, "Publicerat");
    assert_eq!(client.title().await.unwrap(), "Publicerat – samsa-relay");
    assert_no_horizontal_overflow(client, "the confirmation").await;
    shots.save(&browser, "4-published").await;

    let notices = app.state.storage.published_notices(None, 10).await.unwrap();
    assert_eq!(notices.len(), 1, "{notices:#?}");
    let notice = &notices[0];
    assert_eq!(notice.incident_id, incident_id);
    assert_eq!(notice.level, 2);
    assert_eq!(notice.decided_by.as_deref(), Some(DECIDED_BY));
    assert_eq!(notice.decided_role.as_deref(), Some("subregional"));
    assert_eq!(notice.published_by, OPERATOR_NAME);
    assert_eq!(
        notice.draft_version, 2,
        "the saved version is what was published"
    );
    assert_eq!(
        notice.rendered.website_body, previewed_website,
        "exactly what was shown"
    );
    let outbox = app.state.storage.outbox(Some(incident_id)).await.unwrap();
    let mut outbox_channels: Vec<&str> = outbox.iter().map(|row| row.channel.as_str()).collect();
    outbox_channels.sort_unstable();
    let mut notice_channels: Vec<&str> = notice.channels.iter().map(String::as_str).collect();
    notice_channels.sort_unstable();
    // The newsletter reaches the subscribers; there are none here.
    assert_eq!(outbox_channels, ["banner", "website"]);
    assert_eq!(notice_channels, ["banner", "newsletter", "website"]);
    assert!(outbox.iter().all(|row| row.notice_id == notice.notice_id));

    browser.close().await;
    app.stop().await;
    report(&format!(
        "browser: review, save, confirm and publish took {:.1?}",
        started.elapsed()
    ));
}

#[tokio::test]
async fn a_tampered_link_is_refused_and_the_review_page_is_usable_by_keyboard_and_labels() {
    let started = Instant::now();
    let browser = Browser::start().await;
    let app = common::spawn_app_with_tables(OPERATORS).await;
    let (_, review_path) = whole_subregion_outage_and_review_link(&app).await;
    let client = &browser.client;
    let shots = Screenshots::new("checks");

    let tampered_path = tamper(&review_path);
    let tampered_url = format!("{}{tampered_path}", app.address);
    assert_eq!(
        app.client.get(&tampered_url).send().await.unwrap().status(),
        403
    );
    client.goto(&tampered_url).await.unwrap();
    assert_eq!(heading(client).await, "Länken gäller inte");
    assert_eq!(
        client.title().await.unwrap(),
        "Länken gäller inte – samsa-relay"
    );
    assert_eq!(
        script(client, "return document.documentElement.lang;").await,
        "sv"
    );
    assert_eq!(
        script(
            client,
            "return document.querySelector('main a')?.getAttribute('href') ?? '';"
        )
        .await,
        "/ops/login",
        "the refusal offers a new link"
    );
    assert_no_horizontal_overflow(client, "the refusal").await;
    shots.save(&browser, "tampered-link").await;

    client
        .goto(&format!("{}{review_path}", app.address))
        .await
        .unwrap();
    let unlabelled = client
        .execute(UNLABELLED_CONTROLS, vec![])
        .await
        .expect("the label check runs");
    assert_eq!(
        unlabelled,
        json!([]),
        "controls without a <label> or a fieldset with a legend"
    );
    assert_no_horizontal_overflow(client, "the review page").await;

    let stops = tab_until_publish(client, &shots).await;
    let names: Vec<String> = stops
        .iter()
        .map(|stop| stop["name"].as_str().unwrap_or("").to_owned())
        .collect();
    report(&format!(
        "browser: tab order to Granska och publicera: {}",
        names.join(" → ")
    ));
    let last = stops.last().expect("at least one tab stop");
    assert_eq!(
        last["name"], "button Granska och publicera",
        "Tab never reached Granska och publicera: {names:?}"
    );
    for stop in &stops {
        assert_ne!(
            stop["outline"], "none",
            "no visible focus on {}",
            stop["name"]
        );
    }
    for stop in &stops {
        assert_eq!(
            stop["covered"].as_f64(),
            Some(0.0),
            "the focused {} is hidden (WCAG 2.4.11)",
            stop["name"]
        );
    }
    shots.save(&browser, "publish-focused").await;

    browser.close().await;
    app.stop().await;
    report(&format!(
        "browser: tampered link and accessibility checks took {:.1?}",
        started.elapsed()
    ));
}

/// The narrowest screen WCAG 1.4.10 (Reflow) asks for, in CSS pixels.
const NARROW_WIDTH: u32 = 320;
const NARROW_HEIGHT: u32 = 640;
/// The printable width of an A4 page with the report's 15 mm side margins (180 mm), in
/// CSS pixels (96 to the inch).
const A4_PRINTABLE_WIDTH: u32 = 680;
/// A log note with a token longer than any line: it must wrap inside its cell.
const LONG_URL_NOTE: &str = "Leverantörens statussida: https://status.example.org/incidents/2026-11-28/samsa-inloggning-fyrbodal-driftstorning-uppfoljning";

#[tokio::test]
async fn every_operator_and_public_page_reflows_at_320_px() {
    let started = Instant::now();
    let browser = Browser::start().await;
    // Chromium keeps a window at least about 500 px wide; the page's viewport is narrowed
    // through DevTools instead.
    browser.emulate_viewport(NARROW_WIDTH, NARROW_HEIGHT).await;
    let app = common::spawn_app_with_tables(OPERATORS).await;
    let (incident_id, review_path) = whole_subregion_outage_and_review_link(&app).await;
    let client = &browser.client;
    let shots = Screenshots::new("narrow");
    let mut checked = Vec::new();

    client
        .goto(&format!("{}{review_path}", app.address))
        .await
        .unwrap();
    assert_fits_narrow_screen(client, "the review page").await;
    shots.save_viewport(client, "review").await;
    checked.push("review");

    // Granska och publicera at level 2 without the decision: the page comes back with the
    // errors at their fields, the summary focused, and its title says so.
    click_and_wait_for_next_page(client, button(client, "Granska och publicera").await).await;
    assert_eq!(
        script(client, "return document.activeElement?.id ?? '';").await,
        "error-summary",
        "the focus is on the error summary"
    );
    assert_eq!(
        script(
            client,
            "return document.getElementById('decided_by').getAttribute('aria-describedby') + ' ' + document.getElementById('decided_by').getAttribute('aria-invalid');"
        )
        .await,
        "decided_by-error true"
    );
    let title = client.title().await.unwrap();
    assert!(
        title.starts_with("Fel: Granska utkast"),
        "the title after a form error: {title:?}"
    );
    assert_fits_narrow_screen(client, "the review page with an error").await;
    shots.save_viewport(client, "review-error").await;
    checked.push("review with an error");

    common::publish_pending(
        &app,
        incident_id,
        samsa_relay::notice::NoticeKind::Initial,
        &["banner", "newsletter", "website"],
    )
    .await;
    let dashboard = dashboard_path(&app);
    for (name, path) in [
        ("dashboard", dashboard.clone()),
        ("follow-up list", format!("{dashboard}/followup")),
        (
            "incident page",
            format!("{dashboard}/followup/{incident_id}"),
        ),
        (
            "report",
            format!("{dashboard}/followup/{incident_id}/report.html"),
        ),
    ] {
        client
            .goto(&format!("{}{path}", app.address))
            .await
            .unwrap();
        assert_fits_narrow_screen(client, name).await;
        save_narrow(&browser, &shots, &name.replace(' ', "-")).await;
        checked.push(name);
    }
    // The dashboard's delivery table is one block per row, each cell labelled.
    client
        .goto(&format!("{}{dashboard}", app.address))
        .await
        .unwrap();
    let labels = script(
        client,
        "return [...document.querySelector('#notices-heading').parentElement.querySelectorAll('tbody tr:first-child td')]
            .map(cell => getComputedStyle(cell, '::before').content).join(' | ');",
    )
    .await;
    assert_eq!(
        labels,
        r#""Meddelande: " | "Publicerat: " | "Kanal: " | "Levererat: " | "Väntar: " | "Misslyckat: ""#
    );

    // The feedback form: required fields marked, and a title that tells of an error.
    client
        .goto(&format!("{}/public/feedback/{incident_id}", app.address))
        .await
        .unwrap();
    assert_fits_narrow_screen(client, "the feedback form").await;
    let marked = client
        .execute(
            "return ['name', 'organisation', 'message'].map(id => {
                const field = document.getElementById(id);
                return [field.required, field.getAttribute('aria-required'),
                        field.labels[0].textContent.trim()];
            });",
            vec![],
        )
        .await
        .unwrap();
    assert_eq!(
        marked,
        json!([
            [true, "true", "Namn (obligatoriskt)"],
            [true, "true", "Organisation (obligatoriskt)"],
            [true, "true", "Meddelande (obligatoriskt)"]
        ])
    );
    save_narrow(&browser, &shots, "feedback").await;
    checked.push("feedback form");
    // Sent empty, as a browser without its own check of required fields would. The relay
    // refuses the browser's post (its Origin is not the configured public URL), so the
    // answer is fetched here and shown in the page, where its stylesheet loads as usual.
    let answer = app
        .client
        .post(format!("{}/public/feedback/{incident_id}", app.address))
        .form(&[("name", ""), ("organisation", ""), ("message", "")])
        .send()
        .await
        .unwrap();
    assert_eq!(answer.status(), 422);
    let html = answer.text().await.unwrap();
    client
        .execute(
            "document.open(); document.write(arguments[0]); document.close();",
            vec![json!(html)],
        )
        .await
        .unwrap();
    common::eventually("the answer shown", DEADLINE, || async {
        let ready = client
            .execute(
                "return document.readyState === 'complete' && document.styleSheets.length > 0;",
                vec![],
            )
            .await
            .ok()?;
        (ready == json!(true)).then_some(())
    })
    .await;
    let title = client.title().await.unwrap();
    assert!(
        title.starts_with("Fel: Återkoppling"),
        "the feedback title after an error: {title:?}"
    );
    assert_fits_narrow_screen(client, "the feedback form with errors").await;
    save_narrow(&browser, &shots, "feedback-error").await;
    checked.push("feedback form with errors");

    // Error pages in the operators' layout.
    client
        .goto(&format!("{}/ops/finns-inte", app.address))
        .await
        .unwrap();
    assert_eq!(heading(client).await, "Sidan finns inte");
    assert_eq!(
        client.title().await.unwrap(),
        "Sidan finns inte – samsa-relay"
    );
    assert_fits_narrow_screen(client, "the not-found page").await;
    shots.save_viewport(client, "not-found").await;
    checked.push("not found");
    let expired = app.state.signer.sign(&LinkClaims {
        purpose: LinkPurpose::Dashboard,
        operator: OPERATOR_EMAIL.to_owned(),
        expires_at: jiff::Timestamp::now().as_second() - 60,
    });
    client
        .goto(&format!("{}/ops/d/{expired}", app.address))
        .await
        .unwrap();
    assert_eq!(heading(client).await, "Länken har gått ut");
    assert_fits_narrow_screen(client, "the expired-link page").await;
    shots.save_viewport(client, "expired-link").await;
    checked.push("expired link");

    browser.close().await;
    app.stop().await;
    report(&format!(
        "browser: {} pages fit {NARROW_WIDTH}px ({}) in {:.1?}",
        checked.len(),
        checked.join(", "),
        started.elapsed()
    ));
}

#[tokio::test]
async fn the_report_prints_on_a4_with_every_table_inside_the_margins() {
    let started = Instant::now();
    let browser = Browser::start().await;
    let app = common::spawn_app_with_tables(OPERATORS).await;
    let (incident_id, _) = whole_subregion_outage_and_review_link(&app).await;
    common::publish_pending(
        &app,
        incident_id,
        samsa_relay::notice::NoticeKind::Initial,
        &["banner", "newsletter", "website"],
    )
    .await;
    let client = &browser.client;
    let dashboard = dashboard_path(&app);
    client
        .goto(&format!(
            "{}{dashboard}/followup/{incident_id}",
            app.address
        ))
        .await
        .unwrap();
    labelled_control(client, "Vad hände?")
        .await
        .send_keys(LONG_URL_NOTE)
        .await
        .unwrap();
    click_and_wait_for_next_page(client, button(client, "Lägg till i loggen").await).await;
    client
        .goto(&format!(
            "{}{dashboard}/followup/{incident_id}/report.html",
            app.address
        ))
        .await
        .unwrap();
    assert!(
        client
            .source()
            .await
            .unwrap()
            .contains("samsa-inloggning-fyrbodal"),
        "the report shows the note"
    );

    // The report as an A4 PDF, as Chromium's print dialog makes it.
    let pdf = browser
        .devtools(
            "Page.printToPDF",
            json!({"preferCSSPageSize": true, "printBackground": true}),
        )
        .await;
    let pdf = base64::engine::general_purpose::STANDARD
        .decode(pdf["data"].as_str().expect("PDF data"))
        .expect("base64 PDF");
    assert!(pdf.starts_with(b"%PDF-"), "a PDF");
    let shots = Screenshots::new("print");
    let pdf_path = shots.folder.join("print-report.pdf");
    std::fs::write(&pdf_path, &pdf).unwrap();
    report(&format!(
        "pdf: {} ({} bytes)",
        pdf_path.display(),
        pdf.len()
    ));

    // The same page under the print stylesheet, in a viewport as wide as the printable
    // area: every table and every cell inside it, and no word broken across lines.
    browser
        .devtools("Emulation.setEmulatedMedia", json!({"media": "print"}))
        .await;
    browser
        .emulate_viewport(A4_PRINTABLE_WIDTH, PHONE_HEIGHT)
        .await;
    let problems = client.execute(PRINT_LAYOUT_PROBLEMS, vec![]).await.unwrap();
    let n_tables = script(
        client,
        "return String(document.querySelectorAll('table').length);",
    )
    .await;
    shots.save_viewport(client, "report-a4").await;
    browser
        .devtools("Emulation.setEmulatedMedia", json!({"media": ""}))
        .await;
    browser
        .devtools("Emulation.clearDeviceMetricsOverride", json!({}))
        .await;
    assert_eq!(problems, json!([]), "the printed report's layout");

    browser.close().await;
    app.stop().await;
    report(&format!(
        "browser: the report printed to PDF, {n_tables} tables inside the A4 margins, in {:.1?}",
        started.elapsed()
    ));
}

/// The channels of the axe test: the login page and email (both in drills), the website
/// feed, and the crisis email of level 3.
const AXE_TABLES: &str = r#"
[channels.banner]
content = "banner"
transport = "banner"
drill = true

[channels.email]
content = "email"
transport = "email"
recipients = ["support@example.org", "it@example.org"]
drill = true

[channels.website]
content = "website"
transport = "feed"

[channels.crisis]
content = "crisis"
transport = "email"
recipients = ["ordforande@example.org"]

[plan]
level_1 = ["banner", "email", "website"]
level_2 = ["banner", "email", "website"]
level_3 = ["banner", "email", "website", "crisis"]
"#;

/// Every operator and public page, in every state an operator or a reader meets, at
/// 320 px: axe-core (WCAG 2.0 and 2.1, A and AA) finds no violation, nothing scrolls
/// sideways, and a screenshot of each is kept. The embedded banner is checked on a login
/// page of another origin, served by a local HTTP server of the test.
#[tokio::test]
async fn every_page_and_state_passes_axe_and_fits_320_px() {
    let started = Instant::now();
    let browser = Browser::start().await;
    browser.emulate_viewport(NARROW_WIDTH, NARROW_HEIGHT).await;
    let app = common::spawn_app_with_tables(&format!("{OPERATORS}\n{AXE_TABLES}")).await;
    let login_page = LoginPage::serve(&app.address).await;
    let (incident_id, review_path) = whole_subregion_outage_and_review_link(&app).await;
    let client = &browser.client;
    let mut audit = Audit::new(&browser);
    let dashboard = dashboard_path(&app);
    let address = app.address.as_str();
    let goto = |path: String| async move {
        client
            .goto(&format!("{address}{path}"))
            .await
            .unwrap_or_else(|error| panic!("{path}: {error}"));
    };

    // The review at each level, with errors, the confirmation, the publication.
    goto(review_path.clone()).await;
    audit.check("review-level-2").await;
    label(client, "Nivå 1:").await.click().await.unwrap();
    click_and_wait_for_next_page(client, button(client, "Spara ändringar").await).await;
    assert_eq!(
        script(
            client,
            "return document.getElementById('preview-heading').textContent;"
        )
        .await,
        "Det här skickas ut (version 2, nivå 1)"
    );
    audit.check("review-level-1-saved").await;
    label(client, "Nivå 3:").await.click().await.unwrap();
    label(client, "Ordförande och vice ordförande")
        .await
        .click()
        .await
        .unwrap();
    click_and_wait_for_next_page(client, button(client, "Spara ändringar").await).await;
    assert_eq!(
        script(
            client,
            "return document.getElementById('preview-heading').textContent;"
        )
        .await,
        "Det här skickas ut (version 3, nivå 3)"
    );
    audit.check("review-level-3-saved").await;
    label(client, "Nivå 2:").await.click().await.unwrap();
    label(client, "Ordförande och vice ordförande")
        .await
        .click()
        .await
        .unwrap();
    click_and_wait_for_next_page(client, button(client, "Granska och publicera").await).await;
    assert_eq!(
        script(client, "return document.activeElement?.id ?? '';").await,
        "error-summary"
    );
    audit.check("review-errors").await;
    labelled_control(client, "Vem beslutade")
        .await
        .send_keys(DECIDED_BY)
        .await
        .unwrap();
    labelled_control(client, "I vilken roll")
        .await
        .select_by_label("delregional nivå")
        .await
        .unwrap();
    click_and_wait_for_next_page(client, button(client, "Granska och publicera").await).await;
    assert!(heading(client).await.starts_with("Bekräfta publicering"));
    audit.check("confirm").await;
    click_and_wait_for_next_page(client, button(client, "Publicera nu").await).await;
    assert_eq!(heading(client).await, "Publicerat");
    audit.check("published").await;

    // The banner of the ongoing incident on a login page of another origin.
    login_page.open(client, "/").await;
    let banner = login_page.banner(client).await;
    assert_eq!(banner["role"], "alert");
    assert!(
        banner["text"].as_str().unwrap().contains("Reservrutin"),
        "{banner}"
    );
    assert_eq!(
        banner["link"],
        format!("{PUBLIC_URL}/public/feedback/{incident_id}"),
        "the feedback link: {banner}"
    );
    assert_ne!(
        banner["origin"].as_str().unwrap(),
        app.address,
        "the login page is another origin"
    );
    audit.check("login-page-banner").await;

    // The dashboard and the follow-up.
    for (name, path) in [
        ("dashboard", dashboard.clone()),
        ("followup-list", format!("{dashboard}/followup")),
        (
            "followup-incident",
            format!("{dashboard}/followup/{incident_id}"),
        ),
        (
            "report",
            format!("{dashboard}/followup/{incident_id}/report.html"),
        ),
    ] {
        goto(path).await;
        audit.check(name).await;
    }

    // An update: its changes against the published notice; then discarded.
    let update = samsa_relay::publishing::draft_by_hand(
        &app.state.storage,
        &app.state.config,
        &app.state.renderer,
        incident_id,
        samsa_relay::notice::NoticeKind::Update,
        OPERATOR_NAME,
    )
    .await
    .unwrap();
    goto(format!("{dashboard}/r/{update}")).await;
    labelled_control(client, "Övrig information om störningen (frivilligt)")
        .await
        .send_keys(ADDED_INFORMATION)
        .await
        .unwrap();
    click_and_wait_for_next_page(client, button(client, "Spara ändringar").await).await;
    assert!(
        script(
            client,
            "return String(document.querySelectorAll('#changes-heading ~ .diff ins').length);"
        )
        .await
            != "0",
        "the update shows what it adds"
    );
    audit.check("update-with-changes").await;
    labelled_control(client, "Varför kasseras utkastet?")
        .await
        .send_keys("Provade en uppdatering")
        .await
        .unwrap();
    click_and_wait_for_next_page(client, button(client, "Kassera utkastet").await).await;
    assert_eq!(heading(client).await, "Utkastet är kasserat");
    audit.check("discarded").await;

    // The resolution: no times asked, the decision stands; confirmed and published.
    let resolution = samsa_relay::publishing::draft_by_hand(
        &app.state.storage,
        &app.state.config,
        &app.state.renderer,
        incident_id,
        samsa_relay::notice::NoticeKind::Resolved,
        OPERATOR_NAME,
    )
    .await
    .unwrap();
    goto(format!("{dashboard}/r/{resolution}")).await;
    audit.check("resolution").await;
    click_and_wait_for_next_page(client, button(client, "Granska och publicera").await).await;
    assert!(heading(client).await.starts_with("Bekräfta publicering"));
    audit.check("resolution-confirm").await;
    click_and_wait_for_next_page(client, button(client, "Publicera nu").await).await;
    assert_eq!(heading(client).await, "Publicerat");
    login_page.open(client, "/").await;
    let banner = login_page.banner(client).await;
    assert_eq!(banner["role"], "status", "the all-clear is not an alarm");
    assert!(
        banner["text"].as_str().unwrap().contains("är åtgärdad"),
        "{banner}"
    );
    audit.check("login-page-all-clear").await;

    // A drill: its review, and its banner only on a test login page that asks for it.
    let (drill_id, drill_draft) = samsa_relay::publishing::start_drill(
        &app.state.storage,
        &app.state.config,
        &app.state.renderer,
        &[samsa_relay::classify::AlertScope::Subregion(
            "fyrbodal".to_owned(),
        )],
        OPERATOR_NAME,
    )
    .await
    .unwrap();
    goto(format!("{dashboard}/r/{drill_draft}")).await;
    audit.check("drill-review").await;
    let (_, version, level) =
        common::pending_draft(&app, drill_id, samsa_relay::notice::NoticeKind::Initial).await;
    app.state
        .publisher
        .publish(&common::publish_request(
            drill_draft,
            version,
            level,
            &["banner", "email"],
        ))
        .await
        .unwrap();
    login_page.open(client, "/ovning").await;
    let banner = login_page.banner(client).await;
    assert_eq!(
        banner["role"], "status",
        "a drill is not announced assertively"
    );
    assert!(banner["text"].as_str().unwrap().starts_with("ÖVNING: "));
    audit.check("login-page-drill").await;
    login_page.open(client, "/").await;
    let live = login_page.banner(client).await;
    assert!(
        !live["text"].as_str().unwrap().contains("ÖVNING"),
        "no drill on the live login page: {live}"
    );

    // Planned maintenance: the form, empty and with errors; a window's page; the
    // dashboard listing it.
    goto(format!("{dashboard}/maintenance/new")).await;
    audit.check("maintenance-form").await;
    click_and_wait_for_next_page(client, button(client, "Skapa utkast till annons").await).await;
    assert!(client.title().await.unwrap().starts_with("Fel: "));
    audit.check("maintenance-form-errors").await;
    let starts_at = jiff::Timestamp::now() + jiff::SignedDuration::from_hours(24);
    let (window_id, _) = samsa_relay::maintenance_actions::plan_window(
        &app.state.storage,
        &app.state.config,
        &app.state.renderer,
        samsa_relay::maintenance::WindowPlan {
            title: "Uppgradering av SAMSA".to_owned(),
            scope: samsa_relay::maintenance::WindowScope {
                whole_service: false,
                actors: vec!["kommun-boras".to_owned()],
                subregions: vec!["skaraborg".to_owned()],
            },
            starts_at,
            ends_at: starts_at + jiff::SignedDuration::from_hours(2),
            impact: "SAMSA går inte att logga in i.".to_owned(),
            advice: samsa_relay::maintenance::DEFAULT_ADVICE.to_owned(),
            level: samsa_relay::classify::Level::Two,
            auto_series: true,
        },
        OPERATOR_NAME,
        jiff::Timestamp::now(),
    )
    .await
    .unwrap();
    goto(format!("{dashboard}/maintenance/{window_id}")).await;
    audit.check("maintenance-window").await;
    goto(dashboard.clone()).await;
    audit.check("dashboard-with-maintenance").await;

    // Sign-in, the public pages, and the error pages.
    goto("/ops/login".to_owned()).await;
    audit.check("login").await;
    labelled_control(client, "E-postadress")
        .await
        .send_keys(OPERATOR_EMAIL)
        .await
        .unwrap();
    click_and_wait_for_next_page(client, button(client, "Skicka mig en länk").await).await;
    audit.check("login-sent").await;
    goto(format!("/public/feedback/{incident_id}")).await;
    audit.check("feedback").await;
    let answer = app
        .client
        .post(format!("{}/public/feedback/{incident_id}", app.address))
        .form(&[("name", ""), ("organisation", ""), ("message", "")])
        .send()
        .await
        .unwrap();
    assert_eq!(answer.status(), 422);
    show_html(client, &answer.text().await.unwrap()).await;
    audit.check("feedback-errors").await;
    goto(format!("/public/feedback/{incident_id}/tack")).await;
    audit.check("feedback-thanks").await;
    goto("/public/tillganglighet".to_owned()).await;
    audit.check("accessibility-statement").await;
    // Planned maintenance: the list and a window's page, announced and called off.
    let maintenance_id = announced_maintenance_window(&app, "Uppgradering av SAMSA", 30).await;
    let cancelled_id = announced_maintenance_window(&app, "Byte av server", 50).await;
    samsa_relay::maintenance_actions::cancel_window(
        &app.state.storage,
        &app.state.config,
        &app.state.renderer,
        cancelled_id,
        "Leverantören kan inte",
        OPERATOR_NAME,
        jiff::Timestamp::now(),
    )
    .await
    .unwrap();
    goto("/public/maintenance".to_owned()).await;
    audit.check("maintenance-list").await;
    goto(format!("/public/maintenance/{maintenance_id}")).await;
    audit.check("maintenance-window").await;
    goto(format!("/public/maintenance/{cancelled_id}")).await;
    audit.check("maintenance-window-cancelled").await;
    // The subscribers' pages: the form, its errors, a subscriber's own page.
    goto("/public/subscribe".to_owned()).await;
    audit.check("subscribe").await;
    let answer = app
        .client
        .post(format!("{}/public/subscribe", app.address))
        .form(&[
            ("email", "inte en adress"),
            ("scope", "chosen"),
            ("action", "subscribe"),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(answer.status(), 422);
    show_html(client, &answer.text().await.unwrap()).await;
    audit.check("subscribe-errors").await;
    let nonce = samsa_relay::subscription::new_nonce();
    app.state
        .storage
        .import_subscribers(
            &[samsa_relay::storage::NewSubscriber {
                address: "anna.berg@boras.example".to_owned(),
                choices: samsa_relay::subscription::Choices::default(),
                nonce: nonce.clone(),
            }],
            "import by test",
            jiff::Timestamp::now(),
        )
        .await
        .unwrap();
    let subscriber = app
        .state
        .storage
        .subscriber_by_address("anna.berg@boras.example")
        .await
        .unwrap()
        .unwrap();
    goto(samsa_relay::subscribers::manage_path(
        &app.state.signer,
        subscriber.subscriber_id,
        &nonce,
    ))
    .await;
    audit.check("subscription").await;
    goto("/ops/finns-inte".to_owned()).await;
    audit.check("not-found").await;
    let expired = app.state.signer.sign(&LinkClaims {
        purpose: LinkPurpose::Dashboard,
        operator: OPERATOR_EMAIL.to_owned(),
        expires_at: jiff::Timestamp::now().as_second() - 60,
    });
    goto(format!("/ops/d/{expired}")).await;
    audit.check("expired-link").await;
    goto(tamper(&review_path)).await;
    audit.check("tampered-link").await;

    let checked = audit.finish();
    browser.close().await;
    app.stop().await;
    report(&format!(
        "browser: axe-core {} found no WCAG 2.1 A/AA violation on {} pages and states, each within {NARROW_WIDTH}px ({}), in {:.1?}",
        axe_version(),
        checked.len(),
        checked.join(", "),
        started.elapsed()
    ));
}

/// Plans a maintenance window for Fyrbodal `hours_ahead` from now and publishes its
/// announcement on the banner; returns its id.
async fn announced_maintenance_window(app: &TestApp, title: &str, hours_ahead: i64) -> i64 {
    let now = jiff::Timestamp::now();
    let plan = samsa_relay::maintenance::WindowPlan {
        title: title.to_owned(),
        scope: samsa_relay::maintenance::WindowScope {
            whole_service: false,
            actors: Vec::new(),
            subregions: vec!["fyrbodal".to_owned()],
        },
        starts_at: now + jiff::SignedDuration::from_hours(hours_ahead),
        ends_at: now + jiff::SignedDuration::from_hours(hours_ahead + 2),
        impact: "SAMSA går inte att nå under underhållet.".to_owned(),
        advice: "Använd reservrutinen för vårdövergångar.".to_owned(),
        level: samsa_relay::classify::Level::One,
        auto_series: false,
    };
    let (id, _) = samsa_relay::maintenance_actions::plan_window(
        &app.state.storage,
        &app.state.config,
        &app.state.renderer,
        plan,
        OPERATOR_NAME,
        now,
    )
    .await
    .unwrap();
    common::publish_pending(
        app,
        id,
        samsa_relay::notice::NoticeKind::Initial,
        &["banner"],
    )
    .await;
    id
}

/// Replaces the page with `html` (an answer fetched by the test), and waits until it and
/// its stylesheet have loaded.
async fn show_html(client: &Client, html: &str) {
    client
        .execute(
            "document.open(); document.write(arguments[0]); document.close();",
            vec![json!(html)],
        )
        .await
        .unwrap();
    common::eventually("the answer shown", DEADLINE, || async {
        let ready = client
            .execute(
                "return document.readyState === 'complete' && document.styleSheets.length > 0;",
                vec![],
            )
            .await
            .ok()?;
        (ready == json!(true)).then_some(())
    })
    .await;
}

// ---- axe-core ----------------------------------------------------------------------

/// Where `npm ci` (run by scripts/test-all.sh in `tests/browser/`) puts axe-core, at the
/// version `tests/browser/package-lock.json` pins.
const AXE_PATH: &str = "tests/browser/node_modules/axe-core/axe.min.js";
/// The rules run: WCAG 2.0 and 2.1, levels A and AA.
const AXE_TAGS: [&str; 4] = ["wcag2a", "wcag2aa", "wcag21a", "wcag21aa"];

fn axe_source() -> &'static str {
    static SOURCE: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    SOURCE.get_or_init(|| {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join(AXE_PATH);
        std::fs::read_to_string(&path).unwrap_or_else(|error| {
            panic!(
                "{} is missing ({error}): the browser tests need axe-core from npm (Debian \
                 packages nodejs and npm); run `npm ci` in tests/browser, or \
                 `bash scripts/test-all.sh`, which does",
                path.display()
            )
        })
    })
}

/// The axe-core version, from the file's banner comment (`/*! axe v4.14.1`).
fn axe_version() -> String {
    axe_source()
        .split_whitespace()
        .find(|word| word.starts_with('v') && word[1..].starts_with(|c: char| c.is_ascii_digit()))
        .unwrap_or("?")
        .to_owned()
}

/// Runs axe-core on the page as it is (injected first, when the page lacks it); one line
/// per violation: the rule, its impact and help, and every element it found.
async fn axe_violations(client: &Client) -> Vec<String> {
    let loaded = client
        .execute("return typeof window.axe === 'object';", vec![])
        .await
        .unwrap();
    if loaded != json!(true) {
        // WebDriver runs this through DevTools, past the page's Content-Security-Policy.
        client
            .execute(
                &format!("{}\n;return typeof window.axe;", axe_source()),
                vec![],
            )
            .await
            .expect("axe-core loads");
    }
    let result = client
        .execute_async(
            "const done = arguments[arguments.length - 1];
             axe.run(document, {runOnly: {type: 'tag', values: arguments[0]}, resultTypes: ['violations']})
                 .then(results => done(results.violations.map(violation =>
                     violation.id + ' (' + violation.impact + '): ' + violation.help + ' – '
                     + violation.nodes.map(node => node.target.join(' ')
                         + (node.failureSummary ? ' → ' + node.failureSummary.replace(/\\s+/g, ' ') : '')).join('; '))))
                 .catch(error => done(['axe-core failed: ' + error]));",
            vec![json!(AXE_TAGS)],
        )
        .await
        .expect("axe-core runs");
    serde_json::from_value(result).expect("a list of violations")
}

/// Checks page after page and keeps every problem, so that one run reports them all.
struct Audit<'a> {
    browser: &'a Browser,
    shots: Screenshots,
    checked: Vec<String>,
    problems: Vec<String>,
}

impl<'a> Audit<'a> {
    fn new(browser: &'a Browser) -> Audit<'a> {
        Audit {
            browser,
            shots: Screenshots::new("phone"),
            checked: Vec::new(),
            problems: Vec::new(),
        }
    }

    /// The page as it is now: axe-core's violations, sideways scrolling at 320 px, and
    /// its screenshots.
    async fn check(&mut self, name: &str) {
        let client = &self.browser.client;
        let widths = client
            .execute(
                "return [document.documentElement.scrollWidth, document.documentElement.clientWidth, window.innerWidth];",
                vec![],
            )
            .await
            .unwrap();
        assert_eq!(
            widths[2], NARROW_WIDTH,
            "{name}: the viewport is 320 px wide"
        );
        if widths[0].as_u64() > widths[1].as_u64() {
            self.problems.push(format!(
                "{name}: scrolls sideways at {NARROW_WIDTH}px (scrollWidth {} > clientWidth {})",
                widths[0], widths[1]
            ));
        }
        for violation in axe_violations(client).await {
            self.problems.push(format!("{name}: {violation}"));
        }
        save_narrow(self.browser, &self.shots, name).await;
        self.checked.push(name.to_owned());
    }

    /// Fails with every problem found; returns the names of the pages checked.
    fn finish(self) -> Vec<String> {
        assert!(
            self.problems.is_empty(),
            "{} problems on {} pages:\n{}",
            self.problems.len(),
            self.checked.len(),
            self.problems.join("\n")
        );
        self.checked
    }
}

// ---- a login page of another origin --------------------------------------------------

/// A login page as SAMSA's would be, on its own port of 127.0.0.1 (so another origin
/// than the relay's), embedding the banner with the one script tag of docs/http-api.md.
/// `/` is the live login page, `/ovning` a test login page that asks for drills. Served
/// by a task of the test, stopped when this is dropped.
struct LoginPage {
    address: String,
    task: tokio::task::JoinHandle<()>,
}

impl LoginPage {
    async fn serve(relay: &str) -> LoginPage {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("a port for the login page");
        let address = format!("http://{}", listener.local_addr().unwrap());
        let relay = relay.to_owned();
        let task = tokio::spawn(async move {
            // At most a few hundred pages in a run; each connection bounded in time.
            for _ in 0..1000 {
                let Ok((mut stream, _)) = listener.accept().await else {
                    return;
                };
                let relay = relay.clone();
                tokio::spawn(async move {
                    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
                    let mut head = Vec::new();
                    let mut chunk = [0u8; 1024];
                    let read = tokio::time::timeout(Duration::from_secs(5), async {
                        while !head.windows(4).any(|window| window == b"\r\n\r\n")
                            && head.len() < 16 * 1024
                        {
                            match stream.read(&mut chunk).await {
                                Ok(0) | Err(_) => return,
                                Ok(n) => head.extend_from_slice(&chunk[..n]),
                            }
                        }
                    })
                    .await;
                    if read.is_err() {
                        return;
                    }
                    let head = String::from_utf8_lossy(&head);
                    let path = head.split_whitespace().nth(1).unwrap_or("/");
                    let (status, body) = match path {
                        "/" => ("200 OK", login_page_html(&relay, "")),
                        "/ovning" => ("200 OK", login_page_html(&relay, "?ovning=1")),
                        _ => ("404 Not Found", String::new()),
                    };
                    let answer = format!(
                        "HTTP/1.1 {status}\r\nContent-Type: text/html; charset=utf-8\r\nContent-Length: {}\r\nCache-Control: no-store\r\nConnection: close\r\n\r\n{body}",
                        body.len()
                    );
                    let _ = tokio::time::timeout(
                        Duration::from_secs(5),
                        stream.write_all(answer.as_bytes()),
                    )
                    .await;
                    let _ = stream.shutdown().await;
                });
            }
        });
        LoginPage { address, task }
    }

    async fn open(&self, client: &Client, path: &str) {
        client
            .goto(&format!("{}{path}", self.address))
            .await
            .expect("the login page opens");
    }

    /// Waits until the banner shows; returns its role and text.
    async fn banner(&self, client: &Client) -> Value {
        common::eventually("the banner on the login page", DEADLINE, || async {
            let banner = client
                .execute(
                    "const banner = document.querySelector('.samsa-relay-banner');
                     return banner && banner.style.display === 'block' && banner.textContent
                         ? {role: banner.getAttribute('role'), text: banner.textContent,
                            link: banner.querySelector('a')?.href ?? null,
                            origin: location.origin}
                         : null;",
                    vec![],
                )
                .await
                .ok()?;
            (!banner.is_null()).then_some(banner)
        })
        .await
    }
}

impl Drop for LoginPage {
    fn drop(&mut self) {
        self.task.abort();
    }
}

fn login_page_html(relay: &str, query: &str) -> String {
    format!(
        r#"<!DOCTYPE html>
<html lang="sv">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>Logga in – SAMSA</title>
<style>
body {{ margin: 0; font-family: sans-serif; color: #111; background: #fff; }}
main {{ max-width: 30rem; margin: 0 auto; padding: 1rem; }}
label {{ display: block; margin-top: 1rem; font-weight: 600; }}
input {{ display: block; width: 100%; box-sizing: border-box; font: inherit; padding: 0.5rem; border: 1px solid #595959; }}
button {{ margin-top: 1rem; font: inherit; padding: 0.5rem 1rem; }}
</style>
</head>
<body>
<main>
<h1>Logga in i SAMSA</h1>
<form method="post" action="/">
<label for="user">Användarnamn</label>
<input id="user" name="user" autocomplete="username">
<label for="password">Lösenord</label>
<input id="password" name="password" type="password" autocomplete="current-password">
<button type="submit">Logga in</button>
</form>
</main>
<script src="{relay}/public/banner.js{query}" async></script>
</body>
</html>
"#
    )
}

/// Under the print stylesheet: tables wider than the body, cells whose content overflows
/// them, and words split across lines (tokens such as URLs and email addresses, or any
/// longer than 30 characters, may break).
const PRINT_LAYOUT_PROBLEMS: &str = "
    const problems = [];
    const where = cell => (cell.closest('section')?.getAttribute('aria-labelledby') ?? 'summary')
        + ', column ' + (cell.cellIndex + 1) + ', ' + Math.round(cell.clientWidth) + ' px';
    const body = document.body.getBoundingClientRect();
    for (const table of document.querySelectorAll('table')) {
        const rect = table.getBoundingClientRect();
        if (rect.left < body.left - 0.5 || rect.right > body.right + 0.5) {
            problems.push('table wider than the page: ' + table.textContent.trim().slice(0, 40));
        }
        for (const cell of table.querySelectorAll('th, td')) {
            if (cell.scrollWidth > cell.clientWidth + 1) {
                problems.push('cell overflows: ' + cell.textContent.trim().slice(0, 40) + ' (' + where(cell) + ')');
            }
            const walker = document.createTreeWalker(cell, NodeFilter.SHOW_TEXT);
            for (let node = walker.nextNode(); node; node = walker.nextNode()) {
                const pattern = /\\S+/g;
                for (let match = pattern.exec(node.data); match; match = pattern.exec(node.data)) {
                    if (match[0].length > 30 || /[@/]/.test(match[0])) continue;
                    const range = document.createRange();
                    range.setStart(node, match.index);
                    range.setEnd(node, match.index + match[0].length);
                    const tops = new Set([...range.getClientRects()].map(r => Math.round(r.top)));
                    if (tops.size > 1) problems.push('word broken: ' + match[0] + ' (' + where(cell) + ')');
                }
            }
        }
    }
    return problems;";

/// Saves what a 320 px screen shows and the whole page at that width.
async fn save_narrow(browser: &Browser, shots: &Screenshots, name: &str) {
    let client = &browser.client;
    shots.save_viewport(client, name).await;
    let height = client
        .execute("return document.documentElement.scrollHeight;", vec![])
        .await
        .unwrap()
        .as_u64()
        .expect("a height");
    let height = u32::try_from(height).unwrap_or(u32::MAX).min(12_000);
    browser.emulate_viewport(NARROW_WIDTH, height).await;
    let path = shots
        .folder
        .join(format!("{}-{name}-full.png", shots.prefix));
    write_png(&path, &client.screenshot().await.expect("a screenshot"));
    report(&format!("screenshot: {}", path.display()));
    browser.emulate_viewport(NARROW_WIDTH, NARROW_HEIGHT).await;
}

/// The path of a dashboard link for the operator, valid for an hour.
fn dashboard_path(app: &TestApp) -> String {
    let token = app.state.signer.sign(&LinkClaims {
        purpose: LinkPurpose::Dashboard,
        operator: OPERATOR_EMAIL.to_owned(),
        expires_at: jiff::Timestamp::now().as_second() + 3600,
    });
    format!("/ops/d/{token}")
}

/// The page is no wider than a 320 px screen: nothing scrolls sideways.
async fn assert_fits_narrow_screen(client: &Client, what: &str) {
    let widths = client
        .execute(
            "return [document.documentElement.scrollWidth, window.innerWidth];",
            vec![],
        )
        .await
        .unwrap();
    assert_eq!(widths[1], NARROW_WIDTH, "the viewport is 320 px wide");
    assert!(
        widths[0].as_u64() <= widths[1].as_u64(),
        "{what} scrolls sideways at {NARROW_WIDTH}px: scrollWidth {}",
        widths[0]
    );
}

// ---- the scenario ------------------------------------------------------------------

/// Posts a webhook about all of Fyrbodal (a whole sub-region: level 2), waits for the
/// review email to the on-duty operator and returns the incident id and the path of the
/// email's link (`/ops/r/TOKEN`).
async fn whole_subregion_outage_and_review_link(app: &TestApp) -> (i64, String) {
    let webhook = common::payload(
        "firing",
        vec![common::alert(
            "fyrbodal-1",
            "firing",
            json!({"alertname": "SamsaLoginDown", "service": "samsa", "subregion": "fyrbodal"}),
            "2026-11-28T04:12:00Z",
        )],
    );
    assert_eq!(app.post_webhook(webhook.to_string()).await.status(), 200);
    let (draft_id, version, incident_id) =
        common::eventually("a pending draft", DEADLINE, || async {
            let pending = app.state.storage.pending_drafts_overview().await.ok()?;
            pending
                .first()
                .map(|draft| (draft.draft_id, draft.latest_version, draft.incident_id))
        })
        .await;
    let (_, _, suggested) =
        common::pending_draft(app, incident_id, samsa_relay::notice::NoticeKind::Initial).await;
    assert_eq!(
        suggested.as_number(),
        2,
        "a whole sub-region suggests level 2"
    );

    // The operator mail outbox marks a mail sent only after the file is written.
    let subject = common::eventually("the review email sent", DEADLINE, || async {
        let mails = app.state.storage.operator_mail().await.ok()?;
        mails.into_iter().find_map(|(key, to, subject, state)| {
            (key == format!("review:{draft_id}:{version}:{OPERATOR_EMAIL}") && state == "sent")
                .then(|| {
                    assert_eq!(to, OPERATOR_EMAIL);
                    subject
                })
        })
    })
    .await;
    let body = mail_body(&app.folder.path().join("mail"), &subject);
    assert!(
        body.starts_with(&format!("Hej {OPERATOR_NAME},")),
        "the body decodes to Swedish text:\n{body}"
    );
    let link = body
        .lines()
        .map(str::trim)
        .find(|line| line.contains("/ops/r/"))
        .unwrap_or_else(|| panic!("no review link in the email:\n{body}"));
    let url =
        url::Url::parse(link).unwrap_or_else(|error| panic!("{link:?} is not a URL: {error}"));
    assert!(link.starts_with(PUBLIC_URL), "{link}");
    assert!(url.query().is_none() && url.fragment().is_none(), "{link}");
    // The relay listens on a port of its own; the link names the configured public URL.
    (incident_id, url.path().to_owned())
}

/// The decoded text of the one message in `folder` with this subject.
fn mail_body(folder: &Path, subject: &str) -> String {
    let mut bodies = Vec::new();
    for entry in std::fs::read_dir(folder).expect("the mail folder exists") {
        let path = entry.expect("a folder entry").path();
        let bytes = std::fs::read(&path).expect("a readable message file");
        let message = MessageParser::default()
            .parse(&bytes)
            .unwrap_or_else(|| panic!("{} is not a message", path.display()));
        if message.subject() == Some(subject) {
            let to = message
                .to()
                .and_then(|to| to.first())
                .and_then(|to| to.address());
            assert_eq!(to, Some(OPERATOR_EMAIL));
            bodies.push(message.body_text(0).expect("a text body").into_owned());
        }
    }
    assert_eq!(bodies.len(), 1, "one message with the subject {subject:?}");
    bodies.remove(0)
}

/// The same path with one character of the token's payload changed.
fn tamper(path: &str) -> String {
    let token = path.strip_prefix("/ops/r/").expect("a review link");
    let mut characters: Vec<char> = token.chars().collect();
    let index = token.len() / 3;
    characters[index] = if characters[index] == 'A' { 'B' } else { 'A' };
    format!("/ops/r/{}", characters.into_iter().collect::<String>())
}

// ---- page helpers ------------------------------------------------------------------

/// Runs `body` (JavaScript with `return`) and returns its string result.
async fn script(client: &Client, body: &str) -> String {
    let value = client
        .execute(body, vec![])
        .await
        .unwrap_or_else(|error| panic!("script {body:?} failed: {error}"));
    value
        .as_str()
        .unwrap_or_else(|| panic!("script {body:?} returned {value}"))
        .to_owned()
}

async fn heading(client: &Client) -> String {
    client
        .find(Locator::Css("h1"))
        .await
        .expect("a page heading")
        .text()
        .await
        .unwrap()
}

/// The `<label>` whose text starts with `text`; exactly one must match.
async fn label(client: &Client, text: &str) -> Element {
    let xpath = format!("//label[starts-with(normalize-space(.), '{text}')]");
    let mut labels = client.find_all(Locator::XPath(&xpath)).await.unwrap();
    assert_eq!(labels.len(), 1, "one label starting with {text:?}");
    labels.remove(0)
}

/// The control a `<label>` names through its `for`, as a screen reader pairs them.
async fn labelled_control(client: &Client, text: &str) -> Element {
    let label = label(client, text).await;
    let id = label
        .attr("for")
        .await
        .unwrap()
        .unwrap_or_else(|| panic!("the label {text:?} has no for="));
    client
        .find(Locator::Id(&id))
        .await
        .unwrap_or_else(|error| panic!("the label {text:?} names #{id}, which is missing: {error}"))
}

async fn button(client: &Client, text: &str) -> Element {
    client
        .find(Locator::XPath(&format!(
            "//button[normalize-space(.)='{text}']"
        )))
        .await
        .unwrap_or_else(|error| panic!("no button {text:?}: {error}"))
}

/// Clicks `element` and waits until the next page has loaded (the old document carried a
/// mark the new one does not).
async fn click_and_wait_for_next_page(client: &Client, element: Element) {
    client
        .execute("window.samsaPreviousPage = true;", vec![])
        .await
        .unwrap();
    element.click().await.unwrap();
    common::eventually("the next page", DEADLINE, || async {
        let loaded = client
            .execute(
                "return document.readyState === 'complete' && window.samsaPreviousPage !== true;",
                vec![],
            )
            .await
            .ok()?;
        (loaded == Value::Bool(true)).then_some(())
    })
    .await;
}

/// The text `part` ("Text", "Rubrik", "Ämne") of `channel` (its Swedish label) under "Det
/// här skickas ut".
async fn preview_text(client: &Client, channel: &str, part: &str) -> String {
    let value = client
        .execute(
            "const section = [...document.querySelectorAll('section[aria-labelledby=preview-heading] section')]
                 .find(section => section.querySelector('h3').textContent.trim() === arguments[0]);
             const heading = section && [...section.querySelectorAll('.part-heading')]
                 .find(p => p.textContent.trim() === arguments[1]);
             return heading ? heading.nextElementSibling.textContent : null;",
            vec![json!(channel), json!(part)],
        )
        .await
        .unwrap();
    value
        .as_str()
        .unwrap_or_else(|| panic!("no text {part:?} of {channel:?}"))
        .to_owned()
}

async fn assert_no_horizontal_overflow(client: &Client, what: &str) {
    let widths = client
        .execute(
            "return [document.documentElement.scrollWidth, window.innerWidth];",
            vec![],
        )
        .await
        .unwrap();
    assert_eq!(widths[1], PHONE_WIDTH, "the viewport is a phone's width");
    assert!(
        widths[0].as_u64() <= widths[1].as_u64(),
        "{what} scrolls sideways at {PHONE_WIDTH}px: scrollWidth {}",
        widths[0]
    );
}

/// Every visible form control that has neither a non-empty `<label>` nor a fieldset with
/// a legend; and labels that point at nothing.
const UNLABELLED_CONTROLS: &str = "
    const problems = [];
    for (const control of document.querySelectorAll('input, select, textarea')) {
        if (control.type === 'hidden') continue;
        const labelled = [...control.labels].some(label => label.textContent.trim() !== '');
        const legend = control.closest('fieldset')?.querySelector(':scope > legend');
        const grouped = legend != null && legend.textContent.trim() !== '';
        if (!labelled && !grouped) problems.push(control.outerHTML.slice(0, 160));
    }
    for (const label of document.querySelectorAll('label[for]')) {
        if (!document.getElementById(label.htmlFor)) problems.push(label.outerHTML.slice(0, 160));
    }
    return problems;";

/// Describes the focused element: a name, whether a focus outline shows, and how much of
/// it an action bar would cover (none is sticky any more: always 0).
const FOCUSED: &str = "
    const element = document.activeElement;
    const text = (element.labels?.[0]?.textContent ?? element.textContent ?? '').trim().replace(/\\s+/g, ' ');
    const rect = element.getBoundingClientRect();
    const bar = document.querySelector('.actions')?.getBoundingClientRect();
    const inBar = element.closest('.actions') !== null;
    return {
        name: element.tagName.toLowerCase() + ' ' + text.slice(0, 50),
        value: element.value ?? '',
        outline: getComputedStyle(element).outlineStyle,
        // The share of the element's height under the bar (0 when it is in the bar).
        covered: inBar || bar == null || rect.height === 0 ? 0
            : Math.max(0, Math.min(rect.bottom, bar.bottom) - Math.max(rect.top, bar.top)) / rect.height,
    };";

/// Presses Tab from the top of the page until Granska och publicera has the focus (at most
/// 60 times);
/// returns every stop.
async fn tab_until_publish(client: &Client, shots: &Screenshots) -> Vec<Value> {
    client
        .execute(
            "document.activeElement?.blur(); window.scrollTo(0, 0);",
            vec![],
        )
        .await
        .unwrap();
    let mut stops: Vec<Value> = Vec::new();
    for _ in 0..60 {
        let tab = KeyActions::new("keyboard".to_owned())
            .then(KeyAction::Down {
                value: Key::Tab.into(),
            })
            .then(KeyAction::Up {
                value: Key::Tab.into(),
            });
        client.perform_actions(tab).await.unwrap();
        let stop = client.execute(FOCUSED, vec![]).await.unwrap();
        // A date field takes several Tabs (day, month, year, …): one stop.
        if stops
            .last()
            .is_some_and(|last| last["name"] == stop["name"])
        {
            continue;
        }
        let is_publish =
            stop["name"] == "button Granska och publicera" && stop["value"] == "confirm";
        // Evidence for the report: the first control the bar hides completely.
        let hidden = |stop: &Value| {
            stop["covered"]
                .as_f64()
                .is_some_and(|covered| covered >= 0.99)
        };
        if hidden(&stop) && !stops.iter().any(hidden) {
            shots.save_viewport(client, "focus-under-action-bar").await;
        }
        stops.push(stop);
        if is_publish {
            break;
        }
    }
    stops
}

// ---- screenshots -------------------------------------------------------------------

/// PNG files under `target/test-artifacts/screenshots/`, named `PREFIX-NAME.png` (what the
/// phone shows) and `PREFIX-NAME-full.png` (the whole page). Each run overwrites them.
struct Screenshots {
    folder: PathBuf,
    prefix: &'static str,
}

impl Screenshots {
    fn new(prefix: &'static str) -> Screenshots {
        // CARGO_TARGET_TMPDIR is `<target dir>/tmp`, wherever the target dir is.
        let folder = Path::new(env!("CARGO_TARGET_TMPDIR"))
            .parent()
            .expect("the target dir")
            .join("test-artifacts")
            .join("screenshots");
        std::fs::create_dir_all(&folder).expect("the screenshot folder");
        Screenshots { folder, prefix }
    }

    /// Saves what the phone shows and, when the page is longer, the whole page.
    async fn save(&self, browser: &Browser, name: &str) {
        let client = &browser.client;
        self.save_viewport(client, name).await;

        let height = client
            .execute("return document.documentElement.scrollHeight;", vec![])
            .await
            .unwrap()
            .as_u64()
            .expect("a height");
        let height = u32::try_from(height).unwrap_or(u32::MAX).min(12_000);
        let full_path = self.folder.join(format!("{}-{name}-full.png", self.prefix));
        if height > PHONE_HEIGHT {
            // The whole page: make the viewport as tall as the document, then restore it.
            browser.set_viewport(PHONE_WIDTH, height).await;
            let full = client.screenshot().await.expect("a screenshot");
            browser.set_viewport(PHONE_WIDTH, PHONE_HEIGHT).await;
            write_png(&full_path, &full);
            report(&format!("screenshot: {}", full_path.display()));
        } else {
            // The page fits: a full-page file from an earlier run would mislead.
            let _ = std::fs::remove_file(&full_path);
        }
    }

    /// Saves what the phone shows.
    async fn save_viewport(&self, client: &Client, name: &str) {
        let path = self.folder.join(format!("{}-{name}.png", self.prefix));
        write_png(&path, &client.screenshot().await.expect("a screenshot"));
        report(&format!("screenshot: {}", path.display()));
    }
}

fn write_png(path: &Path, png: &[u8]) {
    assert!(png.starts_with(b"\x89PNG\r\n\x1a\n"), "a PNG image");
    std::fs::write(path, png)
        .unwrap_or_else(|error| panic!("cannot write {}: {error}", path.display()));
}

/// Prints past the test harness's capture, so the lines show for passing tests too.
fn report(line: &str) {
    let _ = writeln!(std::io::stderr(), "{line}");
}

// ---- the browser -------------------------------------------------------------------

/// One Chromium session through a chromedriver of our own. Fields drop in order: the
/// session, then chromedriver, then the folder with the log and Chromium's profile.
struct Browser {
    client: Client,
    driver: ChromeDriver,
    /// How much larger the window is than the page's viewport (width, height).
    frame: (u32, u32),
    _folder: tempfile::TempDir,
}

impl Browser {
    async fn start() -> Browser {
        for binary in [CHROMIUM, CHROMEDRIVER] {
            assert!(
                Path::new(binary).exists(),
                "{binary} is missing: the browser tests need the Debian packages chromium and \
                 chromium-driver; run `bash scripts/test-all.sh`, which installs them"
            );
        }
        let folder = tempfile::tempdir().expect("a temporary folder");
        let mut driver = ChromeDriver::start(folder.path()).await;
        let capabilities = json!({
            "browserName": "chrome",
            "pageLoadStrategy": "normal",
            "goog:chromeOptions": {
                "binary": CHROMIUM,
                "args": [
                    "--headless",
                    "--no-sandbox",
                    "--disable-gpu",
                    "--disable-quic",
                    "--no-first-run",
                    "--disable-background-networking",
                    "--disable-component-update",
                    "--disable-sync",
                    "--disable-dev-shm-usage",
                    "--disable-extensions",
                    "--disable-crash-reporter",
                    "--no-proxy-server",
                    // Only 127.0.0.1 (the relay, chromedriver) can be reached.
                    "--host-resolver-rules=MAP * ~NOTFOUND , EXCLUDE 127.0.0.1",
                    // Phones overlay their scroll bars; a classic one would take 15 px.
                    "--hide-scrollbars",
                    format!("--window-size={PHONE_WIDTH},{PHONE_HEIGHT}"),
                    format!("--user-data-dir={}", folder.path().join("profile").display()),
                ],
                // Accept-Language as a Swedish phone sends it. (The date fields still show
                // the en-US pattern: Debian's chromium has only the en-US locale.)
                "prefs": {"intl.accept_languages": "sv-SE,sv"},
            },
        });
        let Value::Object(capabilities) = capabilities else {
            unreachable!("the capabilities are an object")
        };
        let client = ClientBuilder::new(HttpConnector::new())
            .capabilities(capabilities)
            .connect(&driver.url())
            .await
            .unwrap_or_else(|error| {
                panic!(
                    "Chromium did not start: {error}\nchromedriver log:\n{}",
                    driver.log()
                )
            });
        driver.session_id = client.session_id().await.ok().flatten();
        let mut browser = Browser {
            client,
            driver,
            frame: (0, 0),
            _folder: folder,
        };
        browser.set_viewport(PHONE_WIDTH, PHONE_HEIGHT).await;
        // The window is larger than its viewport by the (invisible) window frame.
        let viewport = browser
            .client
            .execute("return [window.innerWidth, window.innerHeight];", vec![])
            .await
            .unwrap();
        let frame = |index: usize, size: u32| {
            size - u32::try_from(viewport[index].as_u64().expect("a size")).unwrap()
        };
        browser.frame = (frame(0, PHONE_WIDTH), frame(1, PHONE_HEIGHT));
        browser.set_viewport(PHONE_WIDTH, PHONE_HEIGHT).await;
        let viewport = browser
            .client
            .execute("return [window.innerWidth, window.innerHeight];", vec![])
            .await
            .unwrap();
        assert_eq!(viewport, json!([PHONE_WIDTH, PHONE_HEIGHT]), "the viewport");
        browser
    }

    /// Sizes the window so that the page gets `width` x `height` CSS pixels.
    async fn set_viewport(&self, width: u32, height: u32) {
        self.client
            .set_window_size(width + self.frame.0, height + self.frame.1)
            .await
            .expect("the window resizes");
    }

    /// Runs a Chrome DevTools Protocol command through chromedriver
    /// (`goog/cdp/execute`) and returns its result.
    async fn devtools(&self, command: &str, parameters: Value) -> Value {
        let session_id = self.driver.session_id.as_deref().expect("an open session");
        let http = reqwest::Client::builder()
            .no_proxy()
            .timeout(Duration::from_secs(60))
            .build()
            .expect("an HTTP client");
        let answer: Value = http
            .post(format!(
                "{}/session/{session_id}/goog/cdp/execute",
                self.driver.url()
            ))
            .json(&json!({"cmd": command, "params": parameters}))
            .send()
            .await
            .unwrap_or_else(|error| panic!("{command} was not sent: {error}"))
            .json()
            .await
            .unwrap_or_else(|error| panic!("{command} gave no JSON: {error}"));
        assert!(
            answer["value"].get("error").is_none(),
            "{command} failed: {answer}"
        );
        answer["value"].clone()
    }

    /// Gives the page a viewport of `width` x `height` CSS pixels through DevTools, also
    /// narrower than Chromium lets a window be.
    async fn emulate_viewport(&self, width: u32, height: u32) {
        self.devtools(
            "Emulation.setDeviceMetricsOverride",
            json!({"width": width, "height": height, "deviceScaleFactor": 1, "mobile": false}),
        )
        .await;
    }

    /// Ends the session, which quits Chromium; dropping the driver then stops chromedriver.
    async fn close(mut self) {
        self.client
            .clone()
            .close()
            .await
            .expect("the Chromium session ends");
        self.driver.session_id = None;
    }
}

/// chromedriver as a child process on a local port.
struct ChromeDriver {
    child: Child,
    port: u16,
    log: PathBuf,
    /// The open session, which `Drop` ends when a failed test could not.
    session_id: Option<String>,
}

impl ChromeDriver {
    /// Starts chromedriver on a free port and waits until it answers /status. The port is
    /// free when chosen; should another process take it first, the next try picks another.
    async fn start(folder: &Path) -> ChromeDriver {
        let log = folder.join("chromedriver.log");
        for _ in 0..3 {
            let port = std::net::TcpListener::bind("127.0.0.1:0")
                .and_then(|listener| listener.local_addr())
                .expect("a free port")
                .port();
            let log_file = std::fs::File::create(&log).expect("a log file");
            let child = Command::new(CHROMEDRIVER)
                .arg(format!("--port={port}"))
                .stdin(Stdio::null())
                .stdout(log_file.try_clone().expect("a log handle"))
                .stderr(log_file)
                .spawn()
                .unwrap_or_else(|error| panic!("cannot start {CHROMEDRIVER}: {error}"));
            let mut driver = ChromeDriver {
                child,
                port,
                log: log.clone(),
                session_id: None,
            };
            if driver.wait_until_ready().await {
                return driver;
            }
        }
        panic!(
            "chromedriver did not start in three tries; its log:\n{}",
            std::fs::read_to_string(&log).unwrap_or_default()
        )
    }

    /// True once /status says ready; false when chromedriver exited or stayed silent.
    async fn wait_until_ready(&mut self) -> bool {
        let http = reqwest::Client::builder()
            .no_proxy()
            .timeout(Duration::from_secs(2))
            .build()
            .expect("an HTTP client");
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                return false;
            }
            if let Ok(response) = http.get(format!("{}/status", self.url())).send().await
                && let Ok(status) = response.json::<Value>().await
                && status["value"]["ready"] == true
            {
                return true;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        false
    }

    fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

impl Drop for ChromeDriver {
    /// Ends a session a failed test left open (Chromium quits), asks chromedriver to exit,
    /// and kills it by its PID when it has not within five seconds.
    fn drop(&mut self) {
        if let Some(session_id) = self.session_id.take() {
            blocking_request(self.port, "DELETE", &format!("/session/{session_id}"));
        }
        blocking_request(self.port, "GET", "/shutdown");
        let deadline = Instant::now() + Duration::from_secs(5);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A bodiless HTTP/1.1 request to chromedriver, for `Drop` (which cannot await). Reads
/// the answer up to its Content-Length (chromedriver keeps the connection open), at most
/// ten seconds; the answer itself is ignored.
fn blocking_request(port: u16, method: &str, path: &str) {
    let address = std::net::SocketAddr::from(([127, 0, 0, 1], port));
    let Ok(mut stream) = TcpStream::connect_timeout(&address, Duration::from_secs(1)) else {
        return;
    };
    let _ = stream.set_read_timeout(Some(Duration::from_secs(10)));
    let request = format!(
        "{method} {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
    );
    if stream.write_all(request.as_bytes()).is_err() {
        return;
    }
    let mut answer = Vec::new();
    let mut chunk = [0u8; 4096];
    while let Ok(n_read @ 1..) = stream.read(&mut chunk) {
        answer.extend_from_slice(&chunk[..n_read]);
        let text = String::from_utf8_lossy(&answer);
        let Some(head_end) = text.find("\r\n\r\n") else {
            continue;
        };
        let content_length = text[..head_end]
            .lines()
            .find_map(|line| {
                let (name, value) = line.split_once(':')?;
                name.eq_ignore_ascii_case("content-length")
                    .then(|| value.trim().parse::<usize>().ok())?
            })
            .unwrap_or(0);
        if answer.len() >= head_end + 4 + content_length {
            return;
        }
    }
}

// ---- subscriptions (issue 18) --------------------------------------------------------

const SUBSCRIBER: &str = "anna.berg@boras.example";
/// A subscriber to Lerum only, imported: proves a Lerum notice went out at all.
const LERUM_SUBSCRIBER: &str = "bo.ek@lerum.example";

/// Every text part of the messages the sink took for `to`, oldest first, whose subject
/// contains `subject`.
fn sink_mails(
    sink: &common::smtp_sink::SmtpSink,
    to: &str,
    subject: &str,
) -> Vec<common::smtp_sink::Received> {
    sink.messages()
        .into_iter()
        .filter(|message| {
            message.rcpt_tos() == [to]
                && message
                    .header("subject")
                    .is_some_and(|found| found.contains(subject))
        })
        .collect()
}

async fn wait_for_sink_mails(
    sink: &common::smtp_sink::SmtpSink,
    to: &str,
    subject: &str,
    n: usize,
) -> Vec<common::smtp_sink::Received> {
    common::eventually(
        &format!("{n} message(s) {subject:?} to {to} at the SMTP server"),
        DEADLINE,
        || async {
            let found = sink_mails(sink, to, subject);
            (found.len() >= n).then_some(found)
        },
    )
    .await
}

fn text_of(message: &common::smtp_sink::Received) -> String {
    message
        .parts()
        .into_iter()
        .find(|(content_type, _)| content_type == "text/plain")
        .map(|(_, text)| text)
        .expect("a text part")
}

async fn fire(app: &TestApp, fingerprint: &str, status: &str, labels: Value) {
    let mut labels = labels;
    labels["alertname"] = json!("SamsaLoginDown");
    labels["service"] = json!("samsa");
    let body = common::payload(
        status,
        vec![common::alert(
            fingerprint,
            status,
            labels,
            "2026-11-28T04:10:00Z",
        )],
    );
    assert_eq!(app.post_webhook(body.to_string()).await.status(), 200);
}

async fn publish_newsletter(
    app: &TestApp,
    incident_id: i64,
    kind: samsa_relay::notice::NoticeKind,
) {
    common::publish_pending(app, incident_id, kind, &["newsletter"]).await;
}

#[tokio::test]
async fn a_subscriber_chooses_boras_and_skovde_confirms_gets_what_concerns_them_and_leaves_in_one_click()
 {
    use samsa_relay::notice::NoticeKind;
    let started = Instant::now();
    let sink = common::smtp_sink::SmtpSink::start();
    let browser = Browser::start().await;
    let app = common::spawn_app_with_smtp(
        &format!("[smtp]\nurl = \"{}\"\nstarttls = \"none\"\n", sink.url()),
        "[incidents]\nflap_window = \"0s\"\n",
    )
    .await;
    app.state
        .storage
        .import_subscribers(
            &[samsa_relay::storage::NewSubscriber {
                address: LERUM_SUBSCRIBER.to_owned(),
                choices: samsa_relay::subscription::Choices {
                    all: false,
                    actors: vec!["kommun-lerum".to_owned()],
                    subregions: Vec::new(),
                    min_level: 1,
                },
                nonce: samsa_relay::subscription::new_nonce(),
            }],
            "import by test",
            jiff::Timestamp::now(),
        )
        .await
        .unwrap();
    let client = &browser.client;
    let shots = Screenshots::new("subscribe");

    // The form, on a phone: an address, only chosen organisations, found by search.
    client
        .goto(&format!("{}/public/subscribe", app.address))
        .await
        .unwrap();
    assert_eq!(
        heading(client).await,
        "Prenumerera på driftinformation om SAMSA"
    );
    assert_no_horizontal_overflow(client, "the subscribe page").await;
    let unlabelled = client.execute(UNLABELLED_CONTROLS, vec![]).await.unwrap();
    assert_eq!(unlabelled, json!([]), "controls without a label");
    labelled_control(client, "E-postadress")
        .await
        .send_keys(SUBSCRIBER)
        .await
        .unwrap();
    label(client, "Bara störningar som berör")
        .await
        .click()
        .await
        .unwrap();
    labelled_control(client, "Sök organisation")
        .await
        .send_keys("Borås")
        .await
        .unwrap();
    click_and_wait_for_next_page(client, button(client, "Sök").await).await;
    shots.save(&browser, "1-search").await;
    label(client, "Borås").await.click().await.unwrap();
    let search = labelled_control(client, "Sök organisation").await;
    search.clear().await.unwrap();
    search.send_keys("Skövde").await.unwrap();
    click_and_wait_for_next_page(client, button(client, "Sök").await).await;
    // Borås is kept though not shown; the address and the scope too.
    assert_eq!(
        labelled_control(client, "E-postadress")
            .await
            .prop("value")
            .await
            .unwrap()
            .as_deref(),
        Some(SUBSCRIBER)
    );
    assert!(
        labelled_control(client, "Bara störningar som berör")
            .await
            .is_selected()
            .await
            .unwrap()
    );
    label(client, "Skövde").await.click().await.unwrap();
    shots.save(&browser, "2-chosen").await;
    click_and_wait_for_next_page(client, button(client, "Prenumerera").await).await;
    assert_eq!(heading(client).await, "Kontrollera din e-post");
    assert_no_horizontal_overflow(client, "the answer").await;

    // The confirmation mail at the real SMTP server; its link, opened in the browser.
    let mail = wait_for_sink_mails(&sink, SUBSCRIBER, "Bekräfta din prenumeration", 1)
        .await
        .remove(0);
    let text = text_of(&mail);
    assert!(text.contains("Skövde och Borås"), "{text}");
    let confirm = text
        .split_whitespace()
        .find(|word| word.starts_with(&format!("{PUBLIC_URL}/public/subscribe/confirm/")))
        .unwrap_or_else(|| panic!("no confirmation link in:\n{text}"))
        .replacen(PUBLIC_URL, &app.address, 1);
    client.goto(&confirm).await.unwrap();
    assert_eq!(heading(client).await, "Bekräfta prenumerationen");
    let pending = app
        .state
        .storage
        .subscriber_by_address(SUBSCRIBER)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        pending.state,
        samsa_relay::subscription::SubscriberState::Pending,
        "opening the link confirms nothing"
    );
    shots.save(&browser, "3-confirm").await;
    click_and_wait_for_next_page(client, button(client, "Bekräfta prenumerationen").await).await;
    assert_eq!(heading(client).await, "Prenumerationen är bekräftad");
    assert_no_horizontal_overflow(client, "the confirmation").await;
    shots.save(&browser, "4-confirmed").await;

    // An outage in Borås reaches the subscriber, with the one-click headers.
    fire(&app, "boras", "firing", json!({"actor": "kommun-boras"})).await;
    publish_newsletter(&app, 1, NoticeKind::Initial).await;
    let notice = wait_for_sink_mails(&sink, SUBSCRIBER, "Borås", 1)
        .await
        .remove(0);
    let unsubscribe = notice
        .header("list-unsubscribe")
        .expect("List-Unsubscribe")
        .to_owned();
    assert_eq!(
        notice.header("list-unsubscribe-post"),
        Some("List-Unsubscribe=One-Click")
    );
    assert!(text_of(&notice).contains("Skövde och Borås"));
    fire(&app, "boras", "resolved", json!({"actor": "kommun-boras"})).await;
    publish_newsletter(&app, 1, NoticeKind::Resolved).await;
    let n_after_boras = wait_for_sink_mails(&sink, SUBSCRIBER, "", 3).await.len();

    // Lerum: the Lerum subscriber hears of it, ours does not.
    fire(&app, "lerum", "firing", json!({"actor": "kommun-lerum"})).await;
    publish_newsletter(&app, 2, NoticeKind::Initial).await;
    wait_for_sink_mails(&sink, LERUM_SUBSCRIBER, "Lerum", 1).await;
    fire(&app, "lerum", "resolved", json!({"actor": "kommun-lerum"})).await;
    publish_newsletter(&app, 2, NoticeKind::Resolved).await;
    wait_for_sink_mails(&sink, LERUM_SUBSCRIBER, "", 2).await;
    assert_eq!(
        sink_mails(&sink, SUBSCRIBER, "").len(),
        n_after_boras,
        "nothing about Lerum"
    );

    // The whole service: everyone.
    fire(&app, "all", "firing", json!({"scope": "all"})).await;
    publish_newsletter(&app, 3, NoticeKind::Initial).await;
    wait_for_sink_mails(&sink, SUBSCRIBER, "", n_after_boras + 1).await;
    wait_for_sink_mails(&sink, LERUM_SUBSCRIBER, "", 3).await;

    // RFC 8058: one POST, no session, ends this subscription only.
    let one_click = unsubscribe
        .trim_start_matches('<')
        .trim_end_matches('>')
        .replacen(PUBLIC_URL, &app.address, 1);
    let answer = app
        .client
        .post(&one_click)
        .header("content-type", "application/x-www-form-urlencoded")
        .body("List-Unsubscribe=One-Click")
        .send()
        .await
        .unwrap();
    assert_eq!(answer.status(), 200);
    let n_before_end = sink_mails(&sink, SUBSCRIBER, "").len();
    fire(&app, "all", "resolved", json!({"scope": "all"})).await;
    publish_newsletter(&app, 3, NoticeKind::Resolved).await;
    wait_for_sink_mails(&sink, LERUM_SUBSCRIBER, "", 4).await;
    assert_eq!(
        sink_mails(&sink, SUBSCRIBER, "").len(),
        n_before_end,
        "nothing more arrives"
    );
    let rows = common::outbox_rows(&app, "newsletter").await;
    assert!(
        rows.iter()
            .all(|row| row.recipient.starts_with("subscriber:"))
    );

    browser.close().await;
    app.stop().await;
    report(&format!(
        "browser: subscribe, confirm, three notices and one-click took {:.1?}",
        started.elapsed()
    ));
}

// ---- planned maintenance -----------------------------------------------------------

/// A date field as a person fills it in: Debian's Chromium has only the en-US locale, so
/// the field takes month, day and year in that order (each part moves on by itself).
async fn type_date(client: &Client, id: &str, date: &str) {
    let (year, rest) = date.split_once('-').expect("ÅÅÅÅ-MM-DD");
    let (month, day) = rest.split_once('-').expect("ÅÅÅÅ-MM-DD");
    let field = client.find(Locator::Id(id)).await.unwrap();
    field.click().await.unwrap();
    field
        .send_keys(&format!("{month}{day}{year}"))
        .await
        .unwrap();
    assert_eq!(
        field.prop("value").await.unwrap().as_deref(),
        Some(date),
        "the date field #{id} holds what was typed"
    );
}

/// A time field as a person fills it in: hours (12-hour, en-US), minutes, AM or PM.
async fn type_time(client: &Client, id: &str, time: &str) {
    let (hour, minute) = time.split_once(':').expect("TT:MM");
    let hour: u32 = hour.parse().unwrap();
    let (twelve, half) = match hour {
        0 => (12, "A"),
        1..=11 => (hour, "A"),
        12 => (12, "P"),
        _ => (hour - 12, "P"),
    };
    let field = client.find(Locator::Id(id)).await.unwrap();
    field.click().await.unwrap();
    field
        .send_keys(&format!("{twelve:02}{minute}{half}"))
        .await
        .unwrap();
    assert_eq!(
        field.prop("value").await.unwrap().as_deref(),
        Some(time),
        "the time field #{id} holds what was typed"
    );
}

/// A day `days` from today in Swedish time, as a date field holds it.
fn swedish_day(days: i64) -> String {
    let today = jiff::Timestamp::now()
        .to_zoned(jiff::tz::TimeZone::get("Europe/Stockholm").unwrap())
        .date();
    today
        .checked_add(jiff::Span::new().days(days))
        .unwrap()
        .to_string()
}

/// An operator plans a maintenance window on a 320 px phone: from the dashboard's link to
/// the form, a first try without a title (the error summary takes the focus and leads to
/// the field), then the window for Borås tomorrow evening, chosen by opening its
/// sub-region, the times typed into the date and time fields, level 2 and every message
/// reviewed; the form lands on the announcement's review page.
#[tokio::test]
async fn an_operator_plans_a_maintenance_window_on_a_320_px_phone() {
    let started = Instant::now();
    let browser = Browser::start().await;
    browser.emulate_viewport(NARROW_WIDTH, NARROW_HEIGHT).await;
    let app = common::spawn_app_with_tables(OPERATORS).await;
    let client = &browser.client;
    let shots = Screenshots::new("maintenance");
    let dashboard = dashboard_path(&app);
    client
        .goto(&format!("{}{dashboard}", app.address))
        .await
        .unwrap();
    let plan_link = client
        .find(Locator::LinkText("Planera underhåll"))
        .await
        .expect("the dashboard links the form");
    click_and_wait_for_next_page(client, plan_link).await;
    assert_eq!(heading(client).await, "Planera underhåll");
    assert_fits_narrow_screen(client, "the maintenance form").await;
    let unlabelled = client.execute(UNLABELLED_CONTROLS, vec![]).await.unwrap();
    assert_eq!(unlabelled, json!([]), "controls without a label");
    shots.save(&browser, "1-form").await;

    // Borås, in its folded sub-region.
    let sodra_alvsborg = client
        .find(Locator::XPath(
            "//summary[starts-with(normalize-space(.), 'Södra Älvsborg')]",
        ))
        .await
        .unwrap();
    sodra_alvsborg.click().await.unwrap();
    label(client, "Borås").await.click().await.unwrap();
    let tomorrow = swedish_day(1);
    type_date(client, "starts_at", &tomorrow).await;
    type_time(client, "starts_at_time", "21:30").await;
    type_date(client, "ends_at", &tomorrow).await;
    type_time(client, "ends_at_time", "23:00").await;
    labelled_control(client, "Påverkan")
        .await
        .send_keys("SAMSA går inte att nå för Borås under kvällen.")
        .await
        .unwrap();
    label(client, "Nivå 2:").await.click().await.unwrap();
    label(client, "Granska varje meddelande")
        .await
        .click()
        .await
        .unwrap();
    shots.save(&browser, "2-filled").await;

    // No title yet: the error summary takes the focus and leads to the field.
    click_and_wait_for_next_page(client, button(client, "Skapa utkast till annons").await).await;
    assert!(client.title().await.unwrap().starts_with("Fel: "));
    assert_eq!(
        script(client, "return document.activeElement?.id ?? '';").await,
        "error-summary"
    );
    assert_fits_narrow_screen(client, "the form with errors").await;
    shots.save(&browser, "3-errors").await;
    // From the summary to the field, by keyboard: Tab to its link, Enter.
    let keys = KeyActions::new("keyboard".to_owned())
        .then(KeyAction::Down {
            value: Key::Tab.into(),
        })
        .then(KeyAction::Up {
            value: Key::Tab.into(),
        });
    client.perform_actions(keys).await.unwrap();
    assert_eq!(
        script(
            client,
            "return document.activeElement?.getAttribute('href') ?? '';"
        )
        .await,
        "#title"
    );
    let keys = KeyActions::new("keyboard".to_owned())
        .then(KeyAction::Down {
            value: Key::Enter.into(),
        })
        .then(KeyAction::Up {
            value: Key::Enter.into(),
        });
    client.perform_actions(keys).await.unwrap();
    common::eventually("the title field focused", DEADLINE, || async {
        (script(client, "return document.activeElement?.id ?? '';").await == "title").then_some(())
    })
    .await;
    // Everything else was kept; the title typed where the focus is.
    assert_eq!(
        script(
            client,
            "return document.getElementById('actor-kommun-boras').checked ? 'ja' : 'nej';"
        )
        .await,
        "ja"
    );
    assert_eq!(
        script(
            client,
            "return document.getElementById('starts_at_time').value;"
        )
        .await,
        "21:30"
    );
    client
        .active_element()
        .await
        .unwrap()
        .send_keys("Byte av databasserver")
        .await
        .unwrap();
    click_and_wait_for_next_page(client, button(client, "Skapa utkast till annons").await).await;

    // The announcement's review page, under the dashboard link.
    assert!(
        heading(client).await.starts_with("Granska utkast"),
        "{}",
        heading(client).await
    );
    let url = client.current_url().await.unwrap();
    assert!(
        url.path().starts_with(&format!("{dashboard}/r/")),
        "landed on {url}"
    );
    assert_fits_narrow_screen(client, "the announcement's review page").await;
    shots.save(&browser, "4-review").await;
    let windows = app
        .state
        .storage
        .maintenance_windows(jiff::Timestamp::UNIX_EPOCH)
        .await
        .unwrap();
    assert_eq!(windows.len(), 1);
    let window = &windows[0];
    assert_eq!(window.plan.title, "Byte av databasserver");
    assert_eq!(window.plan.scope.actors, ["kommun-boras"]);
    assert_eq!(window.plan.level.as_number(), 2);
    assert!(!window.plan.auto_series);
    assert_eq!(window.created_by, OPERATOR_NAME);
    assert_eq!(
        window.plan.ends_at.duration_since(window.plan.starts_at),
        jiff::SignedDuration::from_mins(90)
    );

    browser.close().await;
    app.stop().await;
    report(&format!(
        "browser: planning a maintenance window at {NARROW_WIDTH}px took {:.1?}",
        started.elapsed()
    ));
}
