//! Email delivery (lettre). Being written: the SMTP transport, messages and their tests.

use crate::config::{ChannelConfig, Config};
use crate::storage::ClaimedDelivery;

use super::DeliveryError;

/// The SMTP (or file) transport, shared by every email channel.
#[derive(Clone)]
pub struct EmailTransport {}

impl EmailTransport {
    pub fn new(_config: &Config) -> anyhow::Result<EmailTransport> {
        Ok(EmailTransport {})
    }
}

pub struct EmailSender {}

impl EmailSender {
    pub fn new(
        _config: &Config,
        _channel: &ChannelConfig,
        _transport: EmailTransport,
    ) -> anyhow::Result<EmailSender> {
        Ok(EmailSender {})
    }

    pub async fn send(&self, _delivery: &ClaimedDelivery) -> Result<(), DeliveryError> {
        Err(DeliveryError::transient("email delivery is not built yet"))
    }
}
