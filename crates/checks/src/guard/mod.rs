//! The test-tampering guard: reads the change as a diff against its base and finds what makes
//! checks pass without fixing anything — tests deleted, moved out of the runner's sight, fewer
//! than before or skipped; assertions removed; linters silenced; the checks' own configuration
//! edited. Deterministic, no model. Only what the change adds or removes counts: what the base
//! already had is not the agent's doing. One pass over the diff, whatever its size.

mod configs;
mod diff;
mod rules;
mod tally;

use std::collections::{BTreeMap, BTreeSet};

use nightshift_core::{GuardFinding, GuardKind};

use self::diff::{FileDiff, Line};
use self::rules::{Lang, check_config, is_generated_or_vendored, is_test_file, marks_generated};
use self::tally::{Tally, lines};
use crate::CheckPlan;

/// Lines longer than this are not read: minified or generated text, never a hand-written test.
const MAX_LINE: usize = 4096;
/// Findings listed per kind; the rest are counted.
const MAX_PER_KIND: usize = 20;
/// Files whose whole text the guard asks for, per side.
const MAX_FILES_NEEDED: usize = 64;
/// How much of a finding's line it quotes.
const QUOTE_CHARS: usize = 120;

/// The whole text of some files on either side, for what a diff alone does not say (a mixed
/// configuration file's sections, a moved test file's tests, whether a Rust line is test code).
#[derive(Debug, Default, Clone)]
pub struct Contents {
    base: BTreeMap<String, String>,
    change: BTreeMap<String, String>,
}

impl Contents {
    pub fn insert_base(&mut self, path: impl Into<String>, text: impl Into<String>) {
        self.base.insert(path.into(), text.into());
    }

    pub fn insert_change(&mut self, path: impl Into<String>, text: impl Into<String>) {
        self.change.insert(path.into(), text.into());
    }

    fn base(&self, path: &str) -> Option<&str> {
        self.base.get(path).map(String::as_str)
    }

    fn change(&self, path: &str) -> Option<&str> {
        self.change.get(path).map(String::as_str)
    }
}

/// The files [`inspect`] wants the whole text of, on the base and in the change.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Needed {
    pub base: Vec<String>,
    pub change: Vec<String>,
}

/// What the guard looks at.
pub struct GuardInput<'a> {
    /// `git diff -M` from the base commit to the change, as text.
    pub diff: &'a str,
    /// Files the check commands run (`test.sh` of `sh test.sh`): editing them edits the checks.
    pub check_files: &'a [String],
    pub contents: &'a Contents,
}

/// What the guard found.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct GuardReport {
    pub findings: Vec<GuardFinding>,
    /// Findings beyond the ones listed.
    pub omitted: usize,
    /// Files not read: binary, generated or vendored.
    pub left_alone: usize,
}

impl GuardReport {
    pub fn passed(&self) -> bool {
        self.findings.is_empty()
    }

    /// The findings one per line, as the agent and the run's log read them.
    pub fn lines(&self) -> Vec<String> {
        let mut lines: Vec<String> = self.findings.iter().map(ToString::to_string).collect();
        if self.omitted > 0 {
            lines.push(format!("… and {} more", self.omitted));
        }
        lines
    }
}

/// The repository's scripts the format, lint and test commands of `plan` run: the program
/// itself when it is a path (`./scripts/lint`), or the script an interpreter is given
/// (`sh test.sh`, `python3 tools/check.py`). Not the files they read: those are the change's.
pub fn check_files(plan: &CheckPlan) -> Vec<String> {
    const INTERPRETERS: &[&str] = &[
        "sh", "bash", "zsh", "dash", "python", "python3", "node", "ruby", "perl", "pwsh", "bun",
        "deno",
    ];
    let mut files = BTreeSet::new();
    for stage in [crate::Stage::Format, crate::Stage::Lint, crate::Stage::Test] {
        for command in plan.commands(stage) {
            // Each command of a `&&`, `;` or `|` chain.
            for part in command.split(['&', ';', '|']) {
                let words = shlex::split(part).unwrap_or_default();
                let script = match words.as_slice() {
                    [program, ..] if program.contains('/') => Some(program),
                    [program, script, ..] if INTERPRETERS.contains(&rules::file_name(program)) => {
                        Some(script).filter(|s| !s.starts_with('-'))
                    }
                    _ => None,
                };
                if let Some(script) = script {
                    let path = script.trim_start_matches("./");
                    if !path.starts_with('/') && !path.contains("..") && !path.is_empty() {
                        files.insert(path.to_string());
                    }
                }
            }
        }
    }
    files.into_iter().collect()
}

/// One file of a diff and its lines added and removed, as `git diff --stat` counts them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChangedFile {
    pub path: String,
    /// Where it was before a move; `None` when it kept its place.
    pub moved_from: Option<String>,
    pub added: usize,
    pub removed: usize,
    pub binary: bool,
}

/// The files a diff changes, in its order.
pub fn changed_files(diff: &str) -> Vec<ChangedFile> {
    diff::files(diff)
        .map(|file| ChangedFile {
            path: file.path().to_string(),
            moved_from: file
                .old_path
                .clone()
                .filter(|old| file.new_path.as_ref().is_some_and(|new| new != old)),
            added: file.lines.iter().filter(|l| l.added).count(),
            removed: file.lines.iter().filter(|l| !l.added).count(),
            binary: file.binary,
        })
        .collect()
}

/// The files whose whole text [`inspect`] reads, for the caller to gather first.
pub fn files_needed(diff: &str) -> Needed {
    let mut needed = Needed::default();
    let mut base = BTreeSet::new();
    let mut change = BTreeSet::new();
    for file in diff::files(diff) {
        if left_alone(&file) {
            continue;
        }
        if configs::is_mixed(file.path()) {
            base.extend(file.old_path.clone());
            change.extend(file.new_path.clone());
        }
        if let (Some(old), Some(lang)) =
            (&file.old_path, file.old_path.as_deref().and_then(Lang::of))
            && is_test_file(lang, old)
            && file
                .new_path
                .as_deref()
                .is_some_and(|new| !is_test_file(lang, new))
        {
            base.insert(old.clone());
        }
        // Whether a Rust assertion is test code shows only in the whole file.
        if let Some(lang @ Lang::Rust) = Lang::of(file.path()) {
            let rules = lang.rules();
            for line in readable(&file.lines) {
                let path = if line.added {
                    &file.new_path
                } else {
                    &file.old_path
                };
                if let Some(path) = path
                    && !is_test_file(lang, path)
                    && rules.assertion.is_match(line.text)
                {
                    if line.added { &mut change } else { &mut base }.insert(path.clone());
                }
            }
        }
    }
    needed.base = base.into_iter().take(MAX_FILES_NEEDED).collect();
    needed.change = change.into_iter().take(MAX_FILES_NEEDED).collect();
    needed
}

/// Reads the change and lists what it does to the tests and the checks.
pub fn inspect(input: &GuardInput) -> GuardReport {
    let mut report = Report::default();
    let mut tallies: BTreeMap<Lang, Tally> = BTreeMap::new();
    for file in diff::files(input.diff) {
        if left_alone(&file) {
            report.left_alone += 1;
            continue;
        }
        config_edits(&file, input, &mut report);
        let gone = test_file_gone(&file, input.contents);
        if let Some((lang, gone)) = &gone {
            tallies.entry(*lang).or_default().gone.push(gone.clone());
        }
        lines(
            &file,
            gone.is_some(),
            input.contents,
            &mut tallies,
            &mut report,
        );
    }
    for (lang, tally) in tallies {
        tally.conclude(lang, &mut report);
    }
    report.finish()
}

fn left_alone(file: &FileDiff) -> bool {
    let paths = [&file.old_path, &file.new_path];
    if file.binary
        || paths
            .iter()
            .any(|p| p.as_deref().is_some_and(is_generated_or_vendored))
    {
        return true;
    }
    // A new file that says it is generated, in its first lines.
    file.old_path.is_none()
        && marks_generated(
            &file
                .lines
                .iter()
                .take(5)
                .map(|l| l.text)
                .collect::<Vec<_>>()
                .join("\n"),
        )
}

fn readable<'a>(lines: &'a [Line<'a>]) -> impl Iterator<Item = &'a Line<'a>> {
    lines.iter().filter(|l| l.text.len() <= MAX_LINE)
}

/// A test file that is no longer where its runner looks, and how many tests went with it.
#[derive(Debug, Clone)]
struct Gone {
    path: String,
    moved_to: Option<String>,
    tests: usize,
}

fn test_file_gone(file: &FileDiff, contents: &Contents) -> Option<(Lang, Gone)> {
    let old = file.old_path.as_deref()?;
    let lang = Lang::of(old)?;
    if !is_test_file(lang, old)
        || file
            .new_path
            .as_deref()
            .is_some_and(|n| is_test_file(lang, n))
    {
        return None;
    }
    let rules = lang.rules();
    let tests = match (&file.new_path, contents.base(old)) {
        // Moved: its tests are in the base's text, not in the diff.
        (Some(_), Some(text)) => text.lines().filter(|l| rules.test.is_match(l)).count(),
        (Some(_), None) => 1,
        (None, _) => readable(&file.lines)
            .filter(|l| !l.added && rules.test.is_match(l.text))
            .count(),
    };
    Some((
        lang,
        Gone {
            path: old.to_string(),
            moved_to: file.new_path.clone(),
            tests,
        },
    ))
}

/// Edits to a file that decides the checks: the whole file (CI, a linter's configuration, a
/// script a check runs) or its check-deciding sections.
fn config_edits(file: &FileDiff, input: &GuardInput, report: &mut Report) {
    let path = file.path();
    let named = |p: &Option<String>| {
        p.as_deref().and_then(|p| {
            check_config(p).or_else(|| {
                input
                    .check_files
                    .iter()
                    .any(|f| f == p)
                    .then_some("a script the checks run")
            })
        })
    };
    if let Some(kind) = named(&file.old_path).or_else(|| named(&file.new_path)) {
        let how = match (&file.old_path, &file.new_path) {
            (None, _) => "added".to_string(),
            (_, None) => "deleted".to_string(),
            (Some(old), Some(new)) if old != new => format!("moved to `{new}`"),
            _ => "edited".to_string(),
        };
        let line = file
            .lines
            .iter()
            .find(|l| l.added)
            .or(file.lines.first())
            .map_or(1, |l| l.number);
        report.add(
            GuardKind::CheckConfigEdited,
            path,
            line,
            format!(
                "`{}` ({kind}) {how}",
                file.old_path.as_deref().unwrap_or(path)
            ),
        );
        return;
    }
    if configs::is_mixed(path) {
        let base = file
            .old_path
            .as_deref()
            .and_then(|p| input.contents.base(p));
        let change = file
            .new_path
            .as_deref()
            .and_then(|p| input.contents.change(p));
        for edited in configs::edited(path, base, change).unwrap_or_default() {
            report.add(
                GuardKind::CheckConfigEdited,
                path,
                edited.line,
                format!("{} of `{path}` edited", edited.section),
            );
        }
    }
}

/// A line as findings quote it: trimmed and cut.
fn quote(text: &str) -> String {
    let text = text.trim();
    match text.char_indices().nth(QUOTE_CHARS) {
        Some((cut, _)) => format!("{}…", &text[..cut]),
        None => text.to_string(),
    }
}

#[derive(Default)]
struct Report {
    findings: Vec<GuardFinding>,
    per_kind: BTreeMap<&'static str, usize>,
    omitted: usize,
    left_alone: usize,
}

impl Report {
    fn add(&mut self, kind: GuardKind, path: &str, line: u32, detail: String) {
        let n = self.per_kind.entry(kind.as_str()).or_default();
        *n += 1;
        if *n > MAX_PER_KIND {
            self.omitted += 1;
            return;
        }
        self.findings.push(GuardFinding {
            kind,
            path: path.to_string(),
            line: line.max(1),
            detail,
        });
    }

    fn has_config_finding(&self, path: &str) -> bool {
        self.findings
            .iter()
            .any(|f| f.kind == GuardKind::CheckConfigEdited && f.path == path)
    }

    fn finish(mut self) -> GuardReport {
        self.findings.sort_by(|a, b| {
            (&a.path, a.line, a.kind.as_str()).cmp(&(&b.path, b.line, b.kind.as_str()))
        });
        GuardReport {
            findings: self.findings,
            omitted: self.omitted,
            left_alone: self.left_alone,
        }
    }
}
