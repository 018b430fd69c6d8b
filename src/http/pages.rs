//! What the server-rendered HTML pages share: the operator pages of [`super::ops`] and the
//! public feedback and follow-up pages of [`super::feedback`]. One template environment,
//! the security headers, the message pages every operator page answers with when it
//! refuses, the operator's session (signed link or single sign-on) and Swedish local time.

use std::sync::LazyLock;

use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use jiff::Timestamp;
use jiff::tz::TimeZone;
use minijinja::{Environment, context};

use super::AppState;
use crate::config::Operator;
use crate::links::{LinkError, LinkPurpose};
use crate::operators::signed_link;
use crate::swedish::SWEDISH_TIME_ZONE;

/// Longest form body accepted on these pages; larger ones get 413.
pub(super) const MAX_FORM_BYTES: usize = 64 * 1024;

/// Every page's template, operator and public. The names do not overlap.
static TEMPLATES: LazyLock<Environment<'static>> = LazyLock::new(|| {
    let mut environment = Environment::new();
    for (name, source) in [
        ("layout.html", include_str!("ops_templates/layout.html")),
        ("message.html", include_str!("ops_templates/message.html")),
        ("login.html", include_str!("ops_templates/login.html")),
        (
            "dashboard.html",
            include_str!("ops_templates/dashboard.html"),
        ),
        ("review.html", include_str!("ops_templates/review.html")),
        (
            "public_layout.html",
            include_str!("feedback_templates/public_layout.html"),
        ),
        (
            "feedback_form.html",
            include_str!("feedback_templates/feedback_form.html"),
        ),
        (
            "feedback_message.html",
            include_str!("feedback_templates/feedback_message.html"),
        ),
        (
            "followup_incident.html",
            include_str!("feedback_templates/followup_incident.html"),
        ),
        (
            "followup_list.html",
            include_str!("feedback_templates/followup_list.html"),
        ),
    ] {
        environment
            .add_template(name, source)
            .expect("the page templates compile");
    }
    environment
});

/// Renders a template; a failure is logged and answered with a short Swedish error page.
pub(super) fn render(name: &str, context: minijinja::Value) -> String {
    match TEMPLATES
        .get_template(name)
        .and_then(|template| template.render(context))
    {
        Ok(html) => html,
        Err(error) => {
            tracing::error!(error = %error, template = name, "page failed to render");
            "<!DOCTYPE html><html lang=\"sv\"><title>Fel</title><p>Sidan kunde inte visas.</p></html>".to_owned()
        }
    }
}

/// A page response with the security headers every page carries.
pub(super) fn page(status: StatusCode, html: String) -> Response {
    let mut response = (status, html).into_response();
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/html; charset=utf-8"),
    );
    headers.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(
            "default-src 'none'; style-src 'self'; img-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'",
        ),
    );
    security_headers(headers);
    response
}

/// The headers every answer from these pages carries besides its type and policy:
/// pages, redirects and downloads alike.
pub(super) fn security_headers(headers: &mut HeaderMap) {
    headers.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    headers.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    headers.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
}

/// An operator page with a heading, paragraphs and an optional link (URL, text).
pub(super) fn message_page(
    status: StatusCode,
    heading: &str,
    paragraphs: &[&str],
    link: Option<(&str, &str)>,
) -> Response {
    page(
        status,
        render(
            "message.html",
            context! {
                heading => heading,
                paragraphs => paragraphs,
                link => link.map(|(url, _)| url),
                link_text => link.map(|(_, text)| text),
            },
        ),
    )
}

pub(super) fn link_refused(error: LinkError) -> Response {
    let (heading, text) = match error {
        LinkError::Expired => ("Länken har gått ut", "Be om en ny länk till översikten."),
        LinkError::Malformed | LinkError::BadSignature => (
            "Länken gäller inte",
            "Länken är ofullständig eller ändrad. Använd länken i e-postmeddelandet eller be om en ny.",
        ),
    };
    message_page(
        StatusCode::FORBIDDEN,
        heading,
        &[text],
        Some(("/ops/login", "Be om en ny länk")),
    )
}

pub(super) fn not_an_operator() -> Response {
    message_page(
        StatusCode::FORBIDDEN,
        "Ingen behörighet",
        &["Adressen är inte längre en operatör i samsa-relay."],
        None,
    )
}

pub(super) fn storage_unavailable() -> Response {
    message_page(
        StatusCode::SERVICE_UNAVAILABLE,
        "Försök igen om en stund",
        &["Lagringen svarar inte just nu. Inget har ändrats."],
        None,
    )
}

pub(super) fn csrf_refused() -> Response {
    message_page(
        StatusCode::FORBIDDEN,
        "Formuläret gäller inte",
        &[
            "Formuläret saknar eller har fel kontrollkod. Ladda om sidan från länken och försök igen.",
        ],
        None,
    )
}

/// Swedish local time, in which operators read and type times.
pub(super) fn stockholm() -> TimeZone {
    TimeZone::get(SWEDISH_TIME_ZONE).unwrap_or(TimeZone::UTC)
}

/// `2026-11-28T09:00` or `2026-11-28 09:00` (a datetime-local field) in Swedish time.
pub(super) fn parse_local_time(text: &str) -> Option<Timestamp> {
    let text = text.trim().replace(' ', "T");
    let civil: jiff::civil::DateTime = text.parse().ok()?;
    civil
        .to_zoned(stockholm())
        .ok()
        .map(|zoned| zoned.timestamp())
}

// ---------------------------------------------------------------------------------------
// The operator's session.

/// Who is acting, and through what.
#[derive(Debug, Clone)]
pub(super) struct Session {
    pub(super) operator: Operator,
    access: Access,
}

#[derive(Debug, Clone)]
enum Access {
    /// A signed link: the token in the path, and what it opens.
    Link { token: String },
    /// A single sign-on proxy vouched for the operator.
    Sso,
}

impl Session {
    /// What the CSRF token is bound to: the link's token, or the operator behind SSO.
    fn csrf_label(&self) -> String {
        match &self.access {
            Access::Link { token } => token.clone(),
            Access::Sso => format!("sso\0{}", self.operator.email),
        }
    }

    pub(super) fn csrf(&self, state: &AppState) -> String {
        state.signer.csrf_token(&self.csrf_label())
    }

    /// Whether the posted token (empty when the form had none) belongs to this session.
    pub(super) fn check_csrf(&self, state: &AppState, posted: &str) -> bool {
        !posted.is_empty() && state.signer.check_csrf(&self.csrf_label(), posted)
    }

    /// The dashboard's URL under the link in hand, for a session opened by the
    /// dashboard's own link (its forms post there; the follow-up pages live under it).
    pub(super) fn dashboard_path(&self) -> String {
        match &self.access {
            Access::Link { token } => format!("/ops/d/{token}"),
            Access::Sso => "/ops/sso/d".to_owned(),
        }
    }

    /// The review page's URL under the link in hand (its forms post there).
    pub(super) fn review_path(&self, draft_id: i64) -> String {
        match &self.access {
            Access::Link { token } => format!("/ops/r/{token}"),
            Access::Sso => format!("/ops/sso/r/{draft_id}"),
        }
    }

    /// A dashboard URL from any session: a link session gets a freshly signed dashboard
    /// link (a review link does not open the dashboard).
    pub(super) fn dashboard_url(&self, state: &AppState) -> String {
        self.url(state, LinkPurpose::Dashboard, "/ops/sso/d".to_owned())
    }

    /// A review URL from any session: a link session gets a freshly signed review link.
    pub(super) fn review_url(&self, state: &AppState, draft_id: i64, version: i64) -> String {
        self.url(
            state,
            LinkPurpose::Review { draft_id, version },
            format!("/ops/sso/r/{draft_id}"),
        )
    }

    /// A freshly signed link for `purpose`, or behind single sign-on the page's `sso_path`.
    fn url(&self, state: &AppState, purpose: LinkPurpose, sso_path: String) -> String {
        match &self.access {
            Access::Link { .. } => {
                signed_link(
                    &state.config,
                    &state.signer,
                    &self.operator,
                    purpose,
                    Timestamp::now(),
                )
                .0
            }
            Access::Sso => sso_path,
        }
    }
}

/// Which signed links a page accepts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Links {
    /// Any valid link; the caller matches on its purpose.
    Any,
    /// Only the dashboard's link; any other is refused as a bad link before the operator
    /// is looked up.
    DashboardOnly,
}

/// The session of a signed link, and what the link opens.
// The error is the page to answer with; it is built once per request, so its size
// does not matter.
#[allow(clippy::result_large_err)]
pub(super) fn session_from_link(
    state: &AppState,
    token: &str,
    accepts: Links,
) -> Result<(Session, LinkPurpose), Response> {
    let claims = state
        .signer
        .verify(token, Timestamp::now())
        .map_err(link_refused)?;
    if accepts == Links::DashboardOnly && claims.purpose != LinkPurpose::Dashboard {
        return Err(link_refused(LinkError::BadSignature));
    }
    let operator = state
        .config
        .review
        .operator(&claims.operator)
        .cloned()
        .ok_or_else(not_an_operator)?;
    Ok((
        Session {
            operator,
            access: Access::Link {
                token: token.to_owned(),
            },
        },
        claims.purpose,
    ))
}

/// The session of the operator a single sign-on proxy names in the configured header.
#[allow(clippy::result_large_err)]
pub(super) fn session_from_sso(state: &AppState, headers: &HeaderMap) -> Result<Session, Response> {
    let Some(header_name) = &state.config.review.trusted_user_header else {
        return Err(message_page(
            StatusCode::NOT_FOUND,
            "Inloggning via SSO är inte påslagen",
            &["Använd länken i e-postmeddelandet."],
            Some(("/ops/login", "Be om en länk")),
        ));
    };
    let email = headers
        .get(header_name)
        .and_then(|value| value.to_str().ok())
        .unwrap_or("");
    let operator = state
        .config
        .review
        .operator(email)
        .cloned()
        .ok_or_else(not_an_operator)?;
    Ok(Session {
        operator,
        access: Access::Sso,
    })
}
