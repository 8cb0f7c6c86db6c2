//! What the units of one checkpoint share: the config, the plan, the plugins and the
//! checkpoint's facts.

use xlpatch_abi::loader::Registry;
use xlpatch_abi::{Metric, PatchStrategy};

use super::plan::Plan;
use crate::Error;
use crate::config::SweepConfig;

/// The plugins of a sweep.
pub(super) struct Plugins {
    /// The patch strategy.
    pub(super) strategy: Box<dyn PatchStrategy>,
    /// The extractor combining source latents.
    pub(super) extractor: Box<dyn xlpatch_abi::Extractor>,
    /// The metric.
    pub(super) metric: Box<dyn Metric>,
}

/// The plugins `config` names, from `registry`.
pub(super) fn plugins(config: &SweepConfig, registry: &Registry) -> Result<Plugins, Error> {
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

/// One unit of a sweep: a target prompt on a checkpoint.
#[derive(Debug, Clone)]
pub(super) struct UnitRef {
    /// The checkpoint's index in the plan.
    pub(super) model: usize,
    /// The item's index in the plan.
    pub(super) item: usize,
    /// The unit's key in the results (`<checkpoint>/<item>`).
    pub(super) key: String,
}

/// What rows say about their checkpoint.
pub(super) struct Checkpoint {
    /// Its directory's name.
    pub(super) name: String,
    /// Its training step.
    pub(super) step: Option<u64>,
    /// Its model's content hash.
    pub(super) hash: String,
    /// Which token ids end a generated answer.
    pub(super) stops: Vec<bool>,
}

/// What every unit run on one checkpoint shares.
pub(super) struct Units<'a> {
    /// The sweep's config.
    pub(super) config: &'a SweepConfig,
    /// Its plan.
    pub(super) plan: &'a Plan,
    /// Its plugins.
    pub(super) plugins: &'a Plugins,
    /// The checkpoint.
    pub(super) checkpoint: Checkpoint,
}
