//! The packaging: the Home Assistant add-on in `addon/` and the two Dockerfiles.
//!
//! The add-on's manifest must follow the Supervisor's rules and our crate's version; its options,
//! its schema, its translations and our config keys must agree; and `addon/run.sh`, run for real
//! (with `bash` and `jq`, and a stand-in for the binary), must turn every option into the config key
//! it belongs to, with a config that [`enphase_mqtt::config::parse`] accepts.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Command;

use enphase_mqtt::config::{self, AuthFlow, Config, DiscoveryMode};
use enphase_mqtt::enlighten::Plan;
use serde_json::{Value as Json, json};
use serde_yaml::Value as Yaml;

/// Every option and the config key it must land at.
const MAPPING: &[(&str, &str)] = &[
    ("client_id", "enphase.client_id"),
    ("client_secret", "enphase.client_secret"),
    ("api_key", "enphase.api_key"),
    ("plan", "enphase.plan"),
    ("systems", "enphase.systems"),
    ("auth_flow", "enphase.auth.flow"),
    ("enlighten_username", "enphase.auth.username"),
    ("enlighten_password", "enphase.auth.password"),
    ("hits_per_minute", "enphase.hits_per_minute"),
    ("hits_per_month", "enphase.hits_per_month"),
    ("min_poll_interval_secs", "enphase.min_poll_interval_secs"),
    ("stale_after_secs", "enphase.stale_after_secs"),
    ("request_timeout_secs", "enphase.request_timeout_secs"),
    ("base_url", "enphase.base_url"),
    ("mqtt_host", "mqtt.host"),
    ("mqtt_port", "mqtt.port"),
    ("mqtt_username", "mqtt.username"),
    ("mqtt_password", "mqtt.password"),
    ("mqtt_tls", "mqtt.tls"),
    ("mqtt_client_id", "mqtt.client_id"),
    ("base_topic", "mqtt.base_topic"),
    ("discovery", "mqtt.discovery"),
    ("discovery_prefix", "mqtt.discovery_prefix"),
    ("discovery_mode", "mqtt.discovery_mode"),
];

/// The one option that is not a config key: it sets the bridge's log filter.
const ENV_OPTIONS: &[(&str, &str)] = &[("log_level", "ENPHASE_MQTT_LOG")];

/// Options holding secrets: `password` fields in the UI, and `${…}` references in the config file.
const SECRETS: &[&str] = &["client_secret", "api_key", "enlighten_password", "mqtt_password"];

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn read(path: &str) -> String {
    std::fs::read_to_string(repo().join(path)).unwrap_or_else(|e| panic!("reading {path}: {e}"))
}

fn yaml(path: &str) -> Yaml {
    serde_yaml::from_str(&read(path)).unwrap_or_else(|e| panic!("{path} is not valid YAML: {e}"))
}

fn manifest() -> Yaml {
    yaml("addon/config.yaml")
}

fn mapping<'a>(value: &'a Yaml, key: &str) -> &'a serde_yaml::Mapping {
    value.get(key).and_then(Yaml::as_mapping).unwrap_or_else(|| panic!("{key}: expected a mapping"))
}

fn keys(map: &serde_yaml::Mapping) -> BTreeSet<String> {
    map.keys().map(|k| k.as_str().expect("string keys").to_string()).collect()
}

/// The schema as option → type text (`["int(1,)"]` lists give their element's type).
fn schema() -> BTreeMap<String, String> {
    mapping(&manifest(), "schema")
        .iter()
        .map(|(k, v)| {
            let ty = match v {
                Yaml::String(s) => s.clone(),
                Yaml::Sequence(items) if items.len() == 1 => items[0].as_str().expect("a type").to_string(),
                other => panic!("schema {k:?}: unexpected {other:?}"),
            };
            (k.as_str().unwrap().to_string(), ty)
        })
        .collect()
}

/// `list(a|b|c)` → `[a, b, c]`.
fn choices(ty: &str) -> Option<Vec<String>> {
    let inner = ty.trim_end_matches('?').strip_prefix("list(")?.strip_suffix(')')?;
    Some(inner.split('|').map(str::to_string).collect())
}

/// `int(min,max)` → its bounds.
fn int_bounds(ty: &str) -> Option<(Option<u64>, Option<u64>)> {
    let inner = ty.trim_end_matches('?').strip_prefix("int(")?.strip_suffix(')')?;
    let (min, max) = inner.split_once(',')?;
    let num = |s: &str| (!s.is_empty()).then(|| s.parse::<u64>().expect("a whole number"));
    Some((num(min), num(max)))
}

/// Whether `ty` is a type the Supervisor knows (its RE_SCHEMA_ELEMENT, minus `device` and `match`).
fn is_supervisor_type(ty: &str) -> bool {
    let ty = ty.strip_suffix('?').unwrap_or(ty);
    if choices(ty).is_some_and(|c| c.iter().all(|v| !v.is_empty())) {
        return true;
    }
    let (name, range) = match ty.split_once('(') {
        Some((name, rest)) => (name, Some(rest.strip_suffix(')').unwrap_or("not closed"))),
        None => (ty, None),
    };
    let numeric = |r: &str| {
        r.split_once(',').is_some_and(|(a, b)| {
            [a, b].iter().all(|s| s.chars().all(|c| c.is_ascii_digit() || (name == "float" && c == '.')))
        })
    };
    match (name, range) {
        ("bool" | "email" | "url" | "port", None) => true,
        ("str" | "password" | "int" | "float", None) => true,
        ("str" | "password" | "int" | "float", Some(r)) => numeric(r),
        _ => false,
    }
}

#[test]
fn manifest_follows_the_crate_and_the_supervisor() {
    let m = manifest();
    let s = |k: &str| m.get(k).and_then(Yaml::as_str).unwrap_or_else(|| panic!("{k}: expected a string"));
    assert_eq!(s("version"), env!("CARGO_PKG_VERSION"), "addon/config.yaml version must be Cargo.toml's");
    assert!(!s("name").is_empty() && !s("description").is_empty());
    let slug = s("slug");
    assert!(slug.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_'), "slug {slug:?}");
    assert!(s("url").starts_with("https://"));

    let arch: Vec<&str> = m["arch"].as_sequence().unwrap().iter().map(|a| a.as_str().unwrap()).collect();
    assert!(arch.contains(&"aarch64") && arch.contains(&"amd64"), "{arch:?}");
    assert!(arch.iter().all(|a| ["aarch64", "amd64", "armhf", "armv7", "i386"].contains(a)), "{arch:?}");

    assert_eq!(m["init"], Yaml::Bool(false), "the base image's s6-overlay is the init");
    assert_eq!(m["ingress"], Yaml::Bool(true));
    let services: Vec<&str> = m["services"].as_sequence().unwrap().iter().map(|v| v.as_str().unwrap()).collect();
    assert!(services.contains(&"mqtt:need"), "{services:?}");
    assert_eq!(m["ingress_port"].as_u64(), Some(8099));
}

/// The add-on store shows `icon.png`: a square PNG of 128 pixels.
#[test]
fn the_store_icon_is_a_128_pixel_square_png() {
    let bytes = std::fs::read(repo().join("addon/icon.png")).expect("addon/icon.png");
    assert!(bytes.starts_with(b"\x89PNG\r\n\x1a\n") && &bytes[12..16] == b"IHDR", "a PNG");
    let be = |at: usize| u32::from_be_bytes(bytes[at..at + 4].try_into().unwrap());
    assert_eq!((be(16), be(20)), (128, 128), "width and height");
}

#[test]
fn options_and_schema_agree() {
    let m = manifest();
    let options = keys(mapping(&m, "options"));
    let schema = schema();
    for (key, ty) in &schema {
        assert!(is_supervisor_type(ty), "schema {key}: {ty:?} is not a type the Supervisor knows");
        let optional = ty.ends_with('?');
        // A required option needs a default (null: the user must fill it in); an optional one has none.
        assert_eq!(options.contains(key), !optional, "option {key} ({ty}): default present iff required");
    }
    for key in &options {
        assert!(schema.contains_key(key), "option {key} has no schema entry");
    }
    // Defaults must pass their own schema.
    for (key, value) in mapping(&m, "options") {
        let key = key.as_str().unwrap();
        let ty = &schema[key];
        match value {
            Yaml::Null => assert!(["client_id", "client_secret", "api_key"].contains(&key), "{key} is null"),
            Yaml::String(v) => {
                if let Some(c) = choices(ty) {
                    assert!(c.contains(v), "default {key}: {v:?} is not one of {c:?}");
                }
            }
            Yaml::Bool(_) => assert_eq!(ty, "bool", "{key}"),
            Yaml::Sequence(_) => assert!(m["schema"][key].is_sequence(), "{key}"),
            other => panic!("default {key}: unexpected {other:?}"),
        }
    }
}

#[test]
fn every_option_maps_to_a_config_key_or_the_log_filter() {
    let schema: BTreeSet<String> = schema().into_keys().collect();
    let mapped: BTreeSet<String> = MAPPING.iter().chain(ENV_OPTIONS).map(|(o, _)| o.to_string()).collect();
    assert_eq!(schema, mapped, "schema options vs the options this test knows the config key of");
    let config_keys: BTreeSet<&str> = MAPPING.iter().map(|(_, k)| *k).collect();
    assert_eq!(config_keys.len(), MAPPING.len(), "two options map to one config key");
}

#[test]
fn secrets_are_password_fields() {
    let schema = schema();
    for key in SECRETS {
        assert!(schema[*key].starts_with("password"), "{key}: {:?} should be a password type", schema[*key]);
    }
    for (key, ty) in &schema {
        if key.contains("secret") || key.contains("password") || key.contains("key") {
            assert!(SECRETS.contains(&key.as_str()), "{key} looks secret but is not in SECRETS");
        }
        if ty.starts_with("password") {
            assert!(SECRETS.contains(&key.as_str()), "{key} is a password field but not in SECRETS");
        }
    }
}

#[test]
fn choices_are_the_configs() {
    let schema = schema();
    assert_eq!(schema["plan"], "list(watt|kilowatt|megawatt|partner)");
    let plans: Vec<String> = Plan::ALL.iter().map(|p| p.as_str().to_string()).collect();
    assert_eq!(choices(&schema["plan"]).unwrap(), plans, "the plans the config knows");
    assert_eq!(schema["auth_flow"], "list(authorization_code|password)");
    assert_eq!(
        choices(&schema["auth_flow"]).unwrap(),
        [AuthFlow::AuthorizationCode, AuthFlow::Password].map(|f| f.as_str().to_string())
    );
    assert_eq!(schema["discovery_mode"], "list(entity|device)");
    // The caps go up to the largest plan's limits, no further.
    let max_minute = Plan::ALL.iter().map(|p| u64::from(p.per_minute())).max();
    let max_month = Plan::ALL.iter().map(|p| u64::from(p.per_month())).max();
    assert_eq!(int_bounds(&schema["hits_per_minute"]), Some((Some(1), max_minute)));
    assert_eq!(int_bounds(&schema["hits_per_month"]), Some((Some(1), max_month)));
}

#[test]
fn translations_name_every_option() {
    let t = yaml("addon/translations/en.yaml");
    let conf = mapping(&t, "configuration");
    let schema: BTreeSet<String> = schema().into_keys().collect();
    assert_eq!(keys(conf), schema, "translations/en.yaml vs the schema");
    for (key, entry) in conf {
        for field in ["name", "description"] {
            let text = entry.get(field).and_then(Yaml::as_str).unwrap_or_default();
            assert!(!text.trim().is_empty(), "translation of {key:?} has no {field}");
        }
    }
}

#[test]
fn build_yaml_has_a_base_image_for_every_arch() {
    let build = yaml("addon/build.yaml");
    let from = mapping(&build, "build_from");
    let arch: BTreeSet<String> =
        manifest()["arch"].as_sequence().unwrap().iter().map(|a| a.as_str().unwrap().to_string()).collect();
    assert_eq!(keys(from), arch);
    for (a, image) in from {
        let (a, image) = (a.as_str().unwrap(), image.as_str().unwrap());
        // Debian, as the builder stage that links the binary against glibc.
        assert!(image.contains("base-debian:bookworm"), "{a}: {image}");
        assert!(image.contains(a), "{a}: {image}");
    }
}

/// The Rust version of the `rust:X.Y…` builder image in a Dockerfile.
fn builder_rust(dockerfile: &str) -> (u32, u32) {
    let text = read(dockerfile);
    let tag = text
        .lines()
        .find_map(|l| l.strip_prefix("FROM rust:"))
        .unwrap_or_else(|| panic!("{dockerfile}: no rust builder stage"));
    let mut parts = tag.split(['.', '-', ' ']).map(|p| p.parse::<u32>());
    match (parts.next(), parts.next()) {
        (Some(Ok(major)), Some(Ok(minor))) => (major, minor),
        _ => panic!("{dockerfile}: cannot read the Rust version of {tag:?}"),
    }
}

#[test]
fn dockerfiles_build_what_ci_builds() {
    let msrv: Vec<u32> = env!("CARGO_PKG_RUST_VERSION").split('.').map(|p| p.parse().unwrap()).collect();
    for file in ["Dockerfile", "addon/Dockerfile"] {
        let (major, minor) = builder_rust(file);
        assert!((major, minor) >= (msrv[0], msrv[1]), "{file}: rust {major}.{minor} is older than rust-version");
        assert!(read(file).contains("-slim-bookworm"), "{file}: the builder must match the runtime's Debian");
    }
    assert_eq!(builder_rust("Dockerfile"), builder_rust("addon/Dockerfile"), "one toolchain for both images");

    let plain = read("Dockerfile");
    for needle in [
        "cargo build --release --locked",
        "FROM debian:bookworm-slim",
        "VOLUME [\"/data\"]",
        "ENTRYPOINT [\"enphase-mqtt\"]",
        "CMD [\"run\", \"--config\", \"/data/config.yaml\"]",
        "HEALTHCHECK",
        "/healthz",
    ] {
        assert!(plain.contains(needle), "Dockerfile lacks {needle:?}");
    }
    let user = plain.lines().rev().find_map(|l| l.strip_prefix("USER ")).expect("Dockerfile sets USER");
    assert!(!user.starts_with("root") && !user.starts_with("0"), "USER {user}");
    let ignore = read(".dockerignore");
    assert!(ignore.lines().any(|l| l.trim() == "*"), ".dockerignore keeps config.yaml and state/ out by default");

    let addon = read("addon/Dockerfile");
    for needle in
        ["ARG BUILD_FROM", "FROM ${BUILD_FROM}", "ARG BUILD_VERSION", "cargo install --locked", "CMD [\"/run.sh\"]"]
    {
        assert!(addon.contains(needle), "addon/Dockerfile lacks {needle:?}");
    }

    // The add-on builds the published crate, which has no .cargo/config.toml: it passes the same
    // flags itself.
    let config = read(".cargo/config.toml");
    let flags: Vec<&str> = config
        .lines()
        .find_map(|l| l.trim().strip_prefix("rustflags = ["))
        .expect(".cargo/config.toml sets rustflags")
        .split('"')
        .skip(1)
        .step_by(2)
        .collect();
    let env = addon.lines().find_map(|l| l.strip_prefix("ENV RUSTFLAGS=")).expect("addon/Dockerfile sets RUSTFLAGS");
    assert_eq!(env.trim_matches('"'), flags.join(" "), "addon/Dockerfile and .cargo/config.toml pass the same flags");
}

/// The folders of the targets Cargo.toml declares besides the library and the binary
/// (`[[bench]]`, `[[test]]`, `[[example]]`): cargo refuses the manifest when their files are missing.
fn declared_target_dirs(manifest: &str) -> BTreeSet<String> {
    let mut dirs = BTreeSet::new();
    let mut section = "";
    for line in manifest.lines().map(str::trim) {
        if line.starts_with('[') {
            section = line;
            if let Some(dir) = match line {
                "[[bench]]" => Some("benches"),
                "[[test]]" => Some("tests"),
                "[[example]]" => Some("examples"),
                _ => None,
            } {
                dirs.insert(dir.to_string());
            }
        } else if section.starts_with("[[") && line.starts_with("path") {
            let path = line.split('"').nth(1).expect("path = \"…\"");
            dirs.insert(path.split('/').next().unwrap().to_string());
        }
    }
    dirs
}

#[test]
fn docker_build_has_every_file_cargo_needs_and_nothing_secret() {
    let cargo_toml = read("Cargo.toml");
    assert_eq!(
        declared_target_dirs("[[bench]]\nname = \"a\"\n[[test]]\nname = \"b\"\npath = \"it/b.rs\"\n"),
        ["benches", "it", "tests"].map(String::from).into(),
        "the Cargo.toml reader itself"
    );
    let dockerfile = read("Dockerfile");
    let first_build = dockerfile.find("cargo build").expect("Dockerfile runs cargo build");
    let allowed: BTreeSet<String> = read(".dockerignore")
        .lines()
        .filter_map(|l| l.trim().strip_prefix('!'))
        .map(|p| p.trim_end_matches('/').to_string())
        .collect();
    let mut needed = declared_target_dirs(&cargo_toml);
    needed.insert("src".into());
    if cargo_toml.lines().any(|l| l.trim_start().starts_with("build =")) || repo().join("build.rs").exists() {
        needed.insert("build.rs".into());
    }
    for path in &needed {
        assert!(allowed.contains(path), ".dockerignore must let {path} into the build context");
        let copy =
            dockerfile.find(&format!("COPY {path} ")).unwrap_or_else(|| panic!("Dockerfile never copies {path}"));
        if path != "src" {
            assert!(copy < first_build, "Dockerfile must copy {path} before the first cargo build");
        }
    }
    for secret in ["config.yaml", "state", "target", ".git"] {
        assert!(!allowed.contains(secret), ".dockerignore lets {secret} into the build context");
    }
}

// ---- run.sh, for real ----------------------------------------------------------------------------

/// What one run of `addon/run.sh` did.
struct Run {
    ok: bool,
    stderr: String,
    data: tempfile::TempDir,
    /// The arguments the stand-in binary was exec'd with; `None` if it was not.
    args: Option<Vec<String>>,
    /// Its environment.
    env: HashMap<String, String>,
}

impl Run {
    fn config_text(&self) -> String {
        std::fs::read_to_string(self.data.path().join("config.yaml")).expect("run.sh wrote config.yaml")
    }

    fn config_yaml(&self) -> Yaml {
        serde_yaml::from_str(&self.config_text()).expect("config.yaml is YAML")
    }

    fn parse(&self) -> Config {
        let env = |name: &str| self.env.get(name).cloned();
        config::parse(&self.config_text(), &env)
            .unwrap_or_else(|e| panic!("the config run.sh wrote is refused:\n{e}\n---\n{}", self.config_text()))
    }
}

fn require_jq() {
    let found = Command::new("jq").arg("--version").output().is_ok_and(|o| o.status.success());
    assert!(found, "jq is needed to test addon/run.sh (the add-on's base image has it): apt-get install jq");
}

/// Runs `addon/run.sh` with `options` as `/data/options.json`, `service` as the Supervisor's MQTT
/// service, and a stand-in for `enphase-mqtt` that records its arguments and environment.
fn run_script(options: &Json, service: &[(&str, &str)]) -> Run {
    require_jq();
    let data = tempfile::tempdir().unwrap();
    std::fs::write(data.path().join("options.json"), serde_json::to_vec_pretty(options).unwrap()).unwrap();
    let bin = data.path().join("enphase-mqtt");
    std::fs::write(
        &bin,
        "#!/bin/sh\nenv -0 > \"$ENPHASE_ADDON_DATA/exec.env\"\nprintf '%s\\n' \"$@\" > \"$ENPHASE_ADDON_DATA/exec.args\"\n",
    )
    .unwrap();
    set_mode(&bin, 0o755);

    let mut cmd = Command::new("bash");
    cmd.arg(repo().join("addon/run.sh"))
        .env_clear()
        .env("PATH", std::env::var_os("PATH").unwrap_or_default())
        .env("ENPHASE_ADDON_DATA", data.path())
        .env("ENPHASE_ADDON_BIN", &bin);
    for (name, value) in service {
        cmd.env(format!("ENPHASE_ADDON_MQTT_{name}"), value);
    }
    let out = cmd.output().expect("bash runs");
    let args =
        std::fs::read_to_string(data.path().join("exec.args")).ok().map(|t| t.lines().map(str::to_string).collect());
    let env = std::fs::read(data.path().join("exec.env"))
        .map(|raw| {
            raw.split(|b| *b == 0)
                .filter_map(|kv| String::from_utf8_lossy(kv).split_once('=').map(|(k, v)| (k.into(), v.into())))
                .collect()
        })
        .unwrap_or_default();
    Run { ok: out.status.success(), stderr: String::from_utf8_lossy(&out.stderr).into(), data, args, env }
}

#[cfg(unix)]
fn set_mode(path: &Path, mode: u32) {
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).unwrap();
}

#[cfg(unix)]
fn mode(path: &Path) -> u32 {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(path).unwrap().permissions().mode() & 0o777
}

/// The Supervisor's MQTT service, as the Mosquitto broker add-on provides it.
const SERVICE: &[(&str, &str)] =
    &[("HOST", "core-mosquitto"), ("PORT", "1883"), ("USERNAME", "addons"), ("PASSWORD", "svc-pw"), ("SSL", "false")];

/// The manifest's defaults, with the three required options filled in.
fn default_options() -> Json {
    let mut o: Json = serde_json::to_value(mapping(&manifest(), "options")).unwrap();
    o["client_id"] = json!("the-client-id");
    o["client_secret"] = json!("the-client-secret");
    o["api_key"] = json!("the-api-key");
    o
}

/// Every option set, each to a value no other option has; strings with quotes, `#`, `$`, `: `.
fn every_option() -> Json {
    json!({
        "client_id": "client \"7\": #1 $HOME",
        "client_secret": "s3cr'et \"$x\" ${Y} #",
        "api_key": "key: with colon",
        "plan": "partner",
        "systems": [4210001, 4210002],
        "auth_flow": "password",
        "enlighten_username": "owner@example.com",
        "enlighten_password": "enl-pa$$word '\"",
        "hits_per_minute": 120,
        "hits_per_month": 900000,
        "min_poll_interval_secs": 600,
        "stale_after_secs": 7200,
        "request_timeout_secs": 45,
        "base_url": "http://127.0.0.1:8080",
        "mqtt_host": "broker.example.net",
        "mqtt_port": 8884,
        "mqtt_username": "bridge",
        "mqtt_password": "mqtt pw ${NOT_EXPANDED}",
        "mqtt_tls": true,
        "mqtt_client_id": "enphase-test",
        "base_topic": "solar/enphase",
        "discovery": false,
        "discovery_prefix": "ha",
        "discovery_mode": "device",
        "log_level": "debug"
    })
}

/// The value at a dotted key of the config file.
fn at<'a>(config: &'a Yaml, dotted: &str) -> Option<&'a Yaml> {
    dotted.split('.').try_fold(config, |v, k| v.get(k))
}

#[test]
fn run_sh_puts_every_option_at_its_config_key() {
    let options = every_option();
    let schema: BTreeSet<String> = schema().into_keys().collect();
    let set: BTreeSet<String> = options.as_object().unwrap().keys().cloned().collect();
    assert_eq!(set, schema, "this test must set every option");

    // The service is there but must not be used: mqtt_host names another broker.
    let run = run_script(&options, SERVICE);
    assert!(run.ok, "run.sh failed:\n{}", run.stderr);
    let config_path = run.data.path().join("config.yaml");
    assert_eq!(
        run.args.as_deref(),
        Some(&["run".to_string(), "--config".to_string(), config_path.display().to_string()][..]),
        "run.sh must exec `enphase-mqtt run --config <its config>`"
    );

    let file = run.config_yaml();
    let text = run.config_text();
    for (option, key) in MAPPING {
        let want = &options[*option];
        let got = at(&file, key).unwrap_or_else(|| panic!("option {option} did not reach {key}:\n{text}"));
        if SECRETS.contains(option) {
            let reference = got.as_str().unwrap_or_default();
            let name = reference
                .strip_prefix("${")
                .and_then(|r| r.strip_suffix('}'))
                .unwrap_or_else(|| panic!("{key} holds the secret {option} itself instead of a ${{…}} reference"));
            assert_eq!(run.env.get(name).map(String::as_str), want.as_str(), "{option} → {key} via ${{{name}}}");
            assert!(!text.contains(want.as_str().unwrap()), "the secret {option} is written in config.yaml");
        } else {
            assert_eq!(&serde_json::to_value(got).unwrap(), want, "option {option} → {key}");
        }
    }
    for (option, var) in ENV_OPTIONS {
        assert_eq!(run.env.get(*var).map(String::as_str), options[*option].as_str(), "{option} → ${var}");
    }
    assert!(!text.contains("svc-pw") && !text.contains("addons"), "the MQTT service was used despite mqtt_host");
    assert_ne!(run.env.get("MQTT_PASSWORD").map(String::as_str), Some("svc-pw"));
    assert_eq!(mode(&config_path), 0o600, "config.yaml is private");

    // And the bridge reads it as meant.
    let c = run.parse();
    assert_eq!(c.enphase.client_id, "client \"7\": #1 $HOME");
    assert_eq!(c.enphase.client_secret.expose(), "s3cr'et \"$x\" ${Y} #", "expanded once, not twice");
    assert_eq!(c.enphase.api_key.expose(), "key: with colon");
    assert_eq!(c.enphase.plan, Plan::Partner);
    assert_eq!(c.enphase.systems, vec![4210001, 4210002]);
    assert_eq!(c.enphase.auth.flow, AuthFlow::Password);
    assert_eq!(c.enphase.auth.username, "owner@example.com");
    assert_eq!(c.enphase.auth.password.expose(), "enl-pa$$word '\"");
    assert_eq!((c.enphase.hits_per_minute, c.enphase.hits_per_month), (Some(120), Some(900_000)));
    assert_eq!(c.enphase.min_poll_interval_secs, 600);
    assert_eq!(c.enphase.stale_after_secs, 7200);
    assert_eq!(c.enphase.request_timeout_secs, 45);
    assert_eq!(c.enphase.base_url.as_str(), "http://127.0.0.1:8080/");
    assert_eq!((c.mqtt.host.as_str(), c.mqtt.port), ("broker.example.net", 8884));
    assert_eq!(c.mqtt.username.as_deref(), Some("bridge"));
    assert_eq!(c.mqtt.password.as_ref().map(|p| p.expose()), Some("mqtt pw ${NOT_EXPANDED}"));
    assert!(c.mqtt.tls.is_some());
    assert_eq!(c.mqtt.client_id, "enphase-test");
    assert_eq!((c.mqtt.base_topic.as_str(), c.mqtt.discovery_prefix.as_str()), ("solar/enphase", "ha"));
    assert!(!c.mqtt.discovery);
    assert_eq!(c.mqtt.discovery_mode, DiscoveryMode::Device);
    assert_eq!(c.state_dir, run.data.path().join("state"));
}

#[test]
fn run_sh_takes_the_broker_and_login_from_the_mqtt_service() {
    let mut service = SERVICE.to_vec();
    service.retain(|(k, _)| *k != "SSL");
    service.push(("SSL", "true"));
    let run = run_script(&default_options(), &service);
    assert!(run.ok, "run.sh failed:\n{}", run.stderr);
    let c = run.parse();
    assert_eq!((c.mqtt.host.as_str(), c.mqtt.port), ("core-mosquitto", 1883));
    assert_eq!(c.mqtt.username.as_deref(), Some("addons"));
    assert_eq!(c.mqtt.password.as_ref().map(|p| p.expose()), Some("svc-pw"));
    assert!(c.mqtt.tls.is_some(), "ssl: true from the service turns TLS on");
    assert!(!run.config_text().contains("svc-pw"), "the service password is written in config.yaml");
}

#[test]
fn run_sh_defaults_give_a_working_config_behind_ingress() {
    let run = run_script(&default_options(), SERVICE);
    assert!(run.ok, "run.sh failed:\n{}", run.stderr);
    let c = run.parse();
    // The page listens where the manifest sends ingress.
    let port = manifest()["ingress_port"].as_u64().unwrap();
    assert_eq!(c.http.listen, Some(SocketAddr::from(([0, 0, 0, 0], port as u16))));
    assert_eq!(c.state_dir, run.data.path().join("state"), "state lives in /data");
    assert_eq!(c.enphase.plan, Plan::Watt);
    assert!(c.enphase.systems.is_empty());
    assert_eq!(c.enphase.auth.flow, AuthFlow::AuthorizationCode);
    assert_eq!((c.enphase.hits_per_minute, c.enphase.hits_per_month), (None, None));
    assert_eq!(c.mqtt.base_topic, "enphase");
    assert!(c.mqtt.discovery);
    assert!(c.mqtt.tls.is_none());
    assert_eq!(run.env.get("ENPHASE_MQTT_LOG").map(String::as_str), Some("info"));
}

#[test]
fn run_sh_every_choice_and_bound_passes_the_config() {
    let schema = schema();
    let mut cases: Vec<(String, Json)> = Vec::new();
    for (key, ty) in &schema {
        for value in choices(ty).unwrap_or_default() {
            let mut o = default_options();
            o[key] = json!(value);
            if key == "auth_flow" && value == "password" {
                o["plan"] = json!("partner");
                o["enlighten_username"] = json!("owner@example.com");
                o["enlighten_password"] = json!("pw");
            }
            cases.push((format!("{key}: {value}"), o));
        }
    }
    // Every whole-number option at its schema's lowest and highest value at once (the partner plan
    // has the highest limits).
    let lists: BTreeSet<String> = keys(mapping(&manifest(), "schema"))
        .into_iter()
        .filter(|k| manifest()["schema"][k.as_str()].is_sequence())
        .collect();
    for end in ["lowest", "highest"] {
        let mut o = default_options();
        o["plan"] = json!("partner");
        for (key, ty) in &schema {
            let bounds = if ty.trim_end_matches('?') == "port" { Some((Some(1), Some(65535))) } else { int_bounds(ty) };
            let Some((min, max)) = bounds else { continue };
            let value = if end == "lowest" { min } else { max };
            if let Some(v) = value {
                o[key] = if lists.contains(key) { json!([v]) } else { json!(v) };
            }
        }
        cases.push((format!("every number at its {end}"), o));
    }
    assert!(cases.len() >= 10, "{} cases", cases.len());
    for (what, options) in cases {
        let run = run_script(&options, SERVICE);
        assert!(run.ok, "{what}: run.sh failed:\n{}", run.stderr);
        let env = |name: &str| run.env.get(name).cloned();
        if let Err(e) = config::parse(&run.config_text(), &env) {
            panic!("{what}: the config refuses what the add-on's schema allows:\n{e}\n---\n{}", run.config_text());
        }
    }
}

#[test]
fn run_sh_names_missing_credentials_and_does_not_start() {
    let mut o = default_options();
    o["api_key"] = json!("");
    o["client_secret"] = Json::Null;
    let run = run_script(&o, SERVICE);
    assert!(!run.ok);
    assert!(run.args.is_none(), "the bridge was started");
    assert!(run.stderr.contains("client_secret api_key"), "{}", run.stderr);
}

#[test]
fn run_sh_without_a_broker_says_so() {
    let run = run_script(&default_options(), &[]);
    assert!(!run.ok);
    assert!(run.args.is_none(), "the bridge was started");
    assert!(run.stderr.contains("no MQTT broker"), "{}", run.stderr);
    // With a broker of one's own, no service is needed.
    let mut o = default_options();
    o["mqtt_host"] = json!("192.0.2.10");
    let run = run_script(&o, &[]);
    assert!(run.ok, "{}", run.stderr);
    let c = run.parse();
    assert_eq!((c.mqtt.host.as_str(), c.mqtt.port, c.mqtt.username.as_deref()), ("192.0.2.10", 1883, None));
}
