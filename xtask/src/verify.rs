//! `cargo xtask course verify`: proof that the generated trees are right.
//!
//! Quick form (in `make test`): every stage has marked regions; the `only:S` tree of each stage,
//! and the `course` tree, generate without leaks and `cargo check` with no warning or error.
//! Full form (`make course-verify`): for each stage S, the `only:S` tree's tests build without
//! warnings, every S test fails by reaching an `[S]` stub, and every test of a stage that does
//! not need S passes; and on the reference tree (the regions put back) every stage test passes.

use crate::gen;
use crate::manifest::Manifest;
use crate::runner::{self, TestCase};
use anyhow::{bail, Result};
use std::path::Path;
use std::time::{Duration, Instant};

/// Options of a verification run.
pub struct Options {
    /// Build and run the tests (the full form), not only `cargo check`.
    pub full: bool,
    /// The stages to verify (all when empty).
    pub stages: Vec<String>,
    /// Where the trees are written (one directory reused, so cargo rebuilds only what changed).
    pub work: std::path::PathBuf,
    /// In the full form, run the real-time `threaded::` scenarios of the independent stages too
    /// (their simulated twins run the same code).
    pub threaded: bool,
    /// In the full form, the seeds each simulated scenario runs (`TINYKV_SEEDS`): the proof is
    /// about which stub a test reaches, not a soak (the grader runs the default seeds).
    pub seeds: u64,
}

/// What test `name` is to the verification of stage `id`: `Some(true)` one of its own (to fail
/// at its stubs), `Some(false)` one of a stage that does not need it (to pass; the real-time
/// scenarios only with `threaded`), `None` not run.
fn role(m: &Manifest, id: &str, name: &str, threaded: bool) -> Option<bool> {
    let stage = m.stage_of_test(name)?;
    if stage.id == id {
        return Some(true);
    }
    if m.needs(stage, id) || (!threaded && name.starts_with("threaded::")) {
        return None;
    }
    Some(false)
}

/// Checks the tree in `dir` builds without warnings: `cargo check` of every target.
fn check_tree(dir: &Path, label: &str) -> Result<()> {
    let start = Instant::now();
    let (d, _, ok) = runner::cargo_json(dir, &["check", "--workspace", "--all-targets"])?;
    report_diags(label, &d, ok)?;
    println!(
        "{label}: builds, no warnings ({:.0} s)",
        start.elapsed().as_secs_f64()
    );
    Ok(())
}

fn report_diags(label: &str, d: &runner::Diagnostics, ok: bool) -> Result<()> {
    if !ok || !d.errors.is_empty() || !d.warnings.is_empty() {
        for m in d.errors.iter().chain(&d.warnings).take(10) {
            eprintln!("{m}");
        }
        bail!(
            "{label}: {} errors, {} warnings{}",
            d.errors.len(),
            d.warnings.len(),
            if ok { "" } else { " (the build failed)" }
        );
    }
    Ok(())
}

/// Runs the verification; errors name the first stage and check that failed.
pub fn verify(root: &Path, m: &Manifest, o: &Options) -> Result<()> {
    let all = Instant::now();
    // The trees are built once each: incremental caches (gigabytes per tree) buy nothing here.
    std::env::set_var("CARGO_INCREMENTAL", "0");
    let marked = gen::marked_files(root, m)?;
    if marked.values().all(|mk| mk.regions.is_empty()) {
        bail!("no stage markers here: this is a generated student tree, not the reference");
    }
    let stages: Vec<String> = if o.stages.is_empty() {
        m.ids()
    } else {
        o.stages
            .iter()
            .map(|s| m.stage(s).map(|st| st.id.clone()))
            .collect::<Result<_>>()?
    };
    for id in &stages {
        let n: usize = marked
            .values()
            .map(|mk| mk.regions.iter().filter(|r| &r.stage == id).count())
            .sum();
        if n == 0 {
            bail!("stage {id} has no marked region");
        }
    }
    let tree_dir = o.work.join("tree");
    let reference_tests = if o.full {
        Some(verify_reference(root, m, &tree_dir, &stages, o)?)
    } else {
        None
    };
    for id in &stages {
        let mut tree = gen::generate(root, m, &format!("only:{id}"), std::slice::from_ref(id))?;
        gen::set_version_suffix(&mut tree, "verify")?;
        gen::write_tree(&tree, &tree_dir)?;
        let label = format!("only:{id} ({} regions)", tree.regions);
        match &reference_tests {
            None => check_tree(&tree_dir, &label)?,
            Some(times) => verify_stage_tests(m, id, &tree_dir, &label, times, o)?,
        }
    }
    if o.stages.is_empty() {
        let mut tree = gen::generate(root, m, "course", &m.ids())?;
        gen::set_version_suffix(&mut tree, "verify")?;
        gen::write_tree(&tree, &tree_dir)?;
        check_tree(&tree_dir, &format!("course ({} regions)", tree.regions))?;
    }
    println!(
        "course verify{}: {} stages verified in {:.0} s",
        if o.full { " (full)" } else { "" },
        stages.len(),
        all.elapsed().as_secs_f64()
    );
    Ok(())
}

/// The reference tree (every region put back): every stage test passes. Returns each test's
/// time there, for the budgets of the stubbed runs.
fn verify_reference(
    root: &Path,
    m: &Manifest,
    dir: &Path,
    stages: &[String],
    o: &Options,
) -> Result<std::collections::BTreeMap<String, f64>> {
    let seeds = o.seeds.to_string();
    let mut tree = gen::generate(root, m, "reference", &[])?;
    gen::set_version_suffix(&mut tree, "verify")?;
    gen::write_tree(&tree, dir)?;
    let (d, bins, ok) = runner::build_tests(dir)?;
    report_diags("reference", &d, ok)?;
    let tests = runner::list_tests(dir, &bins)?;
    let mut times = std::collections::BTreeMap::new();
    let start = Instant::now();
    // The tests the stage runs below will run: each must pass here first.
    let staged: Vec<&TestCase> = tests
        .iter()
        .filter(|t| {
            stages
                .iter()
                .any(|id| role(m, id, &t.name, o.threaded).is_some())
        })
        .collect();
    for t in &staged {
        let out = runner::run_test(
            dir,
            t,
            Duration::from_secs(1800),
            &[("TINYKV_SEEDS", &seeds)],
        )?;
        if !out.passed {
            bail!(
                "reference: {} fails ({}): {}",
                t.name,
                out.panic.unwrap_or_default(),
                runner::rerun_command(t)
            );
        }
        times.insert(t.name.clone(), out.secs);
    }
    println!(
        "reference: all {} stage tests pass ({:.0} s)",
        staged.len(),
        start.elapsed().as_secs_f64()
    );
    Ok(times)
}

/// The `only:S` tree in `dir`: builds its tests without warnings, every S test fails at an `[S]`
/// stub, every test of a stage that does not need S passes.
fn verify_stage_tests(
    m: &Manifest,
    id: &str,
    dir: &Path,
    label: &str,
    times: &std::collections::BTreeMap<String, f64>,
    o: &Options,
) -> Result<()> {
    let seeds = o.seeds.to_string();
    let start = Instant::now();
    let (d, bins, ok) = runner::build_tests(dir)?;
    report_diags(label, &d, ok)?;
    let tests = runner::list_tests(dir, &bins)?;
    let tag = format!("[{id}] ");
    let (mut failing, mut passing) = (0, 0);
    for t in &tests {
        let Some(own) = role(m, id, &t.name, o.threaded) else {
            continue;
        };
        let stage = m.stage_of_test(&t.name).expect("a role means a stage");
        let reference = times.get(&t.name).copied().unwrap_or(60.0);
        let budget = Duration::from_secs_f64((reference * m.budget).max(m.min_budget_secs));
        let out = runner::run_test(dir, t, budget, &[("TINYKV_SEEDS", &seeds)])?;
        if own
            && stage
                .provided_tests
                .iter()
                .any(|p| t.name.ends_with(p.as_str()))
        {
            if !out.passed {
                bail!(
                    "{label}: {} is listed as passing on provided code, but fails: {:?}\n  {}",
                    t.name,
                    out.panic,
                    runner::rerun_command(t)
                );
            }
            passing += 1;
        } else if own {
            // A stub's panic, or a placeholder's notice before the assertion that failed.
            let reached = out.output.contains(&tag);
            if out.passed || !reached {
                bail!(
                    "{label}: {} {} instead of failing at a {tag}stub or placeholder (panic: {:?})\n  {}",
                    t.name,
                    if out.passed { "passes" } else { "fails" },
                    out.panic,
                    runner::rerun_command(t)
                );
            }
            failing += 1;
        } else {
            if !out.passed {
                bail!(
                    "{label}: {} (stage {}, which does not need {id}) fails: {:?}\n  {}",
                    t.name,
                    stage.id,
                    out.panic,
                    runner::rerun_command(t)
                );
            }
            passing += 1;
        }
    }
    if failing == 0 {
        bail!("{label}: stage {id} has no test");
    }
    println!(
        "{label}: {failing} {id} tests fail at their stubs, {passing} independent tests pass ({:.0} s)",
        start.elapsed().as_secs_f64()
    );
    Ok(())
}
