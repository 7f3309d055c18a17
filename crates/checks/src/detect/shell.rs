//! Reading shell as found in CI steps, package scripts and recipes: which simple commands a
//! script runs, and the words of each, keeping their original quoting so a command can be
//! rewritten (a flag dropped or added) without changing what the rest of it means.

/// The simple commands of `script`, in order: lines joined at `\` continuations, comments
/// dropped, split at `&&`, `||`, `;` and `|`; the inside of `$( … )` is a command of its own.
pub(crate) fn simple_commands(script: &str) -> Vec<String> {
    let joined = script.replace("\\\r\n", " ").replace("\\\n", " ");
    let mut out = Vec::new();
    for line in joined.lines() {
        split_line(line, &mut out);
    }
    out
}

fn split_line(line: &str, out: &mut Vec<String>) {
    let chars: Vec<char> = line.chars().collect();
    let mut current = String::new();
    let mut quote: Option<char> = None;
    let mut i = 0;
    let push = |current: &mut String, out: &mut Vec<String>| {
        let text = current.trim();
        if !text.is_empty() {
            out.push(text.to_string());
        }
        current.clear();
    };
    while i < chars.len() {
        let c = chars[i];
        match quote {
            Some(q) => {
                if c == q {
                    quote = None;
                } else if c == '\\' && q == '"' && i + 1 < chars.len() {
                    current.push(c);
                    i += 1;
                    current.push(chars[i]);
                    i += 1;
                    continue;
                } else if c == '$' && q == '"' && chars.get(i + 1) == Some(&'(') {
                    // A command substitution inside double quotes is still run.
                    if let Some(end) = matching_paren(&chars, i + 1) {
                        let inner: String = chars[i + 2..end].iter().collect();
                        split_line(&inner, out);
                    }
                }
                current.push(c);
            }
            None => match c {
                '\'' | '"' => {
                    quote = Some(c);
                    current.push(c);
                }
                '\\' if i + 1 < chars.len() => {
                    current.push(c);
                    current.push(chars[i + 1]);
                    i += 2;
                    continue;
                }
                '#' if current.is_empty() || current.ends_with(char::is_whitespace) => break,
                '$' if chars.get(i + 1) == Some(&'(') => {
                    if let Some(end) = matching_paren(&chars, i + 1) {
                        let inner: String = chars[i + 2..end].iter().collect();
                        split_line(&inner, out);
                        current.extend(&chars[i..=end]);
                        i = end + 1;
                        continue;
                    }
                    current.push(c);
                }
                ';' => push(&mut current, out),
                '&' if chars.get(i + 1) == Some(&'&') => {
                    push(&mut current, out);
                    i += 2;
                    continue;
                }
                '|' => {
                    push(&mut current, out);
                    i += if chars.get(i + 1) == Some(&'|') { 2 } else { 1 };
                    continue;
                }
                _ => current.push(c),
            },
        }
        i += 1;
    }
    push(&mut current, out);
}

fn matching_paren(chars: &[char], open: usize) -> Option<usize> {
    let mut depth = 0;
    for (i, c) in chars.iter().enumerate().skip(open) {
        match c {
            '(' => depth += 1,
            ')' => {
                depth -= 1;
                if depth == 0 {
                    return Some(i);
                }
            }
            _ => {}
        }
    }
    None
}

/// The words of one simple command as written (quotes kept).
pub(crate) fn raw_words(command: &str) -> Vec<String> {
    let mut words = Vec::new();
    let mut current = String::new();
    let mut quote: Option<char> = None;
    let mut chars = command.chars().peekable();
    while let Some(c) = chars.next() {
        match quote {
            Some(q) => {
                current.push(c);
                if c == q {
                    quote = None;
                } else if c == '\\' && q == '"' {
                    current.extend(chars.next());
                }
            }
            None if c.is_whitespace() => {
                if !current.is_empty() {
                    words.push(std::mem::take(&mut current));
                }
            }
            None => {
                current.push(c);
                match c {
                    '\'' | '"' => quote = Some(c),
                    '\\' => current.extend(chars.next()),
                    _ => {}
                }
            }
        }
    }
    if !current.is_empty() {
        words.push(current);
    }
    words
}

/// The value of a word once the shell has removed its quotes.
pub(crate) fn unquote(word: &str) -> String {
    match shlex::split(word) {
        Some(parts) if parts.len() == 1 => parts.into_iter().next().unwrap_or_default(),
        _ => word.to_string(),
    }
}

/// `NAME=value` before a command.
pub(crate) fn is_assignment(word: &str) -> bool {
    match word.split_once('=') {
        Some((name, _)) => {
            !name.is_empty()
                && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
                && !name.starts_with(|c: char| c.is_ascii_digit())
        }
        None => false,
    }
}

/// A word as the shell would need it written, quoting only when needed.
pub(crate) fn quote(word: &str) -> String {
    let plain = !word.is_empty()
        && word
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "_./=:,+@%-".contains(c));
    if plain {
        return word.to_string();
    }
    shlex::try_quote(word)
        .map(|q| q.into_owned())
        .unwrap_or_else(|_| word.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn splits_scripts_into_simple_commands() {
        let script = "# set up\nnpm ci && npm run lint -- --max-warnings=0\n\
                      test -z \"$(gofmt -l .)\"\ncargo fmt --all \\\n  -- --check; echo 'a && b' | tee x\n";
        assert_eq!(
            simple_commands(script),
            vec![
                "npm ci",
                "npm run lint -- --max-warnings=0",
                "gofmt -l .",
                "test -z \"$(gofmt -l .)\"",
                "cargo fmt --all    -- --check",
                "echo 'a && b'",
                "tee x",
            ]
        );
    }

    #[test]
    fn words_keep_their_quotes() {
        assert_eq!(
            raw_words("prettier --check \"src/**/*.{ts,js}\" 'a b'"),
            vec!["prettier", "--check", "\"src/**/*.{ts,js}\"", "'a b'"]
        );
        assert_eq!(unquote("\"src/**/*.ts\""), "src/**/*.ts");
        assert!(is_assignment("CI=true") && !is_assignment("--fix=true"));
    }
}
