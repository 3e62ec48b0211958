//! A reference router: what `Router` must answer for a route table and a request,
//! written as plainly as possible (a linear scan, no tree), to check the real one
//! against. Plain std Rust with no dependency, so that the fuzz target
//! `fuzz/fuzz_targets/router_match.rs` includes this same file (`#[path]`).
//!
//! The tables it covers: routes made of static segments, whole-segment parameters
//! (`{p1}`), optionally constrained (`{p1:[0-9]+}`), a final catch-all (`{*r2}`),
//! optionally constrained too, and a trailing slash; each route has handlers for one
//! to three methods. Parameters are named after their position (`p<i>`, `r<i>`), as
//! matchit takes one name per position. Not covered: parameters with a prefix or
//! suffix inside a segment (`/img-{id}.png`), escaped braces, mounted services,
//! layers.
//!
//! # The rules encoded (from `router.rs`, matchit 0.9's README and the pipeline tests)
//!
//! Path and pattern are both split on `/` after the leading one (`/` is one empty
//! segment, `/a/` is `a` then an empty one).
//!
//! 1. **Shape.** A pattern's static segment matches the same raw (still
//!    percent-encoded) text; a parameter matches one non-empty segment; a catch-all
//!    matches the non-empty rest of the path, slashes included.
//! 2. **Precedence (matchit's).** Of the patterns whose shape matches, the one chosen
//!    is the first in segment order to have the stronger kind where they differ:
//!    static beats parameter, parameter beats catch-all. matchit backtracks, so a
//!    static segment that leads nowhere gives way to the parameter beside it
//!    (`/a/x` and `/{p0}/y`: `/a/y` is the second). Constraints play no part here.
//! 3. **Decoding.** The chosen pattern's parameters are percent-decoded in order
//!    (`%` not followed by two hex digits stays as it is). The first one that is not
//!    UTF-8 once decoded is a 400 naming it when one of the pattern's routes leaves it
//!    unconstrained; when every route constrains it, the pattern does not match (4).
//! 4. **Constraints.** The pattern's routes (one per distinct set of constraints, in
//!    the order they were added) are tried in order: the first whose constraints all
//!    hold on the decoded values takes the request. None: the path goes to the best
//!    (rule 2) pattern ending in a catch-all that has a route without any constraint,
//!    as if the constrained pattern did not exist (rules 3 and 4 again, there); else
//!    nothing takes it (5). A constrained pattern does **not** give way to a plain
//!    parameter beside it (`/a/{p1:[0-9]+}` beside `/{p0}/{p1}`: `/a/x` is a 404).
//! 5. **Not found.** A `GET` or `HEAD` of a path nothing takes is 308 to the same
//!    path with its trailing slash added or taken off (not to `/` itself), the query
//!    kept, when rules 1 to 4 route that one (the catch-all fallback of rule 4 aside);
//!    anything else is 404.
//! 6. **Methods.** The route found answers the methods it has a handler for, `HEAD`
//!    with its `GET` handler when it has no `HEAD` one. When it has neither, the next
//!    routes of the same pattern whose constraints hold are tried in order; none:
//!    405, whose `Allow` lists the methods of the route found and of the later ones
//!    whose constraints hold, in order, without repeats, `HEAD` after a route's
//!    methods when it has `GET` and no `HEAD`.
//! 7. **Conflicts.** A route is refused when another has the same pattern and
//!    constraints and a handler for one of its methods; when a pattern has a parameter
//!    where another, identical up to there, has a catch-all (matchit allows one of the
//!    two at a position); and a route with the same pattern and constraints as another
//!    but other methods joins it.

#![allow(
    dead_code,
    reason = "shared with the fuzz target, which uses other parts"
)]

use std::fmt::Write as _;

/// A parameter constraint, with its regex as written in the pattern and a predicate
/// written by hand (an oracle independent of the router's regex and of its
/// byte-by-byte fast path for simple classes).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub(crate) enum Constraint {
    /// `[0-9]+` (simple class).
    Digits,
    /// `[a-z]{2}` (simple class).
    TwoLower,
    /// `\d{1,3}` (simple class).
    ShortNumber,
    /// `[a-c-]+` (simple class, a literal `-`).
    AbcDash,
    /// `(a|bb)` (the regex).
    AOrBb,
    /// `[^0-9]+` (the regex: a negated class).
    NoDigit,
}

impl Constraint {
    /// Every constraint, for generators.
    pub(crate) const ALL: [Constraint; 6] = [
        Constraint::Digits,
        Constraint::TwoLower,
        Constraint::ShortNumber,
        Constraint::AbcDash,
        Constraint::AOrBb,
        Constraint::NoDigit,
    ];

    /// The regex, as written after `name:` in a pattern.
    pub(crate) fn regex(self) -> &'static str {
        match self {
            Constraint::Digits => "[0-9]+",
            Constraint::TwoLower => "[a-z]{2}",
            Constraint::ShortNumber => "\\d{1,3}",
            Constraint::AbcDash => "[a-c-]+",
            Constraint::AOrBb => "(a|bb)",
            Constraint::NoDigit => "[^0-9]+",
        }
    }

    /// Whether a decoded value meets it (the whole value, as the router anchors it).
    pub(crate) fn holds(self, value: &str) -> bool {
        let chars: Vec<char> = value.chars().collect();
        match self {
            Constraint::Digits => !chars.is_empty() && chars.iter().all(char::is_ascii_digit),
            Constraint::TwoLower => chars.len() == 2 && chars.iter().all(char::is_ascii_lowercase),
            Constraint::ShortNumber => {
                (1..=3).contains(&chars.len()) && chars.iter().all(char::is_ascii_digit)
            }
            Constraint::AbcDash => {
                !chars.is_empty() && chars.iter().all(|c| matches!(c, 'a'..='c' | '-'))
            }
            Constraint::AOrBb => value == "a" || value == "bb",
            Constraint::NoDigit => !chars.is_empty() && !chars.iter().any(char::is_ascii_digit),
        }
    }
}

/// One segment of a route's pattern.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub(crate) enum Seg {
    /// Literal text (empty: the trailing slash).
    Static(String),
    /// `{p<i>}` or `{p<i>:regex}`.
    Param(Option<Constraint>),
    /// `{*r<i>}` or `{*r<i>:regex}`, last.
    CatchAll(Option<Constraint>),
}

/// The kind of a segment, constraints left out: what matchit sees.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub(crate) enum Shape {
    /// Literal text.
    Static(String),
    /// A parameter.
    Param,
    /// A catch-all.
    CatchAll,
}

impl Shape {
    /// Rule 2's order: lower wins.
    fn rank(&self) -> u8 {
        match self {
            Shape::Static(_) => 0,
            Shape::Param => 1,
            Shape::CatchAll => 2,
        }
    }
}

/// The methods the generators use (a subset of HTTP's, enough for rule 6).
pub(crate) const ROUTE_METHODS: [&str; 3] = ["GET", "POST", "DELETE"];
/// The methods requests are sent with.
pub(crate) const REQUEST_METHODS: [&str; 5] = ["GET", "HEAD", "POST", "PUT", "DELETE"];

/// Static segments of the generated patterns and paths (few, so patterns overlap).
pub(crate) const STATICS: [&str; 5] = ["a", "b", "ab", "x-y", "v1"];
/// Parameter values of the generated paths: plain, numbers, percent-encoded (`%61`
/// is `a`, `%2F` a slash inside one segment, `%C3%A9` an `é`), not UTF-8 once decoded
/// (`%FF`), a `%` that encodes nothing, and raw bytes a URI path may carry (UTF-8,
/// braces).
pub(crate) const VALUES: [&str; 17] = [
    "a", "bb", "ab", "zz", "7", "42", "1234", "b-a", "%61", "%2F", "%C3%A9", "a%20b", "%FF",
    "x%FFy", "50%", "é", "{x}",
];

/// One row of a generated route table.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct RouteSpec {
    /// The pattern's segments (non-empty: the root route is one empty static segment).
    pub(crate) segs: Vec<Seg>,
    /// The methods it has handlers for (distinct, non-empty).
    pub(crate) methods: Vec<&'static str>,
}

impl RouteSpec {
    /// The pattern as given to `Router::route` (`/a/{p1:[0-9]+}/`).
    pub(crate) fn pattern(&self) -> String {
        let mut out = String::new();
        for (i, seg) in self.segs.iter().enumerate() {
            out.push('/');
            match seg {
                Seg::Static(text) => out.push_str(text),
                Seg::Param(c) => write_param(&mut out, "p", i, *c),
                Seg::CatchAll(c) => write_param(&mut out, "*r", i, *c),
            }
        }
        out
    }

    fn shape(&self) -> Vec<Shape> {
        self.segs
            .iter()
            .map(|seg| match seg {
                Seg::Static(text) => Shape::Static(text.clone()),
                Seg::Param(_) => Shape::Param,
                Seg::CatchAll(_) => Shape::CatchAll,
            })
            .collect()
    }

    /// The parameters' names and constraints, in pattern order.
    fn params(&self) -> Vec<(String, Option<Constraint>)> {
        self.segs
            .iter()
            .enumerate()
            .filter_map(|(i, seg)| match seg {
                Seg::Static(_) => None,
                Seg::Param(c) => Some((format!("p{i}"), *c)),
                Seg::CatchAll(c) => Some((format!("r{i}"), *c)),
            })
            .collect()
    }
}

fn write_param(out: &mut String, name: &str, position: usize, constraint: Option<Constraint>) {
    let _ = write!(out, "{{{name}{position}");
    if let Some(c) = constraint {
        let _ = write!(out, ":{}", c.regex());
    }
    out.push('}');
}

/// Why the model refuses a route (rule 7).
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Refusal {
    /// Same pattern and constraints, a method given twice.
    MethodTwice,
    /// A parameter where another pattern has a catch-all.
    Conflict,
}

/// A pattern's routes: one candidate per distinct set of constraints.
#[derive(Debug)]
struct Entry {
    shape: Vec<Shape>,
    names: Vec<String>,
    candidates: Vec<Candidate>,
}

#[derive(Debug)]
struct Candidate {
    /// One per parameter, in order.
    constraints: Vec<Option<Constraint>>,
    /// Method, and the table row whose handler it is.
    methods: Vec<(&'static str, usize)>,
}

impl Candidate {
    fn unconstrained(&self) -> bool {
        self.constraints.iter().all(Option::is_none)
    }

    fn holds(&self, values: &[String]) -> bool {
        self.constraints
            .iter()
            .zip(values)
            .all(|(c, v)| c.is_none_or(|c| c.holds(v)))
    }

    fn serves(&self, method: &str) -> bool {
        self.methods
            .iter()
            .any(|(m, _)| *m == method || (method == "HEAD" && *m == "GET"))
    }

    fn handler(&self, method: &str) -> Option<usize> {
        let exact = self.methods.iter().find(|(m, _)| *m == method);
        let head = || {
            (method == "HEAD")
                .then(|| self.methods.iter().find(|(m, _)| *m == "GET"))
                .flatten()
        };
        exact.or_else(head).map(|(_, row)| *row)
    }

    fn allow(&self) -> Vec<&'static str> {
        let mut allow: Vec<&'static str> = self.methods.iter().map(|(m, _)| *m).collect();
        if allow.contains(&"GET") && !allow.contains(&"HEAD") {
            allow.push("HEAD");
        }
        allow
    }
}

/// What a request gets.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Outcome {
    /// The handler of table row `route`, with the decoded parameters in order.
    Handler {
        /// The table row.
        route: usize,
        /// `(name, decoded value)`.
        params: Vec<(String, String)>,
    },
    /// 400: the parameter is not UTF-8 once decoded.
    NotUtf8(String),
    /// 405 with this `Allow`.
    MethodNotAllowed(Vec<String>),
    /// 308 to this location.
    Redirect(String),
    /// 404.
    NotFound,
}

/// The reference router.
#[derive(Debug, Default)]
pub(crate) struct Model {
    entries: Vec<Entry>,
}

/// What the tables give a path (`Found` in `router.rs`).
enum Found<'a> {
    Route(&'a Entry, usize, Vec<String>),
    NotUtf8(String),
}

impl Model {
    /// Adds table row `row`, or says why it is refused (rule 7).
    ///
    /// # Errors
    /// The refusal; the model is then unchanged.
    pub(crate) fn add(&mut self, row: usize, spec: &RouteSpec) -> Result<(), Refusal> {
        let shape = spec.shape();
        let params = spec.params();
        let constraints: Vec<Option<Constraint>> = params.iter().map(|(_, c)| *c).collect();
        let methods: Vec<(&'static str, usize)> = spec.methods.iter().map(|m| (*m, row)).collect();
        if let Some(entry) = self.entries.iter_mut().find(|e| e.shape == shape) {
            match entry
                .candidates
                .iter_mut()
                .find(|c| c.constraints == constraints)
            {
                Some(same) => {
                    if same.methods.iter().any(|(m, _)| spec.methods.contains(m)) {
                        return Err(Refusal::MethodTwice);
                    }
                    same.methods.extend(methods);
                }
                None => entry.candidates.push(Candidate {
                    constraints,
                    methods,
                }),
            }
            return Ok(());
        }
        if self.entries.iter().any(|e| conflict(&e.shape, &shape)) {
            return Err(Refusal::Conflict);
        }
        self.entries.push(Entry {
            shape,
            names: params.into_iter().map(|(name, _)| name).collect(),
            candidates: vec![Candidate {
                constraints,
                methods,
            }],
        });
        Ok(())
    }

    /// What `method` `path` (`?query`) gets.
    pub(crate) fn answer(&self, method: &str, path: &str, query: Option<&str>) -> Outcome {
        let found = match self.lookup(path, false) {
            Some(found) => Some(found),
            // Rule 4: past the constraints, to a plain catch-all.
            None => self.lookup(path, true),
        };
        match found {
            Some(Found::Route(entry, at, values)) => dispatch(entry, at, &values, method),
            Some(Found::NotUtf8(name)) => Outcome::NotUtf8(name),
            None => self.not_found(method, path, query),
        }
    }

    fn not_found(&self, method: &str, path: &str, query: Option<&str>) -> Outcome {
        if method != "GET" && method != "HEAD" {
            return Outcome::NotFound;
        }
        let alternative = match path.strip_suffix('/') {
            Some(stripped) => stripped.to_owned(),
            None => format!("{path}/"),
        };
        if alternative.is_empty()
            || !matches!(self.lookup(&alternative, false), Some(Found::Route(..)))
        {
            return Outcome::NotFound;
        }
        Outcome::Redirect(match query {
            Some(query) => format!("{alternative}?{query}"),
            None => alternative,
        })
    }

    /// Rules 1 to 4 over every pattern, or (`catch_alls`) over the patterns ending in
    /// a catch-all that have a route without constraints.
    fn lookup(&self, path: &str, catch_alls: bool) -> Option<Found<'_>> {
        let segments: Vec<&str> = path.strip_prefix('/')?.split('/').collect();
        let (entry, raw) = self
            .entries
            .iter()
            .filter(|e| {
                !catch_alls
                    || (matches!(e.shape.last(), Some(Shape::CatchAll))
                        && e.candidates.iter().any(Candidate::unconstrained))
            })
            .filter_map(|e| shape_match(&e.shape, &segments).map(|raw| (e, raw)))
            .min_by(|(a, _), (b, _)| rank(&a.shape).cmp(&rank(&b.shape)))?;
        let mut values = Vec::with_capacity(raw.len());
        for (position, raw) in raw.iter().enumerate() {
            match percent_decode(raw) {
                Some(value) => values.push(value),
                None => {
                    let unconstrained = entry
                        .candidates
                        .iter()
                        .any(|c| c.constraints[position].is_none());
                    return unconstrained.then(|| Found::NotUtf8(entry.names[position].clone()));
                }
            }
        }
        let at = entry.candidates.iter().position(|c| c.holds(&values))?;
        Some(Found::Route(entry, at, values))
    }
}

/// Rule 6.
fn dispatch(entry: &Entry, at: usize, values: &[String], method: &str) -> Outcome {
    let params = || {
        entry
            .names
            .iter()
            .cloned()
            .zip(values.iter().cloned())
            .collect()
    };
    if let Some(route) = entry.candidates[at].handler(method) {
        return Outcome::Handler {
            route,
            params: params(),
        };
    }
    let later = entry.candidates[at + 1..]
        .iter()
        .filter(|c| c.holds(values))
        .find(|c| c.serves(method));
    if let Some(route) = later.and_then(|c| c.handler(method)) {
        return Outcome::Handler {
            route,
            params: params(),
        };
    }
    let mut allow: Vec<String> = Vec::new();
    for candidate in entry.candidates[at..].iter().filter(|c| c.holds(values)) {
        for method in candidate.allow() {
            if !allow.iter().any(|m| m == method) {
                allow.push(method.to_owned());
            }
        }
    }
    Outcome::MethodNotAllowed(allow)
}

/// Rule 1: the raw values of the parameters when `shape` matches.
fn shape_match(shape: &[Shape], segments: &[&str]) -> Option<Vec<String>> {
    let mut values = Vec::new();
    for (i, kind) in shape.iter().enumerate() {
        match kind {
            Shape::Static(text) => {
                if segments.get(i) != Some(&text.as_str()) {
                    return None;
                }
            }
            Shape::Param => {
                let segment = segments.get(i).filter(|s| !s.is_empty())?;
                values.push((*segment).to_owned());
            }
            Shape::CatchAll => {
                let rest = segments.get(i..).unwrap_or_default().join("/");
                if rest.is_empty() {
                    return None;
                }
                values.push(rest);
                return Some(values);
            }
        }
    }
    (segments.len() == shape.len()).then_some(values)
}

/// Rule 2's key: compared lexicographically, lower wins.
fn rank(shape: &[Shape]) -> Vec<u8> {
    shape.iter().map(Shape::rank).collect()
}

/// Rule 7: a parameter against a catch-all, the patterns identical before.
fn conflict(a: &[Shape], b: &[Shape]) -> bool {
    for (x, y) in a.iter().zip(b) {
        match (x, y) {
            (Shape::Param, Shape::CatchAll) | (Shape::CatchAll, Shape::Param) => return true,
            _ if x != y => return false,
            _ => {}
        }
    }
    false
}

/// Percent-decoding as `percent_encoding` does it (a `%` without two hex digits after
/// it stays), then UTF-8; `None` when it is not.
pub(crate) fn percent_decode(raw: &str) -> Option<String> {
    let bytes = raw.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let hex = |b: u8| char::from(b).to_digit(16);
        if bytes[i] == b'%'
            && let (Some(hi), Some(lo)) = (
                bytes.get(i + 1).copied().and_then(hex),
                bytes.get(i + 2).copied().and_then(hex),
            )
        {
            out.push(u8::try_from(hi * 16 + lo).unwrap_or_default());
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out).ok()
}
