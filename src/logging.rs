//! Structured logs with `tracing`: text or JSON, the level from `log.level`
//! unless `RUST_LOG` says otherwise. Access log lines use the target
//! `limpet::access`. A reload changes the level, the format and the file in
//! place.
//!
//! Lines never block a worker: they are queued to one writer thread
//! (`tracing-appender`'s non-blocking writer), and when that thread cannot
//! keep up (a full pipe, a slow disk) new lines are dropped and counted
//! ([`dropped_lines`], `limpet_log_lines_dropped_total`). The writer appends
//! to `log.file`, or to stderr without one; [`reopen`] (SIGUSR1) makes it
//! open the file again by its name, as logrotate expects.

use std::fs::File;
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, OnceLock, PoisonError};

use tracing_appender::non_blocking::{ErrorCounter, NonBlocking, WorkerGuard};
use tracing_subscriber::layer::{Layered, SubscriberExt};
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::{EnvFilter, Layer, Registry, fmt, reload};

use crate::config::{LogConfig, LogFormat};

type Filtered = Layered<reload::Layer<EnvFilter, Registry>, Registry>;
type Format = Box<dyn Layer<Filtered> + Send + Sync>;

/// Lines queued for the writer thread before new ones are dropped: a few
/// seconds of a busy access log, about a megabyte.
const QUEUED_LINES: usize = 4096;

struct Handles {
    filter: reload::Handle<EnvFilter, Registry>,
    format: reload::Handle<Format, Filtered>,
    writer: NonBlocking,
    sink: Arc<Sink>,
    dropped: ErrorCounter,
    /// Flushes the queue when dropped ([`flush`]).
    guard: Mutex<Option<WorkerGuard>>,
}

static HANDLES: OnceLock<Handles> = OnceLock::new();

/// Where the writer thread puts lines.
#[derive(Debug)]
struct Sink {
    /// The file to (re)open, `None` for stderr. Changed by a reload.
    path: Mutex<Option<PathBuf>>,
    /// Open the file again before the next line (SIGUSR1, a reload).
    reopen: AtomicBool,
}

/// The writer thread's end: stderr, or the file it opened last.
struct Writer {
    sink: Arc<Sink>,
    file: Option<File>,
}

fn open(path: &Path) -> io::Result<File> {
    File::options().create(true).append(true).open(path)
}

impl Writer {
    /// Opens the file again if asked; a failure keeps the old handle (so
    /// lines still go somewhere) and says why on stderr.
    fn reopen_if_asked(&mut self) {
        if !self.sink.reopen.swap(false, Ordering::AcqRel) {
            return;
        }
        let path = self
            .sink
            .path
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone();
        match path.as_deref().map(open) {
            None => self.file = None,
            Some(Ok(f)) => self.file = Some(f),
            Some(Err(e)) => {
                let _ = writeln!(
                    io::stderr(),
                    "limpet: cannot reopen the log file {:?}: {e}; still writing to the old one",
                    path.unwrap_or_default()
                );
            }
        }
    }
}

impl Write for Writer {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.reopen_if_asked();
        match &mut self.file {
            Some(f) => f.write(buf),
            None => io::stderr().write(buf),
        }
    }

    fn flush(&mut self) -> io::Result<()> {
        match &mut self.file {
            Some(f) => f.flush(),
            None => io::stderr().flush(),
        }
    }
}

fn filter(log: &LogConfig) -> EnvFilter {
    EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(&log.level))
}

fn format(log: &LogConfig, writer: NonBlocking) -> Format {
    // No colours: the lines go to a file or a journal, not a terminal.
    match log.format {
        LogFormat::Text => fmt::layer().with_ansi(false).with_writer(writer).boxed(),
        LogFormat::Json => fmt::layer()
            .json()
            .flatten_event(true)
            .with_writer(writer)
            .boxed(),
    }
}

/// Installs the global subscriber once; later calls (tests) do nothing. An
/// error when `log.file` cannot be opened.
pub fn init(log: &LogConfig) -> io::Result<()> {
    let file = log.file.as_deref().map(open).transpose()?;
    let sink = Arc::new(Sink {
        path: Mutex::new(log.file.clone()),
        reopen: AtomicBool::new(false),
    });
    let (writer, guard) = tracing_appender::non_blocking::NonBlockingBuilder::default()
        .lossy(true)
        .buffered_lines_limit(QUEUED_LINES)
        .thread_name("limpet-log")
        .finish(Writer {
            sink: Arc::clone(&sink),
            file,
        });
    let dropped = writer.error_counter();
    let (filter_layer, filter_handle) = reload::Layer::new(filter(log));
    let (format_layer, format_handle) = reload::Layer::new(format(log, writer.clone()));
    if tracing_subscriber::registry()
        .with(filter_layer)
        .with(format_layer)
        .try_init()
        .is_ok()
    {
        let _ = HANDLES.set(Handles {
            filter: filter_handle,
            format: format_handle,
            writer,
            sink,
            dropped,
            guard: Mutex::new(Some(guard)),
        });
    }
    Ok(())
}

/// Applies a reloaded `log` section (level, format, file).
pub fn apply(log: &LogConfig) {
    let Some(h) = HANDLES.get() else { return };
    let f = h.filter.reload(filter(log));
    let g = h.format.reload(format(log, h.writer.clone()));
    if let Err(e) = f.and(g) {
        tracing::warn!(error = %e, "cannot change the log settings");
    }
    let mut path = h.sink.path.lock().unwrap_or_else(PoisonError::into_inner);
    if *path != log.file {
        path.clone_from(&log.file);
        h.sink.reopen.store(true, Ordering::Release);
    }
}

/// SIGUSR1: the next line goes to a file opened again by its name (the old
/// one was renamed by logrotate). Without `log.file`, nothing to do: false.
pub fn reopen() -> bool {
    let Some(h) = HANDLES.get() else { return false };
    let has_file = h
        .sink
        .path
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .is_some();
    if has_file {
        h.sink.reopen.store(true, Ordering::Release);
    }
    has_file
}

/// Lines dropped so far because the writer could not keep up.
pub fn dropped_lines() -> u64 {
    HANDLES.get().map_or(0, |h| {
        u64::try_from(h.dropped.dropped_lines()).unwrap_or(u64::MAX)
    })
}

/// Writes out the queued lines (at exit).
pub fn flush() {
    if let Some(h) = HANDLES.get() {
        drop(
            h.guard
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .take(),
        );
    }
}
