//! `nightshift task …`: the client side of the task API.

use std::io::{IsTerminal, Write};
use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context;
use clap::{Args, Subcommand};
use futures::StreamExt;
use nightshift_core::{AgentKind, AgentSpec, Budget, RunEvent, RunStatus, parse_duration};
use nightshift_server::contract::{
    AddressReview, CancelOutcome, Cancelled, CreateTask, EventsPage, EventsQuery, Instantiate,
    RunView, TaskList, TaskListQuery, TaskView,
};

use crate::client::{Client, ClientArgs};
use crate::output::{line, lines, short};

// Parsed once per process: the size of the largest variant does not matter.
#[allow(clippy::large_enum_variant)]
#[derive(Subcommand)]
pub enum TaskCommand {
    /// Create a task; its first run is queued at once.
    Create(CreateArgs),
    /// Show a task and its runs.
    Show {
        id: i64,
        #[arg(long)]
        json: bool,
        #[command(flatten)]
        client: ClientArgs,
    },
    /// List tasks, newest first.
    List(ListArgs),
    /// Print a run's log; --follow keeps printing until the run ends.
    Logs {
        id: i64,
        /// Which run (default: the latest).
        #[arg(long)]
        run: Option<i64>,
        #[arg(long, short)]
        follow: bool,
        #[command(flatten)]
        client: ClientArgs,
    },
    /// Cancel the task's active run.
    Cancel {
        id: i64,
        #[command(flatten)]
        client: ClientArgs,
    },
    /// Start a new run of the task from a fresh workspace.
    Retry {
        id: i64,
        #[arg(long)]
        wait: bool,
        #[arg(long)]
        json: bool,
        #[command(flatten)]
        client: ClientArgs,
    },
    /// Start a run that fixes the failing CI of the task's open pull request: the agent gets
    /// the failing jobs' output and pushes on top of the same branch.
    FixCi {
        id: i64,
        #[arg(long)]
        wait: bool,
        #[arg(long)]
        json: bool,
        #[command(flatten)]
        client: ClientArgs,
    },
    /// Start a run that rebases the task's open pull request onto its base branch as it is
    /// now: checked again and pushed with a lease; where it conflicts, the agent resolves it.
    Rebase {
        id: i64,
        #[arg(long)]
        wait: bool,
        #[arg(long)]
        json: bool,
        #[command(flatten)]
        client: ClientArgs,
    },
    /// Start a run that addresses the review comments on the task's open pull request (and
    /// --instructions, if given): the agent pushes on top of the same branch.
    AddressReview {
        id: i64,
        /// What to tell the agent besides the review comments.
        #[arg(long)]
        instructions: Option<String>,
        #[arg(long)]
        wait: bool,
        #[arg(long)]
        json: bool,
        #[command(flatten)]
        client: ClientArgs,
    },
}

#[derive(Args)]
pub struct CreateArgs {
    /// The repository to change (https://, ssh://, file:// or an absolute path).
    #[arg(long)]
    repo: String,
    /// The branch to start from and open the pull request against (default: the remote's default).
    #[arg(long)]
    base: Option<String>,
    /// What to change, in plain language (not with --template: the template renders them).
    #[arg(
        long,
        required_unless_present = "template",
        conflicts_with = "template"
    )]
    instructions: Option<String>,
    /// Create the task from this template (its latest version).
    #[arg(long)]
    template: Option<String>,
    /// A template parameter value, `name=value`; repeat for each parameter.
    #[arg(long = "param", value_name = "NAME=VALUE", requires = "template")]
    params: Vec<String>,
    #[arg(long)]
    title: Option<String>,
    /// command, claude-code, codex or acp.
    #[arg(long)]
    agent: Option<String>,
    /// The shell command for `--agent command`, or the agent's command line for `--agent acp`.
    #[arg(long)]
    agent_command: Option<String>,
    #[arg(long)]
    model: Option<String>,
    /// e.g. 90s, 10m, 1h (default 1h).
    #[arg(long, value_parser = parse_duration)]
    timeout: Option<Duration>,
    #[arg(long)]
    max_cost_usd: Option<f64>,
    #[arg(long)]
    max_turns: Option<u64>,
    #[arg(long)]
    max_tokens: Option<u64>,
    /// Let the agent delete or skip tests, silence linters and edit the checks' configuration:
    /// what the test-tampering guard finds is listed in the pull request instead of sent back.
    #[arg(long)]
    allow_test_changes: bool,
    /// Block until the run ends; exit 0 only when it succeeded.
    #[arg(long)]
    wait: bool,
    #[arg(long)]
    json: bool,
    #[command(flatten)]
    client: ClientArgs,
}

#[derive(Args)]
pub struct ListArgs {
    #[arg(long)]
    repo: Option<String>,
    #[arg(long)]
    status: Option<String>,
    /// Free text in title or instructions.
    #[arg(long, short)]
    query: Option<String>,
    #[arg(long, default_value_t = 50)]
    limit: u32,
    #[arg(long)]
    json: bool,
    #[command(flatten)]
    client: ClientArgs,
}

pub async fn run(command: TaskCommand) -> anyhow::Result<ExitCode> {
    match command {
        TaskCommand::Create(args) => create(args).await,
        TaskCommand::Show { id, json, client } => {
            let task: TaskView = Client::new(&client).get(&format!("/tasks/{id}")).await?;
            print_task(&task, json);
            Ok(ExitCode::SUCCESS)
        }
        TaskCommand::List(args) => list(args).await,
        TaskCommand::Logs {
            id,
            run,
            follow,
            client,
        } => logs(&Client::new(&client), id, run, follow).await,
        TaskCommand::Cancel { id, client } => {
            let answer: Cancelled = Client::new(&client)
                .post(&format!("/tasks/{id}/cancel"), &serde_json::Map::new())
                .await?;
            match answer.outcome {
                CancelOutcome::Cancelled => println!("task {id}: cancelled"),
                CancelOutcome::CancelRequested => println!(
                    "task {id}: cancel requested; the run stops once its processes are gone"
                ),
            }
            Ok(ExitCode::SUCCESS)
        }
        TaskCommand::Retry {
            id,
            wait,
            json,
            client,
        } => start_run(&client, &format!("/tasks/{id}/retry"), wait, json).await,
        TaskCommand::FixCi {
            id,
            wait,
            json,
            client,
        } => start_run(&client, &format!("/tasks/{id}/fix-ci"), wait, json).await,
        TaskCommand::Rebase {
            id,
            wait,
            json,
            client,
        } => start_run(&client, &format!("/tasks/{id}/rebase"), wait, json).await,
        TaskCommand::AddressReview {
            id,
            instructions,
            wait,
            json,
            client,
        } => {
            let client = Client::new(&client);
            let task: TaskView = client
                .post(
                    &format!("/tasks/{id}/address-review"),
                    &AddressReview { instructions },
                )
                .await?;
            finish(&client, task, wait, json).await
        }
    }
}

async fn create(args: CreateArgs) -> anyhow::Result<ExitCode> {
    if let Some(template) = args.template.clone() {
        return crate::template::create_task(args_for_template(args)?, &template).await;
    }
    let kind: AgentKind = match (&args.agent, &args.agent_command) {
        (Some(kind), _) => kind.parse()?,
        (None, Some(_)) => AgentKind::Command,
        (None, None) => AgentKind::ClaudeCode,
    };
    let agent = AgentSpec {
        kind,
        command: args.agent_command,
        model: args.model,
        args: Vec::new(),
    };
    let budget = Budget {
        max_cost_usd: args.max_cost_usd,
        max_turns: args.max_turns,
        max_tokens: args.max_tokens,
    };
    let body = CreateTask {
        repo: args.repo,
        base: args.base,
        instructions: args.instructions.unwrap_or_default(),
        title: args.title,
        agent: Some(agent),
        timeout: args.timeout.map(seconds),
        budget: Some(budget),
        allow_test_changes: args.allow_test_changes.then_some(true),
    };
    let client = Client::new(&args.client);
    let task: TaskView = client.post("/tasks", &body).await?;
    finish(&client, task, args.wait, args.json).await
}

/// A timeout as the API takes it: `90s`.
fn seconds(timeout: Duration) -> String {
    format!("{}s", timeout.as_secs())
}

/// The parts of `task create` a template instantiation passes on: only what was given, so the
/// template's own defaults apply to the rest.
fn args_for_template(args: CreateArgs) -> anyhow::Result<crate::template::FromTemplate> {
    let agent = match (&args.agent, &args.agent_command) {
        (None, None) => None,
        (kind, command) => Some(AgentSpec {
            kind: kind.as_deref().unwrap_or("command").parse()?,
            command: command.clone(),
            model: args.model.clone(),
            args: Vec::new(),
        }),
    };
    let budget =
        (args.max_cost_usd.is_some() || args.max_turns.is_some() || args.max_tokens.is_some())
            .then_some(Budget {
                max_cost_usd: args.max_cost_usd,
                max_turns: args.max_turns,
                max_tokens: args.max_tokens,
            });
    Ok(crate::template::FromTemplate {
        body: Instantiate {
            repo: args.repo,
            base: args.base,
            title: args.title,
            agent,
            timeout: args.timeout.map(seconds),
            budget,
            // Only when given: the template's default applies otherwise.
            allow_test_changes: args.allow_test_changes.then_some(true),
            ..Instantiate::default()
        },
        params: args.params,
        wait: args.wait,
        json: args.json,
        client: args.client,
    })
}

/// Prints the task, or waits for its latest run to end when asked.
pub(crate) async fn finish(
    client: &Client,
    task: TaskView,
    wait: bool,
    json: bool,
) -> anyhow::Result<ExitCode> {
    if !wait {
        print_task(&task, json);
        return Ok(ExitCode::SUCCESS);
    }
    let task = wait_for_end(client, task.task.id, json).await?;
    print_task(&task, json);
    let succeeded = task
        .latest_run()
        .is_some_and(|r| r.status == RunStatus::Succeeded);
    Ok(if succeeded {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

async fn wait_for_end(client: &Client, id: i64, quiet: bool) -> anyhow::Result<TaskView> {
    let tty = std::io::stderr().is_terminal();
    let mut last_line = String::new();
    loop {
        let task: TaskView = client.get(&format!("/tasks/{id}")).await?;
        let run = task.latest_run().context("the task has no runs")?;
        let line = format!(
            "task {id} run {}: {}{}{}",
            run.number,
            run.status,
            run.phase.map(|p| format!(" · {p}")).unwrap_or_default(),
            if run.status == RunStatus::Running {
                format!(" · {}%", run.progress)
            } else if let Some(reason) = &run.waiting_reason {
                // A limit holds the run back: say which.
                format!(" · {}", line(reason))
            } else {
                String::new()
            }
        );
        if !quiet && line != last_line {
            if tty {
                eprint!("\r\x1b[2K{line}");
            } else {
                eprintln!("{line}");
            }
            let _ = std::io::stderr().flush();
            last_line = line;
        }
        if run.status.is_terminal() {
            if tty && !quiet {
                eprintln!();
            }
            return Ok(task);
        }
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
}

fn print_task(view: &TaskView, json: bool) {
    if json {
        println!("{}", serde_json::to_string_pretty(view).unwrap_or_default());
        return;
    }
    let task = &view.task;
    println!("task {} · {}", task.id, line(&task.title));
    println!("  repo    {} ({})", line(&task.repo), line(&task.base));
    println!("  status  {}", task.status);
    println!("  instructions");
    for text in lines(&task.instructions).lines() {
        println!("    {text}");
    }
    for run in &view.runs {
        println!("{}", run_line(run));
    }
}

/// A run as `task show` lists it: status, why it ended or where it is, and what it says.
fn run_line(run: &RunView) -> String {
    let mut out = format!("  run {}  {}", run.number, run.status);
    if let Some(reason) = run.end_reason {
        out.push_str(&format!(" ({reason})"));
    } else if let Some(phase) = run.phase {
        out.push_str(&format!(" · {phase} {}%", run.progress));
    }
    if let Some(branch) = &run.branch {
        out.push_str(&format!(" → {}", line(branch)));
    }
    for note in [&run.error, &run.waiting_reason].into_iter().flatten() {
        out.push_str(&format!("\n          {}", line(note)));
    }
    out
}

async fn list(args: ListArgs) -> anyhow::Result<ExitCode> {
    let client = Client::new(&args.client);
    let query = TaskListQuery {
        repo: args.repo,
        status: args.status,
        q: args.query,
        limit: Some(args.limit),
        ..TaskListQuery::default()
    };
    let answer: TaskList = client.get_with("/tasks", &query).await?;
    if args.json {
        println!(
            "{}",
            serde_json::to_string_pretty(&answer.tasks).unwrap_or_default()
        );
        return Ok(ExitCode::SUCCESS);
    }
    for entry in &answer.tasks {
        let (task, run) = (&entry.task, &entry.latest_run);
        let doing = run
            .end_reason
            .map(|r| r.as_str())
            .or(run.phase.map(|p| p.as_str()))
            .unwrap_or_default();
        println!(
            "{:>6}  {:<10} {:<12} {:<40} {}",
            task.id,
            task.status.as_str(),
            doing,
            short(&task.title, 40),
            line(&task.repo)
        );
    }
    Ok(ExitCode::SUCCESS)
}

async fn logs(
    client: &Client,
    id: i64,
    run: Option<i64>,
    follow: bool,
) -> anyhow::Result<ExitCode> {
    let number = match run {
        Some(n) => n,
        None => {
            let task: TaskView = client.get(&format!("/tasks/{id}")).await?;
            task.latest_run().context("the task has no runs")?.number
        }
    };
    if !follow {
        let mut query = EventsQuery {
            after: 0,
            limit: Some(1000),
        };
        loop {
            let page: EventsPage = client
                .get_with(&format!("/tasks/{id}/runs/{number}/events"), &query)
                .await?;
            page.events.iter().for_each(print_event);
            match page.next_after {
                Some(next) => query.after = next,
                None => break,
            }
        }
        return Ok(ExitCode::SUCCESS);
    }
    let response = client
        .stream(&format!("/tasks/{id}/runs/{number}/stream"))
        .await?;
    let mut bytes = response.bytes_stream();
    let mut buffer = String::new();
    let mut event_name = String::new();
    let mut data = String::new();
    while let Some(chunk) = bytes.next().await {
        buffer.push_str(&String::from_utf8_lossy(
            &chunk.context("reading the event stream")?,
        ));
        while let Some(end) = buffer.find('\n') {
            let raw = buffer[..end].trim_end_matches('\r').to_string();
            buffer.drain(..=end);
            if let Some(name) = raw.strip_prefix("event:") {
                event_name = name.trim().to_string();
            } else if let Some(d) = raw.strip_prefix("data:") {
                data.push_str(d.trim_start());
            } else if raw.is_empty() && !data.is_empty() {
                let unexpected = || format!("unexpected event from the server: {data}");
                if event_name == "end" {
                    let run: RunView = serde_json::from_str(&data).with_context(unexpected)?;
                    println!(
                        "run {number} ended: {} ({})",
                        run.status,
                        run.end_reason.map(|r| r.as_str()).unwrap_or_default()
                    );
                    return Ok(ExitCode::SUCCESS);
                }
                let event: RunEvent = serde_json::from_str(&data).with_context(unexpected)?;
                print_event(&event);
                data.clear();
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}

fn print_event(event: &RunEvent) {
    let at = nightshift_core::format_timestamp(event.at);
    let time = at.get(11..19).unwrap_or("");
    let phase = event.phase.map_or("-", |p| p.as_str());
    println!(
        "{time} {phase:<10} {:<6} {}",
        event.kind.as_str(),
        lines(&event.message)
    );
}

/// Starts the next run of a task through `path` (retry, fix CI, rebase), then shows it as
/// `task create` does, waiting for it when asked.
async fn start_run(
    client: &ClientArgs,
    path: &str,
    wait: bool,
    json: bool,
) -> anyhow::Result<ExitCode> {
    let client = Client::new(client);
    let task: TaskView = client.post(path, &serde_json::Map::new()).await?;
    finish(&client, task, wait, json).await
}
