//! `Path<T>` and `Query<T>`: what is percent-encoded into a path or a query comes
//! back equal, and any input gives a value or a typed error (400
//! `INVALID_PARAMETERS` naming a field), never a panic.

use std::collections::BTreeMap;
use std::fmt::Debug;
use std::panic::AssertUnwindSafe;

use futures_util::FutureExt;
use http::StatusCode;
use nucleon_http::{
    FromRequestParts, HttpError, IntoResponse, Json, Path, Query, Request, RequestContext,
    Response, Router, get,
};
use percent_encoding::{NON_ALPHANUMERIC, utf8_percent_encode};
use proptest::prelude::*;
use proptest::sample::select;
use serde::{Deserialize, Serialize};

use crate::support::{Reply, cases, send, service};

#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
enum Kind {
    Alpha,
    Beta,
    #[serde(rename = "gamma-ray")]
    GammaRay,
}

impl Kind {
    fn name(self) -> &'static str {
        match self {
            Kind::Alpha => "Alpha",
            Kind::Beta => "Beta",
            Kind::GammaRay => "gamma-ray",
        }
    }
}

/// Every kind of value a path segment takes. Compared by `Debug` (exact for
/// floats, `-0.0` and NaN included; JSON has neither NaN nor infinities).
#[derive(Debug, Clone, Deserialize)]
struct InPath {
    name: String,
    count: u32,
    delta: i64,
    ratio: f64,
    flag: bool,
    letter: char,
    kind: Kind,
}

/// A query's fields: optional ones, and sequences from repeated keys.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct InQuery {
    text: String,
    page: u16,
    offset: i32,
    full: bool,
    kind: Kind,
    note: Option<String>,
    limit: Option<u8>,
    #[serde(default)]
    tag: Vec<String>,
    #[serde(default)]
    id: Vec<u64>,
}

const PATH_ROUTE: &str = "/rec/{name}/{count}/{delta}/{ratio}/{flag}/{letter}/{kind}";
const MAP_ROUTE: &str = "/map/{a}/{b}/{c}";

/// A segment: the value's text, every byte but letters and digits percent-encoded.
fn segment(value: impl ToString) -> String {
    utf8_percent_encode(&value.to_string(), NON_ALPHANUMERIC).to_string()
}

fn in_path() -> impl Strategy<Value = InPath> {
    let kind = prop_oneof![Just(Kind::Alpha), Just(Kind::Beta), Just(Kind::GammaRay)];
    (
        ".{1,12}",
        any::<u32>(),
        any::<i64>(),
        any::<f64>(),
        any::<bool>(),
        any::<char>(),
        kind,
    )
        .prop_map(|(name, count, delta, ratio, flag, letter, kind)| InPath {
            name,
            count,
            delta,
            ratio,
            flag,
            letter,
            kind,
        })
}

fn in_query() -> impl Strategy<Value = InQuery> {
    let kind = prop_oneof![Just(Kind::Alpha), Just(Kind::Beta), Just(Kind::GammaRay)];
    (
        (
            any::<String>(),
            any::<u16>(),
            any::<i32>(),
            any::<bool>(),
            kind,
        ),
        (
            proptest::option::of(any::<String>()),
            proptest::option::of(any::<u8>()),
            proptest::collection::vec(any::<String>(), 0..4),
            proptest::collection::vec(any::<u64>(), 0..4),
        ),
    )
        .prop_map(
            |((text, page, offset, full, kind), (note, limit, tag, id))| InQuery {
                text,
                page,
                offset,
                full,
                kind,
                note,
                limit,
                tag,
                id,
            },
        )
}

fn path_of(p: &InPath) -> String {
    format!(
        "/rec/{}/{}/{}/{}/{}/{}/{}",
        segment(&p.name),
        segment(p.count),
        segment(p.delta),
        segment(p.ratio),
        segment(p.flag),
        segment(p.letter),
        segment(p.kind.name()),
    )
}

/// The query of `q`, as `form_urlencoded` writes one (spaces as `+`), its pairs in
/// an order `order` shuffles.
fn query_of(q: &InQuery, order: &[usize]) -> String {
    let mut pairs: Vec<(&str, String)> = vec![
        ("text", q.text.clone()),
        ("page", q.page.to_string()),
        ("offset", q.offset.to_string()),
        ("full", q.full.to_string()),
        ("kind", q.kind.name().to_owned()),
    ];
    if let Some(note) = &q.note {
        pairs.push(("note", note.clone()));
    }
    if let Some(limit) = q.limit {
        pairs.push(("limit", limit.to_string()));
    }
    pairs.extend(q.tag.iter().map(|t| ("tag", t.clone())));
    pairs.extend(q.id.iter().map(|i| ("id", i.to_string())));
    // Shuffled (each pair where `order` sends it), then each key's values put back in
    // their order among that key's places: a sequence keeps its order.
    let mut places: Vec<(usize, usize)> = (0..pairs.len())
        .map(|i| (order.get(i).copied().unwrap_or(i), i))
        .collect();
    places.sort_unstable();
    let mut query = form_urlencoded::Serializer::new(String::new());
    let mut taken = vec![false; pairs.len()];
    for (_, i) in places {
        let key = pairs[i].0;
        let next = (0..pairs.len())
            .find(|&j| !taken[j] && pairs[j].0 == key)
            .unwrap_or(i);
        taken[next] = true;
        query.append_pair(key, &pairs[next].1);
    }
    query.finish()
}

/// What a handler of `X` makes of the request: the value's `Debug` (200), the
/// extractor's error as it is, or, should it panic, 599 with the panic's message.
/// The extractor is called by hand, under `catch_unwind`, so that a panic is told from
/// the 500 of a `Path<T>` that does not fit its route (the program's error, by
/// design).
async fn probe<X: FromRequestParts + Debug>(ctx: RequestContext, request: Request) -> Response {
    let (mut parts, _) = request.into_parts();
    let extracted = std::panic::catch_unwind(AssertUnwindSafe(|| {
        X::from_request_parts(&mut parts, &ctx).now_or_never()
    }));
    match extracted {
        Ok(Some(Ok(value))) => format!("{value:?}").into_response(),
        Ok(Some(Err(error))) => error.into_response(),
        Ok(None) => HttpError::new(
            StatusCode::from_u16(599).expect("a status"),
            "PENDING",
            "the extractor waited",
        )
        .into_response(),
        Err(panic) => HttpError::new(
            StatusCode::from_u16(599).expect("a status"),
            "PANICKED",
            panic
                .downcast_ref::<String>()
                .cloned()
                .or_else(|| panic.downcast_ref::<&str>().map(|s| (*s).to_owned()))
                .unwrap_or_default(),
        )
        .into_response(),
    }
}

/// A value, or 400 `INVALID_PARAMETERS` naming at least one field.
fn value_or_typed_error(reply: &Reply, what: &str) -> Result<(), TestCaseError> {
    match reply.status {
        StatusCode::OK => Ok(()),
        StatusCode::BAD_REQUEST => {
            let json = reply.json();
            prop_assert_eq!(
                &json["error"],
                "INVALID_PARAMETERS",
                "{}: {}",
                what,
                reply.text()
            );
            let named = json["messages"].as_object().is_some_and(|m| !m.is_empty());
            prop_assert!(named, "{}: no field named: {}", what, reply.text());
            Ok(())
        }
        other => Err(TestCaseError::fail(format!(
            "{what}: {other} {}",
            reply.text()
        ))),
    }
}

#[derive(Debug, Deserialize)]
#[allow(dead_code, reason = "only deserialized")]
struct Nested {
    inner: InQuery,
}

#[derive(Debug, Deserialize)]
#[allow(dead_code, reason = "only deserialized")]
struct Flattened {
    page: Option<u32>,
    #[serde(flatten)]
    rest: BTreeMap<String, String>,
}

#[derive(Debug, Deserialize)]
#[serde(untagged)]
#[allow(dead_code, reason = "only deserialized")]
enum Untagged {
    Paged { page: u32 },
    Named { name: String },
}

#[derive(Debug, Deserialize)]
#[allow(dead_code, reason = "only deserialized")]
enum Shaped {
    Unit,
    Newtype(u8),
    Tuple(u8, u8),
    Struct { a: u8 },
}

/// The types every arbitrary query goes through.
fn query_router() -> Router {
    Router::new()
        .route("/record", get(probe::<Query<InQuery>>))
        .route("/optional", get(probe::<Option<Query<InQuery>>>))
        .route("/map", get(probe::<Query<BTreeMap<String, String>>>))
        .route("/lists", get(probe::<Query<BTreeMap<String, Vec<u8>>>>))
        .route("/seq", get(probe::<Query<Vec<String>>>))
        .route("/pair", get(probe::<Query<(u8, i8)>>))
        .route("/one", get(probe::<Query<u32>>))
        .route("/text", get(probe::<Query<String>>))
        .route("/unit", get(probe::<Query<()>>))
        .route("/nested", get(probe::<Query<Nested>>))
        .route("/flattened", get(probe::<Query<Flattened>>))
        .route("/untagged", get(probe::<Query<Untagged>>))
        .route("/enum", get(probe::<Query<Shaped>>))
        .route("/floats", get(probe::<Query<BTreeMap<String, f32>>>))
        .route("/chars", get(probe::<Query<BTreeMap<String, char>>>))
        .route("/big", get(probe::<Query<BTreeMap<String, i128>>>))
}

const QUERY_ROUTES: [&str; 16] = [
    "/record",
    "/optional",
    "/map",
    "/lists",
    "/seq",
    "/pair",
    "/one",
    "/text",
    "/unit",
    "/nested",
    "/flattened",
    "/untagged",
    "/enum",
    "/floats",
    "/chars",
    "/big",
];

/// The types every arbitrary path goes through, each on a route it fits (one that
/// does not fit is a 500 by design, not the client's input).
fn path_router() -> Router {
    Router::new()
        .route("/one/{id}", get(probe::<Path<u64>>))
        .route("/text/{id}", get(probe::<Path<String>>))
        .route("/char/{id}", get(probe::<Path<char>>))
        .route("/kind/{id}", get(probe::<Path<Kind>>))
        .route("/tuple/{a}/{b}/{c}", get(probe::<Path<(i16, bool, f64)>>))
        .route("/map/{a}/{b}/{c}", get(probe::<Path<BTreeMap<String, u8>>>))
        .route(PATH_ROUTE, get(probe::<Path<InPath>>))
        .route("/rest/{*rest}", get(probe::<Path<String>>))
        .route("/opt/{id}", get(probe::<Option<Path<u32>>>))
}

const PATH_ROUTES: [(&str, usize); 9] = [
    ("/one", 1),
    ("/text", 1),
    ("/char", 1),
    ("/kind", 1),
    ("/tuple", 3),
    ("/map", 3),
    ("/rec", 7),
    ("/rest", 2),
    ("/opt", 1),
];

/// Query text a client may send: printable ASCII a URI takes as it is, `%` escapes
/// (some of them not UTF-8), and the separators.
fn query_text() -> impl Strategy<Value = String> {
    let piece = prop_oneof![
        "[a-z0-9_]{1,4}",
        "[=&+;,/:@!$'()*.~-]",
        "%[0-9A-Fa-f]{2}",
        "%[0-9A-Fa-f]?",
        Just("%FF%FE".to_owned()),
        Just("%C3%A9".to_owned()),
        select(vec![
            "page", "text", "tag", "id", "note", "kind", "a", "b", "Unit", "Newtype"
        ])
        .prop_map(str::to_owned),
        "-?[0-9]{1,40}(\\.[0-9]{0,5})?(e-?[0-9]{1,3})?",
        select(vec![
            "true",
            "false",
            "NaN",
            "inf",
            "-0",
            "Alpha",
            "gamma-ray"
        ])
        .prop_map(str::to_owned),
    ];
    proptest::collection::vec(piece, 0..16).prop_map(|pieces| pieces.concat())
}

/// A path segment a client may send: as the query's, without `/`, `?`, `#`.
fn segment_text() -> impl Strategy<Value = String> {
    let piece = prop_oneof![
        "[a-zA-Z0-9_]{1,4}",
        "[=&+;,:@!$'()*.~-]",
        "%[0-9A-Fa-f]{2}",
        Just("%2F".to_owned()),
        Just("%FF".to_owned()),
        Just("%C3%A9".to_owned()),
        "-?[0-9]{1,40}(\\.[0-9]{0,5})?(e-?[0-9]{1,3})?",
        select(vec![
            "true",
            "false",
            "NaN",
            "inf",
            "Alpha",
            "gamma-ray",
            "é"
        ])
        .prop_map(str::to_owned),
    ];
    proptest::collection::vec(piece, 1..6).prop_map(|pieces| pieces.concat())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(cases()))]

    /// Struct fields percent-encoded into path segments come back equal.
    #[test]
    fn path_parameters_round_trip(value in in_path()) {
        let router = Router::new().route(
            PATH_ROUTE,
            get(|Path(p): Path<InPath>| async move { format!("{p:?}") }),
        );
        let reply = send(&service(&router), "GET", &path_of(&value)).expect("a valid URI");
        prop_assert_eq!(reply.status, StatusCode::OK, "{}", reply.text());
        prop_assert_eq!(reply.text(), format!("{value:?}"));
    }

    /// Parameters of any text come back as a map, by name.
    #[test]
    fn path_parameters_of_any_text_round_trip(values in proptest::collection::vec(".{1,12}", 3)) {
        let router = Router::new().route(
            MAP_ROUTE,
            get(|Path(map): Path<BTreeMap<String, String>>| async move { Json(map) }),
        );
        let encoded: Vec<String> = values.iter().map(segment).collect();
        let path = format!("/map/{}", encoded.join("/"));
        let reply = send(&service(&router), "GET", &path).expect("a valid URI");
        prop_assert_eq!(reply.status, StatusCode::OK, "{}", reply.text());
        let back: BTreeMap<String, String> = serde_json::from_slice(&reply.body).expect("a map");
        let expected: BTreeMap<String, String> =
            ["a", "b", "c"].into_iter().map(str::to_owned).zip(values).collect();
        prop_assert_eq!(back, expected);
    }

    /// A catch-all gives back the rest of the path, its slashes kept and each part
    /// decoded (an encoded `/` inside a part included).
    #[test]
    fn a_catch_all_round_trips(parts in proptest::collection::vec(".{0,6}", 1..4)) {
        // `/rest/` alone leaves the catch-all nothing: not this route's.
        prop_assume!(parts.len() > 1 || !parts[0].is_empty());
        let router = Router::new().route(
            "/rest/{*rest}",
            get(|Path(rest): Path<String>| async move { rest }),
        );
        let encoded: Vec<String> = parts.iter().map(segment).collect();
        let uri = format!("/rest/{}", encoded.join("/"));
        let reply = send(&service(&router), "GET", &uri).expect("a valid URI");
        prop_assert_eq!(reply.status, StatusCode::OK, "{}: {}", uri, reply.text());
        prop_assert_eq!(reply.text(), parts.join("/"));
    }

    /// Struct fields written into a query string (in any order, repeated keys for the
    /// sequences) come back equal; an empty optional text comes back empty, as
    /// documented (`Some("")`; an optional number's empty value would be `None`).
    #[test]
    fn query_strings_round_trip(
        value in in_query(),
        order in proptest::collection::vec(0..usize::MAX, 16),
    ) {
        let router = Router::new().route(
            "/q",
            get(|Query(q): Query<InQuery>| async move { Json(q) }),
        );
        let uri = format!("/q?{}", query_of(&value, &order));
        let reply = send(&service(&router), "GET", &uri).expect("a valid URI");
        prop_assert_eq!(reply.status, StatusCode::OK, "{}: {}", uri, reply.text());
        let back: InQuery = serde_json::from_slice(&reply.body).expect("an InQuery");
        prop_assert_eq!(back, value);
    }

    /// Any pairs, keys repeated or not, come back grouped by key, in order.
    #[test]
    fn query_pairs_round_trip_as_a_map_of_lists(
        pairs in proptest::collection::vec(("[a-c]{0,2}|.{0,6}", ".{0,8}"), 0..10),
    ) {
        let router = Router::new().route(
            "/q",
            get(|Query(q): Query<BTreeMap<String, Vec<String>>>| async move { Json(q) }),
        );
        let mut query = form_urlencoded::Serializer::new(String::new());
        for (key, value) in &pairs {
            query.append_pair(key, value);
        }
        let uri = format!("/q?{}", query.finish());
        let reply = send(&service(&router), "GET", &uri).expect("a valid URI");
        prop_assert_eq!(reply.status, StatusCode::OK, "{}: {}", uri, reply.text());
        let back: BTreeMap<String, Vec<String>> =
            serde_json::from_slice(&reply.body).expect("a map");
        let mut expected: BTreeMap<String, Vec<String>> = BTreeMap::new();
        for (key, value) in pairs {
            expected.entry(key).or_default().push(value);
        }
        prop_assert_eq!(back, expected);
    }

    /// Any query string, into every shape of type: a value or 400 naming a field.
    #[test]
    fn any_query_gives_a_value_or_a_typed_error(query in query_text()) {
        let service = service(&query_router());
        for route in QUERY_ROUTES {
            let uri = format!("{route}?{query}");
            let Some(reply) = send(&service, "GET", &uri) else {
                continue;
            };
            value_or_typed_error(&reply, &uri)?;
        }
    }

    /// Any path parameters, into every shape of type that fits its route: a value, or
    /// 400 naming the parameter.
    #[test]
    fn any_path_gives_a_value_or_a_typed_error(
        segments in proptest::collection::vec(segment_text(), 7),
    ) {
        let service = service(&path_router());
        for (route, count) in PATH_ROUTES {
            let uri = format!("{route}/{}", segments[..count].join("/"));
            let Some(reply) = send(&service, "GET", &uri) else {
                continue;
            };
            value_or_typed_error(&reply, &uri)?;
        }
    }
}
