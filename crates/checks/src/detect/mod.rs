//! Detecting a repository's checks from the evidence a careful engineer reads. The CI files
//! come first: for an ecosystem the CI checks, the plan is what the CI runs. Elsewhere the
//! repository's declared entry points (Makefile and just targets, pre-commit hooks, package
//! scripts, tox environments) come next, then formatters and linters set up in configuration
//! files, then the conventions of Cargo and Go. Setup installs what the chosen checks need.

mod ci;
mod conventions;
mod entries;
mod make;
mod node;
mod precommit;
mod python;
mod repo;
mod resolve;
mod setup;
mod shell;
mod tools;
mod tox;

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

pub(crate) use python::ini_sections;

use entries::{EntryKind, EntryPoint, Named, best, named};
use resolve::{Found, Needs};
use tools::Eco;

use crate::{CheckPlan, Result, Stage};

/// Everything detection read from the repository.
pub(crate) struct Context {
    repo: repo::Repo,
    ci: ci::Ci,
    node: Option<node::NodeProject>,
    python: Option<python::PythonProject>,
    cargo: bool,
    go: bool,
    /// Makefile targets, just recipes, tox environments and pre-commit hooks.
    entries: Vec<EntryPoint>,
    precommit: Option<precommit::PreCommit>,
}

impl Context {
    fn read(root: &Path) -> Result<Context> {
        let repo = repo::Repo::new(root);
        let ci = ci::read(&repo)?;
        let ci_uses_pnpm = ci.commands.iter().any(|c| c.command.starts_with("pnpm "));
        let node = node::read(&repo, ci_uses_pnpm)?;
        let mut python = python::read(&repo)?;
        let precommit = precommit::read(&repo)?;
        if python.is_none() && precommit.is_some() {
            // pre-commit is a Python program: it gets a virtualenv of its own.
            python = Some(python::PythonProject::for_tools_only());
        }
        let mut entries = make::read(&repo)?;
        if let Some(tox) = python.as_ref().and_then(|p| p.tox.as_ref()) {
            entries.extend(tox.entries());
        }
        if let Some(pc) = &precommit {
            entries.extend(pc.hooks.iter().cloned());
        }
        Ok(Context {
            cargo: repo.is_file("Cargo.toml"),
            go: repo.is_file("go.mod"),
            repo,
            ci,
            node,
            python,
            entries,
            precommit,
        })
    }

    pub(crate) fn all_entries(&self) -> impl Iterator<Item = &EntryPoint> {
        self.entries
            .iter()
            .chain(self.node.iter().flat_map(|n| n.scripts.iter()))
    }

    /// The entry points a person would run for each check when nothing says which: per kind,
    /// the plainest name for formatting, linting, type checking and testing.
    fn declared(&self) -> Vec<Found> {
        let mut out = Vec::new();
        let kinds = [
            EntryKind::Make,
            EntryKind::Just,
            EntryKind::Hook,
            EntryKind::Script,
        ];
        for kind in kinds {
            let of_kind: Vec<&EntryPoint> = self.all_entries().filter(|e| e.kind == kind).collect();
            if kind == EntryKind::Hook {
                for hook in of_kind {
                    out.extend(self.entry_checks(hook, &[], 0));
                }
                continue;
            }
            let format =
                best(&of_kind, Named::FormatApply).or_else(|| best(&of_kind, Named::FormatCheck));
            let picks = [
                format,
                best(&of_kind, Named::Lint),
                best(&of_kind, Named::TypeCheck),
                best(&of_kind, Named::Test),
            ];
            for entry in picks.into_iter().flatten() {
                out.extend(self.entry_checks(entry, &[], 0));
            }
        }
        for entry in self.entries.iter().filter(|e| e.kind == EntryKind::Tox) {
            let role = named(EntryKind::Tox, &entry.name);
            if role.is_some() && role != Some(Named::LintFix) {
                out.extend(self.entry_checks(entry, &[], 0));
            }
        }
        out
    }
}

/// Detects the checks of the repository checked out at `root`.
pub(crate) fn detect(root: &Path) -> Result<CheckPlan> {
    let ctx = Context::read(root)?;
    let mut chosen: Vec<(Found, Vec<String>)> = Vec::new();
    for command in &ctx.ci.commands {
        let from = format!("the CI step `{}`", command.command);
        let (found, _) = ctx.resolve(&command.command, &from, 0);
        chosen.extend(found.into_iter().map(|f| (f, vec![command.file.clone()])));
    }
    if let Some(pc) = &ctx.precommit {
        let service = format!("pre-commit.ci ({} ci:)", precommit::CONFIG);
        for hook in pc
            .hooks
            .iter()
            .filter(|h| pc.service_runs.contains(&h.name))
        {
            for f in ctx.entry_checks(hook, &[], 0) {
                chosen.push((f, vec![service.clone()]));
            }
        }
    }
    let governed: BTreeSet<Eco> = chosen
        .iter()
        .flat_map(|(f, _)| f.needs.ecos.iter().copied())
        .collect();
    let has_ci = !chosen.is_empty();

    // For what the CI leaves alone: declared entry points, then configuration and conventions,
    // each only where nothing before it already checks that ecosystem at that stage.
    let mut covered: BTreeSet<(Option<Eco>, Stage)> = BTreeSet::new();
    for (f, _) in &chosen {
        for eco in &f.needs.ecos {
            covered.insert((Some(*eco), f.stage));
        }
    }
    let mut notes = ctx.ci.notes.clone();
    for f in ctx.declared().into_iter().chain(ctx.conventional()) {
        let ecos = &f.needs.ecos;
        if ecos.iter().any(|e| governed.contains(e)) {
            let ci_checks_stage = ecos.iter().any(|e| covered.contains(&(Some(*e), f.stage)));
            if !ci_checks_stage {
                // A long command (a pre-commit hook's) is better named by where it is from.
                notes.push(if f.command.len() <= 60 {
                    format!(
                        "`{}` ({}) is not a check: the CI does not run it",
                        f.command, f.from
                    )
                } else {
                    format!("{} is not a check: the CI does not run it", f.from)
                });
            }
            continue;
        }
        if ecos.is_empty() && has_ci {
            continue;
        }
        let taken = covered.contains(&(None, f.stage))
            || ecos.iter().any(|e| covered.contains(&(Some(*e), f.stage)));
        if taken {
            continue;
        }
        if ecos.is_empty() {
            covered.insert((None, f.stage));
        }
        for eco in ecos {
            covered.insert((Some(*eco), f.stage));
        }
        chosen.push((f, Vec::new()));
    }

    let mut plan = CheckPlan::default();
    let mut needs = Needs::default();
    let mut files: BTreeSet<String> = BTreeSet::new();
    let mut by_stage: BTreeMap<Stage, Vec<(Found, Vec<String>)>> = BTreeMap::new();
    for (f, ci) in chosen {
        needs.merge(&f.needs);
        by_stage.entry(f.stage).or_default().push((f, ci));
    }
    for step in ctx.setup(&needs) {
        files.extend(step.ci.iter().cloned());
        files.extend(named_files(&ctx, &step.from));
        plan.add(Stage::Setup, step.command, step.from, step.ci);
    }
    for (stage, found) in by_stage {
        for (f, ci) in found {
            files.extend(ci.iter().filter(|c| ctx.repo.exists(c)).cloned());
            files.extend(named_files(&ctx, &f.from));
            plan.add(stage, f.command, f.from, ci);
        }
    }
    notes.dedup();
    plan.notes = notes;
    plan.source = if files.is_empty() {
        "none found".into()
    } else {
        files.into_iter().collect::<Vec<_>>().join(", ")
    };
    Ok(plan)
}

/// The repository files an evidence text names (`package.json script lint` → `package.json`),
/// leaving out the commands quoted in it.
fn named_files(ctx: &Context, from: &str) -> Vec<String> {
    from.split('`')
        .step_by(2)
        .flat_map(|text| text.split([' ', ',', '(', ')']))
        .map(|w| w.trim_end_matches(':'))
        .filter(|w| w.len() > 2 && !w.ends_with('/') && ctx.repo.is_file(w))
        .map(str::to_string)
        .collect()
}
