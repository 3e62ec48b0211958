//! What the AMQP tests share: the broker's URL, unique names, a service (a real
//! runtime with the connection and consumers) and a raw lapin client to look at queues.

#![allow(dead_code, unreachable_pub)]

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::mpsc;
use std::thread::JoinHandle;
use std::time::Duration;

use lapin::options::{BasicGetOptions, QueueDeclareOptions, QueueDeleteOptions};
use lapin::types::FieldTable;
use lapin::{Connection, ConnectionProperties};
use nucleon_amqp::{Amqp, Broker};
use nucleon_runtime::{Phase, Runtime, RuntimeHandle, WatchdogConfig};

/// The broker's URL, or `None` when the AMQP tests are skipped on purpose.
pub fn url() -> Option<String> {
    nucleon_testkit::amqp_url()
}

/// A name no other test (nor an earlier run) uses.
pub fn unique(what: &str) -> String {
    static N: AtomicU32 = AtomicU32::new(0);
    format!(
        "test.{what}.{}.{}",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed)
    )
}

/// The broker's address (for a proxy in front of it).
pub fn upstream(url: &str) -> SocketAddr {
    let parsed = url::Url::parse(url).unwrap();
    let host = parsed.host_str().unwrap_or("127.0.0.1");
    let host = if host == "localhost" {
        "127.0.0.1"
    } else {
        host
    };
    format!("{host}:{}", parsed.port().unwrap_or(5672))
        .parse()
        .unwrap()
}

/// `url` with its host and port replaced by `addr` (a proxy's).
pub fn through(url: &str, addr: SocketAddr) -> String {
    let mut parsed = url::Url::parse(url).unwrap();
    parsed.set_host(Some(&addr.ip().to_string())).unwrap();
    parsed.set_port(Some(addr.port())).unwrap();
    parsed.to_string()
}

/// A service: a real runtime running `amqp` on `workers` workers, and its broker handle.
pub struct Service {
    pub broker: Broker,
    pub handle: RuntimeHandle,
    thread: Option<JoinHandle<Result<(), nucleon_runtime::RuntimeError>>>,
}

impl Service {
    /// Starts `amqp` as service `name`, with `[default.amqp]` settings `settings`
    /// (TOML lines; `url` is the broker's unless given).
    pub fn start(name: &str, url: &str, settings: &str, workers: usize, amqp: Amqp) -> Self {
        Self::start_with(name, url, settings, workers, amqp, None)
    }

    /// As [`Service::start`], with the runtime's watchdog set to `watchdog` (its
    /// default when `None`).
    pub fn start_with(
        name: &str,
        url: &str,
        settings: &str,
        workers: usize,
        amqp: Amqp,
        watchdog: Option<WatchdogConfig>,
    ) -> Self {
        let url_line = if settings.contains("url =") {
            String::new()
        } else {
            format!("url = \"{url}\"\n")
        };
        let config = nucleon_runtime::Config::from_toml(
            &format!("[default.amqp]\n{url_line}{settings}\n"),
            "default",
        )
        .unwrap();
        let (connection, consumers) = amqp.build(name);
        let (sender, receiver) = mpsc::channel();
        let mut builder = Runtime::builder()
            .config(config)
            .handle_signals(false)
            .workers(workers)
            .shutdown_timeout(Duration::from_secs(10));
        if let Some(watchdog) = watchdog {
            builder = builder.watchdog(watchdog);
        }
        let runtime = builder
            .adapter(connection)
            .per_worker(move |worker| {
                worker.adapter(consumers.make());
                Ok(())
            })
            .on_start(move || async move {
                let _ = sender.send(Broker::current().expect("the connection's handle"));
                Ok(())
            })
            .build()
            .unwrap();
        let handle = runtime.handle();
        let thread = std::thread::spawn(move || runtime.run());
        let broker = receiver
            .recv_timeout(Duration::from_secs(30))
            .expect("the service started");
        let rt = current_thread();
        assert_eq!(rt.block_on(handle.wait_for(Phase::Serving)), Phase::Serving);
        Self {
            broker,
            handle,
            thread: Some(thread),
        }
    }

    /// Drains and stops it (as SIGTERM does); the runtime's result.
    pub fn stop(mut self) -> Result<(), nucleon_runtime::RuntimeError> {
        self.handle.shutdown();
        self.thread.take().unwrap().join().unwrap()
    }
}

impl Drop for Service {
    fn drop(&mut self) {
        if let Some(thread) = self.thread.take() {
            self.handle.shutdown();
            let _ = thread.join();
        }
    }
}

/// A current-thread tokio runtime for the test's own async work.
pub fn current_thread() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
}

/// A raw lapin connection, to look at the broker from outside the service.
pub async fn raw(url: &str) -> Connection {
    Connection::connect(url, ConnectionProperties::default())
        .await
        .expect("a raw connection to the test broker")
}

/// Takes every message now in `queue` (acked), as (body, headers as text pairs).
pub async fn drain_queue(
    connection: &Connection,
    queue: &str,
) -> Vec<lapin::message::BasicGetMessage> {
    let channel = connection.create_channel().await.unwrap();
    let mut all = Vec::new();
    while let Some(message) = channel
        .basic_get(queue.into(), BasicGetOptions { no_ack: true })
        .await
        .unwrap()
    {
        all.push(message);
    }
    all
}

/// Deletes queues a test made (best effort).
pub async fn delete_queues(connection: &Connection, queues: &[String]) {
    let channel = connection.create_channel().await.unwrap();
    for queue in queues {
        let _ = channel
            .queue_delete(queue.as_str().into(), QueueDeleteOptions::default())
            .await;
    }
}

/// The queues a consumer of `queue` may have made: the queue itself, its dead-letter
/// queue and its retry queues (the default policy's, and the 100 ms and 200 ms the
/// tests use).
pub fn consumer_queues(queue: &str) -> Vec<String> {
    let mut all = vec![queue.to_owned(), format!("{queue}.dead-letter")];
    for delay in ["1s", "10s", "60s", "100ms", "200ms"] {
        all.push(format!("{queue}.retry.{delay}"));
    }
    all
}

/// How many messages are ready in `queue` now, and how many consumers it has (a
/// passive declare: the queue must exist).
pub async fn queue_counts(connection: &Connection, queue: &str) -> (u32, u32) {
    let channel = connection.create_channel().await.unwrap();
    let declared = channel
        .queue_declare(
            queue.into(),
            QueueDeclareOptions {
                passive: true,
                ..QueueDeclareOptions::default()
            },
            FieldTable::default(),
        )
        .await
        .unwrap_or_else(|e| panic!("queue `{queue}` should exist: {e}"));
    let _ = channel.close(200, "counted".into()).await;
    (declared.message_count(), declared.consumer_count())
}

/// Deletes queues when dropped, even when the test fails: create it before the
/// services (so that they stop first) and name every queue the test makes.
pub struct Cleanup {
    url: String,
    queues: std::cell::RefCell<Vec<String>>,
}

impl Cleanup {
    /// Deletes `queues` at the end of the test.
    pub fn new(url: &str, queues: impl IntoIterator<Item = String>) -> Self {
        Self {
            url: url.to_owned(),
            queues: std::cell::RefCell::new(queues.into_iter().collect()),
        }
    }

    /// Deletes these too.
    pub fn add(&self, queues: impl IntoIterator<Item = String>) {
        self.queues.borrow_mut().extend(queues);
    }
}

impl Drop for Cleanup {
    fn drop(&mut self) {
        let queues = self.queues.take();
        if queues.is_empty() {
            return;
        }
        // Best effort, and never a panic (this may run while a failed test unwinds).
        current_thread().block_on(async {
            let Ok(connection) =
                Connection::connect(&self.url, ConnectionProperties::default()).await
            else {
                return;
            };
            for queue in &queues {
                // A channel each: a refusal closes its channel.
                let Ok(channel) = connection.create_channel().await else {
                    return;
                };
                let _ = channel
                    .queue_delete(queue.as_str().into(), QueueDeleteOptions::default())
                    .await;
                let _ = channel.close(200, "deleted".into()).await;
            }
            let _ = connection.close(200, "cleaned up".into()).await;
        });
    }
}
