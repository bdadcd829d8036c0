//! Building a tree's test binaries, listing their tests, and running one test in its own
//! process with a time budget: what the verifier and the grader share.

use anyhow::{bail, Context, Result};
use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// A test binary cargo built.
#[derive(Clone, Debug)]
pub struct TestBinary {
    /// Its path.
    pub exe: PathBuf,
    /// Its target's name (`test_3b`, or the crate's for unit tests).
    pub target: String,
    /// Whether it holds a library's unit tests.
    pub lib: bool,
}

/// One test of a binary.
#[derive(Clone, Debug)]
pub struct TestCase {
    /// Its full name (`sim::test_one_split_3b`).
    pub name: String,
    /// The binary that runs it.
    pub binary: TestBinary,
}

/// What running one test gave.
#[derive(Clone, Debug)]
pub struct Outcome {
    /// Passed within its budget.
    pub passed: bool,
    /// Killed at its budget.
    pub timed_out: bool,
    /// Wall time.
    pub secs: f64,
    /// The panic message (first line after `panicked at`), if any.
    pub panic: Option<String>,
    /// Where it panicked (`file:line:col`), if it did.
    pub location: Option<String>,
    /// The replay command the test printed (a simulated seed's), if any.
    pub replay: Option<String>,
    /// The placeholders of unwritten code that announced themselves (`[2AB] f: not written
    /// yet, a placeholder stands in`).
    pub placeholders: Vec<String>,
    /// The last lines of its output.
    pub tail: String,
    /// Its whole output (stdout, then stderr).
    pub output: String,
}

/// Counts of a `cargo` build's diagnostics in the workspace's own packages.
#[derive(Clone, Debug, Default)]
pub struct Diagnostics {
    /// Warnings, rendered.
    pub warnings: Vec<String>,
    /// Errors, rendered.
    pub errors: Vec<String>,
}

/// Runs `cargo <args> --message-format=json` in `dir`; returns the workspace packages'
/// diagnostics, the test executables built, and whether cargo succeeded.
pub fn cargo_json(dir: &Path, args: &[&str]) -> Result<(Diagnostics, Vec<TestBinary>, bool)> {
    let out = Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()))
        .args(args)
        .arg("--message-format=json-diagnostic-rendered-ansi")
        .current_dir(dir)
        .env_remove("RUSTFLAGS")
        .stderr(Stdio::inherit())
        .output()
        .with_context(|| format!("running cargo in {}", dir.display()))?;
    let mut diags = Diagnostics::default();
    let mut bins = Vec::new();
    for line in String::from_utf8_lossy(&out.stdout).lines() {
        let Ok(v) = serde_json::from_str::<serde_json::Value>(line) else {
            continue;
        };
        let local = v["package_id"]
            .as_str()
            .is_some_and(|p| p.starts_with("path+file://"));
        match v["reason"].as_str() {
            Some("compiler-message") if local => {
                let msg = &v["message"];
                let text = msg["rendered"].as_str().unwrap_or_default().to_string();
                match msg["level"].as_str() {
                    Some("warning") => diags.warnings.push(text),
                    Some("error") => diags.errors.push(text),
                    _ => {}
                }
            }
            Some("compiler-artifact") if local && v["profile"]["test"] == true => {
                if let Some(exe) = v["executable"].as_str() {
                    let kinds = v["target"]["kind"].as_array().cloned().unwrap_or_default();
                    bins.push(TestBinary {
                        exe: PathBuf::from(exe),
                        target: v["target"]["name"].as_str().unwrap_or_default().to_string(),
                        lib: kinds.iter().any(|k| k == "lib"),
                    });
                }
            }
            _ => {}
        }
    }
    Ok((diags, bins, out.status.success()))
}

/// Builds every test binary of the workspace in `dir` (`cargo test --workspace --no-run`).
pub fn build_tests(dir: &Path) -> Result<(Diagnostics, Vec<TestBinary>, bool)> {
    cargo_json(dir, &["test", "--workspace", "--no-run"])
}

/// The tests of `bins` (`<exe> --list`), in a stable order.
pub fn list_tests(dir: &Path, bins: &[TestBinary]) -> Result<Vec<TestCase>> {
    let mut out = Vec::new();
    for b in bins {
        let o = Command::new(&b.exe)
            .args(["--list", "--format", "terse"])
            .current_dir(dir)
            .output()
            .with_context(|| format!("listing {}", b.exe.display()))?;
        if !o.status.success() {
            bail!("listing the tests of {} failed", b.exe.display());
        }
        for line in String::from_utf8_lossy(&o.stdout).lines() {
            if let Some(name) = line.strip_suffix(": test") {
                out.push(TestCase {
                    name: name.to_string(),
                    binary: b.clone(),
                });
            }
        }
    }
    out.sort_by(|a, b| (&a.binary.target, &a.name).cmp(&(&b.binary.target, &b.name)));
    Ok(out)
}

/// The command that reruns one test from the tree's root.
pub fn rerun_command(t: &TestCase) -> String {
    // `--workspace` always (with `-p`, cargo resolves features differently and rebuilds);
    // a unit test's full name is specific enough among the libraries.
    let which = if t.binary.lib {
        "--lib".to_string()
    } else {
        format!("--test {}", t.binary.target)
    };
    format!("cargo test --workspace {which} -- {} --exact", t.name)
}

/// Runs one test in its own process from `dir`, killed after `budget`; `env` is added to the
/// environment (the seed variables of `make test` removed first, so the suites' fixed default
/// seeds run).
pub fn run_test(
    dir: &Path,
    t: &TestCase,
    budget: Duration,
    env: &[(&str, &str)],
) -> Result<Outcome> {
    let start = Instant::now();
    let mut cmd = Command::new(&t.binary.exe);
    cmd.args([
        t.name.as_str(),
        "--exact",
        "--nocapture",
        "--test-threads=1",
    ])
    .current_dir(dir)
    .env_remove("TINYKV_SEED")
    .env_remove("TINYKV_SEEDS")
    .env_remove("TINYKV_SEED_BASE")
    .env("RUST_BACKTRACE", "0")
    .stdin(Stdio::null())
    .stdout(Stdio::piped())
    .stderr(Stdio::piped());
    for (k, v) in env {
        cmd.env(k, v);
    }
    // Its own process group, so a budget kill takes any child processes with it.
    {
        use std::os::unix::process::CommandExt;
        cmd.process_group(0);
    }
    let mut child = cmd
        .spawn()
        .with_context(|| format!("starting {}", t.binary.exe.display()))?;
    let mut stdout = child.stdout.take().expect("piped");
    let mut stderr = child.stderr.take().expect("piped");
    let out_reader = std::thread::spawn(move || {
        let mut b = Vec::new();
        let _ = stdout.read_to_end(&mut b);
        b
    });
    let err_reader = std::thread::spawn(move || {
        let mut b = Vec::new();
        let _ = stderr.read_to_end(&mut b);
        b
    });
    let mut timed_out = false;
    let status = loop {
        if let Some(s) = child.try_wait()? {
            break Some(s);
        }
        if start.elapsed() > budget {
            timed_out = true;
            // The whole process group: a test that started processes takes them with it.
            let _ = Command::new("kill")
                .args(["-KILL", &format!("-{}", child.id())])
                .status();
            let _ = child.kill();
            let _ = child.wait();
            break None;
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    let secs = start.elapsed().as_secs_f64();
    let mut text = String::from_utf8_lossy(&out_reader.join().unwrap_or_default()).into_owned();
    text.push_str(&String::from_utf8_lossy(
        &err_reader.join().unwrap_or_default(),
    ));
    let passed = !timed_out && status.is_some_and(|s| s.success());
    let (location, panic) = find_panic(&text);
    let replay = text
        .lines()
        .find(|l| l.contains("TINYKV_SEED=") && l.contains("cargo test"))
        .map(|l| {
            let at = l.find("TINYKV_SEED=").unwrap_or(0);
            l[at..].trim().to_string()
        });
    let lines: Vec<&str> = text.lines().collect();
    let mut placeholders: Vec<String> = lines
        .iter()
        .filter(|l| l.contains("not written yet, a placeholder stands in"))
        .map(|l| l.trim().to_string())
        .collect();
    placeholders.dedup();
    let tail = lines[lines.len().saturating_sub(30)..].join("\n");
    Ok(Outcome {
        passed,
        timed_out,
        secs,
        panic,
        location,
        replay,
        placeholders,
        tail,
        output: text.clone(),
    })
}

/// The first panic of a test's output: where, and its message's first line.
pub fn find_panic(text: &str) -> (Option<String>, Option<String>) {
    let lines: Vec<&str> = text.lines().collect();
    for (i, l) in lines.iter().enumerate() {
        if let Some(at) = l.find("panicked at ") {
            let rest = &l[at + "panicked at ".len()..];
            // `panicked at file:line:col:` then the message on the next line (Rust >= 1.73).
            let loc = rest.trim_end_matches(':').to_string();
            let msg = lines.get(i + 1).map(|m| m.trim().to_string());
            return (Some(loc), msg);
        }
    }
    (None, None)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn test_find_panic_reads_location_and_message() {
        let out = "running 1 test\n\nthread 'sim::t_2b' (12) panicked at tests/src/sim.rs:10:5:\n[2B] propose: not written\nnote: run with `RUST_BACKTRACE=1`\n";
        let (loc, msg) = find_panic(out);
        assert_eq!(loc.as_deref(), Some("tests/src/sim.rs:10:5"));
        assert_eq!(msg.as_deref(), Some("[2B] propose: not written"));
        assert_eq!(find_panic("ok\n"), (None, None));
    }

    #[test]
    fn test_rerun_command_names_the_target() {
        let bin = |target: &str, lib| TestBinary {
            exe: PathBuf::from("/x"),
            target: target.into(),
            lib,
        };
        let t = TestCase {
            name: "sim::test_one_split_3b".into(),
            binary: bin("test_3b", false),
        };
        assert_eq!(
            rerun_command(&t),
            "cargo test --workspace --test test_3b -- sim::test_one_split_3b --exact"
        );
        let u = TestCase {
            name: "m::test_x_2aa".into(),
            binary: bin("raft", true),
        };
        assert_eq!(
            rerun_command(&u),
            "cargo test --workspace --lib -- m::test_x_2aa --exact"
        );
    }
}
