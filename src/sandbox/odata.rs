//! The sandbox's own reading of OData `$filter` expressions: a small, strict subset
//! (`eq`/`ne` comparisons joined by `and`/`or`, parentheses, string literals with `''`
//! escapes, integers, `null`, `true`, `false`). Deliberately separate from the client's
//! query building, so the two check each other.

use serde_json::Value;

#[derive(Debug, Clone, PartialEq)]
enum Token {
    Ident(String),
    Str(String),
    Int(i64),
    Open,
    Close,
}

/// A parsed filter.
#[derive(Debug, Clone, PartialEq)]
pub enum Expr {
    And(Box<Expr>, Box<Expr>),
    Or(Box<Expr>, Box<Expr>),
    Eq(Operand, Operand),
    Ne(Operand, Operand),
}

#[derive(Debug, Clone, PartialEq)]
pub enum Operand {
    Property(String),
    Literal(Value),
}

fn tokenize(text: &str) -> Result<Vec<Token>, String> {
    let chars: Vec<char> = text.chars().collect();
    let mut tokens = Vec::new();
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        if c.is_whitespace() {
            i += 1;
        } else if c == '(' {
            tokens.push(Token::Open);
            i += 1;
        } else if c == ')' {
            tokens.push(Token::Close);
            i += 1;
        } else if c == '\'' {
            let mut value = String::new();
            i += 1;
            loop {
                match chars.get(i) {
                    None => return Err(format!("unterminated string literal in '{text}'")),
                    Some('\'') if chars.get(i + 1) == Some(&'\'') => {
                        value.push('\'');
                        i += 2;
                    }
                    Some('\'') => {
                        i += 1;
                        break;
                    }
                    Some(ch) => {
                        value.push(*ch);
                        i += 1;
                    }
                }
            }
            tokens.push(Token::Str(value));
        } else if c.is_ascii_digit()
            || (c == '-' && chars.get(i + 1).is_some_and(|d| d.is_ascii_digit()))
        {
            let start = i;
            i += 1;
            while chars.get(i).is_some_and(|d| d.is_ascii_digit()) {
                i += 1;
            }
            let digits: String = chars[start..i].iter().collect();
            tokens.push(Token::Int(
                digits.parse().map_err(|_| format!("bad number {digits}"))?,
            ));
        } else if c.is_ascii_alphabetic() || c == '_' {
            let start = i;
            while chars
                .get(i)
                .is_some_and(|d| d.is_ascii_alphanumeric() || *d == '_')
            {
                i += 1;
            }
            tokens.push(Token::Ident(chars[start..i].iter().collect()));
        } else {
            return Err(format!(
                "Syntax error: character '{c}' is not valid at position {i} in '{text}'."
            ));
        }
    }
    Ok(tokens)
}

struct Parser {
    tokens: Vec<Token>,
    pos: usize,
}

impl Parser {
    fn peek_keyword(&self, word: &str) -> bool {
        matches!(self.tokens.get(self.pos), Some(Token::Ident(w)) if w == word)
    }

    fn or(&mut self) -> Result<Expr, String> {
        let mut left = self.and()?;
        while self.peek_keyword("or") {
            self.pos += 1;
            left = Expr::Or(Box::new(left), Box::new(self.and()?));
        }
        Ok(left)
    }

    fn and(&mut self) -> Result<Expr, String> {
        let mut left = self.comparison()?;
        while self.peek_keyword("and") {
            self.pos += 1;
            left = Expr::And(Box::new(left), Box::new(self.comparison()?));
        }
        Ok(left)
    }

    fn comparison(&mut self) -> Result<Expr, String> {
        if self.tokens.get(self.pos) == Some(&Token::Open) {
            self.pos += 1;
            let inner = self.or()?;
            if self.tokens.get(self.pos) != Some(&Token::Close) {
                return Err("Syntax error: ')' expected.".into());
            }
            self.pos += 1;
            return Ok(inner);
        }
        let left = self.operand()?;
        let op = match self.tokens.get(self.pos) {
            Some(Token::Ident(op)) if op == "eq" || op == "ne" => op.clone(),
            other => {
                return Err(format!(
                    "Syntax error: 'eq' or 'ne' expected, found {other:?}."
                ))
            }
        };
        self.pos += 1;
        let right = self.operand()?;
        Ok(if op == "eq" {
            Expr::Eq(left, right)
        } else {
            Expr::Ne(left, right)
        })
    }

    fn operand(&mut self) -> Result<Operand, String> {
        let token = self.tokens.get(self.pos).cloned();
        self.pos += 1;
        match token {
            Some(Token::Str(s)) => Ok(Operand::Literal(Value::String(s))),
            Some(Token::Int(n)) => Ok(Operand::Literal(Value::from(n))),
            Some(Token::Ident(w)) if w == "null" => Ok(Operand::Literal(Value::Null)),
            Some(Token::Ident(w)) if w == "true" => Ok(Operand::Literal(Value::Bool(true))),
            Some(Token::Ident(w)) if w == "false" => Ok(Operand::Literal(Value::Bool(false))),
            Some(Token::Ident(w)) if !["and", "or", "eq", "ne"].contains(&w.as_str()) => {
                Ok(Operand::Property(w))
            }
            other => Err(format!(
                "Syntax error: an operand was expected, found {other:?}."
            )),
        }
    }
}

/// Parses a `$filter` value.
pub fn parse_filter(text: &str) -> Result<Expr, String> {
    let mut parser = Parser {
        tokens: tokenize(text)?,
        pos: 0,
    };
    let expr = parser.or()?;
    if parser.pos != parser.tokens.len() {
        return Err(format!(
            "Syntax error at position {} in '{text}'.",
            parser.pos
        ));
    }
    Ok(expr)
}

impl Expr {
    /// Every property the expression names.
    pub fn properties(&self) -> Vec<String> {
        let mut out = Vec::new();
        self.collect(&mut out);
        out
    }

    fn collect(&self, out: &mut Vec<String>) {
        match self {
            Expr::And(a, b) | Expr::Or(a, b) => {
                a.collect(out);
                b.collect(out);
            }
            Expr::Eq(l, r) | Expr::Ne(l, r) => {
                for side in [l, r] {
                    if let Operand::Property(p) = side {
                        out.push(p.clone());
                    }
                }
            }
        }
    }

    /// Evaluates against a row. Strings compare case-insensitively, as Dataverse's default
    /// collation does.
    pub fn matches(&self, row: &Value) -> bool {
        let value = |o: &Operand| match o {
            Operand::Property(p) => row.get(p).cloned().unwrap_or(Value::Null),
            Operand::Literal(v) => v.clone(),
        };
        let equal = |a: Value, b: Value| match (a, b) {
            (Value::String(x), Value::String(y)) => x.to_lowercase() == y.to_lowercase(),
            (x, y) => x == y,
        };
        match self {
            Expr::And(a, b) => a.matches(row) && b.matches(row),
            Expr::Or(a, b) => a.matches(row) || b.matches(row),
            Expr::Eq(l, r) => equal(value(l), value(r)),
            Expr::Ne(l, r) => !equal(value(l), value(r)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn doubled_quotes_stay_inside_the_literal() {
        let e = parse_filter(
            "emailaddress1 eq 'x'' or 1 eq 1 or ''a''=''a@example.com' and statecode eq 0",
        )
        .unwrap();
        assert_eq!(e.properties(), ["emailaddress1", "statecode"]);
        assert!(!e.matches(&json!({"emailaddress1": "ada@example.com", "statecode": 0})));
    }

    #[test]
    fn an_unescaped_quote_breaks_out_and_is_a_syntax_error_here() {
        assert!(parse_filter(
            "emailaddress1 eq 'x' or 1 eq 1 or 'a'='a@example.com' and statecode eq 0"
        )
        .is_err());
        // Without the '=' trick, breaking out would match every row: the test above matters.
        let e = parse_filter("emailaddress1 eq 'x' or 1 eq 1").unwrap();
        assert!(e.matches(&json!({"emailaddress1": "ada@example.com"})));
    }

    #[test]
    fn comparisons_ignore_case_like_dataverse() {
        let e = parse_filter("emailaddress1 eq 'Ada@Example.com'").unwrap();
        assert!(e.matches(&json!({"emailaddress1": "ada@example.com"})));
    }
}
