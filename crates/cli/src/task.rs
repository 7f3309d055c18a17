//! `nightshift task …`: the client side of the task API.

use std::io::{IsTerminal, Write};
use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context;
use clap::{Args, Subcommand};
use futures::StreamExt;
use nightshift_core::{AgentKind, AgentSpec, Budget, RunStatus, parse_duration};
use serde_json::{Value, json};

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
            let task: Value = Client::new(&client).get(&format!("/tasks/{id}")).await?;
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
            let answer: Value = Client::new(&client)
                .post(&format!("/tasks/{id}/cancel"), &json!({}))
                .await?;
            match answer["outcome"].as_str() {
                Some("cancelled") => println!("task {id}: cancelled"),
                _ => println!(
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
        } => {
            let client = Client::new(&client);
            let task: Value = client
                .post(&format!("/tasks/{id}/retry"), &json!({}))
                .await?;
            finish(&client, task, wait, json).await
        }
    }
}

async fn create(args: CreateArgs) -> anyhow::Result<ExitCode> {
    if let Some(template) = args.template.clone() {
        return crate::template::create_task(args_for_template(args), &template).await;
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
    let body = json!({
        "repo": args.repo,
        "base": args.base,
        "instructions": args.instructions,
        "title": args.title,
        "agent": agent,
        "timeout": args.timeout.map(|t| format!("{}s", t.as_secs())),
        "budget": budget,
        "allow_test_changes": args.allow_test_changes,
    });
    let client = Client::new(&args.client);
    let task: Value = client.post("/tasks", &body).await?;
    finish(&client, task, args.wait, args.json).await
}

/// The parts of `task create` a template instantiation passes on: only what was given, so the
/// template's own defaults apply to the rest.
fn args_for_template(args: CreateArgs) -> crate::template::FromTemplate {
    let agent = match (&args.agent, &args.agent_command) {
        (None, None) => None,
        (kind, command) => Some(json!({
            "kind": kind.as_deref().unwrap_or("command"),
            "command": command,
            "model": args.model,
        })),
    };
    let budget =
        (args.max_cost_usd.is_some() || args.max_turns.is_some() || args.max_tokens.is_some())
            .then_some(Budget {
                max_cost_usd: args.max_cost_usd,
                max_turns: args.max_turns,
                max_tokens: args.max_tokens,
            });
    crate::template::FromTemplate {
        body: json!({
            "repo": args.repo,
            "base": args.base,
            "title": args.title,
            "agent": agent,
            "timeout": args.timeout.map(|t| format!("{}s", t.as_secs())),
            "budget": budget,
            // Only when given: the template's default applies otherwise.
            "allow_test_changes": args.allow_test_changes.then_some(true),
        }),
        params: args.params,
        wait: args.wait,
        json: args.json,
        client: args.client,
    }
}

/// Prints the task, or waits for its latest run to end when asked.
pub(crate) async fn finish(
    client: &Client,
    task: Value,
    wait: bool,
    json: bool,
) -> anyhow::Result<ExitCode> {
    if !wait {
        print_task(&task, json);
        return Ok(ExitCode::SUCCESS);
    }
    let id = task["id"].as_i64().context("the server's task has no id")?;
    let task = wait_for_end(client, id, json).await?;
    print_task(&task, json);
    let succeeded =
        latest_run(&task).and_then(|r| r["status"].as_str()) == Some(RunStatus::Succeeded.as_str());
    Ok(if succeeded {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

fn latest_run(task: &Value) -> Option<&Value> {
    task["runs"].as_array().and_then(|runs| runs.last())
}

async fn wait_for_end(client: &Client, id: i64, quiet: bool) -> anyhow::Result<Value> {
    let tty = std::io::stderr().is_terminal();
    let mut last_line = String::new();
    loop {
        let task: Value = client.get(&format!("/tasks/{id}")).await?;
        let run = latest_run(&task).cloned().unwrap_or_default();
        let status = run["status"].as_str().unwrap_or("unknown");
        let line = format!(
            "task {id} run {}: {status}{}{}",
            run["number"],
            run["phase"]
                .as_str()
                .map(|p| format!(" · {p}"))
                .unwrap_or_default(),
            if status == "running" {
                format!(" · {}%", run["progress"])
            } else if run["waiting_reason"].is_string() {
                // A limit holds the run back: say which.
                format!(" · {}", line(&run["waiting_reason"]))
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
        if status.parse::<RunStatus>().is_ok_and(|s| s.is_terminal()) {
            if tty && !quiet {
                eprintln!();
            }
            return Ok(task);
        }
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
}

fn print_task(task: &Value, json: bool) {
    if json {
        println!("{}", serde_json::to_string_pretty(task).unwrap_or_default());
        return;
    }
    println!("task {} · {}", task["id"], line(&task["title"]));
    println!(
        "  repo    {} ({})",
        line(&task["repo"]),
        line(&task["base"])
    );
    println!("  status  {}", line(&task["status"]));
    if task["instructions"].is_string() {
        println!("  instructions");
        for text in lines(&task["instructions"]).lines() {
            println!("    {text}");
        }
    }
    for run in task["runs"].as_array().into_iter().flatten() {
        let mut out = format!("  run {}  {}", run["number"], line(&run["status"]));
        if run["end_reason"].is_string() {
            out.push_str(&format!(" ({})", line(&run["end_reason"])));
        } else if run["phase"].is_string() {
            out.push_str(&format!(" · {} {}%", line(&run["phase"]), run["progress"]));
        }
        if run["branch"].is_string() {
            out.push_str(&format!(" → {}", line(&run["branch"])));
        }
        if run["error"].is_string() {
            out.push_str(&format!("\n          {}", line(&run["error"])));
        }
        if run["waiting_reason"].is_string() {
            out.push_str(&format!("\n          {}", line(&run["waiting_reason"])));
        }
        println!("{out}");
    }
}

async fn list(args: ListArgs) -> anyhow::Result<ExitCode> {
    let client = Client::new(&args.client);
    let mut query = vec![format!("limit={}", args.limit)];
    for (key, value) in [
        ("repo", &args.repo),
        ("status", &args.status),
        ("q", &args.query),
    ] {
        if let Some(v) = value {
            query.push(format!("{key}={}", urlencode(v)));
        }
    }
    let answer: Value = client.get(&format!("/tasks?{}", query.join("&"))).await?;
    if args.json {
        println!(
            "{}",
            serde_json::to_string_pretty(&answer["tasks"]).unwrap_or_default()
        );
        return Ok(ExitCode::SUCCESS);
    }
    for task in answer["tasks"].as_array().into_iter().flatten() {
        let run = &task["latest_run"];
        println!(
            "{:>6}  {:<10} {:<12} {:<40} {}",
            task["id"],
            line(&task["status"]),
            if run["end_reason"].is_string() {
                line(&run["end_reason"])
            } else {
                line(&run["phase"])
            },
            short(&task["title"], 40),
            line(&task["repo"])
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
            let task: Value = client.get(&format!("/tasks/{id}")).await?;
            latest_run(&task)
                .and_then(|r| r["number"].as_i64())
                .context("the task has no runs")?
        }
    };
    if !follow {
        let mut after = 0;
        loop {
            let page: Value = client
                .get(&format!(
                    "/tasks/{id}/runs/{number}/events?after={after}&limit=1000"
                ))
                .await?;
            for event in page["events"].as_array().into_iter().flatten() {
                print_event(event);
            }
            match page["next_after"].as_i64() {
                Some(next) => after = next,
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
                let value: Value = serde_json::from_str(&data).unwrap_or_default();
                data.clear();
                if event_name == "end" {
                    println!(
                        "run {number} ended: {} ({})",
                        line(&value["status"]),
                        line(&value["end_reason"])
                    );
                    return Ok(ExitCode::SUCCESS);
                }
                print_event(&value);
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}

fn print_event(event: &Value) {
    let at = event["at"]
        .as_i64()
        .map(nightshift_core::format_timestamp)
        .unwrap_or_default();
    let time = at.get(11..19).unwrap_or("");
    let phase = if event["phase"].is_string() {
        line(&event["phase"])
    } else {
        "-".into()
    };
    println!(
        "{time} {phase:<10} {:<6} {}",
        line(&event["kind"]),
        lines(&event["message"])
    );
}

fn urlencode(text: &str) -> String {
    text.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}
