//! HTTP webhook delivery: one JSON POST per outbox row, to a webhook channel's URL (the
//! website CMS, IT-Nytt) or to a banner channel's push URL.
//!
//! The body is the relay's own shape ([`WebhookBody`]) or the output of the channel's
//! `body_template`, a MiniJinja template with JSON auto-escaping, so `{{ title }}` prints
//! a quoted, escaped JSON string and a template cannot be broken by the text it carries.
//! Every request carries the outbox row's delivery id as `Idempotency-Key`,
//! `X-SAMSA-Delivery-Id` and `webhook-id`, the same on every retry, so a receiver can drop
//! duplicates.
//!
//! **Signatures** (Standard Webhooks, <https://www.standardwebhooks.com>): every request
//! has `webhook-id` and `webhook-timestamp` (Unix seconds, of this attempt); with the
//! channel's `signing_secret` also `webhook-signature`, `v1,` + base64 HMAC-SHA256 of
//! `{webhook-id}.{webhook-timestamp}.{body}` ([`WebhookSigningKey`]). A banner's push is
//! signed the same way. `docs/publishing.md` says how a receiver checks it.
//!
//! The answer decides retry or give up: no connection, a timeout, 408, 429 and 5xx are
//! transient (a `Retry-After` is passed on); any other 4xx, a 3xx (redirects are not
//! followed) or a body the template cannot make into JSON are permanent. The bearer token
//! and configured headers are marked sensitive and never logged. Of a receiver's error
//! answer only a short excerpt is kept ([`error_excerpt`]): the channel's secrets cut out
//! (a receiver may echo the request), anything unprintable escaped, at most
//! [`MAX_ERROR_BODY_CHARS`] characters. That excerpt is all that reaches the log, the
//! outbox row, the incident log and the operators' mail.

use std::time::Duration;

use jiff::Timestamp;
use reqwest::StatusCode;
use reqwest::header::{self, HeaderMap, HeaderName, HeaderValue};

use crate::config::{ChannelConfig, ChannelContent, ChannelTransport, Config};
use crate::notice::webhook_body::{
    WebhookBody, WebhookSigningKey, check_body_template, render_template, template_environment,
};
use crate::notice::{DRILL_NOTE, RenderedNotice};
use crate::secret::Secret;
use crate::storage::{ClaimedDelivery, PublishedNoticeRecord};

use super::DeliveryError;

/// A request with no answer within this time counts as failed, unless the channel says
/// otherwise (`timeout`); banner push URLs always use it.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(10);
/// How much of a receiver's answer is read, at most; the rest is dropped unread.
pub const MAX_RESPONSE_BYTES: usize = 8 * 1024;
/// How much of an error answer is kept in the outbox row's `last_error`, in characters.
pub const MAX_ERROR_BODY_CHARS: usize = 100;
/// Secrets shorter than this are not searched for in an answer (they would match by chance).
const MIN_REDACTED_CHARS: usize = 6;

pub struct WebhookSender {
    client: reqwest::Client,
    channel: String,
    content: ChannelContent,
    /// The webhook channel's URL; `None` for a banner push, whose URL is the recipient.
    url: Option<reqwest::Url>,
    /// The bearer token and configured headers, marked sensitive.
    headers: HeaderMap,
    /// Signs each request (`webhook-signature`), when the channel has a secret.
    signing_key: Option<WebhookSigningKey>,
    /// Every secret the channel sends, cut out of a receiver's answer before it is kept.
    redacted: Vec<Secret>,
    body_template: Option<minijinja::Environment<'static>>,
    timeout: Duration,
    public_url: String,
}

impl WebhookSender {
    pub fn new(config: &Config, channel: &ChannelConfig) -> anyhow::Result<WebhookSender> {
        let (url, bearer_token, configured_headers, body_template, timeout) =
            match &channel.transport {
                ChannelTransport::Webhook {
                    url,
                    bearer_token,
                    headers,
                    body_template,
                    timeout,
                } => (
                    Some(url.clone()),
                    bearer_token.as_ref(),
                    headers.as_slice(),
                    body_template.as_deref(),
                    *timeout,
                ),
                ChannelTransport::Banner { .. } => (None, None, &[][..], None, DEFAULT_TIMEOUT),
                other => anyhow::bail!(
                    "channel {} has transport {}, which is not sent by webhook",
                    channel.name,
                    other.kind()
                ),
            };
        let mut redacted: Vec<Secret> = configured_headers
            .iter()
            .map(|(_, value)| value.clone())
            .chain(bearer_token.cloned())
            .chain(
                channel
                    .signing_key
                    .as_ref()
                    .map(|key| Secret::new(key.expose())),
            )
            .filter(|secret| secret.expose().chars().count() >= MIN_REDACTED_CHARS)
            .collect();
        // Longest first, so that a secret containing another is cut out whole.
        redacted.sort_by_key(|secret| std::cmp::Reverse(secret.expose().len()));
        let mut headers = HeaderMap::new();
        for (name, value) in configured_headers {
            let name = HeaderName::from_bytes(name.as_bytes())
                .map_err(|_| anyhow::anyhow!("header {name:?} is not a valid header name"))?;
            let mut value = HeaderValue::from_str(value.expose())
                .map_err(|_| anyhow::anyhow!("the value of header {name} is not valid"))?;
            value.set_sensitive(true);
            headers.append(name, value);
        }
        if let Some(token) = bearer_token {
            let mut value = HeaderValue::from_str(&format!("Bearer {}", token.expose()))
                .map_err(|_| anyhow::anyhow!("the bearer token is not a valid header value"))?;
            value.set_sensitive(true);
            headers.insert(header::AUTHORIZATION, value);
        }
        let body_template = body_template
            .map(|source| {
                check_body_template(source)
                    .map_err(|problem| anyhow::anyhow!("body_template: {problem}"))?;
                template_environment(source.to_owned())
            })
            .transpose()?;
        let client = reqwest::Client::builder()
            // Only what the config says: no proxy from the environment, no redirects.
            .no_proxy()
            .redirect(reqwest::redirect::Policy::none())
            .timeout(timeout)
            .connect_timeout(timeout.min(DEFAULT_TIMEOUT))
            .user_agent(concat!("samsa-relay/", env!("CARGO_PKG_VERSION")))
            .build()?;
        Ok(WebhookSender {
            client,
            channel: channel.name.clone(),
            content: channel.content,
            url,
            headers,
            signing_key: channel.signing_key.clone(),
            redacted,
            body_template,
            timeout,
            public_url: config
                .server
                .public_url
                .as_str()
                .trim_end_matches('/')
                .to_owned(),
        })
    }

    pub fn timeout(&self) -> Duration {
        self.timeout
    }

    pub async fn send(&self, delivery: &ClaimedDelivery) -> Result<(), DeliveryError> {
        let url = match &self.url {
            Some(url) => url.clone(),
            None => reqwest::Url::parse(&delivery.recipient).map_err(|_| {
                DeliveryError::permanent("the banner's push URL in the outbox is not a URL")
            })?,
        };
        let body = self.body(delivery)?;
        let delivery_id = HeaderValue::from_str(&delivery.delivery_id)
            .map_err(|_| DeliveryError::permanent("the delivery id is not a valid header"))?;
        let mut headers = self.headers.clone();
        headers.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        );
        headers.insert(
            HeaderName::from_static("idempotency-key"),
            delivery_id.clone(),
        );
        headers.insert(
            HeaderName::from_static("x-samsa-delivery-id"),
            delivery_id.clone(),
        );
        headers.extend(self.signature_headers(&delivery.delivery_id, delivery_id, &body));
        let response = self
            .client
            .post(url)
            .headers(headers)
            .body(body)
            .send()
            .await
            .map_err(|error| DeliveryError::transient(request_failure(&error)))?;
        let status = response.status();
        if status.is_success() {
            // Read (a bounded part of) the answer so that the connection can be reused.
            let _ = read_capped(response).await;
            return Ok(());
        }
        let retry_after = retry_after(response.headers(), Timestamp::now());
        let excerpt = error_excerpt(&read_capped(response).await, &self.redacted);
        let excerpt = excerpt.trim();
        let described = if excerpt.is_empty() {
            format!("HTTP {status}")
        } else {
            format!("HTTP {status}: {excerpt}")
        };
        Err(classify_status(status, retry_after, described))
    }

    /// The Standard Webhooks headers of one attempt: `webhook-id` (the delivery id, the
    /// same on every retry), `webhook-timestamp` (now) and, with a key,
    /// `webhook-signature` over exactly the bytes sent.
    fn signature_headers(&self, id: &str, id_value: HeaderValue, body: &str) -> HeaderMap {
        let timestamp = Timestamp::now().as_second();
        let mut headers = HeaderMap::new();
        headers.insert(HeaderName::from_static("webhook-id"), id_value);
        headers.insert(
            HeaderName::from_static("webhook-timestamp"),
            HeaderValue::from(timestamp),
        );
        if let Some(key) = &self.signing_key
            && let Ok(mut signature) =
                HeaderValue::from_str(&key.sign(id, timestamp, body.as_bytes()))
        {
            signature.set_sensitive(true);
            headers.insert(HeaderName::from_static("webhook-signature"), signature);
        }
        headers
    }

    /// The request body: the default shape, or the channel's template (checked to be JSON).
    pub fn body(&self, delivery: &ClaimedDelivery) -> Result<String, DeliveryError> {
        let fields = webhook_body(
            delivery,
            self.content,
            &self.channel,
            &format!(
                "{}/public/feedback/{}",
                self.public_url, delivery.notice.incident_id
            ),
        );
        match &self.body_template {
            None => serde_json::to_string(&fields).map_err(|error| {
                DeliveryError::permanent(format!("cannot encode the body: {error}"))
            }),
            Some(environment) => render_template(environment, &fields)
                .map_err(|problem| DeliveryError::permanent(format!("body_template: {problem}"))),
        }
    }
}

/// The default body of one delivery, with the channel's own text of the notice.
pub fn webhook_body(
    delivery: &ClaimedDelivery,
    content: ChannelContent,
    channel: &str,
    feedback_url: &str,
) -> WebhookBody {
    let notice: &PublishedNoticeRecord = &delivery.notice;
    let (title, body) = channel_text(&notice.rendered, content);
    WebhookBody {
        delivery_id: delivery.delivery_id.clone(),
        notice_id: notice.notice_id,
        incident_id: notice.incident_id,
        channel: channel.to_owned(),
        kind: notice.kind.as_str().to_owned(),
        level: notice.level.as_number(),
        drill: is_drill(&notice.rendered),
        title: title.to_owned(),
        body: body.to_owned(),
        published_at: notice.published_at.to_string(),
        feedback_url: feedback_url.to_owned(),
    }
}

/// The title and body a channel carries. The banner has one line, used for both.
pub fn channel_text(rendered: &RenderedNotice, content: ChannelContent) -> (&str, &str) {
    match content {
        ChannelContent::Website => (&rendered.website_title, &rendered.website_body),
        ChannelContent::Newsletter => (&rendered.newsletter_title, &rendered.newsletter_body),
        ChannelContent::Itnytt => (&rendered.itnytt_title, &rendered.itnytt_body),
        ChannelContent::Banner => (&rendered.banner_text, &rendered.banner_text),
        ChannelContent::Email => (&rendered.email_subject, &rendered.email_text),
        ChannelContent::Crisis => (&rendered.crisis_subject, &rendered.crisis_text),
    }
}

/// A drill's bodies start with the drill note (see [`crate::notice`]); the published
/// record keeps no separate flag.
pub fn is_drill(rendered: &RenderedNotice) -> bool {
    rendered.email_text.starts_with(DRILL_NOTE)
}

/// Retry or give up, by the answer's status.
fn classify_status(
    status: StatusCode,
    retry_after: Option<Duration>,
    described: String,
) -> DeliveryError {
    if status == StatusCode::TOO_MANY_REQUESTS
        || status == StatusCode::REQUEST_TIMEOUT
        || status.is_server_error()
    {
        DeliveryError::Transient {
            reason: described,
            retry_after,
        }
    } else if status.is_redirection() {
        DeliveryError::permanent(format!("{described} (redirects are not followed)"))
    } else {
        DeliveryError::permanent(described)
    }
}

/// `Retry-After` as seconds or an HTTP date, relative to `now`.
pub fn retry_after(headers: &HeaderMap, now: Timestamp) -> Option<Duration> {
    let text = headers.get(header::RETRY_AFTER)?.to_str().ok()?.trim();
    if let Ok(seconds) = text.parse::<u64>() {
        return Some(Duration::from_secs(seconds));
    }
    let at = jiff::fmt::rfc2822::DateTimeParser::new()
        .parse_timestamp(text)
        .ok()?;
    let wait = at.duration_since(now);
    Some(Duration::try_from(wait).unwrap_or(Duration::ZERO))
}

/// Why a request got no answer, without the URL (it may carry a token in its query).
fn request_failure(error: &reqwest::Error) -> String {
    let kind = if error.is_timeout() {
        "no answer in time"
    } else if error.is_connect() {
        "cannot connect"
    } else {
        "request failed"
    };
    let mut detail = String::new();
    let mut source = std::error::Error::source(error);
    while let Some(cause) = source {
        detail = cause.to_string();
        source = cause.source();
    }
    if detail.is_empty() {
        kind.to_owned()
    } else {
        format!("{kind}: {detail}")
    }
}

/// Reads at most [`MAX_RESPONSE_BYTES`] of the answer, as text.
async fn read_capped(mut response: reqwest::Response) -> String {
    let mut bytes = Vec::new();
    while bytes.len() < MAX_RESPONSE_BYTES {
        match response.chunk().await {
            Ok(Some(chunk)) => bytes.extend_from_slice(&chunk),
            Ok(None) | Err(_) => break,
        }
    }
    bytes.truncate(MAX_RESPONSE_BYTES);
    String::from_utf8_lossy(&bytes).into_owned()
}

/// The part of a receiver's answer that is kept: every one of `secrets` (what the relay
/// sent, which a receiver may echo) replaced by `***` in the whole answer first, then
/// line breaks and tabs as spaces, other control and invisible formatting characters
/// (bidirectional overrides, zero-width) escaped as `\u{…}`, and the start up to
/// [`MAX_ERROR_BODY_CHARS`] characters, with `…` when cut.
pub fn error_excerpt(answer: &str, secrets: &[Secret]) -> String {
    let mut answer = answer.to_owned();
    for secret in secrets {
        answer = answer.replace(secret.expose(), "***");
    }
    let mut excerpt = String::new();
    for (n_chars, character) in answer.chars().enumerate() {
        if n_chars == MAX_ERROR_BODY_CHARS {
            excerpt.push('…');
            break;
        }
        match character {
            '\n' | '\r' | '\t' => excerpt.push(' '),
            character if character.is_control() || is_invisible_format(character) => {
                excerpt.push_str(&character.escape_unicode().to_string());
            }
            character => excerpt.push(character),
        }
    }
    excerpt
}

/// Characters that change how the text around them shows without showing themselves.
fn is_invisible_format(character: char) -> bool {
    matches!(
        character,
        '\u{200b}'..='\u{200f}' | '\u{202a}'..='\u{202e}' | '\u{2060}'..='\u{2069}' | '\u{feff}'
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retry_after_takes_seconds_or_an_http_date() {
        let now: Timestamp = "2026-11-28T05:00:00Z".parse().unwrap();
        let mut headers = HeaderMap::new();
        assert_eq!(retry_after(&headers, now), None);
        headers.insert(header::RETRY_AFTER, HeaderValue::from_static("120"));
        assert_eq!(retry_after(&headers, now), Some(Duration::from_secs(120)));
        headers.insert(
            header::RETRY_AFTER,
            HeaderValue::from_static("Sat, 28 Nov 2026 05:01:30 GMT"),
        );
        assert_eq!(retry_after(&headers, now), Some(Duration::from_secs(90)));
        headers.insert(
            header::RETRY_AFTER,
            HeaderValue::from_static("Sat, 28 Nov 2026 04:00:00 GMT"),
        );
        assert_eq!(retry_after(&headers, now), Some(Duration::ZERO));
        headers.insert(header::RETRY_AFTER, HeaderValue::from_static("soon"));
        assert_eq!(retry_after(&headers, now), None);
    }

    #[test]
    fn an_error_answer_is_cut_short_with_secrets_removed_and_control_characters_escaped() {
        let secrets = [
            Secret::new("cms-secret-token-0123456789"),
            Secret::new("cms-secret"),
        ];
        let answer = format!(
            "{{\"error\": \"bad token cms-secret-token-0123456789\"}}\n\u{1b}[31mröd\u{202e}{}",
            "x".repeat(500)
        );
        let excerpt = error_excerpt(&answer, &secrets);
        assert!(
            excerpt.starts_with("{\"error\": \"bad token ***\"} \\u{1b}[31mröd\\u{202e}xx"),
            "{excerpt}"
        );
        assert!(!excerpt.contains("cms-secret"));
        assert!(!excerpt.contains('\u{1b}') && !excerpt.contains('\u{202e}'));
        assert!(excerpt.ends_with('…'));
        // 100 characters of the answer, `…`, and the two escapes longer than what they stand for.
        assert_eq!(excerpt.chars().count(), MAX_ERROR_BODY_CHARS + 1 + 5 + 7);
        assert_eq!(
            error_excerpt("ogiltig kategori", &secrets),
            "ogiltig kategori"
        );
    }

    #[test]
    fn statuses_are_classified() {
        let transient = |status: u16| {
            matches!(
                classify_status(StatusCode::from_u16(status).unwrap(), None, String::new()),
                DeliveryError::Transient { .. }
            )
        };
        for status in [408, 429, 500, 502, 503, 504] {
            assert!(transient(status), "{status}");
        }
        for status in [301, 302, 307, 400, 401, 403, 404, 410, 413, 422] {
            assert!(!transient(status), "{status}");
        }
    }

    #[test]
    fn body_templates_escape_every_value_as_json() {
        let environment = template_environment(
            r#"{"text": {{ title }}, "id": {{ delivery_id|tojson }}, "level": {{ level }}}"#
                .to_owned(),
        )
        .unwrap();
        let fields = WebhookBody {
            delivery_id: "7-abc".to_owned(),
            notice_id: 7,
            incident_id: 3,
            channel: "website".to_owned(),
            kind: "initial".to_owned(),
            level: 2,
            drill: false,
            title: "\"}, \"injected\": true, {\"x\": \"<script>".to_owned(),
            body: String::new(),
            published_at: String::new(),
            feedback_url: String::new(),
        };
        let output = render_template(&environment, &fields).unwrap();
        let value: serde_json::Value = serde_json::from_str(&output).unwrap();
        assert_eq!(value["text"], fields.title.as_str());
        assert_eq!(value["id"], "7-abc");
        assert_eq!(value["level"], 2);
        assert!(value.get("injected").is_none());

        let quoted = template_environment(r#"{"text": "{{ title }}"}"#.to_owned()).unwrap();
        let problem = render_template(&quoted, &fields).unwrap_err();
        assert!(problem.contains("not JSON"), "{problem}");
        assert!(check_body_template(r#"{"text": "{{ title }}"}"#).is_err());
        assert!(check_body_template(r#"{"text": {{ titel }}}"#).is_err());
        assert!(check_body_template(r#"{"text": {{ title }}"#).is_err());
        assert!(check_body_template(r#"{"text": {{ title }}, "body": {{ body }}}"#).is_ok());
    }
}
