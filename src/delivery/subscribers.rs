//! Notices to subscribers: the outbox row names the subscriber (`subscriber:ID`), never
//! the address, so the sender looks the subscription up when it sends. A subscription
//! that ended (or was deleted, or suspended) since the notice was published gets nothing
//! ([`DeliveryError::Cancelled`]). Every message says why the subscriber gets it, links to
//! their own page (change, end, delete), and carries the RFC 8058 one-click headers.

use std::sync::Arc;

use crate::config::Config;
use crate::links::{LinkSigner, SubscriptionAction, SubscriptionClaims};
use crate::storage::{ClaimedDelivery, Storage};
use crate::subscription::{SubscriberState, subscriber_of_recipient};

use super::DeliveryError;
use super::email::{EmailSender, EmailTransport};

/// Sends one channel's notices to its subscribers.
pub struct SubscriberSender {
    email: EmailSender,
    transport: EmailTransport,
    storage: Storage,
    signer: LinkSigner,
    config: Arc<Config>,
    list_id: String,
    /// RFC 8058 one-click needs an https URL: with a plain http public URL (other than
    /// loopback) the mails carry the link without `List-Unsubscribe-Post`.
    one_click: bool,
}

impl SubscriberSender {
    pub fn new(
        config: &Config,
        channel: &crate::config::ChannelConfig,
        transport: EmailTransport,
        storage: Storage,
    ) -> anyhow::Result<SubscriberSender> {
        let domain = config.smtp.details.from.email.domain().to_owned();
        let service = &config.notices.service_name;
        Ok(SubscriberSender {
            email: EmailSender::new(config, channel, transport.clone())?,
            transport,
            storage,
            signer: LinkSigner::new(&config.links.secret),
            list_id: format!(
                "Driftinformation om {service} <{}.driftinformation.{domain}>",
                crate::inventory::slug(service)
            ),
            one_click: config.server.public_url.scheme() == "https"
                || crate::config::is_loopback_url(&config.server.public_url),
            config: Arc::new(config.clone()),
        })
    }

    pub async fn send(&self, delivery: &ClaimedDelivery) -> Result<(), DeliveryError> {
        let Some(subscriber_id) = subscriber_of_recipient(&delivery.recipient) else {
            return Err(DeliveryError::permanent(format!(
                "{:?} is not a subscriber",
                delivery.recipient
            )));
        };
        let subscriber = match self.storage.subscriber(subscriber_id).await {
            Ok(Some(subscriber)) if subscriber.state == SubscriberState::Confirmed => subscriber,
            Ok(_) => {
                return Err(DeliveryError::Cancelled {
                    reason: crate::storage::CANCELLED_DELIVERY.to_owned(),
                });
            }
            Err(error) => {
                return Err(DeliveryError::transient(format!(
                    "cannot read the subscription: {error}"
                )));
            }
        };
        let token = self.signer.sign_subscription(&SubscriptionClaims {
            action: SubscriptionAction::Manage,
            subscriber_id,
            nonce: subscriber.nonce.clone(),
            expires_at: None,
        });
        let config = &self.config;
        let manage_url = config.public_link(&format!("/public/subscription/{token}"));
        let unsubscribe_url =
            config.public_link(&format!("/public/subscription/{token}/unsubscribe"));
        let footer = footer(
            &config.notices.service_name,
            &subscriber.choices.describe(&config.inventory),
            &manage_url,
        );
        let message = self.email.subscriber_message(
            delivery,
            &subscriber.address,
            &footer,
            &unsubscribe_url,
            &self.list_id,
            self.one_click,
        )?;
        self.transport.send(message).await
    }
}

/// What ends every subscriber's message, in Swedish.
pub fn footer(service: &str, choices: &str, manage_url: &str) -> String {
    format!(
        "\n\n--\nDu får det här meddelandet för att du prenumererar på driftinformation om {service}: {choices}.\n\
         Ändra dina val, avsluta prenumerationen eller radera dina uppgifter:\n{manage_url}\n"
    )
}
