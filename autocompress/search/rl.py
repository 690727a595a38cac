"""An AMC/HAQ-style DDPG agent that decides the search space's knobs layer by layer.

One episode is one policy: the agent walks the layers that own knobs, in model order, and at
each one emits a value in [0, 1] per knob type of the space (prune, sparsity, w_bits, a_bits,
rank, clusters). A value is a knob *position* (0: least compression, 1: most; see
:mod:`autocompress.spaces.space`). Before it is used, each step's action is clipped so the
layers still to come can meet the analytic budget at full compression (AMC), so every
episode's policy is within budget whenever the space can meet it at all.

As in AMC, every transition of an episode receives the episode's reward minus a moving-average
baseline; the critic regresses that directly (the per-step return of a terminal-only reward,
scaled by the rewards' spread), the actor follows the critic's gradient. Exploration: warm-up
episodes with uniform random actions, then the actor's action plus truncated-normal noise whose
scale decays per episode.
The agent's networks, optimisers, replay buffer, noise scale and episode count are saved
after each episode (:meth:`DDPGAgent.save`), so a re-run of the search resumes the agent.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from autocompress.cost.metrics import compute_costs
from autocompress.policy import Policy
from autocompress.spaces import Budget, Knob, SearchSpace
from autocompress.spaces.budget import ANALYTIC, feasible, smallest
from autocompress.spaces.space import SPACE_KNOBS

STATE_FEATURES = 11  # per-layer features before the previous action


@dataclass(frozen=True)
class AgentConfig:
    """DDPG settings (AMC's values, scaled to searches of tens of episodes)."""

    warmup: int = 10  # episodes with uniform random actions
    hidden: int = 128
    actor_lr: float = 1e-3
    critic_lr: float = 1e-3
    batch_size: int = 64
    # gradient steps after each episode: a search runs tens of episodes, not AMC's hundreds,
    # so the networks train many steps on the small buffer rather than one per transition
    updates_per_episode: int = 64
    noise: float = 0.5  # initial truncated-normal scale
    noise_decay: float = 0.95  # per episode after the warm-up
    baseline_alpha: float = 0.5  # moving-average reward baseline
    buffer_size: int = 20000


def _mlp(inputs: int, hidden: int, outputs: int, last: nn.Module) -> nn.Sequential:
    return nn.Sequential(
        nn.Linear(inputs, hidden),
        nn.ReLU(),
        nn.Linear(hidden, hidden),
        nn.ReLU(),
        nn.Linear(hidden, outputs),
        last,
    )


class DDPGAgent:
    """Actor μ(s) ∈ [0, 1]^A and critic Q(s, a), trained from a replay buffer."""

    def __init__(self, state_dim: int, action_dim: int, cfg: AgentConfig, seed: int) -> None:
        self.cfg, self.state_dim, self.action_dim = cfg, state_dim, action_dim
        torch.manual_seed(seed)
        self.actor = _mlp(state_dim, cfg.hidden, action_dim, nn.Sigmoid())
        self.critic = _mlp(state_dim + action_dim, cfg.hidden, 1, nn.Identity())
        self.actor_opt = torch.optim.Adam(self.actor.parameters(), lr=cfg.actor_lr)
        self.critic_opt = torch.optim.Adam(self.critic.parameters(), lr=cfg.critic_lr)
        self.states = torch.zeros(0, state_dim)
        self.actions = torch.zeros(0, action_dim)
        self.rewards = torch.zeros(0)
        self.episodes = 0
        self.noise = cfg.noise
        self.baseline: float | None = None
        self.rng = np.random.default_rng(seed)

    def act(self, state: np.ndarray) -> np.ndarray:
        """The exploring action for one state (random during the warm-up)."""
        if self.episodes < self.cfg.warmup:
            return self.rng.uniform(0.0, 1.0, self.action_dim)
        with torch.no_grad():
            mean = self.actor(torch.as_tensor(state, dtype=torch.float32)[None])[0].numpy()
        return np.array([_truncated_normal(self.rng, m, self.noise) for m in mean])

    def greedy(self, state: np.ndarray) -> np.ndarray:
        with torch.no_grad():
            return self.actor(torch.as_tensor(state, dtype=torch.float32)[None])[0].numpy()

    def observe(self, states: np.ndarray, actions: np.ndarray, reward: float) -> None:
        """Store one episode (every step gets its reward) and train on the buffer."""
        alpha = self.cfg.baseline_alpha
        self.baseline = (
            reward if self.baseline is None else (self.baseline + alpha * (reward - self.baseline))
        )
        n = len(states)
        keep = self.cfg.buffer_size - n
        self.states = torch.cat([self.states[-keep:], torch.as_tensor(states, dtype=torch.float32)])
        self.actions = torch.cat(
            [self.actions[-keep:], torch.as_tensor(actions, dtype=torch.float32)]
        )
        self.rewards = torch.cat([self.rewards[-keep:], torch.full((n,), float(reward))])
        self.episodes += 1
        if self.episodes > self.cfg.warmup:
            self.noise *= self.cfg.noise_decay
        if self.episodes >= self.cfg.warmup:
            for _ in range(self.cfg.updates_per_episode):
                self._update()

    def _update(self) -> None:
        size = len(self.rewards)
        idx = torch.as_tensor(self.rng.integers(0, size, min(self.cfg.batch_size, size)))
        s, a = self.states[idx], self.actions[idx]
        # rewards relative to the moving baseline, in units of their spread: the critic's
        # targets are O(1) whether rewards are accuracies a point apart or AMC's log-costs
        spread = float(self.rewards.std()) if size > 1 else 1.0
        target = ((self.rewards[idx] - (self.baseline or 0.0)) / (spread + 1e-8))[:, None]
        q = self.critic(torch.cat([s, a], dim=1))
        critic_loss = nn.functional.mse_loss(q, target)
        self.critic_opt.zero_grad()
        critic_loss.backward()
        self.critic_opt.step()
        actor_loss = -self.critic(torch.cat([s, self.actor(s)], dim=1)).mean()
        self.actor_opt.zero_grad()
        actor_loss.backward()
        self.actor_opt.step()

    def state_dict(self) -> dict[str, Any]:
        """Tensors and plain values only: loadable with ``torch.load(weights_only=True)``."""
        return {
            "actor": self.actor.state_dict(),
            "critic": self.critic.state_dict(),
            "actor_opt": self.actor_opt.state_dict(),
            "critic_opt": self.critic_opt.state_dict(),
            "states": self.states,
            "actions": self.actions,
            "rewards": self.rewards,
            "episodes": self.episodes,
            "noise": self.noise,
            "baseline": self.baseline,
            "dims": [self.state_dim, self.action_dim],
        }

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        self.actor.load_state_dict(state["actor"])
        self.critic.load_state_dict(state["critic"])
        self.actor_opt.load_state_dict(state["actor_opt"])
        self.critic_opt.load_state_dict(state["critic_opt"])
        self.states, self.actions = state["states"], state["actions"]
        self.rewards = state["rewards"]
        self.episodes, self.noise = int(state["episodes"]), float(state["noise"])
        self.baseline = state["baseline"]
        # a resumed agent must not replay the random draws of its first run
        self.rng = np.random.default_rng(self.rng.integers(1 << 31) + self.episodes)

    def save(self, path: Path) -> None:
        tmp = path.with_suffix(".tmp")
        torch.save(self.state_dict(), tmp)
        tmp.replace(path)

    def load(self, path: Path) -> bool:
        if not path.exists():
            return False
        state = torch.load(path, weights_only=True)
        if list(state["dims"]) != [self.state_dim, self.action_dim]:
            return False  # another space: start afresh
        self.load_state_dict(state)
        return True


def _truncated_normal(rng: np.random.Generator, mean: float, scale: float) -> float:
    """A draw from N(mean, scale) truncated to [0, 1] (rejection; clipped as a last resort)."""
    for _ in range(100):
        x = rng.normal(mean, scale)
        if 0.0 <= x <= 1.0:
            return float(x)
    return float(min(max(mean, 0.0), 1.0))


# ---------------------------------------------------------------------------------------------
# The environment: layers, states, budget-aware clipping


@dataclass(frozen=True)
class Step:
    layer: str
    knobs: dict[str, Knob]  # knob type -> the knob this layer owns


class LayerWalk:
    """The episode's steps over a search space, their states, and AMC's action clipping."""

    def __init__(self, space: SearchSpace, budget: Budget) -> None:
        self.space, self.budget = space, budget
        self.kinds = [k for k in SPACE_KNOBS if any(kn.knob == k for kn in space.knobs)]
        order = list(space.profile.layers)
        owned: dict[str, dict[str, Knob]] = {}
        for knob in space.knobs:
            owner = min(knob.layers, key=order.index)
            owned.setdefault(owner, {})[knob.knob] = knob
        self.steps = [Step(name, owned[name]) for name in order if name in owned]
        base = compute_costs(space.profile, Policy(space.model), space.round_to)
        self.metric = next((m for m in budget.limits if m in ANALYTIC), "macs")
        self.base_total = float(getattr(base, self.metric))
        self.base_layers = base.layers
        profile = space.profile
        self._scale = {
            "in": max(p.in_features for p in profile.layers.values()),
            "out": max(p.out_features for p in profile.layers.values()),
            "kernel": max(p.kernel for p in profile.layers.values()),
            "positions": max(p.positions for p in profile.layers.values()),
            "stride": max(p.stride for p in profile.layers.values()),
            "macs": max(c.macs for c in base.layers.values()) or 1,
            "params": max(c.params for c in base.layers.values()) or 1,
        }

    @property
    def state_dim(self) -> int:
        return STATE_FEATURES + len(self.kinds)

    def _cost(self, positions: Mapping[str, float]) -> float:
        policy = self.space.policy(self.space.at(positions))
        return float(self.budget.price(self.space, policy)[self.metric])

    def _feasible(self, positions: Mapping[str, float]) -> bool:
        return feasible(self.space, self.budget, self.space.at(positions))

    def state(self, i: int, chosen: Mapping[str, float], previous: np.ndarray) -> np.ndarray:
        step = self.steps[i]
        layer = self.space.profile.layers[step.layer]
        base = self.base_layers[step.layer]
        s = self._scale
        removed = 1.0 - self._cost(chosen) / self.base_total if self.base_total else 0.0
        later = sum(getattr(self.base_layers[st.layer], self.metric) for st in self.steps[i + 1 :])
        features = [
            i / max(len(self.steps) - 1, 1),
            1.0 if layer.kind == "conv" else 0.0,
            layer.in_features / s["in"],
            layer.out_features / s["out"],
            layer.kernel / s["kernel"],
            layer.stride / s["stride"],
            layer.positions / s["positions"],
            base.macs / s["macs"],
            base.params / s["params"],
            min(max(removed, 0.0), 1.0),
            later / self.base_total if self.base_total else 0.0,
        ]
        return np.array([*features, *previous], dtype=np.float32)

    def clip(self, i: int, chosen: Mapping[str, float], action: np.ndarray) -> np.ndarray:
        """Raise step ``i``'s action just enough that, with every later knob at full
        compression, the budget can still be met (AMC). Without an analytic budget, as is."""
        if not self.budget.analytic:
            return action
        later = {k.name: 1.0 for st in self.steps[i + 1 :] for k in st.knobs.values()}

        def with_action(a: np.ndarray) -> dict[str, float]:
            mine = {
                knob.name: float(a[self.kinds.index(kind)])
                for kind, knob in self.steps[i].knobs.items()
            }
            return {**chosen, **mine, **later}

        s = smallest(lambda s: self._feasible(with_action(action + s * (1 - action))))
        if s is None:
            return np.ones_like(action)  # the space cannot meet the budget: compress fully
        return action + s * (1 - action)

    def episode(
        self, choose: Callable[[np.ndarray], np.ndarray]
    ) -> tuple[dict[str, Any], np.ndarray, np.ndarray]:
        """Walk the layers with ``choose(state) -> action``; returns (params, states, actions)
        where actions are the clipped ones that built the params."""
        chosen: dict[str, float] = {}
        previous = np.zeros(len(self.kinds), dtype=np.float32)
        states, actions = [], []
        for i, step in enumerate(self.steps):
            state = self.state(i, chosen, previous)
            action = self.clip(i, chosen, np.clip(choose(state), 0.0, 1.0))
            for kind, knob in step.knobs.items():
                chosen[knob.name] = float(action[self.kinds.index(kind)])
            states.append(state)
            actions.append(action.astype(np.float32))
            previous = action.astype(np.float32)
        return self.space.at(chosen), np.stack(states), np.stack(actions)


# ---------------------------------------------------------------------------------------------
# The controller the search loop drives


def reward_of(kind: str, accuracy: float, macs: float) -> float:
    """``accuracy`` (the trial objective), or AMC's −error·log(MACs)."""
    if kind == "amc":
        return -(1.0 - accuracy) * math.log(max(macs, 1.0))
    return accuracy


class RLController:
    """Proposes one policy per episode and learns from each finished trial's result."""

    def __init__(
        self,
        space: SearchSpace,
        budget: Budget,
        path: Path,
        seed: int,
        reward: str = "accuracy",
        cfg: AgentConfig | None = None,
    ) -> None:
        self.walk = LayerWalk(space, budget)
        self.agent = DDPGAgent(
            self.walk.state_dim, len(self.walk.kinds), cfg or AgentConfig(), seed
        )
        self.path, self.reward = path, reward
        self.resumed = self.agent.load(path)
        self.pending: dict[int, tuple[np.ndarray, np.ndarray]] = {}

    @property
    def episodes(self) -> int:
        return self.agent.episodes

    def propose(self) -> tuple[int, dict[str, Any]]:
        """(episode id, params) for the next trial."""
        params, states, actions = self.walk.episode(self.agent.act)
        episode = self.agent.episodes + len(self.pending)
        self.pending[episode] = (states, actions)
        return episode, params

    def observe(self, episode: int, accuracy: float | None, macs: float) -> None:
        """Learn from a finished episode (a failed trial scores accuracy 0) and save."""
        if episode not in self.pending:
            return  # proposed by an earlier process: its transitions were not kept
        states, actions = self.pending.pop(episode)
        self.agent.observe(states, actions, reward_of(self.reward, accuracy or 0.0, macs))
        self.agent.save(self.path)


def toy_episodes(
    walk_len: int, reward: Callable[[Sequence[float]], float], episodes: int, seed: int
) -> list[float]:
    """Rewards of an agent on a toy problem whose reward is a known function of the actions
    (one action per step, a state that only holds the step index and previous action)."""
    agent = DDPGAgent(2, 1, AgentConfig(warmup=10), seed)
    out = []
    for _ in range(episodes):
        states, actions, previous = [], [], 0.0
        for i in range(walk_len):
            s = np.array([i / max(walk_len - 1, 1), previous], dtype=np.float32)
            a = agent.act(s)
            states.append(s)
            actions.append(a.astype(np.float32))
            previous = float(a[0])
        r = reward([float(a[0]) for a in actions])
        agent.observe(np.stack(states), np.stack(actions), r)
        out.append(r)
    return out
