//! Transactions on real databases: commit, rollback on error and on panic, savepoints,
//! retries past a real serialization failure and a real deadlock.

mod support;

use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};

use nucleon_db::{Db, DbError, Isolation};
use tokio::sync::Barrier;

async fn accounts(db: &Db) {
    db.query("CREATE TABLE accounts (id INTEGER PRIMARY KEY, balance BIGINT NOT NULL CHECK (balance >= 0))")
        .execute()
        .await
        .unwrap();
    db.query("INSERT INTO accounts (id, balance) VALUES (1, 100), (2, 100)")
        .execute()
        .await
        .unwrap();
}

async fn balances(db: &Db) -> Vec<i64> {
    db.query("SELECT balance FROM accounts ORDER BY id")
        .flat()
        .await
        .unwrap()
}

async fn transfer(db: &Db, amount: i64) -> Result<u64, DbError> {
    db.transaction(async |tx| {
        tx.query("UPDATE accounts SET balance = balance + $1 WHERE id = 2")
            .bind(amount)
            .execute()
            .await?;
        tx.query("UPDATE accounts SET balance = balance - $1 WHERE id = 1")
            .bind(amount)
            .execute()
            .await
    })
    .await
}

/// Commit, rollback on error, rollback on panic, a savepoint, on `db`.
async fn all_or_nothing(db: &Db) {
    accounts(db).await;
    assert_eq!(transfer(db, 30).await.unwrap(), 1);
    assert_eq!(balances(db).await, [70, 130], "committed");

    // The second statement breaks the CHECK: the first is rolled back too.
    let error = transfer(db, 500).await.unwrap_err();
    assert!(matches!(error, DbError::Conflict { .. }), "{error:?}");
    assert_eq!(balances(db).await, [70, 130], "rolled back on error");

    // A panic in the body rolls back as well.
    let db2 = db.clone();
    let panicked = tokio::task::spawn_local(async move {
        let _: Result<(), DbError> = db2
            .transaction(async |tx| {
                tx.query("UPDATE accounts SET balance = 0")
                    .execute()
                    .await?;
                panic!("a bug in the body");
            })
            .await;
    })
    .await;
    assert!(panicked.is_err());
    assert_eq!(balances(db).await, [70, 130], "rolled back on panic");

    // A savepoint: its failure rolls back its own changes only.
    let outcome = db
        .transaction(async |tx| {
            tx.query("UPDATE accounts SET balance = balance - 10 WHERE id = 1")
                .execute()
                .await?;
            let inner = tx
                .savepoint(async |tx| {
                    tx.query("UPDATE accounts SET balance = balance - 1000 WHERE id = 2")
                        .execute()
                        .await
                })
                .await;
            assert!(matches!(inner, Err(DbError::Conflict { .. })), "{inner:?}");
            Ok(())
        })
        .await;
    outcome.unwrap();
    assert_eq!(balances(db).await, [60, 130], "the outer change only");
}

#[tokio::test]
async fn postgres_all_or_nothing() {
    let Some(test) = support::postgres("tx", |_| {}).await else {
        return;
    };
    tokio::task::LocalSet::new()
        .run_until(all_or_nothing(&test.db))
        .await;
}

#[tokio::test]
async fn sqlite_all_or_nothing() {
    let test = support::sqlite(|_| {}).await;
    tokio::task::LocalSet::new()
        .run_until(all_or_nothing(&test.db))
        .await;
}

/// Two serializable transactions read the same total and each inserts a row: one of
/// them fails with a serialization failure (40001) and is run again.
#[tokio::test]
async fn postgres_a_serialization_failure_is_retried() {
    let Some(test) = support::postgres("serial", |_| {}).await else {
        return;
    };
    let db = &test.db;
    db.query("CREATE TABLE ledger (id SERIAL PRIMARY KEY, amount BIGINT NOT NULL)")
        .execute()
        .await
        .unwrap();
    let barrier = Arc::new(Barrier::new(2));
    let runs = Arc::new(AtomicU32::new(0));
    let attempt = |db: Db, barrier: Arc<Barrier>, runs: Arc<AtomicU32>, retries: u32| async move {
        db.transaction(async |tx| {
            let first = runs.fetch_add(1, Ordering::SeqCst) < 2;
            let total: i64 = tx
                .query("SELECT COALESCE(sum(amount), 0)::bigint FROM ledger")
                .value()
                .await?;
            if first {
                // Both have read before either writes.
                barrier.wait().await;
            }
            tx.query("INSERT INTO ledger (amount) VALUES ($1)")
                .bind(total + 1)
                .execute()
                .await
        })
        .isolation(Isolation::Serializable)
        .retries(retries)
        .await
    };
    let (a, b) = tokio::join!(
        attempt(db.clone(), Arc::clone(&barrier), Arc::clone(&runs), 3),
        attempt(
            test.another(1).await,
            Arc::clone(&barrier),
            Arc::clone(&runs),
            3
        )
    );
    a.unwrap();
    b.unwrap();
    assert_eq!(runs.load(Ordering::SeqCst), 3, "one of the two ran twice");
    let amounts: Vec<i64> = db
        .query("SELECT amount FROM ledger ORDER BY amount")
        .flat()
        .await
        .unwrap();
    assert_eq!(amounts, [1, 2], "the retry saw the other's row");

    // Without retries, the loser's error says to retry, and answers 503.
    runs.store(0, Ordering::SeqCst);
    let (a, b) = tokio::join!(
        attempt(db.clone(), Arc::clone(&barrier), Arc::clone(&runs), 0),
        attempt(
            test.another(1).await,
            Arc::clone(&barrier),
            Arc::clone(&runs),
            0
        )
    );
    let failed = a.err().or(b.err()).expect("one failed");
    assert!(matches!(failed, DbError::Retryable { .. }), "{failed:?}");
    assert_eq!(failed.status(), 503);
}

/// Two transactions lock two rows in opposite orders: PostgreSQL breaks the deadlock
/// (40P01) by failing one, which is run again.
#[tokio::test]
async fn postgres_a_deadlock_is_retried() {
    let Some(test) = support::postgres("deadlock", |_| {}).await else {
        return;
    };
    accounts(&test.db).await;
    let barrier = Arc::new(Barrier::new(2));
    let runs = Arc::new(AtomicU32::new(0));
    let lock_both =
        |db: Db, first: i64, second: i64, barrier: Arc<Barrier>, runs: Arc<AtomicU32>| async move {
            db.transaction(async |tx| {
                let initial = runs.fetch_add(1, Ordering::SeqCst) < 2;
                tx.query("UPDATE accounts SET balance = balance + 1 WHERE id = $1")
                    .bind(first)
                    .execute()
                    .await?;
                if initial {
                    barrier.wait().await;
                }
                tx.query("UPDATE accounts SET balance = balance + 1 WHERE id = $1")
                    .bind(second)
                    .execute()
                    .await
            })
            .retries(3)
            .await
        };
    let (a, b) = tokio::join!(
        lock_both(
            test.db.clone(),
            1,
            2,
            Arc::clone(&barrier),
            Arc::clone(&runs)
        ),
        lock_both(
            test.another(1).await,
            2,
            1,
            Arc::clone(&barrier),
            Arc::clone(&runs)
        )
    );
    a.unwrap();
    b.unwrap();
    assert_eq!(
        runs.load(Ordering::SeqCst),
        3,
        "the deadlock's victim ran again"
    );
    assert_eq!(balances(&test.db).await, [102, 102]);
}

/// A unique violation is retried only when asked: an "insert if absent" race.
#[tokio::test]
async fn sqlite_unique_violations_are_retried_only_when_asked() {
    let test = support::sqlite(|_| {}).await;
    let db = &test.db;
    db.query("CREATE TABLE names (name TEXT PRIMARY KEY)")
        .execute()
        .await
        .unwrap();
    db.query("INSERT INTO names VALUES ('taken')")
        .execute()
        .await
        .unwrap();
    let runs = AtomicU32::new(0);
    let insert = async |unique: bool| {
        let transaction = db.transaction(async |tx| {
            let n = runs.fetch_add(1, Ordering::SeqCst);
            let name = if n == 0 { "taken" } else { "free" };
            tx.query("INSERT INTO names VALUES ($1)")
                .bind(name)
                .execute()
                .await
        });
        let transaction = if unique {
            transaction.retry_unique_violations()
        } else {
            transaction
        };
        transaction.retries(2).await
    };
    let refused = insert(false).await.unwrap_err();
    assert!(
        matches!(refused, DbError::Conflict { unique: true, .. }),
        "{refused:?}"
    );
    runs.store(0, Ordering::SeqCst);
    insert(true).await.unwrap();
    assert_eq!(runs.load(Ordering::SeqCst), 2);
}

/// A failure caught in the body, outside a savepoint: PostgreSQL has aborted the
/// transaction, so the commit is refused (not reported as done); inside a savepoint,
/// the transaction goes on. The same on SQLite.
async fn a_caught_failure_aborts_unless_in_a_savepoint(db: &Db) {
    db.query("CREATE TABLE tags (name TEXT PRIMARY KEY)")
        .execute()
        .await
        .unwrap();
    db.query("INSERT INTO tags VALUES ('old')")
        .execute()
        .await
        .unwrap();
    let swallowed = db
        .transaction(async |tx| {
            tx.query("INSERT INTO tags VALUES ('new')")
                .execute()
                .await?;
            let _ignored = tx.query("INSERT INTO tags VALUES ('old')").execute().await;
            Ok(())
        })
        .await;
    assert!(
        matches!(swallowed, Err(DbError::Aborted { .. })),
        "{swallowed:?}"
    );
    let count: i64 = db.query("SELECT count(*) FROM tags").value().await.unwrap();
    assert_eq!(count, 1, "nothing of it committed");
    db.transaction(async |tx| {
        tx.query("INSERT INTO tags VALUES ('new')")
            .execute()
            .await?;
        let again = tx
            .savepoint(async |tx| tx.query("INSERT INTO tags VALUES ('old')").execute().await)
            .await;
        assert!(matches!(again, Err(DbError::Conflict { .. })), "{again:?}");
        Ok(())
    })
    .await
    .unwrap();
    let count: i64 = db.query("SELECT count(*) FROM tags").value().await.unwrap();
    assert_eq!(count, 2);
}

#[tokio::test]
async fn postgres_a_caught_failure_aborts_unless_in_a_savepoint() {
    let Some(test) = support::postgres("aborted", |_| {}).await else {
        return;
    };
    a_caught_failure_aborts_unless_in_a_savepoint(&test.db).await;
}

#[tokio::test]
async fn sqlite_a_caught_failure_aborts_unless_in_a_savepoint() {
    let test = support::sqlite(|_| {}).await;
    a_caught_failure_aborts_unless_in_a_savepoint(&test.db).await;
}
