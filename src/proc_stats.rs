//! Resident memory, CPU time and parent of a process, from `/proc` (Linux;
//! elsewhere every figure is unknown). `dure up` samples its children with
//! it, `dure load` the processes of the system it loads.

/// Clock ticks per second of `/proc`'s CPU times (USER_HZ, 100 on Linux).
pub const TICKS_PER_SECOND: f64 = 100.0;

/// Resident memory in bytes (`VmRSS`).
pub fn rss_bytes(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status_field(&status, "VmRSS:").map(|kb| kb * 1024)
}

/// Proportional set size in bytes (`Pss` of `smaps_rollup`): resident
/// memory with each page shared by N processes counted 1/N in each. Summed
/// over processes that share a binary, it is their memory together, where
/// summed RSS counts the shared code once per process.
pub fn pss_bytes(pid: u32) -> Option<u64> {
    let rollup = std::fs::read_to_string(format!("/proc/{pid}/smaps_rollup")).ok()?;
    status_field(&rollup, "Pss:").map(|kb| kb * 1024)
}

/// The parent's pid (`PPid`).
pub fn parent(pid: u32) -> Option<u32> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status_field(&status, "PPid:").and_then(|pid| u32::try_from(pid).ok())
}

/// User plus system CPU time so far, in ticks.
pub fn cpu_ticks(pid: u32) -> Option<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    ticks_of_stat(&stat)
}

/// The number after `name` at the start of a line of a `/proc` text.
fn status_field(status: &str, name: &str) -> Option<u64> {
    let line = status.lines().find(|l| l.starts_with(name))?;
    line[name.len()..].split_whitespace().next()?.parse().ok()
}

/// utime + stime of a `/proc/<pid>/stat` line (fields 14 and 15, counted
/// after the command name, which may hold spaces and parentheses).
fn ticks_of_stat(stat: &str) -> Option<u64> {
    let after_name = &stat[stat.rfind(')')? + 1..];
    let fields: Vec<&str> = after_name.split_whitespace().collect();
    // after_name starts at field 3 (state): utime is field 14, stime 15.
    let utime: u64 = fields.get(11)?.parse().ok()?;
    let stime: u64 = fields.get(12)?.parse().ok()?;
    Some(utime + stime)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cpu_ticks_are_read_past_the_command_name() {
        let stat = "4242 (dure (run) x) S 1 4242 4242 0 -1 4194560 1000 0 0 0 150 25 0 0 20 0 9 0 123 456 789";
        assert_eq!(ticks_of_stat(stat), Some(175));
        assert_eq!(ticks_of_stat("garbage"), None);
    }

    #[cfg(target_os = "linux")]
    #[test]
    fn this_process_is_found() {
        let me = std::process::id();
        let rss = rss_bytes(me).expect("VmRSS");
        assert!(rss > 100_000);
        assert!(pss_bytes(me).is_some_and(|pss| pss > 0 && pss <= rss));
        assert!(cpu_ticks(me).is_some());
        assert_eq!(parent(me), Some(std::os::unix::process::parent_id()));
    }
}
