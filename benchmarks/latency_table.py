"""The latency table's predictions against the runtime: random mixed policies, end to end.

    python benchmarks/latency_table.py [--policies 50] [--models lenet5 resnet20] [--batch 64]

For each model (random weights: latency does not depend on them), the ONNX Runtime latency
table is built (``export.latency_table``, 1 thread, batch 64; a fresh cache, so the time to build
it is the whole cost; its calibration policies include 40 random ones drawn with seed 0), then
``--policies`` random mixed policies (``export.random_policies`` with seed 1: per layer, pruning
in [0, 0.8] with probability 1/2, low rank in [0.15, 0.45] with probability 1/4, W8A8 or float
with probability 1/2) are each priced by the table (no model built) and then built, exported as they
deploy (``model.onnx``, integer where bits are 8) and timed in ONNX Runtime (median of 30 runs,
in 3 interleaved rounds over all policies, the lowest round kept: ``export.deployed_latencies``).
Prints every policy's predicted and measured milliseconds, and the median and worst absolute
relative error.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import autocompress as ac
from autocompress.cost.metrics import compute_costs
from autocompress.export import deployed_latencies, latency_table, random_policies
from autocompress.models import ZOO

SHAPES = {"lenet5": (1, 28, 28), "resnet20": (3, 32, 32), "vgg16_bn": (3, 32, 32)}


def run(name: str, count: int, batch: int, threads: int) -> dict[str, float]:
    torch.manual_seed(0)
    shape = SHAPES[name]
    model = ZOO[name]().eval()
    example = torch.zeros(1, *shape)
    profile = ac.profile(model, example, name=name)
    cache = Path(tempfile.mkdtemp(prefix="latency-table-")) / "table.json"
    start = time.perf_counter()
    table = latency_table(model, profile, threads, batch, cache)
    build = time.perf_counter() - start
    print(f"\n== {name}: table built in {build:.1f} s ({table.measured} layer measurements) ==")
    print("coefficients:", ", ".join(f"{c:.3g}" for c in table.coef))
    policies = random_policies(profile, count, seed=1)
    predicted = [table.predict(profile, p, compute_costs(profile, p)) for p in policies]
    calibration = [torch.randn(8, *shape)]
    built = [(ac.compress(model, p, example, calibration=calibration).eval(), p) for p in policies]
    measured = deployed_latencies(built, ac.Inputs((example,)), threads, batch)
    errors = []
    for i, (p_ms, m_ms) in enumerate(zip(predicted, measured, strict=True)):
        errors.append(abs(p_ms - m_ms) / m_ms)
        print(
            f"policy {i:2d}: predicted {p_ms:8.2f} ms  measured {m_ms:8.2f} ms  "
            f"error {errors[-1]:6.1%}"
        )
    median, worst = statistics.median(errors), max(errors)
    within = sum(e <= 0.10 for e in errors)
    print(f"{name}: median error {median:.1%}, worst {worst:.1%}, within 10%: {within}/{count}")
    return {"build_s": build, "median": median, "worst": worst}


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--policies", type=int, default=50)
    parser.add_argument("--models", nargs="+", default=["lenet5", "resnet20"])
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    for model_name in args.models:
        run(model_name, args.policies, args.batch, args.threads)
