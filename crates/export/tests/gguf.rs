//! GGUF input: a file written here from the same weights as a safetensors checkpoint (q/k
//! rows permuted as llama.cpp's converter does, Gemma norms stored as `1 + w`, BLOOM's and
//! GPT-NeoX's fused q/k/v rows regrouped as all queries, all keys, all values, matrices in
//! F16 for the generated checkpoints) must export to graphs computing what the safetensors
//! export computes. The OLMo-2, Qwen3, GPT-NeoX and BLOOM files are converted from the tiny
//! fixtures, whose safetensors exports match transformers.

use std::path::Path;

use serde_json::{Value, json};
use xlpatch_export::{ExportError, ExportOptions, export};

use crate::support::{Runner, TempDir, Tensors, random_weights, write_safetensors};

enum Kv {
    Bool(bool),
    Str(&'static str),
    U32(u32),
    F32(f32),
    Strings(Vec<String>),
}

fn gguf_string(out: &mut Vec<u8>, s: &str) {
    out.extend((s.len() as u64).to_le_bytes());
    out.extend(s.as_bytes());
}

/// Writes a GGUF v3 file: metadata, then tensors (F16 when `f16`, else F32) aligned to 32.
fn write_gguf(
    path: &Path,
    meta: &[(String, Kv)],
    tensors: &[(String, Vec<usize>, Vec<f32>, bool)],
) {
    let mut out = b"GGUF".to_vec();
    out.extend(3u32.to_le_bytes());
    out.extend((tensors.len() as u64).to_le_bytes());
    out.extend((meta.len() as u64).to_le_bytes());
    for (k, v) in meta {
        gguf_string(&mut out, k);
        match v {
            Kv::Bool(b) => {
                out.extend(7u32.to_le_bytes());
                out.push(u8::from(*b));
            }
            Kv::Str(s) => {
                out.extend(8u32.to_le_bytes());
                gguf_string(&mut out, s);
            }
            Kv::U32(x) => {
                out.extend(4u32.to_le_bytes());
                out.extend(x.to_le_bytes());
            }
            Kv::F32(x) => {
                out.extend(6u32.to_le_bytes());
                out.extend(x.to_le_bytes());
            }
            Kv::Strings(list) => {
                out.extend(9u32.to_le_bytes());
                out.extend(8u32.to_le_bytes());
                out.extend((list.len() as u64).to_le_bytes());
                for s in list {
                    gguf_string(&mut out, s);
                }
            }
        }
    }
    let mut data = Vec::new();
    for (name, shape, values, f16) in tensors {
        while data.len() % 32 != 0 {
            data.push(0);
        }
        gguf_string(&mut out, name);
        out.extend((shape.len() as u32).to_le_bytes());
        for d in shape.iter().rev() {
            out.extend((*d as u64).to_le_bytes());
        }
        out.extend(if *f16 { 1u32 } else { 0u32 }.to_le_bytes());
        out.extend((data.len() as u64).to_le_bytes());
        for v in values {
            if *f16 {
                data.extend(half::f16::from_f32(*v).to_le_bytes());
            } else {
                data.extend(v.to_le_bytes());
            }
        }
    }
    while !out.len().is_multiple_of(32) {
        out.push(0);
    }
    out.extend(data);
    std::fs::write(path, out).unwrap();
}

/// llama.cpp's converter permutation: rows `(h, s, j)` of each head move to `(h, j, s)`.
fn permute(values: &[f32], rows: usize, cols: usize, n_head: usize) -> Vec<f32> {
    let half = rows / n_head / 2;
    let mut out = vec![0.0; values.len()];
    for h in 0..n_head {
        for s in 0..2 {
            for j in 0..half {
                let src = h * 2 * half + s * half + j;
                let dst = h * 2 * half + j * 2 + s;
                out[dst * cols..(dst + 1) * cols]
                    .copy_from_slice(&values[src * cols..(src + 1) * cols]);
            }
        }
    }
    out
}

fn gguf_name(hf: &str, gemma: bool) -> String {
    let fixed = [
        ("model.embed_tokens.weight", "token_embd.weight"),
        ("model.norm.weight", "output_norm.weight"),
        ("lm_head.weight", "output.weight"),
    ];
    if let Some((_, g)) = fixed.iter().find(|(h, _)| *h == hf) {
        return g.to_string();
    }
    let rest = hf.strip_prefix("model.layers.").unwrap();
    let (i, tail) = rest.split_once('.').unwrap();
    let (stem, kind) = tail.rsplit_once('.').unwrap();
    let g = match stem {
        "input_layernorm" => "attn_norm",
        "self_attn.q_proj" => "attn_q",
        "self_attn.k_proj" => "attn_k",
        "self_attn.v_proj" => "attn_v",
        "self_attn.o_proj" => "attn_output",
        "self_attn.q_norm" => "attn_q_norm",
        "self_attn.k_norm" => "attn_k_norm",
        "post_attention_layernorm" if gemma => "post_attention_norm",
        "post_attention_layernorm" => "ffn_norm",
        "pre_feedforward_layernorm" => "ffn_norm",
        "post_feedforward_layernorm" => "post_ffw_norm",
        "mlp.gate_proj" => "ffn_gate",
        "mlp.up_proj" => "ffn_up",
        "mlp.down_proj" => "ffn_down",
        other => panic!("no gguf name for {other}"),
    };
    format!("blk.{i}.{g}.{kind}")
}

/// Writes the same model twice: a safetensors checkpoint (`st`) and a GGUF file (`gguf`).
fn write_both(config: &Value, arch: &str, st: &Path, gguf: &Path) {
    let gemma = arch == "gemma3";
    let u = |k: &str| config[k].as_u64().unwrap() as usize;
    let mut weights: Tensors = random_weights(config, 42);
    // Matrices go to GGUF as F16: round them first so that both sides hold the same values.
    for (shape, values) in weights.values_mut() {
        if shape.len() == 2 {
            for v in values.iter_mut() {
                *v = half::f16::from_f32(*v).to_f32();
            }
        }
    }
    std::fs::create_dir_all(st).unwrap();
    std::fs::write(st.join("config.json"), config.to_string()).unwrap();
    write_safetensors(&st.join("model.safetensors"), &weights);

    let (heads, kv) = (u("num_attention_heads"), u("num_key_value_heads"));
    let mut tensors = Vec::new();
    for (name, (shape, values)) in &weights {
        let mut values = values.clone();
        if arch == "llama" && name.ends_with("q_proj.weight") {
            values = permute(&values, shape[0], shape[1], heads);
        }
        if arch == "llama" && name.ends_with("k_proj.weight") {
            values = permute(&values, shape[0], shape[1], kv);
        }
        if gemma && name.ends_with("norm.weight") {
            values.iter_mut().for_each(|v| *v += 1.0);
        }
        tensors.push((
            gguf_name(name, gemma),
            shape.clone(),
            values,
            shape.len() == 2,
        ));
    }
    let a = |k: &str| format!("{arch}.{k}");
    let mut meta = vec![
        (
            "general.architecture".to_string(),
            Kv::Str(if gemma { "gemma3" } else { "llama" }),
        ),
        (a("block_count"), Kv::U32(u("num_hidden_layers") as u32)),
        (a("embedding_length"), Kv::U32(u("hidden_size") as u32)),
        (
            a("feed_forward_length"),
            Kv::U32(u("intermediate_size") as u32),
        ),
        (a("attention.head_count"), Kv::U32(heads as u32)),
        (a("attention.head_count_kv"), Kv::U32(kv as u32)),
        (a("attention.key_length"), Kv::U32(u("head_dim") as u32)),
        (a("attention.layer_norm_rms_epsilon"), Kv::F32(1e-6)),
        (
            a("rope.freq_base"),
            Kv::F32(config["rope_theta"].as_f64().unwrap() as f32),
        ),
        (
            "tokenizer.ggml.tokens".to_string(),
            Kv::Strings((0..u("vocab_size")).map(|i| format!("t{i}")).collect()),
        ),
        ("general.alignment".to_string(), Kv::U32(32)),
    ];
    if let Some(n) = config["max_position_embeddings"].as_u64() {
        meta.push((a("context_length"), Kv::U32(n as u32)));
    }
    if gemma {
        meta.push((
            a("attention.sliding_window"),
            Kv::U32(u("sliding_window") as u32),
        ));
    }
    write_gguf(gguf, &meta, &tensors);
}

fn same_outputs(config: Value, arch: &str) {
    let src = TempDir::new(&format!("gguf-src-{arch}"));
    let st = src.path().join("st");
    let gguf = src.path().join("model.gguf");
    write_both(&config, arch, &st, &gguf);
    compare_exports(&st, &gguf, arch);
}

/// Exports the checkpoint `st` and the GGUF file `gguf` and holds their outputs within 1e-5.
fn compare_exports(st: &Path, gguf: &Path, arch: &str) {
    let (o1, o2) = (TempDir::new("gguf-o1"), TempDir::new("gguf-o2"));
    let from_st = export(&ExportOptions::new(st, o1.path())).unwrap();
    let m = export(&ExportOptions::new(gguf, o2.path()))
        .unwrap_or_else(|e| panic!("gguf export failed: {e}"));
    assert_eq!(m.source, gguf.to_string_lossy());
    // `<arch>.context_length` is the checkpoint's max_position_embeddings.
    assert_eq!(m.context_length, from_st.context_length, "{arch}");
    let mut a = Runner::open(o1.path());
    let mut b = Runner::open(o2.path());
    let ids: Vec<i64> = (0..9).map(|i| (i * 5 + 1) % 40).collect();
    let pos: Vec<i64> = (0..9).collect();
    let (mut ca, mut cb) = (a.empty_cache(), b.empty_cache());
    let pa = a.forward(1, &ids, &[1; 9], &pos, &mut ca);
    let pb = b.forward(1, &ids, &[1; 9], &pos, &mut cb);
    let worst = pa
        .logits
        .iter()
        .zip(&pb.logits)
        .chain(
            pa.residuals
                .iter()
                .flatten()
                .zip(pb.residuals.iter().flatten()),
        )
        .map(|(x, y)| (x - y).abs())
        .fold(0f32, f32::max);
    println!("gguf {arch}: gguf vs safetensors export max abs diff {worst:.2e}");
    assert!(worst <= 1e-5, "{arch}: gguf vs safetensors {worst:e}");
}

#[test]
fn llama_gguf_undoes_the_qk_permutation() {
    let cfg = json!({
        "architectures": ["LlamaForCausalLM"], "hidden_size": 32, "intermediate_size": 64,
        "num_hidden_layers": 2, "num_attention_heads": 4, "num_key_value_heads": 2,
        "head_dim": 8, "vocab_size": 40, "rope_theta": 10000.0, "rms_norm_eps": 1e-6,
        "tie_word_embeddings": false
    });
    same_outputs(cfg, "llama");
}

#[test]
fn gemma3_gguf_shifts_norms_back() {
    let cfg = json!({
        "architectures": ["Gemma3ForCausalLM"], "hidden_size": 32, "intermediate_size": 64,
        "num_hidden_layers": 6, "num_attention_heads": 2, "num_key_value_heads": 1,
        "head_dim": 16, "vocab_size": 40, "sliding_window": 3, "query_pre_attn_scalar": 16,
        "rope_theta": 100000.0, "rope_local_base_freq": 10000.0, "rms_norm_eps": 1e-6
    });
    same_outputs(cfg, "gemma3");
}

/// The GGUF name llama.cpp gives Hugging Face tensor `hf` of fixture architecture `arch`.
fn fixture_gguf_name(hf: &str, arch: &str) -> String {
    let globals = [
        ("model.embed_tokens.weight", "token_embd.weight"),
        ("model.norm.weight", "output_norm.weight"),
        ("lm_head.weight", "output.weight"),
        ("gpt_neox.embed_in.weight", "token_embd.weight"),
        ("gpt_neox.final_layer_norm.weight", "output_norm.weight"),
        ("gpt_neox.final_layer_norm.bias", "output_norm.bias"),
        ("embed_out.weight", "output.weight"),
        ("transformer.word_embeddings.weight", "token_embd.weight"),
        (
            "transformer.word_embeddings_layernorm.weight",
            "token_embd_norm.weight",
        ),
        (
            "transformer.word_embeddings_layernorm.bias",
            "token_embd_norm.bias",
        ),
        ("transformer.ln_f.weight", "output_norm.weight"),
        ("transformer.ln_f.bias", "output_norm.bias"),
    ];
    if let Some((_, g)) = globals.iter().find(|(h, _)| *h == hf) {
        return g.to_string();
    }
    let rest = ["model.layers.", "gpt_neox.layers.", "transformer.h."]
        .iter()
        .find_map(|p| hf.strip_prefix(p))
        .unwrap_or_else(|| panic!("no gguf name for {hf}"));
    let (i, tail) = rest.split_once('.').unwrap();
    let (stem, kind) = tail.rsplit_once('.').unwrap();
    let g = match stem {
        "input_layernorm" => "attn_norm",
        "self_attn.q_proj" => "attn_q",
        "self_attn.k_proj" => "attn_k",
        "self_attn.v_proj" => "attn_v",
        "self_attn.o_proj" => "attn_output",
        "self_attn.q_norm" => "attn_q_norm",
        "self_attn.k_norm" => "attn_k_norm",
        "post_attention_layernorm" if arch == "olmo2" => "post_attention_norm",
        "post_attention_layernorm" => "ffn_norm",
        "post_feedforward_layernorm" => "post_ffw_norm",
        "mlp.gate_proj" => "ffn_gate",
        "mlp.up_proj" | "mlp.dense_h_to_4h" => "ffn_up",
        "mlp.down_proj" | "mlp.dense_4h_to_h" => "ffn_down",
        "attention.query_key_value" | "self_attention.query_key_value" => "attn_qkv",
        "attention.dense" | "self_attention.dense" => "attn_output",
        other => panic!("no gguf name for {other}"),
    };
    format!("blk.{i}.{g}.{kind}")
}

/// llama.cpp's regrouping of a fused q/k/v tensor: rows `(head, part, j)` become
/// `(part, head, j)`.
fn regroup_qkv(values: &[f32], rows: usize, cols: usize, n_head: usize) -> Vec<f32> {
    let hd = rows / 3 / n_head;
    let mut out = vec![0.0; values.len()];
    for h in 0..n_head {
        for part in 0..3 {
            for j in 0..hd {
                let src = h * 3 * hd + part * hd + j;
                let dst = part * n_head * hd + h * hd + j;
                out[dst * cols..(dst + 1) * cols]
                    .copy_from_slice(&values[src * cols..(src + 1) * cols]);
            }
        }
    }
    out
}

/// Converts `fixtures/tiny/<arch>` to GGUF as llama.cpp would (architecture `gguf_arch`)
/// and holds the GGUF export to the safetensors export.
fn fixture_gguf_matches_safetensors(arch: &str, gguf_arch: &'static str) {
    let st = crate::support::fixtures().join("tiny").join(arch);
    let config: Value =
        serde_json::from_str(&std::fs::read_to_string(st.join("config.json")).unwrap()).unwrap();
    let weights = crate::support::read_safetensors(&st.join("model.safetensors"));
    let u = |k: &str| config[k].as_u64().unwrap() as u32;
    let heads = config
        .get("num_attention_heads")
        .or(config.get("n_head"))
        .unwrap()
        .as_u64()
        .unwrap() as usize;
    let mut tensors = Vec::new();
    for (name, entry) in &weights {
        let (shape, mut values) = (entry.shape.clone(), entry.f32().to_vec());
        if name.ends_with("query_key_value.weight") {
            values = regroup_qkv(&values, shape[0], shape[1], heads);
        }
        if name.ends_with("query_key_value.bias") {
            values = regroup_qkv(&values, shape[0], 1, heads);
        }
        if name == "transformer.word_embeddings.weight" {
            // llama.cpp's BLOOM converter writes the tied unembedding as its own tensor.
            tensors.push((
                "output.weight".to_string(),
                shape.clone(),
                values.clone(),
                false,
            ));
        }
        tensors.push((fixture_gguf_name(name, arch), shape, values, false));
    }
    let a = |k: &str| format!("{gguf_arch}.{k}");
    let hidden = config["hidden_size"].as_u64().unwrap() as u32;
    let mut meta = vec![
        ("general.architecture".to_string(), Kv::Str(gguf_arch)),
        (a("embedding_length"), Kv::U32(hidden)),
        (a("attention.head_count"), Kv::U32(heads as u32)),
        ("general.alignment".to_string(), Kv::U32(32)),
    ];
    match gguf_arch {
        "bloom" => meta.extend([
            (a("block_count"), Kv::U32(u("n_layer"))),
            (a("feed_forward_length"), Kv::U32(4 * hidden)),
            (a("attention.head_count_kv"), Kv::U32(heads as u32)),
            (a("attention.layer_norm_epsilon"), Kv::F32(1e-5)),
        ]),
        "gptneox" => meta.extend([
            (a("block_count"), Kv::U32(u("num_hidden_layers"))),
            (a("feed_forward_length"), Kv::U32(u("intermediate_size"))),
            (a("context_length"), Kv::U32(u("max_position_embeddings"))),
            (
                a("rope.dimension_count"),
                Kv::U32(hidden / heads as u32 / 4),
            ),
            (a("use_parallel_residual"), Kv::Bool(true)),
            (a("attention.layer_norm_epsilon"), Kv::F32(1e-5)),
        ]),
        _ => meta.extend([
            (a("block_count"), Kv::U32(u("num_hidden_layers"))),
            (a("feed_forward_length"), Kv::U32(u("intermediate_size"))),
            (a("context_length"), Kv::U32(u("max_position_embeddings"))),
            (
                a("attention.head_count_kv"),
                Kv::U32(u("num_key_value_heads")),
            ),
            (a("attention.key_length"), Kv::U32(u("head_dim"))),
            (a("attention.layer_norm_rms_epsilon"), Kv::F32(1e-6)),
            (
                a("rope.freq_base"),
                Kv::F32(config["rope_parameters"]["rope_theta"].as_f64().unwrap() as f32),
            ),
        ]),
    }
    let dir = TempDir::new(&format!("gguf-fixture-{arch}"));
    let gguf = dir.path().join("model.gguf");
    write_gguf(&gguf, &meta, &tensors);
    compare_exports(&st, &gguf, arch);
}

#[test]
fn olmo2_gguf_reads_as_its_checkpoint() {
    fixture_gguf_matches_safetensors("olmo2", "olmo2");
}

#[test]
fn qwen3_gguf_reads_as_its_checkpoint() {
    fixture_gguf_matches_safetensors("qwen3", "qwen3");
}

#[test]
fn gpt_neox_gguf_regroups_the_fused_qkv_back() {
    fixture_gguf_matches_safetensors("gpt_neox", "gptneox");
}

#[test]
fn bloom_gguf_regroups_the_fused_qkv_back() {
    fixture_gguf_matches_safetensors("bloom", "bloom");
}

#[test]
fn truncated_gguf_is_an_error_naming_the_file() {
    let src = TempDir::new("gguf-trunc");
    let gguf = src.path().join("m.gguf");
    let cfg = json!({
        "architectures": ["LlamaForCausalLM"], "hidden_size": 32, "intermediate_size": 64,
        "num_hidden_layers": 1, "num_attention_heads": 4, "num_key_value_heads": 2,
        "head_dim": 8, "vocab_size": 40, "rope_theta": 10000.0
    });
    write_both(&cfg, "llama", &src.path().join("st"), &gguf);
    let bytes = std::fs::read(&gguf).unwrap();
    let out = TempDir::new("gguf-trunc-out");
    for cut in [bytes.len() - 10, 100, 6] {
        std::fs::write(&gguf, &bytes[..cut]).unwrap();
        let e = export(&ExportOptions::new(&gguf, out.path())).unwrap_err();
        assert!(
            matches!(e, ExportError::Truncated { .. }),
            "cut {cut}: {e:?}"
        );
        assert!(
            e.to_string()
                .starts_with(&format!("{} is truncated", gguf.display())),
            "{e}"
        );
    }
    std::fs::write(&gguf, b"NOPE0000000000000000").unwrap();
    let e = export(&ExportOptions::new(&gguf, out.path()))
        .unwrap_err()
        .to_string();
    assert!(e.contains("not a GGUF file"), "{e}");
    // A GGUF magic and version, then garbage: an implausible count, not "truncated: header
    // needs 18446462598732840980 bytes".
    for (counts, what) in [
        (
            vec![0xfffe_b7d4_3a91_fe17_u64],
            "tensor count 18446383245899726359",
        ),
        (vec![1, 1, 0x7777_7777_7777], "key length 131354989131639"),
    ] {
        let mut garbage = b"GGUF".to_vec();
        garbage.extend(3u32.to_le_bytes());
        for c in counts {
            garbage.extend(c.to_le_bytes());
        }
        garbage.extend([7u8; 64]);
        std::fs::write(&gguf, &garbage).unwrap();
        let e = export(&ExportOptions::new(&gguf, out.path())).unwrap_err();
        assert!(matches!(e, ExportError::Malformed { .. }), "{e:?}");
        let e = e.to_string();
        assert!(
            e.contains("not a GGUF file, or a damaged one: implausible header") && e.contains(what),
            "{e}"
        );
    }
}
