"""Stores the checkpoints of a series in float16 (the fixture budget), in place: every
`step_<N>/model.safetensors` under the given directory (default fixtures/series) is rewritten
with f16 tensors and its config.json's dtype set to float16. Transformers upcasts them exactly
to float32 for the goldens, and the exporter reads them exactly, so parity is unaffected.

    .cache/py/bin/python xtask/py/to_f16.py [SERIES_DIR]
"""

import glob
import json
import os
import sys

import torch
from safetensors.torch import load_file, save_file


def main():
    series = sys.argv[1] if len(sys.argv) > 1 else os.path.join("fixtures", "series")
    for path in sorted(glob.glob(os.path.join(series, "step_*", "model.safetensors"))):
        tensors = {k: v.to(torch.float16).contiguous() for k, v in load_file(path).items()}
        save_file(tensors, path, metadata={"format": "pt"})
        cfg_path = os.path.join(os.path.dirname(path), "config.json")
        cfg = json.load(open(cfg_path))
        cfg["dtype"] = "float16"
        cfg.pop("torch_dtype", None)
        with open(cfg_path, "w") as f:
            json.dump(cfg, f, indent=2, sort_keys=True)
            f.write("\n")
        print(f"{path}: {os.path.getsize(path)} bytes")


if __name__ == "__main__":
    main()
