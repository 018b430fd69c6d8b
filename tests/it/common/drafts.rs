//! Drafts and publications as an operator makes them, past the HTTP pages: wait for a
//! pending draft, publish it, read the outbox.

use std::time::Duration;

use super::{TestApp, eventually};

/// Waits for the pending draft of `kind` of an incident; returns its id, latest version
/// and the level that version was rendered for.
pub async fn pending_draft(
    app: &TestApp,
    incident_id: i64,
    kind: samsa_relay::notice::NoticeKind,
) -> (i64, i64, samsa_relay::classify::Level) {
    eventually(
        &format!(
            "a pending {} draft of incident {incident_id}",
            kind.as_str()
        ),
        Duration::from_secs(20),
        || async {
            let drafts = app.state.storage.drafts(incident_id).await.ok()?;
            let draft = drafts
                .into_iter()
                .find(|draft| draft.state == "pending" && draft.kind == kind)?;
            let version = draft.versions.last()?;
            let input: samsa_relay::notice::NoticeInput =
                serde_json::from_value(version.input.clone()).expect("stored notice input");
            Some((draft.draft_id, version.version, input.classification.level))
        },
    )
    .await
}

/// The publish request an operator would send for a draft at the level it was rendered
/// for, with the decision levels 2 and 3 require.
pub fn publish_request(
    draft_id: i64,
    draft_version: i64,
    level: samsa_relay::classify::Level,
    channels: &[&str],
) -> samsa_relay::publishing::PublishRequest {
    use samsa_relay::classify::Level;
    use samsa_relay::publishing::{Decision, DecisionRole, PublishRequest};
    let decision = match level {
        Level::One => None,
        Level::Two => Some(Decision {
            decided_by: "Test Testsson".to_owned(),
            role: DecisionRole::Subregional,
        }),
        Level::Three => Some(Decision {
            decided_by: "Test Testsson".to_owned(),
            role: DecisionRole::CouncilChair,
        }),
    };
    PublishRequest {
        draft_id,
        draft_version,
        level,
        channels: channels.iter().map(|name| (*name).to_owned()).collect(),
        decision,
        operator: "operatör@example.org".to_owned(),
    }
}

/// Waits for the pending draft of `kind` and publishes it through the app on `channels`.
pub async fn publish_pending(
    app: &TestApp,
    incident_id: i64,
    kind: samsa_relay::notice::NoticeKind,
    channels: &[&str],
) -> samsa_relay::publishing::Publication {
    let (draft_id, version, level) = pending_draft(app, incident_id, kind).await;
    app.state
        .publisher
        .publish(&publish_request(draft_id, version, level, channels))
        .await
        .expect("the draft publishes")
}

/// The outbox rows of one channel, oldest first.
pub async fn outbox_rows(app: &TestApp, channel: &str) -> Vec<samsa_relay::storage::OutboxRecord> {
    app.state
        .storage
        .outbox(None)
        .await
        .expect("outbox readable")
        .into_iter()
        .filter(|row| row.channel == channel)
        .collect()
}
