//! Enlighten API plans and what each allows: per-minute and per-month hit limits, endpoint groups.

use std::fmt;
use std::str::FromStr;

/// The plan of the Enphase developer application (decides quotas and which endpoints answer).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Plan {
    /// Free: 10 hits a minute, 1,000 a month, site-level data only.
    Watt,
    /// Adds device-level monitoring.
    Kilowatt,
    /// Adds system configuration.
    Megawatt,
    /// Installer partner applications (password grant).
    Partner,
}

impl Plan {
    /// Every plan, in order of size.
    pub const ALL: [Plan; 4] = [Plan::Watt, Plan::Kilowatt, Plan::Megawatt, Plan::Partner];

    /// Hits allowed in any minute (Enphase's reference §2; only Watt's figure is confirmed).
    pub fn per_minute(self) -> u32 {
        match self {
            Plan::Watt => 10,
            Plan::Kilowatt => 50,
            Plan::Megawatt => 100,
            Plan::Partner => 300,
        }
    }

    /// Hits allowed in a UTC calendar month.
    pub fn per_month(self) -> u32 {
        match self {
            Plan::Watt => 1_000,
            Plan::Kilowatt => 50_000,
            Plan::Megawatt => 300_000,
            Plan::Partner => 1_500_000,
        }
    }

    /// Whether device-level endpoints (per-micro and per-battery telemetry) are in the plan.
    pub fn device_level(self) -> bool {
        !matches!(self, Plan::Watt)
    }

    /// The lowercase name used in the config file.
    pub fn as_str(self) -> &'static str {
        match self {
            Plan::Watt => "watt",
            Plan::Kilowatt => "kilowatt",
            Plan::Megawatt => "megawatt",
            Plan::Partner => "partner",
        }
    }
}

impl fmt::Display for Plan {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Plan {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Plan::ALL
            .into_iter()
            .find(|p| p.as_str().eq_ignore_ascii_case(s.trim()))
            .ok_or_else(|| format!("{s:?} is not one of watt, kilowatt, megawatt, partner"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn watt_limits_and_parsing() {
        assert_eq!(Plan::Watt.per_minute(), 10);
        assert_eq!(Plan::Watt.per_month(), 1_000);
        assert!(!Plan::Watt.device_level());
        assert_eq!("Kilowatt".parse::<Plan>(), Ok(Plan::Kilowatt));
        assert_eq!("gold".parse::<Plan>().unwrap_err(), "\"gold\" is not one of watt, kilowatt, megawatt, partner");
    }
}
