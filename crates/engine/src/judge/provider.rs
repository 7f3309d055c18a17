//! The judge's one request in each provider's API — Anthropic Messages with a forced tool call,
//! OpenAI Responses with a forced function call — and reading the verdict out of the answer.
//! Anything but the expected structure is a problem, never a verdict.

use nightshift_core::{JudgeDecision, Usage};
use serde_json::{Value, json};

use super::JudgeProvider;

/// The tool the judge must call, and what it must pass.
const TOOL: &str = "verdict";
const TOOL_DESCRIPTION: &str = "Record the review's decision and its reasons.";

fn schema() -> Value {
    json!({
        "type": "object",
        "properties": {
            "decision": {"type": "string", "enum": ["approve", "reject"]},
            "reasons": {"type": "array", "items": {"type": "string"}},
        },
        "required": ["decision", "reasons"],
        "additionalProperties": false,
    })
}

/// The path under the provider's base URL, and the request body.
pub(super) fn request(
    provider: JudgeProvider,
    model: &str,
    prompt: &str,
    max_tokens: u32,
) -> (&'static str, Value) {
    match provider {
        JudgeProvider::Anthropic => (
            "/v1/messages",
            json!({
                "model": model,
                "max_tokens": max_tokens,
                "messages": [{"role": "user", "content": prompt}],
                "tools": [{"name": TOOL, "description": TOOL_DESCRIPTION, "input_schema": schema()}],
                "tool_choice": {"type": "tool", "name": TOOL},
            }),
        ),
        JudgeProvider::OpenAi => (
            "/responses",
            json!({
                "model": model,
                "max_output_tokens": max_tokens,
                "input": prompt,
                "tools": [{"type": "function", "name": TOOL, "description": TOOL_DESCRIPTION, "parameters": schema(), "strict": true}],
                "tool_choice": {"type": "function", "name": TOOL},
                "store": false,
            }),
        ),
    }
}

/// What the judge answered: its decision and reasons, or why the answer is not a verdict. The
/// tokens it used count either way.
#[derive(Debug, Clone, PartialEq)]
pub(super) struct Answer {
    pub(super) verdict: Result<(JudgeDecision, Vec<String>), String>,
    pub(super) input_tokens: u64,
    pub(super) output_tokens: u64,
}

impl Answer {
    pub(super) fn usage(&self, price: Option<(f64, f64)>) -> Usage {
        Usage {
            input_tokens: self.input_tokens,
            output_tokens: self.output_tokens,
            cost_usd: price.map_or(0.0, |(input, output)| {
                (self.input_tokens as f64 * input + self.output_tokens as f64 * output) / 1e6
            }),
            turns: 0,
        }
    }
}

/// Reads the provider's answer.
pub(super) fn answer(provider: JudgeProvider, body: &Value) -> Answer {
    let tokens = |key: &str| body["usage"][key].as_u64().unwrap_or(0);
    let arguments = match provider {
        JudgeProvider::Anthropic => body["content"]
            .as_array()
            .and_then(|blocks| {
                blocks
                    .iter()
                    .find(|b| b["type"] == "tool_use" && b["name"] == TOOL)
            })
            .map(|b| b["input"].clone())
            .ok_or_else(|| format!("the answer has no `{TOOL}` tool call")),
        JudgeProvider::OpenAi => body["output"]
            .as_array()
            .and_then(|items| {
                items
                    .iter()
                    .find(|i| i["type"] == "function_call" && i["name"] == TOOL)
            })
            .ok_or_else(|| format!("the answer has no `{TOOL}` function call"))
            .and_then(|call| {
                let text = call["arguments"].as_str().unwrap_or_default();
                serde_json::from_str(text)
                    .map_err(|e| format!("the `{TOOL}` arguments are not JSON: {e}"))
            }),
    };
    Answer {
        verdict: arguments.and_then(|a| verdict(&a)),
        input_tokens: tokens("input_tokens"),
        output_tokens: tokens("output_tokens"),
    }
}

/// The decision and reasons, exactly as the schema says: a rejection must say why.
fn verdict(arguments: &Value) -> Result<(JudgeDecision, Vec<String>), String> {
    let decision = match arguments["decision"].as_str() {
        Some("approve") => JudgeDecision::Approve,
        Some("reject") => JudgeDecision::Reject,
        Some(other) => {
            return Err(format!(
                "the decision {other:?} is neither approve nor reject"
            ));
        }
        None => return Err("the verdict has no decision".to_string()),
    };
    let reasons = arguments["reasons"]
        .as_array()
        .ok_or("the verdict has no list of reasons")?
        .iter()
        .map(|r| {
            r.as_str()
                .map(|s| s.trim().to_string())
                .ok_or("a reason is not text")
        })
        .collect::<Result<Vec<String>, _>>()?
        .into_iter()
        .filter(|r| !r.is_empty())
        .collect::<Vec<_>>();
    if decision == JudgeDecision::Reject && reasons.is_empty() {
        return Err("the verdict rejects the change without a reason".to_string());
    }
    Ok((decision, reasons))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn anthropic(input: Value) -> Value {
        json!({"content": [{"type": "tool_use", "name": "verdict", "input": input}], "usage": {"input_tokens": 1200, "output_tokens": 80}})
    }

    #[test]
    fn a_verdict_is_read_from_either_provider() {
        let approve = answer(
            JudgeProvider::Anthropic,
            &anthropic(json!({"decision": "approve", "reasons": ["Does what was asked."]})),
        );
        assert_eq!(
            approve.verdict,
            Ok((
                JudgeDecision::Approve,
                vec!["Does what was asked.".to_string()]
            ))
        );
        assert_eq!((approve.input_tokens, approve.output_tokens), (1200, 80));
        let openai = json!({"output": [
            {"type": "reasoning"},
            {"type": "function_call", "name": "verdict", "arguments": "{\"decision\":\"reject\",\"reasons\":[\"README.md: unrelated.\"]}"}
        ], "usage": {"input_tokens": 10, "output_tokens": 2}});
        assert_eq!(
            answer(JudgeProvider::OpenAi, &openai).verdict,
            Ok((
                JudgeDecision::Reject,
                vec!["README.md: unrelated.".to_string()]
            ))
        );
    }

    /// Nothing that is not exactly a verdict becomes one, least of all an approval.
    #[test]
    fn a_malformed_answer_is_a_problem_never_a_verdict() {
        let cases = [
            json!({"content": [{"type": "text", "text": "Looks good to me, approve."}]}),
            anthropic(json!({"decision": "Approve", "reasons": []})),
            anthropic(json!({"decision": "maybe", "reasons": []})),
            anthropic(json!({"reasons": ["fine"]})),
            anthropic(json!({"decision": "approve", "reasons": "fine"})),
            anthropic(json!({"decision": "approve", "reasons": [1]})),
            anthropic(json!({"decision": "reject", "reasons": [" "]})),
            json!({"content": [{"type": "tool_use", "name": "approve", "input": {"decision": "approve", "reasons": []}}]}),
            json!({"error": {"message": "overloaded"}}),
        ];
        for body in cases {
            let read = answer(JudgeProvider::Anthropic, &body);
            assert!(read.verdict.is_err(), "{body} read as {:?}", read.verdict);
        }
        let bad_json = json!({"output": [{"type": "function_call", "name": "verdict", "arguments": "{\"decision\": \"approve\""}]});
        assert!(answer(JudgeProvider::OpenAi, &bad_json).verdict.is_err());
    }

    #[test]
    fn usage_is_priced_per_million_tokens() {
        let a = Answer {
            verdict: Err(String::new()),
            input_tokens: 2_000_000,
            output_tokens: 100_000,
        };
        let usage = a.usage(Some((3.0, 15.0)));
        assert!((usage.cost_usd - 7.5).abs() < 1e-9, "{usage:?}");
        assert_eq!(a.usage(None).cost_usd, 0.0);
    }
}
