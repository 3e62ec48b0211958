//! The path and query deserialisers (`Path<T>`, `Query<T>`): the input is a request
//! target (`/route/segments?query`) for routes whose handlers extract every shape of
//! type (structs, maps, sequences, tuples, enums, options, flattened and untagged
//! types, numbers of every width). Any target must give a value (200) or a typed
//! error (400 `INVALID_PARAMETERS`; 404, 405 or 308 from routing): never a panic (the
//! fuzzer aborts on one, even one the server would catch) and never a 500 (each type
//! fits its route, so a 500 would be a bug).

#![no_main]
#![allow(
    clippy::disallowed_methods,
    reason = "fuzz_target! (libfuzzer-sys) writes its debug file with std::fs; no worker loop here"
)]

use std::cell::OnceCell;
use std::collections::{BTreeMap, HashMap};
use std::fmt::Debug;

use http::{Method, Uri};
use libfuzzer_sys::fuzz_target;
use nucleon_fuzz::{send, service};
use nucleon_http::{HttpService, Path, Query, Router, get};
use serde::Deserialize;

#[derive(Debug, Deserialize)]
#[allow(dead_code, reason = "only deserialized")]
enum Kind {
    Alpha,
    #[serde(rename = "gamma-ray")]
    GammaRay,
    Newtype(u8),
    Tuple(u8, i8),
    Struct {
        a: u8,
    },
}

#[derive(Debug, Deserialize)]
#[allow(dead_code, reason = "only deserialized")]
struct Record {
    text: String,
    page: u16,
    offset: Option<i32>,
    full: Option<bool>,
    ratio: Option<f32>,
    letter: Option<char>,
    kind: Option<Kind>,
    #[serde(default)]
    tag: Vec<String>,
    #[serde(default)]
    id: Vec<u64>,
}

#[derive(Debug, Deserialize)]
#[allow(dead_code, reason = "only deserialized")]
struct Nested {
    inner: Record,
    pair: Option<(u8, u8)>,
}

#[derive(Debug, Deserialize)]
#[allow(dead_code, reason = "only deserialized")]
struct Flattened {
    page: Option<u32>,
    #[serde(flatten)]
    rest: HashMap<String, String>,
}

#[derive(Debug, Deserialize)]
#[serde(untagged)]
#[allow(dead_code, reason = "only deserialized")]
enum Untagged {
    Paged { page: u32 },
    Named { name: String },
    Bare(i64),
}

#[derive(Debug, Deserialize)]
#[allow(dead_code, reason = "only deserialized")]
struct InPath {
    name: String,
    count: u32,
    ratio: f64,
    flag: bool,
    letter: char,
    kind: Kind,
}

/// Answers with what it extracted.
async fn show<T: Debug>(value: T) -> String {
    format!("{value:?}")
}

fn router() -> Router {
    Router::new()
        .route("/q/record", get(|Query(q): Query<Record>| show(q)))
        .route("/q/optional", get(|q: Option<Query<Record>>| show(q)))
        .route("/q/nested", get(|Query(q): Query<Nested>| show(q)))
        .route("/q/flattened", get(|Query(q): Query<Flattened>| show(q)))
        .route("/q/untagged", get(|Query(q): Query<Untagged>| show(q)))
        .route("/q/kind", get(|Query(q): Query<Kind>| show(q)))
        .route(
            "/q/map",
            get(|Query(q): Query<BTreeMap<String, String>>| show(q)),
        )
        .route(
            "/q/lists",
            get(|Query(q): Query<HashMap<String, Vec<i16>>>| show(q)),
        )
        .route("/q/seq", get(|Query(q): Query<Vec<String>>| show(q)))
        .route("/q/tuple", get(|Query(q): Query<(u8, bool, char)>| show(q)))
        .route("/q/one", get(|Query(q): Query<u128>| show(q)))
        .route("/q/unit", get(|Query(q): Query<()>| show(q)))
        .route("/p/one/{id}", get(|Path(p): Path<i64>| show(p)))
        .route("/p/char/{id}", get(|Path(p): Path<char>| show(p)))
        .route("/p/kind/{id}", get(|Path(p): Path<Kind>| show(p)))
        .route("/p/opt/{id}", get(|p: Option<Path<f32>>| show(p)))
        .route(
            "/p/tuple/{a}/{b}",
            get(|Path(p): Path<(u16, String)>| show(p)),
        )
        .route(
            "/p/map/{a}/{b}",
            get(|Path(p): Path<BTreeMap<String, u8>>| show(p)),
        )
        .route(
            "/p/rec/{name}/{count}/{ratio}/{flag}/{letter}/{kind}",
            get(|Path(p): Path<InPath>| show(p)),
        )
        .route("/p/rest/{*rest}", get(|Path(p): Path<String>| show(p)))
        .route(
            "/p/both/{id}",
            get(|Path(id): Path<u32>, Query(q): Query<Flattened>| show((id, q))),
        )
}

thread_local! {
    static SERVICE: OnceCell<HttpService> = const { OnceCell::new() };
}

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let Ok(uri) = text.parse::<Uri>() else {
        return;
    };
    if !uri.path().starts_with('/') {
        return;
    }
    let reply =
        SERVICE.with(|cell| send(cell.get_or_init(|| service(&router())), &Method::GET, uri));
    assert!(
        matches!(reply.status.as_u16(), 200 | 308 | 404 | 405)
            || reply.status == 400 && reply.text().contains("\"INVALID_PARAMETERS\""),
        "{text}: {} {}",
        reply.status,
        reply.text()
    );
});
