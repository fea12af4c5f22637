//! Splits a filter expression into tokens, each with its byte span for error carets.

use std::ops::Range;

use super::error::Problem;

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Tok {
    /// A bare word: a keyword, a state, a port, an address, a name.
    Word(String),
    /// A quoted string: never a keyword.
    Quoted(String),
    LParen,
    RParen,
    /// `!`
    Bang,
    /// `&&` or `&`
    AndAnd,
    /// `||` or `|`
    OrOr,
    /// `=`, `==`, `!=`, `<`, `>`, `<=`, `>=`
    Op(&'static str),
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Token {
    pub tok: Tok,
    pub span: Range<usize>,
}

/// Characters that end a bare word.
fn is_special(c: char) -> bool {
    c.is_whitespace() || "()!&|=<>\"'".contains(c)
}

/// The tokens of `text`, or the first lexical problem and where it is.
pub fn lex(text: &str) -> Result<Vec<Token>, (Problem, Range<usize>)> {
    let mut out = Vec::new();
    let mut chars = text.char_indices().peekable();
    while let Some(&(start, c)) = chars.peek() {
        if c.is_whitespace() {
            chars.next();
            continue;
        }
        let next_is = |s: &str, want: char| s[start + c.len_utf8()..].starts_with(want);
        let (tok, len) = match c {
            '(' => (Tok::LParen, 1),
            ')' => (Tok::RParen, 1),
            '!' if next_is(text, '=') => (Tok::Op("!="), 2),
            '!' => (Tok::Bang, 1),
            '=' if next_is(text, '=') => (Tok::Op("="), 2),
            '=' => (Tok::Op("="), 1),
            '<' if next_is(text, '=') => (Tok::Op("<="), 2),
            '<' => (Tok::Op("<"), 1),
            '>' if next_is(text, '=') => (Tok::Op(">="), 2),
            '>' => (Tok::Op(">"), 1),
            '&' if next_is(text, '&') => (Tok::AndAnd, 2),
            '&' => (Tok::AndAnd, 1),
            '|' if next_is(text, '|') => (Tok::OrOr, 2),
            '|' => (Tok::OrOr, 1),
            '"' | '\'' => {
                chars.next();
                let mut s = String::new();
                let mut end = None;
                while let Some((i, ch)) = chars.next() {
                    if ch == c {
                        end = Some(i + 1);
                        break;
                    }
                    if ch == '\\'
                        && let Some(&(_, esc)) = chars.peek()
                        && (esc == c || esc == '\\')
                    {
                        chars.next();
                        s.push(esc);
                        continue;
                    }
                    s.push(ch);
                }
                let Some(end) = end else {
                    return Err((Problem::UnclosedQuote(c), start..start + 1));
                };
                out.push(Token {
                    tok: Tok::Quoted(s),
                    span: start..end,
                });
                continue;
            }
            _ => {
                let mut end = start;
                while let Some(&(i, ch)) = chars.peek() {
                    if is_special(ch) {
                        break;
                    }
                    end = i + ch.len_utf8();
                    chars.next();
                }
                out.push(Token {
                    tok: Tok::Word(text[start..end].to_owned()),
                    span: start..end,
                });
                continue;
            }
        };
        for _ in 0..len {
            chars.next();
        }
        out.push(Token {
            tok,
            span: start..start + len,
        });
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn toks(s: &str) -> Vec<Tok> {
        lex(s).unwrap().into_iter().map(|t| t.tok).collect()
    }

    fn w(s: &str) -> Tok {
        Tok::Word(s.into())
    }

    #[test]
    fn words_operators_and_quotes() {
        assert_eq!(
            toks("dport=:443&&!(src [::1]:80||comm 'a b\\'c')"),
            [
                w("dport"),
                Tok::Op("="),
                w(":443"),
                Tok::AndAnd,
                Tok::Bang,
                Tok::LParen,
                w("src"),
                w("[::1]:80"),
                Tok::OrOr,
                w("comm"),
                Tok::Quoted("a b'c".into()),
                Tok::RParen,
            ]
        );
        assert_eq!(
            toks("a == b != c <= d >= e < f > g"),
            [
                w("a"),
                Tok::Op("="),
                w("b"),
                Tok::Op("!="),
                w("c"),
                Tok::Op("<="),
                w("d"),
                Tok::Op(">="),
                w("e"),
                Tok::Op("<"),
                w("f"),
                Tok::Op(">"),
                w("g"),
            ]
        );
    }

    #[test]
    fn spans_are_byte_ranges() {
        let t = lex("  sport  >= 10.0.0.0/8").unwrap();
        assert_eq!(t[0].span, 2..7);
        assert_eq!(t[1].span, 9..11);
        assert_eq!(t[2].span, 12..22);
    }

    #[test]
    fn an_unclosed_quote_is_an_error_at_the_quote() {
        assert_eq!(lex("comm \"abc"), Err((Problem::UnclosedQuote('"'), 5..6)));
    }
}
