//! Planned maintenance in public, through the real app: the login-page banner (nothing
//! before `maintenance.banner_before`, the upcoming window inside it, the running one
//! during it, an outage over it), `status.json`'s windows, the iCalendar feed parsed by a
//! real iCalendar library (UID, SEQUENCE, times, STATUS; moved and cancelled windows),
//! the Atom feed's maintenance entries, and the public pages (200, 404, escaping).
//!
//! The handlers take "now" from the real clock, so the windows lie relative to it.

use crate::common;

use common::{TestApp, alert, payload, publish_pending, spawn_app_with_tables};
use icalendar::{Component as _, EventStatus};
use jiff::{SignedDuration, Timestamp};
use samsa_relay::classify::Level;
use samsa_relay::maintenance::{WindowPlan, WindowScope};
use samsa_relay::notice::NoticeKind;
use serde_json::{Value, json};

const OPERATOR: &str = "operatör@example.org";

/// A banner and a news channel; the banner shows windows from two hours ahead.
const TABLES: &str = r#"
[channels.banner]
content = "banner"
transport = "banner"

[channels.news]
content = "website"
transport = "feed"

[plan]
level_1 = ["banner", "news"]
level_2 = ["banner", "news"]
level_3 = ["banner", "news"]

[maintenance]
banner_before = "2h"
reminders = []
"#;

const HOSTILE: &str = "<script>alert('x')</script> & \"citat\"; komma, snedstreck\\";

async fn spawn() -> TestApp {
    spawn_app_with_tables(TABLES).await
}

fn skovde() -> WindowScope {
    WindowScope {
        whole_service: false,
        actors: vec!["kommun-skovde".to_owned()],
        subregions: Vec::new(),
    }
}

/// Plans a window from `start` to `end` (from now) for Skövde; returns its id.
async fn plan(app: &TestApp, title: &str, start: SignedDuration, end: SignedDuration) -> i64 {
    let now = Timestamp::now();
    let plan = WindowPlan {
        title: title.to_owned(),
        scope: skovde(),
        starts_at: now + start,
        ends_at: now + end,
        impact: format!("SAMSA går inte att nå.\nGäller {title}."),
        advice: "Använd reservrutinen.".to_owned(),
        level: Level::One,
        auto_series: false,
    };
    let (id, _draft) = samsa_relay::maintenance_actions::plan_window(
        &app.state.storage,
        &app.state.config,
        &app.state.renderer,
        plan,
        OPERATOR,
        now,
    )
    .await
    .expect("the window is planned");
    id
}

/// Plans a window and publishes its announcement on the banner and the feed.
async fn announced(app: &TestApp, title: &str, start: SignedDuration, end: SignedDuration) -> i64 {
    let id = plan(app, title, start, end).await;
    publish_pending(app, id, NoticeKind::Initial, &["banner", "news"]).await;
    id
}

fn hours(n: i64) -> SignedDuration {
    SignedDuration::from_hours(n)
}

fn minutes(n: i64) -> SignedDuration {
    SignedDuration::from_mins(n)
}

async fn get(
    app: &TestApp,
    path: &str,
) -> (reqwest::StatusCode, reqwest::header::HeaderMap, String) {
    let response = app.get(path).await;
    let status = response.status();
    let headers = response.headers().clone();
    (status, headers, response.text().await.expect("a text body"))
}

async fn get_json(app: &TestApp, path: &str) -> Value {
    let (status, _, text) = get(app, path).await;
    assert_eq!(status, 200, "GET {path}");
    serde_json::from_str(&text).expect("JSON")
}

/// The banner text of the window's newest published notice.
async fn banner_text_of(app: &TestApp, id: i64) -> String {
    app.state
        .storage
        .published_notices(None, 100)
        .await
        .expect("notices readable")
        .into_iter()
        .find(|notice| notice.incident_id == id)
        .expect("a published notice of the window")
        .rendered
        .banner_text
}

#[tokio::test]
async fn the_banner_shows_a_window_from_banner_before_while_it_runs_and_an_outage_over_it() {
    let app = spawn().await;

    // Three hours ahead: announced, but not yet on the banner (2 h before).
    let later = announced(&app, "Uppgradering av SAMSA", hours(3), hours(5)).await;
    let banner = get_json(&app, "/public/banner.json").await;
    assert_eq!(banner["active"], false, "{banner}");
    let status = get_json(&app, "/public/status.json").await;
    assert_eq!(status["status"], "ok", "{status}");
    assert_eq!(status["maintenance"][0]["id"], later, "{status}");

    // An hour ahead: upcoming, with its announcement's banner text, calmly.
    let soon = announced(&app, "Byte av databasserver", hours(1), hours(2)).await;
    let banner = get_json(&app, "/public/banner.json").await;
    assert_eq!(banner["active"], true, "{banner}");
    assert_eq!(banner["kind"], "maintenance", "{banner}");
    assert_eq!(banner["phase"], "upcoming", "{banner}");
    assert_eq!(banner["incident_id"], soon, "{banner}");
    assert_eq!(banner["text"], banner_text_of(&app, soon).await);
    assert!(banner["starts_at"].is_string() && banner["ends_at"].is_string());
    assert_eq!(
        banner["feedback_url"],
        format!("http://127.0.0.1:9095/public/maintenance/{soon}")
    );
    let (_, _, html) = get(&app, "/public/banner.html").await;
    assert!(html.contains("role=\"status\""), "{html}");
    let status = get_json(&app, "/public/status.json").await;
    assert_eq!(
        status["status"], "ok",
        "an upcoming window is no state: {status}"
    );

    // One that started a minute ago runs: it is the soonest, so it is shown.
    let running = announced(&app, "Akut säkerhetsuppdatering", minutes(-1), hours(1)).await;
    let banner = get_json(&app, "/public/banner.json").await;
    assert_eq!(banner["kind"], "maintenance", "{banner}");
    assert_eq!(banner["phase"], "running", "{banner}");
    assert_eq!(banner["incident_id"], running, "{banner}");
    let status = get_json(&app, "/public/status.json").await;
    assert_eq!(status["status"], "maintenance", "{status}");
    assert_eq!(status["incident_id"], running, "{status}");

    // An outage keeps priority over every window.
    let body = payload(
        "firing",
        vec![alert(
            "a1",
            "firing",
            json!({"alertname": "SamsaLoginDown", "service": "samsa", "actor": "kommun-uddevalla"}),
            "2026-11-28T04:10:00Z",
        )],
    );
    assert_eq!(app.post_webhook(body.to_string()).await.status(), 200);
    let outage = common::eventually(
        "the outage's incident",
        std::time::Duration::from_secs(20),
        || async {
            app.state
                .storage
                .incidents()
                .await
                .ok()?
                .into_iter()
                .find(|incident| incident.kind.as_str() == "outage")
                .map(|incident| incident.incident_id)
        },
    )
    .await;
    publish_pending(&app, outage, NoticeKind::Initial, &["banner", "news"]).await;
    let banner = get_json(&app, "/public/banner.json").await;
    assert_eq!(banner["kind"], "initial", "{banner}");
    assert_eq!(banner["incident_id"], outage, "{banner}");
    assert!(banner.get("phase").is_none(), "{banner}");
    let status = get_json(&app, "/public/status.json").await;
    assert_eq!(status["status"], "disruption", "{status}");
    assert_eq!(
        status["maintenance"].as_array().unwrap().len(),
        3,
        "{status}"
    );
    app.stop().await;
}

#[tokio::test]
async fn a_window_without_a_banner_notice_is_not_on_the_banner() {
    let app = spawn().await;
    let id = plan(&app, "Bara i nyheter", minutes(-1), hours(1)).await;
    publish_pending(&app, id, NoticeKind::Initial, &["news"]).await;
    let banner = get_json(&app, "/public/banner.json").await;
    assert_eq!(banner["active"], false, "{banner}");
    // Planned but not announced: nowhere.
    let hidden = plan(&app, "Inte annonserat", hours(1), hours(2)).await;
    let status = get_json(&app, "/public/status.json").await;
    let ids: Vec<i64> = status["maintenance"]
        .as_array()
        .unwrap()
        .iter()
        .map(|window| window["id"].as_i64().unwrap())
        .collect();
    assert_eq!(ids, vec![id], "{status}");
    assert!(!ids.contains(&hidden));
    app.stop().await;
}

#[tokio::test]
async fn status_json_lists_the_windows_with_their_fields() {
    let app = spawn().await;
    let id = announced(&app, "Uppgradering", hours(30), hours(32)).await;
    let status = get_json(&app, "/public/status.json").await;
    let window = &status["maintenance"][0];
    assert_eq!(window["id"], id);
    assert_eq!(window["title"], "Uppgradering");
    assert_eq!(window["state"], "announced");
    assert_eq!(window["scope"], "Skövde");
    assert_eq!(
        window["url"],
        format!("http://127.0.0.1:9095/public/maintenance/{id}")
    );
    let stored = app
        .state
        .storage
        .maintenance_window(id)
        .await
        .unwrap()
        .unwrap();
    let starts_at: Timestamp = window["starts_at"].as_str().unwrap().parse().unwrap();
    let ends_at: Timestamp = window["ends_at"].as_str().unwrap().parse().unwrap();
    assert_eq!(starts_at, stored.plan.starts_at);
    assert_eq!(ends_at, stored.plan.ends_at);
    app.stop().await;
}

fn parse_calendar(text: &str) -> icalendar::Calendar {
    text.parse::<icalendar::Calendar>()
        .expect("the feed parses as iCalendar")
}

fn event_of(calendar: &icalendar::Calendar, id: i64) -> &icalendar::Event {
    let uid = format!("maintenance-{id}@127.0.0.1");
    calendar
        .events()
        .find(|event| event.get_uid() == Some(uid.as_str()))
        .unwrap_or_else(|| panic!("an event {uid}"))
}

async fn get_calendar(app: &TestApp) -> (String, icalendar::Calendar) {
    let (status, headers, text) = get(app, "/public/maintenance.ics").await;
    assert_eq!(status, 200);
    assert_eq!(headers["content-type"], "text/calendar; charset=utf-8");
    assert!(headers.contains_key("etag"));
    assert_eq!(headers["access-control-allow-origin"], "*");
    assert_eq!(headers["cache-control"], "public, max-age=30");
    let calendar = parse_calendar(&text);
    (text, calendar)
}

#[tokio::test]
async fn the_calendar_parses_and_carries_uid_sequence_times_and_status() {
    let app = spawn().await;
    let long_title = format!("{HOSTILE} – en lång rubrik om uppgradering av Skövdes åtkomst");
    let kept = announced(&app, &long_title, hours(30), hours(32)).await;
    let moved = announced(&app, "Flyttas", hours(40), hours(42)).await;
    let cancelled = announced(&app, "Ställs in", hours(50), hours(52)).await;
    let hidden = plan(&app, "Inte annonserat", hours(60), hours(62)).await;

    let (_, before) = get_calendar(&app).await;
    let moved_before = event_of(&before, moved).get_sequence().expect("SEQUENCE");

    let now = Timestamp::now();
    samsa_relay::maintenance_actions::move_window(
        &app.state.storage,
        &app.state.config,
        &app.state.renderer,
        moved,
        now + hours(44),
        now + hours(46),
        OPERATOR,
        now,
    )
    .await
    .expect("the window moves");
    samsa_relay::maintenance_actions::cancel_window(
        &app.state.storage,
        &app.state.config,
        &app.state.renderer,
        cancelled,
        "Leverantören kan inte",
        OPERATOR,
        now,
    )
    .await
    .expect("the window is called off");

    let (text, calendar) = get_calendar(&app).await;
    // Every physical line ends in CRLF and is at most 75 octets.
    assert!(text.ends_with("\r\n"));
    for line in text.split("\r\n") {
        assert!(line.len() <= 75, "{line:?}");
        assert!(!line.contains('\n'), "{line:?}");
    }
    assert_eq!(calendar.events().count(), 3, "{text}");
    assert!(!text.contains(&format!("maintenance-{hidden}@")), "{text}");

    for id in [kept, moved, cancelled] {
        let window = app
            .state
            .storage
            .maintenance_window(id)
            .await
            .unwrap()
            .unwrap();
        let event = event_of(&calendar, id);
        assert_eq!(
            event.get_sequence(),
            Some(u32::try_from(window.sequence).unwrap())
        );
        assert_eq!(
            event.property_value("DTSTART"),
            Some(
                window
                    .plan
                    .starts_at
                    .strftime("%Y%m%dT%H%M%SZ")
                    .to_string()
                    .as_str()
            )
        );
        assert_eq!(
            event.property_value("DTEND"),
            Some(
                window
                    .plan
                    .ends_at
                    .strftime("%Y%m%dT%H%M%SZ")
                    .to_string()
                    .as_str()
            )
        );
        assert_eq!(
            event.get_timestamp().map(|stamp| stamp.timestamp()),
            Some(window.updated_at.as_second())
        );
        assert_eq!(
            event.get_last_modified().map(|stamp| stamp.timestamp()),
            Some(window.updated_at.as_second())
        );
        assert_eq!(
            event.get_url(),
            Some(format!("http://127.0.0.1:9095/public/maintenance/{id}").as_str())
        );
        assert_eq!(
            event.get_summary(),
            Some(format!("Planerat underhåll i SAMSA: {}", window.plan.title).as_str()),
            "the title is escaped and unescaped whole"
        );
        let description = event.get_description().expect("DESCRIPTION");
        assert!(description.contains("Skövde"), "{description}");
        assert!(
            description.contains("Använd reservrutinen."),
            "{description}"
        );
    }
    assert_eq!(
        event_of(&calendar, kept).get_status(),
        Some(EventStatus::Confirmed)
    );
    assert_eq!(
        event_of(&calendar, moved).get_status(),
        Some(EventStatus::Confirmed)
    );
    assert_eq!(
        event_of(&calendar, cancelled).get_status(),
        Some(EventStatus::Cancelled)
    );
    let moved_after = event_of(&calendar, moved).get_sequence().unwrap();
    assert!(moved_after > moved_before, "{moved_before} → {moved_after}");
    app.stop().await;
}

#[tokio::test]
async fn the_public_pages_answer_for_announced_windows_only_and_escape_operator_text() {
    let app = spawn().await;
    let id = announced(&app, HOSTILE, hours(30), hours(32)).await;
    let cancelled = announced(&app, "Ställs in", hours(50), hours(52)).await;
    let hidden = plan(&app, "Inte annonserat", hours(60), hours(62)).await;
    let now = Timestamp::now();
    samsa_relay::maintenance_actions::cancel_window(
        &app.state.storage,
        &app.state.config,
        &app.state.renderer,
        cancelled,
        "Leverantören kan inte",
        OPERATOR,
        now,
    )
    .await
    .unwrap();

    let (status, headers, list) = get(&app, "/public/maintenance").await;
    assert_eq!(status, 200);
    assert_eq!(headers["content-type"], "text/html; charset=utf-8");
    assert!(list.contains("href=\"/public/maintenance.ics\""), "{list}");
    assert!(list.contains("href=\"/public/tillganglighet\""), "{list}");
    assert!(list.contains(&format!("href=\"/public/maintenance/{id}\"")));
    assert!(list.contains(&format!("href=\"/public/maintenance/{cancelled}\"")));
    assert!(!list.contains("Inte annonserat"), "{list}");
    assert!(!list.contains("<script>"), "{list}");
    assert!(list.contains("&lt;script&gt;"), "{list}");

    let (status, _, page) = get(&app, &format!("/public/maintenance/{id}")).await;
    assert_eq!(status, 200);
    assert!(page.contains("&lt;script&gt;"), "{page}");
    assert!(!page.contains("<script>"), "{page}");
    assert!(page.contains("Skövde"), "{page}");
    assert!(page.contains("SAMSA går inte att nå."), "{page}");
    assert!(page.contains("Använd reservrutinen."), "{page}");
    assert!(page.contains("annonserat"), "{page}");
    assert!(page.contains("href=\"/public/tillganglighet\""));

    let (status, _, page) = get(&app, &format!("/public/maintenance/{cancelled}")).await;
    assert_eq!(status, 200);
    assert!(page.contains("Underhållet är inställt."), "{page}");

    for path in [
        format!("/public/maintenance/{hidden}"),
        "/public/maintenance/9999".to_owned(),
        "/public/maintenance/inte-ett-nummer".to_owned(),
    ] {
        let (status, _, page) = get(&app, &path).await;
        assert_eq!(status, 404, "{path}");
        assert!(page.contains("Underhållet finns inte"), "{page}");
        assert!(!page.contains("Inte annonserat"), "{page}");
    }
    app.stop().await;
}

#[tokio::test]
async fn maintenance_notices_in_the_atom_feed_have_their_category_and_read_as_maintenance() {
    let app = spawn().await;
    let id = announced(&app, "Uppgradering", hours(30), hours(32)).await;
    let (status, _, feed) = get(&app, "/public/feed.atom").await;
    assert_eq!(status, 200);
    let entry_start = feed.find("<entry>").expect("an entry");
    let entry = &feed[entry_start..];
    assert!(
        entry.contains("<category term=\"planerat-underhall\" label=\"Planerat underhåll\"/>"),
        "{feed}"
    );
    assert!(
        entry.contains(&format!("/public/maintenance/{id}\"")),
        "the entry links the window's page: {feed}"
    );
    let title_start = entry.find("<title type=\"text\">").unwrap() + "<title type=\"text\">".len();
    let title = &entry[title_start..entry[title_start..].find("</title>").unwrap() + title_start];
    assert!(title.to_lowercase().contains("underhåll"), "{title}");
    app.stop().await;
}

#[tokio::test]
async fn a_completed_windows_published_klart_notice_is_the_all_clear() {
    let app = spawn().await;
    let id = announced(&app, "Uppgradering", minutes(-1), hours(1)).await;
    samsa_relay::maintenance_actions::end_window(
        &app.state.storage,
        &app.state.config,
        &app.state.renderer,
        id,
        OPERATOR,
        Timestamp::now(),
    )
    .await
    .expect("the window ends");
    // Ended, its "klart" notice not yet published: nothing on the banner.
    let banner = get_json(&app, "/public/banner.json").await;
    assert_eq!(banner["active"], false, "{banner}");
    publish_pending(&app, id, NoticeKind::Resolved, &["banner", "news"]).await;
    let banner = get_json(&app, "/public/banner.json").await;
    assert_eq!(banner["active"], true, "{banner}");
    assert_eq!(banner["kind"], "resolved", "{banner}");
    assert_eq!(banner["phase"], "completed", "{banner}");
    assert_eq!(banner["incident_id"], id, "{banner}");
    assert_eq!(banner["text"], banner_text_of(&app, id).await);
    assert!(banner["until"].is_string(), "{banner}");
    let status = get_json(&app, "/public/status.json").await;
    assert_eq!(status["status"], "resolved", "{status}");
    assert_eq!(status["maintenance"][0]["state"], "completed", "{status}");
    app.stop().await;
}
