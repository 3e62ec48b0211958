//! Routes without parameters, found by their exact path before the pattern tree is
//! walked.
//!
//! matchit prefers a static route to a parametrised one wherever both match, so a path
//! equal to a static pattern is that route: looking it up in a map gives what the tree
//! would, for about a fifth of the work (`/json` in the benchmark: 233 instructions in
//! the tree, ~50 here). A path of a length no static route has costs one bit test.

use std::collections::HashMap;

/// foldhash with its fixed seed: paths are short and chosen by the application, not
/// the client (a request only looks one up), so a fast hash without a random key is
/// safe here.
type PathHasher = foldhash::fast::FixedState;

/// The static patterns of a router and the index of each one's entry.
#[derive(Default)]
pub(crate) struct StaticRoutes {
    /// Bit `n` is set when a static route is `n` bytes long (`n` < 64); bit 63 stands
    /// for every length from 63 up.
    lengths: u64,
    by_path: HashMap<Box<str>, usize, PathHasher>,
}

impl StaticRoutes {
    /// The static patterns among `patterns` (those with no `{` or `}`: no parameter,
    /// no escaped brace), each with its index.
    pub(crate) fn new<'a>(patterns: impl IntoIterator<Item = &'a str>) -> Self {
        let mut routes = Self::default();
        for (index, pattern) in patterns.into_iter().enumerate() {
            if !pattern.contains(['{', '}']) {
                routes.lengths |= length_bit(pattern.len());
                routes.by_path.insert(pattern.into(), index);
            }
        }
        routes
    }

    /// The entry index of the static route whose pattern is `path`.
    #[inline]
    pub(crate) fn get(&self, path: &str) -> Option<usize> {
        if self.lengths & length_bit(path.len()) == 0 {
            return None;
        }
        self.by_path.get(path).copied()
    }
}

fn length_bit(len: usize) -> u64 {
    1 << len.min(63)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_patterns_without_parameters_are_kept_with_their_index() {
        let routes = StaticRoutes::new([
            "/json",
            "/countries/{code}/",
            "/countries/",
            "/braces/{{literal}}",
            "/mount/{*rest}",
        ]);
        assert_eq!(routes.get("/json"), Some(0));
        assert_eq!(routes.get("/countries/"), Some(2));
        assert_eq!(routes.get("/countries/{code}/"), None);
        assert_eq!(routes.get("/countries/gb/"), None);
        assert_eq!(routes.get("/braces/{literal}"), None);
        assert_eq!(routes.get("/jsonx"), None);
        assert_eq!(routes.get("/JSON"), None);
        assert_eq!(routes.get(""), None);
    }

    #[test]
    fn long_paths_share_the_last_length_bit() {
        let long = format!("/{}", "a".repeat(100));
        let other = format!("/{}", "b".repeat(100));
        let routes = StaticRoutes::new([long.as_str()]);
        assert_eq!(routes.get(&long), Some(0));
        assert_eq!(routes.get(&other), None);
        assert_eq!(routes.get(&long[..70]), None);
    }
}
