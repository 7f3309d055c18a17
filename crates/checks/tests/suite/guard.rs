//! The test-tampering guard on changes made with real git: what it finds in each ecosystem,
//! what it leaves to the base, and diffs too big or too odd to read line by line.

use std::path::Path;

use nightshift_checks::guard::{self, Contents, GuardInput, GuardReport};
use nightshift_core::GuardKind;
use nightshift_test_support::git::git;

/// A repository with `base` committed, then `change` applied (`None` deletes the file).
struct Change {
    dir: tempfile::TempDir,
}

impl Change {
    fn new(base: &[(&str, &str)]) -> Change {
        let dir = tempfile::tempdir().unwrap();
        git(dir.path(), &["init", "--quiet", "-b", "main"]);
        for (path, text) in base {
            write(dir.path(), path, text);
        }
        git(dir.path(), &["add", "--all"]);
        git(
            dir.path(),
            &["commit", "--quiet", "--allow-empty", "-m", "base"],
        );
        Change { dir }
    }

    fn edit(self, change: &[(&str, Option<&str>)]) -> Change {
        for (path, text) in change {
            match text {
                Some(text) => write(self.dir.path(), path, text),
                None => std::fs::remove_file(self.dir.path().join(path)).unwrap(),
            }
        }
        self
    }

    fn rename(self, from: &str, to: &str) -> Change {
        let to_path = self.dir.path().join(to);
        std::fs::create_dir_all(to_path.parent().unwrap()).unwrap();
        std::fs::rename(self.dir.path().join(from), to_path).unwrap();
        self
    }

    /// The diff as the engine takes it, and the guard's report on it.
    fn inspect(&self, check_files: &[&str]) -> GuardReport {
        let root = self.dir.path();
        git(root, &["add", "--all"]);
        let diff = git(
            root,
            &[
                "-c",
                "core.quotePath=false",
                "diff",
                "--cached",
                "-M",
                "--no-color",
                "--no-ext-diff",
                "--src-prefix=a/",
                "--dst-prefix=b/",
                "HEAD",
            ],
        );
        let needed = guard::files_needed(&diff);
        let mut contents = Contents::default();
        for path in needed.base {
            contents.insert_base(path.clone(), git(root, &["show", &format!("HEAD:{path}")]));
        }
        for path in needed.change {
            contents.insert_change(
                path.clone(),
                std::fs::read_to_string(root.join(&path)).unwrap(),
            );
        }
        let check_files: Vec<String> = check_files.iter().map(|s| s.to_string()).collect();
        guard::inspect(&GuardInput {
            diff: &diff,
            check_files: &check_files,
            contents: &contents,
        })
    }
}

fn write(root: &Path, path: &str, text: &str) {
    let file = root.join(path);
    std::fs::create_dir_all(file.parent().unwrap()).unwrap();
    std::fs::write(file, text).unwrap();
}

/// The findings as `kind path:line`.
fn found(report: &GuardReport) -> Vec<String> {
    report
        .findings
        .iter()
        .map(|f| format!("{} {}:{}", f.kind, f.path, f.line))
        .collect()
}

const PY_TESTS: &str = "import unittest\n\nfrom greeting import greet\n\n\nclass GreetingTest(unittest.TestCase):\n    def test_says_hello(self):\n        self.assertEqual(greet(), \"hello\")\n\n    def test_says_it_once(self):\n        self.assertEqual(greet().count(\"hello\"), 1)\n";

#[test]
fn a_deleted_test_file_is_found_with_its_tests() {
    let report = Change::new(&[
        ("greeting.py", "def greet():\n    return 'hello'\n"),
        ("tests/test_greeting.py", PY_TESTS),
    ])
    .edit(&[("tests/test_greeting.py", None)])
    .inspect(&[]);
    assert_eq!(
        found(&report),
        vec!["test_file_removed tests/test_greeting.py:1"]
    );
    assert!(
        report.findings[0].detail.contains("deleted (2 tests)"),
        "{:?}",
        report.findings
    );
}

#[test]
fn a_test_file_moved_where_the_runner_does_not_look_is_found() {
    let report = Change::new(&[("tests/test_greeting.py", PY_TESTS)])
        .rename("tests/test_greeting.py", "tests/greeting_checks.py.off")
        .inspect(&[]);
    assert_eq!(
        found(&report),
        vec!["test_file_removed tests/test_greeting.py:1"]
    );
    assert!(
        report.findings[0]
            .detail
            .contains("moved to `tests/greeting_checks.py.off`"),
        "{:?}",
        report.findings
    );
    // Moved to another place the runner looks: nothing lost.
    let report = Change::new(&[("tests/test_greeting.py", PY_TESTS)])
        .rename("tests/test_greeting.py", "tests/unit/test_greeting.py")
        .inspect(&[]);
    assert!(report.passed(), "{report:?}");
}

#[test]
fn a_removed_test_function_is_found_and_a_renamed_one_is_not() {
    let fewer = PY_TESTS.replace(
        "    def test_says_it_once(self):\n        self.assertEqual(greet().count(\"hello\"), 1)\n",
        "",
    );
    let report = Change::new(&[("tests/test_greeting.py", PY_TESTS)])
        .edit(&[("tests/test_greeting.py", Some(&fewer))])
        .inspect(&[]);
    let kinds: Vec<GuardKind> = report.findings.iter().map(|f| f.kind).collect();
    assert_eq!(
        kinds,
        vec![GuardKind::TestRemoved, GuardKind::AssertionRemoved],
        "{report:?}"
    );
    assert_eq!(report.findings[0].line, 10);
    assert!(
        report.findings[0]
            .detail
            .contains("def test_says_it_once(self):")
    );

    let renamed = PY_TESTS.replace("test_says_it_once", "test_says_hello_once");
    let report = Change::new(&[("tests/test_greeting.py", PY_TESTS)])
        .edit(&[("tests/test_greeting.py", Some(&renamed))])
        .inspect(&[]);
    assert!(report.passed(), "{report:?}");
}

#[test]
fn skips_added_in_each_ecosystem_are_found_with_their_line() {
    let cases: &[(&str, &str, &str)] = &[
        (
            "tests/test_a.py",
            "def test_a():\n    assert f()\n",
            "import pytest\n\n@pytest.mark.skip(reason=\"flaky\")\ndef test_a():\n    assert f()\n",
        ),
        (
            "src/a.test.js",
            "it('works', () => {\n  expect(f()).toBe(1);\n});\n",
            "it.skip('works', () => {\n  expect(f()).toBe(1);\n});\n",
        ),
        (
            "a_test.go",
            "func TestA(t *testing.T) {\n\tif f() != 1 {\n\t\tt.Fatal(\"no\")\n\t}\n}\n",
            "func TestA(t *testing.T) {\n\tt.Skip(\"later\")\n\tif f() != 1 {\n\t\tt.Fatal(\"no\")\n\t}\n}\n",
        ),
        (
            "src/lib.rs",
            "#[test]\nfn a() {\n    assert!(f());\n}\n",
            "#[test]\n#[ignore]\nfn a() {\n    assert!(f());\n}\n",
        ),
        (
            "src/test/java/ATest.java",
            "class ATest {\n  @Test\n  void a() { assertTrue(f()); }\n}\n",
            "class ATest {\n  @Disabled\n  @Test\n  void a() { assertTrue(f()); }\n}\n",
        ),
    ];
    for (path, base, change) in cases {
        let report = Change::new(&[(path, base)])
            .edit(&[(path, Some(change))])
            .inspect(&[]);
        assert_eq!(report.findings.len(), 1, "{path}: {report:?}");
        let finding = &report.findings[0];
        assert_eq!(finding.kind, GuardKind::SkipAdded, "{path}");
        assert_eq!(&finding.path, path);
        let line = change
            .lines()
            .position(|l| !l.trim().is_empty() && finding.detail.contains(l.trim()))
            .unwrap()
            + 1;
        assert_eq!(finding.line as usize, line, "{path}: {finding:?}");
    }
}

#[test]
fn suppressions_added_are_found_and_the_bases_own_are_not() {
    let base = "import os  # noqa\n\n\ndef f():\n    return 1\n";
    let change =
        "import os  # noqa\nimport sys  # noqa: F401\n\n\ndef f():  # type: ignore\n    return 1\n";
    let report = Change::new(&[("app.py", base), ("web/app.js", "run();\n")])
        .edit(&[
            ("app.py", Some(change)),
            (
                "web/app.js",
                Some("// eslint-disable-next-line no-undef\nrun();\n"),
            ),
        ])
        .inspect(&[]);
    assert_eq!(
        found(&report),
        vec![
            "suppression_added app.py:2",
            "suppression_added app.py:5",
            "suppression_added web/app.js:1"
        ]
    );
    // The base's `# noqa`, moved down a line by an edit above it, is still the base's.
    let moved = "\"\"\"Docs.\"\"\"\nimport os  # noqa\n\n\ndef f():\n    return 1\n";
    let report = Change::new(&[("app.py", base)])
        .edit(&[("app.py", Some(moved))])
        .inspect(&[]);
    assert!(report.passed(), "{report:?}");
}

#[test]
fn a_base_that_already_skips_is_not_the_changes_doing() {
    let base = "import pytest\n\n@pytest.mark.skip\ndef test_a():\n    assert f()\n";
    let change = "import pytest\n\n@pytest.mark.skip\ndef test_a():\n    assert f() == 1\n";
    let report = Change::new(&[("tests/test_a.py", base)])
        .edit(&[("tests/test_a.py", Some(change))])
        .inspect(&[]);
    assert!(report.passed(), "{report:?}");
}

#[test]
fn edits_to_what_decides_the_checks_are_found() {
    let report = Change::new(&[
        (".github/workflows/ci.yml", "jobs: {}\n"),
        (".nightshift.toml", "[checks]\ntest = [\"sh test.sh\"]\n"),
        ("test.sh", "grep -q goodbye greeting.txt\n"),
        (
            "pyproject.toml",
            "[project]\nname = \"x\"\n\n[tool.coverage.report]\nfail_under = 90\n",
        ),
        (".eslintrc.json", "{\"rules\": {}}\n"),
        ("greeting.txt", "hello\n"),
    ])
    .edit(&[
        (".github/workflows/ci.yml", Some("jobs: {}\n# quiet\n")),
        (".nightshift.toml", Some("[checks]\ntest = [\"true\"]\n")),
        ("test.sh", Some("exit 0\n")),
        (
            "pyproject.toml",
            Some("[project]\nname = \"x\"\n\n[tool.coverage.report]\nfail_under = 10\n"),
        ),
        (".eslintrc.json", None),
        ("greeting.txt", Some("goodbye\n")),
    ])
    .inspect(&["test.sh"]);
    assert_eq!(
        found(&report),
        vec![
            "check_config_edited .eslintrc.json:1",
            "check_config_edited .github/workflows/ci.yml:2",
            "check_config_edited .nightshift.toml:2",
            "check_config_edited pyproject.toml:4",
            "check_config_edited test.sh:1",
        ]
    );
    assert!(
        report.findings[0].detail.contains("deleted"),
        "{:?}",
        report.findings[0]
    );
    assert!(
        report.findings[4]
            .detail
            .contains("a script the checks run")
    );
}

#[test]
fn a_coverage_threshold_lowered_in_a_plain_file_is_found() {
    let report = Change::new(&[("Makefile", "test:\n\tpytest --cov --cov-fail-under=90\n")])
        .edit(&[(
            "Makefile",
            Some("test:\n\tpytest --cov --cov-fail-under=10\n"),
        )])
        .inspect(&[]);
    assert_eq!(found(&report), vec!["check_config_edited Makefile:2"]);
}

#[test]
fn rust_assertions_count_in_test_modules_only() {
    let base = "pub fn f() -> u8 {\n    assert!(READY);\n    1\n}\n\n#[cfg(test)]\nmod tests {\n    #[test]\n    fn one() {\n        assert_eq!(super::f(), 1);\n    }\n}\n";
    // The production assertion goes: not a test's.
    let change = base.replace("    assert!(READY);\n", "");
    let report = Change::new(&[("src/lib.rs", base)])
        .edit(&[("src/lib.rs", Some(&change))])
        .inspect(&[]);
    assert!(report.passed(), "{report:?}");
    // The test's assertion goes.
    let change = base.replace(
        "        assert_eq!(super::f(), 1);\n",
        "        let _ = super::f();\n",
    );
    let report = Change::new(&[("src/lib.rs", base)])
        .edit(&[("src/lib.rs", Some(&change))])
        .inspect(&[]);
    assert_eq!(found(&report), vec!["assertion_removed src/lib.rs:10"]);
}

#[test]
fn a_js_test_removed_is_found_in_its_ecosystem_only() {
    let base = "test('a', () => {\n  assert.equal(f(), 1);\n});\ntest('b', () => {\n  assert.equal(f(), 1);\n});\n";
    let change = "test('a', () => {\n  assert.equal(f(), 1);\n});\n";
    let report = Change::new(&[
        ("test/a.test.mjs", base),
        ("tests/test_x.py", "def test_x():\n    pass\n"),
    ])
    .edit(&[
        ("test/a.test.mjs", Some(change)),
        (
            "tests/test_x.py",
            Some("def test_x():\n    pass\n\n\ndef test_y():\n    pass\n"),
        ),
    ])
    .inspect(&[]);
    assert_eq!(
        found(&report),
        vec![
            "test_removed test/a.test.mjs:4",
            "assertion_removed test/a.test.mjs:5"
        ]
    );
}

#[test]
fn binary_generated_and_vendored_files_are_left_alone() {
    let report = Change::new(&[
        ("vendor/lib/a_test.go", "func TestA(t *testing.T) {}\n"),
        ("logo.png", "\u{0}\u{1}png"),
    ])
    .edit(&[
        ("vendor/lib/a_test.go", None),
        ("logo.png", Some("\u{0}\u{2}png")),
        (
            "gen/api.py",
            Some("# @generated by protoc\nimport os  # noqa\n"),
        ),
        ("web/dist/app.min.js", Some("/* eslint-disable */\n")),
    ])
    .inspect(&[]);
    assert!(report.passed(), "{report:?}");
    assert_eq!(report.left_alone, 4);
}

/// A 50 MB diff: thousands of files, long lines, a binary among them, and tampering buried in
/// the middle: read in one pass, its findings still found and capped.
#[test]
fn a_fifty_megabyte_diff_is_read_whole() {
    let diff = huge_diff(50 << 20);
    assert!(diff.len() >= 50 << 20);
    let report = guard::inspect(&GuardInput {
        diff: &diff,
        check_files: &[],
        contents: &Contents::default(),
    });
    let skips = report
        .findings
        .iter()
        .filter(|f| f.kind == GuardKind::SkipAdded)
        .count();
    assert_eq!(skips, 20, "{:?}", &report.findings[..3]);
    assert!(report.omitted > 0, "{}", report.omitted);
    assert!(
        report
            .findings
            .iter()
            .any(|f| f.path == "tests/test_buried.py" && f.kind == GuardKind::TestFileRemoved)
    );
    assert_eq!(report.left_alone, 1);
}

/// A synthetic diff of about `bytes` bytes in the shape `git diff` writes.
pub fn huge_diff(bytes: usize) -> String {
    let mut out = String::with_capacity(bytes + 4096);
    let mut n = 0;
    while out.len() < bytes {
        let path = format!("src/module_{n}.py");
        out.push_str(&format!("diff --git a/{path} b/{path}\nindex 1111111..2222222 100644\n--- a/{path}\n+++ b/{path}\n@@ -1,100 +1,102 @@\n"));
        for i in 0..100 {
            out.push_str(&format!(
                "-    value_{i} = compute({i}, 'old')\n+    value_{i} = compute({i}, 'new')\n"
            ));
        }
        out.push_str(&format!("+@pytest.mark.skip\n+{}\n", "x".repeat(10_000)));
        n += 1;
        if n == 1000 {
            out.push_str("diff --git a/tests/test_buried.py b/tests/test_buried.py\ndeleted file mode 100644\n--- a/tests/test_buried.py\n+++ /dev/null\n@@ -1,2 +0,0 @@\n-def test_buried():\n-    assert True\n");
            out.push_str("diff --git a/blob.bin b/blob.bin\nindex 1111111..2222222 100644\nBinary files a/blob.bin and b/blob.bin differ\n");
        }
    }
    out
}

#[test]
fn the_scripts_a_plan_runs_are_its_check_files() {
    let plan = nightshift_checks::CheckPlan {
        lint: vec![
            "./scripts/lint --strict".into(),
            "python3 -m ruff check .".into(),
        ],
        test: vec![
            "sh test.sh && node tools/check.mjs".into(),
            "grep -q goodbye greeting.txt".into(),
        ],
        ..Default::default()
    };
    assert_eq!(
        guard::check_files(&plan),
        vec!["scripts/lint", "test.sh", "tools/check.mjs"]
    );
}

#[test]
fn a_diff_lists_its_files_with_their_lines() {
    let change = Change::new(&[
        ("a.txt", "one\ntwo\n"),
        ("old/name.txt", "same\ntext\nhere\n"),
    ])
    .edit(&[
        ("a.txt", Some("one\n2\nthree\n")),
        ("logo.png", Some("\u{0}png")),
    ])
    .rename("old/name.txt", "new/name.txt");
    let root = change.dir.path();
    git(root, &["add", "--all"]);
    let diff = git(root, &["diff", "--cached", "-M", "HEAD"]);
    let files: Vec<(String, Option<String>, usize, usize, bool)> = guard::changed_files(&diff)
        .into_iter()
        .map(|f| (f.path, f.moved_from, f.added, f.removed, f.binary))
        .collect();
    assert_eq!(
        files,
        vec![
            ("a.txt".into(), None, 2, 1, false),
            ("logo.png".into(), None, 0, 0, true),
            (
                "new/name.txt".into(),
                Some("old/name.txt".into()),
                0,
                0,
                false
            ),
        ]
    );
}
