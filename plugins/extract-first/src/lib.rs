//! `extract-first`: the first source prompt's latents only, the control for mean patching
//! (docs/method.md).

use xlpatch_abi::{
    Create, Extractor, Params, PluginError, TensorMut, TensorRef, declare_plugin, extract_shapes,
};

struct First;

impl Create for First {
    fn create(params: &Params) -> Result<Self, PluginError> {
        params.expect_only(&[])?;
        Ok(First)
    }
}

impl Extractor for First {
    fn combine(
        &self,
        latents: TensorRef<'_, f32>,
        mut out: TensorMut<'_, f32>,
    ) -> Result<(), PluginError> {
        let (_, row) = extract_shapes(latents.shape(), out.shape())?;
        out.data_mut().copy_from_slice(&latents.data()[..row]);
        Ok(())
    }
}

declare_plugin!(
    kind: extractor,
    name: "extract-first",
    description: "the first source prompt's latents only (the control for mean patching)",
    type: First,
);
