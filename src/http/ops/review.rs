//! The review page of one draft (`/ops/r/{token}`, `/ops/sso/r/{draft_id}`): what the
//! relay suggests and why, the level, the decision, the channels and the operator's
//! fields, a preview of every text, and Publish or Discard. Nothing unseen is published:
//! an edit is previewed (as a new version) before Publish takes it.

use std::fmt;

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::Response;
use jiff::Timestamp;
use minijinja::context;
use serde::Deserialize;
use serde::de::{Deserializer, MapAccess, Visitor};

use super::{
    OperatorForm, OperatorSession, ReviewSession, csrf_refused, draft_not_found, optional_number,
    storage_unavailable,
};
use crate::classify::Level;
use crate::config::ChannelTransport;
use crate::http::AppState;
use crate::http::pages::{message_page, page, parse_local_time, render, stockholm};
use crate::incident::{DraftState, IncidentKind};
use crate::notice::{NoticeInput, RenderedNotice, format_swedish_time, kind_label};
use crate::publishing::{Decision, DecisionRole, PublishRequest, revise_draft};
use crate::storage::{DraftFields, DraftRecord};

/// The review page's forms: the review (Preview or Publish) and the discard form.
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
    Preview,
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

pub(super) async fn review_page(review: ReviewSession, State(state): State<AppState>) -> Response {
    show_review(
        &state,
        &review.session,
        review.draft_id,
        review.link_version,
        None,
        None,
        None,
    )
    .await
}

async fn find_draft(
    state: &AppState,
    draft_id: i64,
) -> Result<Option<(DraftRecord, crate::storage::IncidentRecord)>, ()> {
    state
        .storage
        .draft_with_incident(draft_id)
        .await
        .map_err(|_| ())
}

/// What the form showed or posted, for re-rendering after an error.
#[derive(Default, Clone)]
struct ReviewForm {
    level: Option<u8>,
    decided_by: String,
    role: String,
    channels: Option<Vec<String>>,
}

async fn show_review(
    state: &AppState,
    session: &OperatorSession,
    draft_id: i64,
    link_version: Option<i64>,
    flash: Option<&str>,
    error: Option<&str>,
    form: Option<ReviewForm>,
) -> Response {
    let (draft, incident) = match find_draft(state, draft_id).await {
        Ok(Some(found)) => found,
        Ok(None) => return draft_not_found(),
        Err(()) => return storage_unavailable(),
    };
    let Some(latest) = draft.versions.last() else {
        return draft_not_found();
    };
    let input: Option<NoticeInput> = serde_json::from_value(latest.input.clone()).ok();
    let Some(input) = input else {
        return storage_unavailable();
    };
    let form = form.unwrap_or_default();
    let level = form.level.unwrap_or(input.classification.level.as_number());
    let suggested = &incident.incident.classification;
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
    let mut channel_names: Vec<String> = Vec::new();
    for number in 1..=3 {
        for name in plan.channels_for(number) {
            if !channel_names.contains(name) {
                channel_names.push(name.clone());
            }
        }
    }
    let is_drill = incident.kind == IncidentKind::Drill;
    // Whom the subscribers' channel would reach if published now, and why.
    let reach = if channel_names.iter().any(|name| {
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
            Ok(reach) => Some(reach_text(&reach, level)),
            Err(_) => return storage_unavailable(),
        }
    } else {
        None
    };
    let channels: Vec<_> = channel_names
        .iter()
        .filter(|name| !is_drill || state.config.channels[name.as_str()].drill)
        .map(|name| {
            let levels: Vec<String> = (1..=3u8)
                .filter(|number| plan.channels_for(*number).contains(name))
                .map(|number| number.to_string())
                .collect();
            let checked = match &form.channels {
                Some(chosen) => chosen.contains(name),
                None => plan.channels_for(level).contains(name),
            };
            let subscribers = matches!(
                state.config.channels[name.as_str()].transport,
                ChannelTransport::Subscribers
            );
            context! {
                name => name,
                label => channel_label(state, name),
                levels => levels.join(", "),
                checked => checked,
                reach => if subscribers { reach.clone() } else { None },
            }
        })
        .collect();
    let action_url = session.review_path(draft_id);
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
    let levels = [
        (1, "Avbrott i IT-tjänsten"),
        (2, "Övergång till reservrutin i delar av verksamheterna"),
        (
            3,
            "Övergång till reservrutin i alla verksamheter (kriskommunikation)",
        ),
    ]
    .map(|(number, label)| context! { number => number, label => label });
    page(
        if error.is_some() {
            StatusCode::UNPROCESSABLE_ENTITY
        } else {
            StatusCode::OK
        },
        render(
            "review.html",
            context! {
                operator_name => session.operator.name,
                drill => input.drill,
                flash => flash,
                error => error,
                incident_id => draft.incident_id,
                kind_label => kind_label(draft.kind),
                newer_than_link => link_version.is_some_and(|version| version < latest.version),
                version => latest.version,
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
                action_url => action_url,
                levels => levels,
                level => level,
                decided_by => form.decided_by,
                selected_role => form.role,
                roles => roles,
                channels => channels,
                additional_information => latest.fields.additional_information.clone().unwrap_or_default(),
                expected_resolution => local(latest.fields.expected_resolution),
                next_update => local(latest.fields.next_update),
                preview => preview_sections(&latest.rendered),
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
    let operator = session.operator.name.clone();
    let posted_version = form.version.unwrap_or(0);
    let review_form = ReviewForm {
        level: form.level.as_deref().and_then(|value| value.parse().ok()),
        decided_by: form.decided_by.trim().chars().take(200).collect(),
        role: form.role.clone(),
        channels: Some(form.channels.0.clone()),
    };
    match form.action {
        Some(ReviewAction::Discard) => {
            let reason: String = form.discard_reason.trim().chars().take(1000).collect();
            if reason.is_empty() {
                return show_review(
                    state,
                    session,
                    draft_id,
                    None,
                    None,
                    Some("Ange varför utkastet kasseras."),
                    Some(review_form),
                )
                .await;
            }
            match state
                .storage
                .discard_draft(draft_id, &reason, &operator, Timestamp::now())
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
                        None,
                        Some("Utkastet väntar inte längre."),
                        None,
                    )
                    .await
                }
                Err(_) => storage_unavailable(),
            }
        }
        Some(action @ (ReviewAction::Preview | ReviewAction::Publish)) => {
            let (draft, _) = match find_draft(state, draft_id).await {
                Ok(Some(found)) => found,
                Ok(None) => {
                    return draft_not_found();
                }
                Err(()) => return storage_unavailable(),
            };
            let Some(latest) = draft.versions.last() else {
                return draft_not_found();
            };
            let fields = match fields_from_form(&form) {
                Ok(fields) => fields,
                Err(message) => {
                    return show_review(
                        state,
                        session,
                        draft_id,
                        None,
                        None,
                        Some(&message),
                        Some(review_form),
                    )
                    .await;
                }
            };
            let rendered_level = latest.input["classification"]["level"]
                .as_u64()
                .unwrap_or(1) as u8;
            let unchanged = fields
                .level
                .map_or(rendered_level, |level| level.as_number())
                == rendered_level
                && fields.expected_resolution == latest.fields.expected_resolution
                && fields.next_update == latest.fields.next_update
                && fields.additional_information == latest.fields.additional_information;
            if action == ReviewAction::Preview || !unchanged || posted_version != latest.version {
                if unchanged && posted_version == latest.version {
                    return show_review(
                        state,
                        session,
                        draft_id,
                        None,
                        Some("Förhandsvisningen är aktuell."),
                        None,
                        Some(review_form),
                    )
                    .await;
                }
                let message = if posted_version != latest.version {
                    "Utkastet ändrades medan du granskade. Kontrollera förhandsvisningen och publicera igen."
                } else if action == ReviewAction::Publish {
                    "Du ändrade något: förhandsvisningen är uppdaterad. Kontrollera den och tryck Publicera igen."
                } else {
                    "Förhandsvisningen är uppdaterad."
                };
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
                        Ok(_) => {}
                        Err(crate::publishing::ReviseError::Storage(_)) => {
                            return storage_unavailable();
                        }
                        Err(error) => {
                            return show_review(
                                state,
                                session,
                                draft_id,
                                None,
                                None,
                                Some(&error.to_string()),
                                Some(review_form),
                            )
                            .await;
                        }
                    }
                }
                return show_review(
                    state,
                    session,
                    draft_id,
                    None,
                    Some(message),
                    None,
                    Some(review_form),
                )
                .await;
            }
            let Some(level) = Level::from_number(rendered_level) else {
                return storage_unavailable();
            };
            let decision = match (
                review_form.decided_by.is_empty(),
                DecisionRole::parse(&review_form.role),
            ) {
                (false, Some(role)) => Some(Decision {
                    decided_by: review_form.decided_by.clone(),
                    role,
                }),
                _ => None,
            };
            let request = PublishRequest {
                draft_id,
                draft_version: latest.version,
                level,
                channels: review_form.channels.clone().unwrap_or_default(),
                decision,
                operator: operator.clone(),
            };
            match state.publisher.publish(&request).await {
                Ok(publication) => {
                    observe_decision(state, draft_created_at(&draft));
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
                Err(crate::publishing::PublishError::Storage(_)) => storage_unavailable(),
                Err(error) => {
                    show_review(
                        state,
                        session,
                        draft_id,
                        None,
                        None,
                        Some(&error.to_string()),
                        Some(review_form),
                    )
                    .await
                }
            }
        }
        _ => {
            show_review(
                state,
                session,
                draft_id,
                None,
                None,
                Some("Okänd åtgärd."),
                Some(review_form),
            )
            .await
        }
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

fn fields_from_form(form: &ReviewFields) -> Result<DraftFields, String> {
    let level = match form.level.as_deref() {
        Some(text) => Some(
            text.parse::<u8>()
                .ok()
                .and_then(Level::from_number)
                .ok_or("Välj nivå 1, 2 eller 3.")?,
        ),
        None => None,
    };
    let time = |field: &Option<String>, label: &str| -> Result<Option<Timestamp>, String> {
        match field
            .as_deref()
            .map(str::trim)
            .filter(|text| !text.is_empty())
        {
            None => Ok(None),
            Some(text) => parse_local_time(text)
                .map(Some)
                .ok_or_else(|| format!("{label}: ange datum och tid som ÅÅÅÅ-MM-DD TT:MM.")),
        }
    };
    let additional_information = form
        .additional_information
        .as_deref()
        .map(|text| {
            text.replace("\r\n", "\n")
                .trim()
                .chars()
                .take(4000)
                .collect::<String>()
        })
        .filter(|text| !text.is_empty());
    Ok(DraftFields {
        level,
        expected_resolution: time(&form.expected_resolution, "Beräknas vara löst")?,
        next_update: time(&form.next_update, "Nästa uppdatering")?,
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

fn preview_sections(rendered: &RenderedNotice) -> Vec<minijinja::Value> {
    let mut sections = vec![
        ("E-post: ämne", rendered.email_subject.as_str()),
        ("E-post: text", rendered.email_text.as_str()),
        ("Inloggningssidan", rendered.banner_text.as_str()),
        ("Webbplatsen: rubrik", rendered.website_title.as_str()),
        ("Webbplatsen: text", rendered.website_body.as_str()),
        ("Nyhetsbrevet: rubrik", rendered.newsletter_title.as_str()),
        ("Nyhetsbrevet: text", rendered.newsletter_body.as_str()),
        ("IT-Nytt: rubrik", rendered.itnytt_title.as_str()),
        ("IT-Nytt: text", rendered.itnytt_body.as_str()),
    ];
    if !rendered.crisis_text.is_empty() {
        sections.push(("Kris-e-post: ämne", rendered.crisis_subject.as_str()));
        sections.push(("Kris-e-post: text", rendered.crisis_text.as_str()));
    }
    sections
        .into_iter()
        .map(|(heading, text)| context! { heading => heading, text => text })
        .collect()
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
