//! The operator pages under `/ops/`: server-rendered Swedish HTML that works without
//! JavaScript and on a phone. GET never changes anything (mail scanners open links);
//! every POST needs the page's CSRF token.
//!
//! Every page is reached in one of two forms, and each handler is written once for both:
//!
//! - a signed link, the token in the path: `/ops/d/{token}` is the dashboard (and the
//!   follow-up pages under it), `/ops/r/{token}` the review page of the draft the link
//!   names;
//! - behind a single sign-on proxy (when `review.trusted_user_header` is set): the same
//!   pages under `/ops/sso/d` and `/ops/sso/r/{draft_id}`.
//!
//! [`OperatorSession`] (the dashboard's pages) and [`ReviewSession`] (a review page) are
//! the extractors that authenticate either form. A review link opens only its draft, never
//! the dashboard; a dashboard link opens no review page. The dashboard's pages are one
//! [`Router`] nested under both prefixes.

mod dashboard;
mod followup;
mod login;
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
use crate::operators::signed_link;

/// Every route under `/ops/`.
pub(super) fn routes() -> Router<AppState> {
    Router::new()
        .route("/ops/static/style.css", get(stylesheet))
        .route(
            "/ops/login",
            get(login::login_page).post(login::login_submit),
        )
        .nest("/ops/d/{token}", dashboard_pages())
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

/// The dashboard and the follow-up under it, mounted under the dashboard's link and under
/// single sign-on alike.
fn dashboard_pages() -> Router<AppState> {
    Router::new()
        .route(
            "/",
            get(dashboard::dashboard_page).post(dashboard::dashboard_action),
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
    /// A signed link: the token in the path.
    Link { token: String },
    /// A single sign-on proxy vouched for the operator.
    Sso,
}

impl OperatorSession {
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
        let (session, purpose) = authenticate(parts, state, |purpose| {
            matches!(purpose, LinkPurpose::Review { .. })
        })
        .await?;
        match purpose {
            Some(LinkPurpose::Review { draft_id, version }) => Ok(ReviewSession {
                session,
                draft_id,
                link_version: Some(version),
            }),
            // Already refused by `authenticate`; answered the same way here.
            Some(LinkPurpose::Dashboard) => Err(link_refused(LinkError::BadSignature)),
            None => {
                let draft_id = path_parameter(&path_parameters(parts).await?, "draft_id")
                    .and_then(|text| text.parse::<i64>().ok())
                    .ok_or_else(draft_not_found)?;
                Ok(ReviewSession {
                    session,
                    draft_id,
                    link_version: None,
                })
            }
        }
    }
}

/// The session of the request: of the link whose token is in the path (which must be
/// one `opens` accepts: any other is refused as a bad link before the operator is looked
/// up), or else of the operator the single sign-on proxy names. Returns the link's
/// purpose, none behind single sign-on.
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
    let claims = state
        .signer
        .verify(&token, Timestamp::now())
        .map_err(link_refused)?;
    if !opens(&claims.purpose) {
        return Err(link_refused(LinkError::BadSignature));
    }
    let operator = state
        .config
        .review
        .operator(&claims.operator)
        .cloned()
        .ok_or_else(not_an_operator)?;
    Ok((
        OperatorSession {
            operator,
            access: Access::Link { token },
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

pub(super) fn draft_not_found() -> Response {
    message_page(StatusCode::NOT_FOUND, "Utkastet finns inte", &[], None)
}
