//! One file per architecture: each turns a Hugging Face `config.json` into [`Config`]
//! (`crate::config::Config`). Weight names are the checkpoint's, verbatim, and shared by
//! all supported architectures (`model.layers.{i}.self_attn.q_proj.weight`, ...).

pub(crate) mod gemma3;
pub(crate) mod llama;

use serde_json::Value;

/// An unsigned field, or `default` when absent or null.
pub(crate) fn usize_or(json: &Value, key: &str, default: usize) -> usize {
    json.get(key)
        .and_then(Value::as_u64)
        .map_or(default, |v| v as usize)
}

/// A float field, or `default` when absent or null.
pub(crate) fn f64_or(json: &Value, key: &str, default: f64) -> f64 {
    json.get(key).and_then(Value::as_f64).unwrap_or(default)
}

/// A boolean field, or `default` when absent or null.
pub(crate) fn bool_or(json: &Value, key: &str, default: bool) -> bool {
    json.get(key).and_then(Value::as_bool).unwrap_or(default)
}

/// A required unsigned field.
pub(crate) fn required(
    path: &std::path::Path,
    json: &Value,
    key: &str,
) -> crate::error::Result<usize> {
    json.get(key)
        .and_then(Value::as_u64)
        .map(|v| v as usize)
        .ok_or_else(|| {
            crate::error::ExportError::config(path, format!("missing or invalid \"{key}\""))
        })
}
