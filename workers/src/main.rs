//! The `pagestream` binary: parses the command line and runs it.

use std::process::ExitCode;

use clap::Parser;

fn main() -> ExitCode {
    let cli = workers::cli::Cli::parse();
    match workers::cli::run(cli) {
        Ok(code) => code,
        Err(error) => match error.downcast_ref::<workers::cli::Failure>() {
            Some(failure) => {
                eprintln!("error: {failure}");
                ExitCode::from(failure.exit_code())
            }
            None => {
                eprintln!("error: {error:#}");
                ExitCode::FAILURE
            }
        },
    }
}
