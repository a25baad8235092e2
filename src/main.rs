//! The `enphase-mqtt` binary: parse the command line, run, print the error once, pick the exit code.

use std::process::ExitCode;

use clap::Parser;
use enphase_mqtt::{app, cli::Cli};

fn main() -> ExitCode {
    let cli = Cli::parse();
    app::init_logging();
    let runtime = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
        Ok(rt) => rt,
        Err(err) => {
            eprintln!("enphase-mqtt: cannot start the async runtime: {err}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(app::run(cli)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            // Several problems (a config with many mistakes) come one per line, each prefixed.
            for line in format!("{err:#}").lines() {
                eprintln!("enphase-mqtt: {line}");
            }
            ExitCode::from(app::exit_code(&err))
        }
    }
}
