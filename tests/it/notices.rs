//! The rendered notices, channel by channel, against golden files in `tests/golden/`.
//!
//! Each case renders one notice with the shipped templates and compares a readable dump of
//! every field with `tests/golden/<case>.txt`. After an intended wording change, regenerate
//! with `UPDATE_GOLDEN=1 cargo test --test it notices::`, then read the diff before committing:
//! the golden files are what a Swedish IT manager will read at 3 a.m.
//!
//! The last tests feed hostile label values through the whole path (labels -> scope ->
//! summary -> classification -> notice) and check what comes out.

use std::path::PathBuf;

use jiff::Timestamp;
use samsa_relay::classify::{AlertScope, alert_scopes, classify, summarize};
use samsa_relay::config::{IncidentsConfig, NoticesConfig};
use samsa_relay::inventory::Inventory;
use samsa_relay::notice::maintenance::{MaintenanceNotice, Step};
use samsa_relay::notice::{
    MAX_BANNER_CHARS, MAX_BODY_CHARS, MAX_SUBJECT_CHARS, MAX_TITLE_CHARS, NoticeInput, NoticeKind,
    NoticeRenderer, RenderedNotice,
};

/// A winter morning: 04:12 UTC is 05:12 in Stockholm (CET).
const WINTER_START: &str = "2026-11-28T04:12:00Z";
/// A summer afternoon: 13:05 UTC is 15:05 in Stockholm (CEST).
const SUMMER_START: &str = "2026-07-14T13:05:00Z";

#[test]
fn golden_one_actor() {
    let input = notice_input(
        NoticeKind::Initial,
        WINTER_START,
        &[actor("kommun-trollhattan")],
    );
    check_golden("one_actor", &input);
}

#[test]
fn golden_whole_subregion() {
    let input = notice_input(
        NoticeKind::Initial,
        WINTER_START,
        &[AlertScope::Subregion("fyrbodal".to_owned())],
    );
    assert_eq!(input.classification.level.as_number(), 2);
    check_golden("whole_subregion", &input);
}

#[test]
fn golden_majority_of_actors() {
    let inventory = Inventory::default_samsa();
    let mut scopes = vec![AlertScope::Subregion("skaraborg".to_owned())];
    scopes.extend(
        inventory
            .actors_in("goteborg")
            .take(15)
            .map(|found| actor(&found.id)),
    );
    let input = notice_input(NoticeKind::Initial, WINTER_START, &scopes);
    assert_eq!(input.classification.level.as_number(), 3);
    assert!(!input.summary.whole_service);
    check_golden("majority", &input);
}

#[test]
fn golden_whole_service() {
    let input = notice_input(NoticeKind::Initial, WINTER_START, &[AlertScope::Everything]);
    assert!(input.classification.crisis);
    check_golden("whole_service", &input);
}

#[test]
fn golden_update_with_expected_resolution_and_information() {
    let mut input = notice_input(
        NoticeKind::Update,
        SUMMER_START,
        &[
            actor("kommun-uddevalla"),
            actor("sjukhus-uddevalla"),
            actor("kommun-vanersborg"),
            actor("kommun-xyz"),
        ],
    );
    input.expected_resolution = Some(at("2026-07-14T16:30:00Z"));
    input.next_update = Some(at("2026-07-14T15:00:00Z"));
    input.additional_information = Some(
        "Felet ligger hos leverantören Cerner och gäller inloggning via SITHS-kort.\n\
         Reservrutin: kontakta mottagande enhet per telefon."
            .to_owned(),
    );
    check_golden("update", &input);
}

#[test]
fn golden_resolution() {
    let mut input = notice_input(
        NoticeKind::Resolved,
        SUMMER_START,
        &[AlertScope::Subregion("sodra-alvsborg".to_owned())],
    );
    input.resolved_at = Some(at("2026-07-14T15:33:00Z"));
    input.next_update = None;
    check_golden("resolved", &input);
}

#[test]
fn golden_drill() {
    let mut input = notice_input(NoticeKind::Initial, WINTER_START, &[AlertScope::Everything]);
    input.drill = true;
    let rendered = check_golden("drill", &input);
    for title in titles(&rendered) {
        assert!(title.starts_with("ÖVNING: "), "{title}");
    }
    for body in [
        &rendered.email_text,
        &rendered.website_body,
        &rendered.newsletter_body,
        &rendered.itnytt_body,
        &rendered.crisis_text,
    ] {
        assert!(body.starts_with("ÖVNING: Detta är en övning."), "{body}");
        assert!(
            body.ends_with("Ingen verklig driftstörning pågår."),
            "{body}"
        );
    }
    assert!(rendered.email_html.contains("ÖVNING: Detta är en övning."));
}

#[test]
fn hostile_labels_cannot_inject_html_or_headers() {
    let config = IncidentsConfig::default();
    let inventory = Inventory::default_samsa();
    let long_id = "a".repeat(10_000);
    let hostile_values = [
        "<script>alert(1)</script>",
        "\"\r\nBcc: evil@example.com",
        "x\nSubject: pwned",
        "\u{202E}moc.elpmaxe@live",
        long_id.as_str(),
    ];
    let mut scopes = Vec::new();
    for value in hostile_values {
        scopes.extend(alert_scopes(&labels(&[("actor", value)]), &config));
        scopes.extend(alert_scopes(&labels(&[("subregion", value)]), &config));
    }
    scopes.extend(alert_scopes(
        &labels(&[("actor", &format!("kommun-ale,{long_id},<script>x</script>"))]),
        &config,
    ));
    let summary = summarize(&scopes, &inventory);
    assert!(
        summary
            .unknown_actor_ids
            .iter()
            .all(|id| id.chars().count() <= 100)
    );
    let classification = classify(&summary, 0.5);
    let renderer = NoticeRenderer::new(&NoticesConfig::default()).unwrap();

    for kind in [
        NoticeKind::Initial,
        NoticeKind::Update,
        NoticeKind::Resolved,
    ] {
        for drill in [false, true] {
            for level_three in [false, true] {
                let mut classification = classification.clone();
                if level_three {
                    classification.level = samsa_relay::classify::Level::Three;
                    classification.crisis = true;
                }
                let input = NoticeInput {
                    kind,
                    incident_id: 7,
                    started_at: at(WINTER_START),
                    resolved_at: Some(at("2026-11-28T06:00:00Z")),
                    summary: summary.clone(),
                    classification,
                    expected_resolution: None,
                    next_update: None,
                    additional_information: Some(
                        "<script>alert('op')</script>\r\nBcc: evil@example.com".to_owned(),
                    ),
                    feedback_url: "https://relay.example/f?a=1&b=\"><script>".to_owned(),
                    drill,
                    maintenance: None,
                };
                let rendered = renderer.render(&input).unwrap();
                let html = rendered.email_html.to_lowercase();
                assert!(!html.contains("<script"), "{html}");
                // The link's quote cannot close the href attribute.
                assert!(html.contains("&amp;b=&quot;&gt;&lt;script&gt;"), "{html}");
                for title in titles(&rendered) {
                    assert!(!title.contains(['\r', '\n']), "{title:?}");
                    assert!(!title.contains('\u{202E}'), "{title:?}");
                }
                assert!(rendered.email_subject.chars().count() <= MAX_SUBJECT_CHARS);
                assert!(rendered.crisis_subject.chars().count() <= MAX_SUBJECT_CHARS);
                assert!(rendered.banner_text.chars().count() <= MAX_BANNER_CHARS);
                for title in [
                    &rendered.website_title,
                    &rendered.newsletter_title,
                    &rendered.itnytt_title,
                ] {
                    assert!(title.chars().count() <= MAX_TITLE_CHARS);
                }
                for body in bodies(&rendered) {
                    assert!(body.chars().count() <= MAX_BODY_CHARS);
                    assert!(!body.contains('\r'));
                    assert!(!body.contains('\u{202E}'));
                    // A forged line must not appear: the ids' line breaks became spaces.
                    assert!(!body.contains("\nSubject: pwned"), "{body}");
                }
                assert!(rendered.email_html.len() < 40_000);
            }
        }
    }
}

#[test]
fn thousands_of_unknown_ids_stay_short() {
    let scopes: Vec<AlertScope> = (0..5_000)
        .map(|index| actor(&format!("okand-{index:05}-{}", "x".repeat(90))))
        .collect();
    let mut input = notice_input(NoticeKind::Initial, WINTER_START, &scopes);
    input.additional_information = Some("y".repeat(50_000));
    assert_eq!(input.summary.unknown_actor_ids.len(), 5_000);
    let rendered = NoticeRenderer::new(&NoticesConfig::default())
        .unwrap()
        .render(&input)
        .unwrap();
    assert!(rendered.email_text.contains("och 4990 till"));
    assert!(rendered.email_text.chars().count() < 8_000);
    assert!(rendered.email_html.len() < 20_000);
}

// ---- planned maintenance ----

/// Tuesday 8 December 2026, 18:00–22:00 in Stockholm (CET).
const WINTER_WINDOW: (&str, &str, &str) = (
    "2026-12-08T17:00:00Z",
    "2026-12-08T21:00:00Z",
    "tisdag 8 december 2026 kl. 18:00–22:00",
);
/// Sunday 14 June 2026 22:00 to Monday 02:30 in Stockholm (CEST): two dates.
const SUMMER_NIGHT_WINDOW: (&str, &str, &str) = (
    "2026-06-14T20:00:00Z",
    "2026-06-15T00:30:00Z",
    "söndag 14 juni 2026 kl. 22:00 – måndag 15 juni 2026 kl. 02:30",
);

fn every_step() -> Vec<Step> {
    vec![
        Step::Announcement,
        Step::Reminder {
            before_minutes: 24 * 60,
        },
        Step::Reminder { before_minutes: 60 },
        Step::Started,
        Step::Completed,
        Step::Overran,
        Step::Moved {
            previous_starts_at: at("2026-12-01T17:00:00Z"),
            previous_ends_at: at("2026-12-01T19:00:00Z"),
        },
        Step::Cancelled,
    ]
}

/// A window's notice as the relay drafts it: the window's scope summarized and
/// classified like an incident's.
fn maintenance_input(step: Step, window: (&str, &str, &str), scopes: &[AlertScope]) -> NoticeInput {
    let mut input = notice_input(step.notice_kind(), window.0, scopes);
    input.next_update = None;
    input.maintenance = Some(MaintenanceNotice {
        title: "Uppgradering av SAMSA till version 5.2".to_owned(),
        starts_at: at(window.0),
        ends_at: at(window.1),
        impact: "SAMSA går inte att nå under underhållet.".to_owned(),
        advice: "Använd er reservrutin för vårdövergångar.".to_owned(),
        step,
    });
    input
}

fn render_default(input: &NoticeInput) -> RenderedNotice {
    NoticeRenderer::new(&NoticesConfig::default())
        .unwrap()
        .render(input)
        .unwrap()
}

#[test]
fn golden_maintenance_announcement() {
    let input = maintenance_input(
        Step::Announcement,
        WINTER_WINDOW,
        &[actor("kommun-skovde"), actor("sjukhus-skas-skovde")],
    );
    let rendered = check_golden("maintenance_announcement", &input);
    assert_eq!(
        rendered.email_subject,
        "Planerat underhåll i SAMSA – kommunen Skövde och Skaraborgs Sjukhus Skövde: tisdag 8 december 2026 kl. 18:00–22:00"
    );
}

#[test]
fn golden_maintenance_completed() {
    let input = maintenance_input(
        Step::Completed,
        WINTER_WINDOW,
        &[AlertScope::Subregion("skaraborg".to_owned())],
    );
    let rendered = check_golden("maintenance_completed", &input);
    assert_eq!(
        rendered.banner_text,
        "Det planerade underhållet av SAMSA är klart. Användare inom hela Skaraborg kan använda SAMSA igen."
    );
}

#[test]
fn maintenance_every_step_renders_on_every_channel_in_stockholm_time() {
    let renderer = NoticeRenderer::new(&NoticesConfig::default()).unwrap();
    let scopes_cases: [&[AlertScope]; 3] = [
        &[actor("kommun-skovde")],
        &[AlertScope::Subregion("fyrbodal".to_owned())],
        &[AlertScope::Everything],
    ];
    for window in [WINTER_WINDOW, SUMMER_NIGHT_WINDOW] {
        for scopes in scopes_cases {
            for step in every_step() {
                // A drill flag is ignored: planned maintenance is never an exercise.
                let mut input = maintenance_input(step.clone(), window, scopes);
                input.drill = true;
                let rendered = renderer.render(&input).unwrap();
                let case = format!("{} {window:?} {scopes:?}", step.key());
                let expected_heading = match step {
                    Step::Announcement => "Planerat underhåll i SAMSA",
                    Step::Reminder { .. } => "Påminnelse: planerat underhåll i SAMSA",
                    Step::Started => "Underhållet har börjat",
                    Step::Completed => "Underhållet är klart",
                    Step::Overran => "Underhållet tar längre tid än planerat",
                    Step::Moved { .. } => "Underhållet är flyttat",
                    Step::Cancelled => "Underhållet är inställt",
                };
                for title in titles(&rendered) {
                    if title.is_empty() {
                        continue;
                    }
                    assert!(!title.contains("ÖVNING"), "{case}: {title}");
                    assert!(!title.contains('\n'), "{case}: {title:?}");
                }
                for title in [
                    &rendered.email_subject,
                    &rendered.website_title,
                    &rendered.newsletter_title,
                    &rendered.itnytt_title,
                ] {
                    assert!(title.starts_with(expected_heading), "{case}: {title}");
                    assert!(title.chars().count() <= MAX_TITLE_CHARS, "{case}: {title}");
                }
                // Every body says when, in Stockholm time (the planned period).
                for body in [
                    &rendered.email_text,
                    &rendered.website_body,
                    &rendered.newsletter_body,
                    &rendered.itnytt_body,
                ] {
                    assert!(body.contains(window.2), "{case}: {body}");
                    assert!(!body.contains("ÖVNING"), "{case}: {body}");
                    assert!(!body.contains("störning"), "{case}: {body}");
                    assert!(
                        body.contains("Uppgradering av SAMSA till version 5.2"),
                        "{case}: {body}"
                    );
                }
                assert!(rendered.email_html.contains(window.2), "{case}");
                assert!(!rendered.email_html.contains("ÖVNING"), "{case}");
                let banner = &rendered.banner_text;
                assert!(!banner.is_empty(), "{case}");
                assert!(
                    banner.chars().count() <= MAX_BANNER_CHARS,
                    "{case}: {banner}"
                );
                assert!(!banner.contains("Driftstörning"), "{case}: {banner}");
                assert!(!banner.contains('…'), "{case}: cut: {banner}");
                // The crisis email goes out at level 3 only, like a disruption's.
                let level_three = input.classification.level.as_number() == 3;
                assert_eq!(!rendered.crisis_text.is_empty(), level_three, "{case}");
                if level_three {
                    assert!(rendered.crisis_text.contains(window.2), "{case}");
                    assert!(rendered.crisis_subject.starts_with(expected_heading));
                }
                match &step {
                    Step::Reminder { before_minutes: 60 } => {
                        assert!(rendered.email_subject.contains("om 1 timme"), "{case}")
                    }
                    Step::Reminder { .. } => {
                        assert!(rendered.email_subject.contains("i morgon"), "{case}")
                    }
                    Step::Moved { .. } => assert!(
                        rendered.email_text.contains(
                            "Tidigare planerad tid: tisdag 1 december 2026 kl. 18:00–20:00"
                        ),
                        "{case}"
                    ),
                    Step::Started => assert!(banner.contains("pågår till"), "{case}: {banner}"),
                    Step::Completed => {
                        assert!(rendered.email_text.contains("återgå till ordinarie rutin"))
                    }
                    Step::Cancelled => assert!(
                        rendered
                            .email_text
                            .contains("SAMSA fungerar som vanligt och ni behöver inte göra något"),
                        "{case}"
                    ),
                    _ => {}
                }
            }
        }
    }
}

#[test]
fn maintenance_html_escapes_the_operators_text() {
    for step in every_step() {
        let mut input = maintenance_input(step, WINTER_WINDOW, &[AlertScope::Everything]);
        let notice = input.maintenance.as_mut().unwrap();
        notice.title = "<script>alert('titel')</script>\r\nBcc: evil@example.com".to_owned();
        notice.impact = "<img src=x onerror=alert(1)>".to_owned();
        notice.advice = "<b>fet</b> & \"citat\"".to_owned();
        input.additional_information = Some("<iframe src=x>".to_owned());
        let rendered = render_default(&input);
        let html = rendered.email_html.to_lowercase();
        for raw in ["<script", "<img", "<b>", "<iframe"] {
            assert!(!html.contains(raw), "{raw} in {html}");
        }
        assert!(html.contains("&lt;script&gt;"), "{html}");
        for title in titles(&rendered) {
            assert!(!title.contains(['\r', '\n']), "{title:?}");
        }
        for body in bodies(&rendered) {
            assert!(!body.contains("\nBcc:"), "{body}");
        }
    }
}

#[test]
fn a_templates_dir_overrides_one_maintenance_file_and_the_rest_fall_back() {
    let folder = tempfile::tempdir().unwrap();
    std::fs::write(
        folder.path().join("maintenance_banner.txt"),
        "Underhåll {{ maintenance.period }} ({{ maintenance.step }}): {{ scope.short }}",
    )
    .unwrap();
    let config = NoticesConfig {
        templates_dir: Some(folder.path().to_owned()),
        ..NoticesConfig::default()
    };
    let renderer = NoticeRenderer::new(&config).unwrap();
    assert_eq!(renderer.check(), Vec::<String>::new());
    let input = maintenance_input(Step::Started, WINTER_WINDOW, &[actor("kommun-skovde")]);
    let custom = renderer.render(&input).unwrap();
    assert_eq!(
        custom.banner_text,
        "Underhåll tisdag 8 december 2026 kl. 18:00–22:00 (started): kommunen Skövde"
    );
    // Every other file is the embedded one.
    let embedded = render_default(&input);
    assert_eq!(custom.email_text, embedded.email_text);
    assert_eq!(custom.email_html, embedded.email_html);
    assert_eq!(custom.itnytt_body, embedded.itnytt_body);
    assert_ne!(custom.banner_text, embedded.banner_text);
    // A disruption's banner is not the maintenance one.
    let incident = notice_input(NoticeKind::Initial, WINTER_START, &[actor("kommun-skovde")]);
    assert!(
        renderer
            .render(&incident)
            .unwrap()
            .banner_text
            .starts_with("Driftstörning sedan")
    );

    // A broken maintenance template is found by the check of the samples.
    std::fs::write(
        folder.path().join("maintenance_itnytt.txt"),
        "{% block title %}{{ maintenance.oops }}{% endblock %}{% block body %}x{% endblock %}",
    )
    .unwrap();
    let problems = samsa_relay::notice::template_problems(&config);
    assert!(
        problems
            .iter()
            .any(|problem| problem.contains("maintenance_itnytt.txt")),
        "{problems:?}"
    );
}

// ---- helpers ----

fn actor(id: &str) -> AlertScope {
    AlertScope::Actor(id.to_owned())
}

fn at(text: &str) -> Timestamp {
    text.parse().unwrap()
}

fn labels(pairs: &[(&str, &str)]) -> samsa_relay::alertmanager::LabelMap {
    pairs.iter().copied().collect()
}

/// A notice as the relay drafts it: scope summarized with the shipped inventory, level
/// suggested with the default threshold, next update one hour after the start.
fn notice_input(kind: NoticeKind, started_at: &str, scopes: &[AlertScope]) -> NoticeInput {
    let summary = summarize(scopes, &Inventory::default_samsa());
    let classification = classify(&summary, IncidentsConfig::default().broad_subregion_share);
    let started_at = at(started_at);
    NoticeInput {
        kind,
        incident_id: 42,
        started_at,
        resolved_at: None,
        summary,
        classification,
        expected_resolution: None,
        next_update: Some(
            started_at
                .checked_add(jiff::SignedDuration::from_hours(1))
                .unwrap(),
        ),
        additional_information: None,
        feedback_url: "https://samsa-relay.example/aterkoppling/42?t=abc123".to_owned(),
        drill: false,
        maintenance: None,
    }
}

fn titles(rendered: &RenderedNotice) -> [&String; 6] {
    [
        &rendered.email_subject,
        &rendered.banner_text,
        &rendered.website_title,
        &rendered.newsletter_title,
        &rendered.itnytt_title,
        &rendered.crisis_subject,
    ]
}

fn bodies(rendered: &RenderedNotice) -> [&String; 5] {
    [
        &rendered.email_text,
        &rendered.website_body,
        &rendered.newsletter_body,
        &rendered.itnytt_body,
        &rendered.crisis_text,
    ]
}

/// Every field of a notice, one section per channel, in a form that diffs well.
fn dump(input: &NoticeInput, rendered: &RenderedNotice) -> String {
    let fields: [(&str, &String); 12] = [
        ("email_subject", &rendered.email_subject),
        ("email_text", &rendered.email_text),
        ("email_html", &rendered.email_html),
        ("banner_text", &rendered.banner_text),
        ("website_title", &rendered.website_title),
        ("website_body", &rendered.website_body),
        ("newsletter_title", &rendered.newsletter_title),
        ("newsletter_body", &rendered.newsletter_body),
        ("itnytt_title", &rendered.itnytt_title),
        ("itnytt_body", &rendered.itnytt_body),
        ("crisis_subject", &rendered.crisis_subject),
        ("crisis_text", &rendered.crisis_text),
    ];
    let mut text = format!(
        "# kind={} level={} crisis={} drill={} reasons={:?}\n",
        input.kind.as_str(),
        input.classification.level.as_number(),
        input.classification.crisis,
        input.drill,
        input.classification.reasons
    );
    for (name, value) in fields {
        text.push_str(&format!("\n===== {name} =====\n"));
        if value.is_empty() {
            text.push_str("(tomt)\n");
        } else {
            text.push_str(value.trim_end_matches('\n'));
            text.push('\n');
        }
    }
    text
}

/// Renders, then compares with (or, with UPDATE_GOLDEN=1, writes) the golden file.
fn check_golden(case: &str, input: &NoticeInput) -> RenderedNotice {
    let rendered = NoticeRenderer::new(&NoticesConfig::default())
        .unwrap()
        .render(input)
        .unwrap();
    let actual = dump(input, &rendered);
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/golden")
        .join(format!("{case}.txt"));
    if std::env::var_os("UPDATE_GOLDEN").is_some_and(|value| !value.is_empty() && value != "0") {
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(&path, &actual).unwrap();
        return rendered;
    }
    let expected = std::fs::read_to_string(&path).unwrap_or_else(|error| {
        panic!(
            "cannot read {}: {error}\nrun UPDATE_GOLDEN=1 cargo test --test it notices:: to create it",
            path.display()
        )
    });
    if expected != actual {
        let expected_lines: Vec<&str> = expected.lines().collect();
        let actual_lines: Vec<&str> = actual.lines().collect();
        let first_difference = (0..expected_lines.len().max(actual_lines.len()))
            .find(|&index| expected_lines.get(index) != actual_lines.get(index))
            .unwrap_or(0);
        panic!(
            "{} differs from the rendered notice at line {}:\n  expected: {:?}\n  actual:   {:?}\n\
             If the change is intended, run UPDATE_GOLDEN=1 cargo test --test it notices:: and review the diff.",
            path.display(),
            first_difference + 1,
            expected_lines
                .get(first_difference)
                .copied()
                .unwrap_or("(end of file)"),
            actual_lines
                .get(first_difference)
                .copied()
                .unwrap_or("(end of file)"),
        );
    }
    rendered
}
