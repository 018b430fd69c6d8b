//! The incident log's entries as one typed enum. Stored as today: the kind (the serde tag,
//! e.g. `draft_created`) in one column and the other fields as a JSON object in another,
//! so existing databases read back unchanged. [`LogEvent::to_stored`] and
//! [`LogEvent::from_stored`] are the one conversion each way; unknown fields in a stored
//! entry are ignored, an unknown kind is an error.

use jiff::Timestamp;
use serde::{Deserialize, Serialize};

use crate::notice::{DraftFields, NoticeKind};

/// One entry of an incident's log, by kind.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "event", rename_all = "snake_case")]
pub enum LogEvent {
    // What the incident engine saw (`IncidentEngine::apply` emits these).
    IncidentOpened {
        started_at: Timestamp,
        n_affected: usize,
        level: u8,
        crisis: bool,
        reasons: Vec<String>,
    },
    AlertFiring {
        fingerprint: String,
        starts_at: Timestamp,
        labels: crate::alertmanager::Labels,
    },
    AlertResolved {
        fingerprint: String,
        starts_at: Timestamp,
    },
    ScopeChanged {
        n_affected_before: usize,
        n_affected: usize,
        whole_service: bool,
    },
    LevelChanged {
        before: u8,
        after: u8,
        crisis: bool,
        reasons: Vec<String>,
    },
    IncidentResolved {
        at: Timestamp,
    },
    IncidentReopened {
        at: Timestamp,
        n_reopened: u32,
    },
    // Drafts.
    DraftCreated {
        draft_id: i64,
        kind: NoticeKind,
        version: i64,
        /// Made by an operator rather than by the relay.
        #[serde(default, skip_serializing_if = "std::ops::Not::not")]
        by_hand: bool,
    },
    DraftRevised {
        draft_id: i64,
        version: i64,
    },
    DraftEdited {
        draft_id: i64,
        version: i64,
        fields: DraftFields,
    },
    DraftWithdrawn {
        draft_id: i64,
        reason: String,
    },
    DraftDiscarded {
        draft_id: i64,
        reason: String,
    },
    // Publishing and delivery.
    DecisionRecorded {
        level: u8,
        decided_by: String,
        role: String,
        role_label: String,
    },
    NoticePublished {
        draft_id: i64,
        draft_version: i64,
        kind: NoticeKind,
        level: u8,
        suggested_level: u8,
        channels: Vec<String>,
        n_deliveries: usize,
        /// Added by storage when the publication is written (its id is known then).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        notice_id: Option<i64>,
    },
    DeliveryFailed {
        outbox_id: i64,
        error: String,
    },
    DeliveryRetried {
        outbox_id: i64,
    },
    // Drills and the monitoring chain.
    DrillStarted {
        n_affected: usize,
        level: u8,
    },
    MonitoringChainBroken {
        watchdog_alertname: String,
        last_seen: Timestamp,
        timeout_seconds: u64,
    },
    MonitoringChainRestored {},
    // Planned maintenance.
    MaintenancePlanned {
        title: String,
        starts_at: Timestamp,
        ends_at: Timestamp,
    },
    // Follow-up.
    Feedback {
        feedback_id: i64,
    },
    Note {
        text: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        occurred_at: Option<Timestamp>,
    },
    EvaluationNoted {
        lesson_id: i64,
    },
    LessonRecorded {
        lesson_id: i64,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        audience: Option<String>,
    },
    // Planned maintenance (`crate::maintenance`).
    /// The announcement was published: the window is announced.
    MaintenanceAnnounced {
        starts_at: Timestamp,
        ends_at: Timestamp,
        /// The rest of the series goes out on its own.
        auto_series: bool,
    },
    /// A step of the series came due and its notice was drafted (and, when approved
    /// with the announcement, published).
    MaintenanceStep {
        /// `Step::key`.
        step: String,
        label: String,
        draft_id: i64,
        automatic: bool,
    },
    /// Alertmanager silences were made for the window.
    MaintenanceSilenced {
        silence_ids: Vec<String>,
    },
    /// Alertmanager could not be reached or refused the silence.
    MaintenanceSilenceFailed {
        error: String,
    },
    /// The window's silences were expired.
    MaintenanceSilenceExpired {
        silence_ids: Vec<String>,
    },
    /// The window's end came: `completed`, or `overran` with alerts still firing.
    MaintenanceEnded {
        state: String,
        n_alerts_firing: usize,
    },
    /// The operator moved the window.
    MaintenanceMoved {
        previous_starts_at: Timestamp,
        previous_ends_at: Timestamp,
        starts_at: Timestamp,
        ends_at: Timestamp,
    },
    /// The operator called the window off.
    MaintenanceCancelled {
        reason: String,
    },
    /// An alert arrived inside the window's scope and times: recorded here, no incident.
    AlertDuringMaintenance {
        fingerprint: String,
        starts_at: Timestamp,
        status: String,
        labels: crate::alertmanager::Labels,
    },
    /// Alerts still firing at the window's end were handed to the incident worker as a
    /// receipt of their own, so that the outage opens an incident.
    MaintenanceAlertsHandedOver {
        n_alerts: usize,
        receipt_id: i64,
    },
}

impl LogEvent {
    /// The stored form: the kind and the JSON object of the other fields.
    pub fn to_stored(&self) -> (String, serde_json::Value) {
        let mut detail = serde_json::to_value(self).expect("log events serialize");
        let kind = detail
            .as_object_mut()
            .and_then(|object| object.remove("event"))
            .and_then(|kind| kind.as_str().map(str::to_owned))
            .expect("a tagged enum serializes as an object with its tag");
        (kind, detail)
    }

    /// Reads a stored entry back; fails for an unknown kind or a missing field.
    pub fn from_stored(
        kind: &str,
        detail: &serde_json::Value,
    ) -> Result<LogEvent, serde_json::Error> {
        let mut tagged = match detail {
            serde_json::Value::Object(object) => object.clone(),
            _ => serde_json::Map::new(),
        };
        tagged.insert("event".to_owned(), serde_json::Value::from(kind));
        serde_json::from_value(serde_json::Value::Object(tagged))
    }

    /// The stored form as text: the kind, and the JSON object of the other fields as it
    /// is written to the log. The same as [`LogEvent::to_stored`] without building a
    /// `serde_json::Value` (the incident worker writes one entry per alert).
    pub fn to_stored_text(&self) -> (String, String) {
        let mut text = serde_json::to_string(self).expect("log events serialize");
        // An internally tagged enum writes its tag first: `{"event":"kind"` then `}` or
        // `,` and the other fields. Kinds are snake_case names, never escaped.
        const TAG: &str = "{\"event\":\"";
        let kind_end = text
            .strip_prefix(TAG)
            .and_then(|rest| rest.find('"'))
            .map(|end| TAG.len() + end)
            .expect("a tagged enum serializes as an object with its tag first");
        let kind = text[TAG.len()..kind_end].to_owned();
        // Drop `"event":"kind"` and the comma after it, keeping the opening brace.
        let fields_start = match text.as_bytes().get(kind_end + 1) {
            Some(b',') => kind_end + 2,
            _ => kind_end + 1,
        };
        text.replace_range(1..fields_start, "");
        (kind, text)
    }

    /// The source of an entry the incident worker writes: `alertmanager` for what an
    /// alert did, `relay` for what the engine concluded.
    pub fn worker_source(&self) -> &'static str {
        match self {
            LogEvent::AlertFiring { .. } | LogEvent::AlertResolved { .. } => "alertmanager",
            _ => "relay",
        }
    }

    /// The stored kind alone.
    pub fn kind(&self) -> String {
        self.to_stored_text().0
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn at(text: &str) -> Timestamp {
        text.parse().unwrap()
    }

    /// The stored form of the entries storage and the services write, exactly as the
    /// relay wrote them before the log was typed: existing databases must read back.
    #[test]
    fn the_stored_form_is_unchanged() {
        let cases = [
            (
                LogEvent::DraftCreated {
                    draft_id: 3,
                    kind: NoticeKind::Initial,
                    version: 1,
                    by_hand: false,
                },
                "draft_created",
                json!({"draft_id": 3, "kind": "initial", "version": 1}),
            ),
            (
                LogEvent::DraftCreated {
                    draft_id: 3,
                    kind: NoticeKind::Update,
                    version: 1,
                    by_hand: true,
                },
                "draft_created",
                json!({"draft_id": 3, "kind": "update", "version": 1, "by_hand": true}),
            ),
            (
                LogEvent::NoticePublished {
                    draft_id: 3,
                    draft_version: 2,
                    kind: NoticeKind::Initial,
                    level: 2,
                    suggested_level: 1,
                    channels: vec!["email".to_owned()],
                    n_deliveries: 4,
                    notice_id: Some(7),
                },
                "notice_published",
                json!({"draft_id": 3, "draft_version": 2, "kind": "initial", "level": 2,
                       "suggested_level": 1, "channels": ["email"], "n_deliveries": 4,
                       "notice_id": 7}),
            ),
            (
                LogEvent::MonitoringChainRestored {},
                "monitoring_chain_restored",
                json!({}),
            ),
            (
                LogEvent::AlertResolved {
                    fingerprint: "f1".to_owned(),
                    starts_at: at("2026-11-28T05:00:00Z"),
                },
                "alert_resolved",
                json!({"fingerprint": "f1", "starts_at": "2026-11-28T05:00:00Z"}),
            ),
            (
                LogEvent::AlertFiring {
                    fingerprint: "f1".to_owned(),
                    starts_at: at("2026-11-28T05:00:00Z"),
                    labels: std::sync::Arc::new(
                        [("note", "\"citat\" och å"), ("actor", "kommun-ale")]
                            .into_iter()
                            .collect(),
                    ),
                },
                "alert_firing",
                json!({
                    "fingerprint": "f1",
                    "starts_at": "2026-11-28T05:00:00Z",
                    "labels": {"actor": "kommun-ale", "note": "\"citat\" och å"},
                }),
            ),
            (
                LogEvent::Note {
                    text: "Ring leverantören".to_owned(),
                    occurred_at: None,
                },
                "note",
                json!({"text": "Ring leverantören"}),
            ),
        ];
        for (event, kind, detail) in cases {
            assert_eq!(event.to_stored(), (kind.to_owned(), detail.clone()));
            let (text_kind, text) = event.to_stored_text();
            assert_eq!(text_kind, kind);
            assert_eq!(
                serde_json::from_str::<serde_json::Value>(&text).unwrap(),
                detail,
                "{text}"
            );
            assert_eq!(LogEvent::from_stored(kind, &detail).unwrap(), event);
        }
    }

    #[test]
    fn an_unknown_kind_does_not_read() {
        assert!(LogEvent::from_stored("something_else", &json!({})).is_err());
        assert!(LogEvent::from_stored("delivery_failed", &json!({"outbox_id": 1})).is_err());
    }
}
