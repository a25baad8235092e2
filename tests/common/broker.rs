//! A real Mosquitto per test on a free loopback port, and a small MQTT client for reading back
//! what the bridge left on the broker.
#![allow(dead_code)]

use std::collections::BTreeMap;
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use rumqttc::{AsyncClient, Event, MqttOptions, Packet, QoS};

/// Where Debian puts the broker; `.ci/run` installs it.
fn mosquitto_binary() -> PathBuf {
    for candidate in ["/usr/sbin/mosquitto", "/usr/bin/mosquitto", "/usr/local/sbin/mosquitto"] {
        if Path::new(candidate).exists() {
            return PathBuf::from(candidate);
        }
    }
    PathBuf::from("mosquitto")
}

/// TLS files for a broker listener.
#[derive(Clone, Debug)]
pub struct BrokerTls {
    pub ca: PathBuf,
    pub cert: PathBuf,
    pub key: PathBuf,
}

/// A running Mosquitto, killed when dropped.
pub struct Broker {
    pub port: u16,
    dir: tempfile::TempDir,
    tls: Option<BrokerTls>,
    child: Option<Child>,
}

/// A loopback port nothing listens on. It is free when asked and bound later by whatever gets
/// it, and the tests of one binary run in parallel: so a port is handed out at most once per
/// binary, or two tests could end up talking to one broker or one bridge.
pub fn free_port() -> u16 {
    static GIVEN: std::sync::Mutex<Vec<u16>> = std::sync::Mutex::new(Vec::new());
    let mut given = GIVEN.lock().unwrap_or_else(|e| e.into_inner());
    loop {
        let port = TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        if !given.contains(&port) {
            given.push(port);
            return port;
        }
    }
}

impl Broker {
    /// Starts a plain broker on a free port.
    pub fn start() -> Self {
        Self::start_with(free_port(), None)
    }

    /// Starts a broker on `port`, with TLS when given.
    pub fn start_with(port: u16, tls: Option<BrokerTls>) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let mut broker = Self { port, dir, tls, child: None };
        broker.spawn();
        broker
    }

    fn spawn(&mut self) {
        let conf = self.dir.path().join("mosquitto.conf");
        let mut text = format!(
            "listener {} 127.0.0.1\nallow_anonymous true\npersistence false\nlog_dest file {}\n",
            self.port,
            self.dir.path().join("mosquitto.log").display()
        );
        if let Some(tls) = &self.tls {
            text += &format!(
                "cafile {}\ncertfile {}\nkeyfile {}\n",
                tls.ca.display(),
                tls.cert.display(),
                tls.key.display()
            );
        }
        std::fs::write(&conf, text).unwrap();
        let child = Command::new(mosquitto_binary())
            .arg("-c")
            .arg(&conf)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("mosquitto starts (apt-get install mosquitto)");
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(10);
        while std::net::TcpStream::connect(("127.0.0.1", self.port)).is_err() {
            assert!(Instant::now() < deadline, "mosquitto did not listen on {}", self.port);
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Stops the broker (its retained messages go with it: persistence is off).
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Starts it again on the same port.
    pub fn restart(&mut self) {
        self.stop();
        self.spawn();
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("mosquitto.log")).unwrap_or_default()
    }
}

impl Drop for Broker {
    fn drop(&mut self) {
        self.stop();
    }
}

/// A test's own MQTT connection.
pub struct Probe {
    pub client: AsyncClient,
    rx: tokio::sync::mpsc::UnboundedReceiver<(String, String, bool)>,
    _task: tokio::task::JoinHandle<()>,
}

impl Probe {
    /// Connects and subscribes to `filters`; returns once the subscriptions are acknowledged.
    pub async fn connect(port: u16, filters: &[&str]) -> Self {
        let id = format!("probe-{}", rand::random::<u32>());
        let mut opts = MqttOptions::new(id, "127.0.0.1", port);
        opts.set_max_packet_size(1 << 20, 1 << 20);
        let (client, mut eventloop) = AsyncClient::new(opts, 1000);
        for f in filters {
            client.subscribe(*f, QoS::AtLeastOnce).await.unwrap();
        }
        let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
        let (ready_tx, ready_rx) = tokio::sync::oneshot::channel();
        let expected = filters.len();
        let task = tokio::spawn(async move {
            let mut acks = 0;
            let mut connected = false;
            let mut ready = Some(ready_tx);
            loop {
                let event = eventloop.poll().await;
                match &event {
                    Ok(Event::Incoming(Packet::ConnAck(_))) => connected = true,
                    Ok(Event::Incoming(Packet::SubAck(_))) => acks += 1,
                    _ => {}
                }
                if connected
                    && acks >= expected
                    && let Some(r) = ready.take()
                {
                    let _ = r.send(());
                }
                match event {
                    Ok(Event::Incoming(Packet::Publish(p))) => {
                        let payload = String::from_utf8_lossy(&p.payload).into_owned();
                        if tx.send((p.topic, payload, p.retain)).is_err() {
                            return;
                        }
                    }
                    Ok(_) => {}
                    Err(_) => tokio::time::sleep(Duration::from_millis(100)).await,
                }
            }
        });
        tokio::time::timeout(Duration::from_secs(10), ready_rx).await.expect("subscribed in time").unwrap();
        Self { client, rx, _task: task }
    }

    /// The next message, if one comes within `wait`.
    pub async fn next(&mut self, wait: Duration) -> Option<(String, String, bool)> {
        tokio::time::timeout(wait, self.rx.recv()).await.ok().flatten()
    }

    /// Waits until `pred` holds for a message, returning it; panics after `wait`.
    pub async fn wait_for(
        &mut self,
        wait: Duration,
        what: &str,
        pred: impl Fn(&str, &str) -> bool,
    ) -> (String, String) {
        let deadline = Instant::now() + wait;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.next(left).await {
                Some((t, p, _)) if pred(&t, &p) => return (t, p),
                Some(_) => {}
                None => panic!("timed out after {wait:?} waiting for {what}"),
            }
        }
    }

    /// Everything that arrives within `quiet` of silence, topic → last payload.
    pub async fn drain(&mut self, quiet: Duration) -> BTreeMap<String, String> {
        let mut out = BTreeMap::new();
        while let Some((t, p, _)) = self.next(quiet).await {
            out.insert(t, p);
        }
        out
    }

    pub async fn publish(&self, topic: &str, payload: &str, retain: bool) {
        self.client.publish(topic, QoS::AtLeastOnce, retain, payload.as_bytes().to_vec()).await.unwrap();
    }
}

/// The retained messages under `filters` right now (non-empty ones), topic → payload.
pub async fn retained(port: u16, filters: &[&str]) -> BTreeMap<String, String> {
    let mut probe = Probe::connect(port, filters).await;
    let mut out = BTreeMap::new();
    while let Some((t, p, retain)) = probe.next(Duration::from_millis(500)).await {
        if retain && !p.is_empty() {
            out.insert(t, p);
        }
    }
    out
}
