//! A service for the span export test, started by [`nucleon::run`] with the `otel`
//! feature: the test gives it `OTEL_EXPORTER_OTLP_TRACES_ENDPOINT` (its own collector).
//!
//! `GET /hop?to=ADDR` calls `GET /down` on this same service (at `ADDR`) through the framework's client,
//! inside a span of its own (`lookup`), and answers what `/down` answered: the
//! `traceparent` it was sent. `GET /fail` answers 500.

use std::process::ExitCode;

use nucleon::amqp::Broker;
use nucleon::http::HeaderMap;
use nucleon::{App, Dep, HttpClient, HttpError, Json, Msg, Query, get};
use tracing::Instrument as _;

/// `?to=` names this service's own address, as the test read it from the start line.
#[derive(serde::Deserialize)]
struct To {
    to: String,
}

async fn hop(
    Dep(client): Dep<HttpClient>,
    Query(To { to }): Query<To>,
) -> Result<Json<serde_json::Value>, HttpError> {
    let down: serde_json::Value = client
        .get_json(format!("http://{to}/down"))
        .instrument(tracing::info_span!("lookup", what = "down"))
        .await
        .map_err(|error| HttpError::internal(error.to_string()))?;
    Ok(Json(down))
}

async fn down(headers: HeaderMap) -> Json<serde_json::Value> {
    let traceparent = headers
        .get("traceparent")
        .and_then(|value| value.to_str().ok())
        .map(str::to_owned);
    Json(serde_json::json!({ "traceparent": traceparent }))
}

async fn fail() -> Result<Json<()>, HttpError> {
    Err(HttpError::internal("failed on purpose"))
}

/// The task this service submits and handles.
const TASK: &str = "nucleon-tests.otel";

async fn submit(Dep(broker): Dep<Broker>) -> Result<Json<String>, HttpError> {
    Ok(Json(broker.submit(TASK, "work").await?))
}

async fn handle(Msg(work): Msg<String>) -> Result<(), std::convert::Infallible> {
    tracing::info!(%work, "handled");
    Ok(())
}

fn main() -> ExitCode {
    let app = App::new("otel-child")
        .route("/hop", get(hop))
        .route("/down", get(down))
        .route("/fail", get(fail));
    // The AMQP leg, when the test gives a broker.
    let app = if std::env::var_os("NUCLEON_AMQP__URL").is_some() {
        app.route("/submit", get(submit)).task(TASK, handle)
    } else {
        app
    };
    nucleon::run(app)
}
