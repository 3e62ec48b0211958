//! `amqp-bench suite`: the whole comparison in one run. Every measured variant is a
//! process of its own (this binary again, or the Python peer), started once per round,
//! the variants' order rotated each round so that the machine's noise falls on all of
//! them alike. Queues are declared fresh for each run and deleted after it; the
//! published and consumed counts are checked on the broker. The summary (Markdown) goes
//! to stdout, progress to stderr, every run's figures to `OUT/runs.jsonl`, and each
//! process's output to `OUT/logs/`.

use std::fs::{self, File};
use std::io::{BufRead, BufReader, Write};
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::Duration;

use serde_json::Value;
use tokio::task::LocalSet;

use crate::Opts;
use crate::measure::{median, process_cpu};
use crate::raw::{Admin, current_thread};

/// What the run is asked to do.
struct Settings {
    url: String,
    n: u64,
    body: usize,
    window: usize,
    prefetch: u16,
    rounds: usize,
    rpc_sequential: u64,
    rpc_calls: u64,
    rpc_concurrency: usize,
    /// The Python interpreter and the peer's script.
    python: Option<(String, String)>,
    pause: Duration,
}

/// The runs so far, and what went wrong.
struct Book {
    runs: Vec<Value>,
    jsonl: File,
    logs: PathBuf,
    failures: Vec<String>,
}

impl Book {
    fn record(&mut self, section: &str, round: usize, mut value: Value) {
        value["section"] = section.into();
        value["round"] = (round + 1).into();
        writeln!(self.jsonl, "{value}").expect("runs.jsonl");
        self.runs.push(value);
    }

    /// Runs `program args`, keeps its output under `logs/<label>.*`, and returns the JSON
    /// line it printed last.
    fn child(&mut self, label: &str, program: &str, args: &[String]) -> Option<Value> {
        eprintln!("  {label}");
        let output = Command::new(program)
            .args(args)
            .stdin(Stdio::null())
            .output()
            .unwrap_or_else(|e| panic!("cannot start {program}: {e}"));
        fs::write(self.logs.join(format!("{label}.out")), &output.stdout).expect("a log");
        if !output.stderr.is_empty() {
            fs::write(self.logs.join(format!("{label}.err")), &output.stderr).expect("a log");
        }
        if !output.status.success() {
            let why = format!("{label}: {} (see logs/{label}.err)", output.status);
            eprintln!("  FAILED {why}");
            self.failures.push(why);
            return None;
        }
        let stdout = String::from_utf8_lossy(&output.stdout);
        let line = stdout.lines().rev().find(|l| !l.trim().is_empty()).unwrap_or("");
        match serde_json::from_str::<Value>(line) {
            Ok(value) => Some(value),
            Err(e) => {
                self.failures.push(format!("{label}: no result line ({e})"));
                None
            }
        }
    }
}

/// `queue`, and what a nucleon consumer declares beside it: its dead-letter queue and
/// its retry queues (named by their delays: the default 1 s, 10 s, 60 s; by their index
/// before).
fn with_companions(queue: &str) -> Vec<String> {
    let mut all = vec![queue.to_owned(), format!("{queue}.dead-letter")];
    for suffix in ["1s", "10s", "60s", "0", "1", "2"] {
        all.push(format!("{queue}.retry.{suffix}"));
    }
    all
}

fn rotated<T: Clone>(items: &[T], round: usize) -> Vec<T> {
    let mut v = items.to_vec();
    let len = v.len().max(1);
    v.rotate_left(round % len);
    v
}

/// Runs the suite.
pub fn run(opts: &Opts) {
    let out = PathBuf::from(opts.required("out"));
    let logs = out.join("logs");
    fs::create_dir_all(&logs).expect("the output folder");
    let settings = Settings {
        url: opts.url(),
        n: opts.num("n", 100_000),
        body: opts.num("body", 256),
        window: opts.num("window", 256),
        prefetch: opts.num("prefetch", 64),
        rounds: opts.num("rounds", 5),
        rpc_sequential: opts.num("rpc-sequential", 2_000),
        rpc_calls: opts.num("rpc-calls", 10_000),
        rpc_concurrency: opts.num("rpc-concurrency", 16),
        python: opts.get("python").zip(opts.get("peer")),
        pause: Duration::from_millis(opts.num("pause-ms", 1_000)),
    };
    let mut book = Book {
        runs: Vec::new(),
        jsonl: File::create(out.join("runs.jsonl")).expect("runs.jsonl"),
        logs,
        failures: Vec::new(),
    };
    let exe = std::env::current_exe().expect("this binary").to_string_lossy().into_owned();
    let runtime = current_thread();
    let local = LocalSet::new();
    let admin = local.block_on(&runtime, Admin::connect(&settings.url));
    let tag = format!("amqp-bench.{}", std::process::id());
    let s = &settings;

    // 1. Publish with confirms.
    let mut publishers = vec!["nucleon", "lapin", "lapin-split"];
    if s.python.is_some() {
        publishers.push("aio-pika");
    }
    for round in 0..s.rounds {
        eprintln!("publish, round {}/{}", round + 1, s.rounds);
        for variant in rotated(&publishers, round) {
            let queue = format!("{tag}.publish.r{}.{variant}", round + 1);
            local.block_on(&runtime, admin.fresh_queue(&queue));
            std::thread::sleep(s.pause);
            let mut args = vec![
                "publish".into(), "--queue".into(), queue.clone(),
                "--n".into(), s.n.to_string(), "--body".into(), s.body.to_string(),
                "--window".into(), s.window.to_string(), "--url".into(), s.url.clone(),
            ];
            let label = format!("publish-r{}-{variant}", round + 1);
            let value = match (&s.python, variant) {
                (Some((python, peer)), "aio-pika") => {
                    args.insert(0, peer.clone());
                    book.child(&label, python, &args)
                }
                _ => {
                    args.extend(["--impl".into(), variant.into()]);
                    book.child(&label, &exe, &args)
                }
            };
            let count = local.block_on(&runtime, admin.count(&queue));
            if count != Some(s.n as u32) {
                book.failures.push(format!("{label}: the queue holds {count:?} messages, not {}", s.n));
            }
            local.block_on(&runtime, admin.delete(&queue));
            if let Some(value) = value {
                book.record("publish", round, value);
            }
        }
    }

    // 2. Consume with acks, from a queue filled beforehand.
    let mut consumers = vec!["nucleon", "lapin", "lapin-inline", "lapin-split"];
    if s.python.is_some() {
        consumers.push("aio-pika");
    }
    for round in 0..s.rounds {
        eprintln!("consume, round {}/{}", round + 1, s.rounds);
        for variant in rotated(&consumers, round) {
            let queue = format!("{tag}.consume.r{}.{variant}", round + 1);
            local.block_on(&runtime, async {
                admin.fresh_queue(&queue).await;
                admin.fill(&queue, s.n, s.body).await;
            });
            std::thread::sleep(s.pause);
            let mut args = vec![
                "consume".into(), "--queue".into(), queue.clone(),
                "--n".into(), s.n.to_string(), "--prefetch".into(), s.prefetch.to_string(),
                "--url".into(), s.url.clone(),
            ];
            let label = format!("consume-r{}-{variant}", round + 1);
            let value = match (&s.python, variant) {
                (Some((python, peer)), "aio-pika") => {
                    args.insert(0, peer.clone());
                    book.child(&label, python, &args)
                }
                _ => {
                    args.extend(["--impl".into(), variant.into()]);
                    book.child(&label, &exe, &args)
                }
            };
            let left = local.block_on(&runtime, admin.count(&queue));
            if left != Some(0) {
                book.failures.push(format!("{label}: {left:?} messages left in the queue"));
            }
            local.block_on(&runtime, async {
                for q in with_companions(&queue) {
                    admin.delete(&q).await;
                }
            });
            if let Some(value) = value {
                book.record("consume", round, value);
            }
        }
    }

    // 3. RPC round trips: a server process, and a client process per run.
    let name = format!("{tag}.echo");
    eprintln!("rpc: starting the server");
    let mut server = Command::new(&exe)
        .args(["rpc-server", "--name", &name, "--url", &s.url])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(File::create(book.logs.join("rpc-server.err")).expect("a log"))
        .spawn()
        .expect("the rpc server");
    let mut ready = String::new();
    BufReader::new(server.stdout.take().expect("its stdout"))
        .read_line(&mut ready)
        .expect("the rpc server's first line");
    if ready.trim() != "ready" {
        book.failures.push(format!("rpc server: said `{}` instead of ready", ready.trim()));
    } else {
        let kinds = [("sequential", s.rpc_sequential, 1), ("concurrent", s.rpc_calls, s.rpc_concurrency)];
        for round in 0..s.rounds {
            eprintln!("rpc, round {}/{}", round + 1, s.rounds);
            for (kind, calls, concurrency) in rotated(&kinds, round) {
                std::thread::sleep(s.pause);
                let label = format!("rpc-r{}-{kind}", round + 1);
                let before = process_cpu(server.id());
                let value = book.child(&label, &exe, &[
                    "rpc-client".into(), "--name".into(), name.clone(),
                    "--calls".into(), calls.to_string(), "--concurrency".into(), concurrency.to_string(),
                    "--url".into(), s.url.clone(),
                ]);
                let after = process_cpu(server.id());
                if let Some(mut value) = value {
                    if let (Some(before), Some(after)) = (before, after) {
                        // The client's 100 warm-up calls are served too.
                        let served = (calls + 100) as f64;
                        value["server_cpu_us_per_op"] = ((after - before).as_secs_f64() * 1e6 / served).into();
                    }
                    value["kind"] = kind.into();
                    book.record("rpc", round, value);
                }
            }
        }
    }
    drop(server.stdin.take());
    let _ = server.wait();
    local.block_on(&runtime, async {
        for q in with_companions(&format!("rpc.{name}")) {
            admin.delete(&q).await;
        }
        admin.close().await;
    });

    let text = summary(&book, s, &publishers, &consumers);
    fs::write(out.join("tables.md"), &text).expect("tables.md");
    print!("{text}");
}

/// The runs of `section` by `variant` (`impl`, or `kind` for RPC).
fn runs<'a>(book: &'a Book, section: &str, variant: &str) -> Vec<&'a Value> {
    book.runs
        .iter()
        .filter(|r| r["section"] == section && (r["impl"] == variant || r["kind"] == variant))
        .collect()
}

fn field(runs: &[&Value], key: &str) -> Vec<f64> {
    runs.iter().filter_map(|r| r[key].as_f64()).collect()
}

/// 12345.6 → "12,346".
fn thousands(x: f64) -> String {
    if !x.is_finite() {
        return "–".into();
    }
    let digits = format!("{:.0}", x.abs());
    let mut out = String::new();
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i) % 3 == 0 {
            out.push(',');
        }
        out.push(c);
    }
    if x < 0.0 { format!("-{out}") } else { out }
}

fn fixed(x: f64, places: usize) -> String {
    if x.is_finite() { format!("{x:.places$}") } else { "–".into() }
}

/// The table of medians for one section, with ratios to `baseline`, and the rounds.
fn section_table(out: &mut String, book: &Book, section: &str, variants: &[&str], baseline: &str) {
    let base = runs(book, section, baseline);
    let (base_rate, base_cpu) = (median(&field(&base, "per_s")), median(&field(&base, "cpu_us_per_op")));
    out.push_str(&format!(
        "| variant | msgs/s | CPU µs/msg | msgs/s ÷ {baseline} | CPU ÷ {baseline} | user/sys µs/msg | runs |\n|---|---:|---:|---:|---:|---:|---:|\n"
    ));
    for variant in variants {
        let r = runs(book, section, variant);
        let (rate, cpu) = (median(&field(&r, "per_s")), median(&field(&r, "cpu_us_per_op")));
        let n: Vec<f64> = field(&r, "count");
        let per = |key: &str| {
            let v: Vec<f64> = r.iter().zip(&n).filter_map(|(x, n)| x[key].as_f64().map(|s| s * 1e6 / n)).collect();
            median(&v)
        };
        out.push_str(&format!(
            "| {variant} | {} | {} | {}× | {}× | {} / {} | {} |\n",
            thousands(rate),
            fixed(cpu, 2),
            fixed(rate / base_rate, 3),
            fixed(cpu / base_cpu, 3),
            fixed(per("user_s"), 2),
            fixed(per("sys_s"), 2),
            r.len()
        ));
    }
    out.push_str("\nRound by round (msgs/s · CPU µs/msg):\n\n| round |");
    for variant in variants {
        out.push_str(&format!(" {variant} |"));
    }
    out.push_str("\n|---:|");
    for _ in variants {
        out.push_str("---:|");
    }
    out.push('\n');
    let rounds = book.runs.iter().filter_map(|r| r["round"].as_u64()).max().unwrap_or(0);
    for round in 1..=rounds {
        out.push_str(&format!("| {round} |"));
        for variant in variants {
            let cell = runs(book, section, variant)
                .into_iter()
                .find(|r| r["round"].as_u64() == Some(round))
                .map(|r| {
                    format!(
                        " {} · {} |",
                        thousands(r["per_s"].as_f64().unwrap_or(f64::NAN)),
                        fixed(r["cpu_us_per_op"].as_f64().unwrap_or(f64::NAN), 2)
                    )
                })
                .unwrap_or_else(|| " – |".into());
            out.push_str(&cell);
        }
        out.push('\n');
    }
}

/// (throughput ratio, CPU ratio) of nucleon to `baseline` in `section`, by medians.
fn ratios(book: &Book, section: &str, baseline: &str) -> (f64, f64) {
    let (a, b) = (runs(book, section, "nucleon"), runs(book, section, baseline));
    (
        median(&field(&a, "per_s")) / median(&field(&b, "per_s")),
        median(&field(&a, "cpu_us_per_op")) / median(&field(&b, "cpu_us_per_op")),
    )
}

fn verdict(out: &mut String, what: &str, (rate, cpu): (f64, f64)) {
    let yes = |ok: bool| if ok { "met" } else { "**not met**" };
    out.push_str(&format!(
        "- {what}: throughput {}× (goal ≥ 0.95×: {}), CPU per message {}× (goal ≤ 1.05×: {})\n",
        fixed(rate, 3),
        yes(rate >= 0.95),
        fixed(cpu, 3),
        yes(cpu <= 1.05)
    ));
}

fn summary(book: &Book, s: &Settings, publishers: &[&str], consumers: &[&str]) -> String {
    let mut out = String::new();
    out.push_str(&format!(
        "Settings: N = {} messages of {} bytes, persistent, default exchange to a durable queue declared fresh for each run; \
         publish window W = {} (W tasks, each waiting for its confirm before its next publish), one channel; \
         consume prefetch P = {} on one channel, an ack per message; {} rounds, variants interleaved \
         (their order rotated each round), each run a process of its own; medians over the rounds. \
         CPU = the process's own user + system time (getrusage RUSAGE_SELF, all its threads) over the measured part, \
         divided by the messages.\n\n",
        s.n, s.body, s.window, s.prefetch, s.rounds
    ));
    out.push_str(
        "`lapin-split` (a diagnostic): raw lapin with the connection made from another thread's runtime, \
         used from the measuring thread's: nucleon's thread layout (the connection is made on the process loop, \
         publishers and consumers run on a worker). lapin binds a connection to the runtime it was made on: \
         the socket's readiness comes through that runtime's reactor, and `Acker::ack` runs there.\n\n",
    );
    out.push_str("## 1. Publish with confirms\n\n");
    out.push_str(
        "`nucleon`: `Broker::publish` from W tasks on the runtime's worker (as a handler publishes); \
         `lapin`: W tasks on a tokio current-thread runtime, one confirm channel.\n\n",
    );
    section_table(&mut out, book, "publish", publishers, "lapin");
    out.push_str("\n## 2. Consume with manual acks\n\n");
    out.push_str(
        "`nucleon`: `Consumer::new(queue, handler).concurrency(P)` on one worker, the handler counts; \
         `lapin`: a task per delivery that acks it (the shape of nucleon's runner); \
         `lapin-inline`: the ack awaited in the consumer's loop (lapin's example); \
         `lapin-split`: as `lapin`, in nucleon's thread layout.\n\n",
    );
    section_table(&mut out, book, "consume", consumers, "lapin");
    out.push_str(&format!(
        "\n## 3. RPC round trips (nucleon `Broker::call` → `Amqp::rpc` in another process)\n\n\
         Client and server are each a nucleon runtime with one worker; the callers are tasks on the client's worker. \
         Sequential: {} calls, one caller; concurrent: {} calls, {} callers. Medians over the rounds.\n\n\
         | callers | calls/s | p50 µs | p90 µs | p99 µs | client CPU µs/call | server CPU µs/call | runs |\n\
         |---|---:|---:|---:|---:|---:|---:|---:|\n",
        s.rpc_sequential, s.rpc_calls, s.rpc_concurrency
    ));
    for kind in ["sequential", "concurrent"] {
        let r = runs(book, "rpc", kind);
        let m = |key: &str| median(&field(&r, key));
        out.push_str(&format!(
            "| {kind} ({}) | {} | {} | {} | {} | {} | {} | {} |\n",
            if kind == "sequential" { 1 } else { s.rpc_concurrency },
            thousands(m("per_s")),
            thousands(m("p50_us")),
            thousands(m("p90_us")),
            thousands(m("p99_us")),
            fixed(m("cpu_us_per_op"), 1),
            fixed(m("server_cpu_us_per_op"), 1),
            r.len()
        ));
    }
    out.push_str("\n## Goals (nucleon ÷ raw lapin, medians)\n\n");
    verdict(&mut out, "publish, against lapin", ratios(book, "publish", "lapin"));
    verdict(&mut out, "consume, against lapin (a task per delivery)", ratios(book, "consume", "lapin"));
    verdict(&mut out, "consume, against lapin-inline", ratios(book, "consume", "lapin-inline"));
    out.push_str("\nThe thread layout alone (lapin-split ÷ lapin): ");
    for section in ["publish", "consume"] {
        let (a, b) = (runs(book, section, "lapin-split"), runs(book, section, "lapin"));
        out.push_str(&format!(
            "{section}: throughput {}×, CPU {}×{}",
            fixed(median(&field(&a, "per_s")) / median(&field(&b, "per_s")), 3),
            fixed(median(&field(&a, "cpu_us_per_op")) / median(&field(&b, "cpu_us_per_op")), 3),
            if section == "publish" { "; " } else { ".\n" }
        ));
    }
    if !book.failures.is_empty() {
        out.push_str("\n## Failures\n\n");
        for failure in &book.failures {
            out.push_str(&format!("- {failure}\n"));
        }
    }
    out
}
