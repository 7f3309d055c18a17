//! `nightshift insights`: a project's outcomes over a period, from the insights API.

use std::process::ExitCode;

use clap::Args;
use nightshift_server::contract::{InsightsQuery, InsightsView};

use crate::client::{Client, ClientArgs};

#[derive(Args)]
pub struct InsightsArgs {
    /// Start of the period: an RFC 3339 timestamp or a date (`2026-11-01`); 30 days before
    /// `--until` by default.
    #[arg(long)]
    since: Option<String>,
    /// End of the period (not included); now by default.
    #[arg(long)]
    until: Option<String>,
    /// Only the tasks made from this template.
    #[arg(long)]
    template: Option<String>,
    #[arg(long)]
    json: bool,
    #[command(flatten)]
    client: ClientArgs,
}

pub async fn run(args: InsightsArgs) -> anyhow::Result<ExitCode> {
    let client = Client::new(&args.client);
    let query = InsightsQuery {
        since: args.since,
        until: args.until,
        template: args.template,
    };
    let view: InsightsView = client.get_with("/insights", &query).await?;
    if args.json {
        println!("{}", serde_json::to_string_pretty(&view)?);
    } else {
        print!("{}", render(&view));
    }
    Ok(ExitCode::SUCCESS)
}

/// The insights as people read them in a terminal.
fn render(view: &InsightsView) -> String {
    let percent = |rate: Option<f64>| rate.map_or("-".into(), |r| format!("{:.0}%", r * 100.0));
    let usd = |v: Option<f64>| v.map_or("-".into(), |v| format!("${v:.2}"));
    let time = |secs: Option<u64>| {
        secs.map_or("-".into(), |s| {
            nightshift_core::format_duration(std::time::Duration::from_secs(s))
        })
    };
    let (runs, prs, cost) = (&view.runs, &view.pull_requests, &view.cost);
    let reasons: Vec<String> = runs
        .by_end_reason
        .iter()
        .map(|r| format!("{} {}", r.runs, r.end_reason))
        .collect();
    let mut text = format!(
        "project {}{} from {} to {}\n\
         tasks created        {}\n\
         runs ended           {}{}\n\
         retries              {} ({} succeeded)\n\
         pull requests        {} opened, {} merged, {} closed (merge rate {})\n\
         time to PR           median {}, p90 {}, {} within 1 hour\n\
         cost                 ${:.2} total, {} per run, {} per merged PR ({} merged)\n\
         time saved           {}\n",
        crate::output::line(&view.project),
        match &view.template {
            Some(t) => format!(", template {}", crate::output::line(t)),
            None => String::new(),
        },
        view.since,
        view.until,
        view.tasks_created,
        runs.ended,
        match reasons.is_empty() {
            true => String::new(),
            false => format!(": {}", reasons.join(", ")),
        },
        runs.retries,
        percent(runs.retry_success_rate),
        prs.opened,
        prs.merged,
        prs.closed,
        percent(prs.merge_rate),
        time(prs.median_time_to_pr_secs),
        time(prs.p90_time_to_pr_secs),
        percent(prs.within_hour_rate),
        cost.total_usd,
        usd(cost.per_run_usd),
        usd(cost.per_merged_pr_usd),
        cost.merged_prs,
        match view.time_saved.merged_prs {
            0 => "- (no merged pull request of a template that states its manual effort)".into(),
            n => format!(
                "{} by {n} merged PRs",
                nightshift_core::format_work(view.time_saved.minutes)
            ),
        },
    );
    if !view.templates.is_empty() {
        text.push_str("\nby template\n");
        for t in &view.templates {
            text.push_str(&format!(
                "  {:<24} {} tasks, {} runs ({} succeeded), {} PRs ({} merged), saved {}\n",
                crate::output::line(&t.template),
                t.tasks_created,
                t.runs_ended,
                percent(t.success_rate),
                t.prs_opened,
                t.prs_merged,
                match t.time_saved_minutes {
                    0 => "-".to_string(),
                    m => nightshift_core::format_work(m),
                },
            ));
        }
    }
    text
}
