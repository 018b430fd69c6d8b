//! The Alertmanager webhook payload (version 4): wire types, and their conversion into the
//! domain [`Notification`] at the edge. Unknown fields are accepted; a wrong version or a
//! missing required field is a [`PayloadError`] that names the field.

use std::collections::BTreeMap;

use jiff::Timestamp;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

/// One webhook notification, parsed and checked.
#[derive(Debug, Clone, PartialEq)]
pub struct Notification {
    pub group_key: String,
    pub status: AlertStatus,
    pub receiver: String,
    pub external_url: String,
    pub truncated_alerts: u64,
    pub alerts: Vec<Alert>,
}

/// One alert of a notification.
#[derive(Debug, Clone, PartialEq)]
pub struct Alert {
    pub fingerprint: String,
    pub status: AlertStatus,
    pub labels: BTreeMap<String, String>,
    pub annotations: BTreeMap<String, String>,
    pub starts_at: Timestamp,
    /// `None` when Alertmanager sent the zero time (a firing alert with no end).
    pub ends_at: Option<Timestamp>,
    pub generator_url: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum AlertStatus {
    Firing,
    Resolved,
}

impl AlertStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            AlertStatus::Firing => "firing",
            AlertStatus::Resolved => "resolved",
        }
    }

    pub fn parse(text: &str) -> Option<AlertStatus> {
        match text {
            "firing" => Some(AlertStatus::Firing),
            "resolved" => Some(AlertStatus::Resolved),
            _ => None,
        }
    }
}

/// Why a payload was refused; `error` says what, `detail` says where.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PayloadError {
    pub error: String,
    pub detail: String,
}

/// The payload as Alertmanager sends it.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct WirePayload {
    version: String,
    group_key: String,
    #[serde(default)]
    truncated_alerts: u64,
    status: AlertStatus,
    receiver: String,
    #[serde(default, rename = "externalURL")]
    external_url: String,
    alerts: Vec<WireAlert>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct WireAlert {
    status: AlertStatus,
    labels: BTreeMap<String, String>,
    #[serde(default)]
    annotations: BTreeMap<String, String>,
    starts_at: String,
    #[serde(default)]
    ends_at: Option<String>,
    #[serde(default, rename = "generatorURL")]
    generator_url: String,
    fingerprint: String,
}

impl Notification {
    /// Parses and checks a webhook body.
    pub fn parse(body: &[u8]) -> Result<Notification, PayloadError> {
        // The plain parse is the fast path; only a failure pays for the path-tracking one,
        // which tells the sender where the problem is.
        let wire: WirePayload = match serde_json::from_slice(body) {
            Ok(wire) => wire,
            Err(_) => return Err(describe_json_error(body)),
        };
        if wire.version != "4" {
            return Err(PayloadError {
                error: "unsupported payload version".to_owned(),
                detail: format!("version: expected \"4\", got {:?}", wire.version),
            });
        }
        if wire.group_key.is_empty() {
            return Err(missing("groupKey"));
        }
        let mut alerts = Vec::with_capacity(wire.alerts.len());
        for (index, alert) in wire.alerts.into_iter().enumerate() {
            alerts.push(alert.into_domain(index)?);
        }
        Ok(Notification {
            group_key: wire.group_key,
            status: wire.status,
            receiver: wire.receiver,
            external_url: wire.external_url,
            truncated_alerts: wire.truncated_alerts,
            alerts,
        })
    }

    /// A key that is the same for every resend of this notification (retries, HA peers,
    /// restarts, repeat intervals) and differs when anything an operator cares about
    /// changed: the group, the status, and each alert's identity, status, end and
    /// annotations. `externalURL` is left out since HA peers differ in it.
    pub fn dedupe_key(&self) -> String {
        let mut alert_parts: Vec<String> = self
            .alerts
            .iter()
            .map(|alert| {
                // A firing alert's endsAt moves forward on every Prometheus resend.
                let ends_at = match alert.status {
                    AlertStatus::Resolved => {
                        alert.ends_at.map(|ts| ts.to_string()).unwrap_or_default()
                    }
                    AlertStatus::Firing => String::new(),
                };
                serde_json::to_string(&(
                    &alert.fingerprint,
                    alert.starts_at.to_string(),
                    alert.status,
                    ends_at,
                    &alert.annotations,
                ))
                .expect("strings serialize")
            })
            .collect();
        alert_parts.sort_unstable();
        let mut hasher = Sha256::new();
        hasher.update(self.group_key.as_bytes());
        hasher.update([0]);
        hasher.update(self.status.as_str().as_bytes());
        hasher.update([0]);
        hasher.update(self.truncated_alerts.to_string().as_bytes());
        for part in &alert_parts {
            hasher.update([0]);
            hasher.update(part.as_bytes());
        }
        hex(&hasher.finalize())
    }
}

impl WireAlert {
    fn into_domain(self, index: usize) -> Result<Alert, PayloadError> {
        let at = |field: &str| format!("alerts[{index}].{field}");
        if self.fingerprint.trim().is_empty() {
            return Err(PayloadError {
                error: "empty fingerprint".to_owned(),
                detail: at("fingerprint"),
            });
        }
        let starts_at = parse_time(&self.starts_at).ok_or_else(|| PayloadError {
            error: "invalid timestamp".to_owned(),
            detail: format!(
                "{}: {:?} is not RFC 3339",
                at("startsAt"),
                truncate(&self.starts_at)
            ),
        })?;
        let ends_at = match self.ends_at.as_deref() {
            None | Some("") => None,
            Some(text) => {
                let parsed = parse_time(text).ok_or_else(|| PayloadError {
                    error: "invalid timestamp".to_owned(),
                    detail: format!("{}: {:?} is not RFC 3339", at("endsAt"), truncate(text)),
                })?;
                // Alertmanager writes Go's zero time for "no end".
                (parsed.as_second() > Timestamp::UNIX_EPOCH.as_second()).then_some(parsed)
            }
        };
        Ok(Alert {
            fingerprint: self.fingerprint,
            status: self.status,
            labels: self.labels,
            annotations: self.annotations,
            starts_at,
            ends_at,
            generator_url: self.generator_url,
        })
    }
}

fn parse_time(text: &str) -> Option<Timestamp> {
    text.parse::<Timestamp>().ok()
}

fn truncate(text: &str) -> String {
    text.chars().take(64).collect()
}

fn missing(field: &str) -> PayloadError {
    PayloadError {
        error: format!("missing field `{field}`"),
        detail: field.to_owned(),
    }
}

fn describe_json_error(body: &[u8]) -> PayloadError {
    if let Ok(value) = serde_json::from_slice::<serde_json::Value>(body)
        && !value.is_object()
    {
        return PayloadError {
            error: "expected a JSON object".to_owned(),
            detail: "the payload's top level".to_owned(),
        };
    }
    let mut deserializer = serde_json::Deserializer::from_slice(body);
    let result: Result<WirePayload, _> = serde_path_to_error::deserialize(&mut deserializer);
    match result {
        Ok(_) => PayloadError {
            error: "invalid JSON".to_owned(),
            detail: "trailing characters after the payload".to_owned(),
        },
        Err(error) => {
            let path = error.path().to_string();
            let inner = error.into_inner();
            let message = inner.to_string();
            // serde_json appends " at line L column C"; the detail carries the place.
            let message = match message.find(" at line ") {
                Some(cut) => message[..cut].to_owned(),
                None => message,
            };
            let place = format!("line {} column {}", inner.line(), inner.column());
            let missing_field = message
                .strip_prefix("missing field `")
                .and_then(|rest| rest.split('`').next());
            let top_level = path.is_empty() || path == ".";
            let detail = match (
                inner.is_syntax() || inner.is_eof(),
                top_level,
                missing_field,
            ) {
                (true, _, _) => place,
                (false, true, Some(field)) => field.to_owned(),
                (false, true, None) => place,
                (false, false, Some(field)) => format!("{path}.{field}"),
                (false, false, None) => path,
            };
            let error = if inner.is_syntax() || inner.is_eof() {
                format!("invalid JSON: {message}")
            } else {
                message
            };
            PayloadError { error, detail }
        }
    }
}

pub(crate) fn hex(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut out = String::with_capacity(bytes.len() * 2);
    for byte in bytes {
        out.push(DIGITS[(byte >> 4) as usize] as char);
        out.push(DIGITS[(byte & 0xf) as usize] as char);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn payload(alerts: &str) -> String {
        format!(
            r#"{{"version":"4","groupKey":"{{}}:{{service=\"samsa\"}}","status":"firing","receiver":"samsa-relay",
            "groupLabels":{{}},"commonLabels":{{}},"commonAnnotations":{{}},"externalURL":"http://am:9093",
            "truncatedAlerts":0,"alerts":[{alerts}]}}"#
        )
    }

    const ONE_ALERT: &str = r#"{"status":"firing","labels":{"alertname":"SamsaDown","actor":"kommun-boras"},
        "annotations":{"summary":"down"},"startsAt":"2026-11-28T04:12:00.123Z","endsAt":"0001-01-01T00:00:00Z",
        "generatorURL":"http://prom/graph","fingerprint":"a1b2c3"}"#;

    #[test]
    fn parses_a_version_4_payload() {
        let notification = Notification::parse(payload(ONE_ALERT).as_bytes()).unwrap();
        assert_eq!(notification.alerts.len(), 1);
        let alert = &notification.alerts[0];
        assert_eq!(alert.fingerprint, "a1b2c3");
        assert_eq!(alert.labels["actor"], "kommun-boras");
        assert_eq!(alert.ends_at, None);
        assert_eq!(alert.starts_at.to_string(), "2026-11-28T04:12:00.123Z");
    }

    #[test]
    fn missing_field_is_named_with_its_path() {
        let alert = ONE_ALERT.replace(r#""fingerprint":"a1b2c3""#, r#""other":1"#);
        let error =
            Notification::parse(payload(&format!("{ONE_ALERT},{alert}")).as_bytes()).unwrap_err();
        assert_eq!(error.error, "missing field `fingerprint`");
        assert_eq!(error.detail, "alerts[1].fingerprint");
    }

    #[test]
    fn wrong_version_is_refused() {
        let body = payload(ONE_ALERT).replace(r#""version":"4""#, r#""version":"3""#);
        let error = Notification::parse(body.as_bytes()).unwrap_err();
        assert_eq!(error.error, "unsupported payload version");
        assert!(error.detail.starts_with("version"));
    }

    #[test]
    fn bad_json_and_bad_times_are_described() {
        let error = Notification::parse(b"{\"version\":").unwrap_err();
        assert!(error.error.starts_with("invalid JSON"), "{error:?}");
        let bad_time = ONE_ALERT.replace("2026-11-28T04:12:00.123Z", "yesterday");
        let error = Notification::parse(payload(&bad_time).as_bytes()).unwrap_err();
        assert_eq!(
            error.detail,
            r#"alerts[0].startsAt: "yesterday" is not RFC 3339"#
        );
    }

    #[test]
    fn dedupe_key_ignores_what_resends_change() {
        let first = Notification::parse(payload(ONE_ALERT).as_bytes()).unwrap();
        let resend = payload(ONE_ALERT)
            .replace("http://am:9093", "http://am-peer:9093")
            .replace("0001-01-01T00:00:00Z", "2026-11-28T05:00:00Z");
        let resend = Notification::parse(resend.as_bytes()).unwrap();
        assert_eq!(first.dedupe_key(), resend.dedupe_key());
        let resolved = payload(ONE_ALERT).replace(
            r#""status":"firing","labels""#,
            r#""status":"resolved","labels""#,
        );
        let resolved = Notification::parse(resolved.as_bytes()).unwrap();
        assert_ne!(first.dedupe_key(), resolved.dedupe_key());
    }
}
