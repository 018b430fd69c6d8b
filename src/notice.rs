//! Swedish notices for every channel of the communication plan, rendered from templates.
//!
//! The wording lives in `deploy/templates/` (embedded in the binary; `notices.templates_dir`
//! overrides it file by file). This module owns what the templates see and what comes out:
//!
//! - [`NoticeRenderer::render`] turns a [`NoticeInput`] (kind, times, scope, level) into a
//!   [`RenderedNotice`] with every channel: email (subject, text, HTML), login-page banner,
//!   website news, newsletter, IT-Nytt, and the crisis email to the council chair and vice
//!   chair (level 3 only; empty otherwise).
//! - The scope is put into words here, not in the templates ("hela Fyrbodal",
//!   "Trollhättan och Uddevalla", "15 av 17 verksamheter, varav 12 av 14 kommuner"), so
//!   every channel says it the same way and the rules are unit-tested.
//! - Untrusted text (ids from alert labels, operator text) is made safe here whatever a
//!   template does: `*.html` templates auto-escape, subjects and titles are single lines
//!   of bounded length, bodies lose control characters, and a drill is marked "ÖVNING: "
//!   on every subject, title and banner and in every body.

use std::collections::BTreeMap;
use std::path::Path;
use std::path::PathBuf;

use jiff::Timestamp;
use minijinja::{AutoEscape, Environment, UndefinedBehavior, Value};
use serde::{Deserialize, Serialize};

use crate::classify::{
    AlertScope, Classification, Level, MAX_LABEL_VALUE_CHARS, ScopeSummary, classify, shown_ids,
    summarize,
};
use crate::inventory::Inventory;

pub mod maintenance;
pub mod webhook_body;

/// How notices are worded. The `[notices]` section of the configuration (`config::RawNotices` documents each
/// field).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NoticesConfig {
    pub templates_dir: Option<PathBuf>,
    pub info_address: String,
    pub service_name: String,
}

impl Default for NoticesConfig {
    /// The documented defaults, the same as an empty `[notices]` section.
    fn default() -> NoticesConfig {
        NoticesConfig {
            templates_dir: None,
            info_address: "info.samsa@vgregion.se".to_owned(),
            service_name: "SAMSA".to_owned(),
        }
    }
}
use crate::swedish::{
    clean_multiline, count_phrase, format_swedish_duration, format_swedish_period,
    join_swedish_list, single_line,
};

pub use crate::swedish::format_swedish_time;

/// Longest subject of an email (the crisis email's too), in characters.
pub const MAX_SUBJECT_CHARS: usize = 200;
/// Longest title of a news item, in characters.
pub const MAX_TITLE_CHARS: usize = 200;
/// Longest login-page banner, in characters.
pub const MAX_BANNER_CHARS: usize = 300;
/// Longest text body, in characters.
pub const MAX_BODY_CHARS: usize = 20_000;
/// Longest operator text ("Övrig information") kept, in characters.
pub const MAX_ADDITIONAL_INFORMATION_CHARS: usize = 4_000;
/// Up to this many affected actors (outside wholly affected sub-regions) are named; more
/// are counted per sub-region.
pub const MAX_NAMED_ACTORS: usize = 10;
/// Up to this many names go into the running sentence ("användare inom A, B och C").
pub const MAX_NAMES_IN_SENTENCE: usize = 4;

/// Put before every subject, title and banner of a drill.
pub const DRILL_PREFIX: &str = "ÖVNING: ";
/// The first and last line of every text body of a drill.
pub const DRILL_NOTE: &str = "ÖVNING: Detta är en övning. Ingen verklig driftstörning pågår.";

/// The template files, with their embedded defaults. A template folder may override any
/// of them; files starting with `_` are parts included by the others.
pub const TEMPLATES: &[(&str, &str)] = &[
    ("_intro.txt", include_str!("../deploy/templates/_intro.txt")),
    ("_times.txt", include_str!("../deploy/templates/_times.txt")),
    ("_scope.txt", include_str!("../deploy/templates/_scope.txt")),
    (
        "_backup_routine.txt",
        include_str!("../deploy/templates/_backup_routine.txt"),
    ),
    (
        "_feedback.txt",
        include_str!("../deploy/templates/_feedback.txt"),
    ),
    ("email.txt", include_str!("../deploy/templates/email.txt")),
    ("email.html", include_str!("../deploy/templates/email.html")),
    ("banner.txt", include_str!("../deploy/templates/banner.txt")),
    (
        "website.txt",
        include_str!("../deploy/templates/website.txt"),
    ),
    (
        "newsletter.txt",
        include_str!("../deploy/templates/newsletter.txt"),
    ),
    ("itnytt.txt", include_str!("../deploy/templates/itnytt.txt")),
    ("crisis.txt", include_str!("../deploy/templates/crisis.txt")),
    (
        "_maintenance_subject.txt",
        include_str!("../deploy/templates/_maintenance_subject.txt"),
    ),
    (
        "_maintenance_intro.txt",
        include_str!("../deploy/templates/_maintenance_intro.txt"),
    ),
    (
        "_maintenance_times.txt",
        include_str!("../deploy/templates/_maintenance_times.txt"),
    ),
    (
        "_maintenance_details.txt",
        include_str!("../deploy/templates/_maintenance_details.txt"),
    ),
    (
        "maintenance_email.txt",
        include_str!("../deploy/templates/maintenance_email.txt"),
    ),
    (
        "maintenance_email.html",
        include_str!("../deploy/templates/maintenance_email.html"),
    ),
    (
        "maintenance_banner.txt",
        include_str!("../deploy/templates/maintenance_banner.txt"),
    ),
    (
        "maintenance_website.txt",
        include_str!("../deploy/templates/maintenance_website.txt"),
    ),
    (
        "maintenance_newsletter.txt",
        include_str!("../deploy/templates/maintenance_newsletter.txt"),
    ),
    (
        "maintenance_itnytt.txt",
        include_str!("../deploy/templates/maintenance_itnytt.txt"),
    ),
    (
        "maintenance_crisis.txt",
        include_str!("../deploy/templates/maintenance_crisis.txt"),
    ),
];

/// The template of each channel: one set for disruptions, one for planned maintenance.
struct TemplateNames {
    email: &'static str,
    email_html: &'static str,
    banner: &'static str,
    website: &'static str,
    newsletter: &'static str,
    itnytt: &'static str,
    crisis: &'static str,
}

const INCIDENT_TEMPLATES: TemplateNames = TemplateNames {
    email: "email.txt",
    email_html: "email.html",
    banner: "banner.txt",
    website: "website.txt",
    newsletter: "newsletter.txt",
    itnytt: "itnytt.txt",
    crisis: "crisis.txt",
};

const MAINTENANCE_TEMPLATES: TemplateNames = TemplateNames {
    email: "maintenance_email.txt",
    email_html: "maintenance_email.html",
    banner: "maintenance_banner.txt",
    website: "maintenance_website.txt",
    newsletter: "maintenance_newsletter.txt",
    itnytt: "maintenance_itnytt.txt",
    crisis: "maintenance_crisis.txt",
};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum NoticeKind {
    /// The first notice of an incident.
    Initial,
    /// A later notice while the incident is open.
    Update,
    /// The incident is over.
    Resolved,
}

/// The operator's fields of a draft, carried from version to version.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct DraftFields {
    /// The level the operator chose; `None` keeps the suggested one.
    #[serde(default)]
    pub level: Option<crate::classify::Level>,
    pub expected_resolution: Option<Timestamp>,
    pub next_update: Option<Timestamp>,
    pub additional_information: Option<String>,
}

/// Everything a notice says.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct NoticeInput {
    pub kind: NoticeKind,
    pub incident_id: i64,
    pub started_at: Timestamp,
    pub resolved_at: Option<Timestamp>,
    pub summary: ScopeSummary,
    /// The level the operator chose (or the suggested one for a draft).
    pub classification: Classification,
    pub expected_resolution: Option<Timestamp>,
    pub next_update: Option<Timestamp>,
    /// Operator text for "Övrig information"; untrusted for HTML.
    pub additional_information: Option<String>,
    /// Where readers report back about this incident (a link to the relay).
    pub feedback_url: String,
    pub drill: bool,
    /// A planned maintenance window's notice: rendered from the maintenance templates.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub maintenance: Option<maintenance::MaintenanceNotice>,
}

/// One notice on every channel. The crisis fields are empty below level 3.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RenderedNotice {
    pub email_subject: String,
    pub email_text: String,
    pub email_html: String,
    pub banner_text: String,
    pub website_title: String,
    pub website_body: String,
    pub newsletter_title: String,
    pub newsletter_body: String,
    pub itnytt_title: String,
    pub itnytt_body: String,
    pub crisis_subject: String,
    pub crisis_text: String,
}

/// The compiled templates, ready to render any number of notices.
pub struct NoticeRenderer {
    environment: Environment<'static>,
    service_name: String,
    info_address: String,
    /// The embedded templates, used when a custom one fails at render time: a notice
    /// must never be blocked by a template error.
    fallback: Option<Box<NoticeRenderer>>,
}

/// The kind of notice in Swedish, for operator pages and the log.
pub fn kind_label(kind: NoticeKind) -> &'static str {
    match kind {
        NoticeKind::Initial => "första meddelande",
        NoticeKind::Update => "uppdatering",
        NoticeKind::Resolved => "åtgärdat",
    }
}

impl NoticeKind {
    pub fn as_str(self) -> &'static str {
        match self {
            NoticeKind::Initial => "initial",
            NoticeKind::Update => "update",
            NoticeKind::Resolved => "resolved",
        }
    }
}

impl NoticeRenderer {
    /// Compiles the embedded templates, with the files of `notices.templates_dir` in place
    /// of the embedded ones of the same name.
    pub fn new(config: &NoticesConfig) -> anyhow::Result<NoticeRenderer> {
        let environment = build_environment(config.templates_dir.as_deref())
            .map_err(|problems| anyhow::anyhow!("{}", problems.join("; ")))?;
        let fallback = match config.templates_dir {
            Some(_) => Some(Box::new(NoticeRenderer::new(&NoticesConfig {
                templates_dir: None,
                ..config.clone()
            })?)),
            None => None,
        };
        Ok(NoticeRenderer {
            environment,
            service_name: config.service_name.clone(),
            info_address: config.info_address.clone(),
            fallback,
        })
    }

    /// Renders one notice on every channel; when a custom template fails, with the
    /// embedded ones (and says so in the log).
    pub fn render(&self, input: &NoticeInput) -> anyhow::Result<RenderedNotice> {
        match (self.render_with_these_templates(input), &self.fallback) {
            (Ok(rendered), _) => Ok(rendered),
            (Err(error), Some(fallback)) => {
                tracing::error!(
                    error = format!("{error:#}"),
                    incident_id = input.incident_id,
                    "a custom notice template failed; using the embedded templates"
                );
                fallback.render(input)
            }
            (Err(error), None) => Err(error),
        }
    }

    fn render_with_these_templates(&self, input: &NoticeInput) -> anyhow::Result<RenderedNotice> {
        let mut context = TemplateContext::new(input, &self.service_name, &self.info_address);
        let names = match input.maintenance {
            Some(_) => &MAINTENANCE_TEMPLATES,
            None => &INCIDENT_TEMPLATES,
        };
        // Planned maintenance is never an exercise: no drill marking.
        let drill = context.drill;

        let email_subject = self.finish_title(
            self.render_block(names.email, &context, "subject")?,
            drill,
            MAX_SUBJECT_CHARS,
        );
        // The HTML email shows the subject as its title.
        context.email_subject = email_subject.clone();
        let email_text = self.finish_body(self.render_block(names.email, &context, "body")?, drill);
        let email_html = self
            .render_whole(names.email_html, &context)?
            .trim()
            .to_owned()
            + "\n";
        let banner_text = self.finish_title(
            self.render_whole(names.banner, &context)?,
            drill,
            MAX_BANNER_CHARS,
        );
        let (website_title, website_body) = self.render_news(names.website, &context, drill)?;
        let (newsletter_title, newsletter_body) =
            self.render_news(names.newsletter, &context, drill)?;
        let (itnytt_title, itnytt_body) = self.render_news(names.itnytt, &context, drill)?;

        // The plan writes to the council's chair and vice chair only when SAMSA is down for
        // most actors or entirely: level 3.
        let (crisis_subject, crisis_text) =
            if input.classification.level == Level::Three || input.classification.crisis {
                (
                    self.finish_title(
                        self.render_block(names.crisis, &context, "subject")?,
                        drill,
                        MAX_SUBJECT_CHARS,
                    ),
                    self.finish_body(self.render_block(names.crisis, &context, "body")?, drill),
                )
            } else {
                (String::new(), String::new())
            };

        Ok(RenderedNotice {
            email_subject,
            email_text,
            email_html,
            banner_text,
            website_title,
            website_body,
            newsletter_title,
            newsletter_body,
            itnytt_title,
            itnytt_body,
            crisis_subject,
            crisis_text,
        })
    }

    /// Renders the sample inputs of [`sample_inputs`]; the first problem found per
    /// sample. Used by `check-config` for a template folder.
    pub fn check(&self) -> Vec<String> {
        let mut problems: Vec<String> = Vec::new();
        let mut push_once = |problem: String, sample_name: &str| {
            // The same broken line fails every sample; say it once.
            if !problems.iter().any(|known| known.starts_with(&problem)) {
                problems.push(format!("{problem} (sample notice: {sample_name})"));
            }
        };
        for (sample_name, input) in sample_inputs() {
            match self.render_with_these_templates(&input) {
                Ok(rendered) => {
                    if input.drill && !rendered.email_html.contains("ÖVNING") {
                        push_once(
                            "email.html must say ÖVNING when `drill` is true".to_owned(),
                            sample_name,
                        );
                    }
                }
                Err(error) => push_once(format!("{error:#}"), sample_name),
            }
        }
        problems
    }

    fn render_news(
        &self,
        template_name: &str,
        context: &TemplateContext<'_>,
        drill: bool,
    ) -> anyhow::Result<(String, String)> {
        Ok((
            self.finish_title(
                self.render_block(template_name, context, "title")?,
                drill,
                MAX_TITLE_CHARS,
            ),
            self.finish_body(self.render_block(template_name, context, "body")?, drill),
        ))
    }

    fn render_block(
        &self,
        template_name: &str,
        context: &TemplateContext<'_>,
        block: &str,
    ) -> anyhow::Result<String> {
        let template = self.environment.get_template(template_name)?;
        let mut captured = template
            .render_captured(Value::from_serialize(context))
            .map_err(|error| anyhow::anyhow!("rendering {template_name}: {error}"))?;
        captured
            .with_state_mut(|state| state.render_block(block))
            .map_err(|error| anyhow::anyhow!("rendering block {block} of {template_name}: {error}"))
    }

    fn render_whole(
        &self,
        template_name: &str,
        context: &TemplateContext<'_>,
    ) -> anyhow::Result<String> {
        let template = self.environment.get_template(template_name)?;
        template
            .render(Value::from_serialize(context))
            .map_err(|error| anyhow::anyhow!("rendering {template_name}: {error}"))
    }

    /// Subjects, titles and the banner: one line, bounded, marked for a drill.
    fn finish_title(&self, rendered: String, drill: bool, max_chars: usize) -> String {
        let line = single_line(&rendered, max_chars);
        if drill {
            single_line(&format!("{DRILL_PREFIX}{line}"), max_chars)
        } else {
            line
        }
    }

    /// Text bodies: clean lines, bounded, marked at both ends for a drill.
    fn finish_body(&self, rendered: String, drill: bool) -> String {
        if drill {
            clean_multiline(
                &format!("{DRILL_NOTE}\n\n{rendered}\n\n{DRILL_NOTE}"),
                MAX_BODY_CHARS,
            )
        } else {
            clean_multiline(&rendered, MAX_BODY_CHARS)
        }
    }
}

impl std::fmt::Debug for NoticeRenderer {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        formatter
            .debug_struct("NoticeRenderer")
            .field("service_name", &self.service_name)
            .field("info_address", &self.info_address)
            .finish_non_exhaustive()
    }
}

/// Every problem with the templates of a notices configuration: unreadable or unknown
/// files, syntax errors, and errors rendering the samples. Empty when all is well.
pub fn template_problems(config: &NoticesConfig) -> Vec<String> {
    match build_environment(config.templates_dir.as_deref()) {
        // No fallback: the point is to find the custom templates' own problems.
        Ok(environment) => NoticeRenderer {
            environment,
            service_name: config.service_name.clone(),
            info_address: config.info_address.clone(),
            fallback: None,
        }
        .check(),
        Err(problems) => problems,
    }
}

/// A notice of each kind, a crisis and a drill, from the shipped inventory; what
/// `check-config` renders to test a template folder, and what a preview can show.
pub fn sample_inputs() -> Vec<(&'static str, NoticeInput)> {
    let inventory = Inventory::default_samsa();
    let started_at: Timestamp = "2026-11-28T04:12:00Z".parse().expect("a valid timestamp");
    let later = |minutes: i64| {
        started_at
            .checked_add(jiff::SignedDuration::from_mins(minutes))
            .expect("in range")
    };
    let input = |kind, scopes: &[AlertScope]| {
        let summary = summarize(scopes, &inventory);
        let classification = classify(&summary, 0.5);
        NoticeInput {
            kind,
            incident_id: 1,
            started_at,
            resolved_at: None,
            summary,
            classification,
            expected_resolution: None,
            next_update: Some(later(60)),
            additional_information: None,
            feedback_url: "https://samsa-relay.example/feedback/1".to_owned(),
            drill: false,
            maintenance: None,
        }
    };
    let one_actor = [AlertScope::Actor("kommun-trollhattan".to_owned())];
    let subregion_and_unknown = [
        AlertScope::Subregion("fyrbodal".to_owned()),
        AlertScope::Actor("kommun-okand".to_owned()),
        AlertScope::Subregion("okand".to_owned()),
    ];
    let everything = [AlertScope::Everything];

    let initial = input(NoticeKind::Initial, &one_actor);
    let mut update = input(NoticeKind::Update, &subregion_and_unknown);
    update.expected_resolution = Some(later(180));
    update.additional_information = Some("Felsökning pågår.".to_owned());
    let mut resolved_crisis = input(NoticeKind::Resolved, &everything);
    resolved_crisis.resolved_at = Some(later(150));
    resolved_crisis.next_update = None;
    let crisis = input(NoticeKind::Initial, &everything);
    let mut drill = input(NoticeKind::Update, &everything);
    drill.drill = true;
    let mut samples = vec![
        ("initial", initial),
        ("update", update),
        ("resolved", resolved_crisis),
        ("crisis", crisis),
        ("drill", drill),
    ];
    samples.extend(maintenance_samples(&input));
    samples
}

/// A maintenance notice of every step: for one sub-region (level 2), and the whole
/// service (level 3, with the crisis email) for the announcement.
fn maintenance_samples(
    input: &dyn Fn(NoticeKind, &[AlertScope]) -> NoticeInput,
) -> Vec<(&'static str, NoticeInput)> {
    use maintenance::{MaintenanceNotice, Step};
    // Tuesday 8 December 2026, 18:00–22:00 in Stockholm.
    let starts_at: Timestamp = "2026-12-08T17:00:00Z".parse().expect("a valid timestamp");
    let hours = |hours: i64| {
        starts_at
            .checked_add(jiff::SignedDuration::from_hours(hours))
            .expect("in range")
    };
    let subregion = [AlertScope::Subregion("skaraborg".to_owned())];
    let everything = [AlertScope::Everything];
    let sample = |name: &'static str, step: Step, scopes: &[AlertScope]| {
        let mut notice_input = input(step.notice_kind(), scopes);
        notice_input.started_at = starts_at;
        notice_input.next_update = None;
        notice_input.maintenance = Some(MaintenanceNotice {
            title: "Uppgradering av SAMSA till version 5.2".to_owned(),
            starts_at,
            ends_at: hours(4),
            impact: "SAMSA går inte att nå under underhållet.".to_owned(),
            advice: "Använd er reservrutin för vårdövergångar under underhållet.".to_owned(),
            step,
        });
        (name, notice_input)
    };
    let mut overran = sample("maintenance_overran", Step::Overran, &subregion);
    overran.1.expected_resolution = Some(hours(5));
    overran.1.additional_information = Some("Databasen startas om.".to_owned());
    vec![
        sample("maintenance_announcement", Step::Announcement, &everything),
        sample(
            "maintenance_reminder",
            Step::Reminder {
                before_minutes: 24 * 60,
            },
            &subregion,
        ),
        sample("maintenance_started", Step::Started, &subregion),
        sample("maintenance_completed", Step::Completed, &subregion),
        overran,
        sample(
            "maintenance_moved",
            Step::Moved {
                previous_starts_at: hours(-24),
                previous_ends_at: hours(-20),
            },
            &subregion,
        ),
        sample("maintenance_cancelled", Step::Cancelled, &subregion),
    ]
}

/// What the templates see. Times are already in Swedish words; the scope is already put
/// into words in `scope`; `summary` is there for templates that want the raw counts.
#[derive(Debug, Serialize)]
struct TemplateContext<'input> {
    /// `initial`, `update` or `resolved`.
    kind: &'static str,
    incident_id: i64,
    /// What readers quote when they reply, e.g. `SAMSA-42`.
    reference: String,
    drill: bool,
    service_name: &'input str,
    info_address: &'input str,
    feedback_url: String,
    started_at: String,
    resolved_at: Option<String>,
    /// How long the disruption lasted, in words; only once resolved.
    duration: Option<String>,
    expected_resolution: Option<String>,
    next_update: Option<String>,
    /// 1, 2 or 3.
    level: u8,
    crisis: bool,
    reasons: Vec<String>,
    additional_information: Option<String>,
    scope: ScopeText,
    summary: &'input ScopeSummary,
    /// The finished email subject (set before the HTML email renders).
    email_subject: String,
    /// A planned maintenance window's notice; none for a disruption.
    maintenance: Option<MaintenanceText>,
}

/// A maintenance notice's part of the context, in words.
#[derive(Debug, Serialize)]
struct MaintenanceText {
    /// `announcement`, `reminder`, `started`, `completed`, `overran`, `moved` or
    /// `cancelled`.
    step: &'static str,
    /// The operator's title, impact and advice; untrusted for HTML.
    title: String,
    impact: String,
    advice: String,
    /// "tisdag 8 december 2026 kl. 18:00–22:00" (both dates when it spans days).
    period: String,
    /// "8 december 2026 kl. 18:00".
    starts_at: String,
    ends_at: String,
    /// "4 timmar".
    duration: String,
    /// For a reminder: "i morgon", "om 1 timme".
    reminder: Option<String>,
    /// For a moved window: the period it had.
    previous_period: Option<String>,
}

impl MaintenanceText {
    fn new(notice: &maintenance::MaintenanceNotice) -> MaintenanceText {
        let length = notice.ends_at.duration_since(notice.starts_at);
        let (reminder, previous_period) = match &notice.step {
            maintenance::Step::Reminder { before_minutes } => (
                Some(maintenance::reminder_phrase(
                    notice.starts_at,
                    *before_minutes,
                )),
                None,
            ),
            maintenance::Step::Moved {
                previous_starts_at,
                previous_ends_at,
            } => (
                None,
                Some(format_swedish_period(
                    *previous_starts_at,
                    *previous_ends_at,
                )),
            ),
            _ => (None, None),
        };
        MaintenanceText {
            step: notice.step.name(),
            title: single_line(&notice.title, MAX_TITLE_CHARS),
            impact: clean_multiline(&notice.impact, MAX_ADDITIONAL_INFORMATION_CHARS),
            advice: clean_multiline(&notice.advice, MAX_ADDITIONAL_INFORMATION_CHARS),
            period: format_swedish_period(notice.starts_at, notice.ends_at),
            starts_at: format_swedish_time(notice.starts_at),
            ends_at: format_swedish_time(notice.ends_at),
            duration: format_swedish_duration(
                std::time::Duration::try_from(length).unwrap_or_default(),
            ),
            reminder,
            previous_period,
        }
    }
}

/// The scope in words.
#[derive(Debug, Serialize)]
struct ScopeText {
    whole_service: bool,
    /// Completes "användare inom ...": "Trollhättan", "hela Fyrbodal", "hela Skaraborg och
    /// 15 verksamheter i Göteborgsregionen".
    within: String,
    /// For subjects and titles: `within` when short, else "39 av 67 verksamheter".
    short: String,
    /// Affected sub-regions (or one group for the whole service), each with a heading and
    /// the names of its affected actors when they are few.
    groups: Vec<ScopeGroup>,
    /// `groups` and the unknown ids as plain text lines ("- " before each name).
    lines: Vec<String>,
    unknown_actors: Option<String>,
    unknown_subregions: Option<String>,
}

#[derive(Debug, Serialize)]
struct ScopeGroup {
    heading: String,
    actors: Vec<String>,
}

impl<'input> TemplateContext<'input> {
    fn new(
        input: &'input NoticeInput,
        service_name: &'input str,
        info_address: &'input str,
    ) -> TemplateContext<'input> {
        let duration = input.resolved_at.map(|resolved_at| {
            let elapsed = resolved_at.duration_since(input.started_at);
            format_swedish_duration(std::time::Duration::try_from(elapsed).unwrap_or_default())
        });
        let additional_information = input
            .additional_information
            .as_deref()
            .map(|text| clean_multiline(text, MAX_ADDITIONAL_INFORMATION_CHARS))
            .filter(|text| !text.is_empty());
        TemplateContext {
            kind: input.kind.as_str(),
            incident_id: input.incident_id,
            reference: format!("{service_name}-{}", input.incident_id),
            // Planned maintenance is never an exercise.
            drill: input.drill && input.maintenance.is_none(),
            service_name,
            info_address,
            feedback_url: single_line(&input.feedback_url, 2_000),
            started_at: format_swedish_time(input.started_at),
            resolved_at: input.resolved_at.map(format_swedish_time),
            duration,
            expected_resolution: input.expected_resolution.map(format_swedish_time),
            next_update: input.next_update.map(format_swedish_time),
            level: input.classification.level.as_number(),
            crisis: input.classification.crisis,
            reasons: input
                .classification
                .reasons
                .iter()
                .map(|reason| single_line(reason, 2_000))
                .collect(),
            additional_information,
            scope: describe_scope(&input.summary),
            summary: &input.summary,
            email_subject: String::new(),
            maintenance: input.maintenance.as_ref().map(MaintenanceText::new),
        }
    }
}

/// Puts a scope into words; see [`ScopeText`].
fn describe_scope(summary: &ScopeSummary) -> ScopeText {
    let name = |text: &str| single_line(text, MAX_LABEL_VALUE_CHARS);
    let affected: Vec<_> = summary
        .subregions
        .iter()
        .filter(|subregion| subregion.n_affected > 0 || subregion.whole)
        .collect();
    let n_partly_affected: usize = affected
        .iter()
        .filter(|subregion| !subregion.whole)
        .map(|subregion| subregion.n_affected)
        .sum();
    let name_actors = n_partly_affected <= MAX_NAMED_ACTORS;
    // Names go into the running sentence only when they read unambiguously there: a few
    // of them, and no comma inside a name ("NU-sjukvården, NÄL") unless it stands alone.
    // Otherwise the sentence counts and the list below names them.
    let partly_affected_names = || {
        affected
            .iter()
            .filter(|subregion| !subregion.whole)
            .flat_map(|subregion| subregion.affected_names.iter())
    };
    let names_inline = name_actors
        && (n_partly_affected == 1
            || (n_partly_affected <= MAX_NAMES_IN_SENTENCE
                && !partly_affected_names().any(|actor_name| actor_name.contains(','))));

    let unknown_actors = (!summary.unknown_actor_ids.is_empty()).then(|| {
        format!(
            "{} med okänt id (finns inte i aktörslistan): {}",
            count_phrase(
                summary.unknown_actor_ids.len(),
                "verksamhet",
                "verksamheter"
            ),
            shown_ids(&summary.unknown_actor_ids)
        )
    });
    let unknown_subregions = (!summary.unknown_subregion_ids.is_empty()).then(|| {
        format!(
            "{} (finns inte i aktörslistan): {}",
            count_phrase(
                summary.unknown_subregion_ids.len(),
                "okänd delregion",
                "okända delregioner"
            ),
            shown_ids(&summary.unknown_subregion_ids)
        )
    });

    let mut groups = Vec::new();
    let mut parts = Vec::new();
    // Municipalities named in the sentence say so ("kommunen Borås"), so that a name is
    // not read as everything in that town (such as its hospital).
    let mut inline_kommuner: Vec<String> = Vec::new();
    if summary.whole_service {
        let subregion_names: Vec<String> = summary
            .subregions
            .iter()
            .map(|subregion| name(&subregion.name))
            .collect();
        groups.push(ScopeGroup {
            heading: format!(
                "Samtliga {} verksamheter i {}",
                summary.n_actors,
                join_swedish_list(&subregion_names)
            ),
            actors: Vec::new(),
        });
    } else {
        for subregion in &affected {
            let subregion_name = name(&subregion.name);
            if subregion.whole {
                groups.push(ScopeGroup {
                    heading: format!(
                        "{subregion_name}: hela delregionen ({})",
                        count_phrase(subregion.n_actors, "verksamhet", "verksamheter")
                    ),
                    actors: Vec::new(),
                });
                parts.push(format!("hela {subregion_name}"));
            } else if name_actors {
                let actor_names: Vec<String> = subregion
                    .affected_names
                    .iter()
                    .map(|actor_name| name(actor_name))
                    .collect();
                groups.push(ScopeGroup {
                    heading: format!(
                        "{subregion_name}, {} av {} verksamheter:",
                        subregion.n_affected, subregion.n_actors
                    ),
                    actors: actor_names.clone(),
                });
                if names_inline {
                    for (index, actor_name) in actor_names.into_iter().enumerate() {
                        if subregion.affected_kommuner.get(index) == Some(&true) {
                            inline_kommuner.push(actor_name);
                        } else {
                            parts.push(actor_name);
                        }
                    }
                } else {
                    parts.push(format!(
                        "{} i {subregion_name}",
                        count_phrase(subregion.n_affected, "verksamhet", "verksamheter")
                    ));
                }
            } else {
                groups.push(ScopeGroup {
                    heading: format!(
                        "{subregion_name}: {} av {} verksamheter{}",
                        subregion.n_affected,
                        subregion.n_actors,
                        kommuner_clause(subregion.n_kommuner_affected, subregion.n_kommuner)
                    ),
                    actors: Vec::new(),
                });
                parts.push(format!(
                    "{} i {subregion_name}",
                    count_phrase(subregion.n_affected, "verksamhet", "verksamheter")
                ));
            }
        }
    }

    // Counted as separate names, as before they were grouped.
    let n_parts = parts.len() + inline_kommuner.len();
    match inline_kommuner.len() {
        0 => {}
        1 => parts.insert(0, format!("kommunen {}", inline_kommuner[0])),
        _ => parts.insert(
            0,
            format!("kommunerna {}", join_swedish_list(&inline_kommuner)),
        ),
    }

    let mut unknown_parts = Vec::new();
    if !summary.unknown_actor_ids.is_empty() {
        unknown_parts.push(format!(
            "{} med okänt id",
            count_phrase(
                summary.unknown_actor_ids.len(),
                "verksamhet",
                "verksamheter"
            )
        ));
    }
    if !summary.unknown_subregion_ids.is_empty() {
        unknown_parts.push(count_phrase(
            summary.unknown_subregion_ids.len(),
            "okänd delregion",
            "okända delregioner",
        ));
    }
    let within = if summary.whole_service {
        "samtliga verksamheter".to_owned()
    } else {
        // Past four parts a list stops being readable; the total says it better.
        let mut known_parts = if n_parts > 4 {
            vec![format!(
                "{} av {} verksamheter",
                summary.n_affected, summary.n_actors
            )]
        } else {
            parts
        };
        known_parts.extend(unknown_parts);
        if known_parts.is_empty() {
            "en eller flera verksamheter".to_owned()
        } else {
            join_swedish_list(&known_parts)
        }
    };
    let short = if summary.whole_service {
        "alla verksamheter".to_owned()
    } else if within.chars().count() <= 60 {
        within.clone()
    } else {
        format!(
            "{} av {} verksamheter",
            summary.n_affected, summary.n_actors
        )
    };

    let mut lines = Vec::new();
    for group in &groups {
        lines.push(group.heading.clone());
        lines.extend(
            group
                .actors
                .iter()
                .map(|actor_name| format!("- {actor_name}")),
        );
    }
    lines.extend(unknown_actors.iter().cloned());
    lines.extend(unknown_subregions.iter().cloned());

    ScopeText {
        whole_service: summary.whole_service,
        within,
        short,
        groups,
        lines,
        unknown_actors,
        unknown_subregions,
    }
}

/// ", varav 12 av 14 kommuner", ", varav alla 12 kommuner", or nothing when no
/// municipality is affected.
fn kommuner_clause(n_kommuner_affected: usize, n_kommuner: usize) -> String {
    if n_kommuner_affected == 0 {
        String::new()
    } else if n_kommuner_affected == n_kommuner {
        format!(", varav alla {n_kommuner} kommuner")
    } else {
        format!(", varav {n_kommuner_affected} av {n_kommuner} kommuner")
    }
}

/// An environment with the embedded templates, overridden by the files in `folder`.
/// Collects every problem rather than stopping at the first.
fn build_environment(folder: Option<&Path>) -> Result<Environment<'static>, Vec<String>> {
    let mut problems = Vec::new();
    let mut sources: BTreeMap<&'static str, String> = TEMPLATES
        .iter()
        .map(|(name, source)| (*name, (*source).to_owned()))
        .collect();
    if let Some(folder) = folder {
        match std::fs::read_dir(folder) {
            Ok(entries) => {
                for entry in entries.flatten() {
                    let file_name = entry.file_name().to_string_lossy().into_owned();
                    let is_template = file_name.ends_with(".txt") || file_name.ends_with(".html");
                    if file_name.starts_with('.') || !is_template {
                        continue;
                    }
                    let Some((known_name, _)) =
                        TEMPLATES.iter().find(|(name, _)| *name == file_name)
                    else {
                        let known: Vec<&str> = TEMPLATES.iter().map(|(name, _)| *name).collect();
                        problems.push(format!(
                            "{file_name} is not a template the relay uses (known: {})",
                            known.join(", ")
                        ));
                        continue;
                    };
                    match std::fs::read_to_string(entry.path()) {
                        Ok(source) => {
                            sources.insert(known_name, source);
                        }
                        Err(error) => problems
                            .push(format!("cannot read {}: {error}", entry.path().display())),
                    }
                }
            }
            Err(error) => problems.push(format!("cannot read {}: {error}", folder.display())),
        }
    }

    let mut environment = Environment::new();
    // Templates are line-oriented text: a line holding only a tag leaves no blank line.
    environment.set_trim_blocks(true);
    environment.set_lstrip_blocks(true);
    // A misspelt variable is an error at check-config, not an empty hole in a notice.
    environment.set_undefined_behavior(UndefinedBehavior::SemiStrict);
    environment.set_auto_escape_callback(|name| {
        if name.ends_with(".html") {
            AutoEscape::Html
        } else {
            AutoEscape::None
        }
    });
    for (name, source) in sources {
        if let Err(error) = environment.add_template_owned(name, source) {
            problems.push(format!("{name}: {error}"));
        }
    }
    if problems.is_empty() {
        Ok(environment)
    } else {
        Err(problems)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn summary_of(scopes: &[AlertScope]) -> ScopeSummary {
        summarize(scopes, &Inventory::default_samsa())
    }

    fn actors(ids: &[&str]) -> Vec<AlertScope> {
        ids.iter()
            .map(|id| AlertScope::Actor((*id).to_owned()))
            .collect()
    }

    #[test]
    fn scope_is_put_into_words() {
        let inventory = Inventory::default_samsa();
        let all_of = |subregion_id: &str| AlertScope::Subregion(subregion_id.to_owned());
        let first_of = |subregion_id: &str, count: usize| -> Vec<AlertScope> {
            inventory
                .actors_in(subregion_id)
                .take(count)
                .map(|actor| AlertScope::Actor(actor.id.clone()))
                .collect()
        };
        let mut whole_and_many = vec![all_of("skaraborg")];
        whole_and_many.extend(first_of("goteborg", 15));
        let mut five_parts = actors(&["kommun-ale", "kommun-hjo", "kommun-vara", "kommun-mark"]);
        five_parts.push(all_of("fyrbodal"));

        let cases: Vec<(Vec<AlertScope>, &str, &str)> = vec![
            (
                actors(&["kommun-trollhattan"]),
                "kommunen Trollhättan",
                "kommunen Trollhättan",
            ),
            (
                actors(&["kommun-trollhattan", "kommun-uddevalla", "kommun-boras"]),
                "kommunerna Trollhättan, Uddevalla och Borås",
                "kommunerna Trollhättan, Uddevalla och Borås",
            ),
            (
                actors(&["sjukhus-nal"]),
                "NU-sjukvården, NÄL",
                "NU-sjukvården, NÄL",
            ),
            (
                actors(&["kommun-trollhattan", "sjukhus-nal", "kommun-boras"]),
                "2 verksamheter i Fyrbodal och 1 verksamhet i Södra Älvsborg",
                "2 verksamheter i Fyrbodal och 1 verksamhet i Södra Älvsborg",
            ),
            (
                actors(&[
                    "kommun-ale",
                    "kommun-lerum",
                    "kommun-tjorn",
                    "kommun-orust",
                    "kommun-hjo",
                ]),
                "1 verksamhet i Fyrbodal, 3 verksamheter i Göteborgsregionen och 1 verksamhet i Skaraborg",
                "5 av 67 verksamheter",
            ),
            (vec![all_of("fyrbodal")], "hela Fyrbodal", "hela Fyrbodal"),
            (
                vec![all_of("fyrbodal"), all_of("skaraborg")],
                "hela Fyrbodal och hela Skaraborg",
                "hela Fyrbodal och hela Skaraborg",
            ),
            (
                whole_and_many,
                "15 verksamheter i Göteborgsregionen och hela Skaraborg",
                "15 verksamheter i Göteborgsregionen och hela Skaraborg",
            ),
            (five_parts, "21 av 67 verksamheter", "21 av 67 verksamheter"),
            (
                vec![AlertScope::Everything],
                "samtliga verksamheter",
                "alla verksamheter",
            ),
            (
                actors(&["kommun-xyz", "kommun-ale"]),
                "kommunen Ale och 1 verksamhet med okänt id",
                "kommunen Ale och 1 verksamhet med okänt id",
            ),
            (
                vec![],
                "en eller flera verksamheter",
                "en eller flera verksamheter",
            ),
        ];
        for (scopes, within, short) in cases {
            let scope = describe_scope(&summary_of(&scopes));
            assert_eq!(scope.within, within, "{scopes:?}");
            assert_eq!(scope.short, short, "{scopes:?}");
        }
        // 17 named in Fyrbodal + 3 in Skaraborg: too many to name, counted per sub-region.
        let mut twenty = first_of("fyrbodal", 16);
        twenty.extend(first_of("skaraborg", 3));
        let scope = describe_scope(&summary_of(&twenty));
        assert_eq!(
            scope.lines,
            [
                "Fyrbodal: 16 av 17 verksamheter, varav alla 14 kommuner",
                "Skaraborg: 3 av 20 verksamheter, varav 3 av 15 kommuner",
            ]
        );
        assert_eq!(
            scope.short,
            "16 verksamheter i Fyrbodal och 3 verksamheter i Skaraborg"
        );
    }

    #[test]
    fn scope_lines_name_few_actors_and_list_unknown_ids() {
        let mut scopes = actors(&["kommun-uddevalla", "sjukhus-nal", "okand-1"]);
        scopes.push(AlertScope::Subregion("skaraborg".to_owned()));
        scopes.push(AlertScope::Subregion("lappland".to_owned()));
        let scope = describe_scope(&summary_of(&scopes));
        assert_eq!(
            scope.lines,
            [
                "Fyrbodal, 2 av 17 verksamheter:",
                "- Uddevalla",
                "- NU-sjukvården, NÄL",
                "Skaraborg: hela delregionen (20 verksamheter)",
                "1 verksamhet med okänt id (finns inte i aktörslistan): okand-1",
                "1 okänd delregion (finns inte i aktörslistan): lappland",
            ]
        );
    }

    #[test]
    fn embedded_templates_render_every_sample() {
        let renderer = NoticeRenderer::new(&NoticesConfig::default()).unwrap();
        assert_eq!(renderer.check(), Vec::<String>::new());
    }

    #[test]
    fn crisis_email_only_at_level_three() {
        let renderer = NoticeRenderer::new(&NoticesConfig::default()).unwrap();
        for (name, input) in sample_inputs() {
            let rendered = renderer.render(&input).unwrap();
            let level_three = input.classification.level == Level::Three;
            assert_eq!(!rendered.crisis_subject.is_empty(), level_three, "{name}");
            assert_eq!(!rendered.crisis_text.is_empty(), level_three, "{name}");
        }
    }

    #[test]
    fn a_template_folder_overrides_file_by_file_and_is_checked() {
        let folder = tempfile::tempdir().unwrap();
        std::fs::write(
            folder.path().join("banner.txt"),
            "Störning i {{ service_name }} ({{ scope.short }})",
        )
        .unwrap();
        std::fs::write(folder.path().join("README.md"), "ignored").unwrap();
        let config = NoticesConfig {
            templates_dir: Some(folder.path().to_owned()),
            ..NoticesConfig::default()
        };
        assert_eq!(template_problems(&config), Vec::<String>::new());
        let renderer = NoticeRenderer::new(&config).unwrap();
        let (_, input) = sample_inputs().remove(0);
        let rendered = renderer.render(&input).unwrap();
        assert_eq!(
            rendered.banner_text,
            "Störning i SAMSA (kommunen Trollhättan)"
        );
        assert!(rendered.email_subject.starts_with("Driftstörning i SAMSA"));

        std::fs::write(
            folder.path().join("email.txt"),
            "{% block subject %}{{ oops }}{% endblock %}{% block body %}x{% endblock %}",
        )
        .unwrap();
        std::fs::write(folder.path().join("itnytt.txt"), "{% if %}").unwrap();
        std::fs::write(folder.path().join("emial.txt"), "typo").unwrap();
        let problems = template_problems(&config);
        let joined = problems.join("\n");
        assert!(joined.contains("itnytt.txt"), "{joined}");
        assert!(joined.contains("emial.txt is not a template"), "{joined}");

        std::fs::remove_file(folder.path().join("itnytt.txt")).unwrap();
        std::fs::remove_file(folder.path().join("emial.txt")).unwrap();
        let problems = template_problems(&config);
        assert!(
            problems.iter().any(|problem| problem.contains("undefined")),
            "{problems:?}"
        );
    }

    #[test]
    fn html_escapes_and_headers_stay_on_one_line() {
        let renderer = NoticeRenderer::new(&NoticesConfig::default()).unwrap();
        let (_, mut input) = sample_inputs().remove(1);
        input.additional_information = Some("<b>fet</b>\r\nBcc: x@example.com".to_owned());
        input.summary.unknown_actor_ids = vec!["<script>alert(1)</script>".to_owned()];
        let rendered = renderer.render(&input).unwrap();
        assert!(!rendered.email_html.contains("<script"));
        assert!(!rendered.email_html.contains("<b>fet"));
        assert!(rendered.email_html.contains("&lt;script&gt;"));
        assert!(!rendered.email_text.contains('\r'));
        for title in [
            &rendered.email_subject,
            &rendered.website_title,
            &rendered.banner_text,
        ] {
            assert!(!title.contains('\n') && !title.contains('\r'));
        }
    }

    #[test]
    fn kinds_serialize_lowercase() {
        assert_eq!(
            serde_json::to_string(&NoticeKind::Resolved).unwrap(),
            "\"resolved\""
        );
        assert_eq!(NoticeKind::Update.as_str(), "update");
    }
}
