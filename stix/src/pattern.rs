//! A STIX 2.1 (and 2.0) pattern parser.
//!
//! This is a hand-written recursive-descent parser for the STIX 2.1
//! patterning grammar exactly as accepted by the Python reference validator
//! `stix2-patterns` 1.3.0 (`stix2patterns.v21`, ANTLR grammar
//! `STIXPattern.g4`), and for its 2.0 grammar ([`PatternVersion::V2_0`]:
//! no `EXISTS`, string literals after `START`/`STOP`), including its lexical
//! quirks:
//!
//! * keywords (`AND`, `OR`, `NOT`, `FOLLOWEDBY`, `LIKE`, `MATCHES`, `IN`,
//!   `ISSUBSET`, `ISSUPERSET`, `EXISTS`, `START`, `STOP`, `WITHIN`,
//!   `SECONDS`, `REPEATS`, `TIMES`) are case-sensitive; booleans are `true` /
//!   `false`;
//! * `=` and `==` are both the equality operator, `!=` and `<>` both
//!   inequality;
//! * object types may contain `-`, property names may not unless quoted
//!   (`file:hashes.'SHA-256'`);
//! * list indexes are `[n]`, `[-n]` or `[*]`;
//! * literals: `'string'` (escapes `\'` and `\\` only), integers, floats,
//!   `true`/`false`, `t'2021-01-01T00:00:00Z'`, `h'0afe'`, `b'YWJj'`;
//! * whitespace (including Unicode spaces), `/* block */` and `// line`
//!   comments are skipped.
//!
//! [`parse`] checks the grammar only (like `stix2patterns.v21.pattern.Pattern`);
//! [`validate`] additionally applies the checks `stix2` runs on an
//! indicator's pattern (`stix2patterns.validator.run_validator(p, "2.1")`):
//! the pattern must start with `[` or `([`, hash values must match their
//! algorithm, a qualifier type may not be repeated on one observation (2.1
//! only), and negative list indexes (which crash the Python inspector) are
//! rejected.
//!
//! Nesting is bounded by [`MAX_NESTING`], and the parser grows its stack on
//! the heap when the calling thread's runs low, so no input can crash the
//! caller.
//!
//! ```
//! use threatbus_stix::pattern;
//! let p = pattern::parse("[file:hashes.'SHA-256' = 'abc'] WITHIN 5 SECONDS").unwrap();
//! let data = p.inspect();
//! assert_eq!(data.qualifiers, vec!["WITHIN 5 SECONDS".to_string()]);
//! let err = pattern::parse("[domain-name:value = 'evil.com'").unwrap_err();
//! assert_eq!(err.to_string(), "at 31: expected ']', found end of input");
//! ```

use std::borrow::Cow;
use std::fmt;

// ---------------------------------------------------------------------------
// Public AST
// ---------------------------------------------------------------------------

/// The deepest nesting a pattern may have: parentheses (around observation
/// or comparison expressions) and qualifiers together. Deeper patterns are
/// rejected with [`PatternErrorKind::TooDeep`] before they can exhaust the
/// stack of the thread that parses them. `stix2-patterns` has no explicit
/// limit; its recursion limit rejects 243 to 978 levels, depending on the
/// construct.
pub const MAX_NESTING: usize = 200;

/// The version of the patterning grammar (an indicator's `pattern_version`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum PatternVersion {
    /// STIX 2.0: no `EXISTS`; `START` and `STOP` take string literals.
    V2_0,
    /// STIX 2.1.
    V2_1,
}

impl PatternVersion {
    /// The grammar `stix2` applies for a `pattern_version` value: 2.1 for
    /// `"2.1"`, 2.0 for any other value (as `stix2patterns.validator` does).
    pub fn from_pattern_version(value: &str) -> Self {
        if value == "2.1" {
            PatternVersion::V2_1
        } else {
            PatternVersion::V2_0
        }
    }
}

/// A parsed STIX 2.1 pattern. Borrows the pattern text it was parsed from.
#[derive(Debug, Clone, PartialEq)]
pub struct Pattern<'a> {
    source: &'a str,
    root: ObservationExpression<'a>,
}

/// An observation expression: the part of a pattern outside `[...]`.
#[derive(Debug, Clone, PartialEq)]
pub enum ObservationExpression<'a> {
    /// `[ comparison-expression ]`.
    Observation(ComparisonExpression<'a>),
    /// `( observation-expressions )`.
    Grouped(Box<ObservationExpression<'a>>),
    /// `a AND b AND ...` (two or more operands).
    And(Vec<ObservationExpression<'a>>),
    /// `a OR b OR ...` (two or more operands).
    Or(Vec<ObservationExpression<'a>>),
    /// `a FOLLOWEDBY b FOLLOWEDBY ...` (two or more operands).
    FollowedBy(Vec<ObservationExpression<'a>>),
    /// An observation expression with a qualifier applied to it.
    Qualified {
        /// The qualified expression.
        expression: Box<ObservationExpression<'a>>,
        /// The qualifier.
        qualifier: Qualifier<'a>,
        /// Character offset of the qualifier keyword.
        position: usize,
    },
}

/// An observation expression qualifier.
#[derive(Debug, Clone, PartialEq)]
pub enum Qualifier<'a> {
    /// `WITHIN n SECONDS` (an integer or float literal).
    Within(Literal<'a>),
    /// `REPEATS n TIMES` (an integer literal).
    Repeats(Literal<'a>),
    /// `START t'...' STOP t'...'` (timestamp literals).
    StartStop(Literal<'a>, Literal<'a>),
}

/// A comparison expression: the part of a pattern inside `[...]`.
#[derive(Debug, Clone, PartialEq)]
pub enum ComparisonExpression<'a> {
    /// `a AND b AND ...` (two or more operands).
    And(Vec<ComparisonExpression<'a>>),
    /// `a OR b OR ...` (two or more operands).
    Or(Vec<ComparisonExpression<'a>>),
    /// `( comparison-expression )`.
    Grouped(Box<ComparisonExpression<'a>>),
    /// `object:path [NOT] op value`.
    Comparison(Comparison<'a>),
    /// `EXISTS object:path`.
    Exists(ObjectPath<'a>),
}

/// A single property test, e.g. `ipv4-addr:value = '6.6.6.6'`.
#[derive(Debug, Clone, PartialEq)]
pub struct Comparison<'a> {
    /// The object path on the left-hand side.
    pub path: ObjectPath<'a>,
    /// Whether the operator is prefixed with `NOT`.
    pub negated: bool,
    /// The comparison operator.
    pub operator: Operator,
    /// The operator as written (`=` or `==`, `!=` or `<>`, `IN`, ...).
    pub operator_text: &'a str,
    /// The right-hand side.
    pub value: ComparisonValue<'a>,
    /// Character offset of the object path.
    pub position: usize,
}

/// The right-hand side of a comparison.
#[derive(Debug, Clone, PartialEq)]
pub enum ComparisonValue<'a> {
    /// A single literal.
    Literal(Literal<'a>),
    /// A set literal `(a, b, ...)` (the right-hand side of `IN`).
    Set(Vec<Literal<'a>>),
}

/// A comparison operator.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Operator {
    /// `=` or `==`.
    Equal,
    /// `!=` or `<>`.
    NotEqual,
    /// `>`.
    Greater,
    /// `<`.
    Less,
    /// `>=`.
    GreaterOrEqual,
    /// `<=`.
    LessOrEqual,
    /// `IN`.
    In,
    /// `LIKE`.
    Like,
    /// `MATCHES`.
    Matches,
    /// `ISSUBSET`.
    IsSubset,
    /// `ISSUPERSET`.
    IsSuperset,
}

/// An object path such as `file:hashes.'SHA-256'` or
/// `email-message:to_refs[*].value`.
#[derive(Debug, Clone, PartialEq)]
pub struct ObjectPath<'a> {
    /// The object type, e.g. `file`.
    pub object_type: &'a str,
    /// The path components; the first one is always a [`PathStep::Key`].
    pub steps: Vec<PathStep<'a>>,
    /// Character offset of the object type.
    pub position: usize,
}

impl ObjectPath<'_> {
    /// Whether a list index step is negative (`[-1]`).
    pub fn has_negative_index(&self) -> bool {
        self.steps.iter().any(|s| matches!(s, PathStep::Index(i) if *i < 0))
    }
}

/// One component of an object path.
#[derive(Debug, Clone, PartialEq)]
pub enum PathStep<'a> {
    /// A property name (quoted names are unescaped).
    Key(Cow<'a, str>),
    /// A list index `[n]` (values beyond `i64` saturate).
    Index(i64),
    /// The any-index `[*]`.
    AnyIndex,
}

/// The kind of a literal.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum LiteralKind {
    /// An integer, e.g. `42`, `+1`, `-7`.
    Int,
    /// A float, e.g. `1.5`, `.5`, `-0.25`.
    Float,
    /// A single-quoted string.
    String,
    /// `true` or `false`.
    Bool,
    /// `t'2021-01-01T00:00:00Z'`.
    Timestamp,
    /// `h'0afe'`.
    Hex,
    /// `b'YWJj'` (base64).
    Binary,
}

/// A literal, kept as the exact text of its token.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Literal<'a> {
    /// What kind of literal this is.
    pub kind: LiteralKind,
    /// The token text, e.g. `'evil.com'` (with quotes), `42`, `t'...'`.
    pub text: &'a str,
    /// Character offset of the literal.
    pub position: usize,
}

impl Literal<'_> {
    /// The unescaped content of a string literal (`None` for other kinds).
    pub fn as_str(&self) -> Option<Cow<'_, str>> {
        (self.kind == LiteralKind::String).then(|| unescape_string(self.text))
    }

    /// The value of an integer literal (`None` for other kinds or overflow).
    pub fn as_i64(&self) -> Option<i64> {
        if self.kind != LiteralKind::Int {
            return None;
        }
        self.text.strip_prefix('+').unwrap_or(self.text).parse().ok()
    }

    /// The value of an integer or float literal.
    pub fn as_f64(&self) -> Option<f64> {
        match self.kind {
            LiteralKind::Int | LiteralKind::Float => self.text.parse().ok(),
            _ => None,
        }
    }

    /// The value of a boolean literal.
    pub fn as_bool(&self) -> Option<bool> {
        match (self.kind, self.text) {
            (LiteralKind::Bool, "true") => Some(true),
            (LiteralKind::Bool, "false") => Some(false),
            _ => None,
        }
    }

    /// The content between the quotes of a timestamp, hex or binary literal
    /// (`t'...'`, `h'...'`, `b'...'`).
    pub fn quoted_content(&self) -> Option<&str> {
        match self.kind {
            LiteralKind::Timestamp | LiteralKind::Hex | LiteralKind::Binary => self.text.get(2..self.text.len() - 1),
            _ => None,
        }
    }
}

/// Removes the quotes of a string literal token and unescapes `\'` and `\\`.
fn unescape_string(token: &str) -> Cow<'_, str> {
    let inner = &token[1..token.len() - 1];
    if !inner.contains('\\') {
        return Cow::Borrowed(inner);
    }
    let mut out = String::with_capacity(inner.len());
    let mut chars = inner.chars();
    while let Some(c) = chars.next() {
        if c == '\\' {
            if let Some(n) = chars.next() {
                out.push(n);
            }
        } else {
            out.push(c);
        }
    }
    Cow::Owned(out)
}

// ---------------------------------------------------------------------------
// Errors
// ---------------------------------------------------------------------------

/// Why a pattern was rejected.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PatternErrorKind {
    /// A syntax error: `expected` describes what the grammar allows at this
    /// point, `found` the offending token (`end of input` at the end).
    Syntax {
        /// What was expected, e.g. `']'`.
        expected: &'static str,
        /// What was found, e.g. `'=='` or `end of input`.
        found: String,
    },
    /// The pattern does not start with `[` or `([` (ignoring whitespace),
    /// which `stix2-patterns` requires.
    MissingBrackets,
    /// A hash value does not match its algorithm's format.
    InvalidHash {
        /// The hash algorithm as written in the object path.
        algorithm: String,
        /// The offending value (quotes removed).
        value: String,
    },
    /// A path containing `hashes` ends with a list index (`[n]` or `[*]`)
    /// instead of a hash algorithm name.
    InvalidHashSelector,
    /// A negative list index such as `[-1]` (accepted by the grammar but not
    /// supported by `stix2-patterns`).
    NegativeIndex,
    /// The same qualifier type was applied twice to one observation.
    DuplicateQualifier(&'static str),
    /// Parentheses and qualifiers nest deeper than [`MAX_NESTING`] levels.
    TooDeep,
}

/// A pattern parse or validation error.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PatternError {
    /// Character offset (0-based) where the problem was detected.
    pub position: usize,
    /// What went wrong.
    pub kind: PatternErrorKind,
}

impl fmt::Display for PatternError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "at {}: ", self.position)?;
        match &self.kind {
            PatternErrorKind::Syntax { expected, found } => {
                write!(f, "expected {expected}, found {found}")
            }
            PatternErrorKind::MissingBrackets => f.write_str("expected the pattern to start with '[' or '(['"),
            PatternErrorKind::InvalidHash { algorithm, value } => {
                write!(f, "'{value}' is not a valid {algorithm} hash")
            }
            PatternErrorKind::InvalidHashSelector => {
                f.write_str("expected a hash algorithm after 'hashes', found a list index")
            }
            PatternErrorKind::NegativeIndex => f.write_str("negative list indexes are not supported"),
            PatternErrorKind::DuplicateQualifier(q) => {
                write!(f, "duplicate {q} qualifier on one observation")
            }
            PatternErrorKind::TooDeep => {
                write!(f, "parentheses and qualifiers nest deeper than {MAX_NESTING} levels")
            }
        }
    }
}

impl std::error::Error for PatternError {}

// ---------------------------------------------------------------------------
// Lexer
// ---------------------------------------------------------------------------

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Tok {
    IntNeg,
    IntPos,
    FloatNeg,
    FloatPos,
    Hex,
    Binary,
    Str,
    Bool,
    Timestamp,
    And,
    Or,
    Not,
    FollowedBy,
    Like,
    Matches,
    IsSuperset,
    IsSubset,
    Exists,
    Last,
    In,
    Start,
    Stop,
    Seconds,
    Within,
    Repeats,
    Times,
    IdentNoHyphen,
    IdentHyphen,
    Eq,
    Neq,
    Lt,
    Le,
    Gt,
    Ge,
    Quote,
    Colon,
    Dot,
    Comma,
    RParen,
    LParen,
    RBrack,
    LBrack,
    Plus,
    Hyphen,
    PowerOp,
    Divide,
    Asterisk,
    Invalid,
    Eof,
}

#[derive(Debug, Clone, Copy)]
struct Token {
    kind: Tok,
    start: usize,
    end: usize,
}

fn is_pattern_ws(c: char) -> bool {
    matches!(
        c,
        ' ' | '\t' | '\r' | '\n' | '\u{000B}' | '\u{000C}' | '\u{0085}' | '\u{00A0}' | '\u{1680}' | '\u{2000}'
            ..='\u{200A}' | '\u{2028}' | '\u{2029}' | '\u{202F}' | '\u{205F}' | '\u{3000}'
    )
}

struct Lexer<'a> {
    src: &'a str,
    pos: usize,
    /// `EXISTS` is a keyword in STIX 2.1 only (an identifier in 2.0).
    exists_keyword: bool,
}

impl<'a> Lexer<'a> {
    fn bytes(&self) -> &'a [u8] {
        self.src.as_bytes()
    }

    fn byte_at(&self, i: usize) -> u8 {
        self.bytes().get(i).copied().unwrap_or(0)
    }

    /// Skips whitespace and comments.
    fn skip_trivia(&mut self) {
        loop {
            let rest = &self.src[self.pos..];
            let Some(c) = rest.chars().next() else { return };
            if is_pattern_ws(c) {
                self.pos += c.len_utf8();
                continue;
            }
            if let Some(body) = rest.strip_prefix("/*") {
                if let Some(end) = body.find("*/") {
                    self.pos += 2 + end + 2;
                    continue;
                }
                return;
            }
            if rest.starts_with("//") {
                let end = rest.find(['\r', '\n']).unwrap_or(rest.len());
                self.pos += end;
                continue;
            }
            return;
        }
    }

    fn next_token(&mut self) -> Token {
        self.skip_trivia();
        let start = self.pos;
        let b = self.bytes();
        if start >= b.len() {
            return Token { kind: Tok::Eof, start, end: start };
        }
        let (kind, len) = self.scan(start);
        self.pos = start + len;
        Token { kind, start, end: start + len }
    }

    /// Maximal-munch scan of one token at `p`; returns kind and byte length.
    fn scan(&self, p: usize) -> (Tok, usize) {
        let b = self.bytes();
        let c = b[p];
        match c {
            b'a'..=b'z' | b'A'..=b'Z' | b'_' => {
                if self.byte_at(p + 1) == b'\'' {
                    let lit = match c {
                        b'h' => self.scan_hex(p).map(|l| (Tok::Hex, l)),
                        b'b' => self.scan_binary(p).map(|l| (Tok::Binary, l)),
                        b't' => self.scan_timestamp(p).map(|l| (Tok::Timestamp, l)),
                        _ => None,
                    };
                    if let Some(found) = lit {
                        return found;
                    }
                }
                let mut e = p + 1;
                while e < b.len() && (b[e].is_ascii_alphanumeric() || b[e] == b'_') {
                    e += 1;
                }
                let no_hyphen = e;
                while e < b.len() && (b[e].is_ascii_alphanumeric() || b[e] == b'_' || b[e] == b'-') {
                    e += 1;
                }
                if e > no_hyphen {
                    return (Tok::IdentHyphen, e - p);
                }
                let kind = match &self.src[p..e] {
                    "AND" => Tok::And,
                    "OR" => Tok::Or,
                    "NOT" => Tok::Not,
                    "FOLLOWEDBY" => Tok::FollowedBy,
                    "LIKE" => Tok::Like,
                    "MATCHES" => Tok::Matches,
                    "ISSUPERSET" => Tok::IsSuperset,
                    "ISSUBSET" => Tok::IsSubset,
                    "EXISTS" if self.exists_keyword => Tok::Exists,
                    "LAST" => Tok::Last,
                    "IN" => Tok::In,
                    "START" => Tok::Start,
                    "STOP" => Tok::Stop,
                    "SECONDS" => Tok::Seconds,
                    "WITHIN" => Tok::Within,
                    "REPEATS" => Tok::Repeats,
                    "TIMES" => Tok::Times,
                    "true" | "false" => Tok::Bool,
                    _ => Tok::IdentNoHyphen,
                };
                (kind, e - p)
            }
            b'0'..=b'9' | b'+' | b'-' | b'.' => self.scan_number(p),
            b'\'' => match self.scan_string(p) {
                Some(l) => (Tok::Str, l),
                None => (Tok::Quote, 1),
            },
            b'=' => (Tok::Eq, if self.byte_at(p + 1) == b'=' { 2 } else { 1 }),
            b'!' => {
                if self.byte_at(p + 1) == b'=' {
                    (Tok::Neq, 2)
                } else {
                    (Tok::Invalid, 1)
                }
            }
            b'<' => match self.byte_at(p + 1) {
                b'=' => (Tok::Le, 2),
                b'>' => (Tok::Neq, 2),
                _ => (Tok::Lt, 1),
            },
            b'>' => {
                if self.byte_at(p + 1) == b'=' {
                    (Tok::Ge, 2)
                } else {
                    (Tok::Gt, 1)
                }
            }
            b':' => (Tok::Colon, 1),
            b',' => (Tok::Comma, 1),
            b')' => (Tok::RParen, 1),
            b'(' => (Tok::LParen, 1),
            b']' => (Tok::RBrack, 1),
            b'[' => (Tok::LBrack, 1),
            b'^' => (Tok::PowerOp, 1),
            b'/' => (Tok::Divide, 1),
            b'*' => (Tok::Asterisk, 1),
            _ => {
                let ch_len = self.src[p..].chars().next().map_or(1, char::len_utf8);
                (Tok::Invalid, ch_len)
            }
        }
    }

    fn scan_number(&self, p: usize) -> (Tok, usize) {
        let b = self.bytes();
        let sign = b[p];
        let mut i = p;
        if sign == b'+' || sign == b'-' {
            i += 1;
        }
        let digits_start = i;
        while i < b.len() && b[i].is_ascii_digit() {
            i += 1;
        }
        let ndigits = i - digits_start;
        let int_len = match ndigits {
            0 => 0,
            _ if b[digits_start] == b'0' => digits_start + 1 - p,
            _ => i - p,
        };
        let mut float_len = 0;
        if i < b.len() && b[i] == b'.' {
            let mut j = i + 1;
            while j < b.len() && b[j].is_ascii_digit() {
                j += 1;
            }
            if j > i + 1 {
                float_len = j - p;
            }
        }
        let negative = sign == b'-';
        if float_len > 0 && float_len > int_len {
            return (if negative { Tok::FloatNeg } else { Tok::FloatPos }, float_len);
        }
        if int_len > 0 {
            return (if negative { Tok::IntNeg } else { Tok::IntPos }, int_len);
        }
        match sign {
            b'+' => (Tok::Plus, 1),
            b'-' => (Tok::Hyphen, 1),
            _ => (Tok::Dot, 1),
        }
    }

    /// `'...'` with escapes `\'` and `\\` only.
    fn scan_string(&self, p: usize) -> Option<usize> {
        let b = self.bytes();
        let mut i = p + 1;
        while i < b.len() {
            match b[i] {
                b'\'' => return Some(i + 1 - p),
                b'\\' => match b.get(i + 1) {
                    Some(b'\'') | Some(b'\\') => i += 2,
                    _ => return None,
                },
                _ => i += 1,
            }
        }
        None
    }

    /// `h'` (two hex digits)* `'`.
    fn scan_hex(&self, p: usize) -> Option<usize> {
        let b = self.bytes();
        let mut i = p + 2;
        while i < b.len() && b[i].is_ascii_hexdigit() {
            i += 1;
        }
        ((i - (p + 2)) % 2 == 0 && b.get(i) == Some(&b'\'')).then_some(i + 1 - p)
    }

    /// `b'` base64 with correct padding, at least one group `'`.
    fn scan_binary(&self, p: usize) -> Option<usize> {
        let b = self.bytes();
        let start = p + 2;
        let mut i = start;
        while i < b.len() && (b[i].is_ascii_alphanumeric() || matches!(b[i], b'+' | b'/' | b'=')) {
            i += 1;
        }
        if b.get(i) != Some(&b'\'') {
            return None;
        }
        let content = &b[start..i];
        let n = content.len();
        if n == 0 || n % 4 != 0 {
            return None;
        }
        let pad = content.iter().rev().take_while(|&&c| c == b'=').count();
        if pad > 2 || content[..n - pad].contains(&b'=') {
            return None;
        }
        Some(i + 1 - p)
    }

    /// `t'YYYY-MM-DDTHH:MM:SS[.f+]Z'` with the grammar's range checks.
    fn scan_timestamp(&self, p: usize) -> Option<usize> {
        let b = self.bytes();
        let d = |i: usize| b.get(i).copied().filter(u8::is_ascii_digit);
        let at = |i: usize, c: u8| b.get(i) == Some(&c);
        let s = p + 2;
        for k in 0..4 {
            d(s + k)?;
        }
        if !at(s + 4, b'-') {
            return None;
        }
        let (m1, m2) = (d(s + 5)?, d(s + 6)?);
        if !((m1 == b'0' && m2 != b'0') || (m1 == b'1' && m2 <= b'2')) || !at(s + 7, b'-') {
            return None;
        }
        let (d1, d2) = (d(s + 8)?, d(s + 9)?);
        if !((d1 == b'0' && d2 != b'0') || d1 == b'1' || d1 == b'2' || (d1 == b'3' && d2 <= b'1')) {
            return None;
        }
        if !at(s + 10, b'T') {
            return None;
        }
        let (h1, h2) = (d(s + 11)?, d(s + 12)?);
        if !(h1 <= b'1' || (h1 == b'2' && h2 <= b'3')) || !at(s + 13, b':') {
            return None;
        }
        let (mi1, _) = (d(s + 14)?, d(s + 15)?);
        if mi1 > b'5' || !at(s + 16, b':') {
            return None;
        }
        let (s1, s2) = (d(s + 17)?, d(s + 18)?);
        if !(s1 <= b'5' || (s1 == b'6' && s2 == b'0')) {
            return None;
        }
        let mut i = s + 19;
        if at(i, b'.') {
            let f = i + 1;
            i = f;
            while d(i).is_some() {
                i += 1;
            }
            if i == f {
                return None;
            }
        }
        if !at(i, b'Z') || !at(i + 1, b'\'') {
            return None;
        }
        Some(i + 2 - p)
    }
}

// ---------------------------------------------------------------------------
// Parser
// ---------------------------------------------------------------------------

struct Parser<'a> {
    lexer: Lexer<'a>,
    tok: Token,
    /// Byte offsets equal character offsets (the common case).
    ascii: bool,
    version: PatternVersion,
    /// Current nesting: open parentheses plus qualifiers applied so far.
    depth: usize,
}

type PResult<T> = Result<T, PatternError>;

/// Runs one level of recursion of the parser with enough stack: when less
/// than 64 KiB are left, the rest of the descent continues on a new 1 MiB
/// segment on the heap. The parser then never overflows the stack of
/// whichever thread calls it, however small (a level costs about 8 KiB in
/// an unoptimised build, 2 KiB in a release build).
fn grow_stack<R>(f: impl FnOnce() -> R) -> R {
    stacker::maybe_grow(64 * 1024, 1024 * 1024, f)
}

/// Describes why the string literal starting at `rest` (a `'`) did not lex.
fn describe_bad_string(rest: &str) -> &'static str {
    let b = rest.as_bytes();
    let mut i = 1;
    while i < b.len() {
        match b[i] {
            b'\'' => break,
            b'\\' => match b.get(i + 1) {
                Some(b'\'') | Some(b'\\') => i += 2,
                _ => return "an invalid escape in a string literal (only \\' and \\\\ are allowed)",
            },
            _ => i += 1,
        }
    }
    "an unterminated string literal"
}

/// Converts a byte offset into a character offset.
fn char_pos(src: &str, byte: usize) -> usize {
    src.get(..byte).map_or(byte, |s| s.chars().count())
}

impl<'a> Parser<'a> {
    fn new(src: &'a str, version: PatternVersion) -> Self {
        let mut lexer = Lexer { src, pos: 0, exists_keyword: version == PatternVersion::V2_1 };
        let tok = lexer.next_token();
        Parser { lexer, tok, ascii: src.is_ascii(), version, depth: 0 }
    }

    /// Enters one more level of nesting at the current token; fails past
    /// [`MAX_NESTING`] so that neither the parser nor any walk over the
    /// tree can exhaust the stack.
    fn nest(&mut self) -> PResult<()> {
        if self.depth >= MAX_NESTING {
            return Err(PatternError { position: self.pos(self.tok), kind: PatternErrorKind::TooDeep });
        }
        self.depth += 1;
        Ok(())
    }

    fn src(&self) -> &'a str {
        self.lexer.src
    }

    fn text(&self, t: Token) -> &'a str {
        &self.lexer.src[t.start..t.end]
    }

    fn pos(&self, t: Token) -> usize {
        if self.ascii {
            t.start
        } else {
            char_pos(self.src(), t.start)
        }
    }

    fn bump(&mut self) -> Token {
        let t = self.tok;
        self.tok = self.lexer.next_token();
        t
    }

    fn error(&self, expected: &'static str) -> PatternError {
        let t = self.tok;
        let found = match t.kind {
            Tok::Eof => "end of input".to_string(),
            Tok::Quote => describe_bad_string(&self.src()[t.start..]).to_string(),
            _ => {
                let text = self.text(t);
                let mut shown: String = text.chars().take(40).collect();
                if shown.len() < text.len() {
                    shown.push_str("...");
                }
                format!("'{shown}'")
            }
        };
        PatternError { position: self.pos(t), kind: PatternErrorKind::Syntax { expected, found } }
    }

    fn expect(&mut self, kind: Tok, expected: &'static str) -> PResult<Token> {
        if self.tok.kind == kind {
            Ok(self.bump())
        } else {
            Err(self.error(expected))
        }
    }

    fn pattern(&mut self) -> PResult<ObservationExpression<'a>> {
        let root = self.observation_expressions()?;
        if self.tok.kind != Tok::Eof {
            return Err(self.error("end of pattern, AND, OR, FOLLOWEDBY or a qualifier (WITHIN, REPEATS, START)"));
        }
        Ok(root)
    }

    fn observation_expressions(&mut self) -> PResult<ObservationExpression<'a>> {
        let first = self.observation_or()?;
        if self.tok.kind != Tok::FollowedBy {
            return Ok(first);
        }
        let mut items = vec![first];
        while self.tok.kind == Tok::FollowedBy {
            self.bump();
            items.push(self.observation_or()?);
        }
        Ok(ObservationExpression::FollowedBy(items))
    }

    fn observation_or(&mut self) -> PResult<ObservationExpression<'a>> {
        let first = self.observation_and()?;
        if self.tok.kind != Tok::Or {
            return Ok(first);
        }
        let mut items = vec![first];
        while self.tok.kind == Tok::Or {
            self.bump();
            items.push(self.observation_and()?);
        }
        Ok(ObservationExpression::Or(items))
    }

    fn observation_and(&mut self) -> PResult<ObservationExpression<'a>> {
        let first = self.observation_expression()?;
        if self.tok.kind != Tok::And {
            return Ok(first);
        }
        let mut items = vec![first];
        while self.tok.kind == Tok::And {
            self.bump();
            items.push(self.observation_expression()?);
        }
        Ok(ObservationExpression::And(items))
    }

    fn observation_expression(&mut self) -> PResult<ObservationExpression<'a>> {
        let expr = match self.tok.kind {
            Tok::LBrack => {
                self.bump();
                let inner = self.comparison_expression()?;
                self.expect(Tok::RBrack, "']'")?;
                ObservationExpression::Observation(inner)
            }
            Tok::LParen => {
                self.nest()?;
                self.bump();
                let inner = grow_stack(|| self.observation_expressions())?;
                self.expect(Tok::RParen, "')'")?;
                self.depth -= 1;
                ObservationExpression::Grouped(Box::new(inner))
            }
            _ => return Err(self.error("'[' or '('")),
        };
        let outer_depth = self.depth;
        let result = self.qualifiers(expr);
        self.depth = outer_depth;
        result
    }

    /// Applies the qualifiers that follow an observation expression.
    fn qualifiers(&mut self, mut expr: ObservationExpression<'a>) -> PResult<ObservationExpression<'a>> {
        loop {
            let position = self.pos(self.tok);
            let qualifier = match self.tok.kind {
                Tok::Within => {
                    self.bump();
                    let lit = match self.tok.kind {
                        Tok::IntPos => self.literal(LiteralKind::Int),
                        Tok::FloatPos => self.literal(LiteralKind::Float),
                        _ => return Err(self.error("a positive number of seconds")),
                    };
                    self.expect(Tok::Seconds, "'SECONDS'")?;
                    Qualifier::Within(lit)
                }
                Tok::Repeats => {
                    self.bump();
                    if self.tok.kind != Tok::IntPos {
                        return Err(self.error("a positive integer"));
                    }
                    let lit = self.literal(LiteralKind::Int);
                    self.expect(Tok::Times, "'TIMES'")?;
                    Qualifier::Repeats(lit)
                }
                Tok::Start => {
                    self.bump();
                    let start = self.start_stop_literal()?;
                    self.expect(Tok::Stop, "'STOP'")?;
                    let stop = self.start_stop_literal()?;
                    Qualifier::StartStop(start, stop)
                }
                _ => return Ok(expr),
            };
            self.nest()?;
            expr = ObservationExpression::Qualified { expression: Box::new(expr), qualifier, position };
        }
    }

    /// The operand of `START` / `STOP`: a timestamp literal in STIX 2.1, a
    /// string literal in STIX 2.0.
    fn start_stop_literal(&mut self) -> PResult<Literal<'a>> {
        match (self.version, self.tok.kind) {
            (PatternVersion::V2_1, Tok::Timestamp) => Ok(self.literal(LiteralKind::Timestamp)),
            (PatternVersion::V2_1, _) => Err(self.error("a timestamp literal t'YYYY-MM-DDTHH:MM:SSZ'")),
            (PatternVersion::V2_0, Tok::Str) => Ok(self.literal(LiteralKind::String)),
            (PatternVersion::V2_0, _) => Err(self.error("a string literal '...'")),
        }
    }

    fn literal(&mut self, kind: LiteralKind) -> Literal<'a> {
        let t = self.bump();
        Literal { kind, text: self.text(t), position: self.pos(t) }
    }

    fn comparison_expression(&mut self) -> PResult<ComparisonExpression<'a>> {
        let first = self.comparison_and()?;
        if self.tok.kind != Tok::Or {
            return Ok(first);
        }
        let mut items = vec![first];
        while self.tok.kind == Tok::Or {
            self.bump();
            items.push(self.comparison_and()?);
        }
        Ok(ComparisonExpression::Or(items))
    }

    fn comparison_and(&mut self) -> PResult<ComparisonExpression<'a>> {
        let first = self.prop_test()?;
        if self.tok.kind != Tok::And {
            return Ok(first);
        }
        let mut items = vec![first];
        while self.tok.kind == Tok::And {
            self.bump();
            items.push(self.prop_test()?);
        }
        Ok(ComparisonExpression::And(items))
    }

    fn prop_test(&mut self) -> PResult<ComparisonExpression<'a>> {
        match self.tok.kind {
            Tok::LParen => {
                self.nest()?;
                self.bump();
                let inner = grow_stack(|| self.comparison_expression())?;
                self.expect(Tok::RParen, "')'")?;
                self.depth -= 1;
                return Ok(ComparisonExpression::Grouped(Box::new(inner)));
            }
            Tok::Exists => {
                self.bump();
                let path = self.object_path()?;
                return Ok(ComparisonExpression::Exists(path));
            }
            Tok::IdentNoHyphen | Tok::IdentHyphen => {}
            _ => return Err(self.error("an object path (object-type:property), '(' or EXISTS")),
        }
        let position = self.pos(self.tok);
        let path = self.object_path()?;
        let negated = if self.tok.kind == Tok::Not {
            self.bump();
            true
        } else {
            false
        };
        let op_tok = self.tok;
        let operator = match op_tok.kind {
            Tok::Eq => Operator::Equal,
            Tok::Neq => Operator::NotEqual,
            Tok::Gt => Operator::Greater,
            Tok::Lt => Operator::Less,
            Tok::Ge => Operator::GreaterOrEqual,
            Tok::Le => Operator::LessOrEqual,
            Tok::In => Operator::In,
            Tok::Like => Operator::Like,
            Tok::Matches => Operator::Matches,
            Tok::IsSubset => Operator::IsSubset,
            Tok::IsSuperset => Operator::IsSuperset,
            _ => return Err(self.error(if negated {
                "a comparison operator (=, !=, <, <=, >, >=, IN, LIKE, MATCHES, ISSUBSET, ISSUPERSET)"
            } else {
                "a comparison operator (=, !=, <, <=, >, >=, IN, LIKE, MATCHES, ISSUBSET, ISSUPERSET), NOT, '.' or '['"
            })),
        };
        self.bump();
        let value = match operator {
            Operator::Equal | Operator::NotEqual => ComparisonValue::Literal(self.primitive_literal(true)?),
            Operator::Greater | Operator::Less | Operator::GreaterOrEqual | Operator::LessOrEqual => {
                ComparisonValue::Literal(self.primitive_literal(false)?)
            }
            Operator::In => ComparisonValue::Set(self.set_literal()?),
            Operator::Like | Operator::Matches | Operator::IsSubset | Operator::IsSuperset => {
                if self.tok.kind != Tok::Str {
                    return Err(self.error("a string literal"));
                }
                ComparisonValue::Literal(self.literal(LiteralKind::String))
            }
        };
        Ok(ComparisonExpression::Comparison(Comparison {
            path,
            negated,
            operator,
            operator_text: self.text(op_tok),
            value,
            position,
        }))
    }

    fn primitive_literal(&mut self, allow_bool: bool) -> PResult<Literal<'a>> {
        let kind = match self.tok.kind {
            Tok::IntPos | Tok::IntNeg => LiteralKind::Int,
            Tok::FloatPos | Tok::FloatNeg => LiteralKind::Float,
            Tok::Str => LiteralKind::String,
            Tok::Binary => LiteralKind::Binary,
            Tok::Hex => LiteralKind::Hex,
            Tok::Timestamp => LiteralKind::Timestamp,
            Tok::Bool if allow_bool => LiteralKind::Bool,
            _ => {
                return Err(self.error(if allow_bool {
                    "a literal (string, number, boolean, t'timestamp', h'hex' or b'base64')"
                } else {
                    "an orderable literal (string, number, t'timestamp', h'hex' or b'base64')"
                }))
            }
        };
        Ok(self.literal(kind))
    }

    fn set_literal(&mut self) -> PResult<Vec<Literal<'a>>> {
        self.expect(Tok::LParen, "'(' starting a set")?;
        let mut items = Vec::new();
        if self.tok.kind == Tok::RParen {
            self.bump();
            return Ok(items);
        }
        loop {
            items.push(self.primitive_literal(true)?);
            match self.tok.kind {
                Tok::Comma => {
                    self.bump();
                }
                Tok::RParen => {
                    self.bump();
                    return Ok(items);
                }
                _ => return Err(self.error("',' or ')'")),
            }
        }
    }

    fn object_path(&mut self) -> PResult<ObjectPath<'a>> {
        let position = self.pos(self.tok);
        let object_type = match self.tok.kind {
            Tok::IdentNoHyphen | Tok::IdentHyphen => {
                let t = self.bump();
                self.text(t)
            }
            _ => return Err(self.error("an object type")),
        };
        self.expect(Tok::Colon, "':'")?;
        let first = match self.tok.kind {
            Tok::IdentNoHyphen => {
                let t = self.bump();
                PathStep::Key(Cow::Borrowed(self.text(t)))
            }
            Tok::Str => {
                let t = self.bump();
                PathStep::Key(unescape_string(self.text(t)))
            }
            _ => return Err(self.error("a property name (letters, digits and '_', or a quoted string)")),
        };
        let mut steps = vec![first];
        loop {
            match self.tok.kind {
                Tok::Dot => {
                    self.bump();
                    let step = match self.tok.kind {
                        Tok::IdentNoHyphen => {
                            let t = self.bump();
                            PathStep::Key(Cow::Borrowed(self.text(t)))
                        }
                        Tok::Str => {
                            let t = self.bump();
                            PathStep::Key(unescape_string(self.text(t)))
                        }
                        _ => return Err(self.error("a property name (letters, digits and '_', or a quoted string)")),
                    };
                    steps.push(step);
                }
                Tok::LBrack => {
                    self.bump();
                    let step = match self.tok.kind {
                        Tok::Asterisk => {
                            self.bump();
                            PathStep::AnyIndex
                        }
                        Tok::IntPos | Tok::IntNeg => {
                            let t = self.bump();
                            let text = self.text(t);
                            let text = text.strip_prefix('+').unwrap_or(text);
                            let v =
                                text.parse::<i64>().unwrap_or(if text.starts_with('-') { i64::MIN } else { i64::MAX });
                            PathStep::Index(v)
                        }
                        _ => return Err(self.error("a list index (an integer or '*')")),
                    };
                    self.expect(Tok::RBrack, "']'")?;
                    steps.push(step);
                }
                _ => return Ok(ObjectPath { object_type, steps, position }),
            }
        }
    }
}

// ---------------------------------------------------------------------------
// Entry points
// ---------------------------------------------------------------------------

/// Parses a STIX 2.1 pattern (grammar check only, like
/// `stix2patterns.v21.pattern.Pattern(p)`).
pub fn parse(pattern: &str) -> Result<Pattern<'_>, PatternError> {
    parse_version(pattern, PatternVersion::V2_1)
}

/// Parses a pattern with the grammar of the given STIX version (grammar
/// check only).
pub fn parse_version(pattern: &str, version: PatternVersion) -> Result<Pattern<'_>, PatternError> {
    let mut parser = Parser::new(pattern, version);
    let root = parser.pattern()?;
    Ok(Pattern { source: pattern, root })
}

/// Parses a STIX 2.1 pattern and applies every check `stix2` performs on the
/// pattern of an indicator with `pattern_type: "stix"` (see the module docs).
pub fn validate(pattern: &str) -> Result<Pattern<'_>, PatternError> {
    validate_version(pattern, PatternVersion::V2_1)
}

/// Like [`validate`], for a pattern of the given version, as `stix2` checks
/// an indicator whose `pattern_version` is that version: 2.0 patterns get
/// the 2.0 grammar and no duplicate-qualifier check.
pub fn validate_version(pattern: &str, version: PatternVersion) -> Result<Pattern<'_>, PatternError> {
    let parsed = parse_version(pattern, version)?;
    // `stix2patterns.helpers.leading_characters(p, 2)`: the first two
    // characters that are not Python `string.whitespace`.
    let mut lead = pattern.chars().filter(|c| !matches!(c, ' ' | '\t' | '\n' | '\r' | '\u{0B}' | '\u{0C}'));
    let (c0, c1) = (lead.next(), lead.next());
    if !(c0 == Some('[') || (c0 == Some('(') && c1 == Some('['))) {
        return Err(PatternError { position: 0, kind: PatternErrorKind::MissingBrackets });
    }
    if let Some(path) = parsed.first_negative_index_path() {
        return Err(PatternError { position: path.position, kind: PatternErrorKind::NegativeIndex });
    }
    let mut first_error = None;
    parsed.for_each_comparison(&mut |test| {
        if first_error.is_none() {
            first_error = check_comparison(test).err();
        }
    });
    if let Some(e) = first_error {
        return Err(e);
    }
    if version == PatternVersion::V2_1 {
        check_qualifiers(&parsed.root)?;
    }
    Ok(parsed)
}

/// Whether `pattern` is one equality of a plain property with a plain
/// string, `[object-type:property = 'text']`, the shape of almost every
/// indicator a bus carries. It is recognized without building a tree.
///
/// True means that [`validate_version`] accepts the pattern in both
/// versions; false means only "not that shape", not "invalid". The shape:
/// spaces only between tokens; a lowercase object type of letters, digits
/// and `-`; one or more lowercase property names joined by `.` (never
/// `hashes`, whose values the validator checks, nor `true` / `false`); `=`;
/// a string without `\` (so without escapes); `]` and nothing after it but
/// spaces.
pub fn is_plain_equality(pattern: &str) -> bool {
    let b = pattern.as_bytes();
    let at = |i: usize| b.get(i).copied().unwrap_or(0);
    let skip_spaces = |mut i: usize| {
        while at(i) == b' ' {
            i += 1;
        }
        i
    };
    let mut i = skip_spaces(0);
    if at(i) != b'[' {
        return false;
    }
    i = skip_spaces(i + 1);
    // The object type: a name with a hyphen is always one; one without
    // must not be a boolean (the only lowercase keywords).
    let start = i;
    if !at(i).is_ascii_lowercase() {
        return false;
    }
    while at(i).is_ascii_lowercase() || at(i).is_ascii_digit() || at(i) == b'-' {
        i += 1;
    }
    if matches!(&pattern[start..i], "true" | "false") {
        return false;
    }
    i = skip_spaces(i);
    if at(i) != b':' {
        return false;
    }
    i = skip_spaces(i + 1);
    // Property names: no hyphen (that would make another token), and
    // neither `hashes` nor a boolean.
    loop {
        let start = i;
        if !(at(i).is_ascii_lowercase() || at(i) == b'_') {
            return false;
        }
        while at(i).is_ascii_lowercase() || at(i).is_ascii_digit() || at(i) == b'_' {
            i += 1;
        }
        if matches!(&pattern[start..i], "hashes" | "true" | "false") {
            return false;
        }
        if at(i) != b'.' {
            break;
        }
        i += 1;
    }
    i = skip_spaces(i);
    // `=`, but not `==` (also equality, left to the parser).
    if at(i) != b'=' || at(i + 1) == b'=' {
        return false;
    }
    i = skip_spaces(i + 1);
    if at(i) != b'\'' {
        return false;
    }
    i += 1;
    loop {
        match at(i) {
            b'\'' => break,
            // An escape, or the end of the input (no closing quote).
            b'\\' => return false,
            0 if i >= b.len() => return false,
            _ => i += 1,
        }
    }
    i = skip_spaces(i + 1);
    if at(i) != b']' {
        return false;
    }
    skip_spaces(i + 1) == b.len()
}

/// Allowed hash formats, keyed by the normalised algorithm name
/// (uppercase, `-` and `'` removed), as in `stix2patterns.v21.object_validator`.
fn hash_is_valid(normalised: &str, value: &str) -> Option<bool> {
    fn hex_exact(v: &str, n: usize) -> bool {
        v.len() == n && v.bytes().all(|b| b.is_ascii_hexdigit())
    }
    fn hex_prefix(v: &str, n: usize) -> bool {
        v.len() >= n && v.as_bytes()[..n].iter().all(u8::is_ascii_hexdigit)
    }
    // Python's `$` also matches before one trailing newline.
    let anchored = value.strip_suffix('\n').unwrap_or(value);
    let ok = match normalised {
        "MD5" => hex_exact(anchored, 32),
        // The upstream MD6 regex only anchors its first alternative, so in
        // effect it accepts anything starting with 32 hex digits (or a
        // newline, four spaces and 64 hex digits).
        "MD6" => hex_prefix(value, 32) || value.strip_prefix("\n    ").is_some_and(|v| hex_prefix(v, 64)),
        "RIPEMD160" | "SHA1" => hex_exact(anchored, 40),
        "SHA224" | "SHA3224" => hex_exact(anchored, 56),
        "SHA256" | "SHA3256" => hex_exact(anchored, 64),
        "SHA384" | "SHA3384" => hex_exact(anchored, 96),
        "SHA512" | "SHA3512" | "WHIRLPOOL" => hex_exact(anchored, 128),
        "SSDEEP" => {
            (1..=128).contains(&anchored.len())
                && anchored.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'/' | b'+' | b':' | b'.'))
        }
        _ => return None,
    };
    Some(ok)
}

fn check_comparison(test: &Comparison<'_>) -> Result<(), PatternError> {
    let err = |kind| PatternError { position: test.position, kind };
    let has_hashes = test.path.steps.iter().any(|s| matches!(s, PathStep::Key(k) if k == "hashes"));
    if !has_hashes {
        return Ok(());
    }
    // stix2-patterns 1.3.0 calls `.upper()` on the last path step, which
    // fails for list indexes (including `[*]`).
    let selector = match test.path.steps.last() {
        Some(PathStep::Key(k)) => k,
        _ => return Err(err(PatternErrorKind::InvalidHashSelector)),
    };
    let normalised: String =
        selector.chars().filter(|c| *c != '-' && *c != '\'').flat_map(char::to_uppercase).collect();
    let value: String = inspect_value_text(&test.value).replace('\'', "");
    match hash_is_valid(&normalised, &value) {
        Some(false) => Err(err(PatternErrorKind::InvalidHash { algorithm: selector.to_string(), value })),
        _ => Ok(()),
    }
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum QualKind {
    Within,
    Repeats,
    StartStop,
}

/// Duplicate-qualifier check of `stix2patterns.v21.validator`: only
/// qualifiers applied directly to a `[...]` observation are checked.
/// Returns the set of qualifier types seen (`None` when unchecked).
fn check_qualifiers(expr: &ObservationExpression<'_>) -> Result<Option<Vec<QualKind>>, PatternError> {
    match expr {
        ObservationExpression::Observation(_) => Ok(Some(Vec::new())),
        ObservationExpression::Grouped(inner) => {
            check_qualifiers(inner)?;
            Ok(None)
        }
        ObservationExpression::And(items)
        | ObservationExpression::Or(items)
        | ObservationExpression::FollowedBy(items) => {
            for item in items {
                check_qualifiers(item)?;
            }
            Ok(None)
        }
        ObservationExpression::Qualified { expression, qualifier, position } => {
            let seen = check_qualifiers(expression)?;
            let Some(mut seen) = seen else { return Ok(None) };
            let (kind, name) = match qualifier {
                Qualifier::Within(_) => (QualKind::Within, "WITHIN"),
                Qualifier::Repeats(_) => (QualKind::Repeats, "REPEATS"),
                Qualifier::StartStop(..) => (QualKind::StartStop, "START/STOP"),
            };
            if seen.contains(&kind) {
                return Err(PatternError { position: *position, kind: PatternErrorKind::DuplicateQualifier(name) });
            }
            seen.push(kind);
            Ok(Some(seen))
        }
    }
}

// ---------------------------------------------------------------------------
// Inspection
// ---------------------------------------------------------------------------

/// Summary of a pattern, mirroring `stix2patterns`' `Pattern.inspect()`.
#[derive(Debug, Clone, PartialEq)]
pub struct PatternData<'p> {
    /// Comparisons grouped by object type, in order of first appearance.
    /// `EXISTS` tests are not included (as upstream).
    pub comparisons: Vec<(&'p str, Vec<InspectedComparison<'p>>)>,
    /// Observation operators used anywhere (`AND`, `OR`, `FOLLOWEDBY`),
    /// each at most once, in order of first appearance.
    pub observation_ops: Vec<&'static str>,
    /// Qualifiers used anywhere, e.g. `WITHIN 5 SECONDS`,
    /// `REPEATS 2 TIMES`, `START t'...' STOP t'...'`; deduplicated.
    pub qualifiers: Vec<String>,
}

/// One comparison as reported by [`Pattern::inspect`].
#[derive(Debug, Clone, PartialEq)]
pub struct InspectedComparison<'p> {
    /// The object path steps (the object type is the group key).
    pub path: &'p [PathStep<'p>],
    /// The operator, prefixed with `NOT ` if negated (`=`, `NOT LIKE`, ...).
    pub operator: String,
    /// The right-hand side's token text, e.g. `'evil.com'` (quotes kept) or
    /// `('a','b')` for sets (tokens joined without whitespace).
    pub value: String,
}

fn inspect_value_text(value: &ComparisonValue<'_>) -> String {
    match value {
        ComparisonValue::Literal(l) => l.text.to_string(),
        ComparisonValue::Set(items) => {
            let mut s = String::from("(");
            for (i, l) in items.iter().enumerate() {
                if i > 0 {
                    s.push(',');
                }
                s.push_str(l.text);
            }
            s.push(')');
            s
        }
    }
}

impl<'a> Pattern<'a> {
    /// The pattern text this was parsed from.
    pub fn source(&self) -> &'a str {
        self.source
    }

    /// The root observation expression.
    pub fn root(&self) -> &ObservationExpression<'a> {
        &self.root
    }

    /// Calls `f` for every comparison (not `EXISTS`) in source order.
    pub fn for_each_comparison<'s, F: FnMut(&'s Comparison<'a>)>(&'s self, f: &mut F) {
        fn walk_cmp<'s, 'a, F: FnMut(&'s Comparison<'a>)>(e: &'s ComparisonExpression<'a>, f: &mut F) {
            match e {
                ComparisonExpression::And(items) | ComparisonExpression::Or(items) => {
                    items.iter().for_each(|i| walk_cmp(i, f))
                }
                ComparisonExpression::Grouped(inner) => walk_cmp(inner, f),
                ComparisonExpression::Comparison(c) => f(c),
                ComparisonExpression::Exists(_) => {}
            }
        }
        fn walk_obs<'s, 'a, F: FnMut(&'s Comparison<'a>)>(e: &'s ObservationExpression<'a>, f: &mut F) {
            match e {
                ObservationExpression::Observation(c) => walk_cmp(c, f),
                ObservationExpression::Grouped(inner) => walk_obs(inner, f),
                ObservationExpression::And(items)
                | ObservationExpression::Or(items)
                | ObservationExpression::FollowedBy(items) => items.iter().for_each(|i| walk_obs(i, f)),
                ObservationExpression::Qualified { expression, .. } => walk_obs(expression, f),
            }
        }
        walk_obs(&self.root, f);
    }

    /// The first object path (comparison or `EXISTS`) with a negative list
    /// index; `stix2-patterns`' inspector fails on those.
    pub(crate) fn first_negative_index_path(&self) -> Option<&ObjectPath<'a>> {
        fn walk_cmp<'s, 'a>(e: &'s ComparisonExpression<'a>) -> Option<&'s ObjectPath<'a>> {
            match e {
                ComparisonExpression::And(items) | ComparisonExpression::Or(items) => items.iter().find_map(walk_cmp),
                ComparisonExpression::Grouped(inner) => walk_cmp(inner),
                ComparisonExpression::Comparison(c) => c.path.has_negative_index().then_some(&c.path),
                ComparisonExpression::Exists(p) => p.has_negative_index().then_some(p),
            }
        }
        fn walk_obs<'s, 'a>(e: &'s ObservationExpression<'a>) -> Option<&'s ObjectPath<'a>> {
            match e {
                ObservationExpression::Observation(c) => walk_cmp(c),
                ObservationExpression::Grouped(inner) => walk_obs(inner),
                ObservationExpression::And(items)
                | ObservationExpression::Or(items)
                | ObservationExpression::FollowedBy(items) => items.iter().find_map(walk_obs),
                ObservationExpression::Qualified { expression, .. } => walk_obs(expression),
            }
        }
        walk_obs(&self.root)
    }

    /// Whether any observation operator (`AND`, `OR`, `FOLLOWEDBY` between
    /// `[...]` observations) or qualifier is used.
    pub fn has_observation_ops_or_qualifiers(&self) -> bool {
        fn walk(e: &ObservationExpression<'_>) -> bool {
            match e {
                ObservationExpression::Observation(_) => false,
                ObservationExpression::Grouped(inner) => walk(inner),
                ObservationExpression::And(_)
                | ObservationExpression::Or(_)
                | ObservationExpression::FollowedBy(_)
                | ObservationExpression::Qualified { .. } => true,
            }
        }
        walk(&self.root)
    }

    /// Summarises the pattern like `stix2patterns`' `Pattern.inspect()`.
    pub fn inspect(&self) -> PatternData<'_> {
        let mut data = PatternData { comparisons: Vec::new(), observation_ops: Vec::new(), qualifiers: Vec::new() };
        self.for_each_comparison(&mut |c| {
            let entry = InspectedComparison {
                path: &c.path.steps,
                operator: if c.negated { format!("NOT {}", c.operator_text) } else { c.operator_text.to_string() },
                value: inspect_value_text(&c.value),
            };
            match data.comparisons.iter_mut().find(|(t, _)| *t == c.path.object_type) {
                Some((_, v)) => v.push(entry),
                None => data.comparisons.push((c.path.object_type, vec![entry])),
            }
        });
        fn walk(e: &ObservationExpression<'_>, d: &mut PatternData<'_>) {
            fn op(name: &'static str, d: &mut PatternData<'_>) {
                if !d.observation_ops.contains(&name) {
                    d.observation_ops.push(name);
                }
            }
            match e {
                ObservationExpression::Observation(_) => {}
                ObservationExpression::Grouped(inner) => walk(inner, d),
                ObservationExpression::And(items) => {
                    items.iter().for_each(|i| walk(i, d));
                    op("AND", d);
                }
                ObservationExpression::Or(items) => {
                    items.iter().for_each(|i| walk(i, d));
                    op("OR", d);
                }
                ObservationExpression::FollowedBy(items) => {
                    items.iter().for_each(|i| walk(i, d));
                    op("FOLLOWEDBY", d);
                }
                ObservationExpression::Qualified { expression, qualifier, .. } => {
                    walk(expression, d);
                    let q = match qualifier {
                        Qualifier::Within(l) => format!("WITHIN {} SECONDS", l.text),
                        Qualifier::Repeats(l) => format!("REPEATS {} TIMES", l.text),
                        Qualifier::StartStop(a, b) => format!("START {} STOP {}", a.text, b.text),
                    };
                    if !d.qualifiers.contains(&q) {
                        d.qualifiers.push(q);
                    }
                }
            }
        }
        walk(&self.root, &mut data);
        data
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ok(p: &str) {
        if let Err(e) = parse(p) {
            panic!("{p:?} should parse: {e}");
        }
    }

    fn bad(p: &str) -> PatternError {
        match parse(p) {
            Ok(x) => panic!("{p:?} should not parse: {x:?}"),
            Err(e) => e,
        }
    }

    #[test]
    fn valid_patterns() {
        for p in [
            "[ipv4-addr:value = '6.6.6.6']",
            "[ipv6-addr:value = '::1']",
            "[domain-name:value = 'evil.com']",
            "[x509-certificate:hashes.'SHA-1' = '6e6187d58483457f86eae49315a0a72d7543459a']",
            "[file:hashes.'SHA-256' = 'aec070645fe53ee3b3763059376134f058cc337247c978add178b6ccdfb0019f']",
            "[file:hashes.MD5 = 'd41d8cd98f00b204e9800998ecf8427e']",
            "[ipv4-addr:value == '6.6.6.6']",
            "[a:b != 1 AND a:c <> 2]",
            "[a:b > 1 OR a:b < -1 OR a:b >= 1.5 OR a:b <= -.5]",
            "[ipv4-addr:value IN ('1.1.1.1', '2.2.2.2')]",
            "[ipv4-addr:value NOT IN ()]",
            "[a:b IN (1, 2.5, true, false, 'x', t'2020-01-01T00:00:00Z', h'ab', b'YWJj')]",
            "[url:value LIKE '%evil%']",
            "[url:value NOT LIKE 'a']",
            "[file:name MATCHES '^.*\\\\.exe$']",
            "[ipv4-addr:value ISSUBSET '198.51.100.0/24']",
            "[ipv4-addr:value NOT ISSUPERSET '198.51.100.0/24']",
            "[a:b NOT = 'x']",
            "[EXISTS windows-registry-key:values]",
            "[email-message:to_refs[*].value = 'a@b.c']",
            "[network-traffic:protocols[0] = 'tcp']",
            "[network-traffic:protocols[-1] = 'tcp']",
            "[network-traffic:protocols[+1] = 'tcp']",
            "[file:extensions.'windows-pebinary-ext'.sections[*].entropy > 7.0]",
            "[file:'name' = 'x']",
            "[a:b = 'it\\'s \\\\ ok']",
            "[a:b = '']",
            "[a:b = 'é😀']",
            "[a:b = 1] AND [c:d = 2]",
            "[a:b = 1] OR [c:d = 2] FOLLOWEDBY [e:f = 3]",
            "([a:b = 1] AND [c:d = 2]) FOLLOWEDBY ([e:f = 3])",
            "(([a:b = 1]))",
            "[((a:b = 1) OR (a:c = 2)) AND (a:d = 3)]",
            "[a:b = 1] WITHIN 5 SECONDS",
            "[a:b = 1] WITHIN 5.5 SECONDS",
            "[a:b = 1] WITHIN 5 SECONDS WITHIN 6 SECONDS",
            "[a:b = 1] REPEATS 5 TIMES",
            "[a:b = 1] START t'2016-06-01T00:00:00Z' STOP t'2016-07-01T00:00:00.123Z'",
            "([a:b = 1] AND [c:d = 2]) REPEATS 2 TIMES WITHIN 10 SECONDS",
            "[a:b = 1] START t'2016-06-01T00:00:60Z' STOP t'2016-02-31T23:59:59Z'",
            "[a:b = b'YQ==' AND a:c = b'YWI=' AND a:d = h'']",
            "  [a:b = 1]  ",
            "/* comment */ [a:b = 1] // trailing",
            "[a:b\n=\t1]",
            "\u{3000}[a:b = 1]\u{a0}",
            "[a_b:c_d = 1]",
            "[a:b = 0]",
            "[a:b = -0]",
            "[a:b = +0.0]",
            "[x-foo-:bar = 1]",
            "[a:b = 1]/* unterminated? no: */",
            "[a:b. c = 1]",
        ] {
            ok(p);
        }
    }

    #[test]
    fn invalid_patterns() {
        for p in [
            "",
            "   ",
            "Some string",
            "6.6.6.6 = ipv4-addr:value",
            "ipv4-addr:value = '6.6.6.6'",
            "[ipv4-addr:value = '6.6.6.6'",
            "ipv4-addr:value = '6.6.6.6']",
            "[ipv4-addr:value = 6.6.6.6]",
            "[ipv4-addr:value = evil]",
            "[ipv4-addr:value === '6.6.6.6']",
            "[ipv4-addr:value = '6.6.6.6']]",
            "[ipv4-addr:value = '6.6.6.6'] garbage",
            "[ipv4-addr:value = '6.6.6.6'] [a:b = 1]",
            "[[ipv4-addr:value = '6.6.6.6']]",
            "[]",
            "[ipv4-addr = '1']",
            "[ipv4-addr:value]",
            "[ipv4-addr:value =]",
            "[a:b = 'unterminated]",
            "[a:b = 'bad \\n escape']",
            "[a:b = 1 and a:c = 2]",
            "[a:b = 1] and [a:c = 2]",
            "[a:b = 1 AND]",
            "[a:b = 1] AND",
            "[a:b = 1] FOLLOWEDBY",
            "([a:b = 1]",
            "[a:b = 1])",
            "[(a:b = 1]",
            "[a:b-c = 1]",
            "[a:b.c-d = 1]",
            "[a:b > true]",
            "[a:b LIKE 1]",
            "[a:b MATCHES t'2020-01-01T00:00:00Z']",
            "[a:b IN 1]",
            "[a:b IN (1 2)]",
            "[a:b IN (1,)]",
            "[a:b NOT NOT = 1]",
            "[a:b = 1] WITHIN SECONDS",
            "[a:b = 1] WITHIN -5 SECONDS",
            "[a:b = 1] WITHIN 5",
            "[a:b = 1] REPEATS 1.5 TIMES",
            "[a:b = 1] REPEATS 2",
            "[a:b = 1] START '2016-06-01T00:00:00Z' STOP t'2016-07-01T00:00:00Z'",
            "[a:b = 1] START t'2016-06-01T00:00:00Z'",
            "[a:b = t'2016-13-01T00:00:00Z']",
            "[a:b = t'2016-06-01 00:00:00Z']",
            "[a:b = h'abc']",
            "[a:b = b'']",
            "[a:b = b'YQ']",
            "[a:b = b'Y=Q=']",
            "[a:b = TRUE]",
            "[a:b[x] = 1]",
            "[a:b[1.5] = 1]",
            "[a:007 = 1]",
            "[a:b = 007]",
            "[AND:b = 1]",
            "[a:b = 1] within 5 seconds",
            "[a:b = 1] /* unterminated",
            "[a:b = 1] !",
            "[a:b ! 1]",
            "[a:b = 1] ; [c:d = 2]",
        ] {
            bad(p);
        }
    }

    #[test]
    fn error_positions_and_messages() {
        let e = bad("[ipv4-addr:value = '6.6.6.6'");
        assert_eq!(e.position, 28);
        assert_eq!(e.to_string(), "at 28: expected ']', found end of input");
        let e = bad("[ipv4-addr:value = 6.6.6.6]");
        assert_eq!(e.position, 22);
        assert_eq!(e.to_string(), "at 22: expected ']', found '.6'");
        let e = bad("[ipv4-addr:value = '6.6.6.6'] garbage");
        assert_eq!(e.position, 30);
        assert!(e.to_string().contains("found 'garbage'"), "{e}");
        let e = bad("ipv4-addr:value = '6.6.6.6'");
        assert_eq!(e.to_string(), "at 0: expected '[' or '(', found 'ipv4-addr'");
        let e = bad("[a:b = 'x]");
        assert_eq!(e.to_string(), "at 7: expected a literal (string, number, boolean, t'timestamp', h'hex' or b'base64'), found an unterminated string literal");
        // Positions count characters, not bytes.
        let e = bad("[a:b = 'é'");
        assert_eq!(e.position, 10);
        let e = bad("[a:b == 'x' AND a:c === 'y']");
        assert!(e.to_string().contains("found '='"), "{e}");
    }

    #[test]
    fn structure() {
        let p = parse("[a:b = 1 AND a:c = 2 OR a:d = 3] AND [e:f = 'x'] FOLLOWEDBY [g:h = 1]").unwrap();
        let ObservationExpression::FollowedBy(items) = p.root() else { panic!("{:?}", p.root()) };
        assert_eq!(items.len(), 2);
        let ObservationExpression::And(ands) = &items[0] else { panic!() };
        let ObservationExpression::Observation(ComparisonExpression::Or(ors)) = &ands[0] else { panic!() };
        assert!(matches!(&ors[0], ComparisonExpression::And(v) if v.len() == 2));

        let p = parse("[file:hashes.'SHA-256' NOT = 'x\\'y']").unwrap();
        let ObservationExpression::Observation(ComparisonExpression::Comparison(c)) = p.root() else { panic!() };
        assert_eq!(c.path.object_type, "file");
        assert_eq!(c.path.steps, vec![PathStep::Key("hashes".into()), PathStep::Key("SHA-256".into())]);
        assert!(c.negated);
        assert_eq!(c.operator, Operator::Equal);
        let ComparisonValue::Literal(l) = &c.value else { panic!() };
        assert_eq!(l.text, "'x\\'y'");
        assert_eq!(l.as_str().unwrap(), "x'y");

        let p = parse("[a:b[*].c[3][-2] IN (1, +2, 'z')]").unwrap();
        let ObservationExpression::Observation(ComparisonExpression::Comparison(c)) = p.root() else { panic!() };
        assert_eq!(
            c.path.steps,
            vec![
                PathStep::Key("b".into()),
                PathStep::AnyIndex,
                PathStep::Key("c".into()),
                PathStep::Index(3),
                PathStep::Index(-2)
            ]
        );
        let ComparisonValue::Set(items) = &c.value else { panic!() };
        assert_eq!(items[1].as_i64(), Some(2));
        assert_eq!(items[0].as_f64(), Some(1.0));
    }

    #[test]
    fn inspect_like_python() {
        let p = parse("[domain-name:value = 'evil.com']").unwrap();
        let d = p.inspect();
        assert_eq!(d.comparisons.len(), 1);
        assert_eq!(d.comparisons[0].0, "domain-name");
        let c = &d.comparisons[0].1[0];
        assert_eq!(c.path, &[PathStep::Key("value".into())][..]);
        assert_eq!(c.operator, "=");
        assert_eq!(c.value, "'evil.com'");
        assert!(d.observation_ops.is_empty() && d.qualifiers.is_empty());

        let p = parse(
            "([a:b NOT == 1 AND c:d IN ( 'x' , 2 )] OR [a:e <> 'y']) WITHIN 5 SECONDS \
             FOLLOWEDBY [e:f LIKE 'z'] START t'2016-06-01T00:00:00Z' STOP t'2016-07-01T00:00:00Z'",
        )
        .unwrap();
        let d = p.inspect();
        let types: Vec<_> = d.comparisons.iter().map(|(t, _)| *t).collect();
        assert_eq!(types, ["a", "c", "e"]);
        assert_eq!(d.comparisons[0].1[0].operator, "NOT ==");
        assert_eq!(d.comparisons[0].1[1].operator, "<>");
        assert_eq!(d.comparisons[1].1[0].value, "('x',2)");
        assert_eq!(d.observation_ops, ["OR", "FOLLOWEDBY"]);
        assert_eq!(d.qualifiers, ["WITHIN 5 SECONDS", "START t'2016-06-01T00:00:00Z' STOP t'2016-07-01T00:00:00Z'"]);
    }

    #[test]
    fn validate_applies_stix2_checks() {
        // Grammar-valid, but rejected by stix2's validator.
        for (p, needle) in [
            ("[file:hashes.'SHA-256' = 'abc']", "not a valid SHA-256 hash"),
            ("[file:hashes.MD5 = 'd41d8cd98f00b204e9800998ecf8427']", "MD5"),
            ("[file:hashes.sha1 = 5]", "not a valid sha1 hash"),
            ("[file:hashes[0] = 'x']", "list index"),
            ("[file:hashes[*] = 'x']", "list index"),
            ("[file:hashes.MD5[*] = 'd41d8cd98f00b204e9800998ecf8427e']", "list index"),
            ("[file:x[-1] = 'x']", "negative"),
            ("[EXISTS file:x[-1]]", "negative"),
            ("[a:b = 1] WITHIN 5 SECONDS WITHIN 6 SECONDS", "duplicate WITHIN"),
            ("[a:b = 1] REPEATS 2 TIMES WITHIN 1 SECONDS REPEATS 3 TIMES", "duplicate REPEATS"),
            ("(([a:b = 1]))", "start with"),
            ("/* c */ [a:b = 1]", "start with"),
        ] {
            let e = validate(p).expect_err(p);
            assert!(e.to_string().contains(needle), "{p}: {e}");
        }
        for p in [
            "[file:hashes.'SHA-256' = 'aec070645fe53ee3b3763059376134f058cc337247c978add178b6ccdfb0019f']",
            "[file:hashes.'SHA-1' = '6E6187D58483457F86EAE49315A0A72D7543459A']",
            "[file:hashes.'UNKNOWN-ALGO' = 'whatever']",
            "[file:hashes.SSDEEP = '3:AXGBicFlgVNhBGcL6wCrFQEv:AXGHsNhxLsr2C']",
            "[file:hashes.MD6 = 'aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaazz']",
            "([a:b = 1]) WITHIN 5 SECONDS WITHIN 6 SECONDS",
            "[a:b = 1] WITHIN 5 SECONDS REPEATS 2 TIMES",
            "[a:b = 1] WITHIN 5 SECONDS AND [a:c = 1] WITHIN 5 SECONDS",
            "([a:b = 1])",
            " \n[a:b = 1]",
            "( [a:b = 1])",
        ] {
            if let Err(e) = validate(p) {
                panic!("{p}: {e}");
            }
        }
    }

    /// Both grammars accept every pattern that `is_plain_equality` takes.
    fn assert_plain_is_valid(p: &str) {
        if is_plain_equality(p) {
            for version in [PatternVersion::V2_1, PatternVersion::V2_0] {
                if let Err(e) = validate_version(p, version) {
                    panic!("{p:?} was taken as a plain equality, but {version:?} rejects it: {e}");
                }
            }
        }
    }

    #[test]
    fn plain_equalities_are_recognized() {
        for p in [
            "[domain-name:value = 'evil.example.com']",
            "[ipv4-addr:value = '6.6.6.6']",
            "[url:value = 'http://a.example/x?y=1&z=\"q\"//']",
            "[email-message:from_ref.value = 'a@example.com']",
            "[file:name = '']",
            "[x--:v1_ = 'caf\u{e9}']",
            "  [ a : b='x' ]  ",
            "[a:b = ' [c:d = 1] AND ']",
        ] {
            assert!(is_plain_equality(p), "{p:?} is a plain equality");
            assert_plain_is_valid(p);
        }
        for p in [
            "[file:hashes.MD5 = 'abc']",
            "[file:hashes.'SHA-256' = 'abc']",
            "[true:value = 'x']",
            "[a:false = 'x']",
            "[Domain-name:value = 'x']",
            "[domain-name:Value = 'x']",
            "[domain-name:value-x = 'x']",
            "[domain-name:value == 'x']",
            "[domain-name:value != 'x']",
            "[domain-name:value = 'it\\'s']",
            "[domain-name:value = 'x'",
            "[domain-name:value = 'x] ",
            "[domain-name:value = 'x'] AND [a:b = 'y']",
            "[domain-name:value = 'x'] WITHIN 5 SECONDS",
            "[domain-name:value = 'x' AND a:b = 'y']",
            "[domain-name:value = 1]",
            "\t[domain-name:value = 'x']",
            "[domain-name:value.= 'x']",
            "[domain-name:.value = 'x']",
            "[domain-name:value[0] = 'x']",
            "([domain-name:value = 'x'])",
            "",
            "[",
        ] {
            assert!(!is_plain_equality(p), "{p:?} is not a plain equality");
        }
    }

    /// Random token strings: whatever `is_plain_equality` takes, the parser
    /// takes too.
    #[test]
    fn plain_equalities_are_a_subset_of_valid_patterns() {
        const PIECES: [&str; 30] = [
            "[",
            "]",
            " ",
            ":",
            "=",
            "'",
            "\\",
            ".",
            "-",
            "_",
            "a",
            "h",
            "b",
            "t",
            "0",
            "value",
            "hashes",
            "true",
            "false",
            "domain-name",
            "AND",
            "OR",
            "EXISTS",
            "\u{e9}",
            "\t",
            "(",
            ")",
            "*",
            "/",
            "x'",
        ];
        let mut state: u64 = 0x9e37_79b9_7f4a_7c15;
        let mut next = move || {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state
        };
        let mut taken = 0;
        for _ in 0..200_000 {
            let mut p = String::from("[");
            for _ in 0..(next() % 12) {
                p.push_str(PIECES[(next() % PIECES.len() as u64) as usize]);
            }
            // Most strings get the usual frame, so that many are taken.
            if next() % 2 == 0 {
                p = format!("[{}:{} = '{}']", &p[1..], PIECES[(next() % 30) as usize], PIECES[(next() % 30) as usize]);
            }
            if is_plain_equality(&p) {
                taken += 1;
            }
            assert_plain_is_valid(&p);
        }
        assert!(taken > 300, "only {taken} random patterns were plain equalities");
    }
}
