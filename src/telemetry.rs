//! Logging setup: `tracing` to stderr, text or JSON, with a filter. Owns the subscriber;
//! never installs a bridge for the `log` crate (records of `log`-based dependencies are
//! dropped unread). actix's own `tracing` events are kept: the canary test runs them at
//! `trace` and checks that none names a client address. Owns the panic hook too: a panic
//! is one log line that never carries request data.

use tracing::Dispatch;
use tracing_subscriber::fmt::MakeWriter;
use tracing_subscriber::EnvFilter;

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

/// Installs the global subscriber, writing to stderr, and the panic hook.
pub fn init(format: LogFormat, filter: &str) -> Result<(), TelemetryError> {
    // `set_global_default`, not `try_init`: the latter would also bridge `log` records.
    tracing::dispatcher::set_global_default(dispatch(format, filter, std::io::stderr)?)
        .map_err(|_| TelemetryError::AlreadySet)?;
    install_panic_hook();
    Ok(())
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

/// The subscriber [`init`] installs, writing to `writer` instead of stderr, so that
/// anything capturing logs (the privacy test) sees exactly what `serve` writes.
pub fn dispatch<W>(format: LogFormat, filter: &str, writer: W) -> Result<Dispatch, TelemetryError>
where
    W: for<'w> MakeWriter<'w> + Send + Sync + 'static,
{
    let env = EnvFilter::try_new(filter).map_err(|source| TelemetryError::Filter {
        filter: filter.to_string(),
        source,
    })?;
    let builder = tracing_subscriber::fmt()
        .with_env_filter(env)
        .with_writer(writer);
    Ok(match format {
        LogFormat::Json => Dispatch::new(
            builder
                .json()
                .flatten_event(true)
                .with_current_span(true)
                .with_span_list(false)
                .finish(),
        ),
        LogFormat::Text => Dispatch::new(builder.with_ansi(false).finish()),
    })
}
