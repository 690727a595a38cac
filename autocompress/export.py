"""Build a compressed model from a policy, fine-tune it, measure it and write it out.

The one recipe of a candidate (DESIGN.md's ``build_candidate``): the search's trials call
:func:`build` and :func:`tune`; ``apply``, the search's export and the API's ``export`` call
:func:`build_candidate`, which adds the test figures, and :func:`write_candidate`. What
fine-tunes and scores is a :class:`autocompress.recipe.Recipe`. The output directory holds
``model.pt`` (checkpoint, rebuilt by :func:`autocompress.load`), ``weights.bin`` (the weights
packed to their bits: its size is the cost model's ``size_bytes``), ``policy.yaml``,
``report.json`` and, for the search's export, ``model.onnx``.

The folder is checked before any fine-tune (a file, a foreign non-empty folder, no write
permission: refused at once) and written as one set (:func:`autocompress.files.staged_output`):
a crash, a kill or a full disk leaves the previous output exactly as it was.
"""

from __future__ import annotations

import io
import json
import logging
import math
import time
import warnings
from collections.abc import Callable
from contextlib import redirect_stdout
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
import onnx
import torch
from torch import nn
from torch.utils._pytree import tree_map

from autocompress.checkpoint import save_checkpoint, state_dict_sha256
from autocompress.compress import KNOB_METHODS, apply_late_methods, apply_policy
from autocompress.compress.layers import folded
from autocompress.compress.pack import encode_model, huffman_size, nonzero_params, pack_model
from autocompress.compress.quantize import ActQuant, calibrate
from autocompress.config import CompressConfig
from autocompress.cost.latency import measure_latency
from autocompress.cost.metrics import compute_costs
from autocompress.cost.profile import Profile
from autocompress.cost.runtime_table import LatencyTable
from autocompress.deploy import has_integer_layers, integer_onnx, quant_specs
from autocompress.errors import AutocompressError
from autocompress.files import check_output_dir, staged_output, write_atomic
from autocompress.inputs import Inputs
from autocompress.models.normalize import Normalized
from autocompress.policy import LayerChoice, Policy
from autocompress.recipe import Length, Recipe, Tuned
from autocompress.train.finetune import Callback, log_progress

LATENCY_BATCHES = (1, 64)
ONNX_OPSET = 18


def latency(model: nn.Module, example: tuple[int, ...] | Inputs, threads: int) -> dict[str, float]:
    """Median CPU milliseconds at each of :data:`LATENCY_BATCHES`, float execution."""
    plain = folded(model, float_inputs=True)
    return {
        f"batch_{b}": round(measure_latency(plain, example, batch=b, threads=threads), 4)
        for b in LATENCY_BATCHES
    }


def _stages(policy: Policy) -> tuple[Policy, Policy] | None:
    """(structure and sparsity, sharing and bits) when a policy has knobs of both kinds."""
    late = {"clusters", "w_bits", "a_bits"}
    first = {n: replace(c, clusters=None, w_bits=32, a_bits=32) for n, c in policy.layers.items()}
    second = {
        n: LayerChoice(w_bits=c.w_bits, a_bits=c.a_bits, clusters=c.clusters)
        for n, c in policy.layers.items()
    }
    has_late = any(late & set(c.changed()) for c in policy.layers.values())
    has_early = any(set(c.changed()) - late for c in policy.layers.values())
    if not (has_late and has_early):
        return None
    return Policy(policy.model, first), Policy(policy.model, second)


def _knobs(policy: Policy) -> list[str]:
    return sorted({k for c in policy.layers.values() for k in c.changed()})


def build(
    base: nn.Module,
    profile: Profile,
    policy: Policy,
    recipe: Recipe,
    settings: CompressConfig | None = None,
) -> nn.Module:
    """The compressed model of ``policy``, its activation ranges calibrated; not fine-tuned.

    Its packed size is checked against the cost model here, before any fine-tune: a
    disagreement is an internal error reported at once, not after minutes of work.
    """
    settings = settings or CompressConfig()
    model = apply_policy(base, policy, profile, settings)
    calibrate(model, recipe.calibration())
    check_packed_size(model, profile, policy, settings)
    return model


def check_packed_size(
    model: nn.Module, profile: Profile, policy: Policy, settings: CompressConfig
) -> bytes:
    """The packed weights (``weights.bin``); an error if their size is not the cost model's."""
    names = list(profile.layers)
    packed = b"".join(pack_model(model, policy, names).values())
    expected = compute_costs(profile, policy, settings.round_to).size_bytes
    if len(packed) != expected:
        raise AutocompressError(
            f"internal error: the cost model prices this policy at {expected:,} bytes but the "
            f"packed model has {len(packed):,}; please report it with the policy "
            f"{policy.to_dict()}"
        )
    return packed


def tune(
    model: nn.Module,
    base: nn.Module,
    profile: Profile,
    policy: Policy,
    recipe: Recipe,
    length: Length,
    seed: int,
    settings: CompressConfig | None = None,
    report: Callback | None = None,
    log: Callable[[str], None] | None = None,
) -> tuple[nn.Module, Tuned, int]:
    """Fine-tune a model made by :func:`build`: (the tuned model, its outcome, stages run).

    A policy that mixes structure or sparsity with sharing or bits runs Deep Compression's
    two stages — prune and retrain, then share/quantize and retrain, each half the length —
    in the search's trials and in exports alike.
    """
    settings = settings or CompressConfig()
    say = log or (lambda _: None)
    stages = _stages(policy)
    if stages is None or recipe.steps(length) < 2:
        say(f"fine-tuning {length.describe()} with distillation")
        return model, recipe.finetune(model, base, length, seed, report), 1
    first, second = stages
    half = length.half()
    model = apply_policy(base, first, profile, settings)
    say(f"stage 1 ({', '.join(_knobs(first))}): fine-tuning {half.describe()}")
    recipe.finetune(model, base, half, seed, log_progress(say))
    model = apply_late_methods(model, policy, profile, settings)
    calibrate(model, recipe.calibration())
    say(f"stage 2 ({', '.join(_knobs(second))}): fine-tuning {half.describe()}")
    return model, recipe.finetune(model, base, half, seed + 1, report), 2


@dataclass
class Candidate:
    """A compressed, fine-tuned and measured model, not yet written anywhere."""

    model: nn.Module
    policy: Policy
    report: dict[str, Any]
    packed: bytes  # weights.bin


def build_candidate(
    base: nn.Module,
    profile: Profile,
    policy: Policy,
    recipe: Recipe,
    length: Length,
    seed: int = 0,
    settings: CompressConfig | None = None,
    base_accuracy: float | None = None,
    log: Callable[[str], None] = print,
) -> Candidate:
    """Build ``policy`` on the base model, fine-tune it (:func:`tune`), test and measure it."""
    start = time.perf_counter()
    settings = settings or CompressConfig()
    base_costs = compute_costs(profile, Policy(profile.model), settings.round_to)
    costs = compute_costs(profile, policy, settings.round_to)
    model = build(base, profile, policy, recipe, settings)
    before = recipe.test(model)
    if before is not None:
        log(f"test accuracy before fine-tuning: {before:.2%}")
    model, tuned, stages = tune(
        model, base, profile, policy, recipe, length, seed, settings, log_progress(log), log
    )
    accuracy = recipe.test(model)
    names = list(profile.layers)
    encoded = encode_model(model, policy, names)  # once, for the three accounts below
    packed = check_packed_size(model, profile, policy, settings)
    huffman = huffman_size(model, policy, names, encoded)
    stored_params = nonzero_params(model, policy, names, encoded)
    threads = torch.get_num_threads()
    example = profile.inputs
    report = {
        "model": profile.model,
        "base_accuracy": base_accuracy,
        "accuracy_before_finetune": before,
        "accuracy": accuracy,
        "val_accuracy": tuned.val_accuracy,
        "selection_accuracy": recipe.select(model),  # None without a selection split
        **{k: v for k, v in costs.as_dict().items()},
        **{f"base_{k}": v for k, v in base_costs.as_dict().items()},
        "nonzero_params": stored_params,
        "size_bytes_huffman": huffman,
        "compression_ratio": base_costs.size_bytes / costs.size_bytes,
        "compression_ratio_huffman": base_costs.size_bytes / huffman,
        "macs_ratio": costs.macs / base_costs.macs,
        "latency_ms": latency(model, example, threads),
        "base_latency_ms": latency(base, example, threads),
        "latency_threads": threads,
        "finetune": {"length": length.describe(), "steps": recipe.steps(length), "stages": stages},
        "seconds": round(time.perf_counter() - start, 2),
        "policy": policy.to_dict(),
        "untouched": dict(profile.untouched),
        # checked by autocompress.load: the weights in model.pt are the ones reported here
        "state_dict_sha256": state_dict_sha256(model.state_dict()),
    }
    return Candidate(model, policy, report, packed)


@dataclass(frozen=True)
class Target:
    """How a candidate is written: the model's spec (how ``load`` rebuilds the uncompressed
    model), the normalisation to put inside it, the factories ``load`` may import."""

    spec: dict[str, Any]
    mean: list[float] | None = None
    std: list[float] | None = None
    allow_factories: tuple[str, ...] = ()


def write_candidate(
    folder: Path,
    candidate: Candidate,
    target: Target,
    profile: Profile,
    settings: CompressConfig | None = None,
    onnx: bool = False,
) -> None:
    """Write a candidate's files into ``folder``: a folder staged by
    :func:`autocompress.files.staged_output`, swapped in by the caller once it is complete."""
    report = candidate.report
    write_atomic(folder / "weights.bin", candidate.packed)
    meta = {"report": report, "mean": target.mean, "std": target.std}
    save_checkpoint(
        folder / "model.pt",
        candidate.model,
        target.spec,
        candidate.policy.to_dict(),
        asdict(settings or CompressConfig()),
        profile.input_shape or None,
        meta,
        example=profile.inputs,
    )
    if onnx:
        model = _deployed(folded(candidate.model), target)
        report["pt2"] = write_pt2(model, folder / "model.pt2", profile.inputs)
        report["onnx"] = write_deployed_onnx(
            candidate.model, candidate.policy, folder / "model.onnx", profile.inputs, target
        )
        report["onnx_bytes"] = report["onnx"]["bytes"]
    candidate.policy.save(folder / "policy.yaml")
    write_report(folder, report)


def onnx_accuracy(path: Path, x: torch.Tensor, y: torch.Tensor, batch: int = 1000) -> float:
    """Top-1 accuracy of an exported ``model.onnx`` in ONNX Runtime (CPU, every graph
    optimisation: the fused integer kernels a deployment runs) on inputs ``x`` as the file takes
    them (raw: the data's normalisation is inside it) and labels ``y``."""
    from autocompress.cost.latency import onnx_session

    session = onnx_session(path, threads=torch.get_num_threads())
    name = session.get_inputs()[0].name
    right = 0
    for i in range(0, len(x), batch):
        logits = session.run(None, {name: x[i : i + batch].numpy()})[0]
        right += int((logits.argmax(1) == y[i : i + batch].numpy()).sum())
    return right / max(len(x), 1)


def write_deployed_onnx(
    model: nn.Module, policy: Policy, path: Path, example: Inputs, target: Target | None = None
) -> dict[str, Any]:
    """``model.onnx`` of a compressed model: integer (QDQ) wherever the policy sets 8 bits or
    fewer (:mod:`autocompress.deploy`), float elsewhere; the normalisation of ``target`` in
    front. Returns what was written: inputs, per-layer stored forms, the file's bytes."""
    target = target or Target({})
    if not has_integer_layers(policy):
        report = write_onnx(_deployed(folded(model), target), path, example)
        return {**report, "layers": {}, "bytes": path.stat().st_size}
    plain = _deployed(folded(model), target)
    prefix = "model." if target.mean and target.std else ""
    staged = path.with_name(f".{path.name}.float")
    try:
        report = write_onnx(plain, staged, example)
        report.update(integer_onnx(staged, path, quant_specs(model, policy, prefix)))
    finally:
        staged.unlink(missing_ok=True)
    return report


@dataclass(frozen=True)
class Deployed:
    """A model's deployed ``model.onnx``, in memory, and the inputs to time it on."""

    onnx: bytes
    feeds: dict[str, np.ndarray]


def deployed(model: nn.Module, policy: Policy, example: Inputs, batch: int = 64) -> Deployed:
    """``model``'s deployed ``model.onnx`` (integer where ``policy`` sets 8 bits or fewer) and
    ``batch`` copies of the example inputs by the file's input names."""
    import tempfile

    with tempfile.TemporaryDirectory(prefix="autocompress-latency-") as tmp:
        path = Path(tmp) / "model.onnx"
        report = write_deployed_onnx(model, policy, path, example)
        return Deployed(path.read_bytes(), batch_feeds(report, example, batch))


def deployed_latency_ratio(
    model: nn.Module,
    policy: Policy,
    reference: Deployed,
    example: Inputs,
    threads: int = 1,
    batch: int = 64,
    repeats: int = 30,
    warmup: int = 5,
) -> float:
    """``model``'s deployed ``model.onnx`` latency as a fraction of ``reference``'s (usually
    the uncompressed model's float file, :func:`deployed` once per search), their ONNX Runtime
    runs alternated on ``batch`` copies of the example inputs
    (:func:`autocompress.cost.latency.alternated_ratio`): the figure a shared machine's
    slow-downs do not move."""
    from autocompress.cost.latency import onnx_latency_ratio

    mine = deployed(model, policy, example, batch)
    return onnx_latency_ratio(
        mine.onnx, mine.feeds, reference.onnx, reference.feeds, threads, repeats, warmup
    )


def batch_feeds(report: dict[str, Any], example: Inputs, batch: int) -> dict[str, np.ndarray]:
    """ONNX Runtime's feeds: ``batch`` copies of the example inputs, by the file's input names."""
    inputs = example.repeated(batch)
    tensors = inputs.tensors()
    return {name: t.numpy() for name, t in zip(report["inputs"], tensors, strict=False)}


def deployed_latencies(
    candidates: list[tuple[nn.Module, Policy]] | list[Deployed],
    example: Inputs,
    threads: int = 1,
    batch: int = 64,
    rounds: int = 3,
) -> list[float]:
    """ONNX Runtime milliseconds of each (model, policy)'s deployed ``model.onnx`` (or of each
    file already :func:`deployed`): the median of 30 runs, measured in ``rounds`` interleaved
    rounds over all of them and the lowest round kept. A shared machine has episodes that slow
    every run down by up to 1.7× for a second or so (measured here: the same file 2.6 ms, then
    4.6 ms in a new session, then 2.6 ms); a round caught in one is discarded, one not caught
    in any is kept."""
    from autocompress.cost.latency import onnx_latency

    files = [c if isinstance(c, Deployed) else deployed(*c, example, batch) for c in candidates]
    best = [math.inf] * len(files)
    for _ in range(rounds):
        for i, file in enumerate(files):
            best[i] = min(best[i], onnx_latency(file.onnx, file.feeds, threads, 30, 5))
    return best


def latency_table(
    model: nn.Module,
    profile: Profile,
    threads: int = 1,
    batch: int = 64,
    cache: Path | None = None,
    grid: tuple[float, ...] | None = None,
    policies: list[Policy] | None = None,
    round_to: int = 1,
) -> LatencyTable:
    """Build (or complete from ``cache``) the ONNX Runtime latency table of ``model``
    (:mod:`autocompress.cost.runtime_table`): every layer's grid in both forms, then the
    calibration policies built, exported and timed end to end (activation ranges calibrated on
    random inputs: latency does not depend on the values). New entries go back to ``cache``.
    ``grid``: the fractions of each layer's full channel counts measured (default
    :data:`~autocompress.cost.runtime_table.GRID`, eighths); ``policies``: the calibration
    policies (default :func:`calibration_policies`: 14 structured and 40 random mixed ones; at
    least as many as the table's features are needed); ``round_to``: the search's
    ``compress.round_to`` (kept channels are multiples of it, and so are the grid's points).
    A table calibrated before with the default policies is read back from ``cache`` without
    measuring anything. ``benchmarks/latency_table.py`` measures its predictions against the
    runtime.
    """
    import tempfile

    from autocompress.cost.check import check_policy
    from autocompress.cost.runtime_table import (
        FORMS,
        LatencyTable,
        layer_graph,
        layer_shapes,
        runtime_key,
    )

    with tempfile.TemporaryDirectory(prefix="autocompress-table-") as tmp:
        path = Path(tmp) / "model.onnx"
        write_onnx(folded(model).eval(), path, profile.inputs)
        graph = layer_graph(onnx.load(str(path)), profile)
    shapes = layer_shapes(model, profile, graph)
    table = LatencyTable(
        runtime_key(threads, batch), threads, batch, shapes, graph, round_to=round_to
    )
    if grid is not None:
        table.grid = tuple(grid)
    if cache is not None:
        table.load_entries(cache)
        if table.coef and policies is None:
            return table  # measured and calibrated here before
    for form in FORMS:
        table.fill(form)
    table.remeasure()
    candidates = []
    for policy in calibration_policies(profile) if policies is None else policies:
        try:
            check_policy(policy, profile, KNOB_METHODS, round_to)
        except AutocompressError:
            continue  # a rank that would not shrink some layer
        built = apply_policy(model, policy, profile, CompressConfig(round_to=round_to))
        calibrate(built, [_random_like(profile.inputs) for _ in range(2)])
        candidates.append((built.eval(), policy))
    measured = deployed_latencies(candidates, profile.inputs, threads, batch)
    table.calibrate(
        [
            (table.features(profile, policy, compute_costs(profile, policy, round_to)), ms)
            for (_, policy), ms in zip(candidates, measured, strict=True)
        ]
    )
    if cache is not None:
        table.save(cache)
    return table


def calibration_policies(profile: Profile, random: int = 40) -> list[Policy]:
    """The policies a latency table is fitted on: uniform pruning 0 to 75% with float and with
    W8A8 layers, float and integer layers alternating, low rank in both forms, and ``random``
    mixed policies (:func:`random_policies`, seed 0)."""
    names = list(profile.layers)
    prunable = {
        n for n, layer in profile.layers.items() if profile.groups[layer.out_group].prunable
    }

    def policy(prune: float, integer: Callable[[int], bool], rank: float = 1.0) -> Policy:
        layers = {}
        for i, name in enumerate(names):
            bits = 8 if integer(i) else 32
            layers[name] = LayerChoice(
                prune=prune if name in prunable else 0.0,
                w_bits=bits,
                a_bits=bits,
                rank=rank if i % 2 else 1.0,
            )
        return Policy(profile.model, layers)

    out = []
    for prune in (0.0, 0.25, 0.5, 0.75):
        out += [policy(prune, lambda i: False), policy(prune, lambda i: True)]
    for prune in (0.0, 0.5):
        out += [policy(prune, lambda i: i % 2 == 0), policy(prune, lambda i: i % 2 == 1)]
    out += [policy(0.0, lambda i: False, 0.25), policy(0.0, lambda i: True, 0.25)]
    return out + random_policies(profile, random, seed=0)


def random_policies(profile: Profile, count: int, seed: int) -> list[Policy]:
    """``count`` random mixed policies: per layer, pruning in [0, 0.8] with probability 1/2
    (one ratio per coupled channel group), low rank in [0.15, 0.45] with probability 1/4, W8A8
    or float with probability 1/2 each."""
    import random

    rng = random.Random(seed)
    out = []
    for _ in range(count):
        layers = {}
        pruned: set[int] = set()
        for name, layer in profile.layers.items():
            group = layer.out_group
            prunable = profile.groups[group].prunable and group not in pruned
            pruned.add(group)
            bits = rng.choice([8, 32])
            layers[name] = LayerChoice(
                prune=rng.uniform(0, 0.8) if prunable and rng.random() < 0.5 else 0.0,
                rank=rng.uniform(0.15, 0.45) if rng.random() < 0.25 else 1.0,
                w_bits=bits,
                a_bits=bits,
            )
        out.append(Policy(profile.model, layers))
    return out


def _random_like(example: Inputs) -> Inputs:
    """Example inputs with the float tensors replaced by random ones (a batch of 8)."""
    batch = example.repeated(8)
    return Inputs(
        tuple(torch.randn_like(a) if _floating(a) else a for a in batch.args),
        {k: torch.randn_like(v) if _floating(v) else v for k, v in batch.kwargs.items()},
    )


def _floating(x: Any) -> bool:
    return isinstance(x, torch.Tensor) and x.is_floating_point()


def _deployed(model: nn.Module, target: Target) -> nn.Module:
    """``model`` as deployed: the data's normalisation in front of it, in eval mode."""
    if target.mean and target.std:
        model = Normalized(model, target.mean, target.std)
    return model.eval()


def write_report(folder: Path, report: dict[str, Any]) -> None:
    write_atomic(folder / "report.json", json.dumps(report, indent=2) + "\n")


def compress_and_export(
    base: nn.Module,
    profile: Profile,
    policy: Policy,
    recipe: Recipe,
    length: Length,
    out: Path,
    target: Target,
    seed: int = 0,
    settings: CompressConfig | None = None,
    base_accuracy: float | None = None,
    onnx: bool = False,
    log: Callable[[str], None] = print,
    force: bool = False,
) -> dict[str, Any]:
    """Build, fine-tune and test ``policy`` (:func:`build_candidate`), then write ``out``.

    ``out`` is refused before the fine-tune if it is a file, not writable, or a non-empty
    folder that is not an earlier output of this tool (unless ``force``); it is replaced as a
    whole at the end, or left as it was.
    """
    check_output_dir(out, force)
    candidate = build_candidate(
        base, profile, policy, recipe, length, seed, settings, base_accuracy, log
    )
    with staged_output(out, force) as folder:
        write_candidate(folder, candidate, target, profile, settings, onnx)
    return candidate.report


def write_onnx(model: nn.Module, path: Path, example: Inputs) -> dict[str, Any]:
    """Write ``model`` (transforms folded, activation quantizers kept) to ONNX.

    A single image input is named ``images`` and any batch size is accepted; other inputs are
    ``input_0``, ``input_1``, ... (and their keyword names). The batch dimension is dynamic
    where the model allows it, else the example's shapes are fixed. Returns what was written.
    """
    inputs = example.repeated(2)  # a batch of 1 would be specialised by the exporter
    quantizers = [m for m in model.modules() if isinstance(m, ActQuant) and m.bits <= 8]
    names = ["images"] if example.sample_shape else [f"input_{i}" for i in range(len(inputs.args))]
    # The exporter narrates every step on stdout and warns about torchvision: keep it quiet.
    logger = logging.getLogger("torch.onnx")
    level = logger.level
    logger.setLevel(logging.ERROR)
    for quantizer in quantizers:
        quantizer.freeze()
    try:
        for dynamic in (True, False):
            args = inputs if dynamic else example
            shapes = _batch_dims(args) if dynamic else None
            try:
                with warnings.catch_warnings(), redirect_stdout(io.StringIO()):
                    warnings.simplefilter("ignore")
                    torch.onnx.export(
                        model,
                        args.args,
                        str(path),
                        kwargs=dict(args.kwargs) or None,
                        input_names=names + list(args.kwargs),
                        output_names=["logits"],
                        dynamic_shapes=shapes,
                        opset_version=ONNX_OPSET,
                        dynamo=True,
                        external_data=False,
                        custom_translation_table={QDQ_OP: _onnx_qdq},
                    )
                _strip_debug_info(path)
                return {"inputs": names + list(args.kwargs), "dynamic_batch": dynamic}
            except Exception:
                if not dynamic:
                    raise
    finally:
        logger.setLevel(level)
        for quantizer in quantizers:
            quantizer.freeze(False)
    raise AssertionError("unreachable")


QDQ_OP = torch.ops.autocompress.quantize_dequantize.default


def _onnx_qdq(x: Any, scale: float, zero: int) -> Any:
    """:func:`~autocompress.compress.quantize.quantize_dequantize` in ONNX."""
    from onnxscript import opset18 as op

    s: Any = op.Constant(value_float=scale)
    z: Any = op.Constant(value=onnx.helper.make_tensor("zero", onnx.TensorProto.UINT8, [], [zero]))
    return op.DequantizeLinear(op.QuantizeLinear(x, s, z), s, z)


def _strip_debug_info(path: Path) -> None:
    """Drop the exporter's per-node debug records (stack traces with this machine's file
    paths): they are not part of the model, and they were a fifth of a small model's file."""
    import onnx

    proto = onnx.load(str(path))
    for node in proto.graph.node:
        del node.metadata_props[:]
        node.doc_string = ""
    write_atomic(path, proto.SerializeToString())


def write_pt2(model: nn.Module, path: Path, example: Inputs) -> dict[str, Any]:
    """``torch.export``'s program of ``model`` (``torch.export.load(path).module()`` runs it
    without any code of the model's), where the model exports; else why not, in the report."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            program = torch.export.export(model, example.args, dict(example.kwargs))
            buffer = io.BytesIO()
            torch.export.save(program, buffer)
    except Exception as exc:  # a model torch.export cannot trace: ONNX and model.pt remain
        return {"written": False, "why": f"{type(exc).__name__}: {str(exc)[:200]}"}
    write_atomic(path, buffer.getvalue())
    return {"written": True, "batch": "as the example inputs"}


def _batch_dims(inputs: Inputs) -> Any:
    batch = torch.export.Dim("batch")

    def dims(x: Any) -> Any:
        return {0: batch} if isinstance(x, torch.Tensor) and x.ndim else None

    return (
        tuple(tree_map(dims, a) for a in inputs.args)
        if not inputs.kwargs
        else {
            **{f"arg{i}": tree_map(dims, a) for i, a in enumerate(inputs.args)},
            **{k: tree_map(dims, v) for k, v in inputs.kwargs.items()},
        }
    )
