//! The countries service, as a library so tests can call it in-process
//! ([`nucleon::test::TestClient`]) as well as through its binary.

use nucleon::{App, HttpError, Json, Local, Path, get};
use serde::Serialize;

/// A country, as served.
#[derive(Debug, Clone, Copy, Serialize, PartialEq, Eq)]
pub struct Country {
    /// ISO 3166-1 alpha-2 code, lowercase.
    pub code: &'static str,
    /// English name.
    pub name: &'static str,
    /// Capital city.
    pub capital: &'static str,
    /// Population, rounded.
    pub population: u64,
}

/// The data: static, so shared by every worker without locks.
pub const COUNTRIES: &[Country] = &[
    Country {
        code: "de",
        name: "Germany",
        capital: "Berlin",
        population: 83_000_000,
    },
    Country {
        code: "fr",
        name: "France",
        capital: "Paris",
        population: 68_000_000,
    },
    Country {
        code: "gb",
        name: "United Kingdom",
        capital: "London",
        population: 67_000_000,
    },
    Country {
        code: "jp",
        name: "Japan",
        capital: "Tokyo",
        population: 125_000_000,
    },
    Country {
        code: "us",
        name: "United States",
        capital: "Washington",
        population: 333_000_000,
    },
];

/// `GET /countries/`: the codes.
pub async fn list() -> Json<Vec<&'static str>> {
    Json(COUNTRIES.iter().map(|c| c.code).collect())
}

/// `GET /countries/{code}/`: one country, or 404 naming the code.
pub async fn country(Path(code): Path<String>) -> Result<Json<Country>, HttpError> {
    COUNTRIES
        .iter()
        .find(|c| c.code == code)
        .map(|c| Json(*c))
        .ok_or_else(|| HttpError::not_found(format!("no country with code `{code}`")))
}

/// What `/hits` answers.
#[derive(Debug, Serialize)]
pub struct Hits {
    /// The worker that served the request.
    pub worker: Option<usize>,
    /// How many requests this worker has served on `/hits`.
    pub hits: u64,
}

/// `GET /hits`: a per-worker counter in `LocalState` — no lock, no atomics; each
/// worker counts its own.
pub async fn hits(Local(hits): Local<u64>) -> Json<Hits> {
    let hits = hits.with_mut(|n| {
        *n += 1;
        *n
    });
    Json(Hits {
        worker: nucleon::runtime::current_worker(),
        hits,
    })
}

/// The app: routes, per-worker state, embedded default configuration.
pub fn app() -> App {
    App::new("countries")
        .default_config(include_str!("../app.toml"))
        // It calls nothing outside: no resolver, no outbound client on its workers.
        .without_dns()
        .local_state(|| 0_u64)
        .route("/countries/", get(list))
        .route("/countries/{code:[a-z]{2}}/", get(country))
        .route("/hits", get(hits))
}
