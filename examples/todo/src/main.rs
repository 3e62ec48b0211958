//! The todo service.
//!
//! ```sh
//! cargo run --release -p todo                     # SQLite at data/todo.db, 127.0.0.1:8890
//! curl -s localhost:8890/todos                    # [{"id":1,"title":"Read the README","done":true}]
//! curl -s -XPOST localhost:8890/todos -H 'content-type: application/json' -d '{"title":"Ship it"}'
//! cargo run -q -p todo -- db status               # the schema's tables, migrations applied
//! ```

fn main() -> std::process::ExitCode {
    nucleon::run(todo::app())
}
