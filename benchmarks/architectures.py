"""Every architecture family users bring, through the public API: profile time, what can be
compressed, and the cost model against counts on really compressed models.

For each family (tests/architectures.py, random weights): the profile's time; layers,
prunable channel groups, modules left untouched; base MACs and params against
FlopCounterMode and the model's tensors; then N random mixed policies (pruning, low rank,
sparsity, bits, sharing) compressed with ``autocompress.compress`` and counted.

    python benchmarks/architectures.py [--policies 20]
"""

from __future__ import annotations

import argparse
import random
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import autocompress as ac
from autocompress.compress.layers import folded
from autocompress.cost.profile import count_macs
from autocompress.errors import PolicyError
from tests.architectures import FAMILIES


def random_policy(prof: ac.Profile, rng: random.Random) -> ac.Policy:
    roots = {g.root for g in prof.groups.values() if g.prunable}
    layers = {}
    for name in prof.layers:
        if rng.random() < 0.5:
            continue
        clusters = rng.choice([None, None, 16])
        layers[name] = ac.LayerChoice(
            prune=rng.choice([0.0, 0.25, 0.5]) if name in roots else 0.0,
            sparsity=rng.choice([0.0, 0.5, 0.9]),
            w_bits=rng.choice([16, 32] if clusters else [2, 4, 8, 32]),
            a_bits=rng.choice([8, 32]),
            rank=rng.choice([1.0, 1.0, 0.3]),
            clusters=clusters,
        )
    return ac.Policy(prof.model, layers)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--policies", type=int, default=20)
    args = parser.parse_args()
    torch.set_num_threads(1)
    print(
        "| family | profile s | layers | prunable groups | untouched | base MACs (= counted) "
        "| other MACs | params | random policies exact |"
    )
    print("|---|---|---|---|---|---|---|---|---|")
    for name, family in FAMILIES.items():
        torch.manual_seed(0)
        model = family.build().eval()
        example = family.inputs(1)
        start = time.perf_counter()
        prof = ac.profile(model, example, name=name)
        seconds = time.perf_counter() - start
        base = ac.price(prof)
        assert base.macs == count_macs(model, example)
        assert base.params == sum(p.numel() for p in model.parameters())
        rng, exact, tried = random.Random(0), 0, 0
        while tried < args.policies:
            policy = random_policy(prof, rng)
            try:
                costs = ac.price(prof, policy)
            except PolicyError:
                continue  # a rank that would not shrink a layer: not a policy
            tried += 1
            small = ac.compress(model, policy, example)
            counted = (
                count_macs(small, example),
                sum(p.numel() for p in folded(small).parameters()),
            )
            exact += counted == (costs.macs, costs.params)
        prunable = sum(g.prunable for g in prof.groups.values())
        print(
            f"| {name} | {seconds:.2f} | {len(prof.layers)} | {prunable} of {len(prof.groups)} "
            f"| {len(prof.untouched)} | {base.macs:,} | {prof.other_macs:,} | {base.params:,} "
            f"| {exact} of {tried} |"
        )


if __name__ == "__main__":
    main()
