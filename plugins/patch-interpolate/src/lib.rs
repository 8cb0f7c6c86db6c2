//! `patch-interpolate`: moves the residual stream towards the source latent,
//! `h ← (1 − alpha) · h + alpha · v`. Parameter `alpha`, default 0.5; 1 is `patch-replace`.

use xlpatch_abi::{
    Create, Params, PatchSite, PatchStrategy, PluginError, TensorMut, TensorRef, declare_plugin,
};

/// `h ← (1 − alpha) · h + alpha · v`.
struct Interpolate {
    alpha: f32,
}

impl Create for Interpolate {
    fn create(params: &Params) -> Result<Self, PluginError> {
        params.expect_only(&["alpha"])?;
        Ok(Interpolate {
            alpha: params.f32_or("alpha", 0.5)?,
        })
    }
}

impl PatchStrategy for Interpolate {
    fn apply(
        &self,
        _layer: u32,
        hidden: TensorMut<'_, f32>,
        sites: &[PatchSite],
        source: TensorRef<'_, f32>,
    ) -> Result<(), PluginError> {
        let alpha = self.alpha;
        PatchSite::for_each_row(hidden, sites, source, |h, v| {
            h.iter_mut()
                .zip(v)
                .for_each(|(h, v)| *h = (1.0 - alpha) * *h + alpha * v)
        })
    }
}

declare_plugin!(
    kind: patch,
    name: "patch-interpolate",
    description: "interpolate the residual stream towards the source latent, (1-alpha)h + alpha v (alpha=0.5)",
    type: Interpolate,
);
