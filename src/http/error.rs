//! `ApiError`: the one place that chooses a status code for a failure and shapes the JSON
//! error body `{"error": "<what>", "detail": "<where>"}`. Internals never reach a response.

use axum::Json;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Serialize;

#[derive(Debug)]
pub enum ApiError {
    Unauthorized,
    BadRequest {
        error: String,
        detail: String,
    },
    PayloadTooLarge {
        limit: usize,
    },
    /// Transient: storage or another dependency cannot take the request now.
    Unavailable,
    /// Transient: the relay has more webhooks waiting to be processed than it takes; the
    /// sender should retry after this many seconds.
    BacklogFull {
        retry_after_secs: u64,
    },
}

#[derive(Serialize)]
struct ErrorBody<'a> {
    error: &'a str,
    detail: &'a str,
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let (status, error, detail) = match &self {
            ApiError::Unauthorized => (
                StatusCode::UNAUTHORIZED,
                "unauthorized".to_owned(),
                "missing or wrong credentials in the Authorization header".to_owned(),
            ),
            ApiError::BadRequest { error, detail } => {
                (StatusCode::BAD_REQUEST, error.clone(), detail.clone())
            }
            ApiError::PayloadTooLarge { limit } => (
                StatusCode::PAYLOAD_TOO_LARGE,
                "payload too large".to_owned(),
                format!("the body limit is {limit} bytes"),
            ),
            ApiError::Unavailable => (
                StatusCode::SERVICE_UNAVAILABLE,
                "temporarily unavailable".to_owned(),
                "storage cannot take the request now; retry".to_owned(),
            ),
            ApiError::BacklogFull { retry_after_secs } => (
                StatusCode::SERVICE_UNAVAILABLE,
                "temporarily unavailable".to_owned(),
                format!(
                    "the relay has a backlog of webhooks to process; retry in {retry_after_secs} s"
                ),
            ),
        };
        let mut response = (
            status,
            Json(ErrorBody {
                error: &error,
                detail: &detail,
            }),
        )
            .into_response();
        match self {
            ApiError::Unauthorized => {
                response.headers_mut().insert(
                    header::WWW_AUTHENTICATE,
                    HeaderValue::from_static("Bearer realm=\"samsa-relay\""),
                );
            }
            ApiError::Unavailable => {
                response
                    .headers_mut()
                    .insert(header::RETRY_AFTER, HeaderValue::from_static("5"));
            }
            ApiError::BacklogFull { retry_after_secs } => {
                response
                    .headers_mut()
                    .insert(header::RETRY_AFTER, HeaderValue::from(retry_after_secs));
            }
            _ => {}
        }
        response
    }
}
