//! The repository's CI files, the strongest hint of what must pass: the commands their jobs
//! run, from GitHub Actions (and Gitea/Forgejo Actions, the same format) workflows, local
//! composite actions and well-known actions, and from GitLab CI jobs.

use yaml_rust2::{Yaml, YamlLoader};

use super::repo::Repo;
use super::shell::simple_commands;
use crate::Result;

/// One simple command a CI job runs.
#[derive(Debug, Clone)]
pub(crate) struct CiCommand {
    /// The CI file, e.g. `.github/workflows/tests.yml`.
    pub file: String,
    pub command: String,
}

#[derive(Debug, Default)]
pub(crate) struct Ci {
    pub commands: Vec<CiCommand>,
    pub files: Vec<String>,
    pub notes: Vec<String>,
}

const WORKFLOW_DIRS: [&str; 3] = [
    ".github/workflows",
    ".gitea/workflows",
    ".forgejo/workflows",
];
/// Events that gate a change: a workflow only run on release or by hand says nothing about
/// what a pull request must pass.
const GATING_EVENTS: [&str; 5] = [
    "pull_request",
    "pull_request_target",
    "push",
    "merge_group",
    "workflow_call",
];

pub(crate) fn read(repo: &Repo) -> Result<Ci> {
    let mut ci = Ci::default();
    for dir in WORKFLOW_DIRS {
        for name in repo.list(dir) {
            if !(name.ends_with(".yml") || name.ends_with(".yaml")) {
                continue;
            }
            let file = format!("{dir}/{name}");
            if let Some(doc) = load(repo, &file, &mut ci.notes)? {
                workflow(repo, &file, &doc, &mut ci)?;
            }
        }
    }
    if let Some(doc) = load(repo, ".gitlab-ci.yml", &mut ci.notes)? {
        gitlab(repo, &doc, &mut ci)?;
    }
    for other in [
        ".circleci/config.yml",
        ".travis.yml",
        "azure-pipelines.yml",
        "bitbucket-pipelines.yml",
        "Jenkinsfile",
    ] {
        if repo.exists(other) {
            ci.notes.push(format!(
                "{other} is not read: only GitHub, Gitea/Forgejo and GitLab CI files are"
            ));
        }
    }
    Ok(ci)
}

fn load(repo: &Repo, file: &str, notes: &mut Vec<String>) -> Result<Option<Yaml>> {
    let Some(text) = repo.read(file)? else {
        return Ok(None);
    };
    match YamlLoader::load_from_str(&text) {
        Ok(mut docs) if !docs.is_empty() => Ok(Some(merge_keys(docs.swap_remove(0)))),
        Ok(_) => Ok(None),
        Err(e) => {
            notes.push(format!("{file} is not valid YAML ({e}): not read"));
            Ok(None)
        }
    }
}

/// Applies YAML merge keys (`<<: *anchor`), which GitLab files use for shared job parts.
fn merge_keys(doc: Yaml) -> Yaml {
    match doc {
        Yaml::Hash(hash) => {
            let mut out = yaml_rust2::yaml::Hash::new();
            let merge = Yaml::String("<<".into());
            if let Some(base) = hash.get(&merge) {
                let bases = match base {
                    Yaml::Array(items) => items.clone(),
                    other => vec![other.clone()],
                };
                for base in bases {
                    if let Yaml::Hash(base) = merge_keys(base) {
                        out.extend(base);
                    }
                }
            }
            for (k, v) in hash {
                if k != merge {
                    out.insert(k, merge_keys(v));
                }
            }
            Yaml::Hash(out)
        }
        Yaml::Array(items) => Yaml::Array(items.into_iter().map(merge_keys).collect()),
        other => other,
    }
}

fn str_of(y: &Yaml) -> Option<String> {
    match y {
        Yaml::String(s) | Yaml::Real(s) => Some(s.clone()),
        Yaml::Integer(i) => Some(i.to_string()),
        Yaml::Boolean(b) => Some(b.to_string()),
        _ => None,
    }
}

fn gates(on: &Yaml) -> bool {
    let events: Vec<String> = match on {
        Yaml::String(s) => vec![s.clone()],
        Yaml::Array(items) => items.iter().filter_map(str_of).collect(),
        Yaml::Hash(h) => h.keys().filter_map(str_of).collect(),
        _ => Vec::new(),
    };
    events.iter().any(|e| GATING_EVENTS.contains(&e.as_str()))
}

fn workflow(repo: &Repo, file: &str, doc: &Yaml, ci: &mut Ci) -> Result<()> {
    // `on` is read as `true` by YAML 1.1 readers; accept both spellings.
    let yaml_true = Yaml::Boolean(true);
    let on = match &doc["on"] {
        Yaml::BadValue => doc
            .as_hash()
            .and_then(|h| h.get(&yaml_true))
            .unwrap_or(&Yaml::BadValue),
        on => on,
    };
    if !gates(on) {
        ci.notes.push(format!(
            "{file} does not run on pull requests or pushes: not read"
        ));
        return Ok(());
    }
    let before = ci.commands.len();
    let root_dir = doc["defaults"]["run"]["working-directory"].as_str();
    let root_env = failure_env(&doc["env"], &[]);
    if let Some(jobs) = doc["jobs"].as_hash() {
        for job in jobs.values() {
            let dir = job["defaults"]["run"]["working-directory"]
                .as_str()
                .or(root_dir);
            let env = failure_env(&job["env"], &root_env);
            for step in job["steps"].as_vec().into_iter().flatten() {
                steps(repo, file, step, dir, &env, ci, 0)?;
            }
        }
    }
    if ci.commands.len() > before {
        ci.files.push(file.to_string());
    }
    Ok(())
}

/// Variables that decide whether a check fails (`RUSTFLAGS: -Dwarnings`), as a CI file sets
/// them for a workflow, job or step, over those of the enclosing level.
const FAILURE_ENV: [&str; 2] = ["RUSTFLAGS", "RUSTDOCFLAGS"];

fn failure_env(env: &Yaml, outer: &[(String, String)]) -> Vec<(String, String)> {
    let mut out: Vec<(String, String)> = outer.to_vec();
    for name in FAILURE_ENV {
        if let Some(value) = str_of(&env[name]).filter(|v| !v.contains("${{")) {
            out.retain(|(n, _)| n != name);
            out.push((name.to_string(), value));
        }
    }
    out
}

/// A step's command as it runs: GitHub expressions (`${{ matrix.x }}`), which only the CI can
/// fill, dropped with the word they are in (and the option they are the value of), and the
/// failure variables set before it.
fn as_run(command: &str, env: &[(String, String)]) -> Option<String> {
    let mut text = command.to_string();
    while let Some(open) = text.find("${{") {
        let close = text[open..].find("}}").map_or(text.len(), |c| open + c + 2);
        let mut start = text[..open].rfind(char::is_whitespace).map_or(0, |i| i + 1);
        // An option just before the expression was waiting for its value: it goes too.
        let before = text[..start].trim_end();
        let option_at = before.rfind(char::is_whitespace).map_or(0, |i| i + 1);
        if start == open
            && before[option_at..].starts_with('-')
            && !before[option_at..].contains('=')
        {
            start = option_at;
        }
        let end = text[close..]
            .find(char::is_whitespace)
            .map_or(text.len(), |i| close + i);
        text.replace_range(start..end, "");
    }
    let text = text.split_whitespace().collect::<Vec<_>>().join(" ");
    if text.is_empty() {
        return None;
    }
    let prefix: String = env
        .iter()
        .map(|(k, v)| format!("{k}={} ", super::shell::quote(v)))
        .collect();
    Some(format!("{prefix}{text}"))
}

fn steps(
    repo: &Repo,
    file: &str,
    step: &Yaml,
    dir: Option<&str>,
    env: &[(String, String)],
    ci: &mut Ci,
    depth: usize,
) -> Result<()> {
    let env = failure_env(&step["env"], env);
    let dir = step["working-directory"].as_str().or(dir);
    if let Some(dir) = dir.filter(|d| !matches!(d.trim_end_matches('/'), "." | "./" | "")) {
        ci.notes.push(format!(
            "{file}: a step runs in {dir}; only checks at the repository root are detected"
        ));
        return Ok(());
    }
    if let Some(shell) = step["shell"].as_str()
        && !(shell.starts_with("bash") || shell.starts_with("sh"))
    {
        return Ok(());
    }
    if let Some(run) = str_of(&step["run"]) {
        for command in simple_commands(&run) {
            if let Some(command) = as_run(&command, &env) {
                ci.commands.push(CiCommand {
                    file: file.to_string(),
                    command,
                });
            }
        }
    }
    let Some(uses) = step["uses"].as_str() else {
        return Ok(());
    };
    if let Some(local) = uses.strip_prefix("./") {
        // A composite action of the repository's own: its steps are the job's steps.
        if depth < 3 {
            for name in ["action.yml", "action.yaml"] {
                let path = format!("{}/{name}", local.trim_end_matches('/'));
                if let Some(action) = load(repo, &path, &mut ci.notes)? {
                    for inner in action["runs"]["steps"].as_vec().into_iter().flatten() {
                        steps(repo, file, inner, None, &env, ci, depth + 1)?;
                    }
                    break;
                }
            }
        }
        return Ok(());
    }
    if let Some(command) = known_action(uses, &step["with"]).and_then(|c| as_run(&c, &env)) {
        ci.commands.push(CiCommand {
            file: file.to_string(),
            command,
        });
    }
    Ok(())
}

/// The command a well-known action runs, with the inputs that change it.
fn known_action(uses: &str, with: &Yaml) -> Option<String> {
    let name = uses.split('@').next().unwrap_or(uses).to_ascii_lowercase();
    let input = |key: &str| str_of(&with[key]).map(|s| s.trim().to_string());
    let joined = |parts: &[Option<String>]| {
        parts
            .iter()
            .flatten()
            .filter(|p| !p.is_empty())
            .cloned()
            .collect::<Vec<_>>()
            .join(" ")
    };
    Some(match name.as_str() {
        "golangci/golangci-lint-action" => {
            joined(&[Some("golangci-lint run".into()), input("args")])
        }
        "pre-commit/action" => joined(&[
            Some("pre-commit run".into()),
            input("extra_args").or(Some("--all-files".into())),
        ]),
        "astral-sh/ruff-action" | "chartboost/ruff-action" => joined(&[
            Some("ruff".into()),
            input("args").or(Some("check".into())),
            input("src"),
        ]),
        "psf/black" => joined(&[
            Some("black".into()),
            input("options").or(Some("--check --diff".into())),
            input("src").or(Some(".".into())),
        ]),
        "isort/isort-action" => "isort --check-only --diff .".into(),
        "py-actions/flake8" => "flake8".into(),
        "actions-rust-lang/rustfmt" => "cargo fmt --all -- --check".into(),
        "actions-rs/clippy-check" => joined(&[Some("cargo clippy".into()), input("args")]),
        "actions-rs/cargo" => {
            joined(&[Some("cargo".into()), Some(input("command")?), input("args")])
        }
        "dominikh/staticcheck-action" => "staticcheck ./...".into(),
        "jerome1337/gofmt-action" => "gofmt -l .".into(),
        _ => return None,
    })
}

const GITLAB_RESERVED: [&str; 10] = [
    "stages",
    "variables",
    "default",
    "include",
    "workflow",
    "image",
    "services",
    "cache",
    "before_script",
    "after_script",
];

fn gitlab(repo: &Repo, doc: &Yaml, ci: &mut Ci) -> Result<()> {
    let file = ".gitlab-ci.yml";
    let mut jobs = yaml_rust2::yaml::Hash::new();
    let mut collect = |doc: &Yaml| {
        if let Some(hash) = doc.as_hash() {
            for (k, v) in hash {
                jobs.insert(k.clone(), v.clone());
            }
        }
    };
    collect(doc);
    let includes = match &doc["include"] {
        Yaml::Array(items) => items.clone(),
        Yaml::BadValue => Vec::new(),
        one => vec![one.clone()],
    };
    for include in includes {
        let local = include
            .as_str()
            .map(str::to_string)
            .or_else(|| include["local"].as_str().map(str::to_string));
        match local {
            Some(path) if !path.contains("://") => {
                let path = path.trim_start_matches('/');
                if let Some(included) = load(repo, path, &mut ci.notes)? {
                    collect(&included);
                }
            }
            _ => ci.notes.push(format!(
                "{file} includes a remote or project template: not read"
            )),
        }
    }
    let default_before = lines(&doc["default"]["before_script"])
        .into_iter()
        .chain(lines(&doc["before_script"]))
        .collect::<Vec<_>>();
    let before = ci.commands.len();
    for (name, job) in &jobs {
        let Some(name) = name.as_str() else { continue };
        if name.starts_with('.') || GITLAB_RESERVED.contains(&name) {
            continue;
        }
        let job = extended(&jobs, job, 0);
        if job["script"].is_badvalue() || job["when"].as_str() == Some("manual") {
            continue;
        }
        let before_script = match &job["before_script"] {
            Yaml::BadValue => default_before.clone(),
            own => lines(own),
        };
        for script in before_script.iter().chain(&lines(&job["script"])) {
            for command in simple_commands(script) {
                ci.commands.push(CiCommand {
                    file: file.to_string(),
                    command,
                });
            }
        }
    }
    if ci.commands.len() > before {
        ci.files.push(file.to_string());
    }
    Ok(())
}

/// A job with the keys of the jobs it `extends` underneath its own.
fn extended(jobs: &yaml_rust2::yaml::Hash, job: &Yaml, depth: usize) -> Yaml {
    let parents: Vec<String> = match &job["extends"] {
        Yaml::String(s) => vec![s.clone()],
        Yaml::Array(items) => items.iter().filter_map(str_of).collect(),
        _ => Vec::new(),
    };
    if parents.is_empty() || depth > 10 {
        return job.clone();
    }
    let mut out = yaml_rust2::yaml::Hash::new();
    for parent in parents {
        if let Some(p) = jobs.get(&Yaml::String(parent))
            && let Yaml::Hash(h) = extended(jobs, p, depth + 1)
        {
            out.extend(h);
        }
    }
    if let Some(own) = job.as_hash() {
        out.extend(own.clone());
    }
    Yaml::Hash(out)
}

/// A GitLab `script`: a string or a list (nested by anchors) of strings.
fn lines(y: &Yaml) -> Vec<String> {
    match y {
        Yaml::Array(items) => items.iter().flat_map(lines).collect(),
        other => str_of(other).into_iter().collect(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn expressions_are_dropped_and_failure_variables_kept() {
        let env = vec![("RUSTFLAGS".to_string(), "-D warnings".to_string())];
        assert_eq!(
            as_run(
                "cargo clippy --features ${{ matrix.features }} --all-targets",
                &env
            )
            .unwrap(),
            "RUSTFLAGS='-D warnings' cargo clippy --all-targets"
        );
        assert_eq!(
            as_run("tox -e py${{ matrix.python }}", &[]).unwrap(),
            "tox -e"
        );
        assert_eq!(as_run("${{ matrix.command }}", &[]), None);
    }
}
