//! Small helpers shared by the raft modules: message classification, size limits, and the logger
//! used when the caller brings none.

use proto::eraftpb::{Entry, HardState, MessageType, Snapshot};

/// "No node": no leader known, no vote cast.
pub const INVALID_ID: u64 = 0;

/// No size limit (for `Storage::entries` and `Config::max_size_per_msg`).
pub const NO_LIMIT: u64 = u64::MAX;

/// Whether a message type never crosses the network (MsgHup, MsgBeat, MsgCheckQuorum).
pub fn is_local_msg(t: MessageType) -> bool {
    matches!(
        t,
        MessageType::MsgHup | MessageType::MsgBeat | MessageType::MsgCheckQuorum
    )
}

/// Whether a message type answers a request (and so must come from a known peer).
pub fn is_response_msg(t: MessageType) -> bool {
    matches!(
        t,
        MessageType::MsgAppendResponse
            | MessageType::MsgRequestVoteResponse
            | MessageType::MsgHeartbeatResponse
            | MessageType::MsgRequestPreVoteResponse
            | MessageType::MsgReadIndexResp
    )
}

/// The response type of a vote request type.
pub fn vote_resp_msg_type(t: MessageType) -> MessageType {
    match t {
        MessageType::MsgRequestVote => MessageType::MsgRequestVoteResponse,
        MessageType::MsgRequestPreVote => MessageType::MsgRequestPreVoteResponse,
        _ => panic!("not a vote message: {t:?}"),
    }
}

/// Whether a hard state is all zero (TinyKV's `IsEmptyHardState`).
pub fn is_empty_hard_state(hs: &HardState) -> bool {
    *hs == HardState::default()
}

/// Whether a snapshot is empty: no metadata or index 0 (TinyKV's `IsEmptySnap`).
pub fn is_empty_snap(s: &Snapshot) -> bool {
    s.metadata.as_ref().is_none_or(|m| m.index == 0)
}

/// Truncates `entries` so their encoded size stays within `max` bytes, always keeping the first.
pub fn limit_size(entries: &mut Vec<Entry>, max: u64) {
    if entries.len() <= 1 || max == NO_LIMIT {
        return;
    }
    let mut size = 0u64;
    let keep = entries
        .iter()
        .take_while(|e| {
            size += prost::Message::encoded_len(*e) as u64;
            size <= max
        })
        .count();
    entries.truncate(keep.max(1));
}

/// A logger for tests and tools: silent unless `TINYKV_LOG` names a level (`debug`, `info`, ...),
/// then one line per event on stderr at that level and above.
pub fn default_logger() -> slog::Logger {
    logger_with_timestamp(slog_term::timestamp_local)
}

/// [`default_logger`] with each line stamped by `timestamp` instead of the local wall-clock time
/// (the simulator stamps its runs' virtual time).
pub fn logger_with_timestamp(
    timestamp: fn(&mut dyn std::io::Write) -> std::io::Result<()>,
) -> slog::Logger {
    use slog::Drain;
    let level = match std::env::var("TINYKV_LOG") {
        Ok(l) if !l.is_empty() => l,
        _ => return slog::Logger::root(slog::Discard, slog::o!()),
    };
    let level = level.parse::<slog::Level>().unwrap_or(slog::Level::Debug);
    let decorator = slog_term::PlainSyncDecorator::new(std::io::stderr());
    let drain = slog_term::FullFormat::new(decorator)
        .use_custom_timestamp(timestamp)
        .build()
        .filter_level(level)
        .fuse();
    slog::Logger::root(drain, slog::o!())
}

/// Parses a log level name (`trace`, `debug`, `info`, `warn`, `error`, `critical`, `off`): `None`
/// for an unknown name, `Some(None)` for `off`.
pub fn parse_level(name: &str) -> Option<Option<slog::Level>> {
    match name.to_ascii_lowercase().as_str() {
        "off" | "none" => Some(None),
        "warn" | "warning" => Some(Some(slog::Level::Warning)),
        other => other.parse::<slog::Level>().ok().map(Some),
    }
}

/// The binaries' logger: one line per event on stderr with its key-value pairs, at `level` (None:
/// the environment's `TINYKV_LOG`, or `info`), tagged with `kv`; an unknown level name is an
/// error naming the known ones.
pub fn binary_logger(
    level: Option<&str>,
    kv: slog::OwnedKV<impl slog::SendSyncRefUnwindSafeKV + 'static>,
) -> Result<slog::Logger, String> {
    use slog::Drain;
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
        Some(l) => slog::Logger::root(drain.filter_level(l).fuse(), kv),
        None => slog::Logger::root(slog::Discard, kv),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn test_limit_size() {
        let e = |i: u64| Entry {
            index: i,
            term: i,
            ..Default::default()
        };
        let ents: Vec<Entry> = (4..7).map(e).collect();
        let one = prost::Message::encoded_len(&e(4)) as u64;
        for (max, want) in [
            (NO_LIMIT, 3),
            (0, 1),
            (one, 1),
            (one * 2, 2),
            (one * 3 - 1, 2),
            (one * 3, 3),
        ] {
            let mut v = ents.clone();
            limit_size(&mut v, max);
            assert_eq!(v.len(), want, "max {max}");
        }
    }
}
