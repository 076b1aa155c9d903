//! `GET /status`: one self-contained HTML page (no scripts, styles inline,
//! nothing fetched from elsewhere) that refreshes itself every 5 seconds:
//! uptime; per pool its sticky outcomes (hit, new, redispatch), the share
//! of 5xx answers, p50 and p99 latency and a chart of requests per second
//! per server over the last minutes (`history.rs`); every server with
//! up/down in colour, state, weight, share of traffic, in-flight requests,
//! learned sessions, the last health check, and the pool's recent
//! failovers. Every value is HTML-escaped.

use std::fmt::Write;

use super::api::rfc3339;
use super::history::{self, History};
use super::html::escape;
use crate::config::ServerState;
use crate::metrics::{Histogram, OUTCOMES};
use crate::runtime::Snapshot;

const STYLE: &str = "body{font-family:system-ui,sans-serif;margin:1.5em;color:#222;background:#fafafa}\
h1{font-size:1.4em}h2{font-size:1.15em;margin-top:1.6em}\
table{border-collapse:collapse;margin:.4em 0 1em}th,td{padding:.3em .8em;border-bottom:1px solid #ddd;text-align:left}\
th{background:#eee}td.num{text-align:right;font-variant-numeric:tabular-nums}\
.up{color:#fff;background:#2e7d32;padding:.1em .5em;border-radius:3px}\
.down{color:#fff;background:#c62828;padding:.1em .5em;border-radius:3px}\
.state-drain{color:#b26a00;font-weight:bold}.state-disabled{color:#777;font-weight:bold}.state-active{color:#2e7d32}\
.muted{color:#777}";

pub fn page(snap: &Snapshot, history: &History) -> String {
    let mut h = String::with_capacity(8 * 1024);
    let _ = write!(
        h,
        "<!DOCTYPE html><html lang=\"en\"><head><meta charset=\"utf-8\">\
         <meta http-equiv=\"refresh\" content=\"5\">\
         <title>limpet status</title><style>{STYLE}</style></head><body>\
         <h1>limpet {}</h1><p class=\"muted\">Up <span class=\"uptime\">{}</span>. Refreshes every 5 seconds.</p>",
        escape(env!("CARGO_PKG_VERSION")),
        uptime(),
    );
    for pool in &snap.pools {
        let total: u64 = pool.servers.iter().map(|s| s.live.stats.total()).sum();
        let _ = write!(
            h,
            "<h2 id=\"pool-{name}\">Pool {name} <span class=\"muted\">(sticky: {mode})</span></h2>",
            name = escape(&pool.name),
            mode = escape(pool.mode.as_str()),
        );
        if let Some(t) = pool.sticky.learned() {
            let _ = write!(
                h,
                "<p>Learned sessions: <span class=\"learned\">{}</span> ({} on probation)</p>",
                t.len(),
                t.on_probation()
            );
        }
        if let Some(s) = pool.sticky.store() {
            let (class, word) = if s.is_up() {
                ("up", "reachable")
            } else {
                ("down", "unreachable: routing from the local table")
            };
            let _ = write!(
                h,
                "<p>Shared store {}: <span class=\"store {class}\">{word}</span></p>",
                escape(&s.shown)
            );
        }
        summary(&mut h, pool);
        let names: Vec<std::sync::Arc<str>> = pool
            .servers
            .iter()
            .map(|s| std::sync::Arc::clone(&s.name))
            .collect();
        h.push_str(&history::chart(
            &pool.name,
            &names,
            &history.rates(&pool.name, &names),
        ));
        h.push_str(
            "<table><thead><tr><th>server</th><th>address</th><th>health</th><th>state</th>\
             <th>weight</th><th>share of traffic</th><th>requests</th><th>in flight</th>\
             <th>last health check</th></tr></thead><tbody>",
        );
        for s in pool.servers.iter() {
            let up = s.resolved && s.live.is_up();
            let state = s.live.state();
            let share = if total == 0 {
                0.0
            } else {
                s.live.stats.total() as f64 * 100.0 / total as f64
            };
            let check = match s.live.last_check() {
                Some((at, ok)) => format!(
                    "{} at {}",
                    if ok { "passed" } else { "failed" },
                    escape(&rfc3339(at))
                ),
                None => "none".to_owned(),
            };
            let state_note = if state == s.live.file_state() {
                String::new()
            } else {
                format!(
                    " <span class=\"muted\">(file: {})</span>",
                    s.live.file_state().as_str()
                )
            };
            let _ = write!(
                h,
                "<tr class=\"server\" data-server=\"{name}\" data-up=\"{up}\" data-state=\"{state}\">\
                 <td>{name}{backup}{source}</td><td>{addr}</td><td><span class=\"{updown}\">{updown}</span></td>\
                 <td class=\"state-{state}\">{state}{state_note}</td><td class=\"num\">{weight}</td>\
                 <td class=\"num\">{share:.1}%</td><td class=\"num\">{requests}</td>\
                 <td class=\"num\">{active}</td><td>{check}</td></tr>",
                name = escape(&s.name),
                backup = if s.backup {
                    " <span class=\"muted backup\">(backup)</span>"
                } else {
                    ""
                },
                source = match s.source.as_str() {
                    "file" => String::new(),
                    other => format!(" <span class=\"muted source\">({other})</span>"),
                },
                addr = escape(&match (&s.host, s.resolved) {
                    (Some(host), true) => format!("{} ({host})", s.address),
                    (Some(host), false) => format!("{host}:{} (not resolved)", s.address.port()),
                    (None, _) => s.address.to_string(),
                }),
                updown = if up { "up" } else { "down" },
                state = state_label(state),
                weight = s.weight,
                requests = s.live.stats.total(),
                active = s.live.active(),
            );
        }
        h.push_str("</tbody></table>");
        let failovers = pool.failovers.list();
        if failovers.is_empty() {
            h.push_str("<p class=\"muted\">No failovers since start.</p>");
        } else {
            h.push_str(
                "<table class=\"failovers\"><thead><tr><th>failover at</th><th>from</th><th>to</th></tr></thead><tbody>",
            );
            for f in failovers.iter().rev() {
                let _ = write!(
                    h,
                    "<tr><td>{}</td><td>{}</td><td>{}</td></tr>",
                    escape(&rfc3339(f.at_ms)),
                    escape(&f.from),
                    escape(&f.to)
                );
            }
            h.push_str("</tbody></table>");
        }
    }
    h.push_str("<h2>Listeners</h2><table><thead><tr><th>listener</th><th>address</th><th>connections</th></tr></thead><tbody>");
    for l in &snap.listeners {
        let _ = write!(
            h,
            "<tr><td>{}</td><td>{}</td><td class=\"num\">{}</td></tr>",
            escape(&l.name),
            escape(&l.addr.to_string()),
            l.stats.active()
        );
    }
    h.push_str("</tbody></table></body></html>\n");
    h
}

/// How long this process has run, as `3d 4h 5m` (from the start time the
/// process metrics read).
fn uptime() -> String {
    let started = crate::metrics::process::read().start_time_seconds;
    let now = crate::clock::unix_ms() as f64 / 1000.0;
    let s = (now - started).max(0.0) as u64;
    match (s / 86_400, s / 3600 % 24, s / 60 % 60) {
        (0, 0, m) => format!("{m}m {}s", s % 60),
        (0, h, m) => format!("{h}h {m}m"),
        (d, h, m) => format!("{d}d {h}h {m}m"),
    }
}

/// A pool's row of figures: sticky outcomes, 5xx share, p50 and p99.
fn summary(h: &mut String, pool: &crate::pool::Pool) {
    let mut latency = Histogram {
        buckets: Vec::new(),
        sum: 0.0,
        count: 0,
    };
    let (mut answered, mut errors) = (0u64, 0u64);
    for stats in pool
        .servers
        .iter()
        .map(|s| &s.live.stats)
        .chain(std::iter::once(&pool.stats.unplaced))
    {
        latency.merge(&stats.histogram());
        for (code, n) in stats.by_code() {
            answered += n;
            if (500..600).contains(&code) {
                errors += n;
            }
        }
    }
    let ms = |q: f64| {
        latency
            .quantile(q)
            .map_or_else(|| "–".to_owned(), |s| format!("{:.1} ms", s * 1000.0))
    };
    let share = if answered == 0 {
        0.0
    } else {
        errors as f64 * 100.0 / answered as f64
    };
    h.push_str(
        "<table class=\"summary\"><thead><tr><th>requests</th><th>5xx</th><th>p50</th><th>p99</th>",
    );
    for o in OUTCOMES {
        let _ = write!(h, "<th>{}</th>", o.as_str());
    }
    let _ = write!(
        h,
        "</tr></thead><tbody><tr><td class=\"num\">{answered}</td><td class=\"num errors\">{share:.2}%</td>\
         <td class=\"num p50\">{}</td><td class=\"num p99\">{}</td>",
        ms(0.5),
        ms(0.99)
    );
    for o in OUTCOMES {
        let _ = write!(
            h,
            "<td class=\"num outcome\" data-outcome=\"{}\">{}</td>",
            o.as_str(),
            pool.stats.decisions(o)
        );
    }
    h.push_str("</tr></tbody></table>");
}

fn state_label(s: ServerState) -> &'static str {
    s.as_str()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn html_is_escaped() {
        assert_eq!(
            escape("<a href=\"x\">&'</a>"),
            "&lt;a href=&quot;x&quot;&gt;&amp;&#39;&lt;/a&gt;"
        );
    }
}
