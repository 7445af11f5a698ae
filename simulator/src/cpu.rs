//! CPU time of processes, and their children, from Linux's `/proc`.
//!
//! A run measures what its node processes cost per committed transaction: sample
//! `utime + stime` of each node before and after, and divide the difference by the work done.
//! Elsewhere than Linux (no `/proc`) every figure is absent rather than wrong.

use std::collections::BTreeMap;
use std::sync::OnceLock;

/// CPU seconds (user + system) process `pid` has used so far; `None` when it does not exist or
/// `/proc` cannot be read.
pub fn process_seconds(pid: u32) -> Option<f64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    parse_stat(&stat).map(|ticks| ticks / clock_ticks())
}

/// The fields of `/proc/PID/stat` after the command name, from the state on. The name is in
/// parentheses and may hold spaces and parentheses, so they start after the last `)`.
fn stat_fields(stat: &str) -> Option<Vec<&str>> {
    Some(stat.rsplit_once(')')?.1.split_whitespace().collect())
}

/// `utime + stime` in clock ticks from the text of `/proc/PID/stat`.
fn parse_stat(stat: &str) -> Option<f64> {
    // utime and stime are the 12th and 13th fields after the command name.
    let f = stat_fields(stat)?;
    let t = |i: usize| f.get(i).and_then(|v| v.parse::<f64>().ok());
    Some(t(11)? + t(12)?)
}

/// The processes whose parent is `pid`; empty when `/proc` cannot be read.
pub fn children(pid: u32) -> Vec<u32> {
    let parent = |p: u32| -> Option<u32> {
        let stat = std::fs::read_to_string(format!("/proc/{p}/stat")).ok()?;
        stat_fields(&stat)?.get(1)?.parse().ok()
    };
    let Ok(dir) = std::fs::read_dir("/proc") else { return Vec::new() };
    dir.flatten()
        .filter_map(|e| e.file_name().to_str()?.parse::<u32>().ok())
        .filter(|&p| parent(p) == Some(pid))
        .collect()
}

/// The kernel's clock ticks per second (`getconf CLK_TCK`, nearly always 100), asked once.
pub fn clock_ticks() -> f64 {
    static TICKS: OnceLock<f64> = OnceLock::new();
    *TICKS.get_or_init(|| {
        std::process::Command::new("getconf")
            .arg("CLK_TCK")
            .output()
            .ok()
            .and_then(|o| String::from_utf8(o.stdout).ok())
            .and_then(|s| s.trim().parse().ok())
            .filter(|t: &f64| *t > 0.0)
            .unwrap_or(100.0)
    })
}

/// CPU seconds of each process in `pids` that can be read, by pid.
pub fn sample(pids: impl IntoIterator<Item = u32>) -> BTreeMap<u32, f64> {
    pids.into_iter().filter_map(|p| process_seconds(p).map(|s| (p, s))).collect()
}

/// CPU seconds the processes in `after` used since `before`: per pid, its figure in `after` less
/// its figure in `before` (0 for a pid that started in between). Processes in `before` only (they
/// ended) are not counted: what they used is lost with them.
pub fn used(before: &BTreeMap<u32, f64>, after: &BTreeMap<u32, f64>) -> f64 {
    after.iter().map(|(pid, s)| (s - before.get(pid).copied().unwrap_or(0.0)).max(0.0)).sum()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn utime_and_stime_are_read_after_a_command_name_with_spaces() {
        let stat = "4242 (elchain node) S 1 4242 4242 0 -1 4194560 1 0 0 0 250 50 0 0 20 0 9 0 1 2 3";
        assert_eq!(parse_stat(stat), Some(300.0));
        assert_eq!(parse_stat("garbage"), None);
    }

    #[test]
    fn only_processes_alive_at_the_end_count_and_new_ones_count_in_full() {
        let before = BTreeMap::from([(1, 10.0), (2, 5.0)]);
        let after = BTreeMap::from([(1, 12.5), (3, 1.0)]);
        assert_eq!(used(&before, &after), 3.5);
    }

    #[test]
    #[cfg(target_os = "linux")]
    fn a_spawned_process_is_a_child() {
        let mut child = std::process::Command::new("sleep").arg("5").spawn().unwrap();
        let found = children(std::process::id());
        let _ = child.kill();
        let _ = child.wait();
        assert!(found.contains(&child.id()), "{found:?}");
    }

    #[test]
    fn this_process_has_a_cpu_time() {
        if cfg!(target_os = "linux") {
            assert!(process_seconds(std::process::id()).is_some());
        }
    }
}
