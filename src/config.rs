//! The only file that reads the YAML config: raw YAML → validated [`Config`], with every problem
//! reported at once, one line each, naming the key by its dotted path (`mqtt.port`).
//!
//! Any string may be written `${NAME}` to take the environment variable `NAME`, so that secrets
//! can stay out of the file (Docker, the Home Assistant add-on). Unknown keys are errors: a typo
//! must not be silently ignored.

use std::fmt;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use serde_yaml::{Mapping, Value};
use url::Url;

use crate::enlighten::Plan;
use crate::secret::Secret;

/// The Enphase production host; the API lives under `/api/v4` and OAuth under `/oauth`.
pub const DEFAULT_BASE_URL: &str = "https://api.enphaseenergy.com";
/// Enphase's own page that shows the authorization code to the homeowner.
pub const DEFAULT_REDIRECT_URI: &str = "https://api.enphaseenergy.com/oauth/redirect_uri";
/// Longest `mqtt.base_topic` or `mqtt.discovery_prefix`, bytes: the topics built on them stay far
/// below MQTT's limit of 65,535.
const MAX_TOPIC_ROOT: usize = 200;
/// Largest config file read: a real one is a few KiB.
const MAX_CONFIG_BYTES: u64 = 1024 * 1024;

/// A validated configuration.
#[derive(Debug, Clone)]
pub struct Config {
    /// The Enphase side.
    pub enphase: EnphaseConfig,
    /// The MQTT side.
    pub mqtt: MqttConfig,
    /// The optional status web page.
    pub http: HttpConfig,
    /// Where tokens, the hit ledger and the lock file live.
    pub state_dir: PathBuf,
}

/// `enphase:`: the developer application and how to log in.
#[derive(Debug, Clone)]
pub struct EnphaseConfig {
    /// The application's API key, sent as `?key=` on every call.
    pub api_key: Secret,
    /// The OAuth client id.
    pub client_id: String,
    /// The OAuth client secret.
    pub client_secret: Secret,
    /// The application's plan (quota and endpoint groups).
    pub plan: Plan,
    /// Scheme and host of the Enlighten cloud (or the simulator).
    pub base_url: Url,
    /// How to log in.
    pub auth: AuthConfig,
    /// Systems to bridge; empty means every system the account can see.
    pub systems: Vec<u64>,
    /// A cap below the plan's per-minute limit.
    pub hits_per_minute: Option<u32>,
    /// A cap below the plan's per-month limit.
    pub hits_per_month: Option<u32>,
    /// Whole-request timeout in seconds.
    pub request_timeout_secs: u64,
    /// The shortest time between two polls of one system, in seconds.
    pub min_poll_interval_secs: u64,
    /// A system whose gateway has not uploaded for this long is shown unavailable, in seconds.
    pub stale_after_secs: u64,
}

impl EnphaseConfig {
    /// The per-minute limit in force: the plan's, or the lower configured cap.
    pub fn minute_limit(&self) -> u32 {
        self.hits_per_minute.unwrap_or(u32::MAX).min(self.plan.per_minute())
    }

    /// The per-month limit in force: the plan's, or the lower configured cap.
    pub fn month_limit(&self) -> u32 {
        self.hits_per_month.unwrap_or(u32::MAX).min(self.plan.per_month())
    }
}

/// Which OAuth grant gives the first tokens.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AuthFlow {
    /// The homeowner approves the app in a browser (Watt, Kilowatt, Megawatt apps).
    AuthorizationCode,
    /// Partner applications log in with the Enlighten user name and password.
    Password,
}

impl AuthFlow {
    /// The name used in the config file.
    pub fn as_str(self) -> &'static str {
        match self {
            AuthFlow::AuthorizationCode => "authorization_code",
            AuthFlow::Password => "password",
        }
    }
}

/// `enphase.auth:`.
#[derive(Debug, Clone)]
pub struct AuthConfig {
    /// The grant used to obtain the first tokens.
    pub flow: AuthFlow,
    /// Where Enphase sends the homeowner after approval (`auth url`, `auth code`).
    pub redirect_uri: Url,
    /// Enlighten user name (password flow only).
    pub username: String,
    /// Enlighten password (password flow only).
    pub password: Secret,
}

/// `mqtt:`.
#[derive(Debug, Clone)]
pub struct MqttConfig {
    /// Broker host name or address.
    pub host: String,
    /// Broker port (1883, or 8883 with TLS, unless set).
    pub port: u16,
    /// Broker user name, if the broker wants one.
    pub username: Option<String>,
    /// Broker password.
    pub password: Option<Secret>,
    /// MQTT client id.
    pub client_id: String,
    /// Keep-alive interval in seconds.
    pub keep_alive_secs: u64,
    /// TLS settings; `None` for plain MQTT.
    pub tls: Option<TlsConfig>,
    /// First level of our own topics.
    pub base_topic: String,
    /// Home Assistant's discovery prefix.
    pub discovery_prefix: String,
    /// Whether to publish Home Assistant discovery configs.
    pub discovery: bool,
    /// One config per entity, or one per device.
    pub discovery_mode: DiscoveryMode,
}

/// `mqtt.tls:`.
#[derive(Debug, Clone)]
pub struct TlsConfig {
    /// A CA bundle (PEM) to trust instead of the system roots.
    pub ca_file: Option<PathBuf>,
    /// Client certificate (PEM), with `client_key`.
    pub client_cert: Option<PathBuf>,
    /// Client private key (PEM), with `client_cert`.
    pub client_key: Option<PathBuf>,
}

/// How discovery configs are published.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DiscoveryMode {
    /// `<prefix>/<component>/<node_id>/<object_id>/config`, one per entity.
    Entity,
    /// `<prefix>/device/<node_id>/config`, one per device with `cmps`.
    Device,
}

/// `http:`: the status and consent web page.
#[derive(Debug, Clone, Default)]
pub struct HttpConfig {
    /// Address to listen on; `None` leaves the page off.
    pub listen: Option<SocketAddr>,
}

/// Every problem found in a config file, one per line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    /// One line each, `key.path: what is wrong`.
    pub problems: Vec<String>,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.problems.join("\n"))
    }
}

impl std::error::Error for ConfigError {}

impl ConfigError {
    /// One problem: also what a bad command-line value is (exit code 2 alike).
    pub fn one(problem: String) -> Self {
        Self { problems: vec![problem] }
    }
}

/// Reads and validates the config file at `path`.
pub fn load(path: &Path) -> Result<Config, ConfigError> {
    let fail = |why: String| ConfigError::one(format!("{}: cannot read the config file: {why}", path.display()));
    // A regular file of sane size: not a folder, a pipe that never ends or /dev/zero.
    let meta = std::fs::metadata(path).map_err(|err| fail(err.to_string()))?;
    if !meta.is_file() {
        return Err(fail("it is not a regular file".into()));
    }
    if meta.len() > MAX_CONFIG_BYTES {
        return Err(fail(format!("it is larger than {} KiB", MAX_CONFIG_BYTES / 1024)));
    }
    let text = std::fs::read_to_string(path).map_err(|err| fail(err.to_string()))?;
    parse(&text, &|name| std::env::var(name).ok()).map_err(|mut e| {
        if e.problems.len() == 1 && e.problems[0].starts_with("YAML") {
            e.problems[0] = format!("{}: {}", path.display(), e.problems[0]);
        }
        e
    })
}

/// Parses and validates config text; `env` looks up `${NAME}` references.
pub fn parse(text: &str, env: &dyn Fn(&str) -> Option<String>) -> Result<Config, ConfigError> {
    let root: Value = serde_yaml::from_str(text).map_err(|err| {
        let at = err.location().map(|l| format!(" at line {}, column {}", l.line(), l.column())).unwrap_or_default();
        // serde_yaml's messages may quote the offending text (a secret, maybe: an API key too
        // long for a number): keep only the first line, without the quoted values.
        let msg = crate::secret::hide_quoted_values(&err.to_string());
        let msg = msg.lines().next().unwrap_or("invalid YAML");
        ConfigError::one(format!("YAML syntax error{at}: {msg}"))
    })?;
    let mut v = Validator { problems: Vec::new(), env };
    let config = v.config(&root);
    if v.problems.is_empty() {
        config.ok_or_else(|| ConfigError::one("config: invalid".into()))
    } else {
        Err(ConfigError { problems: v.problems })
    }
}

/// Walks the YAML tree, converting values and collecting problems.
struct Validator<'e> {
    problems: Vec<String>,
    env: &'e dyn Fn(&str) -> Option<String>,
}

/// One mapping in the YAML tree and the keys read from it so far.
struct Section<'a> {
    path: String,
    map: Option<&'a Mapping>,
    known: Vec<&'static str>,
}

impl<'a> Section<'a> {
    fn key(&self, key: &str) -> String {
        if self.path.is_empty() { key.to_string() } else { format!("{}.{key}", self.path) }
    }

    /// The value at `key`, `None` when absent or YAML null.
    fn get(&mut self, key: &'static str) -> Option<&'a Value> {
        self.known.push(key);
        match self.map?.get(key) {
            None | Some(Value::Null) => None,
            Some(v) => Some(v),
        }
    }
}

/// How a bad value may be shown in a message.
#[derive(Clone, Copy, PartialEq)]
enum Show {
    Value,
    Hidden,
}

impl<'e> Validator<'e> {
    fn problem(&mut self, msg: String) {
        self.problems.push(msg);
    }

    fn section<'a>(&mut self, parent: &mut Section<'a>, key: &'static str) -> Section<'a> {
        let path = parent.key(key);
        let map = match parent.get(key) {
            None => None,
            Some(Value::Mapping(m)) => Some(m),
            Some(other) => {
                self.problem(format!("{path}: expected a mapping of keys, got {}", describe(other, Show::Value)));
                None
            }
        };
        Section { path, map, known: Vec::new() }
    }

    /// Reports keys of `section` that were never asked for.
    fn finish(&mut self, section: Section<'_>) {
        let Some(map) = section.map else { return };
        for key in map.keys() {
            let name = match key {
                Value::String(s) => s.clone(),
                other => describe(other, Show::Value),
            };
            if !section.known.iter().any(|k| *k == name) {
                let hint = closest(&name, &section.known)
                    .map(|k| format!(" (did you mean {}?)", section.key(k)))
                    .unwrap_or_default();
                // Shown escaped: a key with a line break in it must not start a line of its own.
                let shown: String = name.chars().take(60).collect::<String>().escape_debug().collect();
                self.problem(format!("{}: unknown key{hint}", section.key(&shown)));
            }
        }
    }

    /// Expands `${NAME}` references in a string value.
    fn expand(&mut self, key: &str, raw: &str) -> Option<String> {
        let mut out = String::with_capacity(raw.len());
        let mut rest = raw;
        while let Some(start) = rest.find("${") {
            out.push_str(&rest[..start]);
            let after = &rest[start + 2..];
            let Some(end) = after.find('}') else {
                self.problem(format!("{key}: unterminated ${{…}} reference"));
                return None;
            };
            let name = &after[..end];
            if name.is_empty() || !name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
                self.problem(format!("{key}: ${{{name}}} is not a valid environment variable name"));
                return None;
            }
            match (self.env)(name) {
                Some(value) => out.push_str(&value),
                None => {
                    self.problem(format!("{key}: environment variable {name} is not set"));
                    return None;
                }
            }
            rest = &after[end + 1..];
        }
        out.push_str(rest);
        Some(out)
    }

    /// A string value, `${NAME}` expanded. A YAML number or boolean is refused rather than turned
    /// into text: YAML has already changed it (`0x10` is 16, `1e3` is 1000.0), and for an id or a
    /// key that change would go unseen.
    fn string(&mut self, s: &mut Section<'_>, key: &'static str, show: Show) -> Option<String> {
        let path = s.key(key);
        let value = s.get(key)?;
        let text = match value {
            Value::String(text) => self.expand(&path, text)?,
            Value::Number(_) | Value::Bool(_) => {
                let what = if matches!(value, Value::Number(_)) { "a number" } else { "true or false" };
                let shown = if show == Show::Hidden { "this value".to_string() } else { describe(value, show) };
                self.problem(format!("{path}: YAML reads {shown} as {what}, not as text; put it in quotes"));
                return None;
            }
            other => {
                self.problem(format!("{path}: expected a string, got {}", describe(other, show)));
                return None;
            }
        };
        if text.chars().any(char::is_control) {
            self.problem(format!("{path}: contains a line break or another control character"));
            return None;
        }
        Some(text)
    }

    /// A required, non-empty string.
    fn required(&mut self, s: &mut Section<'_>, key: &'static str, show: Show) -> Option<String> {
        let path = s.key(key);
        match self.string(s, key, show) {
            Some(v) if !v.trim().is_empty() => Some(v),
            Some(_) => {
                self.problem(format!("{path}: must not be empty"));
                None
            }
            None if self.problems.iter().any(|p| p.starts_with(&format!("{path}:"))) => None,
            None => {
                self.problem(format!("{path}: is required"));
                None
            }
        }
    }

    /// An unsigned integer within `min..=max`; strings holding a number are accepted (`${PORT}`).
    fn integer(&mut self, s: &mut Section<'_>, key: &'static str, min: u64, max: u64) -> Option<u64> {
        let path = s.key(key);
        let value = s.get(key)?;
        let parsed = match value {
            Value::Number(n) => n.as_u64(),
            Value::String(text) => self.expand(&path, text)?.trim().parse::<u64>().ok(),
            _ => None,
        };
        match parsed {
            Some(n) if (min..=max).contains(&n) => Some(n),
            _ => {
                self.problem(format!(
                    "{path}: expected a whole number from {min} to {max}, got {}",
                    describe(value, Show::Value)
                ));
                None
            }
        }
    }

    /// A boolean; `on`/`off`, `yes`/`no` and `"true"` strings are accepted.
    fn boolean(&mut self, s: &mut Section<'_>, key: &'static str) -> Option<bool> {
        let path = s.key(key);
        let value = s.get(key)?;
        let parsed = match value {
            Value::Bool(b) => Some(*b),
            Value::String(text) => match self.expand(&path, text)?.trim().to_ascii_lowercase().as_str() {
                "true" | "on" | "yes" => Some(true),
                "false" | "off" | "no" => Some(false),
                _ => None,
            },
            _ => None,
        };
        if parsed.is_none() {
            self.problem(format!("{path}: expected true or false, got {}", describe(value, Show::Value)));
        }
        parsed
    }

    /// One of a fixed set of words.
    fn choice<T: Copy>(
        &mut self,
        s: &mut Section<'_>,
        key: &'static str,
        options: &[(&'static str, T)],
        default: T,
    ) -> Option<T> {
        let path = s.key(key);
        let Some(text) = self.string(s, key, Show::Value) else {
            return (!self.problems.iter().any(|p| p.starts_with(&format!("{path}:")))).then_some(default);
        };
        let found = options.iter().find(|(name, _)| name.eq_ignore_ascii_case(text.trim()));
        if found.is_none() {
            let names: Vec<&str> = options.iter().map(|(n, _)| *n).collect();
            self.problem(format!("{path}: {text:?} is not one of {}", names.join(", ")));
        }
        found.map(|(_, v)| *v)
    }

    fn url(&mut self, s: &mut Section<'_>, key: &'static str, default: &str) -> Option<Url> {
        let path = s.key(key);
        let text = self.string(s, key, Show::Value).unwrap_or_else(|| default.to_string());
        match Url::parse(text.trim()) {
            Ok(url) if matches!(url.scheme(), "http" | "https") && url.host().is_some() => Some(url),
            Ok(_) => {
                self.problem(format!("{path}: {text:?} is not an http:// or https:// URL"));
                None
            }
            Err(err) => {
                self.problem(format!("{path}: {text:?} is not a valid URL ({err})"));
                None
            }
        }
    }

    fn path_that_exists(&mut self, s: &mut Section<'_>, key: &'static str) -> Option<PathBuf> {
        let path = s.key(key);
        let text = self.string(s, key, Show::Value)?;
        let file = PathBuf::from(text.trim());
        if file.is_dir() {
            self.problem(format!("{path}: {:?} is a folder, not a file", file.display().to_string()));
        } else if !file.is_file() {
            self.problem(format!("{path}: file {:?} does not exist", file.display().to_string()));
        }
        Some(file)
    }

    fn topic_root(&mut self, s: &mut Section<'_>, key: &'static str, default: &str) -> String {
        let path = s.key(key);
        let text = self.string(s, key, Show::Value).unwrap_or_else(|| default.to_string());
        if text.is_empty() || text.starts_with('/') || text.ends_with('/') || text.contains(['+', '#', '\0']) {
            self.problem(format!(
                "{path}: {text:?} is not a usable topic prefix (not empty, no leading or trailing /, no + or #)"
            ));
        } else if text.len() > MAX_TOPIC_ROOT {
            self.problem(format!("{path}: is {} bytes long; at most {MAX_TOPIC_ROOT}", text.len()));
        }
        text
    }

    fn config(&mut self, root: &Value) -> Option<Config> {
        let map = match root {
            Value::Mapping(m) => Some(m),
            Value::Null => None,
            other => {
                self.problem(format!("config: expected a mapping of keys, got {}", describe(other, Show::Value)));
                None
            }
        };
        let mut top = Section { path: String::new(), map, known: Vec::new() };
        let enphase = self.enphase(&mut top);
        let mqtt = self.mqtt(&mut top);
        let http = self.http(&mut top);
        let state_dir = self.string(&mut top, "state_dir", Show::Value).unwrap_or_else(|| "./state".into());
        if state_dir.trim().is_empty() {
            self.problem("state_dir: must not be empty".into());
        }
        self.finish(top);
        Some(Config { enphase: enphase?, mqtt: mqtt?, http: http?, state_dir: PathBuf::from(state_dir) })
    }

    fn enphase(&mut self, top: &mut Section<'_>) -> Option<EnphaseConfig> {
        let mut s = self.section(top, "enphase");
        if s.map.is_none() && !self.problems.iter().any(|p| p.starts_with("enphase:")) {
            self.problem("enphase: is required (api_key, client_id, client_secret)".into());
        }
        let api_key = self.required(&mut s, "api_key", Show::Hidden);
        let client_id = self.required(&mut s, "client_id", Show::Value);
        let client_secret = self.required(&mut s, "client_secret", Show::Hidden);
        let plans: Vec<(&'static str, Plan)> = Plan::ALL.iter().map(|p| (p.as_str(), *p)).collect();
        let plan = self.choice(&mut s, "plan", &plans, Plan::Watt);
        let base_url = self.url(&mut s, "base_url", DEFAULT_BASE_URL);
        let auth = self.auth(&mut s, plan);
        let systems = self.systems(&mut s);
        let hits_per_minute = plan
            .map(|p| self.integer(&mut s, "hits_per_minute", 1, p.per_minute().into()))
            .unwrap_or_else(|| self.integer(&mut s, "hits_per_minute", 1, u32::MAX.into()));
        let hits_per_month = plan
            .map(|p| self.integer(&mut s, "hits_per_month", 1, p.per_month().into()))
            .unwrap_or_else(|| self.integer(&mut s, "hits_per_month", 1, u32::MAX.into()));
        let request_timeout_secs = self.integer(&mut s, "request_timeout_secs", 1, 600).unwrap_or(30);
        let min_poll_interval_secs = self.integer(&mut s, "min_poll_interval_secs", 1, 86_400).unwrap_or(300);
        let stale_after_secs = self.integer(&mut s, "stale_after_secs", 60, 7 * 86_400).unwrap_or(3 * 3600);
        self.finish(s);
        Some(EnphaseConfig {
            api_key: Secret::new(api_key?),
            client_id: client_id?,
            client_secret: Secret::new(client_secret?),
            plan: plan?,
            base_url: base_url?,
            auth: auth?,
            systems: systems?,
            hits_per_minute: hits_per_minute.map(|n| n as u32),
            hits_per_month: hits_per_month.map(|n| n as u32),
            request_timeout_secs,
            min_poll_interval_secs,
            stale_after_secs,
        })
    }

    fn auth(&mut self, parent: &mut Section<'_>, plan: Option<Plan>) -> Option<AuthConfig> {
        let mut s = self.section(parent, "auth");
        let flows = [("authorization_code", AuthFlow::AuthorizationCode), ("password", AuthFlow::Password)];
        let flow = self.choice(&mut s, "flow", &flows, AuthFlow::AuthorizationCode);
        let redirect_uri = self.url(&mut s, "redirect_uri", DEFAULT_REDIRECT_URI);
        let username = self.string(&mut s, "username", Show::Value).unwrap_or_default();
        let password = self.string(&mut s, "password", Show::Hidden).unwrap_or_default();
        if flow == Some(AuthFlow::Password) {
            if username.trim().is_empty() {
                self.problem(format!("{}: is required with flow: password", s.key("username")));
            }
            if password.trim().is_empty() {
                self.problem(format!("{}: is required with flow: password", s.key("password")));
            }
            if plan.is_some_and(|p| p != Plan::Partner) {
                self.problem(format!(
                    "{}: password is only for partner applications (enphase.plan: partner)",
                    s.key("flow")
                ));
            }
        }
        self.finish(s);
        Some(AuthConfig { flow: flow?, redirect_uri: redirect_uri?, username, password: Secret::new(password) })
    }

    fn systems(&mut self, s: &mut Section<'_>) -> Option<Vec<u64>> {
        let path = s.key("systems");
        let Some(value) = s.get("systems") else {
            return Some(Vec::new());
        };
        let Value::Sequence(items) = value else {
            self.problem(format!("{path}: expected a list of system ids, got {}", describe(value, Show::Value)));
            return None;
        };
        let mut ids = Vec::new();
        let mut ok = true;
        for (i, item) in items.iter().enumerate() {
            let id = match item {
                Value::Number(n) => n.as_u64(),
                Value::String(t) => t.trim().parse::<u64>().ok(),
                _ => None,
            };
            match id {
                Some(id) if id > 0 && i64::try_from(id).is_ok() => {
                    if ids.contains(&id) {
                        self.problem(format!("{path}[{i}]: system {id} is listed twice"));
                        ok = false;
                    }
                    ids.push(id);
                }
                _ => {
                    self.problem(format!("{path}[{i}]: {} is not a system id", describe(item, Show::Value)));
                    ok = false;
                }
            }
        }
        ok.then_some(ids)
    }

    fn mqtt(&mut self, top: &mut Section<'_>) -> Option<MqttConfig> {
        let mut s = self.section(top, "mqtt");
        let host = self.string(&mut s, "host", Show::Value).unwrap_or_else(|| "localhost".into());
        if host.trim().is_empty() {
            self.problem("mqtt.host: must not be empty".into());
        } else if !is_host(host.trim()) {
            self.problem(format!(
                "mqtt.host: {host:?} is not a host name or address (no scheme, port or path: the port goes in mqtt.port)"
            ));
        }
        let port = self.integer(&mut s, "port", 1, 65535).map(|p| p as u16);
        let username = self.string(&mut s, "username", Show::Value).filter(|u| !u.is_empty());
        let password = self.string(&mut s, "password", Show::Hidden).filter(|p| !p.is_empty());
        if password.is_some() && username.is_none() {
            self.problem("mqtt.password: is set but mqtt.username is not".into());
        }
        let client_id = self.string(&mut s, "client_id", Show::Value).unwrap_or_else(|| "enphase-mqtt".into());
        if client_id.trim().is_empty() || client_id.len() > 64 {
            self.problem(format!("mqtt.client_id: {client_id:?} must be 1 to 64 bytes long"));
        }
        let keep_alive_secs = self.integer(&mut s, "keep_alive", 5, 3600).unwrap_or(30);
        let tls = self.tls(&mut s);
        let base_topic = self.topic_root(&mut s, "base_topic", "enphase");
        let discovery_prefix = self.topic_root(&mut s, "discovery_prefix", "homeassistant");
        let discovery = self.boolean(&mut s, "discovery").unwrap_or(true);
        let modes = [("entity", DiscoveryMode::Entity), ("device", DiscoveryMode::Device)];
        let discovery_mode = self.choice(&mut s, "discovery_mode", &modes, DiscoveryMode::Entity);
        self.finish(s);
        let tls = tls?;
        let port = port.unwrap_or(if tls.is_some() { 8883 } else { 1883 });
        Some(MqttConfig {
            host,
            port,
            username,
            password: password.map(Secret::new),
            client_id,
            keep_alive_secs,
            tls,
            base_topic,
            discovery_prefix,
            discovery,
            discovery_mode: discovery_mode?,
        })
    }

    /// `mqtt.tls`: `true`/`false`, or a mapping with `enabled`, `ca_file`, `client_cert`, `client_key`.
    fn tls(&mut self, parent: &mut Section<'_>) -> Option<Option<TlsConfig>> {
        match parent.map.and_then(|m| m.get("tls")) {
            None | Some(Value::Null) => {
                parent.known.push("tls");
                return Some(None);
            }
            Some(Value::Bool(_)) | Some(Value::String(_)) => {
                return Some(self.boolean(parent, "tls")?.then_some(TlsConfig {
                    ca_file: None,
                    client_cert: None,
                    client_key: None,
                }));
            }
            _ => {}
        }
        let mut s = self.section(parent, "tls");
        let enabled = self.boolean(&mut s, "enabled").unwrap_or(true);
        if !enabled {
            // Off: the files are not read, so they need not exist.
            for key in ["ca_file", "client_cert", "client_key"] {
                self.string(&mut s, key, Show::Value);
            }
            self.finish(s);
            return Some(None);
        }
        let before = self.problems.len();
        let ca_file = self.path_that_exists(&mut s, "ca_file");
        let client_cert = self.path_that_exists(&mut s, "client_cert");
        let client_key = self.path_that_exists(&mut s, "client_key");
        if client_cert.is_some() != client_key.is_some() {
            self.problem("mqtt.tls: client_cert and client_key go together".into());
        }
        self.finish(s);
        let tls = TlsConfig { ca_file, client_cert, client_key };
        // The files as the connection will read them, so that a bad one is a config error here too.
        if self.problems.len() == before
            && let Err(err) = crate::mqtt::tls_material(&tls)
        {
            self.problem(format!("{err:#}"));
        }
        Some(Some(tls))
    }

    fn http(&mut self, top: &mut Section<'_>) -> Option<HttpConfig> {
        let mut s = self.section(top, "http");
        let listen = self.string(&mut s, "listen", Show::Value).filter(|t| !t.trim().is_empty());
        let listen = match listen {
            None => None,
            Some(text) => match text.trim().parse::<SocketAddr>() {
                Ok(addr) => Some(addr),
                Err(_) => {
                    self.problem(format!("http.listen: {text:?} is not an address:port such as 0.0.0.0:8099"));
                    None
                }
            },
        };
        self.finish(s);
        Some(HttpConfig { listen })
    }
}

/// Whether `text` is a bare host name, IPv4 or IPv6 address (no scheme, port, path or spaces).
fn is_host(text: &str) -> bool {
    if text.parse::<std::net::IpAddr>().is_ok() {
        return true;
    }
    text.len() <= 253
        && text.split('.').all(|label| {
            !label.is_empty()
                && label.len() <= 63
                && label.chars().all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
        })
}

/// A short description of a YAML value for an error message.
fn describe(value: &Value, show: Show) -> String {
    if show == Show::Hidden {
        return match value {
            Value::Sequence(_) => "a list".into(),
            Value::Mapping(_) => "a mapping".into(),
            _ => "a value of the wrong type (hidden: it is a secret)".into(),
        };
    }
    match value {
        Value::Null => "nothing".into(),
        Value::Bool(b) => b.to_string(),
        Value::Number(n) => n.to_string(),
        Value::String(s) => {
            let short: String = s.chars().take(60).collect();
            format!("{short:?}")
        }
        Value::Sequence(_) => "a list".into(),
        Value::Mapping(_) => "a mapping".into(),
        Value::Tagged(t) => format!("a value tagged {}", t.tag),
    }
}

/// The known key closest to a misspelt one, if any is close.
fn closest<'k>(name: &str, known: &[&'k str]) -> Option<&'k str> {
    known
        .iter()
        .map(|k| (edit_distance(name, k), *k))
        .filter(|(d, k)| *d <= 2.max(k.len() / 4))
        .min_by_key(|(d, _)| *d)
        .map(|(_, k)| k)
}

fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut prev: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut cur = vec![i + 1];
        for (j, cb) in b.iter().enumerate() {
            let cost = usize::from(ca != *cb);
            cur.push((prev[j] + cost).min(prev[j + 1] + 1).min(cur[j] + 1));
        }
        prev = cur;
    }
    prev[b.len()]
}

#[cfg(test)]
mod tests {
    use super::*;

    const MINIMAL: &str = "enphase:\n  api_key: k\n  client_id: c\n  client_secret: s\n";

    fn no_env(_: &str) -> Option<String> {
        None
    }

    fn problems(text: &str) -> Vec<String> {
        parse(text, &no_env).expect_err("config should be refused").problems
    }

    #[test]
    fn minimal_config_gets_defaults() {
        let c = parse(MINIMAL, &no_env).unwrap();
        assert_eq!(c.enphase.plan, Plan::Watt);
        assert_eq!(c.enphase.base_url.as_str(), "https://api.enphaseenergy.com/");
        assert_eq!(c.enphase.auth.flow, AuthFlow::AuthorizationCode);
        assert_eq!(c.enphase.auth.redirect_uri.as_str(), DEFAULT_REDIRECT_URI);
        assert_eq!(c.mqtt.host, "localhost");
        assert_eq!(c.mqtt.port, 1883);
        assert_eq!(c.mqtt.base_topic, "enphase");
        assert_eq!(c.mqtt.discovery_prefix, "homeassistant");
        assert_eq!(c.mqtt.discovery_mode, DiscoveryMode::Entity);
        assert_eq!(c.state_dir, PathBuf::from("./state"));
        assert_eq!(c.enphase.minute_limit(), 10);
        assert_eq!(c.enphase.month_limit(), 1000);
    }

    #[test]
    fn env_references_are_expanded_and_missing_ones_named() {
        let text = "enphase:\n  api_key: ${KEY}\n  client_id: id-${SUFFIX}\n  client_secret: ${MISSING}\n";
        let env = |n: &str| match n {
            "KEY" => Some("the-key".to_string()),
            "SUFFIX" => Some("7".to_string()),
            _ => None,
        };
        let err = parse(text, &env).unwrap_err();
        assert_eq!(err.problems, vec!["enphase.client_secret: environment variable MISSING is not set"]);
        let ok = parse(&text.replace("${MISSING}", "x"), &env).unwrap();
        assert_eq!(ok.enphase.api_key.expose(), "the-key");
        assert_eq!(ok.enphase.client_id, "id-7");
    }

    #[test]
    fn every_problem_is_reported_at_once() {
        let text = "enphase:\n  api_key: ''\n  client_id: c\n  client_secret: s\n  plan: gold\n  plann: watt\nmqtt:\n  port: 99999\n  discovery_mode: devices\n";
        let p = problems(text);
        assert_eq!(
            p,
            vec![
                "enphase.api_key: must not be empty",
                "enphase.plan: \"gold\" is not one of watt, kilowatt, megawatt, partner",
                "enphase.plann: unknown key (did you mean enphase.plan?)",
                "mqtt.port: expected a whole number from 1 to 65535, got 99999",
                "mqtt.discovery_mode: \"devices\" is not one of entity, device",
            ]
        );
    }

    #[test]
    fn secrets_never_appear_in_problems() {
        let text = "enphase:\n  api_key: [supersecret]\n  client_id: c\n  client_secret: {x: topsecret}\n";
        let p = problems(text).join("\n");
        assert!(!p.contains("supersecret") && !p.contains("topsecret"), "{p}");
        assert!(p.contains("enphase.api_key: expected a string, got a list"));
    }

    #[test]
    fn caps_above_the_plan_are_refused() {
        let p = problems(&format!("{MINIMAL}  hits_per_minute: 11\n  hits_per_month: 900\n"));
        assert_eq!(p, vec!["enphase.hits_per_minute: expected a whole number from 1 to 10, got 11"]);
        let c = parse(&format!("{MINIMAL}  hits_per_month: 900\n"), &no_env).unwrap();
        assert_eq!(c.enphase.month_limit(), 900);
    }

    #[test]
    fn password_flow_needs_credentials_and_partner_plan() {
        let p = problems(&format!("{MINIMAL}  auth:\n    flow: password\n"));
        assert_eq!(
            p,
            vec![
                "enphase.auth.username: is required with flow: password",
                "enphase.auth.password: is required with flow: password",
                "enphase.auth.flow: password is only for partner applications (enphase.plan: partner)",
            ]
        );
    }

    #[test]
    fn yaml_syntax_error_is_one_line() {
        let p = problems("enphase: [unclosed\n");
        assert_eq!(p.len(), 1);
        assert!(p[0].starts_with("YAML syntax error at line"), "{}", p[0]);
        assert!(!p[0].contains('\n'));
    }

    #[test]
    fn systems_must_be_ids() {
        let p = problems(&format!("{MINIMAL}  systems: [4210001, abc, 4210001]\n"));
        assert_eq!(
            p,
            vec![
                "enphase.systems[1]: \"abc\" is not a system id",
                "enphase.systems[2]: system 4210001 is listed twice"
            ]
        );
    }

    #[test]
    fn yaml_numbers_are_not_taken_for_text() {
        let p = problems("enphase:\n  api_key: 12345\n  client_id: 0x10\n  client_secret: s\nmqtt:\n  host: 1e3\n");
        assert_eq!(
            p,
            vec![
                "enphase.api_key: YAML reads this value as a number, not as text; put it in quotes",
                "enphase.client_id: YAML reads 16 as a number, not as text; put it in quotes",
                "mqtt.host: YAML reads 1000.0 as a number, not as text; put it in quotes",
            ]
        );
        let quoted = "enphase:\n  api_key: \"00123\"\n  client_id: \"0x10\"\n  client_secret: s\n";
        assert_eq!(parse(quoted, &no_env).unwrap().enphase.api_key.expose(), "00123");
    }

    #[test]
    fn a_secret_yaml_cannot_read_is_not_shown() {
        let secret = "123456789012345678901234567890";
        let p = problems(&MINIMAL.replace("api_key: k", &format!("api_key: {secret}")));
        assert_eq!(p.len(), 1, "{p:?}");
        assert!(!p[0].contains(secret) && !p[0].contains("1234567890"), "{}", p[0]);
    }

    #[test]
    fn values_and_keys_stay_on_one_line() {
        let p = problems(&format!("{MINIMAL}mqtt:\n  host: \"h\\nx\"\n\"foo\\nbar\": 1\n"));
        assert_eq!(p, vec!["mqtt.host: contains a line break or another control character", "foo\\nbar: unknown key"]);
    }

    #[test]
    fn mqtt_host_is_a_host_alone() {
        for bad in ["mqtt://127.0.0.1:1883", "broker:1883", "my broker", "broker/x"] {
            let p = problems(&format!("{MINIMAL}mqtt:\n  host: \"{bad}\"\n"));
            assert_eq!(p.len(), 1, "{bad}: {p:?}");
            assert!(p[0].starts_with(&format!("mqtt.host: {bad:?} is not a host name")), "{}", p[0]);
        }
        for good in ["localhost", "core-mosquitto", "192.168.1.10", "::1", "broker.example.org"] {
            let c = parse(&format!("{MINIMAL}mqtt:\n  host: \"{good}\"\n"), &no_env).unwrap();
            assert_eq!(c.mqtt.host, good);
        }
    }

    #[test]
    fn ids_and_topics_within_their_ranges() {
        let p = problems(&format!("{MINIMAL}  systems: [18446744073709551615]\n"));
        assert_eq!(p, vec!["enphase.systems[0]: 18446744073709551615 is not a system id"]);
        let long = "t".repeat(201);
        let p = problems(&format!("{MINIMAL}mqtt:\n  base_topic: {long}\n"));
        assert_eq!(p, vec!["mqtt.base_topic: is 201 bytes long; at most 200"]);
    }

    #[test]
    fn tls_files_are_read_only_when_tls_is_on() {
        let off = format!("{MINIMAL}mqtt:\n  tls:\n    enabled: false\n    ca_file: /nonexistent/ca.pem\n");
        assert!(parse(&off, &no_env).unwrap().mqtt.tls.is_none());
        let dir = std::env::temp_dir().join(format!("enphase-mqtt-tls-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let not_pem = dir.join("not.pem");
        std::fs::write(&not_pem, "hello").unwrap();
        let p = problems(&format!("{MINIMAL}mqtt:\n  tls:\n    ca_file: {}\n", not_pem.display()));
        assert_eq!(p, vec![format!("mqtt.tls.ca_file: no certificate in {}", not_pem.display())]);
        let p = problems(&format!("{MINIMAL}mqtt:\n  tls:\n    ca_file: {}\n", dir.display()));
        assert_eq!(p, vec![format!("mqtt.tls.ca_file: {:?} is a folder, not a file", dir.display().to_string())]);
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn tls_shorthand_and_mapping() {
        let c = parse(&format!("{MINIMAL}mqtt:\n  tls: true\n"), &no_env).unwrap();
        assert!(c.mqtt.tls.is_some());
        assert_eq!(c.mqtt.port, 8883);
        let p = problems(&format!(
            "{MINIMAL}mqtt:\n  tls:\n    ca_file: /nonexistent/ca.pem\n    client_cert: /nonexistent/c.pem\n"
        ));
        assert!(p.contains(&"mqtt.tls.ca_file: file \"/nonexistent/ca.pem\" does not exist".to_string()), "{p:?}");
        assert!(p.contains(&"mqtt.tls: client_cert and client_key go together".to_string()), "{p:?}");
    }
}
