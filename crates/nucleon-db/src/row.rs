//! What a row becomes: a record (`sqlx::FromRow`), a scalar, or a JSON object.

use serde::Serialize;
use sqlx::postgres::PgRow;
use sqlx::sqlite::SqliteRow;
use sqlx::{Column, FromRow, Row, TypeInfo, ValueRef};

/// A type a row of either database decodes into: any `#[derive(sqlx::FromRow)]` struct
/// whose fields both databases can decode, tuples, and [`JsonRow`].
pub trait Record:
    for<'r> FromRow<'r, PgRow> + for<'r> FromRow<'r, SqliteRow> + Send + Unpin + 'static
{
}

impl<T> Record for T where
    T: for<'r> FromRow<'r, PgRow> + for<'r> FromRow<'r, SqliteRow> + Send + Unpin + 'static
{
}

/// A type one column of either database decodes into (`i64`, `String`, `bool`, `f64`,
/// `Option<T>`, `Vec<u8>`, `sqlx::types::Json<T>`…), for `flat` and `value`.
pub trait Scalar: Send + Unpin + 'static
where
    (Self,): Record,
{
}

impl<T: Send + Unpin + 'static> Scalar for T where (T,): Record {}

/// A row as a JSON object, column by column: the original framework's dict rows, so a
/// handler can return query results with no struct.
///
/// Integers, floats, booleans, text, JSON and NULL map to their JSON forms; bytes to an
/// array of numbers. On SQLite, a column declared `BOOLEAN` gives `true`/`false`, and
/// JSON is text (SQLite has no JSON type). A PostgreSQL type with no JSON form here (timestamps, numerics,
/// UUIDs) is an error naming the column: cast it in the query (`created::text`).
///
/// ```no_run
/// # async fn f(db: nucleon_db::Db) -> Result<(), nucleon_db::DbError> {
/// use nucleon_db::JsonRow;
///
/// let rows: Vec<JsonRow> = db.query("SELECT code, name FROM countries").rows().await?;
/// let body = serde_json::to_string(&rows).unwrap(); // [{"code":"gb","name":"…"},…]
/// # Ok(()) }
/// ```
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
#[serde(transparent)]
pub struct JsonRow(pub serde_json::Map<String, serde_json::Value>);

impl JsonRow {
    /// One column's value.
    pub fn get(&self, column: &str) -> Option<&serde_json::Value> {
        self.0.get(column)
    }
}

impl From<JsonRow> for serde_json::Value {
    fn from(row: JsonRow) -> Self {
        serde_json::Value::Object(row.0)
    }
}

fn undecodable(column: &str, type_name: &str) -> sqlx::Error {
    sqlx::Error::Decode(
        format!(
            "column `{column}` is of type {type_name}, which has no JSON form here: cast it in the query (`{column}::text`)"
        )
        .into(),
    )
}

impl<'r> FromRow<'r, PgRow> for JsonRow {
    fn from_row(row: &'r PgRow) -> Result<Self, sqlx::Error> {
        use serde_json::Value;
        let mut map = serde_json::Map::new();
        for (i, column) in row.columns().iter().enumerate() {
            let name = column.name();
            let value = if row.try_get_raw(i)?.is_null() {
                Value::Null
            } else {
                match column.type_info().name().to_ascii_uppercase().as_str() {
                    "BOOL" => Value::from(row.try_get::<bool, _>(i)?),
                    "INT2" => Value::from(row.try_get::<i16, _>(i)?),
                    "INT4" => Value::from(row.try_get::<i32, _>(i)?),
                    "INT8" => Value::from(row.try_get::<i64, _>(i)?),
                    "FLOAT4" => Value::from(row.try_get::<f32, _>(i)?),
                    "FLOAT8" => Value::from(row.try_get::<f64, _>(i)?),
                    "TEXT" | "VARCHAR" | "BPCHAR" | "NAME" | "CHAR" | "CITEXT" => {
                        Value::from(row.try_get::<String, _>(i)?)
                    }
                    "JSON" | "JSONB" => row.try_get::<Value, _>(i)?,
                    "BYTEA" => Value::from(row.try_get::<Vec<u8>, _>(i)?),
                    other => return Err(undecodable(name, other)),
                }
            };
            map.insert(name.to_owned(), value);
        }
        Ok(JsonRow(map))
    }
}

impl<'r> FromRow<'r, SqliteRow> for JsonRow {
    fn from_row(row: &'r SqliteRow) -> Result<Self, sqlx::Error> {
        use serde_json::Value;
        let mut map = serde_json::Map::new();
        for (i, column) in row.columns().iter().enumerate() {
            let raw = row.try_get_raw(i)?;
            // SQLite's types are the values'; a column declared BOOLEAN says its
            // integers are booleans.
            let declared = column.type_info().name().to_ascii_uppercase();
            let value = match raw.type_info().name() {
                _ if raw.is_null() => Value::Null,
                "INTEGER" if declared == "BOOLEAN" => Value::from(row.try_get::<bool, _>(i)?),
                "INTEGER" => Value::from(row.try_get::<i64, _>(i)?),
                "REAL" => Value::from(row.try_get::<f64, _>(i)?),
                "BLOB" => Value::from(row.try_get::<Vec<u8>, _>(i)?),
                _ => Value::from(row.try_get::<String, _>(i)?),
            };
            map.insert(column.name().to_owned(), value);
        }
        Ok(JsonRow(map))
    }
}
