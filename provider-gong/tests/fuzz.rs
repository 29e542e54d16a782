//! Property-based fuzzing of the guest's parsing of Gong answers, run
//! natively: truncated JSON, wrong types, huge numbers, missing or repeated
//! cursors must give errors or empty results, never panics (a panic in the
//! component is a crash of the call).

use proptest::prelude::*;
use provider_gong::gong::{self, CallsPage, UsersPage};
use serde_json::{Value, json};

fn json_value() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::from),
        any::<i64>().prop_map(Value::from),
        any::<u64>().prop_map(Value::from),
        any::<f64>().prop_filter("finite", |f| f.is_finite()).prop_map(Value::from),
        "\\PC{0,12}".prop_map(Value::from),
    ];
    leaf.prop_recursive(4, 32, 6, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..6).prop_map(Value::from),
            prop::collection::btree_map(
                prop_oneof![
                    "\\PC{0,8}",
                    Just("id".to_string()),
                    Just("cursor".to_string()),
                    Just("records".to_string()),
                    Just("users".to_string())
                ],
                inner,
                0..6
            )
            .prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
}

/// The CI smoke's case count, or `PROPTEST_CASES` for a longer run.
fn cases(smoke: u32) -> u32 {
    std::env::var("PROPTEST_CASES").ok().and_then(|v| v.parse().ok()).unwrap_or(smoke)
}

proptest! {
    #![proptest_config(ProptestConfig { cases: cases(1024), ..ProptestConfig::default() })]

    #[test]
    fn any_bytes_are_an_error_or_a_page(body in prop::collection::vec(any::<u8>(), 0..256)) {
        let _ = gong::decode::<UsersPage>(&body);
        let _ = gong::decode::<CallsPage>(&body);
        let _ = gong::error_message(&body);
    }

    #[test]
    fn any_json_shape_is_an_error_or_a_page(records in json_value(), users in json_value(), calls in json_value()) {
        let body = serde_json::to_vec(&json!({ "requestId": "x", "records": records, "users": users, "calls": calls })).unwrap();
        if let Ok(page) = gong::decode::<UsersPage>(&body) {
            for user in page.users {
                prop_assert!(!user.id.is_empty());
                let _ = serde_json::to_string(&gong::User::from(user)).unwrap();
            }
        }
        if let Ok(page) = gong::decode::<CallsPage>(&body) {
            for call in page.calls {
                let _ = serde_json::to_string(&gong::Call::from(call)).unwrap();
            }
        }
    }

    #[test]
    fn truncated_real_pages_never_panic(cut in 0usize..400) {
        let body = br#"{"requestId":"r","records":{"totalRecords":18446744073709551615,"currentPageSize":2,"cursor":"eyJh"},"users":[{"id":"7782342274025937895","emailAddress":"a@b.c","active":true,"managerId":99999999999999999999},{"id":1}]}"#;
        let _ = gong::decode::<UsersPage>(&body[..cut.min(body.len())]);
    }

    #[test]
    fn error_bodies_give_a_printable_message(body in "\\PC{0,300}") {
        let message = gong::error_message(body.as_bytes());
        prop_assert!(!message.chars().any(|c| c.is_control()));
        prop_assert!(message.chars().count() <= 300);
    }
}
