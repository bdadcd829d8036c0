//! `tinykv-ctl`: put, get, delete and scan against a TinyKV cluster.
//!
//! ```text
//! tinykv-ctl --endpoints 127.0.0.1:20160,127.0.0.1:20161,127.0.0.1:20162 put k v
//! tinykv-ctl --endpoints ... get k            # prints the value alone; exit 1 when missing
//! tinykv-ctl --endpoints ... scan a --limit 10  # key<TAB>value lines
//! ```
//! It finds the leader, follows NotLeader hints and retries until `--timeout`. Every failure is
//! one line on stderr and a non-zero exit: 1 for a missing key or a failed request, 2 for bad usage.

use std::io::Write;
use std::time::Duration;

use clap::{Parser, Subcommand};
use kvserver::client::{parse_seconds, Client};
use kvserver::config::{async_runtime, one_line, parse_args_or_exit};

/// Command-line client of a TinyKV cluster's raw API.
#[derive(Parser, Debug)]
#[command(name = "tinykv-ctl", version, about)]
struct Cli {
    /// The stores to talk to, HOST:PORT,HOST:PORT,...
    #[arg(
        long,
        default_value = "127.0.0.1:20160,127.0.0.1:20161,127.0.0.1:20162"
    )]
    endpoints: String,
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
    let endpoints: Vec<String> = cli.endpoints.split(',').map(str::to_string).collect();
    let client = Client::new(endpoints, cli.timeout)?;
    let rt = async_runtime(1, "tinykv-ctl")?;
    let cf = cli.cf.as_str();
    rt.block_on(async move {
        let mut out = std::io::stdout().lock();
        match cli.cmd {
            Cmd::Put { key, value } => {
                client.put(cf, key.as_bytes(), value.as_bytes()).await?;
            }
            Cmd::Get { key } => match client.get(cf, key.as_bytes()).await? {
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
                client.delete(cf, key.as_bytes()).await?;
            }
            Cmd::Scan { start, limit } => {
                for (k, v) in client.scan(cf, start.as_bytes(), limit).await? {
                    out.write_all(&k)?;
                    out.write_all(b"\t")?;
                    out.write_all(&v)?;
                    out.write_all(b"\n")?;
                }
            }
        }
        out.flush()?;
        Ok(0)
    })
}
