//! The `mayfly` binary: parses the command line, starts the async runtime and hands
//! the command to [`mayfly_server::cli::run`]. Nothing else lives here.

use std::process::ExitCode;

use clap::Parser as _;
use mayfly_server::cli::{self, Cli};
use mayfly_server::telemetry;

/// mimalloc, not glibc's malloc: a token request allocates ~180 times, often freeing on
/// another thread than it allocated on. CPU per token −17 %, RSS after load +10 MB (see
/// BENCHMARKS.md).
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> ExitCode {
    let cli = Cli::parse();
    telemetry::init(cli.log_format());
    let mut builder = tokio::runtime::Builder::new_multi_thread();
    if let Some(workers) = cli.workers() {
        builder.worker_threads(workers);
    }
    let runtime = match builder.enable_all().build() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("mayfly: starting the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(cli::run(cli)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("mayfly: {}", one_line(&e));
            ExitCode::FAILURE
        }
    }
}

/// The error chain on one line, skipping causes a wrapper already printed (sqlx errors
/// repeat their source in their own message).
fn one_line(error: &anyhow::Error) -> String {
    let mut line = String::new();
    for cause in error.chain() {
        let text = cause.to_string();
        if !line.contains(&text) {
            if !line.is_empty() {
                line.push_str(": ");
            }
            line.push_str(&text);
        }
    }
    line
}
