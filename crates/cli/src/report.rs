//! `xlpatch report`: the HTML report, plots, error analysis and review sheet of a sweep's
//! results directory.

use std::path::PathBuf;
use std::time::Instant;

use anyhow::{Context, Result};
use clap::Args;
use xlpatch_report::Options;

#[derive(Debug, Args)]
pub(crate) struct ReportArgs {
    /// The results directory of `xlpatch sweep` (results.jsonl, config.toml, run.json,
    /// prompts.jsonl).
    #[arg(value_name = "RESULTS_DIR")]
    results: PathBuf,
    /// Where to write index.html, plots/, review.csv, errors.csv and stats.csv (created).
    #[arg(long, value_name = "DIR")]
    out: PathBuf,
    /// The concept table's directory (default: the one the sweep's config names).
    #[arg(long, value_name = "DIR")]
    concepts: Option<PathBuf>,
    /// Bootstrap resamples per 95% interval (at least 2).
    #[arg(long, default_value_t = 1000)]
    resamples: usize,
    /// The bootstrap's seed.
    #[arg(long, default_value_t = 0)]
    seed: u64,
}

pub(crate) fn report(args: ReportArgs) -> Result<()> {
    let started = Instant::now();
    let options = Options {
        concepts: args.concepts,
        resamples: args.resamples,
        seed: args.seed,
    };
    let written = xlpatch_report::build(&args.results, &args.out, &options).with_context(|| {
        format!(
            "cannot build the report of {} into {}",
            args.results.display(),
            args.out.display()
        )
    })?;
    println!(
        "{} rows, {} plot files, in {:.1} s",
        written.rows,
        written.plots.len(),
        started.elapsed().as_secs_f64()
    );
    // Warnings go to stderr, so they are seen when stdout is redirected.
    for note in &written.notes {
        eprintln!("note: {note}");
    }
    let total: usize = written.categories.iter().map(|(_, n)| n).sum();
    println!("{total} unique generations by category:");
    for (c, n) in &written.categories {
        println!(
            "  {:<32} {n:>6}  {:>5.1}%",
            c.label(),
            100.0 * *n as f64 / total.max(1) as f64
        );
    }
    println!("report:       {}", written.html.display());
    println!("review sheet: {}", written.review.display());
    Ok(())
}
