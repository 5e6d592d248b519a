//! The `mdsa` command-line tool: the CLI library with the backends this build
//! has (see `mdsa_cli::default_backends`).

use std::process::ExitCode;

fn main() -> ExitCode {
    mdsa_cli::run_with(mdsa_cli::default_backends())
}
