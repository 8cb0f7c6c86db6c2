//! `xlpatch sweep` and `xlpatch merge`: run a patching sweep over a checkpoint series, resumably
//! and shardably, and join shards.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::{Context, Result};
use clap::Args;
use xlpatch_core::config::SweepConfig;
use xlpatch_core::results::{merge as merge_results, read_rows};
use xlpatch_core::sweep::{self, Progress, Shard};

#[derive(Debug, Args)]
pub(crate) struct SweepArgs {
    /// The sweep's TOML config; without it the defaults run (the committed fixture series).
    #[arg(long, value_name = "FILE")]
    config: Option<PathBuf>,
    /// The results directory (created; a rerun resumes it).
    #[arg(long, value_name = "DIR", required_unless_present = "print_config")]
    out: Option<PathBuf>,
    /// Print the config (the defaults, or --config's file with the defaults filled in) as
    /// TOML with a comment per key, and exit: `xlpatch sweep --print-config > study.toml`.
    #[arg(long)]
    print_config: bool,
    /// Run shard K of N, 0-based (K = 0, 1, …, N-1; by checkpoint and target); `xlpatch
    /// merge` joins the shards.
    #[arg(long, value_name = "K/N")]
    shard: Option<Shard>,
    /// Intra-op threads of the backend (0: ONNX Runtime decides); overrides the config.
    #[arg(long)]
    threads: Option<usize>,
    /// Targets computed together (shared backend calls; default 1: one at a time);
    /// overrides the config's `target_batch`.
    #[arg(long, value_name = "N")]
    target_batch: Option<usize>,
    /// Replay this prompt set (an earlier sweep's `prompts.jsonl`) instead of building
    /// prompts; overrides the config's `prompts`.
    #[arg(long, value_name = "FILE")]
    prompts: Option<PathBuf>,
    /// Read every model file to check it against its manifest (by default a file whose
    /// size and modification time are unchanged since its hash was verified is not read
    /// again).
    #[arg(long)]
    verify: bool,
    /// Run prompts longer than a checkpoint's context length with a warning instead of
    /// refusing them; sets the config's `allow_beyond_context`.
    #[arg(long)]
    allow_beyond_context: bool,
    #[command(flatten)]
    hub: crate::series::SeriesSweepArgs,
}

/// A one-line progress bar on stderr: done/total, rate and ETA.
struct Bar {
    start: Instant,
    first: Option<usize>,
}

impl Bar {
    fn show(&mut self, p: &Progress) {
        let resumed = *self.first.get_or_insert(p.resumed);
        let ran = p.done.saturating_sub(resumed);
        let secs = self.start.elapsed().as_secs_f64();
        let rate = if secs > 0.0 { ran as f64 / secs } else { 0.0 };
        let left = p.total.saturating_sub(p.done);
        let eta = if rate > 0.0 {
            format!("{:.0} s", left as f64 / rate)
        } else {
            "?".to_string()
        };
        let width = 30;
        let filled = (p.done * width).checked_div(p.total).unwrap_or(width);
        eprint!(
            "\r[{}{}] {}/{} units  {:.2} units/s  ETA {eta}  {}   ",
            "#".repeat(filled),
            ".".repeat(width - filled),
            p.done,
            p.total,
            rate,
            p.checkpoint
        );
        let _ = std::io::stderr().flush();
    }
}

pub(crate) fn sweep(args: SweepArgs, plugin_dirs: &[PathBuf]) -> Result<()> {
    let (mut config, base) = match &args.config {
        Some(path) => (
            SweepConfig::read(path)?,
            path.parent().map(Path::to_path_buf).unwrap_or_default(),
        ),
        None => (SweepConfig::default(), PathBuf::from(".")),
    };
    if let Some(t) = args.threads {
        config.threads = t;
    }
    if let Some(n) = args.target_batch {
        config.target_batch = n;
    }
    config.verify |= args.verify;
    config.allow_beyond_context |= args.allow_beyond_context;
    if let Some(file) = &args.prompts {
        // Relative to where the command runs, like every other path on the command line.
        let file = std::path::absolute(file)
            .with_context(|| format!("cannot resolve {}", file.display()))?;
        config.prompts = Some(file.display().to_string());
    }
    if args.print_config {
        print!("{}", config.annotated_toml());
        return Ok(());
    }
    let out = args
        .out
        .clone()
        .expect("clap requires --out without --print-config");
    if crate::series::wants_hub(&mut config, &args.hub)? {
        if args.shard.is_some() {
            anyhow::bail!("--shard is not available for hub series; sweep spec subsets instead");
        }
        return crate::series::sweep(&config, &base, &out, &args.hub, plugin_dirs);
    }
    let (_, registry, refused) = xlpatch_core::plugins::discover(plugin_dirs);
    for e in &refused {
        eprintln!("warning: {}", crate::hints::with_causes(e));
    }
    let shard = args.shard.unwrap_or_default();
    let start = Instant::now();
    let mut bar = Bar { start, first: None };
    let outcome = sweep::run(&config, &registry, &base, &out, shard, &mut |p| bar.show(p));
    // The bar's line ends before anything else is printed, an error above all.
    if bar.first.is_some() {
        eprintln!();
    }
    let outcome = outcome.with_context(|| format!("sweep into {} failed", out.display()))?;
    for w in &outcome.warnings {
        eprintln!("warning: {w}");
    }
    println!(
        "{} units run, {} resumed, {} in shard {shard}, in {:.1} s; results in {}",
        outcome.ran,
        outcome.resumed,
        outcome.total,
        start.elapsed().as_secs_f64(),
        out.display()
    );
    let rows = read_rows(&out)?;
    print!("{}", sweep::format_summary(&sweep::summarize(&rows)));
    if shard.count > 1 {
        println!(
            "shard {shard} of a sweep: once every shard has run, `xlpatch merge` their \
             results directories and report the merged one"
        );
    } else {
        println!("see the report: {}", report_command(&out));
    }
    Ok(())
}

/// The command that reports the results in `out`, into `<out>-report` beside it.
pub(crate) fn report_command(out: &Path) -> String {
    let name = out
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| "results".to_string());
    let report = out.with_file_name(format!("{name}-report"));
    format!(
        "xlpatch report {} --out {}",
        shell_word(&out.display().to_string()),
        shell_word(&report.display().to_string())
    )
}

/// `s` as one word for a POSIX shell.
fn shell_word(s: &str) -> String {
    let plain = !s.is_empty()
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || "/._-+,:@%=".contains(c));
    if plain {
        s.to_string()
    } else {
        format!("'{}'", s.replace('\'', "'\\''"))
    }
}

#[derive(Debug, Args)]
pub(crate) struct MergeArgs {
    /// The shards' results directories.
    #[arg(required = true)]
    shards: Vec<PathBuf>,
    /// The merged results directory.
    #[arg(long, value_name = "DIR")]
    out: PathBuf,
}

pub(crate) fn merge(args: MergeArgs) -> Result<()> {
    let n = merge_results(&args.shards, &args.out)?;
    println!(
        "merged {} shards, {n} rows, into {}",
        args.shards.len(),
        args.out.display()
    );
    Ok(())
}
