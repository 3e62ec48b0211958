//! The countries service: Nucleon's quickstart.
//!
//! ```sh
//! cargo run --release -p countries            # serves 127.0.0.1:8888
//! curl -s localhost:8888/countries/           # ["de","fr","gb","jp","us"]
//! curl -s localhost:8888/countries/gb/        # {"code":"gb","name":"United Kingdom",…}
//! ```

use std::process::ExitCode;

use countries::app;

fn main() -> ExitCode {
    nucleon::run(app())
}
