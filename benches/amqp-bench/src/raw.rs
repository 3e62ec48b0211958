//! The baseline: raw lapin on a tokio current-thread runtime (lapin's own I/O thread
//! beside it, as always), the way a lapin user writes it. Also the suite's helpers to
//! declare, fill, count and delete queues.

use std::cell::Cell;
use std::hint::black_box;
use std::rc::Rc;
use std::time::Duration;

use futures_util::StreamExt;
use lapin::options::{
    BasicAckOptions, BasicConsumeOptions, BasicPublishOptions, BasicQosOptions,
    ConfirmSelectOptions, QueueDeclareOptions, QueueDeleteOptions,
};
use lapin::types::FieldTable;
use lapin::{BasicProperties, Channel, Confirmation, Connection, ConnectionProperties};
use serde_json::Value;
use tokio::sync::Notify;
use tokio::task::LocalSet;

use crate::Opts;
use crate::measure::{Snapshot, result};

/// A tokio current-thread runtime.
pub fn current_thread() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("a tokio runtime")
}

/// A connection to the broker.
pub async fn connect(url: &str) -> Connection {
    Connection::connect(url, ConnectionProperties::default())
        .await
        .unwrap_or_else(|e| panic!("cannot connect to the broker: {e}"))
}

/// A connection made from a runtime on a thread of its own, to be used from the
/// caller's: nucleon's thread layout (the connection is made on the process loop, the
/// publishers and consumers run on a worker). lapin binds a connection to the runtime it
/// was made on: the socket's readiness comes through that runtime's reactor, and its
/// internal tasks (acks through `Acker`, among others) run there. Diagnostic only.
pub struct Elsewhere {
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Elsewhere {
    /// Connects from a new thread's current-thread runtime, which then only runs.
    pub fn connect(url: &str) -> (Connection, Self) {
        let (sender, connected) = std::sync::mpsc::channel();
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let url = url.to_owned();
        let thread = std::thread::Builder::new()
            .name("connection-rt".into())
            .spawn(move || {
                current_thread().block_on(async move {
                    let _ = sender.send(connect(&url).await);
                    let _ = stopped.await;
                });
            })
            .expect("a thread");
        let connection = connected.recv().expect("the connection");
        (connection, Self { stop: Some(stop), thread: Some(thread) })
    }
}

impl Drop for Elsewhere {
    fn drop(&mut self) {
        let _ = self.stop.take().map(|stop| stop.send(()));
        let _ = self.thread.take().map(std::thread::JoinHandle::join);
    }
}

/// Connects on this runtime, or (`split`) from a thread of its own.
async fn connect_maybe_elsewhere(url: &str, split: bool) -> (Connection, Option<Elsewhere>) {
    if split {
        let (connection, elsewhere) = Elsewhere::connect(url);
        (connection, Some(elsewhere))
    } else {
        (connect(url).await, None)
    }
}

/// A message id as nucleon makes them (a random prefix, a counter in hex), so that the
/// raw messages carry the same properties as nucleon's.
pub fn message_id(prefix: u64, n: u64) -> String {
    format!("{prefix:016x}-{n:x}")
}

/// A prefix for message ids.
pub fn id_prefix() -> u64 {
    use std::hash::{BuildHasher, Hasher};
    let mut hasher = std::collections::hash_map::RandomState::new().build_hasher();
    hasher.write_u32(std::process::id());
    hasher.finish()
}

/// Publishes `n` messages of `body` to `queue` (default exchange), persistent and
/// mandatory with a message id, on `channel` (in confirm mode), from `window` tasks each
/// waiting for its confirm before its next publish: at most `window` in flight. Must run
/// inside a `LocalSet`.
pub async fn publish_window(channel: &Channel, queue: &str, n: u64, window: usize, body: &Rc<Vec<u8>>) {
    let next = Rc::new(Cell::new(0_u64));
    let prefix = id_prefix();
    let mut tasks = Vec::with_capacity(window);
    for _ in 0..window {
        let (channel, next, body, queue) = (channel.clone(), Rc::clone(&next), Rc::clone(body), queue.to_owned());
        tasks.push(tokio::task::spawn_local(async move {
            loop {
                let i = next.get();
                if i >= n {
                    break;
                }
                next.set(i + 1);
                let properties = BasicProperties::default()
                    .with_delivery_mode(2)
                    .with_message_id(message_id(prefix, i).into());
                let confirm = channel
                    .basic_publish(
                        "".into(),
                        queue.as_str().into(),
                        BasicPublishOptions { mandatory: true, immediate: false },
                        &body,
                        properties,
                    )
                    .await
                    .expect("basic.publish");
                match confirm.await.expect("the confirm") {
                    Confirmation::Ack(None) => {}
                    other => panic!("not confirmed: {other:?}"),
                }
            }
        }));
    }
    for task in tasks {
        task.await.expect("a publishing task");
    }
}

/// `publish --impl lapin`: one connection, one channel in confirm mode, `--window`
/// publishing tasks on the current-thread runtime. `split` (`lapin-split`): the
/// connection made from another thread's runtime (nucleon's layout).
pub fn publish(opts: &Opts, split: bool) -> Value {
    let (url, queue) = (opts.url(), opts.required("queue"));
    let n: u64 = opts.num("n", 100_000);
    let window: usize = opts.num("window", 256);
    let body = Rc::new(vec![b'x'; opts.num("body", 256)]);
    let runtime = current_thread();
    LocalSet::new().block_on(&runtime, async {
        let (connection, elsewhere) = connect_maybe_elsewhere(&url, split).await;
        let channel = connection.create_channel().await.expect("a channel");
        channel.confirm_select(ConfirmSelectOptions::default()).await.expect("confirm.select");
        // As the nucleon variant does: let the connection settle before measuring.
        tokio::time::sleep(Duration::from_millis(200)).await;
        let start = Snapshot::now();
        publish_window(&channel, &queue, n, window, &body).await;
        let end = Snapshot::now();
        let _ = connection.close(200, "done".into()).await;
        drop(elsewhere);
        result("publish", if split { "lapin-split" } else { "lapin" }, n, start, end)
    })
}

/// `consume --impl lapin[-inline]`: one channel with basic.qos(prefetch), one consumer;
/// each delivery is looked at (its body's length) and acked. `inline`: the ack is awaited
/// in the consumer's loop (lapin's own example); otherwise a task per delivery acks it
/// (the shape of nucleon's runner). Measured from the first delivery to the last ack.
/// `split` (`lapin-split`, a task per delivery): the connection made from another
/// thread's runtime (nucleon's layout).
pub fn consume(opts: &Opts, inline: bool, split: bool) -> Value {
    let (url, queue) = (opts.url(), opts.required("queue"));
    let n: u64 = opts.num("n", 100_000);
    let prefetch: u16 = opts.num("prefetch", 64);
    let runtime = current_thread();
    LocalSet::new().block_on(&runtime, async {
        let (connection, elsewhere) = connect_maybe_elsewhere(&url, split).await;
        let channel = connection.create_channel().await.expect("a channel");
        channel.basic_qos(prefetch, BasicQosOptions::default()).await.expect("basic.qos");
        let mut consumer = channel
            .basic_consume(
                queue.as_str().into(),
                "amqp-bench-lapin".into(),
                BasicConsumeOptions::default(),
                FieldTable::default(),
            )
            .await
            .expect("basic.consume");
        let mut start = None;
        let mut received = 0_u64;
        let acked = Rc::new(Cell::new(0_u64));
        let all_acked = Rc::new(Notify::new());
        while let Some(delivery) = consumer.next().await {
            let delivery = delivery.expect("a delivery");
            if start.is_none() {
                start = Some(Snapshot::now());
            }
            received += 1;
            if inline {
                black_box(delivery.data.len());
                delivery.acker.ack(BasicAckOptions::default()).await.expect("basic.ack");
            } else {
                let (acked, all_acked) = (Rc::clone(&acked), Rc::clone(&all_acked));
                tokio::task::spawn_local(async move {
                    black_box(delivery.data.len());
                    delivery.acker.ack(BasicAckOptions::default()).await.expect("basic.ack");
                    acked.set(acked.get() + 1);
                    if acked.get() == n {
                        all_acked.notify_one();
                    }
                });
            }
            if received == n {
                break;
            }
        }
        if !inline {
            all_acked.notified().await;
        }
        let end = Snapshot::now();
        let _ = connection.close(200, "done".into()).await;
        drop(elsewhere);
        let name = match (inline, split) {
            (true, _) => "lapin-inline",
            (false, true) => "lapin-split",
            (false, false) => "lapin",
        };
        result("consume", name, n, start.expect("a delivery"), end)
    })
}

/// The suite's side connection: declares, fills, counts and deletes queues.
pub struct Admin {
    connection: Connection,
}

impl Admin {
    /// Connects.
    pub async fn connect(url: &str) -> Self {
        Self { connection: connect(url).await }
    }

    async fn channel(&self) -> Channel {
        self.connection.create_channel().await.expect("an admin channel")
    }

    /// Deletes `queue` if it is there, and declares it again, durable and empty.
    pub async fn fresh_queue(&self, queue: &str) {
        self.delete(queue).await;
        let channel = self.channel().await;
        channel
            .queue_declare(
                queue.into(),
                QueueDeclareOptions { durable: true, ..QueueDeclareOptions::default() },
                FieldTable::default(),
            )
            .await
            .expect("queue.declare");
        let _ = channel.close(200, "declared".into()).await;
    }

    /// How many messages `queue` holds (`None` if it is not there).
    pub async fn count(&self, queue: &str) -> Option<u32> {
        let channel = self.channel().await;
        let declared = channel
            .queue_declare(
                queue.into(),
                QueueDeclareOptions { passive: true, ..QueueDeclareOptions::default() },
                FieldTable::default(),
            )
            .await;
        if declared.is_ok() {
            let _ = channel.close(200, "counted".into()).await;
        }
        declared.ok().map(|q| q.message_count())
    }

    /// Deletes `queue` (and what it holds), if it is there.
    pub async fn delete(&self, queue: &str) {
        let channel = self.channel().await;
        if channel.queue_delete(queue.into(), QueueDeleteOptions::default()).await.is_ok() {
            let _ = channel.close(200, "deleted".into()).await;
        }
    }

    /// Fills `queue` with `n` persistent messages of `body_len` bytes (with confirms,
    /// 2,048 in flight: not measured, only quick). Must run inside a `LocalSet`.
    pub async fn fill(&self, queue: &str, n: u64, body_len: usize) {
        let channel = self.channel().await;
        channel.confirm_select(ConfirmSelectOptions::default()).await.expect("confirm.select");
        publish_window(&channel, queue, n, 2_048, &Rc::new(vec![b'x'; body_len])).await;
        let _ = channel.close(200, "filled".into()).await;
    }

    /// Closes the connection.
    pub async fn close(self) {
        let _ = self.connection.close(200, "done".into()).await;
    }
}
