//! `database.sql`: sync creates what is missing (and fills only what it created), reset
//! starts again, several syncs at once create each table once; sqlx migrations.

mod support;

use nucleon_db::{Db, Schema};

const SCHEMA: &str = r#"
-- Countries, and their cities.
CREATE TABLE countries (
    code TEXT PRIMARY KEY,   -- 'gb'
    name TEXT NOT NULL
);
CREATE INDEX countries_by_name ON countries (name);
INSERT INTO countries (code, name) VALUES ('gb', 'United Kingdom'), ('fr', 'France');

CREATE TABLE cities (
    name TEXT NOT NULL,
    country TEXT NOT NULL REFERENCES countries (code)
);
INSERT INTO cities (name, country) VALUES ('London', 'gb');
"#;

async fn sync_and_reset(db: &Db, sqlite: bool) {
    let schema = Schema::parse(SCHEMA, sqlite).unwrap();
    assert_eq!(schema.tables(), ["countries", "cities"]);
    let first = db.sync(&schema).await.unwrap();
    assert_eq!(first.created, ["countries", "cities"]);
    let cities: i64 = db
        .query("SELECT count(*) FROM cities")
        .value()
        .await
        .unwrap();
    assert_eq!(cities, 1);

    // A table dropped by hand comes back, with its rows; the other is left alone.
    db.query("INSERT INTO countries (code, name) VALUES ('jp', 'Japan')")
        .execute()
        .await
        .unwrap();
    db.query("DROP TABLE cities").execute().await.unwrap();
    let second = db.sync(&schema).await.unwrap();
    assert_eq!(second.created, ["cities"]);
    assert_eq!(second.existing, ["countries"]);
    let countries: i64 = db
        .query("SELECT count(*) FROM countries")
        .value()
        .await
        .unwrap();
    assert_eq!(
        countries, 3,
        "the existing table kept its rows, and got no INSERT again"
    );

    let reset = db.reset(&schema).await.unwrap();
    assert_eq!(reset.created, ["countries", "cities"]);
    let countries: i64 = db
        .query("SELECT count(*) FROM countries")
        .value()
        .await
        .unwrap();
    assert_eq!(countries, 2, "back to the file's rows");
}

#[tokio::test]
async fn postgres_sync_and_reset() {
    let Some(test) = support::postgres("schema", |_| {}).await else {
        return;
    };
    sync_and_reset(&test.db, false).await;
}

#[tokio::test]
async fn sqlite_sync_and_reset() {
    let test = support::sqlite(|_| {}).await;
    sync_and_reset(&test.db, true).await;
}

#[tokio::test]
async fn postgres_syncs_at_once_create_each_table_once() {
    let Some(test) = support::postgres("sync_race", |_| {}).await else {
        return;
    };
    let schema = Schema::parse(SCHEMA, false).unwrap();
    let others = [
        test.another(1).await,
        test.another(1).await,
        test.another(1).await,
    ];
    let reports = futures_util::future::join_all(others.iter().map(|db| db.sync(&schema))).await;
    let created: usize = reports.into_iter().map(|r| r.unwrap().created.len()).sum();
    assert_eq!(created, 2, "each table created once");
    let countries: i64 = test
        .db
        .query("SELECT count(*) FROM countries")
        .value()
        .await
        .unwrap();
    assert_eq!(countries, 2, "its rows inserted once");
}

#[test]
fn a_schema_that_does_not_parse_names_where() {
    let error = Schema::parse("CREATE TABLE t (a INT;", false).unwrap_err();
    assert!(error.to_string().contains("database.sql"), "{error}");
    assert!(error.to_string().contains("Line: 1"), "{error}");
}

#[tokio::test]
async fn sqlite_migrations_run_once() {
    let test = support::sqlite(|_| {}).await;
    let dir = tempfile::tempdir().unwrap();
    tokio::fs::write(
        dir.path().join("0001_notes.sql"),
        "CREATE TABLE notes (id INTEGER PRIMARY KEY, body TEXT);",
    )
    .await
    .unwrap();
    assert_eq!(test.db.migrate(dir.path()).await.unwrap(), 1);
    assert_eq!(
        test.db.migrate(dir.path()).await.unwrap(),
        0,
        "applied already"
    );
    assert!(test.db.table_exists("notes").await.unwrap());
    assert_eq!(test.db.applied_migrations().await.unwrap(), 1);
}

/// Names as PostgreSQL folds them: `CREATE TABLE Todos` is `todos`, and its INSERT
/// (written `todos`) is its own; sync twice and reset work.
#[tokio::test]
async fn postgres_table_names_fold_as_the_database_folds_them() {
    let Some(test) = support::postgres("fold", |_| {}).await else {
        return;
    };
    let schema = Schema::parse(
        "CREATE TABLE Todos (id INT PRIMARY KEY); INSERT INTO todos VALUES (1);\nCREATE TABLE \"Quoted\" (id INT); INSERT INTO \"Quoted\" VALUES (2);",
        false,
    )
    .unwrap();
    assert_eq!(test.db.sync(&schema).await.unwrap().created.len(), 2);
    assert_eq!(
        test.db.sync(&schema).await.unwrap().existing.len(),
        2,
        "found, not created again"
    );
    let todos: i64 = test
        .db
        .query("SELECT count(*) FROM todos")
        .value()
        .await
        .unwrap();
    assert_eq!(todos, 1, "its INSERT ran");
    test.db
        .query("INSERT INTO todos VALUES (5)")
        .execute()
        .await
        .unwrap();
    test.db.reset(&schema).await.unwrap();
    let todos: i64 = test
        .db
        .query("SELECT count(*) FROM todos")
        .value()
        .await
        .unwrap();
    assert_eq!(todos, 1, "reset dropped it");
}
