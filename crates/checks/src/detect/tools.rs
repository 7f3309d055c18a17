//! The formatters, linters, type checkers and test runners Nightshift knows by name, how a
//! command line that runs one is read (through `uv run`, `npx`, `python -m`, `.venv/bin`…),
//! and how a call is turned into apply mode (formatters) or strict check mode (linters).

use super::shell::{is_assignment, raw_words, unquote};

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub(crate) enum Eco {
    Node,
    Python,
    Rust,
    Go,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Role {
    Formatter,
    Linter,
    TypeChecker,
    Tests,
}

#[derive(Debug)]
pub(crate) struct Tool {
    pub name: &'static str,
    program: &'static [&'static str],
    sub: &'static [&'static str],
    pub eco: Eco,
    pub role: Role,
}

const fn tool(
    name: &'static str,
    program: &'static [&'static str],
    sub: &'static [&'static str],
    eco: Eco,
    role: Role,
) -> Tool {
    Tool {
        name,
        program,
        sub,
        eco,
        role,
    }
}

use Eco::*;
use Role::*;

static TOOLS: &[Tool] = &[
    tool("prettier", &["prettier"], &[], Node, Formatter),
    tool("biome format", &["biome"], &["format"], Node, Formatter),
    tool("biome lint", &["biome"], &["lint"], Node, Linter),
    tool("biome check", &["biome"], &["check"], Node, Linter),
    tool("biome ci", &["biome"], &["ci"], Node, Linter),
    tool("dprint", &["dprint"], &["fmt"], Node, Formatter),
    tool("dprint", &["dprint"], &["check"], Node, Formatter),
    tool("oxfmt", &["oxfmt"], &[], Node, Formatter),
    tool("eslint", &["eslint"], &[], Node, Linter),
    tool("oxlint", &["oxlint"], &[], Node, Linter),
    tool("stylelint", &["stylelint"], &[], Node, Linter),
    tool("tsc", &["tsc", "vue-tsc"], &[], Node, TypeChecker),
    tool("jest", &["jest"], &[], Node, Tests),
    tool("vitest", &["vitest"], &[], Node, Tests),
    tool("mocha", &["mocha"], &[], Node, Tests),
    tool("ava", &["ava"], &[], Node, Tests),
    tool("node --test", &["node"], &["--test"], Node, Tests),
    tool("ruff format", &["ruff"], &["format"], Python, Formatter),
    tool("ruff check", &["ruff"], &["check"], Python, Linter),
    tool("black", &["black"], &[], Python, Formatter),
    tool("isort", &["isort"], &[], Python, Formatter),
    tool("flake8", &["flake8"], &[], Python, Linter),
    tool("pylint", &["pylint"], &[], Python, Linter),
    tool("mypy", &["mypy"], &[], Python, TypeChecker),
    tool(
        "pyright",
        &["pyright", "basedpyright"],
        &[],
        Python,
        TypeChecker,
    ),
    tool("pytest", &["pytest", "py.test"], &[], Python, Tests),
    tool("unittest", &["unittest"], &[], Python, Tests),
    tool("cargo fmt", &["cargo"], &["fmt"], Rust, Formatter),
    tool("cargo clippy", &["cargo"], &["clippy"], Rust, Linter),
    tool("cargo check", &["cargo"], &["check"], Rust, Linter),
    tool("cargo test", &["cargo"], &["test"], Rust, Tests),
    tool(
        "cargo nextest",
        &["cargo"],
        &["nextest", "run"],
        Rust,
        Tests,
    ),
    tool("gofmt", &["gofmt"], &[], Go, Formatter),
    tool("goimports", &["goimports"], &[], Go, Formatter),
    tool("go vet", &["go"], &["vet"], Go, Linter),
    tool("golangci-lint", &["golangci-lint"], &["run"], Go, Linter),
    tool("staticcheck", &["staticcheck"], &[], Go, Linter),
    tool("go test", &["go"], &["test"], Go, Tests),
];

/// How a command reaches its program.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Runner {
    /// On PATH as it is.
    Bare,
    /// `uv run`, `poetry run`, `python -m`, `.venv/bin/…`: a Python environment.
    Python,
    /// `npx`, `pnpm exec`, `node_modules/.bin/…`: the package's own node_modules.
    Node,
}

/// One simple command, split into what runs it and the program with its arguments.
#[derive(Debug, Clone)]
pub(crate) struct Call {
    /// Assignments and runner words, as written (`CI=1 uv run --locked`).
    pub prefix: Vec<String>,
    pub runner: Runner,
    /// The program's name (`ruff`, `npm`), without its directory.
    pub program: String,
    pub program_word: String,
    /// The arguments, as written.
    pub args: Vec<String>,
}

/// Options of `uv run` (and friends) that take a value.
const UV_VALUE_OPTIONS: &[&str] = &[
    "--group",
    "--only-group",
    "--no-group",
    "--extra",
    "--with",
    "--with-requirements",
    "--python",
    "-p",
    "--package",
    "--directory",
    "--project",
    "--env-file",
    "--from",
    "--index",
    "--index-url",
];

impl Call {
    pub fn parse(command: &str) -> Option<Call> {
        let words = raw_words(command);
        let mut i = 0;
        while i < words.len() && (is_assignment(&words[i]) || matches!(&*words[i], "env" | "time"))
        {
            i += 1;
        }
        let mut runner = Runner::Bare;
        let value = |i: usize| words.get(i).map(|w| unquote(w)).unwrap_or_default();
        // Skips runner options; returns the index of the program.
        let skip_options = |mut i: usize| {
            while i < words.len() {
                let w = value(i);
                if w == "--" {
                    return i + 1;
                }
                if !w.starts_with('-') {
                    break;
                }
                i += if UV_VALUE_OPTIONS.contains(&w.as_str()) {
                    2
                } else {
                    1
                };
            }
            i
        };
        let first = value(i);
        let name = basename(&first);
        match (name, value(i + 1).as_str()) {
            ("uv", "run") | ("poetry", "run") | ("pdm", "run") | ("pipenv", "run") => {
                runner = Runner::Python;
                i = skip_options(i + 2);
            }
            ("uv", "tool") if value(i + 2) == "run" => {
                runner = Runner::Python;
                i = skip_options(i + 3);
            }
            ("uvx", _) | ("pipx", "run") => {
                runner = Runner::Python;
                i = skip_options(i + if name == "uvx" { 1 } else { 2 });
            }
            (python, "-m") if python.starts_with("python") || python == "py" => {
                runner = Runner::Python;
                i += 2;
            }
            ("coverage", "run") => {
                // `coverage run -m pytest`: the module after `-m` is what runs.
                runner = Runner::Python;
                i += 2;
                while i < words.len() && value(i) != "-m" {
                    i += 1;
                }
                i += 1;
            }
            ("npx", _) | ("bunx", _) => {
                runner = Runner::Node;
                i = skip_options(i + 1);
                // `npx -p pkg cmd` and `npx --package=pkg cmd` name the package first.
            }
            ("pnpm", "exec") | ("pnpm", "dlx") | ("npm", "exec") | ("npm", "x") => {
                runner = Runner::Node;
                i = skip_options(i + 2);
            }
            _ => {
                if first.contains("node_modules/.bin/") {
                    runner = Runner::Node;
                } else if first.contains("/bin/") && first.contains("env") {
                    runner = Runner::Python;
                }
            }
        }
        let program_word = words.get(i)?.clone();
        let program = basename(&unquote(&program_word)).to_string();
        if program.is_empty() {
            return None;
        }
        Some(Call {
            prefix: words[..i].to_vec(),
            runner,
            program,
            program_word,
            args: words[i + 1..].to_vec(),
        })
    }

    /// The argument values, quotes removed.
    pub fn values(&self) -> Vec<String> {
        self.args.iter().map(|a| unquote(a)).collect()
    }

    /// The tool this call runs, and how many arguments name its subcommand.
    pub fn tool(&self) -> Option<(&'static Tool, usize)> {
        let values = self.values();
        TOOLS.iter().find_map(|t| {
            if !t.program.contains(&self.program.as_str()) {
                return None;
            }
            // Options may come before the subcommand (`cargo +nightly fmt`, `ruff --quiet check`).
            let start = values
                .iter()
                .position(|v| !v.starts_with('-') && !v.starts_with('+'))
                .unwrap_or(values.len());
            let start = if t.sub.first().is_some_and(|s| s.starts_with('-')) {
                0
            } else {
                start
            };
            let matches = t.sub.is_empty()
                || (values.len() >= start + t.sub.len()
                    && t.sub.iter().zip(&values[start..]).all(|(s, v)| s == v));
            let old_ruff = t.name == "ruff check"
                && values
                    .get(start)
                    .is_none_or(|v| v != "format" && v != "check");
            let consumed = if matches && !t.sub.is_empty() {
                start + t.sub.len()
            } else {
                0
            };
            (matches || old_ruff).then_some((t, consumed))
        })
    }

    /// The command with `args` in place of its arguments.
    pub fn render_with(&self, args: &[String]) -> String {
        self.prefix
            .iter()
            .chain(std::iter::once(&self.program_word))
            .chain(args)
            .cloned()
            .collect::<Vec<_>>()
            .join(" ")
    }

    pub fn render(&self) -> String {
        self.render_with(&self.args)
    }
}

fn basename(word: &str) -> &str {
    word.rsplit('/').next().unwrap_or(word)
}

/// Flags that make a linter change files.
const FIX_FLAGS: &[&str] = &[
    "--fix",
    "--write",
    "--apply",
    "--apply-unsafe",
    "--unsafe",
    "--unsafe-fixes",
    "--fix-only",
    "--fix-suggestions",
    "--fix-dangerously",
    "--allow-dirty",
    "--allow-staged",
    "--allow-no-vcs",
];

fn is_fix_flag(value: &str) -> bool {
    let flag = value.split('=').next().unwrap_or(value);
    FIX_FLAGS.contains(&flag)
}

/// Flags that put a formatter in check mode, by tool.
fn check_flags(tool: &str) -> &'static [&'static str] {
    match tool {
        "prettier" => &["--check", "-c", "--list-different", "-l"],
        "oxfmt" => &["--check", "--list-different"],
        "ruff format" | "black" => &["--check", "--diff"],
        "isort" => &["--check-only", "--check", "-c", "--diff"],
        "cargo fmt" => &["--check"],
        "gofmt" | "goimports" => &["-l", "-d"],
        _ => &[],
    }
}

/// Whether a formatter call only reports (check mode) instead of rewriting files.
pub(crate) fn formatter_checks(call: &Call, tool: &Tool, sub: usize) -> bool {
    let values = call.values();
    let rest = &values[sub..];
    match tool.name {
        "biome format" => !rest.iter().any(|v| v == "--write" || v == "--apply"),
        "dprint" => values
            .get(sub.saturating_sub(1))
            .is_some_and(|v| v == "check"),
        "prettier" => !rest.iter().any(|v| v == "--write" || v == "-w"),
        "gofmt" | "goimports" => !rest.iter().any(|v| v == "-w"),
        name => rest.iter().any(|v| check_flags(name).contains(&v.as_str())),
    }
}

/// A formatter call in apply mode: check flags dropped or turned into write flags.
pub(crate) fn apply_mode(call: &Call, tool: &Tool, sub: usize) -> String {
    let values = call.values();
    let mut args: Vec<String> = call.args[..sub].to_vec();
    if tool.name == "dprint"
        && let Some(last) = args.last_mut()
    {
        *last = "fmt".into();
    }
    let flags = check_flags(tool.name);
    let write = match tool.name {
        "prettier" => Some("--write"),
        "biome format" => Some("--write"),
        "gofmt" | "goimports" => Some("-w"),
        _ => None,
    };
    let mut wrote = values[sub..]
        .iter()
        .any(|v| Some(v.as_str()) == write || (tool.name == "prettier" && v == "-w"));
    for (raw, value) in call.args[sub..].iter().zip(&values[sub..]) {
        if flags.contains(&value.as_str()) {
            if let Some(w) = write.filter(|_| !wrote) {
                args.push(w.into());
                wrote = true;
            }
            continue;
        }
        args.push(raw.clone());
    }
    if let Some(w) = write.filter(|_| !wrote) {
        args.insert(sub, w.into());
    }
    // `cargo fmt --all -- --check` leaves a dangling `--`.
    if args.last().is_some_and(|a| a == "--") {
        args.pop();
    }
    call.render_with(&args)
}

/// Whether a linter call changes files: fix flags, or ruff whose configuration fixes by
/// default.
pub(crate) fn linter_fixes(call: &Call, tool: &Tool, ruff_fixes: bool) -> bool {
    let values = call.values();
    if values.iter().any(|v| is_fix_flag(v)) {
        return true;
    }
    tool.name == "ruff check" && ruff_fixes && !values.iter().any(|v| v == "--no-fix")
}

/// A linter call in strict check mode: fix flags dropped, `--no-fix` for ruff whatever its
/// configuration says.
pub(crate) fn check_mode(call: &Call, tool: &Tool, sub: usize) -> String {
    let values = call.values();
    let mut args: Vec<String> = call.args[..sub].to_vec();
    if tool.name == "ruff check" && !values.iter().any(|v| v == "--no-fix") {
        args.push("--no-fix".into());
    }
    let mut skip_value = false;
    for (raw, value) in call.args[sub..].iter().zip(&values[sub..]) {
        if skip_value {
            skip_value = false;
            continue;
        }
        if value == "--fix-type" {
            skip_value = true;
            continue;
        }
        if is_fix_flag(value) {
            continue;
        }
        args.push(raw.clone());
    }
    call.render_with(&args)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn normalize(command: &str) -> String {
        let call = Call::parse(command).unwrap();
        let (tool, sub) = call.tool().unwrap();
        match tool.role {
            Role::Formatter => apply_mode(&call, tool, sub),
            _ => check_mode(&call, tool, sub),
        }
    }

    #[test]
    fn formatters_apply_and_linters_never_fix() {
        assert_eq!(normalize("prettier --check ."), "prettier --write .");
        assert_eq!(
            normalize("npx prettier -c \"src/**/*.ts\""),
            "npx prettier --write \"src/**/*.ts\""
        );
        assert_eq!(normalize("cargo fmt --all -- --check"), "cargo fmt --all");
        assert_eq!(
            normalize("uv run ruff format --check ."),
            "uv run ruff format ."
        );
        assert_eq!(normalize("gofmt -s -l ."), "gofmt -s -w .");
        assert_eq!(normalize("gofmt -w ."), "gofmt -w .");
        assert_eq!(normalize("prettier --write ."), "prettier --write .");
        assert_eq!(normalize("black --check --diff src"), "black src");
        assert_eq!(normalize("isort --check-only ."), "isort .");
        assert_eq!(normalize("biome format src"), "biome format --write src");
        assert_eq!(normalize("dprint check"), "dprint fmt");
        assert_eq!(
            normalize("uv run --locked ruff check --fix ."),
            "uv run --locked ruff check --no-fix ."
        );
        assert_eq!(normalize("ruff check ."), "ruff check --no-fix .");
        assert_eq!(normalize("eslint --fix --fix-type problem ."), "eslint .");
        assert_eq!(
            normalize("cargo clippy --fix --allow-dirty --all-targets -- -D warnings"),
            "cargo clippy --all-targets -- -D warnings"
        );
        assert_eq!(normalize("biome check --write ."), "biome check .");
        assert_eq!(normalize("golangci-lint run --fix"), "golangci-lint run");
    }

    #[test]
    fn runners_are_seen_through() {
        for (command, program, runner) in [
            ("uv run --group lint -- mypy src", "mypy", Runner::Python),
            ("python -m pytest -q", "pytest", Runner::Python),
            ("poetry run black .", "black", Runner::Python),
            (".venv/bin/flake8", "flake8", Runner::Python),
            ("CI=1 npx --no-install eslint .", "eslint", Runner::Node),
            ("pnpm exec tsc --noEmit", "tsc", Runner::Node),
            ("./node_modules/.bin/jest", "jest", Runner::Node),
            ("go test ./...", "go", Runner::Bare),
        ] {
            let call = Call::parse(command).unwrap();
            assert_eq!(
                (call.program.as_str(), call.runner),
                (program, runner),
                "{command}"
            );
            assert!(call.tool().is_some(), "{command}");
        }
        assert!(Call::parse("cargo build").unwrap().tool().is_none());
        assert!(Call::parse("ruff format .").unwrap().tool().unwrap().0.name == "ruff format");
    }
}
