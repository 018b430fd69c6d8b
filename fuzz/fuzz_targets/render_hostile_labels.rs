//! Notices rendered from hostile alert labels and operator text, through the same steps as
//! the incident worker: `alert_scopes` -> `summarize` -> `classify` -> `NoticeRenderer::render`
//! with the embedded templates.
//!
//! The input is text, so that the seeds in fuzz/corpus/render_hostile_labels can be read
//! and written by hand (invalid UTF-8 becomes U+FFFD):
//!
//! ```text
//! #kind update            initial (the default), update or resolved
//! #drill                  a drill
//! #level 3                the operator's level (1, 2 or 3) instead of the suggested one
//! #started 1795752720     Unix seconds; also #resolved, #expected and #next
//! #info some text         a line of operator text ("Övrig information"); repeatable
//! actor=kommun-boras      a label of the current alert (any name; `actor`, `subregion`
//! scope=all               and `scope` are the ones that matter)
//! ---                     the next alert
//! ```
//!
//! In values and #info text `\n`, `\r`, `\t` and `\\` stand for those characters, so a
//! seed can carry line breaks into a label. Annotations are not in the format: no
//! template shows them (they are only stored), operator text stands in for free text.
//!
//! Checks, besides "never panics" and "never fails":
//! - HTML: every `<` opens a tag that `email.html` itself uses, and `<` and `>` pair up,
//!   so no label or operator text reaches the HTML unescaped (no `<script`);
//! - subjects, titles and the banner: one line (no CR, LF, control or direction
//!   characters, no surrounding space), within their length limits;
//! - text bodies: no control characters but `\n`, within `MAX_BODY_CHARS`;
//! - a drill is marked on every subject, title and banner and at both ends of every body;
//! - the crisis email is there exactly at level 3 or crisis.
#![no_main]

use std::collections::{BTreeMap, BTreeSet};
use std::sync::LazyLock;

use jiff::Timestamp;
use libfuzzer_sys::fuzz_target;
use samsa_relay::classify::{Level, alert_scopes, classify, summarize};
use samsa_relay::config::{IncidentsConfig, NoticesConfig};
use samsa_relay::inventory::Inventory;
use samsa_relay::notice::{
    DRILL_NOTE, DRILL_PREFIX, MAX_BANNER_CHARS, MAX_BODY_CHARS, MAX_SUBJECT_CHARS, MAX_TITLE_CHARS,
    NoticeInput, NoticeKind, NoticeRenderer, TEMPLATES,
};

static INCIDENTS: LazyLock<IncidentsConfig> = LazyLock::new(IncidentsConfig::default);
static INVENTORY: LazyLock<Inventory> = LazyLock::new(Inventory::default_samsa);
static RENDERER: LazyLock<NoticeRenderer> = LazyLock::new(|| {
    NoticeRenderer::new(&NoticesConfig::default()).expect("the embedded templates compile")
});
/// The tags `email.html` writes itself; any other tag in the output came from input.
static TEMPLATE_TAGS: LazyLock<BTreeSet<String>> = LazyLock::new(|| {
    let (_, html) = TEMPLATES
        .iter()
        .find(|(name, _)| *name == "email.html")
        .expect("email.html is a template");
    let mut tags = BTreeSet::new();
    let mut rest = *html;
    while let Some(at) = rest.find('<') {
        rest = &rest[at + 1..];
        if let Some(tag) = tag_name(rest) {
            tags.insert(tag);
        }
    }
    tags
});

/// Most alerts and lines read from one input; more only slows the fuzzer down.
const MAX_ALERTS: usize = 100;
const MAX_LINES: usize = 2_000;

struct Case {
    kind: NoticeKind,
    drill: bool,
    level: Option<Level>,
    started_at: Timestamp,
    resolved_at: Option<Timestamp>,
    expected_resolution: Option<Timestamp>,
    next_update: Option<Timestamp>,
    information: Option<String>,
    alerts: Vec<BTreeMap<String, String>>,
}

fuzz_target!(|data: &[u8]| {
    let case = read_case(&String::from_utf8_lossy(data));

    let scopes: Vec<_> = case
        .alerts
        .iter()
        .flat_map(|labels| alert_scopes(&labels.clone().into(), &INCIDENTS))
        .collect();
    let summary = summarize(&scopes, &INVENTORY);
    let suggested = classify(&summary, INCIDENTS.broad_subregion_share);
    // The operator's level, as `notice_input` applies it.
    let classification = match case.level {
        Some(level) => suggested.at_level(level),
        None => suggested,
    };
    let crisis = classification.level == Level::Three || classification.crisis;
    let input = NoticeInput {
        kind: case.kind,
        incident_id: 42,
        started_at: case.started_at,
        resolved_at: case.resolved_at,
        summary,
        classification,
        expected_resolution: case.expected_resolution,
        next_update: case.next_update,
        additional_information: case.information,
        feedback_url: "https://samsa-relay.example/public/feedback/42".to_owned(),
        drill: case.drill,
        maintenance: None,
    };
    let notice = RENDERER
        .render(&input)
        .unwrap_or_else(|error| panic!("the embedded templates failed: {error:#}"));

    check_html(&notice.email_html);
    let mut titles = vec![
        ("email_subject", &notice.email_subject, MAX_SUBJECT_CHARS),
        ("banner_text", &notice.banner_text, MAX_BANNER_CHARS),
        ("website_title", &notice.website_title, MAX_TITLE_CHARS),
        (
            "newsletter_title",
            &notice.newsletter_title,
            MAX_TITLE_CHARS,
        ),
        ("itnytt_title", &notice.itnytt_title, MAX_TITLE_CHARS),
    ];
    let mut bodies = vec![
        ("email_text", &notice.email_text),
        ("website_body", &notice.website_body),
        ("newsletter_body", &notice.newsletter_body),
        ("itnytt_body", &notice.itnytt_body),
    ];
    if crisis {
        titles.push(("crisis_subject", &notice.crisis_subject, MAX_SUBJECT_CHARS));
        bodies.push(("crisis_text", &notice.crisis_text));
    } else {
        assert!(
            notice.crisis_subject.is_empty() && notice.crisis_text.is_empty(),
            "a crisis email below level 3"
        );
    }
    for (field, title, max_chars) in titles {
        check_title(field, title, max_chars);
        if case.drill {
            assert!(
                title.starts_with(DRILL_PREFIX),
                "{field} of a drill: {title:?}"
            );
        }
    }
    for (field, body) in bodies {
        check_body(field, body);
        if case.drill {
            assert!(
                body.starts_with(DRILL_NOTE) && body.ends_with(DRILL_NOTE),
                "{field} of a drill is not marked at both ends"
            );
        }
    }
    if case.drill {
        assert!(
            notice.email_html.contains("ÖVNING"),
            "email_html of a drill"
        );
    }
});

fn read_case(text: &str) -> Case {
    let started_at: Timestamp = "2026-11-28T04:12:00Z".parse().expect("a valid timestamp");
    let mut case = Case {
        kind: NoticeKind::Initial,
        drill: false,
        level: None,
        started_at,
        resolved_at: None,
        expected_resolution: None,
        next_update: None,
        information: None,
        alerts: vec![BTreeMap::new()],
    };
    for line in text.split('\n').take(MAX_LINES) {
        if line == "---" {
            if case.alerts.len() < MAX_ALERTS {
                case.alerts.push(BTreeMap::new());
            }
            continue;
        }
        if let Some(directive) = line.strip_prefix('#') {
            let (name, value) = directive.split_once(' ').unwrap_or((directive, ""));
            let time = || {
                value
                    .trim()
                    .parse::<i64>()
                    .ok()
                    .and_then(|second| Timestamp::from_second(second).ok())
            };
            match name {
                "kind" => {
                    case.kind = match value.trim() {
                        "update" => NoticeKind::Update,
                        "resolved" => NoticeKind::Resolved,
                        _ => NoticeKind::Initial,
                    }
                }
                "drill" => case.drill = true,
                "level" => case.level = value.trim().parse().ok().and_then(Level::from_number),
                "started" => case.started_at = time().unwrap_or(started_at),
                "resolved" => case.resolved_at = time(),
                "expected" => case.expected_resolution = time(),
                "next" => case.next_update = time(),
                "info" => {
                    let information = case.information.get_or_insert_with(String::new);
                    information.push_str(&unescape(value));
                    information.push('\n');
                }
                _ => {}
            }
            continue;
        }
        if let Some((name, value)) = line.split_once('=') {
            let labels = case.alerts.last_mut().expect("there is always an alert");
            labels.insert(unescape(name), unescape(value));
        }
    }
    case
}

fn unescape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut characters = text.chars();
    while let Some(character) = characters.next() {
        if character != '\\' {
            out.push(character);
            continue;
        }
        match characters.next() {
            Some('n') => out.push('\n'),
            Some('r') => out.push('\r'),
            Some('t') => out.push('\t'),
            Some(other) => out.push(other),
            None => out.push('\\'),
        }
    }
    out
}

/// The name of the tag that `after_lt` (the text after a `<`) opens or closes, lowercase,
/// with `/` or `!` in front when there is one.
fn tag_name(after_lt: &str) -> Option<String> {
    let (prefix, rest) = match after_lt.chars().next()? {
        '/' | '!' => after_lt.split_at(1),
        _ => ("", after_lt),
    };
    let name: String = rest
        .chars()
        .take_while(char::is_ascii_alphanumeric)
        .collect();
    (!name.is_empty()).then(|| format!("{prefix}{}", name.to_ascii_lowercase()))
}

fn check_html(html: &str) {
    let lowercase = html.to_lowercase();
    assert!(!lowercase.contains("<script"), "<script in email_html");
    assert_eq!(
        html.matches('<').count(),
        html.matches('>').count(),
        "unpaired < or > in email_html"
    );
    let mut rest = html;
    while let Some(at) = rest.find('<') {
        rest = &rest[at + 1..];
        let tag = tag_name(rest);
        assert!(
            tag.as_ref().is_some_and(|tag| TEMPLATE_TAGS.contains(tag)),
            "email_html has a tag the template does not: <{}",
            rest.chars().take(40).collect::<String>()
        );
    }
}

/// Control characters, and characters that break or reorder a line of text.
fn breaks_a_line(character: char) -> bool {
    character.is_control()
        || matches!(
            character,
            '\u{2028}' | '\u{2029}' | '\u{202A}'..='\u{202E}' | '\u{2066}'..='\u{2069}'
        )
}

fn check_title(field: &str, title: &str, max_chars: usize) {
    assert!(
        !title.chars().any(breaks_a_line),
        "{field} is not one line: {title:?}"
    );
    assert_eq!(title.trim(), title, "{field} has surrounding space");
    assert!(
        title.chars().count() <= max_chars,
        "{field} is longer than {max_chars} characters"
    );
}

fn check_body(field: &str, body: &str) {
    assert!(
        !body
            .chars()
            .any(|character| character != '\n' && breaks_a_line(character)),
        "{field} has a control character: {body:?}"
    );
    assert!(
        body.chars().count() <= MAX_BODY_CHARS,
        "{field} is longer than {MAX_BODY_CHARS} characters"
    );
}
