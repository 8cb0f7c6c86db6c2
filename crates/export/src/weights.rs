//! Where weights come from: a source of named f32 rows (safetensors, GGUF), and the loaders
//! that turn a tensor into initializer bytes in the exported dtype.

use crate::Dtype;
use crate::error::Result;

/// A source of named tensors, read one row (last dimension) at a time.
pub(crate) trait Weights {
    /// Calls `visit(row_index, row)` for every row of tensor `name`, converted to f32, after
    /// checking that its shape is `expected`.
    fn rows(
        &self,
        name: &str,
        expected: &[usize],
        visit: &mut dyn FnMut(usize, &[f32]),
    ) -> Result<()>;

    /// Whether the source holds tensor `name`.
    fn has(&self, name: &str) -> bool;
}

/// A checkpoint saved from the base model (`BloomModel` rather than `BloomForCausalLM`, as
/// BLOOM's own checkpoints are) names its tensors without the base model's prefix (`h.0.…`
/// for `transformer.h.0.…`); this serves them under the full names.
pub(crate) struct Unprefixed<'a> {
    pub inner: &'a dyn Weights,
    /// The prefix the checkpoint leaves out, with its dot (`transformer.`).
    pub prefix: &'a str,
}

impl Unprefixed<'_> {
    fn name<'n>(&self, name: &'n str) -> &'n str {
        match name.strip_prefix(self.prefix) {
            Some(short) if !self.inner.has(name) => short,
            _ => name,
        }
    }
}

impl Weights for Unprefixed<'_> {
    fn rows(
        &self,
        name: &str,
        expected: &[usize],
        visit: &mut dyn FnMut(usize, &[f32]),
    ) -> Result<()> {
        self.inner.rows(self.name(name), expected, visit)
    }

    fn has(&self, name: &str) -> bool {
        self.inner.has(self.name(name))
    }
}

fn put(out: &mut [u8], index: usize, value: f32, dtype: Dtype) {
    match dtype {
        Dtype::F32 => out[index * 4..index * 4 + 4].copy_from_slice(&value.to_le_bytes()),
        Dtype::F16 => {
            out[index * 2..index * 2 + 2].copy_from_slice(&half::f16::from_f32(value).to_le_bytes())
        }
        Dtype::Bf16 => out[index * 2..index * 2 + 2]
            .copy_from_slice(&half::bf16::from_f32(value).to_le_bytes()),
    }
}

/// A 1-D tensor of `len` values as f32.
pub(crate) fn vector(w: &dyn Weights, name: &str, len: usize) -> Result<Vec<f32>> {
    // No capacity up front: `len` comes from config.json, and `rows` checks it against the
    // tensor's real shape before the first row.
    let mut out = Vec::new();
    w.rows(name, &[len], &mut |_, r| out.extend_from_slice(r))?;
    Ok(out)
}

/// A 0-d tensor (a scalar buffer) as f32.
pub(crate) fn scalar(w: &dyn Weights, name: &str) -> Result<f32> {
    let mut out = 0f32;
    w.rows(name, &[], &mut |_, r| out = r[0])?;
    Ok(out)
}

/// A `[rows, cols]` matrix as stored, as bytes in `dtype`.
pub(crate) fn matrix(
    w: &dyn Weights,
    name: &str,
    rows: usize,
    cols: usize,
    dtype: Dtype,
) -> Result<Vec<u8>> {
    // Allocated at the first row, once `rows` has checked the config's shape against the
    // tensor's (a config can claim any size).
    let mut out = Vec::new();
    w.rows(name, &[rows, cols], &mut |r, row| {
        if out.is_empty() {
            out = vec![0u8; rows * cols * dtype.size()];
        }
        for (c, &v) in row.iter().enumerate() {
            put(&mut out, r * cols + c, v, dtype);
        }
    })?;
    Ok(out)
}

/// A `[rows, cols]` matrix (a PyTorch `Linear` weight `[out, in]`) transposed to
/// `[cols, rows]`, so that `x @ W` is the layer; as bytes in `dtype`.
pub(crate) fn matrix_t(
    w: &dyn Weights,
    name: &str,
    rows: usize,
    cols: usize,
    dtype: Dtype,
) -> Result<Vec<u8>> {
    // As in `matrix`: allocated once the shape has been checked.
    let mut out = Vec::new();
    w.rows(name, &[rows, cols], &mut |r, row| {
        if out.is_empty() {
            out = vec![0u8; rows * cols * dtype.size()];
        }
        for (c, &v) in row.iter().enumerate() {
            put(&mut out, c * rows + r, v, dtype);
        }
    })?;
    Ok(out)
}

/// As [`matrix_t`], with stored row `r` becoming column `reorder(r)` of the result (a
/// permutation of `0..rows`): a fused projection's rows regrouped at export time.
pub(crate) fn matrix_t_reordered(
    w: &dyn Weights,
    name: &str,
    rows: usize,
    cols: usize,
    dtype: Dtype,
    reorder: &dyn Fn(usize) -> usize,
) -> Result<Vec<u8>> {
    let mut out = vec![0u8; rows * cols * dtype.size()];
    w.rows(name, &[rows, cols], &mut |r, row| {
        let r = reorder(r);
        for (c, &v) in row.iter().enumerate() {
            put(&mut out, c * rows + r, v, dtype);
        }
    })?;
    Ok(out)
}
