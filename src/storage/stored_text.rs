//! The text forms of stored values and the column lists that both backends read the same
//! way: one place that knows how a stored state, level or label map parses.

use std::collections::BTreeMap;

use anyhow::Context as _;

use crate::alertmanager::AlertStatus;
use crate::classify::Level;
use crate::incident::{DeliveryState, DraftState, IncidentKind};
use crate::notice::NoticeKind;

pub(in crate::storage) const INCIDENT_COLUMNS: &str =
    "id, kind, phase, started_at, resolved_at, n_reopened, summary, classification, published";

pub(in crate::storage) const NOTICE_COLUMNS: &str = "p.id, p.incident_id, p.draft_id, p.draft_version, p.kind, p.level, p.decided_by, \
     p.decided_role, p.published_by, p.channels, p.rendered, p.published_at";

pub(in crate::storage) fn parse_status(text: String) -> anyhow::Result<AlertStatus> {
    AlertStatus::parse(&text).with_context(|| format!("unknown stored status {text:?}"))
}

pub(in crate::storage) fn parse_map(text: String) -> anyhow::Result<BTreeMap<String, String>> {
    serde_json::from_str(&text).context("stored labels are not a JSON object of strings")
}

pub(in crate::storage) fn parse_kind(text: String) -> anyhow::Result<NoticeKind> {
    match text.as_str() {
        "initial" => Ok(NoticeKind::Initial),
        "update" => Ok(NoticeKind::Update),
        "resolved" => Ok(NoticeKind::Resolved),
        other => anyhow::bail!("unknown stored notice kind {other:?}"),
    }
}

pub(in crate::storage) fn parse_incident_kind(text: String) -> anyhow::Result<IncidentKind> {
    IncidentKind::parse(&text).with_context(|| format!("unknown stored incident kind {text:?}"))
}

pub(in crate::storage) fn parse_draft_state(text: String) -> anyhow::Result<DraftState> {
    DraftState::parse(&text).with_context(|| format!("unknown stored draft state {text:?}"))
}

pub(in crate::storage) fn parse_delivery_state(text: String) -> anyhow::Result<DeliveryState> {
    DeliveryState::parse(&text).with_context(|| format!("unknown stored delivery state {text:?}"))
}

pub(in crate::storage) fn parse_level(number: i64) -> anyhow::Result<Level> {
    u8::try_from(number)
        .ok()
        .and_then(Level::from_number)
        .with_context(|| format!("unknown stored level {number}"))
}
