//! Generating a student tree from the reference: every file of the workspace (tests, Makefile,
//! docs, the grader), with the marked regions of the chosen stages stubbed, and the proof that
//! nothing of their solution is left anywhere in the output.

use crate::manifest::Manifest;
use crate::markers::{self, Marked};
use aho_corasick::AhoCorasick;
use anyhow::{bail, Context, Result};
use std::collections::{BTreeMap, BTreeSet, HashSet};
use std::path::{Path, PathBuf};
use std::process::Command;

/// Directories never copied into a student tree (build output, local data, grader output).
const SKIP_DIRS: &[&str] = &[".git", "target", "data", "grade"];

/// A solution line this short (trimmed) is too generic to call a leak when it shows up elsewhere
/// (`Ok(())`, `}`, `let mut wb = WriteBatch::default();` may be anyone's).
const MIN_SECRET_LEN: usize = 28;

/// The lints a stub trips in the crate it is in (the parameters, helpers and imports only the
/// solution used), allowed at the crate root of a generated crate with stubs.
pub const STUB_ALLOW: &str = "#![allow(unused_variables, unused_imports, unused_mut, \
unused_assignments, dead_code, unreachable_code)]";

/// A generated tree, in memory: relative path -> contents.
pub struct Tree {
    /// The files.
    pub files: BTreeMap<PathBuf, Vec<u8>>,
    /// The stages stubbed in it.
    pub stubbed: Vec<String>,
    /// How many regions were stubbed.
    pub regions: usize,
}

/// The files of the reference at `root`: what git tracks or would track (ignored files left
/// out), or, outside a git checkout, every file but the skipped directories.
pub fn source_files(root: &Path) -> Result<Vec<PathBuf>> {
    let git = Command::new("git")
        .args([
            "ls-files",
            "-z",
            "--cached",
            "--others",
            "--exclude-standard",
        ])
        .current_dir(root)
        .output();
    let mut files: Vec<PathBuf> = match git {
        Ok(out) if out.status.success() => out
            .stdout
            .split(|b| *b == 0)
            .filter(|p| !p.is_empty())
            .map(|p| PathBuf::from(String::from_utf8_lossy(p).into_owned()))
            .filter(|p| root.join(p).is_file())
            .collect(),
        _ => source_files_plain(root)?,
    };
    files.retain(|p| {
        !p.components()
            .any(|c| SKIP_DIRS.contains(&c.as_os_str().to_string_lossy().as_ref()))
    });
    files.sort();
    Ok(files)
}

/// Every Rust file of the reference with its markers parsed (but the kit's own sources, whose
/// tests write markers in string literals).
pub fn marked_files(root: &Path, m: &Manifest) -> Result<BTreeMap<PathBuf, Marked>> {
    let ids = m.ids();
    let mut out = BTreeMap::new();
    for rel in source_files(root)? {
        if rel.extension().is_some_and(|e| e == "rs") && !rel.starts_with("xtask") {
            let text = std::fs::read_to_string(root.join(&rel))
                .with_context(|| format!("reading {}", rel.display()))?;
            out.insert(
                rel.clone(),
                markers::parse(&rel.to_string_lossy(), &text, &ids)?,
            );
        }
    }
    Ok(out)
}

/// The crate root (`<crate>/src/lib.rs`) of the library a source file belongs to, if it is one.
fn crate_root(root: &Path, rel: &Path) -> Option<PathBuf> {
    let mut dir = rel.parent();
    while let Some(d) = dir {
        if root.join(d).join("Cargo.toml").is_file() {
            let lib = d.join("src/lib.rs");
            return (rel.starts_with(d.join("src")) && !rel.starts_with(d.join("src/bin")))
                .then_some(lib);
        }
        dir = d.parent();
    }
    None
}

/// Adds [`STUB_ALLOW`] to a crate root after its leading `//!` comment.
fn allow_stub_lints(text: &str) -> String {
    let lines: Vec<&str> = text.lines().collect();
    let at = lines
        .iter()
        .position(|l| !l.starts_with("//!"))
        .unwrap_or(lines.len());
    let mut out: Vec<String> = lines[..at].iter().map(|l| l.to_string()).collect();
    out.push(
        "// Generated student tree: until their stage is written, the stubs leave parameters,"
            .into(),
    );
    out.push("// helpers and imports of the solution unused.".into());
    out.push(STUB_ALLOW.into());
    out.extend(lines[at..].iter().map(|l| l.to_string()));
    let mut s = out.join("\n");
    s.push('\n');
    s
}

/// The bug zoo's mutants (xtask/src/zoo.rs), left out of every tree with a stubbed stage.
pub const MUTANTS: &str = "course/mutants.toml";

/// Generates the tree of the reference at `root` with `stubbed` stages stubbed (`preset` names
/// it in the tree's course/generated.toml), then checks it for leaks.
pub fn generate(root: &Path, m: &Manifest, preset: &str, stubbed: &[String]) -> Result<Tree> {
    let marked = marked_files(root, m)?;
    let is_stubbed = |s: &str| stubbed.iter().any(|x| x == s);
    let mut files = BTreeMap::new();
    let mut roots_with_stubs = BTreeSet::new();
    let mut regions = 0;
    for rel in source_files(root)? {
        // The bug zoo's mutants quote solution lines: instructors' material, not students'.
        if !stubbed.is_empty() && rel == Path::new(MUTANTS) {
            continue;
        }
        let bytes = match marked.get(&rel) {
            Some(mk) => {
                if mk.has_stubbed(&is_stubbed) {
                    regions += mk.regions.iter().filter(|r| is_stubbed(&r.stage)).count();
                    match crate_root(root, &rel) {
                        Some(lib) => {
                            roots_with_stubs.insert(lib);
                        }
                        None => bail!(
                            "{}: stage regions belong in a library crate's src/",
                            rel.display()
                        ),
                    }
                }
                mk.render(&is_stubbed).into_bytes()
            }
            None => std::fs::read(root.join(&rel))
                .with_context(|| format!("reading {}", rel.display()))?,
        };
        files.insert(rel, bytes);
    }
    for lib in roots_with_stubs {
        let text = String::from_utf8(files.get(&lib).cloned().unwrap_or_default())
            .with_context(|| format!("{} is not UTF-8", lib.display()))?;
        files.insert(lib, allow_stub_lints(&text).into_bytes());
    }
    let commit = Command::new("git")
        .args(["rev-parse", "HEAD"])
        .current_dir(root)
        .output()
        .ok()
        .filter(|o| o.status.success())
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
        .unwrap_or_default();
    let stages_list = stubbed
        .iter()
        .map(|s| format!("\"{s}\""))
        .collect::<Vec<_>>()
        .join(", ");
    files.insert(
        PathBuf::from("course/generated.toml"),
        format!(
            "# Written by `cargo xtask course gen`: what this tree is.\npreset = \"{preset}\"\n\
             stubbed = [{stages_list}]\nreference_commit = \"{commit}\"\n"
        )
        .into_bytes(),
    );
    let mut tree = Tree {
        files,
        stubbed: stubbed.to_vec(),
        regions,
    };
    check_no_leaks(&marked, &tree)?;
    set_version_suffix(&mut tree, &preset_version(preset))?;
    Ok(tree)
}

/// Gives the tree's own crates a version of their own, `<version>-<suffix>` (the preset:
/// `0.1.0-only.2ab`, `0.1.0-course`), so that their build artifacts never share names with
/// another tree's in a shared build directory: cargo names a workspace crate's artifacts by its
/// path relative to the workspace and its version, not by the tree it is in, and would
/// otherwise take one tree's build for another's when their files' times allow. The registry
/// dependencies (RocksDB's C++ above all) are still shared, as they should be.
pub fn set_version_suffix(tree: &mut Tree, suffix: &str) -> Result<()> {
    let key = PathBuf::from("Cargo.toml");
    let Some(bytes) = tree.files.get(&key) else {
        // Not a workspace (a test's miniature reference): nothing to separate.
        return Ok(());
    };
    let text = String::from_utf8(bytes.clone()).context("Cargo.toml is not UTF-8")?;
    let mut in_package = false;
    let mut done = false;
    let mut out = Vec::new();
    for line in text.lines() {
        if line.starts_with('[') {
            in_package = line.trim() == "[workspace.package]";
        }
        if in_package && !done && line.trim_start().starts_with("version = \"") {
            let v = line.split('"').nth(1).unwrap_or_default();
            let base = v.split('-').next().unwrap_or(v);
            out.push(format!("version = \"{base}-{suffix}\""));
            done = true;
            continue;
        }
        out.push(line.to_string());
    }
    if !done {
        bail!("Cargo.toml: no version in [workspace.package] to give the tree's crates");
    }
    tree.files.insert(key, (out.join("\n") + "\n").into_bytes());
    Ok(())
}

/// The version suffix of a preset: `only:2AB` -> `only.2ab`.
pub fn preset_version(preset: &str) -> String {
    preset.replace(':', ".").to_ascii_lowercase()
}

/// The solution lines of the stubbed regions that no kept part of the reference has too, long
/// enough to mean something: none may appear anywhere in the tree, as a line or inside one
/// (a comment quoting it, a doc page's example).
pub fn check_no_leaks(marked: &BTreeMap<PathBuf, Marked>, tree: &Tree) -> Result<()> {
    let is_stubbed = |s: &str| tree.stubbed.iter().any(|x| x == s);
    let mut kept: HashSet<String> = HashSet::new();
    let mut secrets: BTreeMap<String, String> = BTreeMap::new();
    for (rel, mk) in marked {
        let mut next = 0;
        for r in &mk.regions {
            for l in &mk.lines[next..r.start] {
                kept.insert(l.trim().to_string());
            }
            if is_stubbed(&r.stage) {
                for l in &r.solution {
                    let t = l.trim();
                    if t.len() >= MIN_SECRET_LEN {
                        secrets.insert(
                            t.to_string(),
                            format!("{}:{} (STAGE {})", rel.display(), r.start + 1, r.stage),
                        );
                    }
                }
                for l in &r.student {
                    kept.insert(l.trim().to_string());
                }
            } else {
                for l in &r.solution {
                    kept.insert(l.trim().to_string());
                }
            }
            next = r.end + 1;
        }
        for l in &mk.lines[next..] {
            kept.insert(l.trim().to_string());
        }
    }
    // Non-Rust files are kept whole.
    for (rel, bytes) in &tree.files {
        if !marked.contains_key(rel) {
            if let Ok(text) = std::str::from_utf8(bytes) {
                for l in text.lines() {
                    kept.insert(l.trim().to_string());
                }
            }
        }
    }
    let secrets: Vec<(String, String)> = secrets
        .into_iter()
        .filter(|(s, _)| !kept.contains(s))
        .collect();
    if secrets.is_empty() {
        return Ok(());
    }
    let ac = AhoCorasick::new(secrets.iter().map(|(s, _)| s.as_str()))
        .context("building the leak matcher")?;
    let mut leaks = Vec::new();
    for (rel, bytes) in &tree.files {
        for mat in ac.find_iter(bytes) {
            let (line, from) = &secrets[mat.pattern().as_usize()];
            let at = bytes[..mat.start()].iter().filter(|b| **b == b'\n').count() + 1;
            leaks.push(format!(
                "{}:{at}: `{line}` of the region at {from}",
                rel.display()
            ));
            if leaks.len() >= 20 {
                break;
            }
        }
    }
    if leaks.is_empty() {
        Ok(())
    } else {
        bail!(
            "the generated tree leaks solution lines of stubbed regions:\n  {}",
            leaks.join("\n  ")
        )
    }
}

/// Writes `tree` to `out`: files whose contents changed (so that cargo rebuilds only what
/// changed when a directory is reused), and removes the files of an earlier tree that are not
/// in this one (the build directory `target/` is left alone).
pub fn write_tree(tree: &Tree, out: &Path) -> Result<()> {
    std::fs::create_dir_all(out).with_context(|| format!("creating {}", out.display()))?;
    let old = source_files_plain(out)?;
    for rel in old {
        if !tree.files.contains_key(&rel) {
            std::fs::remove_file(out.join(&rel))
                .with_context(|| format!("removing {}", rel.display()))?;
        }
    }
    for (rel, bytes) in &tree.files {
        let path = out.join(rel);
        if std::fs::read(&path).is_ok_and(|b| &b == bytes) {
            continue;
        }
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir)?;
        }
        std::fs::write(&path, bytes).with_context(|| format!("writing {}", path.display()))?;
        let src = std::fs::metadata(path.clone())?;
        if rel.extension().is_some_and(|e| e == "sh") || rel.starts_with(".ci") {
            use std::os::unix::fs::PermissionsExt;
            let mut p = src.permissions();
            p.set_mode(0o755);
            std::fs::set_permissions(&path, p)?;
        }
    }
    Ok(())
}

/// Every file under `dir` but the skipped directories (no git).
fn source_files_plain(dir: &Path) -> Result<Vec<PathBuf>> {
    Ok(walkdir::WalkDir::new(dir)
        .into_iter()
        .filter_entry(|e| {
            e.depth() == 0 || !SKIP_DIRS.contains(&e.file_name().to_string_lossy().as_ref())
        })
        .filter_map(|e| e.ok())
        .filter(|e| e.file_type().is_file())
        .filter_map(|e| e.path().strip_prefix(dir).ok().map(Path::to_path_buf))
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write(root: &Path, rel: &str, text: &str) {
        let p = root.join(rel);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(p, text).unwrap();
    }

    /// A two-crate reference without git: the tree stubs the region, adds the lint allowance to
    /// the crate root, keeps other files, and refuses a doc that quotes the solution.
    #[test]
    fn test_generate_stubs_and_refuses_leaks() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        write(
            root,
            "course/stages.toml",
            &std::fs::read_to_string(crate::manifest::test_workspace().join("course/stages.toml"))
                .unwrap(),
        );
        write(
            root,
            "Cargo.toml",
            "[workspace]\nmembers = [\"a\"]\n\n[workspace.package]\nversion = \"0.1.0\"\n",
        );
        write(root, "a/Cargo.toml", "[package]\nname = \"a\"\n");
        write(root, "a/src/lib.rs", "//! Crate a.\npub mod m;\n");
        write(
            root,
            "a/src/m.rs",
            "//! M.\npub fn f(x: u64) -> u64 {\n    // STAGE 2AA: double it\n    let doubled_value_of_x = x.wrapping_mul(2);\n    doubled_value_of_x\n    // END STAGE 2AA\n}\n",
        );
        write(root, "README.md", "# Hi\n");
        write(root, "target/junk.rs", "junk");
        let m = Manifest::load(root).unwrap();
        let tree = generate(root, &m, "only:2AA", &["2AA".into()]).unwrap();
        let text = |p: &str| String::from_utf8(tree.files[Path::new(p)].clone()).unwrap();
        assert!(text("a/src/m.rs").contains("panic!(\"[2AA] f: double it\");"));
        assert!(!text("a/src/m.rs").contains("wrapping_mul"));
        assert!(text("a/src/lib.rs").starts_with("//! Crate a.\n// Generated"));
        assert!(text("a/src/lib.rs").contains(STUB_ALLOW));
        assert_eq!(text("README.md"), "# Hi\n");
        assert!(!tree.files.contains_key(Path::new("target/junk.rs")));
        assert_eq!(tree.regions, 1);
        assert!(text("course/generated.toml").contains("stubbed = [\"2AA\"]"));
        assert!(
            text("Cargo.toml").contains("version = \"0.1.0-only.2aa\""),
            "the tree's crates have a version of their own"
        );
        // The reference itself (nothing stubbed) keeps the solution and has no allowance.
        let reference = generate(root, &m, "reference", &[]).unwrap();
        let r = String::from_utf8(reference.files[Path::new("a/src/m.rs")].clone()).unwrap();
        assert!(r.contains("wrapping_mul") && !r.contains("STAGE"));
        // A doc quoting a solution line is a leak.
        write(
            root,
            "docs/guide.md",
            "Try `let doubled_value_of_x = x.wrapping_mul(2);` here.\n",
        );
        let e = generate(root, &m, "only:2AA", &["2AA".into()])
            .err()
            .unwrap()
            .to_string();
        assert!(
            e.contains("docs/guide.md:1") && e.contains("a/src/m.rs:3"),
            "{e}"
        );
        // Written out, then rewritten with another tree: stale files go, target/ stays.
        let out = tempfile::tempdir().unwrap();
        write_tree(&tree, out.path()).unwrap();
        write(out.path(), "target/keep", "x");
        write(out.path(), "stale.txt", "x");
        write_tree(&reference, out.path()).unwrap();
        assert!(!out.path().join("stale.txt").exists());
        assert!(out.path().join("target/keep").exists());
        assert!(std::fs::read_to_string(out.path().join("a/src/m.rs"))
            .unwrap()
            .contains("wrapping_mul"));
    }
}
