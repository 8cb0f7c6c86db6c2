//! A sweep (DESIGN §1, issue 5): for every checkpoint of a series, every target language pair,
//! every concept pair, every setting and every start layer, the patched next-token
//! distribution, its metrics and the greedy generation, written as result rows.
//!
//! The plan is fixed before any model runs and depends only on the config and the tokenizer:
//! concept pairs per target pair ([`draw_pairs`]), the target prompt and the source prompts of
//! each setting (demonstrations drawn from seeded streams named after the unit and setting),
//! all tokenized once, since a series shares its tokenizer (checked). It is written as
//! `prompts.jsonl` beside the results. Work is divided into *units*: one target prompt on one
//! checkpoint, every setting and start layer. A unit runs the target once unpatched (shared by
//! every setting and by the `unpatched` rows), computes every source latent of the unit in
//! left-padded batches, patches from the unpatched run incrementally ([`patched`]), and
//! generates for the rows of all settings in one batch ([`generate`]).
//!
//! `tgt_tgt` uses the target's own residuals at the patched position as its latent, which
//! makes it an exact identity control under `patch-replace`.

use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};
use std::str::FromStr;

use serde_json::json;
use xlpatch_abi::loader::Registry;
use xlpatch_abi::{Metric, PatchStrategy, TensorMut, TensorRef};
use xlpatch_concepts::{ConceptTable, Lang};

use crate::Error;
use crate::config::{Demos, Method, Setting, SweepConfig, Variant};
use crate::latents::{Site, combine, residuals_from};
use crate::model::{BackendOptions, Model};
use crate::pairs::{ConceptPair, ConceptTokens, draw_pairs, vocab_pieces};
use crate::patch::{
    Baseline, Batching, Generation, LayerResults, Patch, Patched, generate, naive, patched_many,
    stops_from,
};
use crate::prefix::{PrefixCache, PrefixRun};
use crate::prompt::{Prompt, PromptBuilder, PromptKind, Tokenized};
use crate::results::{ResultsWriter, Row, TIMINGS_FILE};
use crate::rng::Rng;

/// The part `index` of `count` of a sweep (`k/n` on the command line, `0 <= k < n`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Shard {
    /// Which part.
    pub index: usize,
    /// Of how many.
    pub count: usize,
}

impl Default for Shard {
    fn default() -> Self {
        Shard { index: 0, count: 1 }
    }
}

impl FromStr for Shard {
    type Err = Error;

    fn from_str(s: &str) -> Result<Shard, Error> {
        let parsed = s
            .split_once('/')
            .and_then(|(k, n)| Some((k.trim().parse().ok()?, n.trim().parse().ok()?)));
        match parsed {
            Some((index, count)) if index < count => Ok(Shard { index, count }),
            _ => Err(Error::Config(format!(
                "shard {s:?} is not k/n with 0 <= k < n"
            ))),
        }
    }
}

impl fmt::Display for Shard {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.index, self.count)
    }
}

/// A prompt of the plan with its tokens.
#[derive(Debug, Clone)]
pub(crate) struct Planned {
    pub(crate) prompt: Prompt,
    pub(crate) tokens: Tokenized,
}

/// One target prompt with its source prompts per setting.
#[derive(Debug, Clone)]
pub(crate) struct Item {
    pub(crate) in_lang: Lang,
    pub(crate) out_lang: Lang,
    pub(crate) pair: ConceptPair,
    pub(crate) target: Planned,
    pub(crate) sources: BTreeMap<Setting, Vec<Planned>>,
}

impl Item {
    fn key(&self) -> String {
        format!(
            "{}-{}/{}>{}",
            self.in_lang, self.out_lang, self.pair.source, self.pair.target
        )
    }
}

/// What a sweep reports as it goes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Progress {
    /// Units finished in this shard, including those found done.
    pub done: usize,
    /// Units in this shard.
    pub total: usize,
    /// Units found done when the sweep started.
    pub resumed: usize,
    /// The checkpoint being run.
    pub checkpoint: String,
}

/// What a finished sweep did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Outcome {
    /// Units run now.
    pub ran: usize,
    /// Units found done.
    pub resumed: usize,
    /// Units in this shard.
    pub total: usize,
}

/// The source prompts of one setting for a target (empty for `unpatched` and `tgt_tgt`).
fn source_specs(
    setting: Setting,
    in_lang: Lang,
    out_lang: Lang,
    seen: &[Lang],
) -> Vec<(Lang, Lang)> {
    let en = Lang::from_code("en").expect("English is known");
    match setting {
        Setting::Tgt => vec![(in_lang, out_lang)],
        Setting::Seen => {
            let ok = |l: &Lang| *l != in_lang && *l != out_lang && *l != en;
            let langs: Vec<Lang> = seen.iter().copied().filter(ok).collect();
            langs
                .iter()
                .flat_map(|&a| langs.iter().filter(move |&&b| b != a).map(move |&b| (a, b)))
                .collect()
        }
        Setting::EnEn => vec![(en, en)],
        Setting::SelfCopy => vec![(out_lang, out_lang)],
        Setting::TgtTgt | Setting::Unpatched => Vec::new(),
    }
}

fn prompt_record(
    key: &str,
    role: &str,
    setting: Option<Setting>,
    p: &Planned,
) -> serde_json::Value {
    json!({
        "item": key,
        "role": role,
        "setting": setting.map(Setting::name),
        "kind": p.prompt.kind.name(),
        "concept": p.prompt.concept,
        "in_lang": p.prompt.in_lang.code(),
        "out_lang": p.prompt.out_lang.code(),
        "word": p.prompt.word,
        "answer": p.prompt.answer,
        "demos": p.prompt.demos,
        "text": p.prompt.text,
        "word_span": [p.prompt.word_span.start, p.prompt.word_span.end],
        "ids": p.tokens.ids,
        "word_end": p.tokens.word_end.token,
        "merged": p.tokens.word_end.merged,
        "prefix": p.tokens.prefix,
        "prefix_len": p.prompt.prefix_len,
    })
}

/// The token sets behind a target's probability columns, by column name: what a row's
/// `p_*` values sum over (written into `prompts.jsonl` so another tool can compute the same).
fn metric_sets(
    plan_study: &[Lang],
    tokens: &ConceptTokens,
    item: &Item,
) -> Vec<(&'static str, Vec<u32>)> {
    let (src, tgt) = (item.pair.source.as_str(), item.pair.target.as_str());
    let (in_l, out_l) = (item.in_lang, item.out_lang);
    let union = |c: &str| -> Vec<u32> {
        let mut ids: Vec<u32> = plan_study
            .iter()
            .filter(|&&l| l != in_l && l != out_l)
            .flat_map(|&l| tokens.get(c, l).iter().copied())
            .collect();
        ids.sort_unstable();
        ids.dedup();
        ids
    };
    vec![
        ("p_src_out", tokens.get(src, out_l).to_vec()),
        ("p_tgt_out", tokens.get(tgt, out_l).to_vec()),
        ("p_src_in", tokens.get(src, in_l).to_vec()),
        ("p_tgt_in", tokens.get(tgt, in_l).to_vec()),
        ("p_src_other", union(src)),
        ("p_tgt_other", union(tgt)),
        ("p_src_out_aug", tokens.augmented(src, out_l).to_vec()),
        ("p_tgt_out_aug", tokens.augmented(tgt, out_l).to_vec()),
    ]
}

/// Everything fixed before the first model runs.
struct Plan {
    models: Vec<(PathBuf, xlpatch_model::Manifest)>,
    study: Vec<Lang>,
    table: ConceptTable,
    tokens: ConceptTokens,
    /// The series' shared tokenizer's tokens as text, by id.
    pieces: Vec<String>,
    items: Vec<Item>,
}

fn plan(config: &SweepConfig, base: &Path) -> Result<Plan, Error> {
    config.validate()?;
    let dirs = config.model_dirs(base)?;
    if dirs.is_empty() {
        return Err(Error::Config("no model directory given".into()));
    }
    let mut models = Vec::with_capacity(dirs.len());
    for dir in dirs {
        let manifest = xlpatch_model::Manifest::read(&dir)?;
        models.push((dir, manifest));
    }
    let tok_hash =
        |m: &xlpatch_model::Manifest| m.tokenizer.as_ref().and_then(|t| m.files.get(t).cloned());
    let (first_dir, first) = &models[0];
    let Some(tok_file) = &first.tokenizer else {
        return Err(Error::Tokenizer {
            path: first_dir.clone(),
            what: "the model directory has no tokenizer (export with --tokenizer)".into(),
        });
    };
    if let Some((dir, _)) = models.iter().find(|(_, m)| tok_hash(m) != tok_hash(first)) {
        return Err(Error::Config(format!(
            "{} has another tokenizer than {}: a series must share its tokenizer",
            dir.display(),
            first_dir.display()
        )));
    }
    let mut names = std::collections::BTreeSet::new();
    if let Some((dir, _)) = models
        .iter()
        .find(|(d, _)| !names.insert(checkpoint_name(d)))
    {
        return Err(Error::Config(format!(
            "two checkpoints are named {:?}: results name checkpoints by directory",
            checkpoint_name(dir)
        )));
    }
    let tok_path = first_dir.join(tok_file);
    let tokenizer = tokenizers::Tokenizer::from_file(&tok_path).map_err(|e| Error::Tokenizer {
        path: tok_path.clone(),
        what: e.to_string(),
    })?;
    let study = config.study_languages()?;
    let seen = config.seen_languages()?;
    let mut table = ConceptTable::load(base.join(&config.concepts))?.subset(&study)?;
    if let Some(ids) = config.concept_ids(base)? {
        table = table.only(&ids).map_err(|e| {
            Error::Config(format!(
                "concept_list {}: {e}",
                base.join(config.concept_list.as_deref().unwrap_or(""))
                    .display()
            ))
        })?;
    }
    let pieces = vocab_pieces(&tokenizer)?;
    let tokens = ConceptTokens::build_with(&tokenizer, &table, &study, &pieces)?;
    let concepts: Vec<String> = tokens.concepts().map(str::to_string).collect();
    let template = config.template()?;
    let builder = PromptBuilder::new(&table, &template, config.n_shots);
    let source_kind = match config.variant {
        Variant::FromLayer => PromptKind::Cut,
        Variant::SingleLayer => PromptKind::Translation,
    };
    let planned = |prompt: Prompt| -> Result<Planned, Error> {
        let tokens = prompt.tokenize(&tokenizer)?;
        Ok(Planned { prompt, tokens })
    };
    if let Some(file) = &config.prompts {
        let items = crate::replay::read_items(&base.join(file), &config.settings)?;
        for item in &items {
            for lang in [item.in_lang, item.out_lang] {
                if !study.contains(&lang) {
                    return Err(Error::Config(format!(
                        "prompts {file}: item {} uses {lang}, which is not a study language",
                        item.key()
                    )));
                }
            }
            for c in [&item.pair.source, &item.pair.target] {
                if tokens.get(c, item.out_lang).is_empty() {
                    return Err(Error::Config(format!(
                        "prompts {file}: concept {c:?} of item {} is not in the concept table \
                         (or has no form in a study language)",
                        item.key()
                    )));
                }
            }
        }
        return Ok(Plan {
            models,
            study,
            table,
            tokens,
            pieces,
            items,
        });
    }
    let mut drawn = Vec::new();
    for (in_lang, out_lang) in config.target_pairs()? {
        let pair_seed = Rng::stream(config.seed, &format!("pairs/{in_lang}-{out_lang}")).next_u64();
        let pairs = draw_pairs(
            &tokens,
            &concepts,
            config.concept_pairs,
            config.collision.into(),
            pair_seed,
        )?;
        drawn.push((in_lang, out_lang, pairs));
    }
    // Shared demonstrations avoid every concept a pair of the sweep uses, so that no prompt's
    // demonstrations show its own concepts.
    let used_owned: Vec<String> = drawn
        .iter()
        .flat_map(|(_, _, pairs): &(Lang, Lang, Vec<ConceptPair>)| pairs.iter())
        .flat_map(|p| [p.source.clone(), p.target.clone()])
        .collect();
    let used: Vec<&str> = used_owned.iter().map(String::as_str).collect();
    let mut shared: BTreeMap<(Lang, Lang), Vec<String>> = BTreeMap::new();
    let mut demos_for =
        |key: &str, who: &str, a: Lang, b: Lang, exclude: &[&str]| match config.demos {
            Demos::PerPrompt => {
                let mut rng = Rng::stream(config.seed, &format!("demos/{key}/{who}"));
                builder.draw_demos(&mut rng, a, b, exclude)
            }
            Demos::PerPair => {
                if let Some(d) = shared.get(&(a, b)) {
                    return Ok(d.clone());
                }
                let mut rng = Rng::stream(config.seed, &format!("demos/{a}-{b}"));
                let d = builder.draw_demos(&mut rng, a, b, &used)?;
                shared.insert((a, b), d.clone());
                Ok(d)
            }
        };
    let mut items = Vec::new();
    for (in_lang, out_lang, pairs) in drawn {
        for pair in pairs {
            let exclude = [pair.source.as_str(), pair.target.as_str()];
            let key = format!("{in_lang}-{out_lang}/{}>{}", pair.source, pair.target);
            let demos = demos_for(&key, "target", in_lang, out_lang, &exclude)?;
            let target = planned(builder.build(
                PromptKind::Translation,
                &pair.target,
                in_lang,
                out_lang,
                &demos,
            )?)?;
            let mut sources = BTreeMap::new();
            for &setting in &config.settings {
                let mut list = Vec::new();
                for (a, b) in source_specs(setting, in_lang, out_lang, &seen) {
                    let who = format!("{}/{a}-{b}", setting.name());
                    let demos = demos_for(&key, &who, a, b, &exclude)?;
                    list.push(planned(builder.build(
                        source_kind,
                        &pair.source,
                        a,
                        b,
                        &demos,
                    )?)?);
                }
                if setting == Setting::Seen && list.is_empty() {
                    return Err(Error::Config(format!(
                        "setting seen: no pair of seen languages avoids {in_lang}, {out_lang} and en"
                    )));
                }
                sources.insert(setting, list);
            }
            items.push(Item {
                in_lang,
                out_lang,
                pair,
                target,
                sources,
            });
        }
    }
    Ok(Plan {
        models,
        study,
        table,
        tokens,
        pieces,
        items,
    })
}

fn checkpoint_name(dir: &Path) -> String {
    dir.file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| dir.display().to_string())
}

/// Writes `text` to `dir/name`, or checks that the file there already holds it.
fn write_or_check(dir: &Path, name: &str, text: &str) -> Result<(), Error> {
    let path = dir.join(name);
    match std::fs::read_to_string(&path) {
        Ok(old) if old == text => Ok(()),
        Ok(_) => Err(Error::Results {
            path,
            what: "belongs to another sweep (config, models or prompts differ); use another --out"
                .into(),
        }),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            std::fs::write(&path, text).map_err(|e| Error::Results {
                path: path.clone(),
                what: e.to_string(),
            })
        }
        Err(e) => Err(Error::Results {
            path,
            what: e.to_string(),
        }),
    }
}

/// The plugins of a sweep.
struct Plugins {
    strategy: Box<dyn PatchStrategy>,
    extractor: Box<dyn xlpatch_abi::Extractor>,
    metric: Box<dyn Metric>,
}

fn plugins(config: &SweepConfig, registry: &Registry) -> Result<Plugins, Error> {
    let p = &config.plugins;
    fn pairs(m: &std::collections::BTreeMap<String, String>) -> Vec<(&str, &str)> {
        m.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect()
    }
    Ok(Plugins {
        strategy: Box::new(
            registry
                .get(&p.patch)?
                .patch_strategy(&pairs(&p.patch_params))?,
        ),
        extractor: Box::new(
            registry
                .get(&p.extractor)?
                .extractor(&pairs(&p.extractor_params))?,
        ),
        metric: Box::new(registry.get(&p.metric)?.metric(&pairs(&p.metric_params))?),
    })
}

/// Runs (or resumes) the sweep of `config` into `out`; relative paths of the config are
/// taken from `base`. Only the units of `shard` run. `progress` is called after every unit.
pub fn run(
    config: &SweepConfig,
    registry: &Registry,
    base: &Path,
    out: &Path,
    shard: Shard,
    progress: &mut dyn FnMut(&Progress),
) -> Result<Outcome, Error> {
    let plan = plan(config, base)?;
    let mut writer = ResultsWriter::open(out)?;
    // The stored config identifies the sweep; the thread count and the target batch do not
    // change results (beyond float rounding), so a resume or a shard on another machine may
    // use others.
    let stored = SweepConfig {
        threads: 0,
        target_batch: crate::config::DEFAULT_TARGET_BATCH,
        ..config.clone()
    };
    write_or_check(out, "config.toml", &stored.to_toml())?;
    let run_json = json!({
        "format_version": 1,
        "models": plan.models.iter().map(|(d, m)| json!({
            "checkpoint": checkpoint_name(d),
            "step": m.step,
            "hash": m.content_hash(),
            "architecture": m.architecture,
        })).collect::<Vec<_>>(),
    });
    write_or_check(
        out,
        "run.json",
        &(serde_json::to_string_pretty(&run_json).expect("json") + "\n"),
    )?;
    let mut prompts = String::new();
    for item in &plan.items {
        let key = item.key();
        let mut record = prompt_record(&key, "target", None, &item.target);
        record["metric_ids"] = metric_sets(&plan.study, &plan.tokens, item)
            .into_iter()
            .map(|(k, v)| (k.to_string(), json!(v)))
            .collect::<serde_json::Map<_, _>>()
            .into();
        prompts.push_str(&record.to_string());
        prompts.push('\n');
        for (setting, list) in &item.sources {
            for p in list {
                prompts.push_str(&prompt_record(&key, "source", Some(*setting), p).to_string());
                prompts.push('\n');
            }
        }
    }
    write_or_check(out, "prompts.jsonl", &prompts)?;

    // The units of this shard, by checkpoint.
    let mut units: Vec<(usize, usize, String)> = Vec::new();
    let mut index = 0;
    for (m, (dir, _)) in plan.models.iter().enumerate() {
        for (i, item) in plan.items.iter().enumerate() {
            if index % shard.count == shard.index {
                units.push((m, i, format!("{}/{}", checkpoint_name(dir), item.key())));
            }
            index += 1;
        }
    }
    let total = units.len();
    let resumed = units.iter().filter(|(_, _, k)| writer.is_done(k)).count();
    let plugins = plugins(config, registry)?;
    let options = BackendOptions {
        plugin: config.plugins.backend.clone(),
        threads: config.threads,
        verify: true,
        params: config.plugins.backend_params.clone(),
    };
    let mut done = resumed;
    let mut ran = 0;
    for (m, (dir, manifest)) in plan.models.iter().enumerate() {
        let todo: Vec<&(usize, usize, String)> = units
            .iter()
            .filter(|(um, _, k)| *um == m && !writer.is_done(k))
            .collect();
        if todo.is_empty() {
            continue;
        }
        let mut model = Model::open(registry, dir, &options)?;
        let mut prefixes = PrefixCache::new();
        let stops = stops_from(&plan.pieces, &model);
        let ctx = Checkpoint {
            name: checkpoint_name(dir),
            step: manifest.step,
            hash: manifest.content_hash(),
            stops,
        };
        let per_batch = units_per_batch(config, &model, &plan, &todo);
        for group in todo.chunks(per_batch) {
            let started = std::time::Instant::now();
            let items: Vec<(&Item, &str)> = group
                .iter()
                .map(|(_, i, key)| (&plan.items[*i], key.as_str()))
                .collect();
            let unit_rows = run_units(
                config,
                &plan,
                &plugins,
                &mut model,
                &ctx,
                &mut prefixes,
                &items,
            )?;
            // The batch's compute, shared evenly by its units.
            let computed = started.elapsed().as_secs_f64();
            for ((_, _, key), rows) in group.iter().zip(unit_rows) {
                let written = std::time::Instant::now();
                writer.append_unit(&rows)?;
                let timing = Timing {
                    seconds: computed / group.len() as f64,
                    write_seconds: written.elapsed().as_secs_f64(),
                    batch: group.len(),
                };
                log_timing(out, key, &timing)?;
                done += 1;
                ran += 1;
                progress(&Progress {
                    done,
                    total,
                    resumed,
                    checkpoint: ctx.name.clone(),
                });
            }
        }
    }
    Ok(Outcome {
        ran,
        resumed,
        total,
    })
}

/// What [`TIMINGS_FILE`] records of a unit.
struct Timing {
    /// Its share of its batch's model work and metrics (the model load excluded): the
    /// batch's wall time over the units computed together.
    seconds: f64,
    /// Writing and syncing its rows.
    write_seconds: f64,
    /// How many units were computed together (see [`SweepConfig::target_batch`]).
    batch: usize,
}

/// Appends a unit's [`Timing`] to [`TIMINGS_FILE`].
fn log_timing(out: &Path, unit: &str, timing: &Timing) -> Result<(), Error> {
    use std::io::Write;
    let path = out.join(TIMINGS_FILE);
    let line = json!({
        "unit": unit,
        "seconds": timing.seconds,
        "write_seconds": timing.write_seconds,
        "batch": timing.batch,
    })
    .to_string()
        + "\n";
    std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(&path)
        .and_then(|mut f| f.write_all(line.as_bytes()))
        .map_err(|e| Error::Results {
            path,
            what: e.to_string(),
        })
}

/// Memory the kept results of one batch may take: the patched runs of every unit in a batch
/// keep their caches and distributions until the batch's generation.
const BATCH_BYTES: usize = 2 << 30;

/// How many units run together: [`SweepConfig::target_batch`], fewer when their kept caches
/// and distributions would pass [`BATCH_BYTES`].
fn units_per_batch(
    config: &SweepConfig,
    model: &Model,
    plan: &Plan,
    todo: &[&(usize, usize, String)],
) -> usize {
    let info = model.info();
    let (layers, kv, hd, vocab) = (
        info.n_layers as usize,
        info.n_kv_heads as usize,
        info.head_dim as usize,
        info.vocab as usize,
    );
    let longest = todo
        .iter()
        .map(|(_, i, _)| plan.items[*i].target.tokens.ids.len())
        .max()
        .unwrap_or(0)
        + config.max_new_tokens;
    // Rows kept per unit (every start layer of every setting): a key and a value cache per
    // block, logits and probabilities.
    let per_row = layers * 2 * kv * longest * hd + 2 * vocab;
    let per_unit = config.settings.len() * layers * per_row * 4;
    (BATCH_BYTES / per_unit.max(1)).clamp(1, config.target_batch.max(1))
}

/// What rows say about their checkpoint.
struct Checkpoint {
    name: String,
    step: Option<u64>,
    hash: String,
    stops: Vec<bool>,
}

/// Metric values `[L]` of `probs` `[L, vocab]` over `ids`.
fn measure(
    metric: &dyn Metric,
    probs: &[f32],
    vocab: usize,
    ids: &[u32],
) -> Result<Vec<f32>, Error> {
    let n = probs.len() / vocab;
    let mut out = vec![0f32; n];
    let shape = [n, vocab];
    let out_shape = [n];
    metric.compute(
        TensorRef::new(probs, &shape)?,
        ids,
        TensorMut::new(&mut out, &out_shape)?,
    )?;
    Ok(out)
}

/// 1 + how many tokens are likelier than the likeliest of `ids`.
fn best_rank(probs: &[f32], ids: &[u32]) -> usize {
    let best = ids
        .iter()
        .map(|&i| probs[i as usize])
        .fold(f32::NEG_INFINITY, f32::max);
    1 + probs.iter().filter(|&&p| p > best).count()
}

/// The rows of one unit or of several of one checkpoint, computed together (DESIGN §2):
/// their unpatched runs in one batch per block (each from its shared few-shot prefix), every
/// source latent in one batch, the patched runs of each unit and setting with one head call
/// for all, and one batched greedy generation for every row of every run. Equal, unit by
/// unit, to computing each alone to float tolerance (the sweep test compares batches of 2
/// with one unit at a time).
#[allow(clippy::too_many_arguments)]
fn run_units(
    config: &SweepConfig,
    plan: &Plan,
    plugins: &Plugins,
    model: &mut Model,
    ctx: &Checkpoint,
    prefixes: &mut PrefixCache,
    items: &[(&Item, &str)],
) -> Result<Vec<Vec<Row>>, Error> {
    let n_layers = model.info().n_layers as usize;
    let d = model.info().d_model as usize;
    let vocab = model.info().vocab as usize;
    let stop = |id: u32| ctx.stops.get(id as usize).copied().unwrap_or(true);
    let generation = Generation {
        max_new: config.max_new_tokens,
        stop: &stop,
    };
    // The patched position of a unit's target.
    let position = |item: &Item| {
        let target = &item.target.tokens;
        match config.variant {
            Variant::FromLayer => target.word_end.token,
            Variant::SingleLayer => target.ids.len() - 1,
        }
    };
    // The naive method is the reference: every prompt computed whole. The incremental one
    // continues each prompt from its shared few-shot prefix.
    let shared = |model: &mut Model, prefixes: &mut PrefixCache, t: &Tokenized| match config.method
    {
        Method::Incremental => prefixes.get(model, &t.ids, t.prefix),
        Method::Naive => Ok(None),
    };
    let bases: Vec<Baseline> = match config.method {
        Method::Incremental => {
            let mut prefix_runs = Vec::with_capacity(items.len());
            for (item, _) in items {
                prefix_runs.push(shared(model, prefixes, &item.target.tokens)?);
            }
            let prompts: Vec<(Option<&PrefixRun>, &[u32])> = items
                .iter()
                .zip(&prefix_runs)
                .map(|((item, _), prefix)| (prefix.as_deref(), item.target.tokens.ids.as_slice()))
                .collect();
            Baseline::run_many(model, &prompts)?
        }
        Method::Naive => items
            .iter()
            .map(|(item, _)| Baseline::run(model, &item.target.tokens.ids))
            .collect::<Result<_, _>>()?,
    };
    // Every source latent of every unit, in one left-padded batch (per shared prefix).
    let sources: Vec<&Planned> = items
        .iter()
        .flat_map(|(item, _)| {
            config
                .settings
                .iter()
                .flat_map(|s| item.sources.get(s).into_iter().flatten())
        })
        .collect();
    let mut prefix_runs = Vec::with_capacity(sources.len());
    for s in &sources {
        prefix_runs.push(shared(model, prefixes, &s.tokens)?);
    }
    let sites: Vec<(Option<&PrefixRun>, &[u32], usize)> = sources
        .iter()
        .zip(&prefix_runs)
        .map(|(s, prefix)| {
            let at = Site::for_kind(s.prompt.kind).position(&s.tokens);
            (prefix.as_deref(), s.tokens.ids.as_slice(), at)
        })
        .collect();
    let mut source_latents = residuals_from(model, &sites)?.into_iter();
    // The latent of every patched setting of every unit.
    let mut planned: Vec<(usize, Setting, usize, Option<Vec<f32>>)> = Vec::new();
    for (u, ((item, _), base)) in items.iter().zip(&bases).enumerate() {
        for &setting in &config.settings {
            let (latent, n_sources) = match setting {
                Setting::Unpatched => (None, 0),
                Setting::TgtTgt => (Some(base.residuals_at(position(item))?), 1),
                _ => {
                    let n = item.sources[&setting].len();
                    let latents: Vec<Vec<f32>> = source_latents.by_ref().take(n).collect();
                    let latent = combine(plugins.extractor.as_ref(), &latents, n_layers, d)?;
                    (Some(latent), n)
                }
            };
            planned.push((u, setting, n_sources, latent));
        }
    }
    let patches: Vec<(usize, Patch<'_>)> = planned
        .iter()
        .filter_map(|(u, _, _, latent)| {
            latent.as_ref().map(|latent| {
                let patch = Patch {
                    position: position(items[*u].0),
                    latent,
                    scope: config.variant.scope(),
                };
                (*u, patch)
            })
        })
        .collect();
    // Patched runs of every unit and setting (incremental: one head call for all), then one
    // batched generation for all their rows.
    let keep = config.max_new_tokens > 0;
    let mut naive_results: Vec<LayerResults> = Vec::new();
    let mut patched_runs = match config.method {
        Method::Incremental => {
            let pairs: Vec<(&Baseline, &Patch<'_>)> =
                patches.iter().map(|(u, p)| (&bases[*u], p)).collect();
            patched_many(
                model,
                &pairs,
                plugins.strategy.as_ref(),
                Batching::Layers,
                keep,
            )?
        }
        Method::Naive => {
            // The reference computation, generation included, one start layer at a time.
            for (u, patch) in &patches {
                naive_results.push(naive(
                    model,
                    &items[*u].0.target.tokens.ids,
                    patch,
                    plugins.strategy.as_ref(),
                    &generation,
                )?);
            }
            Vec::new()
        }
    }
    .into_iter();
    let runs: Vec<(usize, Setting, usize, Patched)> = planned
        .iter()
        .map(|&(u, setting, n, ref latent)| {
            let run = match (latent, config.method) {
                (Some(_), Method::Incremental) => patched_runs
                    .next()
                    .expect("one patched run per patched setting"),
                _ => bases[u].unpatched(),
            };
            (u, setting, n, run)
        })
        .collect();
    let refs: Vec<&Patched> = runs.iter().map(|(_, _, _, r)| r).collect();
    let mut generations = generate(model, &refs, &generation)?.into_iter();
    let mut naive_results = naive_results.into_iter();
    let mut per_unit: Vec<Vec<(Setting, usize, LayerResults)>> = vec![Vec::new(); items.len()];
    for (u, setting, n, run) in runs {
        let generated = generations.next().unwrap_or_default();
        let results = if setting != Setting::Unpatched && config.method == Method::Naive {
            naive_results
                .next()
                .expect("one naive result per patched setting")
        } else if setting == Setting::Unpatched {
            // One row for every start layer.
            let row = generated.into_iter().next().unwrap_or_default();
            let probs = run.probs().to_vec();
            LayerResults {
                vocab,
                probs: (0..n_layers).flat_map(|_| probs.iter().copied()).collect(),
                generations: vec![row; n_layers],
            }
        } else {
            run.into_results(generated)
        };
        per_unit[u].push((setting, n, results));
    }
    items
        .iter()
        .zip(per_unit)
        .map(|((item, unit), per_setting)| {
            unit_rows(config, plan, plugins, model, ctx, item, unit, &per_setting)
        })
        .collect()
}

/// The rows of one unit from its results per setting.
#[allow(clippy::too_many_arguments)]
fn unit_rows(
    config: &SweepConfig,
    plan: &Plan,
    plugins: &Plugins,
    model: &Model,
    ctx: &Checkpoint,
    item: &Item,
    unit: &str,
    per_setting: &[(Setting, usize, LayerResults)],
) -> Result<Vec<Row>, Error> {
    let n_layers = model.info().n_layers as usize;
    let vocab = model.info().vocab as usize;
    let (src, tgt) = (&item.pair.source, &item.pair.target);
    let (in_l, out_l) = (item.in_lang, item.out_lang);
    let sets = metric_sets(&plan.study, &plan.tokens, item);
    let forms = |c: &str| plan.table.forms(c, out_l).unwrap_or(&[]);
    let unit_rows = per_setting.len() * n_layers;
    let mut rows = Vec::with_capacity(unit_rows);
    for (setting, n_sources, r) in per_setting {
        let m = |ids: &[u32]| measure(plugins.metric.as_ref(), &r.probs, vocab, ids);
        // In the order of `metric_sets`.
        let p: Vec<Vec<f32>> = sets
            .iter()
            .map(|(_, ids)| m(ids))
            .collect::<Result<_, _>>()?;
        let mut per_lang_cols = Vec::new();
        for &l in &plan.study {
            per_lang_cols.push((format!("p_src_{l}"), m(plan.tokens.get(src, l))?));
            per_lang_cols.push((format!("p_tgt_{l}"), m(plan.tokens.get(tgt, l))?));
        }
        for j in 0..n_layers {
            let probs = r.probs_at(j);
            let ids = &r.generations[j];
            let text = model.decode(ids)?;
            let answer = text.split('"').next().unwrap_or("").trim();
            rows.push(Row {
                unit: unit.to_string(),
                unit_rows,
                checkpoint: ctx.name.clone(),
                step: ctx.step,
                model_hash: ctx.hash.clone(),
                variant: match config.variant {
                    Variant::FromLayer => "from_layer".into(),
                    Variant::SingleLayer => "single_layer".into(),
                },
                setting: setting.name().into(),
                in_lang: in_l.code().into(),
                out_lang: out_l.code().into(),
                source: src.clone(),
                target: tgt.clone(),
                start_layer: j,
                n_sources: *n_sources,
                p_src_out: p[0][j],
                p_tgt_out: p[1][j],
                p_src_in: p[2][j],
                p_tgt_in: p[3][j],
                p_src_other: p[4][j],
                p_tgt_other: p[5][j],
                p_src_out_aug: p[6][j],
                p_tgt_out_aug: p[7][j],
                rank_src_out: best_rank(probs, plan.tokens.get(src, out_l)),
                rank_tgt_out: best_rank(probs, plan.tokens.get(tgt, out_l)),
                gen_src: forms(src).iter().any(|f| f == answer),
                gen_tgt: forms(tgt).iter().any(|f| f == answer),
                generation: text,
                generation_ids: ids.clone(),
                per_lang: per_lang_cols
                    .iter()
                    .map(|(k, v)| (k.clone(), v[j]))
                    .collect(),
            });
        }
    }
    Ok(rows)
}

/// One line of a sweep's summary: per checkpoint and setting, the mean P(C_S in out_T) at
/// the best start layer and at start layer 0, over the concept pairs.
#[derive(Debug, Clone, PartialEq)]
pub struct SummaryLine {
    /// The checkpoint.
    pub checkpoint: String,
    /// Its training step.
    pub step: Option<u64>,
    /// The setting.
    pub setting: String,
    /// The start layer with the highest mean.
    pub best_layer: usize,
    /// The mean at that layer.
    pub best: f64,
    /// The mean at start layer 0.
    pub at_zero: f64,
    /// How many target prompts were averaged.
    pub n: usize,
}

/// The summary of result rows, ordered by step, checkpoint and setting.
pub fn summarize(rows: &[Row]) -> Vec<SummaryLine> {
    // (step, checkpoint, setting's place, setting) -> start layer -> (sum, count)
    type Key = (Option<u64>, String, usize, String);
    let place = |s: &str| {
        Setting::ALL
            .iter()
            .position(|x| x.name() == s)
            .unwrap_or(Setting::ALL.len())
    };
    let mut acc: BTreeMap<Key, BTreeMap<usize, (f64, usize)>> = BTreeMap::new();
    for r in rows {
        let key = (
            r.step,
            r.checkpoint.clone(),
            place(&r.setting),
            r.setting.clone(),
        );
        let e = acc
            .entry(key)
            .or_default()
            .entry(r.start_layer)
            .or_default();
        e.0 += f64::from(r.p_src_out);
        e.1 += 1;
    }
    acc.into_iter()
        .map(|((step, checkpoint, _, setting), layers)| {
            let mean = |(s, n): &(f64, usize)| s / *n as f64;
            let (best_layer, best) = layers
                .iter()
                .map(|(j, v)| (*j, mean(v)))
                .fold((0, f64::NEG_INFINITY), |a, b| if b.1 > a.1 { b } else { a });
            SummaryLine {
                checkpoint,
                step,
                setting,
                best_layer,
                best,
                at_zero: layers.get(&0).map_or(f64::NAN, mean),
                n: layers.values().next().map_or(0, |v| v.1),
            }
        })
        .collect()
}

/// The summary as a text table.
pub fn format_summary(lines: &[SummaryLine]) -> String {
    let mut out = format!(
        "{:<16} {:>8} {:<10} {:>11} {:>6} {:>11} {:>5}\n",
        "checkpoint", "step", "setting", "best P(src)", "at j", "P(src) j=0", "n"
    );
    for l in lines {
        out.push_str(&format!(
            "{:<16} {:>8} {:<10} {:>11.4} {:>6} {:>11.4} {:>5}\n",
            l.checkpoint,
            l.step.map_or("-".to_string(), |s| s.to_string()),
            l.setting,
            l.best,
            l.best_layer,
            l.at_zero,
            l.n
        ));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shards_parse_and_refuse() {
        assert_eq!(
            "1/3".parse::<Shard>().unwrap(),
            Shard { index: 1, count: 3 }
        );
        assert_eq!(Shard { index: 1, count: 3 }.to_string(), "1/3");
        for bad in ["3/3", "1", "a/b", "0/0"] {
            assert!(bad.parse::<Shard>().is_err(), "{bad}");
        }
    }

    #[test]
    fn seen_sources_avoid_the_target_languages_and_english() {
        let l = |c: &str| Lang::from_code(c).unwrap();
        let seen = [l("en"), l("de"), l("fr"), l("es"), l("it")];
        let specs = source_specs(Setting::Seen, l("fr"), l("de"), &seen);
        assert_eq!(specs, [(l("es"), l("it")), (l("it"), l("es"))]);
        assert_eq!(
            source_specs(Setting::SelfCopy, l("fr"), l("de"), &seen),
            [(l("de"), l("de"))]
        );
        assert_eq!(
            source_specs(Setting::EnEn, l("fr"), l("de"), &seen),
            [(l("en"), l("en"))]
        );
        assert!(source_specs(Setting::Unpatched, l("fr"), l("de"), &seen).is_empty());
    }

    #[test]
    fn ranks_and_summaries() {
        assert_eq!(best_rank(&[0.1, 0.5, 0.2, 0.2], &[2, 3]), 2);
        assert_eq!(best_rank(&[0.1, 0.5, 0.2, 0.2], &[1]), 1);
    }
}
