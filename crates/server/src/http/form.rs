//! Strict `application/x-www-form-urlencoded` bodies for the OAuth endpoints.
//!
//! RFC 6749 §3.1: parameters sent without a value are treated as omitted; §3.2:
//! parameters must not be repeated. `resource` (RFC 8707) may legally repeat; callers
//! get all of its values and decide.

use std::collections::HashMap;

use zeroize::Zeroizing;

pub use crate::oauth::error::FormError;

/// A parsed form. Values are zeroized on drop: they may hold secrets.
#[derive(Default)]
pub struct Form {
    single: HashMap<String, Zeroizing<String>>,
    resources: Vec<String>,
}

impl std::fmt::Debug for Form {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Form")
            .field("keys", &self.single.keys().collect::<Vec<_>>())
            .finish_non_exhaustive()
    }
}

impl Form {
    /// Parses a body after checking its content type.
    ///
    /// # Errors
    /// [`FormError`] for a wrong content type or a repeated parameter.
    pub fn parse(content_type: Option<&str>, body: &[u8]) -> Result<Self, FormError> {
        let media_type = content_type
            .and_then(|ct| ct.split(';').next())
            .map(str::trim);
        if !media_type.is_some_and(|m| m.eq_ignore_ascii_case("application/x-www-form-urlencoded"))
        {
            return Err(FormError::ContentType);
        }
        let mut form = Self::default();
        for (key, value) in form_urlencoded::parse(body) {
            if value.is_empty() {
                continue;
            }
            if key == "resource" {
                form.resources.push(value.into_owned());
                continue;
            }
            if form.single.contains_key(key.as_ref()) {
                let shown: String = key
                    .chars()
                    .filter(|c| c.is_ascii_graphic())
                    .take(32)
                    .collect();
                return Err(FormError::Repeated(shown));
            }
            form.single
                .insert(key.into_owned(), Zeroizing::new(value.into_owned()));
        }
        Ok(form)
    }

    /// A parameter's value, if present and non-empty.
    pub fn get(&self, name: &str) -> Option<&str> {
        self.single.get(name).map(|v| v.as_str())
    }

    /// Every `resource` value, in order.
    pub fn resources(&self) -> &[String] {
        &self.resources
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const FORM: Option<&str> = Some("application/x-www-form-urlencoded");

    #[test]
    fn parses_and_treats_empty_as_omitted() {
        let f = Form::parse(
            Some("Application/X-WWW-Form-Urlencoded; charset=UTF-8"),
            b"a=1&b=&c=x+y%21",
        )
        .unwrap();
        assert_eq!(f.get("a"), Some("1"));
        assert_eq!(f.get("b"), None);
        assert_eq!(f.get("c"), Some("x y!"));
        let f = Form::parse(FORM, b"b=&b=2").unwrap();
        assert_eq!(f.get("b"), Some("2"));
    }

    #[test]
    fn refuses_repeats_and_wrong_types() {
        assert_eq!(
            Form::parse(FORM, b"a=1&a=2").unwrap_err(),
            FormError::Repeated("a".into())
        );
        assert_eq!(
            Form::parse(Some("application/json"), b"{}").unwrap_err(),
            FormError::ContentType
        );
        assert_eq!(
            Form::parse(None, b"a=1").unwrap_err(),
            FormError::ContentType
        );
        let f = Form::parse(FORM, b"resource=a:1&resource=b:2").unwrap();
        assert_eq!(f.resources(), ["a:1", "b:2"]);
    }
}
