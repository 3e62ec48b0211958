//! A database that goes away, through a TCP proxy this test can cut (the shared server
//! is never restarted): requests fail fast with 503, the pool recovers by itself,
//! nothing committed is lost and nothing half-done is committed; a cancelled query does
//! not poison its connection; a commit cut under way is reported unknown, never retried.

mod support;

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::time::Duration;

use nucleon_db::{Backend, Db, DbError, Notification};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;

/// A TCP proxy to the test PostgreSQL: `cut` closes every connection and refuses new
/// ones; `restore` lets them through again; `cut_at_commit` closes the connection that
/// sends a `COMMIT`, before the server sees it.
struct Proxy {
    addr: SocketAddr,
    open: watch::Sender<bool>,
    cut_at_commit: Arc<AtomicBool>,
}

impl Proxy {
    async fn start(upstream: SocketAddr) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (open, _) = watch::channel(true);
        let cut_at_commit = Arc::new(AtomicBool::new(false));
        let (gate, commit) = (open.clone(), Arc::clone(&cut_at_commit));
        tokio::spawn(async move {
            loop {
                let Ok((client, _)) = listener.accept().await else {
                    return;
                };
                if !*gate.borrow() {
                    drop(client); // refused while cut
                    continue;
                }
                let mut closed = gate.subscribe();
                let commit = Arc::clone(&commit);
                tokio::spawn(async move {
                    let Ok(server) = TcpStream::connect(upstream).await else {
                        return;
                    };
                    let (mut cr, mut cw) = client.into_split();
                    let (mut sr, mut sw) = server.into_split();
                    let up = async {
                        let mut buf = vec![0_u8; 16 * 1024];
                        loop {
                            let n = cr.read(&mut buf).await.unwrap_or(0);
                            if n == 0 {
                                return;
                            }
                            if commit.load(Ordering::SeqCst)
                                && buf[..n].windows(6).any(|w| w == b"COMMIT")
                            {
                                return; // the COMMIT never reaches the server
                            }
                            if sw.write_all(&buf[..n]).await.is_err() {
                                return;
                            }
                        }
                    };
                    let down = tokio::io::copy(&mut sr, &mut cw);
                    tokio::select! {
                        () = up => {}
                        _ = down => {}
                        _ = closed.wait_for(|open| !*open) => {}
                    }
                });
            }
        });
        Self {
            addr,
            open,
            cut_at_commit,
        }
    }

    fn cut(&self) {
        self.open.send_replace(false);
    }

    fn restore(&self) {
        self.open.send_replace(true);
    }
}

/// A pool through the proxy, on the test's own schema.
async fn through(proxy: &Proxy, test: &support::TestDb, size: u32) -> Db {
    let mut settings = test.settings.clone();
    let mut url = settings.url.as_ref().unwrap().expose().clone();
    url.set_port(Some(proxy.addr.port())).unwrap();
    url.set_host(Some("127.0.0.1")).unwrap();
    // In clear, so that the proxy can see a COMMIT go by.
    url.query_pairs_mut().append_pair("sslmode", "disable");
    settings.url = Some(url.as_str().parse().unwrap());
    settings.acquire_timeout = Duration::from_millis(500);
    Db::connect(&settings, &Backend::Postgres, size)
        .await
        .unwrap()
}

fn upstream(test: &support::TestDb) -> SocketAddr {
    let url = test.settings.url.as_ref().unwrap().expose();
    let host = url.host_str().unwrap_or("127.0.0.1");
    format!(
        "{}:{}",
        if host == "localhost" {
            "127.0.0.1"
        } else {
            host
        },
        url.port().unwrap_or(5432)
    )
    .parse()
    .unwrap()
}

/// One transaction: two rows for `id`, or none.
async fn pair(db: &Db, id: i32) -> Result<(), DbError> {
    db.transaction(async |tx| {
        tx.query("INSERT INTO pairs (id, half) VALUES ($1, 1)")
            .bind(id)
            .execute()
            .await?;
        tx.query("INSERT INTO pairs (id, half) VALUES ($1, 2)")
            .bind(id)
            .execute()
            .await?;
        Ok(())
    })
    .await
}

#[tokio::test]
async fn a_cut_fails_fast_with_503_and_the_pool_recovers_losing_nothing() {
    let Some(test) = support::postgres("cut", |_| {}).await else {
        return;
    };
    test.db
        .query("CREATE TABLE pairs (id INTEGER NOT NULL, half INTEGER NOT NULL)")
        .execute()
        .await
        .unwrap();
    let proxy = Proxy::start(upstream(&test)).await;
    let db = through(&proxy, &test, 2).await;

    let mut committed = Vec::new();
    let mut unknown = Vec::new();
    for id in 0..30 {
        if id == 10 {
            proxy.cut();
        }
        if id == 20 {
            proxy.restore();
        }
        match pair(&db, id).await {
            Ok(()) => committed.push(id),
            Err(DbError::CommitUnknown { .. }) => unknown.push(id),
            Err(error) => {
                assert!(
                    (10..20).contains(&id),
                    "{id} failed outside the cut: {error:?}"
                );
                assert_eq!(error.status(), 503, "{id}: {error:?}");
            }
        }
    }
    assert!(
        committed.iter().filter(|id| **id < 10).count() == 10,
        "{committed:?}"
    );
    assert!(
        committed.iter().filter(|id| **id >= 20).count() == 10,
        "the pool recovered by itself: {committed:?}"
    );
    assert!(
        committed.iter().all(|id| !(10..20).contains(id)),
        "nothing went through the cut: {committed:?}"
    );

    // Read directly: every committed pair is whole, nothing else is there but whole pairs.
    let rows: Vec<(i32, i64)> = test
        .db
        .query("SELECT id, count(*) FROM pairs GROUP BY id ORDER BY id")
        .rows()
        .await
        .unwrap();
    for id in &committed {
        assert!(
            rows.contains(&(*id, 2)),
            "committed pair {id} is there, whole: {rows:?}"
        );
    }
    for (id, halves) in &rows {
        assert_eq!(*halves, 2, "pair {id} is half-done: {rows:?}");
        assert!(
            committed.contains(id) || unknown.contains(id),
            "{id} was never committed: {rows:?}"
        );
    }
}

#[tokio::test]
async fn a_cancelled_query_does_not_poison_its_connection() {
    let Some(test) = support::postgres("cancel", |s| s.pool_size = 1).await else {
        return;
    };
    for round in 0..3 {
        let slow = test.db.query("SELECT pg_sleep(0.5)").execute();
        assert!(
            tokio::time::timeout(Duration::from_millis(50), slow)
                .await
                .is_err(),
            "dropped under way"
        );
        let answer: i32 = test
            .db
            .query("SELECT $1::int")
            .bind(round)
            .value()
            .await
            .unwrap();
        assert_eq!(answer, round, "its own answer, not the cancelled query's");
    }
}

#[tokio::test]
async fn a_commit_cut_under_way_is_unknown_and_never_retried() {
    let Some(test) = support::postgres("commit_cut", |_| {}).await else {
        return;
    };
    test.db
        .query("CREATE TABLE pairs (id INTEGER NOT NULL, half INTEGER NOT NULL)")
        .execute()
        .await
        .unwrap();
    let proxy = Proxy::start(upstream(&test)).await;
    let db = through(&proxy, &test, 1).await;
    proxy.cut_at_commit.store(true, Ordering::SeqCst);
    let runs = AtomicU32::new(0);
    let outcome = db
        .transaction(async |tx| {
            runs.fetch_add(1, Ordering::SeqCst);
            tx.query("INSERT INTO pairs (id, half) VALUES (1, 1)")
                .execute()
                .await?;
            Ok(())
        })
        .retries(3)
        .await;
    assert!(
        matches!(outcome, Err(DbError::CommitUnknown { .. })),
        "{outcome:?}"
    );
    assert_eq!(runs.load(Ordering::SeqCst), 1, "never run again");
    proxy.cut_at_commit.store(false, Ordering::SeqCst);
    // Here the COMMIT never reached the server: nothing was committed.
    let count: i64 = test
        .db
        .query("SELECT count(*) FROM pairs")
        .value()
        .await
        .unwrap();
    assert_eq!(count, 0);
}

/// Two listeners (two workers, or two processes) hear a notification; one whose link
/// is cut reconnects by itself and hears the next ones.
#[tokio::test]
async fn listen_notify_reaches_every_listener_and_survives_a_cut() {
    let Some(test) = support::postgres("listen", |_| {}).await else {
        return;
    };
    let proxy = Proxy::start(upstream(&test)).await;
    let through_proxy = through(&proxy, &test, 2).await;
    let mut first = test.db.listen(&["prices"]).await.unwrap();
    let mut second = through_proxy.listen(&["prices", "stock"]).await.unwrap();
    test.db.notify("prices", "gb:42").await.unwrap();
    let heard = |n: Notification| (n.channel, n.payload);
    let within = Duration::from_secs(10);
    assert_eq!(
        heard(tokio::time::timeout(within, first.next()).await.unwrap()),
        ("prices".into(), "gb:42".into())
    );
    assert_eq!(
        heard(tokio::time::timeout(within, second.next()).await.unwrap()),
        ("prices".into(), "gb:42".into())
    );

    proxy.cut();
    tokio::time::sleep(Duration::from_millis(100)).await;
    proxy.restore();
    // Notify until the reconnected listener hears one (what was sent while it was away
    // is lost, as PostgreSQL says).
    let notifier = test.db.clone();
    let sending = tokio::spawn(async move {
        for n in 0..100 {
            notifier.notify("stock", &format!("n{n}")).await.unwrap();
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    });
    let after = tokio::time::timeout(within, second.next())
        .await
        .expect("heard after the cut");
    assert_eq!(after.channel, "stock");
    sending.abort();
}

/// Pools of separate runtimes (an app's tests, each with its own `TestClient`) opening
/// one new SQLite file at the same moment all start: a connection set-up refused as
/// busy at the start is tried again within the busy timeout.
#[test]
fn pools_opening_one_new_sqlite_file_at_once_all_start() {
    for _ in 0..5 {
        let dir = tempfile::tempdir().unwrap();
        let backend = nucleon_db::Backend::Sqlite(dir.path().join("data/app.db"));
        let barrier = std::sync::Arc::new(std::sync::Barrier::new(6));
        let starts: Vec<_> = (0..6)
            .map(|_| {
                let (backend, barrier) = (backend.clone(), std::sync::Arc::clone(&barrier));
                std::thread::spawn(move || {
                    let runtime = tokio::runtime::Builder::new_current_thread()
                        .enable_all()
                        .build()
                        .unwrap();
                    barrier.wait();
                    runtime.block_on(async {
                        let settings = nucleon_db::DbConfig::default();
                        nucleon_db::Db::connect(&settings, &backend, 2)
                            .await
                            .map(drop)
                            .map_err(|error| error.to_string())
                    })
                })
            })
            .collect();
        for start in starts {
            start.join().unwrap().expect("the pool starts");
        }
    }
}
