//! Logging setup: `tracing` to stderr through a non-blocking writer
//! ([`writer::NonBlocking`]: per-thread buffers, one writer thread), text or JSON, with
//! a filter. Owns the subscriber; never installs a bridge for the `log` crate (records
//! of `log`-based dependencies are dropped unread). actix's own `tracing` events are
//! kept: the canary test runs them at `trace` and checks that none names a client
//! address. A thread that logs never waits for the sink and never sees its errors. Owns
//! the panic hook too: a panic is one log line that never carries request data.

mod access;
pub mod otlp;
pub mod writer;

use tracing::Dispatch;
use tracing_subscriber::fmt::MakeWriter;
use tracing_subscriber::EnvFilter;

pub use access::{RequestLine, RequestScope};
pub use writer::{LogGuard, LogStats, NonBlocking};

use crate::config::LogFormat;

#[derive(Debug, thiserror::Error)]
pub enum TelemetryError {
    #[error("`{filter}` is not a log filter: {source}")]
    Filter {
        filter: String,
        source: tracing_subscriber::filter::ParseError,
    },
    #[error("a global subscriber is already installed")]
    AlreadySet,
}

/// Installs the global subscriber, writing to stderr through the non-blocking writer,
/// and the panic hook,
/// and counting lost lines in [`LogStats::global`]. Keep the guard until the end of
/// the process: dropping it writes out what is still buffered.
pub fn init(format: LogFormat, filter: &str) -> Result<LogGuard, TelemetryError> {
    let writer = NonBlocking::new(std::io::stderr(), LogStats::global().clone());
    let guard = writer.guard();
    // `set_global_default`, not `try_init`: the latter would also bridge `log` records.
    tracing::dispatcher::set_global_default(dispatch(format, filter, writer)?)
        .map_err(|_| TelemetryError::AlreadySet)?;
    install_panic_hook();
    Ok(guard)
}

/// Makes a panic one `error` event (target `marketgate::panic`: `location`, `thread` and
/// `panic_message`) in the log's format, instead of the standard hook's lines on stderr. The
/// message is kept only when it is a literal (`panic!("...")`, `expect("...")`): a
/// formatted one (`unwrap()` on an error, `panic!("{x}")`) may quote the request, so it
/// is withheld. On a thread without a subscriber (a test, a host application that logs
/// otherwise) the previous hook runs instead. Idempotent.
pub fn install_panic_hook() {
    static INSTALLED: std::sync::Once = std::sync::Once::new();
    INSTALLED.call_once(|| {
        let previous = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            let logged =
                tracing::dispatcher::get_default(|d| !d.is::<tracing::subscriber::NoSubscriber>());
            if !logged {
                return previous(info);
            }
            let panic_message = info
                .payload()
                .downcast_ref::<&'static str>()
                .copied()
                .unwrap_or("(formatted message withheld: it may quote the request)");
            let thread = std::thread::current();
            tracing::error!(
                target: "marketgate::panic",
                location = info.location().map(tracing::field::display),
                thread = thread.name().unwrap_or("unnamed"),
                panic_message,
                "panic"
            );
        }));
    });
}

/// The subscriber [`init`] installs, writing to `writer` instead, so that anything
/// capturing logs (the privacy test, through a [`NonBlocking`] of its own) sees exactly
/// what `serve` writes.
pub fn dispatch<W>(format: LogFormat, filter: &str, writer: W) -> Result<Dispatch, TelemetryError>
where
    W: for<'w> MakeWriter<'w> + Send + Sync + 'static,
{
    dispatch_with(format, filter, writer, true)
}

/// With (`fast`) or without the request log's own formatter ([`access`]), which writes
/// the same bytes as the subscriber's for its lines (the tests compare the two).
fn dispatch_with<W>(
    format: LogFormat,
    filter: &str,
    writer: W,
    fast: bool,
) -> Result<Dispatch, TelemetryError>
where
    W: for<'w> MakeWriter<'w> + Send + Sync + 'static,
{
    // Writing to our non-blocking writer, the request log's lines skip `tracing`
    // ([`AccessDirect`]); another writer gets them as events.
    let direct = (&writer as &dyn std::any::Any)
        .downcast_ref::<NonBlocking>()
        .filter(|_| fast)
        .map(|w| AccessDirect {
            writer: w.clone(),
            json: format == LogFormat::Json,
        });
    let env = EnvFilter::try_new(filter).map_err(|source| TelemetryError::Filter {
        filter: filter.to_string(),
        source,
    })?;
    // A line that cannot be written is the writer's to count; the subscriber's own
    // fallback (`eprintln!`) would write to the failing stderr, and panic on a closed pipe.
    let builder = tracing_subscriber::fmt()
        .with_env_filter(env)
        .with_writer(writer)
        .log_internal_errors(false);
    fn dispatch<S>(s: S, direct: Option<AccessDirect>) -> Dispatch
    where
        S: tracing::Subscriber + Send + Sync + 'static,
    {
        match direct {
            Some(d) => Dispatch::new(tracing_subscriber::layer::SubscriberExt::with(s, d)),
            None => Dispatch::new(s),
        }
    }
    Ok(match format {
        LogFormat::Json => {
            let json = builder
                .json()
                .flatten_event(true)
                .with_current_span(true)
                .with_span_list(false);
            if fast {
                dispatch(
                    json.map_event_format(access::AccessFast::json)
                        .map_fmt_fields(access::FastFields::json)
                        .finish(),
                    direct,
                )
            } else {
                Dispatch::new(json.finish())
            }
        }
        LogFormat::Text => {
            let text = builder.with_ansi(false);
            if fast {
                dispatch(
                    text.map_event_format(access::AccessFast::text)
                        .map_fmt_fields(access::FastFields::text)
                        .finish(),
                    direct,
                )
            } else {
                Dispatch::new(text.finish())
            }
        }
    })
}

/// The request log's own way to the writer, found in the current dispatcher (a layer
/// that does nothing else, so that it can be looked up by type): a line is formatted
/// and appended to this thread's buffer, with none of an event's dispatch, field
/// recording and span bookkeeping (about 5,000 instructions a request under callgrind).
#[derive(Clone)]
pub struct AccessDirect {
    writer: NonBlocking,
    json: bool,
}

impl<S: tracing::Subscriber> tracing_subscriber::Layer<S> for AccessDirect {}

impl AccessDirect {
    /// The current dispatcher's, when it has one (`serve`'s subscriber): then the
    /// request log writes its lines through it and makes no span, and the events of a
    /// request are attributed to it through a [`RequestScope`].
    pub fn current() -> Option<AccessDirect> {
        tracing::dispatcher::get_default(|d| d.downcast_ref::<AccessDirect>().cloned())
    }

    /// Writes `line` when the filter lets its level through for the request log's
    /// target; `false` when it cannot (a line written while this thread formats
    /// another: the caller emits an event instead).
    pub fn write(&self, line: &RequestLine<'_>) -> bool {
        thread_local! {
            static BUF: std::cell::RefCell<(String, String)> =
                const { std::cell::RefCell::new((String::new(), String::new())) };
        }
        let enabled = if line.error {
            tracing::enabled!(target: "marketgate::access", tracing::Level::ERROR)
        } else {
            tracing::enabled!(target: "marketgate::access", tracing::Level::INFO)
        };
        if !enabled {
            return true;
        }
        BUF.with(|b| {
            let Ok(mut b) = b.try_borrow_mut() else {
                return false;
            };
            let (out, value) = &mut *b;
            out.clear();
            access::request_line(out, value, self.json, line);
            self.writer.append_line(out.as_bytes(), line.error);
            true
        })
    }
}

/// What the telemetry tests share.
#[cfg(test)]
pub(crate) mod testing {
    use std::io::Write;
    use std::sync::{Arc, Mutex};

    /// A sink into memory.
    #[derive(Clone, Default)]
    pub(crate) struct Memory(pub(crate) Arc<Mutex<Vec<u8>>>);

    impl Write for Memory {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(buf);
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    use crate::telemetry::testing::Memory;

    fn line(error: bool) -> RequestLine<'static> {
        RequestLine {
            error,
            request_id: "29b719140000000000000000",
            method: "GET",
            route: "/v1/gate",
            status: if error { 503 } else { 200 },
            latency_us: 12,
            jurisdiction: Some(&"DE"),
            decision: Some("served"),
        }
    }

    /// `serve`'s subscriber (a `NonBlocking` writer) takes request lines directly, and
    /// its filter still decides; another writer does not (the caller emits events).
    #[test]
    fn request_lines_go_straight_to_the_non_blocking_writer_through_the_filter() {
        for (filter, want) in [("info", 2), ("warn", 1), ("info,marketgate::access=off", 0)] {
            let sink = Memory::default();
            let writer = NonBlocking::new(sink.clone(), LogStats::new());
            let d = dispatch(LogFormat::Json, filter, writer.clone()).unwrap();
            tracing::dispatcher::with_default(&d, || {
                let direct = AccessDirect::current().expect("serve's subscriber has one");
                assert!(direct.write(&line(false)));
                assert!(direct.write(&line(true)));
            });
            assert!(writer.flush(Duration::from_secs(5)));
            let text = String::from_utf8(sink.0.lock().unwrap().clone()).unwrap();
            assert_eq!(text.lines().count(), want, "{filter}: {text}");
            for l in text.lines() {
                let v: serde_json::Value = serde_json::from_str(l).unwrap();
                assert_eq!(v["target"], "marketgate::access", "{l}");
                assert_eq!(v["span"]["request_id"], "29b719140000000000000000", "{l}");
            }
        }
        let d = dispatch(LogFormat::Text, "info", Memory::default).unwrap();
        tracing::dispatcher::with_default(&d, || {
            assert!(AccessDirect::current().is_none());
        });
    }
}
