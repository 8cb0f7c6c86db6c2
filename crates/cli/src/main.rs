//! `xlpatch`: cross-lingual concept patching across LLM pretraining checkpoints.
//!
//! Exit codes: 0 success, 1 an error (printed to stderr), 2 a usage error.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Result;
use clap::{Parser, Subcommand};

/// Block calls allocate and free KV caches of up to megabytes each; glibc's allocator hands
/// such buffers back to the kernel and takes page faults to get them again (measured: a
/// fifth of a fixture sweep's unit time).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

mod concepts;
mod export;
mod hints;
mod patch;
mod plugins;
mod predict;
mod report;
mod series;
mod slurm;
mod sweep;

/// Cross-lingual concept patching across LLM pretraining checkpoints.
///
/// Plugins are searched in --plugin-dir directories, then in XLPATCH_PLUGIN_PATH, then in
/// `plugins/` beside this executable.
#[derive(Debug, Parser)]
#[command(name = "xlpatch", version, about, long_about)]
struct Cli {
    /// An extra directory to search for plugins (repeatable; searched first).
    #[arg(long, global = true, value_name = "DIR")]
    plugin_dir: Vec<PathBuf>,

    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Export a checkpoint (Hugging Face directory or GGUF file) to per-layer ONNX graphs.
    Export(export::ExportArgs),
    /// Show what an exported model directory holds, and check its files against the manifest.
    Inspect(export::InspectArgs),
    /// Top-k next tokens of a prompt with their probabilities, then the greedy continuation.
    Predict(predict::PredictArgs),
    /// One patched run of a prompt beside the unpatched one: top-k and generations.
    Patch(patch::PatchArgs),
    /// Run a patching sweep over a checkpoint series (resumable; --shard k/n, 0-based,
    /// splits it).
    Sweep(sweep::SweepArgs),
    /// Join the results of sweep shards.
    Merge(sweep::MergeArgs),
    /// Write the HTML report, plots, error analysis and review sheet of a results directory.
    Report(report::ReportArgs),
    /// Run a sweep as a Slurm job array: submit, status, resubmit, merge.
    #[command(subcommand)]
    Slurm(slurm::SlurmCommand),
    /// Checkpoint series on the Hugging Face hub: list what a spec selects, fetch it.
    #[command(subcommand)]
    Series(series::SeriesCommand),
    /// Concept tables: import the prior work's formats into the project's.
    #[command(subcommand)]
    Concepts(concepts::ConceptsCommand),
    /// Inspect the plugins xlpatch can load.
    #[command(subcommand)]
    Plugins(plugins::PluginsCommand),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match run(cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            if let Some(hint) = hints::hint(&e) {
                eprintln!("hint: {hint}");
            }
            ExitCode::FAILURE
        }
    }
}

fn run(cli: Cli) -> Result<()> {
    plugins::check_dirs(&cli.plugin_dir)?;
    match cli.command {
        Command::Export(args) => export::export(args),
        Command::Inspect(args) => export::inspect(args),
        Command::Predict(args) => predict::predict(args, &cli.plugin_dir),
        Command::Patch(args) => patch::patch(args, &cli.plugin_dir),
        Command::Sweep(args) => sweep::sweep(args, &cli.plugin_dir),
        Command::Merge(args) => sweep::merge(args),
        Command::Report(args) => report::report(args),
        Command::Slurm(cmd) => slurm::run(cmd, &cli.plugin_dir),
        Command::Series(cmd) => series::run(cmd),
        Command::Plugins(cmd) => plugins::run(cmd, &cli.plugin_dir),
        Command::Concepts(cmd) => concepts::run(cmd),
    }
}
