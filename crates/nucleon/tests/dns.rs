//! The `dns` feature in the umbrella: the `[<env>.dns]` and `[<env>.http_client]`
//! tables are read at start (and by `check`), and `App::without_dns` leaves them out.
#![cfg(feature = "dns")]

use nucleon::{App, Json, get};

const BAD_DNS: &str = r#"
[default.http]
port = 0

[default.dns]
ip_preference = "ipv5"
"#;

async fn hello() -> Json<&'static str> {
    Json("hello")
}

fn app(config: &'static str) -> App {
    App::new("dns")
        .default_config(config)
        .route("/", get(hello))
}

#[test]
fn check_reads_the_dns_tables_unless_without_dns() {
    let error = nucleon::run_from(app(BAD_DNS), ["dns", "check"]).expect_err("bad dns table");
    assert_eq!(error.exit_code(), 3, "{error}");
    let text = error.to_string();
    assert!(text.contains("ip_preference"), "{text}");

    let error = nucleon::run_from(
        app("[default.http_client]\ntimeout = \"soon\"\n"),
        ["dns", "check"],
    )
    .expect_err("bad http_client table");
    assert_eq!(error.exit_code(), 3, "{error}");
    assert!(error.to_string().contains("timeout"), "{error}");

    // A minimum TTL past its maximum would fail every lookup that misses the cache.
    let error = nucleon::run_from(
        app("[default.dns]\npositive_min_ttl = \"10m\"\npositive_max_ttl = \"5m\"\n"),
        ["dns", "check"],
    )
    .expect_err("min ttl past max");
    assert_eq!(error.exit_code(), 3, "{error}");
    assert!(
        error.to_string().contains("key `dns.positive_min_ttl`"),
        "{error}"
    );

    nucleon::run_from(app(BAD_DNS).without_dns(), ["dns", "check"])
        .expect("without_dns: the dns table is not read");
}
