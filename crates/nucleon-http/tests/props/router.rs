//! The router against the reference matcher of `router_model.rs`: for generated route
//! tables it refuses the same routes, and for generated requests it answers the same
//! (the handler of the same table row with the same decoded parameters, the same 400,
//! 405 and `Allow`, 308 and `Location`, or 404).

use http::{HeaderMap, HeaderValue, Method, StatusCode};
use nucleon_http::{MethodRouter, RequestContext, Router, on};
use percent_encoding::{NON_ALPHANUMERIC, percent_decode_str, utf8_percent_encode};
use proptest::prelude::*;
use proptest::sample::select;

use crate::router_model::{
    Constraint, Model, Outcome, REQUEST_METHODS, ROUTE_METHODS, RouteSpec, STATICS, Seg, VALUES,
};
use crate::support::{Reply, cases, send, service};

/// A pattern's shape before constraints: what several rows may share.
#[derive(Clone, Debug)]
enum Kind {
    Static(&'static str),
    Param,
}

/// How a pattern ends.
#[derive(Clone, Copy, Debug)]
enum End {
    Plain,
    Slash,
    CatchAll,
}

fn shape() -> impl Strategy<Value = (Vec<Kind>, End)> {
    let kind = prop_oneof![
        3 => select(STATICS.to_vec()).prop_map(Kind::Static),
        2 => Just(Kind::Param),
    ];
    let end = prop_oneof![
        3 => Just(End::Plain),
        1 => Just(End::Slash),
        1 => Just(End::CatchAll),
    ];
    (proptest::collection::vec(kind, 0..=3), end)
}

fn constraint() -> impl Strategy<Value = Option<Constraint>> {
    prop_oneof![
        3 => Just(None),
        2 => select(Constraint::ALL.to_vec()).prop_map(Some),
    ]
}

/// A row: which shape, the constraints of its parameters in order, its methods (a
/// non-empty subset of `ROUTE_METHODS`, as a bit mask).
type Row = (usize, Vec<Option<Constraint>>, u8);

/// 1 to 4 shapes, 1 to 8 rows over them: rows of one shape with other constraints or
/// other methods are frequent, and so are conflicts.
fn table() -> impl Strategy<Value = Vec<RouteSpec>> {
    // One method mostly (a method given twice for one route is refused, and often
    // enough with a single one).
    let mask = prop_oneof![3 => select(vec![1_u8, 2, 4]), 1 => 1..8_u8];
    let row = (0..4_usize, proptest::collection::vec(constraint(), 4), mask);
    (
        proptest::collection::vec(shape(), 1..=4),
        proptest::collection::vec(row, 1..=8),
    )
        .prop_map(|(shapes, rows)| {
            rows.into_iter()
                .map(|row| spec(&shapes[row.0 % shapes.len()], &row))
                .collect()
        })
}

fn spec((kinds, end): &(Vec<Kind>, End), (_, constraints, mask): &Row) -> RouteSpec {
    let mut constraints = constraints.iter().copied();
    let mut segs: Vec<Seg> = kinds
        .iter()
        .map(|kind| match kind {
            Kind::Static(text) => Seg::Static((*text).to_owned()),
            Kind::Param => Seg::Param(constraints.next().flatten()),
        })
        .collect();
    match end {
        End::Plain if segs.is_empty() => segs.push(Seg::Static(String::new())),
        End::Plain => {}
        End::Slash => segs.push(Seg::Static(String::new())),
        End::CatchAll => segs.push(Seg::CatchAll(constraints.next().flatten())),
    }
    let methods = ROUTE_METHODS
        .iter()
        .enumerate()
        .filter(|(i, _)| mask & (1 << i) != 0)
        .map(|(_, m)| *m)
        .collect();
    RouteSpec { segs, methods }
}

/// A request: its method, how its path is made, whether it has a query.
#[derive(Clone, Debug)]
struct RequestSpec {
    method: &'static str,
    path: PathSpec,
    query: bool,
}

#[derive(Clone, Debug)]
enum PathSpec {
    /// Row `.0`'s pattern filled in (values chosen by the indices `.1`; a catch-all
    /// takes 1 to 3 of them, by `.3`), then changed by `.2`: 0 not, 1 its trailing
    /// slash added or taken off, 2 its segment `.3` (modulo their number) replaced by
    /// a value, 3 its last segment dropped.
    FromRow(usize, Vec<usize>, u8, usize),
    /// Segments of statics, values and empty ones.
    Random(Vec<String>),
}

fn request() -> impl Strategy<Value = RequestSpec> {
    let piece = prop_oneof![
        select(STATICS.to_vec()).prop_map(str::to_owned),
        select(VALUES.to_vec()).prop_map(str::to_owned),
        Just(String::new()),
    ];
    let path = prop_oneof![
        4 => (
            0..8_usize,
            proptest::collection::vec(0..VALUES.len() * 2, 6),
            prop_oneof![2 => Just(0_u8), 1 => 1..4_u8],
            0..4_usize,
        )
            .prop_map(|(row, values, change, at)| PathSpec::FromRow(row, values, change, at)),
        1 => proptest::collection::vec(piece, 1..=4).prop_map(PathSpec::Random),
    ];
    (
        select(REQUEST_METHODS.to_vec()),
        path,
        proptest::bool::weighted(0.2),
    )
        .prop_map(|(method, path, query)| RequestSpec {
            method,
            path,
            query,
        })
}

impl PathSpec {
    fn path(&self, table: &[RouteSpec]) -> String {
        let segments = match self {
            PathSpec::Random(segments) => segments.clone(),
            PathSpec::FromRow(row, values, change, at) => {
                let spec = &table[row % table.len()];
                let mut values = values.iter().map(|&i| i % (VALUES.len() + 1));
                // `VALUES.len()` stands for an empty part (a catch-all's `a//b`).
                let mut value = || *VALUES.get(values.next().unwrap_or(0)).unwrap_or(&"");
                let mut segments: Vec<String> = spec
                    .segs
                    .iter()
                    .map(|seg| match seg {
                        Seg::Static(text) => text.clone(),
                        // Never empty: an empty segment is a 404 (rule 1), which the
                        // other paths exercise.
                        Seg::Param(_) => match value() {
                            "" => VALUES[0].to_owned(),
                            value => value.to_owned(),
                        },
                        Seg::CatchAll(_) => [value(), value(), value()]
                            .into_iter()
                            .take(1 + at % 3)
                            .collect::<Vec<_>>()
                            .join("/"),
                    })
                    .collect();
                match change {
                    1 if segments.last().is_some_and(String::is_empty) && segments.len() > 1 => {
                        segments.pop();
                    }
                    1 => segments.push(String::new()),
                    2 => {
                        let i = at % segments.len();
                        segments[i] = value().to_owned();
                    }
                    3 if segments.len() > 1 => {
                        segments.pop();
                    }
                    _ => {}
                }
                segments
            }
        };
        format!("/{}", segments.join("/"))
    }
}

/// Table row `row`'s handlers: each answers with the row in `x-route` and the decoded
/// parameters, as JSON percent-encoded, in `x-params` (headers, so that `HEAD` tells
/// them too).
fn methods(row: usize, spec: &RouteSpec) -> MethodRouter {
    let handler = move |ctx: RequestContext| async move {
        let params: Vec<(&str, &str)> = ctx.params().collect();
        let json = serde_json::to_string(&params).expect("JSON");
        let mut headers = HeaderMap::new();
        headers.insert("x-route", HeaderValue::from(row));
        let encoded = utf8_percent_encode(&json, NON_ALPHANUMERIC).to_string();
        headers.insert("x-params", HeaderValue::from_str(&encoded).expect("ASCII"));
        (StatusCode::OK, headers, "")
    };
    let mut methods = spec
        .methods
        .iter()
        .map(|m| Method::from_bytes(m.as_bytes()).expect("a method"));
    let first = methods.next().expect("one method at least");
    methods.fold(on(first, handler), |router, method| {
        router.on(method, handler)
    })
}

/// What the router answered, in the model's terms.
fn outcome(reply: &Reply) -> Outcome {
    match reply.status {
        StatusCode::OK => {
            let route = reply
                .header("x-route")
                .and_then(|r| r.parse().ok())
                .expect("x-route");
            let json = percent_decode_str(reply.header("x-params").expect("x-params"))
                .decode_utf8()
                .expect("UTF-8")
                .into_owned();
            let params: Vec<(String, String)> = serde_json::from_str(&json).expect("params");
            Outcome::Handler { route, params }
        }
        StatusCode::BAD_REQUEST if reply.body.is_empty() => Outcome::NotUtf8(String::new()),
        StatusCode::BAD_REQUEST => {
            let json = reply.json();
            assert_eq!(json["error"], "INVALID_PARAMETERS", "{}", reply.text());
            let messages = json["messages"].as_object().expect("messages");
            assert_eq!(messages.len(), 1, "{}", reply.text());
            Outcome::NotUtf8(messages.keys().next().cloned().unwrap_or_default())
        }
        StatusCode::METHOD_NOT_ALLOWED => Outcome::MethodNotAllowed(
            reply
                .header("allow")
                .unwrap_or_default()
                .split(", ")
                .filter(|m| !m.is_empty())
                .map(str::to_owned)
                .collect(),
        ),
        StatusCode::PERMANENT_REDIRECT => {
            let location = reply.headers.get("location").map(|l| l.as_bytes());
            Outcome::Redirect(String::from_utf8_lossy(location.unwrap_or(b"(none)")).into_owned())
        }
        StatusCode::NOT_FOUND => Outcome::NotFound,
        other => panic!("unexpected {other}: {}", reply.text()),
    }
}

fn patterns(table: &[RouteSpec]) -> Vec<String> {
    table
        .iter()
        .map(|spec| format!("{} {}", spec.methods.join(","), spec.pattern()))
        .collect()
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(cases()))]

    /// The router accepts and refuses the rows the model does, and answers every
    /// request as the model does.
    #[test]
    fn the_router_agrees_with_the_reference_matcher(
        table in table(),
        requests in proptest::collection::vec(request(), 1..=16),
    ) {
        let mut router = Router::new();
        let mut model = Model::default();
        for (row, spec) in table.iter().enumerate() {
            let expected = model.add(row, spec);
            let added = router.clone().try_route(&spec.pattern(), methods(row, spec));
            match (expected, added) {
                (Ok(()), Ok(with_it)) => router = with_it,
                (Err(_), Err(_)) => {}
                (expected, added) => prop_assert!(
                    false,
                    "row {row} `{}`: the model says {expected:?}, the router {:?}\ntable: {:#?}",
                    spec.pattern(),
                    added.map(drop),
                    patterns(&table),
                ),
            }
        }
        let service = service(&router);
        for request in &requests {
            let path = request.path.path(&table);
            let query = request.query.then_some("q=1");
            let uri = match query {
                Some(query) => format!("{path}?{query}"),
                None => path.clone(),
            };
            let Some(reply) = send(&service, request.method, &uri) else {
                continue;
            };
            let mut expected = model.answer(request.method, &path, query);
            let mut answered = outcome(&reply);
            if request.method == "HEAD" {
                // A HEAD answer has no body: a 400 does not say which parameter.
                for outcome in [&mut expected, &mut answered] {
                    if let Outcome::NotUtf8(name) = outcome {
                        name.clear();
                    }
                }
            }
            prop_assert_eq!(
                answered,
                expected,
                "{} {}\ntable: {:#?}",
                request.method,
                uri,
                patterns(&table)
            );
        }
    }
}
