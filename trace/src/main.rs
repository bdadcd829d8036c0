//! `tinykv-trace`: looks at the trace of a simulated run (docs/TRACES.md).
//!
//! - `view PATH [--out FILE.html]`: the timeline page, one self-contained HTML file;
//! - `explain PATH`: why the run failed: the failure, the first broken raft invariant, and the
//!   events that led there;
//! - `check PATH`: every broken raft invariant (exit 1 if any);
//! - `dump PATH [--region R] [--store S] [--from SECS] [--to SECS]`: the events, one per line.

use std::collections::BTreeMap;
use std::io::Write as _;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context as _;
use clap::{Parser, Subcommand};
use tinykv_trace::check::{check, describe, explain, secs};
use tinykv_trace::record::Kind;

#[derive(Parser)]
#[command(
    name = "tinykv-trace",
    about = "Look at the trace of a simulated tinykv run"
)]
struct Cli {
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Write the run's timeline as one self-contained HTML page.
    View {
        /// The trace.
        path: PathBuf,
        /// The page to write (default: the trace's path with `.html`).
        #[arg(long)]
        out: Option<PathBuf>,
    },
    /// Say why the run failed: the failure, the first broken raft invariant, what led there.
    Explain {
        /// The trace.
        path: PathBuf,
        /// How many events of the lead-up to show.
        #[arg(long, default_value_t = 25)]
        context: usize,
    },
    /// List every broken raft invariant; exit 1 if there is one.
    Check {
        /// The trace.
        path: PathBuf,
    },
    /// Print the events, one per line.
    Dump {
        /// The trace.
        path: PathBuf,
        /// Only events of this region (and crashes, starts and filters).
        #[arg(long)]
        region: Option<u64>,
        /// Only events on this store (and filters).
        #[arg(long)]
        store: Option<u64>,
        /// From this virtual time, in seconds.
        #[arg(long)]
        from: Option<f64>,
        /// Up to this virtual time, in seconds.
        #[arg(long)]
        to: Option<f64>,
    },
}

fn main() -> ExitCode {
    match run(Cli::parse()) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("tinykv-trace: {e:#}");
            ExitCode::from(2)
        }
    }
}

fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    match cli.cmd {
        Cmd::View { path, out } => {
            let trace = tinykv_trace::read(&path)?;
            let out = out.unwrap_or_else(|| path.with_extension("html"));
            std::fs::write(&out, tinykv_trace::html::page(&trace))
                .with_context(|| format!("writing {}", out.display()))?;
            println!(
                "{}: the timeline of {} events; open it in a browser",
                out.display(),
                trace.records.len()
            );
            Ok(ExitCode::SUCCESS)
        }
        Cmd::Explain { path, context } => {
            let trace = tinykv_trace::read(&path)?;
            print!("{}", explain(&trace, context));
            Ok(ExitCode::SUCCESS)
        }
        Cmd::Check { path } => {
            let trace = tinykv_trace::read(&path)?;
            let violations = check(&trace);
            for v in &violations {
                println!("{} {}: {}", secs(v.at_ns), v.invariant, v.detail);
            }
            if violations.is_empty() {
                println!("{} events: no raft invariant broken", trace.records.len());
                Ok(ExitCode::SUCCESS)
            } else {
                Ok(ExitCode::from(1))
            }
        }
        Cmd::Dump {
            path,
            region,
            store,
            from,
            to,
        } => {
            let trace = tinykv_trace::read(&path)?;
            let mut out = std::io::BufWriter::new(std::io::stdout().lock());
            let mut sends = BTreeMap::new();
            let (from, to) = (
                from.map_or(0, |s| (s * 1e9) as u64),
                to.map_or(u64::MAX, |s| (s * 1e9) as u64),
            );
            for r in &trace.records {
                if let Some(Kind::Send(s)) = &r.kind {
                    sends.insert(s.id, s.clone());
                }
                if r.at_ns < from || r.at_ns > to || !matches(r, &sends, region, store) {
                    continue;
                }
                if let Some(line) = describe(r, &sends) {
                    // A reader that stopped early (`| head`) ends the dump, quietly.
                    if writeln!(out, "{line}").is_err() {
                        return Ok(ExitCode::SUCCESS);
                    }
                }
            }
            let _ = out.flush();
            Ok(ExitCode::SUCCESS)
        }
    }
}

/// Whether record `r` concerns `region` and `store` (None: any).
fn matches(
    r: &tinykv_trace::record::Record,
    sends: &BTreeMap<u64, tinykv_trace::record::Send>,
    region: Option<u64>,
    store: Option<u64>,
) -> bool {
    let (rg, st): (Option<u64>, Vec<u64>) = match &r.kind {
        Some(Kind::Send(s)) => (Some(s.region), vec![s.from_store, s.to_store]),
        Some(Kind::Deliver(d)) => sends.get(&d.id).map_or((None, vec![]), |s| {
            (Some(s.region), vec![s.from_store, s.to_store])
        }),
        Some(Kind::Drop(d)) => sends.get(&d.id).map_or((None, vec![]), |s| {
            (Some(s.region), vec![s.from_store, s.to_store])
        }),
        Some(Kind::Role(x)) => (Some(x.region), vec![x.store]),
        Some(Kind::Commit(x)) => (Some(x.region), vec![x.store]),
        Some(Kind::Apply(x)) => (Some(x.region), vec![x.store]),
        Some(Kind::Command(x)) => (Some(x.region), vec![x.store]),
        Some(Kind::Snapshot(x)) => (Some(x.region), vec![x.store, x.peer_store]),
        Some(Kind::Region(x)) => (Some(x.region), vec![x.store]),
        Some(Kind::Note(x)) => (Some(x.region), vec![x.store]),
        Some(Kind::Crash(x)) => (None, vec![x.store]),
        Some(Kind::Start(x)) => (None, vec![x.store]),
        _ => (None, vec![]),
    };
    let region_ok = region.is_none_or(|want| rg.is_none_or(|g| g == want));
    let store_ok = store.is_none_or(|want| st.is_empty() || st.contains(&want));
    region_ok && store_ok
}
