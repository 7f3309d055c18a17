//! What the CLI prints of the server's data: text other people typed (titles, instructions,
//! names) and what agents printed is escaped, so it can never drive the terminal.

use nightshift_core::printable;
use serde_json::Value;

/// One line of text: control characters, newlines included, shown escaped (`\u{1b}`).
pub(crate) fn line(value: &Value) -> String {
    printable(value.as_str().unwrap_or_default(), false).into_owned()
}

/// Text of many lines: newlines and tabs kept, every other control character escaped.
pub(crate) fn lines(value: &Value) -> String {
    printable(value.as_str().unwrap_or_default(), true).into_owned()
}

/// At most `chars` characters of one line, cut only after escaping: a shortened title never
/// ends in half a terminal escape.
pub(crate) fn short(value: &Value, chars: usize) -> String {
    line(value).chars().take(chars).collect()
}

/// Any value as one line: strings escaped, other values as JSON, a missing one as `-`.
pub(crate) fn text(value: &Value) -> String {
    match value {
        Value::String(_) => line(value),
        Value::Null => "-".into(),
        other => other.to_string(),
    }
}
