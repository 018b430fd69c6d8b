//! Planned maintenance on the operators' dashboard over real HTTP: the dashboard's list
//! and its link to the form, planning a window through the form (303 to the review page
//! of its announcement), errors at their fields with the typed values kept, moving,
//! calling off and ending a window (each makes its draft), the CSRF token every POST
//! needs, and the single sign-on variant of the same pages.

use crate::common;

use common::TestApp;
use jiff::Timestamp;
use jiff::civil::Date;
use jiff::tz::TimeZone;
use samsa_relay::links::{LinkClaims, LinkPurpose};
use samsa_relay::maintenance::{DEFAULT_ADVICE, WindowState};
use samsa_relay::notice::NoticeKind;

const OPERATORS: &str = r#"
[[operators]]
name = "Anna Andersson"
email = "anna@example.org"
groups = ["on-duty"]

[review]
trusted_user_header = "X-Forwarded-Email"
"#;

const TITLE: &str = "Uppgradering av SAMSA";
const IMPACT: &str = "SAMSA går inte att logga in i under arbetet.";

async fn spawn() -> TestApp {
    common::spawn_app_with_tables(OPERATORS).await
}

/// A client that shows redirects instead of following them.
fn client() -> reqwest::Client {
    reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .no_proxy()
        .build()
        .unwrap()
}

/// The path of a dashboard link for Anna, valid for an hour.
fn dashboard(app: &TestApp) -> String {
    let token = app.state.signer.sign(&LinkClaims {
        purpose: LinkPurpose::Dashboard,
        operator: "anna@example.org".to_owned(),
        expires_at: Timestamp::now().as_second() + 3600,
    });
    format!("/ops/d/{token}")
}

/// A day `days` from today, Swedish time, as a date field holds it.
fn day(days: i64) -> String {
    let today = Timestamp::now()
        .to_zoned(TimeZone::get("Europe/Stockholm").unwrap())
        .date();
    let date: Date = today.checked_add(jiff::Span::new().days(days)).unwrap();
    date.to_string()
}

async fn get(app: &TestApp, path: &str) -> (u16, String) {
    let response = client()
        .get(format!("{}{path}", app.address))
        .send()
        .await
        .unwrap();
    let status = response.status().as_u16();
    (status, unescaped(response.text().await.unwrap()))
}

/// Posts a form; returns the status, the `Location` (empty without) and the body.
async fn post(app: &TestApp, path: &str, fields: &[(&str, &str)]) -> (u16, String, String) {
    post_with(client().post(format!("{}{path}", app.address)), fields).await
}

async fn post_with(
    request: reqwest::RequestBuilder,
    fields: &[(&str, &str)],
) -> (u16, String, String) {
    let body: String = url::form_urlencoded::Serializer::new(String::new())
        .extend_pairs(fields)
        .finish();
    let response = request
        .header("content-type", "application/x-www-form-urlencoded")
        .body(body)
        .send()
        .await
        .unwrap();
    let status = response.status().as_u16();
    let location = response
        .headers()
        .get("location")
        .map(|value| value.to_str().unwrap().to_owned())
        .unwrap_or_default();
    (status, location, unescaped(response.text().await.unwrap()))
}

/// A page's HTML with the `/` that MiniJinja's HTML escaping writes as `&#x2f;` (in
/// URLs from the context) as `/` again, to look for paths.
fn unescaped(html: String) -> String {
    html.replace("&#x2f;", "/")
}

fn csrf_of(html: &str) -> String {
    let start =
        html.find("name=\"csrf\" value=\"").expect("a CSRF field") + "name=\"csrf\" value=\"".len();
    html[start..].split('"').next().unwrap().to_owned()
}

/// A whole, valid plan: Borås and all of Skaraborg, tomorrow 22:00–23:30.
fn plan_fields<'a>(csrf: &'a str, start_day: &'a str) -> Vec<(&'a str, &'a str)> {
    vec![
        ("csrf", csrf),
        ("title", TITLE),
        ("actors", "kommun-boras"),
        ("subregions", "skaraborg"),
        ("starts_at_date", start_day),
        ("starts_at_time", "22:00"),
        ("ends_at_date", start_day),
        ("ends_at_time", "23:30"),
        ("impact", IMPACT),
        ("advice", ""),
        ("level", "2"),
        ("series", "auto"),
    ]
}

/// Plans a window through the form; returns its id and the review path it redirected to.
async fn plan_through_the_form(app: &TestApp, dashboard: &str) -> (i64, String) {
    let (status, form) = get(app, &format!("{dashboard}/maintenance/new")).await;
    assert_eq!(status, 200);
    let csrf = csrf_of(&form);
    let tomorrow = day(1);
    let (status, location, _) = post(
        app,
        &format!("{dashboard}/maintenance/new"),
        &plan_fields(&csrf, &tomorrow),
    )
    .await;
    assert_eq!(status, 303);
    let windows = app
        .state
        .storage
        .maintenance_windows(Timestamp::now())
        .await
        .unwrap();
    let window = windows.last().expect("the window is stored");
    (window.incident_id, location)
}

#[tokio::test]
async fn a_window_planned_through_the_form_drafts_its_announcement_for_review() {
    let app = spawn().await;
    let dashboard = dashboard(&app);

    let (status, page) = get(&app, &dashboard).await;
    assert_eq!(status, 200);
    assert!(page.contains("<h2 id=\"maintenance-heading\">Planerat underhåll</h2>"));
    assert!(page.contains(&format!(
        "href=\"{dashboard}/maintenance/new\">Planera underhåll"
    )));

    let (status, form) = get(&app, &format!("{dashboard}/maintenance/new")).await;
    assert_eq!(status, 200);
    assert!(form.contains("<title>Planera underhåll – samsa-relay</title>"));
    assert!(form.contains(DEFAULT_ADVICE), "the advice is prefilled");
    for control in [
        "id=\"title\"",
        "name=\"whole_service\"",
        "name=\"subregions\" value=\"skaraborg\"",
        "name=\"actors\" value=\"kommun-boras\"",
        "name=\"starts_at_date\" type=\"date\"",
        "name=\"starts_at_time\" type=\"time\"",
        "name=\"ends_at_date\" type=\"date\"",
        "name=\"impact\"",
        "name=\"level\" value=\"3\"",
        "Skicka påminnelser, start och slut automatiskt med samma val som annonsen",
        "Granska varje meddelande",
    ] {
        assert!(form.contains(control), "the form lacks {control}");
    }

    let (window_id, location) = plan_through_the_form(&app, &dashboard).await;
    let window = app
        .state
        .storage
        .maintenance_window(window_id)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(window.plan.title, TITLE);
    assert_eq!(window.plan.impact, IMPACT);
    assert_eq!(
        window.plan.advice, DEFAULT_ADVICE,
        "an empty advice is the default"
    );
    assert_eq!(window.plan.scope.actors, ["kommun-boras"]);
    assert_eq!(window.plan.scope.subregions, ["skaraborg"]);
    assert!(window.plan.auto_series);
    assert_eq!(window.plan.level.as_number(), 2);
    assert_eq!(window.created_by, "Anna Andersson");
    assert_eq!(window.state, WindowState::Planned);
    // 22:00 Swedish time, whatever the season.
    let local = window
        .plan
        .starts_at
        .to_zoned(TimeZone::get("Europe/Stockholm").unwrap());
    assert_eq!((local.hour(), local.minute()), (22, 0));
    assert_eq!(local.date().to_string(), day(1));
    assert_eq!(
        window.plan.ends_at.duration_since(window.plan.starts_at),
        jiff::SignedDuration::from_mins(90)
    );

    // The redirect leads to the announcement's review page, under the dashboard link.
    let (draft_id, _, _) = common::pending_draft(&app, window_id, NoticeKind::Initial).await;
    assert_eq!(location, format!("{dashboard}/r/{draft_id}"));
    let (status, review) = get(&app, &location).await;
    assert_eq!(status, 200);
    assert!(review.contains(TITLE), "the announcement names the window");

    // The dashboard lists the window with its state and links its page and its draft.
    let (_, page) = get(&app, &dashboard).await;
    assert!(page.contains(&format!(
        "href=\"{dashboard}/maintenance/{window_id}\">{TITLE}</a>"
    )));
    assert!(page.contains("planerat, inte annonserat"));
    assert!(page.contains(&format!("/r/{draft_id}\">Granska utkast")));
    assert!(
        !page.contains(&format!("Incident {window_id}")),
        "the window is not listed as an incident"
    );

    // The window's page.
    let (status, window_page) = get(&app, &format!("{dashboard}/maintenance/{window_id}")).await;
    assert_eq!(status, 200);
    for text in [
        TITLE,
        "planerat, inte annonserat",
        "Hela Skaraborg",
        "Borås",
        IMPACT,
        "skickas automatiskt",
        &format!("{dashboard}/followup/{window_id}"),
        &format!("/r/{draft_id}"),
        "name=\"action\" value=\"move\"",
        "name=\"action\" value=\"cancel\"",
    ] {
        assert!(window_page.contains(text), "the window page lacks {text}");
    }
    assert!(
        !window_page.contains("name=\"action\" value=\"end\""),
        "a window not yet announced cannot be ended, only called off"
    );
    assert_eq!(
        get(&app, &format!("{dashboard}/maintenance/99999")).await.0,
        404
    );
    app.stop().await;
}

#[tokio::test]
async fn the_form_shows_each_error_at_its_field_and_keeps_what_was_typed() {
    let app = spawn().await;
    let dashboard = dashboard(&app);
    let (_, form) = get(&app, &format!("{dashboard}/maintenance/new")).await;
    let csrf = csrf_of(&form);
    let tomorrow = day(1);
    let mut fields = plan_fields(&csrf, &tomorrow);
    for (name, value) in fields.iter_mut() {
        match *name {
            "title" => *value = "  ",
            // The end before the start.
            "ends_at_time" => *value = "21:00",
            _ => {}
        }
    }
    let (status, location, page) =
        post(&app, &format!("{dashboard}/maintenance/new"), &fields).await;
    assert_eq!(status, 422);
    assert_eq!(location, "");
    assert!(page.contains("<title>Fel: Planera underhåll – samsa-relay</title>"));
    assert!(page.contains("id=\"error-summary\" tabindex=\"-1\" autofocus"));
    assert!(page.contains("<a href=\"#title\">Skriv en rubrik för underhållet</a>"));
    assert!(page.contains("<a href=\"#ends_at\">Slutet måste vara efter starten</a>"));
    assert!(
        page.find("href=\"#title\"").unwrap() < page.find("href=\"#ends_at\"").unwrap(),
        "the summary follows the form's order"
    );
    assert!(page.contains("id=\"title-error\""));
    assert!(page.contains("aria-invalid=\"true\" aria-describedby=\"title-error title-hint\""));
    assert!(page.contains("id=\"ends_at-error\""));
    assert!(page.contains("<fieldset aria-describedby=\"ends_at-error\">"));
    assert!(
        page.contains("name=\"ends_at_date\" type=\"date\" value=\"")
            && page.contains(&format!("value=\"{tomorrow}\""))
    );
    // What was typed is all still there.
    assert!(page.contains(IMPACT));
    assert!(page.contains("value=\"21:00\""));
    assert!(page.contains("name=\"actors\" value=\"kommun-boras\" checked"));
    assert!(page.contains("name=\"subregions\" value=\"skaraborg\" checked"));
    assert!(page.contains("name=\"level\" value=\"2\" checked"));
    assert!(page.contains("name=\"series\" value=\"auto\" checked"));

    // Times that cannot be read, and no scope: each said at its field, with the rest.
    let (status, _, page) = post(
        &app,
        &format!("{dashboard}/maintenance/new"),
        &[
            ("csrf", csrf.as_str()),
            ("title", TITLE),
            ("starts_at_date", "i morgon"),
            ("starts_at_time", "22:00"),
            ("impact", ""),
            ("level", "2"),
            ("series", "review"),
        ],
    )
    .await;
    assert_eq!(status, 422);
    for message in [
        "Välj hela tjänsten, eller minst en verksamhet eller delregion",
        "Ange starten som datum ÅÅÅÅ-MM-DD och klockslag TT:MM (svensk tid)",
        "Ange datum och klockslag för slutet",
        "Beskriv vad användarna märker under underhållet",
    ] {
        assert!(page.contains(message), "no error {message:?}");
    }
    assert!(
        page.contains("value=\"i morgon\""),
        "the unreadable date is kept"
    );
    assert!(
        app.state
            .storage
            .maintenance_windows(Timestamp::UNIX_EPOCH)
            .await
            .unwrap()
            .is_empty(),
        "nothing was planned"
    );
    app.stop().await;
}

#[tokio::test]
async fn every_maintenance_post_needs_the_pages_csrf_token() {
    let app = spawn().await;
    let dashboard = dashboard(&app);
    let tomorrow = day(1);
    for csrf in ["", "not-the-token"] {
        let (status, _, page) = post(
            &app,
            &format!("{dashboard}/maintenance/new"),
            &plan_fields(csrf, &tomorrow),
        )
        .await;
        assert_eq!(status, 403);
        assert!(page.contains("Formuläret gäller inte"));
    }
    assert!(
        app.state
            .storage
            .maintenance_windows(Timestamp::UNIX_EPOCH)
            .await
            .unwrap()
            .is_empty()
    );
    let (window_id, _) = plan_through_the_form(&app, &dashboard).await;
    let (status, _, _) = post(
        &app,
        &format!("{dashboard}/maintenance/{window_id}"),
        &[
            ("action", "cancel"),
            ("reason", "Leverantören är inte klar"),
        ],
    )
    .await;
    assert_eq!(status, 403);
    let window = app
        .state
        .storage
        .maintenance_window(window_id)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(window.state, WindowState::Planned, "nothing changed");
    app.stop().await;
}

/// Publishes the window's announcement past the pages: the window is announced.
async fn announce(app: &TestApp, window_id: i64) {
    let channels: Vec<String> = app.state.config.plan.channels_for(2).to_vec();
    let channels: Vec<&str> = channels.iter().map(String::as_str).collect();
    common::publish_pending(app, window_id, NoticeKind::Initial, &channels).await;
    let window = app
        .state
        .storage
        .maintenance_window(window_id)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(window.state, WindowState::Announced);
}

#[tokio::test]
async fn moving_cancelling_and_ending_a_window_each_make_their_draft() {
    let app = spawn().await;
    let dashboard = dashboard(&app);
    let (window_id, _) = plan_through_the_form(&app, &dashboard).await;
    announce(&app, window_id).await;
    let window_path = format!("{dashboard}/maintenance/{window_id}");
    let (_, page) = get(&app, &window_path).await;
    assert!(
        page.contains("<li>Annons om planerat underhåll</li>"),
        "the published announcement is a step done"
    );
    assert!(
        page.contains("name=\"action\" value=\"end\""),
        "an announced window can end"
    );
    let csrf = csrf_of(&page);

    // Move: the end before the start is said at its field; then moved a day later.
    let later = day(2);
    let (status, _, page) = post(
        &app,
        &window_path,
        &[
            ("csrf", csrf.as_str()),
            ("action", "move"),
            ("starts_at_date", later.as_str()),
            ("starts_at_time", "22:00"),
            ("ends_at_date", later.as_str()),
            ("ends_at_time", "20:00"),
        ],
    )
    .await;
    assert_eq!(status, 422);
    assert!(page.contains("<a href=\"#ends_at\">Slutet måste vara efter starten</a>"));
    assert!(page.contains("value=\"20:00\""), "the typed time is kept");
    let (status, location, _) = post(
        &app,
        &window_path,
        &[
            ("csrf", csrf.as_str()),
            ("action", "move"),
            ("starts_at_date", later.as_str()),
            ("starts_at_time", "22:00"),
            ("ends_at_date", later.as_str()),
            ("ends_at_time", "23:00"),
        ],
    )
    .await;
    assert_eq!(status, 303);
    let (moved_draft, _, _) = common::pending_draft(&app, window_id, NoticeKind::Update).await;
    assert_eq!(location, format!("{dashboard}/r/{moved_draft}"));
    let window = app
        .state
        .storage
        .maintenance_window(window_id)
        .await
        .unwrap()
        .unwrap();
    let local = window
        .plan
        .starts_at
        .to_zoned(TimeZone::get("Europe/Stockholm").unwrap());
    assert_eq!(local.date().to_string(), later);

    // Cancel: a reason is required; then the cancellation is drafted.
    let (status, _, page) = post(
        &app,
        &window_path,
        &[
            ("csrf", csrf.as_str()),
            ("action", "cancel"),
            ("reason", " "),
        ],
    )
    .await;
    assert_eq!(status, 422);
    assert!(page.contains("<a href=\"#reason\">Skriv varför underhållet ställs in</a>"));
    assert!(page.contains("aria-invalid=\"true\" aria-describedby=\"reason-error\""));
    let (status, location, _) = post(
        &app,
        &window_path,
        &[
            ("csrf", csrf.as_str()),
            ("action", "cancel"),
            ("reason", "Leverantören är inte klar"),
        ],
    )
    .await;
    assert_eq!(status, 303);
    let (cancel_draft, _, _) = common::pending_draft(&app, window_id, NoticeKind::Resolved).await;
    assert_ne!(cancel_draft, moved_draft);
    assert_eq!(location, format!("{dashboard}/r/{cancel_draft}"));
    let window = app
        .state
        .storage
        .maintenance_window(window_id)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(window.state, WindowState::Cancelled);
    let (_, page) = get(&app, &window_path).await;
    assert!(page.contains("inställt"));
    assert!(
        !page.contains("name=\"action\""),
        "a final window offers no action"
    );
    let (status, _, page) = post(
        &app,
        &window_path,
        &[("csrf", csrf.as_str()), ("action", "end")],
    )
    .await;
    assert_eq!(status, 409);
    assert!(page.contains("Underhållet är redan inställt och kan inte ändras"));

    // End now, of another announced window: its last notice is drafted.
    let (second, _) = plan_through_the_form(&app, &dashboard).await;
    assert_ne!(second, window_id);
    announce(&app, second).await;
    let (status, location, _) = post(
        &app,
        &format!("{dashboard}/maintenance/{second}"),
        &[("csrf", csrf.as_str()), ("action", "end")],
    )
    .await;
    assert_eq!(status, 303);
    let (end_draft, _, _) = common::pending_draft(&app, second, NoticeKind::Resolved).await;
    assert_eq!(location, format!("{dashboard}/r/{end_draft}"));
    app.stop().await;
}

#[tokio::test]
async fn a_window_called_off_before_its_announcement_sends_nothing_and_says_so() {
    let app = spawn().await;
    let dashboard = dashboard(&app);
    let (window_id, _) = plan_through_the_form(&app, &dashboard).await;
    let window_path = format!("{dashboard}/maintenance/{window_id}");
    let (_, page) = get(&app, &window_path).await;
    let (status, location, _) = post(
        &app,
        &window_path,
        &[
            ("csrf", csrf_of(&page).as_str()),
            ("action", "cancel"),
            ("reason", "Leverantören är inte klar"),
        ],
    )
    .await;
    assert_eq!(status, 303);
    assert_eq!(location, format!("{window_path}?andrat=installt"));
    let (_, page) = get(&app, &location).await;
    assert!(page.contains("Det var inte annonserat, så inget meddelande skickas."));
    assert!(
        app.state
            .storage
            .pending_drafts_overview()
            .await
            .unwrap()
            .iter()
            .all(|draft| draft.incident_id != window_id),
        "the announcement's draft is withdrawn"
    );
    app.stop().await;
}

#[tokio::test]
async fn behind_single_sign_on_the_same_form_plans_a_window() {
    let app = spawn().await;
    let sso =
        |request: reqwest::RequestBuilder| request.header("X-Forwarded-Email", "anna@example.org");
    let form_url = format!("{}/ops/sso/d/maintenance/new", app.address);
    let response = sso(client().get(&form_url)).send().await.unwrap();
    assert_eq!(response.status(), 200);
    let form = unescaped(response.text().await.unwrap());
    assert!(form.contains(&format!("action=\"{}\"", "/ops/sso/d/maintenance/new")));
    let csrf = csrf_of(&form);
    let tomorrow = day(1);
    // Without the header: refused.
    let (status, _, _) = post(
        &app,
        "/ops/sso/d/maintenance/new",
        &plan_fields(&csrf, &tomorrow),
    )
    .await;
    assert_eq!(status, 403);
    let (status, location, _) = post_with(
        sso(client().post(&form_url)),
        &plan_fields(&csrf, &tomorrow),
    )
    .await;
    assert_eq!(status, 303);
    let windows = app
        .state
        .storage
        .maintenance_windows(Timestamp::UNIX_EPOCH)
        .await
        .unwrap();
    assert_eq!(windows.len(), 1);
    let (draft_id, _, _) =
        common::pending_draft(&app, windows[0].incident_id, NoticeKind::Initial).await;
    assert_eq!(location, format!("/ops/sso/r/{draft_id}"));
    let response = sso(client().get(format!(
        "{}/ops/sso/d/maintenance/{}",
        app.address, windows[0].incident_id
    )))
    .send()
    .await
    .unwrap();
    assert_eq!(response.status(), 200);
    app.stop().await;
}
