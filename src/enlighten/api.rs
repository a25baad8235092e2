//! The typed Monitoring API v4 endpoints: one method per endpoint, each a thin call of
//! `EnlightenClient::get_json` with the endpoint's path template, real path and query.
//!
//! Every call here is one billable hit (a Watt plan has 1,000 a month); the scheduler decides which
//! to make. The client adds the API key, the bearer token, the ledger and the retry-once on 401.

use super::client::EnlightenClient;
use super::error::ApiError;
use super::responses::{
    Alarms, BatteryLifetime, BatteryTelemetry, ConsumptionLifetime, ConsumptionMeter, ConsumptionMeterReadings,
    Devices, EnchargeTelemetry, EnergyLifetime, Events, ExportLifetime, ImportExportTelemetry, ImportLifetime,
    InvertersSummary, LatestTelemetry, MicroTelemetry, MicrosTelemetry, ProductionMeter, ProductionMeterReadings,
    ProductionMicro, StorageMeterReadings, Summary, System, SystemsPage,
};

/// Largest page `GET /systems` allows.
pub const MAX_SYSTEMS_PAGE_SIZE: u32 = 100;

/// Pages [`EnlightenClient::all_systems`] reads at most (10,000 systems), so a server that keeps
/// claiming more can never loop us through the month's quota.
pub const MAX_SYSTEMS_PAGES: u32 = 100;

/// The template of the per-micro telemetry endpoint, as a denial of it names it.
pub const MICROS_TELEMETRY: &str = "/systems/{id}/devices/micros/telemetry";

/// Largest page of devices `devices/micros/telemetry` allows.
pub const MAX_MICROS_PAGE_SIZE: u32 = 20;

/// Largest page `inverters_summary_by_envoy_or_site` allows.
pub const MAX_INVERTERS_PAGE_SIZE: u32 = 100;

/// The bucket window of an interval-telemetry request.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Granularity {
    /// `5mins`.
    FiveMins,
    /// `15mins`: up to 3 micro buckets or 1 meter bucket.
    FifteenMins,
    /// `day` (Enphase's default): up to 288 micro or 96 meter buckets.
    Day,
    /// `week`: up to 672 meter buckets.
    Week,
}

impl Granularity {
    /// The query value Enphase expects.
    pub fn as_str(self) -> &'static str {
        match self {
            Granularity::FiveMins => "5mins",
            Granularity::FifteenMins => "15mins",
            Granularity::Day => "day",
            Granularity::Week => "week",
        }
    }
}

/// The start and granularity of an interval-telemetry request. With neither start, Enphase starts
/// at local midnight today; `start_at` wins when both are set.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TelemetryQuery {
    /// Start, epoch seconds.
    pub start_at: Option<i64>,
    /// Start, local `YYYY-MM-DD` (used only without `start_at`).
    pub start_date: Option<String>,
    /// Bucket window; Enphase defaults to `day`.
    pub granularity: Option<Granularity>,
}

impl TelemetryQuery {
    /// Starting at `start_at` (epoch seconds), e.g. the last `end_at` already seen.
    pub fn since(start_at: i64) -> Self {
        Self { start_at: Some(start_at), ..Self::default() }
    }

    /// Starting at local midnight of `date` (`YYYY-MM-DD`).
    pub fn on_date(date: impl Into<String>) -> Self {
        Self { start_date: Some(date.into()), ..Self::default() }
    }

    /// The same query with a granularity.
    pub fn with_granularity(mut self, granularity: Granularity) -> Self {
        self.granularity = Some(granularity);
        self
    }

    /// The same query with a window that reaches `now_secs`, if a week can: Enphase answers one
    /// granularity window from the start (a day by default), so a read that starts more than a
    /// day back asks for a week. Reads a day or more apart (a Watt plan shared by several
    /// systems reads the intervals every other evening) would otherwise fall a day further
    /// behind with each read. (`week` on the micros' series is in Enphase's parameter list; how
    /// many buckets it gives there is unconfirmed, and a refusal ends as any 422 on an interval
    /// read does: the next read starts afresh.)
    pub fn reaching(self, now_secs: i64) -> Self {
        let granularity = match self.start_at {
            Some(at) if now_secs - at > 86_400 => Granularity::Week,
            _ => Granularity::Day,
        };
        self.with_granularity(granularity)
    }

    /// The query parameters, in a stable order.
    pub fn to_query(&self) -> Vec<(&'static str, String)> {
        let mut query = Vec::with_capacity(2);
        match (self.start_at, &self.start_date) {
            (Some(at), _) => query.push(("start_at", at.to_string())),
            (None, Some(date)) => query.push(("start_date", date.clone())),
            (None, None) => {}
        }
        if let Some(g) = self.granularity {
            query.push(("granularity", g.as_str().to_owned()));
        }
        query
    }
}

/// `start_date`/`end_date` for the lifetime endpoints, each only when given.
fn date_range(start_date: Option<&str>, end_date: Option<&str>) -> Vec<(&'static str, String)> {
    let mut query = Vec::with_capacity(2);
    if let Some(start) = start_date {
        query.push(("start_date", start.to_owned()));
    }
    if let Some(end) = end_date {
        query.push(("end_date", end.to_owned()));
    }
    query
}

/// `end_at` for the meter-readings endpoints, only when given.
fn end_at(end_at: Option<i64>) -> Vec<(&'static str, String)> {
    end_at.map(|at| ("end_at", at.to_string())).into_iter().collect()
}

/// Percent-encodes one path segment, dots included (serial numbers are alphanumeric, but a path
/// must never be bent by whatever a config or an answer holds, `..` included).
fn segment(raw: &str) -> String {
    let mut out = String::with_capacity(raw.len());
    for byte in raw.bytes() {
        if byte.is_ascii_alphanumeric() || matches!(byte, b'-' | b'_' | b'~') {
            out.push(char::from(byte));
        } else {
            out.push_str(&format!("%{byte:02X}"));
        }
    }
    out
}

impl EnlightenClient {
    /// `GET /systems`: one page of the systems the token can see (`page` from 1, `size` ≤ 100).
    pub async fn systems_page(&self, page: u32, size: u32) -> Result<SystemsPage, ApiError> {
        let query = vec![("page", page.max(1).to_string()), ("size", size.clamp(1, MAX_SYSTEMS_PAGE_SIZE).to_string())];
        self.get_json("/systems", "/systems".to_owned(), query).await
    }

    /// Every system the token can see, reading pages of 100 while [`SystemsPage::has_more`], at most
    /// [`MAX_SYSTEMS_PAGES`] pages. Each page is one hit.
    pub async fn all_systems(&self) -> Result<Vec<System>, ApiError> {
        let mut systems = Vec::new();
        for page in 1..=MAX_SYSTEMS_PAGES {
            let answer = self.systems_page(page, MAX_SYSTEMS_PAGE_SIZE).await?;
            let more = answer.has_more();
            systems.extend(answer.systems);
            if !more {
                break;
            }
        }
        Ok(systems)
    }

    /// `GET /systems/{id}`.
    pub async fn system(&self, system_id: i64) -> Result<System, ApiError> {
        self.get_json("/systems/{id}", format!("/systems/{system_id}"), Vec::new()).await
    }

    /// `GET /systems/{id}/summary`, for today or for `summary_date` (`YYYY-MM-DD`, local).
    pub async fn summary(&self, system_id: i64, summary_date: Option<&str>) -> Result<Summary, ApiError> {
        let query = summary_date.map(|d| ("summary_date", d.to_owned())).into_iter().collect();
        self.get_json("/systems/{id}/summary", format!("/systems/{system_id}/summary"), query).await
    }

    /// `GET /systems/{id}/devices`: active devices by type.
    pub async fn devices(&self, system_id: i64) -> Result<Devices, ApiError> {
        self.get_json("/systems/{id}/devices", format!("/systems/{system_id}/devices"), Vec::new()).await
    }

    /// `GET /systems/{id}/latest_telemetry`: last power per meter channel and battery.
    pub async fn latest_telemetry(&self, system_id: i64) -> Result<LatestTelemetry, ApiError> {
        self.get_json("/systems/{id}/latest_telemetry", format!("/systems/{system_id}/latest_telemetry"), Vec::new())
            .await
    }

    /// `GET /systems/{id}/telemetry/production_micro`: site sum of the micros, 5-minute buckets.
    pub async fn production_micro(&self, system_id: i64, q: TelemetryQuery) -> Result<ProductionMicro, ApiError> {
        self.get_json(
            "/systems/{id}/telemetry/production_micro",
            format!("/systems/{system_id}/telemetry/production_micro"),
            q.to_query(),
        )
        .await
    }

    /// `GET /systems/{id}/telemetry/production_meter`: production meter, 15-minute buckets.
    pub async fn production_meter(&self, system_id: i64, q: TelemetryQuery) -> Result<ProductionMeter, ApiError> {
        self.get_json(
            "/systems/{id}/telemetry/production_meter",
            format!("/systems/{system_id}/telemetry/production_meter"),
            q.to_query(),
        )
        .await
    }

    /// `GET /systems/{id}/telemetry/consumption_meter`: consumption meter, 15-minute buckets.
    pub async fn consumption_meter(&self, system_id: i64, q: TelemetryQuery) -> Result<ConsumptionMeter, ApiError> {
        self.get_json(
            "/systems/{id}/telemetry/consumption_meter",
            format!("/systems/{system_id}/telemetry/consumption_meter"),
            q.to_query(),
        )
        .await
    }

    /// `GET /systems/{id}/telemetry/battery`: battery charge, discharge and SoC, 15-minute buckets.
    pub async fn battery_telemetry(&self, system_id: i64, q: TelemetryQuery) -> Result<BatteryTelemetry, ApiError> {
        self.get_json(
            "/systems/{id}/telemetry/battery",
            format!("/systems/{system_id}/telemetry/battery"),
            q.to_query(),
        )
        .await
    }

    /// `GET /systems/{id}/energy_import_telemetry`: Wh imported from the grid, 15-minute buckets.
    pub async fn import_telemetry(&self, system_id: i64, q: TelemetryQuery) -> Result<ImportExportTelemetry, ApiError> {
        self.get_json(
            "/systems/{id}/energy_import_telemetry",
            format!("/systems/{system_id}/energy_import_telemetry"),
            q.to_query(),
        )
        .await
    }

    /// `GET /systems/{id}/energy_export_telemetry`: Wh exported to the grid, 15-minute buckets.
    pub async fn export_telemetry(&self, system_id: i64, q: TelemetryQuery) -> Result<ImportExportTelemetry, ApiError> {
        self.get_json(
            "/systems/{id}/energy_export_telemetry",
            format!("/systems/{system_id}/energy_export_telemetry"),
            q.to_query(),
        )
        .await
    }

    /// `GET /systems/{id}/energy_lifetime?production=all`: daily production Wh, with the micro and
    /// meter series as well (same single hit).
    pub async fn energy_lifetime(
        &self,
        system_id: i64,
        start_date: Option<&str>,
        end_date: Option<&str>,
    ) -> Result<EnergyLifetime, ApiError> {
        let mut query = date_range(start_date, end_date);
        query.push(("production", "all".to_owned()));
        self.get_json("/systems/{id}/energy_lifetime", format!("/systems/{system_id}/energy_lifetime"), query).await
    }

    /// `GET /systems/{id}/consumption_lifetime`: daily consumption Wh.
    pub async fn consumption_lifetime(
        &self,
        system_id: i64,
        start_date: Option<&str>,
        end_date: Option<&str>,
    ) -> Result<ConsumptionLifetime, ApiError> {
        self.get_json(
            "/systems/{id}/consumption_lifetime",
            format!("/systems/{system_id}/consumption_lifetime"),
            date_range(start_date, end_date),
        )
        .await
    }

    /// `GET /systems/{id}/battery_lifetime`: daily battery charge and discharge Wh.
    pub async fn battery_lifetime(
        &self,
        system_id: i64,
        start_date: Option<&str>,
        end_date: Option<&str>,
    ) -> Result<BatteryLifetime, ApiError> {
        self.get_json(
            "/systems/{id}/battery_lifetime",
            format!("/systems/{system_id}/battery_lifetime"),
            date_range(start_date, end_date),
        )
        .await
    }

    /// `GET /systems/{id}/energy_import_lifetime`: daily Wh imported.
    pub async fn import_lifetime(
        &self,
        system_id: i64,
        start_date: Option<&str>,
        end_date: Option<&str>,
    ) -> Result<ImportLifetime, ApiError> {
        self.get_json(
            "/systems/{id}/energy_import_lifetime",
            format!("/systems/{system_id}/energy_import_lifetime"),
            date_range(start_date, end_date),
        )
        .await
    }

    /// `GET /systems/{id}/energy_export_lifetime`: daily Wh exported.
    pub async fn export_lifetime(
        &self,
        system_id: i64,
        start_date: Option<&str>,
        end_date: Option<&str>,
    ) -> Result<ExportLifetime, ApiError> {
        self.get_json(
            "/systems/{id}/energy_export_lifetime",
            format!("/systems/{system_id}/energy_export_lifetime"),
            date_range(start_date, end_date),
        )
        .await
    }

    /// `GET /systems/{id}/production_meter_readings`: last production register per meter at or
    /// before `end_at` (default now).
    pub async fn production_meter_readings(
        &self,
        system_id: i64,
        end_at_secs: Option<i64>,
    ) -> Result<ProductionMeterReadings, ApiError> {
        self.get_json(
            "/systems/{id}/production_meter_readings",
            format!("/systems/{system_id}/production_meter_readings"),
            end_at(end_at_secs),
        )
        .await
    }

    /// `GET /systems/{id}/consumption_meter_readings`: last consumption register per meter.
    pub async fn consumption_meter_readings(
        &self,
        system_id: i64,
        end_at_secs: Option<i64>,
    ) -> Result<ConsumptionMeterReadings, ApiError> {
        self.get_json(
            "/systems/{id}/consumption_meter_readings",
            format!("/systems/{system_id}/consumption_meter_readings"),
            end_at(end_at_secs),
        )
        .await
    }

    /// `GET /systems/{id}/storage_meter_readings`: last charged/discharged registers per meter.
    pub async fn storage_meter_readings(
        &self,
        system_id: i64,
        end_at_secs: Option<i64>,
    ) -> Result<StorageMeterReadings, ApiError> {
        self.get_json(
            "/systems/{id}/storage_meter_readings",
            format!("/systems/{system_id}/storage_meter_readings"),
            end_at(end_at_secs),
        )
        .await
    }

    /// `GET /systems/inverters_summary_by_envoy_or_site?site_id=…`: the first 100 micros' lifetime
    /// energy and last power (one page covers nearly every home).
    pub async fn inverters_summary(&self, site_id: i64) -> Result<InvertersSummary, ApiError> {
        self.inverters_summary_page(site_id, 1, MAX_INVERTERS_PAGE_SIZE).await
    }

    /// `GET /systems/inverters_summary_by_envoy_or_site`: one page (`page` from 1, `size` ≤ 100).
    pub async fn inverters_summary_page(
        &self,
        site_id: i64,
        page: u32,
        size: u32,
    ) -> Result<InvertersSummary, ApiError> {
        let query = vec![
            ("site_id", site_id.to_string()),
            ("page", page.max(1).to_string()),
            ("size", size.clamp(1, MAX_INVERTERS_PAGE_SIZE).to_string()),
        ];
        self.get_json(
            "/systems/inverters_summary_by_envoy_or_site",
            "/systems/inverters_summary_by_envoy_or_site".to_owned(),
            query,
        )
        .await
    }

    /// `GET /systems/{id}/devices/micros/telemetry`: per-micro buckets for one page of devices
    /// (`page` from 1, `size` ≤ 20). Kilowatt plan and up.
    pub async fn micros_telemetry(
        &self,
        system_id: i64,
        page: u32,
        size: u32,
        q: TelemetryQuery,
    ) -> Result<MicrosTelemetry, ApiError> {
        let mut query =
            vec![("page", page.max(1).to_string()), ("size", size.clamp(1, MAX_MICROS_PAGE_SIZE).to_string())];
        query.extend(q.to_query());
        self.get_json(MICROS_TELEMETRY, format!("/systems/{system_id}/devices/micros/telemetry"), query).await
    }

    /// `GET /systems/{id}/devices/micros/{serial}/telemetry`: one micro's buckets. Kilowatt and up.
    pub async fn micro_telemetry(
        &self,
        system_id: i64,
        serial: &str,
        q: TelemetryQuery,
    ) -> Result<MicroTelemetry, ApiError> {
        self.get_json(
            "/systems/{id}/devices/micros/{serial}/telemetry",
            format!("/systems/{system_id}/devices/micros/{}/telemetry", segment(serial)),
            q.to_query(),
        )
        .await
    }

    /// `GET /systems/{id}/devices/encharges/{serial}/telemetry`: one IQ Battery's buckets.
    /// Kilowatt and up.
    pub async fn encharge_telemetry(
        &self,
        system_id: i64,
        serial: &str,
        q: TelemetryQuery,
    ) -> Result<EnchargeTelemetry, ApiError> {
        self.get_json(
            "/systems/{id}/devices/encharges/{serial}/telemetry",
            format!("/systems/{system_id}/devices/encharges/{}/telemetry", segment(serial)),
            q.to_query(),
        )
        .await
    }

    /// `GET /systems/{id}/events` from `start_time` (epoch seconds, ≤ 6–9 months old) to `end_time`
    /// (default: a day later or now; at most 7 days).
    pub async fn events(&self, system_id: i64, start_time: i64, end_time: Option<i64>) -> Result<Events, ApiError> {
        let mut query = vec![("start_time", start_time.to_string())];
        if let Some(end) = end_time {
            query.push(("end_time", end.to_string()));
        }
        self.get_json("/systems/{id}/events", format!("/systems/{system_id}/events"), query).await
    }

    /// `GET /systems/{id}/alarms` over the same window as [`EnlightenClient::events`]; `cleared`
    /// selects cleared alarms instead of active ones.
    pub async fn alarms(
        &self,
        system_id: i64,
        start_time: i64,
        end_time: Option<i64>,
        cleared: bool,
    ) -> Result<Alarms, ApiError> {
        let mut query = vec![("start_time", start_time.to_string())];
        if let Some(end) = end_time {
            query.push(("end_time", end.to_string()));
        }
        query.push(("cleared", cleared.to_string()));
        self.get_json("/systems/{id}/alarms", format!("/systems/{system_id}/alarms"), query).await
    }

    /// `GET /systems/{id}/open_events`: events not yet closed.
    pub async fn open_events(&self, system_id: i64) -> Result<Events, ApiError> {
        self.get_json("/systems/{id}/open_events", format!("/systems/{system_id}/open_events"), Vec::new()).await
    }

    /// `GET /systems/{id}/open_alarms`: alarms not yet cleared.
    pub async fn open_alarms(&self, system_id: i64) -> Result<Alarms, ApiError> {
        self.get_json("/systems/{id}/open_alarms", format!("/systems/{system_id}/open_alarms"), Vec::new()).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn granularity_query_values() {
        let all = [Granularity::FiveMins, Granularity::FifteenMins, Granularity::Day, Granularity::Week];
        let values: Vec<_> = all.iter().map(|g| g.as_str()).collect();
        assert_eq!(values, ["5mins", "15mins", "day", "week"]);
    }

    #[test]
    fn a_read_from_more_than_a_day_back_asks_for_a_week() {
        let now = 1_750_107_600;
        let g = |q: TelemetryQuery| q.reaching(now).granularity;
        assert_eq!(g(TelemetryQuery::since(now - 3_600)), Some(Granularity::Day));
        assert_eq!(g(TelemetryQuery::since(now - 86_400)), Some(Granularity::Day), "a day reaches now");
        assert_eq!(g(TelemetryQuery::since(now - 86_401)), Some(Granularity::Week));
        assert_eq!(g(TelemetryQuery::since(now - 3 * 86_400)), Some(Granularity::Week));
        assert_eq!(g(TelemetryQuery::default()), Some(Granularity::Day), "from midnight today");
    }

    #[test]
    fn telemetry_query_prefers_start_at() {
        assert!(TelemetryQuery::default().to_query().is_empty());
        assert_eq!(
            TelemetryQuery::since(1750107600).with_granularity(Granularity::Day).to_query(),
            vec![("start_at", "1750107600".to_owned()), ("granularity", "day".to_owned())]
        );
        assert_eq!(TelemetryQuery::on_date("2025-06-17").to_query(), vec![("start_date", "2025-06-17".to_owned())]);
        let both = TelemetryQuery {
            start_at: Some(1),
            start_date: Some("2025-06-17".into()),
            granularity: Some(Granularity::FifteenMins),
        };
        assert_eq!(both.to_query(), vec![("start_at", "1".to_owned()), ("granularity", "15mins".to_owned())]);
    }

    #[test]
    fn lifetime_and_readings_queries() {
        assert!(date_range(None, None).is_empty());
        assert_eq!(
            date_range(Some("2025-06-10"), Some("2025-06-16")),
            vec![("start_date", "2025-06-10".to_owned()), ("end_date", "2025-06-16".to_owned())]
        );
        assert_eq!(date_range(None, Some("2025-06-16")), vec![("end_date", "2025-06-16".to_owned())]);
        assert_eq!(end_at(Some(5)), vec![("end_at", "5".to_owned())]);
        assert!(end_at(None).is_empty());
    }

    #[test]
    fn serials_cannot_bend_the_path() {
        assert_eq!(segment("482241031052"), "482241031052");
        assert_eq!(segment("../x?key=1"), "%2E%2E%2Fx%3Fkey%3D1");
        assert_eq!(segment(".."), "%2E%2E", "no dot segments");
        assert_eq!(segment("a b"), "a%20b");
    }
}
