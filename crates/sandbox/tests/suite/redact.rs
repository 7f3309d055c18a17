//! The secret filter, alone and on captured output.

use nightshift_sandbox::{MASK, ProcessSpec, Redactor, Sandbox};

#[test]
fn masks_configured_secrets_longest_first() {
    let r = Redactor::new(["hunter2-password", "hunter2-password-extended", "abc"]).unwrap();
    assert_eq!(
        r.redact("pw=hunter2-password-extended!"),
        format!("pw={MASK}!")
    );
    assert_eq!(r.redact("pw=hunter2-password"), format!("pw={MASK}"));
    // Too short to mask without shredding every line.
    assert_eq!(r.redact("abc"), "abc");
    // Secrets added later keep the earlier ones; none of them shows in debug output.
    let more = r.with_secrets(["late-credential-42"]).unwrap();
    assert_eq!(
        more.redact("hunter2-password late-credential-42"),
        format!("{MASK} {MASK}")
    );
    let debug = format!("{more:?}");
    assert!(
        !debug.contains("hunter2") && !debug.contains("late-credential"),
        "{debug}"
    );
}

#[test]
fn masks_common_token_shapes() {
    let r = Redactor::shapes_only().unwrap();
    let cases = [
        "ghp_0123456789abcdefghijABCDEFGHIJ012345",
        "ghs_0123456789abcdefghijABCDEFGHIJ012345",
        "github_pat_11ABCDEFG0123456789_abcdefghijklmnopqrstuvwxyz0123456789ABCDEFGHIJKLMNOPQ",
        "glpat-abcdefghij0123456789",
        "sk-proj-abcdefghijklmnopqrstuvwxyz012345",
        "sk-ant-api03-abcdefghijklmnopqrstuvwxyz0123456789",
        "AKIAIOSFODNN7EXAMPLE",
    ];
    for token in cases {
        let line = format!("token={token} end");
        let out = r.redact(&line);
        assert!(!out.contains(token), "{token} survived: {out}");
        assert!(out.contains(MASK) && out.ends_with(" end"), "{out}");
    }
    assert_eq!(
        r.redact("authorization: Basic dXNlcjpwYXNzd29yZA=="),
        format!("authorization: Basic {MASK}")
    );
    assert_eq!(
        r.redact("Authorization: Bearer eyJhbGciOiJIUzI1NiJ9.payload.sig"),
        format!("Authorization: Bearer {MASK}")
    );
    assert_eq!(
        r.redact("fetching https://x-access-token:s3cr3tvalue@github.com/o/r.git"),
        format!("fetching https://{MASK}@github.com/o/r.git")
    );
}

#[test]
fn leaves_ordinary_text_borrowed() {
    let r = Redactor::new(["super-secret-value"]).unwrap();
    let line = "test result: ok. 42 passed; see https://github.com/o/r and sk-short; \
                Bearer authentication; unexpected token identifierName; basic authentication";
    assert!(matches!(r.redact(line), std::borrow::Cow::Borrowed(_)));
}

#[tokio::test]
async fn captured_lines_pass_through_the_redactor() {
    let sandbox = Sandbox::new().with_redactor(Redactor::new(["configured-secret-42"]).unwrap());
    let script =
        "echo using configured-secret-42; echo ghp_0123456789abcdefghijABCDEFGHIJ012345 >&2";
    let (_, lines) = sandbox
        .output(&ProcessSpec::shell(script, std::env::temp_dir()))
        .await
        .unwrap();
    let all = super::text(&lines);
    assert!(
        !all.contains("configured-secret-42") && !all.contains("ghp_0123"),
        "{all}"
    );
    assert_eq!(all.matches(MASK).count(), 2, "{all}");
}
