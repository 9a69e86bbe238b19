//! `bench`: parse the flags, run the scenarios, print the Markdown report. Every server it
//! started is stopped at the end, on an error, on a panic, and on Ctrl-C or SIGTERM.

use std::process::ExitCode;

use bench::config::Args;
use bench::procs::stop_all;
use clap::Parser;

#[tokio::main]
async fn main() -> ExitCode {
    let args = Args::parse();
    let default_hook = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        default_hook(info);
        stop_all();
    }));

    let outcome = tokio::select! {
        outcome = bench::run(&args) => outcome,
        () = interrupted() => {
            eprintln!("bench: interrupted; stopping every server it started");
            stop_all();
            return ExitCode::from(130);
        }
    };
    stop_all();
    match outcome {
        Ok(report) => {
            println!("{report}");
            if let Some(path) = &args.out {
                if let Err(e) = std::fs::write(path, &report) {
                    eprintln!("bench: cannot write {}: {e}", path.display());
                    return ExitCode::FAILURE;
                }
                eprintln!("bench: report written to {}", path.display());
            }
            ExitCode::SUCCESS
        }
        Err(error) => {
            eprintln!("bench: {error}");
            ExitCode::FAILURE
        }
    }
}

/// Completes on Ctrl-C or SIGTERM.
async fn interrupted() {
    use tokio::signal::unix::{SignalKind, signal};
    let ctrl_c = async {
        if tokio::signal::ctrl_c().await.is_err() {
            std::future::pending::<()>().await;
        }
    };
    let term = async {
        match signal(SignalKind::terminate()) {
            Ok(mut term) => {
                term.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    tokio::select! {
        () = ctrl_c => {}
        () = term => {}
    }
}
