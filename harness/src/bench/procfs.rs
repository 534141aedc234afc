//! What a proxy's processes cost, read from `/proc` (Linux): CPU seconds (user + system, all threads) and
//! resident memory (RSS, and PSS where processes share pages, as a pre-forked Apache or Squid's workers do).
//! Reading is side-effect free, so the numbers are before/after differences around a measured run.

use std::fs;

/// Clock ticks per second (`sysconf(_SC_CLK_TCK)`).
fn ticks_per_second() -> f64 {
    // SAFETY: sysconf has no preconditions.
    let t = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    if t > 0 { t as f64 } else { 100.0 }
}

/// Why a process could not be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("process {pid}: {what}")]
pub struct ProcError {
    pub pid: u32,
    pub what: String,
}

/// CPU seconds (user + system) the process has used, all its threads included.
pub fn cpu_seconds(pid: u32) -> Result<f64, ProcError> {
    let err = |what: String| ProcError { pid, what };
    let stat = fs::read_to_string(format!("/proc/{pid}/stat")).map_err(|e| err(format!("/proc/{pid}/stat: {e}")))?;
    // The command name (field 2) is in parentheses and may hold spaces: count fields after the last ')'.
    let after = stat.rsplit_once(')').map(|(_, a)| a).ok_or_else(|| err("unreadable /proc stat".into()))?;
    let fields: Vec<&str> = after.split_whitespace().collect();
    // After the name: state is field 3, so utime (14) and stime (15) are at 11 and 12 here.
    let num = |i: usize| fields.get(i).and_then(|f| f.parse::<u64>().ok()).ok_or_else(|| err("no utime/stime".into()));
    Ok((num(11)? + num(12)?) as f64 / ticks_per_second())
}

/// Resident set size in KiB (`VmRSS`).
pub fn rss_kib(pid: u32) -> Result<u64, ProcError> {
    field_kib(&format!("/proc/{pid}/status"), "VmRSS:", pid)
}

/// Proportional set size in KiB (`Pss` of `smaps_rollup`): shared pages divided among their sharers.
pub fn pss_kib(pid: u32) -> Result<u64, ProcError> {
    field_kib(&format!("/proc/{pid}/smaps_rollup"), "Pss:", pid)
}

fn field_kib(path: &str, name: &str, pid: u32) -> Result<u64, ProcError> {
    let text = fs::read_to_string(path).map_err(|e| ProcError { pid, what: format!("{path}: {e}") })?;
    text.lines()
        .find_map(|l| l.strip_prefix(name))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .ok_or_else(|| ProcError { pid, what: format!("{path}: no {name}") })
}

/// The sum over a set of processes.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Usage {
    pub cpu_seconds: f64,
    pub rss_kib: u64,
    pub pss_kib: u64,
}

/// Reads all `pids` (an empty set reads as `None`: nothing to account).
pub fn usage(pids: &[u32]) -> Result<Option<Usage>, ProcError> {
    if pids.is_empty() {
        return Ok(None);
    }
    let mut u = Usage::default();
    for &pid in pids {
        u.cpu_seconds += cpu_seconds(pid)?;
        u.rss_kib += rss_kib(pid)?;
        // PSS needs smaps_rollup (Linux 4.14); RSS stands in without it.
        u.pss_kib += pss_kib(pid).or_else(|_| rss_kib(pid))?;
    }
    Ok(Some(u))
}

/// The processes of a process group now (a pre-forking proxy's workers come and go, so it is looked up at every
/// reading).
pub fn group_members(pgid: u32) -> Vec<u32> {
    let Ok(dir) = fs::read_dir("/proc") else { return Vec::new() };
    let mut out: Vec<u32> = dir
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse::<u32>().ok())
        .filter(|pid| {
            fs::read_to_string(format!("/proc/{pid}/stat")).ok().is_some_and(|stat| {
                // After the parenthesised name: state, ppid, pgrp.
                stat.rsplit_once(')').and_then(|(_, a)| a.split_whitespace().nth(2)?.parse::<u32>().ok()) == Some(pgid)
            })
        })
        .collect();
    out.sort_unstable();
    out
}

/// The processes named by pids and process groups, now.
pub fn resolve(pids: &[u32], pgids: &[u32]) -> Vec<u32> {
    let mut all: Vec<u32> = pids.to_vec();
    for g in pgids {
        all.extend(group_members(*g));
    }
    all.sort_unstable();
    all.dedup();
    all
}

/// Lifts the soft limit on open files to the hard one; returns the limit now in force.
pub fn raise_fd_limit() -> u64 {
    let mut lim = libc::rlimit { rlim_cur: 0, rlim_max: 0 };
    // SAFETY: getrlimit/setrlimit with a valid pointer to an rlimit struct.
    unsafe {
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) != 0 {
            return 1024;
        }
        if lim.rlim_cur < lim.rlim_max {
            let want = libc::rlimit { rlim_cur: lim.rlim_max, rlim_max: lim.rlim_max };
            if libc::setrlimit(libc::RLIMIT_NOFILE, &want) == 0 {
                lim.rlim_cur = lim.rlim_max;
            }
        }
    }
    lim.rlim_cur
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn own_process_is_accounted() {
        let me = std::process::id();
        let before = cpu_seconds(me).unwrap();
        let t = std::time::Instant::now();
        let mut x = 0u64;
        while t.elapsed() < std::time::Duration::from_millis(300) {
            x = x.wrapping_mul(6364136223846793005).wrapping_add(1);
        }
        std::hint::black_box(x);
        assert!(cpu_seconds(me).unwrap() > before, "CPU time did not grow while spinning");
        let u = usage(&[me]).unwrap().unwrap();
        assert!(u.rss_kib > 0 && u.pss_kib > 0, "{u:?}");
        assert_eq!(usage(&[]).unwrap(), None);
        assert!(cpu_seconds(u32::MAX).is_err());
        // This test's own process group holds at least this process.
        // SAFETY: getpgrp has no preconditions.
        let pgid = unsafe { libc::getpgrp() } as u32;
        assert!(group_members(pgid).contains(&me), "{:?}", group_members(pgid));
        assert_eq!(resolve(&[me], &[pgid]).iter().filter(|p| **p == me).count(), 1);
    }
}
