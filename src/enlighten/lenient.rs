//! Serde helpers that read one field of an Enlighten answer leniently, so that a quirk in one field
//! (a number sent as a string, `"27%"`, `-1`, an object where a number was documented) yields
//! `None` or an empty list instead of failing the whole response.
//!
//! Every `deserialize_with` helper first reads the field into a [`serde_json::Value`] and converts it
//! with a plain function (`*_from_value`), which is what the unit tests exercise. Use them as
//! `#[serde(default, deserialize_with = "lenient::opt_i64")]`: `default` covers an absent field, the
//! helper covers `null` and unusable shapes.

use serde::de::DeserializeOwned;
use serde::{Deserialize, Deserializer};
use serde_json::Value;

/// Integer from a JSON number (rounded when fractional) or a numeric string such as `"4103876521"`.
pub fn i64_from_value(value: &Value) -> Option<i64> {
    match value {
        Value::Number(n) => n.as_i64().or_else(|| n.as_f64().and_then(f64_to_i64)),
        Value::String(s) => {
            let s = s.trim();
            s.parse::<i64>().ok().or_else(|| s.parse::<f64>().ok().and_then(f64_to_i64))
        }
        _ => None,
    }
}

/// Rounds a finite float that fits in an `i64`.
fn f64_to_i64(f: f64) -> Option<i64> {
    // The bounds are exclusive because i64::MAX is not exactly representable as f64.
    (f.is_finite() && f > i64::MIN as f64 && f < i64::MAX as f64).then(|| f.round() as i64)
}

/// Like [`i64_from_value`], but a negative number means "not available": Enphase has sent `-1` in
/// the deprecated `energy_lifetime`, `energy_today` and `system_size` fields since 2023-07.
pub fn non_negative_i64_from_value(value: &Value) -> Option<i64> {
    i64_from_value(value).filter(|n| *n >= 0)
}

/// Epoch seconds from a number, a numeric string or an RFC 3339 date-time string
/// (`last_report_date` is documented as an integer but generated clients type it as a date-time).
pub fn epoch_from_value(value: &Value) -> Option<i64> {
    i64_from_value(value).or_else(|| match value {
        Value::String(s) => chrono::DateTime::parse_from_rfc3339(s.trim()).ok().map(|t| t.timestamp()),
        _ => None,
    })
}

/// Text from a string, or from a number written out (`nmi` and `interconnect_date` are documented
/// as integers but sent as strings, and the reverse may happen). Other shapes give `None`.
pub fn string_from_value(value: &Value) -> Option<String> {
    match value {
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        _ => None,
    }
}

/// A percentage 0–100 from `27`, `27.4`, `"27"` or `"27%"`; anything outside 0–100 gives `None`.
pub fn percent_from_value(value: &Value) -> Option<u8> {
    let n = match value {
        Value::String(s) => {
            let s = s.trim();
            let s = s.strip_suffix('%').unwrap_or(s).trim_end();
            i64_from_value(&Value::String(s.to_owned()))?
        }
        other => i64_from_value(other)?,
    };
    u8::try_from(n).ok().filter(|p| *p <= 100)
}

/// A boolean from `true`/`false`, `1`/`0`, or the strings `"true"`/`"false"`, `"yes"`/`"no"`,
/// `"1"`/`"0"` (any case).
pub fn bool_from_value(value: &Value) -> Option<bool> {
    match value {
        Value::Bool(b) => Some(*b),
        Value::Number(n) => match n.as_i64() {
            Some(0) => Some(false),
            Some(1) => Some(true),
            _ => None,
        },
        Value::String(s) => match s.trim().to_ascii_lowercase().as_str() {
            "true" | "yes" | "1" => Some(true),
            "false" | "no" | "0" => Some(false),
            _ => None,
        },
        _ => None,
    }
}

/// A measurement sent either as a bare number or as `{"value": …, "units": "W", "precision": …}`
/// (`power_produced` and `energy` in the inverters summary). A `k` or `M` prefix on `units`
/// (`"kW"`, `"kWh"`, `"MWh"`) is scaled back to W or Wh, the units the rest of the API uses.
pub fn value_or_object_from_value(value: &Value) -> Option<i64> {
    match value {
        Value::Object(map) => {
            let inner = map.get("value")?;
            let scale = match map.get("units").and_then(Value::as_str).map(str::trim) {
                Some(u) if u.starts_with('k') || u.starts_with('K') => 1_000.0,
                Some(u) if u.starts_with('M') => 1_000_000.0,
                _ => 1.0,
            };
            if scale == 1.0 {
                return i64_from_value(inner);
            }
            let f = match inner {
                Value::Number(n) => n.as_f64()?,
                Value::String(s) => s.trim().parse::<f64>().ok()?,
                _ => return None,
            };
            f64_to_i64(f * scale)
        }
        other => i64_from_value(other),
    }
}

/// Converts `value` into `T`, or `None` when it is null or of a shape `T` cannot read.
pub fn struct_from_value<T: DeserializeOwned>(value: Value) -> Option<T> {
    if value.is_null() {
        return None;
    }
    serde_json::from_value(value).ok()
}

/// The items of a list that `T` can read, skipping (not failing on) the others. A single object
/// counts as a one-item list; null and other shapes give an empty list.
pub fn vec_from_value<T: DeserializeOwned>(value: Value) -> Vec<T> {
    match value {
        Value::Array(items) => items.into_iter().filter_map(struct_from_value).collect(),
        obj @ Value::Object(_) => struct_from_value(obj).into_iter().collect(),
        _ => Vec::new(),
    }
}

/// Like [`vec_from_value`], but nested lists are flattened, so `[{…}]` and `[[{…}], [{…}]]` give the
/// same items (the import/export telemetry examples nest `intervals` one level deeper).
pub fn nested_vec_from_value<T: DeserializeOwned>(value: Value) -> Vec<T> {
    match value {
        Value::Array(items) => items
            .into_iter()
            .flat_map(|item| match item {
                inner @ Value::Array(_) => nested_vec_from_value(inner),
                other => struct_from_value(other).into_iter().collect(),
            })
            .collect(),
        obj @ Value::Object(_) => struct_from_value(obj).into_iter().collect(),
        _ => Vec::new(),
    }
}

/// A daily series of integers where position matters (lifetime arrays: one entry per local day):
/// an unreadable entry becomes `None` in place instead of shifting the later days.
pub fn series_from_value(value: &Value) -> Vec<Option<i64>> {
    match value {
        Value::Array(items) => items.iter().map(i64_from_value).collect(),
        _ => Vec::new(),
    }
}

fn value<'de, D: Deserializer<'de>>(d: D) -> Result<Value, D::Error> {
    Value::deserialize(d)
}

/// `deserialize_with` for [`i64_from_value`].
pub fn opt_i64<'de, D: Deserializer<'de>>(d: D) -> Result<Option<i64>, D::Error> {
    Ok(i64_from_value(&value(d)?))
}

/// `deserialize_with` for [`non_negative_i64_from_value`] (deprecated `-1` fields).
pub fn opt_non_negative_i64<'de, D: Deserializer<'de>>(d: D) -> Result<Option<i64>, D::Error> {
    Ok(non_negative_i64_from_value(&value(d)?))
}

/// `deserialize_with` for [`epoch_from_value`].
pub fn opt_epoch<'de, D: Deserializer<'de>>(d: D) -> Result<Option<i64>, D::Error> {
    Ok(epoch_from_value(&value(d)?))
}

/// `deserialize_with` for [`string_from_value`].
pub fn opt_string<'de, D: Deserializer<'de>>(d: D) -> Result<Option<String>, D::Error> {
    Ok(string_from_value(&value(d)?))
}

/// `deserialize_with` for [`percent_from_value`].
pub fn opt_percent<'de, D: Deserializer<'de>>(d: D) -> Result<Option<u8>, D::Error> {
    Ok(percent_from_value(&value(d)?))
}

/// `deserialize_with` for [`bool_from_value`].
pub fn opt_bool<'de, D: Deserializer<'de>>(d: D) -> Result<Option<bool>, D::Error> {
    Ok(bool_from_value(&value(d)?))
}

/// `deserialize_with` for [`value_or_object_from_value`].
pub fn opt_value_or_object<'de, D: Deserializer<'de>>(d: D) -> Result<Option<i64>, D::Error> {
    Ok(value_or_object_from_value(&value(d)?))
}

/// `deserialize_with` for [`struct_from_value`]: a nested object that may be null or malformed.
pub fn opt_struct<'de, D, T>(d: D) -> Result<Option<T>, D::Error>
where
    D: Deserializer<'de>,
    T: DeserializeOwned,
{
    Ok(struct_from_value(value(d)?))
}

/// `deserialize_with` for a nested object that falls back to `T::default()` when null or malformed.
pub fn struct_or_default<'de, D, T>(d: D) -> Result<T, D::Error>
where
    D: Deserializer<'de>,
    T: DeserializeOwned + Default,
{
    Ok(struct_from_value(value(d)?).unwrap_or_default())
}

/// `deserialize_with` for [`vec_from_value`]: a list whose broken items are skipped.
pub fn vec_skip_invalid<'de, D, T>(d: D) -> Result<Vec<T>, D::Error>
where
    D: Deserializer<'de>,
    T: DeserializeOwned,
{
    Ok(vec_from_value(value(d)?))
}

/// `deserialize_with` for [`nested_vec_from_value`]: `[{…}]` or `[[{…}]]`.
pub fn nested_vec<'de, D, T>(d: D) -> Result<Vec<T>, D::Error>
where
    D: Deserializer<'de>,
    T: DeserializeOwned,
{
    Ok(nested_vec_from_value(value(d)?))
}

/// `deserialize_with` for [`series_from_value`].
pub fn series<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<Option<i64>>, D::Error> {
    Ok(series_from_value(&value(d)?))
}

/// `deserialize_with` for a list of strings: numbers are written out, other items skipped.
pub fn string_list<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<String>, D::Error> {
    Ok(match value(d)? {
        Value::Array(items) => items.iter().filter_map(string_from_value).collect(),
        single => string_from_value(&single).into_iter().collect(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[derive(Debug, Deserialize, PartialEq)]
    struct Item {
        end_at: i64,
        wh: i64,
    }

    #[test]
    fn i64_reads_numbers_and_numeric_strings() {
        assert_eq!(i64_from_value(&json!(1716512400)), Some(1716512400));
        assert_eq!(i64_from_value(&json!("1716512400")), Some(1716512400));
        assert_eq!(i64_from_value(&json!(" 4103876521 ")), Some(4103876521));
        assert_eq!(i64_from_value(&json!(12.6)), Some(13));
        assert_eq!(i64_from_value(&json!("12.4")), Some(12));
        assert_eq!(i64_from_value(&json!(-1)), Some(-1));
        assert_eq!(i64_from_value(&json!(u64::MAX)), None, "does not fit");
        for unusable in [json!(null), json!("many"), json!(""), json!(true), json!([1]), json!({})] {
            assert_eq!(i64_from_value(&unusable), None, "{unusable}");
        }
    }

    #[test]
    fn deprecated_minus_one_is_none() {
        assert_eq!(non_negative_i64_from_value(&json!(-1)), None);
        assert_eq!(non_negative_i64_from_value(&json!("-1")), None);
        assert_eq!(non_negative_i64_from_value(&json!(0)), Some(0));
        assert_eq!(non_negative_i64_from_value(&json!(6270)), Some(6270));
    }

    #[test]
    fn epoch_reads_numbers_strings_and_rfc3339() {
        assert_eq!(epoch_from_value(&json!(1750101300)), Some(1750101300));
        assert_eq!(epoch_from_value(&json!("1750101300")), Some(1750101300));
        assert_eq!(epoch_from_value(&json!("2025-06-16T19:15:00Z")), Some(1750101300));
        assert_eq!(epoch_from_value(&json!("2025-06-16T12:15:00-07:00")), Some(1750101300));
        assert_eq!(epoch_from_value(&json!("yesterday")), None);
        assert_eq!(epoch_from_value(&json!(null)), None);
    }

    #[test]
    fn string_reads_strings_and_numbers() {
        assert_eq!(string_from_value(&json!("4103876521")), Some("4103876521".into()));
        assert_eq!(string_from_value(&json!(4103876521_i64)), Some("4103876521".into()));
        assert_eq!(string_from_value(&json!("2019-04-05")), Some("2019-04-05".into()));
        assert_eq!(string_from_value(&json!("")), Some(String::new()), "kept as sent");
        assert_eq!(string_from_value(&json!(null)), None);
        assert_eq!(string_from_value(&json!({"a": 1})), None);
        assert_eq!(string_from_value(&json!(false)), None);
    }

    #[test]
    fn percent_reads_all_spellings() {
        assert_eq!(percent_from_value(&json!("27%")), Some(27));
        assert_eq!(percent_from_value(&json!(" 97 % ")), Some(97));
        assert_eq!(percent_from_value(&json!("27")), Some(27));
        assert_eq!(percent_from_value(&json!(27)), Some(27));
        assert_eq!(percent_from_value(&json!(26.6)), Some(27));
        assert_eq!(percent_from_value(&json!("100%")), Some(100));
        assert_eq!(percent_from_value(&json!("0%")), Some(0));
        for unusable in [json!("101%"), json!(-3), json!("%"), json!("full"), json!(null)] {
            assert_eq!(percent_from_value(&unusable), None, "{unusable}");
        }
    }

    #[test]
    fn bool_reads_bools_numbers_and_words() {
        assert_eq!(bool_from_value(&json!(true)), Some(true));
        assert_eq!(bool_from_value(&json!(0)), Some(false));
        assert_eq!(bool_from_value(&json!("TRUE")), Some(true));
        assert_eq!(bool_from_value(&json!("no")), Some(false));
        assert_eq!(bool_from_value(&json!("maybe")), None);
        assert_eq!(bool_from_value(&json!(2)), None);
        assert_eq!(bool_from_value(&json!(null)), None);
    }

    #[test]
    fn value_or_object_reads_both_shapes() {
        assert_eq!(value_or_object_from_value(&json!(231)), Some(231));
        assert_eq!(value_or_object_from_value(&json!("231")), Some(231));
        let object = json!({"value": 231, "units": "W", "precision": 0});
        assert_eq!(value_or_object_from_value(&object), Some(231));
        assert_eq!(value_or_object_from_value(&json!({"value": "231"})), Some(231));
        let kwh = json!({"value": 1234.5678, "units": "kWh", "precision": 4});
        assert_eq!(value_or_object_from_value(&kwh), Some(1_234_568));
        assert_eq!(value_or_object_from_value(&json!({"value": 2, "units": "MWh"})), Some(2_000_000));
        assert_eq!(value_or_object_from_value(&json!({"units": "W"})), None);
        assert_eq!(value_or_object_from_value(&json!({"value": null})), None);
        assert_eq!(value_or_object_from_value(&json!([231])), None);
    }

    #[test]
    fn struct_is_none_for_null_or_wrong_shape() {
        assert_eq!(struct_from_value::<Item>(json!({"end_at": 1, "wh": 2})), Some(Item { end_at: 1, wh: 2 }));
        assert_eq!(struct_from_value::<Item>(json!(null)), None);
        assert_eq!(struct_from_value::<Item>(json!("x")), None);
        assert_eq!(struct_from_value::<Item>(json!({"end_at": "x", "wh": 2})), None);
    }

    #[test]
    fn vec_skips_broken_items() {
        let items: Vec<Item> = vec_from_value(json!([
            {"end_at": 1, "wh": 10},
            {"end_at": "soon", "wh": 20},
            null,
            7,
            {"end_at": 3, "wh": 30, "extra": true}
        ]));
        assert_eq!(items, vec![Item { end_at: 1, wh: 10 }, Item { end_at: 3, wh: 30 }]);
        assert_eq!(vec_from_value::<Item>(json!({"end_at": 1, "wh": 1})).len(), 1, "single object");
        assert!(vec_from_value::<Item>(json!(null)).is_empty());
        assert!(vec_from_value::<Item>(json!("many")).is_empty());
    }

    #[test]
    fn nested_vec_flattens_both_shapes() {
        let flat: Vec<Item> = nested_vec_from_value(json!([{"end_at": 1, "wh": 10}, {"end_at": 2, "wh": 20}]));
        let nested: Vec<Item> = nested_vec_from_value(json!([[{"end_at": 1, "wh": 10}, {"end_at": 2, "wh": 20}]]));
        let split: Vec<Item> = nested_vec_from_value(json!([[{"end_at": 1, "wh": 10}], [{"end_at": 2, "wh": 20}]]));
        assert_eq!(flat.len(), 2);
        assert_eq!(flat, nested);
        assert_eq!(flat, split);
        let mixed: Vec<Item> =
            nested_vec_from_value(json!([[{"end_at": 1, "wh": 10}, "junk"], {"end_at": 2, "wh": 20}, []]));
        assert_eq!(mixed, flat);
        assert!(nested_vec_from_value::<Item>(json!(null)).is_empty());
    }

    #[test]
    fn series_keeps_positions() {
        assert_eq!(series_from_value(&json!([1, null, "3", "x"])), vec![Some(1), None, Some(3), None]);
        assert!(series_from_value(&json!({"a": 1})).is_empty());
    }

    #[test]
    fn helpers_work_as_field_attributes() {
        #[derive(Debug, Deserialize)]
        struct Probe {
            #[serde(default, deserialize_with = "opt_i64")]
            modules: Option<i64>,
            #[serde(default, deserialize_with = "opt_non_negative_i64")]
            system_size: Option<i64>,
            #[serde(default, deserialize_with = "opt_string")]
            nmi: Option<String>,
            #[serde(default, deserialize_with = "opt_percent")]
            soc: Option<u8>,
            #[serde(default, deserialize_with = "opt_bool")]
            active: Option<bool>,
            #[serde(default, deserialize_with = "opt_value_or_object")]
            power: Option<i64>,
            #[serde(default, deserialize_with = "opt_epoch")]
            at: Option<i64>,
            #[serde(default, deserialize_with = "opt_struct")]
            item: Option<Item>,
            #[serde(default, deserialize_with = "vec_skip_invalid")]
            items: Vec<Item>,
            #[serde(default, deserialize_with = "nested_vec")]
            nested: Vec<Item>,
            #[serde(default, deserialize_with = "series")]
            daily: Vec<Option<i64>>,
            #[serde(default, deserialize_with = "string_list")]
            refs: Vec<String>,
        }
        let p: Probe = serde_json::from_value(json!({
            "modules": "many", "system_size": -1, "nmi": 4103876521_i64, "soc": "27%", "active": "true",
            "power": {"value": 5}, "at": "1750101300", "item": "broken", "items": [{"end_at": 1, "wh": 1}, 2],
            "nested": [[{"end_at": 1, "wh": 1}]], "daily": [1, null], "refs": ["a", 2, null], "unknown": [1, 2]
        }))
        .unwrap();
        assert_eq!(p.modules, None);
        assert_eq!(p.system_size, None);
        assert_eq!(p.nmi.as_deref(), Some("4103876521"));
        assert_eq!(p.soc, Some(27));
        assert_eq!(p.active, Some(true));
        assert_eq!(p.power, Some(5));
        assert_eq!(p.at, Some(1750101300));
        assert_eq!(p.item, None);
        assert_eq!(p.items.len(), 1);
        assert_eq!(p.nested.len(), 1);
        assert_eq!(p.daily, vec![Some(1), None]);
        assert_eq!(p.refs, vec!["a".to_owned(), "2".to_owned()]);

        let empty: Probe = serde_json::from_value(json!({})).unwrap();
        assert_eq!((empty.modules, empty.nmi, empty.soc), (None, None, None));
        assert!(empty.items.is_empty() && empty.daily.is_empty() && empty.refs.is_empty());
    }
}
