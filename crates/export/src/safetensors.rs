//! A reader for safetensors checkpoints, single-file or sharded, read in bounded chunks.
//!
//! The format: an 8-byte little-endian header length, a JSON header mapping each tensor name
//! to `{dtype, shape, data_offsets}`, then the data. Every offset is checked against the file
//! before any byte is read, so a truncated or corrupt file is an error, never a panic. Tensors
//! are read with positioned reads a chunk of whole rows at a time (`read.rs`).

use std::collections::{BTreeMap, HashMap};
use std::fs::File;
use std::path::{Path, PathBuf};

use serde::Deserialize;

use crate::error::{ExportError, Result};
use crate::read;
use crate::weights::Weights;

/// Name of the single-file checkpoint in a model directory.
pub(crate) const SINGLE_FILE: &str = "model.safetensors";
/// Name of the shard index in a model directory.
pub(crate) const INDEX_FILE: &str = "model.safetensors.index.json";

struct Shard {
    path: PathBuf,
    file: File,
}

struct Entry {
    shard: usize,
    dtype: String,
    shape: Vec<usize>,
    /// Absolute byte range in the shard's file.
    start: usize,
    end: usize,
}

/// An opened checkpoint: one or more open files and a name index.
pub(crate) struct SafeTensors {
    /// The file named in "missing tensor" errors: the single file or the index.
    root: PathBuf,
    shards: Vec<Shard>,
    entries: HashMap<String, Entry>,
}

#[derive(Deserialize)]
struct RawEntry {
    dtype: String,
    shape: Vec<usize>,
    data_offsets: [usize; 2],
}

#[derive(Deserialize)]
struct Index {
    weight_map: BTreeMap<String, String>,
}

fn element_size(dtype: &str) -> Option<usize> {
    Some(match dtype {
        "F64" | "I64" | "U64" => 8,
        "F32" | "I32" | "U32" => 4,
        "F16" | "BF16" | "I16" | "U16" => 2,
        "I8" | "U8" | "BOOL" | "F8_E4M3" | "F8_E5M2" => 1,
        _ => return None,
    })
}

impl SafeTensors {
    /// Opens the checkpoint of a model directory: the shard index if there is one, else
    /// `model.safetensors`.
    pub(crate) fn open_dir(dir: &Path) -> Result<Self> {
        let index = dir.join(INDEX_FILE);
        if index.is_file() {
            Self::open_index(&index)
        } else {
            Self::open_file(&dir.join(SINGLE_FILE))
        }
    }

    /// Opens one `.safetensors` file.
    pub(crate) fn open_file(path: &Path) -> Result<Self> {
        let mut st = SafeTensors {
            root: path.to_path_buf(),
            shards: Vec::new(),
            entries: HashMap::new(),
        };
        st.add_shard(path, None)?;
        Ok(st)
    }

    /// Opens a sharded checkpoint from its `model.safetensors.index.json`.
    pub(crate) fn open_index(index: &Path) -> Result<Self> {
        let text = std::fs::read_to_string(index).map_err(|e| ExportError::io(index, e))?;
        let parsed: Index = serde_json::from_str(&text)
            .map_err(|e| ExportError::malformed(index, format!("invalid index json: {e}")))?;
        let dir = index.parent().unwrap_or(Path::new("."));
        let mut by_file: BTreeMap<&str, Vec<&str>> = BTreeMap::new();
        for (tensor, file) in &parsed.weight_map {
            by_file.entry(file).or_default().push(tensor);
        }
        let mut st = SafeTensors {
            root: index.to_path_buf(),
            shards: Vec::new(),
            entries: HashMap::new(),
        };
        for (file, tensors) in by_file {
            if file.contains('/') || file.contains('\\') || file.starts_with('.') {
                return Err(ExportError::malformed(
                    index,
                    format!("shard name \"{file}\" is not a plain file name"),
                ));
            }
            st.add_shard(&dir.join(file), Some(&tensors))?;
        }
        Ok(st)
    }

    /// Opens one file and indexes its tensors (only `expected` ones when given, each of which
    /// must be present).
    fn add_shard(&mut self, path: &Path, expected: Option<&[&str]>) -> Result<()> {
        let file = File::open(path).map_err(|e| ExportError::io(path, e))?;
        let len = read::len(&file, path)?;
        let truncated = |detail: String| ExportError::Truncated {
            path: path.to_path_buf(),
            detail,
        };
        if len < 8 {
            return Err(truncated(format!(
                "{len} bytes, less than the 8-byte header length"
            )));
        }
        let mut prefix = [0u8; 8];
        read::read_at(&file, path, 0, &mut prefix)?;
        let header_len = u64::from_le_bytes(prefix);
        let avail = len - 8;
        if header_len > avail {
            return Err(truncated(format!(
                "header of {header_len} bytes but only {avail} bytes follow the length"
            )));
        }
        let header_end = 8 + header_len as usize;
        let header: BTreeMap<String, serde_json::Value> = {
            let mut json = vec![0u8; header_len as usize];
            read::read_at(&file, path, 8, &mut json)?;
            serde_json::from_slice(&json)
                .map_err(|e| ExportError::malformed(path, format!("invalid header json: {e}")))?
        };
        let data_len = len as usize - header_end;
        let shard = self.shards.len();
        for (name, value) in header {
            if name == "__metadata__" {
                continue;
            }
            let raw: RawEntry = serde_json::from_value(value).map_err(|e| {
                ExportError::malformed(path, format!("header entry \"{name}\": {e}"))
            })?;
            let [begin, end] = raw.data_offsets;
            if begin > end {
                return Err(ExportError::malformed(
                    path,
                    format!("tensor \"{name}\" has data offsets [{begin}, {end}]"),
                ));
            }
            if end > data_len {
                return Err(truncated(format!(
                    "tensor \"{name}\" ends at data byte {end} but the data section has {data_len} bytes"
                )));
            }
            if let Some(size) = element_size(&raw.dtype) {
                // The shape comes from the file: its product may overflow.
                let numel = raw.shape.iter().try_fold(1usize, |a, &d| a.checked_mul(d));
                let bytes = numel.and_then(|n| n.checked_mul(size));
                if bytes != Some(end - begin) {
                    return Err(ExportError::malformed(
                        path,
                        format!(
                            "tensor \"{name}\" of shape {:?} and dtype {} needs {} bytes, its offsets span {}",
                            raw.shape,
                            raw.dtype,
                            bytes.map_or("more than this machine can address".into(), |b| b
                                .to_string()),
                            end - begin
                        ),
                    ));
                }
            }
            if let Some(exp) = expected
                && !exp.contains(&name.as_str())
            {
                continue;
            }
            self.entries.insert(
                name,
                Entry {
                    shard,
                    dtype: raw.dtype,
                    shape: raw.shape,
                    start: header_end + begin,
                    end: header_end + end,
                },
            );
        }
        if let Some(exp) = expected
            && let Some(missing) = exp.iter().find(|t| !self.entries.contains_key(**t))
        {
            return Err(ExportError::MissingTensor {
                path: path.to_path_buf(),
                tensor: missing.to_string(),
            });
        }
        self.shards.push(Shard {
            path: path.to_path_buf(),
            file,
        });
        Ok(())
    }

    fn entry(&self, name: &str) -> Result<&Entry> {
        self.entries
            .get(name)
            .ok_or_else(|| ExportError::MissingTensor {
                path: self.root.clone(),
                tensor: name.to_string(),
            })
    }
}

impl Weights for SafeTensors {
    fn has(&self, name: &str) -> bool {
        self.entries.contains_key(name)
    }

    fn rows(
        &self,
        name: &str,
        expected: &[usize],
        visit: &mut dyn FnMut(usize, &[f32]),
    ) -> Result<()> {
        let e = self.entry(name)?;
        let shard = &self.shards[e.shard];
        if e.shape != expected {
            return Err(ExportError::ShapeMismatch {
                path: shard.path.clone(),
                tensor: name.to_string(),
                expected: expected.to_vec(),
                found: e.shape.clone(),
            });
        }
        let cols = expected.last().copied().unwrap_or(1).max(1);
        let mut row = vec![0f32; cols];
        let esize = match e.dtype.as_str() {
            "F32" => 4,
            "F16" | "BF16" => 2,
            other => {
                return Err(ExportError::UnsupportedDtype {
                    path: shard.path.clone(),
                    tensor: name.to_string(),
                    dtype: other.to_string(),
                });
            }
        };
        let row_bytes = cols * esize;
        let rows = (e.end - e.start) / row_bytes;
        let mut convert = |r: usize, chunk: &[u8]| {
            match e.dtype.as_str() {
                "F32" => {
                    for (o, b) in row.iter_mut().zip(chunk.chunks_exact(4)) {
                        *o = f32::from_le_bytes([b[0], b[1], b[2], b[3]]);
                    }
                }
                "F16" => {
                    for (o, b) in row.iter_mut().zip(chunk.chunks_exact(2)) {
                        *o = half::f16::from_le_bytes([b[0], b[1]]).to_f32();
                    }
                }
                _ => {
                    for (o, b) in row.iter_mut().zip(chunk.chunks_exact(2)) {
                        *o = half::bf16::from_le_bytes([b[0], b[1]]).to_f32();
                    }
                }
            }
            visit(r, &row);
        };
        read::for_each_row(
            &shard.file,
            &shard.path,
            e.start as u64,
            row_bytes,
            rows,
            read::CHUNK_BYTES,
            &mut convert,
        )
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::testutil::TempDir;

    /// Serialises tensors (name, dtype, shape, raw bytes) into safetensors bytes.
    pub(crate) fn serialize(tensors: &[(&str, &str, Vec<usize>, Vec<u8>)]) -> Vec<u8> {
        let mut header = serde_json::Map::new();
        let mut data = Vec::new();
        for (name, dtype, shape, bytes) in tensors {
            let begin = data.len();
            data.extend_from_slice(bytes);
            header.insert(
                name.to_string(),
                serde_json::json!({"dtype": dtype, "shape": shape, "data_offsets": [begin, data.len()]}),
            );
        }
        let h = serde_json::to_vec(&header).unwrap();
        let mut out = (h.len() as u64).to_le_bytes().to_vec();
        out.extend_from_slice(&h);
        out.extend_from_slice(&data);
        out
    }

    fn f32_bytes(v: &[f32]) -> Vec<u8> {
        v.iter().flat_map(|x| x.to_le_bytes()).collect()
    }

    fn read_all(st: &SafeTensors, name: &str, shape: &[usize]) -> Result<Vec<f32>> {
        let mut out = Vec::new();
        st.rows(name, shape, &mut |_, r| out.extend_from_slice(r))?;
        Ok(out)
    }

    #[test]
    fn reads_f32_f16_bf16() {
        let dir = TempDir::new("st-dtypes");
        let vals = [1.0f32, -2.5, 0.375, 1024.0];
        let f16: Vec<u8> = vals
            .iter()
            .flat_map(|&x| half::f16::from_f32(x).to_le_bytes())
            .collect();
        let bf16: Vec<u8> = vals
            .iter()
            .flat_map(|&x| half::bf16::from_f32(x).to_le_bytes())
            .collect();
        let bytes = serialize(&[
            ("a", "F32", vec![2, 2], f32_bytes(&vals)),
            ("b", "F16", vec![2, 2], f16),
            ("c", "BF16", vec![4], bf16),
        ]);
        let p = dir.path().join("model.safetensors");
        std::fs::write(&p, bytes).unwrap();
        let st = SafeTensors::open_dir(dir.path()).unwrap();
        for (n, s) in [("a", vec![2, 2]), ("b", vec![2, 2]), ("c", vec![4])] {
            assert_eq!(read_all(&st, n, &s).unwrap(), vals, "tensor {n}");
        }
    }

    #[test]
    fn reads_sharded_checkpoints() {
        let dir = TempDir::new("st-sharded");
        std::fs::write(
            dir.path().join("m-1.safetensors"),
            serialize(&[("a", "F32", vec![1], f32_bytes(&[1.0]))]),
        )
        .unwrap();
        std::fs::write(
            dir.path().join("m-2.safetensors"),
            serialize(&[("b", "F32", vec![1], f32_bytes(&[2.0]))]),
        )
        .unwrap();
        std::fs::write(
            dir.path().join(INDEX_FILE),
            r#"{"metadata": {}, "weight_map": {"a": "m-1.safetensors", "b": "m-2.safetensors"}}"#,
        )
        .unwrap();
        let st = SafeTensors::open_dir(dir.path()).unwrap();
        assert_eq!(read_all(&st, "a", &[1]).unwrap(), [1.0]);
        assert_eq!(read_all(&st, "b", &[1]).unwrap(), [2.0]);
        // A tensor the index names but its shard lacks.
        std::fs::write(
            dir.path().join(INDEX_FILE),
            r#"{"weight_map": {"a": "m-1.safetensors", "z": "m-2.safetensors"}}"#,
        )
        .unwrap();
        let err = SafeTensors::open_dir(dir.path()).err().unwrap().to_string();
        assert!(
            err.contains("\"z\"") && err.contains("m-2.safetensors"),
            "{err}"
        );
    }

    #[test]
    fn truncated_files_are_errors_naming_the_file() {
        let dir = TempDir::new("st-truncated");
        let p = dir.path().join("model.safetensors");
        let full = serialize(&[("a", "F32", vec![4], f32_bytes(&[1.0, 2.0, 3.0, 4.0]))]);
        // Shorter than the length prefix.
        std::fs::write(&p, &full[..5]).unwrap();
        let e = SafeTensors::open_file(&p).err().unwrap().to_string();
        assert!(e.contains("model.safetensors is truncated"), "{e}");
        // Header longer than the file.
        std::fs::write(&p, &full[..20]).unwrap();
        let e = SafeTensors::open_file(&p).err().unwrap().to_string();
        assert!(e.contains("truncated") && e.contains("header of"), "{e}");
        // Data cut short.
        std::fs::write(&p, &full[..full.len() - 3]).unwrap();
        let e = SafeTensors::open_file(&p).err().unwrap().to_string();
        assert!(e.contains("truncated") && e.contains("\"a\""), "{e}");
        // Garbage header.
        let mut bad = 4u64.to_le_bytes().to_vec();
        bad.extend_from_slice(b"{{{{");
        std::fs::write(&p, &bad).unwrap();
        let e = SafeTensors::open_file(&p).err().unwrap().to_string();
        assert!(e.contains("malformed"), "{e}");
    }

    #[test]
    fn missing_tensor_shape_mismatch_and_dtype_are_named() {
        let dir = TempDir::new("st-errors");
        let p = dir.path().join("model.safetensors");
        std::fs::write(
            &p,
            serialize(&[
                ("a", "F32", vec![2, 2], f32_bytes(&[0.0; 4])),
                ("i", "I64", vec![1], vec![0; 8]),
            ]),
        )
        .unwrap();
        let st = SafeTensors::open_file(&p).unwrap();
        let e = read_all(&st, "nope", &[1]).unwrap_err();
        assert!(matches!(e, ExportError::MissingTensor { .. }));
        assert!(e.to_string().contains("\"nope\""), "{e}");
        let e = read_all(&st, "a", &[4, 1]).unwrap_err();
        assert_eq!(
            e.to_string(),
            format!(
                "tensor \"a\" in {} has shape [2, 2], expected [4, 1]",
                p.display()
            )
        );
        let e = read_all(&st, "i", &[1]).unwrap_err().to_string();
        assert!(e.contains("unsupported dtype I64"), "{e}");
    }
}
