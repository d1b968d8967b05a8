//! SCIM filter and PATCH path parsing (RFC 7644 §3.4.2.2 and §3.5.2).
//!
//! A hand-written recursive-descent parser: [`parse`] turns a `filter=` query parameter into a
//! [`Filter`], [`parse_path`] turns a PATCH operation's `path` into a [`PatchPath`]. Both work on
//! untrusted input, so neither panics: the input is capped at [`MAX_INPUT_LEN`] bytes, nesting at
//! [`MAX_DEPTH`] levels, and every error carries the byte position where parsing stopped.
//!
//! Beyond the RFC grammar, operators and the literals `true`, `false` and `null` are matched
//! case-insensitively, and whitespace between tokens is tolerated wherever it is unambiguous.
//! The word `not` is reserved: an attribute cannot be called that.

use std::fmt;

/// The longest filter or path accepted, in bytes.
pub const MAX_INPUT_LEN: usize = 4096;

/// How deeply parentheses, `not (...)` and `[...]` value filters may nest.
pub const MAX_DEPTH: usize = 32;

/// A parsed SCIM filter.
#[derive(Debug, Clone, PartialEq)]
pub enum Filter {
    And(Box<Filter>, Box<Filter>),
    Or(Box<Filter>, Box<Filter>),
    Not(Box<Filter>),
    /// `attrPath pr`
    Present(AttrPath),
    /// `attrPath op value`
    Compare(AttrPath, CompareOp, Value),
    /// `attrPath "[" valFilter "]"`: the inner filter's paths are relative to the multi-valued attribute.
    ValuePath(AttrPath, Box<Filter>),
}

/// An attribute reference: `[schemaURN ":"] attr ["." subAttr]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AttrPath {
    /// The schema URN prefix, if one was written
    /// (e.g. `urn:ietf:params:scim:schemas:extension:enterprise:2.0:User`), as written.
    pub schema: Option<String>,
    /// The attribute name, as written (callers compare case-insensitively).
    pub attr: String,
    /// The sub-attribute after a dot (`name.givenName` -> Some("givenName")).
    pub sub_attr: Option<String>,
}

/// A comparison operator of an attribute expression.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CompareOp {
    Eq,
    Ne,
    Co,
    Sw,
    Ew,
    Gt,
    Ge,
    Lt,
    Le,
}

/// The literal on the right of a comparison.
#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    Null,
    Bool(bool),
    Number(serde_json::Number),
    String(String),
}

/// A PATCH operation's `path`: `attrPath [ "[" valFilter "]" ] [ "." subAttr ]`.
#[derive(Debug, Clone, PartialEq)]
pub struct PatchPath {
    pub attr: AttrPath,
    pub filter: Option<Filter>,
    /// Only after a value filter: `emails[type eq "work"].value` -> Some("value").
    pub sub_attr: Option<String>,
}

/// Why a filter or path was rejected, and the byte offset where parsing stopped.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message} at position {position}")]
pub struct ParseError {
    pub message: String,
    pub position: usize,
}

impl ParseError {
    fn at(position: usize, message: impl Into<String>) -> Self {
        Self { message: message.into(), position }
    }
}

/// Parses a filter expression, e.g. `userName eq "bjensen" and emails[type eq "work"]`.
pub fn parse(input: &str) -> Result<Filter, ParseError> {
    let mut parser = Parser::new(input)?;
    let filter = parser.parse_or()?;
    parser.expect_end("'and', 'or' or the end of the filter")?;
    Ok(filter)
}

/// Parses a PATCH operation's path, e.g. `emails[type eq "work"].value`.
pub fn parse_path(input: &str) -> Result<PatchPath, ParseError> {
    let mut parser = Parser::new(input)?;
    parser.skip_ws();
    let attr = parser.parse_attr_path()?;
    parser.skip_ws();
    let filter = match parser.peek() {
        Some(b'[') => Some(parser.parse_value_filter(&attr)?),
        _ => None,
    };
    let sub_attr = match parser.peek() {
        Some(b'.') if filter.is_some() => {
            parser.pos += 1;
            Some(parser.parse_name()?)
        }
        _ => None,
    };
    parser.expect_end("the end of the path")?;
    Ok(PatchPath { attr, filter, sub_attr })
}

/// Where the parser is in the input, and how deep it has nested.
struct Parser<'a> {
    input: &'a str,
    pos: usize,
    depth: usize,
    /// Set inside `[...]`, where the RFC grammar (valFilter) has no further value paths.
    in_value_filter: bool,
}

impl<'a> Parser<'a> {
    fn new(input: &'a str) -> Result<Self, ParseError> {
        if input.len() > MAX_INPUT_LEN {
            return Err(ParseError::at(MAX_INPUT_LEN, format!("input is longer than {MAX_INPUT_LEN} bytes")));
        }
        Ok(Self { input, pos: 0, depth: 0, in_value_filter: false })
    }

    fn peek(&self) -> Option<u8> {
        self.input.as_bytes().get(self.pos).copied()
    }

    fn skip_ws(&mut self) {
        while self.peek().is_some_and(|b| b.is_ascii_whitespace()) {
            self.pos += 1;
        }
    }

    /// The end of the run of attribute-name characters starting at `at`; keywords are such runs
    /// too, so `andx` is never mistaken for `and`.
    fn word_end(&self, at: usize) -> usize {
        let len = self.input.as_bytes()[at..].iter().take_while(|&&b| is_name_byte(b)).count();
        at + len
    }

    /// The end of the bare token starting at `at`: everything up to the next delimiter.
    fn token_end(&self, at: usize) -> usize {
        self.input[at..].find(is_delimiter).map_or(self.input.len(), |len| at + len)
    }

    /// Consumes `keyword` (case-insensitively) after optional whitespace, if it is next.
    fn eat_keyword(&mut self, keyword: &str) -> bool {
        self.skip_ws();
        let end = self.word_end(self.pos);
        let found = self.input[self.pos..end].eq_ignore_ascii_case(keyword);
        if found {
            self.pos = end;
        }
        found
    }

    fn expect_end(&mut self, expected: &str) -> Result<(), ParseError> {
        self.skip_ws();
        match self.peek() {
            None => Ok(()),
            Some(b @ (b')' | b']')) => Err(ParseError::at(self.pos, format!("unexpected '{}'", b as char))),
            Some(_) => Err(ParseError::at(self.pos, format!("trailing input (expected {expected})"))),
        }
    }

    /// `filter = term *("or" term)`, left-associative.
    fn parse_or(&mut self) -> Result<Filter, ParseError> {
        let mut left = self.parse_and()?;
        while self.eat_keyword("or") {
            let right = self.parse_and()?;
            left = Filter::Or(Box::new(left), Box::new(right));
        }
        Ok(left)
    }

    /// `term = factor *("and" factor)`, left-associative.
    fn parse_and(&mut self) -> Result<Filter, ParseError> {
        let mut left = self.parse_factor()?;
        while self.eat_keyword("and") {
            let right = self.parse_factor()?;
            left = Filter::And(Box::new(left), Box::new(right));
        }
        Ok(left)
    }

    /// `factor = "(" filter ")" / "not" "(" filter ")" / attrExp / valuePath`.
    fn parse_factor(&mut self) -> Result<Filter, ParseError> {
        self.skip_ws();
        let start = self.pos;
        let word_end = self.word_end(start);
        match self.peek() {
            Some(b'(') => {
                self.pos += 1;
                self.parse_group(start, b')')
            }
            Some(b @ (b')' | b']')) => Err(ParseError::at(start, format!("unexpected '{}'", b as char))),
            _ if self.input[start..word_end].eq_ignore_ascii_case("not") => {
                self.pos = word_end;
                self.skip_ws();
                let open = self.pos;
                if self.peek() != Some(b'(') {
                    return Err(ParseError::at(open, "expected '(' after 'not'"));
                }
                self.pos += 1;
                Ok(Filter::Not(Box::new(self.parse_group(open, b')')?)))
            }
            Some(b) if b.is_ascii_alphabetic() || b == b'$' => self.parse_attr_expr(),
            _ => Err(ParseError::at(start, "expected an attribute path, '(' or 'not'")),
        }
    }

    /// Parses `filter close`, just after the opening bracket at `open`, one level deeper.
    fn parse_group(&mut self, open: usize, close: u8) -> Result<Filter, ParseError> {
        self.depth += 1;
        if self.depth > MAX_DEPTH {
            return Err(ParseError::at(open, format!("filter nested more than {MAX_DEPTH} levels deep")));
        }
        let inner = self.parse_or()?;
        self.skip_ws();
        if self.peek() != Some(close) {
            return Err(ParseError::at(self.pos, format!("expected 'and', 'or' or '{}'", close as char)));
        }
        self.pos += 1;
        self.depth -= 1;
        Ok(inner)
    }

    /// `attrPath "pr"`, `attrPath compareOp compValue` or `attrPath "[" valFilter "]"`.
    fn parse_attr_expr(&mut self) -> Result<Filter, ParseError> {
        let path = self.parse_attr_path()?;
        self.skip_ws();
        if self.peek() == Some(b'[') {
            let inner = self.parse_value_filter(&path)?;
            if self.peek() == Some(b'.') {
                // `emails[type eq "work"].value eq "a@example.com"`, as Entra ID sends it: the
                // value whose type is work is that address. The same as
                // `emails[type eq "work" and value eq "a@example.com"]`, and parsed as that.
                self.pos += 1;
                let at = self.pos;
                let end = self.word_end(at);
                let sub = &self.input[at..end];
                if sub.is_empty() || !sub.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
                {
                    return Err(ParseError::at(at, "expected a sub-attribute name after '].'"));
                }
                self.pos = end;
                let sub = AttrPath { schema: None, attr: sub.to_owned(), sub_attr: None };
                self.skip_ws();
                let last = self.parse_comparison(sub)?;
                return Ok(Filter::ValuePath(path, Box::new(Filter::And(Box::new(inner), Box::new(last)))));
            }
            return Ok(Filter::ValuePath(path, Box::new(inner)));
        }
        self.parse_comparison(path)
    }

    /// `"pr"` or `compareOp compValue` after the attribute path `path`.
    fn parse_comparison(&mut self, path: AttrPath) -> Result<Filter, ParseError> {
        let op_start = self.pos;
        let op_end = self.word_end(op_start);
        let word = &self.input[op_start..op_end];
        if word.eq_ignore_ascii_case("pr") {
            self.pos = op_end;
            return Ok(Filter::Present(path));
        }
        let op = CompareOp::from_keyword(word).ok_or_else(|| {
            ParseError::at(
                op_start,
                "expected a comparison operator (eq, ne, co, sw, ew, gt, ge, lt, le, pr)",
            )
        })?;
        self.pos = op_end;
        self.skip_ws();
        let value = self.parse_value()?;
        Ok(Filter::Compare(path, op, value))
    }

    /// Parses `"[" valFilter "]"` (the parser is at the `[`) for the attribute `path`.
    fn parse_value_filter(&mut self, path: &AttrPath) -> Result<Filter, ParseError> {
        let open = self.pos;
        if self.in_value_filter {
            return Err(ParseError::at(open, "value filters cannot be nested"));
        }
        if path.sub_attr.is_some() {
            return Err(ParseError::at(open, "a value filter cannot follow a sub-attribute"));
        }
        self.pos += 1;
        self.in_value_filter = true;
        let inner = self.parse_group(open, b']')?;
        self.in_value_filter = false;
        Ok(inner)
    }

    /// `attrPath = [URI ":"] ATTRNAME ["." subAttr]`.
    fn parse_attr_path(&mut self) -> Result<AttrPath, ParseError> {
        let start = self.pos;
        let token = &self.input[start..self.token_end(start)];
        let is_urn = token.as_bytes().get(..4).is_some_and(|prefix| prefix.eq_ignore_ascii_case(b"urn:"));
        // URNs contain dots ("2.0") and colons, attribute names neither: the attribute starts
        // after the token's last colon.
        let schema = match token.rsplit_once(':') {
            Some((schema, _)) if is_urn => {
                let mut parts = schema.split(':');
                if parts.clone().count() < 3 || parts.any(str::is_empty) {
                    return Err(ParseError::at(
                        start,
                        "invalid schema URN (expected urn:<namespace>:<name>)",
                    ));
                }
                self.pos = start + schema.len() + 1;
                Some(schema.to_owned())
            }
            _ => None,
        };
        let attr = self.parse_name()?;
        let sub_attr = match self.peek() {
            Some(b'.') => {
                self.pos += 1;
                Some(self.parse_name()?)
            }
            _ => None,
        };
        if let Some(c) = self.input[self.pos..].chars().next().filter(|&c| !is_delimiter(c)) {
            return Err(ParseError::at(self.pos, format!("invalid character '{c}' in attribute path")));
        }
        Ok(AttrPath { schema, attr, sub_attr })
    }

    /// `ATTRNAME = ALPHA *(ALPHA / DIGIT / "-" / "_")`, or `$ref`.
    fn parse_name(&mut self) -> Result<String, ParseError> {
        let start = self.pos;
        let bytes = &self.input.as_bytes()[start..];
        let end = match bytes.first() {
            Some(b) if b.is_ascii_alphabetic() => self.word_end(start),
            Some(b'$') if bytes.get(..4).is_some_and(|name| name.eq_ignore_ascii_case(b"$ref")) => start + 4,
            _ => return Err(ParseError::at(start, "expected an attribute name")),
        };
        self.pos = end;
        Ok(self.input[start..end].to_owned())
    }

    /// `compValue = false / null / true / number / string`.
    fn parse_value(&mut self) -> Result<Value, ParseError> {
        let start = self.pos;
        if self.peek() == Some(b'"') {
            return self.parse_string().map(Value::String);
        }
        let end = self.token_end(start);
        let token = &self.input[start..end];
        let value = if token.eq_ignore_ascii_case("null") {
            Value::Null
        } else if token.eq_ignore_ascii_case("true") {
            Value::Bool(true)
        } else if token.eq_ignore_ascii_case("false") {
            Value::Bool(false)
        } else if token.starts_with(|c: char| c == '-' || c.is_ascii_digit()) {
            let number = token.parse().map_err(|_| {
                ParseError::at(start, "invalid number (expected a JSON number such as 42, -1.5 or 1e3)")
            })?;
            Value::Number(number)
        } else if token.is_empty() {
            return Err(ParseError::at(
                start,
                "expected a value (a quoted string, number, true, false or null)",
            ));
        } else {
            return Err(ParseError::at(start, "unquoted string (string values must be in double quotes)"));
        };
        self.pos = end;
        Ok(value)
    }

    /// Decodes a JSON string literal; the parser is at the opening quote.
    fn parse_string(&mut self) -> Result<String, ParseError> {
        let open = self.pos;
        let bytes = self.input.as_bytes();
        let mut out = String::new();
        let mut at = open + 1;
        loop {
            let Some(c) = self.input[at..].chars().next() else {
                return Err(ParseError::at(open, "unterminated string"));
            };
            match c {
                '"' => {
                    self.pos = at + 1;
                    return Ok(out);
                }
                '\\' => {
                    let simple = match bytes.get(at + 1) {
                        None => return Err(ParseError::at(open, "unterminated string")),
                        Some(b'u') => None,
                        Some(b'"') => Some('"'),
                        Some(b'\\') => Some('\\'),
                        Some(b'/') => Some('/'),
                        Some(b'b') => Some('\u{8}'),
                        Some(b'f') => Some('\u{c}'),
                        Some(b'n') => Some('\n'),
                        Some(b'r') => Some('\r'),
                        Some(b't') => Some('\t'),
                        Some(_) => {
                            return Err(ParseError::at(
                                at,
                                r#"invalid escape (expected \", \\, \/, \b, \f, \n, \r, \t or \uXXXX)"#,
                            ));
                        }
                    };
                    let (decoded, len) = match simple {
                        Some(decoded) => (decoded, 2),
                        None => self.unicode_escape(at)?,
                    };
                    out.push(decoded);
                    at += len;
                }
                c if c < ' ' => {
                    return Err(ParseError::at(at, "control character in string (must be escaped)"));
                }
                c => {
                    out.push(c);
                    at += c.len_utf8();
                }
            }
        }
    }

    /// Decodes the `\uXXXX` escape at `at`, or a `\uD8XX\uDCXX` surrogate pair; returns the
    /// character and how many bytes it took.
    fn unicode_escape(&self, at: usize) -> Result<(char, usize), ParseError> {
        let unpaired = || ParseError::at(at, r"unpaired surrogate in \u escape");
        let high = self.hex4(at + 2)?;
        if (0xD800..0xDC00).contains(&high) {
            if self.input.as_bytes().get(at + 6..at + 8) != Some(br"\u") {
                return Err(unpaired());
            }
            let low = self.hex4(at + 8)?;
            if !(0xDC00..0xE000).contains(&low) {
                return Err(unpaired());
            }
            let code = 0x10000 + ((high - 0xD800) << 10) + (low - 0xDC00);
            return char::from_u32(code).map(|c| (c, 12)).ok_or_else(unpaired);
        }
        // A lone low surrogate is the only 16-bit value that is not a char.
        char::from_u32(high).map(|c| (c, 6)).ok_or_else(unpaired)
    }

    /// The four hex digits at `at`.
    fn hex4(&self, at: usize) -> Result<u32, ParseError> {
        self.input
            .get(at..at + 4)
            .filter(|digits| digits.bytes().all(|b| b.is_ascii_hexdigit()))
            .and_then(|digits| u32::from_str_radix(digits, 16).ok())
            .ok_or_else(|| ParseError::at(at, r"expected four hex digits after \u"))
    }
}

fn is_name_byte(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b == b'-' || b == b'_'
}

/// Characters that end an attribute path or a bare value.
fn is_delimiter(c: char) -> bool {
    c.is_ascii_whitespace() || matches!(c, '(' | ')' | '[' | ']' | '"')
}

impl CompareOp {
    const ALL: [CompareOp; 9] = [
        CompareOp::Eq,
        CompareOp::Ne,
        CompareOp::Co,
        CompareOp::Sw,
        CompareOp::Ew,
        CompareOp::Gt,
        CompareOp::Ge,
        CompareOp::Lt,
        CompareOp::Le,
    ];

    /// The operator's keyword, in its canonical lower case.
    fn keyword(self) -> &'static str {
        match self {
            CompareOp::Eq => "eq",
            CompareOp::Ne => "ne",
            CompareOp::Co => "co",
            CompareOp::Sw => "sw",
            CompareOp::Ew => "ew",
            CompareOp::Gt => "gt",
            CompareOp::Ge => "ge",
            CompareOp::Lt => "lt",
            CompareOp::Le => "le",
        }
    }

    fn from_keyword(word: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|op| op.keyword().eq_ignore_ascii_case(word))
    }
}

impl fmt::Display for CompareOp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.keyword())
    }
}

impl fmt::Display for Value {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Value::Null => f.write_str("null"),
            Value::Bool(b) => write!(f, "{b}"),
            Value::Number(n) => write!(f, "{n}"),
            Value::String(s) => {
                f.write_str("\"")?;
                for c in s.chars() {
                    match c {
                        '"' => f.write_str("\\\"")?,
                        '\\' => f.write_str("\\\\")?,
                        '\n' => f.write_str("\\n")?,
                        '\r' => f.write_str("\\r")?,
                        '\t' => f.write_str("\\t")?,
                        c if c < ' ' => write!(f, "\\u{:04x}", c as u32)?,
                        c => write!(f, "{c}")?,
                    }
                }
                f.write_str("\"")
            }
        }
    }
}

impl fmt::Display for AttrPath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if let Some(schema) = &self.schema {
            write!(f, "{schema}:")?;
        }
        f.write_str(&self.attr)?;
        if let Some(sub_attr) = &self.sub_attr {
            write!(f, ".{sub_attr}")?;
        }
        Ok(())
    }
}

/// Prints the canonical form: lower-case keywords, single spaces, and parentheses only where
/// precedence or left-associativity needs them, so that parsing it gives back an equal filter.
impl fmt::Display for Filter {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fn operand(f: &mut fmt::Formatter<'_>, filter: &Filter, parenthesize: bool) -> fmt::Result {
            if parenthesize { write!(f, "({filter})") } else { write!(f, "{filter}") }
        }
        match self {
            Filter::And(left, right) => {
                operand(f, left, matches!(**left, Filter::Or(..)))?;
                f.write_str(" and ")?;
                operand(f, right, matches!(**right, Filter::And(..) | Filter::Or(..)))
            }
            Filter::Or(left, right) => {
                write!(f, "{left} or ")?;
                operand(f, right, matches!(**right, Filter::Or(..)))
            }
            Filter::Not(inner) => write!(f, "not ({inner})"),
            Filter::Present(path) => write!(f, "{path} pr"),
            Filter::Compare(path, op, value) => write!(f, "{path} {op} {value}"),
            Filter::ValuePath(path, inner) => write!(f, "{path}[{inner}]"),
        }
    }
}

impl fmt::Display for PatchPath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.attr)?;
        if let Some(filter) = &self.filter {
            write!(f, "[{filter}]")?;
        }
        if let Some(sub_attr) = &self.sub_attr {
            write!(f, ".{sub_attr}")?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const ENTERPRISE: &str = "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User";
    const CORE_USER: &str = "urn:ietf:params:scim:schemas:core:2.0:User";

    fn attr(name: &str) -> AttrPath {
        AttrPath { schema: None, attr: name.to_owned(), sub_attr: None }
    }

    fn sub(name: &str, sub_attr: &str) -> AttrPath {
        AttrPath { schema: None, attr: name.to_owned(), sub_attr: Some(sub_attr.to_owned()) }
    }

    fn string(s: &str) -> Value {
        Value::String(s.to_owned())
    }

    fn cmp(path: AttrPath, op: CompareOp, value: Value) -> Filter {
        Filter::Compare(path, op, value)
    }

    fn and(left: Filter, right: Filter) -> Filter {
        Filter::And(Box::new(left), Box::new(right))
    }

    fn or(left: Filter, right: Filter) -> Filter {
        Filter::Or(Box::new(left), Box::new(right))
    }

    fn value_path(path: AttrPath, inner: Filter) -> Filter {
        Filter::ValuePath(path, Box::new(inner))
    }

    fn number(text: &str) -> Value {
        Value::Number(text.parse().unwrap())
    }

    fn error(input: &str) -> (String, usize) {
        let err = parse(input).unwrap_err();
        (err.message, err.position)
    }

    fn path_error(input: &str) -> (String, usize) {
        let err = parse_path(input).unwrap_err();
        (err.message, err.position)
    }

    #[test]
    fn rfc_7644_filter_examples() {
        use CompareOp::*;
        let last_modified = || sub("meta", "lastModified");
        let timestamp = || string("2011-05-13T04:42:34Z");
        let emails_either = || {
            or(
                cmp(attr("emails"), Co, string("example.com")),
                cmp(sub("emails", "value"), Co, string("example.org")),
            )
        };
        let work_at_example =
            || and(cmp(attr("type"), Eq, string("work")), cmp(attr("value"), Co, string("@example.com")));
        let cases = [
            (r#"userName eq "bjensen""#, cmp(attr("userName"), Eq, string("bjensen"))),
            (r#"name.familyName co "O'Malley""#, cmp(sub("name", "familyName"), Co, string("O'Malley"))),
            (r#"userName sw "J""#, cmp(attr("userName"), Sw, string("J"))),
            (
                r#"urn:ietf:params:scim:schemas:core:2.0:User:userName sw "J""#,
                cmp(
                    AttrPath {
                        schema: Some(CORE_USER.to_owned()),
                        attr: "userName".to_owned(),
                        sub_attr: None,
                    },
                    Sw,
                    string("J"),
                ),
            ),
            ("title pr", Filter::Present(attr("title"))),
            (r#"meta.lastModified gt "2011-05-13T04:42:34Z""#, cmp(last_modified(), Gt, timestamp())),
            (r#"meta.lastModified ge "2011-05-13T04:42:34Z""#, cmp(last_modified(), Ge, timestamp())),
            (r#"meta.lastModified lt "2011-05-13T04:42:34Z""#, cmp(last_modified(), Lt, timestamp())),
            (r#"meta.lastModified le "2011-05-13T04:42:34Z""#, cmp(last_modified(), Le, timestamp())),
            (
                r#"title pr and userType eq "Employee""#,
                and(Filter::Present(attr("title")), cmp(attr("userType"), Eq, string("Employee"))),
            ),
            (
                r#"title pr or userType eq "Intern""#,
                or(Filter::Present(attr("title")), cmp(attr("userType"), Eq, string("Intern"))),
            ),
            (
                r#"schemas eq "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User""#,
                cmp(attr("schemas"), Eq, string(ENTERPRISE)),
            ),
            (
                r#"userType eq "Employee" and (emails co "example.com" or emails.value co "example.org")"#,
                and(cmp(attr("userType"), Eq, string("Employee")), emails_either()),
            ),
            (
                r#"userType ne "Employee" and not (emails co "example.com" or emails.value co "example.org")"#,
                and(cmp(attr("userType"), Ne, string("Employee")), Filter::Not(Box::new(emails_either()))),
            ),
            (
                r#"userType eq "Employee" and (emails.type eq "work")"#,
                and(
                    cmp(attr("userType"), Eq, string("Employee")),
                    cmp(sub("emails", "type"), Eq, string("work")),
                ),
            ),
            (
                r#"userType eq "Employee" and emails[type eq "work" and value co "@example.com"]"#,
                and(
                    cmp(attr("userType"), Eq, string("Employee")),
                    value_path(attr("emails"), work_at_example()),
                ),
            ),
            (
                r#"emails[type eq "work" and value co "@example.com"] or ims[type eq "xmpp" and value co "@foo.com"]"#,
                or(
                    value_path(attr("emails"), work_at_example()),
                    value_path(
                        attr("ims"),
                        and(
                            cmp(attr("type"), Eq, string("xmpp")),
                            cmp(attr("value"), Co, string("@foo.com")),
                        ),
                    ),
                ),
            ),
        ];
        for (input, expected) in cases {
            assert_eq!(parse(input), Ok(expected), "{input}");
        }
    }

    #[test]
    fn urn_paths_split_at_the_last_colon() {
        let filter =
            parse(&format!(r#"{ENTERPRISE}:manager.value eq "26118915-6090-4610-87e4-49d8ca9f808d""#));
        let expected = AttrPath {
            schema: Some(ENTERPRISE.to_owned()),
            attr: "manager".to_owned(),
            sub_attr: Some("value".to_owned()),
        };
        assert_eq!(filter, Ok(cmp(expected, CompareOp::Eq, string("26118915-6090-4610-87e4-49d8ca9f808d"))));
        // The prefix is matched case-insensitively and kept as written.
        let filter = parse("URN:Example:Schema:title pr").unwrap();
        let expected = AttrPath { schema: Some("URN:Example:Schema".to_owned()), ..attr("title") };
        assert_eq!(filter, Filter::Present(expected));
        assert_eq!(
            parse("members.$ref pr and $ref pr"),
            Ok(and(Filter::Present(sub("members", "$ref")), Filter::Present(attr("$ref"))))
        );
    }

    #[test]
    fn and_binds_tighter_than_or_and_both_associate_left() {
        let a = || cmp(attr("a"), CompareOp::Eq, number("1"));
        let b = || cmp(attr("b"), CompareOp::Eq, number("2"));
        let c = || cmp(attr("c"), CompareOp::Eq, number("3"));
        assert_eq!(parse("a eq 1 or b eq 2 and c eq 3"), Ok(or(a(), and(b(), c()))));
        assert_eq!(parse("a eq 1 and b eq 2 or c eq 3"), Ok(or(and(a(), b()), c())));
        assert_eq!(parse("a eq 1 and b eq 2 and c eq 3"), Ok(and(and(a(), b()), c())));
        assert_eq!(parse("a eq 1 or b eq 2 or c eq 3"), Ok(or(or(a(), b()), c())));
        assert_eq!(parse("(a eq 1 or b eq 2) and c eq 3"), Ok(and(or(a(), b()), c())));
        assert_eq!(parse("not (a eq 1) and b eq 2"), Ok(and(Filter::Not(Box::new(a())), b())));
    }

    #[test]
    fn keywords_are_case_insensitive_and_whitespace_is_tolerated() {
        let expected = parse(r#"title pr and not (userName eq "x" or active eq true)"#).unwrap();
        for input in [
            r#"title PR And NOT (userName EQ "x" Or active eq TRUE)"#,
            "  title \t pr   and not(userName eq \"x\"or active eq True )  ",
            r#"(title pr) and (not ((userName eq "x") or (active eq true)))"#,
        ] {
            assert_eq!(parse(input), Ok(expected.clone()), "{input}");
        }
        for (keyword, op) in CompareOp::ALL.map(|op| (op.keyword().to_uppercase(), op)) {
            assert_eq!(parse(&format!("a {keyword} 1")), Ok(cmp(attr("a"), op, number("1"))));
        }
    }

    #[test]
    fn string_escapes_are_decoded() {
        let value = |input: &str| match parse(&format!("a eq {input}")) {
            Ok(Filter::Compare(_, _, Value::String(s))) => s,
            other => panic!("{input}: {other:?}"),
        };
        assert_eq!(value(r#""say \"hi\"""#), r#"say "hi""#);
        assert_eq!(value(r#""back\\slash\/""#), r"back\slash/");
        assert_eq!(value(r#""\b\f\n\r\t""#), "\u{8}\u{c}\n\r\t");
        assert_eq!(value(r#""caf\u00e9 \u00E9""#), "café é");
        assert_eq!(value(r#""\ud83d\ude00""#), "😀");
        assert_eq!(value(r#""naïve 😀""#), "naïve 😀");
        assert_eq!(value(r#""""#), "");
    }

    #[test]
    fn numbers_booleans_and_null() {
        let value = |input: &str| match parse(&format!("a eq {input}")) {
            Ok(Filter::Compare(_, _, value)) => value,
            other => panic!("{input}: {other:?}"),
        };
        assert_eq!(value("42"), Value::Number(42.into()));
        assert_eq!(value("-7"), Value::Number((-7).into()));
        assert_eq!(value("0"), Value::Number(0.into()));
        assert_eq!(value("1.5"), number("1.5"));
        assert_eq!(value("-2.5E-3"), number("-0.0025"));
        assert_eq!(value("1e3"), number("1000.0"));
        assert_eq!(value("true"), Value::Bool(true));
        assert_eq!(value("False"), Value::Bool(false));
        assert_eq!(value("NULL"), Value::Null);
        assert_eq!(parse("a gt 5)"), Err(ParseError::at(6, "unexpected ')'")));
    }

    #[test]
    fn malformed_filters_are_rejected_with_positions() {
        let op = "expected a comparison operator (eq, ne, co, sw, ew, gt, ge, lt, le, pr)";
        assert_eq!(error(r#"userName xx "bjensen""#), (op.to_owned(), 9));
        assert_eq!(error("userName"), (op.to_owned(), 8));
        assert_eq!(error("userName eqx 1"), (op.to_owned(), 9));
        assert_eq!(parse(r#"userName xx "bjensen""#).unwrap_err().to_string(), format!("{op} at position 9"));
        let cases: &[(&str, &str, usize)] = &[
            (r#"userName eq "bjensen"#, "unterminated string", 12),
            (r#"userName eq "bjensen\"#, "unterminated string", 12),
            (r#"(userName eq "bjensen") or title pr)"#, "unexpected ')'", 35),
            ("title pr]", "unexpected ']'", 8),
            (")", "unexpected ')'", 0),
            (
                r#"userName eq "a" userType eq "b""#,
                "trailing input (expected 'and', 'or' or the end of the filter)",
                16,
            ),
            ("userName eq bjensen", "unquoted string (string values must be in double quotes)", 12),
            ("userName eq", "expected a value (a quoted string, number, true, false or null)", 11),
            ("userName eq 01", "invalid number (expected a JSON number such as 42, -1.5 or 1e3)", 12),
            ("userName eq 1.2.3", "invalid number (expected a JSON number such as 42, -1.5 or 1e3)", 12),
            ("userName eq 1e999", "invalid number (expected a JSON number such as 42, -1.5 or 1e3)", 12),
            (
                "userName eq 1and title pr",
                "invalid number (expected a JSON number such as 42, -1.5 or 1e3)",
                12,
            ),
            (r#"userName eq "a" and"#, "expected an attribute path, '(' or 'not'", 19),
            ("", "expected an attribute path, '(' or 'not'", 0),
            (r#""userName" eq "a""#, "expected an attribute path, '(' or 'not'", 0),
            ("(title pr", "expected 'and', 'or' or ')'", 9),
            ("emails[type pr", "expected 'and', 'or' or ']'", 14),
            ("emails[type pr)", "expected 'and', 'or' or ']'", 14),
            ("not title pr", "expected '(' after 'not'", 4),
            ("user:Name pr", "invalid character ':' in attribute path", 4),
            ("name.given.x pr", "invalid character '.' in attribute path", 10),
            ("na%me pr", "invalid character '%' in attribute path", 2),
            ("name. pr", "expected an attribute name", 5),
            ("urn:foo:userName pr", "invalid schema URN (expected urn:<namespace>:<name>)", 0),
            ("urn:a::b:userName pr", "invalid schema URN (expected urn:<namespace>:<name>)", 0),
            ("urn:a:b: pr", "expected an attribute name", 8),
            (r#"a eq "x\q""#, r#"invalid escape (expected \", \\, \/, \b, \f, \n, \r, \t or \uXXXX)"#, 7),
            (r#"a eq "\u12""#, r"expected four hex digits after \u", 8),
            (r#"a eq "\u+123""#, r"expected four hex digits after \u", 8),
            (r#"a eq "\ud800""#, r"unpaired surrogate in \u escape", 6),
            (r#"a eq "\ud800\u0041""#, r"unpaired surrogate in \u escape", 6),
            (r#"a eq "\udc00""#, r"unpaired surrogate in \u escape", 6),
            ("a eq \"tab\there\"", "control character in string (must be escaped)", 9),
            (r#"emails[type eq "work"]. eq "x""#, "expected a sub-attribute name after '].'", 23),
            (
                r#"emails[type eq "work"].value"#,
                "expected a comparison operator (eq, ne, co, sw, ew, gt, ge, lt, le, pr)",
                28,
            ),
            (r#"emails[type eq "work" and ims[value pr]]"#, "value filters cannot be nested", 29),
            (r#"emails[not (x[y pr])]"#, "value filters cannot be nested", 13),
            (r#"name.givenName[value pr]"#, "a value filter cannot follow a sub-attribute", 14),
        ];
        for &(input, message, position) in cases {
            assert_eq!(error(input), (message.to_owned(), position), "{input}");
        }
        // A value path followed by a sub-attribute, in a filter as Entra ID sends it, means the
        // same as the sub-attribute's comparison inside the brackets.
        assert_eq!(
            parse(r#"emails[type eq "work"].value eq "a@example.com""#).unwrap(),
            parse(r#"emails[type eq "work" and value eq "a@example.com"]"#).unwrap()
        );
        assert_eq!(
            parse(r#"phoneNumbers[type eq "mobile"].value pr and userName sw "a""#).unwrap(),
            parse(r#"phoneNumbers[type eq "mobile" and value pr] and userName sw "a""#).unwrap()
        );
    }

    #[test]
    fn nesting_is_limited() {
        let nested = |depth: usize, open: &str| format!("{}a pr{}", open.repeat(depth), ")".repeat(depth));
        assert!(parse(&nested(MAX_DEPTH, "(")).is_ok());
        assert!(parse(&nested(MAX_DEPTH, "not (")).is_ok());
        assert_eq!(
            error(&nested(MAX_DEPTH + 1, "(")),
            ("filter nested more than 32 levels deep".to_owned(), 32)
        );
        assert_eq!(
            error(&nested(MAX_DEPTH + 1, "not (")),
            ("filter nested more than 32 levels deep".to_owned(), 32 * 5 + 4)
        );
        // A value filter is a level too.
        let in_brackets = format!("a[{}b pr{}]", "(".repeat(MAX_DEPTH - 1), ")".repeat(MAX_DEPTH - 1));
        assert!(parse(&in_brackets).is_ok());
        assert!(parse(&in_brackets.replacen("a[", "a[(", 1).replacen("]", ")]", 1)).is_err());
        // Deep nesting within the length limit is refused, not a stack overflow.
        assert!(parse(&"(".repeat(MAX_INPUT_LEN)).is_err());
        assert!(parse(&"not (".repeat(MAX_INPUT_LEN / 5)).is_err());
    }

    #[test]
    fn long_chains_parse_iteratively() {
        let chain = vec!["a pr"; MAX_INPUT_LEN / 9].join(" and ");
        let filter = parse(&chain).unwrap();
        assert_eq!(parse(&filter.to_string()), Ok(filter));
    }

    #[test]
    fn input_length_is_limited() {
        let at_limit = format!("a eq \"{}\"", "x".repeat(MAX_INPUT_LEN - 7));
        assert_eq!(at_limit.len(), MAX_INPUT_LEN);
        assert!(parse(&at_limit).is_ok());
        let over = format!("{at_limit} ");
        let expected = ParseError::at(MAX_INPUT_LEN, "input is longer than 4096 bytes");
        assert_eq!(parse(&over), Err(expected.clone()));
        assert_eq!(parse_path(&"a".repeat(MAX_INPUT_LEN + 1)), Err(expected));
    }

    #[test]
    fn display_is_canonical() {
        let cases = [
            (r#"userName EQ "bjensen""#, r#"userName eq "bjensen""#),
            ("( a pr  AND (b pr and c pr))", "a pr and (b pr and c pr)"),
            ("(a pr or b pr) and c pr", "(a pr or b pr) and c pr"),
            ("a pr or (b pr and c pr)", "a pr or b pr and c pr"),
            ("a pr or (b pr or c pr)", "a pr or (b pr or c pr)"),
            ("NOT(a pr)", "not (a pr)"),
            (r#"emails[type eq "work" or primary eq TRUE]"#, r#"emails[type eq "work" or primary eq true]"#),
            (r#"a eq "q\"b\\\n\u0001é""#, r#"a eq "q\"b\\\n\u0001é""#),
            ("a gt 1E3 and b lt -0.5 and c eq null", "a gt 1000.0 and b lt -0.5 and c eq null"),
        ];
        for (input, canonical) in cases {
            assert_eq!(parse(input).unwrap().to_string(), canonical, "{input}");
        }
    }

    #[test]
    fn patch_paths() {
        let member = "2819c223-7f76-453a-919d-413861904646";
        let enterprise = |name: &str| AttrPath { schema: Some(ENTERPRISE.to_owned()), ..attr(name) };
        let cases = [
            ("members", PatchPath { attr: attr("members"), filter: None, sub_attr: None }),
            ("name.familyName", PatchPath { attr: sub("name", "familyName"), filter: None, sub_attr: None }),
            (
                r#"members[value eq "2819c223-7f76-453a-919d-413861904646"]"#,
                PatchPath {
                    attr: attr("members"),
                    filter: Some(cmp(attr("value"), CompareOp::Eq, string(member))),
                    sub_attr: None,
                },
            ),
            (
                r#"members[value eq "2819c223-7f76-453a-919d-413861904646"].displayName"#,
                PatchPath {
                    attr: attr("members"),
                    filter: Some(cmp(attr("value"), CompareOp::Eq, string(member))),
                    sub_attr: Some("displayName".to_owned()),
                },
            ),
            (
                r#"emails[type eq "work"].value"#,
                PatchPath {
                    attr: attr("emails"),
                    filter: Some(cmp(attr("type"), CompareOp::Eq, string("work"))),
                    sub_attr: Some("value".to_owned()),
                },
            ),
            (
                "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User:employeeNumber",
                PatchPath { attr: enterprise("employeeNumber"), filter: None, sub_attr: None },
            ),
            (
                "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User:manager.value",
                PatchPath {
                    attr: AttrPath { sub_attr: Some("value".to_owned()), ..enterprise("manager") },
                    filter: None,
                    sub_attr: None,
                },
            ),
            (
                r#"addresses[type eq "work" and not (primary eq false)].streetAddress"#,
                PatchPath {
                    attr: attr("addresses"),
                    filter: Some(and(
                        cmp(attr("type"), CompareOp::Eq, string("work")),
                        Filter::Not(Box::new(cmp(attr("primary"), CompareOp::Eq, Value::Bool(false)))),
                    )),
                    sub_attr: Some("streetAddress".to_owned()),
                },
            ),
            (" members ", PatchPath { attr: attr("members"), filter: None, sub_attr: None }),
        ];
        for (input, expected) in cases {
            let parsed = parse_path(input);
            assert_eq!(parsed, Ok(expected), "{input}");
            let printed = parsed.unwrap().to_string();
            assert_eq!(printed, input.trim(), "{input}");
        }
    }

    #[test]
    fn malformed_patch_paths_are_rejected_with_positions() {
        let cases: &[(&str, &str, usize)] = &[
            ("", "expected an attribute name", 0),
            ("members eq", "trailing input (expected the end of the path)", 8),
            ("title pr", "trailing input (expected the end of the path)", 6),
            ("name.familyName.x", "invalid character '.' in attribute path", 15),
            ("emails[type eq \"work\"].", "expected an attribute name", 23),
            ("emails[type eq \"work\"].value.x", "trailing input (expected the end of the path)", 28),
            ("emails[type eq \"work\"", "expected 'and', 'or' or ']'", 21),
            ("emails[type eq \"work\"]]", "unexpected ']'", 22),
            ("emails[]", "unexpected ']'", 7),
            ("emails[a[b pr]]", "value filters cannot be nested", 8),
            ("name.givenName[a pr]", "a value filter cannot follow a sub-attribute", 14),
            ("urn:x:members", "invalid schema URN (expected urn:<namespace>:<name>)", 0),
            ("1abc", "expected an attribute name", 0),
        ];
        for &(input, message, position) in cases {
            assert_eq!(path_error(input), (message.to_owned(), position), "{input}");
        }
    }

    /// Fragments of the grammar, so random concatenations reach deep into the parser.
    const TOKENS: &[&str] = &[
        "(", ")", "[", "]", "\"", "\\", "\\u", "d83d", "dc00", " ", "\t", ".", ":", "urn:", "a:b:", "$ref",
        "eq", "EQ", "co", "pr", "and", "or", "not", "userName", "emails", "value", "1", "-", "e", "1.5e3",
        "true", "null", "é", "😀", "\"work\"", "\u{0}",
    ];

    const ATTR_NAMES: &[&str] = &["userName", "emails", "name", "x-y_z9", "$ref", "Type"];
    const SUB_ATTRS: &[&str] = &["value", "givenName", "$ref"];

    fn attr_path() -> impl Strategy<Value = AttrPath> {
        (
            prop::option::of(prop::sample::select(vec![CORE_USER, ENTERPRISE, "urn:x:y.z"])),
            prop::sample::select(ATTR_NAMES),
            prop::option::of(prop::sample::select(SUB_ATTRS)),
        )
            .prop_map(|(schema, attr, sub_attr)| AttrPath {
                schema: schema.map(str::to_owned),
                attr: attr.to_owned(),
                sub_attr: sub_attr.map(str::to_owned),
            })
    }

    fn value() -> impl Strategy<Value = Value> {
        prop_oneof![
            Just(Value::Null),
            any::<bool>().prop_map(Value::Bool),
            any::<i64>().prop_map(|n| Value::Number(n.into())),
            any::<u64>().prop_map(|n| Value::Number(n.into())),
            // serde_json (like the JSON bodies it parses) is not correctly rounded for every
            // 17-digit float, so floats are drawn as short decimals, which it reads exactly.
            (any::<i32>(), -20..=20i32).prop_map(|(digits, exp)| number(&format!("{digits}.5e{exp}"))),
            any::<String>().prop_map(Value::String),
        ]
    }

    fn compare_op() -> impl Strategy<Value = CompareOp> {
        prop::sample::select(CompareOp::ALL.to_vec())
    }

    fn attr_expr() -> impl Strategy<Value = Filter> {
        prop_oneof![
            attr_path().prop_map(Filter::Present),
            (attr_path(), compare_op(), value())
                .prop_map(|(path, op, value)| Filter::Compare(path, op, value)),
        ]
    }

    /// Combines `leaf` with and/or/not up to a bounded depth.
    fn combine(leaf: BoxedStrategy<Filter>) -> impl Strategy<Value = Filter> {
        leaf.prop_recursive(4, 24, 2, |inner| {
            prop_oneof![
                (inner.clone(), inner.clone()).prop_map(|(l, r)| and(l, r)),
                (inner.clone(), inner.clone()).prop_map(|(l, r)| or(l, r)),
                inner.prop_map(|f| Filter::Not(Box::new(f))),
            ]
        })
    }

    /// Filters as the parser produces them: value paths only at the top level and only on an
    /// attribute without a sub-attribute.
    fn filter() -> impl Strategy<Value = Filter> {
        let multi_valued = attr_path().prop_map(|path| AttrPath { sub_attr: None, ..path });
        let value_path = (multi_valued, combine(attr_expr().boxed()))
            .prop_map(|(path, inner)| Filter::ValuePath(path, Box::new(inner)));
        combine(prop_oneof![attr_expr(), value_path].boxed())
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(512))]

        #[test]
        fn arbitrary_strings_never_panic(input in any::<String>()) {
            let _ = parse(&input);
            let _ = parse_path(&input);
        }

        #[test]
        fn token_soup_never_panics(tokens in prop::collection::vec(prop::sample::select(TOKENS), 0..40)) {
            let input = tokens.concat();
            let _ = parse(&input);
            let _ = parse_path(&input);
        }

        #[test]
        fn truncated_filters_never_panic(filter in filter(), cut in any::<prop::sample::Index>()) {
            let printed = filter.to_string();
            let boundaries: Vec<usize> = printed.char_indices().map(|(i, _)| i).collect();
            let truncated = &printed[..boundaries[cut.index(boundaries.len())]];
            let _ = parse(truncated);
            let _ = parse_path(truncated);
        }

        #[test]
        fn display_round_trips(filter in filter()) {
            let printed = filter.to_string();
            prop_assert_eq!(parse(&printed), Ok(filter), "{}", printed);
        }

        #[test]
        fn patch_path_display_round_trips(
            path in attr_path(),
            filter in prop::option::of(combine(attr_expr().boxed())),
            sub_attr in prop::option::of(prop::sample::select(SUB_ATTRS)),
        ) {
            let path = match filter {
                Some(filter) => PatchPath {
                    attr: AttrPath { sub_attr: None, ..path },
                    filter: Some(filter),
                    sub_attr: sub_attr.map(str::to_owned),
                },
                None => PatchPath { attr: path, filter: None, sub_attr: None },
            };
            let printed = path.to_string();
            prop_assert_eq!(parse_path(&printed), Ok(path), "{}", printed);
        }
    }
}
