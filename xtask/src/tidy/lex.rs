//! Rust source as tidy reads it: comments and the insides of literals blanked out (newlines
//! kept, so a line number still points into the file), the string literals set aside for the
//! SQL rule, and a flat token stream for the path rules.
//!
//! A lexer, not a parser: tidy must run in a second with no compiler, and its rules look only
//! at paths, names and literals. Blanking rather than deleting keeps every position valid.

/// One source file, lexed.
pub struct Lexed {
    /// The tokens of the code, comments and literal contents gone.
    pub tokens: Vec<Token>,
    /// The string literals, in order.
    pub strings: Vec<StrLit>,
}

/// A string literal: the line of its opening quote and its text (escapes of ordinary strings
/// decoded well enough to see where the text starts).
pub struct StrLit {
    pub line: usize,
    pub text: String,
}

/// An identifier, keyword or number, or punctuation: `::`, `->`, `=>` or one character. A
/// blanked literal leaves its quotes behind as punctuation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Token {
    pub text: String,
    pub line: usize,
}

impl Token {
    pub fn is(&self, text: &str) -> bool {
        self.text == text
    }

    pub fn is_ident(&self) -> bool {
        self.text
            .starts_with(|c: char| c.is_alphabetic() || c == '_')
    }
}

pub fn lex(src: &str) -> Lexed {
    let (code, strings) = strip(src);
    Lexed {
        tokens: tokenize(&code),
        strings,
    }
}

/// The blanked text being written, and its current line.
struct Out {
    text: String,
    line: usize,
}

impl Out {
    fn keep(&mut self, c: char) {
        if c == '\n' {
            self.line += 1;
        }
        self.text.push(c);
    }

    fn blank(&mut self, c: char) {
        self.keep(if c == '\n' { '\n' } else { ' ' });
    }
}

fn is_ident_char(c: char) -> bool {
    c.is_alphanumeric() || c == '_'
}

/// Comments and literal contents replaced by spaces, plus the string literals.
fn strip(src: &str) -> (String, Vec<StrLit>) {
    let chars: Vec<char> = src.chars().collect();
    let at = |i: usize| chars.get(i).copied();
    let mut out = Out {
        text: String::with_capacity(src.len()),
        line: 1,
    };
    let mut strings = Vec::new();
    let mut i = 0;
    while let Some(c) = at(i) {
        match (c, at(i + 1)) {
            ('/', Some('/')) => {
                while let Some(c) = at(i).filter(|&c| c != '\n') {
                    out.blank(c);
                    i += 1;
                }
            }
            ('/', Some('*')) => i = block_comment(&chars, i, &mut out),
            ('"', _) => i = string(&chars, i, None, &mut out, &mut strings),
            ('\'', _) => i = quote(&chars, i, &mut out),
            _ if c.is_alphabetic() || c == '_' => {
                let start = i;
                while at(i).is_some_and(is_ident_char) {
                    out.keep(chars[i]);
                    i += 1;
                }
                // `r"…"`, `br#"…"#`, `cr"…"`: a raw string follows the prefix. (`b"…"` and
                // `c"…"` need nothing: the next turn sees an ordinary string.)
                let word: String = chars[start..i].iter().collect();
                if matches!(word.as_str(), "r" | "br" | "cr") {
                    let hashes = chars[i..].iter().take_while(|&&c| c == '#').count();
                    if at(i + hashes) == Some('"') {
                        i = string(&chars, i + hashes, Some(hashes), &mut out, &mut strings);
                    }
                }
            }
            _ => {
                out.keep(c);
                i += 1;
            }
        }
    }
    (out.text, strings)
}

/// A (nested) block comment from `start`; returns the index after it.
fn block_comment(chars: &[char], start: usize, out: &mut Out) -> usize {
    let mut depth = 0usize;
    let mut i = start;
    while i < chars.len() {
        let pair = (chars[i], chars.get(i + 1).copied());
        if pair == ('/', Some('*')) {
            depth += 1;
        } else if pair == ('*', Some('/')) {
            depth -= 1;
        } else {
            out.blank(chars[i]);
            i += 1;
            continue;
        }
        out.blank(' ');
        out.blank(' ');
        i += 2;
        if depth == 0 {
            break;
        }
    }
    i
}

/// A string literal whose opening quote is at `open`; `raw` is the `#` count of a raw string
/// (its prefix already written, its hashes not). Returns the index after the literal.
fn string(
    chars: &[char],
    open: usize,
    raw: Option<usize>,
    out: &mut Out,
    strings: &mut Vec<StrLit>,
) -> usize {
    let hashes = raw.unwrap_or(0);
    for _ in 0..hashes {
        out.keep('#');
    }
    out.keep('"');
    let line = out.line;
    let mut text = String::new();
    let mut i = open + 1;
    while let Some(&c) = chars.get(i) {
        if c == '"'
            && chars[i + 1..]
                .iter()
                .take(hashes)
                .filter(|&&c| c == '#')
                .count()
                == hashes
        {
            out.keep('"');
            for _ in 0..hashes {
                out.keep('#');
            }
            i += 1 + hashes;
            break;
        }
        if c == '\\' && raw.is_none() {
            let escaped = chars.get(i + 1).copied().unwrap_or(' ');
            out.blank(c);
            out.blank(escaped);
            i += 2;
            match escaped {
                'n' => text.push('\n'),
                't' => text.push('\t'),
                'r' => text.push('\r'),
                '0' => text.push('\0'),
                '\\' | '"' | '\'' => text.push(escaped),
                // A line continuation: the newline and the next line's indent are not text.
                '\n' => {
                    while let Some(&c) = chars.get(i).filter(|c| c.is_whitespace()) {
                        out.blank(c);
                        i += 1;
                    }
                }
                // `\x41`, `\u{…}`: kept as written, which is enough to see how a text starts.
                other => {
                    text.push('\\');
                    text.push(other);
                }
            }
            continue;
        }
        text.push(c);
        out.blank(c);
        i += 1;
    }
    strings.push(StrLit { line, text });
    i
}

/// A `'` at `start`: a char literal (blanked) or a lifetime or label (kept). Returns the
/// index after what it consumed.
fn quote(chars: &[char], start: usize, out: &mut Out) -> usize {
    let end = match (chars.get(start + 1), chars.get(start + 2)) {
        // `'\n'`, `'\''`, `'\u{1F600}'`: the closing quote is the first after the escaped char.
        (Some('\\'), _) => chars[start + 3..]
            .iter()
            .position(|&c| c == '\'')
            .map(|p| start + 3 + p),
        (Some(_), Some('\'')) => Some(start + 2),
        _ => None,
    };
    out.keep('\'');
    match end {
        Some(end) => {
            for &c in &chars[start + 1..end] {
                out.blank(c);
            }
            out.keep('\'');
            end + 1
        }
        None => start + 1,
    }
}

fn tokenize(code: &str) -> Vec<Token> {
    let chars: Vec<char> = code.chars().collect();
    let mut tokens = Vec::new();
    let mut line = 1;
    let mut i = 0;
    while let Some(&c) = chars.get(i) {
        if c.is_whitespace() {
            if c == '\n' {
                line += 1;
            }
            i += 1;
            continue;
        }
        let len = if is_ident_char(c) {
            chars[i..].iter().take_while(|&&c| is_ident_char(c)).count()
        } else if matches!(
            (c, chars.get(i + 1)),
            (':', Some(':')) | ('-', Some('>')) | ('=', Some('>'))
        ) {
            2
        } else {
            1
        };
        tokens.push(Token {
            text: chars[i..i + len].iter().collect(),
            line,
        });
        i += len;
    }
    tokens
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The stripped code's tokens joined by spaces, and the strings as `line:text`.
    #[track_caller]
    fn check(src: &str, tokens: &str, strings: &[&str]) {
        let lexed = lex(src);
        let got: Vec<&str> = lexed.tokens.iter().map(|t| t.text.as_str()).collect();
        assert_eq!(got.join(" "), tokens);
        let got: Vec<String> = lexed
            .strings
            .iter()
            .map(|s| format!("{}:{}", s.line, s.text))
            .collect();
        assert_eq!(got, strings);
    }

    #[test]
    fn comments_are_blanked() {
        check(
            "a // crate::http\n/// doc\n//! inner\nb /* x /* nested */ y */ c",
            "a b c",
            &[],
        );
    }

    #[test]
    fn string_contents_are_blanked_and_kept_aside() {
        check(
            "f(\"SELECT 1 // no comment\", b\"x\")",
            "f ( \" \" , b \" \" )",
            &["1:SELECT 1 // no comment", "1:x"],
        );
        check(
            "let s = \"a\\\"b\\n\\\n    c\";",
            "let s = \" \" ;",
            &["1:a\"b\nc"],
        );
        check(
            "r#\"say \"hi\"\"#; br\"\\d\"; r#type",
            "r # \" \" # ; br \" \" ; r # type",
            &["1:say \"hi\"", "1:\\d"],
        );
    }

    #[test]
    fn lines_survive_blanking() {
        let lexed = lex("/* a\nb */\n\"x\ny\"\nz");
        let z = lexed.tokens.iter().find(|t| t.is("z")).map(|t| t.line);
        assert_eq!(z, Some(5));
        assert_eq!(lexed.strings[0].line, 3);
    }

    #[test]
    fn char_literals_are_not_strings_or_lifetimes() {
        check(
            "('\"', '{', '\\'', '\\u{7b}', b'x', &'a str, 'outer: loop)",
            "( ' ' , ' ' , ' ' , ' ' , b ' ' , & ' a str , ' outer : loop )",
            &[],
        );
    }

    #[test]
    fn paths_tokenize_with_double_colons() {
        check(
            "use crate::{a::b, c}; fn f() -> X => y",
            "use crate :: { a :: b , c } ; fn f ( ) -> X => y",
            &[],
        );
    }
}
