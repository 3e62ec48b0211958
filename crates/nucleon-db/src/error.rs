//! The database's errors, as a user can act on them.

use std::time::Duration;

/// Why a database call failed: a typed answer, each with what to do about it.
///
/// Messages name the query (its declared name, or its first words), never the values
/// bound to it, and never the database URL's password. With the `http` feature, a
/// handler returns it with `?` and the client gets the matching answer (see
/// [`DbError::status`]).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum DbError {
    /// `unique` or `value` found no row.
    #[error("{query}: no row found")]
    NotFound {
        /// The query.
        query: String,
    },
    /// `unique` or `value` found more than one row.
    #[error("{query}: more than one row where one was expected")]
    TooManyRows {
        /// The query.
        query: String,
    },
    /// A constraint refused the change (unique, foreign key, not null, check).
    #[error("{query}: conflict{}: {message}", constraint.as_deref().map(|c| format!(" with constraint `{c}`")).unwrap_or_default())]
    Conflict {
        /// The query.
        query: String,
        /// The constraint, when the database names it.
        constraint: Option<String>,
        /// Whether it is a unique (or primary key) violation: a transaction may be
        /// retried on it, when asked ([`crate::Transaction::retry_unique_violations`]).
        unique: bool,
        /// The database's message.
        message: String,
    },
    /// The database cannot be reached, or no connection came free in time.
    #[error("database unavailable: {reason}")]
    Unavailable {
        /// What happened (cannot connect, pool exhausted past its acquire timeout…).
        reason: String,
    },
    /// The query ran past its time limit (the statement timeout) and was cancelled.
    #[error("{query}: cancelled after its time limit{}", after.map(|a| format!(" ({a:?})")).unwrap_or_default())]
    Timeout {
        /// The query.
        query: String,
        /// The limit, when known.
        after: Option<Duration>,
    },
    /// The transaction could not go on: a serialization failure or deadlock (or a busy
    /// SQLite database) that its retries did not get past.
    #[error("{query}: {message} (retry the transaction)")]
    Retryable {
        /// The query.
        query: String,
        /// The database's message.
        message: String,
    },
    /// The connection failed while a `COMMIT` was under way: the transaction may or may
    /// not have been committed. Never retried; check before doing it again.
    #[error("the commit's outcome is unknown (the connection failed during COMMIT): {reason}")]
    CommitUnknown {
        /// What failed.
        reason: String,
    },
    /// A statement of the transaction failed and its error was caught outside a
    /// savepoint: PostgreSQL aborted the transaction, so nothing of it is committed.
    /// Catch expected failures inside `tx.savepoint(…)`.
    #[error(
        "the transaction is not committed: its statement {failed} failed (catch an expected failure inside tx.savepoint)"
    )]
    Aborted {
        /// The statement that failed.
        failed: String,
    },
    /// The query is wrong (syntax, unknown table or column, a type that does not fit).
    #[error("{query}: {message}")]
    BadQuery {
        /// The query.
        query: String,
        /// What the database or the decoder said.
        message: String,
    },
    /// The database settings cannot be used (names the key).
    #[error("database settings: {0}")]
    Config(String),
}

impl DbError {
    /// The HTTP status this error answers with: 404 not found, 409 conflict, 503
    /// unavailable or retryable (with `Retry-After`), 504 timeout, 500 otherwise.
    pub fn status(&self) -> u16 {
        match self {
            DbError::NotFound { .. } => 404,
            DbError::Conflict { .. } => 409,
            DbError::Unavailable { .. } | DbError::Retryable { .. } => 503,
            DbError::Timeout { .. } => 504,
            _ => 500,
        }
    }

    /// The stable error code of the JSON answer (`NOT_FOUND`, `CONFLICT`…).
    pub fn code(&self) -> &'static str {
        match self {
            DbError::NotFound { .. } => "NOT_FOUND",
            DbError::Conflict { .. } => "CONFLICT",
            DbError::Unavailable { .. } | DbError::Retryable { .. } => "SERVICE_UNAVAILABLE",
            DbError::Timeout { .. } => "TIMEOUT",
            _ => "INTERNAL_ERROR",
        }
    }

    /// Whether a transaction that failed with it may be run again
    /// (see [`crate::Transaction::retries`]).
    pub(crate) fn is_retryable(&self, unique_too: bool) -> bool {
        match self {
            DbError::Retryable { .. } => true,
            DbError::Conflict { unique, .. } => unique_too && *unique,
            _ => false,
        }
    }

    /// Classifies a sqlx error from `query`.
    pub(crate) fn from_sqlx(query: &str, error: sqlx::Error) -> Self {
        let query = query.to_owned();
        match error {
            sqlx::Error::RowNotFound => DbError::NotFound { query },
            sqlx::Error::PoolTimedOut => DbError::Unavailable {
                reason: "no connection came free within db.acquire_timeout (pool exhausted, or the database is unreachable)".into(),
            },
            sqlx::Error::PoolClosed => DbError::Unavailable {
                reason: "the pool is closed (the service is stopping)".into(),
            },
            sqlx::Error::Io(e) => DbError::Unavailable {
                reason: format!("connection failed: {e}"),
            },
            sqlx::Error::Tls(e) => DbError::Unavailable {
                reason: format!("TLS failed: {e}"),
            },
            sqlx::Error::WorkerCrashed => DbError::Unavailable {
                reason: "the database driver's worker crashed".into(),
            },
            sqlx::Error::Database(e) => from_database(query, &*e),
            sqlx::Error::Configuration(e) => DbError::Config(e.to_string()),
            other => DbError::BadQuery {
                query,
                message: other.to_string(),
            },
        }
    }
}

fn from_database(query: String, e: &dyn sqlx::error::DatabaseError) -> DbError {
    let code = e.code();
    let code = code.as_deref().unwrap_or("");
    let message = e.message().to_owned();
    match code {
        // PostgreSQL: serialization failure, deadlock.
        "40001" | "40P01" => return DbError::Retryable { query, message },
        // PostgreSQL: query canceled (statement_timeout).
        "57014" => return DbError::Timeout { query, after: None },
        // PostgreSQL: the server is shutting down, or cannot accept connections.
        "57P01" | "57P02" | "57P03" | "53300" => {
            return DbError::Unavailable { reason: message };
        }
        // SQLite: BUSY, LOCKED, BUSY_SNAPSHOT.
        "5" | "6" | "517" | "261" => return DbError::Retryable { query, message },
        _ => {}
    }
    use sqlx::error::ErrorKind;
    match e.kind() {
        ErrorKind::UniqueViolation
        | ErrorKind::ForeignKeyViolation
        | ErrorKind::NotNullViolation
        | ErrorKind::CheckViolation
        | ErrorKind::ExclusionViolation => DbError::Conflict {
            query,
            constraint: e.constraint().map(str::to_owned),
            unique: matches!(e.kind(), ErrorKind::UniqueViolation),
            message,
        },
        _ => DbError::BadQuery { query, message },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_error_has_its_answer() {
        let q = || "orders.by_id".to_owned();
        assert_eq!(DbError::NotFound { query: q() }.status(), 404);
        assert_eq!(
            DbError::Conflict {
                query: q(),
                constraint: Some("orders_pkey".into()),
                unique: true,
                message: "duplicate".into()
            }
            .status(),
            409
        );
        assert_eq!(
            DbError::Unavailable {
                reason: "down".into()
            }
            .status(),
            503
        );
        assert_eq!(
            DbError::Timeout {
                query: q(),
                after: None
            }
            .status(),
            504
        );
        assert_eq!(
            DbError::BadQuery {
                query: q(),
                message: "syntax".into()
            }
            .status(),
            500
        );
    }
}
