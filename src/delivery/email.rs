//! Email delivery (lettre): [`EmailTransport`], the one SMTP connection pool (or mail
//! folder) every email channel shares, and [`EmailSender`], which turns one claimed outbox
//! row into one message and classifies how sending it failed.
//!
//! **The message.** From is `smtp.from`, To the row's recipient (one message per
//! recipient, so no list is disclosed), Reply-To `smtp.reply_to` (the service
//! management). Subject and body follow the channel's content; only `email` has an HTML
//! part (multipart/alternative). The Message-ID is derived from the row's `delivery_id`,
//! which is stable across retries, so a resend after an unclear outcome is the same
//! message to the recipient's mail system. The Date is the publication time, for the same
//! reason. `Auto-Submitted` and `X-Auto-Response-Suppress` keep out-of-office replies
//! away from the service management's mailbox.
//!
//! **Failures.** SMTP 5xx and an address that does not parse are permanent; everything
//! else (4xx, connection, TLS, timeouts, a server that lacks a required extension) is
//! transient. The reason carries the server's own text, never credentials.
//!
//! **Timeouts and the pool.** The connections are the relay's own pool
//! ([`super::smtp::SmtpPool`], `TCP_NODELAY`, a connection never outlives a send that was
//! cut short). Connecting is bounded by `smtp.timeout`; [`super::DeliveryWorker`] wraps
//! every whole send in `smtp.timeout` as well.

use std::sync::Arc;
use std::time::SystemTime;

use anyhow::Context as _;
use lettre::message::header::{HeaderName, HeaderValue};
use lettre::message::{Mailbox, MultiPart, SinglePart};
use lettre::transport::smtp::authentication::Credentials;
use lettre::transport::smtp::client::{Certificate, TlsParameters};
use lettre::{Address, AsyncFileTransport, AsyncTransport as _, Message, Tokio1Executor};

use crate::config::{ChannelConfig, ChannelContent, Config, SmtpUrl, StartTls};
use crate::notice::RenderedNotice;
use crate::storage::ClaimedDelivery;
use crate::swedish::single_line;

use super::DeliveryError;
use super::smtp::{Security, SendError, SmtpPool};

/// Longest subject line; the templates keep theirs far shorter.
const MAX_SUBJECT_CHARS: usize = 250;
/// Longest failure reason stored in the outbox: enough for any server's explanation.
const MAX_REASON_CHARS: usize = 500;

/// The SMTP server (with its connection pool) or the mail folder, shared by every email
/// channel. Cloning shares it.
#[derive(Clone)]
pub struct EmailTransport {
    inner: Arc<TransportInner>,
}

enum TransportInner {
    Smtp(Box<SmtpPool>),
    /// `file://FOLDER`: each message a file `UUID.eml` in the folder.
    File(AsyncFileTransport<Tokio1Executor>),
}

impl EmailTransport {
    /// Checks the SMTP settings (TLS parameters included) or creates the mail folder. No
    /// connection is opened until the first send.
    pub fn new(config: &Config) -> anyhow::Result<EmailTransport> {
        let details = &config.smtp.details;
        let inner = match &config.smtp.url {
            SmtpUrl::File { folder } => {
                std::fs::create_dir_all(folder).with_context(|| {
                    format!("cannot create the mail folder {}", folder.display())
                })?;
                TransportInner::File(AsyncFileTransport::<Tokio1Executor>::new(folder))
            }
            SmtpUrl::Smtp { host, port } | SmtpUrl::Smtps { host, port } => {
                let ca = details.ca_certificates_pem.as_deref();
                let starttls = |required: bool| -> anyhow::Result<Security> {
                    let mut builder = TlsParameters::builder(host.clone());
                    if let Some(pem) = ca {
                        builder = builder.add_root_certificate(
                            Certificate::from_pem(pem).context("smtp.ca_file")?,
                        );
                    }
                    let parameters = builder
                        .build()
                        .with_context(|| format!("cannot set up TLS for {host}"))?;
                    Ok(Security::StartTls {
                        parameters,
                        required,
                    })
                };
                let security = match (&config.smtp.url, details.starttls) {
                    (SmtpUrl::Smtps { .. }, _) => Security::implicit(host, ca)
                        .with_context(|| format!("cannot set up TLS for {host}"))?,
                    (_, StartTls::Opportunistic) => starttls(false)?,
                    (_, StartTls::Required) => starttls(true)?,
                    (_, StartTls::Never) => Security::Plain,
                };
                let credentials = details.credentials.as_ref().map(|(username, password)| {
                    Credentials::new(username.clone(), password.expose().to_owned())
                });
                TransportInner::Smtp(Box::new(SmtpPool::new(
                    host.clone(),
                    *port,
                    security,
                    credentials,
                    details.timeout,
                    details.pool_max_connections,
                )))
            }
        };
        Ok(EmailTransport {
            inner: Arc::new(inner),
        })
    }

    /// Sends one message (operator mail uses this directly), classifying a failure as
    /// [`EmailSender::send`] does. Callers wrap it in their own timeout (lettre's covers
    /// only connecting); a send cut short that way leaves no connection behind for reuse.
    pub async fn send(&self, message: Message) -> Result<(), DeliveryError> {
        match &*self.inner {
            TransportInner::File(transport) => match transport.send(message).await {
                Ok(_) => Ok(()),
                Err(error) => Err(DeliveryError::transient(bounded(&format!(
                    "cannot write the message file: {error}"
                )))),
            },
            TransportInner::Smtp(pool) => match pool.send(&message).await {
                Ok(response) => {
                    tracing::debug!(
                        server = %pool.server(),
                        code = %response.code(),
                        answer = %single_line(&response.message().collect::<Vec<_>>().join(" "), 200),
                        "message accepted"
                    );
                    Ok(())
                }
                Err(SendError::Smtp(error)) => Err(classify_smtp_error(&pool.server(), &error)),
                Err(SendError::Connect(reason)) => Err(DeliveryError::transient(bounded(
                    &format!("SMTP {}: {reason}", pool.server()),
                ))),
            },
        }
    }
}

/// Sends one channel's notices by email.
pub struct EmailSender {
    transport: EmailTransport,
    content: ChannelContent,
    from: Mailbox,
    reply_to: Mailbox,
    /// The right-hand side of every Message-ID: the sender's domain.
    message_id_domain: String,
}

impl EmailSender {
    pub fn new(
        config: &Config,
        channel: &ChannelConfig,
        transport: EmailTransport,
    ) -> anyhow::Result<EmailSender> {
        let details = &config.smtp.details;
        Ok(EmailSender {
            transport,
            content: channel.content,
            from: details.from.clone(),
            reply_to: details.reply_to.clone(),
            message_id_domain: details.from.email.domain().to_owned(),
        })
    }

    pub async fn send(&self, delivery: &ClaimedDelivery) -> Result<(), DeliveryError> {
        let message = self.message(delivery)?;
        self.transport.send(message).await
    }

    /// The message for one delivery. Fails (permanently) only when the recipient is not an
    /// address.
    pub fn message(&self, delivery: &ClaimedDelivery) -> Result<Message, DeliveryError> {
        self.build(delivery, &delivery.recipient, None)
    }

    /// The message for one delivery to a subscriber at `address`: the notice, then the
    /// `footer` (why they get it, and their link), with `List-Unsubscribe` pointing at
    /// `unsubscribe_url`, `List-Unsubscribe-Post` when `one_click` (RFC 8058), and a
    /// `List-Id`.
    pub fn subscriber_message(
        &self,
        delivery: &ClaimedDelivery,
        address: &str,
        footer: &str,
        unsubscribe_url: &str,
        list_id: &str,
        one_click: bool,
    ) -> Result<Message, DeliveryError> {
        self.build(
            delivery,
            address,
            Some(ListParts {
                footer,
                unsubscribe_url,
                list_id,
                one_click,
            }),
        )
    }

    fn build(
        &self,
        delivery: &ClaimedDelivery,
        address: &str,
        list: Option<ListParts<'_>>,
    ) -> Result<Message, DeliveryError> {
        let recipient: Address = address.trim().parse().map_err(|error| {
            DeliveryError::permanent(bounded(&format!(
                "{:?} is not an email address ({error})",
                delivery.recipient
            )))
        })?;
        let notice = &delivery.notice;
        let (subject, body) = channel_text(self.content, &notice.rendered);
        let mut builder = Message::builder()
            .from(self.from.clone())
            .reply_to(self.reply_to.clone())
            .to(Mailbox::new(None, recipient))
            .subject(single_line(subject, MAX_SUBJECT_CHARS))
            .message_id(Some(message_id(
                &delivery.delivery_id,
                &self.message_id_domain,
            )))
            .date(SystemTime::from(notice.published_at))
            .raw_header(header("Auto-Submitted", "auto-generated"))
            .raw_header(header("X-Auto-Response-Suppress", "All"))
            .raw_header(header("X-SAMSA-Incident", &notice.incident_id.to_string()))
            .raw_header(header("X-SAMSA-Notice", &notice.notice_id.to_string()));
        let footer = list.as_ref().map_or("", |list| list.footer);
        if let Some(list) = &list {
            // RFC 2369 and RFC 8058: an https URL that ends the subscription with one POST
            // of `List-Unsubscribe=One-Click`, no login, no confirmation page.
            builder = builder
                .raw_header(header(
                    "List-Unsubscribe",
                    &format!("<{}>", list.unsubscribe_url),
                ))
                .raw_header(header("List-Id", list.list_id));
            if list.one_click {
                builder = builder.raw_header(header(
                    "List-Unsubscribe-Post",
                    "List-Unsubscribe=One-Click",
                ));
            }
        }
        let built = match body {
            Body::Alternative { text, html } => {
                let html = if footer.is_empty() {
                    html.to_owned()
                } else {
                    format!("{html}\n<hr>\n{}", footer_html(footer))
                };
                builder.multipart(MultiPart::alternative_plain_html(
                    format!("{text}{footer}"),
                    html,
                ))
            }
            Body::Text(text) => builder.singlepart(SinglePart::plain(format!("{text}{footer}"))),
        };
        built.map_err(|error| {
            DeliveryError::permanent(bounded(&format!("cannot build the message: {error}")))
        })
    }
}

/// What a subscriber's message carries besides the notice.
struct ListParts<'a> {
    footer: &'a str,
    unsubscribe_url: &'a str,
    list_id: &'a str,
    /// `List-Unsubscribe-Post` too (the URL is https, or loopback).
    one_click: bool,
}

/// A plain-text footer as HTML paragraphs: escaped, with its links clickable.
fn footer_html(footer: &str) -> String {
    footer
        .trim()
        .lines()
        .filter(|line| !line.trim().is_empty() && line.trim() != "--")
        .map(|line| {
            let words: Vec<String> = line
                .split(' ')
                .map(|word| {
                    let escaped = escape_html(word);
                    if word.starts_with("https://") || word.starts_with("http://") {
                        format!("<a href=\"{escaped}\">{escaped}</a>")
                    } else {
                        escaped
                    }
                })
                .collect();
            format!("<p style=\"font-size:small\">{}</p>", words.join(" "))
        })
        .collect::<Vec<_>>()
        .join("\n")
}

fn escape_html(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

/// What a message carries: text, or text and HTML as alternatives.
enum Body<'a> {
    Text(&'a str),
    Alternative { text: &'a str, html: &'a str },
}

/// The subject and body of a notice for a channel's content.
fn channel_text(content: ChannelContent, rendered: &RenderedNotice) -> (&str, Body<'_>) {
    match content {
        ChannelContent::Email => (
            &rendered.email_subject,
            Body::Alternative {
                text: &rendered.email_text,
                html: &rendered.email_html,
            },
        ),
        ChannelContent::Itnytt => (&rendered.itnytt_title, Body::Text(&rendered.itnytt_body)),
        ChannelContent::Crisis => (&rendered.crisis_subject, Body::Text(&rendered.crisis_text)),
        ChannelContent::Website => (&rendered.website_title, Body::Text(&rendered.website_body)),
        ChannelContent::Newsletter => (
            &rendered.newsletter_title,
            Body::Text(&rendered.newsletter_body),
        ),
        ChannelContent::Banner => (&rendered.banner_text, Body::Text(&rendered.banner_text)),
    }
}

/// `<samsa-relay.DELIVERY_ID@DOMAIN>`: the same for every attempt of one delivery.
pub fn message_id(delivery_id: &str, domain: &str) -> String {
    format!("<samsa-relay.{delivery_id}@{domain}>")
}

fn header(name: &'static str, value: &str) -> HeaderValue {
    HeaderValue::new(
        HeaderName::new_from_ascii_str(name),
        single_line(value, MAX_SUBJECT_CHARS),
    )
}

/// 5xx is the server's final word; everything else may pass.
fn classify_smtp_error(server: &str, error: &lettre::transport::smtp::Error) -> DeliveryError {
    let reason = bounded(&format!("SMTP {server}: {error}"));
    if error.is_permanent() {
        DeliveryError::permanent(reason)
    } else {
        // 4xx, connection and I/O errors, TLS failures, malformed answers, and client
        // errors: a server that lacks STARTTLS under `required` or a shared AUTH
        // mechanism is fixed on the server or in the config, not in the message, so the
        // row waits for that with backoff instead of failing.
        DeliveryError::transient(reason)
    }
}

fn bounded(reason: &str) -> String {
    single_line(reason, MAX_REASON_CHARS)
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;
    use crate::notice::NoticeKind;
    use crate::storage::PublishedNoticeRecord;

    fn config(smtp: &str) -> Config {
        let text = format!(
            r#"
[webhook]
token = "a-token-of-sufficient-length"
[links]
secret = "a-link-secret-of-sufficient-length-0123456789"
[smtp]
{smtp}
from = "SAMSA förvaltning <noreply.samsa@samsa.example>"
reply_to = "SAMSA förvaltning <info.samsa@samsa.example>"
[channels.email]
content = "email"
transport = "email"
recipients = ["it@kommun.example"]
[channels.itnytt]
content = "itnytt"
transport = "email"
recipients = ["redaktion@itnytt.example"]
[plan]
level_1 = ["email", "itnytt"]
level_2 = ["email", "itnytt"]
level_3 = ["email", "itnytt"]
"#
        );
        Config::from_toml(&text, &BTreeMap::new()).expect("valid test config")
    }

    fn rendered() -> RenderedNotice {
        RenderedNotice {
            email_subject: "Störning i SAMSA\r\nBcc: someone@else.example".to_owned(),
            email_text: "Hej!\nSAMSA fungerar inte.".to_owned(),
            email_html: "<p>Hej!</p><p>SAMSA fungerar inte.</p>".to_owned(),
            banner_text: "Störning i SAMSA".to_owned(),
            website_title: "Störning (webb)".to_owned(),
            website_body: "Webbtext".to_owned(),
            newsletter_title: "Störning (nyhetsbrev)".to_owned(),
            newsletter_body: "Nyhetsbrevstext".to_owned(),
            itnytt_title: "IT-Nytt: störning i SAMSA".to_owned(),
            itnytt_body: "IT-Nytt-text".to_owned(),
            crisis_subject: "Kris".to_owned(),
            crisis_text: "Kristext".to_owned(),
        }
    }

    fn delivery(channel: &str, recipient: &str) -> ClaimedDelivery {
        let published_at: jiff::Timestamp = "2026-11-28T04:20:00Z".parse().unwrap();
        ClaimedDelivery {
            outbox_id: 7,
            channel: channel.to_owned(),
            recipient: recipient.to_owned(),
            delivery_id: "3-0123456789abcdef01234567".to_owned(),
            attempt: 1,
            created_at: published_at,
            reclaimed: false,
            notice: PublishedNoticeRecord {
                notice_id: 3,
                incident_id: 12,
                draft_id: 4,
                draft_version: 1,
                kind: NoticeKind::Initial,
                level: crate::classify::Level::One,
                decided_by: None,
                decided_role: None,
                published_by: "operatör".to_owned(),
                channels: vec![channel.to_owned()],
                rendered: rendered(),
                published_at,
            },
        }
    }

    fn sender(config: &Config, channel: &str, transport: EmailTransport) -> EmailSender {
        EmailSender::new(config, &config.channels[channel], transport).unwrap()
    }

    fn formatted(message: &Message) -> String {
        String::from_utf8(message.formatted()).unwrap()
    }

    #[test]
    fn an_email_notice_is_multipart_with_fixed_headers_and_a_single_line_subject() {
        let folder = tempfile::tempdir().unwrap();
        let config = config(&format!("url = \"file://{}\"", folder.path().display()));
        let transport = EmailTransport::new(&config).unwrap();
        let email = sender(&config, "email", transport);
        let message = email
            .message(&delivery("email", "it@kommun.example"))
            .unwrap();
        let text = formatted(&message);
        let headers = text.split("\r\n\r\n").next().unwrap();
        assert!(
            headers.contains("Message-ID: <samsa-relay.3-0123456789abcdef01234567@samsa.example>"),
            "{headers}"
        );
        assert!(headers.contains("To: it@kommun.example"), "{headers}");
        assert!(headers.contains("info.samsa@samsa.example"), "{headers}");
        assert!(
            headers.contains("Auto-Submitted: auto-generated"),
            "{headers}"
        );
        assert!(headers.contains("X-SAMSA-Incident: 12"), "{headers}");
        assert!(
            headers.contains("Date: Sat, 28 Nov 2026 04:20:00"),
            "{headers}"
        );
        assert!(headers.contains("multipart/alternative"), "{headers}");
        // The subject's line break became a space: no header was injected.
        assert!(!headers.contains("\r\nBcc:"), "{headers}");
        assert_eq!(
            message.envelope().to(),
            ["it@kommun.example".parse::<Address>().unwrap()]
        );
        assert_eq!(
            message.envelope().from(),
            Some(&"noreply.samsa@samsa.example".parse::<Address>().unwrap())
        );
    }

    #[test]
    fn other_contents_are_text_only_with_their_own_title() {
        let folder = tempfile::tempdir().unwrap();
        let config = config(&format!("url = \"file://{}\"", folder.path().display()));
        let transport = EmailTransport::new(&config).unwrap();
        let itnytt = sender(&config, "itnytt", transport);
        let message = itnytt
            .message(&delivery("itnytt", "redaktion@itnytt.example"))
            .unwrap();
        let text = formatted(&message);
        assert!(!text.contains("multipart"), "{text}");
        assert!(text.contains("Content-Type: text/plain"), "{text}");
        assert!(text.contains("IT-Nytt-text"), "{text}");
        for content in [
            ChannelContent::Website,
            ChannelContent::Newsletter,
            ChannelContent::Crisis,
            ChannelContent::Banner,
        ] {
            let rendered = rendered();
            let (subject, body) = channel_text(content, &rendered);
            assert!(!subject.is_empty());
            assert!(matches!(body, Body::Text(text) if !text.is_empty()));
        }
    }

    #[tokio::test]
    async fn an_unparsable_recipient_fails_permanently_and_the_file_transport_writes_one_file() {
        let folder = tempfile::tempdir().unwrap();
        let mail = folder.path().join("mail");
        let config = config(&format!("url = \"file://{}\"", mail.display()));
        let transport = EmailTransport::new(&config).unwrap();
        assert!(mail.is_dir(), "the mail folder is created up front");
        let email = sender(&config, "email", transport);
        let error = email
            .send(&delivery("email", "not an address"))
            .await
            .unwrap_err();
        assert!(
            matches!(&error, DeliveryError::Permanent { reason } if reason.contains("not an address")),
            "{error:?}"
        );
        email
            .send(&delivery("email", "it@kommun.example"))
            .await
            .unwrap();
        let files: Vec<_> = std::fs::read_dir(&mail).unwrap().collect();
        assert_eq!(files.len(), 1);
    }

    #[test]
    fn smtp_and_smtps_transports_are_set_up_without_connecting() {
        for smtp in [
            "url = \"smtp://127.0.0.1:2525\"\nstarttls = \"none\"",
            "url = \"smtp://127.0.0.1:2525\"\nstarttls = \"required\"",
            "url = \"smtps://mail.samsa.example:465\"\nusername = \"relay\"\npassword = \"secret\"",
        ] {
            let config = config(smtp);
            EmailTransport::new(&config).unwrap();
        }
    }
}
