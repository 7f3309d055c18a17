//! What the guard looks for, per ecosystem: where its test runner finds tests, and what a test,
//! a skip, an assertion and a suppression look like on one line. `docs/guard.md` is this
//! table in prose; change both together.

use std::sync::LazyLock;

use regex::Regex;

/// An ecosystem the guard knows the tests of.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub(crate) enum Lang {
    Rust,
    Python,
    JavaScript,
    Go,
    Java,
}

impl Lang {
    pub(crate) fn of(path: &str) -> Option<Lang> {
        let ext = file_name(path).rsplit_once('.')?.1;
        Some(match ext {
            "rs" => Lang::Rust,
            "py" | "pyi" => Lang::Python,
            "js" | "jsx" | "mjs" | "cjs" | "ts" | "tsx" | "mts" | "cts" | "vue" | "svelte" => {
                Lang::JavaScript
            }
            "go" => Lang::Go,
            "java" | "kt" | "kts" | "groovy" | "scala" => Lang::Java,
            _ => return None,
        })
    }

    pub(crate) fn rules(self) -> &'static Rules {
        &RULES[self as usize]
    }
}

/// The patterns of one ecosystem. Each matches within one line.
pub(crate) struct Rules {
    /// A test function or case, as its runner collects it.
    pub(crate) test: Regex,
    /// Marks a test skipped, expected to fail, or focused (which skips the others).
    pub(crate) skip: Regex,
    /// An assertion, counted in test code only.
    pub(crate) assertion: Regex,
    /// Silences a linter, formatter, type checker or coverage for a line or a file.
    pub(crate) suppression: Regex,
}

/// The patterns are constants of this file: the tests below compile every one.
fn compile(pattern: &str) -> Regex {
    Regex::new(pattern).unwrap_or_else(|e| unreachable!("guard pattern {pattern}: {e}"))
}

fn rules(test: &str, skip: &str, assertion: &str, suppression: &str) -> Rules {
    Rules {
        test: compile(test),
        skip: compile(skip),
        assertion: compile(assertion),
        suppression: compile(suppression),
    }
}

/// In the order of [`Lang`]'s variants.
static RULES: LazyLock<[Rules; 5]> = LazyLock::new(|| {
    [
        // Rust
        rules(
            r"#\[\s*(?:[A-Za-z_]\w*::)*(?:test|rstest|test_case|quickcheck|proptest)\b",
            r"#\[\s*(?:ignore\b|cfg_attr\s*\(.*\bignore\b)",
            r"(?:^|[^\w])(?:assert|assert_eq|assert_ne|assert_matches|prop_assert|prop_assert_eq|prop_assert_ne)!",
            r"#!?\[\s*(?:allow|expect)\s*\(|#\[\s*cfg_attr\s*\(.*\b(?:allow|expect)\s*\(|#\[\s*rustfmt::skip\b",
        ),
        // Python
        rules(
            r"^\s*(?:async\s+)?def\s+test\w*\s*\(",
            r"@(?:pytest\.mark\.)?(?:skip|skipif|xfail)\b|\bpytest\.(?:skip|xfail|importorskip)\s*\(|@(?:unittest\.)?(?:skip|skipIf|skipUnless|expectedFailure)\b|\.skipTest\s*\(|\braise\s+(?:unittest\.)?SkipTest\b",
            r"^\s*assert\b|\.assert[A-Z_]\w*\s*\(|\.fail(?:If|Unless)?\s*\(|\bpytest\.(?:raises|warns|approx)\s*\(|\bassert_\w+\s*\(",
            r"#\s*(?:noqa\b|type:\s*ignore\b|pylint:\s*disable|pyright:\s*ignore|mypy:\s*ignore-errors|pragma:\s*no\s*cover|fmt:\s*(?:off|skip)|isort:\s*skip|nosec\b|ruff:\s*noqa)",
        ),
        // JavaScript and TypeScript
        rules(
            r"(?:^|[^\w.$])(?:x?it|x?test|fit|specify)(?:\.\w+)*\s*\(",
            r"\b(?:it|test|describe|context|suite|specify)\.(?:skip|skipIf|todo|only|fails)\b|(?:^|[^\w.$])(?:xit|xtest|xdescribe|xcontext|fit|fdescribe)\s*\(|\bt\.(?:skip|todo)\s*\(|\bthis\.skip\s*\(",
            r"\bexpect(?:\.\w+)*\s*\(|(?:^|[^\w.$])assert(?:\.\w+)*\s*\(|\.should\.|\bt\.(?:is|not|deepEqual|notDeepEqual|true|false|truthy|falsy|throws|throwsAsync|equal|ok|assert)\s*\(",
            r"eslint-disable|@ts-(?:ignore|expect-error|nocheck)\b|biome-ignore|prettier-ignore|(?:istanbul|c8|v8)\s+ignore|tslint:disable|jshint\s+ignore|deno-lint-ignore|oxlint-disable",
        ),
        // Go
        rules(
            r"^\s*func\s+(?:\([^)]*\)\s*)?(?:Test|Fuzz|Example)\w*\s*\(",
            r"\.Skip(?:f|Now)?\s*\(|^//\s*(?:go:build|\+build)\s+ignore\b",
            r"\b(?:t|b|f|tb)\.(?:Errorf?|Fatalf?|Fail|FailNow)\s*\(|\b(?:assert|require)\.\w+\s*\(",
            r"//\s*(?:nolint\b|lint:ignore\b|#?nosec\b)",
        ),
        // Java, Kotlin, Groovy, Scala
        rules(
            r"@(?:Test|ParameterizedTest|RepeatedTest|TestFactory|TestTemplate)\b",
            r"@(?:Disabled\w*|Ignore)\b|\bassume(?:True|False|That)\s*\(",
            r"\bassert(?:[A-Z]\w*)?\s*\(|\bfail\s*\(|^\s*assert\s",
            r"@SuppressWarnings\b|@Suppress\s*\(|//\s*NOSONAR|CHECKSTYLE:OFF|//\s*noinspection|@SuppressFBWarnings\b",
        ),
    ]
});

/// A change of a coverage threshold, wherever it is written.
pub(crate) static COVERAGE: LazyLock<Regex> = LazyLock::new(|| {
    compile(
        r"(?i)fail[_-]?under|cov-fail-under|coverageThreshold|check-coverage|min(?:imum)?[_-]coverage|coverage[_-](?:threshold|min)",
    )
});

/// Whether the ecosystem's runner collects tests from `path`.
pub(crate) fn is_test_file(lang: Lang, path: &str) -> bool {
    let name = file_name(path);
    let dirs = || path.split('/').rev().skip(1);
    match lang {
        // Integration tests; unit tests live in any source file, found by their attribute.
        Lang::Rust => dirs().any(|d| d == "tests"),
        Lang::Python => {
            let stem = name.strip_suffix(".py").unwrap_or(name);
            stem.starts_with("test") || stem.ends_with("_test") || name == "conftest.py"
        }
        Lang::JavaScript => {
            let parts: Vec<&str> = name.split('.').collect();
            parts.len() > 2
                && parts[1..parts.len() - 1]
                    .iter()
                    .any(|p| matches!(*p, "test" | "spec" | "e2e" | "cy"))
                || dirs().any(|d| matches!(d, "__tests__" | "test" | "tests" | "spec" | "e2e"))
        }
        Lang::Go => name.ends_with("_test.go"),
        Lang::Java => {
            path.contains("src/test/")
                || ["Test.", "Tests.", "IT.", "Spec."]
                    .iter()
                    .any(|s| name.contains(s))
        }
    }
}

/// Whether `line` (of a Rust file) is test code: it follows a `#[cfg(test)]` in its file.
pub(crate) fn after_cfg_test(content: &str, line: u32) -> bool {
    content
        .lines()
        .take(line as usize)
        .any(|l| l.trim_start().starts_with("#[cfg(test)]"))
}

/// What a file that decides the checks is, by its path: CI, a linter's or test runner's
/// configuration, Nightshift's own. Files mixing such settings with others (`pyproject.toml`,
/// `package.json`, …) are read section by section instead (see `configs`).
pub(crate) fn check_config(path: &str) -> Option<&'static str> {
    let name = file_name(path);
    let under = |dir: &str| path.starts_with(dir);
    if path == crate::CONFIG_FILE {
        return Some("Nightshift's checks");
    }
    let ci = under(".github/workflows/")
        || under(".github/actions/")
        || under(".gitlab/ci/")
        || under(".circleci/")
        || under(".buildkite/")
        || under(".woodpecker/")
        || under(".forgejo/workflows/")
        || under(".gitea/workflows/")
        || under(".azure-pipelines/")
        || matches!(
            path,
            ".gitlab-ci.yml"
                | ".travis.yml"
                | "azure-pipelines.yml"
                | "Jenkinsfile"
                | "bitbucket-pipelines.yml"
                | ".woodpecker.yml"
                | ".drone.yml"
                | "appveyor.yml"
                | ".appveyor.yml"
        );
    if ci {
        return Some("CI configuration");
    }
    let starts = |prefixes: &[&str]| prefixes.iter().any(|p| name.starts_with(p));
    let kind = match name {
        ".pre-commit-config.yaml" | ".pre-commit-config.yml" => "pre-commit hooks",
        "rustfmt.toml" | ".rustfmt.toml" | ".editorconfig" | ".clang-format" | ".scalafmt.conf" => {
            "formatter configuration"
        }
        "clippy.toml" | ".clippy.toml" | "deny.toml" | ".flake8" | ".pylintrc" | "pylintrc"
        | "ruff.toml" | ".ruff.toml" | ".eslintignore" | ".golangci.yml" | ".golangci.yaml"
        | ".golangci.toml" | ".golangci.json" | "staticcheck.conf" | ".bandit" | ".isort.cfg"
        | ".pydocstyle" | ".markdownlint.json" | ".markdownlint.yaml" | ".yamllint"
        | ".yamllint.yml" | ".hadolint.yaml" | "detekt.yml" | ".shellcheckrc"
        | ".prettierignore" | "biome.json" | "biome.jsonc" | ".stylelintignore" => {
            "linter configuration"
        }
        "mypy.ini" | ".mypy.ini" | "pyrightconfig.json" | "jsconfig.json" => {
            "type checker configuration"
        }
        "pytest.ini" | "tox.ini" | "noxfile.py" | "conftest.py" | "nextest.toml" | ".mocharc"
        | "karma.conf.js" | "phpunit.xml" | "tarpaulin.toml" => "test runner configuration",
        ".coveragerc" | "codecov.yml" | ".codecov.yml" | ".nycrc" | ".c8rc" | ".c8rc.json" => {
            "coverage configuration"
        }
        _ if starts(&[
            ".eslintrc",
            "eslint.config.",
            ".prettierrc",
            "prettier.config.",
            ".stylelintrc",
            "stylelint.config.",
        ]) =>
        {
            "linter configuration"
        }
        _ if name.starts_with("tsconfig") && name.ends_with(".json") => {
            "type checker configuration"
        }
        _ if starts(&[
            "jest.config.",
            "vitest.config.",
            "vitest.workspace.",
            ".mocharc.",
            "playwright.config.",
            "cypress.config.",
            "karma.conf.",
        ]) =>
        {
            "test runner configuration"
        }
        _ if starts(&[".nycrc.", "codecov."]) => "coverage configuration",
        _ if path == ".cargo/config.toml" || path == ".cargo/config" => {
            "build configuration of the checks"
        }
        _ => return None,
    };
    Some(kind)
}

/// Code nobody writes by hand, or writes elsewhere: the guard leaves it alone.
pub(crate) fn is_generated_or_vendored(path: &str) -> bool {
    const DIRS: &[&str] = &[
        "vendor",
        "third_party",
        "third-party",
        "node_modules",
        ".venv",
        "venv",
        "site-packages",
        "bower_components",
        "__pycache__",
        ".yarn",
        "Pods",
        "dist",
        "target",
        "__snapshots__",
    ];
    const SUFFIXES: &[&str] = &[
        ".min.js",
        ".min.css",
        ".map",
        ".pb.go",
        "_pb2.py",
        "_pb2_grpc.py",
        ".pb.rs",
        ".g.dart",
        ".snap",
        ".lock",
        "-lock.json",
        "-lock.yaml",
        ".sum",
    ];
    let name = file_name(path);
    path.split('/').rev().skip(1).any(|d| DIRS.contains(&d))
        || SUFFIXES.iter().any(|s| name.ends_with(s))
        || name.contains(".generated.")
}

/// Whether the first lines of a new file mark it generated (`@generated`, `DO NOT EDIT`).
pub(crate) fn marks_generated(text: &str) -> bool {
    text.contains("@generated")
        || text.contains("DO NOT EDIT")
        || text.contains("do not edit")
        || text.contains("Code generated")
        || text.contains("auto-generated")
        || text.contains("autogenerated")
}

pub(crate) fn file_name(path: &str) -> &str {
    path.rsplit('/').next().unwrap_or(path)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn matches(re: &Regex, line: &str) -> bool {
        re.is_match(line)
    }

    #[test]
    fn each_ecosystem_knows_its_tests_skips_assertions_and_suppressions() {
        assert!(COVERAGE.is_match("fail_under = 90"));
        // Per ecosystem: tests, skips, assertions, suppressions.
        type Lines = &'static [&'static str];
        let cases: &[(Lang, Lines, Lines, Lines, Lines)] = &[
            (
                Lang::Rust,
                &[
                    "#[test]",
                    "    #[tokio::test(flavor = \"multi_thread\")]",
                    "#[rstest]",
                ],
                &[
                    "#[ignore]",
                    "#[ignore = \"slow\"]",
                    "#[cfg_attr(windows, ignore)]",
                ],
                &["assert!(x);", "    assert_eq!(a, b);", "prop_assert!(ok)"],
                &[
                    "#[allow(dead_code)]",
                    "#![allow(clippy::all)]",
                    "#[expect(unused)]",
                    "#[rustfmt::skip]",
                ],
            ),
            (
                Lang::Python,
                &["def test_greets():", "    async def test_it(self):"],
                &[
                    "@pytest.mark.skip(reason='x')",
                    "@pytest.mark.xfail",
                    "pytest.skip('no')",
                    "@unittest.skip('x')",
                    "@skipIf(True, 'x')",
                    "self.skipTest('x')",
                ],
                &[
                    "    assert x == 1",
                    "self.assertEqual(a, b)",
                    "with pytest.raises(ValueError):",
                    "mock.assert_called_once_with(1)",
                ],
                &[
                    "import os  # noqa",
                    "x = f()  # type: ignore[arg-type]",
                    "# pylint: disable=all",
                    "# pragma: no cover",
                ],
            ),
            (
                Lang::JavaScript,
                &[
                    "it('greets', () => {",
                    "test(\"x\", async () => {",
                    "  it.skip('a', f)",
                    "xit('a')",
                    "test.each([1])('n', f)",
                ],
                &[
                    "it.skip('a', f)",
                    "describe.only('x', f)",
                    "xdescribe('x')",
                    "test.todo('later')",
                    "fit('x')",
                ],
                &[
                    "expect(x).toBe(1);",
                    "assert.equal(a, b);",
                    "assert(ok)",
                    "t.deepEqual(a, b)",
                ],
                &[
                    "// eslint-disable-next-line no-console",
                    "/* eslint-disable */",
                    "// @ts-ignore",
                    "// @ts-expect-error",
                    "/* istanbul ignore next */",
                ],
            ),
            (
                Lang::Go,
                &[
                    "func TestGreets(t *testing.T) {",
                    "func (s *Suite) TestX(t *testing.T) {",
                    "func FuzzParse(f *testing.F) {",
                ],
                &[
                    "\tt.Skip(\"flaky\")",
                    "t.Skipf(\"x %d\", 1)",
                    "//go:build ignore",
                ],
                &[
                    "\tt.Errorf(\"got %v\", x)",
                    "t.Fatal(err)",
                    "require.NoError(t, err)",
                ],
                &[
                    "x := f() //nolint:errcheck",
                    "// nolint",
                    "//lint:ignore SA1019 reason",
                ],
            ),
            (
                Lang::Java,
                &["@Test", "  @ParameterizedTest"],
                &["@Disabled(\"flaky\")", "@Ignore", "assumeTrue(false);"],
                &[
                    "assertEquals(1, x);",
                    "assertThat(x).isEqualTo(1);",
                    "fail(\"no\");",
                ],
                &["@SuppressWarnings(\"unchecked\")", "int x = 1; // NOSONAR"],
            ),
        ];
        for (lang, tests, skips, assertions, suppressions) in cases {
            let r = lang.rules();
            for (re, lines) in [
                (&r.test, tests),
                (&r.skip, skips),
                (&r.assertion, assertions),
                (&r.suppression, suppressions),
            ] {
                for line in *lines {
                    assert!(
                        matches(re, line),
                        "{lang:?}: {line:?} not matched by {}",
                        re.as_str()
                    );
                }
            }
        }
    }

    #[test]
    fn ordinary_code_is_not_mistaken_for_tests_or_skips() {
        let js = Lang::JavaScript.rules();
        for line in [
            "const ok = re.test(text);",
            "commit(changes)",
            "submit(form)",
            "describe('x', () => {",
        ] {
            assert!(!js.test.is_match(line), "{line}");
        }
        let py = Lang::Python.rules();
        for line in ["def testing_helper_data():", "    assertion = 1"] {
            assert!(!py.assertion.is_match(line), "{line}");
        }
        assert!(!Lang::Java.rules().test.is_match("@TestInstance(PER_CLASS)"));
        assert!(!Lang::Rust.rules().assertion.is_match("debug_assert!(x);"));
        assert!(
            !Lang::Go
                .rules()
                .assertion
                .is_match("return fmt.Errorf(\"x\")")
        );
    }

    #[test]
    fn test_files_are_where_each_runner_looks() {
        let yes = [
            (Lang::Python, "tests/test_greeting.py"),
            (Lang::Python, "pkg/greeting_test.py"),
            (Lang::JavaScript, "src/greeting.test.ts"),
            (Lang::JavaScript, "src/__tests__/greeting.js"),
            (Lang::JavaScript, "test/greeting.js"),
            (Lang::Go, "greeting/greeting_test.go"),
            (Lang::Rust, "tests/greeting.rs"),
            (Lang::Java, "src/test/java/GreetingTest.java"),
        ];
        for (lang, path) in yes {
            assert!(is_test_file(lang, path), "{path}");
        }
        let no = [
            (Lang::Python, "greeting.py"),
            (Lang::Python, "tests_data/greeting.py.bak"),
            (Lang::JavaScript, "src/greeting.ts"),
            (Lang::Go, "greeting.go"),
            (Lang::Rust, "src/lib.rs"),
        ];
        for (lang, path) in no {
            assert!(!is_test_file(lang, path), "{path}");
        }
    }

    #[test]
    fn check_configuration_is_known_by_its_path() {
        for path in [
            ".github/workflows/ci.yml",
            ".nightshift.toml",
            "ruff.toml",
            "web/.eslintrc.json",
            "eslint.config.mjs",
            "tsconfig.build.json",
            ".golangci.yml",
            "jest.config.ts",
            ".coveragerc",
        ] {
            assert!(check_config(path).is_some(), "{path}");
        }
        for path in ["src/main.rs", "README.md", "docs/ci.md", "package.json"] {
            assert!(check_config(path).is_none(), "{path}");
        }
    }

    #[test]
    fn vendored_and_generated_files_are_left_alone() {
        for path in [
            "vendor/github.com/x/y.go",
            "web/node_modules/a/index.js",
            "api/v1/service.pb.go",
            "dist/app.min.js",
            "Cargo.lock",
            "package-lock.json",
        ] {
            assert!(is_generated_or_vendored(path), "{path}");
        }
        assert!(!is_generated_or_vendored("src/vendoring.rs"));
    }
}
