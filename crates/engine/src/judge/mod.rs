//! The judge: once a change passed its checks and the guard, one model request reviews it
//! against the task's instructions (scope creep, unrelated edits, instructions not carried out)
//! and answers a structured verdict with reasons. It runs in the engine, not the sandbox, with
//! the model endpoints and keys the agents' gateway uses. The prompt is `prompt.md`.

mod provider;

use std::time::Duration;

use nightshift_agent::AgentConfig;
use nightshift_core::{JudgeDecision, Usage};
use tokio_util::sync::CancellationToken;

use crate::EngineError;
use crate::gateway::{KeyHeader, Upstream};

const PROMPT: &str = include_str!("prompt.md");

/// Which API the judge is asked through.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum JudgeProvider {
    /// Anthropic Messages (`ANTHROPIC_BASE_URL`, `ANTHROPIC_API_KEY`).
    Anthropic,
    /// OpenAI Responses (`OPENAI_BASE_URL`, `OPENAI_API_KEY`).
    OpenAi,
}

impl JudgeProvider {
    pub fn as_str(self) -> &'static str {
        match self {
            JudgeProvider::Anthropic => "anthropic",
            JudgeProvider::OpenAi => "openai",
        }
    }
}

impl std::str::FromStr for JudgeProvider {
    type Err = EngineError;

    fn from_str(s: &str) -> Result<Self, EngineError> {
        match s.trim() {
            "anthropic" => Ok(JudgeProvider::Anthropic),
            "openai" => Ok(JudgeProvider::OpenAi),
            other => Err(EngineError::Invalid(format!(
                "judge provider {other:?} is not known: use \"anthropic\" or \"openai\""
            ))),
        }
    }
}

/// What a run does when the judge gives no verdict: no answer in time, an error from the
/// model's API, or an answer that is not the expected structure.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum OnJudgeError {
    /// As if the judge rejected the change: back to the agent while rounds are left (where the
    /// judge is asked again), then `judge_rejected`.
    #[default]
    Reject,
    /// The change goes on to be published; the verdict records that the judge did not answer.
    Approve,
    /// The run fails (`infrastructure`) at once.
    Fail,
}

impl OnJudgeError {
    pub fn as_str(self) -> &'static str {
        match self {
            OnJudgeError::Reject => "reject",
            OnJudgeError::Approve => "approve",
            OnJudgeError::Fail => "fail",
        }
    }
}

impl std::str::FromStr for OnJudgeError {
    type Err = EngineError;

    fn from_str(s: &str) -> Result<Self, EngineError> {
        match s.trim() {
            "reject" => Ok(OnJudgeError::Reject),
            "approve" => Ok(OnJudgeError::Approve),
            "fail" => Ok(OnJudgeError::Fail),
            other => Err(EngineError::Invalid(format!(
                "judge on_error = {other:?} is not known: use \"reject\" (the default), \
                 \"approve\" or \"fail\""
            ))),
        }
    }
}

/// The server's judge (`[judge]` in nightshift.toml). Projects switch it off and on.
#[derive(Debug, Clone, PartialEq)]
pub struct JudgeConfig {
    pub provider: JudgeProvider,
    pub model: String,
    /// How long the judge may take to answer.
    pub timeout: Duration,
    pub on_error: OnJudgeError,
    /// The diff is cut to this many bytes in the prompt; the stat always lists every file.
    pub max_diff_bytes: usize,
    pub max_output_tokens: u32,
    /// USD per million input and output tokens; `None`: the list price of the model's family,
    /// when known (see [`known_price`]).
    pub price: Option<(f64, f64)>,
}

impl JudgeConfig {
    pub fn new(provider: JudgeProvider, model: impl Into<String>) -> Self {
        JudgeConfig {
            provider,
            model: model.into(),
            timeout: Duration::from_secs(120),
            on_error: OnJudgeError::default(),
            max_diff_bytes: 256 * 1024,
            max_output_tokens: 2048,
            price: None,
        }
    }

    /// The price the judge's tokens are counted at, if one is known.
    pub fn price(&self) -> Option<(f64, f64)> {
        self.price.or_else(|| known_price(&self.model))
    }
}

/// List prices (USD per million input and output tokens) of model families, longest prefix
/// first. For a model not listed, set `[judge] price`.
pub fn known_price(model: &str) -> Option<(f64, f64)> {
    const PRICES: &[(&str, f64, f64)] = &[
        ("claude-opus-4-5", 5.0, 25.0),
        ("claude-opus-4", 15.0, 75.0),
        ("claude-sonnet-4", 3.0, 15.0),
        ("claude-3-7-sonnet", 3.0, 15.0),
        ("claude-3-5-sonnet", 3.0, 15.0),
        ("claude-haiku-4", 1.0, 5.0),
        ("claude-3-5-haiku", 0.8, 4.0),
        ("gpt-5-nano", 0.05, 0.4),
        ("gpt-5-mini", 0.25, 2.0),
        ("gpt-5", 1.25, 10.0),
        ("gpt-4.1-mini", 0.4, 1.6),
        ("gpt-4.1", 2.0, 8.0),
        ("gpt-4o-mini", 0.15, 0.6),
        ("gpt-4o", 2.5, 10.0),
        ("o4-mini", 1.1, 4.4),
    ];
    PRICES
        .iter()
        .find(|(prefix, _, _)| model.starts_with(prefix))
        .map(|(_, input, output)| (*input, *output))
}

/// What the judge is shown of the change.
pub(crate) struct Change<'a> {
    pub(crate) instructions: &'a str,
    pub(crate) summary: Option<&'a str>,
    pub(crate) diff_stat: &'a str,
    pub(crate) diff: &'a str,
}

/// One review: the judge's decision and reasons, or why there is none. Its tokens count either
/// way.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Review {
    pub(crate) verdict: Result<(JudgeDecision, Vec<String>), String>,
    pub(crate) usage: Usage,
}

/// Asks the judge about `change`; `None` when `stop` fired first.
pub(crate) async fn review(
    config: &JudgeConfig,
    agents: &AgentConfig,
    change: &Change<'_>,
    stop: &CancellationToken,
) -> Option<Review> {
    let no_verdict = |problem: String| Review {
        verdict: Err(problem),
        usage: Usage::default(),
    };
    let upstream = match endpoint(config.provider, agents) {
        Ok(upstream) => upstream,
        Err(e) => return Some(no_verdict(e.to_string())),
    };
    let prompt = prompt(change, config.max_diff_bytes);
    let (path, body) = provider::request(
        config.provider,
        &config.model,
        &prompt,
        config.max_output_tokens,
    );
    let asked = async {
        let client = upstream.client(config.timeout)?;
        let mut request = client.post(upstream.url(path)).json(&body);
        if config.provider == JudgeProvider::Anthropic {
            request = request.header("anthropic-version", "2023-06-01");
        }
        if let Some((name, value)) = upstream.key_header()? {
            request = request.header(name, value);
        }
        let response = request
            .send()
            .await
            .map_err(|e| describe(&e, config.timeout))?;
        let status = response.status();
        let text = response
            .text()
            .await
            .map_err(|e| describe(&e, config.timeout))?;
        if !status.is_success() {
            return Err(format!(
                "the model's API answered HTTP {}: {}",
                status.as_u16(),
                text.chars().take(300).collect::<String>()
            ));
        }
        serde_json::from_str::<serde_json::Value>(&text)
            .map_err(|e| format!("the answer is not JSON: {e}"))
    };
    let answered = tokio::select! {
        answered = asked => answered,
        _ = stop.cancelled() => return None,
    };
    Some(match answered {
        Ok(body) => {
            let answer = provider::answer(config.provider, &body);
            Review {
                usage: answer.usage(config.price()),
                verdict: answer.verdict,
            }
        }
        Err(problem) => no_verdict(problem),
    })
}

/// A request's failure in words: a timeout says how long was waited.
fn describe(e: &reqwest::Error, timeout: Duration) -> String {
    if e.is_timeout() {
        format!(
            "no answer within {}",
            nightshift_core::format_duration(timeout)
        )
    } else {
        // reqwest names the URL, never the headers: nothing secret in the message.
        format!("cannot reach the model's API: {e}")
    }
}

/// The provider's endpoint and key, as the agents' gateway has them.
fn endpoint(provider: JudgeProvider, agents: &AgentConfig) -> Result<Upstream, EngineError> {
    match provider {
        JudgeProvider::Anthropic => Upstream::parse(
            agents
                .anthropic_base_url
                .as_deref()
                .unwrap_or("https://api.anthropic.com"),
            agents.anthropic_api_key.clone(),
            KeyHeader::XApiKey,
        ),
        JudgeProvider::OpenAi => Upstream::parse(
            agents
                .openai_base_url
                .as_deref()
                .unwrap_or("https://api.openai.com/v1"),
            agents.openai_api_key.clone(),
            KeyHeader::Bearer,
        ),
    }
}

/// The prompt of `prompt.md` with the change in it; a diff over `max_diff_bytes` is cut.
fn prompt(change: &Change, max_diff_bytes: usize) -> String {
    let mut diff = change.diff.trim_end();
    let mut cut_note = String::new();
    if diff.len() > max_diff_bytes {
        let mut end = max_diff_bytes;
        while !diff.is_char_boundary(end) {
            end -= 1;
        }
        diff = &diff[..end];
        cut_note = format!(
            "\n\n(The diff is cut at {} KiB; the list above names every file changed.)",
            max_diff_bytes / 1024
        );
    }
    let longest = diff.split(|c| c != '`').map(str::len).max().unwrap_or(0);
    let fence = "`".repeat(longest.max(2) + 1);
    PROMPT
        .replace("{instructions}", change.instructions.trim())
        .replace(
            "{summary}",
            change
                .summary
                .map(str::trim)
                .filter(|s| !s.is_empty())
                .unwrap_or("(no summary)"),
        )
        .replace("{diff_stat}", change.diff_stat.trim_end())
        .replace("{diff}", &format!("{fence}diff\n{diff}\n{fence}{cut_note}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_prompt_holds_the_task_and_the_change_and_cuts_a_long_diff() {
        let change = Change {
            instructions: "Say goodbye",
            summary: Some("Changed greeting.txt."),
            diff_stat: " greeting.txt | 2 +-",
            diff: "-hello\n+goodbye\n``` not a fence\n",
        };
        let text = prompt(&change, 1024);
        assert!(text.contains("## The task\n\nSay goodbye"), "{text}");
        assert!(text.contains("Changed greeting.txt."));
        assert!(
            text.contains("````diff\n-hello\n+goodbye\n``` not a fence\n````"),
            "{text}"
        );
        let long = "+x\n".repeat(1000);
        let text = prompt(
            &Change {
                diff: &long,
                ..change
            },
            300,
        );
        assert!(
            text.contains("cut at 0 KiB") && !text.contains(&"+x\n".repeat(101)),
            "{text}"
        );
    }

    #[test]
    fn prices_are_known_by_model_family_and_configurable() {
        assert_eq!(known_price("claude-sonnet-4-5-20250929"), Some((3.0, 15.0)));
        assert_eq!(known_price("gpt-5-mini"), Some((0.25, 2.0)));
        assert_eq!(known_price("my-local-model"), None);
        let mut config = JudgeConfig::new(JudgeProvider::OpenAi, "my-local-model");
        assert_eq!(config.price(), None);
        config.price = Some((1.0, 2.0));
        assert_eq!(config.price(), Some((1.0, 2.0)));
        assert!("sometimes".parse::<OnJudgeError>().is_err());
        assert_eq!("fail".parse::<OnJudgeError>().unwrap(), OnJudgeError::Fail);
    }
}
