//! JavaScript and TypeScript projects: the package manager (from `packageManager`, lockfiles and
//! a yarn release shipped in the repository), package scripts, and the configuration files of
//! prettier, biome, eslint, oxlint and oxfmt.

use std::collections::BTreeSet;

use yaml_rust2::YamlLoader;

use super::entries::{EntryKind, EntryPoint};
use super::repo::Repo;
use super::shell::simple_commands;
use crate::{ChecksError, Result};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum PmKind {
    Npm,
    Pnpm,
    YarnClassic,
    YarnBerry,
    Bun,
}

/// How the project's package manager is run, and why that one.
#[derive(Debug, Clone)]
pub(crate) struct Pm {
    pub kind: PmKind,
    /// `npm`, `corepack pnpm`, `node .yarn/releases/yarn-4.5.0.cjs`…
    pub program: String,
    pub evidence: String,
    pub lockfile: Option<&'static str>,
}

impl Pm {
    pub fn install(&self) -> String {
        let locked = self.lockfile.is_some();
        let args = match (self.kind, locked) {
            (PmKind::Npm, true) => "ci",
            (PmKind::Npm, false) => "install",
            (PmKind::Pnpm | PmKind::YarnClassic | PmKind::Bun, true) => "install --frozen-lockfile",
            (PmKind::YarnBerry, true) => "install --immutable",
            (_, false) => "install",
        };
        format!("{} {args}", self.program)
    }

    pub fn run_script(&self, name: &str) -> String {
        format!("{} run {name}", self.program)
    }

    /// The prefix that runs a program installed in the project's `node_modules`.
    pub fn exec_prefix(&self) -> String {
        match self.kind {
            PmKind::Npm => "npx --no-install".into(),
            PmKind::Pnpm => format!("{} exec", self.program),
            PmKind::YarnClassic | PmKind::YarnBerry => format!("{} run", self.program),
            PmKind::Bun => "bunx".into(),
        }
    }

    /// Whether `command` (a word list's first words) invokes this project's package manager.
    pub fn names(&self) -> &'static [&'static str] {
        match self.kind {
            PmKind::Npm => &["npm"],
            PmKind::Pnpm => &["pnpm"],
            PmKind::YarnClassic | PmKind::YarnBerry => &["yarn"],
            PmKind::Bun => &["bun"],
        }
    }
}

/// A formatter or linter configured in the repository and installed by it.
#[derive(Debug, Clone)]
pub(crate) struct Configured {
    pub tool: &'static str,
    pub file: String,
}

#[derive(Debug)]
pub(crate) struct NodeProject {
    pub pm: Pm,
    pub scripts: Vec<EntryPoint>,
    pub configured: Vec<Configured>,
}

const TOOL_CONFIGS: &[(&str, &str, &[&str])] = &[
    (
        "prettier",
        "prettier",
        &[
            ".prettierrc",
            ".prettierrc.json",
            ".prettierrc.json5",
            ".prettierrc.yml",
            ".prettierrc.yaml",
            ".prettierrc.toml",
            ".prettierrc.js",
            ".prettierrc.cjs",
            ".prettierrc.mjs",
            "prettier.config.js",
            "prettier.config.cjs",
            "prettier.config.mjs",
            "prettier.config.ts",
        ],
    ),
    ("biome", "@biomejs/biome", &["biome.json", "biome.jsonc"]),
    (
        "eslint",
        "eslint",
        &[
            "eslint.config.js",
            "eslint.config.mjs",
            "eslint.config.cjs",
            "eslint.config.ts",
            "eslint.config.mts",
            ".eslintrc",
            ".eslintrc.js",
            ".eslintrc.cjs",
            ".eslintrc.json",
            ".eslintrc.yml",
            ".eslintrc.yaml",
        ],
    ),
    ("oxlint", "oxlint", &[".oxlintrc.json", "oxlintrc.json"]),
    ("oxfmt", "oxfmt", &[".oxfmtrc.json", ".oxfmtrc.jsonc"]),
];

pub(crate) fn read(repo: &Repo, ci_uses_pnpm: bool) -> Result<Option<NodeProject>> {
    let Some(text) = repo.read("package.json")? else {
        return Ok(None);
    };
    let manifest: serde_json::Value =
        serde_json::from_str(&text).map_err(|e| ChecksError::InvalidConfig {
            file: "package.json".into(),
            message: e.to_string(),
        })?;
    let pm = package_manager(repo, &manifest, ci_uses_pnpm)?;
    let mut deps = BTreeSet::new();
    for key in [
        "dependencies",
        "devDependencies",
        "optionalDependencies",
        "peerDependencies",
    ] {
        if let Some(map) = manifest[key].as_object() {
            deps.extend(map.keys().cloned());
        }
    }
    let mut scripts = Vec::new();
    if let Some(map) = manifest["scripts"].as_object() {
        for (name, body) in map {
            let Some(body) = body.as_str() else { continue };
            // npm init's placeholder test script always fails; it is not a test suite.
            if body.contains("no test specified") {
                continue;
            }
            scripts.push(EntryPoint::new(
                EntryKind::Script,
                name,
                pm.run_script(name),
                simple_commands(body),
                format!("package.json script {name}"),
            ));
        }
    }
    let mut configured = Vec::new();
    for (tool, package, files) in TOOL_CONFIGS {
        if !deps.contains(*package) {
            continue;
        }
        let in_manifest = match *tool {
            "prettier" => manifest
                .get("prettier")
                .map(|_| "package.json prettier key"),
            "eslint" => manifest
                .get("eslintConfig")
                .map(|_| "package.json eslintConfig key"),
            _ => None,
        };
        let file = files
            .iter()
            .find(|f| repo.exists(f))
            .map(|f| f.to_string())
            .or(in_manifest.map(str::to_string));
        if let Some(file) = file {
            configured.push(Configured { tool, file });
        }
    }
    Ok(Some(NodeProject {
        pm,
        scripts,
        configured,
    }))
}

fn package_manager(repo: &Repo, manifest: &serde_json::Value, ci_pnpm: bool) -> Result<Pm> {
    let lockfile = [
        "pnpm-lock.yaml",
        "yarn.lock",
        "bun.lock",
        "bun.lockb",
        "package-lock.json",
        "npm-shrinkwrap.json",
    ]
    .into_iter()
    .find(|f| repo.exists(f));
    // `pnpm@9.15.0+sha512.…`: the hash only verifies the download.
    let pinned = manifest["packageManager"]
        .as_str()
        .map(|p| p.split('+').next().unwrap_or(p).to_string());
    let pinned_name = pinned
        .as_deref()
        .and_then(|p| p.split('@').next())
        .map(str::to_string);
    let yarnrc = repo.read(".yarnrc.yml")?;
    let kind = match (pinned_name.as_deref(), lockfile) {
        (Some("pnpm"), _) | (None, Some("pnpm-lock.yaml")) => PmKind::Pnpm,
        (Some("yarn"), _) | (None, Some("yarn.lock")) => {
            let major = pinned
                .as_deref()
                .and_then(|p| p.split('@').nth(1))
                .and_then(|v| v.split('.').next())
                .and_then(|m| m.parse::<u32>().ok());
            let berry_lock = repo
                .read("yarn.lock")?
                .is_some_and(|l| l.contains("__metadata:"));
            if major.map_or(yarnrc.is_some() || berry_lock, |m| m >= 2) {
                PmKind::YarnBerry
            } else {
                PmKind::YarnClassic
            }
        }
        (Some("bun"), _) | (None, Some("bun.lock" | "bun.lockb")) => PmKind::Bun,
        (None, None) if ci_pnpm => PmKind::Pnpm,
        _ => PmKind::Npm,
    };
    let lockfile = lockfile.filter(|l| match kind {
        PmKind::Pnpm => *l == "pnpm-lock.yaml",
        PmKind::YarnClassic | PmKind::YarnBerry => *l == "yarn.lock",
        PmKind::Bun => l.starts_with("bun.lock"),
        PmKind::Npm => l.ends_with(".json"),
    });
    let mut why = Vec::new();
    if let Some(p) = &pinned {
        why.push(format!("package.json packageManager {p}"));
    }
    if let Some(l) = lockfile {
        why.push(l.to_string());
    }
    let yarn_path = yarnrc
        .as_deref()
        .and_then(|t| YamlLoader::load_from_str(t).ok())
        .and_then(|docs| {
            docs.first()
                .and_then(|d| d["yarnPath"].as_str().map(str::to_string))
        })
        .filter(|p| repo.is_file(p));
    let program = match kind {
        PmKind::YarnBerry if yarn_path.is_some() => {
            let path = yarn_path.unwrap_or_default();
            why.push(format!(
                "the yarn release {path} shipped in the repository (.yarnrc.yml yarnPath)"
            ));
            format!("node {path}")
        }
        PmKind::Pnpm | PmKind::YarnBerry | PmKind::YarnClassic if pinned.is_some() => {
            // corepack runs the exact version packageManager pins, downloading it once.
            format!(
                "corepack {}",
                if kind == PmKind::Pnpm { "pnpm" } else { "yarn" }
            )
        }
        PmKind::Pnpm => "pnpm".into(),
        PmKind::YarnBerry | PmKind::YarnClassic => "yarn".into(),
        PmKind::Bun => "bun".into(),
        PmKind::Npm => "npm".into(),
    };
    if why.is_empty() {
        why.push(if kind == PmKind::Pnpm {
            "pnpm in the CI files".into()
        } else {
            "package.json without a lockfile".into()
        });
    }
    Ok(Pm {
        kind,
        program,
        evidence: why.join(", "),
        lockfile,
    })
}

impl NodeProject {
    pub fn script(&self, name: &str) -> Option<&EntryPoint> {
        self.scripts.iter().find(|s| s.name == name)
    }

    /// The script a package-manager command line runs (`npm run lint`, `pnpm lint`,
    /// `yarn test`, `npm test`), if it is one of this project's, with the arguments passed on.
    pub fn script_run_by(&self, words: &[String]) -> Option<(&EntryPoint, Vec<String>)> {
        let mut i = 0;
        if words.first().is_some_and(|w| w == "corepack") {
            i = 1;
        }
        if words.get(i).is_some_and(|w| w == "node")
            && words
                .get(i + 1)
                .is_some_and(|w| w.contains(".yarn/releases/"))
        {
            i += 1;
        }
        let program = words.get(i)?.rsplit('/').next()?;
        let program = program.split('@').next()?;
        let yarn_release = program.starts_with("yarn-") && program.ends_with("js");
        if !(["npm", "pnpm", "yarn", "bun"].contains(&program) || yarn_release) {
            return None;
        }
        let positional = |from: usize| (from..words.len()).find(|&j| !words[j].starts_with('-'));
        let first = positional(i + 1)?;
        let (name, at) = match words[first].as_str() {
            "run" | "run-script" => {
                let at = positional(first + 1)?;
                (words[at].as_str(), at)
            }
            "test" | "t" | "tst" => ("test", first),
            name if program != "npm" => (name, first),
            _ => return None,
        };
        let extra = words[at + 1..]
            .iter()
            .filter(|w| *w != "--")
            .cloned()
            .collect();
        self.script(name).map(|s| (s, extra))
    }
}
