//! The log's way out: every thread appends its formatted lines to a buffer of its own,
//! and one writer thread moves the buffers to the sink (stderr) in batches: at least
//! every [`FLUSH_INTERVAL`], sooner when a buffer fills or a warning arrives, and at
//! shutdown ([`LogGuard`]). Owns the buffers, the writer thread and the counts of lost
//! lines. Never blocks or fails the thread that logs: a full buffer drops the line and
//! counts it, a failing sink is counted and reported at most once a [`REPORT_INTERVAL`].

use std::cell::RefCell;
use std::io::Write;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex, OnceLock, Weak};
use std::thread::Thread;
use std::time::{Duration, Instant};

use prometheus::{IntCounter, IntCounterVec, Opts};
use tracing_subscriber::fmt::MakeWriter;

/// Longest a line waits in a buffer.
pub const FLUSH_INTERVAL: Duration = Duration::from_millis(250);
/// What one thread's buffer holds before lines are dropped: about 4,000 request lines,
/// or 40 ms of one worker at full speed while the sink does not move at all.
pub const THREAD_BUFFER_BYTES: usize = 1 << 20;
/// A buffer this full wakes the writer before its interval.
const WAKE_BYTES: usize = 64 << 10;
/// Dropped or lost lines are reported (as a warning in the log itself) at most this
/// often; the counts are always in the metric.
pub const REPORT_INTERVAL: Duration = Duration::from_secs(60);
/// How long [`LogGuard`] waits for the last lines to reach the sink.
const SHUTDOWN_WAIT: Duration = Duration::from_secs(5);

/// Lines that never reached the sink, by reason: `buffer_full` (the writer is behind
/// and the thread's buffer is full) and `write_failed` (the sink refused a write: a
/// closed pipe, a full disk). Exported as `marketgate_log_lines_dropped_total{reason}`.
#[derive(Clone)]
pub struct LogStats {
    family: IntCounterVec,
    buffer_full: IntCounter,
    write_failed: IntCounter,
}

impl LogStats {
    pub fn new() -> LogStats {
        let family = IntCounterVec::new(
            Opts::new(
                "marketgate_log_lines_dropped_total",
                "Log lines that never reached the sink: buffer_full (the writer fell behind; the request did not wait), write_failed (the sink refused the write)",
            ),
            &["reason"],
        )
        .expect("static metric definition");
        LogStats {
            buffer_full: family.with_label_values(&["buffer_full"]),
            write_failed: family.with_label_values(&["write_failed"]),
            family,
        }
    }

    /// The counts of the process's log ([`super::init`]), which `/metrics` exports.
    pub fn global() -> &'static LogStats {
        static STATS: OnceLock<LogStats> = OnceLock::new();
        STATS.get_or_init(LogStats::new)
    }

    /// The counter family, to register in a Prometheus registry.
    pub fn collector(&self) -> IntCounterVec {
        self.family.clone()
    }

    pub fn buffer_full(&self) -> u64 {
        self.buffer_full.get()
    }

    pub fn write_failed(&self) -> u64 {
        self.write_failed.get()
    }
}

impl Default for LogStats {
    fn default() -> Self {
        LogStats::new()
    }
}

/// A `MakeWriter` for the `fmt` subscriber whose writes only append to the calling
/// thread's buffer. Cheap to clone; the writer thread stops when the last clone and
/// guard are gone. Keep the [`LogGuard`] of [`NonBlocking::guard`] alive for as long as
/// lines must reach the sink.
#[derive(Clone)]
pub struct NonBlocking {
    shared: Arc<Shared>,
}

struct Shared {
    /// Tells this writer's buffers apart in a thread's list.
    id: u64,
    capacity: usize,
    /// Every thread's buffer; the writer takes them in turn.
    buffers: Mutex<Vec<Arc<Buffer>>>,
    /// For a thread without its own (logging while its thread-locals are torn down).
    fallback: Arc<Buffer>,
    writer: OnceLock<Thread>,
    /// Flush requests made, and the last one the writer completed.
    flush_asked: AtomicU64,
    flush_done: Mutex<u64>,
    flushed: Condvar,
    stats: LogStats,
}

#[derive(Default)]
struct Buffer(Mutex<Batch>);

#[derive(Default)]
struct Batch {
    bytes: Vec<u8>,
    lines: u64,
}

thread_local! {
    /// This thread's buffer of each writer it has logged to (one in a service).
    static MINE: RefCell<Vec<(u64, Arc<Buffer>)>> = const { RefCell::new(Vec::new()) };
}

impl NonBlocking {
    /// Starts the writer thread in front of `sink`, counting into `stats`.
    pub fn new(sink: impl Write + Send + 'static, stats: LogStats) -> NonBlocking {
        Self::with_capacity(sink, stats, THREAD_BUFFER_BYTES)
    }

    /// The same with `capacity` bytes per thread (tests use a small one).
    pub fn with_capacity(
        sink: impl Write + Send + 'static,
        stats: LogStats,
        capacity: usize,
    ) -> NonBlocking {
        static IDS: AtomicU64 = AtomicU64::new(0);
        let shared = Arc::new(Shared {
            id: IDS.fetch_add(1, Ordering::Relaxed),
            capacity,
            buffers: Mutex::new(Vec::new()),
            fallback: Arc::default(),
            writer: OnceLock::new(),
            flush_asked: AtomicU64::new(0),
            flush_done: Mutex::new(0),
            flushed: Condvar::new(),
            stats,
        });
        let weak = Arc::downgrade(&shared);
        let handle = std::thread::Builder::new()
            .name("marketgate-log".into())
            .spawn(move || write_loop(weak, Box::new(sink)))
            .expect("cannot start the log writer thread");
        let _ = shared.writer.set(handle.thread().clone());
        NonBlocking { shared }
    }

    /// Writes everything logged so far to the sink and waits for it, at most `wait`.
    /// Returns whether the sink took it in time.
    pub fn flush(&self, wait: Duration) -> bool {
        self.shared.flush(wait)
    }

    /// A guard that flushes when dropped (at the end of `serve`, after the last request).
    pub fn guard(&self) -> LogGuard {
        LogGuard {
            shared: self.shared.clone(),
        }
    }

    /// Appends one formatted line to this thread's buffer (what the subscriber's
    /// writes do); `urgent` wakes the writer at once.
    pub fn append_line(&self, line: &[u8], urgent: bool) {
        self.shared.append(line, urgent);
    }

    pub fn stats(&self) -> &LogStats {
        &self.shared.stats
    }
}

/// Flushes the log when dropped, waiting up to 5 s for a slow sink (never forever: a
/// sink that blocks does not keep the process from exiting).
#[must_use = "the log is flushed when the guard is dropped"]
pub struct LogGuard {
    shared: Arc<Shared>,
}

impl Drop for LogGuard {
    fn drop(&mut self) {
        self.shared.flush(SHUTDOWN_WAIT);
    }
}

impl Shared {
    fn wake(&self) {
        if let Some(t) = self.writer.get() {
            t.unpark();
        }
    }

    fn flush(&self, wait: Duration) -> bool {
        let ticket = self.flush_asked.fetch_add(1, Ordering::SeqCst) + 1;
        self.wake();
        let done = self.flush_done.lock().unwrap_or_else(|e| e.into_inner());
        let (done, _) = self
            .flushed
            .wait_timeout_while(done, wait, |d| *d < ticket)
            .unwrap_or_else(|e| e.into_inner());
        *done >= ticket
    }

    /// Appends one formatted line to this thread's buffer; never waits for the sink.
    fn append(&self, line: &[u8], urgent: bool) {
        let appended = MINE
            .try_with(|mine| {
                let Ok(mut mine) = mine.try_borrow_mut() else {
                    return self.append_to(&self.fallback, line, urgent);
                };
                if let Some((_, b)) = mine.iter().find(|(id, _)| *id == self.id) {
                    return self.append_to(b, line, urgent);
                }
                let b = Arc::<Buffer>::default();
                self.buffers
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .push(b.clone());
                let wake = self.append_to(&b, line, urgent);
                mine.push((self.id, b));
                wake
            })
            .unwrap_or_else(|_| self.append_to(&self.fallback, line, urgent));
        if appended {
            self.wake();
        }
    }

    /// Appends to `buffer`; returns whether to wake the writer.
    fn append_to(&self, buffer: &Buffer, line: &[u8], urgent: bool) -> bool {
        let mut b = buffer.0.lock().unwrap_or_else(|e| e.into_inner());
        let before = b.bytes.len();
        if before + line.len() > self.capacity {
            drop(b);
            self.stats.buffer_full.inc();
            return false;
        }
        b.bytes.extend_from_slice(line);
        b.lines += 1;
        urgent || (before < WAKE_BYTES && b.bytes.len() >= WAKE_BYTES)
    }

    /// Swaps every non-empty buffer for an empty one from `spare`, into `taken`, and
    /// forgets the buffers of threads that have ended once they are empty.
    fn take_all(&self, taken: &mut Vec<Batch>, spare: &mut Vec<Vec<u8>>) {
        let mut buffers = self.buffers.lock().unwrap_or_else(|e| e.into_inner());
        for b in buffers.iter().chain(std::iter::once(&self.fallback)) {
            let mut batch = b.0.lock().unwrap_or_else(|e| e.into_inner());
            if batch.lines > 0 {
                taken.push(std::mem::replace(
                    &mut *batch,
                    Batch {
                        bytes: spare.pop().unwrap_or_default(),
                        lines: 0,
                    },
                ));
            }
        }
        // Held only here: the thread is gone, and its buffer was just emptied.
        buffers.retain(|b| Arc::strong_count(b) > 1);
    }
}

/// The writer thread: takes the buffers, writes them, reports losses.
fn write_loop(shared: Weak<Shared>, mut sink: Box<dyn Write + Send>) {
    let mut spare: Vec<Vec<u8>> = Vec::new();
    let mut taken: Vec<Batch> = Vec::new();
    let mut reporter = Reporter::default();
    loop {
        std::thread::park_timeout(FLUSH_INTERVAL);
        let Some(shared) = shared.upgrade() else {
            return;
        };
        let asked = shared.flush_asked.load(Ordering::SeqCst);
        shared.take_all(&mut taken, &mut spare);
        let mut error = None;
        for mut batch in taken.drain(..) {
            if !batch.bytes.is_empty() {
                if let Err(e) = sink.write_all(&batch.bytes) {
                    shared.stats.write_failed.inc_by(batch.lines);
                    error = Some(e);
                }
            }
            batch.bytes.clear();
            if spare.len() < 4 {
                spare.push(batch.bytes);
            }
        }
        if let Err(e) = sink.flush() {
            error = Some(e);
        }
        let now = Instant::now();
        if let Some(e) = &error {
            reporter.error = Some(e.to_string());
        }
        if let Some(r) = reporter.due(now, shared.stats.buffer_full(), shared.stats.write_failed())
        {
            // Through the subscriber like any line, so it has the configured format and
            // reaches the sink once it works again; never more than once a minute.
            tracing::warn!(
                target: "marketgate::log",
                dropped_buffer_full = r.buffer_full,
                dropped_write_failed = r.write_failed,
                error = r.error.as_deref(),
                "log lines were dropped (marketgate_log_lines_dropped_total); requests did not wait"
            );
        }
        let mut done = shared.flush_done.lock().unwrap_or_else(|e| e.into_inner());
        *done = (*done).max(asked);
        shared.flushed.notify_all();
    }
}

/// When to report lost lines: at the first loss, then at most once a
/// [`REPORT_INTERVAL`], with the counts since the last report.
#[derive(Default)]
struct Reporter {
    last: Option<Instant>,
    buffer_full: u64,
    write_failed: u64,
    /// The last error of the sink since the last report.
    error: Option<String>,
}

#[derive(Debug, PartialEq)]
struct Report {
    buffer_full: u64,
    write_failed: u64,
    error: Option<String>,
}

impl Reporter {
    fn due(&mut self, now: Instant, buffer_full: u64, write_failed: u64) -> Option<Report> {
        if buffer_full == self.buffer_full && write_failed == self.write_failed {
            return None;
        }
        if self
            .last
            .is_some_and(|t| now.duration_since(t) < REPORT_INTERVAL)
        {
            return None;
        }
        let r = Report {
            buffer_full: buffer_full - self.buffer_full,
            write_failed: write_failed - self.write_failed,
            error: self.error.take(),
        };
        self.last = Some(now);
        self.buffer_full = buffer_full;
        self.write_failed = write_failed;
        Some(r)
    }
}

/// What the `fmt` subscriber writes one event into.
pub struct LineWriter<'a> {
    shared: &'a Shared,
    urgent: bool,
}

impl Write for LineWriter<'_> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        // The subscriber writes each event in one call; a line never fails.
        self.shared.append(buf, self.urgent);
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl<'a> MakeWriter<'a> for NonBlocking {
    type Writer = LineWriter<'a>;

    fn make_writer(&'a self) -> LineWriter<'a> {
        LineWriter {
            shared: &self.shared,
            urgent: false,
        }
    }

    /// Warnings and errors wake the writer at once; the rest waits for a full buffer
    /// or the interval.
    fn make_writer_for(&'a self, meta: &tracing::Metadata<'_>) -> LineWriter<'a> {
        LineWriter {
            shared: &self.shared,
            urgent: *meta.level() <= tracing::Level::WARN,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::mpsc;

    use crate::telemetry::testing::Memory;

    /// A sink whose first write never returns (until the test ends); it says when the
    /// write has begun.
    struct Stuck {
        entered: mpsc::Sender<()>,
        release: mpsc::Receiver<()>,
    }

    impl Write for Stuck {
        fn write(&mut self, _: &[u8]) -> std::io::Result<usize> {
            let _ = self.entered.send(());
            let _ = self.release.recv();
            Err(std::io::Error::other("released"))
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    /// A sink that always fails, as a full disk does.
    struct Full;

    impl Write for Full {
        fn write(&mut self, _: &[u8]) -> std::io::Result<usize> {
            Err(std::io::Error::from_raw_os_error(28)) // ENOSPC
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    fn line(w: &NonBlocking, text: &str) {
        w.make_writer().write_all(text.as_bytes()).unwrap();
    }

    #[test]
    fn lines_of_every_thread_reach_the_sink_in_order_per_thread() {
        let sink = Memory::default();
        let w = NonBlocking::new(sink.clone(), LogStats::new());
        let threads: Vec<_> = (0..4)
            .map(|t| {
                let w = w.clone();
                std::thread::spawn(move || {
                    for i in 0..1000 {
                        line(&w, &format!("t{t} {i}\n"));
                    }
                })
            })
            .collect();
        for t in threads {
            t.join().unwrap();
        }
        assert!(w.flush(Duration::from_secs(10)));
        let text = String::from_utf8(sink.0.lock().unwrap().clone()).unwrap();
        for t in 0..4 {
            let mine: Vec<usize> = text
                .lines()
                .filter_map(|l| l.strip_prefix(&format!("t{t} ")))
                .map(|n| n.parse().unwrap())
                .collect();
            assert_eq!(mine, (0..1000).collect::<Vec<_>>(), "thread {t}");
        }
        assert_eq!(w.stats().buffer_full() + w.stats().write_failed(), 0);
    }

    #[test]
    fn lines_reach_the_sink_within_the_interval_without_a_flush() {
        let sink = Memory::default();
        let w = NonBlocking::new(sink.clone(), LogStats::new());
        line(&w, "quiet\n");
        let start = Instant::now();
        while sink.0.lock().unwrap().is_empty() {
            // Four intervals would do; a loaded machine gets more.
            assert!(start.elapsed() < 20 * FLUSH_INTERVAL, "not written");
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    #[test]
    fn the_guard_flushes_what_is_still_buffered() {
        let sink = Memory::default();
        let w = NonBlocking::new(sink.clone(), LogStats::new());
        let guard = w.guard();
        for i in 0..100 {
            line(&w, &format!("{i}\n"));
        }
        drop(w);
        drop(guard);
        assert_eq!(
            sink.0
                .lock()
                .unwrap()
                .iter()
                .filter(|b| **b == b'\n')
                .count(),
            100
        );
    }

    #[test]
    fn a_sink_that_never_returns_drops_and_counts_lines_and_never_blocks() {
        let (_release, release) = mpsc::channel();
        let (entered, writing) = mpsc::channel();
        let stats = LogStats::new();
        let w = NonBlocking::with_capacity(Stuck { entered, release }, stats.clone(), 4096);
        line(&w, "first\n");
        // The writer takes the first line and is stuck in its write from then on.
        assert!(!w.flush(Duration::from_millis(100)));
        writing
            .recv_timeout(Duration::from_secs(30))
            .expect("the writer never wrote");
        let start = Instant::now();
        let len = "line \n".len() + 40;
        for i in 0..10_000 {
            line(&w, &format!("line {i:>40}\n"));
        }
        assert!(
            start.elapsed() < Duration::from_secs(2),
            "logging waited for the sink: {:?}",
            start.elapsed()
        );
        // What fits in 4096 bytes waits; every other line is dropped and counted.
        let fits = 4096 / len as u64;
        assert_eq!(stats.buffer_full(), 10_000 - fits);
        assert_eq!(stats.write_failed(), 0);
    }

    #[test]
    fn a_failing_sink_counts_the_lines_it_lost() {
        let stats = LogStats::new();
        let w = NonBlocking::new(Full, stats.clone());
        for i in 0..50 {
            line(&w, &format!("{i}\n"));
        }
        assert!(w.flush(Duration::from_secs(5)));
        assert_eq!(stats.write_failed(), 50);
        assert_eq!(stats.buffer_full(), 0);
    }

    #[test]
    fn losses_are_reported_at_once_then_at_most_once_a_minute() {
        let mut r = Reporter::default();
        let t0 = Instant::now();
        assert_eq!(r.due(t0, 0, 0), None);
        r.error = Some("No space left on device".into());
        assert_eq!(
            r.due(t0, 0, 3),
            Some(Report {
                buffer_full: 0,
                write_failed: 3,
                error: Some("No space left on device".into())
            })
        );
        for s in 1..60 {
            assert_eq!(r.due(t0 + Duration::from_secs(s), 5, 3 + s), None, "{s}");
        }
        assert_eq!(
            r.due(t0 + REPORT_INTERVAL, 5, 70),
            Some(Report {
                buffer_full: 5,
                write_failed: 67,
                error: None
            })
        );
        // Nothing new, nothing said.
        assert_eq!(r.due(t0 + 3 * REPORT_INTERVAL, 5, 70), None);
    }
}
