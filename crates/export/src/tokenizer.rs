//! The tokenizer that travels with a model: checked against the model's vocabulary and copied.

use std::path::Path;

use serde_json::Value;

use crate::error::{ExportError, Result};

/// The largest token id a `tokenizer.json` produces from text: its model's vocabulary and its
/// non-special added tokens. Special added tokens past the vocabulary are left out: official
/// tokenizers carry some (Gemma 3 270M's `<image_soft_token>` is id 262144 of a 262144-row
/// embedding) and they only appear when a caller inserts them on purpose.
pub(crate) fn max_id(path: &Path) -> Result<Option<u64>> {
    let text = std::fs::read_to_string(path).map_err(|e| ExportError::io(path, e))?;
    let json: Value = serde_json::from_str(&text)
        .map_err(|e| ExportError::malformed(path, format!("invalid json: {e}")))?;
    let mut max: Option<u64> = None;
    let mut see = |id: u64| max = Some(max.map_or(id, |m| m.max(id)));
    match json.pointer("/model/vocab") {
        Some(Value::Object(map)) => map.values().filter_map(Value::as_u64).for_each(&mut see),
        Some(Value::Array(list)) if !list.is_empty() => see(list.len() as u64 - 1),
        _ => {}
    }
    if let Some(Value::Array(added)) = json.get("added_tokens") {
        added
            .iter()
            .filter(|t| t.get("special").and_then(Value::as_bool) != Some(true))
            .filter_map(|t| t.get("id").and_then(Value::as_u64))
            .for_each(&mut see);
    }
    Ok(max)
}

/// Checks that every id of the tokenizer has an embedding row.
pub(crate) fn check(path: &Path, vocab_size: usize) -> Result<()> {
    if let Some(max_id) = max_id(path)?
        && max_id >= vocab_size as u64
    {
        return Err(ExportError::TokenizerVocab {
            path: path.to_path_buf(),
            max_id,
            vocab_size,
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_bpe_unigram_and_added_tokens() {
        let dir = crate::testutil::TempDir::new("tok");
        let p = dir.path().join("tokenizer.json");
        std::fs::write(
            &p,
            r#"{"added_tokens": [{"id": 7, "content": "<x>"}], "model": {"vocab": {"a": 0, "b": 3}}}"#,
        )
        .unwrap();
        assert_eq!(max_id(&p).unwrap(), Some(7));
        assert!(check(&p, 8).is_ok());
        let e = check(&p, 5).unwrap_err().to_string();
        assert!(e.contains("tokenizer.json has ids up to 7"), "{e}");
        std::fs::write(&p, r#"{"model": {"vocab": [["a", 0.0], ["b", -1.0]]}}"#).unwrap();
        assert_eq!(max_id(&p).unwrap(), Some(1));
        // A special token past the vocabulary is tolerated; a plain one is not.
        std::fs::write(
            &p,
            r#"{"added_tokens": [{"id": 9, "special": true}, {"id": 2, "special": false}],
                "model": {"vocab": {"a": 0, "b": 1}}}"#,
        )
        .unwrap();
        assert_eq!(max_id(&p).unwrap(), Some(2));
    }
}
