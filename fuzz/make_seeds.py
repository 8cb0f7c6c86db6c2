"""Writes the binary seeds of the fuzz corpus (run once; the outputs are committed):
a micro Llama (1 layer, width 8, vocabulary 16) as model.safetensors with its config.json,
and the same as a GGUF v3 file, so that a mutation mostly hits headers and tables rather than
weights. Usage: python fuzz/make_seeds.py fuzz/corpus"""
import json
import os
import sys

import numpy as np
from gguf import GGUFWriter
from safetensors.numpy import save_file

out = sys.argv[1]
rng = np.random.default_rng(0)
d, heads, kv, hd, ffn, vocab = 8, 2, 1, 4, 16, 16
config = {
    "architectures": ["LlamaForCausalLM"], "model_type": "llama", "hidden_size": d,
    "intermediate_size": ffn, "num_hidden_layers": 1, "num_attention_heads": heads,
    "num_key_value_heads": kv, "head_dim": hd, "vocab_size": vocab, "rms_norm_eps": 1e-6,
    "rope_theta": 10000.0, "max_position_embeddings": 64, "tie_word_embeddings": False,
    "bos_token_id": 1, "eos_token_id": 2, "hidden_act": "silu",
}
shapes = {
    "model.embed_tokens.weight": (vocab, d),
    "model.layers.0.input_layernorm.weight": (d,),
    "model.layers.0.post_attention_layernorm.weight": (d,),
    "model.layers.0.self_attn.q_proj.weight": (heads * hd, d),
    "model.layers.0.self_attn.k_proj.weight": (kv * hd, d),
    "model.layers.0.self_attn.v_proj.weight": (kv * hd, d),
    "model.layers.0.self_attn.o_proj.weight": (d, heads * hd),
    "model.layers.0.mlp.gate_proj.weight": (ffn, d),
    "model.layers.0.mlp.up_proj.weight": (ffn, d),
    "model.layers.0.mlp.down_proj.weight": (d, ffn),
    "model.norm.weight": (d,),
    "lm_head.weight": (vocab, d),
}
tensors = {k: (rng.standard_normal(s) * 0.3).astype(np.float32) for k, s in shapes.items()}
for target in ["export-safetensors", "export-config", "export-tokenizer", "export-gguf"]:
    os.makedirs(os.path.join(out, target), exist_ok=True)
save_file(tensors, os.path.join(out, "export-safetensors/micro-llama.safetensors"),
          metadata={"format": "pt"})
with open(os.path.join(out, "export-config/micro-llama.json"), "w") as f:
    json.dump(config, f, indent=1)

names = {"model.embed_tokens.weight": "token_embd.weight", "model.norm.weight":
         "output_norm.weight", "lm_head.weight": "output.weight"}
stems = {"input_layernorm": "attn_norm", "post_attention_layernorm": "ffn_norm",
         "self_attn.q_proj": "attn_q", "self_attn.k_proj": "attn_k", "self_attn.v_proj":
         "attn_v", "self_attn.o_proj": "attn_output", "mlp.gate_proj": "ffn_gate",
         "mlp.up_proj": "ffn_up", "mlp.down_proj": "ffn_down"}
w = GGUFWriter(os.path.join(out, "export-gguf/micro-llama.gguf"), "llama")
w.add_block_count(1)
w.add_context_length(64)
w.add_embedding_length(d)
w.add_feed_forward_length(ffn)
w.add_head_count(heads)
w.add_head_count_kv(kv)
w.add_rope_freq_base(10000.0)
w.add_layer_norm_rms_eps(1e-6)
w.add_bos_token_id(1)
w.add_eos_token_id(2)
for k, t in tensors.items():
    if k in names:
        name = names[k]
    else:
        rest = k[len("model.layers."):]
        i, tail = rest.split(".", 1)
        stem, kind = tail.rsplit(".", 1)
        name = f"blk.{i}.{stems[stem]}.{kind}"
    w.add_tensor(name, t)
w.write_header_to_file()
w.write_kv_data_to_file()
w.write_tensors_to_file()
w.close()
