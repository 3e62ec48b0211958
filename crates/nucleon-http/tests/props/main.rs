//! Property tests (proptest), in-process, no socket:
//!
//! - `router`: generated route tables and requests; `Router` answers as the reference
//!   matcher of `router_model.rs` does (its module docs list the rules encoded), and
//!   refuses the same routes;
//! - `extract`: `Path<T>` and `Query<T>` give back what was percent-encoded into the
//!   path or query, and on any input give a value or a 400 `INVALID_PARAMETERS`,
//!   never a panic;
//! - `config`: the `[<env>.http]` table: valid values come back as written, an unknown
//!   key is refused naming it, and no TOML text panics the loader.
//!
//! Each property runs 256 cases (`support::cases`: proptest's usual count, written
//! out so that the time it adds to `cargo test` stays bounded; `PROPTEST_CASES` for
//! more). A failure is saved under `tests/proptest-regressions/` and tried first on
//! the next runs: commit that file.

mod config;
mod extract;
mod router;
mod router_model;
mod support;
