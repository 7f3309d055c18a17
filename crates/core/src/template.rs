//! Templates: reusable instructions with typed `{{parameters}}`, validated before any task is
//! made from them. Values are inserted as plain text in one pass: nothing in a value is ever
//! read as template syntax, so a value containing `{{other}}` stays literally that.

use std::collections::BTreeMap;

use regex::Regex;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::run::string_enum;
use crate::{AgentSpec, Budget, CoreError, Millis};

string_enum!(
    /// The type of a template parameter; the UI builds its form field from it.
    ParamType, "parameter type" {
        String => "string",
        Enum => "enum",
        Boolean => "boolean",
        Number => "number",
    }
);

/// One typed parameter of a template.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct TemplateParam {
    pub name: String,
    #[serde(rename = "type")]
    pub kind: ParamType,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    #[serde(default)]
    pub required: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub default: Option<String>,
    /// A regular expression (Rust `regex` syntax) a string value must match as a whole.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pattern: Option<String>,
    /// The allowed values of an `enum`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub choices: Vec<String>,
}

/// What a template says, without its identity: what people write and edit.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct TemplateSpec {
    pub name: String,
    #[serde(default)]
    pub description: String,
    pub instructions: String,
    #[serde(default)]
    pub parameters: Vec<TemplateParam>,
    /// The agent tasks get unless the request names one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub agent: Option<AgentSpec>,
    /// Check commands run instead of the repository's format, lint and test commands.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub checks: Vec<String>,
    #[serde(default)]
    pub budget: Budget,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timeout_secs: Option<u64>,
    /// Tasks may change their tests and checks unless the request says otherwise (see
    /// `NewTask::allow_test_changes`).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub allow_test_changes: bool,
    /// How many minutes the change takes a person by hand: each merged pull request of a task
    /// made from this template counts as that much time saved in the project's insights.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub manual_effort_minutes: Option<u32>,
}

/// One stored version of a template. Editing makes version N+1; tasks name the version they used.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Template {
    pub id: i64,
    pub project_id: i64,
    pub version: i64,
    #[serde(flatten)]
    pub spec: TemplateSpec,
    pub created_by: String,
    /// When this version was written.
    pub created_at: Millis,
}

/// Validated parameter values, every one a string, ready to render.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct TemplateParams(BTreeMap<String, String>);

const MAX_TEMPLATE_NAME: usize = 100;
/// 500 working hours: a change that takes longer by hand is not one task.
const MAX_MANUAL_EFFORT_MINUTES: u32 = 30_000;

fn valid_param_name(name: &str) -> bool {
    let mut chars = name.chars();
    chars
        .next()
        .is_some_and(|c| c.is_ascii_lowercase() || c == '_')
        && chars.all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')
        && name.len() <= 64
}

/// A template name goes into URLs, paths and CLI arguments: keep it to a slug-like word that
/// starts with a letter or digit, so `.`, `..` and `.hidden` are never names.
pub fn valid_template_name(name: &str) -> bool {
    name.starts_with(|c: char| c.is_ascii_alphanumeric())
        && name.len() <= MAX_TEMPLATE_NAME
        && !name.contains("..")
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_' || c == '.')
}

fn invalid_template(reason: impl Into<String>) -> CoreError {
    CoreError::InvalidTemplate {
        reason: reason.into(),
    }
}

fn invalid_param(name: &str, reason: impl Into<String>) -> CoreError {
    CoreError::InvalidParameter {
        name: name.to_string(),
        reason: reason.into(),
    }
}

/// The names of the `{{name}}` placeholders in `text`, in order of appearance.
pub fn placeholders(text: &str) -> Vec<String> {
    let mut out = Vec::new();
    for piece in scan(text) {
        if let Piece::Placeholder(name) = piece
            && !out.iter().any(|n| n == name)
        {
            out.push(name.to_string());
        }
    }
    out
}

enum Piece<'a> {
    Text(&'a str),
    Placeholder(&'a str),
}

/// Splits `text` into literal text and `{{ name }}` placeholders. Anything that does not look
/// like a placeholder of a valid name stays literal text.
fn scan(text: &str) -> Vec<Piece<'_>> {
    let mut out = Vec::new();
    let mut rest = text;
    while let Some(start) = rest.find("{{") {
        let after = &rest[start + 2..];
        match after.find("}}") {
            Some(end) if valid_param_name(after[..end].trim()) => {
                out.push(Piece::Text(&rest[..start]));
                out.push(Piece::Placeholder(after[..end].trim()));
                rest = &after[end + 2..];
            }
            _ => {
                out.push(Piece::Text(&rest[..start + 2]));
                rest = after;
            }
        }
    }
    out.push(Piece::Text(rest));
    out
}

impl TemplateParam {
    /// Checks one value against the parameter's type, pattern and choices; returns it normalised.
    fn check(&self, value: &str, pattern: Option<&Regex>) -> Result<String, CoreError> {
        if let Err(CoreError::ControlCharacter { reason, .. }) = crate::single_line("value", value)
        {
            return Err(invalid_param(&self.name, reason));
        }
        match self.kind {
            ParamType::String => {
                if let Some(re) = pattern
                    && !re.is_match(value)
                {
                    return Err(invalid_param(
                        &self.name,
                        format!(
                            "{value:?} does not match the pattern {}",
                            self.pattern.as_deref().unwrap_or_default()
                        ),
                    ));
                }
                Ok(value.to_string())
            }
            ParamType::Enum => {
                if self.choices.iter().any(|c| c == value) {
                    Ok(value.to_string())
                } else {
                    Err(invalid_param(
                        &self.name,
                        format!("{value:?} is not one of {}", self.choices.join(", ")),
                    ))
                }
            }
            ParamType::Boolean => match value {
                "true" | "on" | "yes" | "1" => Ok("true".into()),
                "false" | "off" | "no" | "0" => Ok("false".into()),
                _ => Err(invalid_param(
                    &self.name,
                    format!("{value:?} is not a boolean: use true or false"),
                )),
            },
            ParamType::Number => match value.trim().parse::<f64>() {
                Ok(n) if n.is_finite() => Ok(value.trim().to_string()),
                _ => Err(invalid_param(
                    &self.name,
                    format!("{value:?} is not a number"),
                )),
            },
        }
    }

    /// The pattern compiled to match the whole value, not a part of it.
    fn compiled_pattern(&self) -> Result<Option<Regex>, CoreError> {
        self.pattern
            .as_deref()
            .filter(|p| !p.is_empty())
            .map(|p| {
                Regex::new(&format!("^(?:{p})$")).map_err(|e| {
                    invalid_template(format!("parameter {}: invalid pattern: {e}", self.name))
                })
            })
            .transpose()
    }
}

impl TemplateSpec {
    /// Refuses a template that could never render: bad names, undeclared placeholders,
    /// enums without choices, defaults that fail their own parameter, broken patterns.
    pub fn validate(&self) -> Result<(), CoreError> {
        if !valid_template_name(&self.name) {
            return Err(invalid_template(format!(
                "name {:?}: use letters, digits, '-', '_' or '.', starting with a letter or digit, \
                 without '..', at most {MAX_TEMPLATE_NAME} characters",
                self.name
            )));
        }
        crate::Instructions::parse(&self.instructions)?;
        crate::multi_line("description", &self.description)?;
        self.budget.validate()?;
        if let Some(minutes) = self.manual_effort_minutes
            && !(1..=MAX_MANUAL_EFFORT_MINUTES).contains(&minutes)
        {
            return Err(invalid_template(format!(
                "manual_effort_minutes {minutes}: say how many minutes the change takes a person \
                 by hand, from 1 to {MAX_MANUAL_EFFORT_MINUTES} (500 hours), or leave \
                 it out"
            )));
        }
        for check in &self.checks {
            crate::single_line("check command", check)?;
        }
        let mut seen = Vec::new();
        for param in &self.parameters {
            let field = format!("parameter {}", param.name);
            crate::single_line(&field, param.description.as_deref().unwrap_or_default())?;
            for choice in &param.choices {
                crate::single_line(&field, choice)?;
            }
            if !valid_param_name(&param.name) {
                return Err(invalid_template(format!(
                    "parameter name {:?}: use lowercase letters, digits and '_', starting with a letter",
                    param.name
                )));
            }
            if seen.contains(&param.name.as_str()) {
                return Err(invalid_template(format!(
                    "parameter {} is declared twice",
                    param.name
                )));
            }
            seen.push(param.name.as_str());
            if param.kind == ParamType::Enum && param.choices.is_empty() {
                return Err(invalid_template(format!(
                    "parameter {} is an enum without choices",
                    param.name
                )));
            }
            let pattern = param.compiled_pattern()?;
            if let Some(default) = &param.default {
                param
                    .check(default, pattern.as_ref())
                    .map_err(|e| invalid_template(format!("default of {e}")))?;
            }
        }
        for name in placeholders(&self.instructions) {
            if !seen.contains(&name.as_str()) {
                return Err(invalid_template(format!(
                    "the instructions use {{{{{name}}}}} but no parameter {name} is declared"
                )));
            }
        }
        Ok(())
    }

    /// Validates `values` against every parameter (type, pattern, choices, required) and fills
    /// in defaults. The first invalid parameter is named in the error.
    pub fn bind(&self, values: &BTreeMap<String, String>) -> Result<TemplateParams, CoreError> {
        for name in values.keys() {
            if !self.parameters.iter().any(|p| &p.name == name) {
                return Err(invalid_param(name, "this template has no such parameter"));
            }
        }
        let mut out = BTreeMap::new();
        for param in &self.parameters {
            let given = values.get(&param.name).filter(|v| !v.is_empty());
            let value = match (given, &param.default) {
                (Some(v), _) => v.clone(),
                (None, Some(d)) => d.clone(),
                // An unchecked checkbox sends nothing: an optional boolean is then false.
                (None, None) if param.kind == ParamType::Boolean && !param.required => {
                    "false".into()
                }
                (None, None) if param.required => {
                    return Err(invalid_param(&param.name, "a value is required"));
                }
                (None, None) => String::new(),
            };
            let value = if value.is_empty() && !param.required {
                value
            } else {
                param.check(&value, param.compiled_pattern()?.as_ref())?
            };
            out.insert(param.name.clone(), value);
        }
        Ok(TemplateParams(out))
    }

    /// The instructions with every placeholder replaced by its value, as text.
    pub fn render(&self, params: &TemplateParams) -> String {
        let mut out = String::with_capacity(self.instructions.len());
        for piece in scan(&self.instructions) {
            match piece {
                Piece::Text(t) => out.push_str(t),
                Piece::Placeholder(name) => match params.0.get(name) {
                    Some(v) => out.push_str(v),
                    None => {
                        out.push_str("{{");
                        out.push_str(name);
                        out.push_str("}}");
                    }
                },
            }
        }
        out
    }
}

impl TemplateParams {
    pub fn as_map(&self) -> &BTreeMap<String, String> {
        &self.0
    }
}

/// A part of a task's instructions that becomes a parameter when the task is saved as a template.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct ParamFromText {
    /// The literal text in the instructions; every occurrence becomes `{{name}}`.
    pub text: String,
    pub name: String,
    #[serde(rename = "type", default = "default_param_type")]
    pub kind: ParamType,
    /// For a string: a pattern values must match.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pattern: Option<String>,
}

fn default_param_type() -> ParamType {
    ParamType::String
}

/// Turns instructions into template instructions: each marked text becomes a parameter whose
/// default is that text. Refuses text that does not occur.
pub fn parameterise(
    instructions: &str,
    marks: &[ParamFromText],
) -> Result<(String, Vec<TemplateParam>), CoreError> {
    let mut text = instructions.to_string();
    let mut params = Vec::new();
    for mark in marks {
        if mark.text.is_empty() || !text.contains(&mark.text) {
            return Err(invalid_param(
                &mark.name,
                format!(
                    "the text {:?} does not occur in the instructions",
                    mark.text
                ),
            ));
        }
        text = text.replace(&mark.text, &format!("{{{{{}}}}}", mark.name));
        params.push(TemplateParam {
            name: mark.name.clone(),
            kind: mark.kind,
            description: None,
            required: true,
            default: (mark.kind != ParamType::Enum).then(|| mark.text.clone()),
            pattern: mark.pattern.clone().filter(|p| !p.is_empty()),
            choices: if mark.kind == ParamType::Enum {
                vec![mark.text.clone()]
            } else {
                Vec::new()
            },
        });
    }
    Ok((text, params))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;

    fn spec() -> TemplateSpec {
        TemplateSpec {
            name: "bump".into(),
            description: String::new(),
            instructions: "Bump {{ crate }} to {{version}}. {{dry}} {{n}} {{not a param}}".into(),
            parameters: vec![
                TemplateParam {
                    name: "crate".into(),
                    kind: ParamType::Enum,
                    description: None,
                    required: true,
                    default: None,
                    pattern: None,
                    choices: vec!["serde".into(), "tokio".into()],
                },
                TemplateParam {
                    name: "version".into(),
                    kind: ParamType::String,
                    description: None,
                    required: true,
                    default: None,
                    pattern: Some(r"\d+\.\d+".into()),
                    choices: vec![],
                },
                TemplateParam {
                    name: "dry".into(),
                    kind: ParamType::Boolean,
                    description: None,
                    required: false,
                    default: None,
                    pattern: None,
                    choices: vec![],
                },
                TemplateParam {
                    name: "n".into(),
                    kind: ParamType::Number,
                    description: None,
                    required: false,
                    default: Some("3".into()),
                    pattern: None,
                    choices: vec![],
                },
            ],
            agent: None,
            checks: vec![],
            budget: Budget::default(),
            timeout_secs: None,
            allow_test_changes: false,
            manual_effort_minutes: None,
        }
    }

    fn values(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn renders_values_as_text_only() {
        let spec = spec();
        spec.validate().unwrap();
        let params = spec
            .bind(&values(&[("crate", "serde"), ("version", "1.2")]))
            .unwrap();
        assert_eq!(
            spec.render(&params),
            "Bump serde to 1.2. false 3 {{not a param}}"
        );
        // A value that looks like a placeholder is not expanded again.
        let mut s = spec.clone();
        s.parameters[1].pattern = None;
        let params = s
            .bind(&values(&[("crate", "tokio"), ("version", "{{crate}}")]))
            .unwrap();
        assert!(s.render(&params).starts_with("Bump tokio to {{crate}}."));
    }

    #[test]
    fn refuses_invalid_values_naming_the_parameter() {
        let spec = spec();
        let err = spec
            .bind(&values(&[("crate", "serde"), ("version", "1.2; rm -rf")]))
            .unwrap_err();
        assert!(matches!(err, CoreError::InvalidParameter { ref name, .. } if name == "version"));
        let err = spec.bind(&values(&[("crate", "rand")])).unwrap_err();
        assert!(matches!(err, CoreError::InvalidParameter { ref name, .. } if name == "crate"));
        let err = spec.bind(&values(&[("crate", "serde")])).unwrap_err();
        assert!(matches!(err, CoreError::InvalidParameter { ref name, .. } if name == "version"));
        let err = spec
            .bind(&values(&[
                ("crate", "serde"),
                ("version", "1.0"),
                ("n", "x"),
            ]))
            .unwrap_err();
        assert!(matches!(err, CoreError::InvalidParameter { ref name, .. } if name == "n"));
        let err = spec
            .bind(&values(&[
                ("crate", "serde"),
                ("version", "1.0"),
                ("zzz", "1"),
            ]))
            .unwrap_err();
        assert!(matches!(err, CoreError::InvalidParameter { ref name, .. } if name == "zzz"));
    }

    #[test]
    fn refuses_undeclared_placeholders_and_bad_defaults() {
        let mut s = spec();
        s.instructions.push_str(" {{missing}}");
        assert!(s.validate().is_err());
        let mut s = spec();
        s.parameters[3].default = Some("many".into());
        assert!(s.validate().is_err());
        let mut s = spec();
        s.parameters[1].pattern = Some("(".into());
        assert!(s.validate().is_err());
    }

    #[test]
    fn names_are_never_paths_and_values_never_escapes() {
        for ok in ["bump-deps", "v1.2", "a_b"] {
            assert!(valid_template_name(ok), "{ok}");
        }
        for bad in ["", ".", "..", ".hidden", "a..b", "a/b", "-x"] {
            assert!(!valid_template_name(bad), "{bad}");
        }
        let spec = spec();
        let err = spec
            .bind(&values(&[("crate", "serde"), ("version", "1.2\u{1b}[2J")]))
            .unwrap_err();
        assert!(matches!(err, CoreError::InvalidParameter { ref name, .. } if name == "version"));
        let mut s = spec.clone();
        s.parameters[0].choices.push("evil\u{1b}]0;x\u{7}".into());
        assert!(matches!(
            s.validate(),
            Err(CoreError::ControlCharacter { .. })
        ));
    }

    #[test]
    fn parameterise_marks_text() {
        let (text, params) = parameterise(
            "Rename foo to bar in foo.rs",
            &[ParamFromText {
                text: "foo".into(),
                name: "old".into(),
                kind: ParamType::String,
                pattern: None,
            }],
        )
        .unwrap();
        assert_eq!(text, "Rename {{old}} to bar in {{old}}.rs");
        assert_eq!(params[0].default.as_deref(), Some("foo"));
        assert!(
            parameterise(
                "x",
                &[ParamFromText {
                    text: "y".into(),
                    name: "y".into(),
                    kind: ParamType::String,
                    pattern: None,
                }]
            )
            .is_err()
        );
    }
}
