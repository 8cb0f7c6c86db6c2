//! Python list literals of strings, as `repr(list_of_str)` writes them: `['Hund', 'Köter']`.
//!
//! Dumas et al.'s CSV cells are such literals (their loader runs `ast.literal_eval` on them).
//! This is the subset of Python's literal syntax that a list of strings needs: single or double
//! quotes, optional `u`/`r` prefixes, adjacent literals concatenated, a trailing comma, the
//! empty list, and the backslash escapes of Python 3 (`\\`, `\'`, `\"`, `\n`, `\t`, `\r`, `\a`,
//! `\b`, `\f`, `\v`, `\0`..`\777`, `\xHH`, `\uHHHH`, `\UHHHHHHHH`, line continuation; an
//! unknown escape keeps its backslash, as Python does). Anything else is an error message.

use std::iter::Peekable;
use std::str::Chars;

/// Parses a Python list of strings.
pub(crate) fn parse(text: &str) -> Result<Vec<String>, String> {
    let mut it = text.chars().peekable();
    skip_ws(&mut it);
    if it.next() != Some('[') {
        return Err(format!(
            "expected a Python list like ['a', 'b'], found {:?}",
            short(text)
        ));
    }
    let mut items = Vec::new();
    loop {
        skip_ws(&mut it);
        match it.peek() {
            Some(']') => {
                it.next();
                break;
            }
            None => return Err("unterminated list: missing ']'".into()),
            _ => {}
        }
        items.push(string_item(&mut it)?);
        skip_ws(&mut it);
        match it.next() {
            Some(',') => {}
            Some(']') => break,
            Some(c) => return Err(format!("expected ',' or ']' in the list, found {c:?}")),
            None => return Err("unterminated list: missing ']'".into()),
        }
    }
    skip_ws(&mut it);
    if let Some(c) = it.next() {
        return Err(format!("unexpected {c:?} after the list"));
    }
    Ok(items)
}

fn short(text: &str) -> String {
    let mut s: String = text.chars().take(40).collect();
    if s.len() < text.len() {
        s.push_str("...");
    }
    s
}

fn skip_ws(it: &mut Peekable<Chars<'_>>) {
    while it.peek().is_some_and(|c| c.is_whitespace()) {
        it.next();
    }
}

/// One list item: one or more adjacent string literals.
fn string_item(it: &mut Peekable<Chars<'_>>) -> Result<String, String> {
    let mut out = String::new();
    let mut any = false;
    loop {
        skip_ws(it);
        // Prefixes: u, r, and their upper-case forms (b would be bytes, not str).
        let mut probe = it.clone();
        let mut prefix = String::new();
        while let Some(&c) = probe.peek() {
            if matches!(c, 'u' | 'U' | 'r' | 'R') && prefix.len() < 2 {
                prefix.push(c);
                probe.next();
            } else {
                break;
            }
        }
        match probe.peek() {
            Some('\'' | '"') => {
                *it = probe;
            }
            _ if any => return Ok(out),
            Some(c) => return Err(format!("expected a quoted string in the list, found {c:?}")),
            None => return Err("unterminated list: missing ']'".into()),
        }
        let raw = prefix.contains(['r', 'R']);
        let quote = it.next().expect("peeked a quote");
        literal(it, quote, raw, &mut out)?;
        any = true;
    }
}

/// The body of a string literal opened by `quote` (the opening quote is consumed).
fn literal(
    it: &mut Peekable<Chars<'_>>,
    quote: char,
    raw: bool,
    out: &mut String,
) -> Result<(), String> {
    loop {
        let Some(c) = it.next() else {
            return Err(format!("unterminated string: missing closing {quote}"));
        };
        match c {
            c if c == quote => return Ok(()),
            '\n' => return Err("newline inside a string literal".into()),
            '\\' if raw => {
                // A raw string keeps the backslash, but `\'` does not end it.
                out.push('\\');
                if let Some(n) = it.next() {
                    out.push(n);
                }
            }
            '\\' => escape(it, out)?,
            c => out.push(c),
        }
    }
}

fn escape(it: &mut Peekable<Chars<'_>>, out: &mut String) -> Result<(), String> {
    let Some(c) = it.next() else {
        return Err("backslash at the end of the text".into());
    };
    let simple = match c {
        '\n' => Some(None),
        '\\' => Some(Some('\\')),
        '\'' => Some(Some('\'')),
        '"' => Some(Some('"')),
        'n' => Some(Some('\n')),
        't' => Some(Some('\t')),
        'r' => Some(Some('\r')),
        'a' => Some(Some('\u{7}')),
        'b' => Some(Some('\u{8}')),
        'f' => Some(Some('\u{c}')),
        'v' => Some(Some('\u{b}')),
        _ => None,
    };
    if let Some(ch) = simple {
        out.extend(ch);
        return Ok(());
    }
    let code = match c {
        '0'..='7' => {
            let mut v = c.to_digit(8).expect("octal digit");
            for _ in 0..2 {
                match it.peek().and_then(|d| d.to_digit(8)) {
                    Some(d) => {
                        v = v * 8 + d;
                        it.next();
                    }
                    None => break,
                }
            }
            v
        }
        'x' => hex(it, 2, c)?,
        'u' => hex(it, 4, c)?,
        'U' => hex(it, 8, c)?,
        'N' => return Err("\\N{...} escapes are not supported".into()),
        other => {
            out.push('\\');
            out.push(other);
            return Ok(());
        }
    };
    let ch = char::from_u32(code).ok_or_else(|| format!("escape U+{code:X} is not a character"))?;
    out.push(ch);
    Ok(())
}

fn hex(it: &mut Peekable<Chars<'_>>, digits: usize, kind: char) -> Result<u32, String> {
    let mut v: u32 = 0;
    for _ in 0..digits {
        let d = it
            .next()
            .and_then(|d| d.to_digit(16))
            .ok_or_else(|| format!("\\{kind} escape needs {digits} hex digits"))?;
        v = v
            .checked_mul(16)
            .and_then(|v| v.checked_add(d))
            .ok_or("escape out of range")?;
    }
    Ok(v)
}

#[cfg(test)]
mod tests {
    use super::parse;

    fn ok(text: &str) -> Vec<String> {
        parse(text).unwrap_or_else(|e| panic!("{text:?}: {e}"))
    }

    #[test]
    fn lists_as_python_writes_them() {
        assert_eq!(ok("['Hund', 'Köter']"), ["Hund", "Köter"]);
        assert_eq!(ok("[]"), Vec::<String>::new());
        assert_eq!(ok("  [ ]  "), Vec::<String>::new());
        assert_eq!(ok("['nuage']"), ["nuage"]);
        assert_eq!(
            ok("[\"ventiquattr'ore\", 'giorno']"),
            ["ventiquattr'ore", "giorno"]
        );
        assert_eq!(ok("['skoor, punktiseis']"), ["skoor, punktiseis"]);
        assert_eq!(ok("['a', 'b',]"), ["a", "b"]);
        assert_eq!(ok("['書', 'ту́ча']"), ["書", "ту́ча"]);
    }

    #[test]
    fn escapes_and_prefixes() {
        assert_eq!(
            ok(r"['it\'s', 'a\\b', 'tab\tx']"),
            ["it's", "a\\b", "tab\tx"]
        );
        assert_eq!(ok(r#"["say \"hi\""]"#), ["say \"hi\""]);
        assert_eq!(
            ok(r"['\xe9t\xe9', '\u00fc', '\U0001F600', '\101']"),
            ["été", "ü", "😀", "A"]
        );
        assert_eq!(ok(r"['\d']"), ["\\d"]);
        assert_eq!(ok(r"[u'x', r'a\b', R'\'']"), ["x", "a\\b", "\\'"]);
        assert_eq!(ok("['ab' 'cd', 'e']"), ["abcd", "e"]);
    }

    #[test]
    fn bad_literals_are_errors() {
        let err = |t: &str| parse(t).unwrap_err();
        assert!(err("Hund").starts_with("expected a Python list"));
        assert_eq!(err("['Hund'"), "unterminated list: missing ']'");
        assert_eq!(err("['Hund"), "unterminated string: missing closing '");
        assert_eq!(err("['a' 1]"), "expected ',' or ']' in the list, found '1'");
        assert_eq!(
            err("[1, 2]"),
            "expected a quoted string in the list, found '1'"
        );
        assert_eq!(
            err("[None]"),
            "expected a quoted string in the list, found 'N'"
        );
        assert_eq!(err("['a'] x"), "unexpected 'x' after the list");
        assert_eq!(err(r"['\x4']"), "\\x escape needs 2 hex digits");
        assert_eq!(err(r"['\ud800']"), "escape U+D800 is not a character");
        assert_eq!(err(r"['\N{DASH}']"), "\\N{...} escapes are not supported");
    }
}
