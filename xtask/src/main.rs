//! `cargo xtask`: the workspace's own tasks.
//!
//! - `course gen --preset course|reference|only:S|from:S --out DIR`: a student tree generated
//!   from the reference (docs/course/README.md).
//! - `course verify [--full] [--stage S]...`: proof that the generated trees are right.
//! - `course list`: the stages and their marked regions.
//! - `course docs [--check]`: the guides' test tables, from the test sources.
//! - `grade [--stage S]... [--calibrate]`: the grader (`make grade`).
//! - `bug-zoo [--mutant ID]... [--threaded]`: classic mistakes as mutants of the reference, and
//!   the suites that catch them (`make bug-zoo`).

mod docs;
mod gen;
mod grade;
mod manifest;
mod markers;
mod runner;
mod verify;
mod zoo;

use anyhow::{bail, Context, Result};
use clap::{Parser, Subcommand};
use manifest::Manifest;
use std::path::{Path, PathBuf};

/// The workspace's own tasks: the coursework kit and the grader.
#[derive(Parser)]
#[command(name = "cargo xtask")]
struct Cli {
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Student trees: generate, verify, list the stages.
    Course {
        #[command(subcommand)]
        cmd: CourseCmd,
    },
    /// Grades this tree: each stage's tests in their own processes, a score table,
    /// grade/report.json and grade/junit.xml; exit 0 all passed, 1 failures, 2 does not build,
    /// 3 could not grade.
    Grade {
        /// A stage to grade (repeatable; all when none), e.g. `--stage 2b`.
        #[arg(long = "stage")]
        stages: Vec<String>,
        /// Where the reports go.
        #[arg(long, default_value = "grade")]
        out: PathBuf,
        /// Record each test's time as course/calibration.toml (run on the reference).
        #[arg(long)]
        calibrate: bool,
    },
    /// The bug zoo: each mutant of course/mutants.toml applied to a reference tree, its stages'
    /// tests run; exit 0 when every mutant was caught, 1 otherwise.
    BugZoo {
        /// A mutant to run (repeatable; all when none).
        #[arg(long = "mutant")]
        only: Vec<String>,
        /// Also run the real-time `threaded::` scenarios.
        #[arg(long)]
        threaded: bool,
        /// Where the table (bug-zoo.md) goes.
        #[arg(long, default_value = "grade")]
        out: PathBuf,
    },
}

#[derive(Subcommand)]
enum CourseCmd {
    /// Writes a student tree.
    Gen {
        /// `course` (every stage to write), `only:S`, `from:S` (S and later), `reference`.
        #[arg(long, default_value = "course")]
        preset: String,
        /// The directory to write (created; an existing tree there is replaced, its target/
        /// kept).
        #[arg(long)]
        out: PathBuf,
    },
    /// Proves the generated trees right: quick (`cargo check` of every `only:S` tree and the
    /// `course` tree) or `--full` (tests: S's fail at S's stubs, the others pass).
    Verify {
        /// Build and run the tests, not only check the trees.
        #[arg(long)]
        full: bool,
        /// A stage to verify (repeatable; all when none).
        #[arg(long = "stage")]
        stages: Vec<String>,
        /// Where the trees are written (default: course-verify/ under the cargo target dir).
        #[arg(long)]
        work: Option<PathBuf>,
        /// With --full, also run the independent stages' real-time `threaded::` scenarios.
        #[arg(long)]
        threaded: bool,
        /// With --full, the seeds each simulated scenario runs.
        #[arg(long, default_value_t = 2)]
        seeds: u64,
    },
    /// The stages, their marked regions and their tests' suffixes.
    List,
    /// Rewrites the test tables of the guides (docs/course/) from the test sources.
    Docs {
        /// Fail if a table is out of date instead of rewriting it.
        #[arg(long)]
        check: bool,
    },
}

/// The workspace root: the directory of this crate's parent, or the current directory's
/// nearest ancestor with course/stages.toml.
fn root() -> Result<PathBuf> {
    let mut dir = std::env::current_dir()?;
    loop {
        if dir.join("course/stages.toml").is_file() {
            return Ok(dir);
        }
        if !dir.pop() {
            bail!("not inside a tinykv-rs tree (no course/stages.toml above here)");
        }
    }
}

fn target_dir(root: &Path) -> PathBuf {
    std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| root.join("target"))
}

fn main() {
    match run() {
        Ok(code) => std::process::exit(code),
        Err(e) => {
            eprintln!("xtask: {e:#}");
            std::process::exit(grade::EXIT_CANNOT_GRADE);
        }
    }
}

fn run() -> Result<i32> {
    let cli = Cli::parse();
    let root = root()?;
    let m = Manifest::load(&root)?;
    match cli.cmd {
        Cmd::Course { cmd } => match cmd {
            CourseCmd::Gen { preset, out } => {
                let stubbed = m.preset(&preset)?;
                let out = if out.is_absolute() {
                    out
                } else {
                    std::env::current_dir()?.join(out)
                };
                if out.starts_with(&root) {
                    bail!(
                        "--out must be outside the reference tree ({})",
                        root.display()
                    );
                }
                let tree = gen::generate(&root, &m, &preset, &stubbed)?;
                gen::write_tree(&tree, &out)
                    .with_context(|| format!("writing {}", out.display()))?;
                println!(
                    "course gen: {} ({} files, {} regions of stages [{}] stubbed) -> {}",
                    preset,
                    tree.files.len(),
                    tree.regions,
                    stubbed.join(", "),
                    out.display()
                );
                Ok(0)
            }
            CourseCmd::Verify {
                full,
                stages,
                work,
                threaded,
                seeds,
            } => {
                // The trees' builds share the reference's build directory, so the dependencies
                // (RocksDB's C++ above all) are built once.
                let target = target_dir(&root);
                std::env::set_var("CARGO_TARGET_DIR", &target);
                let work = work.unwrap_or_else(|| target.join("course-verify"));
                verify::verify(
                    &root,
                    &m,
                    &verify::Options {
                        full,
                        stages,
                        work,
                        threaded,
                        seeds,
                    },
                )?;
                Ok(0)
            }
            CourseCmd::Docs { check } => {
                let changed = docs::update(&root, &m, check)?;
                if check {
                    println!("course docs: every test table is up to date");
                } else {
                    for p in &changed {
                        println!("course docs: rewrote the tables of {}", p.display());
                    }
                    if changed.is_empty() {
                        println!("course docs: every test table was up to date");
                    }
                }
                Ok(0)
            }
            CourseCmd::List => {
                let marked = gen::marked_files(&root, &m)?;
                for s in &m.stages {
                    let mut where_: Vec<String> = Vec::new();
                    for (rel, mk) in &marked {
                        for r in mk.regions.iter().filter(|r| r.stage == s.id) {
                            where_.push(format!(
                                "{}:{} {}",
                                rel.display(),
                                r.start + 1,
                                r.func.as_deref().unwrap_or("")
                            ));
                        }
                    }
                    println!(
                        "{:<4} {} ({} regions; tests *_{}; guide {})",
                        s.id,
                        s.title,
                        where_.len(),
                        s.id.to_ascii_lowercase(),
                        s.guide
                    );
                    for w in where_ {
                        println!("       {w}");
                    }
                }
                Ok(0)
            }
        },
        Cmd::Grade {
            stages,
            out,
            calibrate,
        } => grade::grade(
            &root,
            &m,
            &grade::Options {
                stages,
                out,
                calibrate,
            },
        ),
        Cmd::BugZoo {
            only,
            threaded,
            out,
        } => zoo::run(
            &root,
            &m,
            &zoo::Options {
                only,
                threaded,
                out: root.join(out),
                target: target_dir(&root),
            },
        ),
    }
}
