//! A string that must never reach a log, an error message or a `Debug` dump.

use std::fmt;

/// A secret value: client secret, password, API key or token. `Debug` and `Display` print `***`;
/// the value itself is only reachable through [`Secret::expose`].
#[derive(Clone, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(transparent)]
pub struct Secret(String);

impl Secret {
    /// Wraps a value.
    pub fn new(value: impl Into<String>) -> Self {
        Self(value.into())
    }

    /// The value, for the one place that must send it.
    pub fn expose(&self) -> &str {
        &self.0
    }

    /// Whether the value is empty (or only white space).
    pub fn is_blank(&self) -> bool {
        self.0.trim().is_empty()
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(***)")
    }
}

impl fmt::Display for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("***")
    }
}

impl From<&str> for Secret {
    fn from(value: &str) -> Self {
        Self::new(value)
    }
}

/// `text` from outside (a server's error description, a parser's message) with anything that
/// looks like a token masked: a run of 20 or more token characters (letters, digits, `.`, `_`,
/// `~`, `+`, `/`, `=`, `-`) holding both letters and digits becomes `***`. Servers echo the token
/// they refused, and a parser quotes the value it could not read.
pub fn mask_tokens(text: &str) -> String {
    let is_token_char = |c: char| c.is_ascii_alphanumeric() || "._~+/=-".contains(c);
    let mut out = String::with_capacity(text.len());
    let mut word = String::new();
    let flush = |word: &mut String, out: &mut String| {
        let letters = word.chars().any(|c| c.is_ascii_alphabetic());
        let digits = word.chars().any(|c| c.is_ascii_digit());
        if word.chars().count() >= 20 && letters && digits {
            out.push_str("***");
        } else {
            out.push_str(word);
        }
        word.clear();
    };
    for c in text.chars() {
        if is_token_char(c) {
            word.push(c);
        } else {
            flush(&mut word, &mut out);
            out.push(c);
        }
    }
    flush(&mut word, &mut out);
    out
}

/// A parser's message with the values it quotes (between backticks or double quotes) replaced
/// by `…`, keeping quoted snake_case names (a missing field's): the value may be a secret (a
/// token in the wrong field, an API key YAML read as a number).
pub fn hide_quoted_values(text: &str) -> String {
    let is_name = |q: &str| !q.is_empty() && q.len() <= 40 && q.chars().all(|c| c.is_ascii_lowercase() || c == '_');
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(open) = rest.find(['`', '"']) {
        let quote = rest[open..].chars().next().unwrap_or('"');
        let after = &rest[open + 1..];
        let Some(close) = after.find(quote) else { break };
        let quoted = &after[..close];
        out.push_str(&rest[..open]);
        out.push(quote);
        out.push_str(if is_name(quoted) { quoted } else { "…" });
        out.push(quote);
        rest = &after[close + 1..];
    }
    out.push_str(rest);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_and_quoted_values_are_masked() {
        let jwt = "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxMjM0NTY3ODkwIn0.dozjgNryP4J3jVmNHl0w5N_XgL0n3I9PlFUP0THsR8U";
        assert_eq!(
            mask_tokens(&format!("invalid_grant: Invalid refresh token: {jwt}")),
            "invalid_grant: Invalid refresh token: ***"
        );
        assert_eq!(mask_tokens("REFRESHTOK666secretsecret, short abc123"), "***, short abc123");
        assert_eq!(mask_tokens("authorization_code_is_invalid_here"), "authorization_code_is_invalid_here");
        assert_eq!(
            hide_quoted_values("invalid type: integer `12345`, expected a string"),
            "invalid type: integer `…`, expected a string"
        );
        assert_eq!(
            hide_quoted_values("unknown variant `ACCESSTOK555`, expected `authorization_code` or `password`"),
            "unknown variant `…`, expected `authorization_code` or `password`"
        );
        assert_eq!(
            hide_quoted_values(r#"invalid type: string "s3cr3t", expected u64"#),
            r#"invalid type: string "…", expected u64"#
        );
        assert_eq!(hide_quoted_values("missing field `system_id` at line 1"), "missing field `system_id` at line 1");
        assert_eq!(hide_quoted_values("an unclosed `quote"), "an unclosed `quote");
    }

    #[test]
    fn debug_and_display_hide_the_value() {
        let s = Secret::new("hunter2");
        assert_eq!(format!("{s:?}"), "Secret(***)");
        assert_eq!(format!("{s}"), "***");
        assert_eq!(s.expose(), "hunter2");
        assert!(!format!("{:?}", Some(&s)).contains("hunter2"));
    }
}
