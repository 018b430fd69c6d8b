//! Unit tests of the pure follow-up logic: the scope replay and downtime per sub-region,
//! durations, text hygiene of feedback, Markdown and CSV escaping.

use std::collections::BTreeMap;

use jiff::Timestamp;
use serde_json::json;

use super::export::{csv_cell, median};
use super::render::{quote_markdown, relative_offset};
use super::*;
use crate::classify::{Classification, Level, summarize};
use crate::incident::{Incident, Phase};
use crate::storage::{EventRecord, FollowupSnapshot, IncidentRecord};

fn config() -> Config {
    Config::from_toml(
        r#"
[webhook]
token = "unit-test-webhook-token-0123"
[links]
secret = "a-link-secret-of-sufficient-length-0123456789"
"#,
        &BTreeMap::new(),
    )
    .expect("valid test config")
}

fn at(text: &str) -> Timestamp {
    text.parse().unwrap()
}

struct Log {
    events: Vec<EventRecord>,
}

impl Log {
    fn push(&mut self, at_text: &str, source: &str, event: &str, detail: serde_json::Value) {
        self.events.push(EventRecord {
            event_id: self.events.len() as i64 + 1,
            incident_id: 1,
            at: at(at_text),
            source: source.to_owned(),
            event: event.to_owned(),
            detail,
        });
    }

    fn firing(
        &mut self,
        received: &str,
        fingerprint: &str,
        starts_at: &str,
        labels: serde_json::Value,
    ) {
        self.push(
            received,
            "alertmanager",
            "alert_firing",
            json!({"fingerprint": fingerprint, "starts_at": starts_at, "labels": labels}),
        );
    }

    fn resolved(&mut self, received: &str, fingerprint: &str, starts_at: &str) {
        self.push(
            received,
            "alertmanager",
            "alert_resolved",
            json!({"fingerprint": fingerprint, "starts_at": starts_at}),
        );
    }
}

fn snapshot(
    config: &Config,
    kind: &str,
    resolved_at: Option<&str>,
    events: Vec<EventRecord>,
) -> FollowupSnapshot {
    let summary = summarize(&[], &config.inventory);
    let resolved_at = resolved_at.map(at);
    FollowupSnapshot {
        incident: IncidentRecord {
            incident_id: 1,
            kind: crate::incident::IncidentKind::parse(kind).expect("a known kind"),
            resolved_at,
            incident: Incident {
                incident_id: 1,
                phase: match resolved_at {
                    Some(at) => Phase::Resolved { at },
                    None => Phase::Open,
                },
                started_at: at("2026-11-28T04:10:00Z"),
                alerts: BTreeMap::new(),
                summary,
                classification: Classification {
                    level: Level::Two,
                    crisis: false,
                    reasons: vec!["Hela Fyrbodal påverkas".to_owned()],
                },
                published: None,
                pending_draft: None,
                n_reopened: 0,
            },
        },
        events,
        drafts: Vec::new(),
        notices: Vec::new(),
        deliveries: Vec::new(),
        outbox_targets: BTreeMap::new(),
        operator_mail: Vec::new(),
        feedback: Vec::new(),
        lessons: Vec::new(),
    }
}

fn subregion<'report>(report: &'report IncidentReport, id: &str) -> &'report SubregionReport {
    report
        .scope
        .subregions
        .iter()
        .find(|subregion| subregion.id == id)
        .unwrap()
}

#[test]
fn scope_is_replayed_per_subregion_with_downtime_from_start_to_resolution() {
    let config = config();
    let mut log = Log { events: Vec::new() };
    log.firing(
        "2026-11-28T04:10:30Z",
        "a",
        "2026-11-28T04:10:00Z",
        json!({"alertname": "SamsaLoginDown", "actor": "kommun-trollhattan"}),
    );
    log.firing(
        "2026-11-28T04:20:30Z",
        "b",
        "2026-11-28T04:20:00Z",
        json!({"alertname": "SamsaLoginDown", "subregion": "fyrbodal"}),
    );
    log.firing(
        "2026-11-28T04:30:30Z",
        "c",
        "2026-11-28T04:30:00Z",
        json!({"alertname": "SamsaLoginDown", "actor": "kommun-ale, nowhere"}),
    );
    log.resolved("2026-11-28T04:50:00Z", "b", "2026-11-28T04:20:00Z");
    log.resolved("2026-11-28T05:00:00Z", "c", "2026-11-28T04:30:00Z");
    log.resolved("2026-11-28T05:10:00Z", "a", "2026-11-28T04:10:00Z");
    let snapshot = snapshot(&config, "outage", Some("2026-11-28T05:10:00Z"), log.events);
    let report = assemble_report(&snapshot, &config, at("2026-11-28T08:00:00Z"));

    let fyrbodal = subregion(&report, "fyrbodal");
    assert_eq!(fyrbodal.downtime_seconds, 3600);
    assert_eq!(fyrbodal.max_affected, 17);
    assert!(fyrbodal.whole);
    assert_eq!(fyrbodal.first_affected_at, Some(at("2026-11-28T04:10:00Z")));
    assert_eq!(
        fyrbodal.last_affected_until,
        Some(at("2026-11-28T05:10:00Z"))
    );
    let goteborg = subregion(&report, "goteborg");
    assert_eq!(goteborg.downtime_seconds, 1800);
    assert_eq!(goteborg.max_affected, 1);
    assert!(!goteborg.whole);
    assert_eq!(subregion(&report, "skaraborg").downtime_seconds, 0);
    assert_eq!(report.scope.unknown_actor_ids, vec!["nowhere".to_owned()]);

    let counts: Vec<(usize, usize)> = report
        .scope
        .series
        .iter()
        .map(|point| (point.n_affected, point.affected_by_subregion["fyrbodal"]))
        .collect();
    assert_eq!(
        counts,
        vec![(1, 1), (17, 17), (18, 17), (2, 1), (1, 1), (0, 0)]
    );
    assert_eq!(report.incident.max_affected, 18);
    assert_eq!(report.durations.outage_seconds, 3600);
    assert!(!report.durations.ongoing);
    // Alerts of one webhook are one timeline line.
    assert_eq!(report.timeline.len(), 6);
    assert_eq!(
        report.timeline[2].text,
        "Larm började: SamsaLoginDown (Ale, okänd aktör nowhere)"
    );
}

#[test]
fn an_open_incident_counts_its_downtime_until_the_report_is_made() {
    let config = config();
    let mut log = Log { events: Vec::new() };
    log.firing(
        "2026-11-28T04:10:30Z",
        "a",
        "2026-11-28T04:10:00Z",
        json!({"alertname": "SamsaDown", "scope": "all"}),
    );
    let snapshot = snapshot(&config, "outage", None, log.events);
    let report = assemble_report(&snapshot, &config, at("2026-11-28T05:10:00Z"));
    assert!(report.durations.ongoing);
    assert_eq!(report.durations.outage_seconds, 3600);
    assert!(report.incident.whole_service);
    assert!(
        report
            .scope
            .subregions
            .iter()
            .all(|subregion| subregion.downtime_seconds == 3600 && subregion.whole)
    );
    assert_eq!(report.scope.series.len(), 1);
}

#[test]
fn a_drill_keeps_the_scope_the_operator_chose() {
    let config = config();
    let mut snapshot = snapshot(&config, "drill", Some("2026-11-28T04:40:00Z"), Vec::new());
    snapshot.incident.incident.summary = summarize(
        &[crate::classify::AlertScope::Subregion(
            "skaraborg".to_owned(),
        )],
        &config.inventory,
    );
    let report = assemble_report(&snapshot, &config, at("2026-11-28T08:00:00Z"));
    let skaraborg = subregion(&report, "skaraborg");
    assert_eq!(skaraborg.downtime_seconds, 30 * 60);
    assert!(skaraborg.whole);
    assert_eq!(report.incident.max_affected, skaraborg.n_actors);
}

#[test]
fn a_note_sits_at_the_time_the_operator_gave() {
    let config = config();
    let mut log = Log { events: Vec::new() };
    log.firing(
        "2026-11-28T04:10:30Z",
        "a",
        "2026-11-28T04:10:00Z",
        json!({"alertname": "SamsaDown", "actor": "kommun-boras"}),
    );
    log.push(
        "2026-11-28T04:20:00Z",
        "relay",
        "incident_resolved",
        json!({}),
    );
    log.push(
        "2026-11-28T05:10:00Z",
        "Anna Andersson",
        "note",
        json!({"text": "Cerner kallade till telefonkonferens", "occurred_at": "2026-11-28T04:15:00Z"}),
    );
    let snapshot = snapshot(&config, "outage", Some("2026-11-28T04:20:00Z"), log.events);
    let report = assemble_report(&snapshot, &config, at("2026-11-28T08:00:00Z"));
    let events: Vec<&str> = report
        .timeline
        .iter()
        .map(|entry| entry.event.as_str())
        .collect();
    assert_eq!(events, vec!["alert_firing", "note", "incident_resolved"]);
    let note = &report.timeline[1];
    assert_eq!(note.at, at("2026-11-28T04:15:00Z"));
    assert_eq!(note.recorded_at, Some(at("2026-11-28T05:10:00Z")));
    assert_eq!(note.source, "Anna Andersson");
    let lines = timeline_lines(&report);
    assert_eq!(
        lines[1].text,
        "Anteckning: Cerner kallade till telefonkonferens (antecknat 06:10)"
    );
    assert_eq!(lines[1].time, "05:15");
    assert_eq!(lines[1].offset, "5 min");
}

#[test]
fn feedback_is_cleaned_and_capped_per_field() {
    let feedback = Feedback::parse(
        "  Lisa\r\nBcc: evil@example.org ",
        "Borås\u{202e} stad",
        "Rad 1\r\nRad 2\u{7}\r\n\r\n\r\nRad 3",
    )
    .unwrap();
    assert_eq!(feedback.name(), "Lisa Bcc: evil@example.org");
    assert_eq!(feedback.organisation(), "Borås stad");
    assert_eq!(feedback.message(), "Rad 1\nRad 2\n\nRad 3");

    let exactly = "å".repeat(MAX_FEEDBACK_MESSAGE_CHARS);
    assert!(Feedback::parse("a", "b", &exactly).is_ok());
    let problems = Feedback::parse(
        &"n".repeat(MAX_FEEDBACK_NAME_CHARS + 1),
        " \r\n ",
        &format!("{exactly}x"),
    )
    .unwrap_err();
    let fields: Vec<&str> = problems.iter().map(|problem| problem.field).collect();
    assert_eq!(fields, vec!["name", "organisation", "message"]);
    assert_eq!(problems[0].message, "Ditt namn får vara högst 200 tecken.");
    assert_eq!(problems[1].message, "Skriv din organisation.");
    assert_eq!(
        problems[2].message,
        "Meddelandet får vara högst 5\u{a0}000 tecken."
    );
}

#[test]
fn markdown_escaping_leaves_no_markup() {
    assert_eq!(
        escape_markdown(
            "<script>alert(1)</script> *fet* _kursiv_ [länk](javascript:x) | # `kod` \\"
        ),
        "&lt;script&gt;alert(1)&lt;/script&gt; \\*fet\\* \\_kursiv\\_ \\[länk\\](javascript:x) \\| \\# \\`kod\\` \\\\"
    );
    assert_eq!(escape_markdown("rad 1\r\nrad 2"), "rad 1  rad 2");
    assert_eq!(
        quote_markdown("Hej!\n\n<b>fet</b>".to_owned()).to_string(),
        "> Hej!\n>\n> &lt;b&gt;fet&lt;/b&gt;"
    );
}

#[test]
fn csv_cells_are_quoted_and_never_formulas() {
    assert_eq!(csv_cell("42"), "42");
    assert_eq!(csv_cell("Södra Älvsborg"), "Södra Älvsborg");
    assert_eq!(csv_cell("a;b"), "\"a;b\"");
    assert_eq!(csv_cell("say \"hi\""), "\"say \"\"hi\"\"\"");
    assert_eq!(csv_cell("=1+2"), "'=1+2");
    assert_eq!(csv_cell("-5"), "'-5");
    assert_eq!(csv_cell("@SUM(A1)"), "'@SUM(A1)");
}

#[test]
fn the_median_is_the_middle_value() {
    assert_eq!(median(&[]), None);
    assert_eq!(median(&[7]), Some(7));
    assert_eq!(median(&[1, 5, 9]), Some(5));
    assert_eq!(median(&[1, 4, 6, 100]), Some(5));
}

#[test]
fn incident_references_and_offsets_read_as_people_write_them() {
    assert_eq!(parse_incident_reference("42"), Some(42));
    assert_eq!(parse_incident_reference("SAMSA-42"), Some(42));
    assert_eq!(parse_incident_reference("SAMSA-"), None);
    assert_eq!(parse_incident_reference("0"), None);
    assert_eq!(parse_incident_reference("tjugo"), None);
    let start = at("2026-11-28T04:10:00Z");
    assert_eq!(
        relative_offset(start, at("2026-11-28T05:15:59Z")),
        "1 tim 5 min"
    );
    assert_eq!(
        relative_offset(start, at("2026-11-28T04:08:00Z")),
        "2 min före"
    );
    assert_eq!(relative_offset(start, at("2026-11-28T04:38:00Z")), "28 min");
    assert_eq!(
        relative_offset(start, at("2026-12-03T09:14:00Z")),
        "5 dygn 5 tim",
        "not +125:04"
    );
    assert_eq!(swedish_number(5000), "5\u{a0}000");
    assert_eq!(swedish_number(200), "200");
}

#[test]
fn ten_thousand_alerts_replay_in_one_pass() {
    let config = config();
    let mut log = Log { events: Vec::new() };
    let actors: Vec<String> = config
        .inventory
        .actors()
        .iter()
        .map(|actor| actor.id.clone())
        .collect();
    for index in 0..10_000 {
        let starts_at =
            (at("2026-11-28T04:10:00Z") + jiff::SignedDuration::from_secs(index)).to_string();
        log.firing(
            "2026-11-28T05:00:00Z",
            &format!("f{index}"),
            &starts_at,
            json!({"alertname": "SamsaDown", "actor": actors[index as usize % actors.len()]}),
        );
    }
    for index in 0..10_000 {
        let starts_at =
            (at("2026-11-28T04:10:00Z") + jiff::SignedDuration::from_secs(index)).to_string();
        log.resolved("2026-11-28T06:00:00Z", &format!("f{index}"), &starts_at);
    }
    let snapshot = snapshot(&config, "outage", Some("2026-11-28T06:00:00Z"), log.events);
    let report = assemble_report(&snapshot, &config, at("2026-11-28T08:00:00Z"));
    assert_eq!(report.incident.max_affected, actors.len());
    assert!(report.incident.whole_service);
    assert_eq!(report.scope.series.last().unwrap().n_affected, 0);
    // One line per webhook, naming five alerts and counting the rest.
    assert_eq!(report.timeline.len(), 2);
    assert!(
        report.timeline[0]
            .text
            .starts_with("10000 larm började: SamsaDown (")
    );
    assert!(report.timeline[0].text.ends_with("och 9995 till"));
    assert_eq!(report.timeline[0].n_entries, 10_000);
}
