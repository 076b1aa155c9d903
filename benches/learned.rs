//! The learned session table (`sticky: { mode: learn }`) at its default
//! capacity, 1,000,000 sessions: the memory it takes when full, and what a
//! lookup and a new session cost then. Run with `cargo bench --bench learned`
//! (filling the table takes a few seconds before the first benchmark).
//!
//! The resident memory of the process before and after filling is printed
//! (from `/proc/self/status`, Linux only); the difference is the table.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::hint::black_box;
use std::sync::Arc;
use std::time::{Duration, Instant};

use criterion::{Criterion, criterion_group, criterion_main};
use limpet::sticky::learn::Table;

const ENTRIES: u64 = 1_000_000;
/// The default `learn.idle_timeout`.
const IDLE: Duration = Duration::from_secs(5 * 3600);

/// Table keys are hashes of session ids: spread the benchmark's keys the
/// same way (splitmix64 of a counter), so they do not arrive in order.
fn key(i: u64) -> u64 {
    let mut z = i.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// Keys of sessions the table has never seen: a range of counters far
/// from the filled one.
const MISS_BASE: u64 = 1 << 40;

/// Resident memory of this process in KiB (`VmRSS`), 0 where unknown.
fn rss_kib() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("VmRSS:"))
                .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        })
        .unwrap_or(0)
}

fn mib(kib: u64) -> f64 {
    // KiB counts of a process fit f64's mantissa exactly.
    #[allow(clippy::cast_precision_loss)]
    let k = kib as f64;
    k / 1024.0
}

fn bench_learned(c: &mut Criterion) {
    // A few server names, shared like the pool's own `Arc<str>` names.
    let servers: Vec<Arc<str>> = (1..=4).map(|i| Arc::from(format!("node{i}"))).collect();

    let before = rss_kib();
    let started = Instant::now();
    let table = Table::new(ENTRIES, IDLE);
    // The data path inserts by the server's number (Learn::respond).
    let numbers: Vec<u64> = servers.iter().map(|s| table.number(s)).collect();
    for i in 0..ENTRIES {
        table.insert_number(key(i), numbers[usize::try_from(i % 4).unwrap()]);
    }
    let filled = table.len();
    let took = started.elapsed();
    let after = rss_kib();
    let per_entry = (after.saturating_sub(before) * 1024)
        .checked_div(filled)
        .unwrap_or(0);
    eprintln!(
        "learned table: {filled} entries inserted in {:.2} s; RSS before {:.1} MiB, after {:.1} MiB, \
         difference {:.1} MiB ({per_entry} bytes per entry)",
        took.as_secs_f64(),
        mib(before),
        mib(after),
        mib(after.saturating_sub(before)),
    );
    assert!(
        filled > ENTRIES * 99 / 100,
        "the table should hold (nearly) all {ENTRIES} entries, holds {filled}"
    );

    let mut group = c.benchmark_group("lookup");
    let mut i = 0u64;
    group.bench_function("hit", |b| {
        b.iter(|| {
            i = (i + 1) % ENTRIES;
            let e = table.get(black_box(key(i)));
            debug_assert!(e.is_some());
            black_box(e)
        })
    });
    let mut m = 0u64;
    group.bench_function("miss", |b| {
        b.iter(|| {
            m += 1;
            black_box(table.get(black_box(key(MISS_BASE + m))))
        })
    });
    group.finish();

    // Last: it changes the table (each new key evicts the least recently
    // used entry once the table is full).
    let mut group = c.benchmark_group("insert");
    let mut n = ENTRIES;
    group.bench_function("new", |b| {
        b.iter(|| {
            n += 1;
            table.insert_number(black_box(key(n)), numbers[usize::try_from(n % 4).unwrap()]);
        })
    });
    group.finish();

    let len = table.len();
    eprintln!(
        "learned table after the benchmarks: {len} entries (capacity {ENTRIES}), RSS {:.1} MiB",
        mib(rss_kib())
    );
}

criterion_group!(benches, bench_learned);
criterion_main!(benches);
