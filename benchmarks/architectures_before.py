"""The failures issue 15 reported, as the engine before the API (commit f4398ea) shows them.

It uses only functions both versions have (shape-based ``profile_model``), so it runs on a
checkout of the old commit with this repository's ``tests/architectures.py`` copied in:

    git worktree add /tmp/old f4398ea
    cp tests/architectures.py /tmp/old/tests/architectures_new.py
    cp benchmarks/architectures_before.py /tmp/old/
    cd /tmp/old && PYTHONPATH=. python architectures_before.py

On the current engine the same models are profiled from their own example inputs
(``benchmarks/architectures.py``).
"""

from __future__ import annotations

import torch
from torch.utils.flop_counter import FlopCounterMode

from autocompress.compress import apply_policy
from autocompress.compress.pack import pack_model
from autocompress.cost.metrics import compute_costs
from autocompress.cost.profile import profile_model
from autocompress.policy import LayerChoice, Policy

try:
    from tests.architectures_new import FAMILIES
except ImportError:  # run in this repository
    from tests.architectures import FAMILIES


def main() -> None:
    for name in ("densenet", "vit", "text_transformer", "lstm"):
        family = FAMILIES[name]
        torch.manual_seed(0)
        model = family.build().eval()
        x = family.inputs(1)
        try:
            prof = profile_model(model, tuple(x.shape[1:]), name)
        except Exception as exc:  # token models: the old profile fed float zeros
            print(f"{name}: profile fails: {type(exc).__name__}: {str(exc)[:90]}")
            continue
        costs = compute_costs(prof, Policy(name))
        with FlopCounterMode(display=False) as counter:
            model.train()(x)
        model.eval()
        real = sum(p.numel() for p in model.parameters())
        print(
            f"{name}: priced MACs {costs.macs:,} vs counted {counter.get_total_flops() // 2:,}; "
            f"priced params {costs.params:,} vs {real:,}"
        )
        if name == "densenet":
            policy = Policy(name, {"conv0": LayerChoice(prune=0.5)})
            built = apply_policy(model, policy, prof)
            packed = sum(len(b) for b in pack_model(built, policy, list(prof.layers)).values())
            print(
                f"  conv0 pruned by half: priced {compute_costs(prof, policy).size_bytes:,} B, "
                f"packed {packed:,} B"
            )


if __name__ == "__main__":
    main()
