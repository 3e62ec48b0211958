//! Nucleon: the countries example's app, plus the `/json` hello route.
//! Its own command line: `nucleon-server --port N -j 1`.

use std::process::ExitCode;

use http_bench::{HELLO, Hello};
use nucleon::{Json, get};

async fn hello() -> Json<Hello> {
    Json(HELLO)
}

fn main() -> ExitCode {
    nucleon::run(countries::app().route("/json", get(hello)))
}
