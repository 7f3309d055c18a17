//! The REST API under `/api/v1`. One route table says, for every route, who may call it,
//! what it is for and which audit action it records; the router, the guard, the OpenAPI
//! document and the tests all read it, so they cannot disagree.

mod audit;
mod credentials;
pub(crate) mod insights;
mod node;
pub(crate) mod notifications;
mod projects;
mod route;
mod stream;
pub(crate) mod tasks;
pub(crate) mod templates;
pub(crate) mod tokens;
mod webhooks;
mod work;

use axum::Router;
use axum::http::Method;
use axum::routing::{MethodRouter, delete, get, patch, post, put};
use nightshift_core::Role;

pub use node::serve_metrics;
pub use route::{Answer, RouteSpec, Schema};
use route::{change, spec};

use crate::AppState;
use crate::auth::Access;
use crate::contract as c;

const VIEWER: Access = Access::Project(Role::Viewer);
const EDITOR: Access = Access::Project(Role::Editor);
const ADMIN: Access = Access::Project(Role::Admin);

/// Every route with its handler. Templates and the web UI add theirs here.
fn table() -> Vec<(RouteSpec, MethodRouter<AppState>)> {
    use Method as M;
    let mut table = vec![
        (
            spec(
                M::GET,
                "/health",
                Access::Public,
                "Liveness, version, whether runs are confined (sandbox, confined, detail), and the \
                 toolchains runs can use (name, manager, version, from)",
            )
            .answers::<c::Health>(),
            get(node::health),
        ),
        (
            spec(
                M::GET,
                "/openapi.json",
                Access::Public,
                "This API's OpenAPI 3.1 document",
            )
            .answers::<crate::openapi::OpenApiDocument>(),
            get(crate::openapi::document),
        ),
        (
            change(
                M::POST,
                "/session",
                Access::Public,
                "session.create",
                "Sign in with an API token: sets an HttpOnly, SameSite=Strict session cookie",
                Some(r#"{"token":"nst_…"}"#),
            )
            .body::<c::SignIn>()
            .creates::<c::SignedIn>(),
            post(tokens::sign_in),
        ),
        (
            change(
                M::DELETE,
                "/session",
                Access::SignedIn,
                "session.delete",
                "Sign out: ends the session",
                None,
            )
            .empty(),
            delete(tokens::sign_out),
        ),
        (
            spec(
                M::GET,
                "/me",
                Access::SignedIn,
                "The signed-in user and their projects",
            )
            .answers::<c::Me>(),
            get(tokens::me),
        ),
        (
            spec(
                M::GET,
                "/tokens",
                Access::SignedIn,
                "Your API tokens (never the tokens themselves)",
            )
            .answers::<c::TokenList>(),
            get(tokens::list),
        ),
        (
            change(
                M::POST,
                "/tokens",
                Access::SignedIn,
                "token.create",
                "Create an API token; the answer shows it once",
                Some(r#"{"name":"laptop"}"#),
            )
            .body::<c::CreateToken>()
            .creates::<c::TokenCreated>(),
            post(tokens::create),
        ),
        (
            change(
                M::DELETE,
                "/tokens/{id}",
                Access::SignedIn,
                "token.revoke",
                "Revoke one of your API tokens",
                None,
            )
            .empty(),
            delete(tokens::revoke),
        ),
        (
            spec(
                M::GET,
                "/metrics",
                Access::ServerAdmin,
                "Metrics in Prometheus' text format: runs by status and end reason, the queue's \
                 depth and waits, phase durations, forge requests and retries, model tokens and cost",
            )
            .text("text/plain"),
            get(node::metrics),
        ),
        (
            spec(M::GET, "/users", Access::ServerAdmin, "All users")
            .answers::<c::UserList>(),
            get(tokens::users),
        ),
        (
            spec(
                M::GET,
                "/audit",
                Access::ServerAdmin,
                "Audit events outside any project: tokens, users, sign-in, forged proxy headers",
            )
            .query::<c::AuditQuery>()
            .answers::<c::AuditPage>(),
            get(audit::list_server),
        ),
        (
            change(
                M::POST,
                "/users",
                Access::ServerAdmin,
                "user.create",
                "Create a user and its first API token (shown once)",
                Some(r#"{"name":"bob","email":"bob@example.com"}"#),
            )
            .body::<c::CreateUser>()
            .creates::<c::UserCreated>(),
            post(tokens::create_user),
        ),
        (
            spec(
                M::GET,
                "/projects",
                Access::SignedIn,
                "Projects you can see, with your role",
            )
            .answers::<c::ProjectList>(),
            get(projects::list),
        ),
        (
            change(
                M::POST,
                "/projects",
                Access::SignedIn,
                "project.create",
                "Create a project; you become its admin",
                Some(r#"{"name":"payments"}"#),
            )
            .body::<c::CreateProject>()
            .creates::<c::ProjectView>(),
            post(projects::create),
        ),
        (
            spec(
                M::GET,
                "/projects/{project}",
                VIEWER,
                "A project, its settings and your role",
            )
            .answers::<c::ProjectDetail>(),
            get(projects::show),
        ),
        (
            change(
                M::PATCH,
                "/projects/{project}",
                ADMIN,
                "project.update",
                "Change the project's limits: runs per user, timeout, monthly budget; whether the judge reviews its changes",
                Some(
                    r#"{"max_active_runs_per_user":2,"max_timeout":"30m","monthly_budget_usd":100,"judge":true}"#,
                ),
            )
            .body::<c::UpdateProject>()
            .answers::<c::ProjectUpdated>(),
            patch(projects::update),
        ),
        (
            spec(
                M::GET,
                "/projects/{project}/members",
                VIEWER,
                "Members and their roles",
            )
            .answers::<c::MemberList>(),
            get(projects::members),
        ),
        (
            change(
                M::PUT,
                "/projects/{project}/members/{user}",
                ADMIN,
                "member.set",
                "Add a member or change their role",
                Some(r#"{"role":"viewer"}"#),
            )
            .body::<c::SetRole>()
            .answers::<c::MemberSet>(),
            put(projects::set_member),
        ),
        (
            change(
                M::DELETE,
                "/projects/{project}/members/{user}",
                ADMIN,
                "member.remove",
                "Remove a member",
                None,
            )
            .empty(),
            delete(projects::remove_member),
        ),
        (
            spec(
                M::GET,
                "/projects/{project}/groups",
                ADMIN,
                "Proxy groups bound to project roles",
            )
            .answers::<c::GroupList>(),
            get(projects::groups),
        ),
        (
            change(
                M::PUT,
                "/projects/{project}/groups/{group}",
                ADMIN,
                "group.set",
                "Give everyone in a proxy group a role",
                Some(r#"{"role":"editor"}"#),
            )
            .body::<c::SetRole>()
            .answers::<c::GroupBinding>(),
            put(projects::set_group),
        ),
        (
            change(
                M::DELETE,
                "/projects/{project}/groups/{group}",
                ADMIN,
                "group.remove",
                "Unbind a proxy group",
                None,
            )
            .empty(),
            delete(projects::remove_group),
        ),
        (
            spec(
                M::GET,
                "/projects/{project}/credentials",
                ADMIN,
                "Stored forge credentials (fingerprints only)",
            )
            .answers::<c::CredentialList>(),
            get(credentials::list),
        ),
        (
            change(
                M::PUT,
                "/projects/{project}/credentials/{host}",
                ADMIN,
                "credential.set",
                "Store the forge credential for a host, sealed; it is never shown again",
                Some(r#"{"kind":"github_token","token":"ghp_…"}"#),
            )
            .body::<nightshift_store::ForgeCredential>()
            .answers::<c::CredentialView>(),
            put(credentials::set),
        ),
        (
            change(
                M::DELETE,
                "/projects/{project}/credentials/{host}",
                ADMIN,
                "credential.delete",
                "Delete a stored credential",
                None,
            )
            .empty(),
            delete(credentials::remove),
        ),
        (
            spec(
                M::GET,
                "/projects/{project}/audit",
                ADMIN,
                "The audit trail, filtered by actor, action and time",
            )
            .query::<c::AuditQuery>()
            .answers::<c::AuditPage>(),
            get(audit::list),
        ),
        (
            spec(
                M::GET,
                "/projects/{project}/usage",
                VIEWER,
                "Spend and tokens per calendar month",
            )
            .query::<c::UsageQuery>()
            .answers::<c::MonthUsage>(),
            get(audit::usage),
        ),
        (
            spec(
                M::GET,
                "/projects/{project}/insights",
                VIEWER,
                "Outcomes over a period: tasks, runs by end reason, retries, pull requests \
                 merged and time to them, cost per run and per merged pull request",
            )
            .query::<c::InsightsQuery>()
            .answers::<c::InsightsView>(),
            get(insights::insights),
        ),
        (
            spec(
                M::POST,
                "/webhooks/{forge}",
                Access::Forge,
                "A webhook delivery from GitHub, GitLab or Gitea/Forgejo, proven with the \
                 server's webhook secret. One about a pull request Nightshift follows (merged, \
                 closed, pushed to, CI finished, commented on) makes it poll that pull request \
                 now; the poll records what the forge says. Anything else is taken and ignored",
            )
            .body::<c::WebhookPayload>()
            .example(
                r#"{"action":"closed","number":7,"pull_request":{"number":7,"merged":true},"repository":{"full_name":"acme/widget"}}"#,
            )
            .accepts::<c::WebhookAccepted>(),
            post(webhooks::deliver),
        ),
    ];
    table.extend(work::routes());
    table
}

/// The route table without handlers.
pub fn route_table() -> Vec<RouteSpec> {
    table().into_iter().map(|(spec, _)| spec).collect()
}

/// The spec of the route axum matched (`template` with or without the `/api/v1` prefix).
pub(crate) fn spec_for(method: &Method, template: &str) -> Option<&'static RouteSpec> {
    static TABLE: std::sync::OnceLock<Vec<RouteSpec>> = std::sync::OnceLock::new();
    let template = template.strip_prefix("/api/v1").unwrap_or(template);
    // axum answers HEAD with the GET handler.
    let method = if method == Method::HEAD {
        &Method::GET
    } else {
        method
    };
    TABLE
        .get_or_init(route_table)
        .iter()
        .find(|s| s.method == *method && s.path == template)
}

pub fn routes() -> Router<AppState> {
    table()
        .into_iter()
        .fold(Router::new(), |router, (spec, handler)| {
            router.route(spec.path, handler)
        })
}

#[cfg(test)]
mod tests {
    #[test]
    fn every_route_declares_its_answer_and_every_body_its_type_and_an_example() {
        for spec in super::route_table() {
            let route = format!("{} {}", spec.method, spec.path);
            assert!(spec.answer.is_some(), "{route} declares no answer");
            assert_eq!(
                spec.body.is_some(),
                spec.example.is_some(),
                "{route}: a body has a type and an example"
            );
        }
    }
}
