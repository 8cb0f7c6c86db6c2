//! Shared prompt prefixes (DESIGN §2): prompts with the same demonstrations begin with the
//! same tokens, and with causal attention those positions have the same keys, values and
//! block outputs in every such prompt. A [`PrefixCache`] runs each distinct prefix once per
//! checkpoint; [`crate::patch::Baseline::run_from`] and [`crate::latents::residuals_from`]
//! continue from it and compute only the rest of each prompt.

use std::collections::HashMap;
use std::rc::Rc;

use crate::Error;
use crate::model::{LayerKv, Model};

/// One prefix run through the whole model.
#[derive(Debug, Clone)]
pub struct PrefixRun {
    pub(crate) ids: Vec<u32>,
    /// Block caches, `[1, kv, P, hd]` each.
    pub(crate) cache: Vec<LayerKv>,
    /// Block outputs, `[L][P * d]`.
    pub(crate) outputs: Vec<Vec<f32>>,
}

impl PrefixRun {
    /// Runs `ids` through every block, keeping caches and outputs.
    pub fn run(model: &mut Model, ids: &[u32]) -> Result<PrefixRun, Error> {
        if ids.is_empty() {
            return Err(Error::Inconsistent("an empty prompt cannot be run".into()));
        }
        let n_layers = model.info().n_layers as usize;
        let t = ids.len();
        let embedded: Vec<i64> = ids.iter().map(|&i| i64::from(i)).collect();
        let mut hidden = model.embed(&embedded, 1)?;
        let positions: Vec<i64> = (0..t as i64).collect();
        let mut outputs = Vec::with_capacity(n_layers);
        let cache = model.run_layers(
            0..n_layers,
            &mut hidden,
            1,
            &positions,
            &vec![1; t],
            &vec![LayerKv::default(); n_layers],
            0,
            &mut |_, out| {
                outputs.push(out.to_vec());
                Ok(())
            },
        )?;
        Ok(PrefixRun {
            ids: ids.to_vec(),
            cache,
            outputs,
        })
    }

    /// The prefix's tokens.
    pub fn ids(&self) -> &[u32] {
        &self.ids
    }

    /// Its length in tokens.
    pub fn len(&self) -> usize {
        self.ids.len()
    }

    /// Whether it has no token (never: [`PrefixRun::run`] refuses an empty prefix).
    pub fn is_empty(&self) -> bool {
        self.ids.is_empty()
    }

    /// Checks that `ids` continues this prefix by at least one token.
    pub(crate) fn check_continues(&self, ids: &[u32]) -> Result<(), Error> {
        if ids.len() <= self.ids.len() || !ids.starts_with(&self.ids) {
            return Err(Error::Inconsistent(format!(
                "a prompt of {} tokens does not continue a shared prefix of {} tokens",
                ids.len(),
                self.ids.len()
            )));
        }
        Ok(())
    }
}

/// The prefixes run on one checkpoint, by their tokens. Prefixes of fewer than
/// [`PrefixCache::MIN_LEN`] tokens are not worth a cache entry and are not shared.
#[derive(Debug, Default)]
pub struct PrefixCache {
    runs: HashMap<Vec<u32>, Rc<PrefixRun>>,
    hits: usize,
}

impl PrefixCache {
    /// The shortest prefix worth sharing.
    pub const MIN_LEN: usize = 2;

    /// An empty cache (one per checkpoint: entries belong to the model that ran them).
    pub fn new() -> PrefixCache {
        PrefixCache::default()
    }

    /// The run of `ids[..len]`, computed on first use; `None` when `len` is below
    /// [`PrefixCache::MIN_LEN`].
    pub fn get(
        &mut self,
        model: &mut Model,
        ids: &[u32],
        len: usize,
    ) -> Result<Option<Rc<PrefixRun>>, Error> {
        if len < Self::MIN_LEN || len > ids.len() {
            return Ok(None);
        }
        let key = &ids[..len];
        if let Some(run) = self.runs.get(key) {
            self.hits += 1;
            return Ok(Some(run.clone()));
        }
        let run = Rc::new(PrefixRun::run(model, key)?);
        self.runs.insert(key.to_vec(), run.clone());
        Ok(Some(run))
    }

    /// Distinct prefixes run.
    pub fn len(&self) -> usize {
        self.runs.len()
    }

    /// Whether no prefix has been run.
    pub fn is_empty(&self) -> bool {
        self.runs.is_empty()
    }

    /// How many lookups found their prefix already run.
    pub fn hits(&self) -> usize {
        self.hits
    }
}
