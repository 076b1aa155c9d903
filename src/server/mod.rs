//! A server of a pool: its configuration plus the live state that must
//! survive a reload (in-flight count, operator state, health verdicts,
//! counters), kept behind an `Arc` so a new runtime snapshot can re-link it
//! by (pool, server) name. [`Servers`] (`list.rs`) is a pool's list of
//! them with the lookups the sticky modes need.
//!
//! A server is up when its active checks say so AND real traffic has not
//! marked it down (passive checks). Each cause has its own atomic; nothing
//! needs two of them to change together.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU8, AtomicU32, AtomicU64, Ordering};
use std::time::Duration;

use crate::config::{PassiveConfig, ServerConfig, ServerState};
use crate::metrics::{CheckStats, RequestStats};

use crate::clock::{ms as clock_ms, to_ms as ms};

mod list;
pub use list::{Servers, Slots};

/// A server's live state as one process hands it to the next.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Vitals {
    /// The state in effect, and the one the file gave.
    pub state: String,
    pub file_state: String,
    /// The active checks' verdict, once there was one.
    #[serde(default)]
    pub healthy: Option<bool>,
    /// Passive checks: down for this long yet.
    #[serde(default)]
    pub down_ms: u64,
}

/// Live state of one server, shared by every snapshot that has it.
#[derive(Debug)]
pub struct Live {
    /// Requests in flight, one counter per worker (on its own cache line).
    active: crate::metrics::Sharded<AtomicU32>,
    /// The state in effect: the file's, or one set at run time (admin API).
    state: AtomicU8,
    /// The state the configuration file gave when it was last applied.
    file_state: AtomicU8,
    /// The active health checks' verdict (true until a check says otherwise).
    healthy: AtomicBool,
    /// Whether any active check has finished yet: the first one decides.
    checked: AtomicBool,
    /// Passive checks: failures in the current window and when it began.
    fails: AtomicU32,
    window_start: AtomicU64,
    /// Passive checks: down until this clock_ms (0 = not down).
    down_until: AtomicU64,
    /// When the server last came back (clock_ms; 0 = never went down), for slow_start.
    recovered_at: AtomicU64,
    /// Unix ms of the last finished active check (0 = none yet), and its result.
    last_check_ms: AtomicU64,
    last_check_ok: AtomicBool,
    /// Requests answered through this server.
    pub stats: RequestStats,
    /// Active health checks run.
    pub checks: CheckStats,
}

fn state_of(v: u8) -> ServerState {
    match v {
        s if s == ServerState::Drain as u8 => ServerState::Drain,
        s if s == ServerState::Disabled as u8 => ServerState::Disabled,
        _ => ServerState::Active,
    }
}

impl Live {
    pub fn new(state: ServerState) -> Live {
        Live::with_health(state, true)
    }

    /// A server that appeared at run time (DNS, the admin API) in a pool
    /// with active checks: down until they pass, so it takes no session
    /// before it has shown it can.
    pub fn pending(state: ServerState) -> Live {
        Live::with_health(state, false)
    }

    fn with_health(state: ServerState, healthy: bool) -> Live {
        Live {
            active: Default::default(),
            state: AtomicU8::new(state as u8),
            file_state: AtomicU8::new(state as u8),
            healthy: AtomicBool::new(healthy),
            checked: AtomicBool::new(false),
            fails: AtomicU32::new(0),
            window_start: AtomicU64::new(0),
            down_until: AtomicU64::new(0),
            recovered_at: AtomicU64::new(0),
            last_check_ms: AtomicU64::new(0),
            last_check_ok: AtomicBool::new(false),
            stats: RequestStats::default(),
            checks: CheckStats::default(),
        }
    }

    /// Requests currently in flight on this server (used by `least_conn`).
    pub fn active(&self) -> u32 {
        self.active
            .iter()
            .map(|a| a.load(Ordering::Relaxed))
            .fold(0, u32::wrapping_add)
    }

    pub fn begin(&self) {
        self.active.mine().fetch_add(1, Ordering::Relaxed);
    }

    pub fn end(&self) {
        self.active.mine().fetch_sub(1, Ordering::Relaxed);
    }

    pub fn state(&self) -> ServerState {
        state_of(self.state.load(Ordering::Relaxed))
    }

    /// The state the configuration file says.
    pub fn file_state(&self) -> ServerState {
        state_of(self.file_state.load(Ordering::Relaxed))
    }

    /// Sets the state at run time (the admin API); a reload keeps it unless
    /// the file changes this server's `state`.
    pub fn set_state(&self, state: ServerState) {
        self.state.store(state as u8, Ordering::Relaxed);
    }

    /// Applies the state of a (re)loaded file: it wins only where it changed.
    pub fn apply_file_state(&self, state: ServerState) {
        let before = self.file_state.swap(state as u8, Ordering::Relaxed);
        if before != state as u8 {
            self.set_state(state);
        }
    }

    /// What this server's live state says, for a process taking over (an
    /// in-place upgrade): a state set at run time, the active checks'
    /// verdict, a passive mark-down still running.
    pub fn vitals(&self) -> Vitals {
        let now = clock_ms();
        Vitals {
            state: self.state().as_str().to_owned(),
            file_state: self.file_state().as_str().to_owned(),
            healthy: self.was_checked().then(|| self.is_healthy()),
            down_ms: self.down_until.load(Ordering::Relaxed).saturating_sub(now),
        }
    }

    /// Takes over `vitals` from the process before. A state set at run
    /// time stays unless this process's file changed the server's state
    /// (as across a reload); a server the checks found down stays down
    /// until they say otherwise.
    pub fn recall(&self, vitals: &Vitals) {
        let parse = |s: &str| match s {
            "drain" => Some(ServerState::Drain),
            "disabled" => Some(ServerState::Disabled),
            "active" => Some(ServerState::Active),
            _ => None,
        };
        if let (Some(state), Some(file_state)) = (parse(&vitals.state), parse(&vitals.file_state))
            && file_state == self.file_state()
        {
            self.set_state(state);
        }
        if let Some(up) = vitals.healthy {
            self.checked.store(true, Ordering::Relaxed);
            self.healthy.store(up, Ordering::Relaxed);
        }
        if vitals.down_ms > 0 {
            self.down_until.store(
                clock_ms().saturating_add(vitals.down_ms).max(1),
                Ordering::Relaxed,
            );
        }
    }

    /// The last active check: (unix ms, passed), if there was one.
    pub fn last_check(&self) -> Option<(u64, bool)> {
        match self.last_check_ms.load(Ordering::Relaxed) {
            0 => None,
            at => Some((at, self.last_check_ok.load(Ordering::Relaxed))),
        }
    }

    /// Up: healthy by the active checks and not marked down by real traffic.
    pub fn is_up(&self) -> bool {
        self.healthy.load(Ordering::Relaxed) && !self.passively_down(clock_ms())
    }

    fn passively_down(&self, now: u64) -> bool {
        let until = self.down_until.load(Ordering::Relaxed);
        until != 0 && now < until
    }

    pub fn is_healthy(&self) -> bool {
        self.healthy.load(Ordering::Relaxed)
    }

    pub fn was_checked(&self) -> bool {
        self.checked.load(Ordering::Relaxed)
    }

    /// Records one active check's own result (before rise/fall).
    pub fn checked(&self, ok: bool) {
        self.checks.record(ok);
        self.last_check_ok.store(ok, Ordering::Relaxed);
        let unix_ms = crate::clock::unix_ms().max(1);
        self.last_check_ms.store(unix_ms, Ordering::Relaxed);
    }

    /// Records the active checks' verdict.
    pub fn set_healthy(&self, up: bool) {
        self.checked.store(true, Ordering::Relaxed);
        let was = self.healthy.swap(up, Ordering::Relaxed);
        if up && !was {
            self.recovered_at.store(clock_ms(), Ordering::Relaxed);
        }
    }

    /// Counts a failure seen on real traffic. Returns true when it marks the
    /// server down (max_fails within fail_timeout).
    pub fn record_failure(&self, cfg: PassiveConfig) -> bool {
        if cfg.max_fails == 0 {
            return false;
        }
        let now = clock_ms();
        let window = ms(cfg.fail_timeout);
        let start = self.window_start.load(Ordering::Relaxed);
        let fails = if start == 0 || now.saturating_sub(start) > window {
            self.window_start.store(now, Ordering::Relaxed);
            self.fails.store(1, Ordering::Relaxed);
            1
        } else {
            self.fails.fetch_add(1, Ordering::Relaxed) + 1
        };
        if fails < cfg.max_fails || self.passively_down(now) {
            return false;
        }
        let until = now + window;
        self.fails.store(0, Ordering::Relaxed);
        self.window_start.store(0, Ordering::Relaxed);
        self.down_until.store(until, Ordering::Relaxed);
        // It is tried again when the window is over: slow_start ramps from there.
        self.recovered_at.store(until, Ordering::Relaxed);
        true
    }

    /// The share of its weight a server gets for new placements while it
    /// ramps up after coming back (1.0 = full weight).
    pub fn ramp(&self, slow_start: Duration) -> f64 {
        if slow_start.is_zero() {
            return 1.0;
        }
        let since = self.recovered_at.load(Ordering::Relaxed);
        if since == 0 {
            return 1.0;
        }
        let now = clock_ms();
        if now < since {
            return 0.0;
        }
        let f = (now - since) as f64 / slow_start.as_millis().max(1) as f64;
        if f >= 1.0 {
            self.recovered_at.store(0, Ordering::Relaxed);
            return 1.0;
        }
        f
    }
}

#[derive(Debug)]
pub struct Server {
    pub name: Arc<str>,
    pub route: Arc<str>,
    pub address: SocketAddr,
    pub weight: u32,
    /// HTTPS to this server.
    pub tls: Option<crate::config::ServerTls>,
    /// Takes requests only while no other server of the pool can.
    pub backup: bool,
    pub live: Arc<Live>,
    /// Where each worker keeps its idle connections to this address
    /// (stable for the process; see `runtime::Shared::slot`).
    pub slot: usize,
    /// Where it comes from: the file, DNS or the admin API.
    pub source: crate::config::Source,
    /// The host name of `address: host:port`, if it was one.
    pub host: Option<Arc<str>>,
    /// `address` is known (a host name that never resolved: not yet).
    pub resolved: bool,
    /// The host name's other addresses (not used).
    pub others: Vec<SocketAddr>,
}

impl Server {
    pub fn new(config: &ServerConfig, live: Arc<Live>, slot: usize) -> Server {
        Server {
            name: config.name.as_str().into(),
            route: config.route.as_str().into(),
            address: config.address,
            weight: config.weight,
            tls: config.tls.clone(),
            backup: config.backup,
            live,
            slot,
            source: config.source.clone(),
            host: config.host.clone(),
            resolved: config.resolved,
            others: config.others.clone(),
        }
    }

    /// May take requests that carry affinity to it (up, and not `disabled`).
    pub fn usable(&self) -> bool {
        self.resolved && self.live.is_up() && self.live.state() != ServerState::Disabled
    }

    /// May take new placements (up and `active`).
    pub fn placeable(&self) -> bool {
        self.resolved && self.live.is_up() && self.live.state() == ServerState::Active
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::clock;

    fn passive(max_fails: u32, fail_timeout_s: u64) -> PassiveConfig {
        PassiveConfig {
            max_fails,
            fail_timeout: Duration::from_secs(fail_timeout_s),
        }
    }

    #[test]
    fn max_fails_within_fail_timeout_marks_down_and_zero_turns_it_off() {
        let live = Live::new(ServerState::Active);
        let cfg = passive(3, 60);
        assert!(!live.record_failure(cfg));
        assert!(!live.record_failure(cfg));
        assert!(live.is_up());
        assert!(live.record_failure(cfg));
        assert!(!live.is_up());

        let off = Live::new(ServerState::Active);
        let cfg = passive(0, 60);
        for _ in 0..10 {
            assert!(!off.record_failure(cfg));
        }
        assert!(off.is_up());
    }

    #[test]
    fn a_passively_downed_server_is_tried_again_after_fail_timeout() {
        let clock = clock::pause();
        let step = |ms| clock.advance(Duration::from_millis(ms));
        let live = Live::new(ServerState::Active);
        let cfg = passive(2, 10);
        // Two failures 11 s apart are in different windows: still up.
        assert!(!live.record_failure(cfg));
        step(11_001);
        assert!(!live.record_failure(cfg));
        // A second one within the window marks it down for fail_timeout.
        step(999);
        assert!(live.record_failure(cfg));
        assert!(!live.is_up());
        step(9_999);
        assert!(!live.is_up());
        // Failures while down do not make the mark-down longer.
        assert!(!live.record_failure(cfg));
        assert!(!live.record_failure(cfg));
        step(1);
        assert!(live.is_up());
    }

    #[test]
    fn the_ramp_grows_linearly_over_slow_start_after_recovery() {
        let clock = clock::pause();
        let step = |ms| clock.advance(Duration::from_millis(ms));
        let live = Live::new(ServerState::Active);
        let ten = Duration::from_secs(10);
        assert_eq!(live.ramp(ten), 1.0);
        live.set_healthy(false);
        step(1_000);
        live.set_healthy(true);
        assert_eq!(live.ramp(ten), 0.0);
        assert_eq!(live.ramp(Duration::ZERO), 1.0);
        step(2_500);
        assert!((live.ramp(ten) - 0.25).abs() < 1e-9);
        step(5_000);
        assert!((live.ramp(ten) - 0.75).abs() < 1e-9);
        step(2_500);
        assert_eq!(live.ramp(ten), 1.0);
        // After a passive mark-down it ramps from the end of fail_timeout.
        step(8_000);
        assert!(live.record_failure(passive(1, 10)));
        step(5_000);
        assert_eq!(live.ramp(ten), 0.0);
        step(10_000);
        assert!((live.ramp(ten) - 0.5).abs() < 1e-9);
    }

    #[test]
    fn a_mark_down_handed_to_the_next_process_keeps_its_remaining_time() {
        let clock = clock::pause();
        let live = Live::new(ServerState::Active);
        assert!(live.record_failure(passive(1, 30)));
        clock.advance(Duration::from_secs(10));
        let vitals = live.vitals();
        assert_eq!(vitals.down_ms, 20_000);
        let next = Live::new(ServerState::Active);
        next.recall(&vitals);
        clock.advance(Duration::from_millis(19_999));
        assert!(!next.is_up());
        clock.advance(Duration::from_millis(1));
        assert!(next.is_up());
    }
}
