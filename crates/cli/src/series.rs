//! `xlpatch series list|fetch` and hub series in `xlpatch sweep`: checkpoint series named as
//! `hf://ORG/NAME[@REVS][?OPTS]`, listed, downloaded into the Hugging Face cache, and swept
//! through a download → export → sweep pipeline within a disk budget.

use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::{Context, Result, bail};
use clap::{Args, Subcommand};
use xlpatch_core::config::SweepConfig;
use xlpatch_export::Dtype;
use xlpatch_hub::{Hub, HubOptions};
use xlpatch_series::SeriesOptions;

#[derive(Debug, Subcommand)]
pub(crate) enum SeriesCommand {
    /// Print what hub series specs select, ordered by step, before anything is downloaded
    /// (names without a step are listed as skipped; identical weights are marked).
    List(ListArgs),
    /// Download (and check) every checkpoint of hub series specs into the Hugging Face cache,
    /// e.g. before a run on a compute node without internet (`--offline` there).
    Fetch(ListArgs),
}

#[derive(Debug, Args)]
pub(crate) struct ListArgs {
    /// Series specs: `hf://ORG/NAME[@REV,REV…|@PATTERN][?every=K|log=N&steps=A..B&refs=…]`.
    #[arg(required = true, value_name = "hf://…")]
    specs: Vec<String>,
    /// Use only the local cache (as HF_HUB_OFFLINE=1 does).
    #[arg(long)]
    offline: bool,
}

/// The series options of `xlpatch sweep`.
#[derive(Debug, Args)]
pub(crate) struct SeriesSweepArgs {
    /// Sweep this hub series instead of the config's `models` (repeatable).
    #[arg(long, value_name = "hf://…")]
    series: Vec<String>,
    /// Hub series: keep downloads and exports (by default each is deleted once its rows are
    /// written).
    #[arg(long)]
    keep: bool,
    /// Hub series: the most disk that downloads and exports may use at once (bytes, or with
    /// K, M, G, T); refused before starting if one checkpoint cannot fit.
    #[arg(long, value_name = "SIZE", value_parser = parse_size)]
    disk_budget: Option<u64>,
    /// Hub series: where exports and per-checkpoint runs go (default: OUT/.series).
    #[arg(long, value_name = "DIR")]
    work: Option<PathBuf>,
    /// Hub series: a tokenizer.json for revisions that lack one.
    #[arg(long, value_name = "FILE")]
    tokenizer: Option<PathBuf>,
    /// Hub series: how exports store weights (default: the checkpoint's own precision, f16 or
    /// bf16, else f32; computation is f32 either way).
    #[arg(long, value_parser = ["f32", "f16", "bf16"])]
    export_dtype: Option<String>,
    /// Hub series: use only the local cache (as HF_HUB_OFFLINE=1 does).
    #[arg(long)]
    offline: bool,
}

fn parse_size(s: &str) -> Result<u64, String> {
    let t = s.trim().trim_end_matches(['B', 'b']);
    let (num, scale) = match t.chars().last() {
        Some('K' | 'k') => (&t[..t.len() - 1], 1e3),
        Some('M' | 'm') => (&t[..t.len() - 1], 1e6),
        Some('G' | 'g') => (&t[..t.len() - 1], 1e9),
        Some('T' | 't') => (&t[..t.len() - 1], 1e12),
        _ => (t, 1.0),
    };
    num.parse::<f64>()
        .ok()
        .filter(|v| *v >= 0.0)
        .map(|v| (v * scale) as u64)
        .ok_or_else(|| format!("{s:?} is not a size (e.g. 40G, 500M, 123456)"))
}

fn hub(offline: bool) -> Result<Hub> {
    let mut opts = HubOptions::from_env();
    opts.offline |= offline;
    Ok(Hub::new(opts)?)
}

fn log(msg: &str) {
    eprintln!("{msg}");
}

pub(crate) fn run(cmd: SeriesCommand) -> Result<()> {
    match cmd {
        SeriesCommand::List(args) => {
            let hub = hub(args.offline)?;
            let plan = xlpatch_series::plan(&hub, &args.specs)?;
            print!("{}", xlpatch_series::format_plan(&plan));
            Ok(())
        }
        SeriesCommand::Fetch(args) => {
            let hub = hub(args.offline)?;
            let plan = xlpatch_series::plan(&hub, &args.specs)?;
            print!("{}", xlpatch_series::format_plan(&plan));
            let start = Instant::now();
            xlpatch_series::fetch(&hub, &plan, &log)?;
            println!(
                "fetched {} checkpoints into {} in {:.1} s",
                plan.checkpoints.len(),
                hub.options().cache.display(),
                start.elapsed().as_secs_f64()
            );
            Ok(())
        }
    }
}

/// Whether a sweep runs a hub series (its models are `hf://` specs); a config that mixes
/// hub specs with local directories is refused.
pub(crate) fn wants_hub(config: &mut SweepConfig, args: &SeriesSweepArgs) -> Result<bool> {
    if !args.series.is_empty() {
        config.models = args.series.clone();
    }
    let hub = config
        .models
        .iter()
        .filter(|m| m.starts_with(xlpatch_hub::spec::SCHEME))
        .count();
    if hub > 0 && hub < config.models.len() {
        bail!("models mixes hf:// series with local directories; sweep them separately");
    }
    Ok(hub > 0)
}

/// `xlpatch sweep` over a hub series.
pub(crate) fn sweep(
    config: &SweepConfig,
    base: &Path,
    out: &Path,
    args: &SeriesSweepArgs,
    plugin_dirs: &[PathBuf],
) -> Result<()> {
    let start = Instant::now();
    let hub = hub(args.offline)?;
    let plan = xlpatch_series::plan(&hub, &config.models)?;
    print!("{}", xlpatch_series::format_plan(&plan));
    let (_, registry, refused) = xlpatch_core::plugins::discover(plugin_dirs);
    for e in &refused {
        eprintln!("warning: {}", crate::hints::with_causes(e));
    }
    let opts = SeriesOptions {
        work: args.work.clone().unwrap_or_else(|| out.join(".series")),
        keep: args.keep,
        disk_budget: args.disk_budget,
        dtype: match args.export_dtype.as_deref() {
            Some(d) => Some(d.parse::<Dtype>().map_err(anyhow::Error::msg)?),
            None => None,
        },
        tokenizer: args.tokenizer.clone(),
    };
    let outcome = xlpatch_series::sweep(
        &hub,
        &plan,
        config,
        &registry,
        base,
        out,
        &opts,
        &log,
        &mut |_| {},
    )
    .with_context(|| format!("series sweep into {} failed", out.display()))?;
    println!(
        "{} checkpoints swept, {} resumed ({}), in {:.1} s; results in {}",
        outcome.swept,
        outcome.resumed,
        if outcome.pipelined {
            "download and export overlapped the sweep"
        } else {
            "one checkpoint at a time"
        },
        start.elapsed().as_secs_f64(),
        out.display()
    );
    for g in &outcome.duplicates {
        println!("identical weights (same content hash): {}", g.join(", "));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::parse_size;

    #[test]
    fn sizes_parse_with_units() {
        assert_eq!(parse_size("123"), Ok(123));
        assert_eq!(parse_size("40G"), Ok(40_000_000_000));
        assert_eq!(parse_size("1.5TB"), Ok(1_500_000_000_000));
        assert_eq!(parse_size("500m"), Ok(500_000_000));
        assert!(parse_size("lots").is_err());
        assert!(parse_size("-1G").is_err());
    }
}
