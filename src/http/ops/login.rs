//! `/ops/login`: "send me a link". It tells nobody who the operators are: the answer is the
//! same for any address, and so is its time, since the email is enqueued after the answer
//! (in a task of its own), and an unknown address costs the request exactly what a known
//! one does (form, CSRF, limits, one lookup in the config).
//!
//! Two limits keep it from being a mail cannon: one per client (keyed like the public
//! endpoints: the connection's address, or behind `server.trusted_proxies` the forwarded
//! one; IPv6 by /64) and one per address asked for, known or not, so that neither the
//! limit nor its 429 tells an operator's address from a stranger's.
//!
//! The form's CSRF token is fresh per page ([`crate::links::LinkSigner::fresh_csrf_token`]):
//! a random nonce and the issue time under the link secret's MAC, refused once older than
//! [`FRESH_CSRF_MAX_AGE`]. A replayed token can do no more than the form itself within
//! that time: ask for a link to be sent to an operator's own mailbox, under both limits.

use std::net::{IpAddr, Ipv6Addr, SocketAddr};
use std::num::NonZeroU32;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::Extension;
use axum::extract::{ConnectInfo, FromRequest as _, Request, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::Response;
use governor::clock::Clock as _;
use governor::{DefaultKeyedRateLimiter, Quota, RateLimiter};
use jiff::Timestamp;
use minijinja::context;
use serde::Deserialize;

use super::{FRESH_CSRF_MAX_AGE, OperatorForm, csrf_refused};
use crate::http::pages::{message_page, page, render};
use crate::http::{AppState, client_address};
use crate::operators::login_mail;

/// What the login form's CSRF token is bound to (the form has no link behind it).
const LOGIN_FORM_LABEL: &str = "login form";

/// Per client: 10 at once, then one more every 30 s.
const CLIENT_BURST: u32 = 10;
const CLIENT_REPLENISH: Duration = Duration::from_secs(30);
/// Per address asked for: 3 at once, then one more every 5 minutes.
const ADDRESS_BURST: u32 = 3;
const ADDRESS_REPLENISH: Duration = Duration::from_secs(300);
/// The longest address kept as a limiter key (an email address is at most 254).
const MAX_ADDRESS_KEY_CHARS: usize = 254;

/// The login form's fields.
#[derive(Debug, Deserialize)]
pub(super) struct LoginFields {
    #[serde(default)]
    csrf: String,
    #[serde(default)]
    email: String,
}

/// The two limits of the login form, one per router (so each app, and each test, has
/// its own).
pub(super) struct LoginLimiter {
    clients: DefaultKeyedRateLimiter<IpAddr>,
    addresses: DefaultKeyedRateLimiter<String>,
    last_forgotten: Mutex<Instant>,
}

impl LoginLimiter {
    pub(super) fn new() -> LoginLimiter {
        let quota = |replenish: Duration, burst: u32| {
            Quota::with_period(replenish)
                .expect("the period is not zero")
                .allow_burst(NonZeroU32::new(burst).expect("not zero"))
        };
        LoginLimiter {
            clients: RateLimiter::keyed(quota(CLIENT_REPLENISH, CLIENT_BURST)),
            addresses: RateLimiter::keyed(quota(ADDRESS_REPLENISH, ADDRESS_BURST)),
            last_forgotten: Mutex::new(Instant::now()),
        }
    }

    /// Takes a token for the client, then one for the address; or says how long to wait.
    fn check(&self, client: Option<IpAddr>, address: &str) -> Result<(), Duration> {
        self.forget_idle();
        let client = match client.map(|client| client.to_canonical()) {
            // Without connection info every client shares one bucket.
            None => IpAddr::from([0, 0, 0, 0]),
            Some(IpAddr::V6(v6)) => {
                IpAddr::V6(Ipv6Addr::from(u128::from(v6) & !((1_u128 << 64) - 1)))
            }
            Some(v4) => v4,
        };
        self.clients
            .check_key(&client)
            .map_err(|not_until| not_until.wait_time_from(self.clients.clock().now()))?;
        let address: String = address
            .to_lowercase()
            .chars()
            .take(MAX_ADDRESS_KEY_CHARS)
            .collect();
        self.addresses
            .check_key(&address)
            .map_err(|not_until| not_until.wait_time_from(self.addresses.clock().now()))
    }

    /// Drops the keys whose bucket is full again, at most once a minute.
    fn forget_idle(&self) {
        let mut last = self.last_forgotten.lock().expect("not poisoned");
        if last.elapsed() >= Duration::from_secs(60) {
            *last = Instant::now();
            self.clients.retain_recent();
            self.addresses.retain_recent();
        }
    }
}

pub(super) async fn login_page(State(state): State<AppState>) -> Response {
    let csrf = state
        .signer
        .fresh_csrf_token(LOGIN_FORM_LABEL, Timestamp::now());
    page(
        StatusCode::OK,
        render("login.html", context! { csrf => csrf }),
    )
}

pub(super) async fn login_submit(
    State(state): State<AppState>,
    Extension(limiter): Extension<Arc<LoginLimiter>>,
    request: Request,
) -> Response {
    let peer = request
        .extensions()
        .get::<ConnectInfo<SocketAddr>>()
        .map(|info| info.0.ip());
    let client = client_address(
        &state.config.server.trusted_proxies,
        peer,
        request.headers(),
    );
    let form = match OperatorForm::<LoginFields>::from_request(request, &state).await {
        Ok(OperatorForm(form)) => form,
        Err(refusal) => return refusal,
    };
    let now = Timestamp::now();
    if !state
        .signer
        .check_fresh_csrf(LOGIN_FORM_LABEL, &form.csrf, now, FRESH_CSRF_MAX_AGE)
    {
        return csrf_refused();
    }
    let email = form.email.trim();
    if let Err(wait) = limiter.check(client, email) {
        let mut response = message_page(
            StatusCode::TOO_MANY_REQUESTS,
            "För många försök",
            &["Vänta en stund och försök igen."],
            None,
        );
        response.headers_mut().insert(
            header::RETRY_AFTER,
            HeaderValue::from(wait.as_secs().max(1)),
        );
        return response;
    }
    if let Some(operator) = state.config.review.operator(email).cloned() {
        // After the answer, so that its time does not depend on the address.
        tokio::spawn(async move {
            let mail = login_mail(&state.config, &state.signer, &operator, now);
            match state.storage.enqueue_operator_mail(&[mail], now).await {
                Ok(_) => state.mail_wake.notify_one(),
                Err(error) => {
                    tracing::error!(error = ?anyhow::Error::from(error), "cannot enqueue a login link");
                }
            }
        });
    }
    message_page(
        StatusCode::OK,
        "Kontrollera din e-post",
        &["Om adressen tillhör en operatör har en personlig länk till översikten skickats dit."],
        None,
    )
}
