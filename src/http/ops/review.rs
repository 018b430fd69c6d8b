//! The review page of one draft (`/ops/r/{token}`, `/ops/sso/r/{draft_id}`) and its
//! confirmation. The page leads with exactly what goes out, per chosen channel (its
//! Swedish label, how it reaches people, every text), then, for an update, what changed
//! against the notice published before; then the incident and the operator's choices
//! (level, decision, channels, fields), and Discard.
//!
//! Saving and publishing are separate steps. **Spara ändringar** stores an edit as a new,
//! rendered version and says that nothing is published. **Granska och publicera** saves
//! an edit too, checks the choices (errors at their fields, GOV.UK style) and shows the
//! confirmation page: the channels with their recipient counts, the decision and the
//! texts once more, and **Publicera nu**, the only button that publishes. Nothing unseen
//! is published: Publicera nu names the version the confirmation showed, and a posted text
//! that differs from it is saved and confirmed again instead.

use std::fmt;

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::Response;
use jiff::Timestamp;
use minijinja::context;
use serde::Deserialize;
use serde::de::{Deserializer, MapAccess, Visitor};

use super::diff;
use super::{
    OperatorForm, OperatorSession, ReviewSession, csrf_refused, draft_not_found, optional_number,
    storage_unavailable,
};
use crate::classify::Level;
use crate::config::{ChannelContent, ChannelTransport};
use crate::http::AppState;
use crate::http::pages::{message_page, page, parse_local_time, render, stockholm};
use crate::incident::{DraftState, IncidentKind};
use crate::notice::{NoticeInput, NoticeKind, RenderedNotice, format_swedish_time, kind_label};
use crate::publishing::{
    Decision, DecisionRole, PublishError, PublishRequest, check_choices, revise_draft,
};
use crate::storage::{DraftFields, DraftRecord, IncidentRecord, PublishedNoticeRecord};

/// The review page's forms: the review (save or confirm), the confirmation (publish) and
/// the discard form.
#[derive(Debug, Deserialize)]
pub(super) struct ReviewFields {
    #[serde(default)]
    csrf: String,
    /// The version the page showed.
    #[serde(default, deserialize_with = "optional_number")]
    version: Option<i64>,
    action: Option<ReviewAction>,
    /// 1, 2 or 3; checked by [`fields_from_form`].
    level: Option<String>,
    #[serde(default)]
    decided_by: String,
    /// A [`DecisionRole`].
    #[serde(default)]
    role: String,
    additional_information: Option<String>,
    /// Swedish local time, `2026-11-28T09:00`.
    expected_resolution: Option<String>,
    next_update: Option<String>,
    #[serde(default)]
    discard_reason: String,
    /// One per ticked channel checkbox.
    #[serde(flatten)]
    channels: Channels,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
enum ReviewAction {
    /// Spara ändringar (`preview`, its name before the confirmation step, too).
    #[serde(alias = "preview")]
    Save,
    /// Granska och publicera: save an edit, check the choices, show the confirmation.
    Confirm,
    /// Publicera nu, from the confirmation page.
    Publish,
    Discard,
    #[serde(other)]
    Unknown,
}

/// The values of the repeated field `channels`, in order. serde_urlencoded (behind axum's
/// `Form`) has no sequences; flattened into the form's struct, this is handed the fields
/// the struct does not name and keeps those called `channels`.
#[derive(Debug, Default)]
struct Channels(Vec<String>);

impl<'de> Deserialize<'de> for Channels {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Channels, D::Error> {
        struct ChannelsVisitor;

        impl<'de> Visitor<'de> for ChannelsVisitor {
            type Value = Channels;

            fn expecting(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
                formatter.write_str("form fields")
            }

            fn visit_map<A: MapAccess<'de>>(self, mut fields: A) -> Result<Channels, A::Error> {
                let mut channels = Vec::new();
                while let Some((name, value)) = fields.next_entry::<String, String>()? {
                    if name == "channels" {
                        channels.push(value);
                    }
                }
                Ok(Channels(channels))
            }
        }

        deserializer.deserialize_map(ChannelsVisitor)
    }
}

/// A problem with one field of the form (or with the form as a whole: `field` empty),
/// shown in the error summary at the top and next to its field.
/// The maintenance forms (`maintenance.rs`) use it too, with their own field names.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct FieldError {
    /// `level`, `decided_by`, `role`, `channels`, `additional_information`,
    /// `expected_resolution`, `next_update`, `discard_reason`, or empty.
    pub(super) field: &'static str,
    pub(super) message: String,
}

impl FieldError {
    pub(super) fn new(field: &'static str, message: impl Into<String>) -> FieldError {
        FieldError {
            field,
            message: message.into(),
        }
    }
}

/// What a page shows besides the draft: a plain status line, errors, and the status code.
#[derive(Debug, Default)]
struct Outcome {
    /// Said plainly in a neutral box (`role="status"`): what was saved, that nothing is
    /// published yet.
    status: Option<String>,
    errors: Vec<FieldError>,
    code: Option<StatusCode>,
}

impl Outcome {
    fn status(text: impl Into<String>) -> Outcome {
        Outcome {
            status: Some(text.into()),
            ..Outcome::default()
        }
    }

    fn errors(errors: Vec<FieldError>) -> Outcome {
        Outcome {
            errors,
            ..Outcome::default()
        }
    }

    fn code(&self) -> StatusCode {
        self.code.unwrap_or(if self.errors.is_empty() {
            StatusCode::OK
        } else {
            StatusCode::UNPROCESSABLE_ENTITY
        })
    }
}

pub(super) async fn review_page(review: ReviewSession, State(state): State<AppState>) -> Response {
    show_review(
        &state,
        &review.session,
        review.draft_id,
        review.link_version,
        Outcome::default(),
        None,
    )
    .await
}

/// The draft, its incident and the incident's published notices (oldest first).
struct Loaded {
    draft: DraftRecord,
    incident: IncidentRecord,
    published: Vec<PublishedNoticeRecord>,
}

impl Loaded {
    fn latest(&self) -> Option<&crate::storage::DraftVersionRecord> {
        self.draft.versions.last()
    }

    fn is_drill(&self) -> bool {
        self.incident.kind == IncidentKind::Drill
    }

    /// For a resolution at level 2 or 3: the decision the incident was published under,
    /// which stands; the plan asks for no new one to say that it is over.
    fn standing_decision(&self, level: Level) -> Option<Decision> {
        if self.draft.kind != NoticeKind::Resolved || level == Level::One {
            return None;
        }
        self.published.iter().rev().find_map(|notice| {
            let decided_by = notice.decided_by.as_deref()?.trim();
            let role = DecisionRole::parse(notice.decided_role.as_deref()?)?;
            (!decided_by.is_empty() && role.allowed_at(level)).then(|| Decision {
                decided_by: decided_by.to_owned(),
                role,
            })
        })
    }
}

enum LoadError {
    NotFound,
    Unavailable,
}

impl LoadError {
    fn response(self) -> Response {
        match self {
            LoadError::NotFound => draft_not_found(),
            LoadError::Unavailable => storage_unavailable(),
        }
    }
}

async fn load(state: &AppState, draft_id: i64) -> Result<Loaded, LoadError> {
    let (draft, incident) = state
        .storage
        .draft_with_incident(draft_id)
        .await
        .map_err(|_| LoadError::Unavailable)?
        .ok_or(LoadError::NotFound)?;
    if draft.versions.is_empty() {
        return Err(LoadError::NotFound);
    }
    let published = state
        .storage
        .followup_snapshot(draft.incident_id)
        .await
        .map_err(|_| LoadError::Unavailable)?
        .map(|snapshot| snapshot.notices)
        .unwrap_or_default();
    Ok(Loaded {
        draft,
        incident,
        published,
    })
}

/// What the form showed or posted, for showing it again after an error or a save: typed
/// text is never lost.
#[derive(Default, Clone)]
struct ReviewForm {
    level: Option<u8>,
    decided_by: String,
    role: String,
    channels: Option<Vec<String>>,
    additional_information: Option<String>,
    expected_resolution: Option<String>,
    next_update: Option<String>,
}

impl ReviewForm {
    fn from_fields(form: &ReviewFields) -> ReviewForm {
        ReviewForm {
            level: form.level.as_deref().and_then(|value| value.parse().ok()),
            decided_by: form.decided_by.trim().chars().take(200).collect(),
            role: form.role.clone(),
            channels: Some(form.channels.0.clone()),
            additional_information: form.additional_information.clone(),
            expected_resolution: form.expected_resolution.clone(),
            next_update: form.next_update.clone(),
        }
    }

    /// The decision the form gives, or the standing one when it gives none.
    fn decision(&self, standing: Option<&Decision>) -> Option<Decision> {
        match (
            self.decided_by.is_empty(),
            DecisionRole::parse(&self.role),
            standing,
        ) {
            (false, Some(role), _) => Some(Decision {
                decided_by: self.decided_by.clone(),
                role,
            }),
            (true, None, Some(standing)) => Some(standing.clone()),
            _ => None,
        }
    }
}

/// The plan's levels and what each means, as the forms offer them.
pub(super) const LEVELS: [(u8, &str); 3] = [
    (1, "Avbrott i IT-tjänsten"),
    (2, "Övergång till reservrutin i delar av verksamheterna"),
    (
        3,
        "Övergång till reservrutin i alla verksamheter (kriskommunikation)",
    ),
];

/// The channels a draft may go out on (those of any level of the plan; for a drill only
/// drill channels), in plan order.
fn offered_channels(state: &AppState, is_drill: bool) -> Vec<String> {
    let plan = &state.config.plan;
    let mut names: Vec<String> = Vec::new();
    for number in 1..=3 {
        for name in plan.channels_for(number) {
            if !names.contains(name)
                && (!is_drill || state.config.channels.get(name).is_some_and(|c| c.drill))
            {
                names.push(name.clone());
            }
        }
    }
    names
}

/// What goes out on one channel: its label, how it reaches people, and its texts.
/// `subscribers`: the people a subscribers channel reaches (its config lists none).
fn channel_output(
    state: &AppState,
    name: &str,
    rendered: &RenderedNotice,
    subscribers: usize,
) -> minijinja::Value {
    let recipients = state
        .config
        .channels
        .get(name)
        .map_or(0, |channel| match channel.transport {
            ChannelTransport::Subscribers => subscribers,
            _ => channel.transport.recipients().len(),
        });
    let reach = delivery_phrases(state, &[(name.to_owned(), recipients)]).remove(0);
    let reach = reach
        .split_once(": ")
        .map_or(reach.clone(), |(_, what)| what.to_owned());
    let parts = channel_texts(state, name, rendered);
    context! {
        name => name,
        label => channel_label(state, name),
        reach => reach,
        parts => parts
            .into_iter()
            .map(|(heading, text)| context! { heading => heading, text => text })
            .collect::<Vec<_>>(),
    }
}

/// A channel's texts as they go out: (what, text). Empty for a crisis channel below
/// level 3, which then sends nothing.
fn channel_texts<'a>(
    state: &AppState,
    name: &str,
    rendered: &'a RenderedNotice,
) -> Vec<(&'static str, &'a str)> {
    let Some(channel) = state.config.channels.get(name) else {
        return Vec::new();
    };
    let texts = match channel.content {
        ChannelContent::Banner => vec![("Text på inloggningssidan", &rendered.banner_text)],
        ChannelContent::Email => vec![
            ("Ämne", &rendered.email_subject),
            ("Text", &rendered.email_text),
        ],
        ChannelContent::Website => vec![
            ("Rubrik", &rendered.website_title),
            ("Text", &rendered.website_body),
        ],
        ChannelContent::Newsletter => vec![
            ("Rubrik", &rendered.newsletter_title),
            ("Text", &rendered.newsletter_body),
        ],
        ChannelContent::Itnytt => vec![
            ("Rubrik", &rendered.itnytt_title),
            ("Text", &rendered.itnytt_body),
        ],
        ChannelContent::Crisis => vec![
            ("Ämne", &rendered.crisis_subject),
            ("Text", &rendered.crisis_text),
        ],
    };
    texts
        .into_iter()
        .filter(|(_, text)| !text.is_empty())
        .map(|(heading, text)| (heading, text.as_str()))
        .collect()
}

/// What changed per chosen channel against the notice published before: only channels
/// whose texts changed, each text as kept, removed and added lines.
fn changes(
    state: &AppState,
    channels: &[String],
    before: &RenderedNotice,
    after: &RenderedNotice,
) -> Vec<minijinja::Value> {
    let mut changed = Vec::new();
    for name in channels {
        let old = channel_texts(state, name, before);
        let new = channel_texts(state, name, after);
        let mut parts = Vec::new();
        for (heading, new_text) in &new {
            let old_text = old
                .iter()
                .find(|(old_heading, _)| old_heading == heading)
                .map_or("", |(_, text)| text);
            if old_text == *new_text {
                continue;
            }
            let lines: Vec<_> = diff::lines(old_text, new_text)
                .into_iter()
                .filter(|line| !matches!(line, diff::Line::Same(text) if text.trim().is_empty()))
                .map(|line| match line {
                    diff::Line::Same(text) => context! { kind => "same", text => text },
                    diff::Line::Removed(text) => context! { kind => "removed", text => text },
                    diff::Line::Added(text) => context! { kind => "added", text => text },
                })
                .collect();
            parts.push(context! { heading => heading, lines => lines });
        }
        if !parts.is_empty() {
            changed.push(context! { label => channel_label(state, name), parts => parts });
        }
    }
    changed
}

pub(super) fn field_errors_map(
    errors: &[FieldError],
) -> std::collections::BTreeMap<&'static str, String> {
    let mut map = std::collections::BTreeMap::new();
    for error in errors.iter().filter(|error| !error.field.is_empty()) {
        map.entry(error.field)
            .or_insert_with(|| error.message.clone());
    }
    map
}

/// The summary's links: each error to its field's control (the control's id is the
/// field's name, except for the level's first radio and the first channel).
pub(super) fn error_summary(errors: &[FieldError], channels: &[String]) -> Vec<minijinja::Value> {
    errors
        .iter()
        .map(|error| {
            let anchor = match error.field {
                "" => None,
                "level" => Some("level-1".to_owned()),
                "channels" => channels.first().map(|name| format!("channel-{name}")),
                field => Some(field.to_owned()),
            };
            context! { anchor => anchor, message => error.message }
        })
        .collect()
}

async fn show_review(
    state: &AppState,
    session: &OperatorSession,
    draft_id: i64,
    link_version: Option<i64>,
    outcome: Outcome,
    form: Option<ReviewForm>,
) -> Response {
    let loaded = match load(state, draft_id).await {
        Ok(loaded) => loaded,
        Err(error) => return error.response(),
    };
    let Some(latest) = loaded.latest() else {
        return draft_not_found();
    };
    let input: Option<NoticeInput> = serde_json::from_value(latest.input.clone()).ok();
    let Some(input) = input else {
        return storage_unavailable();
    };
    let draft = &loaded.draft;
    let form = form.unwrap_or_default();
    let rendered_level = input.classification.level;
    let level = form.level.unwrap_or(rendered_level.as_number());
    let suggested = &loaded.incident.incident.classification;
    let tz = stockholm();
    let local = |timestamp: Option<Timestamp>| {
        timestamp
            .map(|timestamp| {
                timestamp
                    .to_zoned(tz.clone())
                    .strftime("%Y-%m-%dT%H:%M")
                    .to_string()
            })
            .unwrap_or_default()
    };
    let plan = &state.config.plan;
    let offered = offered_channels(state, loaded.is_drill());
    let chosen: Vec<String> = offered
        .iter()
        .filter(|name| match &form.channels {
            Some(chosen) => chosen.contains(name),
            None => plan.channels_for(level).contains(name),
        })
        .cloned()
        .collect();
    // Whom the subscribers' channel would reach if published now, and why.
    let reach = if offered.iter().any(|name| {
        matches!(
            state.config.channels[name.as_str()].transport,
            ChannelTransport::Subscribers
        )
    }) {
        let level = Level::from_number(level).unwrap_or(Level::One);
        match crate::subscribers::reach(
            &state.storage,
            &state.config,
            draft.incident_id,
            &input.summary,
            level,
        )
        .await
        {
            Ok(reach) => Some(reach),
            Err(_) => return storage_unavailable(),
        }
    } else {
        None
    };
    let n_subscribers = reach.as_ref().map_or(0, |reach| reach.n_people);
    let reach =
        reach.map(|reach| reach_text(&reach, Level::from_number(level).unwrap_or(Level::One)));
    let channels: Vec<_> = offered
        .iter()
        .map(|name| {
            let levels: Vec<String> = (1..=3u8)
                .filter(|number| plan.channels_for(*number).contains(name))
                .map(|number| number.to_string())
                .collect();
            let subscribers = matches!(
                state.config.channels[name.as_str()].transport,
                ChannelTransport::Subscribers
            );
            context! {
                name => name,
                label => channel_label(state, name),
                levels => levels.join(", "),
                checked => chosen.contains(name),
                reach => if subscribers { reach.clone() } else { None },
            }
        })
        .collect();
    let outputs: Vec<_> = chosen
        .iter()
        .map(|name| channel_output(state, name, &latest.rendered, n_subscribers))
        .collect();
    let previous = loaded.published.last();
    let previous_context = previous.map(|notice| {
        context! {
            kind_label => kind_label(notice.kind),
            published_at => format_swedish_time(notice.published_at),
            level => notice.level.as_number(),
            changes => changes(state, &chosen, &notice.rendered, &latest.rendered),
        }
    });
    let subregions: Vec<_> = input
        .summary
        .subregions
        .iter()
        .map(|subregion| {
            context! {
                name => subregion.name,
                n_affected => subregion.n_affected,
                n_actors => subregion.n_actors,
                whole => subregion.n_affected == subregion.n_actors && subregion.n_actors > 0,
                affected_names => subregion.affected_names.iter().take(15).cloned().collect::<Vec<_>>(),
            }
        })
        .collect();
    let roles = [
        DecisionRole::Subregional,
        DecisionRole::CouncilChair,
        DecisionRole::CouncilViceChair,
    ]
    .map(|role| context! { value => role.as_str(), label => role.label() });
    let levels = LEVELS.map(|(number, label)| context! { number => number, label => label });
    let standing = Level::from_number(level).and_then(|level| loaded.standing_decision(level));
    let is_resolution = draft.kind == NoticeKind::Resolved;
    let code = outcome.code();
    page(
        code,
        render(
            "review.html",
            context! {
                operator_name => session.operator.name,
                drill => input.drill,
                status => outcome.status,
                errors => error_summary(&outcome.errors, &offered),
                field_errors => field_errors_map(&outcome.errors),
                incident_id => draft.incident_id,
                kind_label => kind_label(draft.kind),
                is_resolution => is_resolution,
                maintenance_step => input.maintenance.as_ref().map(|notice| notice.step.label()),
                maintenance_title => input.maintenance.as_ref().map(|notice| notice.title.clone()),
                is_overran => input.maintenance.as_ref().is_some_and(|notice| {
                    notice.step == crate::maintenance::Step::Overran
                }),
                newer_than_link => link_version.is_some_and(|version| version < latest.version),
                version => latest.version,
                rendered_level => rendered_level.as_number(),
                started => format_swedish_time(input.started_at),
                resolved => input.resolved_at.map(format_swedish_time),
                suggested_level => suggested.level.as_number(),
                suggested_crisis => suggested.crisis,
                reasons => suggested.reasons,
                subregions => subregions,
                unknown => input.summary.unknown_actor_ids,
                editable => draft.state == DraftState::Pending,
                state_label => state_label(draft.state.as_str()),
                csrf => session.csrf(state),
                action_url => session.review_path(draft_id),
                levels => levels,
                level => level,
                decided_by => form.decided_by,
                selected_role => form.role,
                standing => standing.map(|decision| context! {
                    decided_by => decision.decided_by,
                    role_label => decision.role.label(),
                }),
                roles => roles,
                channels => channels,
                outputs => outputs,
                previous => previous_context,
                additional_information => form.additional_information
                    .unwrap_or_else(|| latest.fields.additional_information.clone().unwrap_or_default()),
                expected_resolution => form.expected_resolution
                    .unwrap_or_else(|| local(latest.fields.expected_resolution)),
                next_update => form.next_update.unwrap_or_else(|| local(latest.fields.next_update)),
            },
        ),
    )
}

/// The confirmation page: the channels and how many each reaches, the level and the
/// decision, the texts once more, and Publicera nu.
async fn show_confirmation(
    state: &AppState,
    session: &OperatorSession,
    draft_id: i64,
    saved: Option<String>,
    form: &ReviewForm,
) -> Response {
    let loaded = match load(state, draft_id).await {
        Ok(loaded) => loaded,
        Err(error) => return error.response(),
    };
    let Some(latest) = loaded.latest() else {
        return draft_not_found();
    };
    let Some(input) = serde_json::from_value::<NoticeInput>(latest.input.clone()).ok() else {
        return storage_unavailable();
    };
    let level = input.classification.level;
    let offered = offered_channels(state, loaded.is_drill());
    let chosen: Vec<String> = offered
        .iter()
        .filter(|name| {
            form.channels
                .as_ref()
                .is_some_and(|chosen| chosen.contains(name))
        })
        .cloned()
        .collect();
    let standing = loaded.standing_decision(level);
    let decision = form.decision(standing.as_ref());
    let decision_text = match (&decision, &standing) {
        (Some(decision), Some(standing)) if decision == standing => format!(
            "Beslutet står fast: {} ({}).",
            decision.decided_by,
            decision.role.label()
        ),
        (Some(decision), _) => format!(
            "Beslut: {} ({}).",
            decision.decided_by,
            decision.role.label()
        ),
        (None, _) => "Nivå 1 kräver inget beslut.".to_owned(),
    };
    // The subscribers it reaches, if published now (counted again at Publish).
    let n_subscribers = if chosen.iter().any(|name| {
        state
            .config
            .channels
            .get(name)
            .is_some_and(|channel| matches!(channel.transport, ChannelTransport::Subscribers))
    }) {
        match crate::subscribers::reach(
            &state.storage,
            &state.config,
            loaded.draft.incident_id,
            &input.summary,
            level,
        )
        .await
        {
            Ok(reach) => reach.n_people,
            Err(_) => return storage_unavailable(),
        }
    } else {
        0
    };
    let n_mails: usize = chosen
        .iter()
        .filter_map(|name| state.config.channels.get(name))
        .filter(|channel| matches!(channel.transport, ChannelTransport::Email { .. }))
        .map(|channel| channel.transport.recipients().len())
        .sum::<usize>()
        + n_subscribers;
    page(
        StatusCode::OK,
        render(
            "review_confirm.html",
            context! {
                operator_name => session.operator.name,
                drill => input.drill,
                status => saved,
                incident_id => loaded.draft.incident_id,
                kind_label => kind_label(loaded.draft.kind),
                version => latest.version,
                level => level.as_number(),
                decision_text => decision_text,
                n_mails => n_mails,
                outputs => chosen
                    .iter()
                    .map(|name| channel_output(state, name, &latest.rendered, n_subscribers))
                    .collect::<Vec<_>>(),
                csrf => session.csrf(state),
                action_url => session.review_path(draft_id),
                channels => chosen,
                decided_by => decision.as_ref().map(|decision| decision.decided_by.clone()).unwrap_or_default(),
                role => decision.as_ref().map(|decision| decision.role.as_str()).unwrap_or_default(),
            },
        ),
    )
}

pub(super) async fn review_action(
    review: ReviewSession,
    State(state): State<AppState>,
    OperatorForm(form): OperatorForm<ReviewFields>,
) -> Response {
    let (state, session, draft_id) = (&state, &review.session, review.draft_id);
    if !session.check_csrf(state, &form.csrf) {
        return csrf_refused();
    }
    let review_form = ReviewForm::from_fields(&form);
    match form.action {
        Some(ReviewAction::Discard) => discard(state, session, draft_id, &form).await,
        Some(action @ (ReviewAction::Save | ReviewAction::Confirm | ReviewAction::Publish)) => {
            save_confirm_or_publish(state, session, draft_id, action, &form, review_form).await
        }
        _ => {
            show_review(
                state,
                session,
                draft_id,
                None,
                Outcome::errors(vec![FieldError::new("", "Okänd åtgärd.")]),
                Some(review_form),
            )
            .await
        }
    }
}

async fn discard(
    state: &AppState,
    session: &OperatorSession,
    draft_id: i64,
    form: &ReviewFields,
) -> Response {
    let reason: String = form.discard_reason.trim().chars().take(1000).collect();
    if reason.is_empty() {
        return show_review(
            state,
            session,
            draft_id,
            None,
            Outcome::errors(vec![FieldError::new(
                "discard_reason",
                "Ange varför utkastet kasseras.",
            )]),
            Some(ReviewForm::from_fields(form)),
        )
        .await;
    }
    match state
        .storage
        .discard_draft(draft_id, &reason, &session.operator.name, Timestamp::now())
        .await
    {
        Ok(Some((_, created_at))) => {
            observe_decision(state, created_at);
            let (dashboard_href, dashboard_text) = session.dashboard_link();
            message_page(
                StatusCode::OK,
                "Utkastet är kasserat",
                &["Inget publicerades. Orsaken finns i incidentens logg."],
                Some((&dashboard_href, dashboard_text)),
            )
        }
        Ok(None) => {
            show_review(
                state,
                session,
                draft_id,
                None,
                Outcome::errors(vec![FieldError::new("", "Utkastet väntar inte längre.")]),
                None,
            )
            .await
        }
        Err(_) => storage_unavailable(),
    }
}

async fn save_confirm_or_publish(
    state: &AppState,
    session: &OperatorSession,
    draft_id: i64,
    action: ReviewAction,
    form: &ReviewFields,
    review_form: ReviewForm,
) -> Response {
    let operator = session.operator.name.clone();
    let posted_version = form.version.unwrap_or(0);
    let loaded = match load(state, draft_id).await {
        Ok(loaded) => loaded,
        Err(error) => return error.response(),
    };
    let Some(latest) = loaded.latest() else {
        return draft_not_found();
    };
    let fields = match fields_from_form(form, &latest.fields) {
        Ok(fields) => fields,
        Err(errors) => {
            return show_review(
                state,
                session,
                draft_id,
                None,
                Outcome::errors(errors),
                Some(review_form),
            )
            .await;
        }
    };
    let rendered_level = latest.input["classification"]["level"]
        .as_u64()
        .unwrap_or(1) as u8;
    let chosen_level = fields
        .level
        .map_or(rendered_level, |level| level.as_number());
    // The text fields count as changed only when posted: the confirmation page posts
    // none, and publishes the version it showed.
    let texts_posted = form.additional_information.is_some()
        || form.expected_resolution.is_some()
        || form.next_update.is_some();
    let unchanged = chosen_level == rendered_level
        && (!texts_posted
            || (fields.expected_resolution == latest.fields.expected_resolution
                && fields.next_update == latest.fields.next_update
                && fields.additional_information == latest.fields.additional_information));
    let mut saved: Option<String> = None;
    if !unchanged {
        match revise_draft(
            &state.storage,
            &state.renderer,
            draft_id,
            &fields,
            &operator,
        )
        .await
        {
            Ok(version) => {
                saved = Some(format!(
                    "Dina ändringar är sparade som version {version}. Inget är publicerat ännu."
                ));
            }
            Err(crate::publishing::ReviseError::Storage(_)) => return storage_unavailable(),
            Err(error) => {
                return show_review(
                    state,
                    session,
                    draft_id,
                    None,
                    Outcome::errors(vec![FieldError::new("", error.to_string())]),
                    Some(review_form),
                )
                .await;
            }
        }
    }
    let level = Level::from_number(chosen_level).unwrap_or(Level::One);
    let standing = loaded.standing_decision(level);
    let decision = review_form.decision(standing.as_ref());
    match action {
        ReviewAction::Save => {
            let status = match (&saved, posted_version == latest.version) {
                (Some(saved), _) => format!(
                    "{saved} Texterna nedan visar den nya versionen. Välj Granska och publicera när du är klar."
                ),
                (None, true) => "Inget ändrades. Inget är publicerat ännu.".to_owned(),
                (None, false) => format!(
                    "Utkastet har ändrats sedan du öppnade sidan: du ser nu version {}. Inget är publicerat ännu.",
                    latest.version
                ),
            };
            // The saved text is shown from the draft, not from the form.
            let review_form = ReviewForm {
                additional_information: None,
                expected_resolution: None,
                next_update: None,
                ..review_form
            };
            show_review(
                state,
                session,
                draft_id,
                None,
                Outcome::status(status),
                Some(review_form),
            )
            .await
        }
        ReviewAction::Confirm => {
            let problems = check_choices(
                &state.config,
                level,
                &review_form.channels.clone().unwrap_or_default(),
                decision.as_ref(),
                loaded.is_drill(),
            );
            if !problems.is_empty() {
                let errors = problems
                    .iter()
                    .flat_map(|problem| publish_errors(state, problem, &review_form))
                    .collect();
                return show_review(
                    state,
                    session,
                    draft_id,
                    None,
                    Outcome {
                        status: saved,
                        errors,
                        code: None,
                    },
                    Some(review_form),
                )
                .await;
            }
            show_confirmation(state, session, draft_id, saved, &review_form).await
        }
        _ => {
            if saved.is_some() {
                // A text that differs from the confirmed version: saved; confirm it anew.
                return show_confirmation(state, session, draft_id, saved, &review_form).await;
            }
            if posted_version != latest.version {
                return show_review(
                    state,
                    session,
                    draft_id,
                    None,
                    Outcome {
                        status: None,
                        errors: vec![FieldError::new(
                            "",
                            format!(
                                "Utkastet har ändrats (nu version {}) sedan du granskade det. Inget publicerades. Läs texterna och välj Granska och publicera igen.",
                                latest.version
                            ),
                        )],
                        code: Some(StatusCode::CONFLICT),
                    },
                    Some(review_form),
                )
                .await;
            }
            publish(state, session, &loaded, level, decision, review_form).await
        }
    }
}

async fn publish(
    state: &AppState,
    session: &OperatorSession,
    loaded: &Loaded,
    level: Level,
    decision: Option<Decision>,
    review_form: ReviewForm,
) -> Response {
    let draft = &loaded.draft;
    let Some(latest) = loaded.latest() else {
        return draft_not_found();
    };
    let request = PublishRequest {
        draft_id: draft.draft_id,
        draft_version: latest.version,
        level,
        channels: review_form.channels.clone().unwrap_or_default(),
        decision,
        operator: session.operator.name.clone(),
    };
    match state.publisher.publish(&request).await {
        Ok(publication) => {
            observe_decision(state, draft_created_at(draft));
            let channels: Vec<String> = request
                .channels
                .iter()
                .map(|name| channel_label(state, name))
                .collect();
            let what = format!(
                "Meddelandet om incident {} är publicerat på nivå {} i: {}.",
                publication.incident_id,
                publication.level,
                channels.join(", ")
            );
            let decided = match &request.decision {
                Some(decision) => format!(
                    "Beslut: {} ({}).",
                    decision.decided_by,
                    decision.role.label()
                ),
                None => "Nivå 1 kräver inget beslut.".to_owned(),
            };
            let deliveries = format!(
                "{}. Följ leveranserna på översikten.",
                delivery_phrases(state, &publication.deliveries_per_channel).join("; ")
            );
            let (dashboard_href, dashboard_text) = session.dashboard_link();
            message_page(
                StatusCode::OK,
                "Publicerat",
                &[&what, &decided, &deliveries],
                Some((&dashboard_href, dashboard_text)),
            )
        }
        Err(PublishError::Storage(_)) => storage_unavailable(),
        Err(error) => {
            let errors = publish_errors(state, &error, &review_form);
            show_review(
                state,
                session,
                draft.draft_id,
                None,
                Outcome::errors(errors),
                Some(review_form),
            )
            .await
        }
    }
}

/// A refusal of the choices, at the field it concerns.
fn publish_errors(state: &AppState, error: &PublishError, form: &ReviewForm) -> Vec<FieldError> {
    match error {
        PublishError::DecisionRequired { level } => {
            let mut errors = Vec::new();
            if form.decided_by.is_empty() {
                errors.push(FieldError::new(
                    "decided_by",
                    format!("Nivå {level} är ett beslut: ange vem som beslutade."),
                ));
            }
            if DecisionRole::parse(&form.role).is_none() {
                errors.push(FieldError::new(
                    "role",
                    format!("Nivå {level} är ett beslut: välj i vilken roll beslutet fattades."),
                ));
            }
            if errors.is_empty() {
                errors.push(FieldError::new("decided_by", error.to_string()));
            }
            errors
        }
        PublishError::WrongRole { .. } => vec![FieldError::new("role", format!("{error}."))],
        PublishError::NoChannels => vec![FieldError::new("channels", format!("{error}."))],
        PublishError::ChannelNotInPlan { channel, level } => vec![FieldError::new(
            "channels",
            format!(
                "{} ingår inte i planen för nivå {level}: välj bort kanalen eller välj en annan nivå.",
                channel_label(state, channel)
            ),
        )],
        PublishError::ChannelNotForDrills { channel } => vec![FieldError::new(
            "channels",
            format!(
                "{} används inte vid övningar: välj bort kanalen.",
                channel_label(state, channel)
            ),
        )],
        PublishError::LevelNotPreviewed { .. } => {
            vec![FieldError::new("level", format!("{error}."))]
        }
        _ => vec![FieldError::new("", format!("{error}."))],
    }
}

fn draft_created_at(draft: &DraftRecord) -> Timestamp {
    draft
        .versions
        .first()
        .map(|version| version.created_at)
        .unwrap_or_else(Timestamp::now)
}

fn observe_decision(state: &AppState, created_at: Timestamp) {
    let waited = Timestamp::now()
        .duration_since(created_at)
        .as_secs_f64()
        .max(0.0);
    state.metrics.draft_decision.observe(waited);
}

/// The operator's fields from the form. A text field the form did not post keeps the
/// draft's value (`previous`); one posted empty is cleared.
fn fields_from_form(
    form: &ReviewFields,
    previous: &DraftFields,
) -> Result<DraftFields, Vec<FieldError>> {
    let mut errors = Vec::new();
    let level = match form.level.as_deref() {
        Some(text) => match text.parse::<u8>().ok().and_then(Level::from_number) {
            Some(level) => Some(level),
            None => {
                errors.push(FieldError::new("level", "Välj nivå 1, 2 eller 3."));
                None
            }
        },
        None => None,
    };
    let mut time = |field: &Option<String>,
                    name: &'static str,
                    label: &str,
                    previous: Option<Timestamp>|
     -> Option<Timestamp> {
        let Some(text) = field.as_deref() else {
            return previous;
        };
        let text = text.trim();
        if text.is_empty() {
            return None;
        }
        let parsed = parse_local_time(text);
        if parsed.is_none() {
            errors.push(FieldError::new(
                name,
                format!("{label}: ange datum och tid som ÅÅÅÅ-MM-DD TT:MM."),
            ));
        }
        parsed
    };
    let expected_resolution = time(
        &form.expected_resolution,
        "expected_resolution",
        "Beräknas vara löst",
        previous.expected_resolution,
    );
    let next_update = time(
        &form.next_update,
        "next_update",
        "Nästa uppdatering",
        previous.next_update,
    );
    let additional_information = match form.additional_information.as_deref() {
        None => previous.additional_information.clone(),
        Some(text) => Some(
            text.replace("\r\n", "\n")
                .trim()
                .chars()
                .take(4000)
                .collect::<String>(),
        )
        .filter(|text| !text.is_empty()),
    };
    if !errors.is_empty() {
        return Err(errors);
    }
    Ok(DraftFields {
        level,
        expected_resolution,
        next_update,
        additional_information,
    })
}

/// A channel as people read it: its configured (or default) Swedish label, never its id.
pub(super) fn channel_label(state: &AppState, name: &str) -> String {
    state
        .config
        .channels
        .get(name)
        .map_or_else(|| name.to_owned(), |channel| channel.label.clone())
}

/// The confirmation's count, per channel: mails and webhook calls are counted as what
/// they are; the login page and the feeds reach readers without a recipient list.
fn delivery_phrases(state: &AppState, per_channel: &[(String, usize)]) -> Vec<String> {
    per_channel
        .iter()
        .map(|(name, n)| {
            let label = channel_label(state, name);
            let transport = state.config.channels.get(name).map(|c| &c.transport);
            match transport {
                Some(ChannelTransport::Banner { .. }) => {
                    format!("{label}: visas på inloggningssidan")
                }
                Some(ChannelTransport::Feed) => format!("{label}: publiceras i flödet"),
                Some(ChannelTransport::Email { .. }) => format!(
                    "{label}: {}",
                    crate::swedish::count_phrase(
                        *n,
                        "e-postmeddelande skickas",
                        "e-postmeddelanden skickas"
                    )
                ),
                Some(ChannelTransport::Subscribers) => format!(
                    "{label}: {}",
                    crate::swedish::count_phrase(
                        *n,
                        "prenumerant får e-post",
                        "prenumeranter får e-post"
                    )
                ),
                Some(ChannelTransport::Webhook { .. }) | None => {
                    format!("{label}: skickas vidare till mottagarens system")
                }
            }
        })
        .collect()
}

/// "Når 3 prenumeranter på nivå 1: Borås 2, hela Skaraborg 1." for the review page.
fn reach_text(reach: &crate::subscription::Reach, level: Level) -> String {
    let people = crate::swedish::count_phrase(reach.n_people, "prenumerant", "prenumeranter");
    if reach.by_reason.is_empty() {
        return format!(
            "Når {people} på nivå {}: ingen prenumerant har valt det som berörs.",
            level.as_number()
        );
    }
    let reasons: Vec<String> = reach
        .by_reason
        .iter()
        .map(|(label, n)| format!("{label} {n}"))
        .collect();
    format!(
        "Når {people} på nivå {}: {}.",
        level.as_number(),
        reasons.join(", ")
    )
}

fn state_label(state: &str) -> &'static str {
    match state {
        "published" => "publicerat",
        "withdrawn" => "återkallat",
        "discarded" => "kasserat",
        _ => "inte längre väntande",
    }
}

#[cfg(test)]
mod tests {
    use axum::body::Body;
    use axum::extract::Request;

    use super::*;
    use crate::http::pages::{FormRefusal, read_form};

    async fn fields(body: &str) -> Result<ReviewFields, FormRefusal> {
        let request = Request::post("/ops/r/token")
            .header("content-type", "application/x-www-form-urlencoded")
            .body(Body::from(body.to_owned()))
            .unwrap();
        read_form(request).await
    }

    #[tokio::test]
    async fn the_review_form_keeps_every_channel_and_reads_numbers_and_actions_leniently() {
        let form = fields(
            "csrf=abc&version=3&channels=banner&level=2&channels=website&action=publish&extra=x",
        )
        .await
        .unwrap();
        assert_eq!(form.csrf, "abc");
        assert_eq!(form.version, Some(3));
        assert_eq!(form.level.as_deref(), Some("2"));
        assert_eq!(form.action, Some(ReviewAction::Publish));
        assert_eq!(
            fields("action=preview").await.unwrap().action,
            Some(ReviewAction::Save),
            "the old name of Spara ändringar"
        );
        assert_eq!(form.channels.0, ["banner", "website"]);

        let form = fields("version=three&action=withdraw&level=")
            .await
            .unwrap();
        assert_eq!(form.version, None, "not a number");
        assert_eq!(form.action, Some(ReviewAction::Unknown));
        assert_eq!(form.level.as_deref(), Some(""), "present but empty");
        assert!(form.channels.0.is_empty());
        assert_eq!(form.csrf, "");

        let form = fields("").await.unwrap();
        assert_eq!(form.action, None);
        assert_eq!(form.level, None, "missing");
        assert_eq!(form.expected_resolution, None);

        assert_eq!(
            fields("csrf=a&csrf=b").await.unwrap_err(),
            FormRefusal::Malformed,
            "a field that may appear once, twice"
        );
    }

    #[tokio::test]
    async fn a_form_is_refused_by_its_size_and_type_in_swedish_terms() {
        let too_large = format!("discard_reason={}", "x".repeat(64 * 1024));
        assert_eq!(fields(&too_large).await.unwrap_err(), FormRefusal::TooLarge);
        let request = Request::post("/ops/r/token")
            .header("content-type", "application/json")
            .body(Body::from("{}"))
            .unwrap();
        assert_eq!(
            read_form::<ReviewFields>(request).await.unwrap_err(),
            FormRefusal::NotAForm
        );
    }
}
