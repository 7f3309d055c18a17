//! Entry points a repository declares for its checks — package scripts, Makefile targets, just
//! recipes, tox environments, pre-commit hooks — and what their names say they are for.

use super::tools::Eco;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum EntryKind {
    Script,
    Make,
    Just,
    Tox,
    Hook,
}

/// One declared way of running commands.
#[derive(Debug, Clone)]
pub(crate) struct EntryPoint {
    pub kind: EntryKind,
    pub name: String,
    /// The command that runs it, e.g. `npm run lint` or `make lint`.
    pub run: String,
    /// The simple commands it runs.
    pub body: Vec<String>,
    /// Where it is declared, e.g. `package.json script lint`.
    pub label: String,
    /// For a pre-commit hook: the stage its id says it belongs to, when known.
    pub hook_role: Option<Named>,
    /// For a pre-commit hook: whether running it needs its repository installed first.
    pub remote: bool,
}

impl EntryPoint {
    pub fn new(kind: EntryKind, name: &str, run: String, body: Vec<String>, label: String) -> Self {
        EntryPoint {
            kind,
            name: name.to_string(),
            run,
            body,
            label,
            hook_role: None,
            remote: false,
        }
    }

    /// The ecosystem an entry of this kind belongs to by itself, whatever it runs.
    pub fn eco(&self) -> Option<Eco> {
        match self.kind {
            EntryKind::Script => Some(Eco::Node),
            EntryKind::Tox => Some(Eco::Python),
            _ => None,
        }
    }
}

/// What a name says an entry point is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Named {
    /// Rewrites files into the formatter's style (`format`, `fix:format`).
    FormatApply,
    /// Reports unformatted files (`check:format`, `format:check`).
    FormatCheck,
    Lint,
    /// A linter allowed to change files (`lint:fix`): never a check.
    LintFix,
    TypeCheck,
    Test,
    /// Every check at once (`check`, `ci`, `verify`).
    All,
}

fn parts(name: &str) -> Vec<String> {
    name.to_ascii_lowercase()
        .split([':', '-', '_', '.', '/', ' '])
        .filter(|p| !p.is_empty())
        .map(str::to_string)
        .collect()
}

/// What an entry point's name says it does, if anything.
pub(crate) fn named(kind: EntryKind, name: &str) -> Option<Named> {
    let parts = parts(name);
    let has = |words: &[&str]| parts.iter().any(|p| words.contains(&p.as_str()));
    let fixes = has(&["fix", "write", "apply", "autofix"]);
    let checks = has(&["check", "ci", "verify", "validate", "lint", "diff"]);
    if has(&[
        "watch", "dev", "serve", "e2e", "update", "debug", "bench", "snapshot",
    ]) {
        return None;
    }
    if has(&[
        "format",
        "fmt",
        "prettier",
        "prettify",
        "black",
        "isort",
        "style",
        "formatting",
    ]) {
        return Some(if fixes {
            Named::FormatApply
        } else if checks {
            Named::FormatCheck
        } else {
            Named::FormatApply
        });
    }
    if has(&[
        "typecheck",
        "types",
        "type",
        "tsc",
        "mypy",
        "pyright",
        "typing",
        "typings",
    ]) {
        return Some(Named::TypeCheck);
    }
    if has(&[
        "lint",
        "linter",
        "eslint",
        "oxlint",
        "flake8",
        "ruff",
        "pylint",
        "clippy",
        "vet",
        "stylelint",
        "biome",
    ]) {
        return Some(if fixes { Named::LintFix } else { Named::Lint });
    }
    let first = parts.first().map(String::as_str).unwrap_or("");
    // `richtest`, `unittest`, `test_all`: a test run by another name.
    let tests = parts.iter().any(|p| {
        (p.starts_with("test") || p.ends_with("test") || p.ends_with("tests"))
            && !p.ends_with("latest")
    });
    let python_env = kind == EntryKind::Tox
        && (first.starts_with("py") && first[2..].chars().all(|c| c.is_ascii_digit() || c == '.')
            || first.starts_with("pypy"));
    if tests || matches!(first, "unit" | "spec") || python_env {
        return if has(&[
            "integration",
            "coverage",
            "cov",
            "all",
            "min",
            "dev",
            "docs",
        ]) && first != "test"
        {
            None
        } else {
            Some(Named::Test)
        };
    }
    if parts.len() == 1
        && matches!(
            first,
            "check" | "ci" | "verify" | "validate" | "qa" | "quality"
        )
    {
        return Some(Named::All);
    }
    None
}

/// Among `entries` named `want`, the one a person would pick: the plainest name first.
pub(crate) fn best<'a>(entries: &[&'a EntryPoint], want: Named) -> Option<&'a EntryPoint> {
    const PREFERRED: [&str; 14] = [
        "format",
        "fmt",
        "lint",
        "typecheck",
        "type-check",
        "test",
        "tests",
        "check:format",
        "format:check",
        "check:lint",
        "lint:check",
        "check:type",
        "check:types",
        "test:unit",
    ];
    entries
        .iter()
        .filter(|e| named(e.kind, &e.name) == Some(want))
        .min_by_key(|e| {
            (
                PREFERRED
                    .iter()
                    .position(|p| *p == e.name)
                    .unwrap_or(PREFERRED.len()),
                e.name.len(),
            )
        })
        .copied()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_say_what_entries_are_for() {
        let script = |n| named(EntryKind::Script, n);
        assert_eq!(script("format"), Some(Named::FormatApply));
        assert_eq!(script("fix:format"), Some(Named::FormatApply));
        assert_eq!(script("check:format"), Some(Named::FormatCheck));
        assert_eq!(script("format:check"), Some(Named::FormatCheck));
        assert_eq!(script("lint"), Some(Named::Lint));
        assert_eq!(script("check:lint"), Some(Named::Lint));
        assert_eq!(script("lint:fix"), Some(Named::LintFix));
        assert_eq!(script("typecheck"), Some(Named::TypeCheck));
        assert_eq!(script("check:type"), Some(Named::TypeCheck));
        assert_eq!(script("check-types"), Some(Named::TypeCheck));
        assert_eq!(script("test"), Some(Named::Test));
        assert_eq!(script("test:unit"), Some(Named::Test));
        assert_eq!(script("test:watch"), None);
        assert_eq!(script("build"), None);
        assert_eq!(script("check"), Some(Named::All));
        assert_eq!(named(EntryKind::Tox, "py311"), Some(Named::Test));
        assert_eq!(named(EntryKind::Tox, "py"), Some(Named::Test));
        assert_eq!(named(EntryKind::Tox, "docs"), None);
    }
}
