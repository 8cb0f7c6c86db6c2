//! llama.cpp's conventions undone: GGUF tensor names to the Hugging Face names of each
//! architecture, and the row orders llama.cpp's converter (`convert_hf_to_gguf.py`) changes.

/// The GGUF architectures read, with the `model_type` and `architectures[0]` of the
/// equivalent Hugging Face config.
pub(super) const ARCHS: &[(&str, &str, &str)] = &[
    ("llama", "llama", "LlamaForCausalLM"),
    ("qwen2", "qwen2", "Qwen2ForCausalLM"),
    ("qwen3", "qwen3", "Qwen3ForCausalLM"),
    ("gemma3", "gemma3_text", "Gemma3ForCausalLM"),
    ("olmo2", "olmo2", "Olmo2ForCausalLM"),
    ("bloom", "bloom", "BloomForCausalLM"),
    ("gptneox", "gpt_neox", "GPTNeoXForCausalLM"),
];

/// The Hugging Face name of GGUF tensor `gguf` of architecture `arch`, if the exporter uses
/// it.
pub(super) fn hf_name(gguf: &str, arch: &str) -> Option<String> {
    let (stem, kind) = gguf.rsplit_once('.')?;
    let global = match (arch, stem) {
        ("bloom", "token_embd") => Some("transformer.word_embeddings"),
        ("bloom", "token_embd_norm") => Some("transformer.word_embeddings_layernorm"),
        ("bloom", "output_norm") => Some("transformer.ln_f"),
        ("gptneox", "token_embd") => Some("gpt_neox.embed_in"),
        ("gptneox", "output_norm") => Some("gpt_neox.final_layer_norm"),
        ("gptneox", "output") => Some("embed_out"),
        (_, "token_embd") => Some("model.embed_tokens"),
        (_, "output_norm") => Some("model.norm"),
        (_, "output") => Some("lm_head"),
        _ => None,
    };
    if let Some(g) = global {
        return Some(format!("{g}.{kind}"));
    }
    let rest = stem.strip_prefix("blk.")?;
    let (i, part) = rest.split_once('.')?;
    let i: usize = i.parse().ok()?;
    let (layer, part) = match arch {
        "bloom" => ("transformer.h", fused_block(part, "self_attention")?),
        "gptneox" => ("gpt_neox.layers", fused_block(part, "attention")?),
        _ => (
            "model.layers",
            llama_block(part, arch == "gemma3")?.to_string(),
        ),
    };
    Some(format!("{layer}.{i}.{part}.{kind}"))
}

/// A block tensor of the Llama family (Gemma 3 and OLMo-2 included).
fn llama_block(part: &str, gemma: bool) -> Option<&'static str> {
    Some(match part {
        "attn_norm" => "input_layernorm",
        "attn_q" => "self_attn.q_proj",
        "attn_k" => "self_attn.k_proj",
        "attn_v" => "self_attn.v_proj",
        "attn_output" => "self_attn.o_proj",
        "attn_q_norm" => "self_attn.q_norm",
        "attn_k_norm" => "self_attn.k_norm",
        "post_attention_norm" => "post_attention_layernorm",
        "ffn_norm" if gemma => "pre_feedforward_layernorm",
        "ffn_norm" => "post_attention_layernorm",
        "post_ffw_norm" => "post_feedforward_layernorm",
        "ffn_gate" => "mlp.gate_proj",
        "ffn_up" => "mlp.up_proj",
        "ffn_down" => "mlp.down_proj",
        _ => return None,
    })
}

/// A block tensor of BLOOM or GPT-NeoX (`attn` names the attention module).
fn fused_block(part: &str, attn: &str) -> Option<String> {
    Some(match part {
        "attn_norm" => "input_layernorm".into(),
        "attn_qkv" => format!("{attn}.query_key_value"),
        "attn_output" => format!("{attn}.dense"),
        "ffn_norm" => "post_attention_layernorm".into(),
        "ffn_up" => "mlp.dense_h_to_4h".into(),
        "ffn_down" => "mlp.dense_4h_to_h".into(),
        _ => return None,
    })
}

/// The Hugging Face row of GGUF row `r` of a `rows`-row q or k projection with `n_head` heads:
/// llama.cpp's converter maps HF row `(h, s, j)` to `(h, j, s)` within each head of
/// `2 * half` rows.
pub(super) fn unpermute(r: usize, rows: usize, n_head: usize) -> usize {
    if n_head == 0 || !rows.is_multiple_of(2 * n_head) {
        return r;
    }
    let half = rows / n_head / 2;
    let (h, within) = (r / (2 * half), r % (2 * half));
    let (j, s) = (within / 2, within % 2);
    h * 2 * half + s * half + j
}

/// The Hugging Face row of GGUF row `r` of a fused q/k/v projection of `rows = 3 * n_head *
/// head_dim` rows: the converter regroups HF's `(head, part, j)` rows as `(part, head, j)`
/// (all queries, then all keys, then all values).
pub(super) fn unfuse(r: usize, rows: usize, n_head: usize) -> usize {
    if n_head == 0 || !rows.is_multiple_of(3 * n_head) {
        return r;
    }
    let hd = rows / 3 / n_head;
    let (part, rest) = (r / (n_head * hd), r % (n_head * hd));
    let (head, j) = (rest / hd, rest % hd);
    head * 3 * hd + part * hd + j
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unpermute_inverts_the_converter_permutation() {
        // The converter: rows reshaped (n_head, 2, half) -> swap -> (n_head, half, 2).
        for (n_head, hd) in [(2usize, 6usize), (3, 8), (1, 2)] {
            let rows = n_head * hd;
            let half = hd / 2;
            for h in 0..n_head {
                for s in 0..2 {
                    for j in 0..half {
                        let hf = h * hd + s * half + j;
                        let gguf = h * hd + j * 2 + s;
                        assert_eq!(unpermute(gguf, rows, n_head), hf);
                    }
                }
            }
        }
    }

    #[test]
    fn unfuse_inverts_the_converter_regrouping() {
        // The converter: rows reshaped (n_head, 3, hd), then [:, 0], [:, 1], [:, 2] stacked.
        let (n_head, hd) = (3usize, 4usize);
        let rows = 3 * n_head * hd;
        let mut gguf = 0;
        for part in 0..3 {
            for h in 0..n_head {
                for j in 0..hd {
                    assert_eq!(unfuse(gguf, rows, n_head), h * 3 * hd + part * hd + j);
                    gguf += 1;
                }
            }
        }
    }

    #[test]
    fn gguf_names_map_to_hf_names() {
        let cases = [
            (
                "blk.3.ffn_norm.weight",
                "llama",
                "model.layers.3.post_attention_layernorm.weight",
            ),
            (
                "blk.3.ffn_norm.weight",
                "gemma3",
                "model.layers.3.pre_feedforward_layernorm.weight",
            ),
            (
                "blk.0.attn_q.bias",
                "qwen2",
                "model.layers.0.self_attn.q_proj.bias",
            ),
            (
                "blk.1.post_ffw_norm.weight",
                "olmo2",
                "model.layers.1.post_feedforward_layernorm.weight",
            ),
            (
                "blk.2.attn_qkv.bias",
                "bloom",
                "transformer.h.2.self_attention.query_key_value.bias",
            ),
            (
                "token_embd_norm.bias",
                "bloom",
                "transformer.word_embeddings_layernorm.bias",
            ),
            ("output.weight", "gptneox", "embed_out.weight"),
            (
                "blk.0.attn_output.weight",
                "gptneox",
                "gpt_neox.layers.0.attention.dense.weight",
            ),
            (
                "output_norm.bias",
                "gptneox",
                "gpt_neox.final_layer_norm.bias",
            ),
        ];
        for (gguf, arch, hf) in cases {
            assert_eq!(hf_name(gguf, arch).as_deref(), Some(hf), "{gguf} ({arch})");
        }
        assert_eq!(hf_name("rope_freqs.weight", "llama"), None);
    }
}
