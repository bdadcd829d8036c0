//! Snapshot benchmark (issue "raftstore 2C"): numbers, not pass/fail.
//!
//! One region of `--mb` MiB (default 1024) of 1 KiB values in the default CF of a RocksDB kv
//! engine in a temp directory. Three phases, each timed and reported in MB/s of snapshot data:
//! 1. **generate**: `SnapManager::generate` streams a point-in-time view of the engine into the
//!    snapshot files (the region worker's generation task);
//! 2. **transfer**: the files go through `SnapChunkReader` (1 MiB chunks) into a `SnapReceiver`
//!    of another snapshot directory, which checks sizes and checksums (what a transport does);
//! 3. **apply**: the region worker's `ApplySnapshot` task installs the received files into a fresh
//!    RocksDB kv engine (clear range, bounded write batches, final synced states).
//!
//! Phases 2 and 3 — the receiving store's work — run in a child process (this binary re-executed),
//! so its peak resident set (`VmHWM` of `/proc/self/status`) is the receiver's alone; it shows
//! that a snapshot is streamed, never held in memory whole.
//!
//! Run: `cargo bench -p test_raftstore --bench snapshot [-- --mb 1024]` (or `SNAP_BENCH_MB`).
//! Not part of `make test`.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;

use prost::Message as _;
use proto::eraftpb::{Message, MessageType, Snapshot, SnapshotMetadata};
use proto::metapb::{Peer, Region};
use proto::raft_serverpb::{RaftMessage, RaftSnapshotData};
use raftstore::engine::rocks::RocksEngine;
use raftstore::engine::{Engine, Engines, WriteBatch, ALL_CFS, CF_DEFAULT};
use raftstore::snap::{SnapKey, SnapManager};
use raftstore::worker::run_task;
use raftstore::{Task, TaskResult};

const VALUE_SIZE: usize = 1024;
const KEY: SnapKey = SnapKey {
    region_id: 1,
    term: 6,
    index: 1000,
};

fn region() -> Region {
    Region {
        id: KEY.region_id,
        peers: vec![Peer { id: 1, store_id: 1 }],
        ..Default::default()
    }
}

fn mb(bytes: u64) -> f64 {
    bytes as f64 / (1024.0 * 1024.0)
}

/// The peak resident set of this process, in KiB (`VmHWM`).
fn peak_rss_kib() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or(0)
}

fn snapshot_msg(data: &RaftSnapshotData) -> RaftMessage {
    let mut m = Message {
        snapshot: Some(Snapshot {
            data: data.encode_to_vec(),
            metadata: Some(SnapshotMetadata {
                conf_state: None,
                index: KEY.index,
                term: KEY.term,
            }),
        }),
        ..Default::default()
    };
    m.set_msg_type(MessageType::MsgSnapshot);
    RaftMessage {
        region_id: KEY.region_id,
        message: Some(m),
        ..Default::default()
    }
}

fn open_engines(dir: &Path) -> Engines<RocksEngine, RocksEngine> {
    Engines::new(
        RocksEngine::open(dir.join("kv"), &ALL_CFS).expect("open kv engine"),
        RocksEngine::open(dir.join("raft"), &[CF_DEFAULT]).expect("open raft engine"),
    )
}

/// The receiving store's part, in the child process: transfer, then apply.
fn receive(dir: &Path) {
    let msg_bytes = std::fs::read(dir.join("msg")).expect("read the message");
    let msg = RaftMessage::decode(msg_bytes.as_slice()).expect("decode the message");
    let sender = SnapManager::new(dir.join("snap-sender")).expect("sender snap dir");
    let receiver = SnapManager::new(dir.join("snap-receiver")).expect("receiver snap dir");
    let size = receiver_size(&msg);

    let start = Instant::now();
    let mut reader = sender.chunk_reader(&msg).expect("open the generated files");
    let mut rx = receiver.receiver(&msg).expect("start receiving");
    let mut chunks = 0u64;
    while let Some(chunk) = reader.next_chunk().expect("read a chunk") {
        rx.write(&chunk).expect("write a chunk");
        chunks += 1;
    }
    rx.finish().expect("verify the snapshot");
    let transfer = start.elapsed().as_secs_f64();
    let after_transfer = peak_rss_kib();

    let engines = open_engines(&dir.join("receiver"));
    let start = Instant::now();
    let r = run_task(
        &engines,
        &receiver,
        Task::ApplySnapshot {
            key: KEY,
            region: region(),
            clear: vec![(Vec::new(), Vec::new())],
        },
    )
    .expect("apply task");
    assert!(
        matches!(r, Some(TaskResult::SnapshotApplied { result: Ok(()), .. })),
        "{r:?}"
    );
    let apply = start.elapsed().as_secs_f64();
    println!(
        "transfer: {:.1} MiB in {chunks} chunks in {transfer:.2} s = {:.1} MB/s (peak RSS so far {} MiB)",
        mb(size),
        mb(size) / transfer,
        after_transfer / 1024
    );
    println!(
        "apply: {:.1} MiB in {apply:.2} s = {:.1} MB/s",
        mb(size),
        mb(size) / apply
    );
    println!("receiver peak RSS (VmHWM): {} MiB", peak_rss_kib() / 1024);
}

fn receiver_size(msg: &RaftMessage) -> u64 {
    let snap = msg.message.as_ref().and_then(|m| m.snapshot.as_ref());
    snap.and_then(|s| raftstore::snap::snapshot_data(s).ok())
        .map_or(0, |d| d.file_size)
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    if let Some(i) = args.iter().position(|a| a == "--receive") {
        receive(Path::new(&args[i + 1]));
        return;
    }
    let target_mb: u64 = args
        .iter()
        .position(|a| a == "--mb")
        .and_then(|i| args.get(i + 1))
        .cloned()
        .or_else(|| std::env::var("SNAP_BENCH_MB").ok())
        .map(|v| v.parse().expect("--mb takes a number of MiB"))
        .unwrap_or(1024);
    let tmp = tempfile::Builder::new()
        .prefix("snapshot-bench")
        .tempdir()
        .expect("temp dir");
    let dir: PathBuf = tmp.path().to_path_buf();
    println!(
        "snapshot bench: a region of {target_mb} MiB of {VALUE_SIZE} B values, RocksDB in {}",
        dir.display()
    );

    // Load.
    let engines = open_engines(&dir.join("sender"));
    let n = target_mb * 1024 * 1024 / VALUE_SIZE as u64;
    let start = Instant::now();
    let mut wb = WriteBatch::new();
    let mut value = vec![0u8; VALUE_SIZE];
    for i in 0..n {
        for (j, b) in value.iter_mut().enumerate().take(16) {
            *b = (i >> (j % 8)) as u8 ^ j as u8;
        }
        wb.put_cf(CF_DEFAULT, format!("k{i:012}"), value.clone());
        if wb.data_size() >= 4 << 20 {
            engines.kv.write(&wb, false).expect("load");
            wb.clear();
        }
    }
    engines.kv.write(&wb, true).expect("load");
    println!(
        "load: {n} keys in {:.1} s (not a snapshot phase)",
        start.elapsed().as_secs_f64()
    );

    // Generate.
    let sender = SnapManager::new(dir.join("snap-sender")).expect("snap dir");
    let start = Instant::now();
    let data = sender
        .generate(KEY, &engines.kv.snapshot(), &region())
        .expect("generate");
    let secs = start.elapsed().as_secs_f64();
    println!(
        "generate: {:.1} MiB in {secs:.2} s = {:.1} MB/s (sender peak RSS so far {} MiB)",
        mb(data.file_size),
        mb(data.file_size) / secs,
        peak_rss_kib() / 1024
    );
    drop(engines);

    // Transfer and apply, in a child process.
    std::fs::write(dir.join("msg"), snapshot_msg(&data).encode_to_vec()).expect("write msg");
    let exe = std::env::current_exe().expect("current exe");
    let status = Command::new(exe)
        .arg("--receive")
        .arg(&dir)
        .status()
        .expect("run the receiver");
    assert!(status.success(), "the receiver failed: {status}");
}
