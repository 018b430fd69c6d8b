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
use std::time::Duration;

use serde::Deserialize;

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
/// relay run on loopback with no setup; the relay refuses to listen anywhere else with them.
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
}

#[derive(Debug, Clone)]
pub struct ServerConfig {
    pub listen: SocketAddr,
    pub public_url: url::Url,
    pub max_body_bytes: usize,
    pub shutdown_grace: Duration,
}

#[derive(Debug, Clone)]
pub struct DatabaseConfig {
    pub url: DatabaseUrl,
    pub busy_timeout: Duration,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DatabaseUrl {
    /// `sqlite://PATH`: a file, created with its folder if missing.
    Sqlite { path: PathBuf },
}

#[derive(Debug, Clone)]
pub struct WebhookConfig {
    pub bearer_token: Option<Secret>,
    pub basic_auth: Option<BasicAuth>,
}

#[derive(Debug, Clone)]
pub struct BasicAuth {
    pub username: String,
    pub password: Secret,
}

#[derive(Debug, Clone)]
pub struct SmtpConfig {
    pub url: SmtpUrl,
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

/// A secret value: never printed, never logged.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    pub fn new(value: impl Into<String>) -> Secret {
        Secret(value.into())
    }

    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        formatter.write_str("Secret(***)")
    }
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
}

impl Default for RawServer {
    fn default() -> RawServer {
        RawServer {
            listen: "127.0.0.1:9095".to_owned(),
            public_url: "http://127.0.0.1:9095".to_owned(),
            max_body_bytes: 32 * 1024 * 1024,
            shutdown_grace: "10s".to_owned(),
        }
    }
}

#[derive(Debug, Deserialize)]
#[serde(default)]
pub struct RawDatabase {
    /// `sqlite://PATH` (relative paths start at the working directory).
    pub url: String,
    /// How long a write waits for a lock held by another process before the request
    /// answers 503, e.g. `5s`.
    pub busy_timeout: String,
}

impl Default for RawDatabase {
    fn default() -> RawDatabase {
        RawDatabase {
            url: "sqlite://var/samsa-relay.db".to_owned(),
            busy_timeout: "5s".to_owned(),
        }
    }
}

#[derive(Debug, Default, Deserialize)]
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
}

#[derive(Debug, Deserialize)]
#[serde(default)]
pub struct RawSmtp {
    /// `smtp://host:port`, `smtps://host:port` or `file://FOLDER` (each message a file).
    pub url: String,
}

impl Default for RawSmtp {
    fn default() -> RawSmtp {
        RawSmtp {
            url: "file://var/mail".to_owned(),
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

impl Config {
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
        Config::from_toml(&text, &environment)
    }

    /// Parses TOML text with the given environment overrides (variable -> value).
    pub fn from_toml(
        text: &str,
        environment: &BTreeMap<String, String>,
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
                return Err(ConfigErrors(vec![ConfigProblem {
                    path: "(file)".to_owned(),
                    message: error.to_string().trim().replace('\n', " "),
                }]));
            }
        };
        for key in unknown_keys {
            problems.push(ConfigProblem {
                path: key,
                message: "unknown key".to_owned(),
            });
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

        let database_url = problems.check("database.url", parse_database_url(&raw.database.url));
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

        if let Some(listen) = listen
            && !listen.ip().is_loopback()
        {
            let uses_example = bearer_token
                .iter()
                .chain(link_secret.iter())
                .any(|secret| SHIPPED_EXAMPLE_SECRETS.contains(&secret.expose()));
            if uses_example {
                problems.push(
                    "server.listen",
                    "the shipped example token or link secret may only be used on a loopback address; set your own",
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
            },
            database: DatabaseConfig {
                url: database_url.expect("checked"),
                busy_timeout: busy_timeout.expect("checked"),
            },
            webhook: WebhookConfig {
                bearer_token,
                basic_auth,
            },
            smtp: SmtpConfig {
                url: smtp_url.expect("checked"),
            },
            links: LinksConfig {
                secret: link_secret.expect("checked"),
            },
            logging: LoggingConfig {
                format: raw.logging.format,
                level: raw.logging.level,
            },
        })
    }
}

impl RawConfig {
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

fn parse_database_url(text: &str) -> Result<DatabaseUrl, String> {
    if let Some(path) = text.strip_prefix("sqlite://") {
        if path.is_empty() {
            return Err("sqlite:// needs a file path, e.g. sqlite://var/samsa-relay.db".to_owned());
        }
        return Ok(DatabaseUrl::Sqlite {
            path: PathBuf::from(path),
        });
    }
    if text.starts_with("postgres://") || text.starts_with("postgresql://") {
        return Err("the PostgreSQL backend is not available yet; use sqlite://PATH".to_owned());
    }
    Err("expected sqlite://PATH".to_owned())
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
    }

    #[test]
    fn every_problem_is_listed_with_its_key_path() {
        let text = r#"
[server]
listen = "nowhere"
public_url = "ftp://x"
colour = "blue"
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

    #[test]
    fn durations_parse_in_friendly_form() {
        assert_eq!(parse_duration("15m").unwrap(), Duration::from_secs(900));
        assert_eq!(parse_duration("1h 30m").unwrap(), Duration::from_secs(5400));
        assert!(parse_duration("-5s").is_err());
        assert!(parse_duration("soon").is_err());
    }
}
