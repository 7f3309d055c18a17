//! Turning one command line (from a CI step, a script, a recipe) into checks: what it invokes
//! (a declared entry point, a known tool, an install), and the check commands that follow —
//! formatters in apply mode, linters strictly in check mode, entry points kept whole when they
//! are already right and opened up when they would fix or mix stages.

use std::collections::BTreeSet;

use super::Context;
use super::entries::{EntryKind, EntryPoint, Named, best, named};
use super::precommit;
use super::python::{EnvKind, package_of};
use super::shell::{raw_words, unquote};
use super::tools::{
    Call, Eco, Role, Runner, Tool, apply_mode, check_mode, formatter_checks, linter_fixes,
};
use crate::Stage;

/// One check found, before it joins the plan.
#[derive(Debug, Clone)]
pub(crate) struct Found {
    pub stage: Stage,
    pub command: String,
    pub from: String,
    /// What the check needs set up.
    pub needs: Needs,
}

#[derive(Debug, Clone, Default)]
pub(crate) struct Needs {
    pub ecos: BTreeSet<Eco>,
    /// Python packages the check runs.
    pub packages: BTreeSet<&'static str>,
    pub tox_envs: BTreeSet<String>,
    /// pre-commit hooks that need `pre-commit install-hooks`.
    pub hook_install: bool,
}

impl Needs {
    pub(crate) fn merge(&mut self, other: &Needs) {
        self.ecos.extend(&other.ecos);
        self.packages.extend(&other.packages);
        self.tox_envs.extend(other.tox_envs.iter().cloned());
        self.hook_install |= other.hook_install;
    }
}

/// What one simple command invokes.
pub(crate) enum Invocation<'a> {
    Entry(&'a EntryPoint, Vec<String>),
    Entries(Vec<&'a EntryPoint>),
    Tool(Call, &'static Tool, usize),
    Install(Eco),
    /// Changes nothing a check depends on (`echo`, `cd .`, `mkdir -p`).
    Harmless,
    Unknown,
}

const HARMLESS: &[&str] = &[
    "echo", "printf", "true", ":", "set", "export", "mkdir", "rm", "cp", "mv", "touch", "cat",
    "ls", "exit", "test", "[", "tee", "which", "command", "corepack", "git", "sleep", "wait",
];

/// What running `run` extra arguments said: fix flags make a lint entry point a fixer.
fn fixes_by_args(extra: &[String]) -> bool {
    extra.iter().any(|a| {
        let a = a.split('=').next().unwrap_or(a);
        matches!(a, "--fix" | "--write" | "--apply" | "-w")
    })
}

impl Context {
    pub(crate) fn classify(&self, command: &str) -> Invocation<'_> {
        let Some(call) = Call::parse(command) else {
            return Invocation::Harmless;
        };
        let words: Vec<String> = raw_words(command).iter().map(|w| unquote(w)).collect();
        let values = call.values();
        let first_arg = values
            .iter()
            .find(|v| !v.starts_with('-'))
            .map(String::as_str);
        if let Some(node) = &self.node
            && let Some((script, extra)) = node.script_run_by(&words)
        {
            return Invocation::Entry(script, extra);
        }
        match (call.program.as_str(), first_arg) {
            ("make" | "gmake", _) | ("just", _) => {
                let kind = if call.program == "just" {
                    EntryKind::Just
                } else {
                    EntryKind::Make
                };
                let found: Vec<&EntryPoint> = values
                    .iter()
                    .filter(|v| !v.starts_with('-') && !v.contains('='))
                    .filter_map(|t| self.entries.iter().find(|e| e.kind == kind && &e.name == t))
                    .collect();
                return if found.is_empty() {
                    Invocation::Unknown
                } else {
                    Invocation::Entries(found)
                };
            }
            ("tox", _) => return self.tox_invocation(&values),
            ("pre-commit" | "prek", Some("run")) => return self.hook_invocation(&values),
            ("pip" | "pip3", Some("install"))
            | ("uv", Some("sync" | "pip"))
            | ("poetry", Some("install"))
            | ("pdm", Some("install" | "sync")) => return Invocation::Install(Eco::Python),
            ("npm" | "pnpm" | "yarn" | "bun", Some("ci" | "install" | "i")) => {
                return Invocation::Install(Eco::Node);
            }
            ("yarn", None) => return Invocation::Install(Eco::Node),
            ("go", Some("mod")) | ("cargo", Some("fetch")) => return Invocation::Harmless,
            _ => {}
        }
        if call.runner == Runner::Python && call.program == "pip" {
            return Invocation::Install(Eco::Python);
        }
        if let Some((tool, sub)) = call.tool() {
            return Invocation::Tool(call, tool, sub);
        }
        if HARMLESS.contains(&call.program.as_str()) || call.program.starts_with("setup") {
            return Invocation::Harmless;
        }
        Invocation::Unknown
    }

    fn tox_invocation(&self, values: &[String]) -> Invocation<'_> {
        let Some(tox) = &self.tox_entries() else {
            return Invocation::Unknown;
        };
        let envs: Vec<String> = values
            .iter()
            .position(|v| v == "-e" || v == "--env")
            .and_then(|i| values.get(i + 1))
            .or_else(|| {
                values
                    .iter()
                    .find_map(|v| v.strip_prefix("-e").filter(|s| !s.is_empty()).map(|_| v))
            })
            .filter(|e| !e.contains("${") && !e.contains('$'))
            .map(|e| {
                e.trim_start_matches("-e")
                    .split(',')
                    .map(str::to_string)
                    .collect()
            })
            .unwrap_or_default();
        let chosen: Vec<&EntryPoint> = if envs.is_empty() {
            let list = self
                .python
                .as_ref()
                .and_then(|p| p.tox.as_ref())
                .map(|t| t.envlist.clone())
                .unwrap_or_default();
            tox.iter()
                .filter(|e| list.contains(&e.name))
                .copied()
                .collect()
        } else {
            tox.iter()
                .filter(|e| envs.contains(&e.name))
                .copied()
                .collect()
        };
        Invocation::Entries(chosen)
    }

    fn tox_entries(&self) -> Option<Vec<&EntryPoint>> {
        let list: Vec<&EntryPoint> = self
            .entries
            .iter()
            .filter(|e| e.kind == EntryKind::Tox)
            .collect();
        (!list.is_empty()).then_some(list)
    }

    fn hook_invocation(&self, values: &[String]) -> Invocation<'_> {
        let hooks: Vec<&EntryPoint> = self
            .entries
            .iter()
            .filter(|e| e.kind == EntryKind::Hook)
            .collect();
        let positional: Vec<&String> = values
            .iter()
            .skip(1)
            .take_while(|v| !v.starts_with('-'))
            .collect();
        match positional.first() {
            Some(id) => Invocation::Entries(hooks.into_iter().filter(|h| &&h.name == id).collect()),
            None => Invocation::Entries(hooks),
        }
    }

    /// The checks a command found at `from` stands for.
    pub(crate) fn resolve(&self, command: &str, from: &str, depth: usize) -> (Vec<Found>, bool) {
        match self.classify(command) {
            Invocation::Tool(call, tool, sub) => {
                (vec![self.tool_check(&call, tool, sub, from)], true)
            }
            Invocation::Entry(entry, extra) => (self.entry_checks(entry, &extra, depth), true),
            Invocation::Entries(entries) => {
                let found = entries
                    .iter()
                    .flat_map(|e| self.entry_checks(e, &[], depth))
                    .collect();
                (found, !entries.is_empty())
            }
            Invocation::Install(_) | Invocation::Harmless => (Vec::new(), true),
            Invocation::Unknown => (Vec::new(), false),
        }
    }

    /// A tool call as a check: through the project's environment, in the mode its stage needs.
    pub(crate) fn tool_check(
        &self,
        call: &Call,
        tool: &'static Tool,
        sub: usize,
        from: &str,
    ) -> Found {
        let call = self.through_env(call, tool);
        let (stage, command) = match tool.role {
            Role::Formatter => (Stage::Format, apply_mode(&call, tool, sub)),
            Role::Linter | Role::TypeChecker => (Stage::Lint, check_mode(&call, tool, sub)),
            Role::Tests => (Stage::Test, call.render()),
        };
        let mut needs = Needs::default();
        needs.ecos.insert(tool.eco);
        needs.packages.extend(package_of(tool.name));
        if call.prefix.iter().any(|w| w == "coverage") {
            needs.packages.insert("coverage");
        }
        Found {
            stage,
            command,
            from: from.to_string(),
            needs,
        }
    }

    /// A call as this repository's environment runs it: a bare Python tool through uv, poetry
    /// or `.venv/bin`, a bare Node tool through the package manager.
    fn through_env(&self, call: &Call, tool: &Tool) -> Call {
        let mut call = call.clone();
        let assignments = call
            .prefix
            .iter()
            .take_while(|w| super::shell::is_assignment(w))
            .count();
        match (tool.eco, &call.runner) {
            (Eco::Python, Runner::Bare) => {
                if let Some(py) = &self.python {
                    let runner = py.runner();
                    match runner.strip_suffix(' ') {
                        Some(prefix) => call.prefix.insert(assignments, prefix.to_string()),
                        None => call.program_word = format!("{runner}{}", call.program),
                    }
                }
            }
            (Eco::Python, Runner::Python) => {
                // `python -m pytest` and `coverage run -m pytest` mean the environment's
                // python and coverage.
                let word = call
                    .prefix
                    .get(assignments)
                    .map(|w| unquote(w))
                    .unwrap_or_default();
                let runs_itself = matches!(
                    word.as_str(),
                    "uv" | "uvx" | "poetry" | "pdm" | "pipenv" | "pipx"
                );
                if !runs_itself
                    && !word.contains('/')
                    && !word.is_empty()
                    && let Some(py) = &self.python
                {
                    call.prefix[assignments] = format!("{}{word}", py.runner());
                }
            }
            (Eco::Node, Runner::Bare) => {
                if let Some(node) = &self.node {
                    call.prefix.insert(assignments, node.pm.exec_prefix());
                }
            }
            _ => {}
        }
        call
    }

    /// The checks an entry point stands for: itself when it already runs in the right mode,
    /// else what it runs (or its apply-mode twin for a format check).
    pub(crate) fn entry_checks(
        &self,
        entry: &EntryPoint,
        extra: &[String],
        depth: usize,
    ) -> Vec<Found> {
        let mut parts = Vec::new();
        let mut understood = !entry.body.is_empty();
        let mut fixes = false;
        let mut checking_formatter = false;
        for command in &entry.body {
            if depth > 4 {
                understood = false;
                break;
            }
            let from = format!("{} (`{command}`)", entry.label);
            match self.classify(command) {
                Invocation::Tool(call, tool, sub) => {
                    let ruff_fixes = self.python.as_ref().is_some_and(|p| p.ruff_fixes);
                    if matches!(tool.role, Role::Linter | Role::TypeChecker)
                        && linter_fixes(&call, tool, ruff_fixes)
                    {
                        fixes = true;
                    }
                    if tool.role == Role::Formatter && formatter_checks(&call, tool, sub) {
                        checking_formatter = true;
                    }
                    parts.push(self.tool_check(&call, tool, sub, &from));
                }
                _ => {
                    let (found, known) = self.resolve(command, &from, depth + 1);
                    understood &= known;
                    parts.extend(found);
                }
            }
        }
        if entry.kind == EntryKind::Hook {
            // A local hook whose linter would fix runs as its own command, strictly.
            if !entry.remote && fixes && understood {
                return parts;
            }
            return vec![self.hook_check(entry, &parts)];
        }
        let mut needs = Needs::default();
        for p in &parts {
            needs.merge(&p.needs);
        }
        needs.ecos.extend(entry.eco());
        if entry.kind == EntryKind::Tox {
            return parts
                .into_iter()
                .map(|mut p| {
                    p.needs.tox_envs.insert(entry.name.clone());
                    p
                })
                .collect();
        }
        let role = named(entry.kind, &entry.name);
        if role == Some(Named::LintFix)
            || (role != Some(Named::FormatApply) && fixes_by_args(extra))
        {
            return Vec::new();
        }
        let stages: BTreeSet<Stage> = parts.iter().map(|p| p.stage).collect();
        let formatting = matches!(role, Some(Named::FormatApply | Named::FormatCheck))
            || (!stages.is_empty() && stages.iter().all(|s| *s == Stage::Format));
        // A recipe that runs Python tools by name needs the environment on PATH.
        let bare_python = matches!(entry.kind, EntryKind::Make | EntryKind::Just)
            && entry.body.iter().any(|c| {
                matches!(self.classify(c), Invocation::Tool(call, tool, _) if tool.eco == Eco::Python && call.runner == Runner::Bare)
            });
        let keep = |stage: Stage, needs: Needs| {
            let mut command = if bare_python {
                format!("{}{}", self.activation(), self.in_env(&entry.run))
            } else {
                entry.run.clone()
            };
            for a in extra {
                command.push(' ');
                command.push_str(&super::shell::quote(a));
            }
            vec![Found {
                stage,
                command,
                from: entry.label.clone(),
                needs,
            }]
        };
        if formatting {
            if role != Some(Named::FormatCheck) && !checking_formatter {
                return keep(Stage::Format, needs);
            }
            if let Some(twin) = self.apply_twin(entry) {
                let mut found = self.entry_checks(twin, &[], depth + 1);
                for f in &mut found {
                    f.from = format!("{} (the apply mode of {})", f.from, entry.label);
                }
                return found;
            }
            return if understood { parts } else { Vec::new() };
        }
        if (fixes || stages.len() > 1) && understood {
            return parts;
        }
        if fixes {
            return Vec::new();
        }
        let stage = match (stages.iter().next(), role) {
            (Some(stage), _) if stages.len() == 1 => *stage,
            (_, Some(Named::Lint | Named::TypeCheck)) => Stage::Lint,
            (_, Some(Named::Test | Named::All)) => Stage::Test,
            _ => return Vec::new(),
        };
        keep(stage, needs)
    }

    /// The entry point that applies what a format-check entry point checks (`format` for
    /// `check:format`).
    fn apply_twin(&self, check: &EntryPoint) -> Option<&EntryPoint> {
        let candidates: Vec<&EntryPoint> = self
            .all_entries()
            .filter(|e| e.kind == check.kind && e.name != check.name)
            .collect();
        let twin = best(&candidates, Named::FormatApply)?;
        // A twin that only checks as well is no twin.
        let checks_only = twin.body.iter().any(|c| match self.classify(c) {
            Invocation::Tool(call, tool, sub) => {
                tool.role == Role::Formatter && formatter_checks(&call, tool, sub)
            }
            _ => false,
        });
        (!checks_only).then_some(twin)
    }

    /// A pre-commit hook, run through pre-commit; a hook that rewrites files runs twice, so the
    /// first run applies and the second proves nothing is left to change.
    fn hook_check(&self, hook: &EntryPoint, parts: &[Found]) -> Found {
        let stage = match hook.hook_role {
            Some(Named::FormatApply) => Stage::Format,
            Some(_) => Stage::Lint,
            None => match parts.first().map(|p| p.stage) {
                Some(stage) => stage,
                None => match named(EntryKind::Hook, &hook.name) {
                    Some(Named::FormatApply | Named::FormatCheck) => Stage::Format,
                    Some(Named::Test) => Stage::Test,
                    _ => Stage::Lint,
                },
            },
        };
        let once = precommit::run_command(&self.in_env("pre-commit"), &hook.name);
        let run = if stage == Stage::Format {
            format!("{once} || {once}")
        } else {
            once
        };
        let command = format!("{}{run}", self.activation());
        let mut needs = Needs::default();
        for p in parts {
            needs.merge(&p.needs);
        }
        needs.ecos.extend(precommit::hook_eco(&hook.name));
        needs.packages.insert("pre-commit");
        needs.hook_install = hook.remote;
        Found {
            stage,
            command,
            from: hook.label.clone(),
            needs,
        }
    }

    /// What puts a virtualenv's programs on PATH for a command that runs them by name
    /// (pre-commit hooks, Makefile recipes); uv, poetry and pdm do it with their `run`.
    pub(crate) fn activation(&self) -> &'static str {
        match self.python.as_ref().map(|p| p.env) {
            Some(EnvKind::Venv) => ". .venv/bin/activate && ",
            _ => "",
        }
    }

    /// `program` run with the Python environment's programs on PATH.
    pub(crate) fn in_env(&self, program: &str) -> String {
        match self.python.as_ref().map(|p| p.env) {
            Some(EnvKind::Venv) | None => program.to_string(),
            Some(_) => format!(
                "{}{program}",
                self.python.as_ref().map_or("", |p| p.runner())
            ),
        }
    }
}
