//! `nightshift template …` and `task create --template`: the client side of the template API.

use std::process::ExitCode;

use anyhow::{Context, bail};
use clap::{Args, Subcommand};
use nightshift_core::{ParamFromText, ParamType, TemplateParam, TemplateSpec};
use nightshift_server::contract::{
    FromTask, Instantiate, TaskView, TemplateDetail, TemplateList, TemplateQuery, TemplateView,
};
use serde_json::Value;

use crate::client::{Client, ClientArgs};
use crate::output::{line, lines};

#[derive(Subcommand)]
pub enum TemplateCommand {
    /// List the project's templates with their use and success rate.
    List {
        #[arg(long)]
        json: bool,
        #[command(flatten)]
        client: ClientArgs,
    },
    /// Show a template, its parameters and its usage history.
    Show {
        name: String,
        /// Which version (default: the latest).
        #[arg(long)]
        version: Option<i64>,
        #[arg(long)]
        json: bool,
        #[command(flatten)]
        client: ClientArgs,
    },
    /// Create a template from a JSON file or from flags.
    Create(CreateArgs),
    /// Save a succeeded task as a template; marked text becomes parameters.
    FromTask(FromTaskArgs),
}

#[derive(Args)]
pub struct CreateArgs {
    /// A JSON template spec (name, description, instructions, parameters, agent, budget, …).
    #[arg(long, conflicts_with_all = ["name", "instructions"])]
    file: Option<std::path::PathBuf>,
    #[arg(long, required_unless_present = "file")]
    name: Option<String>,
    #[arg(long, default_value = "")]
    description: String,
    /// Instructions with `{{name}}` placeholders.
    #[arg(long, required_unless_present = "file")]
    instructions: Option<String>,
    /// A parameter: `name[:type][=default]`, type one of string, enum, boolean, number.
    /// Without a default it is required.
    #[arg(long = "param", value_name = "NAME[:TYPE][=DEFAULT]")]
    params: Vec<String>,
    /// Tasks from this template may delete or skip tests, silence linters and edit the
    /// checks' configuration (what the guard finds is listed in the pull request).
    #[arg(long)]
    allow_test_changes: bool,
    /// How many minutes the change takes a person by hand: `nightshift insights` counts it as
    /// time saved for each merged pull request of a task from this template.
    #[arg(long, value_name = "MINUTES")]
    manual_effort: Option<u32>,
    #[arg(long)]
    json: bool,
    #[command(flatten)]
    client: ClientArgs,
}

#[derive(Args)]
pub struct FromTaskArgs {
    /// The succeeded task.
    task: i64,
    #[arg(long)]
    name: String,
    #[arg(long, default_value = "")]
    description: String,
    /// Text of the instructions that becomes a parameter: `TEXT=name[:type]`.
    #[arg(long = "param", value_name = "TEXT=NAME[:TYPE]")]
    params: Vec<String>,
    #[arg(long)]
    json: bool,
    #[command(flatten)]
    client: ClientArgs,
}

/// A task creation through a template, as `task create --template` gathered it.
pub struct FromTemplate {
    pub body: Instantiate,
    pub params: Vec<String>,
    pub wait: bool,
    pub json: bool,
    pub client: ClientArgs,
}

pub async fn run(command: TemplateCommand) -> anyhow::Result<ExitCode> {
    match command {
        TemplateCommand::List { json, client } => {
            let answer: TemplateList = Client::new(&client).get("/templates").await?;
            if json {
                println!("{}", serde_json::to_string_pretty(&answer.templates)?);
                return Ok(ExitCode::SUCCESS);
            }
            for t in &answer.templates {
                println!(
                    "{:<24} v{:<3} {:>4} uses  {:>5}  {}",
                    line(&t.template.spec.name),
                    t.template.version,
                    t.uses,
                    rate(t.success_rate),
                    line(&t.template.spec.description)
                );
            }
            Ok(ExitCode::SUCCESS)
        }
        TemplateCommand::Show {
            name,
            version,
            json,
            client,
        } => {
            let answer: TemplateDetail = Client::new(&client)
                .get_with(
                    &format!("/templates/{}", segment(&name)),
                    &TemplateQuery { version },
                )
                .await?;
            if json {
                println!("{}", serde_json::to_string_pretty(&answer)?);
            } else {
                print_show(&answer);
            }
            Ok(ExitCode::SUCCESS)
        }
        TemplateCommand::Create(args) => create(args).await,
        TemplateCommand::FromTask(args) => {
            let parameters = args
                .params
                .iter()
                .map(|p| parse_mark(p))
                .collect::<anyhow::Result<Vec<_>>>()?;
            let body = FromTask {
                task_id: args.task,
                name: args.name,
                description: args.description,
                parameters,
            };
            let t: TemplateView = Client::new(&args.client)
                .post("/templates/from-task", &body)
                .await?;
            print_created(&t, args.json);
            Ok(ExitCode::SUCCESS)
        }
    }
}

async fn create(args: CreateArgs) -> anyhow::Result<ExitCode> {
    let spec: TemplateSpec = match &args.file {
        Some(path) => {
            let text = std::fs::read_to_string(path)
                .with_context(|| format!("reading {}", path.display()))?;
            serde_json::from_str(&text)
                .with_context(|| format!("{} is not a template spec", path.display()))?
        }
        None => {
            let parameters = args
                .params
                .iter()
                .map(|p| parse_param(p))
                .collect::<anyhow::Result<Vec<_>>>()?;
            TemplateSpec {
                name: args.name.clone().unwrap_or_default(),
                description: args.description.clone(),
                instructions: args.instructions.clone().unwrap_or_default(),
                parameters,
                agent: None,
                checks: Vec::new(),
                budget: Default::default(),
                timeout_secs: None,
                allow_test_changes: args.allow_test_changes,
                manual_effort_minutes: args.manual_effort,
            }
        }
    };
    let t: TemplateView = Client::new(&args.client).post("/templates", &spec).await?;
    print_created(&t, args.json);
    Ok(ExitCode::SUCCESS)
}

/// `task create --template NAME --param k=v …`
pub async fn create_task(args: FromTemplate, template: &str) -> anyhow::Result<ExitCode> {
    let mut body = args.body;
    for p in &args.params {
        let (k, v) = p
            .split_once('=')
            .with_context(|| format!("--param {p:?}: use name=value"))?;
        body.params
            .insert(k.trim().to_string(), Value::String(v.to_string()));
    }
    let client = Client::new(&args.client);
    let task: TaskView = client
        .post(&format!("/templates/{}/tasks", segment(template)), &body)
        .await?;
    crate::task::finish(&client, task, args.wait, args.json).await
}

/// `name[:type][=default]`
fn parse_param(text: &str) -> anyhow::Result<TemplateParam> {
    let (head, default) = match text.split_once('=') {
        Some((h, d)) => (h, Some(d.to_string())),
        None => (text, None),
    };
    let (name, kind) = match head.split_once(':') {
        Some((n, k)) => (n, k.parse::<ParamType>()?),
        None => (head, ParamType::String),
    };
    if kind == ParamType::Enum {
        bail!(
            "--param {text:?}: enums need choices: create the template from a JSON file (--file)"
        );
    }
    Ok(TemplateParam {
        name: name.trim().to_string(),
        kind,
        description: None,
        required: default.is_none(),
        default,
        pattern: None,
        choices: Vec::new(),
    })
}

/// `TEXT=name[:type]`; the last `=` splits, so the text may contain `=`.
fn parse_mark(text: &str) -> anyhow::Result<ParamFromText> {
    let (literal, spec) = text
        .rsplit_once('=')
        .with_context(|| format!("--param {text:?}: use TEXT=name[:type]"))?;
    let (name, kind) = match spec.split_once(':') {
        Some((n, k)) => (n, k.parse::<ParamType>()?),
        None => (spec, ParamType::String),
    };
    Ok(ParamFromText {
        text: literal.to_string(),
        name: name.trim().to_string(),
        kind,
        pattern: None,
    })
}

fn segment(name: &str) -> String {
    name.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

fn rate(rate: Option<f64>) -> String {
    rate.map(|r| format!("{:.0}%", r * 100.0))
        .unwrap_or_else(|| "–".into())
}

fn print_created(t: &TemplateView, json: bool) {
    if json {
        println!("{}", serde_json::to_string_pretty(t).unwrap_or_default());
    } else {
        println!("template {} v{} saved", line(&t.spec.name), t.version);
    }
}

fn print_show(answer: &TemplateDetail) {
    let t = &answer.template;
    println!(
        "template {} v{} · {}",
        line(&t.spec.name),
        t.version,
        line(&t.spec.description)
    );
    println!(
        "  uses {} · success rate {}",
        answer.uses,
        rate(answer.success_rate)
    );
    println!("  instructions:");
    for text in lines(&t.spec.instructions).lines() {
        println!("    {text}");
    }
    for p in &t.spec.parameters {
        println!(
            "  param {} ({}{}){}",
            line(&p.name),
            p.kind,
            if p.required { ", required" } else { "" },
            p.default
                .as_deref()
                .map(|d| format!(" default {d:?}"))
                .unwrap_or_default()
        );
    }
    if !answer.usage.is_empty() {
        println!("  usage:");
    }
    for u in &answer.usage {
        println!(
            "    task {:>5}  v{}  {:<10} {} {}",
            u.task_id,
            u.version,
            u.run.status.as_str(),
            line(&u.title),
            line(u.run.pr_url.as_deref().unwrap_or_default())
        );
    }
}
