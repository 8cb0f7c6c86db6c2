//! `patch-replace`: overwrites the residual stream at each patch site with the source latent,
//! the activation patching of Dumas et al. and of docs/method.md.

use xlpatch_abi::{
    Create, Params, PatchSite, PatchStrategy, PluginError, TensorMut, TensorRef, declare_plugin,
};

/// `h ← v`.
struct Replace;

impl Create for Replace {
    fn create(params: &Params) -> Result<Self, PluginError> {
        params.expect_only(&[])?;
        Ok(Replace)
    }
}

impl PatchStrategy for Replace {
    fn apply(
        &self,
        _layer: u32,
        hidden: TensorMut<'_, f32>,
        sites: &[PatchSite],
        source: TensorRef<'_, f32>,
    ) -> Result<(), PluginError> {
        PatchSite::for_each_row(hidden, sites, source, |h, v| h.copy_from_slice(v))
    }
}

declare_plugin!(
    kind: patch,
    name: "patch-replace",
    description: "overwrite the residual stream at the patch sites with the source latent",
    type: Replace,
);
