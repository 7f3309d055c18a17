//! Text from outside that ends up on terminals and pages: control characters (terminal
//! escapes among them) are refused where people type it, and escaped where it is printed.

use std::borrow::Cow;

use crate::CoreError;

/// Controls that reorder what is shown (bidirectional overrides and isolates): text that reads
/// one way and is stored another.
fn reorders(c: char) -> bool {
    matches!(c, '\u{202A}'..='\u{202E}' | '\u{2066}'..='\u{2069}')
}

/// The first character that has no place in one line of text, with its position.
fn first_control(text: &str, allow: &[char]) -> Option<(usize, char)> {
    text.chars()
        .enumerate()
        .find(|(_, c)| (c.is_control() || reorders(*c)) && !allow.contains(c))
}

fn refuse(field: &str, (at, c): (usize, char), what: &str) -> CoreError {
    CoreError::ControlCharacter {
        field: field.to_string(),
        reason: format!(
            "character {} is the control character U+{:04X}; {what}",
            at + 1,
            c as u32
        ),
    }
}

/// Refuses control characters of any kind (newlines and terminal escapes included) in a
/// one-line field: a title, a name, a parameter value.
pub fn single_line(field: &str, text: &str) -> Result<(), CoreError> {
    match first_control(text, &[]) {
        Some(found) => Err(refuse(field, found, "use one line of plain text")),
        None => Ok(()),
    }
}

/// Refuses control characters other than newlines and tabs in text of many lines
/// (instructions, descriptions).
pub fn multi_line(field: &str, text: &str) -> Result<(), CoreError> {
    match first_control(text, &['\n', '\r', '\t']) {
        Some(found) => Err(refuse(
            field,
            found,
            "use plain text (newlines and tabs are fine, terminal escapes are not)",
        )),
        None => Ok(()),
    }
}

/// `text` safe to print on a terminal: every control character (newlines too unless
/// `keep_lines`) is shown as an escape such as `\u{1b}` instead of acting on the terminal.
pub fn printable(text: &str, keep_lines: bool) -> Cow<'_, str> {
    let keep = |c: char| keep_lines && (c == '\n' || c == '\t');
    if !text
        .chars()
        .any(|c| (c.is_control() || reorders(c)) && !keep(c))
    {
        return Cow::Borrowed(text);
    }
    let mut out = String::with_capacity(text.len() + 8);
    for c in text.chars() {
        if (c.is_control() || reorders(c)) && !keep(c) {
            out.push_str(&c.escape_unicode().to_string());
        } else {
            out.push(c);
        }
    }
    Cow::Owned(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escapes_are_refused_and_printed_harmless() {
        assert!(single_line("title", "Bump serde to 1.0").is_ok());
        let err = single_line("title", "Bump \u{1b}]8;;http://evil\u{7}x").unwrap_err();
        assert!(err.to_string().contains("title"), "{err}");
        assert!(err.to_string().contains("U+001B"), "{err}");
        assert!(single_line("title", "two\nlines").is_err());
        assert!(single_line("title", "a\u{202E}b").is_err());
        assert!(multi_line("instructions", "line one\n\tline two\r\n").is_ok());
        assert!(multi_line("instructions", "red \u{1b}[31m").is_err());
        assert_eq!(printable("a\u{1b}[2Jb", false), "a\\u{1b}[2Jb");
        assert_eq!(printable("a\nb", true), "a\nb");
        assert_eq!(printable("a\nb", false), "a\\u{a}b");
        assert!(matches!(printable("plain", false), Cow::Borrowed(_)));
    }
}
