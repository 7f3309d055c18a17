//! `[judge]` in the server's configuration file: the model that reviews each change against its
//! task once the checks and the guard pass, and what a run does when it gives no verdict.

use anyhow::Context;
use nightshift_core::parse_duration;

/// The judge: which provider and model, how long it may take, and what a run does when it
/// gives no verdict.
#[derive(Debug, Default, serde::Deserialize)]
#[serde(default, deny_unknown_fields)]
pub(crate) struct JudgeSettings {
    /// `anthropic` (the default) or `openai`: the endpoint and key are the agents'.
    provider: Option<String>,
    model: Option<String>,
    /// e.g. `2m` (the default).
    timeout: Option<String>,
    /// `reject` (the default), `approve` or `fail`.
    on_error: Option<String>,
    /// The diff is cut to this many KiB in the judge's prompt (256).
    max_diff_kb: Option<usize>,
    /// USD per million tokens, when the model's list price is not known to Nightshift.
    price: Option<JudgePrice>,
}

#[derive(Debug, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct JudgePrice {
    input: f64,
    output: f64,
}

impl JudgeSettings {
    pub(crate) fn engine_config(&self) -> anyhow::Result<nightshift_engine::JudgeConfig> {
        let provider = self.provider.as_deref().unwrap_or("anthropic").parse()?;
        let model = self
            .model
            .as_deref()
            .map(str::trim)
            .filter(|m| !m.is_empty())
            .context("model is missing: name the model that reviews changes, e.g. model = \"claude-sonnet-4-5\"")?;
        let mut judge = nightshift_engine::JudgeConfig::new(provider, model);
        if let Some(timeout) = &self.timeout {
            judge.timeout = parse_duration(timeout).map_err(|e| anyhow::anyhow!("timeout: {e}"))?;
        }
        if let Some(on_error) = &self.on_error {
            judge.on_error = on_error.parse()?;
        }
        if let Some(kb) = self.max_diff_kb {
            anyhow::ensure!(kb > 0, "max_diff_kb must be above 0");
            judge.max_diff_bytes = kb * 1024;
        }
        if let Some(price) = &self.price {
            anyhow::ensure!(
                price.input >= 0.0
                    && price.output >= 0.0
                    && price.input.is_finite()
                    && price.output.is_finite(),
                "price: input and output are USD per million tokens, 0 or more"
            );
            judge.price = Some((price.input, price.output));
        }
        Ok(judge)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings(text: &str) -> JudgeSettings {
        toml::from_str(text).unwrap()
    }

    #[test]
    fn every_setting_is_read() {
        let judge = settings(
            "provider = \"openai\"\nmodel = \"gpt-5-mini\"\ntimeout = \"45s\"\n\
             on_error = \"approve\"\nmax_diff_kb = 64\nprice = { input = 0.5, output = 4 }\n",
        )
        .engine_config()
        .unwrap();
        assert_eq!(judge.provider, nightshift_engine::JudgeProvider::OpenAi);
        assert_eq!(judge.model, "gpt-5-mini");
        assert_eq!(judge.timeout, std::time::Duration::from_secs(45));
        assert_eq!(judge.on_error, nightshift_engine::OnJudgeError::Approve);
        assert_eq!(judge.max_diff_bytes, 64 * 1024);
        assert_eq!(judge.price, Some((0.5, 4.0)));
        let defaults = settings("model = \"claude-sonnet-4-5\"\n")
            .engine_config()
            .unwrap();
        assert_eq!(
            defaults.provider,
            nightshift_engine::JudgeProvider::Anthropic
        );
        assert_eq!(defaults.on_error, nightshift_engine::OnJudgeError::Reject);
    }

    #[test]
    fn bad_settings_are_named() {
        for (text, named) in [
            ("provider = \"anthropic\"\n", "model is missing"),
            (
                "model = \"m\"\non_error = \"shrug\"\n",
                "on_error = \"shrug\"",
            ),
            (
                "model = \"m\"\nprovider = \"gemini\"\n",
                "\"gemini\" is not known",
            ),
            ("model = \"m\"\ntimeout = \"soon\"\n", "timeout"),
            (
                "model = \"m\"\nmax_diff_kb = 0\n",
                "max_diff_kb must be above 0",
            ),
            (
                "model = \"m\"\nprice = { input = -1, output = 1 }\n",
                "USD per million tokens",
            ),
        ] {
            let err = format!("{:#}", settings(text).engine_config().unwrap_err());
            assert!(err.contains(named), "{text}: {err}");
        }
    }
}
