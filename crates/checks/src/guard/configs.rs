//! Files that mix the checks' settings with everything else — `pyproject.toml`, `setup.cfg`,
//! `package.json`, `Cargo.toml` — compared section by section: a new dependency is nobody's
//! concern, a loosened `[tool.ruff]` is.

use std::collections::BTreeMap;

use serde_json::Value as Json;

use super::rules::file_name;

/// Whether `path` is a file read this way.
pub(crate) fn is_mixed(path: &str) -> bool {
    matches!(
        file_name(path),
        "pyproject.toml" | "setup.cfg" | "package.json" | "Cargo.toml"
    )
}

/// The tables of `[tool]` in `pyproject.toml` that configure a formatter, linter, type checker,
/// test runner or coverage.
const PYPROJECT_TOOLS: &[&str] = &[
    "ruff",
    "black",
    "isort",
    "mypy",
    "pytest",
    "coverage",
    "pylint",
    "pyright",
    "basedpyright",
    "flake8",
    "bandit",
    "pydocstyle",
    "codespell",
    "yapf",
    "autopep8",
    "tox",
    "ty",
];

/// The keys of `package.json` that configure a linter, formatter, test runner or coverage.
const PACKAGE_KEYS: &[&str] = &[
    "eslintConfig",
    "eslintIgnore",
    "prettier",
    "jest",
    "c8",
    "nyc",
    "ava",
    "mocha",
    "stylelint",
    "xo",
    "standard",
    "lint-staged",
    "vitest",
];

/// A section of the checks' settings that differs between the base and the change, with the
/// line it is on (in the change, or in the base when it is gone).
#[derive(Debug, PartialEq, Eq)]
pub(crate) struct Edited {
    pub(crate) section: String,
    pub(crate) line: u32,
}

/// The check-deciding sections of a mixed file that differ; `None` when either side cannot be
/// read as its format (then the file is the checks' concern only where its lines say so).
pub(crate) fn edited(path: &str, base: Option<&str>, change: Option<&str>) -> Option<Vec<Edited>> {
    let name = file_name(path);
    let sections = |text: Option<&str>| -> Option<BTreeMap<String, String>> {
        let Some(text) = text else {
            return Some(BTreeMap::new());
        };
        match name {
            "pyproject.toml" => pyproject(text),
            "Cargo.toml" => cargo(text),
            "setup.cfg" => Some(setup_cfg(text)),
            "package.json" => package_json(text),
            _ => None,
        }
    };
    let (old, new) = (sections(base)?, sections(change)?);
    let keys: std::collections::BTreeSet<&String> = old.keys().chain(new.keys()).collect();
    Some(
        keys.into_iter()
            .filter(|k| old.get(*k) != new.get(*k))
            .map(|section| {
                let text = if new.contains_key(section) {
                    change
                } else {
                    base
                };
                Edited {
                    line: line_of(name, section, text.unwrap_or_default()),
                    section: section.clone(),
                }
            })
            .collect(),
    )
}

fn pyproject(text: &str) -> Option<BTreeMap<String, String>> {
    let doc: toml::Table = text.parse().ok()?;
    let tool = doc.get("tool").and_then(toml::Value::as_table);
    Some(
        PYPROJECT_TOOLS
            .iter()
            .filter_map(|name| {
                let value = tool?.get(*name)?;
                Some((format!("[tool.{name}]"), value.to_string()))
            })
            .collect(),
    )
}

fn cargo(text: &str) -> Option<BTreeMap<String, String>> {
    let doc: toml::Table = text.parse().ok()?;
    let mut out = BTreeMap::new();
    if let Some(lints) = doc.get("lints") {
        out.insert("[lints]".to_string(), lints.to_string());
    }
    if let Some(lints) = doc.get("workspace").and_then(|w| w.get("lints")) {
        out.insert("[workspace.lints]".to_string(), lints.to_string());
    }
    Some(out)
}

fn setup_cfg(text: &str) -> BTreeMap<String, String> {
    crate::detect::ini_sections(text)
        .into_iter()
        .filter(|(section, _)| {
            let s = section.as_str();
            matches!(
                s,
                "flake8"
                    | "pycodestyle"
                    | "pydocstyle"
                    | "isort"
                    | "tool:isort"
                    | "bandit"
                    | "tool:pytest"
                    | "pytest"
                    | "mypy"
            ) || s.starts_with("mypy-")
                || s.starts_with("coverage:")
                || s.starts_with("pylint")
        })
        .map(|(section, keys)| (format!("[{section}]"), format!("{keys:?}")))
        .collect()
}

fn package_json(text: &str) -> Option<BTreeMap<String, String>> {
    let doc: Json = serde_json::from_str(text).ok()?;
    let mut out = BTreeMap::new();
    for key in PACKAGE_KEYS {
        if let Some(value) = doc.get(key) {
            out.insert(format!("\"{key}\""), value.to_string());
        }
    }
    if let Some(scripts) = doc.get("scripts").and_then(Json::as_object) {
        for (name, command) in scripts {
            if check_script(name) {
                out.insert(format!("scripts \"{name}\""), command.to_string());
            }
        }
    }
    Some(out)
}

/// A package script that runs a check: `test`, `lint:js`, `pretest`, `typecheck`, …
fn check_script(name: &str) -> bool {
    let bare = name
        .strip_prefix("pre")
        .or_else(|| name.strip_prefix("post"))
        .unwrap_or(name);
    let head = bare.split([':', '-', '_']).next().unwrap_or(bare);
    matches!(
        head,
        "test"
            | "tests"
            | "lint"
            | "format"
            | "fmt"
            | "check"
            | "typecheck"
            | "types"
            | "tsc"
            | "ci"
            | "coverage"
            | "validate"
            | "verify"
            | "prettier"
            | "eslint"
    ) || bare == "type-check"
}

/// The line where `section` starts in `text`, 1 when it cannot be told.
fn line_of(name: &str, section: &str, text: &str) -> u32 {
    let needle = match name {
        "package.json" => section
            .strip_prefix("scripts ")
            .unwrap_or(section)
            .to_string(),
        // `[tool.ruff]` also starts `[tool.ruff.lint]`; an inline table is under `[tool]`.
        _ => section.trim_end_matches(']').to_string(),
    };
    text.lines()
        .position(|l| {
            l.trim_start().starts_with(&needle) || (name == "package.json" && l.contains(&needle))
        })
        .map_or(1, |i| i as u32 + 1)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_loosened_linter_table_is_found_and_a_new_dependency_is_not() {
        let base = "[project]\nname = \"x\"\ndependencies = []\n\n[tool.ruff]\nline-length = 88\n";
        let change = "[project]\nname = \"x\"\ndependencies = [\"requests\"]\n\n[tool.ruff]\nline-length = 200\n";
        let found = edited("pyproject.toml", Some(base), Some(change)).unwrap();
        assert_eq!(
            found,
            vec![Edited {
                section: "[tool.ruff]".into(),
                line: 5
            }]
        );
        let only_deps = "[project]\nname = \"x\"\ndependencies = [\"requests\"]\n\n[tool.ruff]\nline-length = 88\n";
        assert!(
            edited("pyproject.toml", Some(base), Some(only_deps))
                .unwrap()
                .is_empty()
        );
    }

    #[test]
    fn package_scripts_that_run_checks_are_the_checks() {
        let base = r#"{"scripts": {"test": "node --test", "build": "tsc"}, "dependencies": {}}"#;
        let change = r#"{
  "scripts": {"test": "node --test || true", "build": "tsc -p ."},
  "dependencies": {"left-pad": "1"}
}"#;
        let found = edited("web/package.json", Some(base), Some(change)).unwrap();
        assert_eq!(
            found,
            vec![Edited {
                section: "scripts \"test\"".into(),
                line: 2
            }]
        );
    }

    #[test]
    fn setup_cfg_and_cargo_lints() {
        let base = "[metadata]\nname = x\n\n[flake8]\nmax-line-length = 88\n";
        let change =
            "[metadata]\nname = y\n\n[flake8]\nmax-line-length = 88\nextend-ignore = E501\n";
        let found = edited("setup.cfg", Some(base), Some(change)).unwrap();
        assert_eq!(found.len(), 1);
        assert_eq!(found[0].section, "[flake8]");
        assert_eq!(found[0].line, 4);
        let cargo_base = "[package]\nname = \"x\"\n";
        let cargo_change = "[package]\nname = \"x\"\n\n[lints.rust]\nunused = \"allow\"\n";
        let found = edited("Cargo.toml", Some(cargo_base), Some(cargo_change)).unwrap();
        assert_eq!(found[0].section, "[lints]");
    }

    #[test]
    fn an_unreadable_side_is_no_finding() {
        assert!(edited("pyproject.toml", Some("[tool.ruff"), Some("")).is_none());
    }
}
