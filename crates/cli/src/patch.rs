//! `xlpatch patch`: one patched run of one prompt, beside the unpatched run: the top-k next
//! tokens and the greedy generations of both, so that a case can be looked at before a
//! sweep. Computed by the sweep's engine (docs/method.md, "Patching"): the source prompts'
//! residuals at their word's last token, combined by the extractor plugin, written by the
//! patch plugin into the target's residual at its word's last token in every block from the
//! start layer on (`from_layer`), or only in the start layer's block at the last token
//! (`single_layer`), from one unpatched run of the target; generation stops at the answer's
//! closing quote, as in a sweep.

use std::ops::Range;
use std::path::PathBuf;

use anyhow::{Context, Result, bail};
use clap::Args;
use xlpatch_core::abi::{Metric, TensorMut, TensorRef};
use xlpatch_core::config::Variant;
use xlpatch_core::latents::{combine, residuals};
use xlpatch_core::model::{BackendOptions, Model};
use xlpatch_core::pairs::first_token;
use xlpatch_core::patch::{
    Baseline, Batching, Generation, Patch, answer_stops, generate_many, patched,
};
use xlpatch_core::prompt::tokenize;

use crate::predict::{key_value, unescape};

#[derive(Debug, Args)]
pub(crate) struct PatchArgs {
    /// An exported model directory (with a tokenizer).
    #[arg(long, value_name = "DIR")]
    model: PathBuf,
    /// The target prompt, ending where the answer starts (`… - Deutsch: "`); `\n`, `\t` and
    /// `\\` are unescaped unless --raw is given.
    #[arg(long)]
    prompt: String,
    /// The target's word whose last token is patched (its last occurrence in the prompt).
    /// Default: the query word, between the first two quotes of the prompt's last line.
    /// Not used by --variant single_layer, which patches the prompt's last token.
    #[arg(long)]
    word: Option<String>,
    /// A source prompt, cut right after its word (`… - Deutsch: "Hund`); repeatable: the
    /// latents of several are combined by --extractor, as a sweep setting combines its
    /// source prompts (tgt: one of the target's own pair; self: a copy prompt in the output
    /// language, `Deutsch: "Hund` - Deutsch: "Hund`; en_en: an English copy prompt).
    #[arg(long, value_name = "PROMPT", required_unless_present = "identity")]
    source: Vec<String>,
    /// The source prompts' word whose last token's residuals are read (its last
    /// occurrence). Default: the prompt's last token, the word's in a cut prompt; with
    /// --variant single_layer always the last token, as in a sweep.
    #[arg(long)]
    source_word: Option<String>,
    /// Patch with the target's own residuals at the patched token instead of a source (the
    /// sweep's tgt_tgt setting, the identity control).
    #[arg(long, conflicts_with = "source")]
    identity: bool,
    /// The start layer j (0-based).
    #[arg(long, value_name = "J")]
    layer: usize,
    /// from_layer: patch blocks j..L-1 at the target word's last token; single_layer: patch
    /// block j only, at the prompt's last token (a sweep's `variant`).
    #[arg(long, default_value = "from_layer", value_parser = variant)]
    variant: Variant,
    /// A concept whose probability to show, as its comma-separated forms (`Hund,Köter`):
    /// the mass on the first token of each form and of the form after a space, as a sweep's
    /// p_* columns measure it; repeatable.
    #[arg(long, value_name = "FORMS")]
    watch: Vec<String>,
    /// How many next-token candidates to show.
    #[arg(long, default_value_t = 10)]
    top_k: usize,
    /// Greedy tokens to generate (stops at the closing quote or end of sequence, as a sweep).
    #[arg(long, default_value_t = 10)]
    max_new_tokens: usize,
    /// Take the prompts literally.
    #[arg(long)]
    raw: bool,
    /// The patch strategy plugin.
    #[arg(long, default_value = "patch-replace")]
    patch: String,
    /// A patch strategy parameter (`alpha=0.5`); repeatable.
    #[arg(long = "patch-param", value_name = "KEY=VALUE", value_parser = key_value)]
    patch_params: Vec<(String, String)>,
    /// The extractor combining several source latents.
    #[arg(long, default_value = "extract-mean")]
    extractor: String,
    /// An extractor parameter; repeatable.
    #[arg(long = "extractor-param", value_name = "KEY=VALUE", value_parser = key_value)]
    extractor_params: Vec<(String, String)>,
    /// The metric plugin measuring --watch concepts.
    #[arg(long, default_value = "metric-concept-prob")]
    metric: String,
    /// The backend plugin.
    #[arg(long, default_value = "backend-ort")]
    backend: String,
    /// A backend parameter (`device=cuda` for backend-candle); repeatable.
    #[arg(long = "backend-param", value_name = "KEY=VALUE", value_parser = key_value)]
    backend_params: Vec<(String, String)>,
    /// Intra-op threads (0: the runtime decides).
    #[arg(long, default_value_t = 0)]
    threads: usize,
    /// Print JSON instead of text.
    #[arg(long)]
    json: bool,
}

fn variant(s: &str) -> Result<Variant, String> {
    serde_json::from_value(serde_json::Value::String(s.to_string()))
        .map_err(|_| format!("{s:?} is not from_layer or single_layer"))
}

/// The byte span of `word`'s last occurrence in `text`.
fn last_occurrence(text: &str, word: &str, what: &str) -> Result<Range<usize>> {
    match text.rfind(word) {
        Some(at) if !word.is_empty() => Ok(at..at + word.len()),
        _ => bail!("{what}: {word:?} does not occur in the prompt {text:?}"),
    }
}

/// The query word of a prompt in the default template: between the first two quotes of its
/// last line.
fn query_word(text: &str) -> Result<Range<usize>> {
    let line = text.rfind('\n').map_or(0, |i| i + 1);
    let mut quotes = text[line..].match_indices('"').map(|(i, _)| line + i);
    match (quotes.next(), quotes.next()) {
        (Some(a), Some(b)) if b > a + 1 => Ok(a + 1..b),
        _ => bail!(
            "cannot find the query word (between the first two quotes of the prompt's last \
             line) in {text:?}: name it with --word"
        ),
    }
}

fn pairs(p: &[(String, String)]) -> Vec<(&str, &str)> {
    p.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect()
}

/// What one run says: the top-k, the greedy generation, the watched concepts.
struct Said {
    top: Vec<(u32, f32, String)>,
    generated: Vec<u32>,
    text: String,
    watched: Vec<f32>,
}

pub(crate) fn patch(args: PatchArgs, plugin_dirs: &[PathBuf]) -> Result<()> {
    let (_, registry, refused) = xlpatch_core::plugins::discover(plugin_dirs);
    for e in &refused {
        eprintln!("warning: {e}");
    }
    let options = BackendOptions {
        plugin: args.backend.clone(),
        threads: args.threads,
        params: args.backend_params.iter().cloned().collect(),
        ..BackendOptions::default()
    };
    let mut model = Model::open(&registry, &args.model, &options)
        .with_context(|| format!("cannot open {}", args.model.display()))?;
    let text = |p: &str| if args.raw { p.to_string() } else { unescape(p) };
    let info = model.info();
    let (n_layers, d, vocab) = (
        info.n_layers as usize,
        info.d_model as usize,
        info.vocab as usize,
    );
    if args.layer >= n_layers {
        bail!(
            "--layer {}: the model has {n_layers} layers (0..{n_layers})",
            args.layer
        );
    }
    let single = args.variant == Variant::SingleLayer;

    // The target and its patched position, located as a sweep locates them.
    let target = text(&args.prompt);
    let span = match &args.word {
        Some(w) => last_occurrence(&target, w, "--word")?,
        None if single => 0..0,
        None => query_word(&target)?,
    };
    let (ids, position) = if single {
        let ids = model.encode(&target)?;
        let last = ids.len().checked_sub(1).context("the prompt is empty")?;
        (ids, last)
    } else {
        let t = tokenize(model.tokenizer()?, &target, &span)?;
        (t.ids, t.word_end.token)
    };
    let word = target.get(span).unwrap_or("").to_string();

    // The latent: the sources' residuals combined, or the target's own.
    let base = Baseline::run(&mut model, &ids)?;
    let latent = if args.identity {
        base.residuals_at(position)?
    } else {
        let mut latents = Vec::with_capacity(args.source.len());
        for s in &args.source {
            let s = text(s);
            let (ids, at) = match (&args.source_word, single) {
                (Some(w), false) => {
                    let span = last_occurrence(&s, w, "--source-word")?;
                    let t = tokenize(model.tokenizer()?, &s, &span)?;
                    (t.ids, t.word_end.token)
                }
                _ => {
                    let ids = model.encode(&s)?;
                    let last = ids
                        .len()
                        .checked_sub(1)
                        .context("a source prompt is empty")?;
                    (ids, last)
                }
            };
            latents.push(residuals(&mut model, &ids, at)?);
        }
        let extractor = registry
            .get(&args.extractor)?
            .extractor(&pairs(&args.extractor_params))?;
        combine(&extractor, &latents, n_layers, d)?
    };
    let strategy = registry
        .get(&args.patch)?
        .patch_strategy(&pairs(&args.patch_params))?;
    let patch = Patch {
        position,
        latent: &latent,
        scope: args.variant.into(),
    };
    let keep = args.max_new_tokens > 0;
    let run = patched(&mut model, &base, &patch, &strategy, Batching::Layers, keep)?;
    let stops = answer_stops(&model)?;
    let stop = |id: u32| stops.get(id as usize).copied().unwrap_or(true);
    let generation = Generation {
        max_new: args.max_new_tokens,
        stop: &stop,
    };
    let unpatched = base.unpatched();
    let mut gens = generate_many(&mut model, &[&unpatched, &run], &generation)?;
    let patched_gen = gens[1].swap_remove(args.layer);
    let unpatched_gen = gens[0].swap_remove(0);

    // The watched concepts' token sets, as a sweep's p_* columns.
    let mut watch_ids = Vec::with_capacity(args.watch.len());
    for forms in &args.watch {
        let mut set = Vec::new();
        for form in forms.split(',').map(str::trim).filter(|f| !f.is_empty()) {
            for t in [form.to_string(), format!(" {form}")] {
                set.extend(first_token(model.tokenizer()?, &t)?);
            }
        }
        set.sort_unstable();
        set.dedup();
        if set.is_empty() {
            bail!("--watch {forms:?}: no form to measure");
        }
        watch_ids.push(set);
    }
    let metric = registry.get(&args.metric)?.metric(&[])?;
    let said = |probs: &[f32], generated: Vec<u32>| -> Result<Said> {
        let mut order: Vec<usize> = (0..probs.len()).collect();
        order.sort_by(|&a, &b| probs[b].total_cmp(&probs[a]).then(a.cmp(&b)));
        let top = order
            .iter()
            .take(args.top_k)
            .map(|&i| Ok((i as u32, probs[i], model.decode(&[i as u32])?)))
            .collect::<Result<_>>()?;
        let mut watched = Vec::with_capacity(watch_ids.len());
        for set in &watch_ids {
            let mut out = [0f32];
            metric.compute(
                TensorRef::new(probs, &[1, vocab])?,
                set,
                TensorMut::new(&mut out, &[1])?,
            )?;
            watched.push(out[0]);
        }
        Ok(Said {
            top,
            text: model.decode(&generated)?,
            generated,
            watched,
        })
    };
    let before = said(&base.probs(), unpatched_gen)?;
    let after = said(
        &run.probs()[args.layer * vocab..(args.layer + 1) * vocab],
        patched_gen,
    )?;

    let variant_name = match args.variant {
        Variant::FromLayer => "from_layer",
        Variant::SingleLayer => "single_layer",
    };
    if args.json {
        let side = |s: &Said| {
            serde_json::json!({
                "top": s.top.iter().map(|(id, p, t)| serde_json::json!({"id": id, "prob": p, "text": t})).collect::<Vec<_>>(),
                "generated_ids": s.generated,
                "generation": s.text,
                "watch": s.watched,
            })
        };
        let row = serde_json::json!({
            "prompt_tokens": ids.len(),
            "position": position,
            "word": word,
            "layer": args.layer,
            "layers": n_layers,
            "variant": variant_name,
            "sources": if args.identity { 0 } else { args.source.len() },
            "watch": args.watch.iter().zip(&watch_ids).map(|(f, ids)| serde_json::json!({"forms": f, "ids": ids})).collect::<Vec<_>>(),
            "unpatched": side(&before),
            "patched": side(&after),
        });
        println!("{row}");
        return Ok(());
    }
    let what = match args.variant {
        Variant::FromLayer => format!(
            "token {position} ({word:?}) in blocks {}..{}",
            args.layer,
            n_layers - 1
        ),
        Variant::SingleLayer => format!("the last token ({position}) in block {}", args.layer),
    };
    let source = if args.identity {
        "the target's own residuals (identity)".to_string()
    } else {
        format!(
            "{} source prompt{} ({}, {})",
            args.source.len(),
            if args.source.len() == 1 { "" } else { "s" },
            args.extractor,
            args.patch
        )
    };
    println!(
        "{} prompt tokens; {variant_name} patch of {what} with {source}",
        ids.len()
    );
    let cell = |s: &Said, k: usize| {
        s.top
            .get(k)
            .map(|(_, p, t)| format!("{p:>8.4}  {:<18}", format!("{t:?}")))
            .unwrap_or_default()
    };
    let label = match args.variant {
        Variant::FromLayer => format!("patched from layer {}", args.layer),
        Variant::SingleLayer => format!("patched at layer {}", args.layer),
    };
    println!("{:>4}  {:<28}  {label}", "", "unpatched");
    for k in 0..args.top_k.min(before.top.len().max(after.top.len())) {
        println!(
            "{:>3}.  {:<28}  {}",
            k + 1,
            cell(&before, k),
            cell(&after, k)
        );
    }
    for ((forms, b), a) in args.watch.iter().zip(&before.watched).zip(&after.watched) {
        println!("P({forms}): {b:.4} -> {a:.4}");
    }
    println!("generation: {:?} -> {:?}", before.text, after.text);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_query_word_is_between_the_last_lines_first_quotes() {
        let p = "Français: \"chien\" - Deutsch: \"Hund\"\nFrançais: \"livre\" - Deutsch: \"";
        assert_eq!(&p[query_word(p).unwrap()], "livre");
        assert!(query_word("no quotes").is_err());
        assert_eq!(last_occurrence("a b a", "a", "w").unwrap(), 4..5);
        assert!(last_occurrence("a b", "c", "w").is_err());
        assert_eq!(variant("single_layer").unwrap(), Variant::SingleLayer);
        assert!(variant("other").is_err());
    }
}
