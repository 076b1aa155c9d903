//! The standard process metrics, named as Prometheus's own client libraries
//! name them, read from `/proc/self` at scrape time (Linux).

/// One reading of the process's resources.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Process {
    pub cpu_seconds: f64,
    pub resident_bytes: u64,
    pub virtual_bytes: u64,
    pub open_fds: u64,
    pub max_fds: u64,
    pub start_time_seconds: f64,
}

/// Reads `/proc/self`; fields that cannot be read are 0.
pub fn read() -> Process {
    let mut p = Process::default();
    let ticks = rustix::param::clock_ticks_per_second() as f64;
    let page = rustix::param::page_size() as u64;
    if let Ok(stat) = std::fs::read_to_string("/proc/self/stat")
        && let Some(after) = stat.rfind(')').map(|i| &stat[i + 1..])
    {
        // Fields after the command name, numbered from 3 (state).
        let f: Vec<&str> = after.split_whitespace().collect();
        let field = |n: usize| f.get(n - 3).and_then(|v| v.parse::<u64>().ok());
        if let (Some(utime), Some(stime)) = (field(14), field(15)) {
            p.cpu_seconds = (utime + stime) as f64 / ticks;
        }
        if let (Some(start), Some(boot)) = (field(22), boot_time()) {
            p.start_time_seconds = boot as f64 + start as f64 / ticks;
        }
    }
    if let Ok(statm) = std::fs::read_to_string("/proc/self/statm") {
        let mut v = statm
            .split_whitespace()
            .map(|x| x.parse::<u64>().unwrap_or(0));
        p.virtual_bytes = v.next().unwrap_or(0) * page;
        p.resident_bytes = v.next().unwrap_or(0) * page;
    }
    if let Ok(dir) = std::fs::read_dir("/proc/self/fd") {
        p.open_fds = dir.count() as u64;
    }
    p.max_fds = rustix::process::getrlimit(rustix::process::Resource::Nofile)
        .current
        .unwrap_or(u64::MAX);
    p
}

/// Seconds since the epoch when the machine booted (`btime` of /proc/stat).
fn boot_time() -> Option<u64> {
    let stat = std::fs::read_to_string("/proc/stat").ok()?;
    stat.lines()
        .find_map(|l| l.strip_prefix("btime "))
        .and_then(|v| v.trim().parse().ok())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn this_process_is_read() {
        let p = read();
        assert!(p.resident_bytes > 0);
        assert!(p.open_fds > 0);
        assert!(p.max_fds >= p.open_fds);
        let now = crate::clock::unix_ms() as f64 / 1000.0;
        assert!(p.start_time_seconds > now - 3600.0 && p.start_time_seconds <= now + 1.0);
    }
}
