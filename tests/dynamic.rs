//! Property tests of the built-in plugins' invariants, called through the dynamic path
//! (library → entry → C function table → shim → trait), not through their Rust functions:
//! replace-then-read returns the patch, add and interpolate with alpha 0 are the identity, the
//! mean of n copies of v is v, and tensors of any shape cross the boundary unchanged.

use std::collections::BTreeSet;
use std::sync::LazyLock;

use proptest::prelude::*;
use proptest::test_runner::FileFailurePersistence;
use xlpatch_abi::loader::{DynExtractor, DynMetric, DynPatchStrategy};
use xlpatch_abi::{Extractor, Metric, PatchSite, PatchStrategy, TensorMut, TensorRef};

use crate::support::{builtins, open};

struct Loaded {
    replace: DynPatchStrategy,
    add0: DynPatchStrategy,
    add: DynPatchStrategy,
    interp0: DynPatchStrategy,
    interp1: DynPatchStrategy,
    mean: DynExtractor,
    first: DynExtractor,
    prob: DynMetric,
}

// Loaded once: the libraries stay open for the whole test binary, as in a sweep.
static PLUGINS: LazyLock<Loaded> = LazyLock::new(|| Loaded {
    replace: open("patch-replace").patch_strategy(&[]).unwrap(),
    add0: open("patch-add").patch_strategy(&[("alpha", "0")]).unwrap(),
    add: open("patch-add")
        .patch_strategy(&[("alpha", "0.75")])
        .unwrap(),
    interp0: open("patch-interpolate")
        .patch_strategy(&[("alpha", "0")])
        .unwrap(),
    interp1: open("patch-interpolate")
        .patch_strategy(&[("alpha", "1")])
        .unwrap(),
    mean: open("extract-mean").extractor(&[]).unwrap(),
    first: open("extract-first").extractor(&[]).unwrap(),
    prob: open("metric-concept-prob").metric(&[]).unwrap(),
});

/// A batch `[b, s, d]`, distinct sites inside it, and one source row per site.
#[derive(Debug, Clone)]
struct PatchCase {
    shape: [usize; 3],
    hidden: Vec<f32>,
    sites: Vec<PatchSite>,
    source: Vec<f32>,
}

fn finite() -> impl Strategy<Value = f32> {
    -1.0e3f32..1.0e3f32
}

fn patch_case() -> impl Strategy<Value = PatchCase> {
    (1usize..4, 1usize..7, 1usize..17)
        .prop_flat_map(|(b, s, d)| {
            let sites = prop::collection::btree_set((0..b, 0..s), 0..=(b * s).min(4));
            (
                Just([b, s, d]),
                prop::collection::vec(finite(), b * s * d),
                sites,
            )
        })
        .prop_flat_map(|(shape, hidden, sites): (_, _, BTreeSet<(usize, usize)>)| {
            let sites: Vec<PatchSite> = sites
                .into_iter()
                .map(|(batch, position)| PatchSite { batch, position })
                .collect();
            let n = sites.len() * shape[2];
            (
                Just(shape),
                Just(hidden),
                Just(sites).prop_shuffle(),
                prop::collection::vec(finite(), n),
            )
        })
        .prop_map(|(shape, hidden, sites, source)| PatchCase {
            shape,
            hidden,
            sites,
            source,
        })
}

/// Applies `strategy` to a copy of the case's hidden state.
fn patched(strategy: &dyn PatchStrategy, case: &PatchCase) -> Vec<f32> {
    let mut hidden = case.hidden.clone();
    let d = case.shape[2];
    strategy
        .apply(
            0,
            TensorMut::new(&mut hidden, &case.shape).unwrap(),
            &case.sites,
            TensorRef::new(&case.source, &[case.sites.len(), d]).unwrap(),
        )
        .unwrap();
    hidden
}

fn row(data: &[f32], case: &PatchCase, site: &PatchSite) -> Vec<f32> {
    let d = case.shape[2];
    let at = site.offset(case.shape[1], d);
    data[at..at + d].to_vec()
}

proptest! {
    // Failing seeds are kept in `tests/proptest-regressions/` (committed) and replayed first.
    #![proptest_config(ProptestConfig {
        failure_persistence: Some(Box::new(FileFailurePersistence::Direct(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/proptest-regressions/dynamic.txt"
        )))),
        ..ProptestConfig::default()
    })]

    #[test]
    fn replace_then_read_returns_the_patch(case in patch_case()) {
        let out = patched(&PLUGINS.replace, &case);
        let d = case.shape[2];
        for (i, site) in case.sites.iter().enumerate() {
            prop_assert_eq!(row(&out, &case, site), &case.source[i * d..(i + 1) * d]);
        }
        // Everything else is untouched.
        for batch in 0..case.shape[0] {
            for position in 0..case.shape[1] {
                let site = PatchSite { batch, position };
                if !case.sites.contains(&site) {
                    prop_assert_eq!(row(&out, &case, &site), row(&case.hidden, &case, &site));
                }
            }
        }
    }

    #[test]
    fn add_and_interpolate_with_alpha_zero_are_the_identity(case in patch_case()) {
        prop_assert_eq!(patched(&PLUGINS.add0, &case), case.hidden.clone());
        prop_assert_eq!(patched(&PLUGINS.interp0, &case), case.hidden.clone());
        // And interpolate with alpha 1 is replace.
        prop_assert_eq!(patched(&PLUGINS.interp1, &case), patched(&PLUGINS.replace, &case));
    }

    #[test]
    fn add_adds_alpha_times_the_source(case in patch_case()) {
        let out = patched(&PLUGINS.add, &case);
        let d = case.shape[2];
        for (i, site) in case.sites.iter().enumerate() {
            let before = row(&case.hidden, &case, site);
            let after = row(&out, &case, site);
            for k in 0..d {
                prop_assert_eq!(after[k], before[k] + 0.75 * case.source[i * d + k]);
            }
        }
    }

    #[test]
    fn the_mean_of_n_copies_of_v_is_v(
        n in 1usize..9,
        (layers, d, v) in (1usize..6, 1usize..17)
            .prop_flat_map(|(l, d)| (Just(l), Just(d), prop::collection::vec(finite(), l * d))),
    ) {
        let latents: Vec<f32> = std::iter::repeat_n(v.iter().copied(), n).flatten().collect();
        let mut out = vec![f32::NAN; layers * d];
        PLUGINS.mean.combine(
            TensorRef::new(&latents, &[n, layers, d]).unwrap(),
            TensorMut::new(&mut out, &[layers, d]).unwrap(),
        ).unwrap();
        prop_assert_eq!(&out, &v);
    }

    #[test]
    fn mean_and_first_agree_with_their_definitions(
        (n, layers, d, latents) in (1usize..6, 1usize..5, 1usize..9).prop_flat_map(|(n, l, d)| {
            (Just(n), Just(l), Just(d), prop::collection::vec(finite(), n * l * d))
        }),
    ) {
        let shape = [n, layers, d];
        let mut mean = vec![0f32; layers * d];
        let mut first = vec![0f32; layers * d];
        PLUGINS.mean.combine(
            TensorRef::new(&latents, &shape).unwrap(),
            TensorMut::new(&mut mean, &[layers, d]).unwrap(),
        ).unwrap();
        PLUGINS.first.combine(
            TensorRef::new(&latents, &shape).unwrap(),
            TensorMut::new(&mut first, &[layers, d]).unwrap(),
        ).unwrap();
        prop_assert_eq!(&first[..], &latents[..layers * d]);
        for j in 0..layers * d {
            let expect = (0..n).map(|i| f64::from(latents[i * layers * d + j])).sum::<f64>() / n as f64;
            prop_assert!((f64::from(mean[j]) - expect).abs() <= 1e-6 * expect.abs().max(1.0));
        }
    }

    #[test]
    fn tensors_of_any_shape_cross_the_boundary_unchanged(
        (shape, data) in prop::collection::vec(0usize..5, 2..=2).prop_flat_map(|ld| {
            let n = ld[0] * ld[1];
            (Just([1, ld[0], ld[1]]), prop::collection::vec(any::<f32>(), n))
        }),
    ) {
        // [1, layers, d] through extract-first comes back bit for bit, for any sizes
        // including empty ones, and any bit pattern (NaNs, infinities, subnormals).
        let mut out = vec![0f32; shape[1] * shape[2]];
        PLUGINS.first.combine(
            TensorRef::new(&data, &shape).unwrap(),
            TensorMut::new(&mut out, &shape[1..]).unwrap(),
        ).unwrap();
        let bits = |v: &[f32]| v.iter().map(|x| x.to_bits()).collect::<Vec<_>>();
        prop_assert_eq!(bits(&out), bits(&data));
    }

    #[test]
    fn concept_probability_is_the_sum_over_distinct_ids(
        (batch, vocab, probs, ids) in (1usize..4, 1usize..64).prop_flat_map(|(b, v)| {
            (Just(b), Just(v), prop::collection::vec(0f32..1.0, b * v),
             prop::collection::vec(0..v as u32, 0..10))
        }),
    ) {
        let mut out = vec![f32::NAN; batch];
        PLUGINS.prob.compute(
            TensorRef::new(&probs, &[batch, vocab]).unwrap(),
            &ids,
            TensorMut::new(&mut out, &[batch]).unwrap(),
        ).unwrap();
        let distinct: BTreeSet<u32> = ids.iter().copied().collect();
        for b in 0..batch {
            let expect: f64 = distinct.iter().map(|&i| f64::from(probs[b * vocab + i as usize])).sum();
            prop_assert!((f64::from(out[b]) - expect).abs() <= 1e-6);
        }
    }
}

#[test]
fn all_builtins_are_found_with_their_kinds() {
    let registry = builtins();
    let mut found: Vec<(String, String)> = registry
        .iter()
        .map(|p| (p.name().to_string(), p.kind().to_string()))
        .collect();
    found.sort();
    let expected = [
        ("backend-candle", "backend"),
        ("backend-ort", "backend"),
        ("extract-first", "extractor"),
        ("extract-mean", "extractor"),
        ("metric-concept-prob", "metric"),
        ("patch-add", "patch"),
        ("patch-interpolate", "patch"),
        ("patch-replace", "patch"),
    ];
    assert_eq!(
        found,
        expected
            .iter()
            .map(|(n, k)| (n.to_string(), k.to_string()))
            .collect::<Vec<_>>()
    );
}

#[test]
fn out_of_vocabulary_ids_are_errors_not_zeros() {
    let probs = [0.5f32, 0.5];
    let mut out = [0f32];
    let err = PLUGINS
        .prob
        .compute(
            TensorRef::new(&probs, &[1, 2]).unwrap(),
            &[2],
            TensorMut::new(&mut out, &[1]).unwrap(),
        )
        .unwrap_err();
    assert!(
        err.message
            .contains("token id 2 is outside the vocabulary of 2"),
        "{err}"
    );
}
