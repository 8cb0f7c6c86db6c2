//! `xlpatch export` and `xlpatch inspect`: checkpoints to model directories, and what a model
//! directory holds.

use std::path::PathBuf;
use std::time::Instant;

use anyhow::{Context, Result};
use clap::Args;
use xlpatch_export::{Dtype, ExportOptions, GraphOps};
use xlpatch_model::Manifest;

#[derive(Debug, Args)]
pub(crate) struct ExportArgs {
    /// A Hugging Face checkpoint directory (config.json + safetensors) or a .gguf file.
    #[arg(long, value_name = "DIR|FILE.gguf")]
    model: PathBuf,
    /// The tokenizer.json to check against the model and copy into the export.
    #[arg(long, value_name = "FILE")]
    tokenizer: Option<PathBuf>,
    /// The directory to write.
    #[arg(long, value_name = "DIR")]
    out: PathBuf,
    /// How to store weights (graphs always compute in f32).
    #[arg(long, default_value = "f32", value_parser = ["f32", "f16", "bf16"])]
    dtype: String,
    /// The checkpoint's training step, recorded in the manifest (default: from the
    /// directory's name, e.g. `step_64`, `iter_0001000`, `stage1-step1000-tokens5B`).
    #[arg(long, value_name = "N")]
    step: Option<u64>,
    /// The checkpoint's revision, recorded in the manifest.
    #[arg(long, value_name = "R")]
    revision: Option<String>,
    /// Also output each block's attention and MLP contributions (`attn_out`, `mlp_out`).
    #[arg(long)]
    extra_outputs: bool,
    /// Which ONNX operators to build blocks from: `fused` (opset 23's RMSNormalization,
    /// RotaryEmbedding, Attention; fewer nodes, faster calls) or `basic` (opset 21 primitives).
    #[arg(long, default_value = "fused", value_parser = ["fused", "basic"])]
    ops: String,
}

pub(crate) fn export(args: ExportArgs) -> Result<()> {
    let start = Instant::now();
    let mut opts = ExportOptions::new(&args.model, &args.out);
    opts.tokenizer = args.tokenizer;
    opts.dtype = args.dtype.parse::<Dtype>().map_err(anyhow::Error::msg)?;
    // A series folder's name gives the step when --step does not (`step_64`, Megatron's
    // `iter_0001000`, a hub ref name).
    opts.step = args.step.or_else(|| {
        let name = args.model.file_name()?.to_string_lossy().into_owned();
        xlpatch_hub::parse_ref(&name).map(|r| r.step)
    });
    opts.revision = args.revision;
    opts.extra_outputs = args.extra_outputs;
    opts.ops = args.ops.parse::<GraphOps>().map_err(anyhow::Error::msg)?;
    let manifest = xlpatch_export::export(&opts)
        .with_context(|| format!("cannot export {}", args.model.display()))?;
    println!(
        "exported {} ({} layers, d {}, vocab {}) to {} in {:.1} s",
        manifest.architecture,
        manifest.num_layers,
        manifest.hidden_size,
        manifest.vocab_size,
        args.out.display(),
        start.elapsed().as_secs_f64()
    );
    Ok(())
}

#[derive(Debug, Args)]
pub(crate) struct InspectArgs {
    /// An exported model directory.
    model: PathBuf,
    /// Skip checking file hashes (faster on large models).
    #[arg(long, conflicts_with = "verify")]
    no_verify: bool,
    /// Read every file to check its hash (by default a file whose size and modification
    /// time are unchanged since its hash was verified is not read again).
    #[arg(long)]
    verify: bool,
    /// Print the manifest as JSON.
    #[arg(long)]
    json: bool,
}

pub(crate) fn inspect(args: InspectArgs) -> Result<()> {
    let m = Manifest::read(&args.model)?;
    if args.verify {
        m.verify_full(&args.model)?;
    } else if !args.no_verify {
        m.verify(&args.model)?;
    }
    if args.json {
        println!("{}", serde_json::to_string_pretty(&m)?);
        return Ok(());
    }
    let bytes: u64 = m
        .files
        .keys()
        .filter_map(|f| std::fs::metadata(args.model.join(f)).ok())
        .map(|md| md.len())
        .sum();
    let sliding = m
        .layer_types
        .iter()
        .filter(|t| **t == xlpatch_model::AttentionType::SlidingAttention)
        .count();
    println!("model         {}", args.model.display());
    println!("architecture  {}", m.architecture);
    println!(
        "features      {}",
        xlpatch_export::architecture_features(&m.architecture).unwrap_or("-")
    );
    if let Some(n) = m.context_length {
        println!("context       {n} tokens");
    }
    println!(
        "layers        {} ({sliding} sliding-window{})",
        m.num_layers,
        m.sliding_window
            .map(|w| format!(", window {w}"))
            .unwrap_or_default()
    );
    println!(
        "width         {} (MLP {})",
        m.hidden_size, m.intermediate_size
    );
    println!(
        "heads         {} query, {} key/value, {} wide",
        m.num_heads, m.num_kv_heads, m.head_dim
    );
    println!("vocabulary    {}", m.vocab_size);
    println!("weights       {:?}", m.dtype);
    println!(
        "step          {}",
        m.step.map(|s| s.to_string()).unwrap_or("-".into())
    );
    println!("revision      {}", m.revision.as_deref().unwrap_or("-"));
    println!("source        {}", m.source);
    println!("tokenizer     {}", m.tokenizer.as_deref().unwrap_or("-"));
    println!(
        "files         {} ({:.1} MB)",
        m.files.len(),
        bytes as f64 / 1e6
    );
    println!("content hash  {}", m.content_hash());
    println!(
        "hashes        {}",
        if args.no_verify {
            "not checked"
        } else {
            "verified"
        }
    );
    Ok(())
}
