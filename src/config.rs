//! The one typed configuration: the TOML file, environment overrides, secrets read from
//! files, and complete validation before anything binds a port.
//!
//! Loading happens in two steps. [`RawConfig`] is the wire type: it mirrors the TOML file
//! (every field documented here is a key there). [`Config::from_raw`] turns it into the
//! domain [`Config`], collecting every problem with its key path instead of stopping at the
//! first, so that `check-config` can list them all. Unknown keys are collected the same way
//! (with `serde_ignored`) rather than failing on the first one.

use std::collections::BTreeMap;
use std::fmt;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use serde::Deserialize;

pub use crate::classify::IncidentsConfig;
use crate::inventory::Inventory;
pub use crate::maintenance::MaintenanceConfig;
pub use crate::notice::NoticesConfig;
pub use crate::secret::Secret;
pub use crate::subscription::SubscriptionsConfig;

mod cluster;
mod maintenance;
mod operators;
mod publishing;

pub use cluster::{ClusterConfig, RawCluster};
pub use operators::{Operator, RawOperator, RawReview, ReviewConfig};

pub use publishing::{
    ChannelConfig, ChannelContent, ChannelTransport, PlanConfig, RawChannel, RawPlan, SmtpDetails,
    StartTls, parse_address, parse_mailbox, read_recipients_file,
};

/// Environment variables that override the file, as (variable, key path).
pub const ENV_OVERRIDES: &[(&str, &str)] = &[
    ("SAMSA_RELAY_LISTEN", "server.listen"),
    ("SAMSA_RELAY_PUBLIC_URL", "server.public_url"),
    ("SAMSA_RELAY_DATABASE_URL", "database.url"),
    ("SAMSA_RELAY_WEBHOOK_TOKEN", "webhook.token"),
    ("SAMSA_RELAY_SMTP_URL", "smtp.url"),
    ("SAMSA_RELAY_LINK_SECRET", "links.secret"),
];

/// The webhook token and link secret shipped in `deploy/samsa-relay.toml`. They let the
/// relay run on loopback with no setup; the relay refuses them when it listens anywhere else
/// or its `server.public_url` is not a loopback URL.
pub const SHIPPED_EXAMPLE_SECRETS: &[&str] = &[
    "example-webhook-token-change-me",
    "example-link-secret-change-me-0123456789",
];

/// The validated configuration the relay runs on.
#[derive(Debug, Clone)]
pub struct Config {
    pub server: ServerConfig,
    pub database: DatabaseConfig,
    pub webhook: WebhookConfig,
    pub smtp: SmtpConfig,
    pub links: LinksConfig,
    pub logging: LoggingConfig,
    /// The organisations and sub-regions (shared: every incident reads it).
    pub inventory: Arc<Inventory>,
    pub incidents: IncidentsConfig,
    pub notices: NoticesConfig,
    /// The channels by name.
    pub channels: BTreeMap<String, ChannelConfig>,
    pub plan: PlanConfig,
    pub review: ReviewConfig,
    pub subscriptions: SubscriptionsConfig,
    pub banner: BannerConfig,
    pub cluster: ClusterConfig,
    pub maintenance: MaintenanceConfig,
}

/// `[banner]`: what the login-page banner shows beyond a notice's own text.
#[derive(Debug, Clone)]
pub struct BannerConfig {
    /// How long the all-clear of a published resolution stays on the banner.
    pub all_clear_for: Duration,
    /// Drills reach the live banner too (otherwise only `?ovning=1` shows them).
    pub show_drills: bool,
}

#[derive(Debug, Clone)]
pub struct ServerConfig {
    pub listen: SocketAddr,
    pub public_url: url::Url,
    pub max_body_bytes: usize,
    pub shutdown_grace: Duration,
    pub max_connections: usize,
    /// Connections one client may hold open (trusted proxies: no cap of their own).
    pub max_connections_per_client: usize,
    pub header_read_timeout: Duration,
    pub request_timeout: Duration,
    /// Longest time writing one response may take.
    pub write_timeout: Duration,
    /// Where `/metrics` is served instead of `listen`, when set.
    pub metrics_listen: Option<SocketAddr>,
    /// (certificate chain, private key) PEM files when the relay serves HTTPS.
    pub tls: Option<(PathBuf, PathBuf)>,
    /// Reverse proxies whose `X-Forwarded-For` names the client (for per-client limits).
    pub trusted_proxies: Vec<ipnet::IpNet>,
}

#[derive(Debug, Clone)]
pub struct DatabaseConfig {
    pub url: DatabaseUrl,
    pub busy_timeout: Duration,
    pub min_free_bytes: u64,
    /// The most connections the pool opens (PostgreSQL; SQLite has one writer and four
    /// readers).
    pub max_connections: u32,
}

impl DatabaseConfig {
    /// An SQLite file with the defaults (tests, benches and tools).
    pub fn sqlite(path: impl Into<PathBuf>) -> DatabaseConfig {
        DatabaseConfig {
            url: DatabaseUrl::Sqlite { path: path.into() },
            busy_timeout: Duration::from_secs(5),
            min_free_bytes: 0,
            max_connections: 16,
        }
    }
}

/// Which database, and how to reach it. Its `Debug` shows no password.
#[derive(Clone, PartialEq, Eq)]
pub enum DatabaseUrl {
    /// `sqlite://PATH`: a file, created with its folder if missing.
    Sqlite { path: PathBuf },
    /// `postgres://USER@HOST:PORT/DATABASE?sslmode=…`: a PostgreSQL database, which must
    /// exist; the relay creates its tables.
    Postgres(PostgresUrl),
}

/// A PostgreSQL connection: the URL as configured (a password in it is a secret), the
/// password from `database.password_file`, and the CA certificates of `database.ca_file`.
#[derive(Clone, PartialEq, Eq)]
pub struct PostgresUrl {
    /// The whole URL, a password included if it had one.
    pub url: Secret,
    /// The URL without its password, for logs and messages.
    pub redacted: String,
    /// `database.password_file`'s password, used when the URL has none.
    pub password: Option<Secret>,
    /// `database.ca_file`'s certificates (PEM, at least one), trusted besides the public
    /// roots to verify the server (`sslmode=verify-full` or `verify-ca`).
    pub ca_certificates_pem: Option<Vec<u8>>,
}

impl DatabaseUrl {
    /// A `database.url` on its own: no `password_file`, no `ca_file`. For tools and tests
    /// that open a database without a config file.
    pub fn parse(text: &str) -> Result<DatabaseUrl, String> {
        Ok(match parse_database_url(text)? {
            ParsedDatabaseUrl::Sqlite(path) => DatabaseUrl::Sqlite { path },
            ParsedDatabaseUrl::Postgres { url, redacted, .. } => {
                DatabaseUrl::Postgres(PostgresUrl {
                    url: Secret::new(url),
                    redacted,
                    password: None,
                    ca_certificates_pem: None,
                })
            }
        })
    }
}

impl fmt::Debug for DatabaseUrl {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DatabaseUrl::Sqlite { path } => formatter
                .debug_struct("Sqlite")
                .field("path", path)
                .finish(),
            DatabaseUrl::Postgres(url) => url.fmt(formatter),
        }
    }
}

impl fmt::Debug for PostgresUrl {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        formatter
            .debug_struct("Postgres")
            .field("url", &self.redacted)
            .field("password", &self.password)
            .field(
                "ca_certificates_pem",
                &self
                    .ca_certificates_pem
                    .as_ref()
                    .map(|pem| format!("{} bytes", pem.len())),
            )
            .finish()
    }
}

impl fmt::Display for DatabaseUrl {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DatabaseUrl::Sqlite { path } => write!(formatter, "sqlite://{}", path.display()),
            DatabaseUrl::Postgres(url) => formatter.write_str(&url.redacted),
        }
    }
}

#[derive(Debug, Clone)]
pub struct WebhookConfig {
    pub bearer_token: Option<Secret>,
    pub basic_auth: Option<BasicAuth>,
    /// Receipts waiting for the incident worker at which webhooks are refused (503).
    pub max_backlog: u64,
}

#[derive(Debug, Clone)]
pub struct BasicAuth {
    pub username: String,
    pub password: Secret,
}

#[derive(Debug, Clone)]
pub struct SmtpConfig {
    pub url: SmtpUrl,
    pub details: SmtpDetails,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SmtpUrl {
    /// `smtp://host:port`: plain or STARTTLS.
    Smtp { host: String, port: u16 },
    /// `smtps://host:port`: implicit TLS.
    Smtps { host: String, port: u16 },
    /// `file://FOLDER`: each message written as a file in FOLDER.
    File { folder: PathBuf },
}

#[derive(Debug, Clone)]
pub struct LinksConfig {
    pub secret: Secret,
}

#[derive(Debug, Clone)]
pub struct LoggingConfig {
    pub format: LogFormat,
    pub level: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    Pretty,
    Json,
}

/// One problem found in the configuration, with the key path it concerns.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigProblem {
    pub path: String,
    pub message: String,
}

impl fmt::Display for ConfigProblem {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(formatter, "{}: {}", self.path, self.message)
    }
}

/// Every problem found, one per line when displayed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigErrors(pub Vec<ConfigProblem>);

impl fmt::Display for ConfigErrors {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (index, problem) in self.0.iter().enumerate() {
            if index > 0 {
                writeln!(formatter)?;
            }
            write!(formatter, "{problem}")?;
        }
        Ok(())
    }
}

impl std::error::Error for ConfigErrors {}

/// The TOML file as written. Every key is documented here.
#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub struct RawConfig {
    pub server: RawServer,
    pub database: RawDatabase,
    pub webhook: RawWebhook,
    pub smtp: RawSmtp,
    pub links: RawLinks,
    pub logging: RawLogging,
    pub inventory: RawInventorySection,
    pub incidents: RawIncidents,
    pub notices: RawNotices,
    /// `[channels.NAME]`. Left out entirely: only the relay's own banner and feed.
    pub channels: Option<BTreeMap<String, publishing::RawChannel>>,
    /// `[plan]`: channel names per level. Left out: the communication plan's activity plan.
    pub plan: Option<publishing::RawPlan>,
    /// `[[operators]]`: the people who review and publish.
    pub operators: Vec<operators::RawOperator>,
    /// `[review]`: links, escalation, single sign-on.
    pub review: operators::RawReview,
    /// `[banner]`: the all-clear and drills on the login-page banner.
    pub banner: RawBanner,
    /// `[cluster]`: replica name and lease time, for several replicas over PostgreSQL.
    pub cluster: cluster::RawCluster,
    /// `[subscriptions]`: how long requests and ended subscriptions are kept, and when
    /// an address that keeps failing is suspended.
    pub subscriptions: RawSubscriptions,
    /// `[maintenance]`: reminders, the banner's lead, Alertmanager silences and the API
    /// for planned maintenance windows.
    pub maintenance: maintenance::RawMaintenance,
}

/// `[subscriptions]`: the subscribers of a `subscribers` channel.
#[derive(Debug, Deserialize)]
#[serde(default)]
pub struct RawSubscriptions {
    /// How long a confirmation link works, e.g. `48h`; a request not confirmed by then is
    /// deleted.
    pub confirm_ttl: String,
    /// How long an unsubscribed or suspended subscription is kept before it is deleted,
    /// e.g. `720h` (30 days).
    pub retention: String,
    /// Permanent delivery failures (SMTP 5xx) in a row after which a subscription is
    /// suspended.
    pub suspend_after_failures: u32,
}

impl Default for RawSubscriptions {
    fn default() -> RawSubscriptions {
        RawSubscriptions {
            confirm_ttl: "48h".to_owned(),
            retention: "720h".to_owned(),
            suspend_after_failures: 3,
        }
    }
}

#[derive(Debug, Deserialize)]
#[serde(default)]
pub struct RawBanner {
    /// How long the banner shows the all-clear after a resolution is published on a
    /// banner channel, e.g. `2h`; `0s` hides the banner at once.
    pub all_clear_for: String,
    /// Show drills on the live banner (`/public/banner.*` without `?ovning=1`) too. Off:
    /// a drill is seen only on a test login page that asks for it.
    pub show_drills: bool,
}

impl Default for RawBanner {
    fn default() -> RawBanner {
        RawBanner {
            all_clear_for: "2h".to_owned(),
            show_drills: false,
        }
    }
}

#[derive(Debug, Deserialize)]
#[serde(default)]
pub struct RawServer {
    /// Address and port to listen on, e.g. `127.0.0.1:9095`.
    pub listen: String,
    /// The URL people and Alertmanager reach the relay at; links in emails start with it.
    pub public_url: String,
    /// Largest accepted request body. The default fits a 10,000-alert webhook.
    pub max_body_bytes: usize,
    /// How long shutdown waits for in-flight requests and workers, e.g. `10s`.
    pub shutdown_grace: String,
    /// Most connections open at once; at the cap a newcomer takes the place of the oldest
    /// connection of the client holding the most, or is closed at once.
    pub max_connections: usize,
    /// Most connections one client (an IPv4 address, an IPv6 /64) may hold open; one more
    /// is closed at once. A trusted proxy has no cap of its own.
    pub max_connections_per_client: usize,
    /// Longest time a client may take to send a request's head, counted from when the
    /// connection is ready for one (so also how long a kept-alive connection may idle),
    /// e.g. `10s`.
    pub header_read_timeout: String,
    /// Longest time a request may take, body included, before it is answered 408.
    pub request_timeout: String,
    /// Longest time writing one response may take; a client that does not read it in
    /// time is disconnected, e.g. `30s`.
    pub write_timeout: String,
    /// A second address and port serving only `GET /metrics` (plain HTTP), e.g.
    /// `127.0.0.1:9096`; `/metrics` then leaves `listen`. Unset: `/metrics` is on `listen`.
    pub metrics_listen: Option<String>,
    /// PEM certificate chain: with `tls_key_file`, the relay serves HTTPS itself.
    pub tls_certificate_file: Option<String>,
    /// PEM private key for `tls_certificate_file`.
    pub tls_key_file: Option<String>,
    /// Addresses or networks (CIDR) of the reverse proxies in front of the relay. A request
    /// from one of them is counted, for the per-client limits of the public pages, under
    /// the address its `X-Forwarded-For` gives. Empty: every request counts under its own
    /// connection's address.
    pub trusted_proxies: Vec<String>,
}

impl Default for RawServer {
    fn default() -> RawServer {
        RawServer {
            listen: "127.0.0.1:9095".to_owned(),
            public_url: "http://127.0.0.1:9095".to_owned(),
            max_body_bytes: 32 * 1024 * 1024,
            shutdown_grace: "10s".to_owned(),
            max_connections: 1024,
            max_connections_per_client: 64,
            header_read_timeout: "10s".to_owned(),
            request_timeout: "30s".to_owned(),
            write_timeout: "30s".to_owned(),
            metrics_listen: None,
            trusted_proxies: Vec::new(),
            tls_certificate_file: None,
            tls_key_file: None,
        }
    }
}

#[derive(Debug, Deserialize)]
#[serde(default)]
pub struct RawDatabase {
    /// `sqlite://PATH` (relative paths start at the working directory) or
    /// `postgres://USER@HOST:PORT/DATABASE?sslmode=verify-full`.
    pub url: String,
    /// PostgreSQL: a file holding the password (one trailing newline is not part of it),
    /// when the URL has none.
    pub password_file: Option<String>,
    /// PostgreSQL: a PEM file of CA certificates to verify the server's certificate with.
    pub ca_file: Option<String>,
    /// PostgreSQL: the most connections the relay opens.
    pub max_connections: u32,
    /// How long a write waits for a lock held by another process before the request
    /// answers 503, e.g. `5s`.
    pub busy_timeout: String,
    /// The relay reports not ready when the database's file system has less free space
    /// than this (bytes): a nearly full disk refuses webhooks.
    pub min_free_bytes: u64,
}

impl Default for RawDatabase {
    fn default() -> RawDatabase {
        RawDatabase {
            url: "sqlite://var/samsa-relay.db".to_owned(),
            password_file: None,
            ca_file: None,
            max_connections: 16,
            busy_timeout: "5s".to_owned(),
            min_free_bytes: 64 * 1024 * 1024,
        }
    }
}

#[derive(Debug, Deserialize)]
#[serde(default)]
pub struct RawWebhook {
    /// Bearer token Alertmanager sends (`http_config.authorization.credentials`).
    pub token: Option<String>,
    /// File holding the bearer token (first line, surrounding whitespace trimmed).
    pub token_file: Option<String>,
    /// Username for basic auth, accepted as an alternative to the bearer token.
    pub basic_username: Option<String>,
    /// Password for basic auth.
    pub basic_password: Option<String>,
    /// File holding the basic auth password.
    pub basic_password_file: Option<String>,
    /// Stored webhooks waiting for the incident worker at which new ones are refused with
    /// 503 and `Retry-After`, so that the backlog cannot grow without bound.
    pub max_backlog: u64,
}

impl Default for RawWebhook {
    fn default() -> RawWebhook {
        RawWebhook {
            token: None,
            token_file: None,
            basic_username: None,
            basic_password: None,
            basic_password_file: None,
            max_backlog: 20_000,
        }
    }
}

#[derive(Debug, Deserialize)]
#[serde(default)]
pub struct RawSmtp {
    /// `smtp://host:port`, `smtps://host:port` or `file://FOLDER` (each message a file).
    pub url: String,
    /// Sender, e.g. `SAMSA förvaltning <noreply.samsa@example.org>`.
    pub from: String,
    /// Where replies go; defaults to `notices.info_address` (the service management).
    pub reply_to: Option<String>,
    /// SMTP user name, when the server wants authentication.
    pub username: Option<String>,
    /// SMTP password.
    pub password: Option<String>,
    /// File holding the SMTP password.
    pub password_file: Option<String>,
    /// For `smtp://`: `starttls` (use it when offered), `required` (refuse without it) or
    /// `none` (plain, for a server on the same host).
    pub starttls: String,
    /// Longest time one message may take, connecting included, e.g. `30s`.
    pub timeout: String,
    /// Connections kept open to the server.
    pub pool_max_connections: u32,
    /// PEM file of CA certificates trusted for the SMTP server's certificate, besides the
    /// built-in public roots: for a server with a certificate from an internal CA.
    pub ca_file: Option<String>,
}

impl Default for RawSmtp {
    fn default() -> RawSmtp {
        RawSmtp {
            url: "file://var/mail".to_owned(),
            from: "SAMSA förvaltning <noreply.samsa@vgregion.se>".to_owned(),
            reply_to: None,
            username: None,
            password: None,
            password_file: None,
            starttls: "starttls".to_owned(),
            timeout: "30s".to_owned(),
            pool_max_connections: 4,
            ca_file: None,
        }
    }
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub struct RawLinks {
    /// Secret that signs operator links (HMAC-SHA256); at least 32 characters.
    pub secret: Option<String>,
    /// File holding the link secret.
    pub secret_file: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(default)]
pub struct RawLogging {
    /// `pretty` for people, `json` for log collectors.
    pub format: LogFormat,
    /// A tracing filter, e.g. `info` or `samsa_relay=debug,info`. `RUST_LOG` overrides it.
    pub level: String,
}

impl Default for RawLogging {
    fn default() -> RawLogging {
        RawLogging {
            format: LogFormat::Pretty,
            level: "info".to_owned(),
        }
    }
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub struct RawInventorySection {
    /// An inventory file (same form as `deploy/inventory.toml`) replacing the embedded one;
    /// a relative path starts at the config file's folder. Unset: the embedded inventory.
    pub file: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(default)]
pub struct RawIncidents {
    /// The alert label holding an actor id (several ids may be separated by commas).
    pub actor_label: String,
    /// The alert label holding a sub-region id; used when an alert has no actor label.
    pub subregion_label: String,
    /// The alert label that says `all` when the whole service is down. An alert with
    /// neither an actor nor a sub-region label also counts as the whole service.
    pub scope_label: String,
    /// An alert that resolves and fires again within this time continues the same
    /// incident instead of opening a new one, e.g. `15m`.
    pub flap_window: String,
    /// Share of a sub-region's actors, in (0, 1], from which the sub-region counts as
    /// broadly affected and level 2 (backup routine in parts of the organisations) is
    /// suggested.
    pub broad_subregion_share: f64,
    /// The alertname of Alertmanager's always-firing heartbeat alert; it never opens an
    /// incident.
    pub watchdog_alertname: String,
    /// How long without a heartbeat before the relay reports that monitoring itself is
    /// down, e.g. `10m`.
    pub watchdog_timeout: String,
}

impl Default for RawIncidents {
    fn default() -> RawIncidents {
        let defaults = IncidentsConfig::default();
        RawIncidents {
            actor_label: defaults.actor_label,
            subregion_label: defaults.subregion_label,
            scope_label: defaults.scope_label,
            flap_window: "15m".to_owned(),
            broad_subregion_share: defaults.broad_subregion_share,
            watchdog_alertname: defaults.watchdog_alertname,
            watchdog_timeout: "10m".to_owned(),
        }
    }
}

#[derive(Debug, Deserialize)]
#[serde(default)]
pub struct RawNotices {
    /// A folder of templates overriding the embedded ones file by file (same names as
    /// `deploy/templates/`); a relative path starts at the config file's folder. Unset:
    /// the embedded templates.
    pub templates_dir: Option<String>,
    /// Where organisations report back during an incident; shown in every notice.
    pub info_address: String,
    /// The service's name as notices write it.
    pub service_name: String,
}

impl Default for RawNotices {
    fn default() -> RawNotices {
        let defaults = NoticesConfig::default();
        RawNotices {
            templates_dir: None,
            info_address: defaults.info_address,
            service_name: defaults.service_name,
        }
    }
}

impl Config {
    /// An absolute link to `path` on the relay's public URL.
    /// Settings that are valid but keep the login-page banner from working everywhere:
    /// what `check-config` prints after "valid", each naming its key and why, in plain
    /// words. Empty when any login page can embed the banner.
    pub fn banner_notes(&self) -> Vec<String> {
        let mut notes = Vec::new();
        let banners: Vec<&ChannelConfig> = self
            .channels
            .values()
            .filter(|channel| matches!(channel.transport, ChannelTransport::Banner { .. }))
            .collect();
        if banners.is_empty() {
            notes.push(
                "channels: no channel has transport = \"banner\", so the login-page banner \
                 (/public/banner.js) never shows anything"
                    .to_owned(),
            );
        }
        for channel in &banners {
            if !(1..=3).any(|level| self.plan.channels_for(level).contains(&channel.name)) {
                notes.push(format!(
                    "channels.{}: in no level of [plan], so no notice ever reaches the login page",
                    channel.name
                ));
            }
            if let ChannelTransport::Banner {
                allowed_origins, ..
            } = &channel.transport
                && !allowed_origins.is_empty()
            {
                notes.push(format!(
                    "channels.{}.allowed_origins: only login pages on {} can show the banner; on \
                     any other page banner.js shows nothing (the browser refuses the read and \
                     says so only in its console). Leave the list empty to allow every login page",
                    channel.name,
                    allowed_origins.join(", ")
                ));
            }
        }
        let url = &self.server.public_url;
        let loopback = match url.host() {
            Some(url::Host::Ipv4(address)) => address.is_loopback(),
            Some(url::Host::Ipv6(address)) => address.is_loopback(),
            Some(url::Host::Domain(name)) => name == "localhost",
            None => false,
        };
        if !banners.is_empty() && url.scheme() == "http" && !loopback {
            notes.push(format!(
                "server.public_url: {url} is http://, so a login page served over https:// \
                 cannot load banner.js or read banner.json from it (the browser blocks mixed \
                 content); give the relay an https:// address"
            ));
        }
        notes
    }

    pub fn public_link(&self, path: &str) -> String {
        format!(
            "{}{}",
            self.server.public_url.as_str().trim_end_matches('/'),
            path
        )
    }

    /// Reads FILE, applies the environment overrides and validates everything.
    pub fn load(path: &Path) -> Result<Config, ConfigErrors> {
        let text = std::fs::read_to_string(path).map_err(|error| {
            ConfigErrors(vec![ConfigProblem {
                path: path.display().to_string(),
                message: format!("cannot read the config file: {error}"),
            }])
        })?;
        let environment: BTreeMap<String, String> = ENV_OVERRIDES
            .iter()
            .filter_map(|(name, _)| {
                std::env::var(name)
                    .ok()
                    .map(|value| ((*name).to_owned(), value))
            })
            .collect();
        let folder = path
            .parent()
            .filter(|folder| !folder.as_os_str().is_empty());
        Config::from_toml_in(&text, &environment, folder)
    }

    /// Parses TOML text with the given environment overrides (variable -> value); relative
    /// paths of files the config reads start at the working directory.
    pub fn from_toml(
        text: &str,
        environment: &BTreeMap<String, String>,
    ) -> Result<Config, ConfigErrors> {
        Config::from_toml_in(text, environment, None)
    }

    /// As [`Config::from_toml`], with relative paths of files the config reads (secrets,
    /// inventory, templates, recipient lists) starting at `folder`: the config file's
    /// folder. Paths the relay writes (database, mail folder) stay relative to the working
    /// directory.
    pub fn from_toml_in(
        text: &str,
        environment: &BTreeMap<String, String>,
        folder: Option<&Path>,
    ) -> Result<Config, ConfigErrors> {
        let mut problems = Vec::new();
        let deserializer = toml::Deserializer::new(text);
        let mut unknown_keys = Vec::new();
        let raw: Result<RawConfig, _> = serde_ignored::deserialize(deserializer, |path| {
            unknown_keys.push(path.to_string());
        });
        let mut raw = match raw {
            Ok(raw) => raw,
            Err(error) => {
                // Only the message and the place: toml's own Display quotes the offending
                // line, which may hold a secret.
                let place = match error.span() {
                    Some(span) => {
                        let before = &text[..span.start.min(text.len())];
                        let line = before.matches('\n').count() + 1;
                        let column = before.len() - before.rfind('\n').map_or(0, |at| at + 1) + 1;
                        format!("line {line} column {column}")
                    }
                    None => "(file)".to_owned(),
                };
                return Err(ConfigErrors(vec![ConfigProblem {
                    path: place,
                    message: without_quoted_values(error.message().trim()).replace('\n', " "),
                }]));
            }
        };
        for key in unknown_keys {
            problems.push(ConfigProblem {
                path: key,
                message: "unknown key".to_owned(),
            });
        }
        if let Some(folder) = folder {
            raw.resolve_read_paths(folder);
        }
        raw.apply_environment(environment);
        match Config::from_raw(raw) {
            Ok(config) if problems.is_empty() => Ok(config),
            Ok(_) => Err(ConfigErrors(problems)),
            Err(ConfigErrors(more)) => {
                problems.extend(more);
                Err(ConfigErrors(problems))
            }
        }
    }

    /// Validates a raw configuration, collecting every problem.
    pub fn from_raw(raw: RawConfig) -> Result<Config, ConfigErrors> {
        let mut problems = Problems::default();

        let listen = problems.check(
            "server.listen",
            raw.server
                .listen
                .parse::<SocketAddr>()
                .map_err(|error| format!("expected ADDRESS:PORT such as 127.0.0.1:9095 ({error})")),
        );
        let public_url =
            problems.check("server.public_url", parse_http_url(&raw.server.public_url));
        if raw.server.max_body_bytes < 1024 {
            problems.push("server.max_body_bytes", "must be at least 1024");
        }
        let shutdown_grace = problems.check(
            "server.shutdown_grace",
            parse_duration(&raw.server.shutdown_grace),
        );

        if raw.server.max_connections == 0 {
            problems.push("server.max_connections", "must be at least 1");
        }
        let header_read_timeout = problems.check(
            "server.header_read_timeout",
            parse_duration(&raw.server.header_read_timeout),
        );
        let request_timeout = problems.check(
            "server.request_timeout",
            parse_duration(&raw.server.request_timeout),
        );
        if raw.server.max_connections_per_client == 0 {
            problems.push("server.max_connections_per_client", "must be at least 1");
        }
        let write_timeout = problems.check(
            "server.write_timeout",
            parse_duration(&raw.server.write_timeout),
        );
        let metrics_listen = match &raw.server.metrics_listen {
            None => Some(None),
            Some(text) => problems.check(
                "server.metrics_listen",
                text.parse::<SocketAddr>().map(Some).map_err(|error| {
                    format!("expected ADDRESS:PORT such as 127.0.0.1:9096 ({error})")
                }),
            ),
        };
        if let (Some(listen), Some(Some(metrics_listen))) = (listen, metrics_listen)
            && listen == metrics_listen
            && listen.port() != 0
        {
            problems.push(
                "server.metrics_listen",
                "must differ from server.listen (leave it unset to serve /metrics there)",
            );
        }
        let mut trusted_proxies = Vec::with_capacity(raw.server.trusted_proxies.len());
        for (index, text) in raw.server.trusted_proxies.iter().enumerate() {
            match parse_network(text) {
                Some(network) => trusted_proxies.push(network),
                None => problems.push(
                    &format!("server.trusted_proxies[{index}]"),
                    format!("{text:?} is not an IP address or a network such as 10.0.0.0/8"),
                ),
            }
        }
        let tls = match (&raw.server.tls_certificate_file, &raw.server.tls_key_file) {
            (Some(certificate), Some(key)) => {
                match crate::tls::tls_acceptor(Path::new(certificate), Path::new(key)) {
                    Ok(_) => Some((PathBuf::from(certificate), PathBuf::from(key))),
                    Err(error) => {
                        problems.push("server.tls_certificate_file", format!("{error:#}"));
                        None
                    }
                }
            }
            (None, None) => None,
            _ => {
                problems.push(
                    "server.tls_key_file",
                    "set both tls_certificate_file and tls_key_file, or neither",
                );
                None
            }
        };
        let database_url = check_database(&mut problems, &raw.database);
        if raw.database.max_connections < 2 {
            problems.push(
                "database.max_connections",
                "must be at least 2 (a write transaction and a read may be open at once)",
            );
        }
        let busy_timeout = problems.check(
            "database.busy_timeout",
            parse_duration(&raw.database.busy_timeout),
        );

        let bearer_token = problems
            .check(
                "webhook.token",
                resolve_secret(
                    raw.webhook.token.as_deref(),
                    raw.webhook.token_file.as_deref(),
                ),
            )
            .flatten();
        let basic_password = problems
            .check(
                "webhook.basic_password",
                resolve_secret(
                    raw.webhook.basic_password.as_deref(),
                    raw.webhook.basic_password_file.as_deref(),
                ),
            )
            .flatten();
        let basic_auth = match (raw.webhook.basic_username, basic_password) {
            (Some(username), Some(password)) if !username.is_empty() && !username.contains(':') => {
                Some(BasicAuth { username, password })
            }
            (Some(_), Some(_)) => {
                problems.push(
                    "webhook.basic_username",
                    "must be non-empty and contain no ':'",
                );
                None
            }
            (Some(_), None) => {
                problems.push(
                    "webhook.basic_password",
                    "basic_username is set but no password is",
                );
                None
            }
            (None, Some(_)) => {
                problems.push(
                    "webhook.basic_username",
                    "a basic password is set but no username is",
                );
                None
            }
            (None, None) => None,
        };
        if bearer_token.is_none() && basic_auth.is_none() {
            problems.push(
                "webhook.token",
                "set a bearer token (token, token_file or SAMSA_RELAY_WEBHOOK_TOKEN) or basic auth",
            );
        }
        if let Some(token) = &bearer_token
            && token.expose().len() < 16
        {
            problems.push("webhook.token", "must be at least 16 characters");
        }
        if raw.webhook.max_backlog == 0 {
            problems.push(
                "webhook.max_backlog",
                "must be at least 1 (0 would refuse every webhook)",
            );
        }

        let smtp_url = problems.check("smtp.url", parse_smtp_url(&raw.smtp.url));

        let link_secret = problems
            .check(
                "links.secret",
                resolve_secret(
                    raw.links.secret.as_deref(),
                    raw.links.secret_file.as_deref(),
                ),
            )
            .flatten();
        match &link_secret {
            None => problems.push(
                "links.secret",
                "required (secret, secret_file or SAMSA_RELAY_LINK_SECRET)",
            ),
            Some(secret) if secret.expose().len() < 32 => {
                problems.push("links.secret", "must be at least 32 characters")
            }
            Some(_) => {}
        }

        if raw.logging.level.trim().is_empty() {
            problems.push("logging.level", "must not be empty");
        } else if let Err(error) = tracing_subscriber::EnvFilter::try_new(&raw.logging.level) {
            problems.push("logging.level", format!("not a valid filter ({error})"));
        }

        let inventory = load_inventory(&mut problems, raw.inventory.file.as_deref());
        let incidents = check_incidents(&mut problems, raw.incidents);
        let notices = check_notices(&mut problems, raw.notices);
        let smtp_details = publishing::check_smtp_details(
            &mut problems,
            raw.smtp,
            notices
                .as_ref()
                .map(|notices| notices.info_address.as_str()),
        );
        let review = operators::check_review(&mut problems, raw.operators, raw.review);
        let all_clear_for = problems.check(
            "banner.all_clear_for",
            parse_duration(&raw.banner.all_clear_for).and_then(|duration| {
                if duration > Duration::from_secs(7 * 24 * 3600) {
                    Err("must be at most 7 days".to_owned())
                } else {
                    Ok(duration)
                }
            }),
        );
        let cluster = cluster::check_cluster(&mut problems, raw.cluster);
        let maintenance = maintenance::check_maintenance(&mut problems, &raw.maintenance);
        let channels_configured = raw.channels.is_some();
        let channels = publishing::check_channels(
            &mut problems,
            raw.channels.unwrap_or_else(publishing::default_channels),
        );
        let plan = match raw.plan {
            Some(plan) => publishing::check_plan(&mut problems, plan, &channels),
            // No channels and no plan: the plan's levels over the relay's own channels.
            None if !channels_configured => {
                let mut plan = RawPlan::default();
                for level in [&mut plan.level_1, &mut plan.level_2, &mut plan.level_3] {
                    level.retain(|name| channels.contains_key(name));
                }
                publishing::check_plan(&mut problems, plan, &channels)
            }
            None => publishing::check_plan(&mut problems, RawPlan::default(), &channels),
        };

        let subscriptions = check_subscriptions(&mut problems, &raw.subscriptions);
        let subscriber_channels: Vec<&String> = channels
            .values()
            .filter(|channel| matches!(channel.transport, ChannelTransport::Subscribers))
            .map(|channel| &channel.name)
            .collect();
        if subscriber_channels.len() > 1 {
            problems.push(
                &format!("channels.{}.transport", subscriber_channels[1]),
                "only one channel may reach the subscribers (each person gets each notice once)",
            );
        }

        // The example secrets are public: a relay that anyone but this host can reach, be it
        // directly (listen) or through a proxy (public_url), must not accept them.
        let uses_example = bearer_token
            .iter()
            .chain(link_secret.iter())
            .any(|secret| SHIPPED_EXAMPLE_SECRETS.contains(&secret.expose()));
        if uses_example {
            if let Some(listen) = listen
                && !listen.ip().is_loopback()
            {
                problems.push(
                    "server.listen",
                    "the shipped example token or link secret may only be used on a loopback address; set your own",
                );
            }
            if let Some(public_url) = &public_url
                && !is_loopback_url(public_url)
            {
                problems.push(
                    "server.public_url",
                    "the shipped example token or link secret may only be used while the public URL is a loopback address (127.0.0.1, [::1] or localhost); set your own",
                );
            }
        }

        if !problems.0.is_empty() {
            return Err(ConfigErrors(problems.0));
        }
        // Every Option below is Some: a None added a problem above.
        Ok(Config {
            server: ServerConfig {
                listen: listen.expect("checked"),
                public_url: public_url.expect("checked"),
                max_body_bytes: raw.server.max_body_bytes,
                shutdown_grace: shutdown_grace.expect("checked"),
                max_connections: raw.server.max_connections,
                max_connections_per_client: raw.server.max_connections_per_client,
                header_read_timeout: header_read_timeout.expect("checked"),
                request_timeout: request_timeout.expect("checked"),
                write_timeout: write_timeout.expect("checked"),
                metrics_listen: metrics_listen.expect("checked"),
                tls,
                trusted_proxies,
            },
            database: DatabaseConfig {
                url: database_url.expect("checked"),
                busy_timeout: busy_timeout.expect("checked"),
                min_free_bytes: raw.database.min_free_bytes,
                max_connections: raw.database.max_connections,
            },
            webhook: WebhookConfig {
                bearer_token,
                basic_auth,
                max_backlog: raw.webhook.max_backlog,
            },
            smtp: SmtpConfig {
                url: smtp_url.expect("checked"),
                details: smtp_details.expect("checked"),
            },
            links: LinksConfig {
                secret: link_secret.expect("checked"),
            },
            logging: LoggingConfig {
                format: raw.logging.format,
                level: raw.logging.level,
            },
            inventory: Arc::new(inventory.expect("checked")),
            incidents: incidents.expect("checked"),
            notices: notices.expect("checked"),
            channels,
            plan: plan.expect("checked"),
            review: review.expect("checked"),
            subscriptions: subscriptions.expect("checked"),
            banner: BannerConfig {
                all_clear_for: all_clear_for.expect("checked"),
                show_drills: raw.banner.show_drills,
            },
            cluster: cluster.expect("checked"),
            maintenance: maintenance.expect("checked"),
        })
    }
}

impl RawConfig {
    /// Makes the relative paths of files the config reads start at `folder`.
    fn resolve_read_paths(&mut self, folder: &Path) {
        let resolve = |path: &mut Option<String>| {
            if let Some(relative) = path.as_ref().filter(|path| Path::new(path).is_relative()) {
                *path = Some(folder.join(relative).display().to_string());
            }
        };
        resolve(&mut self.server.tls_certificate_file);
        resolve(&mut self.server.tls_key_file);
        resolve(&mut self.webhook.token_file);
        resolve(&mut self.webhook.basic_password_file);
        resolve(&mut self.links.secret_file);
        resolve(&mut self.smtp.password_file);
        resolve(&mut self.smtp.ca_file);
        resolve(&mut self.database.password_file);
        resolve(&mut self.database.ca_file);
        resolve(&mut self.inventory.file);
        resolve(&mut self.notices.templates_dir);
        resolve(&mut self.maintenance.alertmanager_token_file);
        resolve(&mut self.maintenance.api_token_file);
        for channel in self
            .channels
            .iter_mut()
            .flat_map(|channels| channels.values_mut())
        {
            resolve(&mut channel.recipients_file);
            resolve(&mut channel.bearer_token_file);
            resolve(&mut channel.signing_secret_file);
        }
    }

    fn apply_environment(&mut self, environment: &BTreeMap<String, String>) {
        for (name, value) in environment {
            let value = value.clone();
            match name.as_str() {
                "SAMSA_RELAY_LISTEN" => self.server.listen = value,
                "SAMSA_RELAY_PUBLIC_URL" => self.server.public_url = value,
                "SAMSA_RELAY_DATABASE_URL" => self.database.url = value,
                "SAMSA_RELAY_WEBHOOK_TOKEN" => {
                    self.webhook.token = Some(value);
                    self.webhook.token_file = None;
                }
                "SAMSA_RELAY_SMTP_URL" => self.smtp.url = value,
                "SAMSA_RELAY_LINK_SECRET" => {
                    self.links.secret = Some(value);
                    self.links.secret_file = None;
                }
                _ => {}
            }
        }
    }
}

#[derive(Default)]
struct Problems(Vec<ConfigProblem>);

/// `10.0.0.0/8`, `fd00::/8`, or one address (a network of one).
fn parse_network(text: &str) -> Option<ipnet::IpNet> {
    let text = text.trim();
    text.parse::<ipnet::IpNet>().ok().or_else(|| {
        text.parse::<std::net::IpAddr>()
            .ok()
            .map(ipnet::IpNet::from)
    })
}

impl Problems {
    fn push(&mut self, path: &str, message: impl Into<String>) {
        self.0.push(ConfigProblem {
            path: path.to_owned(),
            message: message.into(),
        });
    }

    fn check<T>(&mut self, path: &str, result: Result<T, String>) -> Option<T> {
        match result {
            Ok(value) => Some(value),
            Err(message) => {
                self.push(path, message);
                None
            }
        }
    }
}

/// The embedded inventory, or the one in FILE; problems in the file keep their key path
/// (`inventory.actors[3].subregion`) and name the file.
fn load_inventory(problems: &mut Problems, file: Option<&str>) -> Option<Inventory> {
    let Some(file) = file else {
        return Some(Inventory::default_samsa());
    };
    let text = match std::fs::read_to_string(file) {
        Ok(text) => text,
        Err(error) => {
            problems.push("inventory.file", format!("cannot read {file}: {error}"));
            return None;
        }
    };
    match Inventory::from_toml(&text) {
        Ok(inventory) => Some(inventory),
        Err(inventory_problems) => {
            for (path, message) in inventory_problems {
                problems.push(&path, format!("{message} (in {file})"));
            }
            None
        }
    }
}

fn check_incidents(problems: &mut Problems, raw: RawIncidents) -> Option<IncidentsConfig> {
    let mut valid = true;
    let labels = [
        ("incidents.actor_label", &raw.actor_label),
        ("incidents.subregion_label", &raw.subregion_label),
        ("incidents.scope_label", &raw.scope_label),
    ];
    for (path, label) in labels {
        if !is_label_name(label) {
            problems.push(
                path,
                format!("{label:?} is not a Prometheus label name ([a-zA-Z_][a-zA-Z0-9_]*)"),
            );
            valid = false;
        }
    }
    for (index, (path, label)) in labels.iter().enumerate() {
        if labels[..index].iter().any(|(_, earlier)| earlier == label) {
            problems.push(
                path,
                format!("{label:?} is already used by another *_label key"),
            );
            valid = false;
        }
    }
    let share = raw.broad_subregion_share;
    if !(share > 0.0 && share <= 1.0) {
        problems.push(
            "incidents.broad_subregion_share",
            format!("must be greater than 0 and at most 1, found {share}"),
        );
        valid = false;
    }
    if raw.watchdog_alertname.trim().is_empty() {
        problems.push("incidents.watchdog_alertname", "must not be empty");
        valid = false;
    }
    let flap_window = problems.check("incidents.flap_window", parse_duration(&raw.flap_window));
    let watchdog_timeout = problems.check(
        "incidents.watchdog_timeout",
        parse_duration(&raw.watchdog_timeout).and_then(|timeout| {
            if timeout.is_zero() {
                Err("must be longer than zero".to_owned())
            } else {
                Ok(timeout)
            }
        }),
    );
    Some(IncidentsConfig {
        actor_label: raw.actor_label,
        subregion_label: raw.subregion_label,
        scope_label: raw.scope_label,
        flap_window: flap_window?,
        broad_subregion_share: share,
        watchdog_alertname: raw.watchdog_alertname,
        watchdog_timeout: watchdog_timeout?,
    })
    .filter(|_| valid)
}

/// Checks the notice settings and, when a template folder is set, compiles and
/// render-checks every template so that a broken override stops the relay at start-up
/// rather than at 3 a.m.
fn check_notices(problems: &mut Problems, raw: RawNotices) -> Option<NoticesConfig> {
    let mut valid = true;
    if !is_email_address_shape(&raw.info_address) {
        problems.push(
            "notices.info_address",
            format!(
                "{:?} is not an email address such as info.samsa@vgregion.se",
                raw.info_address
            ),
        );
        valid = false;
    }
    let service_name = raw.service_name.trim();
    if service_name.is_empty()
        || service_name.chars().count() > 50
        || service_name.chars().any(char::is_control)
    {
        problems.push(
            "notices.service_name",
            "must be 1 to 50 characters on one line",
        );
        valid = false;
    }
    let templates_dir = raw.templates_dir.map(PathBuf::from);
    if let Some(folder) = &templates_dir
        && !folder.is_dir()
    {
        problems.push(
            "notices.templates_dir",
            format!("{} is not a folder", folder.display()),
        );
        valid = false;
    }
    let notices = NoticesConfig {
        templates_dir,
        info_address: raw.info_address,
        service_name: service_name.to_owned(),
    };
    if valid && notices.templates_dir.is_some() {
        for message in crate::notice::template_problems(&notices) {
            problems.push("notices.templates_dir", message.replace('\n', " "));
            valid = false;
        }
    }
    valid.then_some(notices)
}

/// `[a-zA-Z_][a-zA-Z0-9_]*`, the Prometheus label name syntax.
fn is_label_name(name: &str) -> bool {
    let mut characters = name.chars();
    matches!(characters.next(), Some(first) if first.is_ascii_alphabetic() || first == '_')
        && characters.all(|character| character.is_ascii_alphanumeric() || character == '_')
}

/// LOCAL@DOMAIN with one `@`, a dotted domain, and nothing that could break a header or
/// an address list (spaces, control characters, `<>,;:"()[]\`).
pub fn is_email_address_shape(address: &str) -> bool {
    let Some((local, domain)) = address.split_once('@') else {
        return false;
    };
    let allowed =
        |character: char| character.is_ascii_graphic() && !"@<>,;:\"()[]\\".contains(character);
    !local.is_empty()
        && local.len() <= 64
        && domain.len() <= 253
        && local.chars().all(allowed)
        && !local.starts_with('.')
        && !local.ends_with('.')
        && !local.contains("..")
        && domain.split('.').count() >= 2
        && domain.split('.').all(|part| {
            !part.is_empty()
                && !part.starts_with('-')
                && !part.ends_with('-')
                && part
                    .chars()
                    .all(|character| character.is_ascii_alphanumeric() || character == '-')
        })
}

/// A TOML error message without the values it quotes in backticks (a wrongly typed
/// secret would otherwise be printed); key names stay, as they are quoted in the path.
fn without_quoted_values(message: &str) -> String {
    if !message.starts_with("invalid type") && !message.starts_with("invalid value") {
        return message.to_owned();
    }
    let mut out = String::with_capacity(message.len());
    let mut inside = false;
    for character in message.chars() {
        if character == '`' {
            inside = !inside;
            if inside {
                out.push_str("`…");
            } else {
                out.push('`');
            }
        } else if !inside {
            out.push(character);
        }
    }
    out
}

/// Parses a duration such as `10s`, `15m` or `1h 30m`.
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    let signed: jiff::SignedDuration = text
        .trim()
        .parse()
        .map_err(|error| format!("expected a duration such as 10s, 15m or 1h 30m ({error})"))?;
    Duration::try_from(signed).map_err(|_| "must not be negative".to_owned())
}

fn parse_http_url(text: &str) -> Result<url::Url, String> {
    let parsed = url::Url::parse(text).map_err(|error| format!("not a URL ({error})"))?;
    match parsed.scheme() {
        "http" | "https" if parsed.host().is_some() => Ok(parsed),
        _ => Err("expected an http:// or https:// URL with a host".to_owned()),
    }
}

fn check_subscriptions(
    problems: &mut Problems,
    raw: &RawSubscriptions,
) -> Option<SubscriptionsConfig> {
    let positive = |problems: &mut Problems, key: &str, text: &str| {
        let duration = problems.check(key, parse_duration(text))?;
        if duration.is_zero() {
            problems.push(key, "must be more than zero");
            return None;
        }
        Some(duration)
    };
    let confirm_ttl = positive(problems, "subscriptions.confirm_ttl", &raw.confirm_ttl);
    let retention = positive(problems, "subscriptions.retention", &raw.retention);
    if raw.suspend_after_failures == 0 {
        problems.push("subscriptions.suspend_after_failures", "must be at least 1");
        return None;
    }
    Some(SubscriptionsConfig {
        confirm_ttl: confirm_ttl?,
        retention: retention?,
        suspend_after_failures: raw.suspend_after_failures,
    })
}

/// Whether a URL names this host only: a loopback address or `localhost`.
pub fn is_loopback_url(url: &url::Url) -> bool {
    match url.host() {
        Some(url::Host::Ipv4(address)) => address.is_loopback(),
        Some(url::Host::Ipv6(address)) => address.is_loopback(),
        Some(url::Host::Domain(name)) => {
            let name = name.trim_end_matches('.').to_ascii_lowercase();
            name == "localhost" || name.ends_with(".localhost")
        }
        None => false,
    }
}

/// `database.url` with its `password_file` and `ca_file`, every problem under its key.
fn check_database(problems: &mut Problems, raw: &RawDatabase) -> Option<DatabaseUrl> {
    let url = problems.check("database.url", parse_database_url(&raw.url))?;
    match url {
        ParsedDatabaseUrl::Sqlite(path) => {
            for (key, value) in [
                ("database.password_file", &raw.password_file),
                ("database.ca_file", &raw.ca_file),
            ] {
                if value.is_some() {
                    problems.push(key, "only for a postgres:// database.url");
                }
            }
            Some(DatabaseUrl::Sqlite { path })
        }
        ParsedDatabaseUrl::Postgres {
            url,
            redacted,
            has_password,
        } => {
            let password = match raw.password_file.as_deref() {
                None => Some(None),
                Some(_) if has_password => {
                    problems.push(
                        "database.password_file",
                        "the database.url (or SAMSA_RELAY_DATABASE_URL) has a password \
                         already: give it in one place only",
                    );
                    None
                }
                Some(path) => problems
                    .check("database.password_file", read_password_file(path))
                    .map(Some),
            };
            let ca_certificates_pem = match raw.ca_file.as_deref() {
                None => Some(None),
                Some(path) => problems
                    .check("database.ca_file", publishing::read_ca_certificates(path))
                    .map(Some),
            };
            Some(DatabaseUrl::Postgres(PostgresUrl {
                url: Secret::new(url),
                redacted,
                password: password?,
                ca_certificates_pem: ca_certificates_pem?,
            }))
        }
    }
}

enum ParsedDatabaseUrl {
    Sqlite(PathBuf),
    Postgres {
        url: String,
        redacted: String,
        has_password: bool,
    },
}

/// The TLS modes of libpq (and sqlx), weakest first.
const SSL_MODES: &[&str] = &[
    "disable",
    "allow",
    "prefer",
    "require",
    "verify-ca",
    "verify-full",
];

fn parse_database_url(text: &str) -> Result<ParsedDatabaseUrl, String> {
    if let Some(path) = text.strip_prefix("sqlite://") {
        if path.is_empty() {
            return Err("sqlite:// needs a file path, e.g. sqlite://var/samsa-relay.db".to_owned());
        }
        return Ok(ParsedDatabaseUrl::Sqlite(PathBuf::from(path)));
    }
    if text.starts_with("postgres://") || text.starts_with("postgresql://") {
        return parse_postgres_url(text);
    }
    Err("expected sqlite://PATH or postgres://USER@HOST:PORT/DATABASE".to_owned())
}

/// Checks a `postgres://` URL without ever quoting it (it may hold a password).
fn parse_postgres_url(text: &str) -> Result<ParsedDatabaseUrl, String> {
    let mut parsed =
        url::Url::parse(text).map_err(|error| format!("not a valid postgres:// URL ({error})"))?;
    let has_password = parsed
        .password()
        .is_some_and(|password| !password.is_empty());
    let _ = parsed.set_password(None);
    let redacted = parsed.to_string();
    let database = parsed.path().trim_start_matches('/');
    let query: BTreeMap<String, String> = parsed.query_pairs().into_owned().collect();
    if database.is_empty() && !query.contains_key("dbname") {
        return Err(format!(
            "name the database: {redacted} has no /DATABASE after the host"
        ));
    }
    if parsed.username().is_empty() && !query.contains_key("user") {
        return Err(format!(
            "name the user: postgres://USER@HOST/DATABASE ({redacted} has none)"
        ));
    }
    let ssl_mode = query.get("sslmode").map_or("prefer", String::as_str);
    if !SSL_MODES.contains(&ssl_mode) {
        return Err(format!(
            "sslmode={ssl_mode} is not one of {}",
            SSL_MODES.join(", ")
        ));
    }
    // A Unix socket (host=/run/postgresql) or a loopback address stays on this machine;
    // anything else must prove the server's identity.
    let local = match query.get("host") {
        Some(host) => host.starts_with('/'),
        // postgres:// is not a scheme the url crate knows, so its host is never parsed
        // as an address: parse it here.
        None => parsed.host_str().is_none_or(|host| {
            let host = host.trim_start_matches('[').trim_end_matches(']');
            match host.parse::<std::net::IpAddr>() {
                Ok(address) => address.is_loopback(),
                Err(_) => {
                    let name = host.trim_end_matches('.').to_ascii_lowercase();
                    name.is_empty() || name == "localhost" || name.ends_with(".localhost")
                }
            }
        }),
    };
    if !local && !matches!(ssl_mode, "verify-full" | "verify-ca") {
        return Err(format!(
            "a database on another host needs TLS with a verified certificate: add \
             sslmode=verify-full to the URL (and database.ca_file for a private CA); it has \
             sslmode={ssl_mode}"
        ));
    }
    Ok(ParsedDatabaseUrl::Postgres {
        url: text.to_owned(),
        redacted,
        has_password,
    })
}

/// A password file: its content less one trailing newline (`\n` or `\r\n`); spaces are
/// part of a password.
fn read_password_file(path: &str) -> Result<Secret, String> {
    let text =
        std::fs::read_to_string(path).map_err(|error| format!("cannot read {path}: {error}"))?;
    let password = text
        .strip_suffix('\n')
        .map(|text| text.strip_suffix('\r').unwrap_or(text))
        .unwrap_or(&text);
    if password.is_empty() {
        return Err(format!("{path} is empty"));
    }
    if password.contains('\n') {
        return Err(format!(
            "{path} has more than one line; it must hold the password only"
        ));
    }
    Ok(Secret::new(password))
}

fn parse_smtp_url(text: &str) -> Result<SmtpUrl, String> {
    if let Some(folder) = text.strip_prefix("file://") {
        if folder.is_empty() {
            return Err("file:// needs a folder, e.g. file://var/mail".to_owned());
        }
        return Ok(SmtpUrl::File {
            folder: PathBuf::from(folder),
        });
    }
    let parsed = url::Url::parse(text).map_err(|error| format!("not a URL ({error})"))?;
    let host = parsed
        .host_str()
        .filter(|host| !host.is_empty())
        .ok_or_else(|| "needs a host".to_owned())?
        .to_owned();
    match parsed.scheme() {
        "smtp" => Ok(SmtpUrl::Smtp {
            host,
            port: parsed.port().unwrap_or(587),
        }),
        "smtps" => Ok(SmtpUrl::Smtps {
            host,
            port: parsed.port().unwrap_or(465),
        }),
        other => Err(format!(
            "unsupported scheme {other:?}; expected smtp://, smtps:// or file://"
        )),
    }
}

/// Resolves a secret given inline or in a file; `Ok(None)` when neither is set.
fn resolve_secret(inline: Option<&str>, file: Option<&str>) -> Result<Option<Secret>, String> {
    match (inline, file) {
        (Some(_), Some(_)) => Err("set the value or its _file, not both".to_owned()),
        (Some(value), None) => {
            if value.trim().is_empty() {
                Err("must not be empty".to_owned())
            } else {
                Ok(Some(Secret::new(value.trim())))
            }
        }
        (None, Some(path)) => {
            let text = std::fs::read_to_string(path)
                .map_err(|error| format!("cannot read {path}: {error}"))?;
            let value = text.lines().next().unwrap_or("").trim();
            if value.is_empty() {
                Err(format!("{path} is empty"))
            } else {
                Ok(Some(Secret::new(value)))
            }
        }
        (None, None) => Ok(None),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MINIMAL: &str = r#"
[webhook]
token = "a-token-of-sufficient-length"
[links]
secret = "a-link-secret-that-is-long-enough-0123"
"#;

    fn no_environment() -> BTreeMap<String, String> {
        BTreeMap::new()
    }

    #[test]
    fn minimal_config_uses_defaults() {
        let config = Config::from_toml(MINIMAL, &no_environment()).unwrap();
        assert_eq!(config.server.listen.to_string(), "127.0.0.1:9095");
        assert_eq!(
            config.database.url,
            DatabaseUrl::Sqlite {
                path: PathBuf::from("var/samsa-relay.db")
            }
        );
        assert_eq!(
            config.smtp.url,
            SmtpUrl::File {
                folder: PathBuf::from("var/mail")
            }
        );
        assert_eq!(config.server.shutdown_grace, Duration::from_secs(10));
        assert_eq!(config.webhook.max_backlog, 20_000);
    }

    #[test]
    fn a_webhook_backlog_limit_of_zero_is_refused() {
        let with_limit = |limit: u64| {
            MINIMAL.replace(
                "[webhook]\n",
                &format!("[webhook]\nmax_backlog = {limit}\n"),
            )
        };
        let config = Config::from_toml(&with_limit(3), &no_environment()).unwrap();
        assert_eq!(config.webhook.max_backlog, 3);
        assert_eq!(
            problems(&with_limit(0), &no_environment()),
            [(
                "webhook.max_backlog".to_owned(),
                "must be at least 1 (0 would refuse every webhook)".to_owned()
            )]
        );
    }

    fn problems(text: &str, environment: &BTreeMap<String, String>) -> Vec<(String, String)> {
        Config::from_toml(text, environment)
            .unwrap_err()
            .0
            .into_iter()
            .map(|problem| (problem.path, problem.message))
            .collect()
    }

    #[test]
    fn a_postgres_url_takes_its_password_from_a_file_and_never_shows_it() {
        let folder = tempfile::tempdir().unwrap();
        let password_file = folder.path().join("db-password");
        std::fs::write(&password_file, "s3cret with space\n").unwrap();
        let text = format!(
            "{MINIMAL}[database]\nurl = \"postgres://relay@db.example.org:5432/samsa?sslmode=verify-full\"\n\
             password_file = {:?}\nmax_connections = 8\n",
            password_file.display().to_string()
        );
        let config = Config::from_toml(&text, &no_environment()).unwrap();
        let DatabaseUrl::Postgres(url) = &config.database.url else {
            panic!("not postgres: {:?}", config.database.url);
        };
        assert_eq!(
            url.password.as_ref().map(Secret::expose),
            Some("s3cret with space"),
            "one trailing newline is cut, spaces are kept"
        );
        assert_eq!(config.database.max_connections, 8);
        let shown = format!("{:?} {}", config.database, config.database.url);
        assert!(!shown.contains("s3cret"), "{shown}");

        // The whole URL from the environment, password included, replaces the file's.
        let mut environment = BTreeMap::new();
        environment.insert(
            "SAMSA_RELAY_DATABASE_URL".to_owned(),
            "postgres://relay:hunter2-in-url@127.0.0.1/samsa".to_owned(),
        );
        let config = Config::from_toml(MINIMAL, &environment).unwrap();
        let DatabaseUrl::Postgres(url) = &config.database.url else {
            panic!("not postgres");
        };
        assert_eq!(
            url.url.expose(),
            "postgres://relay:hunter2-in-url@127.0.0.1/samsa"
        );
        assert_eq!(url.redacted, "postgres://relay@127.0.0.1/samsa");
        let shown = format!("{:?} {}", config.database, config.database.url);
        assert!(!shown.contains("hunter2"), "{shown}");

        // ... and a password in two places is refused without quoting either.
        let text = format!(
            "{MINIMAL}[database]\npassword_file = {:?}\n",
            password_file.display().to_string()
        );
        let found = problems(&text, &environment);
        assert_eq!(found.len(), 1, "{found:?}");
        assert_eq!(found[0].0, "database.password_file");
        assert!(!found[0].1.contains("hunter2") && !found[0].1.contains("s3cret"));
    }

    #[test]
    fn a_postgres_url_on_another_host_needs_a_verified_certificate() {
        for (url, problem) in [
            (
                "postgres://relay@db.example.org/samsa",
                Some("sslmode=verify-full"),
            ),
            (
                "postgres://relay@db.example.org/samsa?sslmode=require",
                Some("sslmode=require"),
            ),
            (
                "postgres://relay@db.example.org/samsa?sslmode=verify-full",
                None,
            ),
            (
                "postgresql://relay@db.example.org/samsa?sslmode=verify-ca",
                None,
            ),
            ("postgres://relay@127.0.0.1:5432/samsa", None),
            ("postgres://relay@[::1]:5432/samsa", None),
            ("postgres://relay@localhost/samsa", None),
            ("postgres:///samsa?host=/run/postgresql&user=relay", None),
            (
                "postgres://relay@localhost/samsa?sslmode=sometimes",
                Some("not one of"),
            ),
            ("postgres://relay@localhost", Some("name the database")),
            ("postgres://localhost/samsa", Some("name the user")),
            ("postgres://relay:pw@localhost", Some("name the database")),
        ] {
            let text = format!("{MINIMAL}[database]\nurl = {url:?}\n");
            match (Config::from_toml(&text, &no_environment()), problem) {
                (Ok(_), None) => {}
                (Err(errors), Some(expected)) => {
                    assert_eq!(errors.0.len(), 1, "{url}: {errors}");
                    assert_eq!(errors.0[0].path, "database.url");
                    assert!(errors.0[0].message.contains(expected), "{url}: {errors}");
                    assert!(!errors.0[0].message.contains(":pw@"), "{errors}");
                }
                (result, _) => panic!("{url}: {result:?}"),
            }
        }
        // A CA file must hold a certificate; the PostgreSQL keys are refused for SQLite.
        let folder = tempfile::tempdir().unwrap();
        let not_pem = folder.path().join("ca.pem");
        std::fs::write(&not_pem, "not a certificate").unwrap();
        let text = format!(
            "{MINIMAL}[database]\nurl = \"postgres://relay@localhost/samsa\"\nca_file = {:?}\n",
            not_pem.display().to_string()
        );
        let found = problems(&text, &no_environment());
        assert_eq!(found.len(), 1, "{found:?}");
        assert_eq!(found[0].0, "database.ca_file");
        let text = format!("{MINIMAL}[database]\nca_file = \"ca.pem\"\nmax_connections = 1\n");
        let paths: Vec<String> = problems(&text, &no_environment())
            .into_iter()
            .map(|(path, _)| path)
            .collect();
        assert_eq!(paths, ["database.ca_file", "database.max_connections"]);
    }

    #[test]
    fn banner_notes_say_plainly_what_keeps_the_embed_from_working() {
        let shipped_like = Config::from_toml(MINIMAL, &no_environment()).unwrap();
        assert_eq!(shipped_like.banner_notes(), Vec::<String>::new());
        assert_eq!(
            shipped_like.banner.all_clear_for,
            Duration::from_secs(2 * 3600)
        );
        assert!(!shipped_like.banner.show_drills);

        let restricted = format!(
            "{MINIMAL}[server]\npublic_url = \"http://relay.example.org\"\n\
             [channels.banner]\ncontent = \"banner\"\ntransport = \"banner\"\n\
             allowed_origins = [\"https://samsa.example.org\"]\n\
             [channels.login]\ncontent = \"banner\"\ntransport = \"banner\"\n\
             [plan]\nlevel_1 = [\"banner\"]\nlevel_2 = [\"banner\"]\nlevel_3 = [\"banner\"]\n\
             [banner]\nall_clear_for = \"30m\"\nshow_drills = true\n"
        );
        let config = Config::from_toml(&restricted, &no_environment()).unwrap();
        assert_eq!(config.banner.all_clear_for, Duration::from_secs(1800));
        assert!(config.banner.show_drills);
        let notes = config.banner_notes();
        assert_eq!(notes.len(), 3, "{notes:#?}");
        assert!(
            notes[0].starts_with(
                "channels.banner.allowed_origins: only login pages on https://samsa.example.org"
            ),
            "{notes:#?}"
        );
        assert!(
            notes[1].starts_with("channels.login: in no level of [plan]"),
            "{notes:#?}"
        );
        assert!(
            notes[2].starts_with("server.public_url: http://relay.example.org/ is http://"),
            "{notes:#?}"
        );

        let no_banner = format!(
            "{MINIMAL}[channels.news]\ncontent = \"website\"\ntransport = \"feed\"\n\
             [plan]\nlevel_1 = [\"news\"]\nlevel_2 = [\"news\"]\nlevel_3 = [\"news\"]\n"
        );
        let notes = Config::from_toml(&no_banner, &no_environment())
            .unwrap()
            .banner_notes();
        assert_eq!(notes.len(), 1);
        assert!(notes[0].starts_with("channels: no channel has transport = \"banner\""));

        let too_long = format!("{MINIMAL}[banner]\nall_clear_for = \"8d\"\n");
        let errors = Config::from_toml(&too_long, &no_environment()).unwrap_err();
        assert_eq!(errors.0[0].path, "banner.all_clear_for");
    }

    #[test]
    fn every_problem_is_listed_with_its_key_path() {
        let text = r#"
[server]
listen = "nowhere"
public_url = "ftp://x"
colour = "blue"
trusted_proxies = ["10.0.0.0/8", "the ingress"]
[database]
url = "mysql://x"
busy_timeout = "soon"
[webhook]
token = "short"
[links]
[smtp]
url = "gopher://x"
[extra]
key = 1
"#;
        let errors = Config::from_toml(text, &no_environment()).unwrap_err();
        let paths: Vec<&str> = errors
            .0
            .iter()
            .map(|problem| problem.path.as_str())
            .collect();
        for expected in [
            "server.colour",
            "server.trusted_proxies[1]",
            "extra",
            "server.listen",
            "server.public_url",
            "database.url",
            "database.busy_timeout",
            "webhook.token",
            "smtp.url",
            "links.secret",
        ] {
            assert!(
                paths.contains(&expected),
                "{expected} missing from {paths:?}"
            );
        }
        assert_eq!(errors.to_string().lines().count(), errors.0.len());
    }

    #[test]
    fn smtp_ca_file_must_hold_certificates() {
        let folder = tempfile::tempdir().unwrap();
        let with_ca = |path: &std::path::Path| {
            format!(
                "{MINIMAL}\n[smtp]\nurl = \"smtp://mail.example.org\"\nca_file = \"{}\"\n",
                path.display()
            )
        };
        let problem_of = |path: &std::path::Path| {
            let errors = Config::from_toml(&with_ca(path), &no_environment()).unwrap_err();
            let problem = errors
                .0
                .iter()
                .find(|problem| problem.path == "smtp.ca_file")
                .unwrap_or_else(|| panic!("no smtp.ca_file problem in {errors}"));
            problem.message.clone()
        };
        let missing = folder.path().join("missing.pem");
        assert!(problem_of(&missing).contains("cannot read"));
        let key_only = folder.path().join("key.pem");
        let key = rcgen::KeyPair::generate().unwrap();
        std::fs::write(&key_only, key.serialize_pem()).unwrap();
        assert!(problem_of(&key_only).contains("no PEM certificate"));

        let ca = folder.path().join("ca.pem");
        let certificate = rcgen::CertificateParams::new(vec!["mail.example.org".to_owned()])
            .unwrap()
            .self_signed(&key)
            .unwrap();
        std::fs::write(&ca, certificate.pem()).unwrap();
        let config = Config::from_toml(&with_ca(&ca), &no_environment()).unwrap();
        assert_eq!(
            config.smtp.details.ca_certificates_pem.as_deref(),
            Some(certificate.pem().as_bytes())
        );
    }

    #[test]
    fn environment_overrides_the_file() {
        let mut environment = BTreeMap::new();
        environment.insert("SAMSA_RELAY_LISTEN".to_owned(), "127.0.0.1:0".to_owned());
        environment.insert(
            "SAMSA_RELAY_DATABASE_URL".to_owned(),
            "sqlite:///tmp/x.db".to_owned(),
        );
        environment.insert(
            "SAMSA_RELAY_WEBHOOK_TOKEN".to_owned(),
            "from-the-environment-123".to_owned(),
        );
        environment.insert(
            "SAMSA_RELAY_SMTP_URL".to_owned(),
            "smtp://127.0.0.1:2525".to_owned(),
        );
        let config = Config::from_toml(MINIMAL, &environment).unwrap();
        assert_eq!(config.server.listen.port(), 0);
        assert_eq!(
            config.database.url,
            DatabaseUrl::Sqlite {
                path: PathBuf::from("/tmp/x.db")
            }
        );
        assert_eq!(
            config.webhook.bearer_token.unwrap().expose(),
            "from-the-environment-123"
        );
        assert_eq!(
            config.smtp.url,
            SmtpUrl::Smtp {
                host: "127.0.0.1".to_owned(),
                port: 2525
            }
        );
    }

    #[test]
    fn secrets_come_from_files_and_never_print() {
        let folder = tempfile::tempdir().unwrap();
        let token_path = folder.path().join("token");
        std::fs::write(&token_path, "token-from-a-file-0123\n").unwrap();
        let text = format!(
            "[webhook]\ntoken_file = {:?}\n[links]\nsecret = \"a-link-secret-that-is-long-enough-0123\"\n",
            token_path.display().to_string()
        );
        let config = Config::from_toml(&text, &no_environment()).unwrap();
        let token = config.webhook.bearer_token.clone().unwrap();
        assert_eq!(token.expose(), "token-from-a-file-0123");
        assert!(!format!("{config:?}").contains("token-from-a-file"));
    }

    #[test]
    fn shipped_example_secrets_stay_on_loopback() {
        let text = format!(
            "[server]\nlisten = \"0.0.0.0:9095\"\n[webhook]\ntoken = \"{}\"\n[links]\nsecret = \"a-link-secret-that-is-long-enough-0123\"\n",
            SHIPPED_EXAMPLE_SECRETS[0]
        );
        let errors = Config::from_toml(&text, &no_environment()).unwrap_err();
        assert_eq!(errors.0[0].path, "server.listen");
    }

    /// Behind a proxy on the same host the relay listens on loopback, yet anyone who can
    /// reach the public URL can use links signed with the public example secret.
    #[test]
    fn shipped_example_secrets_are_refused_behind_a_public_url() {
        let with = |public_url: &str, token: &str, link_secret: &str| {
            let text = format!(
                "[server]\nlisten = \"127.0.0.1:9095\"\npublic_url = \"{public_url}\"\n[webhook]\ntoken = \"{token}\"\n[links]\nsecret = \"{link_secret}\"\n"
            );
            Config::from_toml(&text, &no_environment())
        };
        let own_token = "an-own-webhook-token-0123";
        let own_secret = "a-link-secret-that-is-long-enough-0123";
        for public_url in ["https://samsa-relay.example.org", "http://10.1.2.3:9095"] {
            for (token, link_secret) in [
                (own_token, SHIPPED_EXAMPLE_SECRETS[1]),
                (SHIPPED_EXAMPLE_SECRETS[0], own_secret),
            ] {
                let errors = with(public_url, token, link_secret).unwrap_err();
                let paths: Vec<&str> = errors
                    .0
                    .iter()
                    .map(|problem| problem.path.as_str())
                    .collect();
                assert_eq!(paths, ["server.public_url"], "{public_url}");
                assert!(!errors.to_string().contains("change-me"), "{errors}");
            }
        }
        for public_url in [
            "http://127.0.0.1:9095",
            "http://127.1.2.3:9095",
            "http://[::1]:9095",
            "http://localhost:9095/",
            "http://relay.localhost",
        ] {
            with(
                public_url,
                SHIPPED_EXAMPLE_SECRETS[0],
                SHIPPED_EXAMPLE_SECRETS[1],
            )
            .unwrap_or_else(|errors| panic!("{public_url}: {errors}"));
        }
        // Own secrets: any public URL.
        with("https://samsa-relay.example.org", own_token, own_secret).unwrap();
    }

    #[test]
    fn new_sections_default_to_the_documented_values() {
        let config = Config::from_toml(MINIMAL, &no_environment()).unwrap();
        assert_eq!(config.inventory.actors().len(), 67);
        assert_eq!(config.incidents, IncidentsConfig::default());
        assert_eq!(config.incidents.actor_label, "actor");
        assert_eq!(config.incidents.flap_window, Duration::from_secs(900));
        assert_eq!(config.incidents.watchdog_timeout, Duration::from_secs(600));
        assert_eq!(config.incidents.broad_subregion_share, 0.5);
        assert_eq!(config.incidents.watchdog_alertname, "Watchdog");
        assert_eq!(config.notices, NoticesConfig::default());
        assert_eq!(config.notices.info_address, "info.samsa@vgregion.se");
        assert_eq!(config.notices.service_name, "SAMSA");
        assert_eq!(config.notices.templates_dir, None);
    }

    #[test]
    fn shipped_config_file_is_valid() {
        let text = include_str!("../deploy/samsa-relay.toml");
        let folder = Path::new(env!("CARGO_MANIFEST_DIR")).join("deploy");
        let config = Config::from_toml_in(text, &no_environment(), Some(&folder)).unwrap();
        assert_eq!(config.plan.channels_for(3).len(), 6);
        assert_eq!(config.review.on_duty().count(), 1);
        assert_eq!(config.incidents, IncidentsConfig::default());
        assert_eq!(config.notices, NoticesConfig::default());
    }

    #[test]
    fn new_sections_report_every_problem_with_its_key_path() {
        let text = format!(
            r#"{MINIMAL}
[inventory]
file = "/nonexistent/inventory.toml"
[incidents]
actor_label = "actor-id"
subregion_label = "scope"
scope_label = "scope"
flap_window = "soon"
broad_subregion_share = 0.0
watchdog_alertname = " "
watchdog_timeout = "0s"
colour = "blue"
[notices]
templates_dir = "/nonexistent/templates"
info_address = "info.samsa@localhost"
service_name = ""
"#
        );
        let errors = Config::from_toml(&text, &no_environment()).unwrap_err();
        let paths: Vec<&str> = errors
            .0
            .iter()
            .map(|problem| problem.path.as_str())
            .collect();
        for expected in [
            "inventory.file",
            "incidents.actor_label",
            "incidents.scope_label",
            "incidents.flap_window",
            "incidents.broad_subregion_share",
            "incidents.watchdog_alertname",
            "incidents.watchdog_timeout",
            "incidents.colour",
            "notices.templates_dir",
            "notices.info_address",
            "notices.service_name",
        ] {
            assert!(
                paths.contains(&expected),
                "{expected} missing from {paths:?}"
            );
        }
    }

    #[test]
    fn share_accepts_exactly_one_and_refuses_above() {
        for (share, valid) in [(1.0, true), (0.01, true), (1.01, false), (-0.5, false)] {
            let text = format!("{MINIMAL}\n[incidents]\nbroad_subregion_share = {share:?}\n");
            assert_eq!(
                Config::from_toml(&text, &no_environment()).is_ok(),
                valid,
                "{share}"
            );
        }
        let text = format!("{MINIMAL}\n[incidents]\nbroad_subregion_share = nan\n");
        assert!(Config::from_toml(&text, &no_environment()).is_err());
    }

    #[test]
    fn an_inventory_file_replaces_the_embedded_one_and_its_problems_keep_their_paths() {
        let folder = tempfile::tempdir().unwrap();
        let inventory_path = folder.path().join("inventory.toml");
        std::fs::write(
            &inventory_path,
            "[[subregions]]\nid = \"north\"\nname = \"Norr\"\n[[actors]]\nid = \"kommun-a\"\nname = \"A\"\nsubregion = \"north\"\nkind = \"kommun\"\n",
        )
        .unwrap();
        let text = format!(
            "{MINIMAL}\n[inventory]\nfile = {:?}\n",
            inventory_path.display().to_string()
        );
        let config = Config::from_toml(&text, &no_environment()).unwrap();
        assert_eq!(config.inventory.actors().len(), 1);
        assert_eq!(config.inventory.subregion("north").unwrap().name, "Norr");

        std::fs::write(
            &inventory_path,
            "[[subregions]]\nid = \"north\"\nname = \"Norr\"\n[[actors]]\nid = \"kommun-a\"\nname = \"A\"\nsubregion = \"south\"\nkind = \"kommun\"\n",
        )
        .unwrap();
        let errors = Config::from_toml(&text, &no_environment()).unwrap_err();
        assert_eq!(errors.0[0].path, "inventory.actors[0].subregion");
        assert!(errors.0[0].message.contains("inventory.toml"));
    }

    #[test]
    fn a_broken_template_folder_fails_the_check() {
        let folder = tempfile::tempdir().unwrap();
        std::fs::write(folder.path().join("banner.txt"), "{% if %}").unwrap();
        let text = format!(
            "{MINIMAL}\n[notices]\ntemplates_dir = {:?}\n",
            folder.path().display().to_string()
        );
        let errors = Config::from_toml(&text, &no_environment()).unwrap_err();
        assert_eq!(errors.0[0].path, "notices.templates_dir");
        assert!(errors.0[0].message.contains("banner.txt"), "{errors}");

        std::fs::write(
            folder.path().join("banner.txt"),
            "Störning i {{ service_name }}",
        )
        .unwrap();
        let config = Config::from_toml(&text, &no_environment()).unwrap();
        assert_eq!(config.notices.templates_dir.as_deref(), Some(folder.path()));
    }

    #[test]
    fn email_addresses_are_checked_for_shape() {
        for (address, valid) in [
            ("info.samsa@vgregion.se", true),
            ("a+b@sub.example.org", true),
            ("info.samsa@localhost", false),
            ("@vgregion.se", false),
            ("info@@vgregion.se", false),
            ("info samsa@vgregion.se", false),
            ("info@vgregion.se\r\nBcc: x@y.z", false),
            ("<info@vgregion.se>", false),
            ("info.@vgregion.se", false),
            ("info@-vgregion.se", false),
            ("info@vgregion..se", false),
        ] {
            assert_eq!(is_email_address_shape(address), valid, "{address:?}");
        }
    }

    #[test]
    fn a_syntax_error_never_prints_the_line_it_is_on() {
        let text = "[webhook]\ntoken = \"a-secret-token-value-0123\" x\n";
        let errors = Config::from_toml(text, &no_environment()).unwrap_err();
        let shown = errors.to_string();
        assert!(shown.starts_with("line 2 column"), "{shown}");
        assert!(!shown.contains("a-secret-token-value"), "{shown}");
    }

    #[test]
    fn a_wrongly_typed_secret_is_not_printed() {
        let text = "[webhook]\ntoken = 12345678901234567\n";
        let shown = Config::from_toml(text, &no_environment())
            .unwrap_err()
            .to_string();
        assert!(!shown.contains("12345678901234567"), "{shown}");
        assert!(shown.contains("expected a string"), "{shown}");
    }

    #[test]
    fn durations_parse_in_friendly_form() {
        assert_eq!(parse_duration("15m").unwrap(), Duration::from_secs(900));
        assert_eq!(parse_duration("1h 30m").unwrap(), Duration::from_secs(5400));
        assert!(parse_duration("-5s").is_err());
        assert!(parse_duration("soon").is_err());
    }
}
