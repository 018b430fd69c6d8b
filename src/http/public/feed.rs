//! The Atom feed of notices (`GET /public/feed.atom`): the newest notices published on a
//! channel with transport `feed`, every value through [`escape_markup`]. A planned
//! maintenance window's notices are entries like any other, with a category of their
//! own (`planerat-underhall`), a title that says maintenance, and the window's public
//! page as their link.

use axum::extract::State;
use axum::http::HeaderMap;
use axum::response::{IntoResponse, Response};
use jiff::{SignedDuration, Timestamp};

use super::{cacheable, escape_markup, storage_unavailable};
use crate::config::{ChannelConfig, ChannelContent, ChannelTransport};
use crate::delivery::webhook::channel_text;
use crate::http::AppState;
use crate::storage::PublishedNoticeRecord;
use std::collections::BTreeSet;

/// The most entries the feed holds.
const FEED_ENTRIES: i64 = 50;

const ATOM: &str = "application/atom+xml; charset=utf-8";

pub(super) async fn feed_atom(State(state): State<AppState>, request: HeaderMap) -> Response {
    let feed_channels: Vec<&ChannelConfig> = state
        .config
        .channels
        .values()
        .filter(|channel| matches!(channel.transport, ChannelTransport::Feed))
        .collect();
    let names: Vec<String> = feed_channels
        .iter()
        .map(|channel| channel.name.clone())
        .collect();
    let notices = match state
        .storage
        .published_notices(Some(&names), FEED_ENTRIES)
        .await
    {
        Ok(notices) => notices,
        Err(error) => return storage_unavailable(&state, error).into_response(),
    };
    let maintenance_ids = match maintenance_ids(&state, &notices).await {
        Ok(ids) => ids,
        Err(error) => return storage_unavailable(&state, error).into_response(),
    };
    let public_url = state
        .config
        .server
        .public_url
        .as_str()
        .trim_end_matches('/');
    let feed = atom_feed(&AtomContext {
        public_url,
        service_name: &state.config.notices.service_name,
        info_address: &state.config.notices.info_address,
        feed_channels: &feed_channels,
        notices: &notices,
        maintenance_ids: &maintenance_ids,
    });
    cacheable(&state, &request, ATOM, feed.into_bytes())
}

struct AtomContext<'a> {
    public_url: &'a str,
    service_name: &'a str,
    info_address: &'a str,
    feed_channels: &'a [&'a ChannelConfig],
    /// Newest first.
    notices: &'a [PublishedNoticeRecord],
    /// The incidents among them that are maintenance windows.
    maintenance_ids: &'a BTreeSet<i64>,
}

/// How long after a window's end its last notice may still be published (an operator
/// reviews the "klart" notice late) and still be found as the window's.
const LATE_PUBLICATION: SignedDuration = SignedDuration::from_hours(30 * 24);

/// The ids of the maintenance windows among the notices' incidents: one read of the
/// windows not ended before the oldest notice (less [`LATE_PUBLICATION`]).
async fn maintenance_ids(
    state: &AppState,
    notices: &[PublishedNoticeRecord],
) -> Result<BTreeSet<i64>, crate::storage::StorageError> {
    let Some(oldest) = notices.iter().map(|notice| notice.published_at).min() else {
        return Ok(BTreeSet::new());
    };
    let since = oldest.checked_sub(LATE_PUBLICATION).unwrap_or(oldest);
    Ok(state
        .storage
        .maintenance_windows(since)
        .await?
        .into_iter()
        .map(|window| window.incident_id)
        .collect())
}

/// A maintenance notice's entry title: the channel's title when it says maintenance
/// already, else prefixed so that it does.
fn maintenance_title(title: &str) -> String {
    if title.to_lowercase().contains("underhåll") {
        title.to_owned()
    } else {
        format!("Planerat underhåll: {title}")
    }
}

/// The Atom 1.0 feed (RFC 4287), written by hand: one fixed shape, every value through
/// [`escape_markup`]. Its bytes depend only on the notices, so the ETag is stable.
fn atom_feed(context: &AtomContext<'_>) -> String {
    use std::fmt::Write as _;
    let self_url = format!("{}/public/feed.atom", context.public_url);
    let updated = context
        .notices
        .iter()
        .map(|notice| notice.published_at)
        .max()
        .unwrap_or(Timestamp::UNIX_EPOCH);
    let host = url::Url::parse(context.public_url)
        .ok()
        .and_then(|url| url.host_str().map(str::to_owned))
        .unwrap_or_else(|| "samsa-relay.invalid".to_owned());
    let mut xml = String::new();
    xml.push_str("<?xml version=\"1.0\" encoding=\"utf-8\"?>\n");
    xml.push_str("<feed xmlns=\"http://www.w3.org/2005/Atom\" xml:lang=\"sv\">\n");
    let _ = writeln!(xml, "  <id>{}</id>", escape_markup(&self_url));
    let _ = writeln!(
        xml,
        "  <title type=\"text\">Driftinformation {}</title>",
        escape_markup(context.service_name)
    );
    let _ = writeln!(
        xml,
        "  <subtitle type=\"text\">Driftstörningar och planerat underhåll i {}</subtitle>",
        escape_markup(context.service_name)
    );
    let _ = writeln!(xml, "  <updated>{}</updated>", atom_time(updated));
    let _ = writeln!(
        xml,
        "  <link rel=\"self\" type=\"application/atom+xml\" href=\"{}\"/>",
        escape_markup(&self_url)
    );
    let _ = writeln!(
        xml,
        "  <author><name>{} förvaltning</name><email>{}</email></author>",
        escape_markup(context.service_name),
        escape_markup(context.info_address)
    );
    for notice in context.notices {
        let content = feed_content(notice, context.feed_channels);
        let (title, body) = channel_text(&notice.rendered, content);
        let maintenance = context.maintenance_ids.contains(&notice.incident_id);
        let title = if maintenance {
            maintenance_title(title)
        } else {
            title.to_owned()
        };
        let (link_url, link_title) = if maintenance {
            (
                format!(
                    "{}/public/maintenance/{}",
                    context.public_url, notice.incident_id
                ),
                "Om underhållet",
            )
        } else {
            (
                format!(
                    "{}/public/feedback/{}",
                    context.public_url, notice.incident_id
                ),
                "Lämna återkoppling",
            )
        };
        // A tag URI (RFC 4151): the relay's host, the day of publication and the notice
        // id never change for a notice.
        let entry_id = format!(
            "tag:{},{}:samsa-relay/notice/{}",
            host,
            notice.published_at.strftime("%Y-%m-%d"),
            notice.notice_id
        );
        let published = atom_time(notice.published_at);
        xml.push_str("  <entry>\n");
        let _ = writeln!(xml, "    <id>{}</id>", escape_markup(&entry_id));
        let _ = writeln!(
            xml,
            "    <title type=\"text\">{}</title>",
            escape_markup(&title)
        );
        let _ = writeln!(xml, "    <updated>{published}</updated>");
        let _ = writeln!(xml, "    <published>{published}</published>");
        let _ = writeln!(
            xml,
            "    <link rel=\"alternate\" type=\"text/html\" title=\"{link_title}\" href=\"{}\"/>",
            escape_markup(&link_url)
        );
        let _ = writeln!(
            xml,
            "    <category term=\"{}\" label=\"{}\"/>",
            notice.kind.as_str(),
            escape_markup(crate::notice::kind_label(notice.kind))
        );
        if maintenance {
            xml.push_str(
                "    <category term=\"planerat-underhall\" label=\"Planerat underhåll\"/>\n",
            );
        }
        let _ = writeln!(
            xml,
            "    <summary type=\"text\">{}</summary>",
            escape_markup(&notice.rendered.banner_text)
        );
        let _ = writeln!(
            xml,
            "    <content type=\"text\">{}</content>",
            escape_markup(body)
        );
        xml.push_str("  </entry>\n");
    }
    xml.push_str("</feed>\n");
    xml
}

/// Which text of a notice its feed entry carries: that of the feed channels it was
/// published on, preferring the website's news over the newsletter's and IT-Nytt's.
fn feed_content(
    notice: &PublishedNoticeRecord,
    feed_channels: &[&ChannelConfig],
) -> ChannelContent {
    const PREFERENCE: [ChannelContent; 6] = [
        ChannelContent::Website,
        ChannelContent::Newsletter,
        ChannelContent::Itnytt,
        ChannelContent::Email,
        ChannelContent::Banner,
        ChannelContent::Crisis,
    ];
    let published_on: Vec<ChannelContent> = feed_channels
        .iter()
        .filter(|channel| notice.channels.contains(&channel.name))
        .map(|channel| channel.content)
        .collect();
    PREFERENCE
        .into_iter()
        .find(|content| published_on.contains(content))
        .unwrap_or(ChannelContent::Website)
}

/// RFC 3339 in UTC, to the second (Atom's date construct).
fn atom_time(timestamp: Timestamp) -> String {
    timestamp.strftime("%Y-%m-%dT%H:%M:%SZ").to_string()
}
