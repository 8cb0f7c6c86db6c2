//! Structure-aware mutation of valid files: byte-level edits that AFL's havoc stage also makes
//! (flips, interesting integers, deleted, duplicated and inserted ranges, splices with another
//! seed), plus edits that know the shapes our files have: little-endian length and offset
//! fields (safetensors, GGUF), numbers in text (JSON, TOML, TSV), and lines and
//! tab/comma/quote-separated fields (JSONL, TSV, CSV).

/// xorshift64*: small, deterministic, good enough to pick mutations.
#[derive(Debug, Clone)]
pub struct Rng(u64);

impl Rng {
    /// A generator from `seed` (any value).
    pub fn new(seed: u64) -> Rng {
        Rng(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1)
    }

    /// The next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    /// Uniform in `0..n` (`n > 0`).
    pub fn below(&mut self, n: usize) -> usize {
        (self.next_u64() % n as u64) as usize
    }

    fn chance(&mut self, one_in: usize) -> bool {
        self.below(one_in) == 0
    }
}

const INTERESTING_U64: [u64; 12] = [
    0,
    1,
    7,
    8,
    0x7f,
    0xff,
    0xffff,
    0x7fff_ffff,
    0xffff_ffff,
    0x1_0000_0000,
    i64::MAX as u64,
    u64::MAX,
];

const INTERESTING_TEXT: [&str; 16] = [
    "0",
    "-1",
    "1",
    "65536",
    "4294967295",
    "4294967296",
    "18446744073709551615",
    "18446744073709551616",
    "-9223372036854775808",
    "1e308",
    "1e999",
    "NaN",
    "0.5",
    "\"\"",
    "null",
    "[]",
];

const SPECIAL_BYTES: [u8; 14] = [
    0, 0xff, 0x7f, 0x80, b'"', b'\\', b'{', b'}', b'[', b'\t', b'\n', b',', b'=', 0xc3,
];

/// Applies one to four mutations to `data`, drawing splice material from `others`.
pub fn mutate(data: &mut Vec<u8>, others: &[Vec<u8>], rng: &mut Rng) {
    let n = 1 + rng.below(4);
    for _ in 0..n {
        mutate_once(data, others, rng);
    }
}

fn mutate_once(data: &mut Vec<u8>, others: &[Vec<u8>], rng: &mut Rng) {
    if data.is_empty() {
        data.push(SPECIAL_BYTES[rng.below(SPECIAL_BYTES.len())]);
        return;
    }
    let len = data.len();
    match rng.below(13) {
        // A bit flip.
        0 => {
            let i = rng.below(len);
            data[i] ^= 1 << rng.below(8);
        }
        // A special byte.
        1 => {
            let i = rng.below(len);
            data[i] = SPECIAL_BYTES[rng.below(SPECIAL_BYTES.len())];
        }
        // An interesting little-endian integer over a u32 or u64 field.
        2 => {
            let v = INTERESTING_U64[rng.below(INTERESTING_U64.len())];
            let width = if rng.chance(2) { 8 } else { 4 };
            // Length and offset fields sit at multiples of 4 in both binary formats.
            let i = (rng.below(len) / 4) * 4;
            let bytes = v.to_le_bytes();
            for (k, b) in bytes[..width].iter().enumerate() {
                if let Some(slot) = data.get_mut(i + k) {
                    *slot = *b;
                }
            }
        }
        // Add or subtract a little from a byte (an off-by-one in a length).
        3 => {
            let i = rng.below(len);
            data[i] = data[i].wrapping_add([1u8, 255, 2, 254][rng.below(4)]);
        }
        // Delete a range.
        4 => {
            let at = rng.below(len);
            let n = 1 + rng.below((len - at).min(64));
            data.drain(at..at + n);
        }
        // Duplicate a range.
        5 => {
            let at = rng.below(len);
            let n = 1 + rng.below((len - at).min(64));
            let copy = data[at..at + n].to_vec();
            let to = rng.below(len + 1);
            data.splice(to..to, copy);
        }
        // Truncate.
        6 => data.truncate(rng.below(len)),
        // Splice in part of another seed.
        7 => {
            if let Some(other) = pick(others, rng) {
                let from = rng.below(other.len());
                let n = 1 + rng.below((other.len() - from).min(256));
                let to = rng.below(len + 1);
                data.splice(to..to, other[from..from + n].iter().copied());
            }
        }
        // Replace a number in text with an interesting one.
        8 => replace_number(data, rng),
        // Delete, duplicate or swap lines.
        9 => edit_lines(data, rng),
        // Swap two fields of a line (tab, comma or quote separated).
        10 => swap_fields(data, rng),
        // Replace a field with one from another seed.
        11 => {
            if let Some(other) = pick(others, rng)
                && let Some((s, e)) = field_at(other, rng.below(other.len()))
                && let Some((ds, de)) = field_at(data, rng.below(len))
            {
                let field = other[s..e].to_vec();
                data.splice(ds..de, field);
            }
        }
        // Insert interesting text.
        _ => {
            let t = INTERESTING_TEXT[rng.below(INTERESTING_TEXT.len())];
            let to = rng.below(len + 1);
            data.splice(to..to, t.bytes());
        }
    }
}

fn pick<'a>(others: &'a [Vec<u8>], rng: &mut Rng) -> Option<&'a Vec<u8>> {
    let other = others.get(rng.below(others.len().max(1)))?;
    (!other.is_empty()).then_some(other)
}

/// The run of ASCII digits (with a leading `-`) at or after a random position.
fn replace_number(data: &mut Vec<u8>, rng: &mut Rng) {
    let start = rng.below(data.len());
    let Some(s) = (start..data.len()).find(|&i| data[i].is_ascii_digit()) else {
        return;
    };
    let s = if s > 0 && data[s - 1] == b'-' {
        s - 1
    } else {
        s
    };
    let e = (s + 1..data.len())
        .find(|&i| !(data[i].is_ascii_digit() || data[i] == b'.'))
        .unwrap_or(data.len());
    let t = INTERESTING_TEXT[rng.below(12)];
    data.splice(s..e, t.bytes());
}

fn line_spans(data: &[u8]) -> Vec<(usize, usize)> {
    let mut spans = Vec::new();
    let mut s = 0;
    for (i, b) in data.iter().enumerate() {
        if *b == b'\n' {
            spans.push((s, i + 1));
            s = i + 1;
        }
    }
    if s < data.len() {
        spans.push((s, data.len()));
    }
    spans
}

fn edit_lines(data: &mut Vec<u8>, rng: &mut Rng) {
    let lines = line_spans(data);
    if lines.is_empty() {
        return;
    }
    let (s, e) = lines[rng.below(lines.len())];
    match rng.below(3) {
        0 => {
            data.drain(s..e);
        }
        1 => {
            let copy = data[s..e].to_vec();
            data.splice(e..e, copy);
        }
        _ => {
            let (s2, e2) = lines[rng.below(lines.len())];
            if (s2, e2) != (s, e) {
                let (a, b) = if s < s2 {
                    ((s, e), (s2, e2))
                } else {
                    ((s2, e2), (s, e))
                };
                let first = data[a.0..a.1].to_vec();
                let second = data[b.0..b.1].to_vec();
                data.splice(b.0..b.1, first);
                data.splice(a.0..a.1, second);
            }
        }
    }
}

fn is_sep(b: u8) -> bool {
    matches!(
        b,
        b'\t' | b',' | b'"' | b'\n' | b':' | b'=' | b'[' | b']' | b'{' | b'}'
    )
}

/// The span between separators around `at`.
fn field_at(data: &[u8], at: usize) -> Option<(usize, usize)> {
    if data.is_empty() {
        return None;
    }
    let at = at.min(data.len() - 1);
    let s = (0..at)
        .rev()
        .find(|&i| is_sep(data[i]))
        .map_or(0, |i| i + 1);
    let e = (at..data.len())
        .find(|&i| is_sep(data[i]))
        .unwrap_or(data.len());
    (s < e).then_some((s, e))
}

fn swap_fields(data: &mut Vec<u8>, rng: &mut Rng) {
    let len = data.len();
    let (Some(a), Some(b)) = (
        field_at(data, rng.below(len)),
        field_at(data, rng.below(len)),
    ) else {
        return;
    };
    if a == b || (a.0 < b.1 && b.0 < a.1) {
        return;
    }
    let (a, b) = if a.0 < b.0 { (a, b) } else { (b, a) };
    let first = data[a.0..a.1].to_vec();
    let second = data[b.0..b.1].to_vec();
    data.splice(b.0..b.1, first);
    data.splice(a.0..a.1, second);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mutations_change_inputs_and_stay_deterministic() {
        let seed = b"{\"a\": 12, \"b\": [1, 2]}\nx\ty\tz\n".to_vec();
        let others = vec![b"other\tfields\n".to_vec()];
        let run = |s: u64| {
            let mut rng = Rng::new(s);
            (0..200)
                .map(|_| {
                    let mut d = seed.clone();
                    mutate(&mut d, &others, &mut rng);
                    d
                })
                .collect::<Vec<_>>()
        };
        let a = run(1);
        assert_eq!(a, run(1));
        let changed = a.iter().filter(|d| **d != seed).count();
        assert!(
            changed > 150,
            "only {changed} of 200 mutations changed the input"
        );
        let distinct: std::collections::BTreeSet<_> = a.iter().collect();
        assert!(distinct.len() > 100, "{} distinct inputs", distinct.len());
    }
}
