//! Deterministic hashing (splitmix64), so every simulated value depends only on the seed, the
//! system and the time, never on the order in which requests arrive.

/// One round of splitmix64: a fast, well-mixed bijection on `u64`.
pub(crate) const fn splitmix(mut z: u64) -> u64 {
    z = z.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// Hashes a short list of numbers into one well-mixed value.
pub(crate) fn hash(parts: &[u64]) -> u64 {
    parts.iter().fold(0x5EED_0F5A_1A5E_u64, |acc, &part| splitmix(acc ^ splitmix(part)))
}

/// Maps a hash to a uniform number in `[0, 1)`.
pub(crate) fn unit(h: u64) -> f64 {
    (h >> 11) as f64 / (1u64 << 53) as f64
}

/// Salts that keep the different uses of [`hash`] independent of each other.
pub(crate) mod salt {
    pub const WEATHER: u64 = 1;
    pub const CLOUD: u64 = 2;
    pub const MICROS: u64 = 3;
    pub const PANEL: u64 = 4;
    pub const AGE: u64 = 5;
    pub const INTERCONNECT: u64 = 6;
    pub const BASE: u64 = 7;
    pub const PHASE: u64 = 8;
    pub const LOAD: u64 = 9;
    pub const LOAD_DAY: u64 = 10;
    pub const LOAD_JITTER: u64 = 11;
    pub const SOC_MID: u64 = 12;
    pub const SOC_MIN: u64 = 13;
    pub const SHARE: u64 = 14;
    pub const SERIAL: u64 = 15;
    pub const FIRMWARE: u64 = 16;
    pub const POWR: u64 = 17;
    pub const REPORTING: u64 = 18;
    pub const NAME: u64 = 19;
    pub const LOCATION: u64 = 20;
    pub const SIGNAL: u64 = 21;
    pub const ATTACHMENT: u64 = 22;
    pub const USER: u64 = 23;
    pub const EVENT: u64 = 24;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hash_is_deterministic_and_order_sensitive() {
        assert_eq!(hash(&[1, 2, 3]), hash(&[1, 2, 3]));
        assert_ne!(hash(&[1, 2, 3]), hash(&[3, 2, 1]));
        assert_ne!(hash(&[1]), hash(&[2]));
    }

    #[test]
    fn unit_stays_in_range() {
        for i in 0..10_000u64 {
            let u = unit(hash(&[i]));
            assert!((0.0..1.0).contains(&u), "{u}");
        }
        assert!(unit(u64::MAX) < 1.0);
    }
}
