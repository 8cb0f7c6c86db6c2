"""The machine's own float32 matrix-product rate, for `cargo xtask bench` (BENCHMARKS.md).

Written for xlpatch: `cargo xtask bench` divides the FLOPs a target's work needs by its wall
time and compares that rate with this one, measured in the same invocation under the same
load. The product runs through PyTorch's CPU BLAS (oneDNN/MKL on x86), the fastest float32
GEMM this environment has: a ceiling no runtime on this machine beats, so the fraction of it
that xlpatch reaches is not flattered by a slow reference (ONNX Runtime's MLAS, which
xlpatch's backend uses, is itself at or below it).

Square `n × n` products (default 2048, 2·n³ FLOPs each), `--threads` intra-op threads; after
one warm-up, `--reps` timed products; prints one JSON line:
`{"n": .., "threads": .., "gflops_best": .., "gflops_median": ..}`.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--threads", type=int, default=1, help="intra-op threads (default 1)")
    p.add_argument("--n", type=int, default=2048, help="matrix size (default 2048)")
    p.add_argument("--reps", type=int, default=7, help="timed products (default 7)")
    args = p.parse_args()
    import torch

    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    a = torch.randn(args.n, args.n, dtype=torch.float32)
    b = torch.randn(args.n, args.n, dtype=torch.float32)
    c = a @ b  # warm-up: thread pool, page faults of the output
    rates = []
    for _ in range(args.reps):
        started = time.perf_counter()
        torch.matmul(a, b, out=c)
        rates.append(2 * args.n**3 / (time.perf_counter() - started) / 1e9)
    print(
        json.dumps(
            {
                "n": args.n,
                "threads": args.threads,
                "gflops_best": max(rates),
                "gflops_median": statistics.median(rates),
            }
        )
    )


if __name__ == "__main__":
    main()
