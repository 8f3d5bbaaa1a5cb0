//! A process's memory and CPU time from `/proc` (Linux); `None` elsewhere.

/// The bench's own process.
pub const SELF: Option<u32> = None;

fn proc_path(pid: Option<u32>, file: &str) -> String {
    match pid {
        Some(pid) => format!("/proc/{pid}/{file}"),
        None => format!("/proc/self/{file}"),
    }
}

/// A `kB` field of `/proc/<pid>/status`, in bytes.
fn status_bytes(pid: Option<u32>, field: &str) -> Option<u64> {
    let status = std::fs::read_to_string(proc_path(pid, "status")).ok()?;
    let line = status.lines().find(|line| line.starts_with(field))?;
    let kib: u64 = line[field.len()..]
        .trim()
        .trim_end_matches("kB")
        .trim()
        .parse()
        .ok()?;
    Some(kib * 1024)
}

/// Peak resident set size (VmHWM).
pub fn peak_rss(pid: Option<u32>) -> Option<u64> {
    status_bytes(pid, "VmHWM:")
}

/// Current resident set size (VmRSS).
pub fn rss(pid: Option<u32>) -> Option<u64> {
    status_bytes(pid, "VmRSS:")
}

/// User plus system CPU time of every thread so far, in seconds.
pub fn cpu_seconds(pid: Option<u32>) -> Option<f64> {
    let utime = stat_field(pid, UTIME)?;
    let stime = stat_field(pid, STIME)?;
    // USER_HZ is 100 on every Linux architecture Courier targets.
    Some((utime + stime) as f64 / 100.0)
}

/// The process named `name` (its `comm`) whose command line holds `marker`: the oldest, when
/// several do (a broker outlives the command-line tools that share its executable).
#[cfg_attr(not(feature = "rabbitmq"), allow(dead_code))]
pub fn find(name: &str, marker: &str) -> Option<u32> {
    let mut found: Option<(u64, u32)> = None;
    for entry in std::fs::read_dir("/proc").ok()?.flatten() {
        let Some(pid) = entry
            .file_name()
            .to_str()
            .and_then(|n| n.parse::<u32>().ok())
        else {
            continue;
        };
        let comm = std::fs::read_to_string(proc_path(Some(pid), "comm")).unwrap_or_default();
        if comm.trim_end() != name {
            continue;
        }
        let cmdline = std::fs::read(proc_path(Some(pid), "cmdline")).unwrap_or_default();
        if !String::from_utf8_lossy(&cmdline).contains(marker) {
            continue;
        }
        let started = stat_field(Some(pid), STARTTIME).unwrap_or(u64::MAX);
        if found.is_none_or(|(oldest, _)| started < oldest) {
            found = Some((started, pid));
        }
    }
    found.map(|(_, pid)| pid)
}

/// Fields of `/proc/<pid>/stat` counted from 1 over the whole line, as proc(5) numbers them.
const UTIME: usize = 14;
const STIME: usize = 15;
#[cfg_attr(not(feature = "rabbitmq"), allow(dead_code))]
const STARTTIME: usize = 22;

fn stat_field(pid: Option<u32>, field: usize) -> Option<u64> {
    let stat = std::fs::read_to_string(proc_path(pid, "stat")).ok()?;
    // The command name (field 2) may hold spaces; the fields after its ')' are fixed.
    let after_name = &stat[stat.rfind(')')? + 1..];
    after_name.split_whitespace().nth(field - 3)?.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_this_process() {
        if !std::path::Path::new("/proc/self/status").exists() {
            return; // not Linux
        }
        let now = rss(SELF).expect("VmRSS");
        let peak = peak_rss(SELF).expect("VmHWM");
        assert!(peak >= now && now > 0);
        assert!(cpu_seconds(SELF).expect("utime and stime") >= 0.0);
        let me = std::process::id();
        let comm = std::fs::read_to_string("/proc/self/comm").expect("comm");
        let found = find(comm.trim_end(), "").expect("this process by its name");
        // The oldest process of this name: this one, or an older run of the same tests.
        assert!(found == me || stat_field(Some(found), STARTTIME) <= stat_field(SELF, STARTTIME));
    }
}
