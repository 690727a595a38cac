"""Command line: ``autocompress train|cost CONFIG ...`` (also ``python -m autocompress``).

Errors in user input (config, policy, data, checkpoint) print one line and exit with status 2
before anything is written; :func:`main` returns the exit status so tests call it in-process.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
import yaml
from rich.console import Console
from rich.table import Table

from autocompress.config import Config, load_config
from autocompress.errors import AutocompressError

# Rich writes to sys.stdout as it is at print time, so pytest's capture sees it.
console = Console(highlight=False)


def main(argv: Sequence[str] | None = None) -> int:
    parser = _parser()
    args = parser.parse_args(argv)
    try:
        cfg = load_config(args.config, args.set)
        if cfg.train.threads:
            torch.set_num_threads(cfg.train.threads)
        result: int = args.func(cfg, args)
        return result
    except AutocompressError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except FloatingPointError as exc:  # training diverged: not a bug, not bad input either
        print(f"error: {exc}", file=sys.stderr)
        return 1


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="autocompress", description="Automated model compression search for PyTorch."
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    def command(name: str, help: str) -> argparse.ArgumentParser:
        p = sub.add_parser(name, help=help, description=help)
        p.add_argument("config", help="experiment YAML file")
        p.add_argument(
            "--set",
            action="append",
            default=[],
            metavar="KEY=VALUE",
            help="override a config key, e.g. --set train.epochs=3 (repeatable)",
        )
        return p

    p = command("train", "train the base model (cached in the run directory) and test it")
    p.add_argument("--force", action="store_true", help="retrain even if a cached model exists")
    p.set_defaults(func=cmd_train)

    p = command("apply", "compress the base model with a policy, fine-tune it, test and export it")
    p.add_argument("--policy", type=Path, required=True, help="policy YAML file")
    p.add_argument("--finetune-epochs", type=float, help="override finetune.epochs")
    p.add_argument("--out", type=Path, required=True, help="output directory")
    p.set_defaults(func=cmd_apply)

    p = command("distill", "train a compact student with the base model as teacher, and alone")
    p.add_argument(
        "--student", required=True, metavar="SPEC", help="zoo model and args, e.g. lenet5:width=0.5"
    )
    p.add_argument("--epochs", type=float, help="student training epochs (default: train.epochs)")
    p.add_argument("--out", type=Path, required=True, help="output directory")
    p.set_defaults(func=cmd_distill)

    p = command("cost", "price the base model, or a policy, with the analytic cost model")
    p.add_argument("--policy", type=Path, help="policy YAML file (default: the base model)")
    p.add_argument("--json", action="store_true", help="print JSON instead of tables")
    p.set_defaults(func=cmd_cost)
    return parser


# ---------------------------------------------------------------------------------------------
# train


def cmd_train(cfg: Config, args: argparse.Namespace) -> int:
    from autocompress.data import load_data
    from autocompress.train.base import base_path, ensure_base
    from autocompress.train.fit import EpochLog

    splits = load_data(cfg.data, seed=cfg.train.seed)
    _write_run_config(cfg)
    path = base_path(cfg)
    if path.exists() and not args.force:
        console.print(
            f"Using the cached base model {path} (pass --force to retrain).", soft_wrap=True
        )
    else:
        console.print(
            f"Training {cfg.model.name or cfg.model.factory} on "
            f"{cfg.data.name or cfg.data.factory}: {len(splits.x_train)} train / "
            f"{len(splits.x_val)} val / {len(splits.x_test)} test images, "
            f"{cfg.train.epochs} epochs, {torch.get_num_threads()} threads."
        )

    def on_epoch(log: EpochLog) -> None:
        console.print(
            f"  epoch {log.epoch:>3}/{log.epochs}  loss {log.train_loss:.4f}  "
            f"val {log.val_accuracy:.2%}  {log.seconds:.1f}s"
        )

    base = ensure_base(cfg, splits, force=args.force, on_epoch=on_epoch)
    m = base.metrics
    table = Table(title=f"base model · {cfg.name}")
    table.add_column("test accuracy", justify="right")
    table.add_column("val accuracy", justify="right")
    table.add_column("epochs", justify="right")
    table.add_column("train time", justify="right")
    table.add_column("params", justify="right")
    table.add_row(
        f"{m['test_accuracy']:.2%}",
        f"{m['val_accuracy']:.2%}",
        str(m["epochs"]),
        f"{m['train_seconds']:.0f}s",
        f"{sum(p.numel() for p in base.model.parameters()):,}",
    )
    console.print(table)
    console.print(f"checkpoint: {base.path}", soft_wrap=True)
    return 0


def _prepare(cfg: Config) -> tuple[Any, Any, Any]:
    """Data, the (cached or freshly trained) base model and its profile."""
    from autocompress.cost.profile import profile_model
    from autocompress.data import load_data
    from autocompress.train.base import ensure_base

    splits = load_data(cfg.data, seed=cfg.train.seed)
    _write_run_config(cfg)
    base = ensure_base(
        cfg,
        splits,
        on_epoch=lambda log: console.print(
            f"  base epoch {log.epoch}/{log.epochs}  val {log.val_accuracy:.2%}"
        ),
    )
    name = base.spec.get("name") or base.spec["factory"]
    return splits, base, profile_model(base.model, splits.input_shape, name)


# ---------------------------------------------------------------------------------------------
# apply and distill


def cmd_apply(cfg: Config, args: argparse.Namespace) -> int:
    from autocompress.compress import KNOB_METHODS
    from autocompress.export import compress_and_export
    from autocompress.policy import Policy, check_policy

    policy = Policy.load(args.policy)
    if args.finetune_epochs is not None and args.finetune_epochs < 0:
        from autocompress.errors import ConfigError

        raise ConfigError("--finetune-epochs", args.finetune_epochs, "a number of epochs >= 0")
    splits, base, profile = _prepare(cfg)
    check_policy(policy, profile, KNOB_METHODS, cfg.compress.round_to)
    report = compress_and_export(
        cfg, splits, base, profile, policy, args.out, args.finetune_epochs, log=console.print
    )
    _print_report(report, f"{args.policy} · {cfg.name}")
    console.print(
        f"wrote {args.out}/model.pt, weights.bin, policy.yaml, report.json", soft_wrap=True
    )
    return 0


def cmd_distill(cfg: Config, args: argparse.Namespace) -> int:
    from autocompress.distill import distill, parse_student

    student = parse_student(args.student)
    splits, base, profile = _prepare(cfg)
    report = distill(cfg, splits, base, profile, student, args.out, args.epochs, log=console.print)
    for label in ("distilled", "alone"):
        _print_report(report[label], f"student {args.student} · {label}")
    console.print(f"wrote {args.out}/model.pt and report.json", soft_wrap=True)
    return 0


def _print_report(report: dict[str, Any], title: str) -> None:
    table = Table(title=title)
    table.add_column("metric")
    table.add_column("base", justify="right")
    table.add_column("compressed", justify="right")
    table.add_column("ratio", justify="right")
    table.add_row(
        "test accuracy",
        f"{report['base_accuracy']:.2%}",
        f"{report['accuracy']:.2%}",
        f"{(report['accuracy'] - report['base_accuracy']) * 100:+.2f} pt",
    )
    if "accuracy_before_finetune" in report:
        table.add_row("  before fine-tune", "", f"{report['accuracy_before_finetune']:.2%}", "")
    for key in ("macs", "params", "bitops", "size_bytes"):
        table.add_row(
            key,
            f"{report['base_' + key]:,}",
            f"{report[key]:,}",
            f"{report[key] / report['base_' + key]:.3f}",
        )
    table.add_row(
        "size_bytes_huffman",
        "",
        f"{report['size_bytes_huffman']:,}",
        f"{report['compression_ratio_huffman']:.1f}× smaller",
    )
    table.add_row("compression", "", "", f"{report['compression_ratio']:.1f}×")
    for b, value in report["latency_ms"].items():
        base_ms = report["base_latency_ms"][b]
        table.add_row(
            f"latency ms ({b.replace('_', ' ')})",
            f"{base_ms:.3f}",
            f"{value:.3f}",
            f"{value / base_ms:.2f}",
        )
    console.print(table)


def _write_run_config(cfg: Config) -> None:
    cfg.run_dir.mkdir(parents=True, exist_ok=True)
    (cfg.run_dir / "config.yaml").write_text(yaml.safe_dump(cfg.to_dict(), sort_keys=False))


# ---------------------------------------------------------------------------------------------
# cost


def cmd_cost(cfg: Config, args: argparse.Namespace) -> int:
    from autocompress.compress import KNOB_METHODS
    from autocompress.cost.metrics import compute_costs
    from autocompress.cost.profile import profile_model
    from autocompress.data import data_shape
    from autocompress.policy import Policy, check_policy
    from autocompress.train.base import init_model, spec_for

    shape, num_classes = data_shape(cfg.data)
    spec = spec_for(cfg, shape, num_classes)
    model_name = spec.get("name") or spec["factory"]
    profile = profile_model(init_model(spec, cfg.train.seed), shape, model_name)
    base_policy = Policy(model_name)
    policy = Policy.load(args.policy) if args.policy else base_policy
    check_policy(policy, profile, KNOB_METHODS, cfg.compress.round_to)
    base = compute_costs(profile, base_policy, cfg.compress.round_to)
    costs = compute_costs(profile, policy, cfg.compress.round_to)
    report = _cost_report(cfg, profile.layers, base, costs, policy)
    if args.json:
        print(json.dumps(report, indent=2))
        return 0
    _print_cost_tables(report, with_policy=args.policy is not None)
    return 0


def _cost_report(
    cfg: Config, layers: dict[str, Any], base: Any, costs: Any, policy: Any
) -> dict[str, Any]:
    metrics = ("macs", "params", "bitops", "size_bytes")
    report: dict[str, Any] = {m: getattr(costs, m) for m in metrics}
    report["base"] = {m: getattr(base, m) for m in metrics}
    report["ratios"] = {m: getattr(costs, m) / getattr(base, m) for m in metrics}
    report["layers"] = {
        name: {
            "type": layers[name].kind,
            "in": c.in_features,
            "out": c.out_features,
            "macs": c.macs,
            "params": c.params,
            "bitops": c.bitops,
            "size_bytes": c.size_bytes,
            **policy.choice(name).changed(),
        }
        for name, c in costs.layers.items()
    }
    report["model"], report["policy"] = policy.model, policy.to_dict()
    report["budget"] = {}
    for metric, limit in cfg.budget.items():
        if metric == "latency_ms":  # measured on the built model, not priced analytically
            continue
        bound = limit.resolve(report["base"][metric])
        report["budget"][metric] = {
            "limit": bound,
            "value": report[metric],
            "ok": report[metric] <= bound,
            "as_configured": str(limit),
        }
    return report


def _print_cost_tables(report: dict[str, Any], with_policy: bool) -> None:
    table = Table(title=f"per-layer costs · {report['model']}")
    for col in ("layer", "type", "in", "out", "MACs", "params", "size (B)"):
        table.add_column(col, justify="left" if col in ("layer", "type") else "right")
    if with_policy:
        table.add_column("knobs")
    for name, c in report["layers"].items():
        knobs = ", ".join(
            f"{k}={v}"
            for k, v in c.items()
            if k not in ("type", "in", "out", "macs", "params", "bitops", "size_bytes")
        )
        row = [
            name,
            c["type"],
            str(c["in"]),
            str(c["out"]),
            f"{c['macs']:,}",
            f"{c['params']:,}",
            f"{c['size_bytes']:,}",
        ]
        table.add_row(*row, *([knobs] if with_policy else []))
    console.print(table)
    total = Table(title="totals")
    for col in ("metric", "base", "policy", "ratio"):
        total.add_column(col, justify="left" if col == "metric" else "right")
    for m in ("macs", "params", "bitops", "size_bytes"):
        total.add_row(m, f"{report['base'][m]:,}", f"{report[m]:,}", f"{report['ratios'][m]:.3f}")
    console.print(total)
    for metric, b in report["budget"].items():
        verdict = "[green]within[/]" if b["ok"] else "[red]over[/]"
        console.print(
            f"budget {metric} ≤ {b['as_configured']} ({b['limit']:,.0f}): {b['value']:,} {verdict}"
        )
