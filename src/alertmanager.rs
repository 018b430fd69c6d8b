//! The Alertmanager webhook payload (version 4): wire types, and their conversion into the
//! domain [`Notification`] at the edge. Unknown fields are accepted; a wrong version or a
//! missing required field is a [`PayloadError`] that names the field, never quoting more
//! than a short excerpt of the input.
//!
//! [`Received::parse`] also cuts what a webhook carries to the limits below before it is
//! stored: a label or annotation value, a name, or any other string over its limit, and
//! labels or annotations beyond the count per map. Whatever the relay stores, logs,
//! renders or shows comes from the cut payload.

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

/// An alert's labels. Shared, not copied, by everything that carries the alert from
/// parse to write (its update, the incident's tracked alert, its log entry): a webhook's
/// labels exist once in memory however many places refer to them.
pub type Labels = std::sync::Arc<LabelMap>;

/// The entries of one label or annotation map: sorted by name, each name once, in one
/// exactly sized allocation. An alert carries a few of each, and a `BTreeMap` allocates
/// a node for eleven entries (about 600 bytes) even for one: for a 10,000-alert webhook
/// that was most of the memory its parsed alerts took. Serialises as a JSON object with
/// the names in order, exactly as the `BTreeMap` did (dedupe keys and stored labels are
/// unchanged); a name given twice keeps its last value, as in a map.
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash)]
pub struct LabelMap(Box<[(Box<str>, Box<str>)]>);

impl LabelMap {
    /// The value of `name`, if present.
    pub fn get(&self, name: &str) -> Option<&str> {
        self.0
            .binary_search_by(|(entry, _)| (**entry).cmp(name))
            .ok()
            .map(|index| &*self.0[index].1)
    }

    pub fn contains_key(&self, name: &str) -> bool {
        self.get(name).is_some()
    }

    /// The entries in name order.
    pub fn iter(&self) -> impl ExactSizeIterator<Item = (&str, &str)> {
        self.0.iter().map(|(name, value)| (&**name, &**value))
    }

    pub fn len(&self) -> usize {
        self.0.len()
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// A copy as an ordinary map.
    pub fn to_map(&self) -> BTreeMap<String, String> {
        self.iter()
            .map(|(name, value)| (name.to_owned(), value.to_owned()))
            .collect()
    }
}

impl<N: Into<Box<str>>, V: Into<Box<str>>> FromIterator<(N, V)> for LabelMap {
    fn from_iter<I: IntoIterator<Item = (N, V)>>(entries: I) -> LabelMap {
        let mut entries: Vec<(Box<str>, Box<str>)> = entries
            .into_iter()
            .map(|(name, value)| (name.into(), value.into()))
            .collect();
        // Stable: of equal names the last given ends up last, and is the one kept.
        entries.sort_by(|a, b| a.0.cmp(&b.0));
        entries.dedup_by(|later, kept| {
            let same = later.0 == kept.0;
            if same {
                std::mem::swap(later, kept);
            }
            same
        });
        LabelMap(entries.into_boxed_slice())
    }
}

impl From<BTreeMap<String, String>> for LabelMap {
    fn from(map: BTreeMap<String, String>) -> LabelMap {
        map.into_iter().collect()
    }
}

impl std::ops::Index<&str> for LabelMap {
    type Output = str;

    /// The value of `name`; panics when it is missing, as a map's index does.
    fn index(&self, name: &str) -> &str {
        self.get(name)
            .unwrap_or_else(|| panic!("no entry named {name:?}"))
    }
}

impl Serialize for LabelMap {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_map(self.iter())
    }
}

impl<'de> Deserialize<'de> for LabelMap {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<LabelMap, D::Error> {
        struct Entries;
        impl<'de> serde::de::Visitor<'de> for Entries {
            type Value = LabelMap;

            fn expecting(&self, formatter: &mut std::fmt::Formatter) -> std::fmt::Result {
                formatter.write_str("a map of strings")
            }

            fn visit_map<A: serde::de::MapAccess<'de>>(
                self,
                mut map: A,
            ) -> Result<LabelMap, A::Error> {
                let mut entries: Vec<(String, String)> =
                    Vec::with_capacity(map.size_hint().unwrap_or(0).min(MAX_ENTRIES));
                while let Some(entry) = map.next_entry()? {
                    entries.push(entry);
                }
                Ok(entries.into_iter().collect())
            }
        }
        deserializer.deserialize_map(Entries)
    }
}

/// One alert of a notification.
#[derive(Debug, Clone, PartialEq)]
pub struct Alert {
    pub fingerprint: String,
    pub status: AlertStatus,
    pub labels: Labels,
    pub annotations: LabelMap,
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

/// Most characters of a label value kept; a longer one is cut and ends with `…`.
pub const MAX_LABEL_VALUE_CHARS: usize = 1024;
/// Most characters of an annotation value kept (a description may be a paragraph or two).
pub const MAX_ANNOTATION_VALUE_CHARS: usize = 8192;
/// Most characters of a label or annotation name; an entry with a longer name is dropped.
pub const MAX_NAME_CHARS: usize = 256;
/// Most labels, and most annotations, kept per map (an alert's, or the common ones); the
/// rest (in name order) are dropped.
pub const MAX_ENTRIES: usize = 64;
/// Most characters of any other string in the payload (`generatorURL`, unknown fields …).
pub const MAX_OTHER_STRING_CHARS: usize = 8192;
/// Most characters of input an error quotes.
const MAX_QUOTED_CHARS: usize = 64;
/// Most characters of a [`PayloadError`]'s `error` and `detail` each.
const MAX_ERROR_CHARS: usize = 200;
/// The top-level field of a stored payload that records what was cut.
pub const CUT_FIELD: &str = "samsaRelayCut";

/// A webhook as the relay keeps it: the notification, and the payload to store.
#[derive(Debug, Clone, PartialEq)]
pub struct Received {
    pub notification: Notification,
    /// The cut payload (with [`CUT_FIELD`]) when anything was over a limit; `None`: the
    /// body as received is stored.
    pub cut_payload: Option<String>,
    pub cut: Cuts,
}

/// What [`Received::parse`] cut, by kind.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct Cuts {
    /// Label values cut to [`MAX_LABEL_VALUE_CHARS`].
    pub label_values: u64,
    /// Annotation values cut to [`MAX_ANNOTATION_VALUE_CHARS`].
    pub annotation_values: u64,
    /// Labels and annotations dropped: over [`MAX_ENTRIES`], or a name over
    /// [`MAX_NAME_CHARS`].
    pub entries_dropped: u64,
    /// Other strings cut to [`MAX_OTHER_STRING_CHARS`].
    pub other_strings: u64,
}

impl Cuts {
    pub fn is_empty(&self) -> bool {
        *self == Cuts::default()
    }

    /// (kind, count) pairs, for the metric.
    pub fn by_kind(&self) -> [(&'static str, u64); 4] {
        [
            ("label_value", self.label_values),
            ("annotation_value", self.annotation_values),
            ("entry_dropped", self.entries_dropped),
            ("other_string", self.other_strings),
        ]
    }
}

impl Received {
    /// Parses a webhook body (see [`Notification::parse`]) and cuts it to the limits. A
    /// body with nothing over them, which is every ordinary webhook, is kept as received;
    /// only a body larger than its alerts explain is walked as a whole.
    pub fn parse(body: &[u8]) -> Result<Received, PayloadError> {
        let notification = Notification::parse(body)?;
        // An ordinary alert is a few hundred bytes; a body well beyond that carries
        // something big outside the labels and annotations (an unknown field, say).
        let ordinary_size = 64 * 1024 + notification.alerts.len() * 16 * 1024;
        if !notification.over_limits() && body.len() <= ordinary_size {
            return Ok(Received {
                notification,
                cut_payload: None,
                cut: Cuts::default(),
            });
        }
        let mut payload: serde_json::Value = serde_json::from_slice(body).map_err(|error| {
            PayloadError {
                error: format!("invalid JSON: {error}"),
                detail: "body".to_owned(),
            }
            .shortened()
        })?;
        let mut cut = Cuts::default();
        cut_payload(&mut payload, &mut cut);
        if cut.is_empty() {
            return Ok(Received {
                notification,
                cut_payload: None,
                cut,
            });
        }
        if let Some(object) = payload.as_object_mut() {
            object.insert(
                CUT_FIELD.to_owned(),
                serde_json::to_value(cut).expect("counts serialize"),
            );
        }
        let text = payload.to_string();
        // What is stored and what is acted on are the same: the worker parses it again.
        let notification = Notification::parse(text.as_bytes())?;
        Ok(Received {
            notification,
            cut_payload: Some(text),
            cut,
        })
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
    labels: LabelMap,
    #[serde(default)]
    annotations: LabelMap,
    starts_at: String,
    #[serde(default)]
    ends_at: Option<String>,
    #[serde(default, rename = "generatorURL")]
    generator_url: String,
    fingerprint: String,
}

impl PayloadError {
    /// Cuts `error` and `detail` to a few lines: an error never echoes input at length.
    fn shortened(self) -> PayloadError {
        PayloadError {
            error: cut_chars(&self.error, MAX_ERROR_CHARS).unwrap_or(self.error),
            detail: cut_chars(&self.detail, MAX_ERROR_CHARS).unwrap_or(self.detail),
        }
    }
}

impl Notification {
    /// Parses and checks a webhook body. [`Received::parse`] also applies the limits.
    pub fn parse(body: &[u8]) -> Result<Notification, PayloadError> {
        Notification::parse_unshortened(body).map_err(PayloadError::shortened)
    }

    fn parse_unshortened(body: &[u8]) -> Result<Notification, PayloadError> {
        // The plain parse is the fast path; only a failure pays for the path-tracking one,
        // which tells the sender where the problem is.
        let wire: WirePayload = match serde_json::from_slice(body) {
            Ok(wire) => wire,
            Err(_) => return Err(describe_json_error(body)),
        };
        if wire.version != "4" {
            return Err(PayloadError {
                error: "unsupported payload version".to_owned(),
                detail: format!("version: expected \"4\", got {:?}", truncate(&wire.version)),
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

    /// Whether any label or annotation is over the limits [`Received::parse`] cuts to.
    fn over_limits(&self) -> bool {
        let over = |map: &LabelMap, max_value_chars: usize| {
            map.len() > MAX_ENTRIES
                || map.iter().any(|(name, value)| {
                    name.len() > MAX_NAME_CHARS || value.len() > max_value_chars
                })
        };
        self.alerts.iter().any(|alert| {
            over(&alert.labels, MAX_LABEL_VALUE_CHARS)
                || over(&alert.annotations, MAX_ANNOTATION_VALUE_CHARS)
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
            labels: std::sync::Arc::new(self.labels),
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

/// A short excerpt of input for an error message, marked with `…` when cut.
fn truncate(text: &str) -> String {
    cut_chars(text, MAX_QUOTED_CHARS).unwrap_or_else(|| text.to_owned())
}

/// `text` cut to `max_chars` characters and `…`, or `None` when it fits.
fn cut_chars(text: &str, max_chars: usize) -> Option<String> {
    // Bytes first: a string of at most max_chars bytes has at most max_chars characters.
    if text.len() <= max_chars {
        return None;
    }
    let (cut_at, _) = text.char_indices().nth(max_chars)?;
    let mut cut = String::with_capacity(cut_at + '…'.len_utf8());
    cut.push_str(&text[..cut_at]);
    cut.push('…');
    Some(cut)
}

/// The maps of label or annotation entries in a payload, by key.
const LABEL_MAPS: &[&str] = &["labels", "groupLabels", "commonLabels"];
const ANNOTATION_MAPS: &[&str] = &["annotations", "commonAnnotations"];

/// Cuts every string and map in `value` to the limits, counting what it cut.
fn cut_payload(value: &mut serde_json::Value, cut: &mut Cuts) {
    match value {
        serde_json::Value::String(text) => {
            if let Some(shorter) = cut_chars(text, MAX_OTHER_STRING_CHARS) {
                *text = shorter;
                cut.other_strings += 1;
            }
        }
        serde_json::Value::Array(items) => {
            for item in items {
                cut_payload(item, cut);
            }
        }
        serde_json::Value::Object(fields) => {
            // Long names of unknown fields are dropped like long label names.
            let n_fields = fields.len();
            fields.retain(|name, _| name.len() <= MAX_OTHER_STRING_CHARS);
            cut.entries_dropped += (n_fields - fields.len()) as u64;
            for (name, field) in fields.iter_mut() {
                let max_value_chars = if LABEL_MAPS.contains(&name.as_str()) {
                    Some(MAX_LABEL_VALUE_CHARS)
                } else if ANNOTATION_MAPS.contains(&name.as_str()) {
                    Some(MAX_ANNOTATION_VALUE_CHARS)
                } else {
                    None
                };
                match (max_value_chars, field) {
                    (Some(max_value_chars), serde_json::Value::Object(entries)) => {
                        cut_entries(entries, max_value_chars, cut);
                    }
                    (_, field) => cut_payload(field, cut),
                }
            }
        }
        serde_json::Value::Null | serde_json::Value::Bool(_) | serde_json::Value::Number(_) => {}
    }
}

/// Cuts one map of labels or annotations: names, count, values.
fn cut_entries(
    entries: &mut serde_json::Map<String, serde_json::Value>,
    max_value_chars: usize,
    cut: &mut Cuts,
) {
    let n_entries = entries.len();
    entries.retain(|name, _| name.chars().count() <= MAX_NAME_CHARS);
    if entries.len() > MAX_ENTRIES {
        // The first MAX_ENTRIES names in order are kept, whatever order the map keeps.
        let mut names: Vec<String> = entries.keys().cloned().collect();
        names.sort_unstable();
        for name in &names[MAX_ENTRIES..] {
            entries.remove(name);
        }
    }
    cut.entries_dropped += (n_entries - entries.len()) as u64;
    for value in entries.values_mut() {
        match value {
            serde_json::Value::String(text) => {
                if let Some(shorter) = cut_chars(text, max_value_chars) {
                    *text = shorter;
                    if max_value_chars == MAX_LABEL_VALUE_CHARS {
                        cut.label_values += 1;
                    } else {
                        cut.annotation_values += 1;
                    }
                }
            }
            // Not a string: the parse refuses it anyway.
            other => cut_payload(other, cut),
        }
    }
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
        assert_eq!(&alert.labels["actor"], "kommun-boras");
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
    fn an_ordinary_webhook_is_stored_as_received() {
        let body = payload(ONE_ALERT);
        let received = Received::parse(body.as_bytes()).unwrap();
        assert_eq!(received.cut_payload, None);
        assert!(received.cut.is_empty());
        assert_eq!(
            received.notification,
            Notification::parse(body.as_bytes()).unwrap()
        );
    }

    #[test]
    fn oversized_values_and_too_many_entries_are_cut_and_counted() {
        let huge_label = "x".repeat(3 * 1024 * 1024);
        let long_annotation = "å".repeat(MAX_ANNOTATION_VALUE_CHARS + 10);
        let many_labels: String = (0..100)
            .map(|index| format!(r#""extra_{index:03}":"v","#))
            .collect();
        let long_name = "n".repeat(MAX_NAME_CHARS + 1);
        let alert = ONE_ALERT
            .replace(
                r#""actor":"kommun-boras""#,
                &format!(r#"{many_labels}"actor":"{huge_label}","{long_name}":"v""#),
            )
            .replace(
                r#""summary":"down""#,
                &format!(r#""summary":"down","description":"{long_annotation}""#),
            )
            .replace(
                r#""generatorURL":"http://prom/graph""#,
                &format!(r#""generatorURL":"http://prom/{huge_label}","unknown":"{huge_label}""#),
            );
        let body = payload(&alert);
        let received = Received::parse(body.as_bytes()).unwrap();
        let stored = received.cut_payload.expect("cut");
        assert!(stored.len() < 64 * 1024, "stored {} bytes", stored.len());
        assert_eq!(
            received.cut,
            Cuts {
                label_values: 1,
                annotation_values: 1,
                // alertname, actor and 100 extra labels (64 kept), and one with a long
                // name.
                entries_dropped: 102 - 64 + 1,
                other_strings: 2,
            }
        );
        let alert = &received.notification.alerts[0];
        assert_eq!(alert.labels.len(), MAX_ENTRIES);
        // Name order: alertname, then extra_000 …
        assert_eq!(&alert.labels["alertname"], "SamsaDown");
        assert!(!alert.labels.contains_key("extra_099"));
        assert_eq!(
            alert.labels["actor"].chars().count(),
            MAX_LABEL_VALUE_CHARS + 1
        );
        let description = &alert.annotations["description"];
        assert_eq!(description.chars().count(), MAX_ANNOTATION_VALUE_CHARS + 1);
        assert!(description.ends_with("å…"));
        assert!(alert.generator_url.ends_with('…'));
        assert!(alert.generator_url.chars().count() <= MAX_OTHER_STRING_CHARS + 1);
        // What is stored parses to the same notification, and records the cut.
        assert_eq!(
            Notification::parse(stored.as_bytes()).unwrap(),
            received.notification
        );
        let stored: serde_json::Value = serde_json::from_str(&stored).unwrap();
        assert_eq!(stored[CUT_FIELD]["label_values"], 1);
    }

    #[test]
    fn a_label_value_over_the_limit_is_cut_with_a_marker() {
        let value = "v".repeat(MAX_LABEL_VALUE_CHARS + 1);
        let alert = ONE_ALERT.replace("kommun-boras", &value);
        let received = Received::parse(payload(&alert).as_bytes()).unwrap();
        let actor = &received.notification.alerts[0].labels["actor"];
        assert_eq!(actor.chars().count(), MAX_LABEL_VALUE_CHARS + 1);
        assert!(actor.ends_with("v…"));
        assert_eq!(received.cut.label_values, 1);
        // At the limit nothing is cut.
        let alert = ONE_ALERT.replace("kommun-boras", &value[1..]);
        let received = Received::parse(payload(&alert).as_bytes()).unwrap();
        assert_eq!(received.cut_payload, None);
    }

    #[test]
    fn errors_quote_only_a_short_excerpt_of_the_input() {
        let long = "9".repeat(1024 * 1024);
        let bodies = [
            payload(ONE_ALERT).replace(r#""version":"4""#, &format!(r#""version":"{long}""#)),
            payload(ONE_ALERT).replace(
                r#""status":"firing","receiver""#,
                &format!(r#""status":"{long}","receiver""#),
            ),
            payload(ONE_ALERT).replace(
                r#""truncatedAlerts":0"#,
                &format!(r#""truncatedAlerts":"{long}""#),
            ),
            payload(&ONE_ALERT.replace("2026-11-28T04:12:00.123Z", &long)),
            payload(&ONE_ALERT.replace(r#""actor":"kommun-boras""#, &format!(r#""actor":{long}"#))),
            payload(&ONE_ALERT.replace(r#""actor":"kommun-boras""#, &format!(r#""{long}":1"#))),
        ];
        for body in bodies {
            let error = Received::parse(body.as_bytes()).unwrap_err();
            assert!(
                error.error.len() + error.detail.len() < 1024,
                "{} + {} bytes: {:.300}",
                error.error.len(),
                error.detail.len(),
                error.error
            );
        }
        let error = Notification::parse(
            payload(ONE_ALERT)
                .replace(r#""version":"4""#, &format!(r#""version":"{long}""#))
                .as_bytes(),
        )
        .unwrap_err();
        assert_eq!(error.error, "unsupported payload version");
        assert_eq!(
            error.detail,
            format!("version: expected \"4\", got \"{}…\"", &long[..64])
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

    /// A label map reads like the `BTreeMap` it replaced: names in order, the last value
    /// of a repeated name, the same JSON, and lookups by name.
    #[test]
    fn a_label_map_keeps_names_in_order_and_the_last_value_of_each() {
        let entries = [
            ("zone", "a"),
            ("actor", "kommun-ale"),
            ("zone", "b"),
            ("b", ""),
        ];
        let map: LabelMap = entries.iter().copied().collect();
        let btree: BTreeMap<String, String> = entries
            .iter()
            .map(|(name, value)| ((*name).to_owned(), (*value).to_owned()))
            .collect();
        assert_eq!(map.to_map(), btree);
        assert_eq!(map.len(), 3);
        assert_eq!(map.get("zone"), Some("b"));
        assert_eq!(map.get("actor"), Some("kommun-ale"));
        assert_eq!(map.get("b"), Some(""));
        assert_eq!(map.get("c"), None);
        assert!(!map.contains_key("zon"));
        assert_eq!(
            map.iter().map(|(name, _)| name).collect::<Vec<_>>(),
            ["actor", "b", "zone"]
        );
        assert_eq!(
            serde_json::to_string(&map).unwrap(),
            serde_json::to_string(&btree).unwrap()
        );
        let text = r#"{"zone":"a","actor":"kommun-ale","zone":"b","b":""}"#;
        let parsed: LabelMap = serde_json::from_str(text).unwrap();
        assert_eq!(parsed, map);
        assert_eq!(
            parsed.to_map(),
            serde_json::from_str::<BTreeMap<String, String>>(text).unwrap()
        );
        assert!(serde_json::from_str::<LabelMap>(r#"{"a":1}"#).is_err());
        assert!(serde_json::from_str::<LabelMap>(r#"["a"]"#).is_err());
        assert_eq!(LabelMap::default().get("a"), None);
    }

    /// The dedupe key of a fixed payload, as every earlier release computed it: a resend
    /// after an upgrade must still be a duplicate.
    #[test]
    fn the_dedupe_key_is_the_one_earlier_releases_computed() {
        // Two annotations given out of order: the key has them in name order.
        let alert = ONE_ALERT.replace(
            r#""annotations":{"summary":"down"}"#,
            r#""annotations":{"summary":"down","description":"Inloggningen svarar inte"}"#,
        );
        let notification = Notification::parse(payload(&alert).as_bytes()).unwrap();
        // SHA-256 over the group key, status, truncated count and each alert's
        // `["a1b2c3","2026-11-28T04:12:00.123Z","firing","",{"description":…,"summary":"down"}]`,
        // separated by NUL bytes: computed outside the relay.
        assert_eq!(
            notification.dedupe_key(),
            "da677a508719e959bcdab32b2dce51f4e59544104e432b7a27e7192d303f87a1"
        );
    }
}
