//! `primes-front`: the HTTP front end of the primes example.
//!
//! ```sh
//! cargo run --release -p primes --bin primes-front               # 127.0.0.1:8892
//! NUCLEON_PRIMES__INLINE=true cargo run --release -p primes --bin primes-front
//! ```

fn main() -> std::process::ExitCode {
    nucleon::run(primes::front())
}
