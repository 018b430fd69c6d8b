//! `/ops/login`: "send me a link". Answers the same for any address, so that it tells
//! nobody who the operators are.

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::Response;
use jiff::Timestamp;
use minijinja::context;
use serde::Deserialize;

use super::{OperatorForm, csrf_refused, storage_unavailable};
use crate::http::AppState;
use crate::http::pages::{message_page, page, render};
use crate::operators::login_mail;

/// What the login form's CSRF token is bound to (the form has no link behind it).
const LOGIN_FORM_LABEL: &str = "login form";

/// The login form's fields.
#[derive(Debug, Deserialize)]
pub(super) struct LoginFields {
    #[serde(default)]
    csrf: String,
    #[serde(default)]
    email: String,
}

pub(super) async fn login_page(State(state): State<AppState>) -> Response {
    let csrf = state.signer.csrf_token(LOGIN_FORM_LABEL);
    page(
        StatusCode::OK,
        render("login.html", context! { csrf => csrf }),
    )
}

pub(super) async fn login_submit(
    State(state): State<AppState>,
    OperatorForm(form): OperatorForm<LoginFields>,
) -> Response {
    if !state.signer.check_csrf(LOGIN_FORM_LABEL, &form.csrf) {
        return csrf_refused();
    }
    let email = form.email.trim();
    if let Some(operator) = state.config.review.operator(email) {
        let mail = login_mail(&state.config, &state.signer, operator, Timestamp::now());
        match state
            .storage
            .enqueue_operator_mail(&[mail], Timestamp::now())
            .await
        {
            Ok(_) => state.mail_wake.notify_one(),
            Err(error) => {
                tracing::error!(error = ?anyhow::Error::from(error), "cannot enqueue a login link");
                return storage_unavailable();
            }
        }
    }
    message_page(
        StatusCode::OK,
        "Kontrollera din e-post",
        &["Om adressen tillhör en operatör har en personlig länk till översikten skickats dit."],
        None,
    )
}
