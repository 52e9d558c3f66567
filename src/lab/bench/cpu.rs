//! CPU time from `/proc`: ferry's (its whole process, a child of the bench) and the peers' (the
//! threads of the runtime they run on inside the bench process, see [`super::peers`]).
//!
//! Both come from the same place: the `utime` and `stime` fields of a `stat` file, in clock
//! ticks. A process's file counts all its threads, including those that have exited; a thread's
//! file (`/proc/self/task/<tid>/stat`) counts that thread alone.

use std::collections::HashMap;
use std::time::Duration;

/// User plus system CPU time of process `pid` so far; `None` once it is gone.
pub fn process_cpu(pid: u32) -> Option<Duration> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let (_, ticks) = parse_stat(&text)?;
    Some(ticks_to_duration(ticks))
}

/// CPU times of some of this process's threads at one moment, by thread id.
#[derive(Debug, Clone, Default)]
pub struct ThreadTimes {
    ticks: HashMap<String, u64>,
}

impl ThreadTimes {
    /// The threads named `name` (as the kernel shows it: at most 15 bytes); `None` when
    /// `/proc/self/task` cannot be read.
    pub fn of_threads_named(name: &str) -> Option<ThreadTimes> {
        let mut ticks = HashMap::new();
        for task in std::fs::read_dir("/proc/self/task").ok()? {
            let Ok(task) = task else { continue };
            // A thread may exit between the listing and the read.
            let Ok(text) = std::fs::read_to_string(task.path().join("stat")) else {
                continue;
            };
            if let Some((comm, thread_ticks)) = parse_stat(&text) {
                if comm == name {
                    ticks.insert(
                        task.file_name().to_string_lossy().into_owned(),
                        thread_ticks,
                    );
                }
            }
        }
        Some(ThreadTimes { ticks })
    }

    /// What the threads spent since `earlier`, thread by thread: a thread that started since
    /// counts whole, one that exited since takes its last interval with it (the peers' worker
    /// threads live as long as their runtime, so that never happens to them).
    pub fn since(&self, earlier: &ThreadTimes) -> Duration {
        let ticks = self
            .ticks
            .iter()
            .map(|(tid, now)| now.saturating_sub(earlier.ticks.get(tid).copied().unwrap_or(0)))
            .sum();
        ticks_to_duration(ticks)
    }
}

/// CPU time per message in microseconds; `None` without messages.
pub fn us_per_message(cpu: Duration, messages: u64) -> Option<f64> {
    // Rounded to hundredths: the clock tick is 10 ms, so more digits would be noise (and
    // `5.700000000000001` in the JSON).
    (messages > 0).then(|| (cpu.as_secs_f64() * 1e8 / messages as f64).round() / 100.0)
}

/// The command name and `utime + stime` (clock ticks) of a `stat` line:
/// `pid (comm) state ppid ... utime stime ...`. The name may hold spaces and parentheses, so the
/// fields are counted from the last `)`.
fn parse_stat(text: &str) -> Option<(&str, u64)> {
    let open = text.find('(')?;
    let close = text.rfind(')')?;
    let comm = text.get(open + 1..close)?;
    // After the name: state (field 3), ..., utime (field 14), stime (field 15).
    let mut fields = text.get(close + 1..)?.split_whitespace().skip(11);
    let utime: u64 = fields.next()?.parse().ok()?;
    let stime: u64 = fields.next()?.parse().ok()?;
    Some((comm, utime + stime))
}

fn ticks_to_duration(ticks: u64) -> Duration {
    Duration::from_secs_f64(ticks as f64 / ticks_per_second() as f64)
}

/// The kernel's clock ticks per second (`USER_HZ`, 100 on Linux almost everywhere).
fn ticks_per_second() -> u64 {
    // SAFETY: sysconf only reads a system constant.
    let ticks = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    u64::try_from(ticks).ok().filter(|&t| t > 0).unwrap_or(100)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Instant;

    #[test]
    fn stat_lines_are_read_past_names_with_spaces_and_parentheses() {
        let line = "4242 (a (b) c) S 1 4242 4242 0 -1 4194560 100 0 0 0 37 5 0 0 20 0 9 0 1 2 3\n";
        assert_eq!(parse_stat(line), Some(("a (b) c", 42)));
        assert_eq!(parse_stat("4242 (x) S 1 2"), None, "too few fields");
        assert_eq!(parse_stat("garbage"), None);
    }

    #[test]
    fn thread_times_count_new_threads_whole_and_never_go_back() {
        let earlier = ThreadTimes {
            ticks: [("1".to_string(), 10), ("2".to_string(), 500)].into(),
        };
        let now = ThreadTimes {
            ticks: [("1".to_string(), 35), ("3".to_string(), 5)].into(),
        };
        assert_eq!(now.since(&earlier), ticks_to_duration(30));
    }

    #[test]
    fn per_message() {
        assert_eq!(us_per_message(Duration::from_millis(30), 3000), Some(10.0));
        assert_eq!(us_per_message(Duration::from_millis(30), 0), None);
        assert_eq!(
            us_per_message(Duration::from_millis(570), 100_000),
            Some(5.7)
        );
    }

    /// Spins until `read` has grown past its first value (a clock tick at least), failing after
    /// a deadline.
    fn burn_until_it_moves(read: impl Fn() -> Option<Duration>) -> (Duration, Duration) {
        let before = read().expect("readable");
        let deadline = Instant::now() + Duration::from_secs(20);
        let mut sink = 0u64;
        loop {
            for i in 0..100_000u64 {
                sink = std::hint::black_box(sink.wrapping_mul(31).wrapping_add(i));
            }
            let now = read().expect("readable");
            if now > before {
                return (before, now);
            }
            assert!(Instant::now() < deadline, "CPU time never moved");
        }
    }

    #[test]
    fn own_process_cpu_grows_with_work() {
        let (before, after) = burn_until_it_moves(|| process_cpu(std::process::id()));
        assert!(after > before);
        assert_eq!(process_cpu(u32::MAX), None, "no such process");
    }

    #[test]
    fn named_threads_are_counted_and_others_are_not() {
        let name = "cpu-test-burn";
        let start = ThreadTimes::of_threads_named(name).expect("readable");
        let (before, after) = std::thread::Builder::new()
            .name(name.into())
            .spawn(move || {
                burn_until_it_moves(|| {
                    let times = ThreadTimes::of_threads_named(name)?;
                    assert_eq!(times.ticks.len(), 1, "just this thread");
                    Some(times.since(&start))
                })
            })
            .expect("thread")
            .join()
            .expect("burner");
        assert!(after > before);
        let none = ThreadTimes::of_threads_named("no-such-thread").expect("readable");
        assert!(none.ticks.is_empty());
        assert_eq!(none.since(&ThreadTimes::default()), Duration::ZERO);
    }
}
