//! Running units: the rows of one unit, or of several of one checkpoint computed together.

use xlpatch_results::Row;

use super::context::{UnitRef, Units};
use super::item::{Item, Planned};
use super::plan::Plan;
use super::rows::SettingResults;
use crate::Error;
use crate::config::{Method, Setting, SweepConfig, Variant};
use crate::latents::{Site, combine, residuals_from};
use crate::model::Model;
use crate::patch::{
    Baseline, Batching, Generation, LayerResults, Patch, Patched, generate_grouped, naive,
    patched_many,
};
use crate::prefix::{PrefixCache, PrefixRun};
use crate::prompt::Tokenized;

/// Memory the kept results of one batch may take: the patched runs of every unit in a batch
/// keep their caches and distributions until the batch's generation.
const BATCH_BYTES: usize = 2 << 30;

/// The most units one batch holds when filling head calls: a batch's rows are written when
/// it ends, so more units delay the first rows, the progress report and what an
/// interruption loses, for little: Gemma-3-270M's head calls are full
/// ([`Model::head_rows`], 256 rows) at 15 units of one setting.
const HEAD_UNITS: usize = 16;

/// The unembedding size from which units share head calls: larger than the last-level cache
/// of the CPUs measured (32 MiB), so every head call streams it from memory. A smaller one
/// (the fixture series' is 0.6 MB) stays in cache, and sharing its calls would only delay
/// the rows.
const STREAMED_HEAD_BYTES: usize = 64 << 20;

/// How many units run together. Their head calls are shared (the unembedding streamed once
/// per call for the rows of all of them), so enough units to fill
/// [`Model::head_rows`] with one row per start layer and setting, at most [`HEAD_UNITS`],
/// when the unembedding passes [`STREAMED_HEAD_BYTES`]; at least
/// [`SweepConfig::target_batch`], whose units also share block calls; fewer when their kept
/// caches and distributions would pass [`BATCH_BYTES`].
pub(super) fn units_per_batch(
    config: &SweepConfig,
    model: &Model,
    plan: &Plan,
    todo: &[&UnitRef],
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
        .map(|u| plan.items[u.item].target.tokens.ids.len())
        .max()
        .unwrap_or(0)
        + config.max_new_tokens;
    // Rows kept per unit (every start layer of every setting): a key and a value cache per
    // block, logits and probabilities.
    let rows = config.settings.len() * layers;
    let per_row = layers * 2 * kv * longest * hd + 2 * vocab;
    let per_unit = rows * per_row * 4;
    let streamed = vocab * info.d_model as usize * 4 >= STREAMED_HEAD_BYTES;
    let fill = if streamed {
        model.head_rows().div_ceil(rows.max(1)).min(HEAD_UNITS)
    } else {
        1
    };
    (BATCH_BYTES / per_unit.max(1)).clamp(1, fill.max(config.target_batch).max(1))
}

/// A unit's latent for one setting (none: unpatched).
struct SettingLatent {
    /// The unit's index in the batch.
    unit: usize,
    setting: Setting,
    /// How many source prompts were combined.
    n_sources: usize,
    latent: Option<Vec<f32>>,
}

/// A unit's run for one setting, before generation.
struct SettingRun {
    unit: usize,
    setting: Setting,
    n_sources: usize,
    run: Patched,
}

impl Units<'_> {
    /// The rows of one unit or of several of one checkpoint, computed together (docs/method.md, "Incremental patching"):
    /// per group of `target_batch` units, their unpatched runs in one batch per block (each
    /// from its shared few-shot prefix) and their source latents in one batch; the patched
    /// runs of each unit and setting; a greedy generation whose block calls are per group and
    /// whose steps advance all groups together. Every head call serves all units: the
    /// unpatched runs' last rows in one, every start layer of every patched run in one, and
    /// each generation step's rows in one (split by [`Model::head_rows`]). Equal, unit by
    /// unit, to computing each alone to float tolerance (the sweep test compares batches of 2
    /// with one unit at a time; `tests/patch.rs` shared heads with per-target calls).
    pub(super) fn run(
        &self,
        model: &mut Model,
        prefixes: &mut PrefixCache,
        items: &[(&Item, &str)],
    ) -> Result<Vec<Vec<Row>>, Error> {
        let Units {
            config,
            plugins,
            checkpoint: ctx,
            ..
        } = self;
        let n_layers = model.info().n_layers as usize;
        let d = model.info().d_model as usize;
        let vocab = model.info().vocab as usize;
        // Units that share block calls (`target_batch`); all of them share head calls.
        let block_batch = config.target_batch.max(1);
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
        let shared =
            |model: &mut Model, prefixes: &mut PrefixCache, t: &Tokenized| match config.method {
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
                    .map(|((item, _), prefix)| {
                        (prefix.as_deref(), item.target.tokens.ids.as_slice())
                    })
                    .collect();
                let groups: Vec<&[(Option<&PrefixRun>, &[u32])]> =
                    prompts.chunks(block_batch).collect();
                Baseline::run_groups(model, &groups)?
            }
            Method::Naive => items
                .iter()
                .map(|(item, _)| Baseline::run(model, &item.target.tokens.ids))
                .collect::<Result<_, _>>()?,
        };
        // Every source latent of every unit, in one left-padded batch per group of
        // `target_batch` units (per shared prefix); the group of each source.
        let (sources, source_group): (Vec<&Planned>, Vec<usize>) = items
            .iter()
            .enumerate()
            .flat_map(|(u, (item, _))| {
                config
                    .settings
                    .iter()
                    .flat_map(|s| item.sources.get(s).into_iter().flatten())
                    .map(move |s| (s, u / block_batch))
            })
            .unzip();
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
        let mut latents_in_order = Vec::with_capacity(sites.len());
        let mut from = 0;
        while from < sites.len() {
            let to = from
                + source_group[from..]
                    .iter()
                    .take_while(|&&g| g == source_group[from])
                    .count();
            latents_in_order.extend(residuals_from(model, &sites[from..to])?);
            from = to;
        }
        let mut source_latents = latents_in_order.into_iter();
        // The latent of every patched setting of every unit.
        let mut planned: Vec<SettingLatent> = Vec::new();
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
                planned.push(SettingLatent {
                    unit: u,
                    setting,
                    n_sources,
                    latent,
                });
            }
        }
        let patches: Vec<(usize, Patch<'_>)> = planned
            .iter()
            .filter_map(|p| {
                p.latent.as_ref().map(|latent| {
                    let patch = Patch {
                        position: position(items[p.unit].0),
                        latent,
                        scope: config.variant.into(),
                    };
                    (p.unit, patch)
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
        let runs: Vec<SettingRun> = planned
            .iter()
            .map(|p| {
                let run = match (&p.latent, config.method) {
                    (Some(_), Method::Incremental) => patched_runs
                        .next()
                        .expect("one patched run per patched setting"),
                    _ => bases[p.unit].unpatched(),
                };
                SettingRun {
                    unit: p.unit,
                    setting: p.setting,
                    n_sources: p.n_sources,
                    run,
                }
            })
            .collect();
        let refs: Vec<&Patched> = runs.iter().map(|r| &r.run).collect();
        let groups: Vec<usize> = runs.iter().map(|r| r.unit / block_batch).collect();
        let mut generations = generate_grouped(model, &refs, &groups, &generation)?.into_iter();
        let mut naive_results = naive_results.into_iter();
        let mut per_unit: Vec<Vec<SettingResults>> = (0..items.len()).map(|_| Vec::new()).collect();
        for SettingRun {
            unit: u,
            setting,
            n_sources,
            run,
        } in runs
        {
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
            per_unit[u].push(SettingResults {
                setting,
                n_sources,
                results,
            });
        }
        items
            .iter()
            .zip(per_unit)
            .map(|((item, unit), per_setting)| self.rows(model, item, unit, &per_setting))
            .collect()
    }
}
