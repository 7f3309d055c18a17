//! The secret filter on captured output.

use nightshift_sandbox::{MASK, ProcessSpec, Redactor, Sandbox};

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
