"""The RL controller's mechanics: budget-aware clipping, states, and a resumable agent."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from autocompress.config import Limit
from autocompress.cost.metrics import compute_costs
from autocompress.policy import Policy
from autocompress.search.rl import AgentConfig, DDPGAgent, LayerWalk, RLController
from autocompress.spaces import resolve_budget
from tests.spaces.test_space import EVERY_KNOB, space_for

MODELS = ["lenet5", "lenet300_100", "resnet20", "mobilenetv2_cifar", "tiny_resnet"]


@pytest.mark.parametrize("name", MODELS)
@settings(max_examples=10, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    budget=st.floats(0.05, 0.95),
    metric=st.sampled_from(["macs", "size_bytes", "params"]),
    seed=st.integers(0, 2**16),
    skip_first=st.booleans(),
)
def test_clipping_keeps_every_episode_within_budget(name, budget, metric, seed, skip_first):
    space = space_for(name, EVERY_KNOB, skip_first=skip_first)
    base = compute_costs(space.profile, Policy(space.model)).as_dict()
    limits = resolve_budget({metric: Limit(budget, True)}, base)
    walk = LayerWalk(space, limits)
    rng = np.random.default_rng(seed)
    params, states, actions = walk.episode(lambda s: rng.uniform(0, 1, len(walk.kinds)))
    costs = compute_costs(space.profile, space.policy(params)).as_dict()
    corner = compute_costs(space.profile, space.policy(space.uniform(1.0))).as_dict()
    if limits.holds(corner):  # the space can meet the budget: every episode does
        assert limits.holds(costs), (costs[metric] / base[metric], budget)
    assert states.shape == (len(walk.steps), walk.state_dim)
    assert np.all((states >= 0) & (states <= 1))
    assert np.all((actions >= 0) & (actions <= 1))


def test_agent_state_saves_and_resumes(tmp_path) -> None:
    space = space_for("lenet5", [{"prune": [0.0, 0.9]}], skip_first=False)
    base = compute_costs(space.profile, Policy(space.model)).as_dict()
    budget = resolve_budget({"macs": Limit(0.3, True)}, base)
    path = tmp_path / "agent.pt"
    agent_cfg = AgentConfig(warmup=2, updates_per_episode=4)
    first = RLController(space, budget, path, seed=0, cfg=agent_cfg)
    for _ in range(4):
        episode, _ = first.propose()
        first.observe(episode, 0.8, 1e6)
    assert path.exists() and first.episodes == 4
    again = RLController(space, budget, path, seed=0, cfg=agent_cfg)
    assert again.resumed and again.episodes == 4
    assert len(again.agent.rewards) == 4 * len(again.walk.steps)
    assert again.agent.noise == pytest.approx(first.agent.noise)
    state = np.zeros(again.walk.state_dim, dtype=np.float32)
    np.testing.assert_allclose(again.agent.greedy(state), first.agent.greedy(state))
    other = DDPGAgent(3, 1, agent_cfg, 0)
    assert not other.load(path)  # a different space starts afresh


def test_rl_search_records_episodes_as_trials_and_resumes_its_agent(write_config, tmp_path):
    import optuna

    from autocompress.cli import main

    config = write_config(
        {
            "finetune": {"steps": 4, "lr": 0.01},
            "space": {"rules": [{"prune": [0.0, 0.8]}]},
            "budget": {"macs": "60%"},
            "search": {"trials": 4, "uniform": 1, "sampler": "rl", "rl_warmup": 2},
        }
    )
    run_dir = tmp_path / "runs" / "digits-test"
    assert main(["search", str(config)]) == 0
    assert main(["search", str(config), "--trials", "6"]) == 0
    study = optuna.load_study(study_name="digits-test", storage=f"sqlite:///{run_dir / 'study.db'}")
    trials = study.get_trials()
    assert len(trials) == 6 and trials[0].user_attrs["baseline"].startswith("uniform")
    episodes = [t.user_attrs["rl_episode"] for t in trials[1:]]
    assert episodes == [0, 1, 2, 3, 4]  # the second run resumed the agent at episode 3
    base_macs = study.user_attrs["base_costs"]["macs"]
    for t in trials[1:]:  # clipped into budget by the agent itself: nothing to project
        assert t.user_attrs["costs"]["macs"] <= 0.6 * base_macs
        assert not t.user_attrs["projected"]
    assert (run_dir / "rl-agent-digits-test.pt").exists()


TARGETS = [0.4, 0.8, 0.2, 0.9, 0.1, 0.6, 0.3, 0.85]


def best_rewards(episodes: int) -> tuple[list[float], list[float]]:
    """8 layers, one action each; the reward is a known function of the actions (minus the
    squared distance to per-layer targets). Best reward found within ``episodes``, for 3 seeds:
    the agent (10 random warm-up episodes, then learning), and random search."""
    from autocompress.search.rl import toy_episodes

    def reward(actions) -> float:
        return -sum((a - t) ** 2 for a, t in zip(actions, TARGETS, strict=True))

    agent, rand = [], []
    for seed in range(3):
        agent.append(max(toy_episodes(len(TARGETS), reward, episodes, seed)))
        rng = np.random.default_rng(seed + 100)
        rand.append(max(reward(rng.uniform(0, 1, len(TARGETS))) for _ in range(episodes)))
    return agent, rand


def test_agent_beats_random_search_on_a_toy_problem_within_40_episodes() -> None:
    """The agent learns within a short search: 30 episodes after its warm-up. Measured here:
    agent -0.33 against random -0.49 (mean best reward), every seed ahead; the margin asked,
    0.05, leaves room for other CPUs' arithmetic. Deterministic: seeds fixed, one thread."""
    agent, rand = best_rewards(40)
    assert np.mean(agent) > np.mean(rand) + 0.05, (agent, rand)


@pytest.mark.slow  # 35 s idle, minutes on a busy machine
def test_agent_beats_random_search_on_a_toy_problem_within_80_episodes() -> None:
    """The budget the RL benchmark's searches use (80 episodes): agent -0.30, random -0.40."""
    agent, rand = best_rewards(80)
    assert np.mean(agent) > np.mean(rand), (agent, rand)
