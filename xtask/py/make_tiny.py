"""Oracle for the exporter's parity tests: writes random tiny checkpoints of every supported architecture and Hugging Face transformers goldens into fixtures/tiny/<arch>/; run from the repo root: `.cache/py/bin/python xtask/py/make_tiny.py [--check] [--arch NAME ...]`.

For each architecture it writes

    fixtures/tiny/<arch>/config.json          save_pretrained's config (float32)
    fixtures/tiny/<arch>/model.safetensors    random-init weights, norms and biases perturbed
    fixtures/tiny/<arch>/goldens.safetensors  input_ids, attention_mask, position_ids, embed,
                                              residual.{i} (output of decoder block i), logits
    fixtures/tiny/<arch>/goldens_meta.json    sizes, layer types, versions, notes

Everything is seeded and computed in float32 on the CPU with one thread, eager attention and
deterministic algorithms, so a rerun with the pinned versions (xtask/py/requirements.txt)
reproduces the files bit for bit.

--check writes nothing: it regenerates everything in memory and asserts that the files on disk
are identical (max abs diff 0), that the checkpoint reloaded with from_pretrained reproduces the
goldens exactly, that final norm + lm_head applied to residual.{L-1} reproduces `logits`, and it
compares the goldens with a small independent re-implementation of each architecture (the
semantics the exporter must match), printing every max abs diff.
"""

import argparse
import inspect
import json
import os
import sys
import tempfile

import numpy as np
import torch
import transformers
from safetensors import safe_open
from safetensors.torch import load_file

SEED = 20240601
VOCAB, HIDDEN, HEADS, KV_HEADS, HEAD_DIM, FFN = 256, 64, 4, 2, 16, 128
BATCH, SEQ, PAD_ROW1 = 2, 10, 3
FIXTURE_DIR = os.path.join("fixtures", "tiny")
# Appended in order: an architecture's seeds derive from its index here.
ARCHS = ["llama", "mistral", "qwen2", "gemma3", "olmo2", "qwen3", "smollm3", "gpt_neox", "bloom",
         "apertus"]
# Architectures whose goldens are checked against transformers alone (no second,
# independent re-implementation in this script).
ORACLE_ONLY = {"olmo2", "qwen3", "smollm3", "gpt_neox", "bloom", "apertus"}
BLOOM_HEADS, BLOOM_HIDDEN = 6, 48  # 6 heads: not a power of two, the ALiBi slopes' odd branch
GEMMA3_LAYER_TYPES = [
    "sliding_attention",
    "sliding_attention",
    "full_attention",
    "sliding_attention",
    "sliding_attention",
    "full_attention",
]
PAD_NOTE = (
    "attention_mask==0 marks left padding (row 1, first 3 positions); the goldens at those "
    "positions are whatever transformers computes for a fully masked query and must not be "
    "compared. position_ids = clamp(cumsum(attention_mask,-1)-1, min=0) were passed explicitly."
)


def setup_determinism():
    torch.use_deterministic_algorithms(True)
    torch.set_num_threads(1)
    torch.set_default_dtype(torch.float32)


def make_config(arch):
    common = dict(
        vocab_size=VOCAB,
        hidden_size=HIDDEN,
        intermediate_size=FFN,
        num_attention_heads=HEADS,
        num_key_value_heads=KV_HEADS,
        head_dim=HEAD_DIM,
        rms_norm_eps=1e-6,
        initializer_range=0.1,
        max_position_embeddings=128,
        attn_implementation="eager",
    )
    if arch == "llama":
        cls = transformers.LlamaConfig
        cfg = cls(
            num_hidden_layers=3,
            tie_word_embeddings=False,
            rope_parameters={"rope_type": "default", "rope_theta": 50000.0},
            **common,
        )
        model_cls = transformers.LlamaForCausalLM
    elif arch == "mistral":
        cfg = transformers.MistralConfig(
            num_hidden_layers=3,
            tie_word_embeddings=False,
            rope_parameters={"rope_type": "default", "rope_theta": 20000.0},
            sliding_window=4096,  # Mistral's default; does not bite at 10 tokens
            **common,
        )
        model_cls = transformers.MistralForCausalLM
    elif arch == "qwen2":
        cfg = transformers.Qwen2Config(
            num_hidden_layers=3,
            tie_word_embeddings=False,
            rope_parameters={"rope_type": "default", "rope_theta": 30000.0},
            use_sliding_window=False,
            **common,
        )
        model_cls = transformers.Qwen2ForCausalLM
    elif arch == "gemma3":
        cfg = transformers.Gemma3TextConfig(
            num_hidden_layers=len(GEMMA3_LAYER_TYPES),
            layer_types=list(GEMMA3_LAYER_TYPES),
            sliding_window_pattern=3,  # legacy key, kept consistent with layer_types
            sliding_window=4,
            rope_parameters={
                "full_attention": {"rope_type": "default", "rope_theta": 200000.0},
                "sliding_attention": {"rope_type": "default", "rope_theta": 5000.0},
            },
            # kept at Gemma3TextConfig defaults: tie_word_embeddings=True,
            # query_pre_attn_scalar=256, hidden_activation="gelu_pytorch_tanh",
            # final_logit_softcapping=None, attn_logit_softcapping=None
            **common,
        )
        model_cls = transformers.Gemma3ForCausalLM
    elif arch == "olmo2":
        cfg = transformers.Olmo2Config(
            num_hidden_layers=3,
            tie_word_embeddings=False,
            rope_parameters={"rope_type": "default", "rope_theta": 40000.0},
            **common,
        )
        model_cls = transformers.Olmo2ForCausalLM
    elif arch == "qwen3":
        cfg = transformers.Qwen3Config(
            num_hidden_layers=3,
            tie_word_embeddings=False,
            rope_parameters={"rope_type": "default", "rope_theta": 60000.0},
            use_sliding_window=False,
            **common,
        )
        model_cls = transformers.Qwen3ForCausalLM
    elif arch == "smollm3":
        cfg = transformers.SmolLM3Config(
            num_hidden_layers=4,
            no_rope_layer_interval=2,  # layers 1 and 3 without rotary (NoPE)
            pad_token_id=0, bos_token_id=1, eos_token_id=2,  # inside the tiny vocabulary
            rope_parameters={"rope_type": "default", "rope_theta": 70000.0},
            # kept at the default: tie_word_embeddings=True
            **{k: v for k, v in common.items() if k != "head_dim"},
        )
        model_cls = transformers.SmolLM3ForCausalLM
    elif arch == "gpt_neox":
        cfg = transformers.GPTNeoXConfig(
            vocab_size=VOCAB,
            hidden_size=HIDDEN,
            intermediate_size=FFN,
            num_hidden_layers=3,
            num_attention_heads=HEADS,
            rope_parameters={"rope_type": "default", "rope_theta": 10000.0,
                             "partial_rotary_factor": 0.25},
            # kept at the defaults: use_parallel_residual=True, hidden_act="gelu",
            # attention_bias=True, tie_word_embeddings=False, layer_norm_eps=1e-5
            initializer_range=0.1,
            max_position_embeddings=128,
            attn_implementation="eager",
        )
        model_cls = transformers.GPTNeoXForCausalLM
    elif arch == "bloom":
        cfg = transformers.BloomConfig(
            vocab_size=VOCAB,
            hidden_size=BLOOM_HIDDEN,
            n_layer=3,
            n_head=BLOOM_HEADS,
            initializer_range=0.1,
            attn_implementation="eager",
            # kept at the defaults: tie_word_embeddings=True, layer_norm_epsilon=1e-5,
            # apply_residual_connection_post_layernorm=False
        )
        model_cls = transformers.BloomForCausalLM
    elif arch == "apertus":
        cfg = transformers.ApertusConfig(
            num_hidden_layers=3,
            tie_word_embeddings=False,
            rope_parameters={
                "rope_type": "llama3",
                "rope_theta": 12000000.0,
                "factor": 8.0,
                "original_max_position_embeddings": 16,
                "low_freq_factor": 1.0,
                "high_freq_factor": 4.0,
            },
            dtype="float32",  # the xIELU buffers take this dtype
            # kept at the default: hidden_act="xielu"
            **common,
        )
        model_cls = transformers.ApertusForCausalLM
    else:
        raise ValueError(f"unknown arch {arch}")
    return cfg, model_cls


@torch.no_grad()
def make_model(arch):
    cfg, model_cls = make_config(arch)
    torch.manual_seed(SEED + ARCHS.index(arch))
    model = model_cls(cfg).to(torch.float32).eval()
    gen = torch.Generator().manual_seed(SEED + 100 + ARCHS.index(arch))
    for name, p in model.named_parameters():
        leaf = name.rsplit(".", 1)[-1]
        is_norm = ("norm" in name or ".ln_f." in name) and leaf == "weight"
        if leaf in ("alpha_p", "alpha_n"):  # xIELU's learned parameters
            p.copy_(p + torch.normal(0.0, 0.3, p.shape, generator=gen))
        elif is_norm:
            if arch == "gemma3":  # Gemma's norms scale by (1 + w), w initialised to 0
                p.copy_(torch.normal(0.0, 0.5, p.shape, generator=gen))
            else:
                p.copy_(1.0 + torch.normal(0.0, 0.2, p.shape, generator=gen))
        elif leaf == "bias":
            p.copy_(torch.normal(0.0, 0.2, p.shape, generator=gen))
    return model


def make_inputs(arch):
    gen = torch.Generator().manual_seed(SEED + 200 + ARCHS.index(arch))
    input_ids = torch.randint(0, VOCAB, (BATCH, SEQ), generator=gen, dtype=torch.int64)
    attention_mask = torch.ones(BATCH, SEQ, dtype=torch.int64)
    attention_mask[1, :PAD_ROW1] = 0
    position_ids = (attention_mask.cumsum(-1) - 1).clamp(min=0)
    return input_ids, attention_mask, position_ids


def decoder_layers(model):
    base = model.base_model
    return base.layers if hasattr(base, "layers") else base.h


def final_norm(model):
    base = model.base_model
    for name in ("norm", "ln_f", "final_layer_norm"):
        if hasattr(base, name):
            return getattr(base, name)
    raise AttributeError("no final norm")


def takes_position_ids(model):
    return "position_ids" in inspect.signature(model.forward).parameters


@torch.no_grad()
def run_goldens(model, input_ids, attention_mask, position_ids):
    captured = {}
    layers = decoder_layers(model)
    hooks = []

    def pre_hook(module, args, kwargs):
        hs = args[0] if args else kwargs["hidden_states"]
        captured["embed"] = hs.detach().clone()

    hooks.append(layers[0].register_forward_pre_hook(pre_hook, with_kwargs=True))
    for i, layer in enumerate(layers):

        def hook(module, args, output, i=i):
            out = output[0] if isinstance(output, (tuple, list)) else output
            captured[f"residual.{i}"] = out.detach().clone()

        hooks.append(layer.register_forward_hook(hook))
    try:
        # BLOOM takes no position ids: its ALiBi positions come from the attention mask.
        pos = {"position_ids": position_ids} if takes_position_ids(model) else {}
        out = model(
            input_ids=input_ids,
            attention_mask=attention_mask,
            use_cache=False,
            **pos,
        )
    finally:
        for h in hooks:
            h.remove()
    goldens = {
        "input_ids": input_ids.clone(),
        "attention_mask": attention_mask.clone(),
        "position_ids": position_ids.clone(),
        "embed": captured["embed"],
    }
    for i in range(len(layers)):
        goldens[f"residual.{i}"] = captured[f"residual.{i}"]
    goldens["logits"] = out.logits.detach().clone()
    return {k: v.contiguous() for k, v in goldens.items()}


def layer_types_of(model):
    cfg = model.config
    lt = getattr(cfg, "layer_types", None)
    if lt is None:
        lt = ["full_attention"] * cfg.num_hidden_layers
    return list(lt)


def effective_window(arch, cfg, layer_type):
    if layer_type != "sliding_attention" and arch != "mistral":
        return None
    return getattr(cfg, "sliding_window", None)


def versions():
    return {"torch": torch.__version__, "transformers": transformers.__version__}


def make_meta(arch, model, goldens):
    cfg = model.config
    lt = layer_types_of(model)
    meta = {
        "arch": arch,
        "architecture": type(model).__name__,
        "versions": versions(),
        "seed": SEED,
        "sizes": {
            "vocab_size": cfg.vocab_size,
            "hidden_size": cfg.hidden_size,
            "num_hidden_layers": cfg.num_hidden_layers,
            "num_attention_heads": cfg.num_attention_heads,
            "num_key_value_heads": getattr(cfg, "num_key_value_heads", cfg.num_attention_heads),
            "head_dim": getattr(cfg, "head_dim", None)
            or cfg.hidden_size // cfg.num_attention_heads,
            "intermediate_size": getattr(cfg, "intermediate_size", 4 * cfg.hidden_size),
            "batch": BATCH,
            "seq_len": SEQ,
        },
        "layer_types": lt,
        "sliding_window_per_layer": [effective_window(arch, cfg, t) for t in lt],
        "rope_parameters": getattr(cfg, "rope_parameters", None),
        "norm_eps": next(getattr(cfg, k) for k in ("rms_norm_eps", "layer_norm_eps",
                                                    "layer_norm_epsilon") if hasattr(cfg, k)),
        "tie_word_embeddings": cfg.tie_word_embeddings,
        "attn_implementation": "eager",
        "dtype": "float32",
        "tensors": {k: {"dtype": str(v.dtype).replace("torch.", ""), "shape": list(v.shape)}
                    for k, v in goldens.items()},
        "padding_note": PAD_NOTE,
        "embed_note": "embed = residual stream entering block 0 (Gemma3: already scaled by sqrt(hidden_size)).",
        "residual_note": "residual.{i} = output hidden states of decoder block i (before the final norm).",
    }
    if arch == "gemma3":
        meta["gemma3"] = {
            "query_pre_attn_scalar": cfg.query_pre_attn_scalar,
            "attention_scale": cfg.query_pre_attn_scalar ** -0.5,
            "final_logit_softcapping": cfg.final_logit_softcapping,
            "attn_logit_softcapping": cfg.attn_logit_softcapping,
            "hidden_activation": cfg.hidden_activation,
            "embed_scale": HIDDEN ** 0.5,
            "sliding_window": cfg.sliding_window,
            "sliding_window_semantics": (
                "a query at slot q attends kv slots k with q - sliding_window < k <= q "
                "(itself plus sliding_window-1 earlier slots), and only where attention_mask==1"
            ),
        }
    if arch == "qwen2":
        meta["qwen2"] = {"qkv_bias": True, "o_bias": False}
    if arch == "mistral":
        meta["mistral"] = {"sliding_window": cfg.sliding_window,
                           "note": "window larger than seq_len: does not bite here"}
    return meta


def build(arch):
    model = make_model(arch)
    ids, mask, pos = make_inputs(arch)
    goldens = run_goldens(model, ids, mask, pos)
    return model, goldens


def save_model(model, out_dir):
    os.makedirs(out_dir, exist_ok=True)
    model.save_pretrained(out_dir)
    for extra in ("generation_config.json",):
        path = os.path.join(out_dir, extra)
        if os.path.exists(path):
            os.remove(path)


def save_deterministic(tensors, path, metadata):
    """safetensors writer with a sorted header: the library's header order follows a hash map,
    so its bytes change from run to run when __metadata__ has more than one key."""
    dtypes = {torch.float32: "F32", torch.int64: "I64"}
    header, blobs, offset = {"__metadata__": dict(sorted(metadata.items()))}, [], 0
    for name in sorted(tensors):
        t = tensors[name].contiguous()
        data = t.numpy().tobytes()  # little-endian on every supported host
        header[name] = {"dtype": dtypes[t.dtype], "shape": list(t.shape),
                        "data_offsets": [offset, offset + len(data)]}
        blobs.append(data)
        offset += len(data)
    head = json.dumps(header, separators=(",", ":"), sort_keys=True).encode()
    head += b" " * (-len(head) % 8)
    with open(path, "wb") as f:
        f.write(len(head).to_bytes(8, "little"))
        f.write(head)
        for b in blobs:
            f.write(b)


def golden_metadata(arch):
    return {"arch": arch, "torch": torch.__version__, "transformers": transformers.__version__,
            "note": "positions where attention_mask==0 are padding; do not compare them"}


def write(arch):
    model, goldens = build(arch)
    out_dir = os.path.join(FIXTURE_DIR, arch)
    save_model(model, out_dir)
    save_deterministic(goldens, os.path.join(out_dir, "goldens.safetensors"), golden_metadata(arch))
    with open(os.path.join(out_dir, "goldens_meta.json"), "w") as f:
        json.dump(make_meta(arch, model, goldens), f, indent=2, sort_keys=False)
        f.write("\n")
    for name in sorted(os.listdir(out_dir)):
        size = os.path.getsize(os.path.join(out_dir, name))
        print(f"  {out_dir}/{name}: {size} bytes")
    return model, goldens


def max_diff(a, b):
    if a.shape != b.shape or a.dtype != b.dtype:
        raise AssertionError(f"shape/dtype mismatch {a.shape} {a.dtype} vs {b.shape} {b.dtype}")
    if a.numel() == 0:
        return 0.0
    return (a.double() - b.double()).abs().max().item()


def valid_positions(mask):
    return mask.bool()  # [b, s]


# ---------------------------------------------------------------------------------------------
# Independent reference: what the exporter must compute (no transformers code involved).


def ref_rms(x, w, eps, gemma):
    x = x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + eps)
    return x * (1.0 + w) if gemma else x * w


def ref_rope(x, pos, theta):
    d = x.shape[-1]
    inv = 1.0 / (theta ** (torch.arange(0, d, 2, dtype=torch.float32) / d))
    f = pos[..., None].float() * inv  # [b, s, d/2]
    emb = torch.cat([f, f], -1)[:, None]  # [b, 1, s, d]
    cos, sin = emb.cos(), emb.sin()
    x1, x2 = x[..., : d // 2], x[..., d // 2:]
    return x * cos + torch.cat([-x2, x1], -1) * sin


@torch.no_grad()
def reference_forward(arch, cfg, sd, ids, mask, pos):
    gemma = arch == "gemma3"
    eps = cfg.rms_norm_eps
    b, s = ids.shape
    x = sd["model.embed_tokens.weight"][ids]
    if gemma:
        x = x * torch.tensor(HIDDEN ** 0.5, dtype=torch.float32)
    outs = {"embed": x}
    lt = getattr(cfg, "layer_types", None) or ["full_attention"] * cfg.num_hidden_layers
    q_idx = torch.arange(s)[:, None]
    k_idx = torch.arange(s)[None, :]
    for i in range(cfg.num_hidden_layers):
        p = f"model.layers.{i}."
        g = lambda n: sd[p + n]  # noqa: E731
        gb = lambda n: sd.get(p + n)  # noqa: E731
        h = ref_rms(x, g("input_layernorm.weight"), eps, gemma)

        def lin(t, n):
            y = t @ g(n + ".weight").T
            bias = gb(n + ".bias")
            return y + bias if bias is not None else y

        q = lin(h, "self_attn.q_proj").view(b, s, HEADS, HEAD_DIM).transpose(1, 2)
        k = lin(h, "self_attn.k_proj").view(b, s, KV_HEADS, HEAD_DIM).transpose(1, 2)
        v = lin(h, "self_attn.v_proj").view(b, s, KV_HEADS, HEAD_DIM).transpose(1, 2)
        if gemma:
            q = ref_rms(q, g("self_attn.q_norm.weight"), eps, True)
            k = ref_rms(k, g("self_attn.k_norm.weight"), eps, True)
            rp = cfg.rope_parameters[lt[i]]
            scale = cfg.query_pre_attn_scalar ** -0.5
        else:
            rp = cfg.rope_parameters
            scale = HEAD_DIM ** -0.5
        q, k = ref_rope(q, pos, rp["rope_theta"]), ref_rope(k, pos, rp["rope_theta"])
        rep = HEADS // KV_HEADS
        k = k.repeat_interleave(rep, dim=1)  # query head j uses kv head j // rep
        v = v.repeat_interleave(rep, dim=1)
        scores = (q @ k.transpose(-1, -2)) * scale
        if gemma and cfg.attn_logit_softcapping is not None:
            c = cfg.attn_logit_softcapping
            scores = torch.tanh(scores / c) * c
        allowed = (k_idx <= q_idx)[None] & mask.bool()[:, None, :]  # [b, q, k]
        win = effective_window(arch, cfg, lt[i])
        if win is not None:
            allowed = allowed & (k_idx > q_idx - win)[None]
        scores = scores.masked_fill(~allowed[:, None], float("-inf"))
        att = torch.softmax(scores, -1).nan_to_num(0.0)  # fully masked (padding) rows -> 0
        a = (att @ v).transpose(1, 2).reshape(b, s, HEADS * HEAD_DIM)
        a = lin(a, "self_attn.o_proj")
        if gemma:
            a = ref_rms(a, g("post_attention_layernorm.weight"), eps, True)
            x = x + a
            h = ref_rms(x, g("pre_feedforward_layernorm.weight"), eps, True)
            act = torch.nn.functional.gelu(lin(h, "mlp.gate_proj"), approximate="tanh")
        else:
            x = x + a
            h = ref_rms(x, g("post_attention_layernorm.weight"), eps, False)
            act = torch.nn.functional.silu(lin(h, "mlp.gate_proj"))
        m = lin(act * lin(h, "mlp.up_proj"), "mlp.down_proj")
        if gemma:
            m = ref_rms(m, g("post_feedforward_layernorm.weight"), eps, True)
        x = x + m
        outs[f"residual.{i}"] = x
    hN = ref_rms(x, sd["model.norm.weight"], eps, gemma)
    w = sd.get("lm_head.weight", sd["model.embed_tokens.weight"])
    logits = hN @ w.T
    if gemma and cfg.final_logit_softcapping is not None:
        c = cfg.final_logit_softcapping
        logits = torch.tanh(logits / c) * c
    outs["logits"] = logits
    return outs


# ---------------------------------------------------------------------------------------------


def check(arch):
    out_dir = os.path.join(FIXTURE_DIR, arch)
    model, goldens = build(arch)
    worst = {}

    # 1. files on disk == regenerated (weights, goldens, header metadata, config, meta)
    disk_w = load_file(os.path.join(out_dir, "model.safetensors"))
    sd = {k: v for k, v in model.state_dict().items()}
    with tempfile.TemporaryDirectory() as tmp:
        save_model(model, tmp)
        fresh_w = load_file(os.path.join(tmp, "model.safetensors"))
        save_deterministic(goldens, os.path.join(tmp, "goldens.safetensors"), golden_metadata(arch))
        for name in ("model.safetensors", "goldens.safetensors"):
            with open(os.path.join(tmp, name), "rb") as a, open(os.path.join(out_dir, name), "rb") as b:
                assert a.read() == b.read(), f"{arch}: {name} bytes differ from a regeneration"
        with open(os.path.join(tmp, "config.json")) as f:
            fresh_cfg = json.load(f)
    with open(os.path.join(out_dir, "config.json")) as f:
        assert json.load(f) == fresh_cfg, f"{arch}: config.json differs"
    assert sorted(disk_w) == sorted(fresh_w), f"{arch}: weight names differ"
    worst["weights_vs_disk"] = max(max_diff(disk_w[k], fresh_w[k]) for k in disk_w)
    disk_g = load_file(os.path.join(out_dir, "goldens.safetensors"))
    assert sorted(disk_g) == sorted(goldens), f"{arch}: golden names differ"
    worst["goldens_vs_disk"] = max(max_diff(disk_g[k], goldens[k]) for k in goldens)
    with safe_open(os.path.join(out_dir, "goldens.safetensors"), "pt") as f:
        assert f.metadata() == golden_metadata(arch), f"{arch}: goldens header metadata differs"
    with open(os.path.join(out_dir, "goldens_meta.json")) as f:
        assert json.load(f) == json.loads(json.dumps(make_meta(arch, model, goldens))), \
            f"{arch}: goldens_meta.json differs"

    # 2. the committed checkpoint reloaded by transformers reproduces the goldens exactly
    cfg, model_cls = make_config(arch)
    reloaded = model_cls.from_pretrained(out_dir, attn_implementation="eager",
                                         dtype=torch.float32).eval()
    g2 = run_goldens(reloaded, disk_g["input_ids"], disk_g["attention_mask"],
                     disk_g["position_ids"])
    worst["reloaded_vs_goldens"] = max(max_diff(g2[k], disk_g[k]) for k in disk_g)

    # 3. the hook captured the right tensor: final norm + lm_head on residual.{L-1} == logits
    L = model.config.num_hidden_layers
    with torch.no_grad():
        lg = model.get_output_embeddings()(final_norm(model)(disk_g[f"residual.{L - 1}"]))
        cap = getattr(model.config, "final_logit_softcapping", None)
        if cap is not None:
            lg = torch.tanh(lg / cap) * cap
    worst["head(residual_last)_vs_logits"] = max_diff(lg, disk_g["logits"])

    # 3b. hooks agree with output_hidden_states (index i+1 is block i's output, except the last)
    pos = {"position_ids": disk_g["position_ids"]} if takes_position_ids(model) else {}
    with torch.no_grad():
        hs = model(input_ids=disk_g["input_ids"], attention_mask=disk_g["attention_mask"],
                   use_cache=False, output_hidden_states=True, **pos).hidden_states
    worst["embed_vs_hidden_states[0]"] = max_diff(hs[0], disk_g["embed"])
    worst["residual_vs_hidden_states[i+1] (i<L-1)"] = max(
        [max_diff(hs[i + 1], disk_g[f"residual.{i}"]) for i in range(L - 1)] or [0.0])

    # 4. an independent re-implementation agrees (on non-padding positions)
    if arch in ORACLE_ONLY:
        for k, v in worst.items():
            print(f"  {arch:8s} {k:45s} max abs diff {v:.3e}")
        for k in ["weights_vs_disk", "goldens_vs_disk", "reloaded_vs_goldens"]:
            assert worst[k] == 0.0, f"{arch}: {k} = {worst[k]}"
        assert worst["head(residual_last)_vs_logits"] <= 1e-6, arch
        # residual.{i} is what transformers' hidden_states[i + 1] holds (GPT-NeoX's parallel
        # block included)
        assert worst["residual_vs_hidden_states[i+1] (i<L-1)"] == 0.0, arch
        return worst
    ref = reference_forward(arch, model.config, disk_w,
                            disk_g["input_ids"], disk_g["attention_mask"], disk_g["position_ids"])
    valid = valid_positions(disk_g["attention_mask"])
    ref_worst = 0.0
    for k, v in ref.items():
        d = (v - disk_g[k]).abs()[valid].max().item()
        ref_worst = max(ref_worst, d)
    worst["reference_impl_vs_goldens (valid positions)"] = ref_worst

    for k, v in worst.items():
        print(f"  {arch:8s} {k:45s} max abs diff {v:.3e}")
    must_be_zero = ["weights_vs_disk", "goldens_vs_disk", "reloaded_vs_goldens"]
    for k in must_be_zero:
        assert worst[k] == 0.0, f"{arch}: {k} = {worst[k]}"
    assert worst["head(residual_last)_vs_logits"] <= 1e-6, arch
    assert worst["reference_impl_vs_goldens (valid positions)"] <= 1e-4, arch
    return worst


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--check", action="store_true",
                    help="regenerate in memory and compare with the files; write nothing")
    ap.add_argument("--arch", nargs="*", choices=ARCHS, default=ARCHS)
    args = ap.parse_args()
    if not os.path.isdir("xtask") or not os.path.isfile(os.path.join("xtask", "py", "make_tiny.py")):
        sys.exit("run from the repository root: .cache/py/bin/python xtask/py/make_tiny.py")
    setup_determinism()
    transformers.logging.set_verbosity_error()
    transformers.utils.logging.disable_progress_bar()
    print(f"torch {torch.__version__}, transformers {transformers.__version__}, numpy {np.__version__}")
    for arch in args.arch:
        if args.check:
            check(arch)
        else:
            print(f"{arch}:")
            write(arch)
    print("ok")


if __name__ == "__main__":
    main()
