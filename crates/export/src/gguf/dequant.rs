//! Dequantization of the ggml tensor types the exporter reads: F32, F16, BF16, Q8_0, Q4_0,
//! Q4_1, Q5_0, Q4_K, Q5_K and Q6_K, per ggml's block definitions (`ggml-common.h`,
//! `dequantize_row_*` in `ggml-quants.c`).

/// A ggml tensor type: its name, elements per block and bytes per block.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum GgmlType {
    F32,
    F16,
    Bf16,
    Q4_0,
    Q4_1,
    Q5_0,
    Q8_0,
    Q4K,
    Q5K,
    Q6K,
}

impl GgmlType {
    pub(super) fn from_id(id: u32) -> Option<Self> {
        Some(match id {
            0 => GgmlType::F32,
            1 => GgmlType::F16,
            2 => GgmlType::Q4_0,
            3 => GgmlType::Q4_1,
            6 => GgmlType::Q5_0,
            8 => GgmlType::Q8_0,
            12 => GgmlType::Q4K,
            13 => GgmlType::Q5K,
            14 => GgmlType::Q6K,
            30 => GgmlType::Bf16,
            _ => return None,
        })
    }

    /// (elements per block, bytes per block).
    pub(super) fn block(self) -> (usize, usize) {
        match self {
            GgmlType::F32 => (1, 4),
            GgmlType::F16 | GgmlType::Bf16 => (1, 2),
            GgmlType::Q4_0 => (32, 18),
            GgmlType::Q4_1 => (32, 20),
            GgmlType::Q5_0 => (32, 22),
            GgmlType::Q8_0 => (32, 34),
            GgmlType::Q4K => (256, 144),
            GgmlType::Q5K => (256, 176),
            GgmlType::Q6K => (256, 210),
        }
    }
}

/// A name for a ggml type id, for messages.
pub(super) fn type_name(id: u32) -> String {
    let known = [
        "F32", "F16", "Q4_0", "Q4_1", "Q4_2", "Q4_3", "Q5_0", "Q5_1", "Q8_0", "Q8_1", "Q2_K",
        "Q3_K", "Q4_K", "Q5_K", "Q6_K", "Q8_K",
    ];
    known
        .get(id as usize)
        .map_or_else(|| format!("ggml type {id}"), |s| s.to_string())
}

fn f16(b: &[u8]) -> f32 {
    half::f16::from_le_bytes([b[0], b[1]]).to_f32()
}

/// Dequantizes whole blocks of `t` from `src` into `dst` (`dst.len()` a multiple of the
/// block's element count, `src` exactly the matching bytes).
pub(crate) fn dequantize(t: GgmlType, src: &[u8], dst: &mut [f32]) {
    let (n, bytes) = t.block();
    for (b, y) in src.chunks_exact(bytes).zip(dst.chunks_exact_mut(n)) {
        match t {
            GgmlType::F32 => y[0] = f32::from_le_bytes([b[0], b[1], b[2], b[3]]),
            GgmlType::F16 => y[0] = f16(b),
            GgmlType::Bf16 => y[0] = half::bf16::from_le_bytes([b[0], b[1]]).to_f32(),
            GgmlType::Q8_0 => {
                let d = f16(b);
                for (o, &q) in y.iter_mut().zip(&b[2..34]) {
                    *o = (q as i8) as f32 * d;
                }
            }
            GgmlType::Q4_0 => {
                let d = f16(b);
                for (j, &q) in b[2..18].iter().enumerate() {
                    y[j] = ((q & 0x0F) as i32 - 8) as f32 * d;
                    y[j + 16] = ((q >> 4) as i32 - 8) as f32 * d;
                }
            }
            GgmlType::Q4_1 => {
                let (d, m) = (f16(b), f16(&b[2..]));
                for (j, &q) in b[4..20].iter().enumerate() {
                    y[j] = (q & 0x0F) as f32 * d + m;
                    y[j + 16] = (q >> 4) as f32 * d + m;
                }
            }
            GgmlType::Q5_0 => {
                let d = f16(b);
                let qh = u32::from_le_bytes([b[2], b[3], b[4], b[5]]);
                for (j, &q) in b[6..22].iter().enumerate() {
                    let h0 = (((qh >> j) << 4) & 0x10) as u8;
                    let h1 = ((qh >> (j + 12)) & 0x10) as u8;
                    y[j] = (((q & 0x0F) | h0) as i32 - 16) as f32 * d;
                    y[j + 16] = (((q >> 4) | h1) as i32 - 16) as f32 * d;
                }
            }
            GgmlType::Q4K => {
                let (d, dmin) = (f16(b), f16(&b[2..]));
                let scales = &b[4..16];
                let qs = &b[16..144];
                for (k, y) in y.chunks_exact_mut(64).enumerate() {
                    let q = &qs[32 * k..32 * k + 32];
                    let (sc1, m1) = scale_min_k4(2 * k, scales);
                    let (sc2, m2) = scale_min_k4(2 * k + 1, scales);
                    let (d1, m1) = (d * sc1 as f32, dmin * m1 as f32);
                    let (d2, m2) = (d * sc2 as f32, dmin * m2 as f32);
                    for l in 0..32 {
                        y[l] = d1 * (q[l] & 0x0F) as f32 - m1;
                        y[l + 32] = d2 * (q[l] >> 4) as f32 - m2;
                    }
                }
            }
            GgmlType::Q5K => {
                let (d, dmin) = (f16(b), f16(&b[2..]));
                let scales = &b[4..16];
                let qh = &b[16..48];
                let qs = &b[48..176];
                for (k, y) in y.chunks_exact_mut(64).enumerate() {
                    let ql = &qs[32 * k..32 * k + 32];
                    let (u1, u2) = (1u8 << (2 * k), 2u8 << (2 * k));
                    let (sc1, m1) = scale_min_k4(2 * k, scales);
                    let (sc2, m2) = scale_min_k4(2 * k + 1, scales);
                    let (d1, m1) = (d * sc1 as f32, dmin * m1 as f32);
                    let (d2, m2) = (d * sc2 as f32, dmin * m2 as f32);
                    for l in 0..32 {
                        let h1 = if qh[l] & u1 != 0 { 16 } else { 0 };
                        let h2 = if qh[l] & u2 != 0 { 16 } else { 0 };
                        y[l] = d1 * ((ql[l] & 0x0F) + h1) as f32 - m1;
                        y[l + 32] = d2 * ((ql[l] >> 4) + h2) as f32 - m2;
                    }
                }
            }
            GgmlType::Q6K => {
                let ql = &b[0..128];
                let qh = &b[128..192];
                let sc = &b[192..208];
                let d = f16(&b[208..210]);
                for (n, y) in y.chunks_exact_mut(128).enumerate() {
                    let ql = &ql[64 * n..64 * n + 64];
                    let qh = &qh[32 * n..32 * n + 32];
                    let sc = &sc[8 * n..8 * n + 8];
                    for l in 0..32 {
                        let is = l / 16;
                        let q1 = ((ql[l] & 0x0F) | ((qh[l] & 3) << 4)) as i32 - 32;
                        let q2 = ((ql[l + 32] & 0x0F) | (((qh[l] >> 2) & 3) << 4)) as i32 - 32;
                        let q3 = ((ql[l] >> 4) | (((qh[l] >> 4) & 3) << 4)) as i32 - 32;
                        let q4 = ((ql[l + 32] >> 4) | (((qh[l] >> 6) & 3) << 4)) as i32 - 32;
                        let s = |i: usize| d * (sc[i] as i8) as f32;
                        y[l] = s(is) * q1 as f32;
                        y[l + 32] = s(is + 2) * q2 as f32;
                        y[l + 64] = s(is + 4) * q3 as f32;
                        y[l + 96] = s(is + 6) * q4 as f32;
                    }
                }
            }
        }
    }
}

/// ggml's `get_scale_min_k4`: the 6-bit scale and min of sub-block `j` of a K-quant block.
fn scale_min_k4(j: usize, q: &[u8]) -> (u8, u8) {
    if j < 4 {
        (q[j] & 63, q[j + 4] & 63)
    } else {
        (
            (q[j + 4] & 0x0F) | ((q[j - 4] >> 6) << 4),
            (q[j + 4] >> 4) | ((q[j] >> 6) << 4),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn f16b(x: f32) -> [u8; 2] {
        half::f16::from_f32(x).to_le_bytes()
    }

    #[test]
    fn q8_0_is_d_times_int8() {
        let mut b = f16b(0.5).to_vec();
        b.extend((0..32).map(|i| ((i as i8) - 16) as u8));
        let mut y = [0f32; 32];
        dequantize(GgmlType::Q8_0, &b, &mut y);
        for (i, v) in y.iter().enumerate() {
            assert_eq!(*v, 0.5 * (i as f32 - 16.0));
        }
    }

    #[test]
    fn q4_0_and_q4_1_nibbles() {
        let qs: Vec<u8> = (0..16).map(|j| (j as u8) | ((15 - j as u8) << 4)).collect();
        let mut b = f16b(2.0).to_vec();
        b.extend(&qs);
        let mut y = [0f32; 32];
        dequantize(GgmlType::Q4_0, &b, &mut y);
        for j in 0..16 {
            assert_eq!(y[j], 2.0 * (j as f32 - 8.0));
            assert_eq!(y[j + 16], 2.0 * ((15 - j) as f32 - 8.0));
        }
        let mut b = f16b(0.25).to_vec();
        b.extend(f16b(-1.0));
        b.extend(&qs);
        dequantize(GgmlType::Q4_1, &b, &mut y);
        for j in 0..16 {
            assert_eq!(y[j], 0.25 * j as f32 - 1.0);
            assert_eq!(y[j + 16], 0.25 * (15 - j) as f32 - 1.0);
        }
    }

    #[test]
    fn q5_0_takes_the_fifth_bit_from_qh() {
        // Element i (0..32) has low nibble (i % 16) and fifth bit (bit i of qh).
        let qh: u32 = 0b1010_0110_0000_1111_0101_0011_1100_1001;
        let mut b = f16b(0.5).to_vec();
        b.extend(qh.to_le_bytes());
        b.extend((0..16u8).map(|j| j | (((j + 3) % 16) << 4)));
        let mut y = [0f32; 32];
        dequantize(GgmlType::Q5_0, &b, &mut y);
        for (i, &v) in y.iter().enumerate() {
            let low = if i < 16 {
                i as u32
            } else {
                ((i - 16) as u32 + 3) % 16
            };
            let q = low | (((qh >> i) & 1) << 4);
            assert_eq!(v, 0.5 * (q as f32 - 16.0), "element {i}");
        }
    }

    /// Packs 8 (scale, min) pairs of 6 bits as ggml's quantizer does.
    fn pack_scales(ls: [u8; 8], lm: [u8; 8]) -> [u8; 12] {
        let mut s = [0u8; 12];
        for j in 0..8 {
            if j < 4 {
                s[j] = ls[j];
                s[j + 4] = lm[j];
            } else {
                s[j + 4] = (ls[j] & 0xF) | ((lm[j] & 0xF) << 4);
                s[j - 4] |= (ls[j] >> 4) << 6;
                s[j] |= (lm[j] >> 4) << 6;
            }
        }
        s
    }

    #[test]
    fn q4_k_matches_its_quantizer_layout() {
        let ls = [1, 63, 17, 32, 45, 9, 60, 33];
        let lm = [0, 5, 63, 48, 16, 31, 2, 50];
        let l: Vec<u8> = (0..256).map(|i| ((i * 7 + 3) % 16) as u8).collect();
        let (d, dmin) = (0.125f32, 0.0625f32);
        let mut b = f16b(d).to_vec();
        b.extend(f16b(dmin));
        b.extend(pack_scales(ls, lm));
        for j in (0..256).step_by(64) {
            for k in 0..32 {
                b.push(l[j + k] | (l[j + k + 32] << 4));
            }
        }
        assert_eq!(b.len(), 144);
        let mut y = [0f32; 256];
        dequantize(GgmlType::Q4K, &b, &mut y);
        for i in 0..256 {
            let s = i / 32;
            let want = d * ls[s] as f32 * l[i] as f32 - dmin * lm[s] as f32;
            assert_eq!(y[i], want, "element {i}");
        }
    }

    #[test]
    fn q5_k_matches_its_quantizer_layout() {
        let ls = [3, 63, 17, 32, 45, 9, 60, 33];
        let lm = [7, 5, 63, 48, 16, 31, 2, 50];
        let l: Vec<u8> = (0..256).map(|i| ((i * 11 + 5) % 32) as u8).collect();
        let (d, dmin) = (0.25f32, 0.5f32);
        let mut b = f16b(d).to_vec();
        b.extend(f16b(dmin));
        b.extend(pack_scales(ls, lm));
        let mut qh = [0u8; 32];
        let mut ql = [0u8; 128];
        let (mut m1, mut m2) = (1u8, 2u8);
        for n in (0..256).step_by(64) {
            for j in 0..32 {
                let (mut l1, mut l2) = (l[n + j], l[n + j + 32]);
                if l1 > 15 {
                    l1 -= 16;
                    qh[j] |= m1;
                }
                if l2 > 15 {
                    l2 -= 16;
                    qh[j] |= m2;
                }
                ql[n / 2 + j] = l1 | (l2 << 4);
            }
            m1 <<= 2;
            m2 <<= 2;
        }
        b.extend(qh);
        b.extend(ql);
        assert_eq!(b.len(), 176);
        let mut y = [0f32; 256];
        dequantize(GgmlType::Q5K, &b, &mut y);
        for i in 0..256 {
            let s = i / 32;
            let want = d * ls[s] as f32 * l[i] as f32 - dmin * lm[s] as f32;
            assert_eq!(y[i], want, "element {i}");
        }
    }

    #[test]
    fn q6_k_matches_its_quantizer_layout() {
        let l: Vec<u8> = (0..256).map(|i| ((i * 13 + 1) % 64) as u8).collect();
        let sc: Vec<i8> = (0..16).map(|i| (i as i8 - 8) * 3).collect();
        let d = 0.5f32;
        let mut ql = [0u8; 128];
        let mut qh = [0u8; 64];
        for j in (0..256).step_by(128) {
            let (ql, qh) = (&mut ql[j / 2..j / 2 + 64], &mut qh[j / 4..j / 4 + 32]);
            for k in 0..32 {
                let (a, b, c, e) = (l[j + k], l[j + k + 32], l[j + k + 64], l[j + k + 96]);
                ql[k] = (a & 0xF) | ((c & 0xF) << 4);
                ql[k + 32] = (b & 0xF) | ((e & 0xF) << 4);
                qh[k] = (a >> 4) | ((b >> 4) << 2) | ((c >> 4) << 4) | ((e >> 4) << 6);
            }
        }
        let mut b = ql.to_vec();
        b.extend(qh);
        b.extend(sc.iter().map(|&s| s as u8));
        b.extend(f16b(d));
        assert_eq!(b.len(), 210);
        let mut y = [0f32; 256];
        dequantize(GgmlType::Q6K, &b, &mut y);
        for i in 0..256 {
            let want = d * sc[i / 16] as f32 * (l[i] as f32 - 32.0);
            assert_eq!(y[i], want, "element {i}");
        }
    }
}
