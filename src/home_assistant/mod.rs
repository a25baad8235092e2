//! Home Assistant's side of the bridge, as pure functions: the entity table, topics, discovery
//! configs and state payloads. No I/O here, no MQTT client: everything returns [`Message`]s that
//! `bridge.rs` publishes (always QoS 1).
//!
//! - [`entities`]: the table mapping state-JSON keys to HA entities (class, unit, …).
//! - [`topics`]: every topic string, node id and unique id.
//! - [`discovery`]: snapshot → retained discovery configs (per entity or per device), removals.
//! - [`state`]: snapshot → retained state JSON and availability; bridge status → `bridge/info`.

pub mod discovery;
pub mod entities;
pub mod state;
pub mod topics;

pub use topics::Topics;

/// One MQTT publication. What we publish is always QoS 1; an empty retained payload removes a
/// retained message (for a discovery config: the entity or device).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Message {
    /// The topic.
    pub topic: String,
    /// The payload (UTF-8 text: JSON, `online`, …).
    pub payload: String,
    /// Whether the broker keeps it for new subscribers.
    pub retain: bool,
}

impl Message {
    /// A retained message.
    pub fn retained(topic: impl Into<String>, payload: impl Into<String>) -> Message {
        Message { topic: topic.into(), payload: payload.into(), retain: true }
    }

    /// An empty retained message: removes what is retained on `topic`.
    pub fn removal(topic: impl Into<String>) -> Message {
        Message::retained(topic, "")
    }

    /// Whether this message removes a retained one.
    pub fn is_removal(&self) -> bool {
        self.retain && self.payload.is_empty()
    }
}

/// A tiny evaluator for the Jinja shapes `EntitySpec::value_template` emits, so tests can check
/// what Home Assistant would show. It follows Jinja/Python semantics for exactly these forms:
/// `A if C else B`, `value_json.k`, `x is defined`, `(x / 1000)`, `'text'` and `none`.
#[cfg(test)]
pub(crate) mod template {
    use serde_json::Value;

    #[derive(Debug, Clone, PartialEq)]
    enum Val {
        Undefined,
        None,
        Bool(bool),
        Int(i64),
        Float(f64),
        Str(String),
    }

    impl Val {
        fn truthy(&self) -> bool {
            match self {
                Val::Undefined | Val::None => false,
                Val::Bool(b) => *b,
                Val::Int(i) => *i != 0,
                Val::Float(f) => *f != 0.0,
                Val::Str(s) => !s.is_empty(),
            }
        }

        /// As Jinja prints it: Python's `str()`, undefined as nothing.
        fn render(&self) -> String {
            match self {
                Val::Undefined => String::new(),
                Val::None => "None".into(),
                Val::Bool(true) => "True".into(),
                Val::Bool(false) => "False".into(),
                Val::Int(i) => i.to_string(),
                Val::Float(f) if f.fract() == 0.0 && f.is_finite() => format!("{f}.0"),
                Val::Float(f) => f.to_string(),
                Val::Str(s) => s.clone(),
            }
        }
    }

    struct Parser<'a> {
        tokens: Vec<String>,
        pos: usize,
        json: &'a Value,
    }

    impl Parser<'_> {
        fn peek(&self) -> Option<&str> {
            self.tokens.get(self.pos).map(String::as_str)
        }

        fn next(&mut self) -> String {
            let token = self.tokens.get(self.pos).cloned().unwrap_or_else(|| panic!("template ended early"));
            self.pos += 1;
            token
        }

        fn expect(&mut self, want: &str) {
            let got = self.next();
            assert_eq!(got, want, "unexpected token");
        }

        // expr := division ['if' test 'else' expr]
        fn expr(&mut self) -> Val {
            let value = self.division();
            if self.peek() == Some("if") {
                self.next();
                let condition = self.test();
                self.expect("else");
                let otherwise = self.expr();
                return if condition { value } else { otherwise };
            }
            value
        }

        // test := division ['is' 'defined']
        fn test(&mut self) -> bool {
            let value = self.division();
            if self.peek() == Some("is") {
                self.next();
                self.expect("defined");
                return value != Val::Undefined;
            }
            value.truthy()
        }

        // division := atom ['/' atom]
        fn division(&mut self) -> Val {
            let left = self.atom();
            if self.peek() != Some("/") {
                return left;
            }
            self.next();
            let right = self.atom();
            let number = |v: &Val| match v {
                Val::Int(i) => *i as f64,
                Val::Float(f) => *f,
                other => panic!("cannot divide {other:?}"),
            };
            Val::Float(number(&left) / number(&right))
        }

        fn atom(&mut self) -> Val {
            let token = self.next();
            if token == "(" {
                let value = self.expr();
                self.expect(")");
                return value;
            }
            if let Some(text) = token.strip_prefix('\'').and_then(|t| t.strip_suffix('\'')) {
                return Val::Str(text.to_owned());
            }
            if token == "none" {
                return Val::None;
            }
            if let Some(key) = token.strip_prefix("value_json.") {
                return match self.json.get(key) {
                    None => Val::Undefined,
                    Some(Value::Null) => Val::None,
                    Some(Value::Bool(b)) => Val::Bool(*b),
                    Some(Value::Number(n)) => {
                        n.as_i64().map(Val::Int).unwrap_or_else(|| Val::Float(n.as_f64().unwrap()))
                    }
                    Some(Value::String(s)) => Val::Str(s.clone()),
                    Some(other) => panic!("unsupported JSON value {other}"),
                };
            }
            if let Ok(i) = token.parse::<i64>() {
                return Val::Int(i);
            }
            panic!("unsupported token {token:?}");
        }
    }

    fn tokenize(s: &str) -> Vec<String> {
        let mut tokens = Vec::new();
        let mut chars = s.chars().peekable();
        while let Some(&c) = chars.peek() {
            match c {
                ' ' => {
                    chars.next();
                }
                '(' | ')' | '/' => {
                    tokens.push(c.to_string());
                    chars.next();
                }
                '\'' => {
                    let mut text = String::from(chars.next().unwrap());
                    for c in chars.by_ref() {
                        text.push(c);
                        if c == '\'' {
                            break;
                        }
                    }
                    tokens.push(text);
                }
                _ => {
                    let mut word = String::new();
                    while let Some(&c) = chars.peek() {
                        if matches!(c, ' ' | '(' | ')' | '/' | '\'') {
                            break;
                        }
                        word.push(c);
                        chars.next();
                    }
                    tokens.push(word);
                }
            }
        }
        tokens
    }

    /// Renders `template` (one `{{ … }}` expression) against the state JSON `json`.
    pub(crate) fn render(template: &str, json: &Value) -> String {
        let inner = template
            .trim()
            .strip_prefix("{{")
            .and_then(|t| t.strip_suffix("}}"))
            .unwrap_or_else(|| panic!("not a single expression: {template}"));
        let mut parser = Parser { tokens: tokenize(inner), pos: 0, json };
        let value = parser.expr();
        assert_eq!(parser.pos, parser.tokens.len(), "trailing tokens in {template}");
        value.render()
    }

    #[test]
    fn renders_like_jinja() {
        let json = serde_json::json!({"w": 640, "wh": 17000, "t": "2025-06-16T19:16:12+00:00", "ok": true, "no": false, "z": 0});
        assert_eq!(render("{{ value_json.w if value_json.w is defined else none }}", &json), "640");
        assert_eq!(render("{{ value_json.x if value_json.x is defined else none }}", &json), "None");
        assert_eq!(render("{{ (value_json.wh / 1000) if value_json.wh is defined else none }}", &json), "17.0");
        assert_eq!(
            render("{{ value_json.t if value_json.t is defined else none }}", &json),
            "2025-06-16T19:16:12+00:00"
        );
        assert_eq!(
            render("{{ ('ON' if value_json.ok else 'OFF') if value_json.ok is defined else none }}", &json),
            "ON"
        );
        assert_eq!(
            render("{{ ('ON' if value_json.no else 'OFF') if value_json.no is defined else none }}", &json),
            "OFF"
        );
        assert_eq!(render("{{ value_json.z if value_json.z is defined else none }}", &json), "0", "0 is a value");
        assert_eq!(render("{{ value_json.missing }}", &json), "", "undefined renders empty");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn message_constructors() {
        let m = Message::retained("a/b", "online");
        assert_eq!(m, Message { topic: "a/b".into(), payload: "online".into(), retain: true });
        assert!(!m.is_removal());
        let r = Message::removal("a/b");
        assert!(r.is_removal() && r.retain && r.payload.is_empty());
        let not_retained = Message { topic: "x".into(), payload: String::new(), retain: false };
        assert!(!not_retained.is_removal(), "only a retained empty payload clears a retained message");
    }
}
