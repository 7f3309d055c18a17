//! Makefile targets and justfile recipes: their names and what their recipes run (with simple
//! variables filled in), so a target is run as the repository runs it and read for what it does.

use std::collections::BTreeMap;

use super::entries::{EntryKind, EntryPoint};
use super::repo::Repo;
use super::shell::simple_commands;
use crate::Result;

pub(crate) fn read(repo: &Repo) -> Result<Vec<EntryPoint>> {
    let mut entries = Vec::new();
    for file in ["GNUmakefile", "Makefile", "makefile"] {
        if let Some(text) = repo.read(file)? {
            entries.extend(makefile(file, &text));
            break;
        }
    }
    for file in ["justfile", "Justfile", ".justfile"] {
        if let Some(text) = repo.read(file)? {
            entries.extend(justfile(file, &text));
            break;
        }
    }
    Ok(entries)
}

fn makefile(file: &str, text: &str) -> Vec<EntryPoint> {
    let text = text.replace("\\\n", " ");
    let mut vars = BTreeMap::new();
    let mut targets: Vec<(String, Vec<String>)> = Vec::new();
    let mut current: Option<usize> = None;
    for line in text.lines() {
        if let Some(recipe) = line.strip_prefix('\t') {
            if let Some(i) = current {
                let recipe = recipe.trim_start_matches(['@', '-', '+', ' ']);
                targets[i].1.push(recipe.to_string());
            }
            continue;
        }
        let trimmed = line.trim();
        if trimmed.is_empty() || trimmed.starts_with('#') {
            continue;
        }
        current = None;
        if let Some((name, value)) = assignment(trimmed) {
            vars.insert(name, value);
            continue;
        }
        let Some((names, prereqs)) = trimmed.split_once(':') else {
            continue;
        };
        if prereqs.starts_with('=')
            || names.starts_with('.')
            || names.contains('%')
            || names.contains('$')
        {
            continue;
        }
        let prereqs = prereqs.split(';').next().unwrap_or("");
        for name in names.split_whitespace() {
            let mut body: Vec<String> = prereqs
                .split_whitespace()
                .filter(|p| !p.contains('/') && !p.contains('.') && !p.contains('$'))
                .map(|p| format!("make {p}"))
                .collect();
            if let Some((_, inline)) = trimmed.split_once(';') {
                body.push(inline.trim().to_string());
            }
            targets.push((name.to_string(), body));
            current = Some(targets.len() - 1);
        }
    }
    targets
        .into_iter()
        .map(|(name, recipe)| {
            let body = recipe
                .iter()
                .flat_map(|line| simple_commands(&expand(line, &vars)))
                .collect();
            EntryPoint::new(
                EntryKind::Make,
                &name,
                format!("make {name}"),
                body,
                format!("{file} target {name}"),
            )
        })
        .collect()
}

/// `NAME = value`, `NAME := value`, `NAME ?= value`.
fn assignment(line: &str) -> Option<(String, String)> {
    let (name, value) = line.split_once('=')?;
    let name = name.trim_end_matches([':', '?', '+', '!']).trim();
    let name = name.strip_prefix("export ").unwrap_or(name).trim();
    (!name.is_empty() && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_'))
        .then(|| (name.to_string(), value.trim().to_string()))
}

/// Make variables filled in (`$(PYTHON)`, `${VENV}`) and `$$` turned back into `$`.
fn expand(line: &str, vars: &BTreeMap<String, String>) -> String {
    let mut out = line.to_string();
    for _ in 0..3 {
        for (name, value) in vars {
            out = out
                .replace(&format!("$({name})"), value)
                .replace(&format!("${{{name}}}"), value);
        }
    }
    out.replace("$$", "$")
}

fn justfile(file: &str, text: &str) -> Vec<EntryPoint> {
    let mut vars = BTreeMap::new();
    let mut recipes: Vec<(String, Vec<String>)> = Vec::new();
    let mut current: Option<usize> = None;
    for line in text.lines() {
        if line.starts_with([' ', '\t']) {
            if let Some(i) = current
                && !line.trim().is_empty()
            {
                recipes[i]
                    .1
                    .push(line.trim().trim_start_matches(['@', '-']).to_string());
            }
            continue;
        }
        let trimmed = line.trim();
        if trimmed.is_empty() || trimmed.starts_with('#') || trimmed.starts_with('[') {
            continue;
        }
        current = None;
        if let Some((name, value)) = trimmed.split_once(":=") {
            let name = name.trim().trim_start_matches("export ").trim();
            vars.insert(
                name.to_string(),
                value.trim().trim_matches(['"', '\'']).to_string(),
            );
            continue;
        }
        if trimmed.starts_with("set ")
            || trimmed.starts_with("alias ")
            || trimmed.starts_with("import ")
        {
            continue;
        }
        let Some((head, deps)) = trimmed.split_once(':') else {
            continue;
        };
        let Some(name) = head.trim_start_matches('@').split_whitespace().next() else {
            continue;
        };
        let body = deps
            .split_whitespace()
            .filter(|d| {
                d.chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
            })
            .map(|d| format!("just {d}"))
            .collect();
        recipes.push((name.to_string(), body));
        current = Some(recipes.len() - 1);
    }
    recipes
        .into_iter()
        .map(|(name, lines)| {
            let body = lines
                .iter()
                .map(|l| {
                    let mut l = l.clone();
                    for (k, v) in &vars {
                        l = l
                            .replace(&format!("{{{{{k}}}}}"), v)
                            .replace(&format!("{{{{ {k} }}}}"), v);
                    }
                    l
                })
                .flat_map(|l| simple_commands(&l))
                .collect();
            EntryPoint::new(
                EntryKind::Just,
                &name,
                format!("just {name}"),
                body,
                format!("{file} recipe {name}"),
            )
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn targets_and_recipes_with_their_commands() {
        let make = makefile(
            "Makefile",
            "VENV ?= .venv\nPY := $(VENV)/bin/python\n.PHONY: lint test\n\nlint:\n\t@$(PY) -m flake8 src\n\
             \t$(VENV)/bin/black --check src\ntest: lint\n\t$(PY) -m pytest\nfmt:\n\tblack src\n",
        );
        let lint = make.iter().find(|e| e.name == "lint").unwrap();
        assert_eq!(
            lint.body,
            vec![
                ".venv/bin/python -m flake8 src",
                ".venv/bin/black --check src"
            ]
        );
        assert_eq!(lint.run, "make lint");
        let test = make.iter().find(|e| e.name == "test").unwrap();
        assert_eq!(test.body, vec!["make lint", ".venv/bin/python -m pytest"]);
        assert!(!make.iter().any(|e| e.name == ".PHONY"));

        let just = justfile(
            "justfile",
            "set shell := [\"bash\", \"-c\"]\nsrc := \"src\"\n\n# lint\nlint:\n    uv run ruff check {{src}}\n\
             check: lint test\ntest *ARGS:\n    uv run pytest {{ARGS}}\n",
        );
        let lint = just.iter().find(|e| e.name == "lint").unwrap();
        assert_eq!(lint.body, vec!["uv run ruff check src"]);
        assert_eq!(
            just.iter().find(|e| e.name == "check").unwrap().body,
            vec!["just lint", "just test"]
        );
    }
}
