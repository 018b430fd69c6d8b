//! The Alertmanager API v2 silences client: creating, expiring and listing silences,
//! and asking which firing alerts they silence. The maintenance windows of issue 19 use
//! it to silence a window's scope while it runs; this module knows nothing of windows.
//!
//! **Peers.** The client is given the base URL of every Alertmanager of an HA cluster
//! (with or without a path prefix such as `/alertmanager`). Silences gossip between
//! peers, so one peer accepting is enough: each call tries the peers in order until one
//! answers. No connection, a timeout, 408, 429, 5xx, a redirect (not followed) or a 2xx
//! body that does not parse move on to the next peer; when every peer failed the call is
//! [`SilenceError::Transient`] with each peer's reason. Any other 4xx is
//! [`SilenceError::Rejected`] at once: the same request would be refused everywhere.
//! A create that timed out may still have been stored by that peer; callers reconcile
//! with [`SilenceClient::silences_created_by`].
//!
//! **Expiring** is idempotent. Alertmanager 0.25 (Debian's) answers 200 for a silence
//! that is already expired and 500 `"silence not found"` for an unknown one; later
//! versions answer 404 for an unknown one and may answer 500 `"silence … already
//! expired"`. Already expired is done at once; unknown moves on to the next peer (gossip
//! may not have brought it there yet), and unknown at every peer that answered is done.
//!
//! **Secrets.** The bearer token is a sensitive header, never logged; error texts quote
//! at most [`MAX_ERROR_BODY_CHARS`] characters of an answer, with the token cut out.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use jiff::Timestamp;
use reqwest::header::{self, HeaderValue};
use reqwest::{StatusCode, Url};
use serde::{Deserialize, Serialize};

/// Re-exported: callers outside the crate (the tests) make the bearer token with it.
pub use crate::secret::Secret;

/// How much of an Alertmanager error answer an error text quotes, in characters.
pub const MAX_ERROR_BODY_CHARS: usize = 200;

/// One Alertmanager matcher (API v2 `matchers[]`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Matcher {
    pub name: String,
    pub value: String,
    pub is_regex: bool,
    /// `false` for `!=` and `!~`; older Alertmanagers leave it out, meaning `true`.
    #[serde(default = "default_is_equal")]
    pub is_equal: bool,
}

fn default_is_equal() -> bool {
    true
}

/// A character class no character is in (RE2 takes it; an empty alternation would
/// match the empty string, that is alerts without the label).
const MATCHES_NOTHING: &str = r"[^\x00-\x{10FFFF}]";

impl Matcher {
    /// `name="value"`.
    pub fn equal(name: impl Into<String>, value: impl Into<String>) -> Matcher {
        Matcher {
            name: name.into(),
            value: value.into(),
            is_regex: false,
            is_equal: true,
        }
    }

    /// `name=~"pattern"` (Alertmanager anchors it at both ends).
    pub fn regex(name: impl Into<String>, pattern: impl Into<String>) -> Matcher {
        Matcher {
            name: name.into(),
            value: pattern.into(),
            is_regex: true,
            is_equal: true,
        }
    }

    /// A regex matching exactly one of `values` (each escaped with regex syntax escaping;
    /// Alertmanager anchors regexes). With no values it matches no value at all.
    pub fn one_of(name: impl Into<String>, values: &[String]) -> Matcher {
        let pattern = if values.is_empty() {
            MATCHES_NOTHING.to_owned()
        } else {
            values
                .iter()
                .map(|value| escape_regex(value))
                .collect::<Vec<_>>()
                .join("|")
        };
        Matcher::regex(name, pattern)
    }
}

/// `value` as a regex matching only itself: every character with a meaning in regex
/// syntax gets a backslash (the set of `regex_syntax::escape`, which RE2 also takes).
pub fn escape_regex(value: &str) -> String {
    let mut escaped = String::with_capacity(value.len());
    for character in value.chars() {
        if matches!(
            character,
            '\\' | '.'
                | '+'
                | '*'
                | '?'
                | '('
                | ')'
                | '|'
                | '['
                | ']'
                | '{'
                | '}'
                | '^'
                | '$'
                | '#'
                | '&'
                | '-'
                | '~'
        ) {
            escaped.push('\\');
        }
        escaped.push(character);
    }
    escaped
}

/// A silence to create (`POST /api/v2/silences`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct SilenceRequest {
    pub matchers: Vec<Matcher>,
    pub starts_at: Timestamp,
    pub ends_at: Timestamp,
    pub created_by: String,
    pub comment: String,
}

/// A silence's state as Alertmanager reports it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SilenceState {
    Active,
    Pending,
    Expired,
}

/// A silence as Alertmanager lists it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Silence {
    pub id: String,
    pub state: SilenceState,
    pub matchers: Vec<Matcher>,
    pub starts_at: Timestamp,
    pub ends_at: Timestamp,
    pub created_by: String,
    pub comment: String,
}

/// Why a call failed. The texts are shown to operators, so they are in Swedish.
#[derive(Debug, thiserror::Error)]
pub enum SilenceError {
    /// No peer could take the request now (no connection, timeout, 5xx, 429 …): try again.
    #[error("Ingen Alertmanager kunde nås: {0}")]
    Transient(String),
    /// A peer refused the request itself (4xx); the same request fails everywhere.
    #[error("Alertmanager avvisade begäran: {0}")]
    Rejected(String),
}

/// What one peer's answer means for the call.
enum Answer<T> {
    Done(T),
    /// Move on to the next peer, with the reason.
    Failed(String),
    /// A 4xx: stop, with the reason.
    Rejected(String),
    /// Expire: the peer does not know the silence.
    Unknown,
}

/// A 2xx or error answer from one peer, read whole.
struct Reply {
    status: StatusCode,
    body: String,
}

/// The Alertmanager API v2 client for silences. Cheap to clone.
#[derive(Clone)]
pub struct SilenceClient {
    http: reqwest::Client,
    peers: Vec<Url>,
    /// `Authorization: Bearer …`, marked sensitive.
    authorization: Option<HeaderValue>,
    /// The token, cut out of any answer quoted in an error.
    token: Option<Secret>,
}

impl std::fmt::Debug for SilenceClient {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        formatter
            .debug_struct("SilenceClient")
            .field("peers", &self.peers)
            .field("token", &self.token)
            .finish()
    }
}

impl SilenceClient {
    /// `urls`: the base URLs of the Alertmanager peers (e.g. http://127.0.0.1:9093, with
    /// or without a path prefix such as /alertmanager). Silences gossip between peers, so
    /// one peer accepting is enough: try each in order until one answers.
    ///
    /// Fails on a URL that is not `http`/`https`, a token that is not a valid header
    /// value, or an HTTP client that cannot be built.
    pub fn new(
        urls: Vec<Url>,
        timeout: Duration,
        bearer_token: Option<Secret>,
    ) -> anyhow::Result<SilenceClient> {
        if urls.is_empty() {
            anyhow::bail!("no Alertmanager URL given");
        }
        for url in &urls {
            if !matches!(url.scheme(), "http" | "https") || url.cannot_be_a_base() {
                anyhow::bail!("the Alertmanager URL {} is not http(s)", shown(url));
            }
        }
        let authorization = bearer_token
            .as_ref()
            .map(|token| {
                let mut value = HeaderValue::from_str(&format!("Bearer {}", token.expose()))
                    .map_err(|_| anyhow::anyhow!("the bearer token is not a valid header value"))?;
                value.set_sensitive(true);
                Ok::<_, anyhow::Error>(value)
            })
            .transpose()?;
        let http = reqwest::Client::builder()
            .no_proxy()
            .redirect(reqwest::redirect::Policy::none())
            .timeout(timeout)
            .connect_timeout(timeout)
            .user_agent(concat!("samsa-relay/", env!("CARGO_PKG_VERSION")))
            .build()?;
        Ok(SilenceClient {
            http,
            peers: urls,
            authorization,
            token: bearer_token,
        })
    }

    /// Creates a silence; returns its id (`silenceID`).
    pub async fn create(&self, request: &SilenceRequest) -> Result<String, SilenceError> {
        #[derive(Deserialize)]
        struct Created {
            #[serde(rename = "silenceID")]
            silence_id: String,
        }
        self.first_answer(
            "create a silence",
            |base| {
                self.http
                    .post(endpoint(base, &["api", "v2", "silences"]))
                    .json(request)
            },
            |reply| match self.successful(reply) {
                Ok(body) => parsed::<Created>(body)
                    .map_or_else(Answer::Failed, |created| Answer::Done(created.silence_id)),
                Err(answer) => answer,
            },
            None,
        )
        .await
    }

    /// Expires a silence; one that is already expired or unknown counts as done (Ok).
    pub async fn expire(&self, silence_id: &str) -> Result<(), SilenceError> {
        self.first_answer(
            "expire a silence",
            |base| {
                self.http
                    .delete(endpoint(base, &["api", "v2", "silence", silence_id]))
            },
            |reply| {
                let body = reply.body.to_lowercase();
                if reply.status == StatusCode::NOT_FOUND
                    || (reply.status.is_server_error() && body.contains("not found"))
                {
                    Answer::Unknown
                } else if reply.status.is_server_error() && body.contains("already expired") {
                    Answer::Done(())
                } else {
                    self.successful(reply)
                        .map_or_else(|answer| answer, |_| Answer::Done(()))
                }
            },
            Some(()),
        )
        .await
    }

    /// Every silence whose createdBy equals `created_by` (GET /api/v2/silences), any state.
    pub async fn silences_created_by(
        &self,
        created_by: &str,
    ) -> Result<Vec<Silence>, SilenceError> {
        #[derive(Deserialize)]
        #[serde(rename_all = "camelCase")]
        struct Listed {
            id: String,
            status: ListedStatus,
            matchers: Vec<Matcher>,
            starts_at: Timestamp,
            ends_at: Timestamp,
            created_by: String,
            #[serde(default)]
            comment: String,
        }
        #[derive(Deserialize)]
        struct ListedStatus {
            state: SilenceState,
        }
        let listed: Vec<Listed> = self
            .first_answer(
                "list silences",
                |base| self.http.get(endpoint(base, &["api", "v2", "silences"])),
                |reply| match self.successful(reply) {
                    Ok(body) => parsed(body).map_or_else(Answer::Failed, Answer::Done),
                    Err(answer) => answer,
                },
                None,
            )
            .await?;
        Ok(listed
            .into_iter()
            .filter(|silence| silence.created_by == created_by)
            .map(|silence| Silence {
                id: silence.id,
                state: silence.status.state,
                matchers: silence.matchers,
                starts_at: silence.starts_at,
                ends_at: silence.ends_at,
                created_by: silence.created_by,
                comment: silence.comment,
            })
            .collect())
    }

    /// The labels of every active (firing) alert that one of `silence_ids` silences
    /// (GET /api/v2/alerts?silenced=true&active=true..., filter on status.silencedBy).
    pub async fn alerts_silenced_by(
        &self,
        silence_ids: &[String],
    ) -> Result<Vec<BTreeMap<String, String>>, SilenceError> {
        #[derive(Deserialize)]
        struct Alert {
            labels: BTreeMap<String, String>,
            status: AlertStatus,
        }
        #[derive(Deserialize)]
        #[serde(rename_all = "camelCase")]
        struct AlertStatus {
            #[serde(default)]
            silenced_by: Vec<String>,
        }
        let wanted: BTreeSet<&str> = silence_ids.iter().map(String::as_str).collect();
        let alerts: Vec<Alert> = self
            .first_answer(
                "list silenced alerts",
                |base| {
                    self.http
                        .get(endpoint(base, &["api", "v2", "alerts"]))
                        .query(&[
                            ("active", "true"),
                            ("silenced", "true"),
                            ("inhibited", "true"),
                            ("unprocessed", "true"),
                        ])
                },
                |reply| match self.successful(reply) {
                    Ok(body) => parsed(body).map_or_else(Answer::Failed, Answer::Done),
                    Err(answer) => answer,
                },
                None,
            )
            .await?;
        Ok(alerts
            .into_iter()
            .filter(|alert| {
                alert
                    .status
                    .silenced_by
                    .iter()
                    .any(|id| wanted.contains(id.as_str()))
            })
            .map(|alert| alert.labels)
            .collect())
    }

    /// Sends the request `build` makes to each peer in turn until `judge` calls an
    /// answer done or rejected. When every peer failed and at least one judged the
    /// request `Unknown`, the result is `if_unknown` (if given).
    async fn first_answer<T>(
        &self,
        what: &str,
        build: impl Fn(&Url) -> reqwest::RequestBuilder,
        judge: impl Fn(&Reply) -> Answer<T>,
        if_unknown: Option<T>,
    ) -> Result<T, SilenceError> {
        let mut reasons = Vec::new();
        let mut unknown = false;
        for peer in &self.peers {
            let mut request = build(peer);
            if let Some(authorization) = &self.authorization {
                request = request.header(header::AUTHORIZATION, authorization.clone());
            }
            let answer = match request.send().await {
                Ok(response) => match read(response).await {
                    Ok(reply) => judge(&reply),
                    Err(reason) => Answer::Failed(reason),
                },
                Err(error) => Answer::Failed(request_failure(&error)),
            };
            let peer = shown(peer);
            match answer {
                Answer::Done(value) => return Ok(value),
                Answer::Rejected(reason) => {
                    tracing::warn!(%peer, %reason, "Alertmanager refused to {what}");
                    return Err(SilenceError::Rejected(format!("{peer}: {reason}")));
                }
                Answer::Unknown => {
                    unknown = true;
                    reasons.push(format!("{peer}: tystnaden finns inte där"));
                }
                Answer::Failed(reason) => {
                    tracing::warn!(%peer, %reason, "Alertmanager could not {what}");
                    reasons.push(format!("{peer}: {reason}"));
                }
            }
        }
        match if_unknown {
            Some(done) if unknown => Ok(done),
            _ => Err(SilenceError::Transient(reasons.join("; "))),
        }
    }

    /// The body of a 2xx answer, or what the error status means: 408, 429 and 5xx move
    /// on to the next peer, any other 4xx is rejected, anything else (a redirect) moves on.
    fn successful<'reply, T>(&self, reply: &'reply Reply) -> Result<&'reply str, Answer<T>> {
        let status = reply.status;
        if status.is_success() {
            return Ok(&reply.body);
        }
        let reason = format!(
            "svarade {status}: {}",
            excerpt(&reply.body, self.token.as_ref())
        );
        let transient = status.is_server_error()
            || status == StatusCode::REQUEST_TIMEOUT
            || status == StatusCode::TOO_MANY_REQUESTS
            || !status.is_client_error();
        Err(if transient {
            Answer::Failed(reason)
        } else {
            Answer::Rejected(reason)
        })
    }
}

/// A 2xx body parsed as `T`, or why not (the peer is then skipped).
fn parsed<T: serde::de::DeserializeOwned>(body: &str) -> Result<T, String> {
    serde_json::from_str(body).map_err(|error| format!("oväntat svar ({error})"))
}

/// Reads a whole answer.
async fn read(response: reqwest::Response) -> Result<Reply, String> {
    let status = response.status();
    let body = response
        .text()
        .await
        .map_err(|error| request_failure(&error))?;
    Ok(Reply { status, body })
}

/// Why a request got no answer, without its URL.
fn request_failure(error: &reqwest::Error) -> String {
    if error.is_timeout() {
        "svarade inte i tid".to_owned()
    } else if error.is_connect() {
        "gick inte att ansluta till".to_owned()
    } else {
        format!("begäran misslyckades ({})", error_chain(error))
    }
}

/// An error and its sources on one line (reqwest's own text says little alone).
fn error_chain(error: &reqwest::Error) -> String {
    let mut text = error.to_string();
    let mut source = std::error::Error::source(error);
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}

/// `base` with `segments` appended to its path (each percent-encoded as needed).
fn endpoint(base: &Url, segments: &[&str]) -> Url {
    let mut url = base.clone();
    if let Ok(mut path) = url.path_segments_mut() {
        path.pop_if_empty().extend(segments);
    }
    url
}

/// A peer's URL as logs and error texts show it: no user, password, query or fragment.
fn shown(url: &Url) -> String {
    let mut shown = url.clone();
    let _ = shown.set_username("");
    let _ = shown.set_password(None);
    shown.set_query(None);
    shown.set_fragment(None);
    shown.to_string()
}

/// At most [`MAX_ERROR_BODY_CHARS`] characters of an answer, on one line, the token cut
/// out and anything unprintable escaped.
fn excerpt(body: &str, token: Option<&Secret>) -> String {
    let body = match token {
        Some(token) if !token.expose().is_empty() => body.replace(token.expose(), "***"),
        _ => body.to_owned(),
    };
    let mut excerpt = String::new();
    for (n_chars, character) in body.trim().chars().enumerate() {
        if n_chars == MAX_ERROR_BODY_CHARS {
            excerpt.push('…');
            break;
        }
        match character {
            '\n' | '\r' | '\t' => excerpt.push(' '),
            character if character.is_control() => {
                excerpt.push_str(&character.escape_unicode().to_string());
            }
            character => excerpt.push(character),
        }
    }
    excerpt
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_of_escapes_each_value_and_joins_them() {
        let matcher = Matcher::one_of(
            "actor",
            &[
                "skovde".to_owned(),
                "kommun-boras".to_owned(),
                "a.b|c".to_owned(),
            ],
        );
        assert_eq!(matcher.value, r"skovde|kommun\-boras|a\.b\|c");
        assert!(matcher.is_regex && matcher.is_equal);
    }

    #[test]
    fn one_of_nothing_matches_no_value_not_the_empty_one() {
        assert_eq!(Matcher::one_of("actor", &[]).value, MATCHES_NOTHING);
    }

    #[test]
    fn escape_regex_leaves_plain_text_alone() {
        assert_eq!(escape_regex("Skövde kommun_1"), "Skövde kommun_1");
        assert_eq!(
            escape_regex(r"^x$(y)[z]{2}*+?\#&~"),
            r"\^x\$\(y\)\[z\]\{2\}\*\+\?\\\#\&\~"
        );
    }

    #[test]
    fn endpoints_keep_a_path_prefix() {
        let with_prefix = Url::parse("http://127.0.0.1:9093/alertmanager").unwrap();
        assert_eq!(
            endpoint(&with_prefix, &["api", "v2", "silences"]).as_str(),
            "http://127.0.0.1:9093/alertmanager/api/v2/silences"
        );
        let with_slash = Url::parse("http://127.0.0.1:9093/alertmanager/").unwrap();
        assert_eq!(
            endpoint(&with_slash, &["api", "v2", "silence", "a/b c"]).as_str(),
            "http://127.0.0.1:9093/alertmanager/api/v2/silence/a%2Fb%20c"
        );
        let bare = Url::parse("http://127.0.0.1:9093").unwrap();
        assert_eq!(
            endpoint(&bare, &["api", "v2", "alerts"]).as_str(),
            "http://127.0.0.1:9093/api/v2/alerts"
        );
    }

    #[test]
    fn shown_urls_carry_no_credentials() {
        let url = Url::parse("https://user:pass@am.example/prefix?token=x#y").unwrap();
        assert_eq!(shown(&url), "https://am.example/prefix");
    }

    #[test]
    fn excerpts_are_short_single_lines_without_the_token() {
        let token = Secret::new("hemligt-token");
        let body = format!("fel\nmed hemligt-token i\u{7}{}", "x".repeat(500));
        let quoted = excerpt(&body, Some(&token));
        assert!(quoted.starts_with("fel med *** i\\u{7}x"));
        assert!(!quoted.contains("hemligt"));
        // 200 characters of the answer ("fel med *** i" and the bell are 14), then '…'.
        assert!(quoted.ends_with('…'));
        assert_eq!(quoted.matches('x').count(), MAX_ERROR_BODY_CHARS - 14);
    }

    #[test]
    fn the_debug_form_hides_the_token() {
        let client = SilenceClient::new(
            vec![Url::parse("http://127.0.0.1:9093").unwrap()],
            Duration::from_secs(1),
            Some(Secret::new("hemligt-token")),
        )
        .unwrap();
        assert!(!format!("{client:?}").contains("hemligt"));
    }

    #[test]
    fn matchers_default_is_equal_when_left_out() {
        let matcher: Matcher =
            serde_json::from_str(r#"{"name":"a","value":"b","isRegex":false}"#).unwrap();
        assert_eq!(matcher, Matcher::equal("a", "b"));
    }
}
