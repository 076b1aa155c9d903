//! Requests per second of every server over the last minutes, for the
//! status page's chart: the admin endpoint reads each server's request
//! count every [`EVERY`] and keeps the last [`KEPT`] readings; the page
//! draws them as an inline SVG (no script, nothing fetched: the page's
//! content-security policy allows neither). Reading the counters costs the
//! data path nothing; the history lives in the admin task alone.

use std::collections::VecDeque;
use std::fmt::Write;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use super::html::escape;
use crate::runtime::Shared;

/// How often the counters are read.
pub const EVERY: Duration = Duration::from_secs(5);
/// Readings kept: 5 minutes.
pub const KEPT: usize = 60;

/// One reading: every (pool, server) and its request count.
#[derive(Debug, Clone)]
struct Reading {
    counts: Vec<(Arc<str>, Arc<str>, u64)>,
}

#[derive(Debug, Default)]
pub struct History {
    readings: Mutex<VecDeque<Reading>>,
}

impl History {
    /// Reads the counters now.
    pub fn sample(&self, shared: &Shared) {
        let snap = shared.snapshot.load();
        let counts = snap
            .pools
            .iter()
            .flat_map(|p| {
                p.servers.iter().map(|s| {
                    (
                        Arc::clone(&p.name),
                        Arc::clone(&s.name),
                        s.live.stats.total(),
                    )
                })
            })
            .collect();
        let mut r = self.readings.lock().unwrap_or_else(PoisonError::into_inner);
        if r.len() == KEPT {
            r.pop_front();
        }
        r.push_back(Reading { counts });
    }

    /// Requests per second of each server of `pool` between consecutive
    /// readings, oldest first (a server absent from a reading has a gap).
    pub fn rates(&self, pool: &str, servers: &[Arc<str>]) -> Vec<Vec<Option<f64>>> {
        let r = self.readings.lock().unwrap_or_else(PoisonError::into_inner);
        let count = |reading: &Reading, server: &str| {
            reading
                .counts
                .iter()
                .find(|(p, s, _)| &**p == pool && &**s == server)
                .map(|(_, _, n)| *n)
        };
        servers
            .iter()
            .map(|server| {
                r.iter()
                    .zip(r.iter().skip(1))
                    .map(|(a, b)| {
                        let (a, b) = (count(a, server)?, count(b, server)?);
                        // A counter that went back (a restart): no rate.
                        b.checked_sub(a).map(|d| d as f64 / EVERY.as_secs_f64())
                    })
                    .collect()
            })
            .collect()
    }
}

/// Reads the counters every [`EVERY`] until `stop` is cancelled.
pub async fn run(
    history: Arc<History>,
    shared: Arc<Shared>,
    stop: tokio_util::sync::CancellationToken,
) {
    let mut ticks = tokio::time::interval(EVERY);
    loop {
        tokio::select! {
            _ = ticks.tick() => history.sample(&shared),
            () = stop.cancelled() => return,
        }
    }
}

/// Distinct colours for the servers' lines (and their legend).
const COLOURS: [&str; 8] = [
    "#1565c0", "#2e7d32", "#c62828", "#6a1b9a", "#ef6c00", "#00838f", "#5d4037", "#ad1457",
];

/// The chart of one pool: one line per server, requests per second over
/// the readings kept, with a legend; a note while there are too few.
pub fn chart(pool: &str, servers: &[Arc<str>], rates: &[Vec<Option<f64>>]) -> String {
    let points = rates.first().map_or(0, Vec::len);
    if points < 2 {
        return format!(
            "<p class=\"muted chart-pending\">Requests per second: the chart fills in as readings come (one every {} s).</p>",
            EVERY.as_secs()
        );
    }
    let (w, h, pad) = (600.0, 120.0, 4.0);
    let max = rates
        .iter()
        .flatten()
        .flatten()
        .fold(0.0_f64, |m, v| m.max(*v))
        .max(1.0);
    let x = |i: usize| pad + (w - 2.0 * pad) * i as f64 / (KEPT - 2) as f64;
    let y = |v: f64| h - pad - (h - 2.0 * pad) * v / max;
    let mut svg = String::new();
    let _ = write!(
        svg,
        "<figure class=\"chart\" data-pool=\"{pool}\"><svg role=\"img\" aria-label=\"requests per second per server, pool {pool}\" \
         width=\"{w}\" height=\"{h}\" viewBox=\"0 0 {w} {h}\" style=\"background:#fff;border:1px solid #ddd\">\
         <text x=\"{tx}\" y=\"14\" font-size=\"11\" fill=\"#777\" text-anchor=\"end\">{max:.1} req/s</text>",
        pool = escape(pool),
        tx = w - pad,
    );
    // The newest reading is at the right edge.
    let offset = (KEPT - 1).saturating_sub(points);
    for (i, (server, line)) in servers.iter().zip(rates).enumerate() {
        let colour = COLOURS[i % COLOURS.len()];
        let mut d = String::new();
        let mut pen_down = false;
        for (j, v) in line.iter().enumerate() {
            match v {
                Some(v) => {
                    let _ = write!(
                        d,
                        "{}{:.1},{:.1} ",
                        if pen_down { "L" } else { "M" },
                        x(offset + j),
                        y(*v)
                    );
                    pen_down = true;
                }
                None => pen_down = false,
            }
        }
        let _ = write!(
            svg,
            "<path class=\"series\" data-server=\"{s}\" d=\"{d}\" fill=\"none\" stroke=\"{colour}\" stroke-width=\"2\"/>",
            s = escape(server),
            d = d.trim_end(),
        );
    }
    svg.push_str("</svg><figcaption>");
    for (i, server) in servers.iter().enumerate() {
        let _ = write!(
            svg,
            "<span style=\"color:{}\">&#9632;</span> {} ",
            COLOURS[i % COLOURS.len()],
            escape(server)
        );
    }
    let _ = write!(
        svg,
        "<span class=\"muted\">requests per second, last {} minutes</span></figcaption></figure>",
        (KEPT as u64 * EVERY.as_secs()) / 60
    );
    svg
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rates_come_from_consecutive_readings_and_a_gap_breaks_the_line() {
        let h = History::default();
        let (p, a, b): (Arc<str>, Arc<str>, Arc<str>) = ("app".into(), "a".into(), "b".into());
        for counts in [
            vec![(p.clone(), a.clone(), 0), (p.clone(), b.clone(), 0)],
            vec![(p.clone(), a.clone(), 50), (p.clone(), b.clone(), 10)],
            vec![(p.clone(), a.clone(), 60)],
            vec![(p.clone(), a.clone(), 60), (p.clone(), b.clone(), 20)],
        ] {
            h.readings.lock().unwrap().push_back(Reading { counts });
        }
        let rates = h.rates("app", &[a.clone(), b.clone()]);
        assert_eq!(rates[0], vec![Some(10.0), Some(2.0), Some(0.0)]);
        assert_eq!(rates[1], vec![Some(2.0), None, None]);
        let svg = chart("app", &[a, b], &rates);
        assert!(svg.contains("<svg"), "{svg}");
        assert_eq!(svg.matches("class=\"series\"").count(), 2);
        assert!(!svg.contains("NaN"), "{svg}");
    }

    #[test]
    fn readings_are_bounded() {
        let h = History::default();
        let shared = Shared::new(crate::runtime::Snapshot::detached(
            &crate::config::parse(
                "listeners: [{name: a, bind: \"127.0.0.1:1\", pool: p}]\npools:\n  p:\n    servers: [{name: s, address: \"127.0.0.1:2\"}]\n",
                std::path::Path::new("t.yaml"),
            )
            .unwrap(),
        ));
        for _ in 0..KEPT + 10 {
            h.sample(&shared);
        }
        assert_eq!(h.readings.lock().unwrap().len(), KEPT);
    }
}
