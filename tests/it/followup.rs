//! The follow-up end to end: the incident log, feedback, notes and lessons learned, the
//! report in three formats, the list across incidents and its CSV export.
//!
//! **Golden files.** `scripted_incident_report_matches_the_golden_files` drives one
//! incident from first alert to lessons learned with fixed times, so its report is the
//! same on every run and is compared byte for byte with `tests/golden/report/incident.*`.
//! The times are fixed by going through the same code the app runs, one level down where
//! that code reads the clock: webhooks are stored with `Storage::store_notification` at a
//! given time and processed by the real incident worker step (which dates everything from
//! the receipt); the publications are written with `WriteTransaction::insert_publication`
//! with the same log entries `publishing::publish` writes (it stamps `now`); deliveries go
//! through `claim_deliveries`/`record_deliveries` at given times; feedback, notes and
//! lessons through the follow-up functions, which take the time as an argument. Only
//! `generated_at` of the report differs between runs, and the scripted report fixes it.
//! After an intended change, regenerate with `UPDATE_GOLDEN=1 cargo test --test it followup::`
//! and read the diff.
//!
//! The other tests run the real app over HTTP with the real clock and check behaviour, not
//! bytes: the feedback page (hostile input, the body limit, the rate limit), the operator
//! pages and downloads, and the JSON of a live incident against `docs/report-schema.json`.

use crate::common;

use std::path::{Path, PathBuf};
use std::time::Duration;

use common::{TestApp, alert, payload};
use jiff::Timestamp;
use samsa_relay::app::App;
use samsa_relay::classify::Level;
use samsa_relay::followup::{
    Audience, Feedback, IncidentFilter, LessonKind, ReportFormat, add_lesson, add_note,
    build_report, incidents_csv, list_incidents, render_report, submit_feedback,
    summarize_incidents, summary_csv,
};
use samsa_relay::incident::Published;
use samsa_relay::links::{LinkClaims, LinkPurpose};
use samsa_relay::notice::{NoticeInput, NoticeKind};
use samsa_relay::storage::{
    DeliveryResult, EventWrite, OperatorMailWrite, PublicationWrite, Storage,
};
use serde_json::{Value, json};

const DEADLINE: Duration = Duration::from_secs(20);

/// Operators, an email channel with three recipients, and a plan that uses it.
const TABLES: &str = r#"
[[operators]]
name = "Anna Andersson"
email = "anna@example.org"
groups = ["on-duty"]

[[operators]]
name = "Erik Eriksson"
email = "erik@example.org"
groups = ["escalation"]

[channels.banner]
content = "banner"
transport = "banner"

[channels.website]
content = "website"
transport = "feed"

[channels.email]
content = "email"
transport = "email"
recipients = ["it-support@boras.example", "support@trollhattan.example", "it@vgregion.example"]

[plan]
level_1 = ["banner", "email", "website"]
level_2 = ["banner", "email", "website"]
level_3 = ["banner", "email", "website"]
"#;

fn at(text: &str) -> Timestamp {
    text.parse().expect("a test time")
}

fn golden_folder() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/golden/report")
}

fn schema() -> Value {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("docs/report-schema.json");
    serde_json::from_str(&std::fs::read_to_string(&path).expect("docs/report-schema.json"))
        .expect("the schema is JSON")
}

/// Validates `report` against docs/report-schema.json, listing every error.
fn assert_valid_report(report: &Value) {
    let validator = jsonschema::validator_for(&schema()).expect("the schema compiles");
    let errors: Vec<String> = validator
        .iter_errors(report)
        .map(|error| format!("{} at {}", error, error.instance_path()))
        .collect();
    assert!(
        errors.is_empty(),
        "the report does not match docs/report-schema.json:\n{}",
        errors.join("\n")
    );
}

fn check_golden(name: &str, actual: &str) {
    let path = golden_folder().join(name);
    if std::env::var_os("UPDATE_GOLDEN").is_some() {
        std::fs::create_dir_all(golden_folder()).unwrap();
        std::fs::write(&path, actual).unwrap();
        return;
    }
    let expected = std::fs::read_to_string(&path)
        .unwrap_or_else(|_| panic!("{} is missing; run with UPDATE_GOLDEN=1", path.display()));
    if expected != actual {
        let first_difference = expected
            .lines()
            .zip(actual.lines())
            .enumerate()
            .find(|(_, (expected, actual))| expected != actual)
            .map(|(index, (expected, actual))| {
                format!(
                    "line {}:\n  expected: {expected}\n  actual:   {actual}",
                    index + 1
                )
            })
            .unwrap_or_else(|| "the lengths differ".to_owned());
        panic!(
            "{} differs from the report ({first_difference}); if the change is intended, run \
             UPDATE_GOLDEN=1 cargo test --test it followup:: and read the diff",
            path.display()
        );
    }
}

// ---------------------------------------------------------------------------------------
// The scripted incident, with fixed times.

/// Stores a webhook as if it arrived at `received` and runs the worker's step on it.
async fn arrive(app: &App, received: &str, body: &Value) {
    common::store_at(&app.state().storage, at(received), body).await;
    app.worker()
        .process_next_receipt()
        .await
        .expect("the worker step runs");
}

fn down(fingerprint: &str, status: &str, labels: Value, starts_at: &str) -> Value {
    let mut labels = labels;
    labels["alertname"] = json!("SamsaLoginDown");
    labels["service"] = json!("samsa");
    alert(fingerprint, status, labels, starts_at)
}

/// What `publishing::publish` writes, at a given time: the notice, the outbox rows and the
/// same log entries (`decision_recorded`, `notice_published`).
async fn publish_at(
    app: &App,
    draft_id: i64,
    decided_by: Option<&str>,
    channels: &[&str],
    published_at: &str,
) -> i64 {
    let state = app.state();
    let config = &state.config;
    let now = at(published_at);
    let mut transaction = state.storage.begin_write().await.unwrap();
    let latest = transaction
        .draft_for_publish(draft_id, i64::MAX)
        .await
        .unwrap()
        .unwrap()
        .latest_version;
    let draft = transaction
        .draft_for_publish(draft_id, latest)
        .await
        .unwrap()
        .unwrap();
    let version = draft.version.clone().unwrap();
    let input: NoticeInput = serde_json::from_value(version.input.clone()).unwrap();
    let level = input.classification.level;
    assert_eq!(
        decided_by.is_some(),
        level != Level::One,
        "levels 2 and 3 are decisions, level 1 is not"
    );
    let channels: Vec<String> = channels.iter().map(|name| (*name).to_owned()).collect();
    let deliveries: Vec<(String, String)> = channels
        .iter()
        .flat_map(|name| {
            config.channels[name]
                .transport
                .recipients()
                .into_iter()
                .map(move |recipient| (name.clone(), recipient))
        })
        .collect();
    let operator = "Anna Andersson";
    let mut events = Vec::new();
    if let Some(decided_by) = decided_by {
        events.push(EventWrite {
            at: now,
            source: operator.to_owned(),
            event: "decision_recorded".to_owned(),
            detail: json!({
                "level": level.as_number(),
                "decided_by": decided_by,
                "role": "subregional",
                "role_label": "delregional nivå",
            })
            .to_string(),
        });
    }
    events.push(EventWrite {
        at: now,
        source: operator.to_owned(),
        event: "notice_published".to_owned(),
        detail: json!({
            "draft_id": draft_id,
            "draft_version": latest,
            "kind": draft.kind,
            "level": level.as_number(),
            "suggested_level": level.as_number(),
            "channels": channels,
            "n_deliveries": deliveries.len(),
        })
        .to_string(),
    });
    let write = PublicationWrite {
        incident_id: draft.incident_id,
        draft_id,
        draft_version: latest,
        kind: draft.kind,
        level,
        decided_by: decided_by.map(str::to_owned),
        decided_role: decided_by.map(|_| "subregional".to_owned()),
        published_by: operator.to_owned(),
        channels,
        rendered: version.rendered.clone(),
        published_at: now,
        published: Published {
            kind: draft.kind,
            summary: input.summary.clone(),
            classification: input.classification.clone(),
        },
        deliveries,
        events,
    };
    let notice_id = transaction
        .insert_publication(&write)
        .await
        .unwrap()
        .expect("not published before");
    transaction.commit().await.unwrap();
    notice_id
}

/// Claims the due deliveries of a channel at `claimed` and records `outcome` for each, in
/// outbox order.
async fn deliver(
    storage: &Storage,
    channel: &str,
    claimed: &str,
    outcome: impl Fn(usize, i64) -> DeliveryResult,
) -> usize {
    let claimed = storage
        .claim_deliveries(channel, 100, at(claimed), Duration::from_secs(60))
        .await
        .unwrap();
    let results: Vec<DeliveryResult> = claimed
        .iter()
        .enumerate()
        .map(|(index, delivery)| outcome(index, delivery.outbox_id))
        .collect();
    storage.record_deliveries(&results).await.unwrap();
    claimed.len()
}

fn sent(time: &str) -> impl Fn(usize, i64) -> DeliveryResult {
    let time = at(time);
    move |_, outbox_id| DeliveryResult::Sent {
        outbox_id,
        at: time,
    }
}

/// One outage from the first alert to the lessons learned, with fixed times (UTC; Swedish
/// time is one hour later in November).
async fn scripted_incident(app: &App) -> i64 {
    let state = app.state();
    let storage = &state.storage;
    // 05:10: Trollhättan cannot log in.
    arrive(
        app,
        "2026-11-28T04:10:30Z",
        &payload(
            "firing",
            vec![down(
                "a1",
                "firing",
                json!({"actor": "kommun-trollhattan"}),
                "2026-11-28T04:10:00Z",
            )],
        ),
    )
    .await;
    // 05:20: the whole of Fyrbodal: level 2 is suggested; the pending draft is revised.
    arrive(
        app,
        "2026-11-28T04:20:30Z",
        &payload(
            "firing",
            vec![down(
                "a2",
                "firing",
                json!({"subregion": "fyrbodal"}),
                "2026-11-28T04:20:00Z",
            )],
        ),
    )
    .await;
    let incident_id = 1;
    let first_draft = storage.drafts(incident_id).await.unwrap()[0].draft_id;
    // 05:31: nobody has reviewed it: escalation to on-duty and escalation operators.
    let escalations: Vec<OperatorMailWrite> = ["anna@example.org", "erik@example.org"]
        .iter()
        .map(|address| OperatorMailWrite {
            dedupe_key: format!("escalate:{first_draft}:{address}"),
            purpose: "escalation".to_owned(),
            incident_id: Some(incident_id),
            draft_id: Some(first_draft),
            draft_version: Some(2),
            to_address: (*address).to_owned(),
            subject: "Väntar fortfarande".to_owned(),
            body: "…".to_owned(),
        })
        .collect();
    storage
        .enqueue_operator_mail(&escalations, at("2026-11-28T04:31:00Z"))
        .await
        .unwrap();
    // 05:38: published at level 2, decided at sub-regional level.
    let first_notice = publish_at(
        app,
        first_draft,
        Some("Karin Lund"),
        &["banner", "email", "website"],
        "2026-11-28T04:38:00Z",
    )
    .await;
    assert_eq!(first_notice, 1);
    deliver(
        storage,
        "banner",
        "2026-11-28T04:38:05Z",
        sent("2026-11-28T04:38:06Z"),
    )
    .await;
    deliver(
        storage,
        "website",
        "2026-11-28T04:38:05Z",
        sent("2026-11-28T04:38:06Z"),
    )
    .await;
    // Email: one goes out, one is deferred and goes out a minute later, one fails for good.
    let deferred_until = at("2026-11-28T04:39:00Z");
    let first_attempt = at("2026-11-28T04:38:12Z");
    let n_email = deliver(
        storage,
        "email",
        "2026-11-28T04:38:10Z",
        |index, outbox_id| match index {
            0 => DeliveryResult::Sent {
                outbox_id,
                at: first_attempt,
            },
            1 => DeliveryResult::Retry {
                outbox_id,
                next_attempt_at: deferred_until,
                error: "421 4.7.0 try again later".to_owned(),
            },
            _ => DeliveryResult::Failed {
                outbox_id,
                at: first_attempt,
                error: "550 5.1.1 no such mailbox".to_owned(),
            },
        },
    )
    .await;
    assert_eq!(n_email, 3);
    deliver(
        storage,
        "email",
        "2026-11-28T04:39:00Z",
        sent("2026-11-28T04:39:02Z"),
    )
    .await;
    // 05:45: the operator writes down the call that happened at 05:40.
    add_note(
        storage,
        incident_id,
        "Anna Andersson",
        "Cerner kallade till telefonkonferens 05:40",
        Some(at("2026-11-28T04:40:00Z")),
        at("2026-11-28T04:45:00Z"),
    )
    .await
    .unwrap();
    // 05:50: the failed address was corrected; the operator sends again.
    let failed = storage
        .outbox(Some(incident_id))
        .await
        .unwrap()
        .into_iter()
        .find(|row| row.state == "failed")
        .unwrap();
    assert!(
        storage
            .retry_failed_delivery(
                failed.outbox_id,
                at("2026-11-28T04:50:00Z"),
                "Anna Andersson"
            )
            .await
            .unwrap()
    );
    deliver(
        storage,
        "email",
        "2026-11-28T04:50:05Z",
        sent("2026-11-28T04:50:07Z"),
    )
    .await;
    // 05:55: feedback from the organisation, with a line of markup that must stay text.
    let feedback = Feedback::parse(
        "Lisa Berg",
        "Trollhättans stad",
        "Vi har gått över till reservrutinen.\r\n\r\nUtskrivningar sker via telefon och <b>fax</b> *tills vidare*.",
    )
    .unwrap();
    submit_feedback(
        storage,
        &state.config,
        &state.signer,
        incident_id,
        &feedback,
        at("2026-11-28T04:55:00Z"),
    )
    .await
    .unwrap();
    // 06:41: both alerts resolved; a resolution draft is made and published at 06:50.
    arrive(
        app,
        "2026-11-28T05:41:00Z",
        &payload(
            "resolved",
            vec![
                down(
                    "a1",
                    "resolved",
                    json!({"actor": "kommun-trollhattan"}),
                    "2026-11-28T04:10:00Z",
                ),
                down(
                    "a2",
                    "resolved",
                    json!({"subregion": "fyrbodal"}),
                    "2026-11-28T04:20:00Z",
                ),
            ],
        ),
    )
    .await;
    let resolution_draft = storage
        .drafts(incident_id)
        .await
        .unwrap()
        .into_iter()
        .find(|draft| draft.kind == NoticeKind::Resolved)
        .expect("a resolution draft")
        .draft_id;
    publish_at(
        app,
        resolution_draft,
        Some("Karin Lund"),
        &["banner", "email", "website"],
        "2026-11-28T05:50:00Z",
    )
    .await;
    deliver(
        storage,
        "banner",
        "2026-11-28T05:50:05Z",
        sent("2026-11-28T05:50:06Z"),
    )
    .await;
    deliver(
        storage,
        "website",
        "2026-11-28T05:50:05Z",
        sent("2026-11-28T05:50:06Z"),
    )
    .await;
    deliver(
        storage,
        "email",
        "2026-11-28T05:50:05Z",
        sent("2026-11-28T05:50:10Z"),
    )
    .await;
    // 07:30: the evaluation and the lessons learned.
    let written = at("2026-11-28T06:30:00Z");
    for (kind, text) in [
        (
            LessonKind::Evaluation,
            "Första meddelandet gick ut 28 minuter efter första larmet.\nUtkastet väntade i 18 minuter på beslut.",
        ),
        (
            LessonKind::Lesson(Audience::Organisations),
            "Reservrutinen för utskrivning fungerade; se till att faxnumren är aktuella.",
        ),
        (
            LessonKind::Lesson(Audience::Suppliers),
            "Cerner bör meddela förvaltningen direkt när de kallar till telefonkonferens.",
        ),
        (
            LessonKind::Lesson(Audience::ServiceManagement),
            "Uppdatera kontaktlistan (e-post_lista) *innan* nästa övning.",
        ),
    ] {
        add_lesson(storage, incident_id, "Anna Andersson", kind, text, written)
            .await
            .unwrap();
    }
    incident_id
}

#[tokio::test]
async fn scripted_incident_report_matches_the_golden_files() {
    let folder = tempfile::tempdir().unwrap();
    let config = common::config_with_tables(folder.path(), TABLES);
    let app = App::build(config).await.expect("app builds");
    let incident_id = scripted_incident(&app).await;
    let state = app.state();
    let generated_at = at("2026-11-28T08:00:00Z");
    let report = build_report(&state.storage, &state.config, incident_id, generated_at)
        .await
        .unwrap()
        .expect("the incident exists");

    // What the follow-up meeting asks for, before the bytes.
    assert_eq!(report.durations.to_first_notice_seconds, Some(28 * 60));
    assert_eq!(report.durations.outage_seconds, 91 * 60);
    assert_eq!(report.decisions.len(), 2);
    assert_eq!(report.decisions[0].decided_by, "Karin Lund");
    let email = report
        .deliveries
        .by_channel
        .iter()
        .find(|channel| channel.channel == "email")
        .unwrap();
    assert_eq!(
        (
            email.n_deliveries,
            email.n_sent,
            email.n_failed,
            email.n_retries,
            email.n_operator_retries
        ),
        (6, 6, 0, 2, 1)
    );
    assert_eq!(report.escalations.len(), 1);
    assert_eq!(report.escalations[0].n_mails, 2);
    assert_eq!(report.feedback.len(), 1);
    assert_eq!(report.lessons.len(), 4);
    let fyrbodal = report
        .scope
        .subregions
        .iter()
        .find(|subregion| subregion.id == "fyrbodal")
        .unwrap();
    assert_eq!(fyrbodal.downtime_seconds, 91 * 60);
    assert!(fyrbodal.whole);

    let json_text = render_report(&report, ReportFormat::Json).unwrap();
    let json: Value = serde_json::from_str(&json_text).unwrap();
    assert_valid_report(&json);
    check_golden("incident.json", &json_text);
    check_golden(
        "incident.md",
        &render_report(&report, ReportFormat::Markdown).unwrap(),
    );
    check_golden(
        "incident.html",
        &render_report(&report, ReportFormat::Html).unwrap(),
    );

    // The command line writes the same report from the same database; only the time it was
    // made differs.
    let config_file = folder.path().join("relay.toml");
    std::fs::write(
        &config_file,
        format!(
            "{}\n{TABLES}",
            common::base_config(folder.path(), "", "", "")
        ),
    )
    .unwrap();
    let output = std::process::Command::new(env!("CARGO_BIN_EXE_samsa-relay"))
        .args(["report", "--config"])
        .arg(&config_file)
        .args(["--format", "json", "SAMSA-1"])
        .output()
        .expect("the binary runs");
    assert!(
        output.status.success(),
        "report failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    let mut from_cli: Value = serde_json::from_slice(&output.stdout).unwrap();
    let mut expected = json.clone();
    from_cli["generated_at"] = Value::Null;
    expected["generated_at"] = Value::Null;
    assert_eq!(from_cli, expected);

    let markdown_file = folder.path().join("rapport.md");
    let status = std::process::Command::new(env!("CARGO_BIN_EXE_samsa-relay"))
        .args(["report", "--config"])
        .arg(&config_file)
        .args(["--format", "md", "--output"])
        .arg(&markdown_file)
        .arg("1")
        .status()
        .unwrap();
    assert!(status.success());
    let without_generated = |text: &str| {
        text.lines()
            .filter(|line| !line.starts_with("Rapporten skapades"))
            .collect::<Vec<_>>()
            .join("\n")
    };
    assert_eq!(
        without_generated(&std::fs::read_to_string(&markdown_file).unwrap()),
        without_generated(&render_report(&report, ReportFormat::Markdown).unwrap())
    );

    let missing = std::process::Command::new(env!("CARGO_BIN_EXE_samsa-relay"))
        .args(["report", "--config"])
        .arg(&config_file)
        .arg("99")
        .output()
        .unwrap();
    assert_eq!(missing.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&missing.stderr).contains("incident 99 does not exist"));
    drop(app);
}

// ---------------------------------------------------------------------------------------
// Across incidents: filters, the yearly figures and the CSV exports, with fixed times.

/// One incident from firing to resolution, published `notice_after_minutes` after it
/// started when given.
async fn outage_at(
    app: &App,
    fingerprint: &str,
    labels: Value,
    starts_at: &str,
    minutes: i64,
    notice_after_minutes: Option<(i64, Option<&str>)>,
) -> i64 {
    let start = at(starts_at);
    let received = |minutes: i64| (start + jiff::SignedDuration::from_mins(minutes)).to_string();
    arrive(
        app,
        &received(0),
        &payload(
            "firing",
            vec![down(fingerprint, "firing", labels.clone(), starts_at)],
        ),
    )
    .await;
    let incident_id = app
        .state()
        .storage
        .followup_incident_ids(None, None)
        .await
        .unwrap()
        .into_iter()
        .max()
        .unwrap();
    if let Some((after, decided_by)) = notice_after_minutes {
        let draft_id = app.state().storage.drafts(incident_id).await.unwrap()[0].draft_id;
        publish_at(app, draft_id, decided_by, &["banner"], &received(after)).await;
    }
    arrive(
        app,
        &received(minutes),
        &payload(
            "resolved",
            vec![down(fingerprint, "resolved", labels, starts_at)],
        ),
    )
    .await;
    incident_id
}

#[tokio::test]
async fn the_list_filters_by_period_level_and_subregion_and_exports_the_yearly_figures() {
    let folder = tempfile::tempdir().unwrap();
    let app = App::build(common::config_with_tables(folder.path(), TABLES))
        .await
        .unwrap();
    // 00:30 on New Year's Day in Sweden is still 2025 in UTC: it belongs to 2026.
    outage_at(
        &app,
        "new-year",
        json!({"actor": "kommun-skovde"}),
        "2025-12-31T23:30:00Z",
        45,
        None,
    )
    .await;
    outage_at(
        &app,
        "spring",
        json!({"subregion": "fyrbodal"}),
        "2026-03-10T08:00:00Z",
        60,
        Some((20, Some("Karin Lund"))),
    )
    .await;
    outage_at(
        &app,
        "summer",
        json!({"actor": "kommun-boras"}),
        "2026-06-01T12:00:00Z",
        30,
        Some((10, None)),
    )
    .await;
    // 00:30 on New Year's Day 2027 in Sweden: not 2026.
    outage_at(
        &app,
        "next-year",
        json!({"actor": "kommun-boras"}),
        "2026-12-31T23:30:00Z",
        15,
        None,
    )
    .await;
    let state = app.state();
    let now = at("2027-02-01T08:00:00Z");
    let year_2026 = IncidentFilter {
        from: Some("2026-01-01".parse().unwrap()),
        to: Some("2026-12-31".parse().unwrap()),
        ..IncidentFilter::default()
    };
    let rows = list_incidents(&state.storage, &state.config, &year_2026, now)
        .await
        .unwrap();
    let ids: Vec<i64> = rows.iter().map(|row| row.incident_id).collect();
    assert_eq!(ids, vec![1, 2, 3]);

    let only = |filter: IncidentFilter| {
        let storage = state.storage.clone();
        let config = state.config.clone();
        async move {
            list_incidents(&storage, &config, &filter, now)
                .await
                .unwrap()
                .iter()
                .map(|row| row.incident_id)
                .collect::<Vec<_>>()
        }
    };
    assert_eq!(
        only(IncidentFilter {
            level: Some(2),
            ..year_2026.clone()
        })
        .await,
        vec![2]
    );
    assert_eq!(
        only(IncidentFilter {
            subregion: Some("skaraborg".to_owned()),
            ..year_2026.clone()
        })
        .await,
        vec![1]
    );
    assert_eq!(
        only(IncidentFilter {
            subregion: Some("sodra-alvsborg".to_owned()),
            ..IncidentFilter::default()
        })
        .await,
        vec![3, 4]
    );

    let summary = summarize_incidents(&rows, &state.config);
    assert_eq!(summary.n_incidents, 3);
    assert_eq!(summary.total_downtime_seconds, 135 * 60);
    assert_eq!(summary.median_to_first_notice_seconds, Some(15 * 60));
    let planned = samsa_relay::followup::planned_maintenance(
        &state.storage,
        &state.config,
        &year_2026,
        jiff::Timestamp::now(),
    )
    .await
    .unwrap();
    assert_eq!(planned.n_windows, 0);
    assert_eq!(
        summary_csv(&summary, &planned, &year_2026),
        "\u{feff}Mått;Värde\r\n\
         Period;2026-01-01 – 2026-12-31\r\n\
         Antal störningar;3\r\n\
         Total nedtid (min);135\r\n\
         Störningar som berörde Fyrbodal;1\r\n\
         Nedtid Fyrbodal (min);60\r\n\
         Störningar som berörde Göteborgsregionen;0\r\n\
         Nedtid Göteborgsregionen (min);0\r\n\
         Störningar som berörde Skaraborg;1\r\n\
         Nedtid Skaraborg (min);45\r\n\
         Störningar som berörde Södra Älvsborg;1\r\n\
         Nedtid Södra Älvsborg (min);30\r\n\
         Planerade underhåll;0\r\n\
         Planerad nedtid (min);0\r\n\
         Planerade underhåll som berörde Fyrbodal;0\r\n\
         Planerad nedtid Fyrbodal (min);0\r\n\
         Planerade underhåll som berörde Göteborgsregionen;0\r\n\
         Planerad nedtid Göteborgsregionen (min);0\r\n\
         Planerade underhåll som berörde Skaraborg;0\r\n\
         Planerad nedtid Skaraborg (min);0\r\n\
         Planerade underhåll som berörde Södra Älvsborg;0\r\n\
         Planerad nedtid Södra Älvsborg (min);0\r\n\
         Störningar med publicerat meddelande;2\r\n\
         Median tid till första meddelande (min);15\r\n"
    );
    assert_eq!(
        incidents_csv(&rows, &state.config),
        "\u{feff}Incident;Referens;Typ;Början;Slut;Pågår;Varaktighet (min);Högsta nivå;\
         Kriskommunikation;Som mest påverkade aktörer;Aktörer totalt;Nedtid Fyrbodal (min);\
         Nedtid Göteborgsregionen (min);Nedtid Skaraborg (min);Nedtid Södra Älvsborg (min);\
         Tid till första meddelande (min);Publiceringar;Återkopplingar;\
         Utvärderingar och erfarenheter\r\n\
         1;SAMSA-1;driftstörning;2026-01-01 00:30;2026-01-01 01:15;nej;45;1;nej;1;67;0;0;45;0;;0;0;0\r\n\
         2;SAMSA-2;driftstörning;2026-03-10 09:00;2026-03-10 10:00;nej;60;2;nej;17;67;60;0;0;0;20;1;0;0\r\n\
         3;SAMSA-3;driftstörning;2026-06-01 14:00;2026-06-01 14:30;nej;30;1;nej;1;67;0;0;0;30;10;1;0;0\r\n"
    );
    drop(app);
}

// ---------------------------------------------------------------------------------------
// Over HTTP, with the real clock.

/// A client that shows redirects instead of following them.
fn client() -> reqwest::Client {
    reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .timeout(Duration::from_secs(30))
        .no_proxy()
        .build()
        .unwrap()
}

fn dashboard_token(app: &TestApp, email: &str) -> String {
    app.state.signer.sign(&LinkClaims {
        purpose: LinkPurpose::Dashboard,
        operator: email.to_owned(),
        expires_at: Timestamp::now().as_second() + 3600,
    })
}

async fn get(app: &TestApp, path: &str) -> reqwest::Response {
    client()
        .get(format!("{}{path}", app.address))
        .send()
        .await
        .unwrap()
}

async fn post_form(app: &TestApp, path: &str, fields: &[(&str, &str)]) -> reqwest::Response {
    let body: String = url::form_urlencoded::Serializer::new(String::new())
        .extend_pairs(fields)
        .finish();
    client()
        .post(format!("{}{path}", app.address))
        .header("content-type", "application/x-www-form-urlencoded")
        .body(body)
        .send()
        .await
        .unwrap()
}

fn location(response: &reqwest::Response) -> String {
    response.headers()["location"].to_str().unwrap().to_owned()
}

fn csrf_of(html: &str) -> String {
    let marker = "name=\"csrf\" value=\"";
    let start = html.find(marker).expect("a CSRF field") + marker.len();
    html[start..].split('"').next().unwrap().to_owned()
}

/// Starts the app and opens incident 1 with one firing alert about `actor`.
async fn app_with_incident(actor: &str) -> TestApp {
    let app = common::spawn_app_with_tables(TABLES).await;
    let response = app
        .post_webhook(
            payload(
                "firing",
                vec![down(
                    "h1",
                    "firing",
                    json!({"actor": actor}),
                    "2026-11-28T04:10:00Z",
                )],
            )
            .to_string(),
        )
        .await;
    assert_eq!(response.status(), 200);
    common::eventually("incident 1", DEADLINE, || async {
        app.state.storage.followup_incident(1).await.unwrap()
    })
    .await;
    app
}

/// [`app_with_incident`] with the first notice published on the banner: the public
/// feedback page exists only for an incident with a published notice.
async fn app_with_published_incident(actor: &str) -> TestApp {
    let app = app_with_incident(actor).await;
    common::publish_pending(&app, 1, NoticeKind::Initial, &["banner"]).await;
    app
}

async fn report_json(app: &TestApp, token: &str) -> Value {
    let response = get(app, &format!("/ops/d/{token}/followup/1/report.json")).await;
    assert_eq!(response.status(), 200);
    response.json().await.unwrap()
}

/// The operator emails in the mail folder (file transport), parsed: (subject, message).
fn mail_files(app: &TestApp) -> Vec<Vec<u8>> {
    let folder = app.folder.path().join("mail");
    std::fs::read_dir(&folder)
        .map(|entries| {
            entries
                .filter_map(Result::ok)
                .map(|entry| std::fs::read(entry.path()).unwrap())
                .collect()
        })
        .unwrap_or_default()
}

async fn feedback_mail(app: &TestApp) -> Vec<u8> {
    common::eventually("the feedback email written", DEADLINE, || async {
        mail_files(app).into_iter().find(|bytes| {
            mail_parser::MessageParser::default()
                .parse(bytes)
                .and_then(|message| {
                    message
                        .subject()
                        .map(|subject| subject.contains("återkoppling"))
                })
                .unwrap_or(false)
        })
    })
    .await
}

#[tokio::test]
async fn a_live_incident_from_first_alert_to_lessons_learned_over_http() {
    let app = app_with_incident("kommun-boras").await;
    common::publish_pending(
        &app,
        1,
        NoticeKind::Initial,
        &["banner", "email", "website"],
    )
    .await;
    common::eventually("every delivery sent", DEADLINE, || async {
        let outbox = app.state.storage.outbox(Some(1)).await.unwrap();
        (outbox.len() == 5 && outbox.iter().all(|row| row.state == "sent")).then_some(())
    })
    .await;

    // The public feedback page every notice links to.
    let response = get(&app, "/public/feedback/1").await;
    assert_eq!(response.status(), 200);
    let headers = response.headers().clone();
    assert_eq!(headers["x-content-type-options"], "nosniff");
    assert!(
        headers["content-security-policy"]
            .to_str()
            .unwrap()
            .contains("form-action 'self'")
    );
    let html = response.text().await.unwrap();
    assert!(html.contains("<html lang=\"sv\">"));
    assert!(html.contains("SAMSA-1"));
    for field in ["name=\"name\"", "name=\"organisation\"", "name=\"message\""] {
        assert!(html.contains(field), "{field}");
    }
    let response = post_form(
        &app,
        "/public/feedback/1",
        &[
            ("name", "Lisa Berg"),
            ("organisation", "Borås stad"),
            (
                "message",
                "Vi använder reservrutinen.\r\nUtskrivningar via telefon.",
            ),
        ],
    )
    .await;
    assert_eq!(response.status(), 303);
    assert_eq!(location(&response), "/public/feedback/1/tack");
    let thanks = get(&app, "/public/feedback/1/tack")
        .await
        .text()
        .await
        .unwrap();
    assert!(thanks.contains("Tack för din återkoppling"));

    // In the log, and told to the on-duty operator (not the escalation group).
    let events = app.state.storage.incident_events(1).await.unwrap();
    let feedback_event = events
        .iter()
        .find(|event| event.event == "feedback")
        .expect("a feedback entry in the log");
    assert_eq!(feedback_event.source, "feedback");
    let feedback_id = feedback_event.detail["feedback_id"].as_i64().unwrap();
    let mails = app.state.storage.operator_mail().await.unwrap();
    let feedback_mails: Vec<_> = mails
        .iter()
        .filter(|(key, ..)| key.starts_with("feedback:"))
        .collect();
    assert_eq!(feedback_mails.len(), 1);
    assert_eq!(
        feedback_mails[0].0,
        format!("feedback:{feedback_id}:anna@example.org")
    );
    assert_eq!(
        feedback_mails[0].2,
        "Ny återkoppling om incident 1 (SAMSA-1)"
    );
    let mail = feedback_mail(&app).await;
    let message = mail_parser::MessageParser::default().parse(&mail).unwrap();
    let reply_to = message.reply_to().unwrap().first().unwrap();
    assert_eq!(reply_to.address().unwrap(), "info.samsa@vgregion.se");
    let body = message.body_text(0).unwrap();
    assert!(body.contains("Utskrivningar via telefon."));
    assert!(
        body.contains("/ops/d/"),
        "the email links to the follow-up page"
    );

    // The operator's dashboard links to the follow-up page.
    let token = dashboard_token(&app, "anna@example.org");
    let dashboard = get(&app, &format!("/ops/d/{token}"))
        .await
        .text()
        .await
        .unwrap();
    // MiniJinja's HTML escaping writes the `/` of the dashboard's own URL as `&#x2f;`;
    // browsers read it back.
    let dashboard_url = format!("/ops/d/{token}").replace('/', "&#x2f;");
    assert!(dashboard.contains(&format!("{dashboard_url}/followup/1\"")));
    assert!(dashboard.contains(&format!("{dashboard_url}/followup\"")));

    // A note in the log, with the time it happened; the CSRF token is required.
    let page_path = format!("/ops/d/{token}/followup/1");
    let page = get(&app, &page_path).await.text().await.unwrap();
    assert!(page.contains("Lisa Berg"));
    let csrf = csrf_of(&page);
    let refused = post_form(
        &app,
        &page_path,
        &[("action", "note"), ("text", "utan kontrollkod")],
    )
    .await;
    assert_eq!(refused.status(), 403);
    let response = post_form(
        &app,
        &page_path,
        &[
            ("csrf", &csrf),
            ("action", "note"),
            ("text", "Cerner kallade till telefonkonferens"),
            ("occurred_at", "2026-11-28T05:40"),
        ],
    )
    .await;
    assert_eq!(response.status(), 303);
    assert_eq!(
        location(&response),
        format!("{page_path}?sparat=anteckning")
    );
    let page = get(&app, &location(&response)).await.text().await.unwrap();
    assert!(page.contains("Anteckningen är sparad i loggen."));
    assert!(page.contains("Anteckning: Cerner kallade till telefonkonferens"));

    // Lessons wait for the resolution.
    let lesson = [
        ("csrf", csrf.as_str()),
        ("action", "lesson"),
        ("kind", "lesson"),
        ("audience", "suppliers"),
        ("lesson", "Cerner bör meddela förvaltningen direkt."),
    ];
    let early = post_form(&app, &page_path, &lesson).await;
    assert_eq!(early.status(), 409);
    assert!(
        early
            .text()
            .await
            .unwrap()
            .contains("när incidenten är åtgärdad")
    );
    let response = app
        .post_webhook(
            payload(
                "resolved",
                vec![down(
                    "h1",
                    "resolved",
                    json!({"actor": "kommun-boras"}),
                    "2026-11-28T04:10:00Z",
                )],
            )
            .to_string(),
        )
        .await;
    assert_eq!(response.status(), 200);
    common::eventually("incident 1 resolved", DEADLINE, || async {
        let incident = app.state.storage.followup_incident(1).await.unwrap()?;
        incident.resolved_at
    })
    .await;
    assert_eq!(post_form(&app, &page_path, &lesson).await.status(), 303);
    let evaluation = [
        ("csrf", csrf.as_str()),
        ("action", "lesson"),
        ("kind", "evaluation"),
        ("lesson", "Meddelandet gick ut snabbt."),
    ];
    let response = post_form(&app, &page_path, &evaluation).await;
    assert_eq!(
        location(&response),
        format!("{page_path}?sparat=utvardering")
    );
    let no_audience = [
        ("csrf", csrf.as_str()),
        ("action", "lesson"),
        ("kind", "lesson"),
        ("lesson", "Till vem?"),
    ];
    assert_eq!(
        post_form(&app, &page_path, &no_audience).await.status(),
        422
    );

    // The report, in its three forms.
    let report = report_json(&app, &token).await;
    assert_valid_report(&report);
    assert_eq!(report["feedback"].as_array().unwrap().len(), 1);
    assert_eq!(report["lessons"].as_array().unwrap().len(), 2);
    assert_eq!(report["incident"]["phase"], "resolved");
    let note = report["timeline"]
        .as_array()
        .unwrap()
        .iter()
        .find(|entry| entry["event"] == "note")
        .expect("the note in the timeline");
    assert_eq!(note["at"], "2026-11-28T04:40:00Z");
    assert_eq!(note["source"], "Anna Andersson");
    let email = report["deliveries"]["by_channel"]
        .as_array()
        .unwrap()
        .iter()
        .find(|channel| channel["channel"] == "email")
        .unwrap();
    assert_eq!(email["n_sent"], 3);
    let response = get(&app, &format!("{page_path}/report.json")).await;
    assert_eq!(response.headers()["content-type"], "application/json");
    assert!(
        response.headers()["content-disposition"]
            .to_str()
            .unwrap()
            .starts_with("attachment; filename=\"incident-1-rapport.json\"")
    );
    let response = get(&app, &format!("{page_path}/report.md")).await;
    assert_eq!(response.status(), 200);
    assert_eq!(
        response.headers()["content-type"],
        "text/markdown; charset=utf-8"
    );
    assert!(
        response
            .text()
            .await
            .unwrap()
            .starts_with("# Incidentrapport SAMSA-1\n")
    );
    let response = get(&app, &format!("{page_path}/report.html")).await;
    assert_eq!(response.status(), 200);
    let policy = response.headers()["content-security-policy"]
        .to_str()
        .unwrap()
        .to_owned();
    let html = response.text().await.unwrap();
    assert!(html.contains("<html lang=\"sv\">"));
    // The policy allows exactly the inline stylesheet, by its hash.
    let style = html
        .split_once("<style>")
        .and_then(|(_, rest)| rest.split_once("</style>"))
        .map(|(style, _)| style)
        .unwrap();
    let hash = {
        use base64::Engine as _;
        use sha2::Digest as _;
        base64::engine::general_purpose::STANDARD.encode(sha2::Sha256::digest(style.as_bytes()))
    };
    assert!(
        policy.contains(&format!("style-src 'sha256-{hash}'")),
        "{policy}"
    );
    assert!(html.contains("@page { size: A4"));

    // The list and its exports.
    let list = get(
        &app,
        &format!("/ops/d/{token}/followup?from=2026-11-01&to=2026-11-30"),
    )
    .await;
    assert_eq!(list.status(), 200);
    let list = list.text().await.unwrap();
    assert!(list.contains("SAMSA-1"));
    let none = get(
        &app,
        &format!("/ops/d/{token}/followup?from=2026-11-01&to=2026-11-30&level=3"),
    )
    .await
    .text()
    .await
    .unwrap();
    assert!(none.contains("Inga incidenter i urvalet."));
    let csv = get(
        &app,
        &format!("/ops/d/{token}/followup/incidents.csv?from=2026-11-01&to=2026-11-30"),
    )
    .await;
    assert_eq!(csv.headers()["content-type"], "text/csv; charset=utf-8");
    let csv = csv.text().await.unwrap();
    let mut lines = csv.trim_start_matches('\u{feff}').lines();
    assert!(
        lines
            .next()
            .unwrap()
            .starts_with("Incident;Referens;Typ;Början")
    );
    assert!(
        lines
            .next()
            .unwrap()
            .starts_with("1;SAMSA-1;driftstörning;2026-11-28 05:10;")
    );
    assert_eq!(lines.next(), None);
    let summary = get(
        &app,
        &format!("/ops/d/{token}/followup/summary.csv?from=2026-11-01&to=2026-11-30"),
    )
    .await
    .text()
    .await
    .unwrap();
    assert!(summary.contains("Antal störningar;1\r\n"));
    let bad = get(&app, &format!("/ops/d/{token}/followup?from=igår&level=9")).await;
    assert_eq!(bad.status(), 422);

    // A review link does not open the follow-up; an unknown incident is not found.
    let review_token = app.state.signer.sign(&LinkClaims {
        purpose: LinkPurpose::Review {
            draft_id: 1,
            version: 1,
        },
        operator: "anna@example.org".to_owned(),
        expires_at: Timestamp::now().as_second() + 3600,
    });
    assert_eq!(
        get(&app, &format!("/ops/d/{review_token}/followup/1"))
            .await
            .status(),
        403
    );
    assert_eq!(
        get(&app, &format!("/ops/d/{token}/followup/99"))
            .await
            .status(),
        404
    );
    assert_eq!(
        post_form(
            &app,
            &format!("/ops/d/{token}/followup/99"),
            &[("csrf", &csrf), ("action", "note"), ("text", "x")],
        )
        .await
        .status(),
        404
    );
    app.stop().await;
}

#[tokio::test]
async fn hostile_feedback_stays_plain_text_everywhere_it_is_shown() {
    let app = app_with_published_incident("kommun-boras").await;
    let name = "<script>alert(1)</script>\r\nBcc: evil@example.org";
    let organisation = "\"><img src=x onerror=alert(2)>";
    let message = "<script>alert(3)</script>\r\n[klicka här](javascript:alert(4))\r\n\u{202e}baklänges\r\n\r\nSubject: injected\r\n.\r\n";
    let response = post_form(
        &app,
        "/public/feedback/1",
        &[
            ("name", name),
            ("organisation", organisation),
            ("message", message),
        ],
    )
    .await;
    assert_eq!(response.status(), 303);

    // Stored as plain text: one line for name and organisation, control and direction
    // characters gone, line breaks normalised.
    let token = dashboard_token(&app, "anna@example.org");
    let report = report_json(&app, &token).await;
    assert_valid_report(&report);
    let stored = &report["feedback"][0];
    assert_eq!(
        stored["name"],
        "<script>alert(1)</script> Bcc: evil@example.org"
    );
    assert_eq!(stored["organisation"], organisation);
    assert_eq!(
        stored["message"],
        "<script>alert(3)</script>\n[klicka här](javascript:alert(4))\nbaklänges\n\nSubject: injected\n."
    );

    // The email: a fixed subject, one recipient, no header from the form.
    let mails = app.state.storage.operator_mail().await.unwrap();
    let (_, to, subject, _) = mails
        .iter()
        .find(|(key, ..)| key.starts_with("feedback:"))
        .unwrap();
    assert_eq!(to, "anna@example.org");
    assert_eq!(subject, "Ny återkoppling om incident 1 (SAMSA-1)");
    let mail = feedback_mail(&app).await;
    let parsed = mail_parser::MessageParser::default().parse(&mail).unwrap();
    assert!(parsed.bcc().is_none());
    assert_eq!(parsed.to().unwrap().iter().count(), 1);
    assert_eq!(
        parsed.subject().unwrap(),
        "Ny återkoppling om incident 1 (SAMSA-1)"
    );
    let raw = String::from_utf8_lossy(&mail);
    let headers = raw.split("\r\n\r\n").next().unwrap();
    assert!(!headers.contains("evil@example.org"), "{headers}");
    assert!(!headers.contains("injected"), "{headers}");

    // Escaped on the operator page and in the HTML and Markdown reports.
    let page = get(&app, &format!("/ops/d/{token}/followup/1"))
        .await
        .text()
        .await
        .unwrap();
    let html_report = get(&app, &format!("/ops/d/{token}/followup/1/report.html"))
        .await
        .text()
        .await
        .unwrap();
    for html in [&page, &html_report] {
        assert!(!html.contains("<script>alert"), "raw script in a page");
        assert!(!html.contains("<img src=x"), "raw markup in a page");
        assert!(html.contains("&lt;script&gt;alert(1)&lt;&#x2f;script&gt;"));
        assert!(html.contains("&lt;img src=x onerror=alert(2)&gt;"));
    }
    let markdown = get(&app, &format!("/ops/d/{token}/followup/1/report.md"))
        .await
        .text()
        .await
        .unwrap();
    assert!(!markdown.contains("<script>"));
    assert!(!markdown.contains("<img"));
    assert!(markdown.contains("&lt;script&gt;alert(3)&lt;/script&gt;"));
    assert!(markdown.contains("\\[klicka här\\](javascript:alert(4))"));

    // 1 MB: refused before it is read, declared or chunked; nothing more is stored.
    let big = format!("name=a&organisation=b&message={}", "x".repeat(1024 * 1024));
    let response = client()
        .post(format!("{}/public/feedback/1", app.address))
        .header("content-type", "application/x-www-form-urlencoded")
        .body(big.clone())
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 413);
    let chunked =
        common::post_chunked(&app.address, "/public/feedback/1", "", big.as_bytes()).await;
    assert!(
        chunked.starts_with("HTTP/1.1 413"),
        "{}",
        &chunked[..chunked.len().min(200)]
    );

    // Over the cap (but under the body limit): refused with the text kept in the form.
    let too_long = "å".repeat(5_001);
    let response = post_form(
        &app,
        "/public/feedback/1",
        &[
            ("name", "Lisa"),
            ("organisation", "Borås stad"),
            ("message", &too_long),
        ],
    )
    .await;
    assert_eq!(response.status(), 422);
    let html = response.text().await.unwrap();
    assert!(html.contains("Meddelandet får vara högst 5\u{a0}000 tecken."));
    assert!(html.contains(&too_long), "what was typed is not lost");
    let response = post_form(&app, "/public/feedback/1", &[("message", "bara text")]).await;
    assert_eq!(response.status(), 422);
    let html = response.text().await.unwrap();
    assert!(html.contains("Skriv ditt namn."));
    assert!(html.contains("aria-invalid=\"true\""));

    let report = report_json(&app, &token).await;
    assert_eq!(report["feedback"].as_array().unwrap().len(), 1);
    app.stop().await;
}

#[tokio::test]
async fn feedback_is_rate_limited_per_client_without_losing_the_text() {
    let app = app_with_published_incident("kommun-boras").await;
    let fields = |message: &'static str| {
        [
            ("name", "Lisa Berg"),
            ("organisation", "Borås stad"),
            ("message", message),
        ]
    };
    for _ in 0..5 {
        let response = post_form(&app, "/public/feedback/1", &fields("Ett meddelande")).await;
        assert_eq!(response.status(), 303);
    }
    let response = post_form(
        &app,
        "/public/feedback/1",
        &fields("Det sjätte meddelandet"),
    )
    .await;
    assert_eq!(response.status(), 429);
    let retry_after: u64 = response.headers()["retry-after"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!((1..=30).contains(&retry_after), "{retry_after}");
    let html = response.text().await.unwrap();
    assert!(html.contains("Det sjätte meddelandet"));
    assert!(html.contains("Vänta en stund"));
    // The limit is per client address (from the connection, never from a header): another
    // client, connecting from another loopback address to the same server, is admitted.
    let forwarded = client()
        .post(format!("{}/public/feedback/1", app.address))
        .header("content-type", "application/x-www-form-urlencoded")
        .header("x-forwarded-for", "192.0.2.99")
        .body("name=a&organisation=b&message=c")
        .send()
        .await
        .unwrap();
    assert_eq!(forwarded.status(), 429, "X-Forwarded-For is not trusted");
    let other_client = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .local_address("127.0.0.2".parse::<std::net::IpAddr>().unwrap())
        .no_proxy()
        .build()
        .unwrap();
    let response = other_client
        .post(format!("{}/public/feedback/1", app.address))
        .header("content-type", "application/x-www-form-urlencoded")
        .body("name=Erik&organisation=Ale+kommun&message=Fr%C3%A5n+en+annan+klient")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 303);
    let token = dashboard_token(&app, "anna@example.org");
    let report = report_json(&app, &token).await;
    assert_eq!(report["feedback"].as_array().unwrap().len(), 6);
    app.stop().await;
}

#[tokio::test]
async fn feedback_about_unknown_or_internal_incidents_is_not_found() {
    let app = app_with_published_incident("kommun-boras").await;
    for path in [
        "/public/feedback/99",
        "/public/feedback/abc",
        "/public/feedback/0",
    ] {
        let response = get(&app, path).await;
        assert_eq!(response.status(), 404, "{path}");
        assert!(
            response
                .text()
                .await
                .unwrap()
                .contains("Incidenten finns inte")
        );
    }
    let fields = [("name", "a"), ("organisation", "b"), ("message", "c")];
    assert_eq!(
        post_form(&app, "/public/feedback/99", &fields)
            .await
            .status(),
        404
    );
    // Incident 1 is published; a second one (a drill, never published) is not, and
    // answers the same 404 as an unknown number, on the form, the POST and the thanks.
    let (drill, _) = samsa_relay::publishing::start_drill(
        &app.state.storage,
        &app.state.config,
        &app.state.renderer,
        &[samsa_relay::classify::AlertScope::Everything],
        "anna@example.org",
    )
    .await
    .expect("the drill starts");
    for path in [
        format!("/public/feedback/{drill}"),
        format!("/public/feedback/{drill}/tack"),
    ] {
        let response = get(&app, &path).await;
        assert_eq!(response.status(), 404, "{path}");
        assert!(
            response
                .text()
                .await
                .unwrap()
                .contains("Incidenten finns inte")
        );
    }
    assert_eq!(
        post_form(&app, &format!("/public/feedback/{drill}"), &fields)
            .await
            .status(),
        404
    );
    assert_eq!(get(&app, "/public/feedback/1").await.status(), 200);
    // The internal "monitoring chain broken" incident is never public.
    let config = &app.state.config;
    let summary = samsa_relay::classify::summarize(&[], &config.inventory);
    let classification = samsa_relay::classify::classify(&summary, 0.5);
    let monitoring = app
        .state
        .storage
        .open_monitoring_incident(Timestamp::now(), &summary, &classification, json!({}))
        .await
        .unwrap()
        .expect("opened");
    assert_eq!(
        get(&app, &format!("/public/feedback/{monitoring}"))
            .await
            .status(),
        404
    );
    assert_eq!(
        post_form(&app, &format!("/public/feedback/{monitoring}"), &fields)
            .await
            .status(),
        404
    );
    app.stop().await;
}

#[tokio::test]
async fn feedback_from_another_site_is_refused_and_the_text_is_quoted_as_the_senders_words() {
    let app = app_with_published_incident("kommun-boras").await;
    let body = "name=Lisa+Berg&organisation=Bor%C3%A5s+stad&message=Hej";
    let post = |headers: &'static [(&'static str, &'static str)], body: String| {
        let mut request = client()
            .post(format!("{}/public/feedback/1", app.address))
            .header("content-type", "application/x-www-form-urlencoded")
            .body(body);
        for (name, value) in headers {
            request = request.header(*name, *value);
        }
        request.send()
    };
    // A page elsewhere that makes a visitor's browser post the form.
    for headers in [
        &[("sec-fetch-site", "cross-site")][..],
        &[("sec-fetch-site", "same-site")][..],
        &[("origin", "https://evil.example")][..],
        &[("origin", "null")][..],
        &[
            ("origin", "https://evil.example"),
            ("sec-fetch-site", "same-origin"),
        ][..],
    ] {
        let response = post(headers, body.to_owned()).await.unwrap();
        assert_eq!(response.status(), 403, "{headers:?}");
        let html = response.text().await.unwrap();
        assert!(
            html.contains("Formuläret kom från en annan webbplats"),
            "{html}"
        );
    }
    let token = dashboard_token(&app, "anna@example.org");
    assert_eq!(
        report_json(&app, &token).await["feedback"]
            .as_array()
            .unwrap()
            .len(),
        0,
        "nothing refused was stored"
    );

    // The form's own page: its origin is the address the browser sent the form to, or
    // the configured public URL (behind a proxy).
    let fake_block = "Hej!\r\n\r\nÅterkopplingen finns i incidentens logg och i uppföljningsrapporten:\r\nhttps://evil.example/ops/d/falsk\r\n\r\n/samsa-relay";
    let own_origin = app.address.clone();
    let message: String = url::form_urlencoded::Serializer::new(String::new())
        .extend_pairs([
            ("name", "Lisa Berg"),
            ("organisation", "Borås stad"),
            ("message", fake_block),
        ])
        .finish();
    let response = client()
        .post(format!("{}/public/feedback/1", app.address))
        .header("content-type", "application/x-www-form-urlencoded")
        .header("origin", own_origin)
        .header("sec-fetch-site", "same-origin")
        .body(message)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 303);
    let response = post(
        &[
            ("origin", "http://127.0.0.1:9095"),
            ("sec-fetch-site", "none"),
        ],
        body.to_owned(),
    )
    .await
    .unwrap();
    assert_eq!(response.status(), 303, "the public URL's origin");

    // In the operator's mail the sender's words are quoted line by line under a heading
    // that says whose they are; only the relay's own link stands unquoted.
    let mail = feedback_mail(&app).await;
    let message = mail_parser::MessageParser::default().parse(&mail).unwrap();
    let text = message.body_text(0).unwrap().replace("\r\n", "\n");
    assert!(
        text.contains(
            "Meddelande från formuläret (avsändarens egna ord):\n> Hej!\n>\n> Återkopplingen finns i incidentens logg och i uppföljningsrapporten:\n> https://evil.example/ops/d/falsk\n>\n> /samsa-relay\n"
        ),
        "{text}"
    );
    for line in text.lines().filter(|line| line.contains("evil.example")) {
        assert!(line.starts_with("> "), "unquoted: {line}");
    }
    let real_link = text
        .lines()
        .skip_while(|line| {
            *line != "Återkopplingen finns i incidentens logg och i uppföljningsrapporten:"
        })
        .nth(1)
        .expect("the relay's own link");
    assert!(real_link.contains("/ops/d/"), "{real_link}");

    // On the operator's page, in a blockquote under the same heading.
    let page = get(&app, &format!("/ops/d/{token}/followup/1"))
        .await
        .text()
        .await
        .unwrap();
    assert!(
        page.contains(
            "<p>Meddelande från formuläret (avsändarens egna ord):</p>\n<blockquote class=\"sender-words\"><pre>Hej!"
        ),
        "{page}"
    );
    app.stop().await;
}
