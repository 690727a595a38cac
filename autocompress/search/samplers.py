"""Optuna samplers and pruners, with every setting pinned so results do not move with Optuna.

Knobs become Optuna distributions here (spaces know nothing of Optuna): continuous knobs are
float ranges, bit-widths and clusters categorical choices.
"""

from __future__ import annotations

import optuna
from optuna.distributions import BaseDistribution, CategoricalDistribution, FloatDistribution

from autocompress.errors import ConfigError
from autocompress.spaces import SearchSpace

STARTUP_TRIALS = 10  # random proposals before a model-based sampler takes over
NSGA2_POPULATION = 16  # small: a search here runs tens of trials, not thousands


def distributions(space: SearchSpace) -> dict[str, BaseDistribution]:
    out: dict[str, BaseDistribution] = {}
    for k in space.knobs:
        if k.continuous:
            out[k.name] = FloatDistribution(k.low, k.high)
        else:
            out[k.name] = CategoricalDistribution(list(k.choices))
    return out


def make_sampler(
    name: str,
    seed: int,
    space: SearchSpace,
    n_objectives: int,
) -> optuna.samplers.BaseSampler:
    """The sampler ``name`` with pinned settings.

    Budget violations reach TPE, NSGA-II and GP as trial constraints (``set_constraint``).
    """
    if name == "tpe":
        return optuna.samplers.TPESampler(
            n_startup_trials=STARTUP_TRIALS,
            n_ei_candidates=24,
            multivariate=True,
            constant_liar=True,  # parallel workers do not propose the same point
            seed=seed,
        )
    if name == "nsga2":
        return optuna.samplers.NSGAIISampler(
            population_size=NSGA2_POPULATION,
            crossover_prob=0.9,
            swapping_prob=0.5,
            seed=seed,
        )
    if name == "gp":
        return optuna.samplers.GPSampler(
            n_startup_trials=STARTUP_TRIALS,
            seed=seed,
            deterministic_objective=False,
        )
    if name == "cmaes":
        discrete = [k.name for k in space.knobs if not k.continuous]
        if discrete:
            raise ConfigError(
                "search.sampler",
                name,
                "CMA-ES searches continuous knobs only (prune, sparsity, rank); the space has "
                f"choices for {', '.join(discrete[:4])}: use tpe, nsga2, gp or random",
            )
        if n_objectives > 1:
            raise ConfigError(
                "search.sampler",
                name,
                "CMA-ES is single-objective; use nsga2 or tpe with objectives",
            )
        # CMA-ES has no constraint handling: over-budget candidates are projected (or scored 0)
        return optuna.samplers.CmaEsSampler(
            n_startup_trials=1, seed=seed, restart_strategy=None, warn_independent_sampling=False
        )
    if name in ("random", "rl"):  # rl: the agent's params arrive enqueued; never sampled
        return optuna.samplers.RandomSampler(seed=seed)
    raise ConfigError("search.sampler", name, "one of tpe, nsga2, gp, cmaes, random, rl")


def make_pruner(name: str, n_objectives: int) -> optuna.pruners.BasePruner:
    """Median stopping on the fine-tune's intermediate validation accuracy (single objective)."""
    if name == "none" or n_objectives > 1:  # Optuna reports intermediate values for one objective
        return optuna.pruners.NopPruner()
    return optuna.pruners.MedianPruner(n_startup_trials=5, n_warmup_steps=0, interval_steps=1)
