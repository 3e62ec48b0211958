//! `primes-worker`: the back-end worker of the primes example (no HTTP).
//!
//! ```sh
//! cargo run --release -p primes --bin primes-worker -- -j 2
//! ```

fn main() -> std::process::ExitCode {
    nucleon::run(primes::worker())
}
