//! The pool that reads settled files, so one slow file never holds up the others:
//! `workers` threads for ordinary files, and one slow lane for large files and for files
//! that overran the ordinary lanes' share of CPU. Every read is bounded by bytes
//! ([`crate::scan::ScanLimits`]) and by CPU time: a watchdog reads each busy worker
//! thread's CPU clock (`/proc/self/task/<tid>/stat`) and raises its cancel flag when the
//! file has used its budget. Queues are bounded; a full queue hands the job back.

use crate::pipeline::{read_change, FileRead, Ready};
use holdfast_shared::classify::limits::Cancel;
use holdfast_shared::edm::Matcher;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{self, Receiver, SyncSender, TrySendError};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tracing::{info_span, warn};

/// Jobs waiting per lane, at most.
const QUEUE: usize = 1024;
/// How often the watchdog looks at the busy workers.
const WATCH_EVERY: Duration = Duration::from_millis(50);
/// The kernel's unit for thread CPU times in `/proc` (USER_HZ, 100 on every Linux).
const TICKS_PER_SEC: u64 = 100;

/// How files are read: how many at once, which go to the slow lane, and their bounds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Reading {
    /// Workers for ordinary files (the slow lane is one more).
    pub workers: usize,
    /// Files this large or larger are read in the slow lane.
    pub large_file: u64,
    /// Bytes hashed and classified per file, at most.
    pub max_bytes: u64,
    /// CPU time per file, at most.
    pub max_cpu: Duration,
    /// CPU time a file may use in an ordinary lane before it moves to the slow lane.
    pub fast_cpu: Duration,
    /// Archives inside archives read up to this depth.
    pub archive_depth: u32,
}

impl Default for Reading {
    fn default() -> Self {
        Reading {
            workers: 2,
            large_file: 32 << 20,
            max_bytes: crate::scan::DEFAULT_MAX_BYTES,
            max_cpu: Duration::from_secs(30),
            fast_cpu: Duration::from_millis(500),
            archive_depth: crate::scan::ScanLimits::default().archive_depth,
        }
    }
}

/// A change to read, with the customer set to match against (and, for a file deleted
/// before it settled, the descriptor held since it appeared).
pub struct Job {
    pub ready: Ready,
    pub edm: Option<Arc<Matcher>>,
    pub file: Option<std::fs::File>,
}

/// A change read.
pub struct Done {
    pub ready: Ready,
    pub read: FileRead,
}

/// Which lane a job goes to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Lane {
    Fast,
    Slow,
}

/// A worker as the watchdog sees it.
struct Slot {
    flag: &'static AtomicBool,
    busy: Mutex<Option<Busy>>,
}

#[derive(Clone, Copy)]
struct Busy {
    tid: u32,
    start_ticks: u64,
    budget_ticks: u64,
}

impl Slot {
    fn new() -> Arc<Slot> {
        // One flag per worker for the life of the process: a few bytes, leaked on purpose
        // so the pure classifiers can hold it without a lifetime.
        Arc::new(Slot {
            flag: Box::leak(Box::new(AtomicBool::new(false))),
            busy: Mutex::new(None),
        })
    }

    fn begin(&self, tid: Option<u32>, budget: Duration) {
        self.flag.store(false, Ordering::Relaxed);
        let start = tid.and_then(thread_ticks);
        if let (Some(tid), Some(start_ticks)) = (tid, start) {
            let budget_ticks = (budget.as_millis() as u64 * TICKS_PER_SEC / 1000).max(1);
            if let Ok(mut b) = self.busy.lock() {
                *b = Some(Busy {
                    tid,
                    start_ticks,
                    budget_ticks,
                });
            }
        }
    }

    fn end(&self) -> bool {
        if let Ok(mut b) = self.busy.lock() {
            *b = None;
        }
        self.flag.load(Ordering::Relaxed)
    }

    /// The watchdog's look: raises the flag once the budget is spent.
    fn check(&self) {
        let busy = self.busy.lock().ok().and_then(|b| *b);
        if let Some(b) = busy {
            if thread_ticks(b.tid)
                .is_some_and(|t| t.saturating_sub(b.start_ticks) >= b.budget_ticks)
            {
                self.flag.store(true, Ordering::Relaxed);
            }
        }
    }
}

/// This thread's id, from `/proc/thread-self` (`<pid>/task/<tid>`).
fn own_tid() -> Option<u32> {
    let link = std::fs::read_link("/proc/thread-self").ok()?;
    link.file_name()?.to_str()?.parse().ok()
}

/// CPU time (user + system, in ticks) a thread of this process has used.
fn thread_ticks(tid: u32) -> Option<u64> {
    let stat = std::fs::read_to_string(format!("/proc/self/task/{tid}/stat")).ok()?;
    // The name is in parentheses and may hold anything: the fields follow the last ')'.
    let rest = &stat[stat.rfind(')')? + 1..];
    let mut fields = rest.split_whitespace();
    // After the name: state (3), ppid … cmajflt (4-12), utime (14), stime (15).
    let utime: u64 = fields.nth(11)?.parse().ok()?;
    let stime: u64 = fields.next()?.parse().ok()?;
    Some(utime + stime)
}

/// The pool. Dropping it stops the workers after their current file (whose reading is
/// cancelled at once).
pub struct Pool {
    fast: Option<SyncSender<Job>>,
    slow: Option<SyncSender<Job>>,
    done: Receiver<Done>,
    slots: Vec<Arc<Slot>>,
    closing: Arc<AtomicBool>,
    large_file: u64,
    /// Jobs handed out and not yet collected.
    pub in_flight: usize,
}

impl Pool {
    /// Starts `reading.workers` ordinary workers, the slow lane and the watchdog.
    pub fn start(reading: Reading) -> std::io::Result<Pool> {
        let (fast_tx, fast_rx) = mpsc::sync_channel::<Job>(QUEUE);
        let (slow_tx, slow_rx) = mpsc::sync_channel::<Job>(QUEUE);
        let (done_tx, done_rx) = mpsc::channel::<Done>();
        let fast_rx = Arc::new(Mutex::new(fast_rx));
        let slow_rx = Arc::new(Mutex::new(slow_rx));
        let closing = Arc::new(AtomicBool::new(false));
        let mut slots = Vec::new();
        let lanes = (0..reading.workers.max(1))
            .map(|_| Lane::Fast)
            .chain([Lane::Slow]);
        for (i, lane) in lanes.enumerate() {
            let slot = Slot::new();
            slots.push(slot.clone());
            let rx = match lane {
                Lane::Fast => fast_rx.clone(),
                Lane::Slow => slow_rx.clone(),
            };
            let done = done_tx.clone();
            let to_slow = slow_tx.clone();
            let closing = closing.clone();
            let name = match lane {
                Lane::Fast => format!("holdfast-read-{i}"),
                Lane::Slow => "holdfast-read-slow".to_string(),
            };
            std::thread::Builder::new().name(name).spawn(move || {
                let tid = own_tid();
                loop {
                    let job = match rx.lock() {
                        Ok(rx) => rx.recv(),
                        Err(_) => return,
                    };
                    let Ok(mut job) = job else { return };
                    if closing.load(Ordering::Relaxed) {
                        return;
                    }
                    let budget = match lane {
                        Lane::Fast => reading.fast_cpu.min(reading.max_cpu),
                        Lane::Slow => reading.max_cpu,
                    };
                    let _span = info_span!("read", path = %job.ready.path.display(), lane = ?lane).entered();
                    slot.begin(tid, budget);
                    // A held descriptor can be read twice (a job moved to the slow lane
                    // starts again): each read gets its own, rewound.
                    let held = job.file.as_ref().and_then(|f| {
                        let mut again = f.try_clone().ok()?;
                        std::io::Seek::rewind(&mut again).ok()?;
                        Some(again)
                    });
                    let read = read_change(
                        &job.ready,
                        job.edm.clone(),
                        crate::scan::ScanLimits {
                            max_bytes: reading.max_bytes,
                            cancel: Some(Cancel(slot.flag)),
                            archive_depth: reading.archive_depth,
                            // The fast lane's budget is one thread's; the slow lane's
                            // bounds each of a large table's two parts.
                            parts: match lane {
                                Lane::Fast => crate::scan::Parts::One,
                                Lane::Slow => crate::scan::Parts::Two,
                            },
                        },
                        held,
                    );
                    if lane == Lane::Slow {
                        job.file = None;
                    }
                    let overran = slot.end();
                    // Slow in an ordinary lane: read again, from the start, in the slow lane
                    // with the whole budget (when it has room; else the verdict stands).
                    if lane == Lane::Fast && overran && !closing.load(Ordering::Relaxed) {
                        match to_slow.try_send(job) {
                            Ok(()) => continue,
                            Err(TrySendError::Full(job) | TrySendError::Disconnected(job)) => {
                                warn!(path = %job.ready.path.display(), "the slow lane is full: the verdict of the first CPU share stands");
                                if done.send(Done { ready: job.ready, read }).is_err() {
                                    return;
                                }
                                continue;
                            }
                        }
                    }
                    if done.send(Done { ready: job.ready, read }).is_err() {
                        return;
                    }
                }
            })?;
        }
        {
            let slots = slots.clone();
            let closing = closing.clone();
            std::thread::Builder::new()
                .name("holdfast-read-watchdog".into())
                .spawn(move || {
                    while !closing.load(Ordering::Relaxed) {
                        std::thread::sleep(WATCH_EVERY);
                        for s in &slots {
                            s.check();
                        }
                    }
                })?;
        }
        Ok(Pool {
            fast: Some(fast_tx),
            slow: Some(slow_tx),
            done: done_rx,
            slots,
            closing,
            large_file: reading.large_file,
            in_flight: 0,
        })
    }

    /// Hands a change to a lane (large files to the slow one). A full lane hands it back.
    pub fn submit(&mut self, job: Job) -> Result<(), Job> {
        let large =
            crate::safe_fs::stat_path(&job.ready.path).is_ok_and(|st| st.len >= self.large_file);
        let lane = if large { &self.slow } else { &self.fast };
        let Some(lane) = lane else { return Err(job) };
        match lane.try_send(job) {
            Ok(()) => {
                self.in_flight += 1;
                Ok(())
            }
            Err(TrySendError::Full(job) | TrySendError::Disconnected(job)) => Err(job),
        }
    }

    /// The changes read since the last call.
    pub fn take_done(&mut self) -> Vec<Done> {
        let done: Vec<Done> = self.done.try_iter().collect();
        self.in_flight = self.in_flight.saturating_sub(done.len());
        done
    }

    /// Waits up to `within` for the next change read (tests and shutdown).
    pub fn wait_done(&mut self, within: Duration) -> Option<Done> {
        let d = self.done.recv_timeout(within).ok()?;
        self.in_flight = self.in_flight.saturating_sub(1);
        Some(d)
    }
}

impl Drop for Pool {
    fn drop(&mut self) {
        self.closing.store(true, Ordering::Relaxed);
        self.fast = None;
        self.slow = None;
        for s in &self.slots {
            s.flag.store(true, Ordering::Relaxed);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use holdfast_shared::event::Action;
    use std::path::PathBuf;
    use std::time::Instant;

    fn ready(p: PathBuf) -> Ready {
        Ready::new(Action::Created, p)
    }

    /// The thread's CPU clock is read in ticks of 10 ms: spinning until it says 200 ms takes
    /// at least 200 ms of wall time (one thread cannot use CPU faster than time passes), and
    /// not much more on an idle machine. Load from other processes only lengthens the wall
    /// time, so the lower bound is what is checked.
    #[test]
    fn this_threads_cpu_clock_is_read() {
        let tid = own_tid().unwrap();
        let before = thread_ticks(tid).unwrap();
        let t = Instant::now();
        let mut x = 0u64;
        while thread_ticks(tid).unwrap() - before < 20 && t.elapsed() < Duration::from_secs(30) {
            for _ in 0..10_000 {
                x = x.wrapping_mul(6364136223846793005).wrapping_add(1);
            }
        }
        std::hint::black_box(x);
        let wall = t.elapsed();
        assert!(
            wall >= Duration::from_millis(180) && wall < Duration::from_secs(30),
            "20 ticks of CPU in {wall:?} of wall time"
        );
    }

    /// A large file goes to the slow lane and a small one written after it is read first;
    /// the large one stops at the byte limit and says so.
    #[test]
    fn a_large_file_does_not_hold_up_a_small_one() {
        let (dir, big) = holdfast_io::testing::scratch("disk.img");
        let f = std::fs::File::create(&big).unwrap();
        f.set_len(8 << 30).unwrap();
        let small = dir.path().join("export.csv");
        std::fs::write(&small, "name,email\na,a@b.c\n").unwrap();
        let mut pool = Pool::start(Reading {
            large_file: 1 << 20,
            max_bytes: 1 << 30,
            ..Reading::default()
        })
        .unwrap();
        for p in [&big, &small] {
            assert!(pool
                .submit(Job {
                    ready: ready(p.clone()),
                    edm: None,
                    file: None,
                })
                .is_ok());
        }
        assert_eq!(pool.in_flight, 2);
        let first = pool.wait_done(Duration::from_secs(60)).unwrap();
        assert_eq!(first.ready.path, small, "the small file first");
        let second = pool.wait_done(Duration::from_secs(120)).unwrap();
        let crate::pipeline::ReadOutcome::Scanned(r) = second.read.outcome else {
            panic!("not scanned")
        };
        assert_eq!((r.size, r.complete), (8 << 30, false));
        assert_eq!(
            r.summary.findings.get(crate::scan::BYTE_LIMIT),
            Some(&1),
            "{:?}",
            r.summary
        );
        assert_eq!(pool.in_flight, 0);
    }

    /// A file that uses more CPU than its budget is stopped by the watchdog with a
    /// `cpu_limit` verdict (a sparse file read with a tiny budget stands in for a slow one).
    #[test]
    fn the_watchdog_stops_a_file_at_its_cpu_budget() {
        let (_dir, big) = holdfast_io::testing::scratch("slow.bin");
        std::fs::File::create(&big)
            .unwrap()
            .set_len(64 << 30)
            .unwrap();
        let mut pool = Pool::start(Reading {
            workers: 1,
            large_file: u64::MAX,
            max_bytes: u64::MAX,
            max_cpu: Duration::from_millis(300),
            fast_cpu: Duration::from_millis(100),
            ..Reading::default()
        })
        .unwrap();
        let t = Instant::now();
        assert!(pool
            .submit(Job {
                ready: ready(big),
                edm: None,
                file: None,
            })
            .is_ok());
        let done = pool.wait_done(Duration::from_secs(60)).unwrap();
        let crate::pipeline::ReadOutcome::Scanned(r) = done.read.outcome else {
            panic!("not scanned")
        };
        assert!(!r.complete);
        assert_eq!(
            r.summary
                .findings
                .get(holdfast_shared::classify::limits::CPU_LIMIT),
            Some(&1)
        );
        // Moved to the slow lane after its first share, stopped at the whole budget: well
        // short of the minutes reading 64 GiB would take.
        assert!(t.elapsed() < Duration::from_secs(20), "{:?}", t.elapsed());
        assert!(
            r.reasons.iter().any(|x| x.contains("the CPU limit")),
            "{:?}",
            r.reasons
        );
    }
}
