//! The public feedback page every notice links to (no login):
//!
//! - `GET /public/feedback/{incident_id}`: the form (name, organisation, message), in
//!   Swedish, accessible, without JavaScript. Only for an outage or drill with at least
//!   one published notice; any other number is the same 404 as an unknown one.
//! - `POST /public/feedback/{incident_id}`: stores the feedback through
//!   [`crate::followup::submit_feedback`] (log entry and email to on-duty operators in the
//!   same transaction), then `303` to `/public/feedback/{incident_id}/tack`. Bodies over
//!   64 KiB get 413 before they are read; every POST takes a token from a per-client rate
//!   limit ([`FeedbackLimiter`]) and gets 429 with `Retry-After` when there is none, with
//!   the form shown again so nothing typed is lost.
//!
//! A POST from a page on another site (by `Sec-Fetch-Site` or `Origin`) is refused with
//! 403 and a Swedish page before anything else; a request with neither header is taken.
//!
//! Everything a person typed is escaped by MiniJinja's HTML auto-escape on these pages.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::num::NonZeroU32;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::Extension;
use axum::extract::{ConnectInfo, FromRequest, Path, Request, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use governor::clock::Clock as _;
use governor::{DefaultKeyedRateLimiter, Quota, RateLimiter};
use jiff::Timestamp;
use minijinja::context;
use serde::Deserialize;
use serde::de::DeserializeOwned;

use crate::followup::{
    Feedback, FeedbackProblem, FollowupError, MAX_FEEDBACK_MESSAGE_CHARS, MAX_FEEDBACK_NAME_CHARS,
    MAX_FEEDBACK_ORGANISATION_CHARS,
};
use crate::http::pages::{incident_number, page, read_form, render, security_headers};
use crate::http::{AppState, client_address};
use crate::incident::IncidentKind;
use crate::notice::format_swedish_time;
use crate::storage::IncidentRecord;

/// The feedback form's fields; a missing one is empty, and [`Feedback::parse`] says
/// what is wrong with it.
#[derive(Debug, Deserialize)]
pub(super) struct FeedbackFields {
    #[serde(default)]
    name: String,
    #[serde(default)]
    organisation: String,
    #[serde(default)]
    message: String,
}

/// A form on a public page, through axum's `Form` ([`read_form`]); a form that cannot be
/// read is answered with a public message page.
pub(super) struct PublicForm<T>(pub(super) T);

impl<T: DeserializeOwned> FromRequest<AppState> for PublicForm<T> {
    type Rejection = Response;

    async fn from_request(request: Request, _state: &AppState) -> Result<Self, Response> {
        read_form(request).await.map(PublicForm).map_err(|refusal| {
            public_message(refusal.status(), refusal.heading(), &[refusal.text()])
        })
    }
}

// ---------------------------------------------------------------------------------------
// The per-client rate limit on feedback.

/// Feedback submissions a client may send at once.
const FEEDBACK_BURST: NonZeroU32 = NonZeroU32::new(5).expect("five is not zero");
/// One more submission is allowed every this long.
const FEEDBACK_REPLENISH: Duration = Duration::from_secs(30);
/// How often clients whose bucket is full again are forgotten.
const FORGET_IDLE_EVERY: Duration = Duration::from_secs(60);

/// A keyed GCRA limiter (governor) over the client's address. IPv6 clients are keyed by
/// their /64 network, since one host usually has the whole network. The address comes from
/// the connection, never from a header: without a trusted proxy configuration
/// `X-Forwarded-For` is whatever the client wants it to be. When the server runs without
/// connection info, all clients share one bucket ([`FeedbackLimiter::SHARED_KEY`]).
pub struct FeedbackLimiter {
    limiter: DefaultKeyedRateLimiter<IpAddr>,
    last_forgotten: Mutex<Instant>,
}

impl FeedbackLimiter {
    /// The key used when the connection's address is not known.
    pub const SHARED_KEY: IpAddr = IpAddr::V4(Ipv4Addr::UNSPECIFIED);

    pub fn new() -> FeedbackLimiter {
        FeedbackLimiter::with_quota(FEEDBACK_REPLENISH, FEEDBACK_BURST)
    }

    /// A limiter allowing `burst` at once and one more every `replenish`, per client.
    pub fn with_quota(replenish: Duration, burst: NonZeroU32) -> FeedbackLimiter {
        let quota = Quota::with_period(replenish)
            .expect("the period is not zero")
            .allow_burst(burst);
        FeedbackLimiter {
            limiter: RateLimiter::keyed(quota),
            last_forgotten: Mutex::new(Instant::now()),
        }
    }

    /// The key for a client address.
    pub fn key(address: Option<IpAddr>) -> IpAddr {
        match address.map(|address| address.to_canonical()) {
            None => FeedbackLimiter::SHARED_KEY,
            Some(IpAddr::V6(v6)) => {
                let network = u128::from(v6) & !((1_u128 << 64) - 1);
                IpAddr::V6(Ipv6Addr::from(network))
            }
            Some(v4) => v4,
        }
    }

    /// Takes a token for `key`, or says how long until the next one.
    pub fn check(&self, key: IpAddr) -> Result<(), Duration> {
        self.forget_idle_clients();
        self.limiter
            .check_key(&key)
            .map_err(|not_until| not_until.wait_time_from(self.limiter.clock().now()))
    }

    /// How many clients are remembered.
    #[cfg(test)]
    fn n_clients(&self) -> usize {
        self.limiter.len()
    }

    fn forget_idle_clients(&self) {
        let Ok(mut last_forgotten) = self.last_forgotten.try_lock() else {
            return;
        };
        if last_forgotten.elapsed() >= FORGET_IDLE_EVERY {
            *last_forgotten = Instant::now();
            self.limiter.retain_recent();
            self.limiter.shrink_to_fit();
        }
    }
}

impl Default for FeedbackLimiter {
    fn default() -> FeedbackLimiter {
        FeedbackLimiter::new()
    }
}

// ---------------------------------------------------------------------------------------
// Pages.

fn public_message(status: StatusCode, heading: &str, paragraphs: &[&str]) -> Response {
    page(
        status,
        render(
            "feedback_message.html",
            context! { heading => heading, paragraphs => paragraphs },
        ),
    )
}

// ---------------------------------------------------------------------------------------
// The public feedback page.

/// What the form shows: the incident and what was typed, with any problems.
struct FeedbackFormView<'view> {
    name: &'view str,
    organisation: &'view str,
    message: &'view str,
    problems: &'view [FeedbackProblem],
    error: Option<&'view str>,
}

/// The form for `incident_id`; `incident` describes it when it was read (a refused
/// request is answered without reading it).
fn feedback_page(
    state: &AppState,
    status: StatusCode,
    incident_id: i64,
    incident: Option<&IncidentRecord>,
    view: FeedbackFormView<'_>,
) -> Response {
    let problem = |field: &str| {
        view.problems
            .iter()
            .find(|problem| problem.field == field)
            .map(|problem| problem.message.clone())
    };
    let problems: Vec<_> = view
        .problems
        .iter()
        .map(|problem| context! { field => problem.field, message => problem.message })
        .collect();
    let service = &state.config.notices.service_name;
    page(
        status,
        render(
            "feedback_form.html",
            context! {
                service => service,
                reference => format!("{service}-{incident_id}"),
                incident_id => incident_id,
                drill => incident.is_some_and(|incident| incident.kind == IncidentKind::Drill),
                started => incident.map(|incident| format_swedish_time(incident.incident.started_at)),
                resolved => incident.and_then(|incident| incident.resolved_at).map(format_swedish_time),
                info_address => state.config.notices.info_address,
                name => view.name,
                organisation => view.organisation,
                message => view.message,
                name_problem => problem("name"),
                organisation_problem => problem("organisation"),
                message_problem => problem("message"),
                problems => problems,
                error => view.error,
                max_name => MAX_FEEDBACK_NAME_CHARS,
                max_organisation => MAX_FEEDBACK_ORGANISATION_CHARS,
                max_message => MAX_FEEDBACK_MESSAGE_CHARS,
                max_message_text => crate::followup::swedish_number(MAX_FEEDBACK_MESSAGE_CHARS),
            },
        ),
    )
}

fn incident_not_found() -> Response {
    public_message(
        StatusCode::NOT_FOUND,
        "Incidenten finns inte",
        &["Kontrollera länken i meddelandet om driftstörningen."],
    )
}

fn public_storage_unavailable() -> Response {
    let mut response = public_message(
        StatusCode::SERVICE_UNAVAILABLE,
        "Försök igen om en stund",
        &["Tjänsten kan inte ta emot återkoppling just nu."],
    );
    response
        .headers_mut()
        .insert(header::RETRY_AFTER, HeaderValue::from_static("30"));
    response
}

/// The incident feedback may be given about: an outage or a drill with at least one
/// published notice (the page is linked from the notices). Internal monitoring incidents
/// and incidents never published answer the same 404 as an unknown number, so the page
/// tells nobody what exists.
async fn public_incident(state: &AppState, incident_id: &str) -> Result<IncidentRecord, Response> {
    let Some(incident_id) = incident_number(incident_id) else {
        return Err(incident_not_found());
    };
    let unavailable = |error: crate::storage::StorageError| {
        tracing::error!(error = ?anyhow::Error::from(error), "cannot read the incident for the feedback page");
        public_storage_unavailable()
    };
    let incident = match state.storage.followup_incident(incident_id).await {
        Ok(Some(incident)) if incident.kind != IncidentKind::Monitoring => incident,
        Ok(_) => return Err(incident_not_found()),
        Err(error) => return Err(unavailable(error)),
    };
    match state.storage.has_publication(incident_id).await {
        Ok(true) => Ok(incident),
        Ok(false) => Err(incident_not_found()),
        Err(error) => Err(unavailable(error)),
    }
}

pub(super) async fn feedback_form(
    State(state): State<AppState>,
    Path(incident_id): Path<String>,
) -> Response {
    match public_incident(&state, &incident_id).await {
        Ok(incident) => feedback_page(
            &state,
            StatusCode::OK,
            incident.incident_id,
            Some(&incident),
            FeedbackFormView {
                name: "",
                organisation: "",
                message: "",
                problems: &[],
                error: None,
            },
        ),
        Err(response) => response,
    }
}

pub(super) async fn feedback_submit(
    State(state): State<AppState>,
    Extension(limiter): Extension<Arc<FeedbackLimiter>>,
    // Present when the server runs with connection info (`App::run` does).
    connection: Option<Extension<ConnectInfo<SocketAddr>>>,
    Path(incident_id): Path<String>,
    headers: HeaderMap,
    PublicForm(form): PublicForm<FeedbackFields>,
) -> Response {
    let Some(number) = incident_number(&incident_id) else {
        return incident_not_found();
    };
    if is_cross_site(&state, &headers) {
        return public_message(
            StatusCode::FORBIDDEN,
            "Formuläret kom från en annan webbplats",
            &[
                "Återkopplingen togs inte emot: formuläret skickades från en annan webbplats än återkopplingssidan.",
                "Öppna återkopplingssidan via länken i meddelandet om driftstörningen och skicka därifrån.",
            ],
        );
    }
    let (name, organisation, message) = (
        form.name.as_str(),
        form.organisation.as_str(),
        form.message.as_str(),
    );
    // Every POST takes a token before any database work: a refused flood costs a parse.
    let client = FeedbackLimiter::key(client_address(
        &state.config.server.trusted_proxies,
        connection.map(|Extension(ConnectInfo(address))| address.ip()),
        &headers,
    ));
    if let Err(wait) = limiter.check(client) {
        let mut response = feedback_page(
            &state,
            StatusCode::TOO_MANY_REQUESTS,
            number,
            None,
            FeedbackFormView {
                name,
                organisation,
                message,
                problems: &[],
                error: Some(
                    "Många meddelanden har skickats på kort tid. Vänta en stund och skicka igen; det du skrev finns kvar.",
                ),
            },
        );
        let seconds = wait.as_secs().max(1).to_string();
        if let Ok(value) = HeaderValue::from_str(&seconds) {
            response.headers_mut().insert(header::RETRY_AFTER, value);
        }
        return response;
    }
    let incident = match public_incident(&state, &incident_id).await {
        Ok(incident) => incident,
        Err(response) => return response,
    };
    let feedback = match Feedback::parse(name, organisation, message) {
        Ok(feedback) => feedback,
        Err(problems) => {
            return feedback_page(
                &state,
                StatusCode::UNPROCESSABLE_ENTITY,
                incident.incident_id,
                Some(&incident),
                FeedbackFormView {
                    name,
                    organisation,
                    message,
                    problems: &problems,
                    error: None,
                },
            );
        }
    };
    match crate::followup::submit_feedback(
        &state.storage,
        &state.config,
        &state.signer,
        incident.incident_id,
        &feedback,
        Timestamp::now(),
    )
    .await
    {
        Ok(_) => {
            state.mail_wake.notify_one();
            let mut response = StatusCode::SEE_OTHER.into_response();
            let location = format!("/public/feedback/{}/tack", incident.incident_id);
            if let Ok(value) = HeaderValue::from_str(&location) {
                response.headers_mut().insert(header::LOCATION, value);
            }
            security_headers(response.headers_mut());
            response
        }
        Err(FollowupError::IncidentNotFound) => incident_not_found(),
        Err(error) => {
            if let FollowupError::Storage(error) = error {
                tracing::error!(error = ?anyhow::Error::from(error), "feedback not stored");
            }
            let mut response = feedback_page(
                &state,
                StatusCode::SERVICE_UNAVAILABLE,
                incident.incident_id,
                Some(&incident),
                FeedbackFormView {
                    name,
                    organisation,
                    message,
                    problems: &[],
                    error: Some(
                        "Återkopplingen kunde inte sparas just nu. Försök igen om en stund; det du skrev finns kvar.",
                    ),
                },
            );
            response
                .headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from_static("30"));
            response
        }
    }
}

/// Whether a POST came from a page on another site, by what the browser says:
/// `Sec-Fetch-Site` other than `same-origin` or `none` (typed or bookmarked), or an
/// `Origin` other than the relay's own (`server.public_url`, or the `Host` the request was
/// sent to, when a proxy in front keeps it). A request with neither header (an old
/// browser, a script) is let through: the check is against a page that makes a visitor's
/// browser post, and every browser that could be made to do so sends one of them.
pub(super) fn is_cross_site(state: &AppState, headers: &HeaderMap) -> bool {
    let mut same_origin_fetch = false;
    if let Some(site) = headers.get("sec-fetch-site") {
        let site = site.to_str().unwrap_or_default().trim();
        if !site.eq_ignore_ascii_case("same-origin") && !site.eq_ignore_ascii_case("none") {
            return true;
        }
        same_origin_fetch = site.eq_ignore_ascii_case("same-origin");
    }
    let Some(origin) = headers.get(header::ORIGIN) else {
        return false;
    };
    let Some(origin) = origin
        .to_str()
        .ok()
        .and_then(|origin| url::Url::parse(origin.trim()).ok())
        .filter(|origin| matches!(origin.scheme(), "http" | "https") && origin.has_host())
    else {
        // `Origin: null` comes from a sandboxed frame or a redirect from elsewhere, and
        // also from the pages' own forms: under `Referrer-Policy: no-referrer` Chromium
        // posts them with `Origin: null`, and then says `Sec-Fetch-Site: same-origin`
        // (a header no page can set).
        let null = headers
            .get(header::ORIGIN)
            .and_then(|origin| origin.to_str().ok())
            .is_some_and(|origin| origin.trim() == "null");
        return !(null && same_origin_fetch);
    };
    if origin.origin() == state.config.server.public_url.origin() {
        return false;
    }
    // Host and port as the `Host` header writes them (the port only when not the
    // scheme's default).
    let origin_authority = match (origin.host_str(), origin.port()) {
        (Some(host), Some(port)) => format!("{host}:{port}"),
        (Some(host), None) => host.to_owned(),
        (None, _) => return true,
    };
    let host = headers
        .get(header::HOST)
        .and_then(|host| host.to_str().ok())
        .map(str::trim);
    host.is_none_or(|host| !host.eq_ignore_ascii_case(&origin_authority))
}

pub(super) async fn feedback_thanks(
    State(state): State<AppState>,
    Path(incident_id): Path<String>,
) -> Response {
    match public_incident(&state, &incident_id).await {
        Ok(incident) => {
            let service = &state.config.notices.service_name;
            let thanks = format!(
                "Ditt meddelande om {service}-{} har kommit fram till {service} förvaltning och finns med i uppföljningen av störningen.",
                incident.incident_id
            );
            let address = format!(
                "Under en pågående störning når du också förvaltningen på {}.",
                state.config.notices.info_address
            );
            public_message(
                StatusCode::OK,
                "Tack för din återkoppling",
                &[&thanks, &address],
            )
        }
        Err(response) => response,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_client_has_its_own_bucket() {
        let limiter = FeedbackLimiter::new();
        let first = FeedbackLimiter::key(Some("192.0.2.1".parse().unwrap()));
        let second = FeedbackLimiter::key(Some("192.0.2.2".parse().unwrap()));
        for _ in 0..FEEDBACK_BURST.get() {
            assert!(limiter.check(first).is_ok());
        }
        let wait = limiter.check(first).expect_err("the burst is used up");
        assert!(wait > Duration::ZERO && wait <= FEEDBACK_REPLENISH);
        assert!(
            limiter.check(second).is_ok(),
            "another client is not affected"
        );
        assert_eq!(limiter.n_clients(), 2);
    }

    #[test]
    fn ipv6_clients_share_their_network_and_unknown_clients_share_one_key() {
        let one = FeedbackLimiter::key(Some("2001:db8:1:2::1".parse().unwrap()));
        let other_host = FeedbackLimiter::key(Some("2001:db8:1:2:ffff::9".parse().unwrap()));
        let other_network = FeedbackLimiter::key(Some("2001:db8:1:3::1".parse().unwrap()));
        assert_eq!(one, other_host);
        assert_ne!(one, other_network);
        let mapped = FeedbackLimiter::key(Some("::ffff:192.0.2.7".parse().unwrap()));
        assert_eq!(mapped, "192.0.2.7".parse::<IpAddr>().unwrap());
        assert_eq!(FeedbackLimiter::key(None), FeedbackLimiter::SHARED_KEY);
    }

    #[test]
    fn the_clean_up_runs_once_a_minute_and_keeps_clients_that_used_their_tokens() {
        let limiter = FeedbackLimiter::new();
        let first = FeedbackLimiter::key(Some("192.0.2.1".parse().unwrap()));
        limiter.check(first).unwrap();
        assert_eq!(limiter.n_clients(), 1);
        // The last clean-up was a minute ago: the next check runs one. The first client
        // used a token 0 s ago, so its bucket is not full again and it must stay
        // remembered (forgetting it would give it a fresh burst).
        let long_ago = Instant::now() - FORGET_IDLE_EVERY;
        *limiter.last_forgotten.lock().unwrap() = long_ago;
        limiter
            .check(FeedbackLimiter::key(Some("192.0.2.2".parse().unwrap())))
            .unwrap();
        assert!(
            *limiter.last_forgotten.lock().unwrap() > long_ago,
            "a clean-up ran"
        );
        assert_eq!(limiter.n_clients(), 2);
        for _ in 1..FEEDBACK_BURST.get() {
            limiter.check(first).unwrap();
        }
        assert!(
            limiter.check(first).is_err(),
            "the clean-up gave no fresh burst"
        );
    }
}
