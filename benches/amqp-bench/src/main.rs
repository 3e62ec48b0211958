//! amqp-bench: nucleon-amqp against raw lapin on the local RabbitMQ, side by side.
//!
//! `amqp-bench suite --out DIR [options]` runs everything: it starts this binary once
//! per measured variant and round (the subcommands below), interleaved, and an
//! aio-pika peer when `--python` is given; it prints the summary (Markdown) and writes
//! every run's raw result to `DIR/runs.jsonl`.
//!
//! The measured subcommands print one JSON line each (wall time, and the process's own
//! user + system CPU over the measured part, from getrusage(RUSAGE_SELF)):
//!
//! - `publish --impl nucleon|lapin|lapin-split --queue Q --n N --body B --window W`
//! - `consume --impl nucleon|lapin|lapin-inline|lapin-split --queue Q --n N --prefetch P`
//! - `rpc-server --name NAME` (prints `ready`, serves until its stdin closes)
//! - `rpc-client --name NAME --calls N --concurrency C`
//!
//! Every subcommand takes `--url` (default: the local broker as guest).

mod measure;
mod nucleon;
mod raw;
mod suite;

use std::collections::HashMap;
use std::str::FromStr;

/// The local broker, as guest.
pub const DEFAULT_URL: &str = "amqp://guest:guest@127.0.0.1:5672/%2f";

/// `--key value` pairs.
#[derive(Debug, Clone, Default)]
pub struct Opts(HashMap<String, String>);

impl Opts {
    fn parse(args: impl Iterator<Item = String>) -> Self {
        let mut map = HashMap::new();
        let mut it = args;
        while let Some(flag) = it.next() {
            let key = flag
                .strip_prefix("--")
                .unwrap_or_else(|| panic!("expected --flag, got `{flag}`"))
                .to_owned();
            let value = it.next().unwrap_or_else(|| panic!("--{key} needs a value"));
            map.insert(key, value);
        }
        Self(map)
    }

    /// A text option, or its default.
    pub fn text(&self, key: &str, default: &str) -> String {
        self.0.get(key).cloned().unwrap_or_else(|| default.to_owned())
    }

    /// A text option that must be there.
    pub fn required(&self, key: &str) -> String {
        self.0
            .get(key)
            .cloned()
            .unwrap_or_else(|| panic!("--{key} is required"))
    }

    /// A number option, or its default.
    pub fn num<T: FromStr>(&self, key: &str, default: T) -> T {
        match self.0.get(key) {
            Some(v) => v
                .parse()
                .unwrap_or_else(|_| panic!("--{key}: `{v}` is not a number")),
            None => default,
        }
    }

    /// An optional text option.
    pub fn get(&self, key: &str) -> Option<String> {
        self.0.get(key).cloned()
    }

    /// The broker's URL.
    pub fn url(&self) -> String {
        self.text("url", DEFAULT_URL)
    }
}

fn main() {
    let mut args = std::env::args().skip(1);
    let command = args.next().unwrap_or_else(|| {
        eprintln!("usage: amqp-bench suite|publish|consume|rpc-server|rpc-client [--flag value]…");
        std::process::exit(2)
    });
    let opts = Opts::parse(args);
    let result = match command.as_str() {
        "suite" => {
            suite::run(&opts);
            return;
        }
        "publish" => match opts.required("impl").as_str() {
            "nucleon" => nucleon::publish(&opts),
            "lapin" => raw::publish(&opts, false),
            "lapin-split" => raw::publish(&opts, true),
            other => panic!("no publisher `{other}`"),
        },
        "consume" => match opts.required("impl").as_str() {
            "nucleon" => nucleon::consume(&opts),
            "lapin" => raw::consume(&opts, false, false),
            "lapin-inline" => raw::consume(&opts, true, false),
            "lapin-split" => raw::consume(&opts, false, true),
            other => panic!("no consumer `{other}`"),
        },
        "rpc-server" => {
            nucleon::rpc_server(&opts);
            return;
        }
        "rpc-client" => nucleon::rpc_client(&opts),
        other => panic!("unknown subcommand `{other}`"),
    };
    println!("{result}");
}
