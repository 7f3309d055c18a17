//! `.pre-commit-config.yaml`: its hooks, what each is for (from the command of a local hook, or
//! the id of a well-known one), and whether pre-commit.ci runs them.

use yaml_rust2::{Yaml, YamlLoader};

use super::entries::{EntryKind, EntryPoint, Named};
use super::repo::Repo;
use super::shell::simple_commands;
use super::tools::Eco;
use crate::Result;

pub(crate) const CONFIG: &str = ".pre-commit-config.yaml";

#[derive(Debug)]
pub(crate) struct PreCommit {
    pub hooks: Vec<EntryPoint>,
    /// Hook ids pre-commit.ci runs (the config has a `ci:` section), none when it does not.
    pub service_runs: Vec<String>,
}

/// Hooks of well-known repositories that rewrite files, and those that only report.
const FIXERS: &[&str] = &[
    "ruff-format",
    "black",
    "black-jupyter",
    "isort",
    "prettier",
    "trailing-whitespace",
    "end-of-file-fixer",
    "mixed-line-ending",
    "fix-byte-order-marker",
    "requirements-txt-fixer",
    "fmt",
    "cargo-fmt",
    "rustfmt",
    "go-fmt",
    "gofmt",
    "go-imports",
    "clang-format",
    "autopep8",
    "yapf",
    "biome-format",
    "dprint",
    "oxfmt",
    "pyupgrade",
];

/// The ecosystem a well-known hook checks.
pub(crate) fn hook_eco(id: &str) -> Option<Eco> {
    Some(match id {
        "ruff" | "ruff-check" | "ruff-format" | "black" | "black-jupyter" | "isort" | "flake8"
        | "mypy" | "pylint" | "pyupgrade" | "autopep8" | "yapf" | "pyright" => Eco::Python,
        "prettier" | "eslint" | "biome-check" | "biome-format" | "biome-lint" | "oxlint" => {
            Eco::Node
        }
        "fmt" | "cargo-fmt" | "rustfmt" | "clippy" | "cargo-check" => Eco::Rust,
        "go-fmt" | "gofmt" | "go-imports" | "go-vet" | "golangci-lint" => Eco::Go,
        _ => return None,
    })
}

/// What running one hook over every file looks like: the files the commit would hold, new
/// ones included (`--all-files` would skip files not yet added to git).
pub(crate) fn run_command(program: &str, id: &str) -> String {
    format!(
        "git ls-files -z --cached --others --exclude-standard | xargs -0 {program} run {id} --files"
    )
}

pub(crate) fn read(repo: &Repo) -> Result<Option<PreCommit>> {
    let Some(text) = repo.read(CONFIG)? else {
        return Ok(None);
    };
    let Some(doc) = YamlLoader::load_from_str(&text)
        .ok()
        .and_then(|mut d| (!d.is_empty()).then(|| d.swap_remove(0)))
    else {
        return Ok(None);
    };
    let default_stages = stages(&doc["default_stages"]);
    let mut hooks = Vec::new();
    for repo_entry in doc["repos"].as_vec().into_iter().flatten() {
        let source = repo_entry["repo"].as_str().unwrap_or("");
        let local = matches!(source, "local" | "meta");
        if source == "meta" {
            continue;
        }
        for hook in repo_entry["hooks"].as_vec().into_iter().flatten() {
            let Some(id) = hook["id"].as_str() else {
                continue;
            };
            let hook_stages = match stages(&hook["stages"]) {
                s if s.is_empty() => default_stages.clone(),
                s => s,
            };
            // `pre-commit run` (and CI) runs the hooks of the commit stage only.
            if !hook_stages.is_empty()
                && !hook_stages
                    .iter()
                    .any(|s| s == "pre-commit" || s == "commit")
            {
                continue;
            }
            let args: Vec<String> = hook["args"]
                .as_vec()
                .into_iter()
                .flatten()
                .filter_map(|a| a.as_str().map(super::shell::quote))
                .collect();
            let language = hook["language"].as_str().unwrap_or("");
            let body = match hook["entry"].as_str() {
                Some(entry) if local => {
                    let mut command = entry.to_string();
                    for a in &args {
                        command.push(' ');
                        command.push_str(a);
                    }
                    simple_commands(&command)
                }
                _ => Vec::new(),
            };
            let mut entry = EntryPoint::new(
                EntryKind::Hook,
                id,
                run_command("pre-commit", id),
                body,
                format!("{CONFIG} hook {id}"),
            );
            entry.remote = !local
                || !matches!(
                    language,
                    "system" | "script" | "unsupported" | "unsupported_script" | "fail" | "pygrep"
                );
            entry.hook_role = if FIXERS.contains(&id) {
                Some(Named::FormatApply)
            } else if local {
                None
            } else {
                Some(Named::Lint)
            };
            hooks.push(entry);
        }
    }
    let service_runs = match &doc["ci"] {
        Yaml::Hash(ci) => {
            let skip: Vec<String> = ci
                .get(&Yaml::String("skip".into()))
                .and_then(|s| s.as_vec())
                .into_iter()
                .flatten()
                .filter_map(|s| s.as_str().map(str::to_string))
                .collect();
            hooks
                .iter()
                .map(|h| h.name.clone())
                .filter(|id| !skip.contains(id))
                .collect()
        }
        _ => Vec::new(),
    };
    Ok(Some(PreCommit {
        hooks,
        service_runs,
    }))
}

fn stages(y: &Yaml) -> Vec<String> {
    y.as_vec()
        .into_iter()
        .flatten()
        .filter_map(|s| s.as_str().map(str::to_string))
        .collect()
}
