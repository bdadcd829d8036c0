//! The course's stages (course/stages.toml) and the presets that choose which of them a student
//! tree leaves to write.

use anyhow::{bail, Context, Result};
use serde::Deserialize;
use std::path::Path;

/// course/stages.toml.
#[derive(Clone, Debug, Deserialize)]
pub struct Manifest {
    /// A test's time budget in the grader is at least this many seconds.
    pub min_budget_secs: f64,
    /// A test's time budget is this multiple of its time on the reference.
    pub budget: f64,
    /// The stages, in the order they are taken.
    #[serde(rename = "stage")]
    pub stages: Vec<Stage>,
}

/// One stage of the course.
#[derive(Clone, Debug, Deserialize)]
pub struct Stage {
    /// Its id (`2AB`): the marker's and, in lower case, the test names' suffix.
    pub id: String,
    /// What the student builds.
    pub title: String,
    /// The stages whose code its tests also run.
    pub depends: Vec<String>,
    /// Its weight in the grade.
    pub points: u32,
    /// Its guide page.
    pub guide: String,
    /// Its tests that pass on the provided code alone (each with the reason in
    /// course/stages.toml): the verifier expects them to pass in the `only:<id>` tree.
    #[serde(default)]
    pub provided_tests: Vec<String>,
}

impl Manifest {
    /// Reads `<root>/course/stages.toml` and checks it (known, earlier dependencies; unique ids).
    pub fn load(root: &Path) -> Result<Manifest> {
        let path = root.join("course/stages.toml");
        let text = std::fs::read_to_string(&path)
            .with_context(|| format!("reading {}", path.display()))?;
        let m: Manifest = toml::from_str(&text).with_context(|| format!("{}", path.display()))?;
        for (i, s) in m.stages.iter().enumerate() {
            if m.stages[..i].iter().any(|o| o.id == s.id) {
                bail!("course/stages.toml: stage {} appears twice", s.id);
            }
            for d in &s.depends {
                if !m.stages[..i].iter().any(|o| &o.id == d) {
                    bail!(
                        "course/stages.toml: stage {} depends on {d}, which is not an earlier stage",
                        s.id
                    );
                }
            }
        }
        Ok(m)
    }

    /// The stage ids, in order.
    pub fn ids(&self) -> Vec<String> {
        self.stages.iter().map(|s| s.id.clone()).collect()
    }

    /// The stage with id `id` (any case).
    pub fn stage(&self, id: &str) -> Result<&Stage> {
        self.stages
            .iter()
            .find(|s| s.id.eq_ignore_ascii_case(id))
            .with_context(|| format!("unknown stage `{id}` (stages: {})", self.ids().join(", ")))
    }

    /// The stage a test belongs to, from its name's suffix (`..._2ab` is 2AB).
    pub fn stage_of_test(&self, name: &str) -> Option<&Stage> {
        let (_, suffix) = name.rsplit_once('_')?;
        self.stages
            .iter()
            .find(|s| s.id.to_ascii_lowercase() == suffix)
    }

    /// Whether the tests of `test_stage` need the code of `code_stage`.
    pub fn needs(&self, test_stage: &Stage, code_stage: &str) -> bool {
        test_stage.id == code_stage || test_stage.depends.iter().any(|d| d == code_stage)
    }

    /// The stages a preset stubs: `course` (all), `reference` (none), `only:S`, `from:S` (S and
    /// every later stage).
    pub fn preset(&self, preset: &str) -> Result<Vec<String>> {
        if preset == "course" {
            return Ok(self.ids());
        }
        if preset == "reference" {
            return Ok(Vec::new());
        }
        if let Some(s) = preset.strip_prefix("only:") {
            return Ok(vec![self.stage(s)?.id.clone()]);
        }
        if let Some(s) = preset.strip_prefix("from:") {
            let first = self.stage(s)?.id.clone();
            let at = self.stages.iter().position(|o| o.id == first).unwrap_or(0);
            return Ok(self.stages[at..].iter().map(|o| o.id.clone()).collect());
        }
        bail!("unknown preset `{preset}` (course, reference, only:<stage>, from:<stage>)")
    }
}

/// The workspace a test runs in: cargo's `CARGO_MANIFEST_DIR` when the test runs (xtask's
/// directory) rather than the one compiled in, which is where the binary was built: a build
/// directory shared between clones (CI's cache) may hold a test binary built in another one.
#[cfg(test)]
pub(crate) fn test_workspace() -> std::path::PathBuf {
    let xtask = std::env::var_os("CARGO_MANIFEST_DIR")
        .map(std::path::PathBuf::from)
        .unwrap_or_else(|| env!("CARGO_MANIFEST_DIR").into());
    xtask
        .parent()
        .expect("xtask is a workspace member")
        .to_path_buf()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn manifest() -> Manifest {
        Manifest::load(&test_workspace()).unwrap()
    }

    #[test]
    fn test_presets_choose_stages() {
        let m = manifest();
        assert_eq!(m.preset("only:2ab").unwrap(), vec!["2AB"]);
        assert_eq!(m.preset("course").unwrap().len(), m.stages.len());
        assert!(m.preset("reference").unwrap().is_empty());
        let from = m.preset("from:3B").unwrap();
        assert_eq!(from.first().map(String::as_str), Some("3B"));
        assert!(!from.contains(&"2C".to_string()));
        assert!(m
            .preset("only:9Z")
            .unwrap_err()
            .to_string()
            .contains("unknown stage"));
        assert!(m.preset("half").is_err());
    }

    #[test]
    fn test_tests_are_staged_by_suffix() {
        let m = manifest();
        let s = |n: &str| m.stage_of_test(n).map(|s| s.id.as_str());
        assert_eq!(s("sim::test_one_split_3b"), Some("3B"));
        assert_eq!(s("test_leader_election_2aa"), Some("2AA"));
        assert_eq!(s("test_raw_get_1"), Some("1"));
        assert_eq!(s("store::tests::test_split_applies"), None);
        let b3 = m.stage("3b").unwrap();
        assert!(m.needs(b3, "2AB") && m.needs(b3, "3B") && !m.needs(b3, "4A"));
    }
}
