//! What the CLI prints of the server's data: text other people typed (titles, instructions,
//! names) and what agents printed is escaped, so it can never drive the terminal.

use nightshift_core::printable;

/// One line of text: control characters, newlines included, shown escaped (`\u{1b}`).
pub(crate) fn line(text: &str) -> String {
    printable(text, false).into_owned()
}

/// Text of many lines: newlines and tabs kept, every other control character escaped.
pub(crate) fn lines(text: &str) -> String {
    printable(text, true).into_owned()
}

/// At most `chars` characters of one line, cut only after escaping: a shortened title never
/// ends in half a terminal escape.
pub(crate) fn short(text: &str, chars: usize) -> String {
    line(text).chars().take(chars).collect()
}

/// Text that may be missing, as one line; a missing one as `-`.
pub(crate) fn or_dash(text: Option<&str>) -> String {
    text.map_or_else(|| "-".into(), line)
}
