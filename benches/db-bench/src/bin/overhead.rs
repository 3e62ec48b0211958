//! The query API's overhead per query against raw sqlx, on one connection (a pool of
//! one), interleaved rounds: `db-overhead --url URL [--rounds N] [--queries N]`.
//! Prints the time per query of each and their ratio (the nucleon-db API over raw sqlx).

use std::time::{Duration, Instant};

use db_bench::{BY_CODE, Country, SCHEMA};
use nucleon::db::{Backend, Db, DbConfig, Sql};

const COUNTRY: Sql = Sql::named("countries.by_code", BY_CODE);

fn main() {
    let mut url = "postgres://postgres@127.0.0.1:5432/postgres".to_owned();
    let (mut rounds, mut queries) = (8_u32, 5_000_u32);
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let value = it.next().expect("a value");
        match flag.as_str() {
            "--url" => url = value,
            "--rounds" => rounds = value.parse().expect("--rounds"),
            "--queries" => queries = value.parse().expect("--queries"),
            other => panic!("unknown flag {other}"),
        }
    }
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    runtime.block_on(async {
        let mut settings = DbConfig::default();
        settings.url = Some(url.parse().expect("a URL"));
        let backend = settings.backend("db", "bench").expect("a database URL");
        let db = Db::connect(&settings, &backend, 1).await.expect("connects");
        db.sync(&nucleon::db::Schema::parse(SCHEMA, matches!(backend, Backend::Sqlite(_))).unwrap()).await.unwrap();
        let (mut api, mut raw) = (Duration::ZERO, Duration::ZERO);
        for round in 0..rounds {
            // Alternate which goes first.
            for which in [round % 2, 1 - round % 2] {
                let started = Instant::now();
                for i in 0..queries {
                    let code = ["de", "fr", "gb", "jp", "us"][i as usize % 5];
                    let country: Country = if which == 0 {
                        db.query(COUNTRY).bind(code).unique().await.unwrap()
                    } else {
                        match db.pool() {
                            nucleon::db::Pool::Postgres(pool) => sqlx::query_as(BY_CODE).bind(code).fetch_one(pool).await.unwrap(),
                            nucleon::db::Pool::Sqlite(pool) => sqlx::query_as(BY_CODE).bind(code).fetch_one(pool).await.unwrap(),
                            _ => unreachable!(),
                        }
                    };
                    std::hint::black_box(country);
                }
                let took = started.elapsed();
                if which == 0 { api += took } else { raw += took }
            }
        }
        let n = f64::from(rounds * queries);
        let per = |d: Duration| d.as_secs_f64() * 1e6 / n;
        println!("| backend | raw sqlx µs/query | nucleon-db µs/query | ratio |");
        println!("|---|---:|---:|---:|");
        println!(
            "| {} | {:.2} | {:.2} | {:.3}× |",
            match backend { Backend::Postgres => "postgres", Backend::Sqlite(_) => "sqlite" },
            per(raw),
            per(api),
            api.as_secs_f64() / raw.as_secs_f64()
        );
    });
}
