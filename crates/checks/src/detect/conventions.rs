//! Checks that follow from configuration files and ecosystem conventions alone, for what
//! neither the CI nor a declared entry point covers: a formatter or linter set up in its config
//! file, and Cargo's and Go's standard tools.

use super::Context;
use super::resolve::Found;
use super::tools::Call;

impl Context {
    /// The checks configuration files and conventions imply, in stage order.
    pub(crate) fn conventional(&self) -> Vec<Found> {
        let mut out = Vec::new();
        let mut add = |command: &str, from: String| {
            if let Some(call) = Call::parse(command)
                && let Some((tool, sub)) = call.tool()
            {
                out.push(self.tool_check(&call, tool, sub, &from));
            }
        };
        if let Some(node) = &self.node {
            for c in &node.configured {
                let from = format!("{} config {}", c.tool, c.file);
                match c.tool {
                    "prettier" => add("prettier --write .", from),
                    "biome" => {
                        add("biome format --write .", from.clone());
                        add("biome lint .", from);
                    }
                    "eslint" => add("eslint .", from),
                    "oxlint" => add("oxlint", from),
                    "oxfmt" => add("oxfmt", from),
                    _ => {}
                }
            }
        }
        if let Some(py) = &self.python {
            for (tool, file) in &py.configured {
                let from = format!("{tool} config {file}");
                match *tool {
                    "ruff" => {
                        add("ruff format .", from.clone());
                        add("ruff check .", from);
                    }
                    "black" => add("black .", from),
                    "isort" => add("isort .", from),
                    "flake8" => add("flake8", from),
                    "mypy" => add(if py.mypy_files { "mypy" } else { "mypy ." }, from),
                    "pyright" => add("pyright", from),
                    "pytest" => add("pytest", from),
                    _ => {}
                }
            }
        }
        if self.cargo {
            let fmt_config = ["rustfmt.toml", ".rustfmt.toml"]
                .into_iter()
                .find(|f| self.repo.exists(f))
                .map(|f| format!(" and {f}"))
                .unwrap_or_default();
            add("cargo fmt --all", format!("Cargo.toml{fmt_config}"));
            add(
                "cargo clippy --all-targets -- -D warnings",
                "Cargo.toml: clippy over every target (examples, tests, benches), warnings as errors".into(),
            );
            add("cargo test", "Cargo.toml".into());
        }
        if self.go {
            add("gofmt -w .", "go.mod".into());
            match [
                ".golangci.yml",
                ".golangci.yaml",
                ".golangci.toml",
                ".golangci.json",
            ]
            .into_iter()
            .find(|f| self.repo.exists(f))
            {
                Some(config) => add(
                    "golangci-lint run",
                    format!("golangci-lint config {config}"),
                ),
                None => add("go vet ./...", "go.mod".into()),
            }
            add("go test ./...", "go.mod".into());
        }
        out
    }
}
