//! The MQTT connection: options with the last will, TLS, and the task that owns the rumqttc event
//! loop, reconnecting with capped exponential backoff and jitter. Knows nothing about solar: it
//! turns broker traffic into [`MqttEvent`]s for the bridge.

use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use backon::{BackoffBuilder, ExponentialBuilder};
use rumqttc::{
    AsyncClient, Event, EventLoop, LastWill, MqttOptions, Outgoing, Packet, QoS, TlsConfiguration, Transport,
};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use crate::config::{MqttConfig, TlsConfig};

/// What the connection task reports to the bridge.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MqttEvent {
    /// A session is up (after every ConnAck): subscribe and publish everything again.
    Connected,
    /// The connection was lost; the task is waiting before it tries again.
    Disconnected {
        /// Why, in one line.
        reason: String,
        /// How long until the next attempt.
        retry_in: Duration,
    },
    /// A message on a topic we subscribed to.
    Message {
        /// The topic.
        topic: String,
        /// The payload.
        payload: Vec<u8>,
        /// Whether the broker sent it as a retained message.
        retain: bool,
    },
}

/// A session that lasted this long starts the reconnect delays over when it ends.
const STABLE_SESSION: Duration = Duration::from_secs(60);

/// The reconnect delays: 1 s doubling up to 150 s, each with up to 100 % jitter added (so 1–2 s
/// at first and 150–300 s at most), started over after a session of `STABLE_SESSION`. The jitter
/// keeps a fleet of bridges from hammering a broker that comes back.
pub fn reconnect_backoff() -> impl Iterator<Item = Duration> {
    ExponentialBuilder::new()
        .with_min_delay(Duration::from_secs(1))
        .with_max_delay(Duration::from_secs(150))
        .with_factor(2.0)
        .with_jitter()
        .without_max_times()
        .build()
}

/// Broker options: client id, credentials, keep-alive, TLS, and the retained last will
/// `offline` on `availability_topic`.
pub fn options(cfg: &MqttConfig, availability_topic: &str) -> anyhow::Result<MqttOptions> {
    let mut opts = MqttOptions::new(cfg.client_id.clone(), cfg.host.clone(), cfg.port);
    opts.set_keep_alive(Duration::from_secs(cfg.keep_alive_secs));
    opts.set_clean_session(true);
    opts.set_max_packet_size(1024 * 1024, 1024 * 1024);
    opts.set_last_will(LastWill::new(availability_topic, "offline", QoS::AtLeastOnce, true));
    if let Some(user) = &cfg.username {
        let password = cfg.password.as_ref().map(|p| p.expose().to_string()).unwrap_or_default();
        opts.set_credentials(user.clone(), password);
    }
    if let Some(tls) = &cfg.tls {
        opts.set_transport(Transport::Tls(TlsConfiguration::Rustls(Arc::new(rustls_config(tls)?))));
    }
    Ok(opts)
}

/// Reads the TLS files as a connection would: `Err` names the `mqtt.tls` key at fault.
pub fn tls_material(tls: &TlsConfig) -> anyhow::Result<()> {
    rustls_config(tls).map(|_| ())
}

/// A rustls client config: the CA file or the system's roots, and an optional client certificate.
fn rustls_config(tls: &TlsConfig) -> anyhow::Result<rustls::ClientConfig> {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let mut roots = rustls::RootCertStore::empty();
    match &tls.ca_file {
        Some(path) => {
            let pem = std::fs::read(path).with_context(|| format!("mqtt.tls.ca_file: reading {}", path.display()))?;
            let mut added = 0;
            for cert in rustls_pemfile::certs(&mut pem.as_slice()) {
                let cert = cert.with_context(|| format!("mqtt.tls.ca_file: {} is not PEM", path.display()))?;
                roots.add(cert).with_context(|| format!("mqtt.tls.ca_file: bad certificate in {}", path.display()))?;
                added += 1;
            }
            anyhow::ensure!(added > 0, "mqtt.tls.ca_file: no certificate in {}", path.display());
        }
        None => {
            let found = rustls_native_certs::load_native_certs();
            for cert in found.certs {
                let _ = roots.add(cert);
            }
            anyhow::ensure!(!roots.is_empty(), "mqtt.tls: no system root certificates found; set mqtt.tls.ca_file");
        }
    }
    let builder = rustls::ClientConfig::builder().with_root_certificates(roots);
    let config = match (&tls.client_cert, &tls.client_key) {
        (Some(cert_path), Some(key_path)) => {
            let pem = std::fs::read(cert_path)
                .with_context(|| format!("mqtt.tls.client_cert: reading {}", cert_path.display()))?;
            let certs = rustls_pemfile::certs(&mut pem.as_slice())
                .collect::<Result<Vec<_>, _>>()
                .with_context(|| format!("mqtt.tls.client_cert: {} is not PEM", cert_path.display()))?;
            let key_pem = std::fs::read(key_path)
                .with_context(|| format!("mqtt.tls.client_key: reading {}", key_path.display()))?;
            let key = rustls_pemfile::private_key(&mut key_pem.as_slice())
                .ok()
                .flatten()
                .with_context(|| format!("mqtt.tls.client_key: no private key in {}", key_path.display()))?;
            builder.with_client_auth_cert(certs, key).context("mqtt.tls: client certificate and key do not match")?
        }
        _ => builder.with_no_client_auth(),
    };
    Ok(config)
}

/// How many requests may wait for the event loop.
pub const REQUEST_QUEUE: usize = 65_536;

/// Builds the client handle and its event loop.
pub fn connect(cfg: &MqttConfig, availability_topic: &str) -> anyhow::Result<(AsyncClient, EventLoop)> {
    let opts = options(cfg, availability_topic)?;
    // Room for a full announcement of a large fleet; the bridge never blocks on a full queue.
    Ok(AsyncClient::new(opts, REQUEST_QUEUE))
}

/// Owns the event loop: polls it (which is what reconnects), paces reconnects, and reports to
/// `events` (unbounded, so that this task never waits on the bridge while the bridge waits on it). Returns once the bridge's `disconnect()` has gone out, or, when cancelled, as soon as
/// it is waiting to reconnect (there is nobody to say goodbye to).
pub async fn run(mut eventloop: EventLoop, events: mpsc::UnboundedSender<MqttEvent>, shutdown: CancellationToken) {
    let mut backoff = reconnect_backoff();
    let mut connected = false;
    // When the session now up began: the delays start over only after a session that lasted (a
    // broker that drops us right after every ConnAck, say for a packet it will not take, must
    // not be hit every second).
    let mut session_since: Option<tokio::time::Instant> = None;
    loop {
        let polled = tokio::select! {
            polled = eventloop.poll() => polled,
            // Cancelled while no session is up: nothing will send a Disconnect.
            _ = shutdown.cancelled(), if !connected => return,
        };
        match polled {
            Ok(Event::Incoming(Packet::ConnAck(_))) => {
                session_since = Some(tokio::time::Instant::now());
                connected = true;
                tracing::info!("connected to the MQTT broker");
                if events.send(MqttEvent::Connected).is_err() {
                    return;
                }
            }
            Ok(Event::Incoming(Packet::Publish(p))) => {
                let event = MqttEvent::Message { topic: p.topic, payload: p.payload.to_vec(), retain: p.retain };
                if events.send(event).is_err() {
                    return;
                }
            }
            Ok(Event::Outgoing(Outgoing::Disconnect)) => {
                tracing::debug!("MQTT disconnect sent");
                return;
            }
            Ok(_) => {}
            Err(err) => {
                connected = false;
                if session_since.take().is_some_and(|since| since.elapsed() >= STABLE_SESSION) {
                    backoff = reconnect_backoff();
                }
                let retry_in = backoff.next().unwrap_or(Duration::from_secs(300));
                let (host, port) = eventloop.mqtt_options.broker_address();
                tracing::warn!(error = %err, retry_in = ?retry_in, "MQTT connection lost{}", hint(&err, &host, port));
                let _ = events.send(MqttEvent::Disconnected { reason: err.to_string(), retry_in });
                tokio::select! {
                    _ = shutdown.cancelled() => return,
                    _ = tokio::time::sleep(retry_in) => {}
                }
            }
        }
    }
}

/// Which config keys a connection failure points at, when it points at some.
fn hint(err: &rumqttc::ConnectionError, host: &str, port: u16) -> String {
    use rumqttc::{ConnectReturnCode, ConnectionError};
    match err {
        ConnectionError::ConnectionRefused(
            ConnectReturnCode::BadUserNamePassword | ConnectReturnCode::NotAuthorized,
        ) => " (the broker refused the login: check mqtt.username and mqtt.password)".into(),
        ConnectionError::ConnectionRefused(ConnectReturnCode::BadClientId) => {
            " (the broker refused the client id: check mqtt.client_id)".into()
        }
        ConnectionError::Io(_) | ConnectionError::NetworkTimeout | ConnectionError::FlushTimeout => {
            format!(" (broker {host}:{port}: check mqtt.host and mqtt.port, and that the broker runs)")
        }
        ConnectionError::Tls(_) => " (check mqtt.tls and the broker's certificate)".into(),
        _ => String::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_failed_connection_names_the_keys_to_check() {
        use rumqttc::{ConnectReturnCode, ConnectionError};
        let refused = ConnectionError::ConnectionRefused(ConnectReturnCode::NotAuthorized);
        assert!(hint(&refused, "h", 1883).contains("mqtt.username and mqtt.password"));
        let io = ConnectionError::Io(std::io::Error::new(std::io::ErrorKind::ConnectionRefused, "refused"));
        assert_eq!(
            hint(&io, "broker", 1884),
            " (broker broker:1884: check mqtt.host and mqtt.port, and that the broker runs)"
        );
    }

    #[test]
    fn backoff_grows_with_jitter_and_stays_under_five_minutes() {
        let delays: Vec<Duration> = reconnect_backoff().take(12).collect();
        assert!(delays[0] >= Duration::from_secs(1) && delays[0] <= Duration::from_secs(2), "{delays:?}");
        assert!(delays[3] >= Duration::from_secs(8), "{delays:?}");
        assert!(delays.iter().all(|d| *d <= Duration::from_secs(300)), "never above five minutes: {delays:?}");
        assert!(delays[11] >= Duration::from_secs(150), "reaches the cap: {delays:?}");
    }
}
