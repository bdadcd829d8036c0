//! `cargo xtask grade` (`make grade`): each stage's tests, each in its own process with a time
//! budget, the simulated suites on their fixed default seeds; a score table, `grade/report.json`
//! and `grade/junit.xml`. Exit 0 when every selected test passed, 1 on failures, 2 when the
//! tree does not build, 3 when it could not grade.

use crate::manifest::{Manifest, Stage};
use crate::runner::{self, Outcome, TestCase};
use anyhow::{Context, Result};
use serde::Serialize;
use std::collections::BTreeMap;
use std::path::Path;
use std::time::{Duration, Instant};

/// Options of a grading run.
pub struct Options {
    /// The stages to grade (all when empty).
    pub stages: Vec<String>,
    /// Where report.json and junit.xml go.
    pub out: std::path::PathBuf,
    /// Write course/calibration.toml from this run's times (the reference only).
    pub calibrate: bool,
}

/// The per-test budget basis: course/calibration.toml, each stage test's seconds on the
/// reference.
#[derive(serde::Deserialize, Serialize, Default)]
struct Calibration {
    /// Test name -> seconds.
    secs: BTreeMap<String, f64>,
}

/// One test's result in the report.
#[derive(Serialize)]
struct TestReport {
    name: String,
    stage: String,
    passed: bool,
    timed_out: bool,
    secs: f64,
    budget_secs: f64,
    panic: Option<String>,
    location: Option<String>,
    placeholders: Vec<String>,
    replay: Option<String>,
    rerun: String,
}

/// One stage's score in the report.
#[derive(Serialize)]
struct StageReport {
    id: String,
    title: String,
    passed: usize,
    total: usize,
    points: f64,
    max_points: u32,
}

/// grade/report.json.
#[derive(Serialize)]
struct Report {
    tree: String,
    stages: Vec<StageReport>,
    score: f64,
    max_score: u32,
    exit_code: i32,
    tests: Vec<TestReport>,
}

/// The exit code of a grading run that could not start: the tree does not build.
pub const EXIT_BUILD: i32 = 2;
/// The exit code of a grading run that could not grade.
pub const EXIT_CANNOT_GRADE: i32 = 3;

/// Grades the tree at `root`; returns the exit code.
pub fn grade(root: &Path, m: &Manifest, o: &Options) -> Result<i32> {
    let stages: Vec<&Stage> = if o.stages.is_empty() {
        m.stages.iter().collect()
    } else {
        o.stages.iter().map(|s| m.stage(s)).collect::<Result<_>>()?
    };
    println!("grade: building the tests");
    let (diags, bins, ok) = runner::build_tests(root)?;
    if !ok || !diags.errors.is_empty() {
        for e in diags.errors.iter().take(10) {
            eprintln!("{e}");
        }
        eprintln!(
            "grade: the tree does not build ({} errors)",
            diags.errors.len()
        );
        return Ok(EXIT_BUILD);
    }
    let tests = runner::list_tests(root, &bins)?;
    let calibration: Calibration = std::fs::read_to_string(root.join("course/calibration.toml"))
        .ok()
        .and_then(|t| toml::from_str(&t).ok())
        .unwrap_or_default();
    let mut selected: Vec<(&Stage, &TestCase)> = Vec::new();
    for s in &stages {
        let mut mine: Vec<&TestCase> = tests
            .iter()
            .filter(|t| m.stage_of_test(&t.name).is_some_and(|st| st.id == s.id))
            .collect();
        // The real-time scenarios last, as in `make test`.
        mine.sort_by_key(|t| t.name.starts_with("threaded::"));
        if mine.is_empty() {
            eprintln!("grade: stage {} has no test here", s.id);
            return Ok(EXIT_CANNOT_GRADE);
        }
        selected.extend(mine.into_iter().map(|t| (*s, t)));
    }
    let tree = std::fs::read_to_string(root.join("course/generated.toml"))
        .ok()
        .and_then(|t| {
            t.lines().find_map(|l| {
                l.strip_prefix("preset = ")
                    .map(|p| p.trim_matches('"').to_string())
            })
        })
        .unwrap_or_else(|| "reference".into());
    println!(
        "grade: {} tests of {} stages, each in its own process (tree: {tree})",
        selected.len(),
        stages.len()
    );
    let started = Instant::now();
    let mut results: Vec<(&Stage, &TestCase, Outcome, f64)> = Vec::new();
    for (i, (stage, t)) in selected.iter().enumerate() {
        let budget = calibration
            .secs
            .get(&t.name)
            .map_or(600.0, |s| (s * m.budget).max(m.min_budget_secs));
        let out = runner::run_test(root, t, Duration::from_secs_f64(budget), &[])?;
        println!(
            "[{:>4}/{}] {:<4} {} {} ({:.1} s)",
            i + 1,
            selected.len(),
            stage.id,
            if out.passed {
                "ok  "
            } else if out.timed_out {
                "TIME"
            } else {
                "FAIL"
            },
            t.name,
            out.secs
        );
        results.push((stage, t, out, budget));
    }
    let mut stage_reports = Vec::new();
    let mut score = 0.0;
    let mut max_score = 0;
    println!();
    println!("{:<5} {:<62} {:>9} {:>9}", "stage", "", "passed", "points");
    for s in &stages {
        let mine: Vec<_> = results.iter().filter(|r| r.0.id == s.id).collect();
        let passed = mine.iter().filter(|r| r.2.passed).count();
        let points = f64::from(s.points) * passed as f64 / mine.len() as f64;
        score += points;
        max_score += s.points;
        println!(
            "{:<5} {:<62.62} {:>4}/{:<4} {:>5.1}/{:<3}",
            s.id,
            s.title,
            passed,
            mine.len(),
            points,
            s.points
        );
        stage_reports.push(StageReport {
            id: s.id.clone(),
            title: s.title.clone(),
            passed,
            total: mine.len(),
            points,
            max_points: s.points,
        });
    }
    println!(
        "{:<5} {:<62} {:>9} {:>5.1}/{:<3}",
        "total", "", "", score, max_score
    );
    let failures: Vec<_> = results.iter().filter(|r| !r.2.passed).collect();
    if !failures.is_empty() {
        println!("\nfailures:");
        for (stage, t, out, budget) in &failures {
            let why = if out.timed_out {
                format!("over its budget of {budget:.0} s")
            } else {
                out.panic.clone().unwrap_or_else(|| "failed".into())
            };
            println!("- [{}] {}: {why}", stage.id, t.name);
            if let Some(loc) = &out.location {
                println!("    at {loc}");
            }
            for p in &out.placeholders {
                println!("    {p}");
            }
            println!(
                "    replay: {}",
                out.replay
                    .clone()
                    .unwrap_or_else(|| runner::rerun_command(t))
            );
        }
    }
    let exit_code = if failures.is_empty() { 0 } else { 1 };
    let report = Report {
        tree,
        stages: stage_reports,
        score,
        max_score,
        exit_code,
        tests: results
            .iter()
            .map(|(s, t, out, budget)| TestReport {
                name: t.name.clone(),
                stage: s.id.clone(),
                passed: out.passed,
                timed_out: out.timed_out,
                secs: out.secs,
                budget_secs: *budget,
                panic: out.panic.clone(),
                location: out.location.clone(),
                placeholders: out.placeholders.clone(),
                replay: out.replay.clone(),
                rerun: runner::rerun_command(t),
            })
            .collect(),
    };
    let out_dir = root.join(&o.out);
    std::fs::create_dir_all(&out_dir)?;
    std::fs::write(
        out_dir.join("report.json"),
        serde_json::to_string_pretty(&report)?,
    )?;
    std::fs::write(out_dir.join("junit.xml"), junit(&results))?;
    println!(
        "\ngrade: {score:.1}/{max_score} in {:.0} s; {} and {}",
        started.elapsed().as_secs_f64(),
        out_dir.join("report.json").display(),
        out_dir.join("junit.xml").display()
    );
    if o.calibrate {
        if !failures.is_empty() {
            eprintln!("grade: not calibrating: the reference must pass every test");
            return Ok(EXIT_CANNOT_GRADE);
        }
        let mut cal: Calibration = std::fs::read_to_string(root.join("course/calibration.toml"))
            .ok()
            .and_then(|t| toml::from_str(&t).ok())
            .unwrap_or_default();
        for (_, t, out, _) in &results {
            cal.secs
                .insert(t.name.clone(), (out.secs * 100.0).round() / 100.0);
        }
        let text = format!(
            "# Each stage test's seconds on the reference (`make grade-calibrate` on 2 cores): the\n\
             # grader gives a test `budget` times this (course/stages.toml), at least `min_budget_secs`.\n{}",
            toml::to_string(&cal).context("writing the calibration")?
        );
        std::fs::write(root.join("course/calibration.toml"), text)?;
        println!("grade: wrote course/calibration.toml");
    }
    Ok(exit_code)
}

/// XML text with its five special characters escaped.
fn xml(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
        .replace('\'', "&apos;")
}

/// A JUnit XML report: one testsuite per stage, one testcase per test, a failure element with
/// the panic, its location and the replay command.
fn junit(results: &[(&Stage, &TestCase, Outcome, f64)]) -> String {
    let mut by_stage: BTreeMap<&str, Vec<&(&Stage, &TestCase, Outcome, f64)>> = BTreeMap::new();
    for r in results {
        by_stage.entry(r.0.id.as_str()).or_default().push(r);
    }
    let mut s = String::from(
        "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<testsuites name=\"tinykv-rs grade\">\n",
    );
    for (id, rs) in by_stage {
        let failures = rs.iter().filter(|r| !r.2.passed).count();
        let time: f64 = rs.iter().map(|r| r.2.secs).sum();
        s.push_str(&format!(
            "  <testsuite name=\"stage {}\" tests=\"{}\" failures=\"{failures}\" time=\"{time:.3}\">\n",
            xml(id),
            rs.len()
        ));
        for (_, t, out, budget) in rs {
            s.push_str(&format!(
                "    <testcase classname=\"{}\" name=\"{}\" time=\"{:.3}\"",
                xml(&t.binary.target),
                xml(&t.name),
                out.secs
            ));
            if out.passed {
                s.push_str("/>\n");
                continue;
            }
            let message = if out.timed_out {
                format!("over its budget of {budget:.0} s")
            } else {
                out.panic.clone().unwrap_or_else(|| "failed".into())
            };
            let replay = out
                .replay
                .clone()
                .unwrap_or_else(|| runner::rerun_command(t));
            s.push_str(&format!(
                ">\n      <failure message=\"{}\">{}\nat {}\nreplay: {}\n\n{}</failure>\n    </testcase>\n",
                xml(&message),
                xml(&message),
                xml(out.location.as_deref().unwrap_or("?")),
                xml(&replay),
                xml(&out.tail)
            ));
        }
        s.push_str("  </testsuite>\n");
    }
    s.push_str("</testsuites>\n");
    s
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::runner::TestBinary;

    #[test]
    fn test_junit_escapes_and_reports_failures() {
        let stage = Stage {
            id: "2B".into(),
            title: "t".into(),
            depends: vec![],
            points: 1,
            guide: String::new(),
            provided_tests: vec![],
        };
        let t = |name: &str| TestCase {
            name: name.into(),
            binary: TestBinary {
                exe: "/x".into(),
                target: "test_2b".into(),
                lib: false,
            },
        };
        let out = |passed| Outcome {
            passed,
            timed_out: false,
            secs: 1.5,
            panic: (!passed).then(|| "[2B] propose: <a> & \"b\"".to_string()),
            location: None,
            replay: (!passed).then(|| "TINYKV_SEED=3 cargo test".to_string()),
            placeholders: vec![],
            tail: String::new(),
            output: String::new(),
        };
        let (a, b) = (t("sim::test_a_2b"), t("sim::test_b_2b"));
        let rs = vec![
            (&stage, &a, out(true), 30.0),
            (&stage, &b, out(false), 30.0),
        ];
        let x = junit(&rs);
        assert!(x.contains("tests=\"2\" failures=\"1\""), "{x}");
        assert!(
            x.contains("<testcase classname=\"test_2b\" name=\"sim::test_a_2b\" time=\"1.500\"/>")
        );
        assert!(x.contains("message=\"[2B] propose: &lt;a&gt; &amp; &quot;b&quot;\""));
        assert!(x.contains("replay: TINYKV_SEED=3 cargo test"));
    }
}
