//! Self-consistency of the exported graphs on checkpoints generated here, covering what the
//! transformers fixtures do not: a sliding window shorter than the prompt on a Llama-family
//! model, attention and final logit softcapping, o/MLP biases, tied embeddings, sharded
//! checkpoints, external data, and f16 weights. The graphs must agree with themselves: a
//! padded batch with each row alone, token-by-token decoding with a full pass, external data
//! with inline weights.

use serde_json::{Value, json};
use xlpatch_export::{Dtype, ExportOptions, GraphOps, Manifest, export};

use crate::support::{
    Cache, Pass, Runner, TempDir, max_diff_rows, random_weights, write_checkpoint,
    write_safetensors,
};

const BATCH: usize = 2;
const SEQ: usize = 9;
const PAD: usize = 3;

fn mistral_window() -> Value {
    json!({
        "architectures": ["MistralForCausalLM"], "hidden_size": 32, "intermediate_size": 48,
        "num_hidden_layers": 2, "num_attention_heads": 4, "num_key_value_heads": 1,
        "head_dim": 8, "vocab_size": 50, "sliding_window": 3, "rope_theta": 1000.0,
        "rms_norm_eps": 1e-5, "tie_word_embeddings": true
    })
}

fn llama_biases() -> Value {
    json!({
        "architectures": ["LlamaForCausalLM"], "hidden_size": 32, "intermediate_size": 48,
        "num_hidden_layers": 2, "num_attention_heads": 4, "num_key_value_heads": 2,
        "vocab_size": 50, "attention_bias": true, "mlp_bias": true,
        "rope_scaling": {"rope_type": "llama3", "factor": 8.0, "low_freq_factor": 1.0,
                         "high_freq_factor": 4.0, "original_max_position_embeddings": 16},
        "tie_word_embeddings": false
    })
}

fn gemma_softcap() -> Value {
    json!({
        "architectures": ["Gemma3ForCausalLM"], "hidden_size": 32, "intermediate_size": 48,
        "num_hidden_layers": 3, "num_attention_heads": 2, "num_key_value_heads": 1,
        "head_dim": 16, "vocab_size": 50, "sliding_window": 3, "query_pre_attn_scalar": 16,
        "layer_types": ["sliding_attention", "full_attention", "sliding_attention"],
        "rope_theta": 100000.0, "rope_local_base_freq": 1000.0,
        "attn_logit_softcapping": 2.0, "final_logit_softcapping": 3.0
    })
}

/// Gemma 3 without softcapping: the fused `Attention` path with per-head norms and a window.
fn gemma_window() -> Value {
    let mut c = gemma_softcap();
    let o = c.as_object_mut().expect("object");
    o.remove("attn_logit_softcapping");
    o.remove("final_logit_softcapping");
    c
}

fn qwen2_window() -> Value {
    json!({
        "architectures": ["Qwen2ForCausalLM"], "hidden_size": 32, "intermediate_size": 48,
        "num_hidden_layers": 2, "num_attention_heads": 4, "num_key_value_heads": 2,
        "vocab_size": 50, "use_sliding_window": true, "sliding_window": 2,
        "max_window_layers": 1, "tie_word_embeddings": false
    })
}

struct Inputs {
    ids: Vec<i64>,
    mask: Vec<i64>,
    pos: Vec<i64>,
}

/// Row 0 full, row 1 left-padded by `PAD`; positions count real tokens from 0.
fn inputs() -> Inputs {
    let ids: Vec<i64> = (0..BATCH * SEQ)
        .map(|k| ((k * 7 + 3) % 50) as i64)
        .collect();
    let mask: Vec<i64> = (0..BATCH * SEQ)
        .map(|k| i64::from(!(k / SEQ == 1 && k % SEQ < PAD)))
        .collect();
    let pos = (0..BATCH)
        .flat_map(|row| {
            let m = &mask[row * SEQ..(row + 1) * SEQ];
            let mut c = -1;
            m.iter()
                .map(|&x| {
                    c += x;
                    c.max(0)
                })
                .collect::<Vec<_>>()
        })
        .collect();
    Inputs { ids, mask, pos }
}

fn valid_pairs(inp: &Inputs) -> Vec<(usize, usize)> {
    (0..BATCH * SEQ)
        .filter(|&k| inp.mask[k] == 1)
        .map(|k| (k, k))
        .collect()
}

fn all_finite(p: &Pass) -> bool {
    p.logits
        .iter()
        .chain(p.residuals.iter().flatten())
        .all(|x| x.is_finite())
}

/// Worst diff over every residual and the logits.
fn diff(a: &Pass, b: &Pass, pairs_a_b: &[(usize, usize)], d: usize, v: usize) -> f32 {
    let mut w = max_diff_rows(&a.logits, &b.logits, v, pairs_a_b);
    for (x, y) in a.residuals.iter().zip(&b.residuals) {
        w = w.max(max_diff_rows(x, y, d, pairs_a_b));
    }
    w
}

fn export_to(
    src: &std::path::Path,
    out: &std::path::Path,
    f: impl FnOnce(&mut ExportOptions),
) -> Manifest {
    let mut o = ExportOptions::new(src, out);
    f(&mut o);
    export(&o).unwrap_or_else(|e| panic!("export failed: {e}"))
}

fn consistency(name: &str, config: Value, shards: usize) {
    let src = TempDir::new(&format!("self-src-{name}"));
    write_checkpoint(src.path(), &config, 7, shards);
    for ops in [GraphOps::Fused, GraphOps::Basic] {
        consistency_with(&format!("{name}/{ops:?}"), src.path(), ops);
    }
}

fn consistency_with(name: &str, src: &std::path::Path, ops: GraphOps) {
    let out = TempDir::new(&format!("self-out-{}", name.replace('/', "-")));
    let m = export_to(src, out.path(), |o| o.ops = ops);
    let (d, v) = (m.hidden_size, m.vocab_size);
    let mut r = Runner::open(out.path());
    let inp = inputs();
    let pairs = valid_pairs(&inp);

    let mut c = r.empty_cache();
    let batch = r.forward(BATCH, &inp.ids, &inp.mask, &inp.pos, &mut c);
    assert!(
        all_finite(&batch),
        "{name}: non-finite values (padding rows included)"
    );

    // Each row alone, without its padding.
    let mut alone_worst = 0f32;
    for row in 0..BATCH {
        let ts: Vec<usize> = (0..SEQ).filter(|&t| inp.mask[row * SEQ + t] == 1).collect();
        let pick = |x: &[i64]| ts.iter().map(|&t| x[row * SEQ + t]).collect::<Vec<_>>();
        let mut c = r.empty_cache();
        let alone = r.forward(
            1,
            &pick(&inp.ids),
            &vec![1; ts.len()],
            &pick(&inp.pos),
            &mut c,
        );
        let pairs: Vec<_> = ts
            .iter()
            .enumerate()
            .map(|(j, &t)| (j, row * SEQ + t))
            .collect();
        alone_worst = alone_worst.max(diff(&alone, &batch, &pairs, d, v));
    }

    // Token by token with the cache.
    let mut cache: Cache = r.empty_cache();
    let mut step_worst = 0f32;
    for t in 0..SEQ {
        let col = |x: &[i64], from: usize, to: usize| -> Vec<i64> {
            (0..BATCH)
                .flat_map(|row| x[row * SEQ + from..row * SEQ + to].to_vec())
                .collect()
        };
        let p = r.forward(
            BATCH,
            &col(&inp.ids, t, t + 1),
            &col(&inp.mask, 0, t + 1),
            &col(&inp.pos, t, t + 1),
            &mut cache,
        );
        let pairs: Vec<_> = (0..BATCH)
            .filter(|&row| inp.mask[row * SEQ + t] == 1)
            .map(|row| (row, row * SEQ + t))
            .collect();
        step_worst = step_worst.max(diff(&p, &batch, &pairs, d, v));
    }
    println!(
        "selfcheck {name:14}: padded batch vs rows alone {alone_worst:.2e}, \
         token by token vs full {step_worst:.2e}"
    );
    assert!(
        alone_worst <= 1e-5,
        "{name}: padded batch vs rows alone {alone_worst:e}"
    );
    assert!(
        step_worst <= 1e-5,
        "{name}: token by token vs full {step_worst:e}"
    );
    let _ = pairs;
}

#[test]
fn mistral_with_a_window_shorter_than_the_prompt() {
    consistency("mistral-window", mistral_window(), 1);
}

#[test]
fn llama_with_biases_llama3_rope_and_shards() {
    consistency("llama-biases", llama_biases(), 3);
}

#[test]
fn gemma3_with_softcapping() {
    consistency("gemma3-softcap", gemma_softcap(), 1);
}

#[test]
fn gemma3_with_a_window_shorter_than_the_prompt() {
    consistency("gemma3-window", gemma_window(), 1);
}

/// The fused block (opset 23's RMSNormalization, RotaryEmbedding, Attention) computes what
/// the spelled-out one does: a padded batch, then one more token with the cache.
#[test]
fn fused_and_basic_blocks_agree() {
    let configs = [
        ("llama-biases", llama_biases()),
        ("mistral-window", mistral_window()),
        ("qwen2-window", qwen2_window()),
        ("gemma3-window", gemma_window()),
        ("gemma3-softcap", gemma_softcap()),
    ];
    for (name, config) in configs {
        let src = TempDir::new(&format!("ops-src-{name}"));
        write_checkpoint(src.path(), &config, 13, 1);
        let fused = TempDir::new(&format!("ops-fused-{name}"));
        let basic = TempDir::new(&format!("ops-basic-{name}"));
        let m = export_to(src.path(), fused.path(), |o| o.ops = GraphOps::Fused);
        assert_eq!(m.ops, GraphOps::Fused);
        let mb = export_to(src.path(), basic.path(), |o| o.ops = GraphOps::Basic);
        assert_eq!(mb.ops, GraphOps::Basic);
        let inp = inputs();
        let pairs = valid_pairs(&inp);
        let mut a = Runner::open(fused.path());
        let mut b = Runner::open(basic.path());
        let (mut ca, mut cb) = (a.empty_cache(), b.empty_cache());
        let pa = a.forward(BATCH, &inp.ids, &inp.mask, &inp.pos, &mut ca);
        let pb = b.forward(BATCH, &inp.ids, &inp.mask, &inp.pos, &mut cb);
        let whole = diff(&pa, &pb, &pairs, m.hidden_size, m.vocab_size);
        // One more token per row, over the caches each graph wrote.
        let next_mask: Vec<i64> = (0..BATCH)
            .flat_map(|row| {
                let mut m = inp.mask[row * SEQ..(row + 1) * SEQ].to_vec();
                m.push(1);
                m
            })
            .collect();
        let next_pos: Vec<i64> = (0..BATCH)
            .map(|row| inp.pos[row * SEQ + SEQ - 1] + 1)
            .collect();
        let qa = a.forward(BATCH, &[4, 9], &next_mask, &next_pos, &mut ca);
        let qb = b.forward(BATCH, &[4, 9], &next_mask, &next_pos, &mut cb);
        let rows: Vec<_> = (0..BATCH).map(|r| (r, r)).collect();
        let step = diff(&qa, &qb, &rows, m.hidden_size, m.vocab_size);
        println!("selfcheck {name:14}: fused vs basic {whole:.2e}, next token {step:.2e}");
        assert!(
            whole <= 1e-5 && step <= 1e-5,
            "{name}: fused vs basic {whole:e}, next token {step:e}"
        );
    }
}

#[test]
fn qwen2_with_sliding_layers() {
    consistency("qwen2-window", qwen2_window(), 2);
}

/// The sliding window bites: the last token's logits change when the first real token does
/// (full attention layer) only through layers that can see it.
#[test]
fn window_limits_what_a_query_sees() {
    // With one sliding layer of window 2 and no full layer, position t sees t-1 and t only,
    // so after 1 layer, changing token 0 must not change position 3's output.
    let mut cfg = mistral_window();
    cfg["num_hidden_layers"] = json!(1);
    cfg["sliding_window"] = json!(2);
    let src = TempDir::new("window-src");
    write_checkpoint(src.path(), &cfg, 3, 1);
    let out = TempDir::new("window-out");
    let m = export_to(src.path(), out.path(), |_| {});
    let mut r = Runner::open(out.path());
    let run = |r: &mut Runner, first: i64| {
        let ids = vec![first, 5, 6, 7];
        let mut c = r.empty_cache();
        r.forward(1, &ids, &[1; 4], &[0, 1, 2, 3], &mut c)
    };
    let a = run(&mut r, 1);
    let b = run(&mut r, 2);
    let d = m.hidden_size;
    let at = |p: &Pass, t: usize| p.residuals[0][t * d..(t + 1) * d].to_vec();
    assert_eq!(at(&a, 3), at(&b, 3), "position 3 must not see position 0");
    assert_eq!(at(&a, 2), at(&b, 2), "position 2 must not see position 0");
    assert_ne!(at(&a, 1), at(&b, 1), "position 1 sees position 0");
}

#[test]
fn external_data_gives_the_same_outputs_as_inline_weights() {
    let src = TempDir::new("ext-src");
    write_checkpoint(src.path(), &gemma_softcap(), 11, 1);
    let inline = TempDir::new("ext-inline");
    let external = TempDir::new("ext-external");
    export_to(src.path(), inline.path(), |_| {});
    let m = export_to(src.path(), external.path(), |o| {
        o.external_data_threshold = 0
    });
    for f in ["embed.bin", "layer_0.bin", "layer_2.bin", "head.bin"] {
        assert!(m.files.contains_key(f), "{f} not in manifest");
        assert!(external.path().join(f).is_file(), "{f} not written");
    }
    assert!(!inline.path().join("layer_0.bin").exists());
    let inp = inputs();
    let pairs: Vec<_> = (0..BATCH * SEQ).map(|k| (k, k)).collect();
    let mut a = Runner::open(inline.path());
    let mut b = Runner::open(external.path());
    let (mut ca, mut cb) = (a.empty_cache(), b.empty_cache());
    let pa = a.forward(BATCH, &inp.ids, &inp.mask, &inp.pos, &mut ca);
    let pb = b.forward(BATCH, &inp.ids, &inp.mask, &inp.pos, &mut cb);
    assert_eq!(diff(&pa, &pb, &pairs, m.hidden_size, m.vocab_size), 0.0);
}

/// The largest difference between two exports of one model on the shared inputs.
fn max_diff_of_exports(a: &std::path::Path, b: &std::path::Path, m: &Manifest) -> f32 {
    let inp = inputs();
    let pairs = valid_pairs(&inp);
    let (mut ra, mut rb) = (Runner::open(a), Runner::open(b));
    let (mut ca, mut cb) = (ra.empty_cache(), rb.empty_cache());
    let pa = ra.forward(BATCH, &inp.ids, &inp.mask, &inp.pos, &mut ca);
    let pb = rb.forward(BATCH, &inp.ids, &inp.mask, &inp.pos, &mut cb);
    diff(&pa, &pb, &pairs, m.hidden_size, m.vocab_size)
}

#[test]
fn f16_weights_stay_close_to_f32() {
    let src = TempDir::new("f16-src");
    write_checkpoint(src.path(), &llama_biases(), 5, 1);
    let o32 = TempDir::new("f16-o32");
    let o16 = TempDir::new("f16-o16");
    export_to(src.path(), o32.path(), |_| {});
    let m = export_to(src.path(), o16.path(), |o| o.dtype = Dtype::F16);
    assert_eq!(m.dtype, Dtype::F16);
    let size = |dir: &std::path::Path| std::fs::metadata(dir.join("layer_0.onnx")).unwrap().len();
    let (s16, s32) = (size(o16.path()), size(o32.path()));
    assert!(
        s16 < s32,
        "f16 graph ({s16} bytes) is not smaller than f32 ({s32} bytes)"
    );
    let w = max_diff_of_exports(o32.path(), o16.path(), &m);
    println!("selfcheck f16 vs f32: max abs diff {w:.2e}");
    assert!(w > 0.0 && w < 2e-2, "f16 vs f32 max abs diff {w:e}");
}

/// A bf16 checkpoint exported with bf16 storage computes exactly what its f32 export computes
/// (bf16 to f32 is exact), in half the bytes: the series default for bf16 checkpoints loses
/// nothing.
#[test]
fn bf16_storage_of_bf16_weights_is_exact_and_half_the_size() {
    let src = TempDir::new("bf16-src");
    let config = llama_biases();
    std::fs::write(
        src.path().join("config.json"),
        serde_json::to_string_pretty(&config).unwrap(),
    )
    .unwrap();
    // Weights a bf16 checkpoint could hold (f32 values on the bf16 grid).
    let mut weights = random_weights(&config, 5);
    for (_, values) in weights.values_mut() {
        for v in values.iter_mut() {
            *v = half::bf16::from_f32(*v).to_f32();
        }
    }
    write_safetensors(&src.path().join("model.safetensors"), &weights);
    let o32 = TempDir::new("bf16-o32");
    let o16 = TempDir::new("bf16-o16");
    export_to(src.path(), o32.path(), |_| {});
    let m = export_to(src.path(), o16.path(), |o| o.dtype = Dtype::Bf16);
    assert_eq!(m.dtype, Dtype::Bf16);
    let bytes = |dir: &std::path::Path| -> u64 {
        (0..m.num_layers)
            .map(|l| format!("layer_{l}.onnx"))
            .chain(["embed.onnx".into(), "head.onnx".into()])
            .map(|f| std::fs::metadata(dir.join(f)).unwrap().len())
            .sum()
    };
    let (s16, s32) = (bytes(o16.path()), bytes(o32.path()));
    assert!(
        (s16 as f64) < 0.6 * s32 as f64,
        "bf16 graphs ({s16} bytes) are not about half of f32 ({s32} bytes)"
    );
    let w = max_diff_of_exports(o32.path(), o16.path(), &m);
    println!(
        "selfcheck bf16 storage vs f32 of bf16 weights: max abs diff {w:e}, {s16} vs {s32} bytes"
    );
    assert_eq!(w, 0.0, "bf16 storage vs f32 max abs diff {w:e}");
}

#[test]
fn manifest_records_sizes_options_and_hashes() {
    let src = TempDir::new("manifest-src");
    write_checkpoint(src.path(), &gemma_softcap(), 1, 1);
    let tok = src.path().join("tok.json");
    std::fs::write(&tok, r#"{"model": {"vocab": {"a": 0, "b": 49}}}"#).unwrap();
    let out = TempDir::new("manifest-out");
    let m = export_to(src.path(), out.path(), |o| {
        o.tokenizer = Some(tok.clone());
        o.step = Some(1234);
        o.revision = Some("step1234".into());
        o.extra_outputs = true;
    });
    let loaded = Manifest::load(out.path()).unwrap();
    assert_eq!(loaded, m);
    assert_eq!(m.architecture, "Gemma3ForCausalLM");
    assert_eq!(
        (m.num_layers, m.hidden_size, m.num_heads, m.num_kv_heads),
        (3, 32, 2, 1)
    );
    assert_eq!(
        (m.head_dim, m.vocab_size, m.intermediate_size),
        (16, 50, 48)
    );
    assert_eq!(m.sliding_window, Some(3));
    assert_eq!(m.source, src.path().to_string_lossy());
    assert_eq!(m.step, Some(1234));
    assert_eq!(m.revision.as_deref(), Some("step1234"));
    assert_eq!(m.tokenizer.as_deref(), Some("tokenizer.json"));
    let mut names: Vec<&str> = m.files.keys().map(String::as_str).collect();
    names.sort();
    assert_eq!(
        names,
        [
            "embed.onnx",
            "head.onnx",
            "layer_0.onnx",
            "layer_1.onnx",
            "layer_2.onnx",
            "tokenizer.json"
        ]
    );
    let json: Value =
        serde_json::from_str(&std::fs::read_to_string(out.path().join("manifest.json")).unwrap())
            .unwrap();
    assert_eq!(json["format_version"], 1);
    assert_eq!(json["dtype"], "f32");
    assert_eq!(json["layer_types"][1], "full_attention");
}

/// Exports `tiny/<arch>` and a copy whose tensors are renamed by `rename` (which must rename
/// `expect`), and runs both on one sequence of `stride`-spaced ids.
fn exports_of_renamed_weights(
    arch: &str,
    rename: impl Fn(String) -> String,
    expect: &str,
    stride: i64,
) -> (Pass, Pass) {
    let fixture = crate::support::fixtures().join("tiny").join(arch);
    let renamed = TempDir::new(&format!("{arch}-renamed"));
    std::fs::copy(
        fixture.join("config.json"),
        renamed.path().join("config.json"),
    )
    .unwrap();
    let weights: crate::support::Tensors =
        crate::support::read_safetensors(&fixture.join("model.safetensors"))
            .into_iter()
            .map(|(name, e)| (rename(name), (e.shape.clone(), e.f32().to_vec())))
            .collect();
    assert!(
        weights.contains_key(expect),
        "{expect} not among the renamed"
    );
    crate::support::write_safetensors(&renamed.path().join("model.safetensors"), &weights);
    let (a, b) = (
        TempDir::new(&format!("{arch}-a")),
        TempDir::new(&format!("{arch}-b")),
    );
    export(&ExportOptions::new(&fixture, a.path())).unwrap();
    export(&ExportOptions::new(renamed.path(), b.path())).unwrap();
    let ids: Vec<i64> = (0..7).map(|i| i * stride % 256).collect();
    let pos: Vec<i64> = (0..7).collect();
    let (mut ra, mut rb) = (Runner::open(a.path()), Runner::open(b.path()));
    let (mut ca, mut cb) = (ra.empty_cache(), rb.empty_cache());
    let pa = ra.forward(1, &ids, &[1; 7], &pos, &mut ca);
    let pb = rb.forward(1, &ids, &[1; 7], &pos, &mut cb);
    (pa, pb)
}

/// A GPT-NeoX checkpoint written from transformers 5's in-memory names calls its unembedding
/// `lm_head` where the hub's checkpoints say `embed_out`: both export to the same model.
#[test]
fn gpt_neox_unembedding_under_either_name() {
    let (pa, pb) = exports_of_renamed_weights(
        "gpt_neox",
        |name| {
            if name == "embed_out.weight" {
                "lm_head.weight".to_string()
            } else {
                name
            }
        },
        "lm_head.weight",
        31,
    );
    assert_eq!(pa.logits, pb.logits);
}

/// BLOOM's own checkpoints were saved from `BloomModel`, so their names lack the
/// `transformer.` prefix (`h.0.…`, `word_embeddings.weight`): they export as the prefixed ones.
#[test]
fn bloom_checkpoint_without_the_base_model_prefix() {
    let (pa, pb) = exports_of_renamed_weights(
        "bloom",
        |name| {
            name.strip_prefix("transformer.")
                .map_or(name.clone(), str::to_string)
        },
        "h.0.self_attention.query_key_value.weight",
        37,
    );
    assert_eq!(pa.logits, pb.logits);
    assert_eq!(pa.residuals, pb.residuals);
}
