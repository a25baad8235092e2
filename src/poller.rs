//! The poller: finds the systems, asks the scheduler what to read next, reads it, keeps the newest
//! answer of each endpoint per system (so a call that reads one endpoint still yields a whole
//! snapshot), and hands snapshots, new intervals and the bridge status to the bridge.
//!
//! Energy totals never go backwards: the last published totals of every system are kept in
//! `state_dir/totals.json`, and a lower reading (a glitch, a restart) is held back; the daily
//! counter may only drop when the system's local day changes.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use crate::bridge::{BridgeInput, RefreshRequest};
use crate::clock::SharedClock;
use crate::enlighten::api::{MICROS_TELEMETRY, TelemetryQuery};
use crate::enlighten::ledger::next_month_start_ms;
use crate::enlighten::responses::{
    BatteryTelemetry, ConsumptionMeter, Devices, ExportLifetime, ImportLifetime, InvertersSummary, LatestTelemetry,
    MeterReadings, ProductionMicro, Summary, System,
};
use crate::enlighten::{ApiError, EnlightenClient, Plan};
use crate::fsutil;
use crate::home_assistant::Message;
use crate::model::{self, ApiParts, BridgeStatus, SiteSnapshot};
use crate::scheduler::{self, Budget, Decision, Memory, Outcome, Scheduler, SiteProfile, Task};
use crate::zone::Zone;

/// Intervals are re-read from this long before the last one seen (Enphase's data can lag).
const INTERVAL_OVERLAP_SECS: i64 = 1800;
/// `totals.json` is written at most this often while running (and at the end of the run).
const TOTALS_SAVE_EVERY: Duration = Duration::from_secs(60);
/// How often to look for new tokens while authorization is missing.
const TOKEN_WATCH: Duration = Duration::from_secs(5);
/// Micros per page of device-level telemetry (the most the endpoint allows).
const MICROS_PAGE: u32 = 20;
/// The `kind` of the per-micro intervals on the intervals topic.
const MICRO_KIND: &str = "micro_production";
/// A device list that could not be read is asked for again after this long (ms).
const DEVICES_RETRY_MS: i64 = 10 * 60_000;
/// A cellular gateway uploads about every 6 hours: it is stale only after this long.
const CELLULAR_STALE_SECS: u64 = 13 * 3600;

/// How the poller runs.
#[derive(Debug, Clone)]
pub struct PollerOptions {
    /// The plan (decides whether per-micro data is tried).
    pub plan: Plan,
    /// Systems to bridge; empty means all.
    pub systems: Vec<u64>,
    /// The shortest time between two power polls of one system.
    pub min_interval: Duration,
    /// A system whose gateway has not uploaded for this long is shown unavailable (cellular
    /// gateways get at least 13 hours).
    pub stale_after: Duration,
    /// Where answers to refresh requests go.
    pub refresh_response_topic: String,
    /// Where each system's new intervals go: `{id}` is replaced by the system id.
    pub intervals_topic: String,
    /// Where the totals are kept across restarts.
    pub state_dir: PathBuf,
}

/// What is kept of a system across restarts.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
struct Kept {
    /// Lifetime counters as last published.
    production_lifetime_wh: Option<i64>,
    production_meter_wh: Option<i64>,
    consumption_lifetime_wh: Option<i64>,
    grid_import_wh: Option<i64>,
    grid_export_wh: Option<i64>,
    battery_charged_wh: Option<i64>,
    battery_discharged_wh: Option<i64>,
    /// Today's production and the local date it belongs to.
    today: Option<(String, i64)>,
    /// The newest interval published, per kind (epoch seconds of its end).
    last_interval: BTreeMap<String, i64>,
    /// What the scheduler learned of the system, and when it read the intervals and totals.
    #[serde(default)]
    schedule: Option<Memory>,
}

impl Kept {
    fn from_snapshot(s: &SiteSnapshot, date: Option<String>, last_interval: BTreeMap<String, i64>) -> Self {
        Self {
            production_lifetime_wh: s.production.energy_lifetime_wh,
            production_meter_wh: s.production.meter_energy_wh,
            consumption_lifetime_wh: s.consumption.energy_lifetime_wh,
            grid_import_wh: s.grid.import_energy_wh,
            grid_export_wh: s.grid.export_energy_wh,
            battery_charged_wh: s.battery.charged_energy_wh,
            battery_discharged_wh: s.battery.discharged_energy_wh,
            today: date.zip(s.production.energy_today_wh),
            last_interval,
            schedule: None,
        }
    }

    /// A stand-in previous snapshot carrying the kept counters.
    fn as_snapshot(&self, id: u64) -> SiteSnapshot {
        let mut s = SiteSnapshot::new(id);
        s.production.energy_lifetime_wh = self.production_lifetime_wh;
        s.production.meter_energy_wh = self.production_meter_wh;
        s.consumption.energy_lifetime_wh = self.consumption_lifetime_wh;
        s.grid.import_energy_wh = self.grid_import_wh;
        s.grid.export_energy_wh = self.grid_export_wh;
        s.battery.charged_energy_wh = self.battery_charged_wh;
        s.battery.discharged_energy_wh = self.battery_discharged_wh;
        s
    }
}

/// The newest answer of each endpoint for one system.
#[derive(Debug, Default)]
struct Site {
    system: System,
    /// The system's time zone (`system.timezone`), looked up once.
    zone: Option<Zone>,
    /// The device list, without its micros (see `micros`).
    devices: Option<Devices>,
    /// The device list's micros: how many, and how many in service.
    micros: MicroCount,
    summary: Option<Summary>,
    latest: Option<LatestTelemetry>,
    /// The newest micro bucket and its `meta`, as the interval reads keep them (the rest of the
    /// answer is published and dropped).
    production_micro: Option<ProductionMicro>,
    battery: Option<BatteryTelemetry>,
    consumption_readings: Option<MeterReadings>,
    storage_readings: Option<MeterReadings>,
    import_lifetime: Option<ImportLifetime>,
    export_lifetime: Option<ExportLifetime>,
    inverters: Option<InvertersSummary>,
    kept: Kept,
    power_polls: u64,
    last_power_ms: i64,
    /// When the device list was last asked for (ms).
    devices_tried_ms: i64,
    /// Endpoints whose parameters Enphase refused (422), and until when they are left alone (ms).
    resting: BTreeMap<Endpoint, i64>,
}

/// The micros of a device list, counted.
#[derive(Debug, Clone, Copy, Default)]
struct MicroCount {
    /// Every micro listed.
    listed: u32,
    /// Those in service.
    in_service: u32,
}

impl Site {
    fn has_meters(&self) -> bool {
        self.devices.as_ref().is_some_and(|d| !d.devices.meters.is_empty())
    }

    fn has_battery(&self) -> bool {
        self.devices.as_ref().is_some_and(|d| !d.devices.encharges.is_empty() || !d.devices.acbs.is_empty())
    }

    /// The system's local date at `now_secs`, `YYYY-MM-DD`.
    fn local_date(&self, now_secs: i64) -> Option<String> {
        Some(self.zone.as_ref()?.local_date(now_secs).format("%Y-%m-%d").to_string())
    }

    /// Whether the newest summary is from an earlier local day than `now_secs`.
    fn summary_is_old(&self, now_secs: i64) -> bool {
        let summary_date = self.summary.as_ref().and_then(|s| s.summary_date.clone());
        summary_date.is_some() && summary_date != self.local_date(now_secs)
    }

    fn cellular(&self) -> bool {
        self.system.connection_type.as_deref().is_some_and(|c| c.eq_ignore_ascii_case("cellular"))
    }

    /// What the scheduler needs; `device_level`: per-micro telemetry is read with the inverters.
    fn profile(&self, id: u64, device_level: bool) -> SiteProfile {
        let micros = self.micros.listed;
        SiteProfile {
            system_id: id,
            timezone: self.system.timezone.clone(),
            metered: self.has_meters(),
            battery: self.has_battery(),
            cellular: self.cellular(),
            micro_pages: if device_level { micros.div_ceil(MICROS_PAGE) } else { 0 },
        }
    }

    /// The snapshot from every answer kept, with totals held from going backwards.
    fn snapshot(&mut self, id: u64, now_secs: i64, stale_after: Duration) -> SiteSnapshot {
        let parts = ApiParts {
            summary: self.summary.as_ref(),
            devices: self.devices.as_ref(),
            latest: self.latest.as_ref(),
            production_micro: self.production_micro.as_ref(),
            battery: self.battery.as_ref(),
            production_readings: None, // the meter register feeds no entity: not read
            consumption_readings: self.consumption_readings.as_ref(),
            storage_readings: self.storage_readings.as_ref(),
            import_lifetime: self.import_lifetime.as_ref(),
            export_lifetime: self.export_lifetime.as_ref(),
            inverters: self.inverters.as_ref(),
            micros_in_service: self.devices.is_some().then_some(self.micros.in_service as usize),
        };
        let mut snap = SiteSnapshot::from_api(&self.system, parts);
        snap.system_id = id;
        let stale =
            if self.cellular() { stale_after.as_secs().max(CELLULAR_STALE_SECS) } else { stale_after.as_secs() };
        // Judged at the last power read, not now: at night the bridge reads nothing, and the
        // gateway's silence must not be mistaken for ours.
        let judged_at = if self.last_power_ms > 0 { self.last_power_ms / 1000 } else { now_secs };
        snap.available = snap.last_report_at.is_some_and(|t| judged_at - t <= stale as i64);
        let held = snap.keep_totals_from(&self.kept.as_snapshot(id));
        if !held.is_empty() {
            tracing::info!(system_id = id, ?held, "held back lower lifetime readings");
        }
        // The daily counter may only drop when the local day changes; a summary from an earlier
        // local day says nothing of today, which starts at 0 (it is night at midnight).
        let today = self.local_date(now_secs);
        let mut date = self.summary.as_ref().and_then(|s| s.summary_date.clone());
        if today.is_some() && date.is_some() && date != today {
            snap.production.energy_today_wh = Some(0);
            date = today;
        }
        if let (Some((kept_date, kept_wh)), Some(date), Some(now_wh)) =
            (&self.kept.today, &date, snap.production.energy_today_wh)
            && kept_date == date
            && now_wh < *kept_wh
        {
            snap.production.energy_today_wh = Some(*kept_wh);
        }
        self.kept = Kept::from_snapshot(&snap, date, std::mem::take(&mut self.kept.last_interval));
        snap
    }
}

/// Polls Enphase and feeds the bridge.
pub struct Poller {
    api: Arc<EnlightenClient>,
    out: mpsc::Sender<BridgeInput>,
    refresh: mpsc::Receiver<RefreshRequest>,
    clock: SharedClock,
    opts: PollerOptions,
    sites: BTreeMap<u64, Site>,
    scheduler: Scheduler,
    status: BridgeStatus,
    /// The refresh token of the tokens that last failed for authorization: only others are tried.
    failed_tokens: Option<crate::secret::Secret>,
    /// Authorization came back: read every system now, not only the one whose turn it was.
    repoll_all: bool,
    /// When `totals.json` was last written.
    saved_at: Option<std::time::Instant>,
    /// What `totals.json` kept of systems this run does not read, written back as it was.
    unread: BTreeMap<u64, Kept>,
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
        Self {
            api,
            out,
            refresh,
            clock,
            opts,
            sites: BTreeMap::new(),
            scheduler: Scheduler::new(Vec::new()),
            status,
            failed_tokens: None,
            repoll_all: false,
            saved_at: None,
            unread: BTreeMap::new(),
        }
    }

    fn totals_path(&self) -> PathBuf {
        self.opts.state_dir.join("totals.json")
    }

    /// Runs until `shutdown`.
    pub async fn run(mut self, shutdown: CancellationToken) {
        let mut pause = Duration::from_secs(5);
        loop {
            match self.discover(&shutdown).await {
                Ok(()) => break,
                Err(err) => {
                    self.note_error(&err);
                    self.send_status().await;
                    let wait = self.wait_hint(&err).unwrap_or(pause);
                    tracing::warn!(error = %err, retry_in = ?wait, "could not list the Enphase systems");
                    tokio::select! {
                        _ = shutdown.cancelled() => return,
                        _ = tokio::time::sleep(wait) => {}
                    }
                    pause = (pause * 2).min(Duration::from_secs(600));
                }
            }
        }
        loop {
            if shutdown.is_cancelled() {
                break;
            }
            let now = self.clock.now_ms();
            let decision = self.scheduler.next(now, &self.budget(now));
            let mut wait = match decision {
                Some(d) => self.clock.real_wait(d.at_ms.saturating_sub(now)),
                // Nothing fits the month's budget: look again in an hour (the month may turn).
                None => self.clock.real_wait(3_600_000),
            };
            // At a system's local midnight its daily counter restarts: publish that (no hits).
            if let Some(at) = self.next_midnight_ms(now) {
                wait = wait.min(self.clock.real_wait(at - now));
            }
            wait = wait.min(self.clock.recheck_every());
            if !self.status.authorization_ok {
                // Watch for new tokens (`auth login`, the web page): checking costs no hits.
                wait = wait.min(TOKEN_WATCH);
                if self.tokens_usable().await {
                    tracing::info!("new Enphase tokens found: polling again");
                    self.poll_everything(false).await;
                    self.send_status().await;
                    continue;
                }
            }
            // Only a decision due now is made: one planned before a sleep is planned again after
            // it, on the clock as it reads then (it may have jumped: a suspend, a stepped clock),
            // so that a read planned for the afternoon is not made at night.
            if let Some(d) = decision.filter(|d| d.at_ms <= now) {
                if let Some(retry) = self.execute(d).await {
                    tokio::select! {
                        _ = shutdown.cancelled() => break,
                        _ = tokio::time::sleep(retry) => {}
                    }
                }
            } else {
                tokio::select! {
                    _ = shutdown.cancelled() => break,
                    req = self.refresh.recv() => if let Some(req) = req { self.on_refresh(req).await },
                    _ = tokio::time::sleep(wait) => {}
                }
            }
            self.retry_devices().await;
            if std::mem::take(&mut self.repoll_all) {
                self.poll_everything(true).await;
            }
            self.at_midnight().await;
            self.send_status().await;
        }
        // What the throttled saves have not written yet.
        self.save_totals();
    }

    /// A power read of every system now, past the floor between reads (new tokens, a new login);
    /// with `skip_fresh`, not of those read successfully in the last minute.
    async fn poll_everything(&mut self, skip_fresh: bool) {
        let ids: Vec<u64> = self.sites.keys().copied().collect();
        for id in ids {
            let now = self.clock.now_ms();
            // A system read successfully in the last minute is fresh already.
            let recent = self.status.last_success.get(&id).is_some_and(|t| now / 1000 - t < 60);
            if skip_fresh && recent {
                continue;
            }
            if let Some(site) = self.sites.get_mut(&id) {
                site.last_power_ms = 0;
            }
            self.execute(Decision::power_read(now, id)).await;
        }
        self.repoll_all = false;
    }

    /// The next local midnight of any system (plus a second), epoch ms.
    fn next_midnight_ms(&self, now_ms: i64) -> Option<i64> {
        self.sites
            .values()
            .filter_map(|s| {
                let secs = s.zone.as_ref()?.seconds_from_midnight(now_ms.div_euclid(1000));
                Some(now_ms + (86_400 - secs) * 1000 + 1000)
            })
            .min()
    }

    /// Re-publishes every system whose local day changed since its last snapshot.
    async fn at_midnight(&mut self) {
        let now = self.clock.now_secs();
        let stale = self.opts.stale_after;
        let mut changed = Vec::new();
        for (id, site) in &mut self.sites {
            let today = site.local_date(now);
            if site.kept.today.as_ref().is_some_and(|(d, _)| Some(d) != today.as_ref()) {
                changed.push(site.snapshot(*id, now, stale));
            }
        }
        for snap in changed {
            let _ = self.out.send(BridgeInput::Site(Box::new(snap))).await;
        }
    }

    /// Whether the token file holds new tokens that may work (checked without calling Enphase).
    async fn tokens_usable(&self) -> bool {
        matches!(self.api.tokens().current().await, Ok(Some(t))
            if t.reauth_reason(self.clock.now_secs()).is_none() && Some(&t.refresh_token) != self.failed_tokens.as_ref())
    }

    fn budget(&self, now: i64) -> Budget {
        let ledger = self.api.ledger().snapshot();
        Budget {
            month_left: ledger.month_left(),
            next_free_ms: ledger.next_free_ms,
            month_end_ms: next_month_start_ms(now),
            minute_limit: ledger.minute_limit,
            recent_ms: ledger.recent_ms,
        }
    }

    /// Waits until `hits` more fit the 60-second window (and any pause Enphase asked for);
    /// `false` when the month's hits are gone or on shutdown. At start-up a large fleet needs
    /// more calls than a minute allows: they wait their turn instead of being refused.
    async fn room_for(&self, hits: u32, shutdown: &CancellationToken) -> bool {
        loop {
            let now = self.clock.now_ms();
            let budget = self.budget(now);
            if budget.month_left < hits {
                return false;
            }
            let at = budget.fits_at(now.max(budget.next_free_ms), hits);
            if at <= now {
                return true;
            }
            tokio::select! {
                _ = shutdown.cancelled() => return false,
                _ = tokio::time::sleep(self.clock.real_wait(at - now)) => {}
            }
        }
    }

    /// Reads a system's device list (which says whether it has meters, batteries, a cellular
    /// gateway) and tells the scheduler; a failure is logged and tried again later.
    async fn read_devices(&mut self, id: u64) {
        let result = self.api.devices(id as i64).await;
        let device_level = self.device_level();
        let Some(site) = self.sites.get_mut(&id) else { return };
        site.devices_tried_ms = self.clock.now_ms();
        match result {
            Ok(mut devices) => {
                // Micros are only counted: a parsed device per micro, kept for every system of a
                // large fleet, was most of the bridge's memory (some 15 KB a system). The
                // inverter read names them.
                let micros = std::mem::take(&mut devices.devices.micros);
                let groups = &mut devices.devices;
                for group in [
                    &mut groups.meters,
                    &mut groups.gateways,
                    &mut groups.q_relays,
                    &mut groups.acbs,
                    &mut groups.encharges,
                    &mut groups.enpowers,
                    &mut groups.ev_chargers,
                    &mut groups.heat_pump,
                    &mut groups.iq_collars,
                    &mut groups.iq_air,
                    &mut groups.generators,
                ] {
                    group.shrink_to_fit();
                }
                site.micros = MicroCount {
                    listed: u32::try_from(micros.len()).unwrap_or(u32::MAX),
                    in_service: u32::try_from(micros.iter().filter(|m| model::in_service(m)).count())
                        .unwrap_or(u32::MAX),
                };
                site.devices = Some(devices);
                let profile = site.profile(id, device_level);
                self.scheduler.set_profile(profile);
            }
            Err(err) => {
                tracing::warn!(system_id = id, error = %err, "could not read the device list");
                self.note_error(&err);
            }
        }
    }

    /// One device list that failed before, when the budget has room for it now and the last try
    /// was at least ten minutes ago.
    async fn retry_devices(&mut self) {
        let now = self.clock.now_ms();
        let Some(id) = self
            .sites
            .iter()
            .find(|(_, s)| s.devices.is_none() && now - s.devices_tried_ms >= DEVICES_RETRY_MS)
            .map(|(id, _)| *id)
        else {
            return;
        };
        let budget = self.budget(now);
        if budget.month_left > scheduler::RESERVE_PER_MONTH && budget.fits_at(now.max(budget.next_free_ms), 1) <= now {
            self.read_devices(id).await;
        }
    }

    /// Whether per-micro telemetry is read: the plan includes device-level data, and Enphase did
    /// not refuse it (a second 401 on it; then it is not asked for again).
    fn device_level(&self) -> bool {
        self.opts.plan.device_level() && !self.api.denied_endpoints().contains(&MICROS_TELEMETRY)
    }

    async fn discover(&mut self, shutdown: &CancellationToken) -> Result<(), ApiError> {
        let systems = if self.opts.systems.is_empty() {
            self.api.all_systems().await?
        } else {
            let mut list = Vec::new();
            for (i, id) in self.opts.systems.clone().into_iter().enumerate() {
                match self.api.system(id as i64).await {
                    Ok(system) => list.push(system),
                    // A wrong id in the config: say so and go on with the others (asking again
                    // would spend hits on the good ones every time, and never mend it).
                    Err(err @ (ApiError::NotFound { .. } | ApiError::Forbidden { .. })) => {
                        tracing::error!(error = %err, "enphase.systems[{i}]: system {id} is not visible to this login; skipped");
                        self.note_error(&err);
                        self.status.last_error = Some(format!("enphase.systems[{i}]: system {id} skipped: {err}"));
                    }
                    Err(err) => return Err(err),
                }
            }
            list
        };
        let mut kept: BTreeMap<u64, Kept> = match std::fs::read(self.totals_path()) {
            Ok(bytes) => serde_json::from_slice(&bytes).unwrap_or_else(|err| {
                // Lost: the totals may step back once, and the intervals are read afresh.
                let why = crate::secret::hide_quoted_values(&err.to_string());
                tracing::warn!("{} is damaged ({why}); starting without the kept totals", self.totals_path().display());
                BTreeMap::new()
            }),
            Err(_) => BTreeMap::new(),
        };
        for system in systems {
            let Some(id) = system.system_id.and_then(|i| u64::try_from(i).ok()) else { continue };
            let kept = kept.remove(&id).unwrap_or_default();
            let zone = system.timezone.as_deref().and_then(Zone::named);
            self.sites.insert(id, Site { system, zone, kept, ..Site::default() });
        }
        // Systems not read this run (a 404 that passes, a system that comes back) keep theirs.
        self.unread = kept;
        tracing::info!(systems = self.sites.len(), "Enphase systems found");
        let device_level = self.device_level();
        self.scheduler = Scheduler::new(self.sites.iter().map(|(id, s)| s.profile(*id, device_level)).collect());
        // What the last run learned, so that the intervals and totals it read are not read again
        // before they are due: a restart costs a device list, a power read, the state of charge
        // and the inverter data a system, not its evening reads too.
        let now = self.clock.now_ms();
        for (id, site) in &self.sites {
            if let Some(memory) = &site.kept.schedule {
                self.scheduler.recall(*id, memory, now);
            }
        }
        // Each system's device list and a first power reading, as the minute window allows; each
        // system is announced after them (see `execute`), and at the end the full list, so the
        // bridge can drop systems no longer visible. Not before: announced from the system list
        // alone, a system's state would have no figures and replace the full one kept on the
        // broker, and its Home Assistant device would lack the meters and battery that the device
        // list adds a moment later (Home Assistant 2026.2 drops components added to a device
        // config while the first one is still being set up).
        let ids: Vec<u64> = self.sites.keys().copied().collect();
        for id in ids {
            if !self.room_for(1, shutdown).await {
                break;
            }
            self.read_devices(id).await;
            let device_level = self.device_level();
            let cost =
                self.sites.get(&id).map_or(1, |s| endpoints(s, Task::Power, self.clock.now_secs(), device_level).len());
            if !self.room_for(cost as u32, shutdown).await {
                break;
            }
            let now = self.clock.now_ms();
            self.execute(Decision::power_read(now, id)).await;
        }
        let now = self.clock.now_secs();
        let stale = self.opts.stale_after;
        let list: Vec<SiteSnapshot> = self.sites.iter_mut().map(|(id, s)| s.snapshot(*id, now, stale)).collect();
        let _ = self.out.send(BridgeInput::Sites(list)).await;
        self.send_status().await;
        Ok(())
    }

    /// Runs one decision; returns how long to pause first when authorization is missing (no
    /// hits are spent while waiting for new tokens).
    async fn execute(&mut self, d: Decision) -> Option<Duration> {
        let id = d.system_id;
        let api = self.api.clone();
        let now = self.clock.now_ms();
        let device_level = self.device_level();
        let site = self.sites.get_mut(&id)?;
        // The floor between power polls, whatever the budget allows.
        if d.power && site.last_power_ms > 0 {
            let floor = site.last_power_ms + self.opts.min_interval.as_millis() as i64;
            if now < floor {
                return Some(self.clock.real_wait(floor - now));
            }
        }
        let before = last_report(site);
        let mut errors: Vec<ApiError> = Vec::new();
        let mut new_intervals = NewIntervals::default();
        for endpoint in endpoints(site, d.task, now / 1000, device_level) {
            match fetch(&api, site, id as i64, endpoint, now / 1000, &mut new_intervals).await {
                Ok(()) => {}
                Err(err @ (ApiError::BudgetExhausted { .. } | ApiError::RateLimited { .. })) => {
                    errors.push(err);
                    break;
                }
                Err(err @ ApiError::AuthorizationNeeded { .. }) => {
                    errors.push(err);
                    break;
                }
                Err(err @ ApiError::InvalidRequest { .. }) => {
                    // The parameters were refused: never ask the same again soon. An interval read
                    // starts afresh from its default window; the power reads rest for an hour, the
                    // rest (a battery or inverter read of a site that has none) for a day.
                    tracing::warn!(system_id = id, ?endpoint, error = %err, "request refused as invalid");
                    match endpoint.interval_kind() {
                        Some(kind) => {
                            site.kept.last_interval.remove(kind);
                        }
                        None => {
                            let rest = if matches!(endpoint, Endpoint::Summary | Endpoint::Latest) { 1 } else { 24 };
                            site.resting.insert(endpoint, now + rest * 3_600_000);
                        }
                    }
                    errors.push(err);
                }
                Err(err) => errors.push(err),
            }
        }
        if d.task == Task::Power {
            site.power_polls += 1;
        }
        if d.power {
            site.last_power_ms = now;
        }
        let after = last_report(site);
        let snap = site.snapshot(id, now / 1000, self.opts.stale_after);
        let outcome = Outcome {
            // Refusals of the plan or of the parameters are not retried soon: the request will
            // not change by waiting a few minutes (see above for what changes it).
            ok: errors.iter().all(|e| matches!(e, ApiError::NotPermitted { .. } | ApiError::InvalidRequest { .. })),
            last_report_at: after,
            // The power on show now, from whichever answer is freshest (model.rs).
            production_w: snap.production.power_w,
            intervals: std::mem::take(&mut new_intervals.production),
            power: d.power,
        };
        let auth_missing = errors.iter().any(|e| matches!(e, ApiError::AuthorizationNeeded { .. }));
        let wait = errors.iter().filter_map(|e| self.wait_hint(e)).max();
        if auth_missing {
            self.failed_tokens = self.api.tokens().current().await.ok().flatten().map(|t| t.refresh_token);
        } else {
            self.scheduler.record(id, d.task, now, &outcome);
        }
        self.status.polls += 1;
        for err in &errors {
            self.note_error(err);
        }
        if errors.iter().any(|e| matches!(e, ApiError::NotPermitted { .. })) {
            // The plan refused an endpoint: what the systems' reads cost changed.
            let device_level = self.device_level();
            for (id, site) in &self.sites {
                self.scheduler.set_profile(site.profile(*id, device_level));
            }
        }
        if !auth_missing {
            if !self.status.authorization_ok {
                tracing::info!("Enphase authorization works again");
                self.repoll_all = true;
            }
            self.status.authorization_ok = true;
            self.status.authorization_error = None;
        }
        if errors.is_empty() {
            self.status.last_success.insert(id, now / 1000);
        }
        tracing::debug!(system_id = id, task = ?d.task, new_upload = after > before, errors = errors.len(), "poll");
        let _ = self.out.send(BridgeInput::Site(Box::new(snap))).await;
        let topic = self.opts.intervals_topic.replace("{id}", &id.to_string());
        for payload in new_intervals.payloads {
            let msg = Message { topic: topic.clone(), payload, retain: false };
            let _ = self.out.send(BridgeInput::Publish(msg)).await;
        }
        self.save_totals_now_and_then();
        if auth_missing { Some(Duration::from_secs(15)) } else { wait }
    }

    /// Saves the totals at most once a minute (and at the end of the run): written after every
    /// poll, a fleet's file would be rewritten many times a minute (hard on an SD card), and a
    /// kill loses a minute of it at most, which the next readings make up.
    fn save_totals_now_and_then(&mut self) {
        if self.saved_at.is_none_or(|at| at.elapsed() >= TOTALS_SAVE_EVERY) {
            self.save_totals();
        }
    }

    fn save_totals(&mut self) {
        self.saved_at = Some(std::time::Instant::now());
        let now = self.clock.now_ms();
        let mut kept: BTreeMap<u64, Kept> = self.unread.clone();
        kept.extend(
            self.sites
                .iter()
                .map(|(id, s)| (*id, Kept { schedule: self.scheduler.memory(*id, now), ..s.kept.clone() })),
        );
        let bytes = serde_json::to_vec(&kept).expect("totals serialize");
        if let Err(err) = fsutil::write_atomic(&self.totals_path(), &bytes) {
            tracing::warn!(error = %err, "could not save the totals");
        }
    }

    /// How long an error says to wait before trying again, if it says.
    fn wait_hint(&self, err: &ApiError) -> Option<Duration> {
        let now = self.clock.now_ms();
        match err {
            ApiError::BudgetExhausted { until_ms, .. } => Some(self.clock.real_wait(until_ms - now)),
            ApiError::RateLimited { period_end: Some(end), .. } => Some(self.clock.real_wait(end * 1000 - now)),
            ApiError::AuthorizationNeeded { .. } => Some(Duration::from_secs(15)),
            _ => None,
        }
    }

    fn note_error(&mut self, err: &ApiError) {
        *self.status.api_errors.entry(err.kind().to_string()).or_default() += 1;
        if let ApiError::AuthorizationNeeded { reason } = err {
            self.status.authorization_ok = false;
            self.status.authorization_error = Some(reason.clone());
        }
        if let ApiError::NotPermitted { endpoint } = err {
            tracing::debug!(endpoint, "skipped: outside the plan");
            return;
        }
        self.status.last_error = Some(err.to_string());
    }

    async fn on_refresh(&mut self, req: RefreshRequest) {
        let ids: Vec<u64> = match req.system_id {
            Some(id) if self.sites.contains_key(&id) => vec![id],
            Some(id) => {
                self.answer_refresh(false, format!("system {id} is not bridged")).await;
                return;
            }
            None => self.sites.keys().copied().collect(),
        };
        let needed: u32 =
            ids.iter().filter_map(|id| self.sites.get(id)).map(|s| s.profile(0, false).cost(Task::Power)).sum();
        let ledger = self.api.ledger().snapshot();
        let minute_left = ledger.minute_limit.saturating_sub(ledger.minute_used);
        if ledger.month_left() < needed || minute_left < needed {
            let reason = format!(
                "not enough API budget now ({needed} hits needed; {} left this month, {minute_left} this minute)",
                ledger.month_left()
            );
            self.answer_refresh(false, reason).await;
            return;
        }
        for id in &ids {
            let now = self.clock.now_ms();
            if let Some(site) = self.sites.get_mut(id) {
                site.last_power_ms = 0; // a press overrides the floor between polls
            }
            self.execute(Decision::power_read(now, *id)).await;
        }
        self.answer_refresh(true, format!("polled {} system(s)", ids.len())).await;
    }

    async fn answer_refresh(&self, ok: bool, text: String) {
        let body = if ok {
            serde_json::json!({ "ok": true, "done": text })
        } else {
            serde_json::json!({ "ok": false, "reason": text })
        };
        let msg = Message { topic: self.opts.refresh_response_topic.clone(), payload: body.to_string(), retain: false };
        let _ = self.out.send(BridgeInput::Publish(msg)).await;
    }

    async fn send_status(&mut self) {
        let ledger = self.api.ledger().snapshot();
        self.status.hits_month_used = ledger.month_used;
        self.status.hits_month_limit = ledger.month_limit;
        self.status.hits_minute_used = ledger.minute_used;
        self.status.hits_minute_limit = ledger.minute_limit;
        let now = self.clock.now_ms();
        let budget = self.budget(now);
        // The next power poll of each system, as the scheduler plans it now.
        let next: BTreeMap<u64, i64> =
            self.scheduler.next_power_all(now, &budget).into_iter().map(|(id, at)| (id, at / 1000)).collect();
        self.status.next_poll = next;
        self.status.denied_endpoints = self.api.denied_endpoints().iter().map(|s| s.to_string()).collect();
        if let Ok(Some(tokens)) = self.api.tokens().current().await {
            self.status.token_expires_at = Some(tokens.expires_at);
        }
        let _ = self.out.send(BridgeInput::Status(self.status.clone())).await;
    }
}

/// One endpoint the poller reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Endpoint {
    Summary,
    Latest,
    Battery,
    ProductionMicro,
    ConsumptionMeter,
    ConsumptionReadings,
    StorageReadings,
    Import,
    Export,
    Inverters,
    /// Device-level telemetry of every micro, all pages.
    MicrosTelemetry,
}

impl Endpoint {
    /// The interval kind an interval read keeps its place for (`Kept::last_interval`).
    fn interval_kind(self) -> Option<&'static str> {
        match self {
            Endpoint::ProductionMicro => Some("production"),
            Endpoint::ConsumptionMeter => Some("consumption"),
            Endpoint::Battery => Some("battery_charge"),
            Endpoint::MicrosTelemetry => Some(MICRO_KIND),
            _ => None,
        }
    }
}

/// The endpoints a task reads on a site (less those resting after a refusal of their
/// parameters); their count is the task's cost in `SiteProfile::cost`.
fn endpoints(site: &Site, task: Task, now_secs: i64, device_level: bool) -> Vec<Endpoint> {
    let mut list = task_endpoints(site, task, now_secs, device_level);
    list.retain(|e| site.resting.get(e).is_none_or(|until| *until <= now_secs * 1000));
    list
}

fn task_endpoints(site: &Site, task: Task, now_secs: i64, device_level: bool) -> Vec<Endpoint> {
    let metered = site.has_meters();
    let battery = site.has_battery();
    let mut list = Vec::new();
    match task {
        Task::Power => {
            // One hit. Micro-only: the summary carries power and energy. Metered: the meters'
            // power, and every third time the summary for the energy totals. (A battery's state
            // of charge is a task of its own.)
            let k = site.power_polls;
            if (metered || battery) && k == 0 {
                // The first reading takes both, so no entity starts unknown.
                list.extend([Endpoint::Summary, Endpoint::Latest]);
            } else if !(metered || battery) || k.is_multiple_of(6) || site.summary_is_old(now_secs) {
                // (The first reading of a new local day is the summary: today's energy restarts.)
                list.push(Endpoint::Summary);
            } else if metered && k.is_multiple_of(3) {
                list.push(Endpoint::Summary);
            } else {
                list.push(Endpoint::Latest);
            }
        }
        Task::Soc => list.push(Endpoint::Battery),
        Task::Energy => {
            list.push(Endpoint::Summary);
            if metered {
                list.extend([Endpoint::ConsumptionReadings, Endpoint::Import, Endpoint::Export]);
            }
            if battery {
                list.push(Endpoint::StorageReadings);
            }
        }
        Task::Intervals => {
            list.push(Endpoint::ProductionMicro);
            if metered {
                list.push(Endpoint::ConsumptionMeter);
            }
            if battery {
                list.push(Endpoint::Battery);
            }
        }
        Task::Inverters => {
            // The summary names each micro and carries its lifetime energy; on plans with
            // device-level data its 5-minute series follow (one hit per 20 micros).
            list.push(Endpoint::Inverters);
            if device_level {
                list.push(Endpoint::MicrosTelemetry);
            }
        }
    }
    list
}

/// The gateway's last upload as the newest answers say.
fn last_report(site: &Site) -> Option<i64> {
    let from_summary = site.summary.as_ref().and_then(|s| s.last_report_at);
    let from_micro = site.production_micro.as_ref().and_then(|p| p.envelope.meta.as_ref()?.last_report_at);
    let from_latest = site
        .latest
        .as_ref()
        .and_then(|l| l.devices.meters.iter().chain(&l.devices.encharges).filter_map(|m| m.last_report_at).max());
    from_summary.max(from_latest).max(from_micro)
}

/// Reads one endpoint into the site's cache; new intervals are appended to `intervals`.
async fn fetch(
    api: &EnlightenClient,
    site: &mut Site,
    id: i64,
    endpoint: Endpoint,
    now_secs: i64,
    intervals: &mut NewIntervals,
) -> Result<(), ApiError> {
    let since =
        |kind: &str| site.kept.last_interval.get(kind).map(|end| TelemetryQuery::since(end - INTERVAL_OVERLAP_SECS));
    match endpoint {
        Endpoint::Summary => site.summary = Some(api.summary(id, None).await?),
        Endpoint::Latest => site.latest = Some(api.latest_telemetry(id).await?),
        Endpoint::Battery => {
            let q = since("battery_charge").unwrap_or_default().reaching(now_secs);
            let mut answer = api.battery_telemetry(id, q).await?;
            for i in &answer.intervals {
                let Some(end) = i.end_at else { continue };
                let charge = i.charge.as_ref().and_then(|c| c.enwh);
                let discharge = i.discharge.as_ref().and_then(|c| c.enwh);
                push_interval(site, id, "battery_charge", end, 900, charge, intervals);
                push_interval(site, id, "battery_discharge", end, 900, discharge, intervals);
            }
            // Only the newest state of charge is read from the answer (ApiParts): keep that one
            // interval, not the day's.
            let newest_soc = answer
                .intervals
                .iter()
                .enumerate()
                .filter(|(_, i)| i.soc.as_ref().is_some_and(|s| s.percent.is_some()))
                .max_by_key(|(_, i)| i.end_at.unwrap_or(i64::MIN))
                .map(|(k, _)| k);
            answer.intervals = newest_soc.map(|k| answer.intervals.swap_remove(k)).into_iter().collect();
            site.battery = Some(answer);
        }
        Endpoint::ProductionMicro => {
            // The first read reaches a day back, so yesterday's whole daylight teaches the window.
            let q = since("production").unwrap_or_else(|| TelemetryQuery::since(now_secs - 86_400)).reaching(now_secs);
            let mut answer: ProductionMicro = api.production_micro(id, q).await?;
            for i in &answer.intervals {
                if let Some(end) = i.end_at {
                    push_interval(site, id, "production", end, 300, i.enwh, intervals);
                }
            }
            // The newest bucket is the newest production power (the day's last power read may
            // be this read); an answer with nothing newer keeps the one before.
            let kept = site.production_micro.take().and_then(|p| p.intervals.into_iter().next());
            // (On a tie the last wins: the new answer's.)
            let newest = kept
                .into_iter()
                .chain(answer.intervals.drain(..))
                .filter(|i| i.powr.is_some())
                .max_by_key(|i| i.end_at);
            answer.intervals = newest.into_iter().collect();
            site.production_micro = Some(answer);
        }
        Endpoint::ConsumptionMeter => {
            let q = since("consumption").unwrap_or_default().reaching(now_secs);
            let answer: ConsumptionMeter = api.consumption_meter(id, q).await?;
            for i in &answer.intervals {
                if let Some(end) = i.end_at {
                    push_interval(site, id, "consumption", end, 900, i.enwh, intervals);
                }
            }
        }
        Endpoint::ConsumptionReadings => {
            site.consumption_readings = Some(api.consumption_meter_readings(id, None).await?)
        }
        Endpoint::StorageReadings => site.storage_readings = Some(api.storage_meter_readings(id, None).await?),
        // A value per day since the system's first: only their sum is read (ApiParts), so that
        // is all that is kept, not kilobytes per system.
        Endpoint::Import => {
            let mut answer = api.import_lifetime(id, None, None).await?;
            answer.import = vec![model::sum_series(&answer.import)];
            site.import_lifetime = Some(answer);
        }
        Endpoint::Export => {
            let mut answer = api.export_lifetime(id, None, None).await?;
            answer.export = vec![model::sum_series(&answer.export)];
            site.export_lifetime = Some(answer);
        }
        Endpoint::Inverters => site.inverters = Some(api.inverters_summary(id).await?),
        Endpoint::MicrosTelemetry => {
            let q = since(MICRO_KIND).unwrap_or_else(|| TelemetryQuery::since(now_secs - 86_400)).reaching(now_secs);
            let last = site.kept.last_interval.get(MICRO_KIND).copied().unwrap_or(i64::MIN);
            // An upload may land between two pages: only buckets every page has are complete,
            // the rest come with the next read.
            let mut complete = i64::MAX;
            // end_at → (serial, Wh, W) of every micro: one message per bucket with all of them.
            let mut buckets: BTreeMap<i64, Vec<(String, i64, i64)>> = BTreeMap::new();
            let mut page = 1;
            loop {
                let answer = api.micros_telemetry(id, page, MICROS_PAGE, q.clone()).await?;
                let page_newest = answer.devices.iter().flat_map(|d| d.intervals.iter().filter_map(|i| i.end_at)).max();
                complete = complete.min(page_newest.unwrap_or(i64::MAX));
                for series in &answer.devices {
                    let Some(serial) = series.serial_number.as_deref() else { continue };
                    for i in &series.intervals {
                        let (Some(end), Some(wh)) = (i.end_at, i.enwh) else { continue };
                        let power = i.powr.unwrap_or(wh * 12);
                        // Night buckets (nothing produced) are not worth keeping or a message.
                        if end > last && (wh != 0 || power != 0) {
                            buckets.entry(end).or_default().push((serial.to_string(), wh, power));
                        }
                    }
                }
                // A page per 20 micros; a lenient answer that never says "last page" stops at 50.
                if !answer.has_more() || page >= 50 {
                    break;
                }
                page += 1;
            }
            let mut newest = last;
            for (end, micros) in buckets.into_iter().filter(|(end, _)| *end <= complete) {
                newest = newest.max(end);
                intervals.payloads.push(micro_interval_json(id, end, &micros));
            }
            // The newest complete bucket, even if nothing was produced in it (at night).
            if complete != i64::MAX {
                newest = newest.max(complete);
            }
            if newest > last {
                site.kept.last_interval.insert(MICRO_KIND.to_string(), newest);
            }
        }
    }
    Ok(())
}

/// Adds an interval to publish if it is newer than the last one of its kind (de-duplicated by
/// `end_at`, since reads overlap).
fn push_interval(
    site: &mut Site,
    id: i64,
    kind: &str,
    end_at: i64,
    duration_s: i64,
    energy_wh: Option<i64>,
    out: &mut NewIntervals,
) {
    let Some(wh) = energy_wh else { return };
    if site.kept.last_interval.get(kind).is_some_and(|last| end_at <= *last) {
        return;
    }
    site.kept.last_interval.insert(kind.to_string(), end_at);
    if kind == "production" {
        out.production.push((end_at, wh));
    }
    out.payloads.push(interval_json(id, kind, end_at, duration_s, wh).to_string());
}

/// New intervals a read found: the payloads to publish, and the production ones for the scheduler.
#[derive(Debug, Default)]
struct NewIntervals {
    payloads: Vec<String>,
    /// `(end_at, Wh)` of each new production interval.
    production: Vec<(i64, i64)>,
}

/// One bucket of every micro's production, written out directly: a day of a large system's
/// buckets is thousands of values, and a JSON tree of them would take megabytes for a moment.
fn micro_interval_json(id: i64, end_at: i64, micros: &[(String, i64, i64)]) -> String {
    use std::fmt::Write;
    let wh: i64 = micros.iter().map(|(_, wh, _)| wh).sum();
    let mut out = interval_json(id, MICRO_KIND, end_at, 300, wh).to_string();
    out.pop(); // the closing brace
    out.push_str(",\"micros\":{");
    for (k, (serial, wh, w)) in micros.iter().enumerate() {
        let key = serde_json::Value::from(serial.as_str());
        let comma = if k == 0 { "" } else { "," };
        let _ = write!(out, "{comma}{key}:{{\"energy_wh\":{wh},\"power_w\":{w}}}");
    }
    out.push_str("}}");
    out
}

/// One interval as published on the intervals topic.
fn interval_json(id: i64, kind: &str, end_at: i64, duration_s: i64, wh: i64) -> serde_json::Value {
    serde_json::json!({
        "system_id": id,
        "kind": kind,
        "end_at": crate::home_assistant::state::iso8601(end_at),
        "end_at_epoch": end_at,
        "duration_s": duration_s,
        "energy_wh": wh,
        "power_w": wh * 3600 / duration_s,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_micro_bucket_is_valid_json_with_every_micro_and_their_sum() {
        let micros = vec![("482610000060".to_string(), 13, 160), ("odd \"serial\"".to_string(), 14, 169)];
        let text = micro_interval_json(4_210_002, 1_795_993_500, &micros);
        let v: serde_json::Value = serde_json::from_str(&text).expect(&text);
        assert_eq!(v["kind"], MICRO_KIND);
        assert_eq!(v["system_id"], 4_210_002);
        assert_eq!(v["end_at_epoch"], 1_795_993_500);
        assert_eq!((v["energy_wh"].as_i64(), v["power_w"].as_i64()), (Some(27), Some(324)));
        assert_eq!(v["micros"]["482610000060"], serde_json::json!({ "energy_wh": 13, "power_w": 160 }));
        assert_eq!(v["micros"]["odd \"serial\""]["power_w"], 169);
    }
}
