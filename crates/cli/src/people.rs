//! `nightshift token …` and `nightshift project …`: API tokens, projects and their members.

use std::process::ExitCode;

use clap::Subcommand;
use nightshift_server::contract::{
    CreateProject, CreateToken, MemberList, MemberSet, ProjectDetail, ProjectList, ProjectView,
    SetRole, TokenCreated, TokenList,
};
use reqwest::Method;

use crate::client::{Client, ClientArgs};
use crate::output::{line, or_dash};

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

pub async fn token(cmd: TokenCommand) -> anyhow::Result<ExitCode> {
    match cmd {
        TokenCommand::Create { name, client } => {
            let answer: TokenCreated = Client::new(&client)
                .root(Method::POST, "/tokens", Some(&CreateToken { name }))
                .await?;
            eprintln!("token {} created; it is shown only now:", answer.info.id);
            println!("{}", line(&answer.token));
        }
        TokenCommand::List { client } => {
            let answer: TokenList = Client::new(&client)
                .root::<(), _>(Method::GET, "/tokens", None)
                .await?;
            println!(
                "{:<6} {:<20} {:<12} {:<26} REVOKED",
                "ID", "NAME", "PREFIX", "LAST USED"
            );
            for t in &answer.tokens {
                println!(
                    "{:<6} {:<20} {:<12} {:<26} {}",
                    t.id,
                    line(&t.name),
                    line(&t.prefix),
                    or_dash(t.last_used_at.as_deref()),
                    or_dash(t.revoked_at.as_deref())
                );
            }
        }
        TokenCommand::Revoke { id, client } => {
            Client::new(&client)
                .root::<(), ()>(Method::DELETE, &format!("/tokens/{id}"), None)
                .await?;
            println!("token {id} revoked");
        }
    }
    Ok(ExitCode::SUCCESS)
}

pub async fn project(cmd: ProjectCommand) -> anyhow::Result<ExitCode> {
    match cmd {
        ProjectCommand::List { client } => {
            let answer: ProjectList = Client::new(&client)
                .root::<(), _>(Method::GET, "/projects", None)
                .await?;
            for p in &answer.projects {
                println!("{:<30} {}", line(&p.name), p.role);
            }
        }
        ProjectCommand::Create { name, client } => {
            let answer: ProjectView = Client::new(&client)
                .root(Method::POST, "/projects", Some(&CreateProject { name }))
                .await?;
            println!("project {} created; you are its admin", line(&answer.name));
        }
        ProjectCommand::Show { client } => {
            let client = Client::new(&client);
            let detail: ProjectDetail = client.get("").await?;
            let members: MemberList = client.get("/members").await?;
            let (project, settings) = (&detail.project, &detail.settings);
            println!("project   {} (you: {})", line(&project.name), project.role);
            println!("runs/user {}", settings.max_active_runs_per_user);
            println!("timeout   {}", or_dash(settings.max_timeout.as_deref()));
            println!(
                "budget    {} USD/month",
                settings
                    .monthly_budget_usd
                    .map_or_else(|| "-".into(), |usd| usd.to_string())
            );
            println!("judge     {}", if settings.judge { "on" } else { "off" });
            println!(
                "/nightshift comments {}",
                if settings.comment_commands {
                    "on"
                } else {
                    "off"
                }
            );
            println!("rebase    {}", settings.rebase);
            println!(
                "fix CI    {} automatic attempts per pull request",
                settings.auto_fix_ci_attempts
            );
            for m in &members.members {
                println!("member    {:<24} {}", line(&m.user), m.role);
            }
        }
        ProjectCommand::AddMember { user, role, client } => {
            let client = Client::new(&client);
            let answer: MemberSet = client
                .root(
                    Method::PUT,
                    &format!("/projects/{}/members/{user}", client.project()),
                    Some(&SetRole {
                        role: role.parse()?,
                    }),
                )
                .await?;
            println!("{} is now {}", line(&answer.user), answer.role);
        }
    }
    Ok(ExitCode::SUCCESS)
}
