//! Query-string parsing that never fails a request with anything but a JSON 422.

use chrono::NaiveDate;

use super::errors::{self, Rejection};

/// Latest epoch second accepted from a client (year 2286); later values are rejected with 422.
pub(crate) const MAX_EPOCH: i64 = 9_999_999_999;

/// Decoded query (or form) parameters, in order.
#[derive(Debug, Default, Clone)]
pub(crate) struct Params(Vec<(String, String)>);

impl Params {
    /// Decodes `a=1&b=2`; bad percent-escapes are kept as they are, never an error.
    pub(crate) fn parse(raw: Option<&str>) -> Self {
        Self::from_bytes(raw.unwrap_or_default().as_bytes())
    }

    /// Decodes an `application/x-www-form-urlencoded` body.
    pub(crate) fn from_bytes(raw: &[u8]) -> Self {
        Params(url::form_urlencoded::parse(raw).map(|(k, v)| (k.into_owned(), v.into_owned())).collect())
    }

    /// Adds the pairs of `other` whose keys are not present yet.
    pub(crate) fn merge_missing(&mut self, other: Params) {
        for (k, v) in other.0 {
            if self.get(&k).is_none() {
                self.0.push((k, v));
            }
        }
    }

    /// First value of `key`.
    pub(crate) fn get(&self, key: &str) -> Option<&str> {
        self.0.iter().find(|(k, _)| k == key).map(|(_, v)| v.as_str())
    }

    /// `key` as an integer; a present but malformed value is a 422.
    pub(crate) fn int(&self, key: &str) -> Result<Option<i64>, Rejection> {
        match self.get(key) {
            None => Ok(None),
            Some(raw) => raw
                .trim()
                .parse::<i64>()
                .map(Some)
                .map_err(|_| errors::unprocessable(format!("Failed to parse {key} '{}'", errors::echo(raw)))),
        }
    }

    /// `key` as an epoch second within `0..=MAX_EPOCH`.
    pub(crate) fn epoch(&self, key: &str) -> Result<Option<i64>, Rejection> {
        match self.int(key)? {
            Some(t) if !(0..=MAX_EPOCH).contains(&t) => Err(errors::unprocessable(format!("{key} is out of range"))),
            other => Ok(other),
        }
    }

    /// `key` as a `YYYY-MM-DD` date; a malformed one is a 422 "Failed to parse date".
    pub(crate) fn date(&self, key: &str) -> Result<Option<NaiveDate>, Rejection> {
        match self.get(key) {
            None => Ok(None),
            Some(raw) => parse_date(raw).map(Some),
        }
    }

    /// `key` as a boolean (`true`/`false`/`1`/`0`).
    pub(crate) fn bool(&self, key: &str) -> Result<Option<bool>, Rejection> {
        match self.get(key).map(str::trim) {
            None => Ok(None),
            Some("true" | "1") => Ok(Some(true)),
            Some("false" | "0") => Ok(Some(false)),
            Some(raw) => Err(errors::unprocessable(format!("Failed to parse {key} '{}'", errors::echo(raw)))),
        }
    }
}

/// Parses `YYYY-MM-DD` (four-digit years) or answers 422.
pub(crate) fn parse_date(raw: &str) -> Result<NaiveDate, Rejection> {
    NaiveDate::parse_from_str(raw.trim(), "%Y-%m-%d")
        .ok()
        .filter(|d| {
            let y = chrono::Datelike::year(d);
            (1000..=9999).contains(&y)
        })
        .ok_or_else(|| errors::unprocessable(format!("Failed to parse date {}", errors::echo(raw))))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_and_rejects_without_panicking() {
        let p = Params::parse(Some("a=1&b=x&d=2025-06-01&e=2025-13-01&t=true&big=99999999999999999999&%zz=1"));
        assert_eq!(p.int("a").ok().flatten(), Some(1));
        assert!(p.int("b").is_err());
        assert!(p.int("big").is_err());
        assert_eq!(p.int("missing").ok().flatten(), None);
        assert!(p.date("d").is_ok_and(|d| d.is_some()));
        assert!(p.date("e").is_err());
        assert_eq!(p.bool("t").ok().flatten(), Some(true));
        assert!(Params::parse(Some("s=-5")).epoch("s").is_err());
    }

    #[test]
    fn merge_keeps_first_values() {
        let mut p = Params::parse(Some("a=1"));
        p.merge_missing(Params::from_bytes(b"a=2&b=3"));
        assert_eq!(p.get("a"), Some("1"));
        assert_eq!(p.get("b"), Some("3"));
    }
}
