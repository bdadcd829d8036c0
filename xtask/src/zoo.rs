//! The bug zoo (`cargo xtask bug-zoo`, `make bug-zoo`): classic student mistakes as mutants of
//! the reference (course/mutants.toml), each applied to a generated reference tree, and the
//! stage suites run against it. A mutant must be caught: some test of its stages must fail. The
//! table says which tests caught it, how many seeds the first simulated one needed, and what
//! `tinykv-trace explain` says of that failing seed's trace (the first broken raft invariant, or
//! the failed check).
//!
//! One tree (`<target>/bug-zoo/tree`, crate versions `-zoo` so that its artifacts share the
//! target dir with the reference's without mixing) is generated once; each mutant edits one file
//! in it, builds, runs its stages' tests (the simulated scenarios on their default seeds, each test
//! in its own process with a budget), and puts the file back.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use serde::Deserialize;

use crate::manifest::Manifest;
use crate::{gen, runner};

/// course/mutants.toml.
#[derive(Deserialize)]
struct Zoo {
    mutant: Vec<Mutant>,
}

/// One classic mistake, as an edit of one file of the reference.
#[derive(Deserialize, Clone)]
struct Mutant {
    /// A short name.
    id: String,
    /// The mistake, as a student would make it.
    mistake: String,
    /// The file, from the tree's root.
    file: String,
    /// The text to change: it must occur exactly once in the file.
    #[serde(default)]
    find: String,
    /// What it becomes.
    #[serde(default)]
    replace: String,
    /// More edits of the same file, for a mistake made in several places.
    #[serde(default)]
    edits: Vec<Edit>,
    /// The stages whose tests are run against it.
    stages: Vec<String>,
    /// Tests of this project's own beyond the stage suites (no stage suffix) also run against
    /// it: those whose names contain one of these.
    #[serde(default)]
    also: Vec<String>,
}

/// One more edit of a mutant's file.
#[derive(Deserialize, Clone)]
struct Edit {
    find: String,
    replace: String,
}

impl Mutant {
    /// Every `(find, replace)` of the mutant, `find`/`replace` first.
    fn all_edits(&self) -> Vec<(&str, &str)> {
        std::iter::once((self.find.as_str(), self.replace.as_str()))
            .filter(|(f, _)| !f.is_empty())
            .chain(
                self.edits
                    .iter()
                    .map(|e| (e.find.as_str(), e.replace.as_str())),
            )
            .collect()
    }

    /// The mutated text of its file, or why the mutant does not apply.
    fn apply(&self, pristine: &str) -> Result<String> {
        let edits = self.all_edits();
        if edits.is_empty() {
            bail!("mutant {}: no edit", self.id);
        }
        let mut text = pristine.to_string();
        for (find, replace) in edits {
            let n = text.matches(find).count();
            if n != 1 {
                bail!(
                    "mutant {}: a `find` text occurs {n} times in {} (it must occur once: the \
                     reference changed; update course/mutants.toml): {find:?}",
                    self.id,
                    self.file
                );
            }
            if find == replace {
                bail!("mutant {}: an edit that changes nothing", self.id);
            }
            text = text.replacen(find, replace, 1);
        }
        Ok(text)
    }
}

/// What the zoo is asked to do.
pub struct Options {
    /// Only these mutants (all when empty).
    pub only: Vec<String>,
    /// Also run the real-time `threaded::` scenarios (slow; the simulated ones run the same
    /// scenarios).
    pub threaded: bool,
    /// Where the table goes (`bug-zoo.md`).
    pub out: PathBuf,
    /// The cargo target dir (the tree goes under it).
    pub target: PathBuf,
}

/// One test that failed against a mutant.
struct Catch {
    test: String,
    secs: f64,
    /// The first failing seed of a simulated scenario (seeds run from 0).
    seed: Option<u64>,
    why: String,
    /// The trace of the failing seed, and its explanation's cause line.
    trace: Option<String>,
    cause: Option<String>,
}

/// A mutant's row.
struct Row {
    mutant: Mutant,
    ran: usize,
    secs: f64,
    catches: Vec<Catch>,
}

/// The first failing seed named in a simulated scenario's output (`seed=N FAILED`).
fn failing_seed(output: &str) -> Option<u64> {
    output
        .lines()
        .filter_map(|l| {
            let at = l.find("seed=")?;
            let rest = &l[at + 5..];
            let (n, tail) = rest.split_once(' ')?;
            tail.starts_with("FAILED").then(|| n.parse::<u64>().ok())?
        })
        .min()
}

/// The trace the runner wrote for the failing seed (`... trace: PATH`).
fn trace_path(output: &str) -> Option<String> {
    output.lines().find_map(|l| {
        let (_, p) = l.split_once(" trace: ")?;
        Some(p.trim().to_string())
    })
}

/// The cause line of `tinykv-trace explain` for the trace at `path`.
fn cause_of(path: &str) -> Option<String> {
    let trace = tinykv_trace::read(Path::new(path)).ok()?;
    let text = tinykv_trace::check::explain(&trace, 0);
    let cause = text.lines().find(|l| l.starts_with("cause: "))?;
    if cause.starts_with("cause: no raft invariant") {
        // Raft held: the failed check (and a failed client operation, if any) say the rest.
        let failed = text.lines().find(|l| l.starts_with("failed at "))?;
        let client = text.lines().find(|l| l.starts_with("client op "));
        return Some(match client {
            Some(c) => format!("raft held; {failed}; {c}"),
            None => format!("raft held; {failed}"),
        });
    }
    Some(cause.trim_start_matches("cause: ").to_string())
}

/// Runs the zoo; returns 0 when every mutant was caught, 1 otherwise.
pub fn run(root: &Path, m: &Manifest, o: &Options) -> Result<i32> {
    // Each mutant rebuilds the tree once: incremental caches (gigabytes) buy nothing here.
    std::env::set_var("CARGO_INCREMENTAL", "0");
    let text = std::fs::read_to_string(root.join(gen::MUTANTS)).with_context(|| {
        format!(
            "reading {}: the bug zoo runs on the reference (student trees leave it out)",
            gen::MUTANTS
        )
    })?;
    let zoo: Zoo = toml::from_str(&text).context("parsing course/mutants.toml")?;
    let mutants: Vec<Mutant> = zoo
        .mutant
        .into_iter()
        .filter(|mu| o.only.is_empty() || o.only.contains(&mu.id))
        .collect();
    if mutants.is_empty() {
        bail!("no mutant matches {:?}", o.only);
    }
    for mu in &mutants {
        for s in &mu.stages {
            m.stage(s)
                .with_context(|| format!("mutant {}: stage {s}", mu.id))?;
        }
    }
    let dir = o.target.join("bug-zoo").join("tree");
    let mut tree = gen::generate(root, m, "reference", &[])?;
    gen::set_version_suffix(&mut tree, "zoo")?;
    gen::write_tree(&tree, &dir)?;
    let started = Instant::now();
    let mut rows = Vec::new();
    for mu in mutants {
        let path = dir.join(&mu.file);
        let pristine = std::fs::read_to_string(&path)
            .with_context(|| format!("mutant {}: reading {}", mu.id, mu.file))?;
        std::fs::write(&path, mu.apply(&pristine)?)?;
        let row = run_mutant(m, &dir, &mu, o);
        std::fs::write(&path, &pristine)?;
        let row = row?;
        println!(
            "bug-zoo: {} {} ({} tests, {:.0} s)",
            mu.id,
            if row.catches.is_empty() {
                "NOT CAUGHT".to_string()
            } else {
                format!("caught by {} tests", row.catches.len())
            },
            row.ran,
            row.secs
        );
        rows.push(row);
    }
    let table = render(&rows);
    std::fs::create_dir_all(&o.out)?;
    let file = o.out.join("bug-zoo.md");
    std::fs::write(&file, &table)?;
    print!("{table}");
    let missed: Vec<&str> = rows
        .iter()
        .filter(|r| r.catches.is_empty())
        .map(|r| r.mutant.id.as_str())
        .collect();
    println!(
        "bug-zoo: {} mutants, {} caught, in {:.0} s; {}",
        rows.len(),
        rows.len() - missed.len(),
        started.elapsed().as_secs_f64(),
        file.display()
    );
    if missed.is_empty() {
        Ok(0)
    } else {
        eprintln!("bug-zoo: not caught: {missed:?} (a gap in the suites: add a test)");
        Ok(1)
    }
}

fn run_mutant(m: &Manifest, dir: &Path, mu: &Mutant, o: &Options) -> Result<Row> {
    let start = Instant::now();
    let (d, bins, ok) = runner::build_tests(dir)?;
    if !ok {
        let first = d.errors.first().cloned().unwrap_or_default();
        bail!("mutant {}: the mutated tree does not build: {first}", mu.id);
    }
    let tests = runner::list_tests(dir, &bins)?;
    let wanted: Vec<_> = tests
        .iter()
        .filter(|t| {
            let staged = m
                .stage_of_test(&t.name)
                .is_some_and(|s| mu.stages.iter().any(|w| w.eq_ignore_ascii_case(&s.id)));
            let also = mu.also.iter().any(|a| t.name.contains(a.as_str()));
            (staged || also) && (o.threaded || !t.name.starts_with("threaded::"))
        })
        .collect();
    let mut catches = Vec::new();
    for t in &wanted {
        // Generous: a mutant may turn a test into a slow failure (a request timeout per try).
        let out = runner::run_test(dir, t, Duration::from_secs(900), &[])?;
        if out.passed {
            continue;
        }
        let seed = failing_seed(&out.output);
        let trace = trace_path(&out.output);
        let cause = trace.as_deref().and_then(cause_of);
        let why = if out.timed_out {
            "timed out".to_string()
        } else {
            shorten(&out.panic.clone().unwrap_or_else(|| "failed".into()), 160)
        };
        catches.push(Catch {
            test: t.name.clone(),
            secs: out.secs,
            seed,
            why,
            trace,
            cause,
        });
    }
    Ok(Row {
        mutant: mu.clone(),
        ran: wanted.len(),
        secs: start.elapsed().as_secs_f64(),
        catches,
    })
}

/// `text` cut to about `max` characters (a failing test's message may quote a whole value).
fn shorten(text: &str, max: usize) -> String {
    match text.char_indices().nth(max) {
        Some((at, _)) => format!("{} ...", &text[..at]),
        None => text.to_string(),
    }
}

/// The markdown table of the zoo, and each mutant's details.
fn render(rows: &[Row]) -> String {
    let mut s = String::new();
    s += "| mutant | the mistake | stages run | caught by | seeds needed | explain's cause |\n";
    s += "|---|---|---|---|---|---|\n";
    for r in rows {
        let mut by_stage: BTreeMap<String, usize> = BTreeMap::new();
        for c in &r.catches {
            let suffix = c.test.rsplit('_').next().unwrap_or_default().to_uppercase();
            let suite = if r
                .mutant
                .stages
                .iter()
                .any(|s| s.eq_ignore_ascii_case(&suffix))
            {
                suffix
            } else {
                format!(
                    "own test {}",
                    c.test.rsplit("::").next().unwrap_or_default()
                )
            };
            *by_stage.entry(suite).or_default() += 1;
        }
        let caught = if r.catches.is_empty() {
            "**not caught**".to_string()
        } else {
            by_stage
                .iter()
                .map(|(st, n)| format!("{st}: {n}"))
                .collect::<Vec<_>>()
                .join(", ")
                + &format!(" of {} tests", r.ran)
        };
        let seeds = r
            .catches
            .iter()
            .filter_map(|c| c.seed.map(|n| (n + 1, &c.test)))
            .min()
            .map_or("-".to_string(), |(n, t)| format!("{n} ({t})"));
        let cause = r
            .catches
            .iter()
            .find_map(|c| c.cause.clone())
            .unwrap_or_else(|| "-".into());
        let _ = writeln!(
            s,
            "| `{}` | {} | {} | {} | {} | {} |",
            r.mutant.id,
            r.mutant.mistake,
            r.mutant
                .stages
                .iter()
                .chain(&r.mutant.also)
                .cloned()
                .collect::<Vec<_>>()
                .join(", "),
            caught,
            seeds,
            shorten(&cause, 240).replace('|', "\\|")
        );
    }
    s += "\n";
    for r in rows {
        let _ = writeln!(
            s,
            "- `{}` ({}, {} tests in {:.0} s):",
            r.mutant.id, r.mutant.file, r.ran, r.secs
        );
        for c in r.catches.iter().take(5) {
            let _ = writeln!(
                s,
                "  - {} ({:.1} s{}): {}{}",
                c.test,
                c.secs,
                c.seed.map_or(String::new(), |n| format!(", seed {n}")),
                c.why,
                c.trace
                    .as_ref()
                    .map_or(String::new(), |t| format!("; trace {t}"))
            );
        }
        if r.catches.len() > 5 {
            let _ = writeln!(s, "  - and {} more", r.catches.len() - 5);
        }
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seeds_and_traces_are_read_from_a_failing_scenario() {
        let out = "sim::a_2b: seed=0 digest=01 ops=1\nsim::a_2b: seed=3 FAILED; replay: x\n\
                   sim::a_2b: seed=2 FAILED; replay: y\n\
                   sim::a_2b: seed=2 trace: /t/sim-a_2b-seed2.trace\n";
        assert_eq!(failing_seed(out), Some(2));
        assert_eq!(trace_path(out).as_deref(), Some("/t/sim-a_2b-seed2.trace"));
        assert_eq!(failing_seed("seed=1 digest=2"), None);
        assert_eq!(shorten("abcdef", 3), "abc ...");
        assert_eq!(shorten("ab", 3), "ab");
    }

    #[test]
    fn every_mutant_of_the_reference_applies_once() {
        let root = &crate::manifest::test_workspace();
        let Ok(text) = std::fs::read_to_string(root.join(gen::MUTANTS)) else {
            // Only a student tree (a stage stubbed) goes without the mutants.
            let generated = std::fs::read_to_string(root.join("course/generated.toml"))
                .expect("no mutants: this must be a generated student tree");
            assert!(!generated.contains("stubbed = []"), "{generated}");
            return;
        };
        let zoo: Zoo = toml::from_str(&text).unwrap();
        assert!(zoo.mutant.len() >= 5);
        let m = Manifest::load(root).unwrap();
        for mu in &zoo.mutant {
            let file = std::fs::read_to_string(root.join(&mu.file)).unwrap();
            let mutated = mu.apply(&file).unwrap();
            assert_ne!(mutated, file, "mutant {}", mu.id);
            for s in &mu.stages {
                assert!(m.stage(s).is_ok(), "mutant {}: stage {s}", mu.id);
            }
        }
    }
}
