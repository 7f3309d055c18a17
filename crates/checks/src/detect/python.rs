//! Python projects: which environment the repository's tools live in (uv, poetry, pdm, or a
//! virtualenv filled with pip), which packages it declares and where (dependency groups, extras,
//! requirements files, tox environments), and which formatters, linters and test runners its
//! configuration files set up.

use std::collections::{BTreeMap, BTreeSet};

use super::repo::Repo;
use super::tox::{self, Tox};
use crate::Result;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum EnvKind {
    Uv,
    Poetry,
    Pdm,
    /// A virtualenv at `.venv` made by setup and filled with pip.
    Venv,
}

#[derive(Debug)]
pub(crate) struct PythonProject {
    pub env: EnvKind,
    pub env_evidence: String,
    /// Dependency groups (PEP 735 and poetry's) and the packages each declares.
    pub groups: BTreeMap<String, BTreeSet<String>>,
    /// Groups poetry installs only when asked (`optional = true`).
    pub optional_groups: BTreeSet<String>,
    /// Groups uv installs without being asked (`[tool.uv] default-groups`; `dev` otherwise).
    pub default_groups: BTreeSet<String>,
    pub extras: BTreeMap<String, BTreeSet<String>>,
    /// Requirements files and the packages each declares.
    pub requirements: BTreeMap<String, BTreeSet<String>>,
    /// The project itself can be installed (`pip install -e .`).
    pub installable: bool,
    /// Tools the configuration files set up, with the file that does.
    pub configured: Vec<(&'static str, String)>,
    /// Ruff's configuration makes `ruff check` fix by default (`fix = true`).
    pub ruff_fixes: bool,
    /// mypy's configuration names the files to check.
    pub mypy_files: bool,
    pub tox: Option<Tox>,
}

/// The package a tool comes from.
pub(crate) fn package_of(tool: &str) -> Option<&'static str> {
    Some(match tool {
        "ruff format" | "ruff check" => "ruff",
        "black" => "black",
        "isort" => "isort",
        "flake8" => "flake8",
        "pylint" => "pylint",
        "mypy" => "mypy",
        "pyright" => "pyright",
        "pytest" => "pytest",
        "pre-commit" => "pre-commit",
        "coverage" => "coverage",
        _ => return None,
    })
}

/// A requirement's distribution name, normalised (`Flake8[extra]>=6` → `flake8`).
pub(crate) fn requirement_name(line: &str) -> Option<String> {
    let line = line.split('#').next()?.trim();
    if line.is_empty() || line.starts_with('-') || line.contains("://") {
        return None;
    }
    let end = line
        .find(|c: char| !(c.is_ascii_alphanumeric() || c == '-' || c == '_' || c == '.'))
        .unwrap_or(line.len());
    let name = line[..end].to_ascii_lowercase().replace(['_', '.'], "-");
    (!name.is_empty()).then_some(name)
}

impl PythonProject {
    /// No Python project, only Python tools to run (pre-commit): a virtualenv for them.
    pub fn for_tools_only() -> PythonProject {
        PythonProject {
            env: EnvKind::Venv,
            env_evidence: "a virtualenv at .venv for the checks' Python tools".into(),
            groups: BTreeMap::new(),
            optional_groups: BTreeSet::new(),
            default_groups: BTreeSet::new(),
            extras: BTreeMap::new(),
            requirements: BTreeMap::new(),
            installable: false,
            configured: Vec::new(),
            ruff_fixes: false,
            mypy_files: false,
            tox: None,
        }
    }

    /// How a Python tool is run in this project's environment: a prefix ending in a space, or
    /// a directory ending in `/`.
    pub fn runner(&self) -> &'static str {
        match self.env {
            EnvKind::Uv => "uv run ",
            EnvKind::Poetry => "poetry run ",
            EnvKind::Pdm => "pdm run ",
            EnvKind::Venv => ".venv/bin/",
        }
    }
}

pub(crate) fn read(repo: &Repo) -> Result<Option<PythonProject>> {
    let pyproject_text = repo.read("pyproject.toml")?;
    let pyproject: toml::Value = pyproject_text
        .as_deref()
        .and_then(|t| toml::from_str(t).ok())
        .unwrap_or(toml::Value::Table(Default::default()));
    let setup_cfg = repo.read("setup.cfg")?.unwrap_or_default();
    let tox = tox::read(repo, &pyproject, &setup_cfg)?;
    let mut requirements = BTreeMap::new();
    let mut files: Vec<String> = repo
        .list(".")
        .into_iter()
        .filter(|n| n.ends_with(".txt") && n.contains("requirements"))
        .collect();
    for dir in ["requirements", "requirements-dev", "reqs"] {
        files.extend(
            repo.list(dir)
                .into_iter()
                .filter(|n| n.ends_with(".txt") || n.ends_with(".in"))
                .map(|n| format!("{dir}/{n}")),
        );
    }
    for file in files {
        if let Some(text) = repo.read(&file)? {
            requirements.insert(file, text.lines().filter_map(requirement_name).collect());
        }
    }
    let has = |k: &str| repo.exists(k);
    let py_files = pyproject_text.is_some()
        || has("setup.py")
        || !setup_cfg.is_empty()
        || tox.is_some()
        || !requirements.is_empty();
    if !py_files {
        return Ok(None);
    }
    let get = |path: &[&str]| path.iter().try_fold(&pyproject, |v, k| v.get(*k)).cloned();
    let names = |v: Option<toml::Value>| -> BTreeSet<String> {
        match v {
            Some(toml::Value::Array(items)) => items
                .iter()
                .filter_map(|i| i.as_str().and_then(requirement_name))
                .collect(),
            Some(toml::Value::Table(t)) => t
                .keys()
                .map(|k| k.to_ascii_lowercase().replace('_', "-"))
                .collect(),
            _ => BTreeSet::new(),
        }
    };
    let mut groups = BTreeMap::new();
    let mut optional_groups = BTreeSet::new();
    if let Some(toml::Value::Table(t)) = get(&["dependency-groups"]) {
        for (g, v) in t {
            groups.insert(g, names(Some(v)));
        }
    }
    if let Some(v) = get(&["tool", "uv", "dev-dependencies"]) {
        groups
            .entry("dev".into())
            .or_insert_with(BTreeSet::new)
            .extend(names(Some(v)));
    }
    if let Some(v) = get(&["tool", "poetry", "dev-dependencies"]) {
        groups
            .entry("dev".into())
            .or_insert_with(BTreeSet::new)
            .extend(names(Some(v)));
    }
    if let Some(toml::Value::Table(t)) = get(&["tool", "poetry", "group"]) {
        for (g, v) in t {
            if v.get("optional").and_then(|o| o.as_bool()) == Some(true) {
                optional_groups.insert(g.clone());
            }
            groups
                .entry(g)
                .or_insert_with(BTreeSet::new)
                .extend(names(v.get("dependencies").cloned()));
        }
    }
    let mut extras = BTreeMap::new();
    if let Some(toml::Value::Table(t)) = get(&["project", "optional-dependencies"]) {
        for (e, v) in t {
            extras.insert(e, names(Some(v)));
        }
    }
    let cfg = ini_sections(&setup_cfg);
    for (key, value) in cfg.get("options.extras_require").into_iter().flatten() {
        extras.insert(
            key.clone(),
            value.lines().filter_map(requirement_name).collect(),
        );
    }

    let (env, env_evidence) = if has("uv.lock") {
        (EnvKind::Uv, "uv.lock".to_string())
    } else if has("poetry.lock") || get(&["tool", "poetry"]).is_some() {
        let why = if has("poetry.lock") {
            "poetry.lock"
        } else {
            "pyproject.toml [tool.poetry]"
        };
        (EnvKind::Poetry, why.to_string())
    } else if has("pdm.lock") {
        (EnvKind::Pdm, "pdm.lock".to_string())
    } else {
        (
            EnvKind::Venv,
            "no lockfile: a virtualenv at .venv filled with pip".to_string(),
        )
    };

    let tox_ini = repo.read("tox.ini")?.unwrap_or_default();
    let tox_cfg = ini_sections(&tox_ini);
    let mut configured = Vec::new();
    let tool_table = |name: &str| get(&["tool", name]).is_some();
    let mut ruff_fixes = false;
    let ruff_file = ["ruff.toml", ".ruff.toml"].into_iter().find(|f| has(f));
    if let Some(file) = ruff_file {
        configured.push(("ruff", file.to_string()));
        let text = repo.read(file)?.unwrap_or_default();
        ruff_fixes = toml::from_str::<toml::Value>(&text)
            .ok()
            .and_then(|v| v.get("fix").and_then(|f| f.as_bool()))
            .unwrap_or(false);
    } else if tool_table("ruff") {
        configured.push(("ruff", "pyproject.toml [tool.ruff]".into()));
        ruff_fixes = get(&["tool", "ruff", "fix"]).and_then(|v| v.as_bool()) == Some(true);
    }
    if tool_table("black") {
        configured.push(("black", "pyproject.toml [tool.black]".into()));
    }
    let in_ini = |section: &str| {
        if cfg.contains_key(section) {
            Some(format!("setup.cfg [{section}]"))
        } else if tox_cfg.contains_key(section) {
            Some(format!("tox.ini [{section}]"))
        } else {
            None
        }
    };
    let first_file = |files: &[&str]| files.iter().find(|f| has(f)).map(|f| f.to_string());
    if let Some(why) = tool_table("isort")
        .then(|| "pyproject.toml [tool.isort]".to_string())
        .or_else(|| first_file(&[".isort.cfg"]))
        .or_else(|| in_ini("isort"))
    {
        configured.push(("isort", why));
    }
    if let Some(why) = first_file(&[".flake8"]).or_else(|| in_ini("flake8")) {
        configured.push(("flake8", why));
    }
    let mypy = tool_table("mypy")
        .then(|| "pyproject.toml [tool.mypy]".to_string())
        .or_else(|| first_file(&["mypy.ini", ".mypy.ini"]))
        .or_else(|| in_ini("mypy"));
    let mypy_files = get(&["tool", "mypy", "files"]).is_some()
        || cfg.get("mypy").is_some_and(|s| s.contains_key("files"))
        || repo.read("mypy.ini")?.is_some_and(|t| {
            ini_sections(&t)
                .get("mypy")
                .is_some_and(|s| s.contains_key("files"))
        });
    if let Some(why) = mypy {
        configured.push(("mypy", why));
    }
    if let Some(why) = first_file(&["pyrightconfig.json"])
        .or_else(|| tool_table("pyright").then(|| "pyproject.toml [tool.pyright]".into()))
    {
        configured.push(("pyright", why));
    }
    let pytest = get(&["tool", "pytest"])
        .is_some()
        .then(|| "pyproject.toml [tool.pytest.ini_options]".to_string())
        .or_else(|| first_file(&["pytest.ini", "conftest.py", "tests/conftest.py"]))
        .or_else(|| {
            cfg.contains_key("tool:pytest")
                .then(|| "setup.cfg [tool:pytest]".into())
        })
        .or_else(|| {
            tox_cfg
                .contains_key("pytest")
                .then(|| "tox.ini [pytest]".into())
        });
    if let Some(why) = pytest {
        configured.push(("pytest", why));
    }

    let default_groups = match get(&["tool", "uv", "default-groups"]) {
        Some(toml::Value::Array(items)) => items
            .iter()
            .filter_map(|i| i.as_str().map(str::to_string))
            .collect(),
        Some(toml::Value::String(all)) if all == "all" => groups.keys().cloned().collect(),
        _ => BTreeSet::from(["dev".to_string()]),
    };
    Ok(Some(PythonProject {
        env,
        default_groups,
        env_evidence,
        groups,
        optional_groups,
        extras,
        requirements,
        installable: get(&["project"]).is_some() || has("setup.py") || cfg.contains_key("metadata"),
        configured,
        ruff_fixes,
        mypy_files,
        tox,
    }))
}

/// The sections of an INI file (setup.cfg, tox.ini, mypy.ini) with their keys; values keep
/// their continuation lines.
pub(crate) fn ini_sections(text: &str) -> BTreeMap<String, BTreeMap<String, String>> {
    let mut ini = configparser::ini::Ini::new_cs();
    ini.set_multiline(true);
    // Only `#` starts a comment: `;` appears in commands and environment markers.
    ini.set_comment_symbols(&['#']);
    let Ok(map) = ini.read(text.to_string()) else {
        return BTreeMap::new();
    };
    map.into_iter()
        .map(|(section, keys)| {
            (
                section,
                keys.into_iter()
                    .map(|(k, v)| (k, v.unwrap_or_default()))
                    .collect(),
            )
        })
        .collect()
}
