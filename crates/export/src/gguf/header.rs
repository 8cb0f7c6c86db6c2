//! The GGUF header: magic, version, metadata and tensor table, parsed in one pass from a
//! buffered reader. Every length is checked against the file's size before anything is
//! allocated or read, so a corrupt or cut file is an error naming the file, never a huge
//! allocation or a panic.

use std::collections::HashMap;
use std::io::{BufReader, Read};
use std::path::Path;

use crate::error::{ExportError, Result};

const MAGIC: &[u8; 4] = b"GGUF";
const DEFAULT_ALIGNMENT: u64 = 32;
/// Bounds no real GGUF file comes near (models have thousands of tensors and keys, names of
/// tens of bytes, vocabularies of a few hundred thousand tokens): a count beyond them is read
/// from garbage.
const MAX_ENTRIES: u64 = 1 << 24;
const MAX_NAME: u64 = 1 << 16;
const MAX_ARRAY: u64 = 1 << 32;
const MAX_STRING: u64 = 1 << 32;

/// A metadata value (array contents are skipped; their length is kept).
#[derive(Clone, Debug, PartialEq)]
pub(super) enum Meta {
    Uint(u64),
    Int(i64),
    Float(f64),
    Bool(bool),
    Str(String),
    Array(u64),
}

/// One entry of the tensor table, as stored.
pub(super) struct RawTensor {
    /// The GGUF name (`blk.0.attn_q.weight`).
    pub name: String,
    /// Dimensions in ggml order (`ne[0]` varies fastest).
    pub ne: Vec<usize>,
    /// The ggml type id.
    pub ty: u32,
    /// Offset from the start of the data section.
    pub offset: usize,
}

/// What the header holds, read before any tensor data.
pub(super) struct Header {
    pub meta: HashMap<String, Meta>,
    /// `general.architecture`.
    pub arch: String,
    pub tensors: Vec<RawTensor>,
    /// Absolute offset of the data section.
    pub data_start: usize,
}

/// A reader of the header that knows where it is and how long the file is.
struct Cursor<'a, R> {
    path: &'a Path,
    inner: R,
    file_len: u64,
    pos: u64,
}

impl<R: Read> Cursor<'_, R> {
    fn take(&mut self, n: usize) -> Result<Vec<u8>> {
        let end = self
            .pos
            .checked_add(n as u64)
            .filter(|&e| e <= self.file_len);
        if end.is_none() {
            return Err(ExportError::Truncated {
                path: self.path.to_path_buf(),
                detail: format!(
                    "header needs {n} bytes at offset {} but the file has {}",
                    self.pos, self.file_len
                ),
            });
        }
        let mut buf = vec![0u8; n];
        self.inner.read_exact(&mut buf).map_err(|e| {
            if e.kind() == std::io::ErrorKind::UnexpectedEof {
                // The file shrank while being read.
                ExportError::Truncated {
                    path: self.path.to_path_buf(),
                    detail: format!("the header ends early at offset {}", self.pos),
                }
            } else {
                ExportError::io(self.path, e)
            }
        })?;
        self.pos += n as u64;
        Ok(buf)
    }
    fn array<const N: usize>(&mut self) -> Result<[u8; N]> {
        Ok(self.take(N)?.try_into().expect("took N bytes"))
    }
    fn u8(&mut self) -> Result<u8> {
        Ok(self.array::<1>()?[0])
    }
    fn u32(&mut self) -> Result<u32> {
        Ok(u32::from_le_bytes(self.array()?))
    }
    fn u64(&mut self) -> Result<u64> {
        Ok(u64::from_le_bytes(self.array()?))
    }
    fn len(&mut self) -> Result<usize> {
        let n = self.u64()?;
        usize::try_from(n).map_err(|_| ExportError::malformed(self.path, "length overflows"))
    }
    /// A count or length no GGUF file can hold more than `max` of: a larger one is garbage
    /// (another format, or damage), not a file cut short, and is called so before any size
    /// is derived from it.
    fn count(&mut self, what: &str, max: u64) -> Result<u64> {
        let at = self.pos;
        let n = self.u64()?;
        if n > max {
            return Err(ExportError::malformed(
                self.path,
                format!(
                    "not a GGUF file, or a damaged one: implausible header ({what} {n} at \
                     offset {at})"
                ),
            ));
        }
        Ok(n)
    }
    fn string(&mut self) -> Result<String> {
        self.string_of("string length", MAX_STRING)
    }
    fn string_of(&mut self, what: &str, max: u64) -> Result<String> {
        let n = self.count(what, max)? as usize;
        let b = self.take(n)?;
        String::from_utf8(b).map_err(|_| ExportError::malformed(self.path, "string is not utf-8"))
    }
    fn value(&mut self, ty: u32) -> Result<Meta> {
        Ok(match ty {
            0 => Meta::Uint(self.u8()? as u64),
            1 => Meta::Int(self.u8()? as i8 as i64),
            2 => Meta::Uint(u16::from_le_bytes(self.array()?) as u64),
            3 => Meta::Int(i16::from_le_bytes(self.array()?) as i64),
            4 => Meta::Uint(self.u32()? as u64),
            5 => Meta::Int(self.u32()? as i32 as i64),
            6 => Meta::Float(f32::from_le_bytes(self.array()?) as f64),
            7 => Meta::Bool(self.u8()? != 0),
            8 => Meta::Str(self.string()?),
            9 => {
                let inner = self.u32()?;
                let n = self.count("array length", MAX_ARRAY)?;
                for _ in 0..n {
                    self.value(inner)?;
                }
                Meta::Array(n)
            }
            10 => Meta::Uint(self.u64()?),
            11 => Meta::Int(self.u64()? as i64),
            12 => Meta::Float(f64::from_le_bytes(self.array()?)),
            other => {
                return Err(ExportError::malformed(
                    self.path,
                    format!("unknown metadata value type {other}"),
                ));
            }
        })
    }
}

impl Header {
    /// Parses the header of `file` (`file_len` bytes long) through a buffer of `buffer`
    /// bytes.
    pub(super) fn read(
        file: &std::fs::File,
        path: &Path,
        file_len: u64,
        buffer: usize,
    ) -> Result<Self> {
        let mut c = Cursor {
            path,
            inner: BufReader::with_capacity(
                buffer.clamp(1, usize::try_from(file_len).unwrap_or(usize::MAX).max(1)),
                file,
            ),
            file_len,
            pos: 0,
        };
        if &c.array::<4>()? != MAGIC {
            return Err(ExportError::malformed(path, "not a GGUF file (bad magic)"));
        }
        let version = c.u32()?;
        if !(2..=3).contains(&version) {
            return Err(ExportError::malformed(
                path,
                format!("GGUF version {version} is not supported (2 or 3)"),
            ));
        }
        let n_tensors = c.count("tensor count", MAX_ENTRIES)?;
        let n_meta = c.count("metadata count", MAX_ENTRIES)?;
        let mut meta = HashMap::new();
        for _ in 0..n_meta {
            let key = c.string_of("key length", MAX_NAME)?;
            let ty = c.u32()?;
            let v = c.value(ty)?;
            meta.insert(key, v);
        }
        let arch = match meta.get("general.architecture") {
            Some(Meta::Str(s)) => s.clone(),
            _ => return Err(ExportError::malformed(path, "no general.architecture")),
        };
        let mut tensors = Vec::new();
        for _ in 0..n_tensors {
            let name = c.string_of("tensor name length", MAX_NAME)?;
            let nd = c.u32()? as usize;
            if nd > 4 {
                return Err(ExportError::malformed(
                    path,
                    format!("tensor \"{name}\" has {nd} dims"),
                ));
            }
            let mut ne = Vec::with_capacity(nd);
            for _ in 0..nd {
                ne.push(c.len()?);
            }
            let ty = c.u32()?;
            let offset = c.len()?;
            tensors.push(RawTensor {
                name,
                ne,
                ty,
                offset,
            });
        }
        let align = match meta.get("general.alignment") {
            Some(Meta::Uint(a)) if *a > 0 => *a,
            _ => DEFAULT_ALIGNMENT,
        };
        let data_start = usize::try_from(c.pos.div_ceil(align) * align)
            .map_err(|_| ExportError::malformed(path, "data offset overflows"))?;
        Ok(Header {
            meta,
            arch,
            tensors,
            data_start,
        })
    }
}
