//! `xlpatch predict`: what an exported model says after a prompt.

use std::path::PathBuf;

use anyhow::{Context, Result};
use clap::Args;
use xlpatch_core::model::{BackendOptions, Model, argmax, softmax};
use xlpatch_core::patch::{Baseline, Generation};

#[derive(Debug, Args)]
pub(crate) struct PredictArgs {
    /// An exported model directory (with a tokenizer).
    #[arg(long, value_name = "DIR")]
    model: PathBuf,
    /// The prompt; `\n`, `\t` and `\\` are unescaped unless --raw is given.
    #[arg(long)]
    prompt: String,
    /// Take the prompt literally.
    #[arg(long)]
    raw: bool,
    /// How many next-token candidates to show.
    #[arg(long, default_value_t = 10)]
    top_k: usize,
    /// How many tokens to generate greedily (stops at an end-of-sequence token).
    #[arg(long, default_value_t = 10)]
    max_new_tokens: usize,
    /// Intra-op threads (0: the runtime decides).
    #[arg(long, default_value_t = 0)]
    threads: usize,
    /// The backend plugin.
    #[arg(long, default_value = "backend-ort")]
    backend: String,
    /// A backend parameter `KEY=VALUE` (e.g. `device=cuda` for backend-candle); repeatable.
    #[arg(long = "backend-param", value_name = "KEY=VALUE", value_parser = key_value)]
    backend_params: Vec<(String, String)>,
    /// Print JSON instead of text.
    #[arg(long)]
    json: bool,
    /// Read every model file to check it against its manifest (by default a file whose
    /// size and modification time are unchanged since its hash was verified is not read
    /// again).
    #[arg(long)]
    verify: bool,
    /// Run a prompt longer than the model's context length, with a warning, instead of
    /// refusing it.
    #[arg(long)]
    allow_beyond_context: bool,
}

pub(crate) fn key_value(s: &str) -> Result<(String, String), String> {
    s.split_once('=')
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .ok_or_else(|| format!("{s:?} is not KEY=VALUE"))
}

pub(crate) fn unescape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut chars = s.chars();
    while let Some(c) = chars.next() {
        if c != '\\' {
            out.push(c);
            continue;
        }
        match chars.next() {
            Some('n') => out.push('\n'),
            Some('t') => out.push('\t'),
            Some('\\') => out.push('\\'),
            Some(other) => {
                out.push('\\');
                out.push(other);
            }
            None => out.push('\\'),
        }
    }
    out
}

pub(crate) fn predict(args: PredictArgs, plugin_dirs: &[PathBuf]) -> Result<()> {
    let (_, registry, refused) = xlpatch_core::plugins::discover(plugin_dirs);
    for e in &refused {
        eprintln!("warning: {}", crate::hints::with_causes(e));
    }
    let options = BackendOptions {
        plugin: args.backend.clone(),
        threads: args.threads,
        params: args.backend_params.iter().cloned().collect(),
        ..BackendOptions::default()
    };
    if args.verify {
        // Every byte read now; the backend's own check then finds the hashes just made.
        let m = xlpatch_model::Manifest::read(&args.model)?;
        m.verify_full(&args.model)?;
    }
    let mut model = Model::open(&registry, &args.model, &options)
        .with_context(|| format!("cannot open {}", args.model.display()))?;
    let prompt = if args.raw {
        args.prompt.clone()
    } else {
        unescape(&args.prompt)
    };
    let ids = model.encode(&prompt)?;
    let eos: Vec<u32> = model
        .manifest()
        .eos_token_id
        .clone()
        .unwrap_or_default()
        .into_iter()
        .filter_map(|i| u32::try_from(i).ok())
        .collect();
    match model.manifest().context_length {
        None => eprintln!(
            "warning: {}: the manifest records no context length (an export by an older \
             xlpatch), so the prompt's length is not checked against it; export again to \
             record it",
            args.model.display()
        ),
        Some(limit) => {
            let generated = args.max_new_tokens.saturating_sub(1);
            if (ids.len() + generated) as u64 > limit {
                let what = format!(
                    "the prompt has {} tokens (+{generated} generated) but {} was trained on \
                     {limit} positions (its manifest's context_length): positions past them \
                     were never trained",
                    ids.len(),
                    args.model.display()
                );
                if !args.allow_beyond_context {
                    anyhow::bail!(
                        "{what}; shorten the prompt or lower --max-new-tokens, or pass \
                         --allow-beyond-context to run it anyway"
                    );
                }
                eprintln!("warning: {what} (allowed by --allow-beyond-context)");
            }
        }
    }
    let base = Baseline::run(&mut model, &ids)?;
    if let Some(&bad) = base.logits().iter().find(|x| !x.is_finite()) {
        return Err(xlpatch_core::Error::NonFinite {
            checkpoint: args.model.display().to_string(),
            prompt: format!("{prompt:?}"),
            layer: base.first_non_finite_block(),
            what: "a next-token logit".into(),
            value: bad,
        }
        .into());
    }
    let stop = |id: u32| eos.contains(&id);
    let generated = base.generate(
        &mut model,
        &Generation {
            max_new: args.max_new_tokens,
            stop: &stop,
        },
    )?;
    let logits = base.logits();
    let probs = softmax(logits);
    let mut order: Vec<usize> = (0..probs.len()).collect();
    order.sort_by(|&a, &b| probs[b].total_cmp(&probs[a]).then(a.cmp(&b)));
    debug_assert_eq!(order.first().copied(), Some(argmax(logits)));
    let top: Vec<(usize, f32, String)> = order
        .iter()
        .take(args.top_k)
        .map(|&i| Ok((i, probs[i], model.decode(&[i as u32])?)))
        .collect::<Result<_>>()?;
    let continuation = model.decode(&generated)?;
    if args.json {
        let row = serde_json::json!({
            "prompt_tokens": ids.len(),
            "top": top.iter().map(|(id, p, text)| serde_json::json!({"id": id, "prob": p, "text": text})).collect::<Vec<_>>(),
            "generated_ids": generated,
            "generated": continuation,
        });
        println!("{row}");
        return Ok(());
    }
    println!("{} prompt tokens; next token:", ids.len());
    for (rank, (id, p, text)) in top.iter().enumerate() {
        println!(
            "{:>3}. {:>8.4}  {:<20} (id {id})",
            rank + 1,
            p,
            format!("{text:?}")
        );
    }
    println!("greedy continuation: {continuation:?}");
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::unescape;

    #[test]
    fn unescapes_newlines_tabs_and_backslashes_only() {
        assert_eq!(unescape(r#"a\nb\tc\\d\"e\"#), "a\nb\tc\\d\\\"e\\");
    }
}
