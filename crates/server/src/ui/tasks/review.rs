//! The review part of a task's page: what the test-tampering guard found on the change, and
//! the judge's verdicts with their reasons, round by round.

use maud::{Markup, html};
use nightshift_core::{GeneratedChange, JudgeVerdict};

/// The section, or nothing when there was nothing to review (no findings, no judge).
pub(super) fn review_html(change: &GeneratedChange, allowed: bool) -> Markup {
    if change.guard.is_empty() && change.verdicts.is_empty() {
        return html! {};
    }
    html! {
        section aria-labelledby="review-h" id="review" {
            h2 id="review-h" { "Review" }
            @if !change.guard.is_empty() {
                h3 { "Test-tampering guard" }
                p {
                    @if allowed {
                        "The task allows changes to its tests and checks; the pull request lists them:"
                    } @else {
                        "The change weakens the tests or the checks:"
                    }
                }
                ul class="guard" {
                    @for f in &change.guard {
                        li class={ "g-" (f.kind) } {
                            code { (f.path) ":" (f.line) } " " (f.kind.label()) ": " (f.detail)
                        }
                    }
                }
            }
            @if !change.verdicts.is_empty() {
                h3 { "Judge" }
                ol class="verdicts" { @for v in &change.verdicts { (verdict(v)) } }
            }
        }
    }
}

fn verdict(v: &JudgeVerdict) -> Markup {
    html! {
        li class={ "v-" (v.decision) } data-round=(v.round) {
            "Round " (v.round) ": "
            strong { @if v.approved() { "approved" } @else { "rejected" } }
            @if let Some(problem) = &v.problem {
                " " small { "by policy: no verdict (" (problem) ")" }
            }
            " "
            small {
                (v.provider) " " (v.model) " · " (v.usage.input_tokens) " in / "
                (v.usage.output_tokens) " out tokens · $" (format!("{:.4}", v.usage.cost_usd))
            }
            ul { @for r in &v.reasons { li { (r) } } }
        }
    }
}
