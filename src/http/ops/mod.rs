//! The operator pages under `/ops/`: server-rendered Swedish HTML that works without
//! JavaScript and on a phone. GET never changes anything (mail scanners open links);
//! every POST needs the page's CSRF token.
//!
//! Every page is reached in one of two forms, and each handler is written once for both:
//!
//! - a signed link, the token in the path: `/ops/d/{token}` is the dashboard (and the
//!   follow-up pages and every draft's review page, `/ops/d/{token}/r/{draft_id}`, under
//!   it), `/ops/r/{token}` the review page of the draft the link names;
//! - behind a single sign-on proxy (when `review.trusted_user_header` is set): the same
//!   pages under `/ops/sso/d` and `/ops/sso/r/{draft_id}`.
//!
//! [`OperatorSession`] (the dashboard's pages) and [`ReviewSession`] (a review page) are
//! the extractors that authenticate either form. A review link opens only its draft, never
//! the dashboard, and no page mints a link: what a page links to lives under the link in
//! hand (so it expires with it), and a review link's operator asks for a dashboard link at
//! `/ops/login`. A dashboard link opens review pages only under its own prefix. Every link
//! check also compares the link's issue time with the stored "links valid from" time
//! (`samsa-relay revoke-links`). The dashboard's pages are one [`Router`] nested under
//! both prefixes.

mod dashboard;
mod diff;
mod followup;
mod login;
mod maintenance;
mod review;

use axum::Router;
use axum::extract::{FromRequest, FromRequestParts, RawPathParams, Request};
use axum::http::request::Parts;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use jiff::Timestamp;
use serde::de::DeserializeOwned;

use super::AppState;
use super::pages::{message_page, read_form};
use crate::config::Operator;
use crate::links::{LinkError, LinkPurpose};

/// Every route under `/ops/`.
pub(super) fn routes() -> Router<AppState> {
    // One login limiter per router, so each app (and each test) has its own.
    let login_limiter = std::sync::Arc::new(login::LoginLimiter::new());
    Router::new()
        .route(
            "/ops/login",
            get(login::login_page).post(login::login_submit),
        )
        .route_layer(axum::Extension(login_limiter))
        .route("/ops/static/style.css", get(stylesheet))
        .nest("/ops/d/{token}", dashboard_pages())
        .route(
            "/ops/d/{token}/r/{draft_id}",
            get(review::review_page).post(review::review_action),
        )
        .nest("/ops/sso/d", dashboard_pages())
        .route(
            "/ops/r/{token}",
            get(review::review_page).post(review::review_action),
        )
        .route(
            "/ops/sso/r/{draft_id}",
            get(review::review_page).post(review::review_action),
        )
}

/// The dashboard, planned maintenance and the follow-up under it, mounted under the dashboard's link and under
/// single sign-on alike.
fn dashboard_pages() -> Router<AppState> {
    Router::new()
        .route(
            "/",
            get(dashboard::dashboard_page).post(dashboard::dashboard_action),
        )
        .route(
            "/maintenance/new",
            get(maintenance::new_page).post(maintenance::new_submit),
        )
        .route(
            "/maintenance/{window_id}",
            get(maintenance::window_page).post(maintenance::window_action),
        )
        .route("/followup", get(followup::incident_list))
        .route("/followup/incidents.csv", get(followup::incidents_csv))
        .route("/followup/summary.csv", get(followup::summary_csv))
        .route(
            "/followup/{incident_id}",
            get(followup::incident_page).post(followup::incident_action),
        )
        .route(
            "/followup/{incident_id}/report.md",
            get(followup::report_md),
        )
        .route(
            "/followup/{incident_id}/report.html",
            get(followup::report_html),
        )
        .route(
            "/followup/{incident_id}/report.json",
            get(followup::report_json),
        )
}

const STYLESHEET: &str = include_str!("templates/style.css");

async fn stylesheet() -> Response {
    let mut response = STYLESHEET.into_response();
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/css; charset=utf-8"),
    );
    response.headers_mut().insert(
        header::CACHE_CONTROL,
        HeaderValue::from_static("public, max-age=3600"),
    );
    response
}

// ---------------------------------------------------------------------------------------
// Who is acting, and through what.

/// The operator on one of the dashboard's pages (the dashboard and the follow-up), and
/// the CSRF context of its forms. Extracted from a dashboard link's token in the path, or
/// from the single sign-on header on `/ops/sso/…`. Refused with the operator's message
/// pages: an expired, forged or review link (403), an address that is no longer an
/// operator (403), single sign-on not configured (404).
#[derive(Debug, Clone)]
pub(super) struct OperatorSession {
    pub(super) operator: Operator,
    access: Access,
}

/// The operator on one draft's review page: the draft a review link names (and the
/// version it was sent for), or behind single sign-on the draft in the path.
#[derive(Debug, Clone)]
pub(super) struct ReviewSession {
    pub(super) session: OperatorSession,
    pub(super) draft_id: i64,
    /// The version the review link was sent for; none behind single sign-on.
    pub(super) link_version: Option<i64>,
}

#[derive(Debug, Clone)]
enum Access {
    /// A signed link: the token in the path. A dashboard link also opens the review page
    /// of any draft under it (`/ops/d/{token}/r/{draft_id}`, no new link minted); a review
    /// link opens its own draft only.
    Link { token: String, dashboard: bool },
    /// A single sign-on proxy vouched for the operator.
    Sso,
}

/// How long a fresh CSRF token (the login form's, every form's behind single sign-on)
/// may be posted after the page was shown.
pub(super) const FRESH_CSRF_MAX_AGE: std::time::Duration = std::time::Duration::from_secs(2 * 3600);

impl OperatorSession {
    /// A CSRF token for a form on this session's page. Under a link it is derived from the
    /// link (and dies with it); behind single sign-on there is no link, so each page gets
    /// a fresh token bound to the operator that expires after [`FRESH_CSRF_MAX_AGE`].
    pub(super) fn csrf(&self, state: &AppState) -> String {
        match &self.access {
            Access::Link { token, .. } => state.signer.csrf_token(token),
            Access::Sso => state
                .signer
                .fresh_csrf_token(&self.sso_csrf_context(), Timestamp::now()),
        }
    }

    /// Whether the posted token (empty when the form had none) belongs to this session.
    pub(super) fn check_csrf(&self, state: &AppState, posted: &str) -> bool {
        if posted.is_empty() {
            return false;
        }
        match &self.access {
            Access::Link { token, .. } => state.signer.check_csrf(token, posted),
            Access::Sso => state.signer.check_fresh_csrf(
                &self.sso_csrf_context(),
                posted,
                Timestamp::now(),
                FRESH_CSRF_MAX_AGE,
            ),
        }
    }

    fn sso_csrf_context(&self) -> String {
        format!("sso\0{}", self.operator.email)
    }

    /// The dashboard's URL under the link in hand, for a session opened by the
    /// dashboard's own link (its forms post there; the follow-up pages live under it).
    pub(super) fn dashboard_path(&self) -> String {
        match &self.access {
            Access::Link { token, .. } => format!("/ops/d/{token}"),
            Access::Sso => "/ops/sso/d".to_owned(),
        }
    }

    /// The review page's URL under the session in hand (its forms post there): the review
    /// link itself, the draft's page under the dashboard link, or behind single sign-on.
    pub(super) fn review_path(&self, draft_id: i64) -> String {
        match &self.access {
            Access::Link {
                token,
                dashboard: false,
            } => format!("/ops/r/{token}"),
            Access::Link {
                token,
                dashboard: true,
            } => format!("/ops/d/{token}/r/{draft_id}"),
            Access::Sso => format!("/ops/sso/r/{draft_id}"),
        }
    }

    /// The review page of a draft, linked from a dashboard page: under the dashboard link
    /// in hand (absolute, as the links in emails are), never a newly signed link; behind
    /// single sign-on its `/ops/sso/` path.
    pub(super) fn review_url(&self, state: &AppState, draft_id: i64) -> String {
        match &self.access {
            Access::Link { .. } => state.config.public_link(&self.review_path(draft_id)),
            Access::Sso => self.review_path(draft_id),
        }
    }

    /// Where "to the dashboard" leads from a page of this session, and its text. A review
    /// link opens no dashboard and mints no link to it: its operator is sent to the login
    /// page to ask for a dashboard link by email.
    pub(super) fn dashboard_link(&self) -> (String, &'static str) {
        match &self.access {
            Access::Link {
                dashboard: false, ..
            } => ("/ops/login".to_owned(), "Be om en länk till översikten"),
            _ => (self.dashboard_path(), "Till översikten"),
        }
    }
}

impl FromRequestParts<AppState> for OperatorSession {
    type Rejection = Response;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &AppState,
    ) -> Result<OperatorSession, Response> {
        let (session, _) =
            authenticate(parts, state, |purpose| *purpose == LinkPurpose::Dashboard).await?;
        Ok(session)
    }
}

impl FromRequestParts<AppState> for ReviewSession {
    type Rejection = Response;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &AppState,
    ) -> Result<ReviewSession, Response> {
        let parameters = path_parameters(parts).await?;
        // A draft in the path: the review page under a dashboard link or single sign-on.
        // None: under a review link, which names its draft itself.
        let draft_in_path = match path_parameter(&parameters, "draft_id") {
            None => None,
            Some(text) => Some(text.parse::<i64>().map_err(|_| draft_not_found())?),
        };
        let (session, purpose) = authenticate(parts, state, |purpose| match purpose {
            LinkPurpose::Review { .. } => draft_in_path.is_none(),
            LinkPurpose::Dashboard => draft_in_path.is_some(),
        })
        .await?;
        match (purpose, draft_in_path) {
            (Some(LinkPurpose::Review { draft_id, version }), None) => Ok(ReviewSession {
                session,
                draft_id,
                link_version: Some(version),
            }),
            (Some(LinkPurpose::Dashboard) | None, Some(draft_id)) => Ok(ReviewSession {
                session,
                draft_id,
                link_version: None,
            }),
            // Already refused by `authenticate`; answered the same way here.
            _ => Err(link_refused(LinkError::BadSignature)),
        }
    }
}

/// The session of the request: of the link whose token is in the path (which must be
/// one `opens` accepts: any other is refused as a bad link before the operator is looked
/// up, and one issued before the stored "links valid from" time is refused as revoked),
/// or else of the operator the single sign-on proxy names. The operator is looked up in
/// the running config on every request, so one removed from it is refused at once.
/// Returns the link's purpose, none behind single sign-on.
// The error is the page to answer with; it is built once per request, so its size
// does not matter.
#[allow(clippy::result_large_err)]
async fn authenticate(
    parts: &mut Parts,
    state: &AppState,
    opens: impl Fn(&LinkPurpose) -> bool,
) -> Result<(OperatorSession, Option<LinkPurpose>), Response> {
    let Some(token) = path_parameter(&path_parameters(parts).await?, "token") else {
        return session_from_sso(state, parts).map(|session| (session, None));
    };
    let verified = match state.signer.verify_issued(&token, Timestamp::now()) {
        Ok(verified) => verified,
        Err(LinkError::Expired) => return Err(link_expired(state, &token).await),
        Err(error) => return Err(link_refused(error)),
    };
    let claims = verified.claims;
    if !opens(&claims.purpose) {
        return Err(link_refused(LinkError::BadSignature));
    }
    match state.storage.links_valid_from().await {
        Ok(Some(valid_from)) if verified.issued_at <= valid_from.as_millisecond() => {
            return Err(link_revoked());
        }
        Ok(_) => {}
        Err(error) => {
            tracing::error!(error = ?anyhow::Error::from(error), "cannot read when links were revoked");
            return Err(storage_unavailable());
        }
    }
    let operator = state
        .config
        .review
        .operator(&claims.operator)
        .cloned()
        .ok_or_else(not_an_operator)?;
    let dashboard = claims.purpose == LinkPurpose::Dashboard;
    Ok((
        OperatorSession {
            operator,
            access: Access::Link { token, dashboard },
        },
        Some(claims.purpose),
    ))
}

/// The matched route's path parameters, percent-decoded. One that is not UTF-8 is
/// answered as a malformed link (never taken for a route without a token).
#[allow(clippy::result_large_err)]
async fn path_parameters(parts: &mut Parts) -> Result<RawPathParams, Response> {
    RawPathParams::from_request_parts(parts, &())
        .await
        .map_err(|_| link_refused(LinkError::Malformed))
}

fn path_parameter(parameters: &RawPathParams, name: &str) -> Option<String> {
    parameters
        .iter()
        .find(|(key, _)| *key == name)
        .map(|(_, value)| value.to_owned())
}

/// The session of the operator a single sign-on proxy names in the configured header.
#[allow(clippy::result_large_err)]
fn session_from_sso(state: &AppState, parts: &Parts) -> Result<OperatorSession, Response> {
    let Some(header_name) = &state.config.review.trusted_user_header else {
        return Err(message_page(
            StatusCode::NOT_FOUND,
            "Inloggning via SSO är inte påslagen",
            &["Använd länken i e-postmeddelandet."],
            Some(("/ops/login", "Be om en länk")),
        ));
    };
    let email = parts
        .headers
        .get(header_name)
        .and_then(|value| value.to_str().ok())
        .unwrap_or("");
    let operator = state
        .config
        .review
        .operator(email)
        .cloned()
        .ok_or_else(not_an_operator)?;
    Ok(OperatorSession {
        operator,
        access: Access::Sso,
    })
}

// ---------------------------------------------------------------------------------------
// Forms.

/// A form on an operator page, through axum's `Form` ([`read_form`]); a form that cannot
/// be read is answered with an operator message page.
pub(super) struct OperatorForm<T>(pub(super) T);

impl<T: DeserializeOwned> FromRequest<AppState> for OperatorForm<T> {
    type Rejection = Response;

    async fn from_request(request: Request, _state: &AppState) -> Result<Self, Response> {
        read_form(request)
            .await
            .map(OperatorForm)
            .map_err(|refusal| {
                message_page(refusal.status(), refusal.heading(), &[refusal.text()], None)
            })
    }
}

/// A number field read as leniently as the pages always did: missing, empty or not a
/// number is `None`, and the page says what is wrong.
pub(super) fn optional_number<'de, D>(deserializer: D) -> Result<Option<i64>, D::Error>
where
    D: serde::Deserializer<'de>,
{
    let text: Option<String> = serde::Deserialize::deserialize(deserializer)?;
    Ok(text.and_then(|text| text.parse().ok()))
}

// ---------------------------------------------------------------------------------------
// The pages every operator page answers with when it refuses.

/// What to do about an expired link, in one step: ask for a new one at `/ops/login`. A
/// review link's page also says whether its draft still waits. `Expired` is only
/// returned for a link whose signature holds, so its claims can be read by checking it
/// as of a time before it expired.
async fn link_expired(state: &AppState, token: &str) -> Response {
    let draft_id = match state.signer.verify(token, Timestamp::UNIX_EPOCH) {
        Ok(claims) => match claims.purpose {
            LinkPurpose::Review { draft_id, .. } => Some(draft_id),
            LinkPurpose::Dashboard => None,
        },
        Err(_) => None,
    };
    let draft_waits = match draft_id {
        None => None,
        Some(draft_id) => match state.storage.pending_drafts_overview().await {
            Ok(pending) => Some(pending.iter().any(|draft| draft.draft_id == draft_id)),
            Err(error) => {
                tracing::warn!(error = ?anyhow::Error::from(error), "cannot read the pending drafts for an expired link");
                None
            }
        },
    };
    let mut paragraphs = vec![EXPIRED_LINK_STEP];
    match draft_waits {
        Some(true) => paragraphs.push("Utkastet väntar fortfarande på granskning."),
        Some(false) => paragraphs
            .push("Utkastet väntar inte längre: det är redan publicerat, kasserat eller ersatt."),
        None => {}
    }
    message_page(
        StatusCode::FORBIDDEN,
        "Länken har gått ut",
        &paragraphs,
        Some(("/ops/login", "Be om en ny länk")),
    )
}

/// The one step after an expired link.
const EXPIRED_LINK_STEP: &str = "Be om en ny länk på inloggningssidan: skriv din e-postadress där, så kommer en ny länk med e-post.";

/// The answer to an address under `/ops/` that leads nowhere: a Swedish page in the
/// operators' layout instead of the browser's empty 404.
pub(super) fn not_found_page() -> Response {
    message_page(
        StatusCode::NOT_FOUND,
        "Sidan finns inte",
        &[
            "Adressen leder inte till någon sida. Kontrollera att hela länken från e-postmeddelandet kom med, eller be om en ny länk.",
        ],
        Some(("/ops/login", "Be om en ny länk")),
    )
}

pub(super) fn link_refused(error: LinkError) -> Response {
    let (heading, text) = match error {
        LinkError::Expired => ("Länken har gått ut", EXPIRED_LINK_STEP),
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

pub(super) fn link_revoked() -> Response {
    message_page(
        StatusCode::FORBIDDEN,
        "Länken är återkallad",
        &["Alla länkar som skickats före en viss tidpunkt har dragits tillbaka. Be om en ny länk."],
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

pub(super) fn draft_not_found() -> Response {
    message_page(StatusCode::NOT_FOUND, "Utkastet finns inte", &[], None)
}
