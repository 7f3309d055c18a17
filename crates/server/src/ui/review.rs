//! The review part of a task's page: what the test-tampering guard found on the change, and
//! the judge's verdicts with their reasons, round by round.

use nightshift_core::GeneratedChange;

use super::esc;

/// The section, or nothing when there was nothing to review (no findings, no judge).
pub(super) fn review_html(change: &GeneratedChange, allowed: bool) -> String {
    if change.guard.is_empty() && change.verdicts.is_empty() {
        return String::new();
    }
    let mut out = String::from(
        "<section aria-labelledby=\"review-h\" id=\"review\"><h2 id=\"review-h\">Review</h2>",
    );
    if !change.guard.is_empty() {
        out.push_str(&format!(
            "<h3>Test-tampering guard</h3><p>{}</p><ul class=\"guard\">",
            if allowed {
                "The task allows changes to its tests and checks; the pull request lists them:"
            } else {
                "The change weakens the tests or the checks:"
            }
        ));
        for f in &change.guard {
            out.push_str(&format!(
                "<li class=\"g-{kind}\"><code>{path}:{line}</code> {label}: {detail}</li>",
                kind = f.kind,
                path = esc(&f.path),
                line = f.line,
                label = f.kind.label(),
                detail = esc(&f.detail),
            ));
        }
        out.push_str("</ul>");
    }
    if !change.verdicts.is_empty() {
        out.push_str("<h3>Judge</h3><ol class=\"verdicts\">");
        for v in &change.verdicts {
            let decision = if v.approved() { "approved" } else { "rejected" };
            let problem = v
                .problem
                .as_deref()
                .map(|p| format!(" <small>by policy: no verdict ({})</small>", esc(p)))
                .unwrap_or_default();
            let reasons: String = v
                .reasons
                .iter()
                .map(|r| format!("<li>{}</li>", esc(r)))
                .collect();
            out.push_str(&format!(
                "<li class=\"v-{d}\" data-round=\"{round}\">Round {round}: <strong>{decision}</strong>{problem} \
<small>{provider} {model} · {tin} in / {tout} out tokens · ${cost:.4}</small><ul>{reasons}</ul></li>",
                d = v.decision,
                round = v.round,
                provider = esc(&v.provider),
                model = esc(&v.model),
                tin = v.usage.input_tokens,
                tout = v.usage.output_tokens,
                cost = v.usage.cost_usd,
            ));
        }
        out.push_str("</ol>");
    }
    out.push_str("</section>");
    out
}
