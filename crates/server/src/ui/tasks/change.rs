//! A run's result on its page: the checks table, the review and the diff, file by file.

use maud::{Markup, html};
use nightshift_core::{CheckResult, GeneratedChange};

/// The checks table, Nightshift's review (see `review`), and the diff, per file.
pub(super) fn result_html(change: Option<&GeneratedChange>, allowed: bool) -> Markup {
    let Some(change) = change else {
        return html! { section { h2 { "Change" } p { "No change yet." } } };
    };
    html! {
        section aria-labelledby="checks-h" {
            h2 id="checks-h" { "Checks" }
            @if change.checks.is_empty() {
                p {
                    "No checks ran"
                    @if !change.checks_source.is_empty() { " (" (change.checks_source) ")" }
                    "."
                }
            } @else {
                div class="table-wrap" {
                    table class="checks" {
                        caption { "Checks from " (change.checks_source) }
                        thead {
                            tr {
                                @for heading in ["Stage", "Command", "Outcome", "Exit", "Time", "Round"] {
                                    th scope="col" { (heading) }
                                }
                            }
                        }
                        tbody { @for check in &change.checks { (check_row(check)) } }
                    }
                }
            }
        }
        (super::review::review_html(change, allowed))
        section aria-labelledby="diff-h" {
            h2 id="diff-h" { "Change" }
            @if let Some(summary) = &change.summary { p class="summary" { (summary) } }
            pre class="stat" { (change.diff_stat) }
            (diff_html(&change.diff))
        }
    }
}

fn check_row(c: &CheckResult) -> Markup {
    html! {
        tr class={ "c-" (c.outcome) } {
            td { (c.stage) }
            td {
                code { (c.command) }
                @if !c.output.trim().is_empty() {
                    details { summary { "output" } pre { (c.output) } }
                }
            }
            td {
                (c.outcome)
                @if c.failed_on_base {
                    " "
                    small class="pre-existing"
                        title="it already failed on the unchanged base commit, before the agent" {
                        "failed on the base"
                    }
                }
            }
            td {
                @match (c.exit_code, c.signal) {
                    (Some(code), _) => (code),
                    (None, Some(signal)) => { "signal " (signal) }
                    (None, None) => {}
                }
            }
            td { (c.duration_ms) " ms" }
            td { (c.round) }
        }
    }
}

/// One file of a unified diff: its path (from its `diff --git` line) and its lines.
struct DiffFile<'a> {
    path: Option<&'a str>,
    lines: Vec<&'a str>,
}

/// A unified diff split into files; lines before the first header make a file of their own.
fn diff_files(diff: &str) -> Vec<DiffFile<'_>> {
    let mut files: Vec<DiffFile<'_>> = Vec::new();
    for line in diff.lines() {
        if let Some(rest) = line.strip_prefix("diff --git ") {
            let path = rest.rsplit_once(" b/").map(|(_, p)| p).unwrap_or(rest);
            files.push(DiffFile {
                path: Some(path),
                lines: Vec::new(),
            });
            continue;
        }
        match files.last_mut() {
            Some(file) => file.lines.push(line),
            None => files.push(DiffFile {
                path: None,
                lines: vec![line],
            }),
        }
    }
    files
}

/// How a diff line is shown: metadata, added, removed, hunk header or context.
fn line_class(line: &str) -> &'static str {
    if line.starts_with("+++") || line.starts_with("---") || line.starts_with("index ") {
        "meta"
    } else if line.starts_with('+') {
        "add"
    } else if line.starts_with('-') {
        "del"
    } else if line.starts_with("@@") {
        "hunk"
    } else {
        "ctx"
    }
}

/// A unified diff split into files, each with a header and its lines marked added or removed.
pub(crate) fn diff_html(diff: &str) -> Markup {
    if diff.trim().is_empty() {
        return html! { p { "The diff is empty." } };
    }
    html! {
        div class="diff" {
            @for file in diff_files(diff) {
                section class="file" {
                    @if let Some(path) = file.path { h3 class="file-header" { (path) } }
                    pre {
                        @for line in &file.lines {
                            span class=(line_class(line)) { (line) } "\n"
                        }
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn diff_has_a_header_per_file_and_escapes() {
        let html = diff_html(
            "diff --git a/a.txt b/a.txt\n--- a/a.txt\n+++ b/a.txt\n@@ -1 +1 @@\n-old\n+<b>new</b>\ndiff --git a/b b/b\n+x\n",
        )
        .into_string();
        assert_eq!(html.matches("file-header").count(), 2);
        assert!(html.contains("&lt;b&gt;new&lt;/b&gt;"));
        assert!(html.contains("<span class=\"add\">+x</span>"));
    }
}
