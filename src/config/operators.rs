//! The operators part of the config: who reviews and publishes, how long links live, when
//! drafts escalate, and the optional single sign-on header.

use std::time::Duration;

use serde::Deserialize;

use super::{Problems, parse_duration};

/// One `[[operators]]` entry.
#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub struct RawOperator {
    /// The name shown in the log, e.g. `Anna Andersson`.
    pub name: String,
    /// Where review links and reminders go.
    pub email: String,
    /// `on-duty` (gets every review link), `escalation` (gets drafts nobody acted on).
    pub groups: Vec<String>,
}

/// `[review]`: the operator pages.
#[derive(Debug, Deserialize)]
#[serde(default)]
pub struct RawReview {
    /// How long a review link works, e.g. `24h`.
    pub link_ttl: String,
    /// How long a dashboard link (the login email's, and those in feedback emails) works,
    /// e.g. `2h`; short, since it opens every draft and the follow-up.
    pub dashboard_link_ttl: String,
    /// A draft nobody acted on within this time is sent again, to on-duty and
    /// escalation, e.g. `10m`.
    pub escalate_after: String,
    /// Revisions of a draft within this time of the last link email send no new email.
    pub revision_email_interval: String,
    /// When set, a reverse proxy in front of the relay authenticates operators and puts
    /// their email address in this header (e.g. `X-Forwarded-Email`); the operator pages
    /// then accept it instead of a link. Only set it when nothing else can reach the relay.
    pub trusted_user_header: Option<String>,
}

impl Default for RawReview {
    fn default() -> RawReview {
        RawReview {
            link_ttl: "24h".to_owned(),
            dashboard_link_ttl: "2h".to_owned(),
            escalate_after: "10m".to_owned(),
            revision_email_interval: "2m".to_owned(),
            trusted_user_header: None,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Operator {
    pub name: String,
    /// Lowercase, validated.
    pub email: String,
    pub on_duty: bool,
    pub escalation: bool,
}

#[derive(Debug, Clone)]
pub struct ReviewConfig {
    pub operators: Vec<Operator>,
    /// How long a review link works.
    pub link_ttl: Duration,
    /// How long a dashboard link works.
    pub dashboard_link_ttl: Duration,
    pub escalate_after: Duration,
    pub revision_email_interval: Duration,
    pub trusted_user_header: Option<axum::http::HeaderName>,
}

impl ReviewConfig {
    /// The configured operator with this address (case-insensitive).
    pub fn operator(&self, email: &str) -> Option<&Operator> {
        let email = email.trim().to_lowercase();
        self.operators
            .iter()
            .find(|operator| operator.email == email)
    }

    pub fn on_duty(&self) -> impl Iterator<Item = &Operator> {
        self.operators.iter().filter(|operator| operator.on_duty)
    }

    /// On duty and escalation, each once.
    pub fn on_duty_and_escalation(&self) -> impl Iterator<Item = &Operator> {
        self.operators
            .iter()
            .filter(|operator| operator.on_duty || operator.escalation)
    }
}

pub(super) fn check_review(
    problems: &mut Problems,
    raw_operators: Vec<RawOperator>,
    raw: RawReview,
) -> Option<ReviewConfig> {
    let mut ok = true;
    let mut operators: Vec<Operator> = Vec::new();
    for (index, raw_operator) in raw_operators.into_iter().enumerate() {
        let path = format!("operators[{index}]");
        let name = raw_operator.name.trim().to_owned();
        if name.is_empty() || name.chars().any(char::is_control) {
            problems.push(
                &format!("{path}.name"),
                "a name is required (no control characters)",
            );
            ok = false;
        }
        let email = match super::parse_address(&raw_operator.email) {
            Ok(email) => email.to_lowercase(),
            Err(message) => {
                problems.push(&format!("{path}.email"), message);
                ok = false;
                continue;
            }
        };
        if operators.iter().any(|operator| operator.email == email) {
            problems.push(&format!("{path}.email"), format!("{email} is listed twice"));
            ok = false;
        }
        let mut on_duty = false;
        let mut escalation = false;
        for (group_index, group) in raw_operator.groups.iter().enumerate() {
            match group.as_str() {
                "on-duty" => on_duty = true,
                "escalation" => escalation = true,
                other => {
                    problems.push(
                        &format!("{path}.groups[{group_index}]"),
                        format!("unknown group {other:?}; expected on-duty or escalation"),
                    );
                    ok = false;
                }
            }
        }
        operators.push(Operator {
            name,
            email,
            on_duty,
            escalation,
        });
    }
    let link_ttl = problems.check("review.link_ttl", positive(&raw.link_ttl));
    let dashboard_link_ttl = problems.check(
        "review.dashboard_link_ttl",
        positive(&raw.dashboard_link_ttl),
    );
    let escalate_after = problems.check("review.escalate_after", positive(&raw.escalate_after));
    let revision_email_interval = problems.check(
        "review.revision_email_interval",
        parse_duration(&raw.revision_email_interval),
    );
    let trusted_user_header = match raw.trusted_user_header.as_deref() {
        None => None,
        Some(name) => match axum::http::HeaderName::from_bytes(name.as_bytes()) {
            Ok(header) => Some(header),
            Err(_) => {
                problems.push("review.trusted_user_header", "not a valid HTTP header name");
                ok = false;
                None
            }
        },
    };
    if !ok {
        return None;
    }
    Some(ReviewConfig {
        operators,
        link_ttl: link_ttl?,
        dashboard_link_ttl: dashboard_link_ttl?,
        escalate_after: escalate_after?,
        revision_email_interval: revision_email_interval?,
        trusted_user_header,
    })
}

fn positive(text: &str) -> Result<Duration, String> {
    let duration = parse_duration(text)?;
    if duration.is_zero() {
        return Err("must be more than zero".to_owned());
    }
    Ok(duration)
}
