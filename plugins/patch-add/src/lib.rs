//! `patch-add`: adds `alpha · v` to the residual stream at each patch site (activation
//! steering). Parameter `alpha`, default 1.

use xlpatch_abi::{
    Create, Params, PatchSite, PatchStrategy, PluginError, TensorMut, TensorRef, declare_plugin,
};

/// `h ← h + alpha · v`.
struct Add {
    alpha: f32,
}

impl Create for Add {
    fn create(params: &Params) -> Result<Self, PluginError> {
        params.expect_only(&["alpha"])?;
        Ok(Add {
            alpha: params.f32_or("alpha", 1.0)?,
        })
    }
}

impl PatchStrategy for Add {
    fn apply(
        &self,
        _layer: u32,
        hidden: TensorMut<'_, f32>,
        sites: &[PatchSite],
        source: TensorRef<'_, f32>,
    ) -> Result<(), PluginError> {
        let alpha = self.alpha;
        PatchSite::for_each_row(hidden, sites, source, |h, v| {
            h.iter_mut().zip(v).for_each(|(h, v)| *h += alpha * v)
        })
    }
}

declare_plugin!(
    kind: patch,
    name: "patch-add",
    description: "add alpha times the source latent to the residual stream (steering; alpha=1)",
    type: Add,
);
