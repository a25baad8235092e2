//! Static catalogue of where simulated systems stand and which hardware they use there.

/// Electrical region: decides SKUs, grid profile and metering phases.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Region {
    /// United States (split-phase 240 V, `-US`/`-NA` SKUs).
    Us,
    /// Australia (single phase, has an NMI).
    Au,
    /// New Zealand (single phase).
    Nz,
    /// Continental Europe (three phase).
    Eu,
}

/// A town with its time zone and rough coordinates (for day length and solar noon).
#[derive(Debug)]
pub struct Place {
    /// City name as it appears in the system address.
    pub city: &'static str,
    /// State or province code.
    pub state: &'static str,
    /// ISO country code.
    pub country: &'static str,
    /// Postal code.
    pub postal_code: &'static str,
    /// IANA time-zone name.
    pub tz: &'static str,
    /// Latitude in degrees (south negative).
    pub lat: f64,
    /// Longitude in degrees (west negative).
    pub lon: f64,
    /// Electrical region.
    pub region: Region,
    /// Grid profile name reported for the micros.
    pub grid_profile: &'static str,
}

/// Places in the order systems are assigned to them (system index modulo the length).
/// Every zone here has an offset that is a whole multiple of 15 minutes, so local 15-minute
/// buckets line up with UTC multiples of 900 s.
pub static PLACES: [Place; 13] = [
    place("Santa Rosa", "CA", "US", "95404", "America/Los_Angeles", 38.44, -122.71, Region::Us),
    place("Manly", "NSW", "AU", "2095", "Australia/Sydney", -33.80, 151.28, Region::Au),
    place("Freiburg", "BW", "DE", "79098", "Europe/Berlin", 47.99, 7.85, Region::Eu),
    place("Albany", "NY", "US", "12203", "America/New_York", 42.65, -73.75, Region::Us),
    place("Wellington", "WGN", "NZ", "6011", "Pacific/Auckland", -41.29, 174.78, Region::Nz),
    place("Phoenix", "AZ", "US", "85004", "America/Phoenix", 33.45, -112.07, Region::Us),
    place("Madrid", "MD", "ES", "28001", "Europe/Madrid", 40.42, -3.70, Region::Eu),
    place("Perth", "WA", "AU", "6000", "Australia/Perth", -31.95, 115.86, Region::Au),
    place("Austin", "TX", "US", "78701", "America/Chicago", 30.27, -97.74, Region::Us),
    place("Boulder", "CO", "US", "80302", "America/Denver", 40.01, -105.27, Region::Us),
    place("Adelaide", "SA", "AU", "5000", "Australia/Adelaide", -34.93, 138.60, Region::Au),
    place("Amsterdam", "NH", "NL", "1012", "Europe/Amsterdam", 52.37, 4.90, Region::Eu),
    place("Honolulu", "HI", "US", "96813", "Pacific/Honolulu", 21.31, -157.86, Region::Us),
];

#[allow(clippy::too_many_arguments)]
const fn place(
    city: &'static str,
    state: &'static str,
    country: &'static str,
    postal_code: &'static str,
    tz: &'static str,
    lat: f64,
    lon: f64,
    region: Region,
) -> Place {
    let grid_profile = match (region, country.as_bytes()) {
        (Region::Us, _) => "IEEE 1547:2018 SRD 1.2",
        (Region::Au, _) => "AS/NZS 4777.2:2020 Australia A",
        (Region::Nz, _) => "AS/NZS 4777.2:2020 New Zealand",
        (Region::Eu, b"DE") => "VDE AR-N 4105:2018",
        (Region::Eu, b"ES") => "UNE 217002:2020",
        (Region::Eu, _) => "EN 50549-1:2019",
    };
    Place { city, state, country, postal_code, tz, lat, lon, region, grid_profile }
}

/// First parts of system names.
pub static NAME_STEMS: [&str; 12] = [
    "Maple Street",
    "Harbour View",
    "Oak Ridge",
    "Sunny Acres",
    "Willow Lane",
    "Cedar Court",
    "Hilltop",
    "Riverbend",
    "Bayside",
    "Meadow Farm",
    "Pine Hollow",
    "Lakeside",
];

/// Last parts of system names.
pub static NAME_ENDINGS: [&str; 5] = ["Solar", "Home", "Residence", "PV", "House"];

/// Gateway firmware strings in the `emu_sw_version` format.
pub static FIRMWARE: [&str; 4] =
    ["D8.2.4345 (b3c6a2)", "D8.3.5167 (e5a2b0)", "D8.2.4264 (9d1f4c)", "D7.6.175 (f79c8d)"];

/// `attachment_type` values seen in the API.
pub static ATTACHMENTS: [&str; 4] = ["rack_mount", "zep", "frame_mount", "railless_mount"];
