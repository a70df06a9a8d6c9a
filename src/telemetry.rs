//! Logging setup: `tracing` to stderr through a non-blocking writer
//! ([`writer::NonBlocking`]: per-thread buffers, one writer thread), text or JSON, with
//! a filter. Owns the subscriber; never installs a bridge for the `log` crate (records
//! of `log`-based dependencies are dropped unread). actix's own `tracing` events are
//! kept: the canary test runs them at `trace` and checks that none names a client
//! address. A thread that logs never waits for the sink and never sees its errors. Owns
//! the panic hook too: a panic is one log line that never carries request data.

mod access;
pub mod writer;

use tracing::Dispatch;
use tracing_subscriber::fmt::MakeWriter;
use tracing_subscriber::EnvFilter;

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
    Ok(match format {
        LogFormat::Json => {
            let json = builder
                .json()
                .flatten_event(true)
                .with_current_span(true)
                .with_span_list(false);
            if fast {
                Dispatch::new(
                    json.map_event_format(access::AccessFast::json)
                        .map_fmt_fields(access::FastFields::json)
                        .finish(),
                )
            } else {
                Dispatch::new(json.finish())
            }
        }
        LogFormat::Text => {
            let text = builder.with_ansi(false);
            if fast {
                Dispatch::new(
                    text.map_event_format(access::AccessFast::text)
                        .map_fmt_fields(access::FastFields::text)
                        .finish(),
                )
            } else {
                Dispatch::new(text.finish())
            }
        }
    })
}
