//! `cargo xtask bench-scaling`: the cost of one target (every start layer) against the number
//! of layers and the prompt length, incremental against naive, on random-weight Llama exports
//! of growing size up to EuroLLM-1.7B's shape (issue 7).
//!
//! For each shape it writes a random Hugging Face checkpoint (bf16 safetensors, a tensor at a time; the
//! values do not matter for timing, only their scale: `1/sqrt(fan_in)` keeps activations
//! ordinary, far from denormals), exports it with the release `xlpatch export` (f32 graphs),
//! deletes the checkpoint, times it with the `targets` benchmark of `xlpatch-core` in its
//! `--model` mode, and deletes the export: everything lives under `target/bench-scaling/`
//! only while it is measured (the EuroLLM shape is 6.6 GB exported). The table is printed
//! and written to `target/bench/scaling.md`.
//!
//! The grid: 4, 8, 16 and 24 layers of width 512 (8 heads, 4 kv heads, ffn 1408, vocab 32000)
//! at 32, 64 and 128 prompt tokens, probabilities only, plus 10 greedy tokens at 64; then the
//! EuroLLM-1.7B shape (d 2048, 24 layers, 16/8 heads, ffn 5632, vocab 128000) at 64 tokens,
//! probabilities only (its naive generation alone takes minutes). `--quick` keeps only 4 and 8
//! layers and skips the EuroLLM shape. `--reps N` (default 3; 1 for the EuroLLM shape, after
//! one untimed warm-up as always), `--threads N` (ONNX Runtime intra-op threads, default 1).

use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;

use anyhow::{Context, Result, bail};
use lexopt::{Arg, Parser};

use crate::{args, cargo, plugins, run, target_dir};

/// A Llama shape.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Shape {
    layers: usize,
    d: usize,
    heads: usize,
    kv_heads: usize,
    ffn: usize,
    pub(crate) vocab: usize,
}

impl Shape {
    fn small(layers: usize) -> Shape {
        Shape {
            layers,
            d: 512,
            heads: 8,
            kv_heads: 4,
            ffn: 1408,
            vocab: 32000,
        }
    }

    pub(crate) const EUROLLM: Shape = Shape {
        layers: 24,
        d: 2048,
        heads: 16,
        kv_heads: 8,
        ffn: 5632,
        vocab: 128_000,
    };

    pub(crate) fn name(&self) -> String {
        format!("llama-l{}-d{}-v{}", self.layers, self.d, self.vocab)
    }

    fn config_json(&self) -> String {
        format!(
            r#"{{
  "architectures": ["LlamaForCausalLM"],
  "model_type": "llama",
  "hidden_size": {},
  "intermediate_size": {},
  "num_hidden_layers": {},
  "num_attention_heads": {},
  "num_key_value_heads": {},
  "vocab_size": {},
  "max_position_embeddings": 4096,
  "rms_norm_eps": 1e-05,
  "rope_theta": 10000.0,
  "hidden_act": "silu",
  "tie_word_embeddings": false,
  "bos_token_id": 1,
  "eos_token_id": 2,
  "torch_dtype": "bfloat16"
}}
"#,
            self.d, self.ffn, self.layers, self.heads, self.kv_heads, self.vocab
        )
    }

    /// Every tensor of the checkpoint, with the scale of its random values.
    fn tensors(&self) -> Vec<RandomTensor> {
        let (d, hd) = (self.d, self.d / self.heads);
        let uniform = |fan_in: usize| (3.0 / fan_in as f32).sqrt();
        let mut t = vec![RandomTensor::new(
            "model.embed_tokens.weight".to_string(),
            vec![self.vocab, d],
            1.0,
            0.0,
        )];
        for i in 0..self.layers {
            let p = format!("model.layers.{i}");
            t.push(RandomTensor::new(
                format!("{p}.input_layernorm.weight"),
                vec![d],
                0.1,
                1.0,
            ));
            t.push(RandomTensor::new(
                format!("{p}.post_attention_layernorm.weight"),
                vec![d],
                0.1,
                1.0,
            ));
            for (n, rows) in [
                ("q", self.heads * hd),
                ("k", self.kv_heads * hd),
                ("v", self.kv_heads * hd),
            ] {
                t.push(RandomTensor::new(
                    format!("{p}.self_attn.{n}_proj.weight"),
                    vec![rows, d],
                    uniform(d),
                    0.0,
                ));
            }
            t.push(RandomTensor::new(
                format!("{p}.self_attn.o_proj.weight"),
                vec![d, self.heads * hd],
                uniform(self.heads * hd),
                0.0,
            ));
            for n in ["gate", "up"] {
                t.push(RandomTensor::new(
                    format!("{p}.mlp.{n}_proj.weight"),
                    vec![self.ffn, d],
                    uniform(d),
                    0.0,
                ));
            }
            t.push(RandomTensor::new(
                format!("{p}.mlp.down_proj.weight"),
                vec![d, self.ffn],
                uniform(self.ffn),
                0.0,
            ));
        }
        t.push(RandomTensor::new(
            "model.norm.weight".to_string(),
            vec![d],
            0.1,
            1.0,
        ));
        t.push(RandomTensor::new(
            "lm_head.weight".to_string(),
            vec![self.vocab, d],
            uniform(d),
            0.0,
        ));
        t
    }
}

/// xorshift64*: uniform in [-1, 1).
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> f32 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        let v = self.0.wrapping_mul(0x2545_F491_4F6C_DD1D) >> 40;
        (v as f32 / (1u64 << 24) as f32) * 2.0 - 1.0
    }
}

/// A tensor of random bf16 values, uniform in `shift ± scale`, generated when the writer asks
/// for its bytes (so one tensor at a time is in memory: at most the EuroLLM shape's embedding,
/// 0.5 GB).
struct RandomTensor {
    name: String,
    shape: Vec<usize>,
    /// Half-width of the uniform values.
    scale: f32,
    /// Their centre: 1 for norms, else 0.
    shift: f32,
    /// The random stream's seed, set per tensor so the values do not depend on write order.
    seed: u64,
}

impl RandomTensor {
    fn new(name: impl Into<String>, shape: Vec<usize>, scale: f32, shift: f32) -> RandomTensor {
        RandomTensor {
            name: name.into(),
            shape,
            scale,
            shift,
            seed: 0,
        }
    }
}

impl safetensors::View for &RandomTensor {
    fn dtype(&self) -> safetensors::Dtype {
        safetensors::Dtype::BF16
    }

    fn shape(&self) -> &[usize] {
        &self.shape
    }

    fn data(&self) -> std::borrow::Cow<'_, [u8]> {
        let mut rng = Rng(self.seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1);
        let n: usize = self.shape.iter().product();
        let mut buf = Vec::with_capacity(n * 2);
        for _ in 0..n {
            let x = self.shift + self.scale * rng.next();
            // bf16: the high half of the f32 (truncated; the values are random anyway).
            buf.extend_from_slice(&((x.to_bits() >> 16) as u16).to_le_bytes());
        }
        buf.into()
    }

    fn data_len(&self) -> usize {
        self.shape.iter().product::<usize>() * 2
    }
}

/// Writes `config.json` and `model.safetensors` (bf16, through the `safetensors` crate) of
/// `shape` into `dir`.
pub(crate) fn write_checkpoint(shape: &Shape, dir: &Path, seed: u64) -> Result<()> {
    std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    std::fs::write(dir.join("config.json"), shape.config_json())?;
    let mut tensors = shape.tensors();
    for (i, t) in tensors.iter_mut().enumerate() {
        t.seed = seed ^ (i as u64).wrapping_mul(0xD1B5_4A32_D192_ED03);
    }
    let path = dir.join("model.safetensors");
    let metadata = std::collections::HashMap::from([("format".to_string(), "pt".to_string())]);
    safetensors::serialize_to_file(
        tensors.iter().map(|t| (t.name.as_str(), t)),
        Some(metadata),
        &path,
    )
    .with_context(|| format!("cannot write {}", path.display()))?;
    Ok(())
}

/// The total size of the files in `dir`.
pub(crate) fn dir_bytes(dir: &Path) -> u64 {
    std::fs::read_dir(dir)
        .map(|entries| {
            entries
                .filter_map(|e| e.ok()?.metadata().ok())
                .filter(|m| m.is_file())
                .map(|m| m.len())
                .sum()
        })
        .unwrap_or(0)
}

/// One `scaling` line of the benchmark, as its fields.
#[derive(Debug)]
struct Line {
    fields: Vec<(String, String)>,
}

impl Line {
    fn get(&self, key: &str) -> &str {
        self.fields
            .iter()
            .find(|(k, _)| k == key)
            .map_or("?", |(_, v)| v.as_str())
    }
}

/// Builds the `targets` benchmark of `xlpatch-core` (bench profile) and returns its
/// executable, so that every shape runs the same binary however the sources change meanwhile.
fn build_bench() -> Result<PathBuf> {
    let output = cargo()
        .args([
            "bench",
            "--quiet",
            "-p",
            "xlpatch-core",
            "--bench",
            "targets",
            "--no-run",
            "--message-format=json",
        ])
        .stderr(std::process::Stdio::inherit())
        .output()
        .context("cannot start cargo bench --no-run")?;
    if !output.status.success() {
        bail!(
            "cargo bench --no-run -p xlpatch-core --bench targets failed ({})",
            output.status
        );
    }
    // cargo's JSON messages: the artifact of the `targets` bench names its executable.
    let stdout = String::from_utf8_lossy(&output.stdout);
    stdout
        .lines()
        .filter(|l| l.contains(r#""name":"targets""#))
        .find_map(|l| {
            let rest = &l[l.find(r#""executable":""#)? + r#""executable":""#.len()..];
            Some(PathBuf::from(&rest[..rest.find('"')?]))
        })
        .context("cargo bench --no-run named no executable for the `targets` bench")
}

/// Runs the `targets` benchmark `bench` on `model` and returns its `scaling` lines.
fn measure(
    bench: &Path,
    model: &Path,
    tokens: &str,
    generate: usize,
    reps: usize,
    threads: usize,
) -> Result<Vec<Line>> {
    let mut cmd = Command::new(bench);
    cmd.arg("--model")
        .arg(model)
        .args(["--tokens", tokens])
        .args(["--generate", &generate.to_string()])
        .args(["--reps", &reps.to_string()])
        .args(["--threads", &threads.to_string()]);
    let output = cmd
        .stderr(std::process::Stdio::inherit())
        .output()
        .with_context(|| format!("cannot start {cmd:?}"))?;
    let stdout = String::from_utf8_lossy(&output.stdout);
    if !output.status.success() {
        bail!("{cmd:?} failed ({}):\n{stdout}", output.status);
    }
    let lines: Vec<Line> = stdout
        .lines()
        .filter_map(|l| l.strip_prefix("scaling\t"))
        .map(|l| Line {
            fields: l
                .split('\t')
                .filter_map(|kv| kv.split_once('='))
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
        })
        .collect();
    if lines.is_empty() {
        bail!("{cmd:?} printed no `scaling` line:\n{stdout}");
    }
    Ok(lines)
}

/// Options of the task.
struct Options {
    quick: bool,
    reps: usize,
    threads: usize,
}

const USAGE: &str = "\
cargo xtask bench-scaling [--quick] [--reps N] [--threads N]

  --quick       only the smallest shapes
  --reps N      repetitions per shape (default 3)
  --threads N   intra-op threads (default 1)
";

fn parse(p: &mut Parser) -> Result<Options> {
    let mut o = Options {
        quick: false,
        reps: 3,
        threads: 1,
    };
    while let Some(arg) = p.next()? {
        match arg {
            Arg::Long("quick") => o.quick = true,
            Arg::Long("reps") => o.reps = args::positive(p, "reps", USAGE)?,
            Arg::Long("threads") => o.threads = args::positive(p, "threads", USAGE)?,
            other => args::unexpected(other, USAGE)?,
        }
    }
    Ok(o)
}

/// The task, with the options after `bench-scaling` still in `p`.
pub(crate) fn scaling(p: &mut Parser) -> Result<()> {
    let o = parse(p)?;
    plugins::build(true)?;
    run(cargo().args(["build", "--quiet", "--release", "-p", "xlpatch-cli"]))?;
    let bench = build_bench()?;
    let xlpatch = target_dir()?.join("release/xlpatch");
    let work = target_dir()?.join("bench-scaling");
    if work.exists() {
        std::fs::remove_dir_all(&work)
            .with_context(|| format!("cannot remove the leftovers in {}", work.display()))?;
    }
    let layers: &[usize] = if o.quick { &[4, 8] } else { &[4, 8, 16, 24] };
    // (shape, prompt lengths, generated tokens, repetitions)
    let mut plan: Vec<(Shape, &str, usize, usize)> = Vec::new();
    for &l in layers {
        plan.push((Shape::small(l), "32,64,128", 0, o.reps));
        plan.push((Shape::small(l), "64", 10, o.reps));
    }
    if !o.quick {
        plan.push((Shape::EUROLLM, "64", 0, 1));
    }
    let mut rows: Vec<(Shape, f64, u64, Line)> = Vec::new();
    let mut exported: Option<(Shape, PathBuf, f64, u64)> = None;
    for (shape, tokens, generate, reps) in plan {
        let name = shape.name();
        let (dir, export_s, bytes) = match &exported {
            Some((s, dir, t, b)) if s.name() == name => (dir.clone(), *t, *b),
            _ => {
                if let Some((_, old, _, _)) = exported.take() {
                    std::fs::remove_dir_all(&old)
                        .with_context(|| format!("cannot remove {}", old.display()))?;
                }
                let ckpt = work.join(format!("{name}-checkpoint"));
                let dir = work.join(&name);
                println!("bench-scaling: writing a random {name} checkpoint");
                write_checkpoint(&shape, &ckpt, shape.layers as u64)?;
                let start = Instant::now();
                run(Command::new(&xlpatch)
                    .arg("export")
                    .arg("--model")
                    .arg(&ckpt)
                    .arg("--out")
                    .arg(&dir))?;
                let export_s = start.elapsed().as_secs_f64();
                std::fs::remove_dir_all(&ckpt)
                    .with_context(|| format!("cannot remove {}", ckpt.display()))?;
                let bytes = dir_bytes(&dir);
                exported = Some((shape, dir.clone(), export_s, bytes));
                (dir, export_s, bytes)
            }
        };
        println!("bench-scaling: timing {name} at {tokens} tokens, {generate} generated");
        for line in measure(&bench, &dir, tokens, generate, reps, o.threads)? {
            println!(
                "  {} tokens: naive {} s, incremental {} s ({}×)",
                line.get("tokens"),
                line.get("naive_s"),
                line.get("incremental_s"),
                line.get("ratio")
            );
            rows.push((shape, export_s, bytes, line));
        }
    }
    if let Some((_, old, _, _)) = exported.take() {
        std::fs::remove_dir_all(&old)
            .with_context(|| format!("cannot remove {}", old.display()))?;
    }
    let _ = std::fs::remove_dir(&work);
    let table = render(&rows, &o);
    print!("\n{table}");
    let out = target_dir()?.join("bench/scaling.md");
    std::fs::create_dir_all(out.parent().expect("a file in a directory"))?;
    std::fs::write(&out, &table).with_context(|| format!("cannot write {}", out.display()))?;
    println!("written to {}", out.display());
    Ok(())
}

/// What the speed-up would be if a block's cost were proportional to the tokens it runs: the
/// naive path runs `T` tokens through `L` blocks for each of `L` start layers, the incremental
/// one `T` tokens through `L` blocks once and then the last 6 tokens through the `L - 1 - j`
/// blocks above each start layer `j` (head and generation left out).
fn block_token_ratio(layers: usize, tokens: usize) -> f64 {
    let (l, t) = (layers as f64, tokens as f64);
    (l * t * l) / (t * l + 6.0 * l * (l - 1.0) / 2.0)
}

fn render(rows: &[(Shape, f64, u64, Line)], o: &Options) -> String {
    let mut t = String::from(
        "| layers | d | heads / kv | ffn | vocab | export (s, GB) | prompt tokens | generated | naive (s) | incremental (s) | of which unpatched run (s) | speed-up | block-token ratio | max abs Δp | identical generations |\n\
         |---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|\n",
    );
    for (s, export_s, bytes, l) in rows {
        let _ = writeln!(
            t,
            "| {} | {} | {} / {} | {} | {} | {:.1}, {:.2} | {} | {} | {} | {} | {} | {}× | {:.1}× | {} | {} |",
            s.layers,
            s.d,
            s.heads,
            s.kv_heads,
            s.ffn,
            s.vocab,
            export_s,
            *bytes as f64 / 1e9,
            l.get("tokens"),
            l.get("generate"),
            l.get("naive_s"),
            l.get("incremental_s"),
            l.get("baseline_s"),
            l.get("ratio"),
            block_token_ratio(s.layers, l.get("tokens").parse().unwrap_or(0)),
            l.get("max_dp"),
            l.get("same_generations"),
        );
    }
    let load = std::fs::read_to_string("/proc/loadavg").unwrap_or_default();
    let _ = writeln!(
        t,
        "\nPer target: every start layer, patched 6 tokens before the end; median of {} \
         repetition(s) (1 for the EuroLLM shape); {} intra-op thread(s); load average at the \
         end: {}",
        o.reps,
        o.threads,
        load.split_whitespace()
            .take(3)
            .collect::<Vec<_>>()
            .join(" ")
    );
    t
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn checkpoints_are_valid_safetensors_with_every_tensor_in_range() {
        let shape = Shape {
            layers: 2,
            d: 16,
            heads: 2,
            kv_heads: 1,
            ffn: 24,
            vocab: 10,
        };
        let dir = tempfile::tempdir().unwrap();
        write_checkpoint(&shape, dir.path(), 7).unwrap();
        let bytes = std::fs::read(dir.path().join("model.safetensors")).unwrap();
        let st = safetensors::SafeTensors::deserialize(&bytes).unwrap();
        let expected = shape.tensors();
        assert_eq!(st.len(), expected.len());
        for t in &expected {
            let view = st.tensor(&t.name).unwrap();
            assert_eq!(view.dtype(), safetensors::Dtype::BF16, "{}", t.name);
            assert_eq!(view.shape(), t.shape.as_slice(), "{}", t.name);
            let values: Vec<f32> = view
                .data()
                .chunks_exact(2)
                .map(|c| f32::from_bits(u32::from(u16::from_le_bytes([c[0], c[1]])) << 16))
                .collect();
            // bf16 keeps 8 bits of mantissa, truncated: allow that much beyond the range.
            assert!(
                values
                    .iter()
                    .all(|v| (v - t.shift).abs() <= t.scale + v.abs() / 128.0),
                "{} has values outside {} ± {}",
                t.name,
                t.shift,
                t.scale
            );
            // Random, not constant.
            assert!(values.iter().any(|v| *v != values[0]), "{}", t.name);
        }
        let (_, meta) = safetensors::SafeTensors::read_metadata(&bytes).unwrap();
        assert_eq!(
            meta.metadata()
                .as_ref()
                .and_then(|m| m.get("format"))
                .map(String::as_str),
            Some("pt")
        );
        let config: serde_json::Value =
            serde_json::from_slice(&std::fs::read(dir.path().join("config.json")).unwrap())
                .unwrap();
        assert_eq!(config["num_hidden_layers"], 2);
    }
}
