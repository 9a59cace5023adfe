//! Memory and CPU time from /proc (Linux): this process's, per thread, and another
//! process's (the operator's) as a whole.

use std::collections::BTreeMap;
use std::path::Path;

/// Thread names (at most 15 bytes, the kernel's limit) of the bench's runtimes, so CPU time
/// can be told apart by who spent it.
pub const DEVCLUSTER_THREADS: &str = "cn-devcluster";
pub const CLIENT_THREADS: &str = "cn-bench";

/// Clock ticks per second of /proc's CPU times: `USER_HZ`, fixed at 100 in Linux's ABI.
const TICKS_PER_SECOND: f64 = 100.0;

/// A field of /proc/self/status in MiB (`VmHWM`, `VmRSS`), when readable.
pub fn status_mib(field: &str) -> Option<f64> {
    status_mib_at(Path::new("/proc/self/status"), field)
}

/// A field of process `pid`'s /proc/<pid>/status in MiB (`VmHWM`, `VmRSS`), when readable:
/// not once the process has exited.
pub fn status_mib_of(pid: u32, field: &str) -> Option<f64> {
    status_mib_at(
        &Path::new("/proc").join(pid.to_string()).join("status"),
        field,
    )
}

/// A field of a /proc status file in MiB, when readable.
fn status_mib_at(path: &Path, field: &str) -> Option<f64> {
    let status = std::fs::read_to_string(path).ok()?;
    let line = status.lines().find(|line| {
        line.strip_prefix(field)
            .is_some_and(|rest| rest.starts_with(':'))
    })?;
    let kib: f64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib / 1024.0)
}

/// CPU seconds (user + system) spent so far by each live thread, by thread id, with the
/// thread's name.
pub fn thread_cpu() -> BTreeMap<u32, (String, f64)> {
    let mut threads = BTreeMap::new();
    let Ok(tasks) = std::fs::read_dir("/proc/self/task") else {
        return threads;
    };
    for task in tasks.flatten() {
        let Some(tid) = task
            .file_name()
            .to_str()
            .and_then(|t| t.parse::<u32>().ok())
        else {
            continue;
        };
        let Ok(stat) = std::fs::read_to_string(task.path().join("stat")) else {
            continue;
        };
        if let Some(entry) = parse_stat(&stat) {
            threads.insert(tid, entry);
        }
    }
    threads
}

/// CPU seconds (user + system) spent so far by process `pid`, all its threads (live and
/// exited) together, when readable.
pub fn cpu_seconds_of(pid: u32) -> Option<f64> {
    let stat =
        std::fs::read_to_string(Path::new("/proc").join(pid.to_string()).join("stat")).ok()?;
    parse_stat(&stat).map(|(_, seconds)| seconds)
}

/// `(name, utime + stime in seconds)` from a /proc/<pid>/stat or /proc/<pid>/task/<tid>/stat
/// line (the same layout). The name is
/// in parentheses and may hold spaces or parentheses itself, so fields count from the last `)`.
fn parse_stat(stat: &str) -> Option<(String, f64)> {
    let open = stat.find('(')?;
    let close = stat.rfind(')')?;
    let name = stat.get(open + 1..close)?.to_owned();
    let fields: Vec<&str> = stat.get(close + 1..)?.split_whitespace().collect();
    // After the name: state (field 3), …, utime (field 14), stime (field 15).
    let utime: f64 = fields.get(11)?.parse().ok()?;
    let stime: f64 = fields.get(12)?.parse().ok()?;
    Some((name, (utime + stime) / TICKS_PER_SECOND))
}

/// CPU seconds this process spent between two [`thread_cpu`] readings, by who: devcluster,
/// the bench's client, and everything else (the main thread, the raw run).
pub fn cpu_between(
    before: &BTreeMap<u32, (String, f64)>,
    after: &BTreeMap<u32, (String, f64)>,
) -> BTreeMap<&'static str, f64> {
    let mut by_owner: BTreeMap<&'static str, f64> = ["devcluster", "bench", "other"]
        .into_iter()
        .map(|owner| (owner, 0.0))
        .collect();
    for (tid, (name, seconds)) in after {
        let earlier = before.get(tid).map_or(0.0, |(_, s)| *s);
        let owner = if name.starts_with(DEVCLUSTER_THREADS) {
            "devcluster"
        } else if name.starts_with(CLIENT_THREADS) {
            "bench"
        } else {
            "other"
        };
        *by_owner.entry(owner).or_default() += (seconds - earlier).max(0.0);
    }
    by_owner
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_stat_line_gives_the_name_and_cpu_seconds() {
        let line = "4242 (cn-op (x) 1) S 1 2 3 4 5 6 7 8 9 10 250 50 0 0 20 0 1 0";
        assert_eq!(parse_stat(line), Some(("cn-op (x) 1".to_owned(), 3.0)));
        assert_eq!(parse_stat("garbage"), None);
    }

    #[test]
    fn memory_is_read_from_proc() {
        assert!(status_mib("VmRSS").is_some_and(|mib| mib > 0.0));
        assert!(status_mib("VmNothing").is_none());
        let pid = std::process::id();
        assert!(status_mib_of(pid, "VmHWM").is_some_and(|mib| mib > 0.0));
        assert!(status_mib_of(pid, "VmNothing").is_none());
    }

    #[test]
    fn a_process_cpu_time_is_read_from_proc() {
        assert!(cpu_seconds_of(std::process::id()).is_some_and(|seconds| seconds >= 0.0));
        // Pids stop below 2^22 on Linux.
        assert!(cpu_seconds_of(u32::MAX).is_none());
        assert!(status_mib_of(u32::MAX, "VmRSS").is_none());
    }
}
