//! The body of a webhook delivery: the default JSON shape ([`WebhookBody`]) and a
//! channel's own `body_template` (MiniJinja with JSON auto-escaping, so `{{ title }}`
//! prints a quoted, escaped JSON string); and its signature ([`WebhookSigningKey`], the
//! Standard Webhooks scheme). Here, below the configuration, so that the config check
//! compiles a template and reads a key with the same code that delivery uses.

use std::fmt;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use hmac::{Hmac, Mac as _};
use serde::Serialize;
use sha2::Sha256;

const TEMPLATE_NAME: &str = "body.json";

/// The default JSON body, and the context a `body_template` sees.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct WebhookBody {
    pub delivery_id: String,
    pub notice_id: i64,
    pub incident_id: i64,
    pub channel: String,
    /// `initial`, `update` or `resolved`.
    pub kind: String,
    pub level: u8,
    pub drill: bool,
    pub title: String,
    pub body: String,
    /// RFC 3339, UTC.
    pub published_at: String,
    /// Where readers report back about the incident.
    pub feedback_url: String,
}

/// Checks a body template: it compiles, and renders valid JSON for a sample notice.
pub fn check_body_template(source: &str) -> Result<(), String> {
    let environment =
        template_environment(source.to_owned()).map_err(|error| format!("{error:#}"))?;
    let sample = WebhookBody {
        delivery_id: "1-000000000000000000000000".to_owned(),
        notice_id: 1,
        incident_id: 1,
        channel: "website".to_owned(),
        kind: "initial".to_owned(),
        level: 1,
        drill: false,
        title: "Driftstörning i SAMSA \"citat\" <b>".to_owned(),
        body: "Rad ett\nRad två".to_owned(),
        published_at: "2026-11-28T04:12:00Z".to_owned(),
        feedback_url: "http://127.0.0.1:9095/public/feedback/1".to_owned(),
    };
    render_template(&environment, &sample).map(|_| ())
}

pub fn template_environment(source: String) -> anyhow::Result<minijinja::Environment<'static>> {
    let mut environment = minijinja::Environment::new();
    environment.set_undefined_behavior(minijinja::UndefinedBehavior::Strict);
    // Every printed value becomes a JSON value (strings quoted and escaped), whatever the
    // template's name; `|tojson` gives the same and is not escaped twice.
    environment.set_auto_escape_callback(|_| minijinja::AutoEscape::Json);
    environment
        .add_template_owned(TEMPLATE_NAME, source)
        .map_err(|error| anyhow::anyhow!("the template does not compile: {error}"))?;
    Ok(environment)
}

pub fn render_template(
    environment: &minijinja::Environment<'static>,
    fields: &WebhookBody,
) -> Result<String, String> {
    let template = environment
        .get_template(TEMPLATE_NAME)
        .map_err(|error| error.to_string())?;
    let output = template
        .render(minijinja::Value::from_serialize(fields))
        .map_err(|error| format!("cannot render: {error}"))?;
    if let Err(error) = serde_json::from_str::<serde_json::Value>(&output) {
        return Err(format!(
            "the output is not JSON ({error}); print values as {{{{ title }}}}, without quotes around them"
        ));
    }
    Ok(output)
}

/// The prefix of a Standard Webhooks secret; the rest is the key, base64.
pub const SIGNING_SECRET_PREFIX: &str = "whsec_";
/// Shortest and longest key the Standard Webhooks spec allows, in bytes.
const SIGNING_KEY_BYTES: std::ops::RangeInclusive<usize> = 24..=64;

/// A channel's key for signing its deliveries the Standard Webhooks way
/// (<https://www.standardwebhooks.com>): `webhook-signature` is `v1,` followed by the
/// base64 HMAC-SHA256 of `{webhook-id}.{webhook-timestamp}.{body}`. Never printed.
#[derive(Clone, PartialEq, Eq)]
pub struct WebhookSigningKey {
    key: Vec<u8>,
    /// The secret as written (`whsec_…`), to keep it out of a receiver's echoed answer.
    text: String,
}

impl WebhookSigningKey {
    /// Reads `whsec_` + base64 of 24 to 64 key bytes, as the receiver is given it.
    pub fn parse(text: &str) -> Result<WebhookSigningKey, String> {
        let text = text.trim();
        let encoded = text.strip_prefix(SIGNING_SECRET_PREFIX).ok_or_else(|| {
            format!(
                "expected {SIGNING_SECRET_PREFIX} and the key in base64 (e.g. from: echo {SIGNING_SECRET_PREFIX}$(head -c 32 /dev/urandom | base64))"
            )
        })?;
        let key = STANDARD
            .decode(encoded)
            .map_err(|_| format!("the part after {SIGNING_SECRET_PREFIX} is not base64"))?;
        if !SIGNING_KEY_BYTES.contains(&key.len()) {
            return Err(format!(
                "the key is {} bytes; use {} to {} random bytes",
                key.len(),
                SIGNING_KEY_BYTES.start(),
                SIGNING_KEY_BYTES.end()
            ));
        }
        Ok(WebhookSigningKey {
            key,
            text: text.to_owned(),
        })
    }

    /// The `webhook-signature` value for one request: `v1,` + base64(HMAC-SHA256(key,
    /// `{id}.{timestamp}.{body}`)), `timestamp` in Unix seconds.
    pub fn sign(&self, id: &str, timestamp: i64, body: &[u8]) -> String {
        let mut mac = Hmac::<Sha256>::new_from_slice(&self.key).expect("HMAC takes any key length");
        mac.update(id.as_bytes());
        mac.update(b".");
        mac.update(timestamp.to_string().as_bytes());
        mac.update(b".");
        mac.update(body);
        format!("v1,{}", STANDARD.encode(mac.finalize().into_bytes()))
    }

    /// The secret as configured (`whsec_…`).
    pub fn expose(&self) -> &str {
        &self.text
    }
}

impl fmt::Debug for WebhookSigningKey {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        formatter.write_str("WebhookSigningKey(***)")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signing_keys_are_whsec_and_base64_of_24_to_64_bytes() {
        let key = STANDARD.encode([7_u8; 32]);
        let parsed = WebhookSigningKey::parse(&format!("whsec_{key}")).unwrap();
        assert_eq!(format!("{parsed:?}"), "WebhookSigningKey(***)");
        assert!(WebhookSigningKey::parse(&key).is_err(), "no prefix");
        assert!(WebhookSigningKey::parse("whsec_not base64!").is_err());
        let short = STANDARD.encode([7_u8; 23]);
        assert!(WebhookSigningKey::parse(&format!("whsec_{short}")).is_err());
        let long = STANDARD.encode([7_u8; 65]);
        assert!(WebhookSigningKey::parse(&format!("whsec_{long}")).is_err());
    }
}
