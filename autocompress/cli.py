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
from rich.console import Console
from rich.table import Table

from autocompress.commands import check_epochs
from autocompress.config import Config, load_config
from autocompress.errors import AutocompressError
from autocompress.files import DiskError, check_output_dir, describe_os_error
from autocompress.runs import load_run_config
from autocompress.signals import Terminated, sigterm_as_interrupt

# Rich writes to sys.stdout as it is at print time, so pytest's capture sees it.
console = Console(highlight=False)


def main(argv: Sequence[str] | None = None) -> int:
    parser = _parser()
    args = parser.parse_args(argv)
    try:
        with sigterm_as_interrupt():
            if getattr(args, "standalone", False):  # takes a model, not a config
                result: int = args.func(None, args)
                return result
            if hasattr(args, "run_dir"):
                overrides = [*_flag_overrides(args), *args.set]
                cfg = load_run_config(args.run_dir, overrides, args.study)
            else:
                cfg = load_config(args.config, [*_flag_overrides(args), *args.set])
            if cfg.train.threads:
                torch.set_num_threads(cfg.train.threads)
            status: int = args.func(cfg, args)
            return status
    except Terminated:
        print("terminated (SIGTERM)", file=sys.stderr)
        return 143
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except DiskError as exc:  # a full disk, a read-only folder: the machine's, not a bug
        print(f"error: {exc}", file=sys.stderr)
        return 1
    except AutocompressError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except FloatingPointError as exc:  # training diverged: not a bug, not bad input either
        print(f"error: {exc}", file=sys.stderr)
        return 1
    except Exception as exc:  # a full disk, a read-only folder, a lost database: not a bug
        line = _machine_failure(exc)
        if line is None:
            raise
        print(f"error: {line}", file=sys.stderr)
        return 1


def _machine_failure(exc: Exception) -> str | None:
    """One line for a failure of the machine (file system, study storage), else None."""
    if isinstance(exc, OSError):
        return describe_os_error(exc)
    from autocompress.search.study import describe_storage_failure  # imported on errors only

    return describe_storage_failure(exc)


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
    _out_arguments(p)
    p.set_defaults(func=cmd_apply)

    p = command("distill", "train a compact student with the base model as teacher, and alone")
    p.add_argument(
        "--student", required=True, metavar="SPEC", help="zoo model and args, e.g. lenet5:width=0.5"
    )
    p.add_argument("--epochs", type=float, help="student training epochs (default: train.epochs)")
    _out_arguments(p)
    p.set_defaults(func=cmd_distill)

    p = command("cost", "price the base model, or a policy, with the analytic cost model")
    p.add_argument("--policy", type=Path, help="policy YAML file (default: the base model)")
    p.add_argument("--json", action="store_true", help="print JSON instead of tables")
    p.add_argument(
        "--latency",
        action="store_true",
        help="also predict ONNX Runtime latency with the latency table (latency_ms_predicted; "
        "built on first use, minutes, then kept under runs_root)",
    )
    p.set_defaults(func=cmd_cost)

    p = command(
        "sensitivity",
        "score each layer's knob alone at several settings without fine-tuning (zero-cost), "
        "and derive an equal-loss allocation under the budget",
    )
    p.add_argument("--points", type=int, default=4, help="settings per continuous knob")
    p.add_argument(
        "--subset", type=int, help="validation images each score is taken on (default 1000)"
    )
    p.add_argument("--json", action="store_true", help="print JSON instead of a table")
    p.set_defaults(func=cmd_sensitivity)

    p = command("search", "search per-layer policies under the budget (resumes if re-run)")
    p.add_argument("--trials", type=int, help="total trials in the study (search.trials)")
    p.add_argument("--sampler", help="tpe, nsga2, gp, cmaes, random or rl (search.sampler)")
    p.add_argument(
        "--storage",
        help="journal, journal:PATH or a database URL (default: SQLite study.db in the run)",
    )
    p.add_argument("--backend", choices=["local", "ray"], help="where trials run (search.backend)")
    p.add_argument("--workers", type=int, help="concurrent Ray trials (search.workers)")
    p.add_argument("--ray-address", help="an existing Ray cluster (default: start a local one)")
    p.add_argument("--scheduler", choices=["fifo", "asha"], help="Ray trial scheduler")
    p.add_argument("--cpus-per-trial", type=int, help="default: the cores shared by the workers")
    p.add_argument("--gpus-per-trial", type=float, help="fractions share a GPU (default 0)")
    p.set_defaults(func=cmd_search)

    def on_run(name: str, help: str) -> argparse.ArgumentParser:
        p = sub.add_parser(name, help=help, description=help)
        p.add_argument("run_dir", type=Path, help="run directory of a search, e.g. runs/NAME")
        p.add_argument("--storage", help="Optuna storage URL, if not the run's study.db")
        p.add_argument("--study", help="a study searched with search.study=NAME in this run")
        p.add_argument(
            "--set", action="append", default=[], metavar="KEY=VALUE", help=argparse.SUPPRESS
        )
        return p

    p = sub.add_parser(
        "latency",
        help="measure an exported model as it will run (ONNX Runtime or PyTorch)",
        description="measure an exported model as it will run (ONNX Runtime or PyTorch)",
    )
    p.add_argument("model", type=Path, help="an export folder, its model.onnx or its model.pt")
    p.add_argument("--runtime", choices=["onnxruntime", "torch"], default="onnxruntime")
    p.add_argument("--threads", type=int, default=1, help="intra-op threads (default 1)")
    p.add_argument("--batch", type=int, default=64, help="batch size (default 64)")
    p.add_argument("--compare", type=Path, help="a second model, measured the same way")
    p.add_argument(
        "--allow-factory", action="append", default=[], metavar="MODULE:FN",
        help="with --runtime torch: a model factory model.pt may import",
    )  # fmt: skip
    p.add_argument("--json", action="store_true", help="print JSON")
    p.set_defaults(func=cmd_latency, standalone=True)

    p = on_run("pareto", "print a search's Pareto front and write pareto.png and pareto.html")
    p.add_argument("--json", action="store_true", help="print JSON instead of a table")
    p.set_defaults(func=cmd_pareto)

    p = on_run("export", "rebuild a searched policy, fine-tune it longer, test and export it")
    pick = p.add_mutually_exclusive_group(required=True)
    pick.add_argument("--trial", type=int, help="the trial number to export")
    pick.add_argument(
        "--best",
        action="store_true",
        help="the best trial within the limits (of a multi-fidelity search: its best finalist "
        "on held-out data, search.finalist_score)",
    )
    for flag, metric in RATIO_FLAGS.items():
        p.add_argument(
            f"--max-{flag}", type=float, metavar="R", help=f"with --best: {metric} ≤ R × base"
        )
    p.add_argument(
        "--top",
        type=int,
        default=1,
        metavar="K",
        help="with --best: export the K best trials, keep the best on held-out data "
        "(search.finalist_score)",
    )
    p.add_argument("--finetune-epochs", type=float, help="default: finetune.export_epochs")
    p.add_argument(
        "--bits",
        type=int,
        metavar="B",
        help="deploy with B-bit weights and inputs (e.g. 8: integer kernels) on every layer "
        "the policy keeps wider",
    )
    _out_arguments(p)
    p.set_defaults(func=cmd_export)
    return parser


def _out_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--out", type=Path, required=True, help="output folder (written whole, or left as it was)"
    )
    p.add_argument(
        "--force",
        action="store_true",
        help="replace --out even if it is a non-empty folder that this tool did not write",
    )


RATIO_FLAGS = {"macs": "macs", "size": "size_bytes", "latency": "latency_ms", "params": "params"}


def _flag_overrides(args: argparse.Namespace) -> list[str]:
    """Command-line flags that stand for config keys, as ``--set`` items (validated alike)."""
    items = []
    for flag, key in (
        ("trials", "search.trials"),
        ("sampler", "search.sampler"),
        ("storage", "search.storage"),
        ("backend", "search.backend"),
        ("workers", "search.workers"),
        ("ray_address", "search.ray_address"),
        ("scheduler", "search.scheduler"),
        ("cpus_per_trial", "search.cpus_per_trial"),
        ("gpus_per_trial", "search.gpus_per_trial"),
    ):
        value = getattr(args, flag, None)
        if value is not None:
            items.append(f"{key}={value}")
    return items


# ---------------------------------------------------------------------------------------------
# train


def cmd_train(cfg: Config, args: argparse.Namespace) -> int:
    from autocompress.commands import TrainPlan, train

    def on_start(plan: TrainPlan) -> None:
        if plan.cached:
            console.print(
                f"Using the cached base model {plan.path} (pass --force to retrain).",
                soft_wrap=True,
            )
            return
        if plan.pretrained:
            console.print(
                f"Loading the pretrained weights {plan.pretrained} into "
                f"{cfg.model.name or cfg.model.factory} and testing them on "
                f"{cfg.data.name or cfg.data.factory}: {plan.val} val / {plan.test} test images.",
                soft_wrap=True,
            )
            return
        console.print(
            f"Training {cfg.model.name or cfg.model.factory} on "
            f"{cfg.data.name or cfg.data.factory}: {plan.train} train / {plan.val} val / "
            f"{plan.test} test images, {cfg.train.epochs} epochs, "
            f"{torch.get_num_threads()} threads."
        )

    def on_epoch(log: Any) -> None:
        console.print(
            f"  epoch {log.epoch:>3}/{log.epochs}  loss {log.train_loss:.4f}  "
            f"val {log.val_accuracy:.2%}  {log.seconds:.1f}s"
        )

    base = train(cfg, args.force, on_start, on_epoch)
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


def _base_epoch(log: Any) -> None:
    """Progress of a base model that trains before a command can start."""
    console.print(f"  base epoch {log.epoch}/{log.epochs}  val {log.val_accuracy:.2%}")


# ---------------------------------------------------------------------------------------------
# apply and distill


def cmd_apply(cfg: Config, args: argparse.Namespace) -> int:
    from autocompress.commands import apply

    report = apply(
        cfg,
        args.policy,
        args.out,
        args.finetune_epochs,
        args.force,
        log=console.print,
        on_epoch=_base_epoch,
    )
    _print_report(report, f"{args.policy} · {cfg.name}")
    console.print(
        f"wrote {args.out}/model.pt, model.onnx"
        + (", model.pt2" if report.get("pt2", {}).get("written") else "")
        + ", weights.bin, policy.yaml, report.json",
        soft_wrap=True,
    )
    return 0


def cmd_distill(cfg: Config, args: argparse.Namespace) -> int:
    from autocompress.commands import distill

    report = distill(
        cfg, args.student, args.out, args.epochs, args.force, console.print, _base_epoch
    )
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
    if "onnx_accuracy" in report:
        table.add_row("  model.onnx, ONNX Runtime", "", f"{report['onnx_accuracy']:.2%}", "")
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
    if "onnx_bytes" in report:
        table.add_row("model.onnx bytes", "", f"{report['onnx_bytes']:,}", "")
    for b, value in report["latency_ms"].items():
        base_ms = report["base_latency_ms"][b]
        table.add_row(
            f"latency ms ({b.replace('_', ' ')})",
            f"{base_ms:.3f}",
            f"{value:.3f}",
            f"{value / base_ms:.2f}",
        )
    console.print(table)


# ---------------------------------------------------------------------------------------------
# cost


def cmd_sensitivity(cfg: Config, args: argparse.Namespace) -> int:
    from autocompress.commands import sensitivity

    def short(value: Any) -> str:
        return f"{value:.2f}" if isinstance(value, float) else str(value)

    def on_point(p: Any) -> None:
        if not args.json:
            console.print(
                f"  {p.knob:<28} {short(p.value):>8}  {p.score:7.2%}  MACs {p.macs_ratio:6.1%}"
            )

    if not args.json:
        console.print(f"Scoring each knob of {cfg.name} alone (zero-cost: no fine-tuning).")
    result = sensitivity(cfg, args.points, args.subset, on_point)
    found = result.sensitivity
    if args.json:
        payload = found.to_dict()
        payload["allocation"] = result.allocation.to_dict() if result.allocation else None
        payload["allocation_macs_ratio"] = result.macs_ratio
        print(json.dumps(payload, indent=2, default=str))
        return 0
    table = Table(
        title=f"sensitivity · {found.model} · base {found.base_score:.2%} · "
        "each setting: value, change in points"
    )
    table.add_column("knob", no_wrap=True)
    values = sorted({i for points in found.curves().values() for i in range(len(points))})
    for i in values:
        table.add_column(f"setting {i + 1}", justify="right")
    for knob, points in found.curves().items():
        cells = [f"{short(p.value)}: {100 * (p.score - found.base_score):+.1f}" for p in points]
        table.add_row(knob, *cells, *[""] * (len(values) - len(cells)))
    console.print(table)
    for label, path in result.files.items():
        console.print(f"{label}: {path}", soft_wrap=True)
    if result.allocation is not None:
        console.print(
            f"equal-loss allocation at {result.macs_ratio:.1%} of the MACs: "
            f"{result.files['policy']} (try it: autocompress apply CONFIG --policy ...)",
            soft_wrap=True,
        )
    return 0


def cmd_cost(cfg: Config, args: argparse.Namespace) -> int:
    from autocompress.commands import cost

    log = (lambda _: None) if args.json else console.print
    report = cost(cfg, args.policy, args.latency, log)
    if args.json:
        print(json.dumps(report, indent=2))
        return 0
    _print_cost_tables(report, with_policy=args.policy is not None)
    return 0


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
    if "latency_ms_predicted" in report:
        m = "latency_ms_predicted"
        total.add_row(
            f"{m} (ONNX Runtime)",
            f"{report['base'][m]:.3f}",
            f"{report[m]:.3f}",
            f"{report['ratios'][m]:.3f}",
        )
    console.print(total)
    for name, why in report["not_prunable"].items():
        console.print(f"[dim]not prunable[/] {name}: {why}", soft_wrap=True)
    for name, why in report["untouched"].items():
        console.print(f"[dim]untouched[/] {name}: {why}", soft_wrap=True)
    if report["other_macs"]:
        console.print(
            f"MACs outside the compressible layers (attention products, recurrent layers, "
            f"...): {report['other_macs']:,}, counted in the totals and never changed"
        )
    for metric, b in report["budget"].items():
        verdict = "[green]within[/]" if b["ok"] else "[red]over[/]"
        console.print(
            f"budget {metric} ≤ {b['as_configured']} ({b['limit']:,.0f}): {b['value']:,} {verdict}"
        )


# ---------------------------------------------------------------------------------------------
# search, pareto, export


def objectives_line(cfg: Config) -> str:
    """What the study optimises, in one line."""
    if not cfg.objectives:
        return "objective: validation accuracy within the budget (search.objectives=[])"
    costs = ", ".join(f"{m} ↓" for m in cfg.objectives)
    return f"objectives: validation accuracy ↑, {costs} (a Pareto front below the budget)"


def cmd_search(cfg: Config, args: argparse.Namespace) -> int:
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        TextColumn,
        TimeRemainingColumn,
    )

    from autocompress.commands import front, start_search, write_pareto
    from autocompress.search.study import records, shown_storage, trials_done

    run = start_search(cfg, on_epoch=_base_epoch, log=console.print)
    cfg = run.cfg  # its objectives made explicit (the existing study's, or the default)
    ctx, study, controller = run.ctx, run.study, run.controller
    space, n = ctx.space, cfg.search.trials
    console.print(
        f"search {cfg.name}: {len(space.knobs)} knobs over {len(run.layers)} layers "
        f"({', '.join(sorted({k.knob for k in space.knobs}))}); sampler {cfg.search.sampler}; "
        f"base val accuracy {run.prepared.base.metrics['val_accuracy']:.2%}",
        soft_wrap=True,
    )
    for metric, limit in ctx.budget.limits.items():
        console.print(f"budget {metric} ≤ {ctx.budget.described[metric]} = {limit:,.4g}")
    console.print(objectives_line(cfg), soft_wrap=True)
    if ctx.needs_latency:
        setup = study.user_attrs.get("latency", {})
        console.print(
            f"latency: {setup.get('statistic')}, batch {setup.get('batch')}, "
            f"{setup.get('threads')} thread(s), {setup.get('execution')}",
            soft_wrap=True,
        )
    console.print(f"study: {shown_storage(cfg)}", soft_wrap=True)
    if run.ray is not None:
        ray = run.ray
        console.print(
            f"Ray ({ray.address}, started in {ray.startup_s:.1f}s): "
            f"{ray.workers} concurrent trials × {ray.cpus_per_trial} CPU"
            + (f" + {ray.gpus_per_trial:g} GPU" if ray.gpus_per_trial else "")
            + f", scheduler {ray.scheduler}",
            soft_wrap=True,
        )
    if run.done:
        console.print(f"resuming: {run.done} of {n} trials already in the study")
    if controller is not None:
        console.print(
            f"RL agent: {len(controller.walk.steps)} layers × {len(controller.walk.kinds)} "
            f"actions, reward {cfg.search.rl_reward}"
            + (f"; resumed after {controller.episodes} episodes" if controller.resumed else "")
        )
    if run.recovered:
        console.print(
            f"trials {run.recovered} were left running by a stopped process: failed and "
            "queued again"
        )
    for note in run.notes:
        console.print(f"[yellow]note[/]: {note}", soft_wrap=True)
    state: dict[str, Any] = {"best": None}

    def summary() -> str:
        best = state["best"]
        return f"best feasible {best:.2%}" if best is not None else "best feasible –"

    from autocompress.search.pareto import SCORE_WORDS
    from autocompress.search.schedule import rung_counts, uses_schedule

    multi = uses_schedule(cfg)
    if multi:
        s = cfg.search
        console.print(
            f"multi-fidelity: {s.screen * n} candidates screened without fine-tuning, the best "
            f"{n} fine-tuned as trials, the best {s.finalists} of those"
            + (" and the baselines" if s.finalist_baselines else "")
            + f" fine-tuned {_finalists_length(cfg)} and compared on "
            + SCORE_WORDS[s.finalist_score],
            soft_wrap=True,
        )

    def rungs() -> str:
        if not multi:
            return ""
        counts = rung_counts(study)
        return (
            f"screened {counts['zero-cost']}/{cfg.search.screen * n} · "
            f"finalists {counts['long']} · "
        )

    with Progress(
        TextColumn("trials"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("{task.fields[rungs]}{task.fields[best]} · front {task.fields[front]}"),
        TextColumn("ETA"),
        TimeRemainingColumn(),
        console=console,
        transient=False,
    ) as progress:
        task = progress.add_task(
            "search", total=n, completed=min(run.done, n), best=summary(), front=0, rungs=rungs()
        )

        def on_trial(trial: Any) -> None:
            if trial.user_attrs.get("fidelity") == "zero-cost":  # a fraction of a second each:
                progress.update(task, rungs=rungs())  # only the screen's count moves
                return
            recs = records(study)
            scored = [r.val_accuracy for r in recs if r.scored and r.val_accuracy is not None]
            state["best"] = max(scored) if scored else None
            progress.update(
                task,
                completed=min(trials_done(study), n),
                best=summary(),
                front=len(front(cfg, recs)),
                rungs=rungs(),
            )
            progress.console.print(_trial_line(recs[trial.number]), soft_wrap=True)

        stopped_by: BaseException | None = None
        try:
            finished = run.run(on_trial)
        except KeyboardInterrupt as exc:
            finished, stopped_by = False, exc
        if not finished:
            progress.stop()
            console.print(
                f"interrupted: {trials_done(study)} finished trials are kept in the study; "
                "run the same command to resume"
            )
            return 143 if isinstance(stopped_by, Terminated) else 130
    recs = records(study)
    _search_summary(cfg, recs)
    write_pareto(cfg, recs)
    console.print(
        f"next: autocompress pareto {cfg.run_dir}   |   "
        f"autocompress export {cfg.run_dir} --best --out {cfg.run_dir / 'export'}",
        soft_wrap=True,
    )
    return 0


def _trial_line(rec: Any) -> str:
    """One line per finished trial (the bar alone says nothing in a log file)."""
    head = f"  trial {rec.number:>3} {rec.kind:<14}"
    if rec.state == "fail":
        return f"{head} [red]failed[/]: {rec.reason}"
    costs = "  ".join(f"{m} {v:.3f}" for m, v in rec.ratios.items())
    if not rec.feasible:
        return f"{head} [yellow]over budget[/] (not fine-tuned)  {costs}"
    status = "stopped early" if rec.state == "pruned" else "val"
    projected = "  (projected into budget)" if rec.projected else ""
    if rec.fidelity == "short" and rec.promoted_from is not None:
        projected += f"  (screened as trial {rec.promoted_from})"
    if rec.fidelity == "long":
        selection = rec.selection_accuracy
        status = f"finalist of trial {rec.promoted_from}: " + (
            f"selection {selection:.2%}, val" if selection is not None else "val"
        )
    return f"{head} {status} {rec.val_accuracy or 0:.2%}  {costs}  {rec.seconds:.1f}s{projected}"


def _search_summary(cfg: Config, recs: list[Any]) -> None:
    from autocompress.search.pareto import front_metrics

    rungs = {"zero-cost": "screened without fine-tuning", "short": "trials", "long": "finalists"}
    for fidelity, label in rungs.items():
        states: dict[str, int] = {}
        for r in recs:
            if r.fidelity != fidelity:
                continue
            key = "over budget" if r.state == "complete" and not r.feasible else r.state
            if r.state == "fail" and r.reason and r.reason.startswith(("interrupted", "surplus")):
                key = r.reason.split(":")[0] + " (retried or not run)"
            states[key] = states.get(key, 0) + 1
        if states or fidelity == "short":
            console.print(f"{label}: " + ", ".join(f"{v} {k}" for k, v in sorted(states.items())))
    metrics = front_metrics(cfg)
    top = sorted((r for r in recs if r.scored), key=lambda r: -(r.val_accuracy or 0))[:5]
    console.print(
        _trials_table(
            f"best trials · {cfg.name}",
            top,
            metrics,
            ("fine-tune s", lambda r: f"{r.finetune_seconds:.1f}"),
        )
    )
    finalists = [r for r in recs if r.finalist]
    if finalists:
        from autocompress.search.pareto import SCORE_WORDS, best_trial

        chosen = best_trial(recs, score=cfg.search.finalist_score)
        table = _trials_table(
            f"finalists · fine-tuned {_finalists_length(cfg)}",
            finalists,
            metrics,
            (
                "selection accuracy",
                lambda r: (
                    f"{r.selection_accuracy:.2%}" if r.selection_accuracy is not None else "–"
                ),
            ),
        )
        console.print(table)
        rule = SCORE_WORDS[cfg.search.finalist_score]
        console.print(f"best (export --best): trial {chosen.number}, chosen on {rule}")
    uniform = [r for r in recs if r.scored and r.baseline and r.baseline.startswith("uniform")]
    searched = [r for r in recs if r.scored and not r.baseline]
    if uniform and searched:
        u = max(r.val_accuracy or 0 for r in uniform)
        s = max(r.val_accuracy or 0 for r in searched)
        console.print(
            f"best searched {s:.2%} vs best uniform baseline {u:.2%} "
            f"({(s - u) * 100:+.2f} pt, validation accuracy)"
        )


def _finalists_length(cfg: Config) -> str:
    length = cfg.search.finalist_length
    if length == "export":
        return f"as long as the export ({cfg.finetune.export_epochs:g} epochs)"
    return f"{length:g}× longer"


def _trials_table(
    title: str, recs: Sequence[Any], metrics: Sequence[str], extra: tuple[str, Any]
) -> Table:
    """Trial, validation accuracy, cost ratios to the base, one ``extra`` column, kind."""
    table = Table(title=title)
    for col in ("trial", "val accuracy", *(f"{m} ratio" for m in metrics), extra[0], "kind"):
        table.add_column(col, justify="right")
    for r in recs:
        table.add_row(
            str(r.number),
            f"{r.val_accuracy:.2%}",
            *(f"{r.ratios[m]:.3f}" if m in r.ratios else "–" for m in metrics),
            extra[1](r),
            r.baseline or "searched",
        )
    return table


def cmd_pareto(cfg: Config, args: argparse.Namespace) -> int:
    from autocompress.commands import pareto
    from autocompress.search.pareto import best_trial, held_out_score

    result = pareto(cfg)
    metrics, points = result.metrics, result.front
    shown = list(
        dict.fromkeys(
            [
                *metrics,
                "macs",
                "size_bytes",
                *(["latency_ms"] if any("latency_ms" in r.ratios for r in points) else []),
            ]
        )
    )
    if args.json:
        rows = [
            {
                "trial": r.number,
                "val_accuracy": r.val_accuracy,
                "ratios": r.ratios,
                "costs": r.costs,
                "baseline": r.baseline,
                "policy": r.policy,
            }
            for r in points
        ]
        fidelities = [r.fidelity for r in result.records]
        rule = cfg.search.finalist_score
        finalists = [r for r in result.records if r.finalist]
        payload = {
            "metrics": metrics,
            "front": rows,
            "trials": len(result.records),
            "fidelities": {f: fidelities.count(f) for f in dict.fromkeys(fidelities)},
            "latency": result.latency,
            # a multi-fidelity search's finals, each with the score export --best ranks it by
            "finalist_score": rule,
            "finalists": [
                {
                    "trial": r.number,
                    "promoted_from": r.promoted_from,
                    "baseline": r.baseline,
                    "val_accuracy": r.val_accuracy,
                    "selection_accuracy": r.selection_accuracy,
                    "score": held_out_score(r.val_accuracy, r.selection_accuracy, rule),
                    "ratios": r.ratios,
                    "policy": r.policy,
                }
                for r in finalists
            ],
            "best": best_trial(result.records, score=rule).number if finalists else None,
        }
        print(json.dumps(payload, indent=2))
        return 0
    console.print(
        _trials_table(
            f"Pareto front · {cfg.name} · accuracy vs {', '.join(metrics)}",
            points,
            shown,
            ("params", lambda r: f"{int(r.costs.get('params', 0)):,}"),
        )
    )
    console.print(
        f"{len(points)} of {len(result.records)} trials on the front; wrote {result.png} and "
        f"{result.html}",
        soft_wrap=True,
    )
    return 0


def cmd_export(cfg: Config, args: argparse.Namespace) -> int:
    from autocompress.commands import Selection, export, select

    limits = {
        metric: getattr(args, f"max_{flag}")
        for flag, metric in RATIO_FLAGS.items()
        if getattr(args, f"max_{flag}") is not None
    }
    selection = Selection(args.trial, args.best, limits, args.top)
    selection.check()
    epochs = cfg.finetune.export_epochs if args.finetune_epochs is None else args.finetune_epochs
    check_epochs(epochs)
    check_output_dir(args.out, args.force)
    chosen = select(cfg, selection)
    if len(chosen) > 1:
        console.print(
            f"exporting trials {[r.number for r in chosen]} with a {epochs:g}-epoch "
            "fine-tune each; keeping the best on validation"
        )
    else:
        console.print(
            f"exporting trial {chosen[0].number} (val {chosen[0].val_accuracy:.2%} in the "
            f"search) with a {epochs:g}-epoch fine-tune",
        )
    report = export(
        cfg, chosen, args.out, epochs, args.force, console.print, _base_epoch, args.bits
    )
    _print_report(report, f"trial {report['trial']} · {cfg.name}")
    console.print(
        f"wrote {args.out}/model.pt, model.onnx"
        + (", model.pt2" if report.get("pt2", {}).get("written") else "")
        + ", weights.bin, policy.yaml, report.json",
        soft_wrap=True,
    )
    return 0


def cmd_latency(_: None, args: argparse.Namespace) -> int:
    from autocompress.commands import latency, onnx_latency_ratio

    measure = {
        "runtime": args.runtime,
        "threads": args.threads,
        "batch": args.batch,
        "allow_factories": args.allow_factory,
    }
    results = [latency(args.model, **measure)]
    if args.compare is not None:
        results.append(latency(args.compare, **measure))
    if args.json:
        print(json.dumps(results if args.compare else results[0], indent=2))
        return 0
    for r in results:
        console.print(
            f"{r['file']}: {r['ms']:.3f} ms per batch of {r['batch']} "
            f"({r['ms_per_sample']:.4f} ms per sample), {r['runtime']}, {r['threads']} thread(s)",
            soft_wrap=True,
        )
    if len(results) == 2 and args.runtime == "onnxruntime":
        ratio = onnx_latency_ratio(args.model, args.compare, args.threads, args.batch)
        console.print(f"ratio: {ratio:.3f} (the two models' runs alternated)")
    elif len(results) == 2:
        console.print(f"ratio: {results[0]['ms'] / results[1]['ms']:.3f}")
    return 0
