//! The gateway's route file (TOML): which audience the upstream is, and which scopes
//! each method + path needs. The first rule that matches decides; a request no rule
//! matches is refused (default deny).
//!
//! ```toml
//! audience = "https://api.example.com/orders"
//! resource_base = "https://api.example.com"   # the public origin, for DPoP `htu`
//!
//! [[route]]
//! method = "GET"                # or "*", or a list: ["GET", "HEAD"]
//! path = "/orders/**"           # `*` one segment, `**` (last) any rest
//! scopes = ["orders:read"]
//!
//! [[route]]
//! method = "POST"
//! path = "/orders"
//! scopes = ["orders:write"]
//! dpop = "required"             # bearer tokens refused, even valid ones
//! ```
//!
//! Paths are matched after percent-decoding; a path the upstream could read differently
//! from the gateway (dot segments, empty segments, an encoded `/`, `\` or `%`, `;`, a raw
//! `#`, control characters) matches no rule, and neither does one that another rule
//! would match if a trailing slash or the case of letters were ignored, as many
//! upstreams do.

use std::fmt;

use serde::Deserialize;

/// A route file that cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum RouteError {
    /// Not TOML, or not this shape.
    #[error("route file: {0}")]
    Syntax(String),
    /// A rule that cannot mean what it says.
    #[error("route {index}: {reason}")]
    Rule {
        /// 1-based position in the file.
        index: usize,
        /// What is wrong.
        reason: String,
    },
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct File {
    audience: String,
    resource_base: Option<String>,
    #[serde(default)]
    route: Vec<RuleFile>,
}

#[derive(Debug, Deserialize)]
#[serde(untagged)]
enum Methods {
    One(String),
    Many(Vec<String>),
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RuleFile {
    method: Methods,
    path: String,
    #[serde(default)]
    scopes: Vec<String>,
    dpop: Option<Dpop>,
}

/// Whether a route accepts bearer tokens.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum Dpop {
    /// Bearer or DPoP (a DPoP-bound token still needs its proof).
    #[default]
    Optional,
    /// Only DPoP-bound tokens with their proof.
    Required,
}

/// One segment of a path pattern.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Segment {
    Literal(String),
    /// `*`: any one non-empty segment.
    One,
    /// `**`, last: zero or more segments.
    Rest,
}

/// One rule: methods, path pattern, scopes.
#[derive(Debug, Clone)]
pub struct Rule {
    /// Upper-case methods; empty means any.
    methods: Vec<String>,
    pattern: String,
    segments: Vec<Segment>,
    /// Scopes the token must carry (all of them).
    pub scopes: Vec<String>,
    /// Whether bearer tokens are refused.
    pub dpop: Dpop,
}

/// A parsed route file.
#[derive(Debug, Clone)]
pub struct RouteTable {
    /// The upstream's audience: tokens for any other are refused.
    pub audience: String,
    /// The upstream's public origin, for DPoP proofs.
    pub resource_base: Option<String>,
    rules: Vec<Rule>,
}

impl RouteTable {
    /// Parses and checks a route file.
    ///
    /// # Errors
    /// [`RouteError`] naming the first problem.
    pub fn parse(text: &str) -> Result<Self, RouteError> {
        let file: File = toml::from_str(text).map_err(|e| RouteError::Syntax(e.to_string()))?;
        if file.audience.trim().is_empty() {
            return Err(RouteError::Syntax("audience is empty".into()));
        }
        if let Some(base) = &file.resource_base
            && !(base.starts_with("https://") || base.starts_with("http://"))
        {
            return Err(RouteError::Syntax(
                "resource_base must be an http(s) origin".into(),
            ));
        }
        let rules = file
            .route
            .into_iter()
            .enumerate()
            .map(|(i, rule)| {
                Rule::parse(rule).map_err(|reason| RouteError::Rule {
                    index: i + 1,
                    reason,
                })
            })
            .collect::<Result<Vec<_>, _>>()?;
        Ok(Self {
            audience: file.audience,
            resource_base: file
                .resource_base
                .map(|b| b.trim_end_matches('/').to_owned()),
            rules,
        })
    }

    /// The first rule matching `method` and the request target (path and query as the
    /// client sent them); none when no rule matches or the path is ambiguous.
    pub fn find(&self, method: &str, target: &str) -> Option<&Rule> {
        let path = canonical_path(target)?;
        let segments: Vec<&str> = path.split('/').skip(1).collect();
        let first = |loose| {
            self.rules
                .iter()
                .position(|rule| rule.allows_method(method) && rule.matches(&segments, loose))
        };
        let exact = first(false);
        // Many upstreams ignore a trailing slash, some the case of letters: where
        // reading the path their way picks another rule, the path is ambiguous.
        if first(true) != exact {
            return None;
        }
        exact.and_then(|i| self.rules.get(i))
    }
}

impl Rule {
    fn parse(file: RuleFile) -> Result<Self, String> {
        let methods = match file.method {
            Methods::One(m) => vec![m],
            Methods::Many(ms) => ms,
        };
        if methods.is_empty() {
            return Err("no method".into());
        }
        let any = methods.iter().any(|m| m == "*");
        for m in &methods {
            if m != "*" && (m.is_empty() || !m.bytes().all(|b| b.is_ascii_alphabetic())) {
                return Err(format!("method {m:?} is not an HTTP method"));
            }
        }
        let methods = if any {
            Vec::new()
        } else {
            methods.iter().map(|m| m.to_ascii_uppercase()).collect()
        };
        let Some(rest) = file.path.strip_prefix('/') else {
            return Err(format!("path {:?} must start with /", file.path));
        };
        let parts: Vec<&str> = rest.split('/').collect();
        let mut segments = Vec::with_capacity(parts.len());
        for (i, part) in parts.iter().enumerate() {
            segments.push(match *part {
                "**" if i + 1 == parts.len() => Segment::Rest,
                "**" => return Err("** may only be the last segment".into()),
                "*" => Segment::One,
                "" if i + 1 == parts.len() => Segment::Literal(String::new()),
                "" | "." | ".." => return Err(format!("path {:?} is not canonical", file.path)),
                p if p.contains('*') => return Err(format!("segment {p:?}: * stands alone")),
                p => Segment::Literal(p.to_owned()),
            });
        }
        for scope in &file.scopes {
            mayfly_core::Scope::parse(scope).map_err(|e| format!("scope {scope:?}: {e}"))?;
        }
        Ok(Self {
            methods,
            pattern: file.path,
            segments,
            scopes: file.scopes,
            dpop: file.dpop.unwrap_or_default(),
        })
    }

    fn allows_method(&self, method: &str) -> bool {
        self.methods.is_empty() || self.methods.iter().any(|m| m == method)
    }

    /// Whether the path's segments match; `loose`: as an upstream that ignores a trailing
    /// slash and the case of letters would read both.
    fn matches(&self, path: &[&str], loose: bool) -> bool {
        let (pattern, path) = if loose {
            (
                pattern_without_trailing_slash(&self.segments),
                path_without_trailing_slash(path),
            )
        } else {
            (&self.segments[..], path)
        };
        let mut i = 0;
        for segment in pattern {
            match segment {
                Segment::Rest => return true,
                Segment::One => {
                    if path.get(i).is_none_or(|p| p.is_empty()) {
                        return false;
                    }
                }
                Segment::Literal(l) => {
                    let same = path.get(i).is_some_and(|p| {
                        if loose {
                            p.eq_ignore_ascii_case(l)
                        } else {
                            p == l
                        }
                    });
                    if !same {
                        return false;
                    }
                }
            }
            i += 1;
        }
        i == path.len()
    }
}

/// A pattern's segments without the empty last one a trailing slash makes (the root's
/// own stays).
fn pattern_without_trailing_slash(segments: &[Segment]) -> &[Segment] {
    match segments.split_last() {
        Some((Segment::Literal(last), rest)) if last.is_empty() && !rest.is_empty() => rest,
        _ => segments,
    }
}

/// A path's segments without the empty last one a trailing slash makes (the root's own
/// stays).
fn path_without_trailing_slash<'a, 'b>(segments: &'a [&'b str]) -> &'a [&'b str] {
    match segments.split_last() {
        Some((last, rest)) if last.is_empty() && !rest.is_empty() => rest,
        _ => segments,
    }
}

/// The path of a request target, percent-decoded; none when the upstream could read it
/// as another path than the gateway (so no rule matches and the request is refused).
pub fn canonical_path(target: &str) -> Option<String> {
    // A fragment is never sent; a raw `#` that reaches us (nginx passes it on) is part
    // of the path to some upstreams (Go) and its end to others.
    if target.contains('#') {
        return None;
    }
    let raw = target.split('?').next().unwrap_or_default();
    if !raw.starts_with('/') {
        return None;
    }
    let bytes = raw.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let b = bytes[i];
        if b == b'%' {
            let hex = bytes.get(i + 1..i + 3)?;
            let hex = std::str::from_utf8(hex).ok()?;
            let decoded = u8::from_str_radix(hex, 16).ok()?;
            // An encoded separator or escape reads differently upstream.
            if matches!(decoded, b'/' | b'\\' | b'%') {
                return None;
            }
            out.push(decoded);
            i += 3;
        } else {
            out.push(b);
            i += 1;
        }
    }
    let path = String::from_utf8(out).ok()?;
    // A `;` starts path parameters, which Tomcat, Jetty and Spring strip from each
    // segment before resolving dot segments (`/public/..;/admin` is `/admin` there).
    if path
        .chars()
        .any(|c| c.is_control() || c == '\\' || c == ';')
    {
        return None;
    }
    let segments: Vec<&str> = path.split('/').skip(1).collect();
    let last = segments.len().saturating_sub(1);
    for (i, s) in segments.iter().enumerate() {
        if *s == "." || *s == ".." || (s.is_empty() && i != last) {
            return None;
        }
    }
    Some(path)
}

impl fmt::Display for RouteTable {
    /// The effective table, as `mayfly gateway check` prints it.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "audience: {}", self.audience)?;
        match &self.resource_base {
            Some(base) => writeln!(f, "resource_base: {base}")?,
            None => writeln!(f, "resource_base: (none: DPoP-bound tokens are refused)")?,
        }
        for (i, rule) in self.rules.iter().enumerate() {
            let methods = if rule.methods.is_empty() {
                "*".to_owned()
            } else {
                rule.methods.join(",")
            };
            let scopes = if rule.scopes.is_empty() {
                "(any valid token)".to_owned()
            } else {
                rule.scopes.join(" ")
            };
            let dpop = match rule.dpop {
                Dpop::Required => "  [dpop required]",
                Dpop::Optional => "",
            };
            writeln!(
                f,
                "{:>3}. {methods:<12} {:<32} -> {scopes}{dpop}",
                i + 1,
                rule.pattern
            )?;
        }
        write!(
            f,
            "  *. anything else                                 -> deny"
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const FILE: &str = r#"
        audience = "https://api.example.com/orders"
        resource_base = "https://api.example.com/"

        [[route]]
        method = ["GET", "head"]
        path = "/orders/*/items/**"
        scopes = ["orders:read"]

        [[route]]
        method = "POST"
        path = "/orders"
        scopes = ["orders:write"]
        dpop = "required"

        [[route]]
        method = "*"
        path = "/health"
    "#;

    #[test]
    fn first_match_wins_and_anything_else_is_denied() {
        let table = RouteTable::parse(FILE).unwrap();
        assert_eq!(
            table.resource_base.as_deref(),
            Some("https://api.example.com")
        );
        let scopes = |m: &str, p: &str| table.find(m, p).map(|r| r.scopes.join(" "));
        assert_eq!(
            scopes("GET", "/orders/7/items").as_deref(),
            Some("orders:read")
        );
        assert_eq!(
            scopes("HEAD", "/orders/7/items/1/x?y=/z").as_deref(),
            Some("orders:read")
        );
        assert_eq!(scopes("GET", "/orders//items"), None);
        assert_eq!(scopes("GET", "/orders/7"), None);
        assert_eq!(scopes("POST", "/orders").as_deref(), Some("orders:write"));
        assert_eq!(table.find("POST", "/orders").unwrap().dpop, Dpop::Required);
        assert_eq!(scopes("POST", "/orders/"), None);
        assert_eq!(scopes("DELETE", "/orders"), None);
        assert_eq!(scopes("DELETE", "/health").as_deref(), Some(""));
        assert_eq!(scopes("GET", "/"), None);
    }

    #[test]
    fn paths_the_upstream_could_read_otherwise_match_nothing() {
        let table = RouteTable::parse(FILE).unwrap();
        // Decoded before matching: an encoded letter is the letter.
        assert!(table.find("POST", "/%6frders").is_some());
        for path in [
            "/orders/7/items/../../../health",
            "/orders/./7/items",
            "/orders%2f7/items",
            "/orders/7%5citems",
            "/orders/%2e%2e/x",
            "/orders/%00/items",
            "/orders/7/items/..;/../../health",
            "/orders/7/items/..%3b/../../health",
            "/orders/7;x/items",
            "/orders/%zz/items",
            "/orders/%e2/items",
            "orders",
            "",
            "//health",
            // A raw `#` never belongs in a request target; nginx passes it on and Go
            // keeps it in the path (`/health#/x` is a path under `/health#` there).
            "/health#/x",
        ] {
            assert!(table.find("GET", path).is_none(), "{path}");
        }
    }

    /// Many upstreams ignore a trailing slash (Express, Rails, Spring 5) and some the
    /// case of letters (Express, ASP.NET): a path they would route to a stricter rule's
    /// handler must not pass under a weaker rule.
    #[test]
    fn a_path_an_upstream_reads_as_a_stricter_rules_is_refused() {
        let table = RouteTable::parse(
            r#"
            audience = "https://api.example.com/orders"
            [[route]]
            method = "GET"
            path = "/orders/export"
            scopes = ["orders:export"]
            [[route]]
            method = "GET"
            path = "/orders/reports/"
            scopes = ["orders:export"]
            [[route]]
            method = "GET"
            path = "/orders/**"
            scopes = ["orders:read"]
        "#,
        )
        .unwrap();
        let scopes = |p: &str| table.find("GET", p).map(|r| r.scopes.join(" "));
        assert_eq!(scopes("/orders/export").as_deref(), Some("orders:export"));
        assert_eq!(scopes("/orders/reports/").as_deref(), Some("orders:export"));
        assert_eq!(scopes("/orders/7").as_deref(), Some("orders:read"));
        assert_eq!(scopes("/orders/7/").as_deref(), Some("orders:read"));
        for path in [
            "/orders/export/",
            "/orders/EXPORT",
            "/orders/Export/",
            "/orders/reports",
            "/orders/REPORTS/",
        ] {
            assert_eq!(scopes(path), None, "{path}");
        }
    }

    #[test]
    fn bad_files_are_refused_with_the_rule_named() {
        for (file, wanted) in [
            ("audience = \"\"", "audience is empty"),
            (
                "[[route]]\nmethod=\"GET\"\npath=\"/\"",
                "missing field `audience`",
            ),
            (
                "audience=\"a\"\n[[route]]\nmethod=\"GET\"\npath=\"x\"",
                "route 1: path",
            ),
            (
                "audience=\"a\"\n[[route]]\nmethod=\"GET\"\npath=\"/**/x\"",
                "route 1: **",
            ),
            (
                "audience=\"a\"\n[[route]]\nmethod=\"G T\"\npath=\"/\"",
                "not an HTTP method",
            ),
            (
                "audience=\"a\"\n[[route]]\nmethod=\"GET\"\npath=\"/a*\"",
                "stands alone",
            ),
            (
                "audience=\"a\"\n[[route]]\nmethod=\"GET\"\npath=\"/a/../b\"",
                "not canonical",
            ),
            (
                "audience=\"a\"\n[[route]]\nmethod=\"GET\"\npath=\"/\"\nscopes=[\"a b\"]",
                "scope",
            ),
            (
                "audience=\"a\"\n[[route]]\nmethod=\"GET\"\npath=\"/\"\ndpop=\"maybe\"",
                "route",
            ),
            (
                "audience=\"a\"\n[[route]]\nmethod=\"GET\"\npath=\"/\"\nscope=[\"x\"]",
                "unknown field",
            ),
        ] {
            let error = RouteTable::parse(file).unwrap_err().to_string();
            assert!(error.contains(wanted), "{file}: {error}");
        }
    }

    #[test]
    fn check_prints_the_effective_table() {
        let printed = RouteTable::parse(FILE).unwrap().to_string();
        assert!(printed.contains("1. GET,HEAD"), "{printed}");
        assert!(printed.contains("[dpop required]"), "{printed}");
        assert!(printed.ends_with("-> deny"), "{printed}");
    }
}
