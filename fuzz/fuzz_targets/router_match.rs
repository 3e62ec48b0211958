//! The router, differentially: a route table and requests made from the input are
//! given to `Router` and to the reference matcher of the property tests
//! (`crates/nucleon-http/tests/props/router_model.rs`, included as it is); both must
//! refuse the same routes and answer every request alike. One input in eight instead
//! gives patterns and paths of any text: no panic, and no answer but 200, 308, 400,
//! 404 or 405.

#![no_main]
#![allow(
    clippy::disallowed_methods,
    reason = "fuzz_target! (libfuzzer-sys) writes its debug file with std::fs; no worker loop here"
)]

use http::{HeaderMap, HeaderValue, Method, StatusCode, Uri};
use libfuzzer_sys::arbitrary::{Result, Unstructured};
use libfuzzer_sys::fuzz_target;
use nucleon_fuzz::{Reply, send, service};
use nucleon_http::{MethodRouter, RequestContext, Router, get, on};
use percent_encoding::{NON_ALPHANUMERIC, percent_decode_str, utf8_percent_encode};

#[path = "../../crates/nucleon-http/tests/props/router_model.rs"]
mod router_model;

use router_model::{
    Constraint, Model, Outcome, REQUEST_METHODS, ROUTE_METHODS, RouteSpec, STATICS, Seg, VALUES,
};

fuzz_target!(|data: &[u8]| {
    let mut u = Unstructured::new(data);
    let _ = if u.ratio(1, 8).unwrap_or(false) {
        any_text(&mut u)
    } else {
        against_the_model(&mut u)
    };
});

fn pick<'a, T>(u: &mut Unstructured<'_>, items: &'a [T]) -> Result<&'a T> {
    u.choose(items)
}

fn constraint(u: &mut Unstructured<'_>) -> Result<Option<Constraint>> {
    Ok(if u.ratio(2, 5)? {
        Some(*pick(u, &Constraint::ALL)?)
    } else {
        None
    })
}

/// A row as the property test makes them: up to 3 statics or parameters, then
/// nothing, a trailing slash or a catch-all; one to three methods.
fn row(u: &mut Unstructured<'_>, shapes: &[RouteSpec]) -> Result<RouteSpec> {
    // Often a shape already made, with other constraints or methods.
    let mut segs = if !shapes.is_empty() && u.ratio(1, 2)? {
        pick(u, shapes)?.segs.clone()
    } else {
        let mut segs = Vec::new();
        for _ in 0..u.int_in_range(0..=3)? {
            segs.push(if u.ratio(3, 5)? {
                Seg::Static((*pick(u, &STATICS)?).to_owned())
            } else {
                Seg::Param(None)
            });
        }
        match u.int_in_range(0..=4)? {
            0 => segs.push(Seg::Static(String::new())),
            1 => segs.push(Seg::CatchAll(None)),
            _ if segs.is_empty() => segs.push(Seg::Static(String::new())),
            _ => {}
        }
        segs
    };
    for seg in &mut segs {
        if let Seg::Param(c) | Seg::CatchAll(c) = seg {
            *c = constraint(u)?;
        }
    }
    let mask = u.int_in_range(1..=7_u8)?;
    let methods = ROUTE_METHODS
        .iter()
        .enumerate()
        .filter(|(i, _)| mask & (1 << i) != 0)
        .map(|(_, m)| *m)
        .collect();
    Ok(RouteSpec { segs, methods })
}

/// A path: a row's pattern filled in (maybe changed), segments of the alphabets, or
/// any text.
fn path(u: &mut Unstructured<'_>, table: &[RouteSpec]) -> Result<String> {
    let segments: Vec<String> = match u.int_in_range(0..=5)? {
        0..=2 => {
            let spec = pick(u, table)?;
            let mut segments = Vec::new();
            for seg in &spec.segs {
                segments.push(match seg {
                    Seg::Static(text) => text.clone(),
                    Seg::Param(_) => (*pick(u, &VALUES)?).to_owned(),
                    Seg::CatchAll(_) => {
                        let mut parts = Vec::new();
                        for _ in 0..u.int_in_range(1..=3)? {
                            parts.push(if u.ratio(1, 8)? {
                                ""
                            } else {
                                pick(u, &VALUES)?
                            });
                        }
                        parts.join("/")
                    }
                });
            }
            match u.int_in_range(0..=5)? {
                0 => segments.push(String::new()),
                1 if segments.len() > 1 => {
                    segments.pop();
                }
                2 => {
                    let at = u.choose_index(segments.len())?;
                    segments[at] = (*pick(u, &VALUES)?).to_owned();
                }
                _ => {}
            }
            segments
        }
        3 | 4 => {
            let mut segments = Vec::new();
            for _ in 0..u.int_in_range(1..=4)? {
                segments.push(match u.int_in_range(0..=2)? {
                    0 => (*pick(u, &STATICS)?).to_owned(),
                    1 => (*pick(u, &VALUES)?).to_owned(),
                    _ => String::new(),
                });
            }
            segments
        }
        _ => return Ok(format!("/{}", u.arbitrary::<&str>()?)),
    };
    Ok(format!("/{}", segments.join("/")))
}

/// Row `row`'s handlers: the row in `x-route`, the parameters (JSON-ish, encoded) in
/// `x-params`.
fn methods(row: usize, spec: &RouteSpec) -> MethodRouter {
    let handler = move |ctx: RequestContext| async move {
        let params: Vec<String> = ctx
            .params()
            .map(|(k, v)| format!("{}={}", encode(k), encode(v)))
            .collect();
        let mut headers = HeaderMap::new();
        headers.insert("x-route", HeaderValue::from(row));
        headers.insert(
            "x-params",
            HeaderValue::from_str(&params.join("&")).expect("ASCII"),
        );
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

fn encode(text: &str) -> String {
    utf8_percent_encode(text, NON_ALPHANUMERIC).to_string()
}

fn decode(text: &str) -> String {
    percent_decode_str(text).decode_utf8_lossy().into_owned()
}

/// What the router answered, in the model's terms.
fn outcome(reply: &Reply) -> Outcome {
    match reply.status {
        StatusCode::OK => {
            let route = reply
                .header("x-route")
                .and_then(|r| r.parse().ok())
                .expect("x-route");
            let params = reply.header("x-params").unwrap_or_default();
            let params = params
                .split('&')
                .filter(|p| !p.is_empty())
                .map(|p| {
                    let (k, v) = p.split_once('=').unwrap_or((p, ""));
                    (decode(k), decode(v))
                })
                .collect();
            Outcome::Handler { route, params }
        }
        // The parameter's name is in the JSON body (none for HEAD): between the quotes
        // after `"messages":{`.
        StatusCode::BAD_REQUEST => Outcome::NotUtf8(
            reply
                .text()
                .split_once("\"messages\":{\"")
                .and_then(|(_, rest)| rest.split_once('"'))
                .map(|(name, _)| name.to_owned())
                .unwrap_or_default(),
        ),
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
            Outcome::Redirect(reply.header("location").unwrap_or_default())
        }
        StatusCode::NOT_FOUND => Outcome::NotFound,
        other => panic!("unexpected {other}: {}", reply.text()),
    }
}

fn against_the_model(u: &mut Unstructured<'_>) -> Result<()> {
    let mut table = Vec::new();
    for _ in 0..u.int_in_range(1..=8)? {
        let spec = row(u, &table)?;
        table.push(spec);
    }
    let mut router = Router::new();
    let mut model = Model::default();
    for (i, spec) in table.iter().enumerate() {
        let expected = model.add(i, spec);
        let added = router.clone().try_route(&spec.pattern(), methods(i, spec));
        match (expected, added) {
            (Ok(()), Ok(with_it)) => router = with_it,
            (Err(_), Err(_)) => {}
            (expected, added) => panic!(
                "row {i} `{}`: the model says {expected:?}, the router {:?}\ntable: {:#?}",
                spec.pattern(),
                added.map(drop),
                patterns(&table)
            ),
        }
    }
    let service = service(&router);
    for _ in 0..16 {
        if u.is_empty() {
            break;
        }
        let method = *pick(u, &REQUEST_METHODS)?;
        let mut text = path(u, &table)?;
        if u.ratio(1, 5)? {
            text.push_str("?q=1");
        }
        let Ok(uri) = text.parse::<Uri>() else {
            continue;
        };
        let (path, query) = (uri.path().to_owned(), uri.query().map(str::to_owned));
        if !path.starts_with('/') {
            continue;
        }
        let reply = send(
            &service,
            &Method::from_bytes(method.as_bytes()).expect("a method"),
            uri,
        );
        let mut expected = model.answer(method, &path, query.as_deref());
        let mut answered = outcome(&reply);
        if method == "HEAD" {
            // No body: a 400 does not say which parameter.
            for outcome in [&mut expected, &mut answered] {
                if let Outcome::NotUtf8(name) = outcome {
                    name.clear();
                }
            }
        }
        assert_eq!(
            answered,
            expected,
            "{method} {text}\ntable: {:#?}",
            patterns(&table)
        );
    }
    Ok(())
}

fn patterns(table: &[RouteSpec]) -> Vec<String> {
    table
        .iter()
        .map(|spec| format!("{} {}", spec.methods.join(","), spec.pattern()))
        .collect()
}

/// Patterns and paths of any text: routes refused or added, requests answered
/// without a panic and with one of the router's own statuses.
fn any_text(u: &mut Unstructured<'_>) -> Result<()> {
    let mut router = Router::new();
    for _ in 0..u.int_in_range(1..=4)? {
        let pattern = format!("/{}", u.arbitrary::<&str>()?);
        if let Ok(with_it) = router.clone().try_route(
            &pattern,
            get(|ctx: RequestContext| async move { ctx.params().count().to_string() }),
        ) {
            router = with_it;
        }
    }
    let service = service(&router);
    while !u.is_empty() {
        let text = format!("/{}", u.arbitrary::<&str>()?);
        let Ok(uri) = text.parse::<Uri>() else {
            continue;
        };
        let method = if u.ratio(1, 4)? {
            Method::POST
        } else {
            Method::GET
        };
        let reply = send(&service, &method, uri);
        assert!(
            matches!(reply.status.as_u16(), 200 | 308 | 400 | 404 | 405),
            "{method} {text}: {} {}",
            reply.status,
            reply.text()
        );
    }
    Ok(())
}
