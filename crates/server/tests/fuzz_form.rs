//! Property-based fuzzing of the OAuth form parser (`http::form`), every token,
//! introspection and revocation request's first step. The seed corpus is
//! `tests/corpus/form.txt`; the shared harness (mutations, case count) is mayfly-core's.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

#[path = "../../core/tests/fuzz_support/mod.rs"]
mod fuzz_support;

use fuzz_support::{config, inputs, seeds};
use mayfly_server::http::form::Form;
use proptest::prelude::*;

fn corpus() -> Vec<String> {
    let path = format!("{}/tests/corpus/form.txt", env!("CARGO_MANIFEST_DIR"));
    seeds(&std::fs::read_to_string(path).unwrap())
}

proptest! {
    #![proptest_config(config())]

    /// Any body and content type: no panic; a parsed form holds each parameter once,
    /// with the value the body gave it.
    #[test]
    fn oauth_form_parser(body in inputs(corpus()), content_type in prop_oneof![
        Just(Some("application/x-www-form-urlencoded")),
        Just(Some("application/x-www-form-urlencoded; charset=UTF-8")),
        Just(Some("APPLICATION/X-WWW-FORM-URLENCODED")),
        Just(Some("application/json")),
        Just(None),
    ]) {
        let parsed = Form::parse(content_type, body.as_bytes());
        let form_type = content_type
            .is_some_and(|c| c.to_ascii_lowercase().starts_with("application/x-www-form-urlencoded"));
        if !form_type {
            prop_assert!(parsed.is_err());
        }
        if let Ok(form) = parsed {
            let pairs: Vec<(String, String)> = form_urlencoded::parse(body.as_bytes())
                .into_owned()
                .filter(|(_, v)| !v.is_empty())
                .collect();
            for (key, value) in &pairs {
                if key == "resource" {
                    prop_assert!(form.resources().contains(value));
                } else {
                    prop_assert_eq!(pairs.iter().filter(|(k, _)| k == key).count(), 1);
                    prop_assert_eq!(form.get(key), Some(value.as_str()));
                }
            }
        }
    }
}
