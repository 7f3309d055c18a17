//! The lines of the change that count: test definitions and assertions tallied per ecosystem
//! across the whole change (a test moved is not a test removed), skips and suppressions per
//! file (one reworded is not new), and coverage thresholds.

use std::collections::{BTreeMap, BTreeSet};

use nightshift_core::GuardKind;

use super::diff::{FileDiff, Line};
use super::rules::{self, Lang, is_test_file};
use super::{Contents, Gone, Report, quote, readable};

/// Test definitions and assertions, counted per ecosystem across the change.
#[derive(Default)]
pub(super) struct Tally {
    tests_removed: Vec<Located>,
    tests_added: BTreeSet<String>,
    tests_added_count: usize,
    assertions_removed: Vec<Located>,
    assertions_added: BTreeSet<String>,
    assertions_added_count: usize,
    pub(super) gone: Vec<Gone>,
}

/// A removed line of interest, and whether its file is gone altogether.
struct Located {
    path: String,
    line: u32,
    text: String,
    in_gone_file: bool,
}

impl Tally {
    pub(super) fn conclude(self, lang: Lang, report: &mut Report) {
        let gone_tests: usize = self.gone.iter().map(|g| g.tests).sum();
        let elsewhere = self
            .tests_removed
            .iter()
            .filter(|t| !t.in_gone_file)
            .count();
        let fewer = (elsewhere + gone_tests).saturating_sub(self.tests_added_count);
        if fewer > 0 {
            for gone in self.gone.iter().filter(|g| g.tests > 0) {
                let how = match &gone.moved_to {
                    Some(to) => format!("moved to `{to}`, where the test runner does not look"),
                    None => "deleted".to_string(),
                };
                report.add(
                    GuardKind::TestFileRemoved,
                    &gone.path,
                    1,
                    format!(
                        "{how} ({} test{})",
                        gone.tests,
                        if gone.tests == 1 { "" } else { "s" }
                    ),
                );
            }
            let left = fewer.saturating_sub(gone_tests);
            for t in pick(&self.tests_removed, &self.tests_added, left) {
                report.add(
                    GuardKind::TestRemoved,
                    &t.path,
                    t.line,
                    format!(
                        "`{}` removed ({} fewer {} tests than on the base)",
                        t.text,
                        fewer,
                        name(lang)
                    ),
                );
            }
        }
        // Assertions of a test file that is gone were reported with it.
        let removed: Vec<&Located> = self
            .assertions_removed
            .iter()
            .filter(|a| !a.in_gone_file)
            .collect();
        let fewer = removed.len().saturating_sub(self.assertions_added_count);
        if fewer > 0 {
            let removed: Vec<Located> = removed
                .into_iter()
                .map(|a| Located {
                    path: a.path.clone(),
                    line: a.line,
                    text: a.text.clone(),
                    in_gone_file: false,
                })
                .collect();
            for a in pick(&removed, &self.assertions_added, fewer) {
                report.add(
                    GuardKind::AssertionRemoved,
                    &a.path,
                    a.line,
                    format!("`{}` removed", a.text),
                );
            }
        }
    }
}

/// `count` of the removed lines, those whose text did not come back first.
fn pick<'a>(removed: &'a [Located], added: &BTreeSet<String>, count: usize) -> Vec<&'a Located> {
    let candidates = removed.iter().filter(|r| !r.in_gone_file);
    let (gone, back): (Vec<&Located>, Vec<&Located>) =
        candidates.partition(|r| !added.contains(&r.text));
    gone.into_iter().chain(back).take(count).collect()
}

fn name(lang: Lang) -> &'static str {
    match lang {
        Lang::Rust => "Rust",
        Lang::Python => "Python",
        Lang::JavaScript => "JavaScript",
        Lang::Go => "Go",
        Lang::Java => "JVM",
    }
}

/// The lines of one file: tests and assertions into the tallies, skips and suppressions (added
/// ones not offset by the same ones removed in the file) and coverage thresholds reported.
pub(super) fn lines(
    file: &FileDiff,
    gone: bool,
    contents: &Contents,
    tallies: &mut BTreeMap<Lang, Tally>,
    report: &mut Report,
) {
    let mut skips = Pool::default();
    let mut suppressions = Pool::default();
    let mut coverage: Vec<&Line> = Vec::new();
    for line in readable(&file.lines) {
        if rules::COVERAGE.is_match(line.text) {
            coverage.push(line);
        }
        let Some(path) = (if line.added {
            &file.new_path
        } else {
            &file.old_path
        }) else {
            continue;
        };
        let Some(lang) = Lang::of(path) else { continue };
        let rules = lang.rules();
        let in_test_file = is_test_file(lang, path);
        let text = quote(line.text);
        if (in_test_file || lang == Lang::Rust) && rules.test.is_match(line.text) {
            let tally = tallies.entry(lang).or_default();
            if line.added {
                tally.tests_added_count += 1;
                tally.tests_added.insert(text.clone());
            } else {
                tally.tests_removed.push(Located {
                    path: path.clone(),
                    line: line.number,
                    text: text.clone(),
                    in_gone_file: gone,
                });
            }
        }
        if let Some(m) = rules.skip.find(line.text) {
            skips.push(m.as_str().trim(), line);
        }
        if let Some(m) = rules.suppression.find(line.text) {
            suppressions.push(m.as_str().trim(), line);
        }
        if rules.assertion.is_match(line.text)
            && is_test_code(lang, in_test_file, path, line, contents)
        {
            let tally = tallies.entry(lang).or_default();
            if line.added {
                tally.assertions_added_count += 1;
                tally.assertions_added.insert(text);
            } else {
                tally.assertions_removed.push(Located {
                    path: path.clone(),
                    line: line.number,
                    text,
                    in_gone_file: gone,
                });
            }
        }
    }
    let path = file.path();
    for (key, line) in skips.new_ones() {
        report.add(
            GuardKind::SkipAdded,
            path,
            line.number,
            format!("`{key}` added: `{}`", quote(line.text)),
        );
    }
    for (key, line) in suppressions.new_ones() {
        report.add(
            GuardKind::SuppressionAdded,
            path,
            line.number,
            format!("`{key}` added: `{}`", quote(line.text)),
        );
    }
    // A threshold moved as it is (a reindented line) is not a change of it.
    let added: BTreeSet<&str> = coverage
        .iter()
        .filter(|l| l.added)
        .map(|l| l.text.trim())
        .collect();
    let removed: BTreeSet<&str> = coverage
        .iter()
        .filter(|l| !l.added)
        .map(|l| l.text.trim())
        .collect();
    if let Some(changed) = coverage.iter().find(|l| {
        if l.added {
            !removed.contains(l.text.trim())
        } else {
            !added.contains(l.text.trim())
        }
    }) && !report.has_config_finding(path)
    {
        report.add(
            GuardKind::CheckConfigEdited,
            path,
            changed.number,
            format!(
                "coverage threshold {}: `{}`",
                if changed.added { "changed" } else { "removed" },
                quote(changed.text)
            ),
        );
    }
}

/// Assertions count in test files, and in Rust after a file's `#[cfg(test)]`.
fn is_test_code(
    lang: Lang,
    in_test_file: bool,
    path: &str,
    line: &Line,
    contents: &Contents,
) -> bool {
    if in_test_file {
        return true;
    }
    if lang != Lang::Rust {
        return false;
    }
    let text = if line.added {
        contents.change(path)
    } else {
        contents.base(path)
    };
    text.is_some_and(|t| rules::after_cfg_test(t, line.number))
}

/// Matches of one kind in one file: an added one counts only when no removed one with the same
/// text offsets it (the line was moved or reworded, not newly silenced).
#[derive(Default)]
struct Pool<'a> {
    added: Vec<(String, &'a Line<'a>)>,
    removed: BTreeMap<String, usize>,
}

impl<'a> Pool<'a> {
    fn push(&mut self, key: &str, line: &'a Line<'a>) {
        if line.added {
            self.added.push((key.to_string(), line));
        } else {
            *self.removed.entry(key.to_string()).or_default() += 1;
        }
    }

    fn new_ones(mut self) -> Vec<(String, &'a Line<'a>)> {
        let mut out = Vec::new();
        for (key, line) in self.added {
            match self.removed.get_mut(&key) {
                Some(n) if *n > 0 => *n -= 1,
                _ => out.push((key, line)),
            }
        }
        out
    }
}
