//! `nightshift`: parses arguments and hands over to the server or the API client.

mod checks;
mod client;
mod config;
mod confine;
mod insights;
mod install;
mod judge;
mod logging;
mod output;
mod people;
mod repos;
mod serve;
mod task;
mod template;
mod worker;

use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(
    name = "nightshift",
    version,
    about = "A self-hosted background coding agent"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the API, the web UI and the workers in one process (SQLite by default).
    Serve(serve::ServeArgs),
    /// Run only workers (no API) on the database of `serve --no-workers` nodes, to scale out.
    Worker(worker::WorkerArgs),
    /// Create, watch, cancel and retry tasks.
    #[command(subcommand)]
    Task(task::TaskCommand),
    /// List, show and create templates, or save a succeeded task as one.
    #[command(subcommand)]
    Template(template::TemplateCommand),
    /// Create, list and revoke your API tokens.
    #[command(subcommand)]
    Token(people::TokenCommand),
    /// List and create projects; show one and add members.
    #[command(subcommand)]
    Project(people::ProjectCommand),
    /// See which checks Nightshift finds in a repository, and why, before creating a task.
    #[command(subcommand)]
    Checks(checks::ChecksCommand),
    /// A project's outcomes over a period: runs by end reason, retries, pull requests merged,
    /// time to a pull request, cost per run and per merged pull request.
    Insights(insights::InsightsArgs),
}

fn main() -> std::process::ExitCode {
    // Inside a sandbox the server runs `nightshift netfwd <listen> <socket>… -- <command>`:
    // taken before clap (which would eat the `--`) and before the runtime starts, because the
    // forwarder forks and must still be single-threaded then.
    let mut args = std::env::args_os();
    if args
        .nth(1)
        .is_some_and(|a| a == confine::FORWARDER_SUBCOMMAND)
    {
        std::process::exit(nightshift_sandbox::netfwd::run(args.collect()));
    }
    // The agent starts `nightshift verify-mcp <spec>` inside its sandbox: no clap, no logging
    // on stdout, which is the protocol's.
    if std::env::args().nth(1).as_deref() == Some(nightshift_checks::verify::SUBCOMMAND) {
        let args = std::env::args().skip(2).collect();
        return match tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
        {
            Ok(rt) => {
                let code = rt.block_on(nightshift_checks::verify::serve(args));
                std::process::ExitCode::from(u8::try_from(code).unwrap_or(1))
            }
            Err(e) => {
                eprintln!("error: cannot start the async runtime: {e}");
                std::process::ExitCode::FAILURE
            }
        };
    }
    let cli = Cli::parse();
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return std::process::ExitCode::FAILURE;
        }
    };
    let result = runtime.block_on(async {
        match cli.command {
            Command::Serve(args) => serve::run(args).await,
            Command::Worker(args) => worker::run(args).await,
            Command::Task(cmd) => task::run(cmd).await,
            Command::Template(cmd) => template::run(cmd).await,
            Command::Token(cmd) => people::token(cmd).await,
            Command::Project(cmd) => people::project(cmd).await,
            Command::Checks(cmd) => checks::run(cmd).await,
            Command::Insights(args) => insights::run(args).await,
        }
    });
    match result {
        Ok(code) => code,
        Err(e) => {
            eprintln!(
                "error: {}",
                nightshift_core::printable(&format!("{e:#}"), true)
            );
            std::process::ExitCode::FAILURE
        }
    }
}
