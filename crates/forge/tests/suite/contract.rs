//! The API descriptions themselves load and the validator catches drift.

use nightshift_test_support::forge_fake::Contract;
use serde_json::json;

#[test]
fn descriptions_load_with_every_operation_the_drivers_use() {
    let github = Contract::github().operation_ids();
    for id in [
        "repos/get",
        "pulls/list",
        "pulls/create",
        "pulls/update",
        "issues/add-labels",
        "checks/list-for-ref",
        "apps/create-installation-access-token",
    ] {
        assert!(
            github.contains(&id),
            "{id} missing from the GitHub description"
        );
    }
    let gitea = Contract::gitea().operation_ids();
    for id in [
        "repoGet",
        "repoGetPullRequestByBaseHead",
        "repoCreatePullRequest",
        "issueCreateLabel",
        "repoGetCombinedStatusByRef",
    ] {
        assert!(
            gitea.contains(&id),
            "{id} missing from the Gitea description"
        );
    }
}

#[test]
fn validator_rejects_wrong_types_and_missing_fields() {
    let contract = Contract::github();
    let segments: Vec<String> = "repos/acme/widget/pulls"
        .split('/')
        .map(str::to_string)
        .collect();
    let (op, params) = contract.find("POST", &segments).expect("pulls/create");
    assert!(
        contract
            .check_request(
                op,
                &params,
                &[],
                Some(&json!({"title": "t", "head": "h", "base": "main"}))
            )
            .is_empty()
    );
    let wrong = contract.check_request(op, &params, &[], Some(&json!({"title": 5, "head": "h"})));
    assert!(wrong.iter().any(|e| e.contains("title")), "{wrong:?}");
    let answer = contract.check_response(op, 201, &json!({"number": 1}));
    assert!(
        answer.iter().any(|e| e.contains("required property")),
        "{answer:?}"
    );
    let undeclared = contract.check_request(op, &params, &[("bogus".into(), "1".into())], None);
    assert!(
        undeclared.iter().any(|e| e.contains("bogus")),
        "{undeclared:?}"
    );
}
