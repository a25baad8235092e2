//! The live picture that the web page and the metrics read: the bridge keeps it current through a
//! `watch` channel, so readers never wait on it and always see the newest state.

use std::collections::BTreeMap;

use crate::model::{BridgeStatus, SiteSnapshot};

/// Everything a status page needs, as of now.
#[derive(Debug, Clone, Default)]
pub struct Board {
    /// Whether an MQTT session is up.
    pub mqtt_connected: bool,
    /// How many times the MQTT connection was lost since start.
    pub mqtt_disconnects: u64,
    /// The newest snapshot of every bridged system.
    pub sites: BTreeMap<u64, SiteSnapshot>,
    /// The bridge's own state, once the poller has reported it.
    pub status: Option<BridgeStatus>,
}

impl Board {
    /// Why the bridge is unhealthy, or `None` when the MQTT session is up and the last poll did
    /// not fail for authorization.
    pub fn unhealthy(&self) -> Option<String> {
        if !self.mqtt_connected {
            return Some("the MQTT session is down".into());
        }
        match &self.status {
            Some(s) if !s.authorization_ok => Some(format!(
                "Enphase authorization needed: {}",
                s.authorization_error.as_deref().unwrap_or("the tokens were refused")
            )),
            _ => None,
        }
    }
}

/// The sending half, owned by the bridge.
pub type BoardSender = tokio::sync::watch::Sender<Board>;
/// The reading half, for the web page.
pub type BoardReceiver = tokio::sync::watch::Receiver<Board>;

/// A new, empty board.
pub fn board() -> (BoardSender, BoardReceiver) {
    tokio::sync::watch::channel(Board::default())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::enlighten::Plan;

    #[test]
    fn healthy_only_with_mqtt_up_and_authorization_ok() {
        let mut b = Board::default();
        assert_eq!(b.unhealthy().as_deref(), Some("the MQTT session is down"));
        b.mqtt_connected = true;
        assert_eq!(b.unhealthy(), None);
        let mut status = BridgeStatus::new(Plan::Watt);
        status.authorization_ok = false;
        status.authorization_error = Some("refresh refused".into());
        b.status = Some(status);
        assert_eq!(b.unhealthy().as_deref(), Some("Enphase authorization needed: refresh refused"));
    }
}
