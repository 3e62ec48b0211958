//! The todo service: a REST/JSON resource on `nucleon-db`, on embedded SQLite with no
//! set-up, on PostgreSQL with one setting (`NUCLEON_DB__URL=postgres://…`).

use nucleon::db::{Db, DbError};
use nucleon::{App, Dep, HttpError, Json, Path, StatusCode, get};
use serde::{Deserialize, Serialize};

/// The service's queries, declared once: their names are in logs and errors.
mod queries {
    use nucleon::Sql;

    pub(crate) const ALL: Sql =
        Sql::named("todos.all", "SELECT id, title, done FROM todos ORDER BY id");
    pub(crate) const ONE: Sql = Sql::named(
        "todos.one",
        "SELECT id, title, done FROM todos WHERE id = $1",
    );
    pub(crate) const NEXT_ID: Sql = Sql::named(
        "todos.next_id",
        "SELECT COALESCE(MAX(id), 0) + 1 FROM todos",
    );
    pub(crate) const INSERT: Sql = Sql::named(
        "todos.insert",
        "INSERT INTO todos (id, title, done) VALUES ($1, $2, FALSE)",
    );
    pub(crate) const UPDATE: Sql = Sql::named(
        "todos.update",
        "UPDATE todos SET title = COALESCE($2, title), done = COALESCE($3, done) WHERE id = $1",
    );
    pub(crate) const DELETE: Sql = Sql::named("todos.delete", "DELETE FROM todos WHERE id = $1");
}

/// A todo.
#[derive(Debug, Serialize, Deserialize, PartialEq, sqlx::FromRow)]
pub struct Todo {
    /// Its id.
    pub id: i64,
    /// What to do.
    pub title: String,
    /// Whether it is done.
    pub done: bool,
}

/// A new todo, or a change to one.
#[derive(Debug, Deserialize)]
pub struct TodoInput {
    /// What to do.
    pub title: Option<String>,
    /// Whether it is done.
    pub done: Option<bool>,
}

async fn list(Dep(db): Dep<Db>) -> Result<Json<Vec<Todo>>, HttpError> {
    Ok(Json(db.query(queries::ALL).rows().await?))
}

async fn one(Dep(db): Dep<Db>, Path(id): Path<i64>) -> Result<Json<Todo>, HttpError> {
    Ok(Json(db.query(queries::ONE).bind(id).unique().await?))
}

async fn create(
    Dep(db): Dep<Db>,
    Json(input): Json<TodoInput>,
) -> Result<(StatusCode, Json<Todo>), HttpError> {
    let title = input
        .title
        .filter(|t| !t.trim().is_empty())
        .ok_or_else(|| HttpError::invalid_parameters([("title", "a todo needs a title")]))?;
    // Two creations at once may pick the same id: the loser runs again.
    let id = db
        .transaction(async |tx| {
            let id: i64 = tx.query(queries::NEXT_ID).value().await?;
            tx.query(queries::INSERT)
                .bind(id)
                .bind(title.as_str())
                .execute()
                .await?;
            Ok::<_, DbError>(id)
        })
        .retry_unique_violations()
        .retries(5)
        .await?;
    Ok((
        StatusCode::CREATED,
        Json(Todo {
            id,
            title,
            done: false,
        }),
    ))
}

async fn update(
    Dep(db): Dep<Db>,
    Path(id): Path<i64>,
    Json(input): Json<TodoInput>,
) -> Result<Json<Todo>, HttpError> {
    let changed = db
        .query(queries::UPDATE)
        .bind(id)
        .bind(input.title)
        .bind(input.done)
        .execute()
        .await?;
    if changed == 0 {
        return Err(HttpError::not_found(format!("no todo {id}")));
    }
    Ok(Json(db.query(queries::ONE).bind(id).unique().await?))
}

async fn remove(Dep(db): Dep<Db>, Path(id): Path<i64>) -> Result<StatusCode, HttpError> {
    match db.query(queries::DELETE).bind(id).execute().await? {
        0 => Err(HttpError::not_found(format!("no todo {id}"))),
        _ => Ok(StatusCode::NO_CONTENT),
    }
}

/// The service.
pub fn app() -> App {
    App::new("todo")
        .default_config(include_str!("../app.toml"))
        .database()
        .schema(include_str!("../database.sql"))
        .route("/todos", get(list).post(create))
        .route("/todos/{id}", get(one).patch(update).delete(remove))
}
