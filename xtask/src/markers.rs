//! Stage markers in the reference source, and the rendering of a file for a student tree.
//!
//! A stage's solution sits between two line comments (docs/course/README.md, "Markers"):
//!
//! ```text
//! // STAGE 2AB: append the leader's entries after the matching one and answer it
//! ...the solution...
//! // END STAGE 2AB
//! ```
//!
//! Rendered with stage 2AB stubbed, the region becomes `// Your code here (2AB).` and a
//! `panic!("[2AB] <enclosing fn>: <hint>")`, so a test that reaches it names the stage. Variants:
//! `// STAGE 2AB remove` drops the region without a stub (helpers, fields, imports), and
//! `// STAGE 2AB else` keeps, for students, the lines after a `// ELSE` line inside the region,
//! written commented out in the reference (`// let x = 0;` becomes `let x = 0;`). Regions do not
//! nest; every marker names a stage of course/stages.toml.

use anyhow::{bail, Result};

/// What a stubbed region becomes in a student tree.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Variant {
    /// A `panic!` naming the stage, the enclosing function and the hint.
    Stub,
    /// Nothing.
    Remove,
    /// The student lines of its `// ELSE` part, uncommented.
    Else,
}

/// One marked region of a file.
#[derive(Clone, Debug)]
pub struct Region {
    /// The stage it belongs to, as written in the marker (e.g. `2AB`).
    pub stage: String,
    /// What it becomes when stubbed.
    pub variant: Variant,
    /// The hint of the marker line (empty when none).
    pub hint: String,
    /// The name of the function the region is in, if one is found above it.
    pub func: Option<String>,
    /// The indentation of the marker line, given to the generated lines.
    pub indent: String,
    /// Index of the `// STAGE` line.
    pub start: usize,
    /// Index of the `// END STAGE` line.
    pub end: usize,
    /// The solution's lines (between the markers, before any `// ELSE`).
    pub solution: Vec<String>,
    /// The student lines of an `else` region, uncommented.
    pub student: Vec<String>,
}

/// A source file split into its lines and its marked regions.
#[derive(Clone, Debug)]
pub struct Marked {
    /// The file's lines, without line ends.
    pub lines: Vec<String>,
    /// The regions, in file order.
    pub regions: Vec<Region>,
    /// Whether the text ended with a line end.
    pub trailing_newline: bool,
}

/// The marker of a line, if it is one.
enum Marker {
    Start {
        stage: String,
        variant: Variant,
        hint: String,
    },
    Else,
    End {
        stage: String,
    },
}

fn parse_marker(line: &str) -> Option<Result<Marker>> {
    let t = line.trim();
    if t == "// ELSE" {
        return Some(Ok(Marker::Else));
    }
    if let Some(rest) = t.strip_prefix("// END STAGE ") {
        return Some(Ok(Marker::End {
            stage: rest.trim().to_string(),
        }));
    }
    let rest = t.strip_prefix("// STAGE ")?;
    let (head, hint) = match rest.split_once(':') {
        Some((h, hint)) => (h, hint.trim().to_string()),
        None => (rest, String::new()),
    };
    let mut words = head.split_whitespace();
    let stage = words.next().unwrap_or_default().to_string();
    let variant = match words.next() {
        None => Variant::Stub,
        Some("remove") => Variant::Remove,
        Some("else") => Variant::Else,
        Some(other) => {
            return Some(Err(anyhow::anyhow!(
                "unknown marker variant `{other}` (remove or else)"
            )))
        }
    };
    if let Some(extra) = words.next() {
        return Some(Err(anyhow::anyhow!("unexpected `{extra}` in the marker")));
    }
    Some(Ok(Marker::Start {
        stage,
        variant,
        hint,
    }))
}

/// The name of the function whose body holds line `at`: the nearest `fn name` above it.
fn enclosing_fn(lines: &[String], at: usize) -> Option<String> {
    lines[..at].iter().rev().find_map(|l| {
        let code = l.split("//").next().unwrap_or_default();
        let pos = code.find("fn ")?;
        if pos > 0 && code.as_bytes()[pos - 1].is_ascii_alphanumeric() {
            return None;
        }
        let name: String = code[pos + 3..]
            .trim_start()
            .chars()
            .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
            .collect();
        (!name.is_empty()).then_some(name)
    })
}

/// Uncomments a student line of an `else` region: `<indent>// code` becomes `<indent>code`.
fn uncomment(line: &str) -> Option<String> {
    let indent_len = line.len() - line.trim_start().len();
    let (indent, rest) = line.split_at(indent_len);
    if rest.is_empty() {
        return Some(String::new());
    }
    let code = rest.strip_prefix("//")?;
    let code = code.strip_prefix(' ').unwrap_or(code);
    if code.is_empty() {
        return Some(String::new());
    }
    Some(format!("{indent}{code}"))
}

/// Splits `text` (the file `name`, for errors) into lines and regions; `stages` are the known
/// stage ids. Errors on a nested, unclosed, mismatched or unknown marker.
pub fn parse(name: &str, text: &str, stages: &[String]) -> Result<Marked> {
    let lines: Vec<String> = text.lines().map(str::to_string).collect();
    let mut regions = Vec::new();
    let mut open: Option<Region> = None;
    let mut in_else = false;
    for (i, line) in lines.iter().enumerate() {
        let Some(marker) = parse_marker(line) else {
            if let Some(r) = open.as_mut() {
                if in_else {
                    match uncomment(line) {
                        Some(l) => r.student.push(l),
                        None => bail!(
                            "{name}:{}: the student lines after `// ELSE` must be commented out",
                            i + 1
                        ),
                    }
                } else {
                    r.solution.push(line.clone());
                }
            }
            continue;
        };
        match marker.map_err(|e| anyhow::anyhow!("{name}:{}: {e}", i + 1))? {
            Marker::Start {
                stage,
                variant,
                hint,
            } => {
                if let Some(r) = &open {
                    bail!(
                        "{name}:{}: a STAGE {stage} region inside the STAGE {} region of line {}",
                        i + 1,
                        r.stage,
                        r.start + 1
                    );
                }
                if !stages.contains(&stage) {
                    bail!("{name}:{}: unknown stage `{stage}`", i + 1);
                }
                let indent_len = line.len() - line.trim_start().len();
                open = Some(Region {
                    stage,
                    variant,
                    hint,
                    func: enclosing_fn(&lines, i),
                    indent: line[..indent_len].to_string(),
                    start: i,
                    end: i,
                    solution: Vec::new(),
                    student: Vec::new(),
                });
                in_else = false;
            }
            Marker::Else => {
                let Some(r) = &open else {
                    bail!("{name}:{}: `// ELSE` outside a region", i + 1);
                };
                if r.variant != Variant::Else || in_else {
                    bail!(
                        "{name}:{}: `// ELSE` belongs once in a `STAGE <id> else` region",
                        i + 1
                    );
                }
                in_else = true;
            }
            Marker::End { stage } => {
                let Some(mut r) = open.take() else {
                    bail!("{name}:{}: END STAGE {stage} without its STAGE line", i + 1);
                };
                if r.stage != stage {
                    bail!(
                        "{name}:{}: END STAGE {stage} closes the STAGE {} region of line {}",
                        i + 1,
                        r.stage,
                        r.start + 1
                    );
                }
                if r.variant == Variant::Else && !in_else {
                    bail!(
                        "{name}:{}: a `STAGE {stage} else` region needs an `// ELSE` line",
                        i + 1
                    );
                }
                if r.solution.iter().all(|l| l.trim().is_empty()) {
                    bail!("{name}:{}: the STAGE {stage} region is empty", r.start + 1);
                }
                r.end = i;
                regions.push(r);
                in_else = false;
            }
        }
    }
    if let Some(r) = open {
        bail!(
            "{name}:{}: the STAGE {} region is never closed",
            r.start + 1,
            r.stage
        );
    }
    Ok(Marked {
        lines,
        regions,
        trailing_newline: text.ends_with('\n'),
    })
}

/// Escapes text for a `panic!` format string literal.
fn escape(s: &str) -> String {
    s.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('{', "{{")
        .replace('}', "}}")
}

/// How a stub names itself: `[2AB] append_entries:` (or `[2AB]` outside a function).
fn tag(r: &Region) -> String {
    match &r.func {
        Some(f) => format!("[{}] {f}:", r.stage),
        None => format!("[{}]", r.stage),
    }
}

/// The lines a stubbed region becomes.
pub fn stub_lines(r: &Region) -> Vec<String> {
    let ind = &r.indent;
    match r.variant {
        Variant::Remove => Vec::new(),
        Variant::Else => {
            // The placeholder says once per process that it stands in, so a test that fails on
            // an assertion still names the stage it needs.
            let what = format!(
                "{} not written yet, a placeholder stands in{}",
                tag(r),
                if r.hint.is_empty() {
                    String::new()
                } else {
                    format!(": {}", r.hint)
                }
            );
            let mut out = vec![
                format!("{ind}// Your code here ({}).", r.stage),
                format!("{ind}{{"),
                format!("{ind}    static PLACEHOLDER: std::sync::Once = std::sync::Once::new();"),
                format!(
                    "{ind}    PLACEHOLDER.call_once(|| eprintln!(\"{}\"));",
                    escape(&what)
                ),
                format!("{ind}}}"),
            ];
            out.extend(r.student.iter().cloned());
            out
        }
        Variant::Stub => {
            let hint = if r.hint.is_empty() {
                "not written yet (see the doc comment above)".to_string()
            } else {
                r.hint.clone()
            };
            let what = format!("{} {hint}", tag(r));
            vec![
                format!("{ind}// Your code here ({}).", r.stage),
                format!("{ind}panic!(\"{}\");", escape(&what)),
            ]
        }
    }
}

impl Marked {
    /// The file as a student tree holds it: the regions of stages for which `stubbed` is true
    /// replaced by their stubs, the others kept without their marker lines (and without the
    /// `// ELSE` part).
    pub fn render(&self, stubbed: &dyn Fn(&str) -> bool) -> String {
        let mut out: Vec<String> = Vec::with_capacity(self.lines.len());
        let mut next = 0;
        for r in &self.regions {
            out.extend(self.lines[next..r.start].iter().cloned());
            if stubbed(&r.stage) {
                out.extend(stub_lines(r));
            } else {
                out.extend(r.solution.iter().cloned());
            }
            next = r.end + 1;
        }
        out.extend(self.lines[next..].iter().cloned());
        let mut text = out.join("\n");
        if self.trailing_newline && !text.is_empty() {
            text.push('\n');
        }
        text
    }

    /// Whether any region of a stage for which `stubbed` is true is in the file.
    pub fn has_stubbed(&self, stubbed: &dyn Fn(&str) -> bool) -> bool {
        self.regions.iter().any(|r| stubbed(&r.stage))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn stages() -> Vec<String> {
        ["2AA", "2AB"].iter().map(|s| s.to_string()).collect()
    }

    const SRC: &str = "\
fn keep() {}

/// Appends.
pub fn append_entries(&mut self, m: Message) -> Result<()> {
    let x = 1;
    // STAGE 2AB: append after the matching entry, then answer
    self.log.append(&m.entries);
    Ok(())
    // END STAGE 2AB
}

// STAGE 2AA remove
fn helper() {}
// END STAGE 2AA

fn f() -> u64 {
    // STAGE 2AA else
    compute()
    // ELSE
    // 0
    // END STAGE 2AA
}
";

    #[test]
    fn test_reference_render_drops_only_the_markers() {
        let m = parse("a.rs", SRC, &stages()).unwrap();
        assert_eq!(m.regions.len(), 3);
        let text = m.render(&|_| false);
        assert!(!text.contains("STAGE"));
        assert!(!text.contains("// 0"));
        assert!(text.contains("    self.log.append(&m.entries);\n    Ok(())\n}"));
        assert!(text.contains("fn helper() {}"));
        assert!(text.contains("    compute()\n}"));
    }

    #[test]
    fn test_stubbed_render_names_stage_and_function() {
        let m = parse("a.rs", SRC, &stages()).unwrap();
        let text = m.render(&|s| s == "2AB");
        assert!(text.contains(
            "    let x = 1;\n    // Your code here (2AB).\n    panic!(\"[2AB] append_entries: append after the matching entry, then answer\");\n}"
        ), "{text}");
        assert!(!text.contains("self.log.append"));
        assert!(text.contains("fn helper() {}"), "other stages are kept");
        let all = m.render(&|_| true);
        assert!(!all.contains("fn helper"));
        assert!(
            all.contains(
                "    // Your code here (2AA).\n    {\n        static PLACEHOLDER: std::sync::Once = \
                 std::sync::Once::new();\n        PLACEHOLDER.call_once(|| eprintln!(\"[2AA] f: not \
                 written yet, a placeholder stands in\"));\n    }\n    0\n}"
            ),
            "{all}"
        );
        assert!(all.ends_with("}\n"));
    }

    #[test]
    fn test_bad_markers_are_refused_with_their_line() {
        let bad = [
            ("// STAGE 2AB\nx\n", "never closed"),
            (
                "// STAGE 2AB\n// STAGE 2AA\nx\n// END STAGE 2AA\n",
                "inside",
            ),
            ("// STAGE 2AB\nx\n// END STAGE 2AA\n", "closes"),
            ("// END STAGE 2AB\n", "without its STAGE"),
            ("// STAGE 9Z\nx\n// END STAGE 9Z\n", "unknown stage"),
            (
                "// STAGE 2AB frob\nx\n// END STAGE 2AB\n",
                "unknown marker variant",
            ),
            (
                "// STAGE 2AB else\nx\n// END STAGE 2AB\n",
                "needs an `// ELSE`",
            ),
            (
                "// STAGE 2AB else\nx\n// ELSE\nlet y;\n// END STAGE 2AB\n",
                "commented out",
            ),
            ("// STAGE 2AB\n\n// END STAGE 2AB\n", "empty"),
            ("// ELSE\n", "outside a region"),
        ];
        for (src, want) in bad {
            let e = parse("b.rs", src, &stages()).unwrap_err().to_string();
            assert!(e.contains(want) && e.starts_with("b.rs:"), "{src:?}: {e}");
        }
    }

    #[test]
    fn test_hint_is_escaped_for_the_format_string() {
        let src = "fn g() {\n    // STAGE 2AA: use {x} and \"y\"\n    x\n    // END STAGE 2AA\n}\n";
        let m = parse("c.rs", src, &stages()).unwrap();
        let text = m.render(&|_| true);
        assert!(
            text.contains(r#"panic!("[2AA] g: use {{x}} and \"y\"");"#),
            "{text}"
        );
    }

    #[test]
    fn test_doc_comments_are_not_markers() {
        let src = "/// STAGE 2AB: not a marker\n//! STAGE 2AA\nfn h() {}\n";
        let m = parse("d.rs", src, &stages()).unwrap();
        assert!(m.regions.is_empty());
        assert_eq!(m.render(&|_| true), src);
    }
}
