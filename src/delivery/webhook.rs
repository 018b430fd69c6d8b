//! HTTP webhook delivery (reqwest). Being written: requests, bodies and their tests.

use std::time::Duration;

use crate::config::{ChannelConfig, Config};
use crate::storage::ClaimedDelivery;

use super::DeliveryError;

pub struct WebhookSender {}

impl WebhookSender {
    pub fn new(_config: &Config, _channel: &ChannelConfig) -> anyhow::Result<WebhookSender> {
        Ok(WebhookSender {})
    }

    pub fn timeout(&self) -> Duration {
        Duration::from_secs(10)
    }

    pub async fn send(&self, _delivery: &ClaimedDelivery) -> Result<(), DeliveryError> {
        Err(DeliveryError::transient(
            "webhook delivery is not built yet",
        ))
    }
}
