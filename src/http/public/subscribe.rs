//! The subscribers' pages (no login), in Swedish, without JavaScript:
//!
//! - `GET /public/subscribe`: the form: an address; all disruptions, or organisations
//!   and sub-regions of the inventory grouped by sub-region (with a search that keeps
//!   what was chosen); from which level of the plan. It says what is stored and why.
//! - `POST /public/subscribe`: `action=search` (or `show_all`) shows the form again,
//!   filtered; `action=subscribe` checks the form and answers "check your email" at
//!   once, whether the address is known or not; the request is stored and its mail
//!   enqueued after the answer ([`crate::subscribers::request`]), so that neither the
//!   answer nor its time tells a subscribed address from another. Two limits, per
//!   client and per address (known or not), keep the form from being a mail cannon.
//! - `GET /public/subscribe/confirm/{token}`: the confirmation page, a button; a GET
//!   changes nothing (mail scanners open links). `POST` confirms (double opt-in).
//! - `GET /public/subscription/{token}`: the subscriber's own page (from every mail):
//!   change the choices, end the subscription, delete the data. `POST` does it.
//! - `POST /public/subscription/{token}/unsubscribe`: RFC 8058 one-click: ends the
//!   subscription of the link, nothing else, without a session or a form token (the
//!   signed link is the authority). Its `GET` shows a button that posts the same.
//!
//! Every POST from a page on another site is refused (`Sec-Fetch-Site`/`Origin`), except
//! the one-click, which mail providers send from their servers. Links are signed
//! ([`crate::links::LinkSigner::sign_subscription`], a label of their own) and carry the
//! subscription's nonce, so a deleted or renewed subscription's links stop working.

use std::net::{IpAddr, Ipv6Addr, SocketAddr};
use std::num::NonZeroU32;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::Extension;
use axum::extract::{ConnectInfo, Path, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::Response;
use governor::clock::Clock as _;
use governor::{DefaultKeyedRateLimiter, Quota, RateLimiter};
use jiff::Timestamp;
use minijinja::context;

use super::feedback::{PublicForm, is_cross_site};
use crate::http::pages::{page, render};
use crate::http::{AppState, client_address};
use crate::inventory::ActorKind;
use crate::links::{SubscriptionAction, SubscriptionClaims};
use crate::storage::SubscriberRecord;
use crate::subscription::{Choices, ChoicesProblem, SubscriberState, normalize_address};

/// Per client: 10 requests at once, then one more every 30 s.
const CLIENT_BURST: u32 = 10;
const CLIENT_REPLENISH: Duration = Duration::from_secs(30);
/// Per address asked for: 3 at once, then one more every 10 minutes.
const ADDRESS_BURST: u32 = 3;
const ADDRESS_REPLENISH: Duration = Duration::from_secs(600);
/// Values of a repeated field read from one form; the inventory has far fewer.
const MAX_VALUES: usize = 500;
/// Longest value kept of any field (the address is at most 254).
const MAX_VALUE_CHARS: usize = 300;

/// The two limits of the subscribe form, one per router.
pub(super) struct SubscribeLimiter {
    clients: DefaultKeyedRateLimiter<IpAddr>,
    addresses: DefaultKeyedRateLimiter<String>,
    last_forgotten: Mutex<Instant>,
}

impl SubscribeLimiter {
    pub(super) fn new() -> SubscribeLimiter {
        let quota = |replenish: Duration, burst: u32| {
            Quota::with_period(replenish)
                .expect("the period is not zero")
                .allow_burst(NonZeroU32::new(burst).expect("not zero"))
        };
        SubscribeLimiter {
            clients: RateLimiter::keyed(quota(CLIENT_REPLENISH, CLIENT_BURST)),
            addresses: RateLimiter::keyed(quota(ADDRESS_REPLENISH, ADDRESS_BURST)),
            last_forgotten: Mutex::new(Instant::now()),
        }
    }

    /// Takes a token for the client, then one for the address; or says how long to wait.
    fn check(&self, client: Option<IpAddr>, address: &str) -> Result<(), Duration> {
        if let Ok(mut last) = self.last_forgotten.try_lock()
            && last.elapsed() >= Duration::from_secs(60)
        {
            *last = Instant::now();
            self.clients.retain_recent();
            self.addresses.retain_recent();
        }
        let client = match client.map(|client| client.to_canonical()) {
            None => IpAddr::from([0, 0, 0, 0]),
            Some(IpAddr::V6(v6)) => {
                IpAddr::V6(Ipv6Addr::from(u128::from(v6) & !((1_u128 << 64) - 1)))
            }
            Some(v4) => v4,
        };
        self.clients
            .check_key(&client)
            .map_err(|not_until| not_until.wait_time_from(self.clients.clock().now()))?;
        self.addresses
            .check_key(&address.to_owned())
            .map_err(|not_until| not_until.wait_time_from(self.addresses.clock().now()))
    }
}

/// What a form posted, bounded: every field at most [`MAX_VALUE_CHARS`], repeated fields
/// at most [`MAX_VALUES`] values.
#[derive(Debug, Default)]
struct Posted {
    email: String,
    all: bool,
    actors: Vec<String>,
    subregions: Vec<String>,
    level: String,
    q: String,
    action: String,
}

impl Posted {
    fn read(fields: Vec<(String, String)>) -> Posted {
        let mut posted = Posted {
            level: "1".to_owned(),
            ..Posted::default()
        };
        let cut = |value: String| -> String { value.chars().take(MAX_VALUE_CHARS).collect() };
        for (name, value) in fields {
            match name.as_str() {
                "email" => posted.email = cut(value),
                "scope" => posted.all = value == "all",
                "actor" if posted.actors.len() < MAX_VALUES => posted.actors.push(cut(value)),
                "subregion" if posted.subregions.len() < MAX_VALUES => {
                    posted.subregions.push(cut(value))
                }
                "level" => posted.level = cut(value),
                "q" => posted.q = cut(value),
                "action" => posted.action = cut(value),
                _ => {}
            }
        }
        posted
    }

    fn choices(&self, state: &AppState) -> Result<Choices, ChoicesProblem> {
        let level = self.level.trim().parse::<u8>().unwrap_or(0);
        Choices::checked(
            self.all,
            &self.actors,
            &self.subregions,
            level,
            &state.config.inventory,
        )
    }

    /// The choices as the form shows them again: known ids only.
    fn view(&self, state: &AppState) -> ChoicesView {
        let inventory = &state.config.inventory;
        ChoicesView {
            all: self.all,
            actors: self
                .actors
                .iter()
                .filter(|id| inventory.actor(id.trim()).is_some())
                .map(|id| id.trim().to_owned())
                .collect(),
            subregions: self
                .subregions
                .iter()
                .filter(|id| inventory.subregion(id.trim()).is_some())
                .map(|id| id.trim().to_owned())
                .collect(),
            level: self
                .level
                .trim()
                .parse()
                .ok()
                .filter(|l| (1..=3).contains(l))
                .unwrap_or(1),
            q: if self.action == "show_all" {
                String::new()
            } else {
                crate::swedish::single_line(&self.q, 100)
            },
        }
    }
}

/// The choices a form shows.
struct ChoicesView {
    all: bool,
    actors: Vec<String>,
    subregions: Vec<String>,
    level: u8,
    q: String,
}

impl ChoicesView {
    fn of(choices: &Choices) -> ChoicesView {
        ChoicesView {
            all: choices.all,
            actors: choices.actors.clone(),
            subregions: choices.subregions.clone(),
            level: choices.min_level,
            q: String::new(),
        }
    }

    /// The template values of `subscribe_choices.html`: the groups shown (filtered by
    /// `q`), and what is chosen but not shown, kept as hidden fields.
    fn context(&self, state: &AppState) -> minijinja::Value {
        let inventory = &state.config.inventory;
        let query = self.q.trim().to_lowercase();
        let shown = |name: &str| query.is_empty() || name.to_lowercase().contains(&query);
        let mut hidden_actors = Vec::new();
        let mut hidden_subregions = Vec::new();
        let mut groups = Vec::new();
        for subregion in inventory.subregions() {
            let subregion_checked = self.subregions.contains(&subregion.id);
            let subregion_shown = shown(&subregion.name);
            let mut actors = Vec::new();
            for actor in inventory.actors_in(&subregion.id) {
                let checked = self.actors.contains(&actor.id);
                if subregion_shown || shown(&actor.name) {
                    actors.push(context! {
                        id => actor.id,
                        name => actor.name,
                        kind => match actor.kind {
                            ActorKind::Kommun => "kommun",
                            ActorKind::Sjukhus => "sjukhus",
                            ActorKind::Primarvard => "primärvård",
                        },
                        checked => checked,
                    });
                } else if checked {
                    hidden_actors.push(actor.id.clone());
                }
            }
            if actors.is_empty() && !subregion_shown {
                if subregion_checked {
                    hidden_subregions.push(subregion.id.clone());
                }
                continue;
            }
            groups.push(context! {
                id => subregion.id,
                name => subregion.name,
                checked => subregion_checked,
                actors => actors,
            });
        }
        let levels = [
            (1, "Alla nivåer: varje störning som berör mina val"),
            (2, "Från nivå 2: reservrutin i delar av verksamheterna"),
            (3, "Bara nivå 3: reservrutin i alla verksamheter"),
        ]
        .map(|(number, label)| context! { number => number, label => label });
        context! {
            service => state.config.notices.service_name,
            all => self.all,
            q => self.q,
            groups => groups,
            hidden_actors => hidden_actors,
            hidden_subregions => hidden_subregions,
            levels => levels,
            level => self.level,
        }
    }
}

fn with_retry_after(mut response: Response, seconds: u64) -> Response {
    response
        .headers_mut()
        .insert(header::RETRY_AFTER, HeaderValue::from(seconds.max(1)));
    response
}

/// A message page of the subscribers' pages, with an optional button (a POST to
/// `form`: (URL, label)) and link ((URL, text)).
fn message(
    state: &AppState,
    status: StatusCode,
    heading: &str,
    paragraphs: &[&str],
    form: Option<(&str, &str)>,
    link: Option<(&str, &str)>,
) -> Response {
    page(
        status,
        render(
            "subscribe_message.html",
            context! {
                service => state.config.notices.service_name,
                heading => heading,
                paragraphs => paragraphs,
                form_url => form.map(|(url, _)| url),
                form_button => form.map(|(_, label)| label),
                link => link.map(|(url, _)| url),
                link_text => link.map(|(_, text)| text),
            },
        ),
    )
}

fn unavailable(state: &AppState, error: crate::storage::StorageError) -> Response {
    tracing::error!(error = ?anyhow::Error::from(error), "the subscription pages cannot use storage");
    with_retry_after(
        message(
            state,
            StatusCode::SERVICE_UNAVAILABLE,
            "Försök igen om en stund",
            &["Prenumerationerna kan inte nås just nu. Inget har ändrats."],
            None,
            None,
        ),
        30,
    )
}

fn cross_site(state: &AppState) -> Response {
    message(
        state,
        StatusCode::FORBIDDEN,
        "Formuläret kom från en annan webbplats",
        &[
            "Inget har ändrats: formuläret skickades från en annan webbplats. Öppna sidan via länken i e-postmeddelandet och försök därifrån.",
        ],
        None,
        None,
    )
}

fn link_not_valid(state: &AppState) -> Response {
    message(
        state,
        StatusCode::NOT_FOUND,
        "Länken gäller inte",
        &[
            "Länken är ogiltig, har gått ut, eller hör till en prenumeration som avslutats och raderats eller startats om.",
            "Du kan anmäla dig igen; du får då en ny länk.",
        ],
        None,
        Some(("/public/subscribe", "Till anmälan")),
    )
}

// ---------------------------------------------------------------------------------------
// The subscribe form.

/// What the subscribe page shows besides the choices.
struct FormView<'view> {
    email: &'view str,
    email_problem: Option<&'view str>,
    choices_problem: Option<String>,
    error: Option<&'view str>,
}

fn form_page(
    state: &AppState,
    status: StatusCode,
    choices: &ChoicesView,
    view: FormView<'_>,
) -> Response {
    let mut problems = Vec::new();
    if let Some(message) = view.email_problem {
        problems.push(context! { field => "email", message => message });
    }
    if let Some(message) = &view.choices_problem {
        problems.push(context! { field => "scope-all", message => message });
    }
    let values = choices.context(state);
    page(
        status,
        render(
            "subscribe_form.html",
            context! {
                email => view.email,
                email_problem => view.email_problem,
                problems => problems,
                error => view.error,
                stored => crate::subscribers::stored_text(&state.config),
                ..values
            },
        ),
    )
}

pub(super) async fn subscribe_form(State(state): State<AppState>) -> Response {
    form_page(
        &state,
        StatusCode::OK,
        &ChoicesView::of(&Choices::default()),
        FormView {
            email: "",
            email_problem: None,
            choices_problem: None,
            error: None,
        },
    )
}

pub(super) async fn subscribe_submit(
    State(state): State<AppState>,
    Extension(limiter): Extension<Arc<SubscribeLimiter>>,
    connection: Option<Extension<ConnectInfo<SocketAddr>>>,
    headers: HeaderMap,
    PublicForm(fields): PublicForm<Vec<(String, String)>>,
) -> Response {
    if is_cross_site(&state, &headers) {
        return cross_site(&state);
    }
    let posted = Posted::read(fields);
    let view = posted.view(&state);
    let email = crate::swedish::single_line(&posted.email, 254);
    if posted.action != "subscribe" {
        // Search, show all, or Enter in a field: the form again, nothing sent.
        let error = (posted.action != "search" && posted.action != "show_all")
            .then_some("Inget har skickats ännu. Tryck Prenumerera när du valt klart.");
        return form_page(
            &state,
            StatusCode::OK,
            &view,
            FormView {
                email: &email,
                email_problem: None,
                choices_problem: None,
                error,
            },
        );
    }
    let address = normalize_address(&posted.email);
    let choices = posted.choices(&state);
    let (address, choices) = match (address, choices) {
        (Ok(address), Ok(choices)) => (address, choices),
        (address, choices) => {
            return form_page(
                &state,
                StatusCode::UNPROCESSABLE_ENTITY,
                &view,
                FormView {
                    email: &email,
                    email_problem: address.err(),
                    choices_problem: choices.err().map(|problem| problem.to_string()),
                    error: None,
                },
            );
        }
    };
    let client = client_address(
        &state.config.server.trusted_proxies,
        connection.map(|Extension(ConnectInfo(address))| address.ip()),
        &headers,
    );
    if let Err(wait) = limiter.check(client, &address) {
        return with_retry_after(
            form_page(
                &state,
                StatusCode::TOO_MANY_REQUESTS,
                &view,
                FormView {
                    email: &email,
                    email_problem: None,
                    choices_problem: None,
                    error: Some(
                        "Många anmälningar har skickats på kort tid. Vänta en stund och försök igen; det du valt finns kvar.",
                    ),
                },
            ),
            wait.as_secs(),
        );
    }
    // After the answer, so that its time does not depend on the address.
    let task_state = state.clone();
    tokio::spawn(async move {
        let state = task_state;
        match crate::subscribers::request(
            &state.storage,
            &state.config,
            &state.signer,
            &address,
            &choices,
            Timestamp::now(),
        )
        .await
        {
            Ok(()) => state.mail_wake.notify_one(),
            Err(error) => {
                tracing::error!(error = ?anyhow::Error::from(error), "a subscription request was not stored");
            }
        }
    });
    let ttl = crate::swedish::format_swedish_duration(state.config.subscriptions.confirm_ttl);
    message(
        &state,
        StatusCode::OK,
        "Kontrollera din e-post",
        &[
            &format!(
                "Ett meddelande har skickats till {email}. Öppna länken i det och bekräfta prenumerationen; länken gäller i {ttl}."
            ),
            "Prenumererar adressen redan får du i stället en länk till din prenumeration. Kommer inget meddelande, titta bland skräpposten.",
        ],
        None,
        None,
    )
}

// ---------------------------------------------------------------------------------------
// Confirmation.

/// The subscription a link of `action` opens, if the link is valid and current.
async fn linked_subscription(
    state: &AppState,
    token: &str,
    action: SubscriptionAction,
) -> Result<Option<(SubscriptionClaims, SubscriberRecord)>, crate::storage::StorageError> {
    let Ok(claims) = state.signer.verify_subscription(token, Timestamp::now()) else {
        return Ok(None);
    };
    if claims.action != action {
        return Ok(None);
    }
    let Some(subscriber) = state.storage.subscriber(claims.subscriber_id).await? else {
        return Ok(None);
    };
    if subscriber.nonce != claims.nonce {
        return Ok(None);
    }
    Ok(Some((claims, subscriber)))
}

pub(super) async fn confirm_page(
    State(state): State<AppState>,
    Path(token): Path<String>,
) -> Response {
    let subscriber = match linked_subscription(&state, &token, SubscriptionAction::Confirm).await {
        Ok(Some((_, subscriber))) => subscriber,
        Ok(None) => return link_not_valid(&state),
        Err(error) => return unavailable(&state, error),
    };
    match subscriber.state {
        SubscriberState::Pending => page(
            StatusCode::OK,
            render(
                "subscribe_confirm.html",
                context! {
                    service => state.config.notices.service_name,
                    address => subscriber.address,
                    described => subscriber.choices.describe(&state.config.inventory),
                    action_url => format!("/public/subscribe/confirm/{token}"),
                },
            ),
        ),
        SubscriberState::Confirmed => confirmed_page(&state, &subscriber),
        _ => link_not_valid(&state),
    }
}

fn confirmed_page(state: &AppState, subscriber: &SubscriberRecord) -> Response {
    let manage =
        crate::subscribers::manage_path(&state.signer, subscriber.subscriber_id, &subscriber.nonce);
    let what = format!(
        "Du får e-post om driftstörningar i {}: {}.",
        state.config.notices.service_name,
        subscriber.choices.describe(&state.config.inventory)
    );
    message(
        state,
        StatusCode::OK,
        "Prenumerationen är bekräftad",
        &[
            &what,
            "Varje meddelande har en länk där du ändrar dina val, avslutar prenumerationen eller raderar dina uppgifter.",
        ],
        None,
        Some((&manage, "Till din prenumeration")),
    )
}

pub(super) async fn confirm_submit(
    State(state): State<AppState>,
    Path(token): Path<String>,
    headers: HeaderMap,
) -> Response {
    if is_cross_site(&state, &headers) {
        return cross_site(&state);
    }
    let claims = match linked_subscription(&state, &token, SubscriptionAction::Confirm).await {
        Ok(Some((claims, _))) => claims,
        Ok(None) => return link_not_valid(&state),
        Err(error) => return unavailable(&state, error),
    };
    match state
        .storage
        .confirm_subscriber(claims.subscriber_id, &claims.nonce, Timestamp::now())
        .await
    {
        Ok(Some(subscriber)) => confirmed_page(&state, &subscriber),
        Ok(None) => link_not_valid(&state),
        Err(error) => unavailable(&state, error),
    }
}

// ---------------------------------------------------------------------------------------
// The subscriber's own page.

fn manage_page(
    state: &AppState,
    status: StatusCode,
    token: &str,
    subscriber: &SubscriberRecord,
    choices: &ChoicesView,
    flash: Option<&str>,
    error: Option<&str>,
) -> Response {
    let values = choices.context(state);
    page(
        status,
        render(
            "subscribe_manage.html",
            context! {
                flash => flash,
                error => error,
                address => subscriber.address,
                state_label => subscriber.state.label(),
                active => subscriber.state == SubscriberState::Confirmed,
                suspended => subscriber.state == SubscriberState::Suspended,
                consented => subscriber.consented_at.map(crate::notice::format_swedish_time),
                described => subscriber.choices.describe(&state.config.inventory),
                action_url => format!("/public/subscription/{token}"),
                stored => crate::subscribers::stored_text(&state.config),
                ..values
            },
        ),
    )
}

pub(super) async fn manage(State(state): State<AppState>, Path(token): Path<String>) -> Response {
    match linked_subscription(&state, &token, SubscriptionAction::Manage).await {
        Ok(Some((_, subscriber))) => manage_page(
            &state,
            StatusCode::OK,
            &token,
            &subscriber,
            &ChoicesView::of(&subscriber.choices),
            None,
            None,
        ),
        Ok(None) => link_not_valid(&state),
        Err(error) => unavailable(&state, error),
    }
}

pub(super) async fn manage_submit(
    State(state): State<AppState>,
    Path(token): Path<String>,
    headers: HeaderMap,
    PublicForm(fields): PublicForm<Vec<(String, String)>>,
) -> Response {
    if is_cross_site(&state, &headers) {
        return cross_site(&state);
    }
    let (claims, subscriber) =
        match linked_subscription(&state, &token, SubscriptionAction::Manage).await {
            Ok(Some(found)) => found,
            Ok(None) => return link_not_valid(&state),
            Err(error) => return unavailable(&state, error),
        };
    let posted = Posted::read(fields);
    let now = Timestamp::now();
    match posted.action.as_str() {
        "save" => {
            let choices = match posted.choices(&state) {
                Ok(choices) => choices,
                Err(problem) => {
                    return manage_page(
                        &state,
                        StatusCode::UNPROCESSABLE_ENTITY,
                        &token,
                        &subscriber,
                        &posted.view(&state),
                        None,
                        Some(&problem.to_string()),
                    );
                }
            };
            match state
                .storage
                .change_choices(claims.subscriber_id, &claims.nonce, &choices, now)
                .await
            {
                Ok(true) => match state.storage.subscriber(claims.subscriber_id).await {
                    Ok(Some(subscriber)) => manage_page(
                        &state,
                        StatusCode::OK,
                        &token,
                        &subscriber,
                        &ChoicesView::of(&subscriber.choices),
                        Some("Dina val är sparade."),
                        None,
                    ),
                    Ok(None) => link_not_valid(&state),
                    Err(error) => unavailable(&state, error),
                },
                Ok(false) => manage_page(
                    &state,
                    StatusCode::CONFLICT,
                    &token,
                    &subscriber,
                    &ChoicesView::of(&subscriber.choices),
                    None,
                    Some("Prenumerationen är inte aktiv, så valen kan inte ändras."),
                ),
                Err(error) => unavailable(&state, error),
            }
        }
        "unsubscribe" => unsubscribe(&state, &claims, now).await,
        "delete" => match state
            .storage
            .delete_own_subscription(claims.subscriber_id, &claims.nonce)
            .await
        {
            Ok(_) => message(
                &state,
                StatusCode::OK,
                "Dina uppgifter är raderade",
                &[
                    "Din e-postadress och dina val finns inte längre kvar, och du får inga fler meddelanden. Länkarna i tidigare meddelanden gäller inte längre.",
                ],
                None,
                Some(("/public/subscribe", "Prenumerera igen")),
            ),
            Err(error) => unavailable(&state, error),
        },
        _ => {
            let flash = (posted.action != "search" && posted.action != "show_all")
                .then_some("Inget har ändrats ännu. Tryck Spara ändringarna när du valt klart.");
            manage_page(
                &state,
                StatusCode::OK,
                &token,
                &subscriber,
                &posted.view(&state),
                flash,
                None,
            )
        }
    }
}

async fn unsubscribe(state: &AppState, claims: &SubscriptionClaims, now: Timestamp) -> Response {
    match state
        .storage
        .unsubscribe(claims.subscriber_id, &claims.nonce, now)
        .await
    {
        Ok(_) => {
            let manage =
                crate::subscribers::manage_path(&state.signer, claims.subscriber_id, &claims.nonce);
            let retention =
                crate::swedish::format_swedish_duration(state.config.subscriptions.retention);
            message(
                state,
                StatusCode::OK,
                "Prenumerationen är avslutad",
                &[
                    "Du får inga fler meddelanden om driftstörningar.",
                    &format!(
                        "Adressen raderas om {retention}. Vill du att den raderas nu gör du det på din prenumerationssida."
                    ),
                ],
                None,
                Some((&manage, "Till din prenumeration")),
            )
        }
        Err(error) => unavailable(state, error),
    }
}

/// `GET …/unsubscribe`: someone opened the one-click link in a browser; a button posts it.
pub(super) async fn unsubscribe_page(
    State(state): State<AppState>,
    Path(token): Path<String>,
) -> Response {
    match linked_subscription(&state, &token, SubscriptionAction::Manage).await {
        Ok(Some((_, subscriber))) if subscriber.state == SubscriberState::Confirmed => message(
            &state,
            StatusCode::OK,
            "Avsluta prenumerationen?",
            &[&format!(
                "Prenumerationen för {} avslutas, och du får inga fler meddelanden om driftstörningar.",
                subscriber.address
            )],
            Some((
                &format!("/public/subscription/{token}/unsubscribe"),
                "Avsluta prenumerationen",
            )),
            None,
        ),
        Ok(Some((claims, _))) => {
            let manage =
                crate::subscribers::manage_path(&state.signer, claims.subscriber_id, &claims.nonce);
            message(
                &state,
                StatusCode::OK,
                "Prenumerationen är inte aktiv",
                &["Du får inga meddelanden från den här prenumerationen."],
                None,
                Some((&manage, "Till din prenumeration")),
            )
        }
        Ok(None) => link_not_valid(&state),
        Err(error) => unavailable(&state, error),
    }
}

/// `POST …/unsubscribe`: RFC 8058 one-click (or the button of the page above).
pub(super) async fn unsubscribe_one_click(
    State(state): State<AppState>,
    Path(token): Path<String>,
) -> Response {
    match linked_subscription(&state, &token, SubscriptionAction::Manage).await {
        Ok(Some((claims, _))) => unsubscribe(&state, &claims, Timestamp::now()).await,
        Ok(None) => link_not_valid(&state),
        Err(error) => unavailable(&state, error),
    }
}
