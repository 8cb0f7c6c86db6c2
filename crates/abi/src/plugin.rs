//! The safe side of the ABI: one trait per plugin kind, implemented by plugin authors and, for
//! loaded plugins, by the host's handles, so engine code is written once against the traits.

use std::fmt;

use crate::{ModelInfo, StatusCode, TensorMut, TensorRef};

/// An error reported by a plugin, or by the host about a plugin call.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PluginError {
    /// What went wrong, as an ABI status code.
    pub code: StatusCode,
    /// A lower-case message without a trailing dot.
    pub message: String,
}

impl PluginError {
    /// An error with `code`.
    pub fn new(code: StatusCode, message: impl Into<String>) -> PluginError {
        PluginError {
            code,
            message: message.into(),
        }
    }

    /// [`StatusCode::INVALID_ARGUMENT`].
    pub fn invalid(message: impl Into<String>) -> PluginError {
        PluginError::new(StatusCode::INVALID_ARGUMENT, message)
    }

    /// [`StatusCode::INTERNAL`].
    pub fn internal(message: impl Into<String>) -> PluginError {
        PluginError::new(StatusCode::INTERNAL, message)
    }

    /// An error with `code` telling `error` and its causes, each once: the ABI carries a
    /// message, not a chain of errors.
    pub fn with_causes(code: StatusCode, error: &dyn std::error::Error) -> PluginError {
        let mut message = error.to_string();
        let mut cause = error.source();
        while let Some(c) = cause {
            message.push_str(": ");
            message.push_str(&c.to_string());
            cause = c.source();
        }
        PluginError::new(code, message)
    }
}

impl fmt::Display for PluginError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} ({})", self.message, self.code.name())
    }
}

impl std::error::Error for PluginError {}

/// String parameters given to [`Create::create`].
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Params {
    pairs: Vec<(String, String)>,
}

impl Params {
    /// Parameters from key-value pairs.
    pub fn new<K: Into<String>, V: Into<String>>(
        pairs: impl IntoIterator<Item = (K, V)>,
    ) -> Params {
        Params {
            pairs: pairs
                .into_iter()
                .map(|(k, v)| (k.into(), v.into()))
                .collect(),
        }
    }

    /// All pairs, in the order given.
    pub fn pairs(&self) -> &[(String, String)] {
        &self.pairs
    }

    /// The value of `key`, if given (the last one wins).
    pub fn get(&self, key: &str) -> Option<&str> {
        self.pairs
            .iter()
            .rev()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }

    /// `key` as a finite `f32`, or `default` when absent.
    pub fn f32_or(&self, key: &str, default: f32) -> Result<f32, PluginError> {
        match self.get(key) {
            None => Ok(default),
            Some(v) => v
                .trim()
                .parse::<f32>()
                .ok()
                .filter(|x| x.is_finite())
                .ok_or_else(|| {
                    PluginError::invalid(format!("parameter {key}={v:?} is not a finite number"))
                }),
        }
    }

    /// Fails on a key outside `known`, so that a typo is not silently ignored.
    pub fn expect_only(&self, known: &[&str]) -> Result<(), PluginError> {
        match self
            .pairs
            .iter()
            .find(|(k, _)| !known.contains(&k.as_str()))
        {
            None => Ok(()),
            Some((k, _)) => Err(PluginError::invalid(format!(
                "unknown parameter {k:?} (known: {})",
                if known.is_empty() {
                    "none".to_string()
                } else {
                    known.join(", ")
                }
            ))),
        }
    }
}

/// Builds a plugin instance from its parameters; required by [`crate::declare_plugin!`].
pub trait Create: Sized + 'static {
    /// A new instance; refuses unknown or malformed parameters.
    fn create(params: &Params) -> Result<Self, PluginError>;
}

/// A position in a batch of sequences where a patch is written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[repr(C)]
pub struct PatchSite {
    /// Row of the batch.
    pub batch: usize,
    /// Token position in that row.
    pub position: usize,
}

impl PatchSite {
    /// Checks patch arguments: `hidden` is `[batch, seq, d]`, `source` is `[sites.len(), d]`,
    /// every site is inside `hidden`. Returns `d`.
    pub fn validate(
        hidden: &[usize],
        sites: &[PatchSite],
        source: &[usize],
    ) -> Result<usize, PluginError> {
        let &[batch, seq, d] = hidden else {
            return Err(PluginError::invalid(format!(
                "hidden state must be [batch, seq, d], got {hidden:?}"
            )));
        };
        if source != [sites.len(), d] {
            return Err(PluginError::invalid(format!(
                "source must be [{}, {d}] (one row per site), got {source:?}",
                sites.len()
            )));
        }
        if let Some(s) = sites.iter().find(|s| s.batch >= batch || s.position >= seq) {
            return Err(PluginError::invalid(format!(
                "patch site (batch {}, position {}) is outside a [{batch}, {seq}] batch",
                s.batch, s.position
            )));
        }
        Ok(d)
    }

    /// Offset of this site's row in a `[batch, seq, d]` tensor.
    pub fn offset(&self, seq: usize, d: usize) -> usize {
        (self.batch * seq + self.position) * d
    }

    /// Validates the arguments of [`PatchStrategy::apply`], then calls `f(h, v)` with the
    /// residual row `h` of each site and its source row `v`, in site order: the body of
    /// every row-wise patch strategy.
    pub fn for_each_row(
        mut hidden: TensorMut<'_, f32>,
        sites: &[PatchSite],
        source: TensorRef<'_, f32>,
        mut f: impl FnMut(&mut [f32], &[f32]),
    ) -> Result<(), PluginError> {
        let d = PatchSite::validate(hidden.shape(), sites, source.shape())?;
        let seq = hidden.shape()[1];
        let h = hidden.data_mut();
        for (site, v) in sites.iter().zip(source.data().chunks_exact(d)) {
            let at = site.offset(seq, d);
            f(&mut h[at..at + d], v);
        }
        Ok(())
    }
}

/// Writes a latent into the residual stream.
pub trait PatchStrategy: Send + Sync {
    /// Patch `hidden` (`[batch, seq, d]`, the output of block `layer`) in place at each site
    /// with the matching row of `source` (`[sites.len(), d]`).
    fn apply(
        &self,
        layer: u32,
        hidden: TensorMut<'_, f32>,
        sites: &[PatchSite],
        source: TensorRef<'_, f32>,
    ) -> Result<(), PluginError>;
}

/// Combines per-prompt source latents into one latent per layer.
pub trait Extractor: Send + Sync {
    /// From `latents` `[n_sources, n_layers, d]` write `out` `[n_layers, d]`.
    fn combine(
        &self,
        latents: TensorRef<'_, f32>,
        out: TensorMut<'_, f32>,
    ) -> Result<(), PluginError>;
}

/// Checks the arguments of [`Extractor::combine`]: `latents` is `[n_sources > 0, n_layers, d]`
/// and `out` is `[n_layers, d]`. Returns `n_sources` and `n_layers * d`.
pub fn extract_shapes(latents: &[usize], out: &[usize]) -> Result<(usize, usize), PluginError> {
    match latents {
        [n, rest @ ..] if rest == out && rest.len() == 2 && *n > 0 => Ok((*n, rest[0] * rest[1])),
        _ => Err(PluginError::invalid(format!(
            "latents must be [n_sources > 0, n_layers, d] and out [n_layers, d], got {latents:?} and {out:?}"
        ))),
    }
}

/// Measures next-token distributions.
pub trait Metric: Send + Sync {
    /// From `probs` `[batch, vocab]` and a set of token ids write `out` `[batch]`.
    fn compute(
        &self,
        probs: TensorRef<'_, f32>,
        token_ids: &[u32],
        out: TensorMut<'_, f32>,
    ) -> Result<(), PluginError>;
}

/// The tensors of one decoder-block run (see [`crate::LayerIoC`] for shapes).
#[derive(Debug)]
pub struct LayerRun<'a> {
    /// f32 `[batch, seq, d]`.
    pub hidden_in: TensorRef<'a, f32>,
    /// i64 `[batch, seq]`.
    pub position_ids: TensorRef<'a, i64>,
    /// i64 `[batch, past + seq]`.
    pub attention_mask: TensorRef<'a, i64>,
    /// f32 `[batch, kv_heads, past, head_dim]`.
    pub past_key: TensorRef<'a, f32>,
    /// f32 `[batch, kv_heads, past, head_dim]`.
    pub past_value: TensorRef<'a, f32>,
    /// f32 `[batch, seq, d]`.
    pub hidden_out: TensorMut<'a, f32>,
    /// f32 `[batch, kv_heads, past + seq, head_dim]`.
    pub present_key: TensorMut<'a, f32>,
    /// f32 `[batch, kv_heads, past + seq, head_dim]`.
    pub present_value: TensorMut<'a, f32>,
    /// f32 `[batch, seq, d]`, when wanted.
    pub attn_out: Option<TensorMut<'a, f32>>,
    /// f32 `[batch, seq, d]`, when wanted.
    pub mlp_out: Option<TensorMut<'a, f32>>,
}

/// Runs a model split into embed, decoder blocks and head.
pub trait Backend: Send {
    /// Sizes of the open model.
    fn info(&self) -> ModelInfo;
    /// Token ids `[batch, seq]` to the residual stream `[batch, seq, d]`.
    fn embed(
        &mut self,
        ids: TensorRef<'_, i64>,
        hidden: TensorMut<'_, f32>,
    ) -> Result<(), PluginError>;
    /// Runs decoder block `index`.
    fn layer(&mut self, index: u32, run: LayerRun<'_>) -> Result<(), PluginError>;
    /// Residual stream `[batch, seq, d]` to logits `[batch, seq, vocab]`.
    fn head(
        &mut self,
        hidden: TensorRef<'_, f32>,
        logits: TensorMut<'_, f32>,
    ) -> Result<(), PluginError>;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn params_parse_and_refuse() {
        let p = Params::new([("alpha", "0.5"), ("alpha", "0.25")]);
        assert_eq!(p.f32_or("alpha", 1.0).unwrap(), 0.25);
        assert_eq!(p.f32_or("beta", 1.0).unwrap(), 1.0);
        assert!(p.expect_only(&["alpha"]).is_ok());
        let err = p.expect_only(&["beta"]).unwrap_err();
        assert!(err.message.contains("unknown parameter \"alpha\""), "{err}");
        let bad = Params::new([("alpha", "nan")]);
        assert!(bad.f32_or("alpha", 1.0).is_err());
    }

    #[test]
    fn patch_sites_are_validated() {
        let sites = [PatchSite {
            batch: 1,
            position: 3,
        }];
        assert_eq!(PatchSite::validate(&[2, 4, 8], &sites, &[1, 8]), Ok(8));
        assert!(PatchSite::validate(&[2, 3, 8], &sites, &[1, 8]).is_err());
        assert!(PatchSite::validate(&[2, 4, 8], &sites, &[1, 7]).is_err());
        assert!(PatchSite::validate(&[2, 4], &sites, &[1, 4]).is_err());
        assert_eq!(sites[0].offset(4, 8), (4 + 3) * 8);
    }
}
