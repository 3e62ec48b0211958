//! The umbrella's messaging: `app check` names a consumer whose handle no adapter gives.
#![cfg(feature = "amqp")]

use nucleon::runtime::{Dep, RuntimeError};
use nucleon::{App, AppError};

#[derive(Clone)]
struct Ledger;

async fn record(Dep(_ledger): Dep<Ledger>) {}

#[test]
fn check_refuses_a_consumer_whose_handle_no_adapter_gives() {
    let error = nucleon::run_from(
        App::new("ledger").consume("payments", record),
        ["app", "check"],
    )
    .expect_err("no adapter gives a Ledger");
    let message = error.to_string();
    assert!(
        matches!(
            error,
            AppError::Runtime(RuntimeError::MissingHandles { .. })
        ),
        "{error:?}"
    );
    assert!(
        message.contains("the consumer of `payments` needs `") && message.contains("Ledger`"),
        "{message}"
    );
}
