//! What failed in a pull request's CI, as the forge tells it: each failing job or check with
//! its conclusion, link and output (log tail, annotations, status description), trimmed so a
//! handful fit in an agent's prompt.

use serde::{Deserialize, Serialize};

/// How much of one job's output is kept.
pub const MAX_FAILURE_BYTES: usize = 8 * 1024;
/// How much of a log is read from the forge at most (its tail).
pub(crate) const MAX_LOG_READ_BYTES: usize = 512 * 1024;
/// How many failing jobs get their output read; the rest are named only.
pub(crate) const MAX_FAILURES_WITH_OUTPUT: usize = 5;

/// The CI failures of a pull request's head commit.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct CiReport {
    /// The commit the failures are about.
    pub head_sha: String,
    pub failures: Vec<CiFailure>,
}

/// One failing job, check run or commit status.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CiFailure {
    /// The job, check or status context name, e.g. `test (ubuntu-latest)`.
    pub name: String,
    /// The forge's word for how it ended: `failure`, `timed_out`, `error`, `failed`, …
    pub conclusion: String,
    /// Where a person reads the whole output.
    pub url: Option<String>,
    /// The output, trimmed with [`trim_log`]: error-looking lines, then the tail.
    pub text: String,
}

/// Words that mark a line worth keeping from anywhere in a log.
const ERROR_MARKERS: &[&str] = &[
    "error",
    "fail",
    "panic",
    "exception",
    "fatal",
    "assert",
    "traceback",
    "denied",
];

/// A log cut to at most `max_bytes` for a prompt: colour codes, CI timestamps and section
/// markers removed; then up to a third for error-looking lines from before the tail, the rest
/// for the tail itself (where a job says why it stopped).
pub fn trim_log(log: &str, max_bytes: usize) -> String {
    let lines: Vec<String> = log
        .lines()
        .map(clean_line)
        .filter(|l| !l.trim().is_empty())
        .collect();
    let total: usize = lines.iter().map(|l| l.len() + 1).sum();
    if total <= max_bytes {
        return lines.join("\n");
    }
    let tail_budget = max_bytes - max_bytes / 3;
    let mut tail_start = lines.len();
    let mut used = 0;
    while tail_start > 0 && used + lines[tail_start - 1].len() < tail_budget {
        tail_start -= 1;
        used += lines[tail_start].len() + 1;
    }
    let error_budget = max_bytes.saturating_sub(used + 64);
    let mut errors: Vec<&str> = Vec::new();
    let mut error_bytes = 0;
    for line in lines[..tail_start].iter().rev() {
        let lower = line.to_lowercase();
        if ERROR_MARKERS.iter().any(|m| lower.contains(m)) {
            let line = cut_line(line, 400);
            if error_bytes + line.len() + 1 > error_budget {
                break;
            }
            error_bytes += line.len() + 1;
            errors.push(line);
        }
    }
    errors.reverse();
    let skipped = tail_start - errors.len();
    let mut out = String::with_capacity(max_bytes);
    for line in &errors {
        out.push_str(line);
        out.push('\n');
    }
    out.push_str(&format!("… {skipped} lines left out …\n"));
    if tail_start == lines.len() {
        // Not even the last line fits: keep its end.
        let last = lines.last().map(String::as_str).unwrap_or_default();
        out.push_str(tail_chars(last, tail_budget));
    } else {
        out.push_str(&lines[tail_start..].join("\n"));
    }
    out
}

/// A log line without ANSI colour codes, a leading CI timestamp (GitHub Actions prefixes every
/// line with one) or GitLab's `section_start:…` markers.
fn clean_line(line: &str) -> String {
    let mut line = line.to_string();
    // `section_start:<epoch>:<name>` runs up to a carriage return; the text follows it.
    while let Some(start) = line
        .find("section_start:")
        .or_else(|| line.find("section_end:"))
    {
        let end = line[start..]
            .find('\r')
            .map_or(line.len(), |i| start + i + 1);
        line.replace_range(start..end, "");
    }
    let mut out = String::with_capacity(line.len());
    let mut chars = line.chars().peekable();
    while let Some(c) = chars.next() {
        if c == '\u{1b}' {
            if chars.peek() == Some(&'[') {
                chars.next();
                // Parameters and intermediates up to the final byte of the sequence.
                for c in chars.by_ref() {
                    if ('@'..='~').contains(&c) {
                        break;
                    }
                }
            }
            continue;
        }
        if c != '\r' {
            out.push(c);
        }
    }
    let bytes = out.as_bytes();
    let stamped = bytes.len() > 28 && bytes[4] == b'-' && bytes[10] == b'T';
    if stamped
        && let Some((stamp, rest)) = out.split_once(' ')
        && stamp.ends_with('Z')
    {
        return rest.to_string();
    }
    out
}

fn cut_line(line: &str, max: usize) -> &str {
    if line.len() <= max {
        return line;
    }
    let mut end = max;
    while !line.is_char_boundary(end) {
        end -= 1;
    }
    &line[..end]
}

fn tail_chars(text: &str, max: usize) -> &str {
    if text.len() <= max {
        return text;
    }
    let mut start = text.len() - max;
    while !text.is_char_boundary(start) {
        start += 1;
    }
    &text[start..]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn short_logs_are_kept_whole_and_cleaned() {
        let log = "2024-05-01T10:00:00.1234567Z \u{1b}[31merror\u{1b}[0m: boom\r\n\nok\n";
        assert_eq!(trim_log(log, 1000), "error: boom\nok");
    }

    #[test]
    fn long_logs_keep_errors_and_the_tail_within_bounds() {
        let mut log = String::new();
        for i in 0..5000 {
            log.push_str(&format!("compiling crate number {i}\n"));
            if i == 100 {
                log.push_str("error[E0425]: cannot find value `x` in this scope\n");
            }
        }
        log.push_str("test result: FAILED. 1 passed; 1 failed\n");
        let trimmed = trim_log(&log, 2048);
        assert!(trimmed.len() <= 2048, "{}", trimmed.len());
        assert!(trimmed.contains("error[E0425]"), "{trimmed}");
        assert!(trimmed.ends_with("test result: FAILED. 1 passed; 1 failed"));
        assert!(trimmed.contains("lines left out"));
        assert!(!trimmed.contains("crate number 100\n"));
    }

    #[test]
    fn gitlab_section_markers_are_dropped() {
        let log = "section_start:1700000000:step_script\r\u{1b}[0KExecuting step\nsection_end:1700000001:step_script\r\u{1b}[0K\n";
        assert_eq!(trim_log(log, 1000), "Executing step");
    }
}
