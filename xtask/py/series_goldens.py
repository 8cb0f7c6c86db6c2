"""Transformers goldens for every checkpoint of a series (the fixture series of
`fixtures/series/step_<N>/`, or any directory of Hugging Face checkpoints): for a fixed set of
translation prompts, left-padded into one batch, the residual entering block 0, every block's
output and the logits, in the format of `fixtures/tiny/*/goldens.safetensors`, written as
`goldens.safetensors` beside each checkpoint. Run from the repo root:

    .cache/py/bin/python xtask/py/series_goldens.py [SERIES_DIR]      # default fixtures/series
    .cache/py/bin/python xtask/py/series_goldens.py --check           # recompute and compare

The tokenizer is `tokenizer.json` in the checkpoint directory or in SERIES_DIR, applied with its
own post-processor (so BOS is added as the model was trained).
"""

import argparse
import glob
import os
import sys

import torch
import transformers
from safetensors import safe_open
from tokenizers import Tokenizer

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from make_tiny import run_goldens, save_deterministic, setup_determinism  # noqa: E402

PROMPTS = [
    'Français: "jour" - Deutsch: "Tag"\nFrançais: "livre" - Deutsch: "',
    'English: "dog" - Español: "perro"\nEnglish: "bread" - Español: "',
    'Deutsch: "Wasser" - Deutsch: "Wasser"\nDeutsch: "Haus" - Deutsch: "',
]


def tokenizer_for(step_dir, series_dir):
    for d in (step_dir, series_dir):
        path = os.path.join(d, "tokenizer.json")
        if os.path.exists(path):
            return Tokenizer.from_file(path)
    raise SystemExit(f"no tokenizer.json in {step_dir} or {series_dir}")


def batch(tok):
    rows = [tok.encode(p).ids for p in PROMPTS]
    seq = max(len(r) for r in rows)
    ids = torch.zeros(len(rows), seq, dtype=torch.int64)
    mask = torch.zeros(len(rows), seq, dtype=torch.int64)
    for i, r in enumerate(rows):
        ids[i, seq - len(r):] = torch.tensor(r)
        mask[i, seq - len(r):] = 1
    pos = (mask.cumsum(-1) - 1).clamp(min=0)
    return ids, mask, pos


def goldens_for(step_dir, series_dir):
    model = transformers.AutoModelForCausalLM.from_pretrained(
        step_dir, dtype=torch.float32, attn_implementation="eager")
    model.eval()
    ids, mask, pos = batch(tokenizer_for(step_dir, series_dir))
    return run_goldens(model, ids, mask, pos)


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("series", nargs="?", default=os.path.join("fixtures", "series"))
    ap.add_argument("--check", action="store_true")
    args = ap.parse_args()
    setup_determinism()
    steps = sorted(glob.glob(os.path.join(args.series, "step_*")),
                   key=lambda d: int(d.rsplit("_", 1)[1]))
    if not steps:
        raise SystemExit(f"no step_<N> directories in {args.series}")
    worst = 0.0
    for step_dir in steps:
        goldens = goldens_for(step_dir, args.series)
        path = os.path.join(step_dir, "goldens.safetensors")
        if args.check:
            with safe_open(path, "pt") as f:
                for name, t in goldens.items():
                    d = (f.get_tensor(name).double() - t.double()).abs().max().item()
                    worst = max(worst, d)
            print(f"{step_dir}: max abs diff {worst:.3g}")
        else:
            meta = {"torch": torch.__version__, "transformers": transformers.__version__,
                    "note": "positions where attention_mask==0 are padding; do not compare them"}
            save_deterministic(goldens, path, meta)
            print(f"{path}: {os.path.getsize(path)} bytes, batch {list(goldens['input_ids'].shape)}")
    if args.check and worst > 0:
        raise SystemExit(f"goldens differ (max abs diff {worst})")


if __name__ == "__main__":
    main()
