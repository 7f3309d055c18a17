//! Setup: installing what the chosen checks need the way the repository's CI does — its own
//! install steps when it has them, else from lockfiles, dependency groups, extras,
//! requirements files and tox environments — and the tools no dependency list declares.

use std::collections::BTreeSet;

use super::Context;
use super::python::{EnvKind, PythonProject, requirement_name};
use super::resolve::{Invocation, Needs};
use super::shell::{quote, raw_words, unquote};
use super::tools::Eco;

/// One setup command with what it was found from and the CI files that run its like.
pub(crate) struct SetupStep {
    pub command: String,
    pub from: String,
    pub ci: Vec<String>,
}

fn step(command: String, from: String, ci: Vec<String>) -> SetupStep {
    SetupStep { command, from, ci }
}

impl Context {
    pub(crate) fn setup(&self, needs: &Needs) -> Vec<SetupStep> {
        let mut steps = Vec::new();
        if needs.ecos.contains(&Eco::Node)
            && let Some(node) = &self.node
        {
            let pm = &node.pm;
            let from_ci = self
                .ci_installs(Eco::Node)
                .into_iter()
                .find_map(|(file, command)| {
                    let words: Vec<String> =
                        raw_words(&command).iter().map(|w| unquote(w)).collect();
                    let at = words
                        .iter()
                        .position(|w| pm.names().contains(&w.as_str()))?;
                    let rest: Vec<&String> = words[at + 1..].iter().collect();
                    // `npm install some-package` adds a package; `-g` installs outside the project.
                    let adds = rest.iter().skip(1).any(|w| !w.starts_with('-'));
                    let global = rest.iter().any(|w| *w == "-g" || *w == "--global");
                    if adds || global {
                        return None;
                    }
                    let args = if rest.is_empty() {
                        "install".to_string()
                    } else {
                        rest.iter().map(|w| quote(w)).collect::<Vec<_>>().join(" ")
                    };
                    Some((file, format!("{} {args}", pm.program)))
                });
            match from_ci {
                Some((file, command)) => steps.push(step(
                    command,
                    format!("the install step of the CI, with {}", pm.evidence),
                    vec![file],
                )),
                None => steps.push(step(pm.install(), pm.evidence.clone(), Vec::new())),
            }
        }
        if (needs.ecos.contains(&Eco::Python) || !needs.packages.is_empty())
            && let Some(py) = &self.python
        {
            self.python_setup(py, needs, &mut steps);
        }
        if needs.ecos.contains(&Eco::Rust) && self.cargo {
            let locked = self.repo.exists("Cargo.lock");
            steps.push(step(
                if locked {
                    "cargo fetch --locked"
                } else {
                    "cargo fetch"
                }
                .into(),
                if locked { "Cargo.lock" } else { "Cargo.toml" }.into(),
                Vec::new(),
            ));
        }
        if needs.ecos.contains(&Eco::Go) && self.go {
            steps.push(step("go mod download".into(), "go.mod".into(), Vec::new()));
        }
        if needs.hook_install {
            steps.push(step(
                format!("{}{} install-hooks", self.activation(), self.in_env("pre-commit")),
                format!("{}: hooks from other repositories are installed once, before the checks (which have no network)", super::precommit::CONFIG),
                Vec::new(),
            ));
        }
        steps
    }

    /// Install commands the CI runs for `eco`, with their file.
    fn ci_installs(&self, eco: Eco) -> Vec<(String, String)> {
        self.ci
            .commands
            .iter()
            .filter(|c| matches!(self.classify(&c.command), Invocation::Install(e) if e == eco))
            .map(|c| (c.file.clone(), c.command.clone()))
            .collect()
    }

    fn python_setup(&self, py: &PythonProject, needs: &Needs, steps: &mut Vec<SetupStep>) {
        let wanted: BTreeSet<&str> = needs.packages.iter().copied().collect();
        let holds = |set: &BTreeSet<String>| wanted.iter().any(|w| set.contains(*w));
        let mut installed: BTreeSet<String> = BTreeSet::new();
        let ci = self.ci_installs(Eco::Python);
        let installer = match py.env {
            EnvKind::Uv => "uv pip install",
            EnvKind::Poetry => "poetry run pip install",
            EnvKind::Pdm => "pdm run pip install",
            EnvKind::Venv => ".venv/bin/pip install",
        };
        match py.env {
            EnvKind::Uv | EnvKind::Poetry | EnvKind::Pdm => {
                let tool = match py.env {
                    EnvKind::Uv => "uv",
                    EnvKind::Poetry => "poetry",
                    _ => "pdm",
                };
                let from_ci = ci.iter().find(|(_, c)| {
                    let words: Vec<String> = raw_words(c).iter().map(|w| unquote(w)).collect();
                    words.first().is_some_and(|w| w == tool)
                });
                let mut groups: Vec<&String> = Vec::new();
                for (group, members) in &py.groups {
                    let default = match py.env {
                        EnvKind::Poetry => !py.optional_groups.contains(group),
                        _ => py.default_groups.contains(group),
                    };
                    if default || holds(members) || from_ci.is_some() {
                        installed.extend(members.iter().cloned());
                    }
                    if !default && holds(members) {
                        groups.push(group);
                    }
                }
                for members in py.extras.values() {
                    installed.extend(members.iter().cloned());
                }
                match from_ci {
                    Some((file, command)) => steps.push(step(
                        command.clone(),
                        format!("the install step of the CI, with {}", py.env_evidence),
                        vec![file.clone()],
                    )),
                    None => {
                        let mut command = match py.env {
                            EnvKind::Uv => "uv sync --locked".to_string(),
                            EnvKind::Poetry => "poetry install --no-interaction".to_string(),
                            _ => "pdm install".to_string(),
                        };
                        if !py.extras.is_empty() && py.env != EnvKind::Pdm {
                            command.push_str(" --all-extras");
                        }
                        for g in &groups {
                            let flag = if py.env == EnvKind::Poetry {
                                "--with"
                            } else {
                                "--group"
                            };
                            command.push_str(&format!(" {flag} {}", quote(g)));
                        }
                        let mut why = py.env_evidence.clone();
                        if !groups.is_empty() {
                            let names: Vec<&str> = groups.iter().map(|g| g.as_str()).collect();
                            why.push_str(&format!(
                                ", the dependency groups holding the checks' tools ({})",
                                names.join(", ")
                            ));
                        }
                        steps.push(step(command, why, Vec::new()));
                    }
                }
            }
            EnvKind::Venv => {
                steps.push(step(
                    "python3 -m venv .venv && echo '*' > .venv/.gitignore".into(),
                    format!(
                        "{} (it ignores itself, so it never enters a commit)",
                        py.env_evidence
                    ),
                    Vec::new(),
                ));
                let mut ci_installed_files = false;
                for (file, command) in &ci {
                    let Some(args) = pip_args(command) else {
                        continue;
                    };
                    ci_installed_files |= args
                        .iter()
                        .any(|a| a == "-r" || a.starts_with('.') || a == "-e");
                    for (i, a) in args.iter().enumerate() {
                        let file = args
                            .get(i + 1)
                            .filter(|_| a == "-r" || a == "--requirement");
                        if let Some(members) =
                            file.and_then(|f| py.requirements.get(f.trim_start_matches("./")))
                        {
                            installed.extend(members.iter().cloned());
                        } else if let Some(extras) =
                            a.strip_prefix(".[").and_then(|e| e.strip_suffix(']'))
                        {
                            for extra in extras.split(',') {
                                installed.extend(
                                    py.extras.get(extra.trim()).into_iter().flatten().cloned(),
                                );
                            }
                        } else {
                            installed.extend(requirement_name(a));
                        }
                    }
                    steps.push(step(
                        format!(
                            "{installer} {}",
                            args.iter().map(|a| quote(a)).collect::<Vec<_>>().join(" ")
                        ),
                        "the install step of the CI, into .venv".into(),
                        vec![file.clone()],
                    ));
                }
                let mut args: Vec<String> = Vec::new();
                let mut why: Vec<String> = Vec::new();
                if !ci_installed_files {
                    for (file, members) in &py.requirements {
                        let lower = file.to_ascii_lowercase();
                        let base = lower == "requirements.txt" || lower.ends_with("/base.txt");
                        let named = ["dev", "test", "lint", "ci", "check", "typing", "style"]
                            .iter()
                            .any(|n| lower.contains(n));
                        if base || named || holds(members) {
                            args.push("-r".into());
                            args.push(file.clone());
                            installed.extend(members.iter().cloned());
                            why.push(file.clone());
                        }
                    }
                    if py.installable {
                        let tox_extras: BTreeSet<String> = py
                            .tox
                            .iter()
                            .flat_map(|t| needs.tox_envs.iter().flat_map(|e| t.env(e).extras))
                            .collect();
                        let extras: Vec<&String> = py
                            .extras
                            .iter()
                            .filter(|(name, members)| {
                                holds(members)
                                    || tox_extras.contains(*name)
                                    || ["test", "tests", "testing", "dev", "lint", "typing"]
                                        .contains(&name.as_str())
                            })
                            .map(|(name, members)| {
                                installed.extend(members.iter().cloned());
                                name
                            })
                            .collect();
                        if extras.is_empty() {
                            args.extend(["-e".to_string(), ".".to_string()]);
                            why.push("the project itself (editable)".into());
                        } else {
                            let names: Vec<&str> = extras.iter().map(|e| e.as_str()).collect();
                            args.extend(["-e".to_string(), format!(".[{}]", names.join(","))]);
                            why.push(format!(
                                "the project itself with extras {}",
                                names.join(", ")
                            ));
                        }
                    }
                }
                if let Some(tox) = &py.tox {
                    for env in &needs.tox_envs {
                        let env = tox.env(env);
                        let mut any = false;
                        for dep in &env.deps {
                            let words: Vec<String> =
                                raw_words(dep).iter().map(|w| unquote(w)).collect();
                            let new: Vec<String> = match words.as_slice() {
                                [flag, file] if flag == "-r" || flag == "-c" => {
                                    vec![flag.clone(), file.clone()]
                                }
                                [one] if one.starts_with("-r") => {
                                    vec!["-r".into(), one[2..].to_string()]
                                }
                                [one] => vec![one.clone()],
                                _ => continue,
                            };
                            let present = args.windows(new.len()).any(|w| w == new.as_slice());
                            if !present {
                                if let Some(file) = new.get(1)
                                    && let Some(members) =
                                        py.requirements.get(file.trim_start_matches("./"))
                                {
                                    installed.extend(members.iter().cloned());
                                }
                                installed.extend(requirement_name(&new[0]));
                                args.extend(new);
                                any = true;
                            }
                        }
                        if any {
                            why.push(tox.label(&env.name) + " deps");
                        }
                    }
                }
                if !args.is_empty() {
                    steps.push(step(
                        format!(
                            "{installer} {}",
                            args.iter().map(|a| quote(a)).collect::<Vec<_>>().join(" ")
                        ),
                        why.join(", "),
                        Vec::new(),
                    ));
                }
            }
        }
        let missing: Vec<&str> = wanted
            .iter()
            .copied()
            .filter(|p| !installed.contains(*p))
            .collect();
        if !missing.is_empty() {
            steps.push(step(
                format!("{installer} {}", missing.join(" ")),
                format!(
                    "the checks run {} but the repository's installs do not declare {}",
                    missing.join(", "),
                    if missing.len() == 1 { "it" } else { "them" }
                ),
                Vec::new(),
            ));
        }
    }
}

/// The arguments of a CI `pip install …` line, without what only makes sense outside a
/// virtualenv (`--user`, `--system`, `--break-system-packages`).
fn pip_args(command: &str) -> Option<Vec<String>> {
    let words: Vec<String> = raw_words(command).iter().map(|w| unquote(w)).collect();
    let at = words.iter().position(|w| w == "install")?;
    let before: Vec<&str> = words[..at].iter().map(String::as_str).collect();
    let is_pip = before
        .iter()
        .any(|w| w.ends_with("pip") || w.ends_with("pip3"));
    if !is_pip {
        return None;
    }
    // tox itself is not needed: its environments' dependencies are installed instead.
    let args: Vec<String> = words[at + 1..]
        .iter()
        .filter(|w| {
            !matches!(
                w.as_str(),
                "--user" | "--system" | "--break-system-packages" | "tox" | "tox-uv"
            )
        })
        .cloned()
        .collect();
    args.iter().any(|a| !a.starts_with('-')).then_some(args)
}
