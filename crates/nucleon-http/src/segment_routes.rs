//! Routes whose parameters are whole path segments (`/countries/{code}/`), matched
//! segment by segment: the same answers as matchit's tree for such routes, in less
//! code and fewer instructions (`/countries/gb/`: ~640 instructions through matchit,
//! its parameters and their UTF-8 checks; ~150 here).
//!
//! matchit prefers a static segment to a parameter and backtracks to the parameter
//! when the static branch leads nowhere; so does [`SegmentRoutes::at`]. A router with
//! any other kind of pattern (a parameter inside a segment, a catch-all, a mount) has
//! none of these and leaves every path to matchit, as does a path whose parameter
//! would be an empty segment.

/// The most parameters a route may have to be matched here.
pub(crate) const MAX_PARAMS: usize = 4;

/// A router's patterns as a tree of segments.
pub(crate) struct SegmentRoutes {
    root: Node,
}

#[derive(Default)]
struct Node {
    /// Children by static segment text.
    statics: Vec<(Box<str>, Node)>,
    /// The child for a parameter segment.
    param: Option<Box<Node>>,
    /// The entry index of the route that ends here.
    route: Option<usize>,
}

/// The parameter values of a match, in the pattern's order (slices of the path).
#[derive(Debug, Default, PartialEq, Eq)]
pub(crate) struct Values<'p> {
    values: [&'p str; MAX_PARAMS],
    len: usize,
}

impl<'p> Values<'p> {
    /// The values, in order.
    pub(crate) fn as_slice(&self) -> &[&'p str] {
        &self.values[..self.len]
    }
}

/// What [`SegmentRoutes::at`] makes of a path.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Lookup<'p> {
    /// The route (its entry index) and its parameters.
    Route(usize, Values<'p>),
    /// No route matches.
    NoRoute,
    /// A case left to matchit (a parameter that would be empty).
    Unsure,
}

impl SegmentRoutes {
    /// The tree of `patterns` (matchit's syntax, each with its entry index), or `None`
    /// when one of them is not made of static and whole-parameter segments.
    pub(crate) fn new<'a>(patterns: impl IntoIterator<Item = &'a str>) -> Option<Self> {
        let mut root = Node::default();
        for (index, pattern) in patterns.into_iter().enumerate() {
            let rest = pattern.strip_prefix('/')?;
            let mut node = &mut root;
            let mut params = 0;
            for segment in rest.split('/') {
                node = match segment_kind(segment)? {
                    Segment::Static => {
                        let at = match node.statics.iter().position(|(s, _)| **s == *segment) {
                            Some(at) => at,
                            None => {
                                node.statics.push((segment.into(), Node::default()));
                                node.statics.len() - 1
                            }
                        };
                        &mut node.statics[at].1
                    }
                    Segment::Param => {
                        params += 1;
                        if params > MAX_PARAMS {
                            return None;
                        }
                        node.param.get_or_insert_with(Box::default)
                    }
                };
            }
            // The router refuses a second route of the same shape before this.
            node.route.get_or_insert(index);
        }
        Some(Self { root })
    }

    /// The route for `path` and its parameters.
    pub(crate) fn at<'p>(&self, path: &'p str) -> Lookup<'p> {
        let Some(rest) = path.strip_prefix('/') else {
            return Lookup::NoRoute;
        };
        let mut values = Values::default();
        match self.root.find(rest, &mut values) {
            Ok(Some(index)) => Lookup::Route(index, values),
            Ok(None) => Lookup::NoRoute,
            Err(Unsure) => Lookup::Unsure,
        }
    }
}

/// A path this module leaves to matchit.
struct Unsure;

impl Node {
    /// The route under this node for `rest` (the path past this node's segment and
    /// its `/`), static children first, then the parameter.
    fn find<'p>(&self, rest: &'p str, values: &mut Values<'p>) -> Result<Option<usize>, Unsure> {
        // Segments are short: a byte loop beats `str::find`'s searcher here.
        let (segment, next) = match rest.bytes().position(|b| b == b'/') {
            Some(end) => (&rest[..end], Some(&rest[end + 1..])),
            None => (rest, None),
        };
        let descend = |child: &Node, values: &mut Values<'p>| match next {
            Some(next) => child.find(next, values),
            None => Ok(child.route),
        };
        if let Some((_, child)) = self.statics.iter().find(|(s, _)| **s == *segment)
            && let Some(index) = descend(child, values)?
        {
            return Ok(Some(index));
        }
        let Some(child) = &self.param else {
            return Ok(None);
        };
        if segment.is_empty() {
            return Err(Unsure);
        }
        let len = values.len;
        values.values[len] = segment;
        values.len += 1;
        let found = descend(child, values)?;
        if found.is_none() {
            values.len = len;
        }
        Ok(found)
    }
}

enum Segment {
    Static,
    Param,
}

/// A static segment (no brace), or a whole parameter (`{name}`); `None` otherwise.
fn segment_kind(segment: &str) -> Option<Segment> {
    if !segment.contains(['{', '}']) {
        return Some(Segment::Static);
    }
    let name = segment.strip_prefix('{')?.strip_suffix('}')?;
    let plain = !name.is_empty() && !name.contains(['{', '}', '*', '/']);
    plain.then_some(Segment::Param)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// What matchit answers for `path`: the route's index and its parameters.
    fn matchit_at(table: &matchit::Router<usize>, path: &str) -> Option<(usize, Vec<String>)> {
        let matched = table.at(path).ok()?;
        let values = matched.params.iter().map(|(_, v)| v.to_owned()).collect();
        Some((*matched.value, values))
    }

    /// Every path made of up to four segments from `alphabet` (with and without a
    /// trailing slash) is routed as matchit routes it, or left to matchit.
    fn agrees_with_matchit(patterns: &[&str], alphabet: &[&str]) {
        let routes = SegmentRoutes::new(patterns.iter().copied()).expect("whole segments");
        let mut table = matchit::Router::new();
        for (i, p) in patterns.iter().enumerate() {
            table.insert(*p, i).unwrap();
        }
        let mut paths = vec![String::from("/")];
        let mut frontier = vec![String::new()];
        for _ in 0..4 {
            let mut next = Vec::new();
            for prefix in &frontier {
                for segment in alphabet {
                    let path = format!("{prefix}/{segment}");
                    paths.push(path.clone());
                    paths.push(format!("{path}/"));
                    next.push(path);
                }
            }
            frontier = next;
        }
        let mut decided = 0;
        for path in &paths {
            let expected = matchit_at(&table, path);
            match routes.at(path) {
                Lookup::Unsure => continue,
                Lookup::NoRoute => assert_eq!(expected, None, "{path}"),
                Lookup::Route(index, values) => {
                    let values = values.as_slice().iter().map(|v| (*v).to_owned()).collect();
                    assert_eq!(expected, Some((index, values)), "{path}");
                }
            }
            decided += 1;
        }
        assert!(
            decided > paths.len() / 2,
            "{decided} of {} decided",
            paths.len()
        );
    }

    #[test]
    fn the_countries_routes_are_matched_as_matchit_matches_them() {
        agrees_with_matchit(
            &["/countries/", "/countries/{code}/", "/json", "/hits", "/"],
            &["countries", "gb", "json", "hits", "x", "%41", ""],
        );
    }

    #[test]
    fn static_segments_come_first_and_a_dead_end_falls_back_to_the_parameter() {
        let patterns = [
            "/a/b/c",
            "/a/{x}/d",
            "/a/{x}",
            "/{y}/b/{z}",
            "/ab",
            "/{w}",
            "/users/{id}/posts/{post}",
            "/users/me/posts/{post}",
            "/users/me",
        ];
        agrees_with_matchit(
            &patterns,
            &[
                "a", "b", "c", "d", "ab", "abc", "users", "me", "posts", "7", "",
            ],
        );
        let routes = SegmentRoutes::new(patterns).unwrap();
        let at = |path| match routes.at(path) {
            Lookup::Route(index, values) => Some((index, values.as_slice().to_vec())),
            _ => None,
        };
        assert_eq!(at("/a/b/c"), Some((0, vec![])));
        assert_eq!(at("/a/b/d"), Some((1, vec!["b"])));
        assert_eq!(at("/a/b"), Some((2, vec!["b"])));
        assert_eq!(at("/q/b/r"), Some((3, vec!["q", "r"])));
        assert_eq!(at("/abc"), Some((5, vec!["abc"])));
        assert_eq!(at("/users/me/posts/3"), Some((7, vec!["3"])));
        assert_eq!(at("/users/42/posts/3"), Some((6, vec!["42", "3"])));
    }

    #[test]
    fn other_patterns_leave_everything_to_matchit() {
        assert!(SegmentRoutes::new(["/files/{name}.json"]).is_none());
        assert!(SegmentRoutes::new(["/static/{*rest}"]).is_none());
        assert!(SegmentRoutes::new(["/braces/{{x}}"]).is_none());
        assert!(SegmentRoutes::new(["/{a}/{b}/{c}/{d}/{e}"]).is_none());
        assert!(SegmentRoutes::new(["/{a}/{b}/{c}/{d}"]).is_some());
    }

    #[test]
    fn an_empty_parameter_is_left_to_matchit() {
        let routes = SegmentRoutes::new(["/countries/{code}/"]).unwrap();
        assert_eq!(routes.at("/countries//"), Lookup::Unsure);
        assert_eq!(routes.at("countries/gb/"), Lookup::NoRoute);
    }
}
