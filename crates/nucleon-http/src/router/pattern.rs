//! Route patterns: `/countries/{code:[a-z]{2}}/` split into matchit's pattern and
//! its constraints; parameter names; constraints compiled (simple ones checked
//! byte by byte).

use nucleon_runtime::task::StaticLabel;
use regex_lite::Regex;

/// Splits `/countries/{code:[a-z]{2}}/` into matchit's `/countries/{code}/` and the
/// constraints.
pub(super) fn parse_pattern(path: &str) -> Result<(String, Vec<(String, Regex)>), String> {
    if !path.starts_with('/') {
        return Err("a route must start with `/`".into());
    }
    let mut pattern = String::with_capacity(path.len());
    let mut constraints = Vec::new();
    let mut chars = path.char_indices().peekable();
    while let Some((start, c)) = chars.next() {
        if c != '{' {
            pattern.push(c);
            continue;
        }
        if chars.peek().is_some_and(|&(_, n)| n == '{') {
            chars.next();
            pattern.push_str("{{");
            continue;
        }
        let mut depth = 1;
        let mut end = None;
        for (i, n) in chars.by_ref() {
            match n {
                '{' => depth += 1,
                '}' => {
                    depth -= 1;
                    if depth == 0 {
                        end = Some(i);
                        break;
                    }
                }
                _ => {}
            }
        }
        let end = end.ok_or_else(|| format!("unclosed `{{` at byte {start}"))?;
        let inner = &path[start + 1..end];
        let (name, regex) = match inner.split_once(':') {
            Some((name, regex)) => (name, Some(regex)),
            None => (inner, None),
        };
        let bare = name.strip_prefix('*').unwrap_or(name);
        if bare.is_empty() || !bare.chars().all(|c| c.is_alphanumeric() || c == '_') {
            return Err(format!(
                "parameter name `{name}` must be letters, digits or `_`"
            ));
        }
        if let Some(regex) = regex {
            let compiled = Regex::new(&format!("^(?:{regex})$"))
                .map_err(|e| format!("constraint of `{bare}` is not a valid regex: {e}"))?;
            constraints.push((bare.to_owned(), compiled));
        }
        pattern.push('{');
        pattern.push_str(name);
        pattern.push('}');
    }
    Ok((pattern, constraints))
}

/// Whether a matchit pattern ends in a catch-all parameter (`/files/{*path}`).
pub(super) fn ends_in_catch_all(pattern: &str) -> bool {
    pattern
        .rfind('{')
        .is_some_and(|at| pattern[at + 1..].starts_with('*') && pattern.ends_with('}'))
}

/// The parameter names of a matchit pattern, in order (the mount's rest left out).
pub(super) fn param_names(pattern: &str) -> Vec<&'static str> {
    let mut names = Vec::new();
    let mut rest = pattern;
    while let Some(start) = rest.find('{') {
        if rest[start + 1..].starts_with('{') {
            rest = &rest[start + 2..];
            continue;
        }
        let Some(end) = rest[start..].find('}') else {
            break;
        };
        let name = rest[start + 1..start + end].trim_start_matches('*');
        if name != "nucleon_mount_rest" {
            // Interned (kept for the process's life, once per distinct name): a
            // request's parameters then name themselves without a reference count.
            names.push(StaticLabel::intern(name).as_str());
        }
        rest = &rest[start + end + 1..];
    }
    names
}

/// A compiled parameter constraint. Simple ones (`[a-z]{2}`, `[0-9]+`, `\d{1,4}`: one
/// ASCII character class, repeated) are checked byte by byte; the rest by the regex.
pub(super) struct Constraint {
    /// The parameter's position in the pattern.
    pub(super) index: usize,
    regex: Regex,
    simple: Option<SimpleClass>,
}

/// `[class]{min,max}` over ASCII.
struct SimpleClass {
    set: u128,
    min: usize,
    max: usize,
}

impl Constraint {
    pub(super) fn new(names: &[&'static str], name: &str, regex: &Regex) -> Self {
        // The pattern as compiled: `^(?:…)$`.
        let source = regex.as_str();
        let inner = source
            .strip_prefix("^(?:")
            .and_then(|s| s.strip_suffix(")$"))
            .unwrap_or_default();
        Self {
            // Every constraint names one of the pattern's parameters (`parse_pattern`).
            index: names
                .iter()
                .position(|n| **n == *name)
                .unwrap_or(usize::MAX),
            regex: regex.clone(),
            simple: SimpleClass::parse(inner),
        }
    }

    pub(super) fn is_match(&self, value: &str) -> bool {
        match &self.simple {
            Some(class) => class.is_match(value),
            None => self.regex.is_match(value),
        }
    }
}

impl SimpleClass {
    fn parse(pattern: &str) -> Option<Self> {
        let (set, rest) = if let Some(rest) = pattern.strip_prefix("\\d") {
            (ascii_range(b'0', b'9'), rest)
        } else {
            let body = pattern.strip_prefix('[')?;
            let close = body.find(']')?;
            let (class, rest) = (&body[..close], &body[close + 1..]);
            if class.is_empty() || class.starts_with('^') {
                return None;
            }
            let bytes = class.as_bytes();
            let mut set = 0_u128;
            let mut i = 0;
            while i < bytes.len() {
                let c = bytes[i];
                if !c.is_ascii_alphanumeric()
                    && c != b'_'
                    && !(c == b'-' && (i == 0 || i + 1 == bytes.len()))
                {
                    return None;
                }
                if i + 2 < bytes.len() && bytes[i + 1] == b'-' {
                    let hi = bytes[i + 2];
                    if !hi.is_ascii_alphanumeric() || hi < c {
                        return None;
                    }
                    set |= ascii_range(c, hi);
                    i += 3;
                } else {
                    set |= 1 << c;
                    i += 1;
                }
            }
            (set, rest)
        };
        let (min, max) = match rest {
            "" => (1, 1),
            "+" => (1, usize::MAX),
            "*" => (0, usize::MAX),
            _ => {
                let counts = rest.strip_prefix('{')?.strip_suffix('}')?;
                match counts.split_once(',') {
                    None => {
                        let n = counts.parse().ok()?;
                        (n, n)
                    }
                    Some((lo, "")) => (lo.parse().ok()?, usize::MAX),
                    Some((lo, hi)) => (lo.parse().ok()?, hi.parse().ok()?),
                }
            }
        };
        (min <= max).then_some(Self { set, min, max })
    }

    fn is_match(&self, value: &str) -> bool {
        (self.min..=self.max).contains(&value.len())
            && value.bytes().all(|b| b < 128 && self.set & (1 << b) != 0)
    }
}

fn ascii_range(lo: u8, hi: u8) -> u128 {
    (lo..=hi).fold(0, |set, c| set | 1 << c)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn patterns_with_constraints() {
        let (p, c) = parse_pattern("/countries/{code:[a-z]{2}}/").unwrap();
        assert_eq!(p, "/countries/{code}/");
        assert_eq!(c.len(), 1);
        assert!(c[0].1.is_match("gb"));
        assert!(!c[0].1.is_match("gbr"));
        let (p, c) = parse_pattern("/files/{*path}").unwrap();
        assert_eq!(p, "/files/{*path}");
        assert!(c.is_empty());
        assert!(parse_pattern("/x/{a:[}").is_err());
        assert!(parse_pattern("/x/{:x}").is_err());
        assert!(parse_pattern("x").is_err());
    }

    #[test]
    fn simple_constraints_match_as_their_regex_does() {
        let cases = [
            "[a-z]{2}",
            "[0-9]+",
            "\\d{1,4}",
            "[a-zA-Z0-9_-]*",
            "[a-f]{2,}",
            "[a-z]",
            "(gb|fr)",
            "[^a-z]+",
            "[a-z]{2}x",
        ];
        let values = [
            "", "gb", "GB", "g", "gbr", "12", "1234", "12345", "a-_Z9", "é", "ab", "x",
        ];
        for case in cases {
            let (_, constraints) = parse_pattern(&format!("/x/{{p:{case}}}")).unwrap();
            let constraint = Constraint::new(&["p"], "p", &constraints[0].1);
            let simple = !matches!(case, "(gb|fr)" | "[^a-z]+" | "[a-z]{2}x");
            assert_eq!(constraint.simple.is_some(), simple, "{case}");
            for value in values {
                assert_eq!(
                    constraint.is_match(value),
                    constraints[0].1.is_match(value),
                    "{case} on {value:?}"
                );
            }
        }
    }

    #[test]
    fn parameter_names_in_pattern_order() {
        let names = param_names("/a/{x}/{{lit}}/{y}/{*nucleon_mount_rest}");
        assert_eq!(names.iter().map(|n| &**n).collect::<Vec<_>>(), ["x", "y"]);
        assert_eq!(param_names("/files/{*path}").len(), 1);
    }
}
