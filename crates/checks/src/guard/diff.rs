//! Reading a unified diff as git writes it (`git diff -M`), one file at a time, without
//! copying its lines: the guard walks diffs of any size in one pass.

/// One changed line, numbered in its own side's file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Line<'a> {
    /// `true` for a line of the change, `false` for a line of the base that is gone.
    pub(crate) added: bool,
    pub(crate) number: u32,
    pub(crate) text: &'a str,
}

/// What the diff says about one file.
#[derive(Debug, Default)]
pub(crate) struct FileDiff<'a> {
    /// The path on the base; `None` for a new file.
    pub(crate) old_path: Option<String>,
    /// The path in the change; `None` for a deleted file.
    pub(crate) new_path: Option<String>,
    pub(crate) binary: bool,
    pub(crate) lines: Vec<Line<'a>>,
}

impl FileDiff<'_> {
    /// The path findings name: where the file is now, or where it was when it is gone.
    pub(crate) fn path(&self) -> &str {
        self.new_path
            .as_deref()
            .or(self.old_path.as_deref())
            .unwrap_or_default()
    }
}

/// The files of a diff, in order.
pub(crate) struct Files<'a> {
    rest: &'a str,
}

pub(crate) fn files(diff: &str) -> Files<'_> {
    Files { rest: diff }
}

impl<'a> Files<'a> {
    fn next_line(&mut self) -> Option<&'a str> {
        if self.rest.is_empty() {
            return None;
        }
        let (line, rest) = match self.rest.find('\n') {
            Some(i) => (&self.rest[..i], &self.rest[i + 1..]),
            None => (self.rest, ""),
        };
        self.rest = rest;
        Some(line.strip_suffix('\r').unwrap_or(line))
    }
}

impl<'a> Iterator for Files<'a> {
    type Item = FileDiff<'a>;

    fn next(&mut self) -> Option<FileDiff<'a>> {
        // Up to the next file's header.
        let header = loop {
            let line = self.next_line()?;
            if let Some(header) = line.strip_prefix("diff --git ") {
                break header;
            }
        };
        let mut file = FileDiff::default();
        if let Some((old, new)) = header_paths(header) {
            file.old_path = Some(old);
            file.new_path = Some(new);
        }
        let (mut old_no, mut new_no, mut old_left, mut new_left) = (0u32, 0u32, 0u32, 0u32);
        loop {
            if self.rest.starts_with("diff --git ") {
                break;
            }
            let Some(line) = self.next_line() else { break };
            if old_left > 0 || new_left > 0 {
                match line.as_bytes().first() {
                    Some(b'+') => {
                        file.lines.push(Line {
                            added: true,
                            number: new_no,
                            text: &line[1..],
                        });
                        new_no += 1;
                        new_left = new_left.saturating_sub(1);
                    }
                    Some(b'-') => {
                        file.lines.push(Line {
                            added: false,
                            number: old_no,
                            text: &line[1..],
                        });
                        old_no += 1;
                        old_left = old_left.saturating_sub(1);
                    }
                    // "\ No newline at end of file" belongs to the line before it.
                    Some(b'\\') => {}
                    _ => {
                        old_no += 1;
                        new_no += 1;
                        old_left = old_left.saturating_sub(1);
                        new_left = new_left.saturating_sub(1);
                    }
                }
                continue;
            }
            if let Some(range) = line.strip_prefix("@@ ") {
                if let Some((old, new)) = hunk_ranges(range) {
                    (old_no, old_left) = old;
                    (new_no, new_left) = new;
                }
            } else if let Some(path) = line.strip_prefix("--- ") {
                file.old_path = side_path(path, "a/");
            } else if let Some(path) = line.strip_prefix("+++ ") {
                file.new_path = side_path(path, "b/");
            } else if let Some(path) = line.strip_prefix("rename from ") {
                file.old_path = Some(unquote(path));
            } else if let Some(path) = line.strip_prefix("rename to ") {
                file.new_path = Some(unquote(path));
            } else if line.starts_with("new file mode") {
                file.old_path = None;
            } else if line.starts_with("deleted file mode") {
                file.new_path = None;
            } else if line.starts_with("Binary files ") || line == "GIT binary patch" {
                file.binary = true;
            }
        }
        Some(file)
    }
}

/// `a/X b/X` as git writes it for a file that kept its name (a rename names both sides in
/// lines of its own). Quoted paths are unquoted.
fn header_paths(header: &str) -> Option<(String, String)> {
    if header.starts_with('"') {
        let end = closing_quote(header)?;
        let old = unquote(&header[..=end]);
        let new = unquote(header[end + 1..].trim_start());
        return Some((
            old.strip_prefix("a/")?.into(),
            new.strip_prefix("b/")?.into(),
        ));
    }
    // The same path twice: "a/" + p + " b/" + p.
    let len = header.len().checked_sub(5)? / 2;
    let old = header.get(2..2 + len)?;
    let new = header.get(2 + len + 3..)?;
    (header.starts_with("a/") && old == new).then(|| (old.to_string(), new.to_string()))
}

fn closing_quote(text: &str) -> Option<usize> {
    let bytes = text.as_bytes();
    let mut i = 1;
    while i < bytes.len() {
        match bytes[i] {
            b'\\' => i += 2,
            b'"' => return Some(i),
            _ => i += 1,
        }
    }
    None
}

/// The path of a `---`/`+++` line, `None` for `/dev/null`.
fn side_path(text: &str, prefix: &str) -> Option<String> {
    // git ends a path with a tab when it contains spaces.
    let text = text.strip_suffix('\t').unwrap_or(text);
    if text == "/dev/null" {
        return None;
    }
    let path = unquote(text);
    Some(path.strip_prefix(prefix).unwrap_or(&path).to_string())
}

/// A path as git quotes it (C-style, for control characters, quotes and backslashes).
fn unquote(text: &str) -> String {
    let Some(inner) = text.strip_prefix('"').and_then(|t| t.strip_suffix('"')) else {
        return text.to_string();
    };
    let mut bytes = Vec::with_capacity(inner.len());
    let mut chars = inner.bytes().peekable();
    while let Some(b) = chars.next() {
        if b != b'\\' {
            bytes.push(b);
            continue;
        }
        match chars.next() {
            Some(b'n') => bytes.push(b'\n'),
            Some(b't') => bytes.push(b'\t'),
            Some(b'r') => bytes.push(b'\r'),
            Some(b'a') => bytes.push(7),
            Some(b'b') => bytes.push(8),
            Some(b'f') => bytes.push(12),
            Some(b'v') => bytes.push(11),
            Some(d @ b'0'..=b'7') => {
                let mut value = u32::from(d - b'0');
                for _ in 0..2 {
                    match chars.peek() {
                        Some(&n @ b'0'..=b'7') => {
                            value = value * 8 + u32::from(n - b'0');
                            chars.next();
                        }
                        _ => break,
                    }
                }
                bytes.push(value as u8);
            }
            Some(other) => bytes.push(other),
            None => {}
        }
    }
    String::from_utf8_lossy(&bytes).into_owned()
}

/// `-a,b +c,d @@…` → `((a, b), (c, d))`; a missing count is 1.
fn hunk_ranges(text: &str) -> Option<((u32, u32), (u32, u32))> {
    let mut parts = text.split_whitespace();
    let old = range(parts.next()?.strip_prefix('-')?)?;
    let new = range(parts.next()?.strip_prefix('+')?)?;
    Some((old, new))
}

fn range(text: &str) -> Option<(u32, u32)> {
    match text.split_once(',') {
        Some((start, count)) => Some((start.parse().ok()?, count.parse().ok()?)),
        None => Some((text.parse().ok()?, 1)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const DIFF: &str = "\
diff --git a/src/lib.rs b/src/lib.rs
index 1111111..2222222 100644
--- a/src/lib.rs
+++ b/src/lib.rs
@@ -1,3 +1,3 @@ fn main() {
 fn a() {}
--- x
+++ y
 fn b() {}
\\ No newline at end of file
@@ -10,0 +11,2 @@
+one
+two
diff --git a/tests/old.py b/tests/old.py
deleted file mode 100644
index 3333333..0000000
--- a/tests/old.py
+++ /dev/null
@@ -1 +0,0 @@
-def test_x(): pass
diff --git a/tests/a.py b/elsewhere/a.py
similarity index 100%
rename from tests/a.py
rename to elsewhere/a.py
diff --git a/logo.png b/logo.png
new file mode 100644
index 0000000..4444444
Binary files /dev/null and b/logo.png differ
diff --git \"a/with\\ttab.txt\" \"b/with\\ttab.txt\"
--- \"a/with\\ttab.txt\"
+++ \"b/with\\ttab.txt\"
@@ -1 +1 @@
-é
+\\303\\251
";

    #[test]
    fn reads_every_kind_of_file_git_writes() {
        let files: Vec<FileDiff> = files(DIFF).collect();
        assert_eq!(files.len(), 5);
        let lib = &files[0];
        assert_eq!(lib.path(), "src/lib.rs");
        // Lines that look like headers inside a hunk are lines of the file.
        assert_eq!(
            lib.lines,
            vec![
                Line {
                    added: false,
                    number: 2,
                    text: "-- x"
                },
                Line {
                    added: true,
                    number: 2,
                    text: "++ y"
                },
                Line {
                    added: true,
                    number: 11,
                    text: "one"
                },
                Line {
                    added: true,
                    number: 12,
                    text: "two"
                },
            ]
        );
        assert!(files[1].new_path.is_none());
        assert_eq!(files[1].path(), "tests/old.py");
        assert_eq!(files[1].lines[0].text, "def test_x(): pass");
        assert_eq!(files[2].old_path.as_deref(), Some("tests/a.py"));
        assert_eq!(files[2].new_path.as_deref(), Some("elsewhere/a.py"));
        assert!(files[3].binary && files[3].old_path.is_none());
        assert_eq!(files[3].path(), "logo.png");
        assert_eq!(files[4].path(), "with\ttab.txt");
    }

    #[test]
    fn a_path_with_spaces_keeps_them() {
        let diff = "diff --git a/my file.py b/my file.py\n--- a/my file.py\t\n+++ b/my file.py\t\n@@ -1 +1 @@\n-a\n+b\n";
        let file = files(diff).next().unwrap();
        assert_eq!(file.old_path.as_deref(), Some("my file.py"));
        assert_eq!(file.new_path.as_deref(), Some("my file.py"));
    }
}
