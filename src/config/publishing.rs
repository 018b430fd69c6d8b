//! The publishing part of the config: SMTP details, the channels, and the plan's matrix
//! (which channels each level uses). Checked like the rest: every problem with its path.

use std::collections::BTreeMap;
use std::path::Path;
use std::time::Duration;

use serde::Deserialize;

use super::{Problems, Secret, parse_duration, parse_http_url, resolve_secret};
use crate::notice::webhook_body::WebhookSigningKey;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StartTls {
    /// Use STARTTLS when the server offers it.
    Opportunistic,
    /// Refuse to send without STARTTLS.
    Required,
    /// Never: plain SMTP, for a server on the same host.
    Never,
}

/// The SMTP settings beyond the URL, checked.
#[derive(Debug, Clone)]
pub struct SmtpDetails {
    pub from: lettre::message::Mailbox,
    pub reply_to: lettre::message::Mailbox,
    pub credentials: Option<(String, Secret)>,
    pub starttls: StartTls,
    pub timeout: Duration,
    pub pool_max_connections: u32,
    /// `smtp.ca_file`'s certificates (PEM, at least one), trusted besides the public roots.
    pub ca_certificates_pem: Option<Vec<u8>>,
}

/// One channel as written under `[channels.NAME]`.
#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub struct RawChannel {
    /// The channel's name as operators read it, in Swedish (default: by its `content`,
    /// e.g. "Inloggningssidan" for a banner).
    pub label: Option<String>,
    /// Which text of the notice this channel carries: `banner`, `email`, `website`,
    /// `newsletter`, `itnytt` or `crisis`.
    pub content: String,
    /// How it is delivered: `banner` (served by the relay at /public/banner.*), `feed`
    /// (the relay's Atom feed at /public/feed.atom), `email`, `webhook`, or `subscribers`
    /// (an email to each confirmed subscriber the notice concerns).
    pub transport: String,
    /// email: the recipients.
    pub recipients: Vec<String>,
    /// email: a file of recipients: one address per line, or a CSV export of the contact
    /// list with a column named `email`, `e-post` or `epost`.
    pub recipients_file: Option<String>,
    /// webhook: where to POST; banner: an optional URL to POST the banner to as well.
    pub url: Option<String>,
    /// webhook: a bearer token sent as `Authorization: Bearer`.
    pub bearer_token: Option<String>,
    /// webhook: file holding the bearer token.
    pub bearer_token_file: Option<String>,
    /// webhook: extra request headers.
    pub headers: BTreeMap<String, String>,
    /// webhook, and banner with `url`: the Standard Webhooks secret (`whsec_` + base64 of
    /// 24 to 64 random bytes) that signs every request (`webhook-signature`).
    pub signing_secret: Option<String>,
    /// webhook, and banner with `url`: file holding the signing secret.
    pub signing_secret_file: Option<String>,
    /// webhook, and banner with `url`: allow an `http://` URL on a host that is not
    /// loopback (without it, such a URL must be `https://`).
    pub allow_http: bool,
    /// webhook: a minijinja template for the JSON body (default: the relay's own shape).
    pub body_template: Option<String>,
    /// webhook: longest time one request may take, e.g. `10s`.
    pub timeout: Option<String>,
    /// banner: origins allowed to fetch the banner from a browser (CORS), e.g. the login
    /// page's `https://samsa.example.org`.
    pub allowed_origins: Vec<String>,
    /// Most messages sent in any 60-second window (email and webhook).
    pub rate_limit_per_minute: Option<u32>,
    /// Sends in flight at once.
    pub concurrency: Option<usize>,
    /// Takes part in drills: an exercise ("ÖVNING") goes only to channels marked so.
    pub drill: bool,
}

#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize, serde::Deserialize,
)]
#[serde(rename_all = "lowercase")]
pub enum ChannelContent {
    Banner,
    Email,
    Website,
    Newsletter,
    Itnytt,
    Crisis,
}

impl ChannelContent {
    /// The Swedish name operators read for a channel of this content when its config gives
    /// no `label`.
    pub fn default_label(self) -> &'static str {
        match self {
            ChannelContent::Banner => "Inloggningssidan",
            ChannelContent::Email => "E-post till support- och IT-organisationer",
            ChannelContent::Website => "Nyhet på webbplatsen",
            ChannelContent::Newsletter => "Nyhetsbrev till prenumeranter",
            ChannelContent::Itnytt => "IT-Nytt",
            ChannelContent::Crisis => "Ordförande och vice ordförande i Ledningsrådet",
        }
    }

    pub fn parse(text: &str) -> Option<ChannelContent> {
        Some(match text {
            "banner" => ChannelContent::Banner,
            "email" => ChannelContent::Email,
            "website" => ChannelContent::Website,
            "newsletter" => ChannelContent::Newsletter,
            "itnytt" => ChannelContent::Itnytt,
            "crisis" => ChannelContent::Crisis,
            _ => return None,
        })
    }

    pub fn as_str(self) -> &'static str {
        match self {
            ChannelContent::Banner => "banner",
            ChannelContent::Email => "email",
            ChannelContent::Website => "website",
            ChannelContent::Newsletter => "newsletter",
            ChannelContent::Itnytt => "itnytt",
            ChannelContent::Crisis => "crisis",
        }
    }
}

#[derive(Debug, Clone)]
pub enum ChannelTransport {
    Banner {
        push_url: Option<url::Url>,
        allowed_origins: Vec<String>,
    },
    Feed,
    Email {
        recipients: Vec<String>,
    },
    Webhook {
        url: url::Url,
        bearer_token: Option<Secret>,
        headers: Vec<(String, Secret)>,
        body_template: Option<String>,
        timeout: Duration,
    },
    /// One email to each confirmed subscriber whose choices the notice meets, found when
    /// it is published (`crate::subscription::targets`).
    Subscribers,
}

impl ChannelTransport {
    pub fn kind(&self) -> &'static str {
        match self {
            ChannelTransport::Banner { .. } => "banner",
            ChannelTransport::Feed => "feed",
            ChannelTransport::Email { .. } => "email",
            ChannelTransport::Webhook { .. } => "webhook",
            ChannelTransport::Subscribers => "subscribers",
        }
    }

    /// The outbox recipients for one publication on this channel; none for subscribers,
    /// whom publishing finds from the incident's scope.
    pub fn recipients(&self) -> Vec<String> {
        match self {
            ChannelTransport::Banner { push_url, .. } => {
                let mut recipients = vec!["login-page".to_owned()];
                if let Some(url) = push_url {
                    recipients.push(url.to_string());
                }
                recipients
            }
            ChannelTransport::Feed => vec!["feed".to_owned()],
            ChannelTransport::Email { recipients } => recipients.clone(),
            ChannelTransport::Webhook { url, .. } => vec![url.to_string()],
            ChannelTransport::Subscribers => Vec::new(),
        }
    }
}

#[derive(Debug, Clone)]
pub struct ChannelConfig {
    pub name: String,
    /// Shown to people instead of `name` (`channels.NAME.label`, or a Swedish default by
    /// `content`).
    pub label: String,
    pub content: ChannelContent,
    pub transport: ChannelTransport,
    pub rate_limit_per_minute: Option<u32>,
    pub concurrency: usize,
    pub drill: bool,
    /// Signs each request (webhook, or a banner's push); `None`: unsigned.
    pub signing_key: Option<WebhookSigningKey>,
}

/// `[plan]`: the channels each level uses (the seed's activity plan by default).
#[derive(Debug, Deserialize)]
#[serde(default)]
pub struct RawPlan {
    /// Level 1, outage in the IT service.
    pub level_1: Vec<String>,
    /// Level 2, backup routine in parts of the organisations.
    pub level_2: Vec<String>,
    /// Level 3, backup routine in all organisations; crisis communication.
    pub level_3: Vec<String>,
}

const PUBLIC_CHANNELS: [&str; 5] = ["banner", "email", "website", "newsletter", "itnytt"];

impl Default for RawPlan {
    fn default() -> RawPlan {
        let public: Vec<String> = PUBLIC_CHANNELS
            .iter()
            .map(|name| (*name).to_owned())
            .collect();
        let mut level_3 = public.clone();
        level_3.push("crisis".to_owned());
        RawPlan {
            level_1: public.clone(),
            level_2: public,
            level_3,
        }
    }
}

#[derive(Debug, Clone)]
pub struct PlanConfig {
    /// Channel names per level 1, 2, 3 (index 0, 1, 2).
    pub levels: [Vec<String>; 3],
}

impl PlanConfig {
    pub fn channels_for(&self, level: u8) -> &[String] {
        match level {
            1..=3 => &self.levels[usize::from(level) - 1],
            _ => &[],
        }
    }
}

/// The channels of the shipped default: everything local (banner and feed served by the
/// relay; the newsletter to the subscribers through the configured SMTP URL, a file
/// folder by default).
pub fn default_channels() -> BTreeMap<String, RawChannel> {
    let mut channels = BTreeMap::new();
    channels.insert(
        "banner".to_owned(),
        RawChannel {
            content: "banner".to_owned(),
            transport: "banner".to_owned(),
            ..RawChannel::default()
        },
    );
    channels.insert(
        "website".to_owned(),
        RawChannel {
            content: "website".to_owned(),
            transport: "feed".to_owned(),
            ..RawChannel::default()
        },
    );
    channels.insert(
        "newsletter".to_owned(),
        RawChannel {
            content: "newsletter".to_owned(),
            transport: "subscribers".to_owned(),
            ..RawChannel::default()
        },
    );
    channels
}

pub(super) fn check_smtp_details(
    problems: &mut Problems,
    raw: super::RawSmtp,
    info_address: Option<&str>,
) -> Option<SmtpDetails> {
    let mut ok = true;
    let from = problems.check("smtp.from", parse_mailbox(&raw.from));
    let reply_to = raw
        .reply_to
        .clone()
        .or_else(|| info_address.map(str::to_owned))
        .unwrap_or_default();
    let reply_to = problems.check("smtp.reply_to", parse_mailbox(&reply_to));
    let password = problems
        .check(
            "smtp.password",
            resolve_secret(raw.password.as_deref(), raw.password_file.as_deref()),
        )
        .flatten();
    let credentials = match (raw.username, password) {
        (Some(username), Some(password)) => Some((username, password)),
        (None, None) => None,
        (Some(_), None) => {
            problems.push("smtp.password", "username is set but no password is");
            ok = false;
            None
        }
        (None, Some(_)) => {
            problems.push("smtp.username", "a password is set but no username is");
            ok = false;
            None
        }
    };
    let starttls = match raw.starttls.as_str() {
        "starttls" => Some(StartTls::Opportunistic),
        "required" => Some(StartTls::Required),
        "none" => Some(StartTls::Never),
        _ => {
            problems.push("smtp.starttls", "expected starttls, required or none");
            None
        }
    };
    let timeout = problems.check("smtp.timeout", parse_positive_duration(&raw.timeout));
    if raw.pool_max_connections == 0 {
        problems.push("smtp.pool_max_connections", "must be at least 1");
        ok = false;
    }
    let ca_certificates_pem = match raw.ca_file.as_deref().map(read_ca_certificates) {
        None => None,
        Some(Ok(pem)) => Some(pem),
        Some(Err(problem)) => {
            problems.push("smtp.ca_file", problem);
            ok = false;
            None
        }
    };
    if !ok {
        return None;
    }
    Some(SmtpDetails {
        from: from?,
        reply_to: reply_to?,
        credentials,
        starttls: starttls?,
        timeout: timeout?,
        pool_max_connections: raw.pool_max_connections,
        ca_certificates_pem,
    })
}

/// Reads a PEM file that must hold at least one certificate and nothing malformed.
pub(super) fn read_ca_certificates(path: &str) -> Result<Vec<u8>, String> {
    use rustls::pki_types::CertificateDer;
    use rustls::pki_types::pem::PemObject as _;
    let pem = std::fs::read(path).map_err(|error| format!("cannot read {path}: {error}"))?;
    let certificates = CertificateDer::pem_slice_iter(&pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|error| format!("{path}: not PEM certificates: {error}"))?;
    if certificates.is_empty() {
        return Err(format!(
            "{path}: no PEM certificate (BEGIN CERTIFICATE) in it"
        ));
    }
    Ok(pem)
}

pub(super) fn check_channels(
    problems: &mut Problems,
    raw: BTreeMap<String, RawChannel>,
) -> BTreeMap<String, ChannelConfig> {
    let mut channels = BTreeMap::new();
    for (name, raw_channel) in raw {
        let path = format!("channels.{name}");
        if !crate::inventory::is_valid_id(&name) {
            problems.push(&path, "channel names use a-z, 0-9 and '-'");
            continue;
        }
        if let Some(channel) = check_channel(problems, &path, &name, raw_channel) {
            channels.insert(name, channel);
        }
    }
    channels
}

fn check_channel(
    problems: &mut Problems,
    path: &str,
    name: &str,
    raw: RawChannel,
) -> Option<ChannelConfig> {
    let at = |key: &str| format!("{path}.{key}");
    let content = ChannelContent::parse(&raw.content);
    if content.is_none() {
        problems.push(
            &at("content"),
            "expected banner, email, website, newsletter, itnytt or crisis",
        );
    }
    let not_for = |problems: &mut Problems, key: &str, set: bool, transport: &str| {
        if set {
            problems.push(
                &at(key),
                format!("does not apply to transport {transport:?}"),
            );
        }
    };
    let transport_name = raw.transport.as_str();
    let has_email_keys = !raw.recipients.is_empty() || raw.recipients_file.is_some();
    let has_webhook_keys = raw.bearer_token.is_some()
        || raw.bearer_token_file.is_some()
        || !raw.headers.is_empty()
        || raw.body_template.is_some()
        || raw.timeout.is_some();
    let transport = match transport_name {
        "banner" => {
            not_for(problems, "recipients", has_email_keys, transport_name);
            not_for(problems, "bearer_token", has_webhook_keys, transport_name);
            let push_url = match raw.url.as_deref() {
                Some(text) => {
                    Some(problems.check(&at("url"), parse_outgoing_url(text, raw.allow_http))?)
                }
                None => None,
            };
            for (index, origin) in raw.allowed_origins.iter().enumerate() {
                let valid = parse_http_url(origin)
                    .is_ok_and(|url| url.path() == "/" && !origin.ends_with('/'));
                if !valid {
                    problems.push(
                        &format!("{path}.allowed_origins[{index}]"),
                        "expected an origin such as https://samsa.example.org (no path)",
                    );
                }
            }
            Some(ChannelTransport::Banner {
                push_url,
                allowed_origins: raw.allowed_origins.clone(),
            })
        }
        "subscribers" => {
            not_for(problems, "recipients", has_email_keys, transport_name);
            not_for(problems, "url", raw.url.is_some(), transport_name);
            not_for(problems, "bearer_token", has_webhook_keys, transport_name);
            Some(ChannelTransport::Subscribers)
        }
        "feed" => {
            not_for(problems, "recipients", has_email_keys, transport_name);
            not_for(problems, "url", raw.url.is_some(), transport_name);
            not_for(problems, "bearer_token", has_webhook_keys, transport_name);
            Some(ChannelTransport::Feed)
        }
        "email" => {
            not_for(problems, "url", raw.url.is_some(), transport_name);
            not_for(problems, "bearer_token", has_webhook_keys, transport_name);
            let mut recipients = Vec::new();
            for (index, address) in raw.recipients.iter().enumerate() {
                match parse_address(address) {
                    Ok(address) => recipients.push(address),
                    Err(message) => problems.push(&format!("{path}.recipients[{index}]"), message),
                }
            }
            if let Some(file) = &raw.recipients_file {
                match read_recipients_file(Path::new(file)) {
                    Ok(lines) => {
                        for (line_number, address) in lines {
                            match parse_address(&address) {
                                Ok(address) => recipients.push(address),
                                Err(message) => problems.push(
                                    &at("recipients_file"),
                                    format!("{file} line {line_number}: {message}"),
                                ),
                            }
                        }
                    }
                    Err(message) => problems.push(&at("recipients_file"), message),
                }
            }
            recipients.sort();
            recipients.dedup();
            if recipients.is_empty() {
                problems.push(
                    &at("recipients"),
                    "an email channel needs at least one recipient",
                );
            }
            Some(ChannelTransport::Email { recipients })
        }
        "webhook" => {
            not_for(problems, "recipients", has_email_keys, transport_name);
            let url = match raw.url.as_deref() {
                Some(text) => problems.check(&at("url"), parse_outgoing_url(text, raw.allow_http)),
                None => {
                    problems.push(&at("url"), "a webhook channel needs a url");
                    None
                }
            };
            let bearer_token = problems
                .check(
                    &at("bearer_token"),
                    resolve_secret(
                        raw.bearer_token.as_deref(),
                        raw.bearer_token_file.as_deref(),
                    ),
                )
                .flatten();
            let mut headers = Vec::new();
            for (header, value) in &raw.headers {
                let valid_name = axum::http::HeaderName::from_bytes(header.as_bytes()).is_ok();
                let valid_value = axum::http::HeaderValue::from_str(value).is_ok();
                if !valid_name || !valid_value {
                    problems.push(
                        &format!("{path}.headers.{header}"),
                        "not a valid HTTP header",
                    );
                } else {
                    headers.push((header.clone(), Secret::new(value.clone())));
                }
            }
            let timeout = problems.check(
                &at("timeout"),
                parse_positive_duration(raw.timeout.as_deref().unwrap_or("10s")),
            );
            Some(ChannelTransport::Webhook {
                url: url?,
                bearer_token,
                headers,
                body_template: match &raw.body_template {
                    Some(template) => {
                        match crate::notice::webhook_body::check_body_template(template) {
                            Ok(()) => Some(template.clone()),
                            Err(message) => {
                                problems.push(&at("body_template"), message);
                                None
                            }
                        }
                    }
                    None => None,
                },
                timeout: timeout?,
            })
        }
        _ => {
            problems.push(
                &at("transport"),
                "expected banner, feed, email, webhook or subscribers",
            );
            None
        }
    };
    // Signing and plain HTTP concern what the relay POSTs: a webhook, or a banner's push.
    let posts = transport_name == "webhook" || (transport_name == "banner" && raw.url.is_some());
    let has_signing_secret = raw.signing_secret.is_some() || raw.signing_secret_file.is_some();
    if !posts && (has_signing_secret || raw.allow_http) {
        let key = if has_signing_secret {
            "signing_secret"
        } else {
            "allow_http"
        };
        problems.push(
            &at(key),
            "applies only to what the relay POSTs: a webhook channel, or a banner with url",
        );
    }
    let signing_key = if posts {
        problems
            .check(
                &at("signing_secret"),
                resolve_secret(
                    raw.signing_secret.as_deref(),
                    raw.signing_secret_file.as_deref(),
                )
                .and_then(|secret| {
                    secret
                        .map(|secret| WebhookSigningKey::parse(secret.expose()))
                        .transpose()
                }),
            )
            .flatten()
    } else {
        None
    };
    if raw.rate_limit_per_minute == Some(0) {
        problems.push(
            &at("rate_limit_per_minute"),
            "must be at least 1 (leave it out for no limit)",
        );
    }
    if raw.concurrency == Some(0) {
        problems.push(&at("concurrency"), "must be at least 1");
    }
    let content = content?;
    let label = match raw.label.as_deref().map(str::trim) {
        Some(label) if !label.is_empty() => label.to_owned(),
        _ => content.default_label().to_owned(),
    };
    Some(ChannelConfig {
        name: name.to_owned(),
        label,
        content,
        transport: transport?,
        rate_limit_per_minute: raw.rate_limit_per_minute.filter(|limit| *limit > 0),
        // A subscribers channel fans one notice out to thousands: larger steps share
        // the claim and record transactions among more sends.
        concurrency: raw.concurrency.filter(|value| *value > 0).unwrap_or(
            if transport_name == "subscribers" {
                32
            } else {
                8
            },
        ),
        drill: raw.drill,
        signing_key,
    })
}

pub(super) fn check_plan(
    problems: &mut Problems,
    raw: RawPlan,
    channels: &BTreeMap<String, ChannelConfig>,
) -> Option<PlanConfig> {
    let mut ok = true;
    for (level, names) in [(1, &raw.level_1), (2, &raw.level_2), (3, &raw.level_3)] {
        let path = format!("plan.level_{level}");
        if names.is_empty() {
            problems.push(&path, "a level needs at least one channel");
            ok = false;
        }
        for name in names {
            match channels.get(name) {
                None => {
                    problems.push(
                        &path,
                        format!("unknown channel {name:?}; define it under [channels.{name}]"),
                    );
                    ok = false;
                }
                Some(channel) if channel.content == ChannelContent::Crisis && level < 3 => {
                    problems.push(
                        &path,
                        format!("{name:?} carries the crisis notice, which belongs to level 3"),
                    );
                    ok = false;
                }
                Some(_) => {}
            }
        }
    }
    ok.then_some(PlanConfig {
        levels: [raw.level_1, raw.level_2, raw.level_3],
    })
}

/// A URL the relay POSTs notices to: `https://`, or `http://` on a loopback host
/// (`127.0.0.0/8`, `::1`, `localhost`) or with `allow_http`.
fn parse_outgoing_url(text: &str, allow_http: bool) -> Result<url::Url, String> {
    let url = parse_http_url(text)?;
    let loopback = match url.host() {
        Some(url::Host::Ipv4(address)) => address.is_loopback(),
        Some(url::Host::Ipv6(address)) => address.is_loopback(),
        Some(url::Host::Domain(name)) => name.eq_ignore_ascii_case("localhost"),
        None => false,
    };
    if url.scheme() == "http" && !loopback && !allow_http {
        return Err(
            "http:// sends the notice and any token unencrypted; use https://, or set allow_http = true for a receiver on a trusted network"
                .to_owned(),
        );
    }
    Ok(url)
}

fn parse_positive_duration(text: &str) -> Result<Duration, String> {
    let duration = parse_duration(text)?;
    if duration.is_zero() {
        return Err("must be more than zero".to_owned());
    }
    Ok(duration)
}

/// A bare address, as the outbox stores it.
pub fn parse_address(text: &str) -> Result<String, String> {
    let trimmed = text.trim();
    trimmed
        .parse::<lettre::Address>()
        .map(|address| address.to_string())
        .map_err(|error| format!("{trimmed:?} is not an email address ({error})"))
}

/// A mailbox with an optional display name, e.g. `SAMSA förvaltning <info@example.org>`.
pub fn parse_mailbox(text: &str) -> Result<lettre::message::Mailbox, String> {
    text.trim()
        .parse::<lettre::message::Mailbox>()
        .map_err(|error| format!("{text:?} is not an email address ({error})"))
}

/// Reads a recipients file: either one address per line (blank lines and `#` comments
/// skipped), or a CSV export whose header has an `email`, `e-post` or `epost` column.
/// Returns (line number, address) pairs.
pub fn read_recipients_file(path: &Path) -> Result<Vec<(usize, String)>, String> {
    let text = std::fs::read_to_string(path)
        .map_err(|error| format!("cannot read {}: {error}", path.display()))?;
    let text = text.trim_start_matches('\u{feff}');
    let mut lines = text
        .lines()
        .enumerate()
        .map(|(index, line)| (index + 1, line));
    let Some((_, first)) = lines
        .clone()
        .find(|(_, line)| !line.trim().is_empty() && !line.starts_with('#'))
    else {
        return Ok(Vec::new());
    };
    let separator = [',', ';', '\t']
        .into_iter()
        .find(|separator| first.contains(*separator));
    let header_column = separator.and_then(|separator| {
        first.split(separator).position(|cell| {
            let cell = cell.trim().trim_matches('"').to_lowercase();
            matches!(
                cell.as_str(),
                "email" | "e-post" | "epost" | "e-mail" | "mail"
            )
        })
    });
    let mut addresses = Vec::new();
    match (separator, header_column) {
        (Some(separator), Some(column)) => {
            // Skip up to and including the header line.
            let mut past_header = false;
            for (line_number, line) in lines {
                if !past_header {
                    past_header = line == first;
                    continue;
                }
                if line.trim().is_empty() {
                    continue;
                }
                let cell = line
                    .split(separator)
                    .nth(column)
                    .unwrap_or("")
                    .trim()
                    .trim_matches('"');
                addresses.push((line_number, cell.to_owned()));
            }
        }
        (Some(_), None) => {
            return Err(format!(
                "{}: a CSV file needs a header with an email, e-post or epost column",
                path.display()
            ));
        }
        (None, _) => {
            for (line_number, line) in lines.by_ref() {
                let line = line.trim();
                if line.is_empty() || line.starts_with('#') {
                    continue;
                }
                addresses.push((line_number, line.to_owned()));
            }
        }
    }
    Ok(addresses)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn recipients_files_take_lines_or_a_csv_export() {
        let folder = tempfile::tempdir().unwrap();
        let plain = folder.path().join("plain.txt");
        std::fs::write(
            &plain,
            "# support\nit@kommun-a.example\n\nsupport@kommun-b.example\n",
        )
        .unwrap();
        let addresses: Vec<String> = read_recipients_file(&plain)
            .unwrap()
            .into_iter()
            .map(|(_, a)| a)
            .collect();
        assert_eq!(
            addresses,
            vec!["it@kommun-a.example", "support@kommun-b.example"]
        );

        let csv = folder.path().join("contacts.csv");
        std::fs::write(
            &csv,
            "\u{feff}Organisation;Roll;E-post\nBorås;IT-support;\"it@boras.example\"\nMark;Support;support@mark.example\n",
        )
        .unwrap();
        let addresses = read_recipients_file(&csv).unwrap();
        assert_eq!(
            addresses,
            vec![
                (2, "it@boras.example".to_owned()),
                (3, "support@mark.example".to_owned())
            ]
        );

        let no_column = folder.path().join("bad.csv");
        std::fs::write(&no_column, "name,phone\nA,123\n").unwrap();
        assert!(read_recipients_file(&no_column).is_err());
    }

    #[test]
    fn outgoing_urls_are_https_unless_loopback_or_allowed() {
        for url in [
            "https://cms.example.org/hook",
            "http://127.0.0.1:8080/hook",
            "http://127.1.2.3/hook",
            "http://[::1]:8080/hook",
            "http://localhost:8080/hook",
        ] {
            assert!(parse_outgoing_url(url, false).is_ok(), "{url}");
        }
        for url in [
            "http://cms.example.org/hook",
            "http://10.0.0.5/hook",
            "http://localhost.example.org/hook",
        ] {
            let problem = parse_outgoing_url(url, false).unwrap_err();
            assert!(problem.contains("https://"), "{url}: {problem}");
            assert!(parse_outgoing_url(url, true).is_ok(), "{url} allowed");
        }
    }

    #[test]
    fn addresses_are_validated() {
        assert_eq!(
            parse_address(" it@kommun.example ").unwrap(),
            "it@kommun.example"
        );
        assert!(parse_address("not an address").is_err());
        assert!(parse_address("a@b.example\r\nBcc: x@y.example").is_err());
        assert!(parse_mailbox("SAMSA förvaltning <info@example.org>").is_ok());
    }
}
