//! The `enphase-mqtt` binary: parse the command line, run, print the error once, pick the exit code.

use std::process::ExitCode;

use clap::Parser;
use enphase_mqtt::{app, cli::Cli};

fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(err) if !err.use_stderr() => {
            // --help and --version.
            let _ = err.print();
            return ExitCode::SUCCESS;
        }
        Err(err) => {
            // One line, like every other error: the first paragraph of clap's message.
            let text = err.render().to_string();
            let first: Vec<&str> = text.lines().take_while(|l| !l.trim().is_empty()).map(|l| l.trim()).collect();
            let line = first.join(" ");
            let line = line.strip_prefix("error: ").unwrap_or(&line);
            eprintln!("enphase-mqtt: {line} (see `enphase-mqtt --help`)");
            return ExitCode::from(app::EXIT_CONFIG);
        }
    };
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
