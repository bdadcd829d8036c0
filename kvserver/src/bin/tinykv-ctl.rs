//! `tinykv-ctl`: put, get, delete and scan against a TinyKV cluster.
//!
//! ```text
//! tinykv-ctl --endpoints 127.0.0.1:20160,127.0.0.1:20161,127.0.0.1:20162 put k v
//! tinykv-ctl --endpoints ... get k            # prints the value alone; exit 1 when missing
//! tinykv-ctl --endpoints ... scan a --limit 10  # key<TAB>value lines
//! tinykv-ctl --scheduler 127.0.0.1:2379 get k   # a multi-region cluster, through its scheduler
//! tinykv-ctl --scheduler 127.0.0.1:2379 stores  # a table of the scheduler's stores
//! tinykv-ctl --scheduler 127.0.0.1:2379 regions # a table of its regions
//! tinykv-ctl --scheduler 127.0.0.1:2379 txn put a 1 b 2   # one transaction writing both
//! tinykv-ctl --scheduler 127.0.0.1:2379 txn get a b       # one snapshot: key<TAB>value lines
//! tinykv-ctl --scheduler 127.0.0.1:2379 txn delete a b
//! tinykv-ctl --scheduler 127.0.0.1:2379 txn scan a --end c --limit 10
//! ```
//! It finds the leader, follows NotLeader hints and retries until `--timeout`. With `--scheduler`
//! (instead of `--endpoints`) each key goes to the leader of its region, and a scan crosses
//! regions. Every failure is one line on stderr and a non-zero exit: 1 for a missing key, a failed
//! request or a missing scheduler, 2 for bad usage.

use std::io::Write;
use std::time::Duration;

use anyhow::Context as _;
use clap::{Parser, Subcommand};
use kvserver::client::txn::TxnClient;
use kvserver::client::{parse_seconds, Client};
use kvserver::config::{async_runtime, one_line, parse_args_or_exit};
use kvserver::region_cache::{readable_key, RegionRow, SchedulerSource};
use proto::metapb::{Store, StoreState};
use proto::schedulerpb::StoreStats;

/// The stores `--endpoints` names when neither it nor `--scheduler` is given.
const DEFAULT_ENDPOINTS: &str = "127.0.0.1:20160,127.0.0.1:20161,127.0.0.1:20162";

/// Command-line client of a TinyKV cluster: its raw API, and transactions with --scheduler.
#[derive(Parser, Debug)]
#[command(name = "tinykv-ctl", version, about)]
struct Cli {
    /// The stores of a static cluster, HOST:PORT,HOST:PORT,... [default:
    /// 127.0.0.1:20160,127.0.0.1:20161,127.0.0.1:20162 when --scheduler is not given either]
    #[arg(long, conflicts_with = "scheduler")]
    endpoints: Option<String>,
    /// The scheduler of a multi-region cluster, HOST:PORT (instead of --endpoints).
    #[arg(long)]
    scheduler: Option<String>,
    /// Give up after this many seconds (fractions allowed; at most a week).
    #[arg(long, default_value = "10", value_parser = parse_seconds)]
    timeout: Duration,
    /// Column family: default, lock or write.
    #[arg(long, default_value = "default", global = true)]
    cf: String,
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand, Debug)]
enum Cmd {
    /// Set KEY to VALUE.
    Put {
        /// The key.
        key: String,
        /// The value.
        value: String,
    },
    /// Print the value of KEY (exit 1 when it is missing).
    Get {
        /// The key.
        key: String,
    },
    /// Delete KEY.
    Delete {
        /// The key.
        key: String,
    },
    /// Print up to --limit pairs from START on, one `key<TAB>value` per line.
    Scan {
        /// The first key (inclusive); "" scans from the beginning.
        start: String,
        /// Most pairs to print.
        #[arg(long, default_value_t = 100)]
        limit: u32,
    },
    /// Print the scheduler's stores: id, address, state, regions, leaders, size (needs
    /// --scheduler).
    Stores,
    /// Print the scheduler's regions in key order: id, start, end, peers' stores (the leader's
    /// marked *), leader store (needs --scheduler).
    Regions,
    /// Run one transaction (Percolator, through the `Kv*` commands; needs --scheduler).
    Txn {
        /// What the transaction does.
        #[command(subcommand)]
        op: TxnOp,
    },
}

#[derive(Subcommand, Debug)]
enum TxnOp {
    /// Write every KEY VALUE pair in one transaction; prints the commit timestamp.
    Put {
        /// KEY VALUE [KEY VALUE ...]
        #[arg(required = true, num_args = 2.., value_names = ["KEY", "VALUE"])]
        pairs: Vec<String>,
    },
    /// Read every KEY from one snapshot: `key<TAB>value` lines (exit 1 if any is missing).
    Get {
        /// KEY [KEY ...]
        #[arg(required = true)]
        keys: Vec<String>,
    },
    /// Delete every KEY in one transaction; prints the commit timestamp.
    Delete {
        /// KEY [KEY ...]
        #[arg(required = true)]
        keys: Vec<String>,
    },
    /// Print up to --limit pairs from START (to --end) of one snapshot, `key<TAB>value` lines.
    Scan {
        /// The first key (inclusive); "" scans from the beginning.
        start: String,
        /// The end (exclusive); empty: no end.
        #[arg(long, default_value = "")]
        end: String,
        /// Most pairs to print.
        #[arg(long, default_value_t = 100)]
        limit: usize,
    },
}

fn main() {
    let cli: Cli = parse_args_or_exit("tinykv-ctl");
    match run(cli) {
        Ok(code) => std::process::exit(code),
        Err(e) => {
            eprintln!("tinykv-ctl: error: {}", one_line(&format!("{e:#}")));
            std::process::exit(1);
        }
    }
}

fn run(cli: Cli) -> anyhow::Result<i32> {
    let rt = async_runtime(1, "tinykv-ctl")?;
    let cf = cli.cf.as_str();
    let client = || match &cli.scheduler {
        Some(addr) => Client::with_scheduler(addr.clone(), cli.timeout),
        None => {
            let endpoints = cli.endpoints.as_deref().unwrap_or(DEFAULT_ENDPOINTS);
            Client::new(
                endpoints.split(',').map(str::to_string).collect(),
                cli.timeout,
            )
        }
    };
    rt.block_on(async {
        let mut out = std::io::stdout().lock();
        match &cli.cmd {
            Cmd::Put { key, value } => {
                client()?.put(cf, key.as_bytes(), value.as_bytes()).await?;
            }
            Cmd::Get { key } => match client()?.get(cf, key.as_bytes()).await? {
                Some(v) => {
                    out.write_all(&v)?;
                    out.write_all(b"\n")?;
                }
                None => {
                    eprintln!("tinykv-ctl: key {key:?} not found");
                    return Ok(1);
                }
            },
            Cmd::Delete { key } => {
                client()?.delete(cf, key.as_bytes()).await?;
            }
            Cmd::Scan { start, limit } => {
                for (k, v) in client()?.scan(cf, start.as_bytes(), *limit).await? {
                    out.write_all(&k)?;
                    out.write_all(b"\t")?;
                    out.write_all(&v)?;
                    out.write_all(b"\n")?;
                }
            }
            Cmd::Txn { op } => {
                let Some(addr) = &cli.scheduler else {
                    anyhow::bail!("`txn` needs --scheduler HOST:PORT (it takes timestamps there)");
                };
                return txn(TxnClient::new(addr.clone(), cli.timeout)?, op, &mut out).await;
            }
            Cmd::Stores => out.write_all(cluster_table(&cli, "stores").await?.as_bytes())?,
            Cmd::Regions => out.write_all(cluster_table(&cli, "regions").await?.as_bytes())?,
        }
        out.flush()?;
        Ok(0)
    })
}

/// Runs one transaction doing `op`, printing to `out`; the exit code.
async fn txn(client: TxnClient, op: &TxnOp, out: &mut impl Write) -> anyhow::Result<i32> {
    let mut t = client.begin().await?;
    let line = |out: &mut dyn Write, k: &[u8], v: &[u8]| -> std::io::Result<()> {
        out.write_all(k)?;
        out.write_all(b"\t")?;
        out.write_all(v)?;
        out.write_all(b"\n")
    };
    match op {
        TxnOp::Put { pairs } => {
            if pairs.len() % 2 != 0 {
                anyhow::bail!(
                    "`txn put` takes KEY VALUE pairs; {:?} has no value",
                    pairs[pairs.len() - 1]
                );
            }
            for kv in pairs.chunks(2) {
                t.put(kv[0].as_bytes(), kv[1].as_bytes());
            }
        }
        TxnOp::Delete { keys } => {
            for k in keys {
                t.delete(k.as_bytes());
            }
        }
        TxnOp::Get { keys } => {
            let mut missing = 0;
            for k in keys {
                match t.get(k.as_bytes()).await? {
                    Some(v) => line(out, k.as_bytes(), &v)?,
                    None => {
                        eprintln!("tinykv-ctl: key {k:?} not found");
                        missing += 1;
                    }
                }
            }
            out.flush()?;
            return Ok(if missing > 0 { 1 } else { 0 });
        }
        TxnOp::Scan { start, end, limit } => {
            for (k, v) in t.scan(start.as_bytes(), end.as_bytes(), *limit).await? {
                line(out, &k, &v)?;
            }
            out.flush()?;
            return Ok(0);
        }
    }
    let commit_ts = t.commit().await?;
    writeln!(out, "committed at {commit_ts}")?;
    out.flush()?;
    Ok(0)
}

/// The table of `what` ("stores" or "regions"), from the scheduler of `--scheduler`.
async fn cluster_table(cli: &Cli, what: &str) -> anyhow::Result<String> {
    let Some(addr) = &cli.scheduler else {
        anyhow::bail!("`{what}` needs --scheduler HOST:PORT");
    };
    let source = SchedulerSource::new(addr)?;
    let ask = async {
        let regions = source.all_region_rows().await?;
        if what == "regions" {
            return Ok::<_, anyhow::Error>(regions_table(&regions));
        }
        let mut stores = Vec::new();
        for store in source.all_stores().await? {
            let (_, stats) = source.store(store.id).await?;
            stores.push((store, stats));
        }
        Ok(stores_table(&stores, &regions))
    };
    tokio::time::timeout(cli.timeout, ask)
        .await
        .map_err(|_| {
            anyhow::anyhow!(
                "scheduler {} gave no answer within {:?}",
                source.addr(),
                cli.timeout
            )
        })?
        .with_context(|| format!("cannot list the {what}"))
}

/// The `stores` table: one row per store (by id) with its state, its region count (from its last
/// heartbeat's statistics), the regions it leads and the size of the regions it holds a peer of
/// (both from the scheduler's regions).
fn stores_table(stores: &[(Store, Option<StoreStats>)], regions: &[RegionRow]) -> String {
    let mut rows = vec![["ID", "ADDRESS", "STATE", "REGIONS", "LEADERS", "SIZE"]
        .map(String::from)
        .to_vec()];
    let mut sorted: Vec<_> = stores.iter().collect();
    sorted.sort_by_key(|(s, _)| s.id);
    for (store, stats) in sorted {
        let leaders = regions
            .iter()
            .filter(|r| r.leader.is_some_and(|l| l.store_id == store.id))
            .count();
        let held: Vec<&RegionRow> = regions
            .iter()
            .filter(|r| r.region.peers.iter().any(|p| p.store_id == store.id))
            .collect();
        let size = if held.iter().all(|r| r.size_mib.is_some()) {
            mib(held.iter().filter_map(|r| r.size_mib).sum())
        } else {
            "-".to_string()
        };
        let state = StoreState::try_from(store.state)
            .map(|s| format!("{s:?}"))
            .unwrap_or_else(|_| format!("state {}", store.state));
        rows.push(vec![
            store.id.to_string(),
            store.address.clone(),
            state,
            stats
                .as_ref()
                .map_or_else(|| "-".to_string(), |s| s.region_count.to_string()),
            leaders.to_string(),
            size,
        ]);
    }
    format_table(&rows)
}

/// `n` MiB for a table.
fn mib(n: u64) -> String {
    format!("{n} MiB")
}

/// The `regions` table: one row per region in key order.
fn regions_table(regions: &[RegionRow]) -> String {
    let mut rows = vec![["ID", "START", "END", "PEERS", "LEADER", "SIZE"]
        .map(String::from)
        .to_vec()];
    for r in regions {
        let peers: Vec<String> = r
            .region
            .peers
            .iter()
            .map(|p| {
                let mark = if Some(*p) == r.leader { "*" } else { "" };
                format!("{}{mark}", p.store_id)
            })
            .collect();
        rows.push(vec![
            r.region.id.to_string(),
            bound(&r.region.start_key, "(min)"),
            bound(&r.region.end_key, "(max)"),
            peers.join(","),
            r.leader
                .map_or_else(|| "-".to_string(), |l| l.store_id.to_string()),
            r.size_mib.map_or_else(|| "-".to_string(), mib),
        ]);
    }
    format_table(&rows)
}

/// A region's start or end key for the table; `empty` for an empty key (the key space's edge).
fn bound(key: &[u8], empty: &str) -> String {
    if key.is_empty() {
        empty.to_string()
    } else {
        readable_key(key)
    }
}

/// `rows` as lines of left-aligned columns two spaces apart (no trailing spaces).
fn format_table(rows: &[Vec<String>]) -> String {
    let mut widths: Vec<usize> = Vec::new();
    for row in rows {
        for (i, cell) in row.iter().enumerate() {
            let w = cell.chars().count();
            match widths.get_mut(i) {
                Some(m) => *m = (*m).max(w),
                None => widths.push(w),
            }
        }
    }
    let mut out = String::new();
    for row in rows {
        let mut line = String::new();
        for (i, cell) in row.iter().enumerate() {
            if i > 0 {
                line.push_str("  ");
            }
            line.push_str(cell);
            let pad = widths[i] - cell.chars().count();
            line.extend(std::iter::repeat_n(' ', pad));
        }
        out.push_str(line.trim_end());
        out.push('\n');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use proto::metapb::{Peer, Region, RegionEpoch};

    fn region(id: u64, start: &[u8], end: &[u8], stores: &[u64]) -> Region {
        Region {
            id,
            start_key: start.to_vec(),
            end_key: end.to_vec(),
            region_epoch: Some(RegionEpoch::default()),
            peers: stores
                .iter()
                .map(|&s| Peer {
                    id: 10 * id + s,
                    store_id: s,
                })
                .collect(),
        }
    }

    fn row(region: Region, leader: Option<Peer>, size_mib: Option<u64>) -> RegionRow {
        RegionRow {
            region,
            leader,
            size_mib,
        }
    }

    #[test]
    fn tables_are_aligned() {
        let rows = vec![
            vec!["ID".to_string(), "NAME".into(), "X".into()],
            vec!["1000".to_string(), "a".into(), "".into()],
        ];
        assert_eq!(format_table(&rows), "ID    NAME  X\n1000  a\n");
    }

    #[test]
    fn the_regions_table_marks_leaders_and_prints_keys_readably() {
        let regions = vec![
            row(
                region(2, b"", b"k\x00", &[1, 2, 3]),
                Some(Peer {
                    id: 22,
                    store_id: 2,
                }),
                Some(3),
            ),
            row(region(14, b"k\x00", b"", &[1, 2, 3]), None, None),
        ];
        assert_eq!(
            regions_table(&regions),
            "ID  START   END     PEERS   LEADER  SIZE\n\
             2   (min)   0x6b00  1,2*,3  2       3 MiB\n\
             14  0x6b00  (max)   1,2,3   -       -\n"
        );
    }

    #[test]
    fn the_stores_table_counts_leaders() {
        let store = |id: u64, state: StoreState| Store {
            id,
            address: format!("127.0.0.1:2016{id}"),
            state: state as i32,
        };
        let stats = StoreStats {
            region_count: 2,
            ..Default::default()
        };
        let stores = vec![
            (store(3, StoreState::Offline), None),
            (store(1, StoreState::Up), Some(stats)),
        ];
        let regions = vec![
            row(
                region(2, b"", b"m", &[1, 3]),
                Some(Peer {
                    id: 21,
                    store_id: 1,
                }),
                Some(4),
            ),
            row(
                region(5, b"m", b"", &[1]),
                Some(Peer {
                    id: 51,
                    store_id: 1,
                }),
                Some(1),
            ),
        ];
        assert_eq!(
            stores_table(&stores, &regions),
            "ID  ADDRESS          STATE    REGIONS  LEADERS  SIZE\n\
             1   127.0.0.1:20161  Up       2        2        5 MiB\n\
             3   127.0.0.1:20163  Offline  -        0        4 MiB\n"
        );
    }
}
