//! `nightshift token …` and `nightshift project …`: API tokens, projects and their members.

use std::process::ExitCode;

use clap::Subcommand;
use reqwest::Method;
use serde_json::{Value, json};

use crate::client::{Client, ClientArgs};

#[derive(Subcommand)]
pub enum TokenCommand {
    /// Create an API token for yourself; it is printed once.
    Create {
        /// What the token is for, e.g. `laptop` or `ci`.
        name: String,
        #[command(flatten)]
        client: ClientArgs,
    },
    /// List your tokens (never the tokens themselves).
    List {
        #[command(flatten)]
        client: ClientArgs,
    },
    /// Revoke one of your tokens by id.
    Revoke {
        id: i64,
        #[command(flatten)]
        client: ClientArgs,
    },
}

#[derive(Subcommand)]
pub enum ProjectCommand {
    /// List the projects you can see, with your role.
    List {
        #[command(flatten)]
        client: ClientArgs,
    },
    /// Create a project; you become its admin.
    Create {
        name: String,
        #[command(flatten)]
        client: ClientArgs,
    },
    /// Show the project (--project) with its limits and members.
    Show {
        #[command(flatten)]
        client: ClientArgs,
    },
    /// Add a member to the project (--project) or change their role.
    AddMember {
        user: String,
        /// admin, editor or viewer.
        #[arg(long, default_value = "viewer")]
        role: String,
        #[command(flatten)]
        client: ClientArgs,
    },
}

fn text(v: &Value, key: &str) -> String {
    crate::output::text(v.get(key).unwrap_or(&Value::Null))
}

pub async fn token(cmd: TokenCommand) -> anyhow::Result<ExitCode> {
    match cmd {
        TokenCommand::Create { name, client } => {
            let answer: Value = Client::new(&client)
                .root(Method::POST, "/tokens", Some(&json!({"name": name})))
                .await?;
            eprintln!(
                "token {} created; it is shown only now:",
                text(&answer, "id")
            );
            println!("{}", text(&answer, "token"));
        }
        TokenCommand::List { client } => {
            let answer: Value = Client::new(&client)
                .root::<(), _>(Method::GET, "/tokens", None)
                .await?;
            println!(
                "{:<6} {:<20} {:<12} {:<26} REVOKED",
                "ID", "NAME", "PREFIX", "LAST USED"
            );
            for t in answer["tokens"].as_array().into_iter().flatten() {
                println!(
                    "{:<6} {:<20} {:<12} {:<26} {}",
                    text(t, "id"),
                    text(t, "name"),
                    text(t, "prefix"),
                    text(t, "last_used_at"),
                    text(t, "revoked_at")
                );
            }
        }
        TokenCommand::Revoke { id, client } => {
            let _: Value = Client::new(&client)
                .root::<(), _>(Method::DELETE, &format!("/tokens/{id}"), None)
                .await?;
            println!("token {id} revoked");
        }
    }
    Ok(ExitCode::SUCCESS)
}

pub async fn project(cmd: ProjectCommand) -> anyhow::Result<ExitCode> {
    match cmd {
        ProjectCommand::List { client } => {
            let answer: Value = Client::new(&client)
                .root::<(), _>(Method::GET, "/projects", None)
                .await?;
            for p in answer["projects"].as_array().into_iter().flatten() {
                println!("{:<30} {}", text(p, "name"), text(p, "role"));
            }
        }
        ProjectCommand::Create { name, client } => {
            let answer: Value = Client::new(&client)
                .root(Method::POST, "/projects", Some(&json!({"name": name})))
                .await?;
            println!(
                "project {} created; you are its admin",
                text(&answer, "name")
            );
        }
        ProjectCommand::Show { client } => {
            let client = Client::new(&client);
            let project: Value = client.get("").await?;
            let members: Value = client.get("/members").await?;
            println!(
                "project   {} (you: {})",
                text(&project, "name"),
                text(&project, "role")
            );
            let settings = &project["settings"];
            println!("runs/user {}", text(settings, "max_active_runs_per_user"));
            println!("timeout   {}", text(settings, "max_timeout"));
            println!(
                "budget    {} USD/month",
                text(settings, "monthly_budget_usd")
            );
            println!("judge     {}", text(settings, "judge"));
            for m in members["members"].as_array().into_iter().flatten() {
                println!("member    {:<24} {}", text(m, "user"), text(m, "role"));
            }
        }
        ProjectCommand::AddMember { user, role, client } => {
            let client = Client::new(&client);
            let answer: Value = client
                .root(
                    Method::PUT,
                    &format!("/projects/{}/members/{user}", client.project()),
                    Some(&json!({"role": role})),
                )
                .await?;
            println!("{} is now {}", text(&answer, "user"), text(&answer, "role"));
        }
    }
    Ok(ExitCode::SUCCESS)
}
