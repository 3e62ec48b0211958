//! `nucleon`: Nucleon's command line (`nucleon new <dir>`); see the library's docs.

use std::process::ExitCode;

fn main() -> ExitCode {
    let code = nucleon_cli::main_with(
        std::env::args_os(),
        &mut std::io::stdout().lock(),
        &mut std::io::stderr().lock(),
    );
    ExitCode::from(code)
}
