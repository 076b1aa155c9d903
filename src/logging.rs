//! Structured logs with `tracing`: text or JSON, the level from `log.level`
//! unless `RUST_LOG` says otherwise. Access log lines use the target
//! `limpet::access`. A reload changes the level and the format in place.

use std::sync::OnceLock;

use tracing_subscriber::layer::{Layered, SubscriberExt};
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::{EnvFilter, Layer, Registry, fmt, reload};

use crate::config::{LogConfig, LogFormat};

type Filtered = Layered<reload::Layer<EnvFilter, Registry>, Registry>;
type Format = Box<dyn Layer<Filtered> + Send + Sync>;

struct Handles {
    filter: reload::Handle<EnvFilter, Registry>,
    format: reload::Handle<Format, Filtered>,
}

static HANDLES: OnceLock<Handles> = OnceLock::new();

fn filter(log: &LogConfig) -> EnvFilter {
    EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(&log.level))
}

fn format(log: &LogConfig) -> Format {
    match log.format {
        LogFormat::Text => fmt::layer().with_writer(std::io::stderr).boxed(),
        LogFormat::Json => fmt::layer()
            .json()
            .flatten_event(true)
            .with_writer(std::io::stderr)
            .boxed(),
    }
}

/// Installs the global subscriber once; later calls (tests) do nothing.
pub fn init(log: &LogConfig) {
    let (filter, filter_handle) = reload::Layer::new(filter(log));
    let (format, format_handle) = reload::Layer::new(format(log));
    if tracing_subscriber::registry()
        .with(filter)
        .with(format)
        .try_init()
        .is_ok()
    {
        let _ = HANDLES.set(Handles {
            filter: filter_handle,
            format: format_handle,
        });
    }
}

/// Applies a reloaded `log` section (level and format).
pub fn apply(log: &LogConfig) {
    let Some(h) = HANDLES.get() else { return };
    let f = h.filter.reload(filter(log));
    let g = h.format.reload(format(log));
    if let Err(e) = f.and(g) {
        tracing::warn!(error = %e, "cannot change the log settings");
    }
}
