//! Values bound to a query's placeholders, the same for PostgreSQL and SQLite.

/// A value bound to a placeholder (`$1` on PostgreSQL, `?` or `$1` on SQLite).
///
/// Every integer binds as a 64-bit integer (`int8`) and every float as `float8`: one
/// type per query text, so that a query prepared once (sqlx caches statements by their
/// text) never meets a parameter of another width. Where PostgreSQL wants another
/// type, say so in the SQL: `left(name, $1::int)`, `CURRENT_DATE + $1::int`.
///
/// Made from the usual Rust types by [`crate::Query::bind`]: integers, floats, `bool`,
/// strings, bytes, `serde_json::Value` (as JSON), and `Option`s of them (`None` binds a
/// typed NULL). For other types (UUIDs, timestamps…), use sqlx itself
/// ([`crate::Db::pool`]).
#[derive(Debug, Clone, PartialEq)]
pub enum Param {
    /// An integer (`int8`).
    Int(i64),
    /// A floating-point number.
    Float(f64),
    /// A boolean.
    Bool(bool),
    /// Text.
    Text(String),
    /// Bytes (`bytea`, `BLOB`).
    Bytes(Vec<u8>),
    /// JSON (`jsonb` on PostgreSQL, text on SQLite).
    Json(serde_json::Value),
    /// A NULL of the given kind.
    Null(Kind),
}

/// The kind of a NULL (PostgreSQL types its parameters).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// An integer.
    Int,
    /// A floating-point number.
    Float,
    /// A boolean.
    Bool,
    /// Text.
    Text,
    /// Bytes.
    Bytes,
    /// JSON.
    Json,
}

/// A Rust value that binds as a [`Param`].
pub trait ToParam {
    /// The kind of NULL that `None::<Self>` binds.
    const KIND: Kind;
    /// The value as a parameter.
    fn to_param(self) -> Param;
}

macro_rules! int_params {
    ($kind:ident, $variant:ident, $wide:ty: $($t:ty),*) => {$(
        impl ToParam for $t {
            const KIND: Kind = Kind::$kind;
            fn to_param(self) -> Param {
                Param::$variant(<$wide>::from(self))
            }
        }
    )*};
}

int_params!(Int, Int, i64: i8, i16, i32, i64, u8, u16, u32);

impl ToParam for f64 {
    const KIND: Kind = Kind::Float;
    fn to_param(self) -> Param {
        Param::Float(self)
    }
}

impl ToParam for f32 {
    const KIND: Kind = Kind::Float;
    fn to_param(self) -> Param {
        Param::Float(f64::from(self))
    }
}

impl ToParam for bool {
    const KIND: Kind = Kind::Bool;
    fn to_param(self) -> Param {
        Param::Bool(self)
    }
}

impl ToParam for String {
    const KIND: Kind = Kind::Text;
    fn to_param(self) -> Param {
        Param::Text(self)
    }
}

impl ToParam for &str {
    const KIND: Kind = Kind::Text;
    fn to_param(self) -> Param {
        Param::Text(self.to_owned())
    }
}

impl ToParam for &String {
    const KIND: Kind = Kind::Text;
    fn to_param(self) -> Param {
        Param::Text(self.clone())
    }
}

impl ToParam for Vec<u8> {
    const KIND: Kind = Kind::Bytes;
    fn to_param(self) -> Param {
        Param::Bytes(self)
    }
}

impl ToParam for &[u8] {
    const KIND: Kind = Kind::Bytes;
    fn to_param(self) -> Param {
        Param::Bytes(self.to_vec())
    }
}

impl ToParam for serde_json::Value {
    const KIND: Kind = Kind::Json;
    fn to_param(self) -> Param {
        Param::Json(self)
    }
}

impl<T: ToParam> ToParam for Option<T> {
    const KIND: Kind = T::KIND;
    fn to_param(self) -> Param {
        self.map_or(Param::Null(T::KIND), ToParam::to_param)
    }
}

/// Binds parameters to a sqlx query of either database.
macro_rules! bind_params {
    ($query:expr, $params:expr) => {{
        let mut query = $query;
        for param in $params {
            query = match param {
                $crate::param::Param::Int(v) => query.bind(v),
                $crate::param::Param::Float(v) => query.bind(v),
                $crate::param::Param::Bool(v) => query.bind(v),
                $crate::param::Param::Text(v) => query.bind(v),
                $crate::param::Param::Bytes(v) => query.bind(v),
                $crate::param::Param::Json(v) => query.bind(sqlx::types::Json(v)),
                $crate::param::Param::Null(kind) => match kind {
                    $crate::param::Kind::Int => query.bind(None::<i64>),
                    $crate::param::Kind::Float => query.bind(None::<f64>),
                    $crate::param::Kind::Bool => query.bind(None::<bool>),
                    $crate::param::Kind::Text => query.bind(None::<String>),
                    $crate::param::Kind::Bytes => query.bind(None::<Vec<u8>>),
                    $crate::param::Kind::Json => {
                        query.bind(None::<sqlx::types::Json<serde_json::Value>>)
                    }
                },
            };
        }
        query
    }};
}

pub(crate) use bind_params;
