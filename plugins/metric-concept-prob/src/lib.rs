//! `metric-concept-prob`: P(concept) as the sum of next-token probabilities over a set of
//! token ids (the first tokens of every form of a concept, docs/method.md). Ids are deduplicated so
//! that a token shared by two forms counts once; an id outside the vocabulary is an error,
//! never a silent zero.

use xlpatch_abi::{Create, Metric, Params, PluginError, TensorMut, TensorRef, declare_plugin};

struct ConceptProb;

impl Create for ConceptProb {
    fn create(params: &Params) -> Result<Self, PluginError> {
        params.expect_only(&[])?;
        Ok(ConceptProb)
    }
}

impl Metric for ConceptProb {
    fn compute(
        &self,
        probs: TensorRef<'_, f32>,
        token_ids: &[u32],
        mut out: TensorMut<'_, f32>,
    ) -> Result<(), PluginError> {
        let &[batch, vocab] = probs.shape() else {
            return Err(PluginError::invalid(format!(
                "probs must be [batch, vocab], got {:?}",
                probs.shape()
            )));
        };
        if out.shape() != [batch] {
            return Err(PluginError::invalid(format!(
                "out must be [{batch}], got {:?}",
                out.shape()
            )));
        }
        if let Some(bad) = token_ids.iter().find(|&&id| id as usize >= vocab) {
            return Err(PluginError::invalid(format!(
                "token id {bad} is outside the vocabulary of {vocab}"
            )));
        }
        let mut ids = token_ids.to_vec();
        ids.sort_unstable();
        ids.dedup();
        for (o, row) in out
            .data_mut()
            .iter_mut()
            .zip(probs.data().chunks_exact(vocab))
        {
            // f64 accumulation: the sum of many small probabilities stays exact to f32.
            *o = ids
                .iter()
                .map(|&id| f64::from(row[id as usize]))
                .sum::<f64>() as f32;
        }
        Ok(())
    }
}

declare_plugin!(
    kind: metric,
    name: "metric-concept-prob",
    description: "sum of next-token probabilities over a token-id set (first tokens of a concept)",
    type: ConceptProb,
);
