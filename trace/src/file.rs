//! The trace file: a magic line, then the records, each length-delimited (protobuf). A trace is
//! built in memory while a run goes ([`TraceWriter`]) and written out when it ends, so tracing
//! costs no I/O inside the run; [`read`] loads one back, and accepts a trace cut short (a run
//! killed mid-write) up to its last whole record.

use std::path::Path;
use std::time::Duration;

use prost::Message as _;

use crate::record::{Footer, Kind, Record};

/// The first bytes of every trace file.
pub const MAGIC: &[u8] = b"TINYKV-TRACE 1\n";

/// Why a trace could not be read or written.
#[derive(Debug, thiserror::Error)]
pub enum TraceError {
    /// The file could not be read or written.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: String,
        /// What went wrong.
        source: std::io::Error,
    },
    /// The file does not start with [`MAGIC`].
    #[error("{0}: not a tinykv trace (it does not start with {MAGIC:?})")]
    NotATrace(String),
    /// A record does not decode.
    #[error("{path}: record {index} does not decode: {source}")]
    Decode {
        /// The file.
        path: String,
        /// Which record (from 0).
        index: usize,
        /// What prost said.
        source: prost::DecodeError,
    },
}

/// A trace being recorded: records appended in order, kept in memory.
#[derive(Default)]
pub struct TraceWriter {
    buf: Vec<u8>,
    records: u64,
    next_id: u64,
}

impl TraceWriter {
    /// An empty trace.
    pub fn new() -> TraceWriter {
        let mut buf = Vec::with_capacity(1 << 16);
        buf.extend_from_slice(MAGIC);
        TraceWriter {
            buf,
            records: 0,
            next_id: 0,
        }
    }

    /// Appends a record of `kind` at virtual time `at`.
    pub fn record(&mut self, at: Duration, kind: Kind) {
        let r = Record {
            at_ns: at.as_nanos() as u64,
            kind: Some(kind),
        };
        r.encode_length_delimited(&mut self.buf)
            .expect("a Vec grows as needed");
        self.records += 1;
    }

    /// A fresh id for a message, command or client operation of this trace.
    pub fn next_id(&mut self) -> u64 {
        self.next_id += 1;
        self.next_id
    }

    /// Records so far.
    pub fn len(&self) -> u64 {
        self.records
    }

    /// Whether nothing was recorded.
    pub fn is_empty(&self) -> bool {
        self.records == 0
    }

    /// Ends the trace with its footer (the run's `digest`) and returns the file's bytes.
    pub fn finish(mut self, at: Duration, digest: u64) -> Vec<u8> {
        let records = self.records;
        self.record(at, Kind::Footer(Footer { digest, records }));
        self.buf
    }

    /// Ends the trace and writes it to `path` (creating its directory).
    pub fn write_to(self, path: &Path, at: Duration, digest: u64) -> Result<(), TraceError> {
        let io = |source| TraceError::Io {
            path: path.display().to_string(),
            source,
        };
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir).map_err(io)?;
        }
        std::fs::write(path, self.finish(at, digest)).map_err(io)
    }
}

/// A trace read back.
#[derive(Debug, Default)]
pub struct Trace {
    /// Its records, in order.
    pub records: Vec<Record>,
    /// Whether it ends with a footer (else the run did not finish writing it).
    pub complete: bool,
}

impl Trace {
    /// The run's digest, from the footer.
    pub fn digest(&self) -> Option<u64> {
        self.records.iter().rev().find_map(|r| match &r.kind {
            Some(Kind::Footer(f)) => Some(f.digest),
            _ => None,
        })
    }
}

/// Reads the trace at `path`.
pub fn read(path: &Path) -> Result<Trace, TraceError> {
    let bytes = std::fs::read(path).map_err(|source| TraceError::Io {
        path: path.display().to_string(),
        source,
    })?;
    parse(&bytes, &path.display().to_string())
}

/// Parses a trace's bytes (`name` is for errors).
pub fn parse(bytes: &[u8], name: &str) -> Result<Trace, TraceError> {
    let Some(mut rest) = bytes.strip_prefix(MAGIC) else {
        return Err(TraceError::NotATrace(name.to_string()));
    };
    let mut trace = Trace::default();
    while !rest.is_empty() {
        let mut probe = rest;
        let Ok(len) = prost::encoding::decode_varint(&mut probe) else {
            break; // cut inside a length
        };
        let header = rest.len() - probe.len();
        let Some(body) = probe.get(..len as usize) else {
            break; // cut inside a record
        };
        let record = Record::decode(body).map_err(|source| TraceError::Decode {
            path: name.to_string(),
            index: trace.records.len(),
            source,
        })?;
        if matches!(record.kind, Some(Kind::Footer(_))) {
            trace.complete = true;
        }
        trace.records.push(record);
        rest = &rest[header + len as usize..];
    }
    Ok(trace)
}

/// A 64-bit hash of `bytes` (FNV-1a over 8-byte words, then mixed): a message's fingerprint.
pub fn hash64(bytes: &[u8]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325 ^ bytes.len() as u64;
    let mut chunks = bytes.chunks_exact(8);
    for c in &mut chunks {
        h ^= u64::from_le_bytes(c.try_into().expect("8 bytes"));
        h = h.wrapping_mul(0x0000_0100_0000_01b3).rotate_left(29);
    }
    for &b in chunks.remainder() {
        h ^= b as u64;
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    h ^= h >> 33;
    h = h.wrapping_mul(0xff51_afd7_ed55_8ccd);
    h ^ (h >> 33)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::record::{Header, Start};

    #[test]
    fn a_trace_round_trips_and_a_cut_one_reads_to_its_last_whole_record() {
        let mut w = TraceWriter::new();
        w.record(
            Duration::ZERO,
            Kind::Header(Header {
                scenario: "s".into(),
                seed: 7,
                stores: vec![1, 2, 3],
                replay: String::new(),
            }),
        );
        for s in 1..=3 {
            w.record(Duration::from_millis(s), Kind::Start(Start { store: s }));
        }
        let bytes = w.finish(Duration::from_millis(9), 0xfeed);
        let t = parse(&bytes, "t").unwrap();
        assert!(t.complete);
        assert_eq!(t.records.len(), 5);
        assert_eq!(t.digest(), Some(0xfeed));
        assert_eq!(t.records[2].at_ns, 2_000_000);

        let cut = parse(&bytes[..bytes.len() - 3], "t").unwrap();
        assert!(!cut.complete);
        assert_eq!(cut.records.len(), 4);
        assert!(matches!(
            parse(b"hello", "t"),
            Err(TraceError::NotATrace(_))
        ));
    }

    #[test]
    fn hashes_tell_bytes_apart() {
        assert_eq!(hash64(b"abcdefghij"), hash64(b"abcdefghij"));
        assert_ne!(hash64(b"abcdefghij"), hash64(b"abcdefghik"));
        assert_ne!(hash64(b""), hash64(&[0]));
        assert_ne!(hash64(&[0; 8]), hash64(&[0; 9]));
    }
}
