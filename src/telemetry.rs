//! Logging setup: `tracing` to stderr, text or JSON, with a filter. Owns the subscriber;
//! never installs a bridge for the `log` crate (records of `log`-based dependencies are
//! dropped unread). actix's own `tracing` events are kept: the canary test runs them at
//! `trace` and checks that none names a client address.

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

/// Installs the global subscriber, writing to stderr.
pub fn init(format: LogFormat, filter: &str) -> Result<(), TelemetryError> {
    // `set_global_default`, not `try_init`: the latter would also bridge `log` records.
    tracing::dispatcher::set_global_default(dispatch(format, filter, std::io::stderr)?)
        .map_err(|_| TelemetryError::AlreadySet)
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
