//! What the server-rendered HTML pages share, operator ([`super::ops`]) and public
//! ([`super::public`]) alike: one template environment, the security headers, the message
//! page, reading a page's form, and Swedish local time.

use std::sync::LazyLock;

use axum::Form;
use axum::body::Body;
use axum::extract::{FromRequest as _, Request};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, header};
use axum::response::{IntoResponse, Response};
use jiff::Timestamp;
use jiff::tz::TimeZone;
use minijinja::{Environment, context};
use serde::de::DeserializeOwned;

use crate::swedish::SWEDISH_TIME_ZONE;

/// Longest form body accepted on these pages; larger ones get 413.
pub(super) const MAX_FORM_BYTES: usize = 64 * 1024;

/// Every page's template, operator and public. The names do not overlap.
static TEMPLATES: LazyLock<Environment<'static>> = LazyLock::new(|| {
    let mut environment = Environment::new();
    for (name, source) in [
        ("layout.html", include_str!("ops/templates/layout.html")),
        ("message.html", include_str!("ops/templates/message.html")),
        ("login.html", include_str!("ops/templates/login.html")),
        (
            "dashboard.html",
            include_str!("ops/templates/dashboard.html"),
        ),
        ("review.html", include_str!("ops/templates/review.html")),
        (
            "review_confirm.html",
            include_str!("ops/templates/review_confirm.html"),
        ),
        (
            "form_macros.html",
            include_str!("ops/templates/form_macros.html"),
        ),
        (
            "maintenance_new.html",
            include_str!("ops/templates/maintenance_new.html"),
        ),
        (
            "maintenance_window.html",
            include_str!("ops/templates/maintenance_window.html"),
        ),
        (
            "followup_incident.html",
            include_str!("ops/templates/followup_incident.html"),
        ),
        (
            "followup_list.html",
            include_str!("ops/templates/followup_list.html"),
        ),
        (
            "public_layout.html",
            include_str!("public/templates/public_layout.html"),
        ),
        (
            "feedback_form.html",
            include_str!("public/templates/feedback_form.html"),
        ),
        (
            "accessibility_statement.html",
            include_str!("public/templates/accessibility_statement.html"),
        ),
        (
            "feedback_message.html",
            include_str!("public/templates/feedback_message.html"),
        ),
        (
            "subscribe_choices.html",
            include_str!("public/templates/subscribe_choices.html"),
        ),
        (
            "subscribe_form.html",
            include_str!("public/templates/subscribe_form.html"),
        ),
        (
            "subscribe_manage.html",
            include_str!("public/templates/subscribe_manage.html"),
        ),
        (
            "subscribe_confirm.html",
            include_str!("public/templates/subscribe_confirm.html"),
        ),
        (
            "subscribe_message.html",
            include_str!("public/templates/subscribe_message.html"),
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

/// `Strict-Transport-Security` for a relay that serves HTTPS itself (`server.tls_*`): a
/// year, and for this host only (the relay does not know what else runs on its domain).
/// Behind a proxy that terminates TLS the proxy sets it.
pub(super) const STRICT_TRANSPORT_SECURITY: &str = "max-age=31536000";

/// Adds [`STRICT_TRANSPORT_SECURITY`] to a response; the router wraps every route in it
/// when the relay serves TLS.
pub(super) async fn strict_transport_security(mut response: Response) -> Response {
    response.headers_mut().insert(
        header::STRICT_TRANSPORT_SECURITY,
        HeaderValue::from_static(STRICT_TRANSPORT_SECURITY),
    );
    response
}

/// An operator page (in the operators' layout) with a heading, paragraphs and an optional link (URL, text).
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
// Forms.

/// Why a page's form was not read. Each family of pages answers it in its own layout
/// with [`FormRefusal::status`], [`FormRefusal::heading`] and [`FormRefusal::text`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum FormRefusal {
    /// Over [`MAX_FORM_BYTES`], declared or sent.
    TooLarge,
    /// The connection broke before the whole body was read.
    Incomplete,
    /// Not a URL-encoded form (its `Content-Type`).
    NotAForm,
    /// A URL-encoded form that does not fit the page's fields (a field that may appear
    /// once given twice). A browser posting the page's own form never sends one.
    Malformed,
}

impl FormRefusal {
    pub(super) fn status(self) -> StatusCode {
        match self {
            FormRefusal::TooLarge => StatusCode::PAYLOAD_TOO_LARGE,
            FormRefusal::Incomplete | FormRefusal::Malformed => StatusCode::BAD_REQUEST,
            FormRefusal::NotAForm => StatusCode::UNSUPPORTED_MEDIA_TYPE,
        }
    }

    pub(super) fn heading(self) -> &'static str {
        match self {
            FormRefusal::TooLarge => "För stort formulär",
            FormRefusal::Incomplete => "Formuläret kom inte fram",
            FormRefusal::NotAForm | FormRefusal::Malformed => "Formuläret kunde inte läsas",
        }
    }

    pub(super) fn text(self) -> &'static str {
        match self {
            FormRefusal::TooLarge => {
                "Formuläret är större än 64 kB och togs inte emot. Korta texten och försök igen."
            }
            FormRefusal::Incomplete => {
                "Anslutningen bröts innan formuläret var mottaget. Försök igen."
            }
            FormRefusal::NotAForm | FormRefusal::Malformed => {
                "Ladda om sidan och skicka formuläret igen."
            }
        }
    }
}

/// The fields of a page's form through axum's [`Form`]: from the query string on `GET`
/// (a form with `method="get"`), otherwise from a body of at most [`MAX_FORM_BYTES`]. A
/// declared oversize is refused before anything is read. Fields a form may leave out are
/// `Option` or `#[serde(default)]` in `T`, so that a missing field is the page's own
/// Swedish answer, never a refusal here.
pub(super) async fn read_form<T: DeserializeOwned>(request: Request) -> Result<T, FormRefusal> {
    let method = request.method().clone();
    let request = if method == Method::GET || method == Method::HEAD {
        request
    } else {
        if declared_length(request.headers()).is_some_and(|length| length > MAX_FORM_BYTES as u64) {
            return Err(FormRefusal::TooLarge);
        }
        let (parts, body) = request.into_parts();
        let bytes = match axum::body::to_bytes(body, MAX_FORM_BYTES).await {
            Ok(bytes) => bytes,
            Err(error) => {
                // to_bytes fails either on the limit or on the connection.
                let is_limit = std::error::Error::source(&error)
                    .is_some_and(|source| source.is::<http_body_util::LengthLimitError>());
                return Err(if is_limit {
                    FormRefusal::TooLarge
                } else {
                    FormRefusal::Incomplete
                });
            }
        };
        Request::from_parts(parts, Body::from(bytes))
    };
    match Form::<T>::from_request(request, &()).await {
        Ok(Form(fields)) => Ok(fields),
        Err(axum::extract::rejection::FormRejection::InvalidFormContentType(_)) => {
            Err(FormRefusal::NotAForm)
        }
        Err(rejection) => {
            tracing::debug!(error = %rejection.body_text(), "a page's form does not fit its fields");
            Err(FormRefusal::Malformed)
        }
    }
}

fn declared_length(headers: &HeaderMap) -> Option<u64> {
    headers
        .get(header::CONTENT_LENGTH)
        .and_then(|value| value.to_str().ok())
        .and_then(|value| value.parse::<u64>().ok())
}

/// A path segment that must be an incident number; anything else is "not found".
pub(super) fn incident_number(text: &str) -> Option<i64> {
    text.parse::<i64>().ok().filter(|number| *number > 0)
}
