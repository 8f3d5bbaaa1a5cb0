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
    let stat = std::fs::read_to_string(proc_path(pid, "stat")).ok()?;
    // The command name (field 2) may hold spaces; the fields after its ')' are fixed.
    let after_name = &stat[stat.rfind(')')? + 1..];
    let fields: Vec<&str> = after_name.split_whitespace().collect();
    // utime and stime are fields 14 and 15 of the whole line, 12 and 13 after the name.
    let utime: u64 = fields.get(11)?.parse().ok()?;
    let stime: u64 = fields.get(12)?.parse().ok()?;
    // USER_HZ is 100 on every Linux architecture Courier targets.
    Some((utime + stime) as f64 / 100.0)
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
    }
}
