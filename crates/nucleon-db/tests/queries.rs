//! The query API on real databases: every result shape, every error, the same on
//! PostgreSQL and SQLite.

mod support;

use futures_util::TryStreamExt;
use nucleon_db::{Db, DbError, JsonRow, Sql};

#[derive(Debug, PartialEq, sqlx::FromRow)]
struct Country {
    code: String,
    name: String,
    population: i64,
}

const INSERT: Sql = Sql::named(
    "countries.insert",
    "INSERT INTO countries (code, name, population, capital) VALUES ($1, $2, $3, $4)",
);
const BY_CODE: Sql = Sql::named(
    "countries.by_code",
    "SELECT code, name, population FROM countries WHERE code = $1",
);

async fn fixture(db: &Db) {
    db.query("CREATE TABLE countries (code TEXT PRIMARY KEY, name TEXT NOT NULL, population BIGINT NOT NULL, capital TEXT)")
        .execute()
        .await
        .unwrap();
    for (code, name, population, capital) in [
        ("fr", "France", 68_000_000_i64, Some("Paris")),
        ("gb", "United Kingdom", 67_000_000, Some("London")),
        ("jp", "Japan", 124_000_000, None),
    ] {
        let added = db
            .query(INSERT)
            .bind(code)
            .bind(name)
            .bind(population)
            .bind(capital)
            .execute()
            .await
            .unwrap();
        assert_eq!(added, 1);
    }
}

/// Every shape, on `db`.
async fn shapes(db: &Db) {
    fixture(db).await;
    let all: Vec<Country> = db
        .query("SELECT code, name, population FROM countries ORDER BY code")
        .rows()
        .await
        .unwrap();
    assert_eq!(all.len(), 3);
    assert_eq!(all[1].name, "United Kingdom");

    let codes: Vec<String> = db
        .query("SELECT code FROM countries ORDER BY code")
        .flat()
        .await
        .unwrap();
    assert_eq!(codes, ["fr", "gb", "jp"]);

    let gb: Country = db.query(BY_CODE).bind("gb").unique().await.unwrap();
    assert_eq!(gb.population, 67_000_000);
    let pair: (String, i64) = db
        .query(BY_CODE.text().replace("code, name,", "name,"))
        .bind("fr")
        .unique()
        .await
        .unwrap();
    assert_eq!(pair, ("France".to_owned(), 68_000_000));

    assert!(
        db.query(BY_CODE)
            .bind("zz")
            .optional::<Country>()
            .await
            .unwrap()
            .is_none()
    );
    match db.query(BY_CODE).bind("zz").unique::<Country>().await {
        Err(DbError::NotFound { query }) => assert_eq!(query, "countries.by_code"),
        other => panic!("{other:?}"),
    }
    match db
        .query("SELECT code FROM countries")
        .unique::<(String,)>()
        .await
    {
        Err(error @ DbError::TooManyRows { .. }) => assert_eq!(error.status(), 500),
        other => panic!("{other:?}"),
    }

    let count: i64 = db
        .query("SELECT count(*) FROM countries")
        .value()
        .await
        .unwrap();
    assert_eq!(count, 3);
    let capital: Option<String> = db
        .query("SELECT capital FROM countries WHERE code = $1")
        .bind("jp")
        .value()
        .await
        .unwrap();
    assert_eq!(capital, None, "a NULL bound and read back");

    let rows: Vec<JsonRow> = db
        .query("SELECT code, population, capital FROM countries ORDER BY code")
        .rows()
        .await
        .unwrap();
    assert_eq!(
        serde_json::to_value(&rows).unwrap(),
        serde_json::json!([
            {"code": "fr", "population": 68_000_000, "capital": "Paris"},
            {"code": "gb", "population": 67_000_000, "capital": "London"},
            {"code": "jp", "population": 124_000_000, "capital": null},
        ])
    );

    let streamed: Vec<Country> = db
        .query("SELECT code, name, population FROM countries WHERE population > $1 ORDER BY code")
        .bind(67_500_000)
        .stream()
        .try_collect()
        .await
        .unwrap();
    assert_eq!(
        streamed.iter().map(|c| c.code.as_str()).collect::<Vec<_>>(),
        ["fr", "jp"]
    );

    let gone = db
        .query("DELETE FROM countries WHERE population < $1")
        .bind(100_000_000)
        .execute()
        .await
        .unwrap();
    assert_eq!(gone, 2);
}

/// Every error, on `db` (after `shapes`).
async fn errors(db: &Db) {
    let dup = db
        .query(INSERT)
        .bind("jp")
        .bind("Japan again")
        .bind(1)
        .bind(None::<String>)
        .execute()
        .await;
    match dup {
        Err(
            ref error @ DbError::Conflict {
                ref query, unique, ..
            },
        ) => {
            assert_eq!(query, "countries.insert");
            assert!(unique);
            assert_eq!(error.status(), 409);
        }
        other => panic!("{other:?}"),
    }
    let null = db
        .query(INSERT)
        .bind("xx")
        .bind(None::<String>)
        .bind(1)
        .bind("x")
        .execute()
        .await;
    assert!(
        matches!(null, Err(DbError::Conflict { unique: false, .. })),
        "{null:?}"
    );

    let bad = db
        .query("SELEC code FROM countries WHERE code = $1")
        .bind("secret-value")
        .execute()
        .await
        .unwrap_err();
    assert!(matches!(bad, DbError::BadQuery { .. }), "{bad:?}");
    let message = bad.to_string();
    assert!(
        message.contains("`SELEC code FROM countries"),
        "named by its first words: {message}"
    );
    assert!(
        !message.contains("secret-value"),
        "no parameter values: {message}"
    );
    assert_eq!(bad.status(), 500);

    let wrong_type = db
        .query("SELECT name FROM countries")
        .flat::<i64>()
        .await
        .unwrap_err();
    assert!(
        matches!(wrong_type, DbError::BadQuery { .. }),
        "{wrong_type:?}"
    );
}

#[tokio::test]
async fn postgres_every_shape_and_error() {
    let Some(test) = support::postgres("shapes", |_| {}).await else {
        return;
    };
    shapes(&test.db).await;
    errors(&test.db).await;
}

#[tokio::test]
async fn sqlite_every_shape_and_error() {
    let test = support::sqlite(|_| {}).await;
    shapes(&test.db).await;
    errors(&test.db).await;
    let mode: String = test.db.query("PRAGMA journal_mode").value().await.unwrap();
    assert_eq!(mode, "wal");
    let keys: i64 = test.db.query("PRAGMA foreign_keys").value().await.unwrap();
    assert_eq!(keys, 1);
}

#[tokio::test]
async fn postgres_statement_timeout_is_a_timeout() {
    let Some(test) = support::postgres("timeout", |s| {
        s.statement_timeout = std::time::Duration::from_millis(200)
    })
    .await
    else {
        return;
    };
    let error = test
        .db
        .query(Sql::named("slow.sleep", "SELECT pg_sleep(5)"))
        .execute()
        .await
        .unwrap_err();
    match &error {
        DbError::Timeout { query, after } => {
            assert_eq!(query, "slow.sleep");
            assert_eq!(*after, Some(std::time::Duration::from_millis(200)));
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(error.status(), 504);
    // The connection it ran on is fine.
    let one: i32 = test.db.query("SELECT 1").value().await.unwrap();
    assert_eq!(one, 1);
}

#[tokio::test]
async fn an_exhausted_pool_is_unavailable_after_its_acquire_timeout() {
    let Some(test) = support::postgres("exhausted", |s| {
        s.pool_size = 1;
        s.acquire_timeout = std::time::Duration::from_millis(300);
    })
    .await
    else {
        return;
    };
    // Take the only connection for good, through a stream left open.
    let mut open = test
        .db
        .query("SELECT generate_series(1, 100000)")
        .stream::<(i32,)>();
    let _first = open.try_next().await.unwrap();
    let error = test.db.query("SELECT 1").execute().await.unwrap_err();
    assert!(matches!(error, DbError::Unavailable { .. }), "{error:?}");
    assert_eq!(error.status(), 503);
    drop(open);
}

/// A host name is resolved through nucleon-dns (the hosts file here: `localhost`), and
/// the pool connects to the address found.
#[cfg(feature = "dns")]
#[tokio::test]
async fn a_host_name_is_resolved_through_nucleon_dns() {
    let Some(url) = nucleon_testkit::postgres_url() else {
        return;
    };
    let mut url: url::Url = url.parse().unwrap();
    url.set_host(Some("localhost")).unwrap();
    let mut settings = nucleon_db::DbConfig::default();
    settings.url = Some(url.as_str().parse().unwrap());
    let db = Db::connect(&settings, &nucleon_db::Backend::Postgres, 1)
        .await
        .unwrap();
    let one: i32 = db.query("SELECT 1").value().await.unwrap();
    assert_eq!(one, 1);
    let nucleon_db::Pool::Postgres(pool) = db.pool() else {
        panic!("postgres")
    };
    assert_eq!(
        pool.connect_options().get_host(),
        "localhost",
        "the name stays, for TLS"
    );
}

/// Integers bind as `int8` whatever their width (one type per query text: sqlx caches
/// the statement); where a function wants an `int4`, the SQL says so.
#[tokio::test]
async fn postgres_integers_are_int8_and_a_cast_makes_an_int4() {
    let Some(test) = support::postgres("int8", |_| {}).await else {
        return;
    };
    let left: String = test
        .db
        .query("SELECT left('abcdef', $1::int)")
        .bind(3_i32)
        .value()
        .await
        .unwrap();
    assert_eq!(left, "abc");
    let wide: i64 = test
        .db
        .query("SELECT $1 + 1")
        .bind(i64::from(i32::MAX))
        .value()
        .await
        .unwrap();
    assert_eq!(wide, 2_147_483_648);
    let narrow: i64 = test
        .db
        .query("SELECT $1 + 1")
        .bind(1_i32)
        .value()
        .await
        .unwrap();
    assert_eq!(
        narrow, 2,
        "the same query text, another width: the same int8"
    );
}

/// SQLite's JSON rows: a BOOLEAN column is true or false (JSON is text in SQLite).
#[tokio::test]
async fn sqlite_json_rows_follow_declared_types() {
    let test = support::sqlite(|_| {}).await;
    test.db
        .query("CREATE TABLE flags (done BOOLEAN, meta JSON)")
        .execute()
        .await
        .unwrap();
    test.db
        .query("INSERT INTO flags VALUES ($1, $2)")
        .bind(true)
        .bind(serde_json::json!({"a": 1}))
        .execute()
        .await
        .unwrap();
    let rows: Vec<JsonRow> = test
        .db
        .query("SELECT done, meta FROM flags")
        .rows()
        .await
        .unwrap();
    assert_eq!(
        serde_json::to_value(&rows).unwrap(),
        serde_json::json!([{"done": true, "meta": "{\"a\":1}"}])
    );
}
