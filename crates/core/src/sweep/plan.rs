//! The plan of a sweep, fixed before any model runs and depending only on the config and
//! the tokenizer: the series (which must share its tokenizer), the concept pairs per target
//! pair ([`draw_pairs`]), the target prompt and the source prompts of each setting
//! (demonstrations drawn from seeded streams named after the unit and setting), all tokenized
//! once; or a replayed prompt set.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use xlpatch_concepts::{ConceptTable, Lang};

use super::item::{Item, Planned};
use super::replay;
use crate::config::{Demos, Setting, SweepConfig, Variant};
use crate::pairs::{ConceptPair, ConceptTokens, draw_pairs, vocab_pieces};
use crate::prompt::{Prompt, PromptBuilder, PromptKind};
use crate::rng::Rng;
use crate::{ConfigError, Error, PromptError, TokenizerError};

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

/// The token sets behind a target's probability columns, by column name, in the order of
/// [`replay::METRIC_COLUMNS`]: what a row's `p_*` values sum over (written into
/// `prompts.jsonl` so another tool can compute the same). A replayed target's own
/// `metric_ids` replace the concept table's sets for the columns they name.
pub(super) fn metric_sets(
    plan_study: &[Lang],
    tokens: &ConceptTokens,
    item: &Item,
) -> Vec<(&'static str, Vec<u32>)> {
    let mut sets = table_metric_sets(plan_study, tokens, item);
    if let Some(own) = &item.metric_ids {
        for (name, ids) in &mut sets {
            if let Some(given) = own.get(*name) {
                ids.clone_from(given);
            }
        }
    }
    sets
}

/// [`metric_sets`] from the concept table alone.
fn table_metric_sets(
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
pub(super) struct Plan {
    /// The series, in config order, with their manifests.
    pub(super) models: Vec<(PathBuf, xlpatch_model::Manifest)>,
    /// The study languages.
    pub(super) study: Vec<Lang>,
    /// The concept table, restricted to the study.
    pub(super) table: ConceptTable,
    /// Every concept's token sets under the series' tokenizer.
    pub(super) tokens: ConceptTokens,
    /// The series' shared tokenizer's tokens as text, by id.
    pub(super) pieces: Vec<String>,
    /// The target prompts with their sources.
    pub(super) items: Vec<Item>,
    /// The SHA-256 of the series' `tokenizer.json`, recorded in `prompts.jsonl`.
    pub(super) tokenizer: String,
    /// What the user should know before the sweep runs or the results are read (a
    /// replayed prompt set that does not say which tokenizer made it, checked limits
    /// relaxed).
    pub(super) warnings: Vec<String>,
}

/// Refuses (or, under `allow_beyond_context`, warns about) prompts longer than a checkpoint's
/// context length, counting the tokens generated after a target; returns the warnings. A
/// checkpoint whose manifest records no context length is not checked, and said so once.
fn check_context(
    config: &SweepConfig,
    models: &[(PathBuf, xlpatch_model::Manifest)],
    items: &[Item],
) -> Result<Vec<String>, Error> {
    let mut warnings = Vec::new();
    let unknown: Vec<String> = models
        .iter()
        .filter(|(_, m)| m.context_length.is_none())
        .map(|(d, _)| checkpoint_name(d))
        .collect();
    if let Some(first) = unknown.first() {
        warnings.push(format!(
            "{first}{}: the manifest records no context length (an export by an older \
             xlpatch), so prompt lengths are not checked against it; export again to record it",
            match unknown.len() {
                1 => String::new(),
                n => format!(" and {} other checkpoints", n - 1),
            }
        ));
    }
    // The longest prompt, as (positions, tokens, generated, prompt).
    let generated = config.max_new_tokens.saturating_sub(1);
    let mut longest: Option<(usize, usize, usize, String)> = None;
    for item in items {
        let target = item.target.tokens.ids.len();
        let mut candidates = vec![(target + generated, target, generated, "target")];
        for (setting, list) in &item.sources {
            for s in list {
                let n = s.tokens.ids.len();
                candidates.push((n, n, 0, setting.name()));
            }
        }
        for (positions, tokens, generated, role) in candidates {
            if longest.as_ref().is_none_or(|l| positions > l.0) {
                longest = Some((
                    positions,
                    tokens,
                    generated,
                    format!("{} ({role})", item.key()),
                ));
            }
        }
    }
    let Some((positions, tokens, generated, prompt)) = longest else {
        return Ok(warnings);
    };
    for (dir, m) in models {
        let Some(limit) = m.context_length else {
            continue;
        };
        if positions as u64 <= limit {
            continue;
        }
        let err = ConfigError::BeyondContext {
            checkpoint: dir.clone(),
            prompt: prompt.clone(),
            tokens,
            generated,
            limit,
        };
        if !config.allow_beyond_context {
            return Err(Error::Config(err));
        }
        warnings.push(format!("{err} (allowed by allow_beyond_context)"));
        break;
    }
    Ok(warnings)
}

pub(super) fn plan(config: &SweepConfig, base: &Path) -> Result<Plan, Error> {
    config.validate()?;
    let dirs = config.model_dirs(base)?;
    if dirs.is_empty() {
        return Err(Error::Config(ConfigError::NoModels));
    }
    let mut models = Vec::with_capacity(dirs.len());
    for dir in dirs {
        let manifest = xlpatch_model::Manifest::read(&dir)?;
        models.push((dir, manifest));
    }
    // A start layer outside a checkpoint is refused before anything runs.
    for (dir, m) in &models {
        config.layers(m.num_layers).map_err(|e| match e {
            Error::Config(ConfigError::StartLayers { value, problem }) => {
                Error::Config(ConfigError::StartLayers {
                    value,
                    problem: format!("{problem}: {}", dir.display()),
                })
            }
            e => e,
        })?;
    }
    let (first_dir, first) = &models[0];
    let Some(tok_file) = &first.tokenizer else {
        return Err(Error::Tokenizer {
            path: Some(first_dir.clone()),
            source: TokenizerError::Missing,
        });
    };
    for (dir, m) in &models[1..] {
        if let Some((field, value, first_value)) = series_difference(first, m) {
            return Err(Error::Config(ConfigError::NotOneSeries {
                dir: dir.clone(),
                first: first_dir.clone(),
                field,
                value,
                first_value,
            }));
        }
    }
    let mut names = std::collections::BTreeSet::new();
    if let Some((dir, _)) = models
        .iter()
        .find(|(d, _)| !names.insert(checkpoint_name(d)))
    {
        return Err(Error::Config(ConfigError::DuplicateCheckpoint(
            checkpoint_name(dir),
        )));
    }
    let tok_path = first_dir.join(tok_file);
    let tokenizer = tokenizers::Tokenizer::from_file(&tok_path).map_err(|e| Error::Tokenizer {
        path: Some(tok_path.clone()),
        source: TokenizerError::Load(e),
    })?;
    let study = config.study_languages()?;
    let seen = config.seen_languages()?;
    let concepts = base.join(&config.concepts);
    let table = match config.concepts_from {
        None => ConceptTable::load(&concepts)?,
        Some(format) => format.format().read(&concepts)?,
    };
    let mut table = table.subset(&study)?;
    if let Some(ids) = config.concept_ids(base)? {
        table = table.only(&ids).map_err(|e| ConfigError::ConceptListIds {
            path: base.join(config.concept_list.as_deref().unwrap_or("")),
            source: Box::new(e),
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
    // Every checkpoint has this tokenizer (checked above with the rest of the series).
    let tokenizer_hash = first
        .tokenizer
        .as_ref()
        .and_then(|t| first.files.get(t).cloned())
        .unwrap_or_default();
    if let Some(file) = &config.prompts {
        let path = base.join(file);
        let replay::Replayed { items, tokenizers } = replay::read_items(&path, &config.settings)?;
        let mut warnings: Vec<String> =
            replay::check_tokenizer(&path, &tokenizers, &tokenizer_hash, first_dir)?
                .into_iter()
                .collect();
        let vocab = models.iter().map(|(_, m)| m.vocab_size).min().unwrap_or(0);
        replay::check_metric_ids(&path, &items, vocab)?;
        for item in &items {
            for lang in [item.in_lang, item.out_lang] {
                if !study.contains(&lang) {
                    return Err(Error::Config(ConfigError::ReplayLanguage {
                        path: base.join(file),
                        item: item.key(),
                        lang: lang.to_string(),
                    }));
                }
            }
            for c in [&item.pair.source, &item.pair.target] {
                if tokens.get(c, item.out_lang).is_empty() {
                    return Err(Error::Config(ConfigError::ReplayConcept {
                        path: base.join(file),
                        concept: c.clone(),
                        item: item.key(),
                    }));
                }
            }
        }
        warnings.extend(check_context(config, &models, &items)?);
        return Ok(Plan {
            models,
            study,
            table,
            tokens,
            pieces,
            items,
            tokenizer: tokenizer_hash,
            warnings,
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
                let d = builder
                    .draw_demos(&mut rng, a, b, &used)
                    .map_err(|e| match e {
                        Error::Prompt(PromptError::TooFewDemos {
                            available, wanted, ..
                        }) => {
                            let complete: Vec<&str> = table
                                .concepts()
                                .iter()
                                .filter(|c| c.is_complete(&[a, b]))
                                .map(|c| c.id.as_str())
                                .collect();
                            let mut in_use: Vec<&str> = used
                                .iter()
                                .copied()
                                .filter(|u| complete.contains(u))
                                .collect();
                            in_use.sort_unstable();
                            in_use.dedup();
                            Error::Prompt(PromptError::TooFewSharedDemos {
                                in_lang: a.to_string(),
                                out_lang: b.to_string(),
                                available,
                                wanted,
                                used: in_use.len(),
                                complete: complete.len(),
                            })
                        }
                        e => e,
                    })?;
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
                    return Err(Error::Config(ConfigError::NoSeenPair {
                        in_lang: in_lang.to_string(),
                        out_lang: out_lang.to_string(),
                    }));
                }
                sources.insert(setting, list);
            }
            items.push(Item {
                in_lang,
                out_lang,
                pair,
                target,
                sources,
                metric_ids: None,
            });
        }
    }
    let warnings = check_context(config, &models, &items)?;
    Ok(Plan {
        models,
        study,
        table,
        tokens,
        pieces,
        items,
        tokenizer: tokenizer_hash,
        warnings,
    })
}

/// The first manifest field in which checkpoint `m` differs from the series' first checkpoint
/// `first`, with both values: a series shares architecture, every size and the tokenizer
/// (by content hash), or its curves would compare different models.
fn series_difference(
    first: &xlpatch_model::Manifest,
    m: &xlpatch_model::Manifest,
) -> Option<(&'static str, String, String)> {
    if m.architecture != first.architecture {
        return Some((
            "architecture",
            m.architecture.clone(),
            first.architecture.clone(),
        ));
    }
    let sizes = |m: &xlpatch_model::Manifest| {
        [
            ("num_layers", m.num_layers),
            ("hidden_size", m.hidden_size),
            ("num_heads", m.num_heads),
            ("num_kv_heads", m.num_kv_heads),
            ("head_dim", m.head_dim),
            ("vocab_size", m.vocab_size),
            ("intermediate_size", m.intermediate_size),
        ]
    };
    if let Some(((field, a), (_, b))) = sizes(m)
        .into_iter()
        .zip(sizes(first))
        .find(|((_, a), (_, b))| a != b)
    {
        return Some((field, a.to_string(), b.to_string()));
    }
    if m.layer_types != first.layer_types || m.sliding_window != first.sliding_window {
        let layout = |m: &xlpatch_model::Manifest| {
            format!("{:?} (window {:?})", m.layer_types, m.sliding_window)
        };
        return Some(("layer_types", layout(m), layout(first)));
    }
    let tokenizer =
        |m: &xlpatch_model::Manifest| m.tokenizer.as_ref().and_then(|t| m.files.get(t)).cloned();
    let shown = |h: Option<String>| {
        h.map(|h| format!("sha256 {}…", &h[..h.len().min(12)]))
            .unwrap_or_else(|| "none".to_string())
    };
    let (a, b) = (tokenizer(m), tokenizer(first));
    (a != b).then(|| ("tokenizer", shown(a), shown(b)))
}

/// A checkpoint's name in results: its directory's name.
pub(super) fn checkpoint_name(dir: &Path) -> String {
    dir.file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| dir.display().to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Shared demonstrations that run out say how many are left, why, and the fix; not
    /// the ~120 concept ids the pairs use.
    #[test]
    fn a_demonstration_shortage_names_the_cause_and_the_fix() {
        let repo = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
        let config = SweepConfig {
            concept_pairs: 30,
            ..SweepConfig::default()
        };
        let Err(e) = plan(&config, &repo) else {
            panic!("30 concept pairs per pair leave no demonstrations");
        };
        let e = e.to_string();
        assert!(
            e.contains("concepts are left for the shared demonstrations, 5 needed")
                && e.contains("demos = \"per_prompt\"")
                && e.contains("fewer concept_pairs")
                && e.len() < 600,
            "{e}"
        );
        let per_prompt = SweepConfig {
            demos: crate::config::Demos::PerPrompt,
            ..config
        };
        assert!(plan(&per_prompt, &repo).is_ok());
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
}
