//! `extract-mean`: the mean of the source latents per layer ("mean patching", docs/method.md).
//! Sums in f64 so that the mean of n copies of v is v exactly for any n.

use xlpatch_abi::{
    Create, Extractor, Params, PluginError, TensorMut, TensorRef, declare_plugin, extract_shapes,
};

struct Mean;

impl Create for Mean {
    fn create(params: &Params) -> Result<Self, PluginError> {
        params.expect_only(&[])?;
        Ok(Mean)
    }
}

impl Extractor for Mean {
    fn combine(
        &self,
        latents: TensorRef<'_, f32>,
        mut out: TensorMut<'_, f32>,
    ) -> Result<(), PluginError> {
        let (n, row) = extract_shapes(latents.shape(), out.shape())?;
        let mut acc = vec![0f64; row];
        for source in latents.data().chunks_exact(row) {
            acc.iter_mut()
                .zip(source)
                .for_each(|(a, x)| *a += f64::from(*x));
        }
        out.data_mut()
            .iter_mut()
            .zip(&acc)
            .for_each(|(o, a)| *o = (a / n as f64) as f32);
        Ok(())
    }
}

declare_plugin!(
    kind: extractor,
    name: "extract-mean",
    description: "mean of the source prompts' latents per layer (mean patching)",
    type: Mean,
);
