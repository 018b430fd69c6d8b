//! Planned maintenance end to end in the app: a window planned and announced, its series
//! taken by the scheduler on a clock the test chooses (reminders, start, end), alerts
//! inside its scope set aside while alerts outside open incidents, an overrun handed to
//! the incident worker, cancelling and moving. The system tier adds the real Alertmanager
//! (silences, `amtool`) and the real SMTP test server.

use std::sync::Arc;
use std::time::Duration;

use jiff::Timestamp;
use samsa_relay::cluster::{Lease, TIMERS};
use samsa_relay::incident::IncidentKind;
use samsa_relay::maintenance::{WindowPlan, WindowScope, WindowState};
use samsa_relay::maintenance_scheduler::MaintenanceScheduler;
use samsa_relay::notice::NoticeKind;
use serde_json::json;

use crate::common::{TestApp, eventually, spawn_app_with_tables};
use crate::common::{alert, outbox_rows, payload, pending_draft, publish_request, store_at};

/// One on-duty operator; banner, feed and email to two addresses (the base config's file
/// transport), reminders a day and an hour ahead.
pub const TABLES: &str = r#"
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

[maintenance]
reminders = ["24h", "1h"]
"#;

pub fn at(text: &str) -> Timestamp {
    text.parse().expect("a valid timestamp")
}

/// A minute.
fn minutes(n: i64) -> jiff::SignedDuration {
    jiff::SignedDuration::from_mins(n)
}

/// A window for Skövde from `starts_at`, four hours long.
pub fn skovde_plan(starts_at: Timestamp, auto_series: bool) -> WindowPlan {
    WindowPlan {
        title: "Uppgradering av SAMSA i Skövde".to_owned(),
        scope: WindowScope {
            actors: vec!["kommun-skovde".to_owned()],
            ..WindowScope::default()
        },
        starts_at,
        ends_at: starts_at + jiff::SignedDuration::from_hours(4),
        impact: "SAMSA går inte att nå för Skövde kommun.".to_owned(),
        advice: String::new(),
        level: samsa_relay::classify::Level::One,
        auto_series,
    }
}

/// The app's scheduler, to step with the test's clock (the app's own loop uses the real
/// clock, which is far from the windows' times here).
pub fn scheduler(
    app: &TestApp,
    silences: Option<samsa_relay::silences::SilenceClient>,
) -> MaintenanceScheduler {
    let state = &app.state;
    MaintenanceScheduler {
        storage: state.storage.clone(),
        config: state.config.clone(),
        renderer: state.renderer.clone(),
        publisher: state.publisher.clone(),
        silences,
        metrics: state.metrics.clone(),
        incident_wake: state.incident_wake.clone(),
        review_wake: Arc::new(tokio::sync::Notify::new()),
        lease: Lease::new(
            TIMERS,
            "test",
            Duration::from_secs(5),
            Arc::new(tokio::sync::Notify::new()),
        ),
    }
}

/// Plans a window and publishes its announcement on every channel. Returns its id.
pub async fn plan_and_announce(app: &TestApp, plan: WindowPlan, now: Timestamp) -> i64 {
    let state = &app.state;
    let (window_id, draft_id) = samsa_relay::maintenance_actions::plan_window(
        &state.storage,
        &state.config,
        &state.renderer,
        plan,
        "Anna Andersson",
        now,
    )
    .await
    .expect("the window is planned");
    let (pending, version, level) = pending_draft(app, window_id, NoticeKind::Initial).await;
    assert_eq!(pending, draft_id);
    state
        .publisher
        .publish(&publish_request(
            draft_id,
            version,
            level,
            &["banner", "website", "email"],
        ))
        .await
        .expect("the announcement publishes");
    window_id
}

async fn window(app: &TestApp, window_id: i64) -> samsa_relay::maintenance::Window {
    app.state
        .storage
        .maintenance_window(window_id)
        .await
        .expect("storage")
        .expect("the window")
}

/// The maintenance step of each published notice of a window, in order.
async fn published_steps(app: &TestApp, window_id: i64) -> Vec<String> {
    let mut steps = Vec::new();
    for draft in app.state.storage.drafts(window_id).await.expect("drafts") {
        if draft.state == "published" {
            let input = &draft.versions.last().expect("a version").input;
            steps.push(
                input
                    .pointer("/maintenance/step/step")
                    .and_then(|step| step.as_str())
                    .unwrap_or("?")
                    .to_owned(),
            );
        }
    }
    steps
}

async fn outage_incidents(app: &TestApp) -> Vec<samsa_relay::storage::IncidentRecord> {
    app.state
        .storage
        .incidents()
        .await
        .expect("incidents")
        .into_iter()
        .filter(|incident| incident.kind == IncidentKind::Outage)
        .collect()
}

async fn processed(app: &TestApp) {
    eventually(
        "every receipt processed",
        Duration::from_secs(20),
        || async { (app.state.storage.n_unprocessed_receipts().await.ok()? == 0).then_some(()) },
    )
    .await;
}

fn actor_alert(fingerprint: &str, actor: &str, starts_at: &str) -> serde_json::Value {
    alert(
        fingerprint,
        "firing",
        json!({"alertname": "SamsaLoginDown", "service": "samsa", "actor": actor}),
        starts_at,
    )
}

#[tokio::test]
async fn an_approved_series_goes_out_on_its_own_at_its_times() {
    let app = spawn_app_with_tables(TABLES).await;
    let starts_at = at("2030-03-12T17:00:00Z");
    let announced_at = at("2030-03-01T09:00:00Z");
    let window_id = plan_and_announce(&app, skovde_plan(starts_at, true), announced_at).await;
    let announced = window(&app, window_id).await;
    assert_eq!(announced.state, WindowState::Announced);
    let approval = announced.approval.expect("approved with the announcement");
    assert_eq!(approval.channels, ["banner", "website", "email"]);
    let scheduler = scheduler(&app, None);

    // Nothing a week ahead; the day-before reminder a day ahead, and only once.
    let outcome = scheduler.step(at("2030-03-05T09:00:00Z")).await.unwrap();
    assert!(outcome.drafted.is_empty());
    let outcome = scheduler.step(starts_at - minutes(24 * 60)).await.unwrap();
    assert_eq!(outcome.drafted.len(), 1, "{outcome:?}");
    assert_eq!(outcome.drafted[0].1, "reminder:1440");
    assert!(outcome.drafted[0].3, "published at once");
    assert!(
        scheduler
            .step(starts_at - minutes(23 * 60))
            .await
            .unwrap()
            .drafted
            .is_empty()
    );
    // The hour-before reminder, the start, the end.
    let outcome = scheduler.step(starts_at - minutes(60)).await.unwrap();
    assert_eq!(outcome.drafted[0].1, "reminder:60");
    let outcome = scheduler.step(starts_at).await.unwrap();
    assert_eq!(outcome.drafted[0].1, "started");
    assert_eq!(window(&app, window_id).await.state, WindowState::Running);
    let outcome = scheduler.step(starts_at + minutes(4 * 60)).await.unwrap();
    assert_eq!(outcome.drafted[0].1, "completed");
    assert_eq!(window(&app, window_id).await.state, WindowState::Completed);
    assert!(
        scheduler
            .step(starts_at + minutes(5 * 60))
            .await
            .unwrap()
            .drafted
            .is_empty()
    );

    assert_eq!(
        published_steps(&app, window_id).await,
        [
            "announcement",
            "reminder",
            "reminder",
            "started",
            "completed"
        ]
    );
    // Each notice to both email recipients.
    assert_eq!(outbox_rows(&app, "email").await.len(), 10);
    // The last notice closes the window's incident.
    let incident = app
        .state
        .storage
        .incidents()
        .await
        .unwrap()
        .into_iter()
        .find(|incident| incident.incident_id == window_id)
        .expect("the window's incident");
    assert_eq!(incident.kind, IncidentKind::Maintenance);
    assert!(incident.resolved_at.is_some());
    let events: Vec<String> = app
        .state
        .storage
        .incident_events(window_id)
        .await
        .unwrap()
        .into_iter()
        .map(|event| event.event)
        .collect();
    for expected in [
        "maintenance_planned",
        "maintenance_announced",
        "maintenance_step",
        "maintenance_ended",
        "notice_published",
    ] {
        assert!(
            events.iter().any(|event| event == expected),
            "{expected} in {events:?}"
        );
    }
    app.stop().await;
}

#[tokio::test]
async fn a_series_for_review_waits_for_an_operator_at_each_step() {
    let app = spawn_app_with_tables(TABLES).await;
    let starts_at = at("2030-03-12T17:00:00Z");
    let window_id = plan_and_announce(
        &app,
        skovde_plan(starts_at, false),
        at("2030-03-01T09:00:00Z"),
    )
    .await;
    assert!(window(&app, window_id).await.approval.is_none());
    let scheduler = scheduler(&app, None);
    let outcome = scheduler.step(starts_at - minutes(24 * 60)).await.unwrap();
    assert!(!outcome.drafted[0].3, "not published: waits for review");
    let (reminder, _, _) = pending_draft(&app, window_id, NoticeKind::Update).await;
    // Not reviewed by the start: the start notice takes the reminder's place.
    scheduler.step(starts_at).await.unwrap();
    let drafts = app.state.storage.drafts(window_id).await.unwrap();
    let old = drafts
        .iter()
        .find(|draft| draft.draft_id == reminder)
        .unwrap();
    assert_eq!(old.state, "withdrawn");
    let pending: Vec<_> = drafts
        .iter()
        .filter(|draft| draft.state == "pending")
        .collect();
    assert_eq!(pending.len(), 1);
    assert_eq!(
        pending[0].versions[0]
            .input
            .pointer("/maintenance/step/step"),
        Some(&json!("started"))
    );
    assert_eq!(published_steps(&app, window_id).await, ["announcement"]);
    app.stop().await;
}

#[tokio::test]
async fn alerts_inside_a_running_window_open_no_incident_and_others_do() {
    let app = spawn_app_with_tables(TABLES).await;
    let starts_at = at("2030-03-12T17:00:00Z");
    let window_id = plan_and_announce(
        &app,
        skovde_plan(starts_at, true),
        at("2030-03-01T09:00:00Z"),
    )
    .await;
    let scheduler = scheduler(&app, None);
    scheduler.step(starts_at).await.unwrap();

    // Skövde during the window: recorded on it, no incident, no draft.
    let during = starts_at + minutes(30);
    store_at(
        &app.state.storage,
        during,
        &payload(
            "firing",
            vec![actor_alert(
                "f-skovde",
                "kommun-skovde",
                "2030-03-12T17:29:00Z",
            )],
        ),
    )
    .await;
    app.state.incident_wake.notify_one();
    processed(&app).await;
    assert!(outage_incidents(&app).await.is_empty());
    let recorded = app
        .state
        .storage
        .maintenance_alerts(window_id)
        .await
        .unwrap();
    assert_eq!(recorded.len(), 1);
    assert_eq!(recorded[0].fingerprint, "f-skovde");

    // Borås at the same time: an outage incident as always.
    store_at(
        &app.state.storage,
        during + minutes(1),
        &payload(
            "firing",
            vec![actor_alert(
                "f-boras",
                "kommun-boras",
                "2030-03-12T17:30:00Z",
            )],
        ),
    )
    .await;
    app.state.incident_wake.notify_one();
    processed(&app).await;
    let incidents = outage_incidents(&app).await;
    assert_eq!(incidents.len(), 1);
    assert_eq!(incidents[0].incident.alerts.len(), 1);
    assert!(
        incidents[0]
            .incident
            .alerts
            .keys()
            .all(|key| key.fingerprint == "f-boras")
    );
    assert!(app.metric("samsa_relay_maintenance_alerts_total").await >= 1.0);

    // The end comes with Skövde still failing: the window overran, its "klart" waits
    // for review, and the alert is handed over: the outage now opens an incident.
    let outcome = scheduler.step(starts_at + minutes(4 * 60)).await.unwrap();
    assert_eq!(outcome.drafted[0].1, "overran");
    assert!(
        !outcome.drafted[0].3,
        "an overrun notice is always reviewed"
    );
    assert_eq!(window(&app, window_id).await.state, WindowState::Overran);
    processed(&app).await;
    let incidents = outage_incidents(&app).await;
    let all_alerts: Vec<String> = incidents
        .iter()
        .flat_map(|incident| incident.incident.alerts.keys())
        .map(|key| key.fingerprint.clone())
        .collect();
    assert!(
        all_alerts.contains(&"f-skovde".to_owned()),
        "{all_alerts:?}"
    );
    let events: Vec<String> = app
        .state
        .storage
        .incident_events(window_id)
        .await
        .unwrap()
        .into_iter()
        .map(|event| event.event)
        .collect();
    assert!(events.contains(&"alert_during_maintenance".to_owned()));
    assert!(events.contains(&"maintenance_alerts_handed_over".to_owned()));
    app.stop().await;
}

#[tokio::test]
async fn a_cancelled_window_sends_its_cancellation_and_a_moved_one_says_so() {
    let app = spawn_app_with_tables(TABLES).await;
    let state = &app.state;
    let starts_at = at("2030-03-12T17:00:00Z");
    let now = at("2030-03-01T09:00:00Z");
    let first = plan_and_announce(&app, skovde_plan(starts_at, true), now).await;
    let draft_id = samsa_relay::maintenance_actions::cancel_window(
        &state.storage,
        &state.config,
        &state.renderer,
        first,
        "Leverantören har skjutit upp uppgraderingen",
        "Anna Andersson",
        now,
    )
    .await
    .unwrap()
    .expect("an announced window's cancellation is a notice");
    let (pending, version, level) = pending_draft(&app, first, NoticeKind::Resolved).await;
    assert_eq!(pending, draft_id);
    state
        .publisher
        .publish(&publish_request(
            pending,
            version,
            level,
            &["banner", "website", "email"],
        ))
        .await
        .unwrap();
    assert_eq!(window(&app, first).await.state, WindowState::Cancelled);
    assert_eq!(
        published_steps(&app, first).await,
        ["announcement", "cancelled"]
    );
    // Nothing more of it comes due.
    let scheduler = scheduler(&app, None);
    assert!(scheduler.step(starts_at).await.unwrap().drafted.is_empty());

    let second = plan_and_announce(&app, skovde_plan(starts_at, true), now).await;
    samsa_relay::maintenance_actions::move_window(
        &state.storage,
        &state.config,
        &state.renderer,
        second,
        starts_at + jiff::SignedDuration::from_hours(24),
        starts_at + jiff::SignedDuration::from_hours(28),
        "Anna Andersson",
        now,
    )
    .await
    .unwrap();
    let moved = window(&app, second).await;
    assert_eq!(moved.sequence, 1);
    assert_eq!(
        moved.plan.starts_at,
        starts_at + jiff::SignedDuration::from_hours(24)
    );
    let drafts = state.storage.drafts(second).await.unwrap();
    let pending = drafts
        .iter()
        .find(|draft| draft.state == "pending")
        .unwrap();
    let step = &pending.versions[0].input["maintenance"]["step"];
    assert_eq!(step["step"], "moved");
    assert_eq!(step["previous_starts_at"], json!(starts_at));
    // The old start starts nothing: it is the new start's day-before reminder; the new
    // start starts it.
    let outcome = scheduler.step(starts_at).await.unwrap();
    let steps: Vec<&str> = outcome.drafted.iter().map(|drafted| drafted.1.as_str()).collect();
    assert_eq!(steps, ["reminder:1440"]);
    let outcome = scheduler
        .step(starts_at + jiff::SignedDuration::from_hours(24))
        .await
        .unwrap();
    assert_eq!(outcome.drafted[0].1, "started");

    // A window never announced is called off without a word.
    let (third, _) = samsa_relay::maintenance_actions::plan_window(
        &state.storage,
        &state.config,
        &state.renderer,
        skovde_plan(starts_at, true),
        "Anna Andersson",
        now,
    )
    .await
    .unwrap();
    let cancelled = samsa_relay::maintenance_actions::cancel_window(
        &state.storage,
        &state.config,
        &state.renderer,
        third,
        "Fel datum",
        "Anna Andersson",
        now,
    )
    .await
    .unwrap();
    assert_eq!(cancelled, None);
    assert!(
        state
            .storage
            .drafts(third)
            .await
            .unwrap()
            .iter()
            .all(|draft| draft.state == "withdrawn")
    );
    app.stop().await;
}

#[tokio::test]
async fn the_api_plans_a_window_with_its_token_and_refuses_without() {
    let tables = format!(
        "{}api_token = \"{}\"\n",
        TABLES, "a-maintenance-api-token-0123456789"
    );
    let app = spawn_app_with_tables(&tables).await;
    let url = format!("{}/api/maintenance", app.address);
    let body = json!({
        "title": "Uppgradering",
        "actors": ["kommun-skovde"],
        "starts_at": "2030-03-12 18:00",
        "ends_at": "2030-03-12 22:00",
        "impact": "SAMSA går inte att nå.",
        "requested_by": "Förändringssystemet",
    });
    let refused = app.client.post(&url).json(&body).send().await.unwrap();
    assert_eq!(refused.status(), 401);
    let wrong = app
        .client
        .post(&url)
        .bearer_auth("wrong-token-0123456789")
        .json(&body)
        .send()
        .await
        .unwrap();
    assert_eq!(wrong.status(), 401);
    let created = app
        .client
        .post(&url)
        .bearer_auth("a-maintenance-api-token-0123456789")
        .json(&body)
        .send()
        .await
        .unwrap();
    assert_eq!(created.status(), 201);
    let created: serde_json::Value = created.json().await.unwrap();
    assert_eq!(created["window"]["state"], "planned");
    assert_eq!(created["window"]["starts_at"], "2030-03-12T17:00:00Z");
    let id = created["window"]["id"].as_i64().unwrap();
    pending_draft(&app, id, NoticeKind::Initial).await;

    let mut bad = body.clone();
    bad["ends_at"] = json!("2030-03-12 17:00");
    bad["title"] = json!(" ");
    let refused = app
        .client
        .post(&url)
        .bearer_auth("a-maintenance-api-token-0123456789")
        .json(&bad)
        .send()
        .await
        .unwrap();
    assert_eq!(refused.status(), 400);
    let refused: serde_json::Value = refused.json().await.unwrap();
    let fields: Vec<&str> = refused["problems"]
        .as_array()
        .unwrap()
        .iter()
        .map(|problem| problem["field"].as_str().unwrap())
        .collect();
    assert_eq!(fields, ["title", "ends_at"]);
    let unknown_field = app
        .client
        .post(&url)
        .bearer_auth("a-maintenance-api-token-0123456789")
        .json(&json!({"titel": "x"}))
        .send()
        .await
        .unwrap();
    assert_eq!(unknown_field.status(), 400);
    app.stop().await;

    // Without a token configured the API is not there.
    let app = spawn_app_with_tables(TABLES).await;
    let off = app
        .client
        .get(format!("{}/api/maintenance", app.address))
        .bearer_auth("anything")
        .send()
        .await
        .unwrap();
    assert_eq!(off.status(), 404);
    app.stop().await;
}

/// With the real Alertmanager and the real SMTP test server, on the real clock (which
/// Alertmanager keeps).
#[cfg(feature = "system-tests")]
mod real {
    use super::*;

    use std::process::Command;

    use crate::alertmanager::Alertmanager;
    use crate::common::smtp_sink::SmtpSink;
    use crate::common::{PROXY_VARIABLES, debian_binary, spawn_app_with_smtp};

    /// `amtool silence query -o json` of the active silences, parsed.
    fn amtool_active_silences(alertmanager: &Alertmanager) -> Vec<serde_json::Value> {
        let amtool = debian_binary("amtool", "prometheus-alertmanager");
        let mut command = Command::new(amtool);
        command
            .arg("silence")
            .arg("query")
            .arg(format!("--alertmanager.url={}", alertmanager.address))
            .arg("-o")
            .arg("json");
        for variable in PROXY_VARIABLES {
            command.env_remove(variable);
        }
        let output = command.output().expect("run amtool");
        assert!(
            output.status.success(),
            "amtool: {}",
            String::from_utf8_lossy(&output.stderr)
        );
        serde_json::from_slice(&output.stdout).expect("amtool prints JSON")
    }

    fn api_alert(actor: &str, ends_at: Option<Timestamp>) -> serde_json::Value {
        let mut alert = json!({
            "labels": {"alertname": "SamsaLoginDown", "service": "samsa", "actor": actor},
            "startsAt": "2026-01-01T00:00:00Z",
        });
        if let Some(ends_at) = ends_at {
            alert["endsAt"] = json!(ends_at.to_string());
        }
        alert
    }

    #[tokio::test]
    async fn a_window_for_skovde_silences_it_in_alertmanager_while_boras_still_opens_an_incident() {
        let sink = SmtpSink::start();
        let app = spawn_app_with_smtp(
            &format!("[smtp]\nurl = \"{}\"\nstarttls = \"none\"\n", sink.url()),
            TABLES,
        )
        .await;
        let client = reqwest::Client::builder()
            .no_proxy()
            .timeout(Duration::from_secs(10))
            .build()
            .unwrap();
        let mut alertmanager = Alertmanager::start(&app.address);
        alertmanager.wait_until_ready(&client).await;
        let silences = samsa_relay::silences::SilenceClient::new(
            vec![alertmanager.address.parse().unwrap()],
            Duration::from_secs(10),
            None,
        )
        .unwrap();
        let scheduler = scheduler(&app, Some(silences));

        let now = Timestamp::now();
        let mut plan = skovde_plan(now + minutes(2), true);
        plan.ends_at = now + minutes(30);
        let window_id = plan_and_announce(&app, plan, now).await;
        let starts_at = now + minutes(2);
        let outcome = scheduler.step(starts_at).await.unwrap();
        assert_eq!(outcome.drafted[0].1, "started");
        assert_eq!(outcome.silences_made, 1);

        // The silence, as amtool shows it.
        let active = amtool_active_silences(&alertmanager);
        assert_eq!(active.len(), 1, "{active:?}");
        assert_eq!(active[0]["createdBy"], "samsa-relay");
        assert!(
            active[0]["comment"]
                .as_str()
                .unwrap()
                .contains(&window_id.to_string())
        );
        let stored = window(&app, window_id).await;
        assert_eq!(stored.silence_ids, [active[0]["id"].as_str().unwrap()]);

        // Skövde and Borås fail together: only Borås reaches the relay.
        alertmanager
            .post_alerts(
                &client,
                json!([
                    api_alert("kommun-skovde", None),
                    api_alert("kommun-boras", None)
                ]),
            )
            .await;
        let incident = eventually("an incident for Borås", Duration::from_secs(30), || async {
            outage_incidents(&app).await.into_iter().next()
        })
        .await;
        let (draft_id, _, _) = pending_draft(&app, incident.incident_id, NoticeKind::Initial).await;
        let actors: Vec<String> = app
            .state
            .storage
            .alerts()
            .await
            .unwrap()
            .into_iter()
            .filter_map(|alert| alert.labels.get("actor").cloned())
            .collect();
        assert_eq!(
            actors,
            ["kommun-boras"],
            "Skövde was silenced in Alertmanager"
        );
        assert!(draft_id > 0);

        // Skövde comes back; the end expires the silence and says "klart".
        alertmanager
            .post_alerts(
                &client,
                json!([api_alert("kommun-skovde", Some(Timestamp::now()))]),
            )
            .await;
        eventually(
            "Skövde no longer firing in Alertmanager",
            Duration::from_secs(20),
            || async {
                let alerts: Vec<serde_json::Value> = client
                    .get(format!(
                        "{}/api/v2/alerts?active=true&silenced=true",
                        alertmanager.address
                    ))
                    .send()
                    .await
                    .ok()?
                    .json()
                    .await
                    .ok()?;
                (!alerts
                    .iter()
                    .any(|alert| alert["labels"]["actor"] == "kommun-skovde"))
                .then_some(())
            },
        )
        .await;
        let outcome = scheduler.step(now + minutes(30)).await.unwrap();
        assert_eq!(outcome.drafted[0].1, "completed", "{outcome:?}");
        assert_eq!(outcome.silences_expired, 1);
        assert!(amtool_active_silences(&alertmanager).is_empty());
        assert!(window(&app, window_id).await.silence_ids.is_empty());

        // The series at the SMTP server: announcement, start and end, to both addresses.
        let subjects = eventually("six maintenance mails", Duration::from_secs(30), || async {
            let subjects: Vec<String> = sink
                .messages()
                .iter()
                .filter(|message| {
                    message
                        .rcpt_tos()
                        .iter()
                        .any(|to| *to == "support@example.org" || *to == "it-lista@example.org")
                })
                .filter_map(|message| message.header("subject").map(str::to_owned))
                .collect();
            (subjects.len() >= 6).then_some(subjects)
        })
        .await;
        assert_eq!(subjects.len(), 6, "{subjects:?}");
        assert!(
            subjects
                .iter()
                .all(|subject| subject.to_lowercase().contains("underhåll")),
            "{subjects:?}"
        );
        app.stop().await;
    }
}
