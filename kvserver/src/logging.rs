//! The binaries' logger: slog to stderr, one line per event with its key-value pairs, filtered
//! by level (`--log-level`, else `TINYKV_LOG`, else `info`).

use slog::{Drain, Level, Logger};

/// Parses a level name (`trace`, `debug`, `info`, `warn`, `error`, `critical`, `off`).
pub fn parse_level(name: &str) -> Option<Option<Level>> {
    match name.to_ascii_lowercase().as_str() {
        "off" | "none" => Some(None),
        "warn" | "warning" => Some(Some(Level::Warning)),
        other => other.parse::<Level>().ok().map(Some),
    }
}

/// A logger at `level` (None: the environment's `TINYKV_LOG`, or `info`), tagged with `kv`.
pub fn logger(
    level: Option<&str>,
    kv: slog::OwnedKV<impl slog::SendSyncRefUnwindSafeKV + 'static>,
) -> Result<Logger, String> {
    let env = std::env::var("TINYKV_LOG").ok();
    let name = level
        .map(str::to_string)
        .or(env)
        .unwrap_or_else(|| "info".into());
    let level = parse_level(&name).ok_or_else(|| {
        format!("unknown log level {name:?} (trace, debug, info, warn, error, off)")
    })?;
    let decorator = slog_term::PlainSyncDecorator::new(std::io::stderr());
    let drain = slog_term::FullFormat::new(decorator).build().fuse();
    Ok(match level {
        Some(l) => Logger::root(drain.filter_level(l).fuse(), kv),
        None => Logger::root(slog::Discard, kv),
    })
}
