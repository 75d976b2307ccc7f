//! `scripts/chaos`: runs a chaos plan against real processes and writes its report.
//!
//! `chaos [--short] [--report PATH]` — the long plan unless `--short`; the report (Markdown) goes
//! to PATH (default `target/chaos/report.md`) and to stdout. Exits 1 when the run failed.

use std::path::PathBuf;
use std::process::ExitCode;

use nudge_tests::chaos::{self, Plan};

fn main() -> ExitCode {
    let mut plan = Plan::long();
    let mut report_path = PathBuf::from("target/chaos/report.md");
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--short" => plan = Plan::short(),
            "--long" => plan = Plan::long(),
            "--report" => match args.next() {
                Some(path) => report_path = PathBuf::from(path),
                None => {
                    eprintln!("--report needs a path");
                    return ExitCode::from(2);
                }
            },
            other => {
                eprintln!(
                    "unknown argument {other:?}; usage: chaos [--short|--long] [--report PATH]"
                );
                return ExitCode::from(2);
            }
        }
    }
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("a tokio runtime");
    eprintln!("chaos: running the {} plan: {plan:?}", plan.name);
    let report = runtime.block_on(chaos::run(&plan));
    let markdown = report.markdown();
    println!("{markdown}");
    let written = match report_path.parent() {
        Some(dir) => {
            std::fs::create_dir_all(dir).and_then(|()| std::fs::write(&report_path, &markdown))
        }
        None => std::fs::write(&report_path, &markdown),
    };
    if let Err(e) = written {
        eprintln!("writing {}: {e}", report_path.display());
        return ExitCode::FAILURE;
    }
    eprintln!("chaos: report written to {}", report_path.display());
    if report.passed() {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}
