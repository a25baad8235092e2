//! The bridge: site snapshots and MQTT events in, MQTT publishes out. It remembers what it has
//! announced, so it publishes only what changed, clears what is gone, announces everything again
//! after every (re)connect and every Home Assistant birth message, and clears orphaned discovery
//! configs left by earlier runs.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use rumqttc::{AsyncClient, QoS};
use serde::Deserialize;
use tokio::sync::mpsc;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use crate::config::DiscoveryMode;
use crate::home_assistant::{Message, Topics, discovery, state};
use crate::model::{BridgeStatus, SiteSnapshot};
use crate::mqtt::MqttEvent;
use crate::status::{self, BoardReceiver, BoardSender};

/// What the rest of the program tells the bridge.
#[derive(Debug, Clone)]
pub enum BridgeInput {
    /// Every system now bridged; systems missing from the list are removed from MQTT.
    Sites(Vec<SiteSnapshot>),
    /// One system's newest snapshot.
    Site(Box<SiteSnapshot>),
    /// The bridge's own state (budget, authorization, next polls).
    Status(BridgeStatus),
    /// A one-off message (intervals, refresh answers): sent if connected, not remembered.
    Publish(Message),
}

/// A "poll now" request from `<base>/bridge/request/refresh`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RefreshRequest {
    /// One system, or all when `None`.
    pub system_id: Option<u64>,
}

/// How the bridge publishes.
#[derive(Debug, Clone)]
pub struct BridgeOptions {
    /// Our topics.
    pub topics: Topics,
    /// Publish Home Assistant discovery configs.
    pub discovery: bool,
    /// Per entity, or per device.
    pub mode: DiscoveryMode,
    /// How long to collect retained discovery configs at start-up before clearing orphans.
    pub cleanup_window: Duration,
}

/// What is published for one system: topic → a hash of the payload, enough to tell a change.
/// (Discovery configs are large: keeping every payload of a thousand systems took tens of MiB.
/// When everything must go out again, the payloads are rebuilt from the newest snapshots.)
#[derive(Debug, Default, Clone)]
struct Published {
    configs: BTreeMap<String, u64>,
    states: BTreeMap<String, u64>,
}

/// The bridge's own configs and states, kept whole (a handful).
#[derive(Debug, Default, Clone)]
struct Own {
    configs: BTreeMap<String, String>,
    states: BTreeMap<String, String>,
}

/// The bridge's memory.
pub struct Bridge {
    client: AsyncClient,
    opts: BridgeOptions,
    refresh: Option<mpsc::Sender<RefreshRequest>>,
    sites: BTreeMap<u64, Published>,
    /// Whether a full list of sites has arrived (orphans are only judged after it has).
    sites_known: bool,
    bridge: Own,
    /// Topics to clear (empty retained) as soon as a session is up.
    pending_clear: BTreeSet<String>,
    connected: bool,
    ever_connected: bool,
    /// Start-up orphan search: until when to collect, and what was found.
    cleanup_until: Option<Instant>,
    cleanup_seen: BTreeSet<String>,
    cleanup_done: bool,
    /// Set when a publish could not be queued: publish everything on the next occasion.
    resync: bool,
    /// The live picture for the web page.
    board: BoardSender,
}

impl Bridge {
    /// A bridge publishing through `client`; refresh requests go to `refresh` when a poller runs.
    pub fn new(client: AsyncClient, opts: BridgeOptions, refresh: Option<mpsc::Sender<RefreshRequest>>) -> Self {
        let mut bridge = Self {
            client,
            opts,
            refresh,
            sites: BTreeMap::new(),
            sites_known: false,
            bridge: Own::default(),
            pending_clear: BTreeSet::new(),
            connected: false,
            ever_connected: false,
            cleanup_until: None,
            cleanup_seen: BTreeSet::new(),
            cleanup_done: false,
            resync: false,
            board: status::board().0,
        };
        if bridge.opts.discovery {
            bridge.bridge.configs = to_map(discovery::bridge_configs(&bridge.opts.topics, bridge.opts.mode));
        }
        bridge
    }

    /// A reader of the live picture (sites, bridge status, MQTT session).
    pub fn board(&self) -> BoardReceiver {
        self.board.subscribe()
    }

    /// Runs until `shutdown`, then publishes `offline` and disconnects cleanly.
    pub async fn run(
        mut self,
        mut inputs: mpsc::Receiver<BridgeInput>,
        mut events: mpsc::UnboundedReceiver<MqttEvent>,
        shutdown: CancellationToken,
    ) {
        let mut inputs_open = true;
        let mut resync_tick = tokio::time::interval(Duration::from_secs(30));
        loop {
            let cleanup_at = self.cleanup_until;
            tokio::select! {
                _ = shutdown.cancelled() => break,
                event = events.recv() => match event {
                    Some(event) => self.on_event(event),
                    None => break,
                },
                input = inputs.recv(), if inputs_open => match input {
                    Some(input) => self.on_input(input),
                    None => inputs_open = false,
                },
                _ = sleep_until_opt(cleanup_at) => self.finish_cleanup_window(),
                _ = resync_tick.tick() => if self.resync { self.publish_everything() },
            }
        }
        self.goodbye().await;
    }

    /// Handles one MQTT event.
    pub fn on_event(&mut self, event: MqttEvent) {
        match event {
            MqttEvent::Connected => {
                self.board.send_modify(|b| b.mqtt_connected = true);
                self.on_connected()
            }
            MqttEvent::Disconnected { .. } => {
                if self.connected {
                    self.board.send_modify(|b| {
                        b.mqtt_connected = false;
                        b.mqtt_disconnects += 1;
                    });
                }
                self.connected = false
            }
            MqttEvent::Message { topic, payload, retain } => self.on_message(topic, payload, retain),
        }
    }

    fn on_connected(&mut self) {
        self.connected = true;
        // A clean session forgets subscriptions: subscribe after every ConnAck.
        self.subscribe(self.opts.topics.hass_status());
        self.subscribe(self.opts.topics.refresh_request());
        if !self.ever_connected {
            self.ever_connected = true;
            for filter in self.cleanup_filters() {
                self.subscribe(filter);
            }
            self.cleanup_until = Some(Instant::now() + self.opts.cleanup_window);
        }
        for topic in std::mem::take(&mut self.pending_clear) {
            self.send(&topic, "", true);
        }
        self.publish_everything();
    }

    fn on_message(&mut self, topic: String, payload: Vec<u8>, retain: bool) {
        let topics = &self.opts.topics;
        if topic == topics.hass_status() {
            // A retained "online" is a replay from the broker, not Home Assistant starting.
            if payload == b"online" && !retain {
                tracing::info!("Home Assistant came online: announcing again");
                self.publish_everything();
            }
        } else if topic == topics.refresh_request() {
            self.on_refresh(&payload);
        } else if self.cleanup_until.is_some()
            && retain
            && !payload.is_empty()
            && (topics.is_our_discovery_topic(&topic) || self.is_our_site_topic(&topic))
        {
            self.cleanup_seen.insert(topic);
        }
    }

    fn on_refresh(&mut self, payload: &[u8]) {
        #[derive(Deserialize)]
        #[serde(deny_unknown_fields)]
        struct Body {
            system_id: Option<u64>,
        }
        let text = String::from_utf8_lossy(payload);
        let request = if text.trim().is_empty() {
            Ok(RefreshRequest { system_id: None })
        } else {
            serde_json::from_str::<Body>(&text)
                .map(|b| RefreshRequest { system_id: b.system_id })
                .map_err(|_| "the payload must be empty or {\"system_id\": N}".to_string())
        };
        let answer = match (request, &self.refresh) {
            (Err(reason), _) => Some(reason),
            (Ok(_), None) => Some("polling is not running".to_string()),
            (Ok(req), Some(tx)) => match tx.try_send(req) {
                // The poller answers itself, with what it did.
                Ok(()) => None,
                Err(_) => Some("a refresh is already waiting".to_string()),
            },
        };
        if let Some(reason) = answer {
            let body = serde_json::json!({ "ok": false, "reason": reason }).to_string();
            let topic = self.opts.topics.refresh_response();
            self.send(&topic, &body, false);
        }
    }

    /// Handles one input from the poller.
    pub fn on_input(&mut self, input: BridgeInput) {
        match input {
            BridgeInput::Sites(list) => {
                let keep: BTreeSet<u64> = list.iter().map(|s| s.system_id).collect();
                let gone: Vec<u64> = self.sites.keys().filter(|id| !keep.contains(id)).copied().collect();
                self.board.send_modify(|b| {
                    b.sites = list.iter().map(|s| (s.system_id, s.clone())).collect();
                });
                for id in gone {
                    tracing::info!(system_id = id, "system no longer bridged: removing its entities");
                    if let Some(old) = self.sites.remove(&id) {
                        for topic in old.configs.keys().chain(old.states.keys()) {
                            self.clear(topic.clone());
                        }
                    }
                }
                for site in &list {
                    self.update_site(site);
                }
                self.sites_known = true;
                if self.cleanup_until.is_none() && self.ever_connected {
                    self.finish_cleanup_window();
                }
            }
            BridgeInput::Site(site) => {
                self.update_site(&site);
                self.board.send_modify(|b| {
                    b.sites.insert(site.system_id, *site);
                });
            }
            BridgeInput::Status(status) => {
                self.board.send_modify(|b| b.status = Some(status.clone()));
                let info = state::bridge_info(&status, &self.opts.topics);
                let old = self.bridge.states.insert(info.topic.clone(), info.payload.clone());
                if self.connected && old.as_ref() != Some(&info.payload) {
                    self.send(&info.topic, &info.payload, info.retain);
                }
            }
            BridgeInput::Publish(msg) => {
                if self.connected {
                    self.send(&msg.topic, &msg.payload, msg.retain);
                }
            }
        }
    }

    /// A site's discovery configs and states, topic → payload.
    fn site_messages(&self, site: &SiteSnapshot) -> (BTreeMap<String, String>, BTreeMap<String, String>) {
        let topics = &self.opts.topics;
        let configs = if self.opts.discovery {
            to_map(discovery::site_configs(site, topics, self.opts.mode))
        } else {
            BTreeMap::new()
        };
        (configs, to_map(state::site_states(site, topics)))
    }

    /// Publishes what changed for one site and clears what it no longer has.
    fn update_site(&mut self, site: &SiteSnapshot) {
        let (configs, states) = self.site_messages(site);
        let old = self.sites.remove(&site.system_id).unwrap_or_default();
        for topic in old.configs.keys().filter(|t| !configs.contains_key(*t)) {
            self.clear(topic.clone());
        }
        for topic in old.states.keys().filter(|t| !states.contains_key(*t)) {
            self.clear(topic.clone());
        }
        if self.connected {
            for (topic, payload) in &configs {
                if old.configs.get(topic) != Some(&hash(payload)) {
                    self.send(topic, payload, true);
                }
            }
            for (topic, payload) in &states {
                if old.states.get(topic) != Some(&hash(payload)) {
                    self.send(topic, payload, true);
                }
            }
        }
        let hashed = |m: BTreeMap<String, String>| m.into_iter().map(|(t, p)| (t, hash(&p))).collect();
        self.sites.insert(site.system_id, Published { configs: hashed(configs), states: hashed(states) });
    }

    /// Clears a retained topic now, or as soon as a session is up.
    fn clear(&mut self, topic: String) {
        if self.connected {
            self.send(&topic, "", true);
        } else {
            self.pending_clear.insert(topic);
        }
    }

    /// Discovery configs, then availability, then every state.
    fn publish_everything(&mut self) {
        if !self.connected {
            return;
        }
        self.resync = false;
        // The payloads of every site, rebuilt from the snapshots they were made from.
        let snapshots: Vec<SiteSnapshot> = {
            let board = self.board.borrow();
            self.sites.keys().filter_map(|id| board.sites.get(id).cloned()).collect()
        };
        let own = self.bridge.clone();
        let sites: Vec<_> = snapshots.iter().map(|s| self.site_messages(s)).collect();
        for (topic, payload) in own.configs.iter().chain(sites.iter().flat_map(|(c, _)| c.iter())) {
            self.send(topic, payload, true);
        }
        let availability = self.opts.topics.bridge_availability();
        self.send(&availability, "online", true);
        for (topic, payload) in own.states.iter().chain(sites.iter().flat_map(|(_, s)| s.iter())) {
            self.send(topic, payload, true);
        }
    }

    /// At the end of the start-up window: clear our retained configs that this run does not produce.
    fn finish_cleanup_window(&mut self) {
        if let Some(until) = self.cleanup_until
            && Instant::now() < until
        {
            return;
        }
        if self.cleanup_until.take().is_some() {
            for filter in self.cleanup_filters() {
                let _ = self.client.try_unsubscribe(filter);
            }
        }
        if self.cleanup_done || !self.sites_known {
            return;
        }
        self.cleanup_done = true;
        let current: BTreeSet<&String> = self
            .bridge
            .configs
            .keys()
            .chain(self.sites.values().flat_map(|p| p.configs.keys().chain(p.states.keys())))
            .collect();
        let orphans: Vec<String> =
            std::mem::take(&mut self.cleanup_seen).into_iter().filter(|t| !current.contains(t)).collect();
        if !orphans.is_empty() {
            tracing::info!(count = orphans.len(), "clearing retained configs and states this run no longer produces");
        }
        for topic in orphans {
            self.clear(topic);
        }
    }

    /// What to read at start-up to find what earlier runs left: our discovery configs, and the
    /// retained per-system topics under the base topic.
    fn cleanup_filters(&self) -> Vec<String> {
        let base = self.opts.topics.base();
        let mut filters = self.opts.topics.discovery_filters();
        filters.extend([
            format!("{base}/+/state"),
            format!("{base}/+/availability"),
            format!("{base}/+/inverters/+/state"),
        ]);
        filters
    }

    /// A retained per-system topic (`<base>/<id>/…`), not one of the bridge's own.
    fn is_our_site_topic(&self, topic: &str) -> bool {
        let Some(rest) = topic.strip_prefix(self.opts.topics.base()).and_then(|r| r.strip_prefix('/')) else {
            return false;
        };
        rest.split('/').next().is_some_and(|id| !id.is_empty() && id.bytes().all(|b| b.is_ascii_digit()))
    }

    fn subscribe(&self, filter: String) {
        if let Err(err) = self.client.try_subscribe(filter.clone(), QoS::AtLeastOnce) {
            tracing::warn!(filter, error = %err, "could not subscribe");
        }
    }

    fn send(&mut self, topic: &str, payload: &str, retain: bool) {
        if let Err(err) = self.client.try_publish(topic, QoS::AtLeastOnce, retain, payload.as_bytes().to_vec()) {
            // The queue is full (a broker much slower than us): publish everything again later.
            if !self.resync {
                tracing::warn!(topic, error = %err, "MQTT queue full; will publish everything again");
            }
            self.resync = true;
        }
    }

    /// Publishes `offline` and disconnects, so Home Assistant marks everything unavailable at once.
    async fn goodbye(&mut self) {
        if !self.connected {
            return;
        }
        let topic = self.opts.topics.bridge_availability();
        let _ = self.client.publish(topic, QoS::AtLeastOnce, true, "offline").await;
        let _ = self.client.disconnect().await;
    }

    /// Whether a publish failed to queue since the last full publish.
    pub fn needs_resync(&self) -> bool {
        self.resync
    }
}

/// A payload's fingerprint, to tell whether it changed since it was published.
fn hash(payload: &str) -> u64 {
    use std::hash::{Hash, Hasher};
    let mut h = std::collections::hash_map::DefaultHasher::new();
    payload.hash(&mut h);
    h.finish()
}

fn to_map(messages: Vec<Message>) -> BTreeMap<String, String> {
    messages.into_iter().map(|m| (m.topic, m.payload)).collect()
}

async fn sleep_until_opt(deadline: Option<Instant>) {
    match deadline {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}
