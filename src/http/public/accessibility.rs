//! `GET /public/tillganglighet`: the accessibility statement (tillgänglighetsredogörelse)
//! of the public pages (the login-page banner, the feedback form), in the structure the
//! Agency for Digital Government (DIGG) prescribes for the Swedish act on accessibility of
//! digital public services: who stands behind the pages, how accessible they are, what to
//! do and whom to tell when something does not work (the contact is
//! `notices.info_address`), supervision by DIGG, the status of compliance, the known
//! shortcomings, and how the pages were assessed. Every public page links here.

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::Response;
use minijinja::context;

use crate::http::AppState;
use crate::http::pages::{page, render};

/// When the pages were last assessed and this statement last reviewed (Swedish dates):
/// change both when the statement's content changes.
const ASSESSED: &str = "3 december 2026";
const UPDATED: &str = "3 december 2026";

pub(super) async fn statement(State(state): State<AppState>) -> Response {
    let notices = &state.config.notices;
    page(
        StatusCode::OK,
        render(
            "accessibility_statement.html",
            context! {
                service => notices.service_name,
                contact => notices.info_address,
                assessed => ASSESSED,
                updated => UPDATED,
            },
        ),
    )
}
