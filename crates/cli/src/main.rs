//! `xlpatch`: cross-lingual concept patching across LLM pretraining checkpoints.
//!
//! Exit codes: 0 success, 1 an error (printed to stderr), 2 a usage error.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Result;
use clap::{Parser, Subcommand};

mod plugins;

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
            ExitCode::FAILURE
        }
    }
}

fn run(cli: Cli) -> Result<()> {
    match cli.command {
        Command::Plugins(cmd) => plugins::run(cmd, &cli.plugin_dir),
    }
}
