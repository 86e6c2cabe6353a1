//! What every property-based fuzz target shares: a committed seed corpus, mutations of
//! it, arbitrary input, and a bounded number of cases.
//!
//! A corpus file holds one input per line (`#` starts a comment line); `\n`, `\r`,
//! `\t`, `\0`, `\\` and `\xHH` escape what a line cannot hold. Each run checks every seed
//! and `cases()` generated inputs: seeds, seeds with a character inserted, deleted or
//! replaced, and arbitrary strings. A failure proptest finds is saved beside the target
//! (`*.proptest-regressions`, committed) and replayed first on every later run.

use proptest::prelude::*;

/// Generated cases per target: 256, or `PROPTEST_CASES`.
pub fn cases() -> u32 {
    std::env::var("PROPTEST_CASES")
        .ok()
        .and_then(|n| n.parse().ok())
        .unwrap_or(256)
}

/// The test configuration every target uses.
pub fn config() -> ProptestConfig {
    ProptestConfig {
        cases: cases(),
        max_shrink_iters: 2048,
        ..ProptestConfig::default()
    }
}

/// The inputs of a corpus file.
pub fn seeds(corpus: &str) -> Vec<String> {
    corpus
        .lines()
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .map(unescape)
        .collect()
}

fn unescape(line: &str) -> String {
    let mut out = String::new();
    let mut chars = line.chars();
    while let Some(c) = chars.next() {
        if c != '\\' {
            out.push(c);
            continue;
        }
        match chars.next() {
            Some('n') => out.push('\n'),
            Some('r') => out.push('\r'),
            Some('t') => out.push('\t'),
            Some('0') => out.push('\0'),
            Some('x') => {
                let hex: String = chars.by_ref().take(2).collect();
                out.push(char::from(u8::from_str_radix(&hex, 16).unwrap()));
            }
            Some(other) => out.push(other),
            None => out.push('\\'),
        }
    }
    out
}

/// Seeds, mutated seeds, and arbitrary strings (short and long).
pub fn inputs(seeds: Vec<String>) -> impl Strategy<Value = String> {
    let pick = proptest::sample::select(seeds);
    prop_oneof![
        2 => pick.clone(),
        4 => (pick, any::<proptest::sample::Index>(), any::<char>(), 0..4u8)
            .prop_map(|(seed, at, c, op)| mutate(&seed, at, c, op)),
        1 => any::<String>(),
        1 => proptest::collection::vec(any::<u8>(), 0..512)
            .prop_map(|bytes| String::from_utf8_lossy(&bytes).into_owned()),
    ]
}

/// One edit of `seed` at a position: insert, delete, replace a character, or cut there.
fn mutate(seed: &str, at: proptest::sample::Index, c: char, op: u8) -> String {
    let mut chars: Vec<char> = seed.chars().collect();
    let i = if chars.is_empty() {
        0
    } else {
        at.index(chars.len())
    };
    match op {
        0 => chars.insert(i, c),
        1 if !chars.is_empty() => {
            chars.remove(i);
        }
        2 if !chars.is_empty() => chars[i] = c,
        _ => chars.truncate(i),
    }
    chars.into_iter().collect()
}
