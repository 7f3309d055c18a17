//! tox environments (tox.ini, setup.cfg `[tox:tox]`, pyproject's `legacy_tox_ini` and native
//! `[tool.tox]`): their dependencies and commands, with tox's substitutions and factor
//! conditions applied, so setup can install what they need and the checks run what they run.

use std::collections::BTreeMap;

use super::entries::{EntryKind, EntryPoint};
use super::python::ini_sections;
use super::repo::Repo;
use super::shell::simple_commands;
use crate::Result;

#[derive(Debug, Clone, Default)]
pub(crate) struct ToxEnv {
    pub name: String,
    /// Requirement lines, `-r file` included.
    pub deps: Vec<String>,
    pub commands: Vec<String>,
    pub extras: Vec<String>,
}

#[derive(Debug)]
pub(crate) struct Tox {
    pub file: String,
    pub envlist: Vec<String>,
    named: BTreeMap<String, ToxEnv>,
    base: ToxEnv,
}

impl Tox {
    /// Environment `name` as tox builds it: its own section over `[testenv]`.
    pub fn env(&self, name: &str) -> ToxEnv {
        let mut env = self.named.get(name).cloned().unwrap_or_else(|| ToxEnv {
            name: name.to_string(),
            ..self.base.clone()
        });
        env.name = name.to_string();
        env
    }

    pub fn label(&self, name: &str) -> String {
        if self.named.contains_key(name) {
            format!("{} [testenv:{name}]", self.file)
        } else {
            format!("{} [testenv] (environment {name})", self.file)
        }
    }

    /// Every environment: the env list first, then the other named ones.
    pub fn names(&self) -> Vec<String> {
        let mut names = self.envlist.clone();
        for name in self.named.keys() {
            if !names.contains(name) {
                names.push(name.clone());
            }
        }
        names
    }

    pub fn entries(&self) -> Vec<EntryPoint> {
        self.names()
            .iter()
            .map(|name| {
                let env = self.env(name);
                EntryPoint::new(
                    EntryKind::Tox,
                    name,
                    format!("tox -e {name}"),
                    env.commands
                        .iter()
                        .flat_map(|c| simple_commands(c))
                        .collect(),
                    self.label(name),
                )
            })
            .collect()
    }
}

pub(crate) fn read(repo: &Repo, pyproject: &toml::Value, setup_cfg: &str) -> Result<Option<Tox>> {
    if let Some(text) = repo.read("tox.ini")? {
        return Ok(Some(from_ini("tox.ini", &text, "tox")));
    }
    let tool_tox = pyproject.get("tool").and_then(|t| t.get("tox"));
    if let Some(legacy) = tool_tox
        .and_then(|t| t.get("legacy_tox_ini"))
        .and_then(|v| v.as_str())
    {
        return Ok(Some(from_ini("pyproject.toml", legacy, "tox")));
    }
    if let Some(native) = tool_tox {
        return Ok(Some(from_toml(native)));
    }
    if setup_cfg.contains("[tox:tox]") {
        return Ok(Some(from_ini("setup.cfg", setup_cfg, "tox:tox")));
    }
    Ok(None)
}

fn from_ini(file: &str, text: &str, tox_section: &str) -> Tox {
    let sections = ini_sections(text);
    let value = |section: &str, key: &str| -> Option<String> {
        sections.get(section).and_then(|s| s.get(key)).cloned()
    };
    let envlist = value(tox_section, "envlist")
        .or_else(|| value(tox_section, "env_list"))
        .map(|v| {
            split_outside_braces(&v)
                .iter()
                .map(|e| e.trim())
                .filter(|e| !e.is_empty())
                .flat_map(expand_braces)
                .collect()
        })
        .unwrap_or_default();
    let prefix = "testenv:";
    let env_of = |section: &str, name: &str, base: Option<&ToxEnv>| -> ToxEnv {
        let get = |key: &str| {
            value(section, key)
                .or_else(|| base.is_some().then(|| value("testenv", key)).flatten())
                .map(|v| substitute(&v, &sections, 0))
        };
        let lines = |key: &str| -> Vec<String> {
            get(key)
                .map(|v| {
                    join_continuations(&v)
                        .into_iter()
                        .filter_map(|l| factor_filter(&l, name))
                        .collect()
                })
                .unwrap_or_default()
        };
        ToxEnv {
            name: name.to_string(),
            deps: lines("deps"),
            commands: lines("commands")
                .iter()
                .map(|c| {
                    super::shell::raw_words(c)
                        .into_iter()
                        .filter(|w| !unresolved(w))
                        .collect::<Vec<_>>()
                        .join(" ")
                })
                .collect(),
            extras: lines("extras")
                .iter()
                .flat_map(|l| l.split(',').map(|e| e.trim().to_string()))
                .filter(|e| !e.is_empty())
                .collect(),
        }
    };
    let base = env_of("testenv", "py", None);
    let named = sections
        .keys()
        .filter_map(|s| s.strip_prefix(prefix).map(|n| (s.clone(), n.to_string())))
        .map(|(section, name)| {
            let env = env_of(&section, &name, Some(&base));
            (name, env)
        })
        .collect();
    Tox {
        file: file.to_string(),
        envlist,
        named,
        base,
    }
}

fn from_toml(tox: &toml::Value) -> Tox {
    let strings = |v: Option<&toml::Value>| -> Vec<String> {
        v.and_then(|v| v.as_array())
            .map(|a| {
                a.iter()
                    .filter_map(|i| i.as_str().map(str::to_string))
                    .collect()
            })
            .unwrap_or_default()
    };
    let env_of = |name: &str, own: Option<&toml::Value>, base: Option<&toml::Value>| {
        let get = |key: &str| {
            own.and_then(|t| t.get(key))
                .or_else(|| base.and_then(|b| b.get(key)))
        };
        let commands = get("commands")
            .and_then(|c| c.as_array())
            .map(|cmds| {
                cmds.iter()
                    .filter_map(|c| c.as_array())
                    .map(|words| {
                        words
                            .iter()
                            .filter_map(|w| w.as_str())
                            .map(|w| substitute(w, &BTreeMap::new(), 0))
                            .filter(|w| !unresolved(w))
                            .map(|w| super::shell::quote(&w))
                            .collect::<Vec<_>>()
                            .join(" ")
                    })
                    .collect()
            })
            .unwrap_or_default();
        ToxEnv {
            name: name.to_string(),
            deps: strings(get("deps")),
            commands,
            extras: strings(get("extras")),
        }
    };
    let base_table = tox.get("env_run_base");
    let named = tox
        .get("env")
        .and_then(|e| e.as_table())
        .map(|t| {
            t.iter()
                .map(|(name, own)| (name.clone(), env_of(name, Some(own), base_table)))
                .collect()
        })
        .unwrap_or_default();
    Tox {
        file: "pyproject.toml".into(),
        envlist: strings(tox.get("env_list")),
        named,
        base: env_of("py", None, base_table),
    }
}

/// A word still holding a tox substitution detection cannot fill (`--basetemp={envtmpdir}`):
/// it names tox's own directories, which a run does not have.
fn unresolved(word: &str) -> bool {
    word.find('{').is_some_and(|open| {
        word[open + 1..].find('}').is_some_and(|len| {
            let inner = &word[open + 1..open + 1 + len];
            !inner.is_empty() && inner.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
        })
    }) && !word.contains("${")
}

/// An env list split at commas and line ends that are not inside `{…}`.
fn split_outside_braces(list: &str) -> Vec<String> {
    let mut out = vec![String::new()];
    let mut depth = 0usize;
    for c in list.chars() {
        match c {
            '{' => depth += 1,
            '}' => depth = depth.saturating_sub(1),
            ',' | '\n' if depth == 0 => {
                out.push(String::new());
                continue;
            }
            _ => {}
        }
        if let Some(last) = out.last_mut() {
            last.push(c);
        }
    }
    out
}

/// `py{310,311}-lint` → `py310-lint`, `py311-lint`.
fn expand_braces(env: &str) -> Vec<String> {
    let (Some(open), Some(close)) = (env.find('{'), env.find('}')) else {
        return vec![env.to_string()];
    };
    if close < open {
        return vec![env.to_string()];
    }
    let (head, tail) = (&env[..open], &env[close + 1..]);
    env[open + 1..close]
        .split(',')
        .flat_map(|alt| expand_braces(&format!("{head}{}{tail}", alt.trim())))
        .collect()
}

fn join_continuations(value: &str) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    let mut pending = String::new();
    for line in value.lines().map(str::trim).filter(|l| !l.is_empty()) {
        if let Some(head) = line.strip_suffix('\\') {
            pending.push_str(head);
            pending.push(' ');
        } else {
            pending.push_str(line);
            out.push(std::mem::take(&mut pending));
        }
    }
    if !pending.trim().is_empty() {
        out.push(pending);
    }
    out
}

/// A line of a setting with its factor condition (`lint: black --check .`,
/// `!py38: …`) applied for environment `env`.
fn factor_filter(line: &str, env: &str) -> Option<String> {
    let Some((condition, rest)) = line.split_once(':') else {
        return Some(line.to_string());
    };
    let is_condition = !condition.is_empty()
        && condition.chars().all(|c| {
            c.is_ascii_alphanumeric() || matches!(c, ',' | '-' | '!' | '.' | '_' | '{' | '}')
        })
        && rest.starts_with(' ');
    if !is_condition {
        return Some(line.to_string());
    }
    let factors: Vec<&str> = env.split('-').collect();
    let holds = condition.split(',').flat_map(expand_braces).any(|alt| {
        alt.split('-').all(|f| match f.strip_prefix('!') {
            Some(neg) => !factors.contains(&neg),
            None => factors.contains(&f),
        })
    });
    holds.then(|| rest.trim().to_string())
}

/// tox's substitutions, as far as detection needs them: positional arguments take their
/// default, directories become the repository root, `{[section]key}` is inlined.
fn substitute(
    value: &str,
    sections: &BTreeMap<String, BTreeMap<String, String>>,
    depth: usize,
) -> String {
    let mut out = String::new();
    let mut rest = value;
    while let Some(open) = rest.find('{') {
        out.push_str(&rest[..open]);
        let Some(close) = rest[open..].find('}').map(|c| open + c) else {
            out.push_str(&rest[open..]);
            return out;
        };
        let inner = &rest[open + 1..close];
        let replacement = if let Some(default) = inner.strip_prefix("posargs:") {
            default.to_string()
        } else if inner == "posargs" {
            String::new()
        } else if matches!(inner, "toxinidir" | "tox_root" | "toxworkdir") {
            ".".into()
        } else if matches!(
            inner,
            "envpython" | "envbindir" | "env_bin_dir" | "env_python"
        ) {
            if inner.contains("python") {
                "python".into()
            } else {
                ".venv/bin".into()
            }
        } else if let Some(env) = inner.strip_prefix("env:") {
            env.split_once(':')
                .map(|(_, d)| d.to_string())
                .unwrap_or_default()
        } else if let Some(reference) = inner.strip_prefix('[') {
            match reference.split_once(']') {
                Some((section, key)) if depth < 3 => sections
                    .get(if section.is_empty() {
                        "testenv"
                    } else {
                        section
                    })
                    .and_then(|s| s.get(key))
                    .map(|v| substitute(v, sections, depth + 1))
                    .unwrap_or_default(),
                _ => String::new(),
            }
        } else {
            // Shell braces (`${VAR}`, globs `{a,b}`) are not tox's: keep them.
            format!("{{{inner}}}")
        };
        out.push_str(&replacement);
        rest = &rest[close + 1..];
    }
    out.push_str(rest);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn environments_inherit_substitute_and_filter_factors() {
        let tox = from_ini(
            "tox.ini",
            "[tox]\nenvlist = py{310,311}, lint\n\n[testenv]\ndeps =\n    pytest\n    -r requirements/test.txt\n\
             commands = pytest {posargs:tests}\n\n[testenv:lint]\nskip_install = true\ndeps =\n    {[testenv]deps}\n    black\n    flake8\n\
             commands =\n    black --check .\n    lint: flake8 src \\\n      tests\n    py311: never\n",
            "tox",
        );
        assert_eq!(tox.envlist, vec!["py310", "py311", "lint"]);
        let lint = tox.env("lint");
        assert_eq!(
            lint.deps,
            vec!["pytest", "-r requirements/test.txt", "black", "flake8"]
        );
        assert_eq!(lint.commands, vec!["black --check .", "flake8 src tests"]);
        let py = tox.env("py311");
        assert_eq!(py.commands, vec!["pytest tests"]);
        assert_eq!(tox.label("py311"), "tox.ini [testenv] (environment py311)");
    }
}
