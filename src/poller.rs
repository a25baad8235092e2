//! The poller: finds the systems, reads them within the hit budget, keeps the newest answer of each
//! endpoint per system (so a cycle that reads only some endpoints still yields a whole snapshot),
//! and hands `SiteSnapshot`s and the bridge status to the bridge.
//!
//! Pacing here is simple and safe: every call goes through the hit ledger, and the time between
//! cycles spreads the month's remaining budget evenly over the month's remaining time.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use crate::bridge::{BridgeInput, RefreshRequest};
use crate::clock::SharedClock;
use crate::enlighten::ledger::next_month_start_ms;
use crate::enlighten::responses::{
    BatteryTelemetry, Devices, ExportLifetime, ImportLifetime, InvertersSummary, LatestTelemetry, MeterReadings,
    Summary, System,
};
use crate::enlighten::{ApiError, EnlightenClient, Plan};
use crate::home_assistant::Message;
use crate::model::{ApiParts, BridgeStatus, SiteSnapshot};

/// Every how many fast cycles the slow endpoints (meter registers, lifetimes, inverters) are read.
const SLOW_EVERY: u32 = 6;
/// Hits kept back each remaining day for token refreshes and the Refresh button.
const DAILY_RESERVE: u32 = 3;

/// How the poller runs.
#[derive(Debug, Clone)]
pub struct PollerOptions {
    /// The plan (decides whether per-micro data is tried).
    pub plan: Plan,
    /// Systems to bridge; empty means all.
    pub systems: Vec<u64>,
    /// The shortest time between two cycles of one system.
    pub min_interval: Duration,
    /// A system whose gateway has not uploaded for this long is shown unavailable.
    pub stale_after: Duration,
    /// Where answers to refresh requests go.
    pub refresh_response_topic: String,
}

/// The newest answer of each endpoint for one system.
#[derive(Debug, Default)]
struct Site {
    system: System,
    devices: Option<Devices>,
    summary: Option<Summary>,
    latest: Option<LatestTelemetry>,
    battery: Option<BatteryTelemetry>,
    production_readings: Option<MeterReadings>,
    consumption_readings: Option<MeterReadings>,
    storage_readings: Option<MeterReadings>,
    import_lifetime: Option<ImportLifetime>,
    export_lifetime: Option<ExportLifetime>,
    inverters: Option<InvertersSummary>,
    last: Option<SiteSnapshot>,
    cycles: u32,
    next_poll_ms: i64,
    /// The slow reads were cut short by the budget: do them next cycle.
    slow_pending: bool,
}

impl Site {
    fn has_meters(&self) -> bool {
        self.devices.as_ref().is_some_and(|d| !d.devices.meters.is_empty())
    }

    fn has_battery(&self) -> bool {
        self.devices.as_ref().is_some_and(|d| !d.devices.encharges.is_empty() || !d.devices.acbs.is_empty())
    }

    /// Hits one fast cycle costs.
    fn fast_cost(&self) -> u32 {
        1 + u32::from(self.has_meters() || self.has_battery()) + u32::from(self.has_battery())
    }

    fn snapshot(&mut self, now_secs: i64, stale_after: Duration) -> SiteSnapshot {
        let parts = ApiParts {
            summary: self.summary.as_ref(),
            devices: self.devices.as_ref(),
            latest: self.latest.as_ref(),
            battery: self.battery.as_ref(),
            production_readings: self.production_readings.as_ref(),
            consumption_readings: self.consumption_readings.as_ref(),
            storage_readings: self.storage_readings.as_ref(),
            import_lifetime: self.import_lifetime.as_ref(),
            export_lifetime: self.export_lifetime.as_ref(),
            inverters: self.inverters.as_ref(),
        };
        let mut snap = SiteSnapshot::from_api(&self.system, parts);
        snap.available = snap.last_report_at.is_some_and(|t| now_secs - t <= stale_after.as_secs() as i64);
        if let Some(prev) = &self.last {
            let held = snap.keep_totals_from(prev);
            if !held.is_empty() {
                tracing::debug!(system_id = snap.system_id, ?held, "held back lower lifetime readings");
            }
        }
        self.last = Some(snap.clone());
        snap
    }
}

/// One endpoint the poller reads.
#[derive(Debug, Clone, Copy)]
enum Endpoint {
    Summary,
    Latest,
    Battery,
    ProductionReadings,
    ConsumptionReadings,
    StorageReadings,
    Import,
    Export,
    Inverters,
}

/// Reads one endpoint into the site's cache.
async fn fetch(api: &EnlightenClient, site: &mut Site, id: i64, endpoint: Endpoint) -> Result<(), ApiError> {
    match endpoint {
        Endpoint::Summary => site.summary = Some(api.summary(id, None).await?),
        Endpoint::Latest => site.latest = Some(api.latest_telemetry(id).await?),
        Endpoint::Battery => site.battery = Some(api.battery_telemetry(id, Default::default()).await?),
        Endpoint::ProductionReadings => site.production_readings = Some(api.production_meter_readings(id, None).await?),
        Endpoint::ConsumptionReadings => {
            site.consumption_readings = Some(api.consumption_meter_readings(id, None).await?)
        }
        Endpoint::StorageReadings => site.storage_readings = Some(api.storage_meter_readings(id, None).await?),
        Endpoint::Import => site.import_lifetime = Some(api.import_lifetime(id, None, None).await?),
        Endpoint::Export => site.export_lifetime = Some(api.export_lifetime(id, None, None).await?),
        Endpoint::Inverters => site.inverters = Some(api.inverters_summary(id).await?),
    }
    Ok(())
}

/// Polls Enphase and feeds the bridge.
pub struct Poller {
    api: Arc<EnlightenClient>,
    out: mpsc::Sender<BridgeInput>,
    refresh: mpsc::Receiver<RefreshRequest>,
    clock: SharedClock,
    opts: PollerOptions,
    sites: BTreeMap<i64, Site>,
    status: BridgeStatus,
}

impl Poller {
    /// A poller over an API client.
    pub fn new(
        api: Arc<EnlightenClient>,
        out: mpsc::Sender<BridgeInput>,
        refresh: mpsc::Receiver<RefreshRequest>,
        clock: SharedClock,
        opts: PollerOptions,
    ) -> Self {
        let status = BridgeStatus::new(opts.plan);
        Self { api, out, refresh, clock, opts, sites: BTreeMap::new(), status }
    }

    /// Runs until `shutdown`.
    pub async fn run(mut self, shutdown: CancellationToken) {
        // Find the systems first; retry with growing pauses on failures.
        let mut pause = Duration::from_secs(5);
        loop {
            match self.discover().await {
                Ok(()) => break,
                Err(err) => {
                    self.note_error(&err);
                    self.send_status().await;
                    tracing::warn!(error = %err, retry_in = ?pause, "could not list the Enphase systems");
                    let wait = self.wait_hint(&err).unwrap_or(pause);
                    tokio::select! {
                        _ = shutdown.cancelled() => return,
                        _ = tokio::time::sleep(wait) => {}
                    }
                    pause = (pause * 2).min(Duration::from_secs(600));
                }
            }
        }
        loop {
            let now = self.clock.now_ms();
            let next = self.sites.values().map(|s| s.next_poll_ms).min().unwrap_or(now + 60_000);
            let wait = Duration::from_millis(next.saturating_sub(now).max(0) as u64);
            let only = tokio::select! {
                _ = shutdown.cancelled() => return,
                _ = tokio::time::sleep(wait) => None,
                req = self.refresh.recv() => req,
            };
            match only {
                Some(req) => self.on_refresh(req).await,
                None => {
                    let now = self.clock.now_ms();
                    let due: Vec<i64> =
                        self.sites.iter().filter(|(_, s)| s.next_poll_ms <= now).map(|(id, _)| *id).collect();
                    for id in due {
                        self.poll_site(id).await;
                    }
                }
            }
            self.send_status().await;
        }
    }

    async fn discover(&mut self) -> Result<(), ApiError> {
        let systems = if self.opts.systems.is_empty() {
            self.api.all_systems().await?
        } else {
            let mut list = Vec::new();
            for id in &self.opts.systems {
                list.push(self.api.system(*id as i64).await?);
            }
            list
        };
        let now = self.clock.now_ms();
        for system in systems {
            let Some(id) = system.system_id else { continue };
            let devices = match self.api.devices(id).await {
                Ok(d) => Some(d),
                Err(err) => {
                    tracing::warn!(system_id = id, error = %err, "could not read the device list");
                    None
                }
            };
            self.sites.insert(id, Site { system, devices, next_poll_ms: now, ..Site::default() });
        }
        tracing::info!(systems = self.sites.len(), "Enphase systems found");
        // The first cycle of every system, then the full list so the bridge can drop vanished ones.
        let ids: Vec<i64> = self.sites.keys().copied().collect();
        for id in &ids {
            self.poll_site(*id).await;
        }
        let list: Vec<SiteSnapshot> = self.sites.values().filter_map(|s| s.last.clone()).collect();
        let _ = self.out.send(BridgeInput::Sites(list)).await;
        self.send_status().await;
        Ok(())
    }

    /// One cycle of one system: the fast endpoints, and every few cycles the slow ones. A cycle the
    /// budget cuts short stops at once and leaves the rest (slow reads included) for the next one.
    async fn poll_site(&mut self, id: i64) {
        let api = self.api.clone();
        let Some(site) = self.sites.get_mut(&id) else { return };
        let slow = site.slow_pending || site.cycles.is_multiple_of(SLOW_EVERY);
        site.cycles = site.cycles.wrapping_add(1);
        let mut jobs = vec![Endpoint::Summary];
        if site.has_meters() || site.has_battery() {
            jobs.push(Endpoint::Latest);
        }
        if site.has_battery() {
            jobs.push(Endpoint::Battery);
        }
        if slow {
            if site.has_meters() {
                jobs.extend([
                    Endpoint::ProductionReadings,
                    Endpoint::ConsumptionReadings,
                    Endpoint::Import,
                    Endpoint::Export,
                ]);
            }
            if site.has_battery() {
                jobs.push(Endpoint::StorageReadings);
            }
            jobs.push(Endpoint::Inverters);
        }
        site.slow_pending = false;
        let mut errors: Vec<ApiError> = Vec::new();
        for job in jobs {
            match fetch(&api, site, id, job).await {
                Ok(()) => {}
                Err(err @ (ApiError::BudgetExhausted { .. } | ApiError::RateLimited { .. })) => {
                    site.slow_pending = slow;
                    errors.push(err);
                    break;
                }
                Err(err) => errors.push(err),
            }
        }
        let now = self.clock.now_ms();
        let snap = site.snapshot(now / 1000, self.opts.stale_after);
        if self.out.send(BridgeInput::Site(Box::new(snap))).await.is_err() {
            return;
        }
        self.status.polls += 1;
        for err in &errors {
            self.note_error(err);
        }
        if errors.is_empty() {
            self.status.last_success.insert(id as u64, now / 1000);
        }
        if errors.iter().all(|e| !matches!(e, ApiError::AuthorizationNeeded { .. })) {
            self.status.authorization_ok = true;
            self.status.authorization_error = None;
        }
        let wait = errors.iter().filter_map(|e| self.wait_hint(e)).max();
        let interval = self.interval();
        let site = self.sites.get_mut(&id).expect("site present");
        site.next_poll_ms = now + interval.max(wait.unwrap_or_default()).as_millis() as i64;
    }

    /// The time between cycles that spends the month's remaining hits evenly until the month ends.
    fn interval(&self) -> Duration {
        let now = self.clock.now_ms();
        let ledger = self.api.ledger().snapshot();
        let ms_left = (next_month_start_ms(now) - now).max(60_000);
        let days_left = (ms_left / 86_400_000 + 1) as u32;
        let spendable = ledger.month_left().saturating_sub(DAILY_RESERVE * days_left).max(1);
        let cycle_cost: u32 = self.sites.values().map(|s| s.fast_cost() + 1).sum::<u32>().max(1);
        let cycles = (spendable / cycle_cost).max(1);
        Duration::from_millis((ms_left / i64::from(cycles)) as u64).max(self.opts.min_interval)
    }

    /// How long an error says to wait before trying again, if it says.
    fn wait_hint(&self, err: &ApiError) -> Option<Duration> {
        let now = self.clock.now_ms();
        match err {
            ApiError::BudgetExhausted { until_ms, .. } => Some(Duration::from_millis((until_ms - now).max(0) as u64)),
            ApiError::RateLimited { period_end: Some(end), .. } => {
                Some(Duration::from_millis((end * 1000 - now).max(0) as u64))
            }
            ApiError::AuthorizationNeeded { .. } => Some(Duration::from_secs(10)),
            _ => None,
        }
    }

    fn note_error(&mut self, err: &ApiError) {
        *self.status.api_errors.entry(err.kind().to_string()).or_default() += 1;
        if let ApiError::AuthorizationNeeded { reason } = err {
            self.status.authorization_ok = false;
            self.status.authorization_error = Some(reason.clone());
        }
        self.status.last_error = Some(err.to_string());
    }

    async fn on_refresh(&mut self, req: RefreshRequest) {
        let ids: Vec<i64> = match req.system_id {
            Some(id) if self.sites.contains_key(&(id as i64)) => vec![id as i64],
            Some(id) => {
                self.answer_refresh(false, format!("system {id} is not bridged")).await;
                return;
            }
            None => self.sites.keys().copied().collect(),
        };
        let needed: u32 = ids.iter().filter_map(|id| self.sites.get(id)).map(|s| s.fast_cost()).sum();
        let ledger = self.api.ledger().snapshot();
        if ledger.month_left() < needed || ledger.minute_limit - ledger.minute_used < needed {
            let reason = format!(
                "not enough API budget now ({} hits needed; {} left this month, {} this minute)",
                needed,
                ledger.month_left(),
                ledger.minute_limit.saturating_sub(ledger.minute_used)
            );
            self.answer_refresh(false, reason).await;
            return;
        }
        for id in &ids {
            self.poll_site(*id).await;
        }
        self.answer_refresh(true, format!("polled {} system(s)", ids.len())).await;
    }

    async fn answer_refresh(&self, ok: bool, text: String) {
        let topic = self.opts.refresh_response_topic.clone();
        let body = if ok {
            serde_json::json!({ "ok": true, "done": text })
        } else {
            serde_json::json!({ "ok": false, "reason": text })
        };
        let msg = Message { topic, payload: body.to_string(), retain: false };
        let _ = self.out.send(BridgeInput::Publish(msg)).await;
    }

    async fn send_status(&mut self) {
        let ledger = self.api.ledger().snapshot();
        self.status.hits_month_used = ledger.month_used;
        self.status.hits_month_limit = ledger.month_limit;
        self.status.hits_minute_used = ledger.minute_used;
        self.status.hits_minute_limit = ledger.minute_limit;
        self.status.next_poll = self.sites.iter().map(|(id, s)| (*id as u64, s.next_poll_ms / 1000)).collect();
        self.status.denied_endpoints = self.api.denied_endpoints().iter().map(|s| s.to_string()).collect();
        if let Ok(Some(tokens)) = self.api.tokens().current().await {
            self.status.token_expires_at = Some(tokens.expires_at);
        }
        let _ = self.out.send(BridgeInput::Status(self.status.clone())).await;
    }
}
