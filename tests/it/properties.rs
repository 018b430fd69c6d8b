//! Properties of the three places where untrusted input comes in: the webhook payload,
//! label values and operator text in rendered notices, and operator link tokens.
//!
//! These run with `cargo test` on a few hundred generated cases each. The fuzz targets in
//! fuzz/ check the same edges at much greater depth (scripts/fuzz.sh).

use std::collections::BTreeMap;
use std::sync::LazyLock;

use jiff::Timestamp;
use proptest::collection::{btree_map, vec};
use proptest::prelude::*;
use samsa_relay::alertmanager::{AlertStatus, Notification};
use samsa_relay::classify::{Level, alert_scopes, classify, summarize};
use samsa_relay::config::{IncidentsConfig, NoticesConfig, Secret};
use samsa_relay::inventory::Inventory;
use samsa_relay::links::{LinkClaims, LinkError, LinkPurpose, LinkSigner};
use samsa_relay::notice::{
    MAX_BANNER_CHARS, MAX_SUBJECT_CHARS, MAX_TITLE_CHARS, NoticeInput, NoticeKind, NoticeRenderer,
    RenderedNotice, TEMPLATES,
};
use serde_json::{Value, json};

static INCIDENTS: LazyLock<IncidentsConfig> = LazyLock::new(IncidentsConfig::default);
static INVENTORY: LazyLock<Inventory> = LazyLock::new(Inventory::default_samsa);
static RENDERER: LazyLock<NoticeRenderer> = LazyLock::new(|| {
    NoticeRenderer::new(&NoticesConfig::default()).expect("the embedded templates compile")
});

const EXAMPLE_PAYLOAD: &str = include_str!("../../deploy/examples/02-fyrbodal-firing.json");

// ---- The webhook payload ----

fn timestamp() -> impl Strategy<Value = Timestamp> {
    (
        Timestamp::MIN.as_second()..=Timestamp::MAX.as_second() - 1,
        0..1_000_000_000i32,
    )
        .prop_map(|(second, nanosecond)| Timestamp::new(second, nanosecond).expect("in range"))
}

/// After the Unix epoch: an `endsAt` the relay keeps (earlier ones mean "no end").
fn end_timestamp() -> impl Strategy<Value = Timestamp> {
    (1..=Timestamp::MAX.as_second() - 1, 0..1_000_000_000i32)
        .prop_map(|(second, nanosecond)| Timestamp::new(second, nanosecond).expect("in range"))
}

fn status() -> impl Strategy<Value = AlertStatus> {
    prop_oneof![Just(AlertStatus::Firing), Just(AlertStatus::Resolved)]
}

/// Any text, with a bias to what breaks things: quotes, backslashes, controls, markup.
fn text(max_chars: usize) -> impl Strategy<Value = String> {
    prop_oneof![
        4 => proptest::string::string_regex(&format!(".{{0,{max_chars}}}")).expect("a regex"),
        1 => proptest::string::string_regex(&format!(
            "[\"\\\\<>&'\\r\\n\\t\\u{{0}}\\u{{1b}}\\u{{2028}}\\u{{202e}}\\u{{feff}} a-z]{{0,{max_chars}}}"
        ))
        .expect("a regex"),
    ]
}

#[derive(Debug, Clone)]
struct GeneratedAlert {
    status: AlertStatus,
    labels: BTreeMap<String, String>,
    annotations: BTreeMap<String, String>,
    starts_at: Timestamp,
    ends_at: Option<Timestamp>,
    generator_url: String,
    fingerprint: String,
}

fn generated_alert() -> impl Strategy<Value = GeneratedAlert> {
    (
        status(),
        btree_map(text(20), text(60), 0..6),
        btree_map(text(20), text(200), 0..4),
        timestamp(),
        proptest::option::of(end_timestamp()),
        text(60),
        "[0-9a-f]{1,16}",
    )
        .prop_map(
            |(status, labels, annotations, starts_at, ends_at, generator_url, fingerprint)| {
                GeneratedAlert {
                    status,
                    labels,
                    annotations,
                    starts_at,
                    ends_at,
                    generator_url,
                    fingerprint,
                }
            },
        )
}

fn payload(
    group_key: &str,
    status: AlertStatus,
    external_url: &str,
    alerts: &[GeneratedAlert],
) -> Value {
    let alerts: Vec<Value> = alerts
        .iter()
        .map(|alert| {
            json!({
                "status": alert.status.as_str(),
                "labels": alert.labels,
                "annotations": alert.annotations,
                "startsAt": alert.starts_at.to_string(),
                "endsAt": alert
                    .ends_at
                    .map_or_else(|| "0001-01-01T00:00:00Z".to_owned(), |at| at.to_string()),
                "generatorURL": alert.generator_url,
                "fingerprint": alert.fingerprint,
            })
        })
        .collect();
    json!({
        "version": "4",
        "groupKey": group_key,
        "truncatedAlerts": 0,
        "status": status.as_str(),
        "receiver": "samsa-relay",
        "groupLabels": {},
        "commonLabels": {},
        "commonAnnotations": {},
        "externalURL": external_url,
        "alerts": alerts,
    })
}

proptest! {
    #[test]
    fn parse_never_panics_on_any_bytes(body in vec(any::<u8>(), 0..1_024)) {
        let _ = Notification::parse(&body);
    }

    #[test]
    fn parse_never_panics_on_a_damaged_real_payload(
        edits in vec((any::<prop::sample::Index>(), any::<u8>()), 1..8),
        cut in any::<prop::sample::Index>(),
    ) {
        let mut body = EXAMPLE_PAYLOAD.as_bytes().to_vec();
        for (at, byte) in edits {
            let at = at.index(body.len());
            body[at] = byte;
        }
        body.truncate(cut.index(body.len() + 1));
        if let Err(problem) = Notification::parse(&body) {
            prop_assert!(!problem.error.is_empty() && !problem.detail.is_empty(), "{problem:?}");
        }
    }

    #[test]
    fn every_field_value_survives_parsing(
        group_key in text(80).prop_filter("not empty", |key| !key.is_empty()),
        status in status(),
        external_url in text(40),
        alerts in vec(generated_alert(), 0..5),
    ) {
        let body = payload(&group_key, status, &external_url, &alerts).to_string();
        let notification = Notification::parse(body.as_bytes())
            .map_err(|problem| TestCaseError::fail(format!("{problem:?}")))?;
        prop_assert_eq!(&notification.group_key, &group_key);
        prop_assert_eq!(notification.status, status);
        prop_assert_eq!(&notification.external_url, &external_url);
        prop_assert_eq!(notification.alerts.len(), alerts.len());
        for (parsed, sent) in notification.alerts.iter().zip(&alerts) {
            prop_assert_eq!(parsed.status, sent.status);
            prop_assert_eq!(&parsed.labels.to_map(), &sent.labels);
            prop_assert_eq!(&parsed.annotations.to_map(), &sent.annotations);
            prop_assert_eq!(parsed.starts_at, sent.starts_at);
            prop_assert_eq!(parsed.ends_at, sent.ends_at);
            prop_assert_eq!(&parsed.generator_url, &sent.generator_url);
            prop_assert_eq!(&parsed.fingerprint, &sent.fingerprint);
        }
    }

    #[test]
    fn the_dedupe_key_ignores_the_sender_and_the_alert_order(
        alerts in vec(generated_alert(), 1..5),
        rotate in any::<prop::sample::Index>(),
    ) {
        let first = payload("{}:{}", AlertStatus::Firing, "http://am-1:9093", &alerts);
        let mut reordered = alerts.clone();
        let by = rotate.index(reordered.len());
        reordered.rotate_left(by);
        let second = payload("{}:{}", AlertStatus::Firing, "http://am-2:9093", &reordered);
        let first = Notification::parse(first.to_string().as_bytes()).expect("a valid payload");
        let second = Notification::parse(second.to_string().as_bytes()).expect("a valid payload");
        prop_assert_eq!(first.dedupe_key(), second.dedupe_key());
    }
}

// ---- Notices rendered from hostile labels and operator text ----

/// A label value: real ids, markup, header injection, direction overrides, or anything.
fn label_value() -> impl Strategy<Value = String> {
    let part = prop_oneof![
        Just("kommun-trollhattan".to_owned()),
        Just("sjukhus-nal".to_owned()),
        Just("fyrbodal".to_owned()),
        Just("<script>alert(1)</script>".to_owned()),
        Just("\"><img src=x onerror=alert(1)>".to_owned()),
        Just("x\r\nBcc: evil@example.org".to_owned()),
        Just("\u{202e}\u{2028}\u{0}\u{1b}[31m".to_owned()),
        Just("{{ 7*7 }}{% raw %}".to_owned()),
        text(120),
    ];
    vec(part, 1..4).prop_map(|parts| parts.join(","))
}

fn hostile_labels() -> impl Strategy<Value = BTreeMap<String, String>> {
    (
        proptest::option::of(label_value()),
        proptest::option::of(label_value()),
        proptest::option::of(prop_oneof![Just("all".to_owned()), label_value()]),
    )
        .prop_map(|(actor, subregion, scope)| {
            [("actor", actor), ("subregion", subregion), ("scope", scope)]
                .into_iter()
                .filter_map(|(name, value)| Some((name.to_owned(), value?)))
                .collect()
        })
}

fn notice_kind() -> impl Strategy<Value = NoticeKind> {
    prop_oneof![
        Just(NoticeKind::Initial),
        Just(NoticeKind::Update),
        Just(NoticeKind::Resolved),
    ]
}

/// The tags after each `<` in `html`, lowercase (`/p` for a closing tag).
fn tags(html: &str) -> Vec<String> {
    html.split('<')
        .skip(1)
        .map(|after| {
            let name: String = after
                .chars()
                .take_while(|character| {
                    character.is_ascii_alphanumeric() || matches!(character, '/' | '!')
                })
                .collect();
            name.to_ascii_lowercase()
        })
        .collect()
}

fn is_one_line(text: &str) -> bool {
    !text.chars().any(|character| {
        character.is_control()
            || matches!(
                character,
                '\u{2028}' | '\u{2029}' | '\u{202A}'..='\u{202E}' | '\u{2066}'..='\u{2069}'
            )
    })
}

fn render(
    alerts: &[BTreeMap<String, String>],
    kind: NoticeKind,
    level: Option<u8>,
    information: Option<String>,
    drill: bool,
) -> RenderedNotice {
    let scopes: Vec<_> = alerts
        .iter()
        .flat_map(|labels| alert_scopes(&labels.clone().into(), &INCIDENTS))
        .collect();
    let summary = summarize(&scopes, &INVENTORY);
    let suggested = classify(&summary, INCIDENTS.broad_subregion_share);
    let classification = match level.and_then(Level::from_number) {
        Some(level) => suggested.at_level(level),
        None => suggested,
    };
    let started_at: Timestamp = "2026-11-28T04:12:00Z".parse().expect("a timestamp");
    RENDERER
        .render(&NoticeInput {
            kind,
            incident_id: 7,
            started_at,
            resolved_at: (kind == NoticeKind::Resolved).then_some(started_at),
            summary,
            classification,
            expected_resolution: None,
            next_update: None,
            additional_information: information,
            feedback_url: "https://samsa-relay.example/public/feedback/7".to_owned(),
            drill,
            maintenance: None,
        })
        .expect("the embedded templates render any input")
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(128))]

    #[test]
    fn hostile_labels_never_reach_the_html_raw_or_break_a_subject(
        alerts in vec(hostile_labels(), 1..6),
        kind in notice_kind(),
        level in proptest::option::of(1u8..=3),
        information in proptest::option::of(label_value()),
        drill in any::<bool>(),
    ) {
        let template_tags = tags(
            TEMPLATES
                .iter()
                .find(|(name, _)| *name == "email.html")
                .expect("email.html is a template")
                .1,
        );
        let notice = render(&alerts, kind, level, information, drill);

        let html = &notice.email_html;
        prop_assert!(!html.to_lowercase().contains("<script"), "<script in the HTML");
        prop_assert_eq!(html.matches('<').count(), html.matches('>').count());
        for tag in tags(html) {
            prop_assert!(template_tags.contains(&tag), "a tag from input: <{}", tag);
        }
        for (field, title, max_chars) in [
            ("email_subject", &notice.email_subject, MAX_SUBJECT_CHARS),
            ("crisis_subject", &notice.crisis_subject, MAX_SUBJECT_CHARS),
            ("banner_text", &notice.banner_text, MAX_BANNER_CHARS),
            ("website_title", &notice.website_title, MAX_TITLE_CHARS),
            ("newsletter_title", &notice.newsletter_title, MAX_TITLE_CHARS),
            ("itnytt_title", &notice.itnytt_title, MAX_TITLE_CHARS),
        ] {
            prop_assert!(is_one_line(title), "{} is not one line: {:?}", field, title);
            prop_assert!(title.chars().count() <= max_chars, "{} is too long", field);
        }
        for (field, body) in [
            ("email_text", &notice.email_text),
            ("website_body", &notice.website_body),
            ("newsletter_body", &notice.newsletter_body),
            ("itnytt_body", &notice.itnytt_body),
            ("crisis_text", &notice.crisis_text),
        ] {
            prop_assert!(
                body.lines().all(is_one_line) && !body.contains('\r'),
                "{} has a control character: {:?}", field, body
            );
        }
    }
}

// ---- Operator link tokens ----

fn signer() -> LinkSigner {
    LinkSigner::new(&Secret::new("a-link-secret-for-the-property-tests-0123"))
}

fn claims() -> impl Strategy<Value = LinkClaims> {
    (
        prop_oneof![
            Just(LinkPurpose::Dashboard),
            (any::<i64>(), any::<i64>())
                .prop_map(|(draft_id, version)| LinkPurpose::Review { draft_id, version }),
        ],
        text(80),
        any::<i64>(),
    )
        .prop_map(|(purpose, operator, expires_at)| LinkClaims {
            purpose,
            operator,
            expires_at,
        })
}

/// One edit of a token: replace, insert or delete one character at an index.
#[derive(Debug, Clone)]
enum Edit {
    Replace(prop::sample::Index, char),
    Insert(prop::sample::Index, char),
    Delete(prop::sample::Index),
}

fn edit() -> impl Strategy<Value = Edit> {
    let character = prop_oneof![
        4 => proptest::char::ranges(vec!['A'..='Z', 'a'..='z', '0'..='9'].into()),
        1 => prop_oneof![Just('-'), Just('_'), Just('.'), Just('='), Just(' ')],
        1 => any::<char>(),
    ];
    prop_oneof![
        (any::<prop::sample::Index>(), character.clone())
            .prop_map(|(at, character)| Edit::Replace(at, character)),
        (any::<prop::sample::Index>(), character)
            .prop_map(|(at, character)| Edit::Insert(at, character)),
        any::<prop::sample::Index>().prop_map(Edit::Delete),
    ]
}

fn apply(token: &str, edits: &[Edit]) -> String {
    let mut characters: Vec<char> = token.chars().collect();
    for edit in edits {
        match edit {
            Edit::Replace(at, character) if !characters.is_empty() => {
                let at = at.index(characters.len());
                characters[at] = *character;
            }
            Edit::Delete(at) if !characters.is_empty() => {
                characters.remove(at.index(characters.len()));
            }
            Edit::Insert(at, character) => {
                characters.insert(at.index(characters.len() + 1), *character);
            }
            _ => {}
        }
    }
    characters.into_iter().collect()
}

proptest! {
    #[test]
    fn a_signed_link_verifies_until_it_expires(claims in claims(), now in timestamp()) {
        let signer = signer();
        let token = signer.sign(&claims);
        prop_assert!(
            token.bytes().all(|byte| byte.is_ascii_alphanumeric() || matches!(byte, b'-' | b'_' | b'.')),
            "not URL-safe: {}", token
        );
        let verified = signer.verify(&token, now);
        if token.len() > 1024 {
            prop_assert_eq!(verified, Err(LinkError::Malformed));
        } else if now.as_second() >= claims.expires_at {
            prop_assert_eq!(verified, Err(LinkError::Expired));
        } else {
            prop_assert_eq!(verified, Ok(claims));
        }
    }

    #[test]
    fn any_edit_of_a_link_or_its_csrf_token_is_rejected(
        claims in claims(),
        edits in vec(edit(), 1..6),
    ) {
        let signer = signer();
        let claims = LinkClaims { expires_at: i64::MAX, ..claims };
        let token = signer.sign(&claims);
        let csrf = signer.csrf_token(&token);
        let now = Timestamp::from_second(1_000).expect("in range");

        let edited = apply(&token, &edits);
        if edited != token {
            prop_assert!(signer.verify(&edited, now).is_err(), "{:?} verified", edited);
            prop_assert!(!signer.check_csrf(&edited, &csrf));
        }
        let edited_csrf = apply(&csrf, &edits);
        // Surrounding whitespace is allowed (`check_csrf` trims what a form posts).
        prop_assert_eq!(signer.check_csrf(&token, &edited_csrf), edited_csrf.trim() == csrf);
    }

    #[test]
    fn another_key_never_verifies(claims in claims()) {
        let token = signer().sign(&claims);
        let other = LinkSigner::new(&Secret::new("another-secret-for-the-property-tests"));
        let now = Timestamp::from_second(0).expect("in range");
        prop_assert!(other.verify(&token, now).is_err());
        prop_assert!(!other.check_csrf(&token, &signer().csrf_token(&token)));
    }
}
