//! `enphase-mqtt demo`: the Enlighten simulator, an embedded MQTT broker (rumqttd) and the bridge
//! wired to both in one process, with a temporary state folder, printing every MQTT message as
//! `topic  payload`. Nothing to install or configure; Ctrl-C stops it and removes the folder.
//!
//! The bridge runs on the simulator's clock, so at `--speed 60` a simulated day (tokens, hit
//! budget, sunrise to sunset) passes in 24 minutes.

use std::collections::HashMap;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context as _, bail};
use rumqttc::{AsyncClient, Event, MqttOptions, Packet, QoS};
use tokio_util::sync::CancellationToken;

use crate::app;
use crate::cli::DemoArgs;
use crate::clock::{Clock, Millis, SharedClock};
use crate::config::{self, AuthFlow, Config, ConfigError};
use crate::enlighten::EnlightenClient;
use crate::simulator::{self, SimOptions, SimPlan, Simulator};
use crate::web::{self, WebListener};

/// Payloads are cut to this many characters when printed.
pub const PAYLOAD_CHARS: usize = 100;
/// Most systems a demo simulates.
const MAX_SYSTEMS: usize = 50;
/// How long the embedded broker may take to listen.
const BROKER_START: Duration = Duration::from_secs(10);

/// Prints a line to stdout; a closed stdout (a pipe whose reader left) is not worth a panic.
fn say(line: &str) {
    use std::io::Write as _;
    let _ = writeln!(std::io::stdout(), "{line}");
}

/// The simulator's clock, for the bridge: token lives, the hit budget and "x min ago" all follow
/// simulated time.
#[derive(Debug, Clone)]
pub struct SimulatedClock(pub Simulator);

impl Clock for SimulatedClock {
    fn now_ms(&self) -> Millis {
        self.0.now_ms()
    }

    fn real_wait(&self, ms: i64) -> Duration {
        let speed = self.0.speed();
        if speed > 0.0 {
            Duration::from_secs_f64(ms.max(0) as f64 / 1000.0 / speed)
        } else {
            Duration::from_millis(ms.max(0) as u64)
        }
    }

    /// The simulator's clock can be moved on or sped up at any moment (`/admin/clock`).
    fn recheck_every(&self) -> Duration {
        Duration::from_millis(200)
    }
}

/// Runs the demo until SIGTERM or Ctrl-C.
pub async fn run(args: DemoArgs) -> anyhow::Result<()> {
    check_args(&args)?;
    let page = WebListener::bind(args.listen_http).context("--listen-http")?;

    // The broker first: its port decides what we tell the user.
    let (port, notice) = pick_port(args.bind, args.port)?;
    if let Some(notice) = &notice {
        say(notice);
    }
    let broker_addr = SocketAddr::new(args.bind, port);
    start_broker(broker_addr).await?;
    let mqtt_host = reachable_ip(args.bind);

    let sim_opts =
        SimOptions { systems: args.systems, plan: SimPlan::Partner, speed: args.speed, ..SimOptions::default() };
    let sim = simulator::spawn(sim_opts.clone(), SocketAddr::new(Ipv4Addr::LOCALHOST.into(), 0)).await?;
    let clock: SharedClock = Arc::new(SimulatedClock(sim.sim.clone()));

    let state =
        tempfile::Builder::new().prefix("enphase-mqtt-demo-").tempdir().context("creating a temporary state folder")?;
    let config = demo_config(&sim_opts, &sim.base_url, mqtt_host, port, state.path())?;

    // Log in with the simulator's password grant, as a partner app would.
    {
        let api = EnlightenClient::from_config(&config.enphase, &config.state_dir, clock.clone())?;
        let resp = api
            .tokens()
            .oauth()
            .password(&config.enphase.auth.username, &config.enphase.auth.password)
            .await
            .context("logging in to the simulator")?;
        api.tokens().store_new(resp, AuthFlow::Password).await.context("storing the simulator's tokens")?;
    }

    banner(&args, &sim.base_url, broker_addr, &page, state.path());

    let printer_stop = CancellationToken::new();
    let printer = tokio::spawn(print_messages(mqtt_host, port, printer_stop.clone()));

    let running = app::start(&config, clock.clone()).await?;
    let web = web::Web::new(&config, running.api.clone(), Some(running.board.clone()), clock);
    let shutdown = running.shutdown.clone();
    running.spawn(async move { web::serve(&page, web, shutdown).await });

    app::wait_for_signal().await;
    eprintln!("Stopping the demo …");
    running.stop().await;
    // Let the printer show the bridge's goodbye ("offline") before it goes.
    tokio::time::sleep(Duration::from_millis(300)).await;
    printer_stop.cancel();
    let _ = tokio::time::timeout(Duration::from_secs(2), printer).await;
    sim.shutdown().await;
    drop(state);
    eprintln!("Demo stopped.");
    Ok(())
}

fn check_args(args: &DemoArgs) -> Result<(), ConfigError> {
    let mut problems = Vec::new();
    if !(args.speed.is_finite() && args.speed > 0.0 && args.speed <= simulator::MAX_SPEED) {
        problems.push(format!("--speed: {} must be above 0 and at most {}", args.speed, simulator::MAX_SPEED));
    }
    if !(1..=MAX_SYSTEMS).contains(&args.systems) {
        problems.push(format!("--systems: {} must be between 1 and {MAX_SYSTEMS}", args.systems));
    }
    if problems.is_empty() { Ok(()) } else { Err(ConfigError { problems }) }
}

/// `wanted` if it can be listened on at `ip`, else a free port and a line saying why.
fn pick_port(ip: IpAddr, wanted: u16) -> anyhow::Result<(u16, Option<String>)> {
    if wanted != 0 {
        match try_listen(SocketAddr::new(ip, wanted)) {
            Ok(_) => return Ok((wanted, None)),
            Err(err) => {
                let free = try_listen(SocketAddr::new(ip, 0))
                    .with_context(|| format!("the MQTT broker cannot listen on {ip}"))?;
                let why = if err.kind() == std::io::ErrorKind::AddrInUse {
                    "is taken (another MQTT broker is probably running)".to_string()
                } else {
                    format!("cannot be used ({err})")
                };
                let notice = format!("Port {wanted} {why}: the demo's MQTT broker uses port {free} instead.");
                return Ok((free, Some(notice)));
            }
        }
    }
    let free = try_listen(SocketAddr::new(ip, 0)).with_context(|| format!("the MQTT broker cannot listen on {ip}"))?;
    Ok((free, None))
}

/// Binds and listens on `addr` as the broker will (with `SO_REUSEADDR`), then lets go; the port.
fn try_listen(addr: SocketAddr) -> std::io::Result<u16> {
    let socket = if addr.is_ipv4() { tokio::net::TcpSocket::new_v4()? } else { tokio::net::TcpSocket::new_v6()? };
    socket.set_reuseaddr(true)?;
    socket.bind(addr)?;
    let listener = socket.listen(1)?;
    Ok(listener.local_addr()?.port())
}

/// Where local clients reach a listener bound to `ip`.
fn reachable_ip(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V4(v4) if v4.is_unspecified() => Ipv4Addr::LOCALHOST.into(),
        IpAddr::V6(v6) if v6.is_unspecified() => Ipv6Addr::LOCALHOST.into(),
        ip => ip,
    }
}

/// One MQTT 3.1.1 listener on `addr`, anonymous, nothing persisted.
fn broker_config(addr: SocketAddr) -> rumqttd::Config {
    let connections = rumqttd::ConnectionSettings {
        connection_timeout_ms: 60_000,
        max_payload_size: 1 << 20,
        max_inflight_count: 500,
        auth: None,
        external_auth: None,
        dynamic_filters: true,
    };
    let server = rumqttd::ServerSettings {
        name: "demo-v4".into(),
        listen: addr,
        tls: None,
        next_connection_delay_ms: 1,
        connections,
    };
    let router = rumqttd::RouterConfig {
        max_connections: 1_000,
        max_outgoing_packet_count: 1_000,
        max_segment_size: 4 << 20,
        max_segment_count: 4,
        ..Default::default()
    };
    rumqttd::Config { id: 0, router, v4: Some(HashMap::from([("1".to_string(), server)])), ..Default::default() }
}

/// Starts rumqttd on its own threads (it runs its own runtimes) and waits until it accepts
/// connections. The broker lives until the process ends.
async fn start_broker(addr: SocketAddr) -> anyhow::Result<()> {
    let (ended_tx, mut ended_rx) = tokio::sync::oneshot::channel::<String>();
    let config = broker_config(addr);
    std::thread::Builder::new()
        .name("mqtt-broker".into())
        .spawn(move || {
            let mut broker = rumqttd::Broker::new(config);
            let outcome = match broker.start() {
                Ok(()) => "it stopped".to_string(),
                Err(err) => err.to_string(),
            };
            let _ = ended_tx.send(outcome);
        })
        .context("starting the MQTT broker's thread")?;
    let target = SocketAddr::new(reachable_ip(addr.ip()), addr.port());
    let deadline = tokio::time::Instant::now() + BROKER_START;
    loop {
        if let Ok(outcome) = ended_rx.try_recv() {
            bail!("the embedded MQTT broker cannot listen on {addr}: {outcome}");
        }
        if tokio::net::TcpStream::connect(target).await.is_ok() {
            return Ok(());
        }
        if tokio::time::Instant::now() >= deadline {
            bail!("the embedded MQTT broker did not listen on {addr} within {} s", BROKER_START.as_secs());
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// The bridge's config: the simulator's app and account, the embedded broker, the temporary folder.
fn demo_config(
    sim: &SimOptions,
    base_url: &str,
    mqtt_host: IpAddr,
    mqtt_port: u16,
    state_dir: &std::path::Path,
) -> anyhow::Result<Config> {
    let q = |s: &str| serde_json::Value::from(s).to_string();
    let text = format!(
        "enphase:\n  api_key: {}\n  client_id: {}\n  client_secret: {}\n  plan: partner\n  base_url: {}\n  \
         auth:\n    flow: password\n    username: {}\n    password: {}\n  min_poll_interval_secs: 10\n\
         mqtt:\n  host: {}\n  port: {mqtt_port}\n  client_id: enphase-mqtt-demo\nstate_dir: {}\n",
        q(&sim.api_key),
        q(&sim.client_id),
        q(&sim.client_secret),
        q(base_url),
        q(&sim.username),
        q(&sim.password),
        q(&mqtt_host.to_string()),
        q(&state_dir.to_string_lossy()),
    );
    config::parse(&text, &|_| None).map_err(|e| anyhow::anyhow!("the demo's own config is invalid: {e}"))
}

fn banner(args: &DemoArgs, sim_url: &str, broker: SocketAddr, page: &WebListener, state: &std::path::Path) {
    let port = broker.port();
    let day = human_secs(86_400.0 / args.speed);
    let everywhere = broker.ip().is_unspecified();
    say("enphase-mqtt demo: a simulated Enphase account, an MQTT broker and the bridge between them.");
    say(&format!(
        "  Enlighten simulator  {sim_url} ({} systems, partner plan, speed {}: a simulated day passes in {day})",
        args.systems, args.speed
    ));
    say(&format!(
        "  MQTT broker          {broker} (anonymous{})",
        if everywhere { "; other machines on your network can connect, --bind 127.0.0.1 prevents it" } else { "" }
    ));
    say(&format!("  Status page          {}", page.url()));
    say(&format!("  State folder         {} (removed on exit)", state.display()));
    say("Watch the messages with any MQTT client:");
    say(&format!("  mosquitto_sub -h 127.0.0.1 -p {port} -t 'enphase/#' -t 'homeassistant/#' -v"));
    say(&format!("  MQTT Explorer: host 127.0.0.1 (or this machine's address), port {port}, no user name"));
    say(&format!(
        "  Home Assistant: add the MQTT integration with broker = this machine's address, port {port}, no user name;"
    ));
    say("    the simulated systems then appear under Settings > Devices & services > MQTT.");
    say("Ctrl-C stops the demo. Every message the broker carries is printed below as `topic  payload`.");
    say("");
}

fn human_secs(secs: f64) -> String {
    match secs {
        s if s < 120.0 => format!("{} s", s.round().max(1.0)),
        s if s < 7_200.0 => format!("{} min", (s / 60.0).round()),
        s => format!("{} h", (s / 3_600.0).round()),
    }
}

/// Subscribes to `#` on the broker and prints each message as one line, `topic  payload`.
async fn print_messages(host: IpAddr, port: u16, stop: CancellationToken) {
    let mut opts = MqttOptions::new("enphase-mqtt-demo-printer", host.to_string(), port);
    opts.set_keep_alive(Duration::from_secs(30));
    opts.set_clean_session(true);
    opts.set_max_packet_size(1 << 20, 1 << 20);
    let (client, mut eventloop) = AsyncClient::new(opts, 64);
    loop {
        let event = tokio::select! {
            _ = stop.cancelled() => break,
            event = eventloop.poll() => event,
        };
        match event {
            Ok(Event::Incoming(Packet::ConnAck(_))) => {
                if let Err(err) = client.try_subscribe("#", QoS::AtMostOnce) {
                    tracing::warn!(error = %err, "the demo's printer could not subscribe");
                }
            }
            Ok(Event::Incoming(Packet::Publish(p))) => say(&message_line(&p.topic, &p.payload)),
            Ok(_) => {}
            Err(err) => {
                tracing::debug!(error = %err, "the demo's printer lost the broker");
                tokio::select! {
                    _ = stop.cancelled() => break,
                    _ = tokio::time::sleep(Duration::from_millis(500)) => {}
                }
            }
        }
    }
    let _ = client.try_disconnect();
}

/// `topic  payload`, on one line, the payload cut to [`PAYLOAD_CHARS`] characters.
pub fn message_line(topic: &str, payload: &[u8]) -> String {
    let text = String::from_utf8_lossy(payload);
    if text.is_empty() {
        return format!("{}  (empty)", one_line(topic));
    }
    let mut shown: String = text.chars().take(PAYLOAD_CHARS).map(|c| if c.is_control() { ' ' } else { c }).collect();
    if text.chars().count() > PAYLOAD_CHARS {
        shown.pop();
        shown.push('…');
    }
    format!("{}  {shown}", one_line(topic))
}

fn one_line(s: &str) -> String {
    s.chars().map(|c| if c.is_control() { ' ' } else { c }).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_print_on_one_short_line() {
        assert_eq!(message_line("enphase/1/availability", b"online"), "enphase/1/availability  online");
        assert_eq!(message_line("enphase/1/state", b""), "enphase/1/state  (empty)");
        let long = format!("{{\"a\":\n\"{}\"}}", "x".repeat(300));
        let line = message_line("t", long.as_bytes());
        assert!(!line.contains('\n'));
        assert_eq!(line.chars().count(), "t  ".len() + PAYLOAD_CHARS);
        assert!(line.ends_with('…'));
        assert_eq!(message_line("t", &[0xff, b'a']), "t  \u{fffd}a");
    }

    #[test]
    fn bad_flags_are_reported_together() {
        let args = DemoArgs {
            port: 1883,
            bind: Ipv4Addr::LOCALHOST.into(),
            speed: f64::NAN,
            systems: 0,
            listen_http: "127.0.0.1:0".parse().unwrap(),
        };
        let err = check_args(&args).unwrap_err();
        assert_eq!(err.problems.len(), 2, "{err}");
        assert!(err.problems[0].starts_with("--speed"));
        assert!(err.problems[1].starts_with("--systems"));
    }

    #[tokio::test]
    async fn a_taken_port_falls_back_with_a_clear_line() {
        let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = taken.local_addr().unwrap().port();
        let (got, notice) = pick_port(Ipv4Addr::LOCALHOST.into(), port).unwrap();
        assert_ne!(got, port);
        let notice = notice.expect("a notice");
        assert!(notice.starts_with(&format!("Port {port} is taken")), "{notice}");
        assert!(notice.ends_with(&format!("uses port {got} instead.")), "{notice}");
        drop(taken);
        let (again, none) = pick_port(Ipv4Addr::LOCALHOST.into(), port).unwrap();
        assert_eq!((again, none), (port, None));
    }

    #[test]
    fn the_generated_config_is_valid() {
        let dir = std::env::temp_dir().join("enphase-mqtt-demo-config-test");
        let config =
            demo_config(&SimOptions::default(), "http://127.0.0.1:9", Ipv4Addr::LOCALHOST.into(), 1884, &dir).unwrap();
        assert_eq!(config.mqtt.port, 1884);
        assert_eq!(config.enphase.auth.flow, AuthFlow::Password);
        assert_eq!(config.state_dir, dir);
        assert_eq!(config.enphase.min_poll_interval_secs, 10);
    }

    #[test]
    fn a_day_is_said_in_minutes() {
        assert_eq!(human_secs(86_400.0 / 60.0), "24 min");
        assert_eq!(human_secs(86_400.0 / 600.0), "2 min");
        assert_eq!(human_secs(86_400.0 / 1_000.0), "86 s");
        assert_eq!(human_secs(86_400.0), "24 h");
    }
}
