"""How a convolution's latency in ONNX Runtime moves with its channel counts, one by one.

    python benchmarks/channel_alignment.py [--rounds 3]

The latency table (``autocompress/cost/runtime_table.py``) times each layer at a grid of
fractions of its channel counts (eighths) and interpolates in between. This script times one
convolution alone, as the table does (``runtime_table.measure``: the one-layer ONNX model,
1 thread, batch 64, median of its runs; the lowest of ``--rounds`` rounds), at consecutive
channel counts around those a pruned LeNet-5 conv2 (5×5 on 12×12) and a ResNet-20 stage-1
convolution (3×3 on 32×32) take, in the integer form (uint8 in, QLinearConv, uint8 out) and in
float. Printed per count: milliseconds, and microseconds per million multiply-accumulates; a
smooth kernel would give a flat second column.
"""

from __future__ import annotations

import argparse

from autocompress.cost.runtime_table import Shape, measure

BATCH, THREADS = 64, 1
CASES = {
    "LeNet-5 conv2 (5x5, 12x12)": (
        Shape("conv", (5, 5), size=(12, 12)),
        [(16, c) for c in (24, 28, 30, 31, 32, 33)]
        + [(c, 32) for c in (8, 12, 14, 15, 16, 17)]
        + [(20, c) for c in (48, 50, 52)],
    ),
    "ResNet-20 stage 1 (3x3, 32x32)": (
        Shape("conv", (3, 3), padding=(1, 1), size=(32, 32)),
        [(c, c) for c in (8, 12, 13, 14, 15, 16)],
    ),
}


def macs(shape: Shape, cin: int, cout: int) -> float:
    h, w = shape.size
    kh, kw = shape.kernel
    oh = h + 2 * shape.padding[0] - kh + 1
    ow = w + 2 * shape.padding[1] - kw + 1
    return BATCH * oh * ow * cin * cout * kh * kw


def main(rounds: int) -> None:
    for name, (shape, counts) in CASES.items():
        print(f"\n== {name}, batch {BATCH}, {THREADS} thread, lowest of {rounds} rounds ==")
        print(
            f"{'in':>4} {'out':>4}  {'int8 ms':>8} {'us/MMAC':>8}  {'float ms':>8} {'us/MMAC':>8}"
        )
        for cin, cout in counts:
            row = []
            for form in ("int8", "float"):
                ms = min(measure(shape, form, cin, cout, BATCH, THREADS) for _ in range(rounds))
                row += [ms, ms * 1e3 / (macs(shape, cin, cout) / 1e6)]
            print(f"{cin:4d} {cout:4d}  {row[0]:8.3f} {row[1]:8.2f}  {row[2]:8.3f} {row[3]:8.2f}")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rounds", type=int, default=3)
    main(parser.parse_args().rounds)
