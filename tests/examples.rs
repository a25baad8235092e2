//! The Node-RED example flow in `examples/`: importable as it is (a JSON array of nodes whose wires
//! and references hold together), reading the topics the bridge really publishes, and using only
//! fields the bridge's state JSON has.

use std::collections::{BTreeSet, HashMap};

use enphase_mqtt::home_assistant::Topics;
use enphase_mqtt::home_assistant::entities::SITE_ENTITIES;
use serde_json::Value;

const FLOW_PATH: &str = "examples/node-red-flow.json";

fn flow() -> Vec<Value> {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join(FLOW_PATH);
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("reading {FLOW_PATH}: {e}"));
    let value: Value = serde_json::from_str(&text).unwrap_or_else(|e| panic!("{FLOW_PATH} is not valid JSON: {e}"));
    value.as_array().unwrap_or_else(|| panic!("{FLOW_PATH}: Node-RED imports an array of nodes")).clone()
}

fn by_id(nodes: &[Value]) -> HashMap<&str, &Value> {
    nodes.iter().map(|n| (n["id"].as_str().unwrap(), n)).collect()
}

fn of_type<'a>(nodes: &'a [Value], ty: &str) -> Vec<&'a Value> {
    nodes.iter().filter(|n| n["type"] == ty).collect()
}

/// Whether an MQTT topic filter (`+`, `#`) matches a topic.
fn matches(filter: &str, topic: &str) -> bool {
    let mut f = filter.split('/');
    let mut t = topic.split('/');
    loop {
        match (f.next(), t.next()) {
            (Some("#"), _) => return true,
            (Some("+"), Some(_)) => {}
            (Some(a), Some(b)) if a == b => {}
            (None, None) => return true,
            _ => return false,
        }
    }
}

#[test]
fn every_node_has_a_unique_id_and_a_type() {
    let nodes = flow();
    assert!(!nodes.is_empty());
    let mut ids = BTreeSet::new();
    for n in &nodes {
        let id = n["id"].as_str().filter(|s| !s.is_empty()).unwrap_or_else(|| panic!("node without id: {n}"));
        let ty = n["type"].as_str().filter(|s| !s.is_empty()).unwrap_or_else(|| panic!("node {id} without type"));
        assert!(ids.insert(id), "id {id} used twice");
        assert!(!ty.starts_with("subflow:") && !ty.contains("dashboard"), "{id}: only core nodes ({ty})");
    }
}

#[test]
fn wires_and_references_point_at_nodes_of_the_flow() {
    let nodes = flow();
    let ids = by_id(&nodes);
    for n in &nodes {
        let id = n["id"].as_str().unwrap();
        if let Some(z) = n.get("z").and_then(Value::as_str) {
            assert_eq!(ids.get(z).map(|t| &t["type"]), Some(&Value::from("tab")), "{id}: z={z} is not a tab");
        }
        if let Some(wires) = n.get("wires") {
            let outputs = wires.as_array().unwrap_or_else(|| panic!("{id}: wires is not a list"));
            for port in outputs {
                for target in port.as_array().unwrap_or_else(|| panic!("{id}: a port is not a list")) {
                    let target = target.as_str().unwrap_or_else(|| panic!("{id}: a wire is not an id"));
                    assert!(ids.contains_key(target), "{id} is wired to {target}, which is not in the flow");
                    assert_ne!(target, id, "{id} is wired to itself");
                }
            }
            if let Some(count) = n.get("outputs").and_then(Value::as_u64) {
                assert_eq!(outputs.len() as u64, count, "{id}: outputs vs wires");
            }
        }
        let ty = n["type"].as_str().unwrap();
        if ty == "mqtt in" || ty == "mqtt out" {
            let broker = n["broker"].as_str().unwrap_or_else(|| panic!("{id}: no broker"));
            assert_eq!(ids.get(broker).map(|b| &b["type"]), Some(&Value::from("mqtt-broker")), "{id}: broker");
        }
    }
}

#[test]
fn reads_the_state_and_interval_topics_through_one_broker() {
    let nodes = flow();
    let brokers = of_type(&nodes, "mqtt-broker");
    assert_eq!(brokers.len(), 1, "one mqtt-broker config node to edit");
    assert!(brokers[0]["broker"].as_str().is_some_and(|h| !h.is_empty()));
    assert!(brokers[0]["port"].as_str().is_some_and(|p| p.parse::<u16>().is_ok()));

    let inputs = of_type(&nodes, "mqtt in");
    let topic_of = |n: &&Value| n["topic"].as_str().unwrap_or_default().to_string();
    for wanted in ["enphase/+/state", "enphase/+/intervals"] {
        let node = inputs
            .iter()
            .find(|n| topic_of(n) == wanted)
            .unwrap_or_else(|| panic!("no `mqtt in` node subscribes to {wanted}"));
        assert_eq!(node["datatype"], "json", "{wanted}: parsed as JSON");
        let wired =
            node["wires"].as_array().is_some_and(|w| w.iter().any(|p| p.as_array().is_some_and(|p| !p.is_empty())));
        assert!(wired, "{wanted}: the messages go nowhere");
    }

    // The filters match the topics the bridge publishes on (default base topic).
    let t = Topics::new("enphase", "homeassistant");
    let published =
        [t.system_state(4210001), t.intervals(4210001), t.system_availability(4210001), t.refresh_response()];
    for input in &inputs {
        let filter = topic_of(input);
        assert!(published.iter().any(|p| matches(&filter, p)), "`mqtt in` {filter} matches nothing the bridge sends");
    }
    for out in of_type(&nodes, "mqtt out") {
        assert_eq!(out["topic"].as_str(), Some(t.refresh_request().as_str()), "mqtt out topic");
    }
}

#[test]
fn functions_read_only_fields_the_state_has() {
    let nodes = flow();
    let state_fn = nodes
        .iter()
        .find(|n| n["type"] == "function" && n["func"].as_str().is_some_and(|f| f.contains("production_power_w")))
        .expect("a function node reading the state JSON");
    let code = state_fn["func"].as_str().unwrap();
    // The state JSON's keys: the entity table's, plus the system's id and name.
    let mut known: BTreeSet<&str> = SITE_ENTITIES.iter().map(|e| e.state_key).collect();
    known.extend(["system_id", "name"]);
    let used: BTreeSet<&str> = code
        .split("s.")
        .skip(1)
        .map(|rest| rest.split(|c: char| !(c.is_ascii_alphanumeric() || c == '_')).next().unwrap())
        .collect();
    assert!(used.len() >= 5, "reads {used:?}");
    for field in &used {
        assert!(known.contains(field), "the example reads `{field}`, which the state JSON does not have");
    }
}
