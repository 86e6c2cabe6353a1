//! Untrusted text: whatever a request said, made safe to store and to log.
//!
//! Databases refuse some bytes (Postgres `text` and `jsonb` refuse NUL), terminals and
//! log viewers interpret others (ANSI escapes, newlines that forge log lines, bidi
//! overrides that reorder what a reader sees). [`UntrustedText`] is the one boundary: a
//! value of it holds no control character and is at most a known length, so anything
//! built from it can be written anywhere.

use std::fmt;

/// Request-derived text that is safe to store and log: control characters (Unicode
/// `Cc`, which includes NUL, DEL and the C1 set) and invisible reordering characters are
/// escaped as `\u{…}` (the backslash itself as `\\`), so nothing is silently dropped and
/// the original can be read back; then it is cut to a length cap, ending in `…` when cut.
#[derive(Clone, PartialEq, Eq, Hash, Default, serde::Serialize)]
#[serde(transparent)]
pub struct UntrustedText(String);

impl UntrustedText {
    /// The cap [`UntrustedText::new`] applies, in characters: more than any legitimate
    /// scope list, audience URI, client id or user agent needs.
    pub const MAX_CHARS: usize = 256;

    /// Escapes `raw` and caps it at [`Self::MAX_CHARS`] characters.
    pub fn new(raw: &str) -> Self {
        Self::capped(raw, Self::MAX_CHARS)
    }

    /// Escapes `raw` and caps it at `max_chars` characters (at least 1). An escape
    /// sequence is never cut in half.
    pub fn capped(raw: &str, max_chars: usize) -> Self {
        let max_chars = max_chars.max(1);
        // Nearly all text is printable ASCII that fits: nothing to escape or cut.
        if raw.len() <= max_chars && raw.bytes().all(|b| is_plain(b) && b != b'\\') {
            return Self(raw.to_owned());
        }
        Self::escaped(raw, max_chars)
    }

    fn escaped(raw: &str, max_chars: usize) -> Self {
        let mut out = String::with_capacity(raw.len().min(max_chars.saturating_mul(4)));
        let mut count = 0;
        // Where the text ends if it turns out too long: the last piece that leaves room
        // for the ellipsis.
        let mut cut = 0;
        // Most characters stand for themselves: encoded in place, not allocated.
        let mut buf = [0u8; 4];
        for c in raw.chars() {
            let piece = escape(c, &mut buf);
            let len = piece.chars().count();
            if count + len > max_chars {
                out.truncate(cut);
                out.push('…');
                return Self(out);
            }
            out.push_str(&piece);
            count += len;
            if count < max_chars {
                cut = out.len();
            }
        }
        Self(out)
    }

    /// Whether `raw` holds no control or reordering character and is at most
    /// `max_chars` long: safe to store as it is. Backslashes are fine here (the text may
    /// already be escaped), so checking an [`UntrustedText`] again never escapes it twice.
    pub fn is_clean(raw: &str, max_chars: usize) -> bool {
        if raw.bytes().all(is_plain) {
            return raw.len() <= max_chars;
        }
        Self::is_clean_text(raw, max_chars)
    }

    fn is_clean_text(raw: &str, max_chars: usize) -> bool {
        !raw.chars().any(is_hazard) && raw.chars().count() <= max_chars
    }

    /// The escaped text.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The escaped text, owned.
    pub fn into_string(self) -> String {
        self.0
    }
}

/// Whether `b` is printable ASCII: one character, never a hazard.
fn is_plain(b: u8) -> bool {
    (0x20..0x7f).contains(&b)
}

/// Whether `c` must not reach storage or logs as itself.
fn is_hazard(c: char) -> bool {
    c.is_control()
        // Zero-width and bidirectional formatting characters (Trojan Source, CVE-2021-42574).
        || matches!(c, '\u{200b}'..='\u{200f}' | '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}' | '\u{feff}')
}

fn escape(c: char, buf: &mut [u8; 4]) -> std::borrow::Cow<'_, str> {
    if c == '\\' {
        "\\\\".into()
    } else if is_hazard(c) {
        format!("\\u{{{:x}}}", c as u32).into()
    } else {
        (&*c.encode_utf8(buf)).into()
    }
}

impl fmt::Display for UntrustedText {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl fmt::Debug for UntrustedText {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&self.0, f)
    }
}

impl From<&str> for UntrustedText {
    fn from(raw: &str) -> Self {
        Self::new(raw)
    }
}

impl From<UntrustedText> for String {
    fn from(text: UntrustedText) -> Self {
        text.0
    }
}

impl AsRef<str> for UntrustedText {
    fn as_ref(&self) -> &str {
        &self.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(raw: &str, max: usize, expected: &str) {
        assert_eq!(
            UntrustedText::capped(raw, max).as_str(),
            expected,
            "{raw:?}"
        );
    }

    #[test]
    fn escapes_and_caps() {
        check("orders:read", 256, "orders:read");
        check("\0", 256, "\\u{0}");
        check("a\nb\r\t", 256, "a\\u{a}b\\u{d}\\u{9}");
        check("\u{1b}[31m\u{7f}\u{85}", 256, "\\u{1b}[31m\\u{7f}\\u{85}");
        check("\u{202e}gnp.exe", 256, "\\u{202e}gnp.exe");
        check("back\\slash", 256, "back\\\\slash");
        check("héllo wörld", 256, "héllo wörld");
        // Cut: at most max characters, ending in an ellipsis, never inside an escape.
        check("abcdef", 6, "abcdef");
        check("abcdefg", 6, "abcde…");
        check("abcd\0", 6, "abcd…");
        check("\0\0", 1, "…");
        check("", 0, "");
        assert!(UntrustedText::is_clean("orders:read", 11));
        assert!(!UntrustedText::is_clean("orders:read", 10));
        assert!(!UntrustedText::is_clean("a\0", 10));
        let once = UntrustedText::new("a\0b\\c");
        assert!(UntrustedText::is_clean(once.as_str(), 256));
    }

    /// The printable-ASCII shortcuts answer what the character-by-character paths do:
    /// every string of up to four characters from an alphabet of edge cases, every cap.
    #[test]
    fn shortcuts_agree_with_the_full_paths() {
        let alphabet = [
            'a', ' ', '~', '\\', '\u{1f}', '\u{7f}', '\u{85}', 'é', '\u{202e}',
        ];
        let mut texts = vec![String::new()];
        let mut layer = vec![String::new()];
        for _ in 0..4 {
            layer = layer
                .iter()
                .flat_map(|t| alphabet.iter().map(move |c| format!("{t}{c}")))
                .collect();
            texts.extend(layer.iter().cloned());
        }
        assert_eq!(texts.len(), 1 + 9 + 81 + 729 + 6561);
        for text in &texts {
            for max in 0..=6 {
                assert_eq!(
                    UntrustedText::capped(text, max),
                    UntrustedText::escaped(text, max.max(1)),
                    "{text:?} capped at {max}"
                );
                assert_eq!(
                    UntrustedText::is_clean(text, max),
                    UntrustedText::is_clean_text(text, max),
                    "{text:?} clean within {max}"
                );
            }
        }
    }
}
