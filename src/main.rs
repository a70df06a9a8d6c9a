//! The `marketgate` binary: parse the command line, run the library, map to an exit code.

use std::process::ExitCode;

use clap::Parser;

fn main() -> ExitCode {
    let cli = marketgate::cli::Cli::parse();
    match marketgate::cli::run(cli) {
        Ok(code) => code,
        Err(err) => {
            eprintln!("marketgate: {err:#}");
            ExitCode::from(2)
        }
    }
}
