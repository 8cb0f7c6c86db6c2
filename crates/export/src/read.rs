//! Positioned reads of checkpoint files: headers, then tensors in bounded chunks of whole rows.
//!
//! The readers take the bytes they need with positioned reads rather than memory-mapping the
//! file: a map is sound only while no other process truncates or rewrites the file, a promise
//! that would need `unsafe` and that the exporter cannot keep. Reading a tensor a bounded chunk
//! at a time keeps the exporter's memory at about one layer plus the embedding, as the map did,
//! and a whole large tensor is never in memory as raw bytes.

use std::fs::File;
use std::path::Path;

use crate::error::{ExportError, Result};

/// The most bytes of whole rows read at once: large enough that reading costs about what a
/// map did, small next to one layer's f32 weights (a row longer than this is read alone).
pub(crate) const CHUNK_BYTES: usize = 8 << 20;

/// The length in bytes of an opened file.
pub(crate) fn len(file: &File, path: &Path) -> Result<u64> {
    file.metadata()
        .map(|m| m.len())
        .map_err(|e| ExportError::io(path, e))
}

/// Fills `buf` with the bytes of `file` from `offset` on.
pub(crate) fn read_at(file: &File, path: &Path, offset: u64, buf: &mut [u8]) -> Result<()> {
    read_exact_at(file, buf, offset).map_err(|e| ExportError::io(path, e))
}

#[cfg(unix)]
fn read_exact_at(file: &File, buf: &mut [u8], offset: u64) -> std::io::Result<()> {
    std::os::unix::fs::FileExt::read_exact_at(file, buf, offset)
}

/// Elsewhere a seek then a read through `&File`, which moves the shared cursor: correct because
/// a reader is used from one thread at a time, and every read seeks first.
#[cfg(not(unix))]
fn read_exact_at(mut file: &File, buf: &mut [u8], offset: u64) -> std::io::Result<()> {
    use std::io::{Read, Seek, SeekFrom};
    file.seek(SeekFrom::Start(offset))?;
    file.read_exact(buf)
}

/// Calls `visit(r, bytes)` for each of the `rows` rows of `row_bytes` bytes stored from
/// `offset` on, in order, reading chunks of whole rows of at most `max_chunk` bytes (one row
/// when a row is longer).
pub(crate) fn for_each_row(
    file: &File,
    path: &Path,
    offset: u64,
    row_bytes: usize,
    rows: usize,
    max_chunk: usize,
    visit: &mut dyn FnMut(usize, &[u8]),
) -> Result<()> {
    let per_chunk = (max_chunk / row_bytes.max(1)).clamp(1, rows.max(1));
    let mut buf = vec![0u8; per_chunk * row_bytes];
    let mut first = 0;
    while first < rows {
        let n = per_chunk.min(rows - first);
        let chunk = &mut buf[..n * row_bytes];
        // Checked: a tensor whose offset overflowed while indexing must fail, not wrap.
        let at = (first as u64)
            .checked_mul(row_bytes as u64)
            .and_then(|o| o.checked_add(offset))
            .ok_or_else(|| ExportError::malformed(path, "tensor offset overflows"))?;
        read_at(file, path, at, chunk)?;
        for i in 0..n {
            visit(first + i, &chunk[i * row_bytes..(i + 1) * row_bytes]);
        }
        first += n;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testutil::TempDir;

    /// Every (offset, row length, rows, chunk size) visits the same rows, in order.
    #[test]
    fn chunks_are_whole_rows_in_order() {
        let dir = TempDir::new("read-rows");
        let p = dir.path().join("bytes");
        let bytes: Vec<u8> = (0..=255).collect();
        std::fs::write(&p, &bytes).unwrap();
        let file = File::open(&p).unwrap();
        for (offset, row_bytes, rows) in
            [(5usize, 3usize, 7usize), (0, 1, 256), (9, 0, 4), (2, 5, 0)]
        {
            for max_chunk in [0, 1, 3, 4, 7, 21, 1000] {
                let mut seen = Vec::new();
                for_each_row(
                    &file,
                    &p,
                    offset as u64,
                    row_bytes,
                    rows,
                    max_chunk,
                    &mut |r, b| seen.push((r, b.to_vec())),
                )
                .unwrap();
                let want: Vec<(usize, Vec<u8>)> = (0..rows)
                    .map(|r| {
                        let s = offset + r * row_bytes;
                        (r, bytes[s..s + row_bytes].to_vec())
                    })
                    .collect();
                assert_eq!(seen, want, "{offset} {row_bytes} {rows} {max_chunk}");
            }
        }
    }

    #[test]
    fn reading_past_the_end_is_an_error_naming_the_file() {
        let dir = TempDir::new("read-past");
        let p = dir.path().join("short");
        std::fs::write(&p, [0u8; 10]).unwrap();
        let file = File::open(&p).unwrap();
        let e = for_each_row(&file, &p, 4, 4, 2, CHUNK_BYTES, &mut |_, _| {}).unwrap_err();
        assert!(e.to_string().contains("short"), "{e}");
        // An offset near the top of the range (an overflowed tensor start) errs, never wraps.
        let e = for_each_row(&file, &p, u64::MAX - 2, 4, 2, 1, &mut |_, _| {}).unwrap_err();
        assert!(e.to_string().contains("short"), "{e}");
    }
}
