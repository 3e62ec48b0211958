//! The todo service through the test client, on an SQLite file of its own and on the
//! local PostgreSQL (a schema of its own); and its `db` commands.

use nucleon::db::{Backend, Db, DbConfig};
use nucleon::test::TestClient;
use serde_json::{Value, json};
use todo::Todo;

/// The app with `db` as its `[test.db]` table (and `[production.db]`), in a config file
/// of its own.
fn app(dir: &tempfile::TempDir, db: &str) -> nucleon::App {
    let config = dir.path().join("app.toml");
    #[allow(clippy::disallowed_methods, reason = "test set-up, outside any loop")]
    std::fs::write(
        &config,
        format!("[test.db]\n{db}\n\n[production.db]\n{db}\n"),
    )
    .unwrap();
    todo::app().config_file(config)
}

fn crud(client: &TestClient) {
    let seeded: Vec<Todo> = client.get("/todos").json();
    assert_eq!(seeded.len(), 1, "the schema's row");
    let created = client.post_json("/todos", &json!({"title": "Ship it"}));
    assert_eq!(created.status(), 201, "{}", created.text());
    assert_eq!(created.json::<Todo>().id, 2);
    let done: Todo = client.patch_json("/todos/2", &json!({"done": true})).json();
    assert!(done.done);
    assert_eq!(done.title, "Ship it");
    let missing = client.get("/todos/99");
    assert_eq!(missing.status(), 404);
    assert_eq!(missing.json::<Value>()["error"], "NOT_FOUND");
    assert_eq!(
        client.post_json("/todos", &json!({"title": " "})).status(),
        400
    );
    assert_eq!(client.delete("/todos/2").status(), 204);
    assert_eq!(client.delete("/todos/2").status(), 404);
}

#[test]
fn on_sqlite_with_its_db_commands() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("todo.db");
    let url = format!("url = \"sqlite://{}\"", file.display());
    let client = TestClient::new(app(&dir, &url));
    crud(&client);
    client.stop().expect("a clean stop");
    assert!(file.exists(), "created on first start");

    let run = |args: &[&str]| {
        let argv = ["todo", "db"]
            .iter()
            .chain(args)
            .copied()
            .collect::<Vec<_>>();
        nucleon::run_from(app(&dir, &url), argv)
    };
    run(&["status", "--env", "test"]).expect("status");
    run(&["sync", "--env", "test"]).expect("sync: nothing to do");
    let refused = run(&["reset", "--env", "production"]).expect_err("no reset in production");
    assert!(refused.to_string().contains("--force"), "{refused}");
    assert_eq!(refused.exit_code(), 3);
    run(&["reset", "--env", "test"]).expect("reset");
    let client = TestClient::new(app(&dir, &url));
    assert_eq!(
        client.get("/todos").json::<Vec<Todo>>().len(),
        1,
        "back to the schema's row"
    );
}

#[test]
fn on_postgres() {
    let Some(url) = nucleon_testkit::postgres_url() else {
        return;
    };
    let schema = format!("todo_{}", std::process::id());
    let admin = |sql: String| {
        let url = url.clone();
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap()
            .block_on(async move {
                let mut settings = DbConfig::default();
                settings.url = Some(url.parse().unwrap());
                let db = Db::connect(&settings, &Backend::Postgres, 1).await.unwrap();
                db.query(sql).execute().await.unwrap();
            });
    };
    admin(format!("DROP SCHEMA IF EXISTS {schema} CASCADE"));
    admin(format!("CREATE SCHEMA {schema}"));
    let separator = if url.contains('?') { '&' } else { '?' };
    let scoped = format!("url = \"{url}{separator}options=-c%20search_path%3D{schema}\"");
    let dir = tempfile::tempdir().unwrap();
    let client = TestClient::new(app(&dir, &scoped));
    crud(&client);
    let ready: Value = client.get("/readyz").json();
    assert_eq!(ready["status"], "ready", "{ready}");
    client.stop().expect("a clean stop");
    admin(format!("DROP SCHEMA {schema} CASCADE"));
}
