//! Nucleon as a service uses it: a real runtime (one worker) with the AMQP adapter, as
//! `App::messaging`/`App::consume`/`App::rpc` build it (the connection per process,
//! the consumers per worker). Publishers and RPC callers are tasks on the worker, using
//! `Broker::current()` as a handler would (`Dep<Broker>`).

use std::cell::{Cell, RefCell};
use std::convert::Infallible;
use std::hint::black_box;
use std::io::{Read, Write};
use std::rc::Rc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, mpsc};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use nucleon_amqp::{Amqp, Broker, Consumer, Delivery, Message, Msg};
use nucleon_runtime::{Config, Phase, Runtime, RuntimeError, RuntimeHandle, WorkerSetup};
use serde_json::Value;
use tokio::sync::Notify;

use crate::Opts;
use crate::measure::{Snapshot, quantile, result};

/// A running service: its runtime on a thread of its own.
struct Service {
    handle: RuntimeHandle,
    thread: JoinHandle<Result<(), RuntimeError>>,
}

impl Service {
    /// Starts `amqp` on one worker, `setup` run on it (before its consumers, as
    /// `App::per_worker` is); returns once the runtime serves.
    fn start(opts: &Opts, amqp: Amqp, setup: impl Fn(&mut WorkerSetup) + Send + Sync + 'static) -> Self {
        let config = Config::from_toml(&format!("[default.amqp]\nurl = \"{}\"\n", opts.url()), "default")
            .expect("the configuration");
        let consumers = amqp.consumer_count() > 0;
        let (connection, factory) = amqp.build("amqp-bench");
        let runtime = Runtime::builder()
            .config(config)
            .handle_signals(false)
            .workers(1)
            .shutdown_timeout(Duration::from_secs(10))
            .adapter(connection)
            .per_worker(move |worker| {
                setup(worker);
                if consumers {
                    worker.adapter(factory.make());
                }
                Ok(())
            })
            .build()
            .expect("the runtime");
        let handle = runtime.handle();
        let thread = std::thread::spawn(move || runtime.run());
        let phase = crate::raw::current_thread().block_on(handle.wait_for(Phase::Serving));
        assert_eq!(phase, Phase::Serving, "the service did not start");
        Self { handle, thread }
    }

    /// Drains and stops it.
    fn stop(self) {
        self.handle.shutdown();
        self.thread.join().expect("the runtime's thread").expect("a clean stop");
    }
}

/// `publish --impl nucleon`: `--window` tasks on the worker, each publishing with
/// `Broker::publish` (which returns on the broker's confirm) until `--n` are done.
/// `Message::bytes` is persistent and mandatory with a message id, as the raw variant's.
pub fn publish(opts: &Opts) -> Value {
    let queue = opts.required("queue");
    let n: u64 = opts.num("n", 100_000);
    let window: usize = opts.num("window", 256);
    let body_len: usize = opts.num("body", 256);
    let go = Arc::new(Notify::new());
    let (sender, results) = mpsc::channel::<Value>();
    let start_signal = Arc::clone(&go);
    let service = Service::start(opts, Amqp::new(), move |worker| {
        let (go, sender, queue) = (Arc::clone(&start_signal), sender.clone(), queue.clone());
        worker.spawn("amqp-bench publish", async move {
            go.notified().await;
            let broker = Broker::current().expect("the broker, on a worker");
            tokio::time::sleep(Duration::from_millis(200)).await;
            let body = Rc::new(vec![b'x'; body_len]);
            let next = Rc::new(Cell::new(0_u64));
            let queue: Rc<str> = queue.into();
            let start = Snapshot::now();
            let mut tasks = Vec::with_capacity(window);
            for _ in 0..window {
                let (broker, body, next, queue) = (broker.clone(), Rc::clone(&body), Rc::clone(&next), Rc::clone(&queue));
                tasks.push(nucleon_runtime::spawn("amqp-bench publisher", async move {
                    loop {
                        let i = next.get();
                        if i >= n {
                            break;
                        }
                        next.set(i + 1);
                        broker
                            .publish("", &queue, Message::bytes(body.to_vec()))
                            .await
                            .unwrap_or_else(|e| panic!("publish: {e}"));
                    }
                }));
            }
            for task in tasks {
                task.await.expect("a publishing task");
            }
            let end = Snapshot::now();
            let _ = sender.send(result("publish", "nucleon", n, start, end));
        });
    });
    go.notify_one();
    let value = results.recv_timeout(Duration::from_secs(900)).expect("the publish finished");
    service.stop();
    value
}

/// What the counting handler shares with the task that ends the measure.
struct Tally {
    n: u64,
    seen: AtomicU64,
    start: Mutex<Option<Snapshot>>,
    last: Notify,
}

/// `consume --impl nucleon`: `Consumer::new(queue, handler).concurrency(prefetch)` on one
/// worker (its channel's prefetch is the concurrency; each delivery a task, acked after
/// its handler). The handler looks at the body's length and counts. Measured from the
/// first delivery to the last ack (`BrokerStats::acked`, looked at every millisecond
/// once the last delivery was handled).
pub fn consume(opts: &Opts) -> Value {
    let queue = opts.required("queue");
    let n: u64 = opts.num("n", 100_000);
    let prefetch: u16 = opts.num("prefetch", 64);
    let tally = Arc::new(Tally { n, seen: AtomicU64::new(0), start: Mutex::new(None), last: Notify::new() });
    let counted = Arc::clone(&tally);
    let handler = move |delivery: Delivery| {
        let tally = Arc::clone(&counted);
        async move {
            black_box(delivery.body().len());
            let k = tally.seen.fetch_add(1, Ordering::Relaxed) + 1;
            if k == 1 {
                *tally.start.lock().unwrap() = Some(Snapshot::now());
            }
            if k == tally.n {
                tally.last.notify_one();
            }
        }
    };
    let amqp = Amqp::new().consumer(Consumer::new(&queue, handler).concurrency(prefetch));
    let (sender, results) = mpsc::channel::<Value>();
    let watched = Arc::clone(&tally);
    let service = Service::start(opts, amqp, move |worker| {
        let (tally, sender) = (Arc::clone(&watched), sender.clone());
        worker.spawn("amqp-bench consume watcher", async move {
            tally.last.notified().await;
            let broker = Broker::current().expect("the broker, on a worker");
            while broker.stats().acked < tally.n {
                tokio::time::sleep(Duration::from_millis(1)).await;
            }
            let end = Snapshot::now();
            let start = (*tally.start.lock().unwrap()).expect("a first delivery");
            let _ = sender.send(result("consume", "nucleon", tally.n, start, end));
        });
    });
    let value = results.recv_timeout(Duration::from_secs(900)).expect("the consume finished");
    service.stop();
    value
}

/// The procedure: answers its argument.
async fn echo(Msg(n): Msg<u64>) -> Result<u64, Infallible> {
    Ok(n)
}

/// `rpc-server --name NAME`: serves `echo` as procedure NAME (`App::rpc`), on one
/// worker (the default concurrency, 16); prints `ready`, stops when its stdin closes.
pub fn rpc_server(opts: &Opts) {
    let name = opts.required("name");
    let service = Service::start(opts, Amqp::new().rpc(&name, echo), |_| {});
    println!("ready");
    std::io::stdout().flush().expect("stdout");
    let _ = std::io::stdin().read_to_end(&mut Vec::new());
    service.stop();
}

/// `rpc-client --name NAME --calls N --concurrency C`: C tasks on the worker call
/// NAME with `Broker::call` until N calls are done (after 100 calls not measured);
/// calls/s, CPU per call, latency quantiles.
pub fn rpc_client(opts: &Opts) -> Value {
    let name = opts.required("name");
    let calls: u64 = opts.num("calls", 10_000);
    let concurrency: usize = opts.num("concurrency", 16);
    let go = Arc::new(Notify::new());
    let (sender, results) = mpsc::channel::<Value>();
    let start_signal = Arc::clone(&go);
    let service = Service::start(opts, Amqp::new(), move |worker| {
        let (go, sender, name) = (Arc::clone(&start_signal), sender.clone(), name.clone());
        worker.spawn("amqp-bench rpc client", async move {
            go.notified().await;
            let broker = Broker::current().expect("the broker, on a worker");
            for i in 0..100_u64 {
                let back: u64 = broker.call(&name, &i).await.unwrap_or_else(|e| panic!("rpc: {e}"));
                assert_eq!(back, i);
            }
            let next = Rc::new(Cell::new(0_u64));
            let latencies = Rc::new(RefCell::new(Vec::with_capacity(calls as usize)));
            let name: Rc<str> = name.into();
            let start = Snapshot::now();
            let mut tasks = Vec::with_capacity(concurrency);
            for _ in 0..concurrency {
                let (broker, next, latencies, name) = (broker.clone(), Rc::clone(&next), Rc::clone(&latencies), Rc::clone(&name));
                tasks.push(nucleon_runtime::spawn("amqp-bench caller", async move {
                    loop {
                        let i = next.get();
                        if i >= calls {
                            break;
                        }
                        next.set(i + 1);
                        let sent = Instant::now();
                        let back: u64 = broker.call(&name, &i).await.unwrap_or_else(|e| panic!("rpc: {e}"));
                        latencies.borrow_mut().push(sent.elapsed().as_micros() as u64);
                        assert_eq!(back, i);
                    }
                }));
            }
            for task in tasks {
                task.await.expect("a calling task");
            }
            let end = Snapshot::now();
            let mut all = latencies.take();
            all.sort_unstable();
            let mut value = result("rpc", &format!("nucleon-c{concurrency}"), calls, start, end);
            value["concurrency"] = concurrency.into();
            value["p50_us"] = quantile(&all, 0.50).into();
            value["p90_us"] = quantile(&all, 0.90).into();
            value["p99_us"] = quantile(&all, 0.99).into();
            value["max_us"] = all.last().copied().unwrap_or(0).into();
            let _ = sender.send(value);
        });
    });
    go.notify_one();
    let value = results.recv_timeout(Duration::from_secs(900)).expect("the calls finished");
    service.stop();
    value
}
