//! The command line: `run`, `check-config`, `auth …`, `simulate`, `demo`.

use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;

use clap::{Parser, Subcommand};

/// Enphase Enlighten cloud (API v4) to MQTT and Home Assistant.
#[derive(Debug, Parser)]
#[command(name = "enphase-mqtt", version, about, propagate_version = true)]
pub struct Cli {
    /// Path of the YAML config file.
    #[arg(short, long, global = true, env = "ENPHASE_MQTT_CONFIG", default_value = "config.yaml")]
    pub config: PathBuf,

    /// Keep the time of the simulator at this URL (`simulate`, possibly sped up) instead of the
    /// system clock: for end-to-end tests of `run` and `auth` against a simulated cloud.
    #[arg(long, global = true, hide = true, value_name = "URL")]
    pub clock_url: Option<String>,

    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// The subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Poll Enphase and publish to MQTT until stopped.
    Run,
    /// Check the config file and report every problem at once.
    CheckConfig,
    /// Log in to Enphase and look after the stored tokens.
    #[command(subcommand)]
    Auth(AuthCommand),
    /// Serve a simulated Enlighten cloud (OAuth and API v4) for offline testing.
    Simulate(SimulateArgs),
    /// Try it without an Enphase account: a simulated Enlighten cloud, an MQTT broker and the bridge
    /// in one process, printing every MQTT message.
    Demo(DemoArgs),
}

/// `auth` subcommands.
#[derive(Debug, Subcommand)]
pub enum AuthCommand {
    /// Print the URL where the homeowner approves this app (saves a fresh `state`).
    Url,
    /// Exchange the authorization code shown after approval (or the whole redirect URL) for tokens.
    Code {
        /// The code, or the full URL the browser was sent to (its `state` is then checked).
        code: String,
    },
    /// Do the whole approval in a browser: listen for Enphase's redirect and store the tokens.
    Login {
        /// Address to listen on for the redirect.
        #[arg(long, default_value = "127.0.0.1:8765")]
        listen: SocketAddr,
        /// Give up after this many seconds without an answer.
        #[arg(long, default_value_t = 900)]
        timeout: u64,
    },
    /// Show the stored tokens' state (never the tokens). Exit 0 if usable, 3 if authorization is needed.
    Status,
    /// Refresh the tokens now (normally done ahead of expiry by `run`).
    Refresh,
}

/// `simulate` options.
#[derive(Debug, clap::Args)]
pub struct SimulateArgs {
    /// Address to listen on.
    #[arg(long, default_value = "127.0.0.1:8080")]
    pub listen: SocketAddr,
    /// How many systems the simulated account sees.
    #[arg(long, default_value_t = 3)]
    pub systems: usize,
    /// The simulated application's plan: watt, kilowatt, megawatt or partner.
    #[arg(long, default_value = "watt")]
    pub plan: String,
    /// Simulated seconds per real second (e.g. 60 runs an hour a minute).
    #[arg(long, default_value_t = 1.0)]
    pub speed: f64,
    /// Access-token life in seconds.
    #[arg(long)]
    pub access_ttl: Option<i64>,
    /// Refresh-token life in seconds.
    #[arg(long)]
    pub refresh_ttl: Option<i64>,
    /// Seed of the simulated fleet.
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
}

/// `demo` options.
#[derive(Debug, clap::Args)]
pub struct DemoArgs {
    /// MQTT port of the embedded broker; when it is taken, a free port is used instead (and said so).
    #[arg(long, default_value_t = 1883)]
    pub port: u16,
    /// Address the broker listens on: 0.0.0.0 lets Home Assistant on another machine connect,
    /// 127.0.0.1 keeps it on this one.
    #[arg(long, default_value = "0.0.0.0")]
    pub bind: IpAddr,
    /// Simulated seconds per real second: 60 passes a simulated day in 24 minutes.
    #[arg(long, default_value_t = 60.0)]
    pub speed: f64,
    /// How many systems the simulated account has (1 to 50).
    #[arg(long, default_value_t = 3)]
    pub systems: usize,
    /// Address of the status page; port 0 picks a free port.
    #[arg(long, default_value = "127.0.0.1:0")]
    pub listen_http: SocketAddr,
}
