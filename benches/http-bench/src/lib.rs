//! What every server in this bench serves, and the command line they share.
//!
//! Each server answers the same two routes with the same bytes:
//! `GET /json` → `{"message":"Hello, World!"}` and `GET /countries/gb/` → the country
//! as the countries example serves it (`run.sh` checks the bodies are identical).

use serde::Serialize;

/// The hello route's body.
#[derive(Debug, Serialize)]
pub struct Hello {
    /// Always "Hello, World!".
    pub message: &'static str,
}

/// The hello value.
pub const HELLO: Hello = Hello {
    message: "Hello, World!",
};

/// A country: the same fields, in the same order, as `countries::Country`.
#[derive(Debug, Clone, Copy, Serialize)]
pub struct Country {
    /// ISO 3166-1 alpha-2 code, lowercase.
    pub code: &'static str,
    /// English name.
    pub name: &'static str,
    /// Capital city.
    pub capital: &'static str,
    /// Population, rounded.
    pub population: u64,
}

/// The same data as `countries::COUNTRIES`.
pub const COUNTRIES: &[Country] = &[
    Country { code: "de", name: "Germany", capital: "Berlin", population: 83_000_000 },
    Country { code: "fr", name: "France", capital: "Paris", population: 68_000_000 },
    Country { code: "gb", name: "United Kingdom", capital: "London", population: 67_000_000 },
    Country { code: "jp", name: "Japan", capital: "Tokyo", population: 125_000_000 },
    Country { code: "us", name: "United States", capital: "Washington", population: 333_000_000 },
];

/// Looks a country up by its code.
pub fn country(code: &str) -> Option<&'static Country> {
    COUNTRIES.iter().find(|c| c.code == code)
}

/// `--port N` and `-j/--workers N`, as the nucleon binary takes them.
#[derive(Debug, Clone, Copy)]
pub struct Args {
    /// The port on 127.0.0.1.
    pub port: u16,
    /// Worker threads.
    pub workers: usize,
}

impl Args {
    /// Parses the process's arguments (defaults: port 8080, 1 worker).
    pub fn parse() -> Self {
        let mut args = Self { port: 8080, workers: 1 };
        let mut it = std::env::args().skip(1);
        while let Some(flag) = it.next() {
            let value = it.next().unwrap_or_else(|| usage(&flag));
            match flag.as_str() {
                "--port" => args.port = value.parse().unwrap_or_else(|_| usage(&flag)),
                "-j" | "--workers" => {
                    args.workers = value.parse().unwrap_or_else(|_| usage(&flag));
                }
                _ => usage(&flag),
            }
        }
        args.workers = args.workers.max(1);
        args
    }

    /// `127.0.0.1:port`.
    pub fn addr(&self) -> std::net::SocketAddr {
        std::net::SocketAddr::from(([127, 0, 0, 1], self.port))
    }
}

fn usage(flag: &str) -> ! {
    eprintln!("bad argument `{flag}`; usage: [--port N] [-j N]");
    std::process::exit(64)
}
