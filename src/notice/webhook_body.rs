//! The body of a webhook delivery: the default JSON shape ([`WebhookBody`]) and a
//! channel's own `body_template` (MiniJinja with JSON auto-escaping, so `{{ title }}`
//! prints a quoted, escaped JSON string). Here, below the configuration, so that the
//! config check compiles a template with the same code that delivery renders it with.

use serde::Serialize;

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
