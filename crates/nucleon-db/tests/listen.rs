//! LISTEN/NOTIFY across the workers of a real runtime: each worker's pool listens, one
//! notification reaches both.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use nucleon_db::{Backend, Db, DbAdapter, DbConfig};
use nucleon_runtime::{Phase, Runtime};

#[test]
fn a_notification_reaches_every_worker() {
    let Some(url) = nucleon_testkit::postgres_url() else {
        return;
    };
    let channel = format!("prices_{}", std::process::id());
    let config = nucleon_runtime::Config::from_toml(
        &format!("[default.db]\nurl = \"{url}\"\npool_size = 2\n"),
        "default",
    )
    .unwrap();
    let heard = Arc::new(Mutex::new(Vec::new()));
    let (h, c) = (Arc::clone(&heard), channel.clone());
    let runtime = Runtime::builder()
        .config(config)
        .handle_signals(false)
        .workers(2)
        .per_worker(move |worker| {
            worker.adapter(DbAdapter::new());
            let (heard, channel) = (Arc::clone(&h), c.clone());
            let id = worker.id();
            worker.spawn("listen", async move {
                let db = Db::current().expect("this worker's pool");
                let mut changes = db.listen(&[&channel]).await.expect("listens");
                heard.lock().unwrap().push((id, "listening".to_owned()));
                let change = changes.next().await;
                heard.lock().unwrap().push((id, change.payload));
            });
            Ok(())
        })
        .build()
        .unwrap();
    let handle = runtime.handle();
    let thread = std::thread::spawn(move || runtime.run());
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    assert_eq!(rt.block_on(handle.wait_for(Phase::Serving)), Phase::Serving);
    let count = |what: &str| {
        heard
            .lock()
            .unwrap()
            .iter()
            .filter(|(_, p)| p == what)
            .count()
    };
    nucleon_testkit::wait_until("both workers listening", Duration::from_secs(10), || {
        count("listening") == 2
    });
    rt.block_on(async {
        let mut settings = DbConfig::default();
        settings.url = Some(url.parse().unwrap());
        let db = Db::connect(&settings, &Backend::Postgres, 1).await.unwrap();
        db.notify(&channel, "gb:42").await.unwrap();
    });
    nucleon_testkit::wait_until("both workers hearing it", Duration::from_secs(10), || {
        count("gb:42") == 2
    });
    let mut workers: Vec<usize> = heard
        .lock()
        .unwrap()
        .iter()
        .filter(|(_, p)| p == "gb:42")
        .map(|(w, _)| *w)
        .collect();
    workers.sort_unstable();
    assert_eq!(workers, [0, 1]);
    handle.shutdown();
    thread.join().unwrap().unwrap();
}
