//! `check-config` on a table of broken configs: each problem one line naming the key, exit 2.

mod common;

use std::path::Path;

async fn check(dir: &Path, name: &str, text: &str) -> common::Output {
    let path = dir.join(name);
    std::fs::write(&path, text).unwrap();
    common::run(&path, &["check-config"]).await
}

const GOOD: &str = "enphase:\n  api_key: k\n  client_id: c\n  client_secret: s\n";

#[tokio::test]
async fn broken_configs_give_one_line_per_problem_and_exit_2() {
    let dir = tempfile::tempdir().unwrap();
    // (config text, the one line expected after "<file>: ")
    let table: &[(&str, &str)] = &[
        (
            "enphase:\n  api_key: k\n  client_id: c\n  client_secret: s\n  plan: gold\n",
            "enphase.plan: \"gold\" is not one of watt, kilowatt, megawatt, partner",
        ),
        ("enphase:\n  client_id: c\n  client_secret: s\n", "enphase.api_key: is required"),
        ("enphase:\n  api_key: k\n  client_id: ''\n  client_secret: s\n", "enphase.client_id: must not be empty"),
        (
            &format!("{GOOD}  base_url: ftp://example.com\n"),
            "enphase.base_url: \"ftp://example.com\" is not an http:// or https:// URL",
        ),
        (
            &format!("{GOOD}  base_url: not a url\n"),
            "enphase.base_url: \"not a url\" is not a valid URL (relative URL without a base)",
        ),
        (
            &format!("{GOOD}  auth:\n    flow: magic\n"),
            "enphase.auth.flow: \"magic\" is not one of authorization_code, password",
        ),
        (&format!("{GOOD}  systems: 42\n"), "enphase.systems: expected a list of system ids, got 42"),
        (
            &format!("{GOOD}  hits_per_month: 5000\n"),
            "enphase.hits_per_month: expected a whole number from 1 to 1000, got 5000",
        ),
        (&format!("{GOOD}  timeout: 5\n"), "enphase.timeout: unknown key"),
        (&format!("{GOOD}mqtt:\n  port: abc\n"), "mqtt.port: expected a whole number from 1 to 65535, got \"abc\""),
        (&format!("{GOOD}mqtt:\n  port: 0\n"), "mqtt.port: expected a whole number from 1 to 65535, got 0"),
        (&format!("{GOOD}mqtt:\n  hots: broker\n"), "mqtt.hots: unknown key (did you mean mqtt.host?)"),
        (
            &format!("{GOOD}mqtt:\n  base_topic: enphase/#\n"),
            "mqtt.base_topic: \"enphase/#\" is not a usable topic prefix (not empty, no leading or trailing /, no + or #)",
        ),
        (&format!("{GOOD}mqtt:\n  discovery: maybe\n"), "mqtt.discovery: expected true or false, got \"maybe\""),
        (
            &format!("{GOOD}mqtt:\n  discovery_mode: devices\n"),
            "mqtt.discovery_mode: \"devices\" is not one of entity, device",
        ),
        (&format!("{GOOD}mqtt:\n  keep_alive: 1\n"), "mqtt.keep_alive: expected a whole number from 5 to 3600, got 1"),
        (&format!("{GOOD}mqtt:\n  password: p\n"), "mqtt.password: is set but mqtt.username is not"),
        (&format!("{GOOD}mqtt: 5\n"), "mqtt: expected a mapping of keys, got 5"),
        (
            &format!("{GOOD}http:\n  listen: everywhere\n"),
            "http.listen: \"everywhere\" is not an address:port such as 0.0.0.0:8099",
        ),
        (&format!("{GOOD}state_dir: ''\n"), "state_dir: must not be empty"),
        (&format!("{GOOD}colour: blue\n"), "colour: unknown key"),
        (
            "enphase:\n  api_key: ${ENPHASE_TEST_UNSET_VARIABLE}\n  client_id: c\n  client_secret: s\n",
            "enphase.api_key: environment variable ENPHASE_TEST_UNSET_VARIABLE is not set",
        ),
        ("- just\n- a list\n", "config: expected a mapping of keys, got a list"),
        ("", "enphase: is required (api_key, client_id, client_secret)"),
    ];
    for (i, (text, expected)) in table.iter().enumerate() {
        let name = format!("case{i}.yaml");
        let out = check(dir.path(), &name, text).await;
        assert_eq!(out.code, Some(2), "case {i} ({expected}): {out:?}");
        let path = dir.path().join(&name);
        let lines: Vec<&str> = out.stderr.lines().collect();
        let want = format!("enphase-mqtt: {}: {expected}", path.display());
        assert!(lines.contains(&want.as_str()), "case {i}: expected line\n  {want}\ngot\n{}", out.stderr);
        assert!(!out.stderr.contains("panicked"), "case {i}: {}", out.stderr);
    }
}

#[tokio::test]
async fn several_problems_come_together_one_per_line_and_secrets_stay_hidden() {
    let dir = tempfile::tempdir().unwrap();
    let text = "enphase:\n  api_key: [my-api-key-value]\n  client_id: c\n  client_secret: 12345\n  plan: gold\nmqtt:\n  port: 70000\n  password: hunter2\n";
    let out = check(dir.path(), "multi.yaml", text).await;
    assert_eq!(out.code, Some(2));
    let problems: Vec<&str> = out.stderr.lines().filter(|l| l.contains("multi.yaml: ")).collect();
    // The fifth: a secret YAML reads as a number (it would lose leading zeros), not shown.
    assert_eq!(problems.len(), 5, "{}", out.stderr);
    assert!(
        problems
            .iter()
            .any(|p| p
                .ends_with("enphase.client_secret: YAML reads this value as a number, not as text; put it in quotes")),
        "{}",
        out.stderr
    );
    for secret in ["my-api-key-value", "hunter2", "12345"] {
        assert!(!out.stderr.contains(secret), "{secret}: {}", out.stderr);
    }
}

#[tokio::test]
async fn syntax_errors_and_missing_files_are_one_line() {
    let dir = tempfile::tempdir().unwrap();
    let out = check(dir.path(), "bad.yaml", "enphase:\n  api_key: [unclosed\n").await;
    assert_eq!(out.code, Some(2));
    assert_eq!(out.stderr.lines().count(), 1, "{}", out.stderr);
    assert!(out.stderr.contains("YAML syntax error at line"), "{}", out.stderr);

    let missing = common::run(&dir.path().join("nope.yaml"), &["check-config"]).await;
    assert_eq!(missing.code, Some(2));
    assert_eq!(missing.stderr.lines().count(), 1, "{}", missing.stderr);
    assert!(missing.stderr.contains("nope.yaml: cannot read the config file"), "{}", missing.stderr);
}

#[tokio::test]
async fn the_example_config_is_valid() {
    let out =
        common::command(Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/config.example.yaml")), &["check-config"])
            .env("ENPHASE_API_KEY", "k")
            .env("ENPHASE_CLIENT_SECRET", "s")
            .output()
            .await
            .unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(String::from_utf8_lossy(&out.stdout).contains("OK (plan watt"));
}

#[tokio::test]
async fn usage_errors_exit_2() {
    let dir = tempfile::tempdir().unwrap();
    let out = common::run(&dir.path().join("c.yaml"), &["frobnicate"]).await;
    assert_eq!(out.code, Some(2));
    let out = common::run(&dir.path().join("c.yaml"), &["simulate", "--plan", "gold", "--listen", "127.0.0.1:0"]).await;
    assert_eq!(out.code, Some(2), "{out:?}");
    assert!(out.stderr.contains("--plan"), "{}", out.stderr);
}
