"""Command line: ``autocompress train|cost CONFIG ...`` (also ``python -m autocompress``).

Errors in user input (config, policy, data, checkpoint) print one line and exit with status 2
before anything is written; :func:`main` returns the exit status so tests call it in-process.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import torch
from rich.console import Console
from rich.table import Table

from autocompress.config import Config, load_config
from autocompress.errors import AutocompressError
from autocompress.files import DiskError, describe_os_error
from autocompress.runs import Prepared, load_run_config, prepare
from autocompress.signals import Terminated, sigterm_as_interrupt

# Rich writes to sys.stdout as it is at print time, so pytest's capture sees it.
console = Console(highlight=False)


def main(argv: Sequence[str] | None = None) -> int:
    parser = _parser()
    args = parser.parse_args(argv)
    try:
        with sigterm_as_interrupt():
            if hasattr(args, "run_dir"):
                overrides = [*_flag_overrides(args), *args.set]
                cfg = load_run_config(args.run_dir, overrides, args.study)
            else:
                cfg = load_config(args.config, [*_flag_overrides(args), *args.set])
            if cfg.train.threads:
                torch.set_num_threads(cfg.train.threads)
            result: int = args.func(cfg, args)
            return result
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
    p.set_defaults(func=cmd_cost)

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

    p = on_run("pareto", "print a search's Pareto front and write pareto.png and pareto.html")
    p.add_argument("--json", action="store_true", help="print JSON instead of a table")
    p.set_defaults(func=cmd_pareto)

    p = on_run("export", "rebuild a searched policy, fine-tune it longer, test and export it")
    pick = p.add_mutually_exclusive_group(required=True)
    pick.add_argument("--trial", type=int, help="the trial number to export")
    pick.add_argument(
        "--best", action="store_true", help="the best validation accuracy within the limits"
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
        help="with --best: export the K best trials and keep the best on validation",
    )
    p.add_argument("--finetune-epochs", type=float, help="default: finetune.export_epochs")
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
    from autocompress.data import load_data
    from autocompress.train.base import base_path, ensure_base
    from autocompress.train.fit import EpochLog

    splits = load_data(cfg.data, seed=cfg.train.seed)
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


def _prepare(cfg: Config) -> Prepared:
    """:func:`autocompress.runs.prepare`, printing the base model's epochs if it trains."""
    return prepare(
        cfg,
        on_epoch=lambda log: console.print(
            f"  base epoch {log.epoch}/{log.epochs}  val {log.val_accuracy:.2%}"
        ),
    )


# ---------------------------------------------------------------------------------------------
# apply and distill


def cmd_apply(cfg: Config, args: argparse.Namespace) -> int:
    from autocompress.compress import KNOB_METHODS
    from autocompress.export import compress_and_export
    from autocompress.files import check_output_dir
    from autocompress.policy import Policy, check_policy
    from autocompress.runs import export_length, splits_recipe, target, untrained_profile

    policy = Policy.load(args.policy)
    _check_epochs(args.finetune_epochs)
    # everything that can be refused is refused before the base model is trained or loaded
    check_policy(policy, untrained_profile(cfg), KNOB_METHODS, cfg.compress.round_to)
    check_output_dir(args.out, args.force)
    run = _prepare(cfg)
    report = compress_and_export(
        run.base.model,
        run.profile,
        policy,
        splits_recipe(cfg, run.splits),
        export_length(cfg, args.finetune_epochs),
        args.out,
        target(cfg, run.base),
        cfg.finetune_seed,
        cfg.compress,
        run.base.metrics["test_accuracy"],
        log=console.print,
        force=args.force,
    )
    _print_report(report, f"{args.policy} · {cfg.name}")
    console.print(
        f"wrote {args.out}/model.pt, weights.bin, policy.yaml, report.json", soft_wrap=True
    )
    return 0


def cmd_distill(cfg: Config, args: argparse.Namespace) -> int:
    from autocompress.distill import distill, parse_student
    from autocompress.files import check_output_dir

    student = parse_student(args.student)
    _check_epochs(args.epochs, "--epochs")
    check_output_dir(args.out, args.force)
    run = _prepare(cfg)
    report = distill(
        cfg,
        run.splits,
        run.base,
        run.profile,
        student,
        args.out,
        args.epochs,
        log=console.print,
        force=args.force,
    )
    for label in ("distilled", "alone"):
        _print_report(report[label], f"student {args.student} · {label}")
    console.print(f"wrote {args.out}/model.pt and report.json", soft_wrap=True)
    return 0


def _check_epochs(epochs: float | None, flag: str = "--finetune-epochs") -> None:
    from autocompress.config import MAX_EPOCHS
    from autocompress.errors import ConfigError

    if epochs is not None and not 0 <= epochs <= MAX_EPOCHS:  # also refuses nan
        raise ConfigError(flag, epochs, f"a number of epochs in [0, {MAX_EPOCHS}]")


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


# ---------------------------------------------------------------------------------------------
# cost


def cmd_cost(cfg: Config, args: argparse.Namespace) -> int:
    from autocompress.compress import KNOB_METHODS
    from autocompress.cost.metrics import compute_costs
    from autocompress.policy import Policy, check_policy
    from autocompress.runs import untrained_profile

    profile = untrained_profile(cfg)
    base_policy = Policy(profile.model)
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


# ---------------------------------------------------------------------------------------------
# search, pareto, export


def cmd_search(cfg: Config, args: argparse.Namespace) -> int:
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        TextColumn,
        TimeRemainingColumn,
    )

    from autocompress.runs import splits_recipe, untrained_profile, write_run_config
    from autocompress.search.loop import make_controller, prepare_study, quiet_optuna, run_search
    from autocompress.search.objective import check_budget_reachable, make_context
    from autocompress.search.ray_runner import check_backend
    from autocompress.search.samplers import make_sampler
    from autocompress.search.study import (
        check_compatible,
        existing_study,
        records,
        shown_storage,
        trials_done,
        worker_id,
    )
    from autocompress.spaces import build_space

    # Everything that can refuse the search does so before a base model is trained or the
    # run's config rewritten: the backend, the storage, the existing study's objectives and
    # space (a space depends on shapes only: the untrained model gives the same one).
    check_backend(cfg)
    shapes = untrained_profile(cfg)
    space = build_space(cfg.space, shapes, cfg.compress.round_to)
    check_budget_reachable(cfg, space)
    # the sampler accepts the space (CMA-ES refuses bit-width choices)
    make_sampler(cfg.search.sampler, cfg.search.seed, space, 1 + len(cfg.search.objectives))
    previous = existing_study(cfg)
    if previous is not None:
        check_compatible(previous, cfg, [k.name for k in space.knobs])
    run = _prepare(cfg)
    splits, base, profile = run.splits, run.base, run.profile
    space = build_space(cfg.space, profile, cfg.compress.round_to)
    write_run_config(cfg)
    ctx = make_context(cfg, splits_recipe(cfg, splits), base.model, profile, space)
    with quiet_optuna():
        study, recovered = prepare_study(ctx, cfg.search.sampler)
    controller = make_controller(ctx, cfg.search.sampler)
    n = cfg.search.trials
    done = trials_done(study)
    layers = sorted(
        {layer for k in space.knobs for layer in k.layers}, key=list(profile.layers).index
    )
    console.print(
        f"search {cfg.name}: {len(space.knobs)} knobs over {len(layers)} layers "
        f"({', '.join(sorted({k.knob for k in space.knobs}))}); sampler {cfg.search.sampler}; "
        f"base val accuracy {base.metrics['val_accuracy']:.2%}",
        soft_wrap=True,
    )
    for metric, limit in ctx.budget.limits.items():
        console.print(f"budget {metric} ≤ {ctx.budget.described[metric]} = {limit:,.4g}")
    if ctx.needs_latency:
        setup = study.user_attrs.get("latency", {})
        console.print(
            f"latency: {setup.get('statistic')}, batch {setup.get('batch')}, "
            f"{setup.get('threads')} thread(s), {setup.get('execution')}",
            soft_wrap=True,
        )
    console.print(f"study: {shown_storage(cfg)}", soft_wrap=True)
    if cfg.search.backend == "ray":
        from autocompress.search.ray_runner import init_ray, run_ray_search

        ray_setup = init_ray(cfg)
        study.set_user_attr(f"ray:{worker_id()}", dataclasses.asdict(ray_setup))
        console.print(
            f"Ray ({ray_setup.address}, started in {ray_setup.startup_s:.1f}s): "
            f"{ray_setup.workers} concurrent trials × {ray_setup.cpus_per_trial} CPU"
            + (f" + {ray_setup.gpus_per_trial:g} GPU" if ray_setup.gpus_per_trial else "")
            + f", scheduler {ray_setup.scheduler}",
            soft_wrap=True,
        )
    if done:
        console.print(f"resuming: {done} of {n} trials already in the study")
    if controller is not None:
        console.print(
            f"RL agent: {len(controller.walk.steps)} layers × {len(controller.walk.kinds)} "
            f"actions, reward {cfg.search.rl_reward}"
            + (f"; resumed after {controller.episodes} episodes" if controller.resumed else "")
        )
    if recovered:
        console.print(
            f"trials {recovered} were left running by a stopped process: failed and queued again"
        )
    state: dict[str, Any] = {"best": None, "front": 0}
    stopped_by: BaseException | None = None

    def summary() -> str:
        best = state["best"]
        return f"best feasible {best:.2%}" if best is not None else "best feasible –"

    with Progress(
        TextColumn("trials"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("{task.fields[best]} · front {task.fields[front]}"),
        TextColumn("ETA"),
        TimeRemainingColumn(),
        console=console,
        transient=False,
    ) as progress:
        task = progress.add_task("search", total=n, completed=min(done, n), best=summary(), front=0)

        def on_trial(trial: Any) -> None:
            recs = records(study)
            scored = [r.val_accuracy for r in recs if r.scored and r.val_accuracy is not None]
            state["best"] = max(scored) if scored else None
            state["front"] = len(_front(cfg, recs))
            progress.update(
                task, completed=min(trials_done(study), n), best=summary(), front=state["front"]
            )
            progress.console.print(_trial_line(trial, ctx.base_costs), soft_wrap=True)

        try:
            if cfg.search.backend == "ray":
                finished = run_ray_search(ctx, study, n, on_trial)
            else:
                run_search(ctx, study, n, on_trial, controller)
                finished = True
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
    _write_pareto(cfg, recs)
    console.print(
        f"next: autocompress pareto {cfg.run_dir}   |   "
        f"autocompress export {cfg.run_dir} --best --out {cfg.run_dir / 'export'}",
        soft_wrap=True,
    )
    return 0


def _trial_line(trial: Any, base_costs: Mapping[str, float]) -> str:
    """One line per finished trial (the bar alone says nothing in a log file)."""
    a = trial.user_attrs
    kind = a.get("baseline") or ("retry" if "retry_of" in a else "searched")
    if "rl_episode" in a:
        kind = f"rl episode {a['rl_episode']}"
    head = f"  trial {trial.number:>3} {kind:<14}"
    if trial.state.name == "FAIL":
        return f"{head} [red]failed[/]: {a.get('fail_reason')}"
    costs = "  ".join(
        f"{m} {v / base_costs[m]:.3f}" for m, v in a.get("costs", {}).items() if m in base_costs
    )
    if not a.get("feasible", True):
        return f"{head} [yellow]over budget[/] (not fine-tuned)  {costs}"
    status = "stopped early" if trial.state.name == "PRUNED" else "val"
    projected = "  (projected into budget)" if a.get("projected") else ""
    return (
        f"{head} {status} {a.get('val_accuracy', 0):.2%}  {costs}  "
        f"{a.get('seconds', 0):.1f}s{projected}"
    )


def _front(cfg: Config, recs: list[Any]) -> list[Any]:
    from autocompress.search.pareto import front_metrics, pareto_front

    return pareto_front(recs, front_metrics(cfg))


def _search_summary(cfg: Config, recs: list[Any]) -> None:
    from autocompress.search.pareto import front_metrics

    states: dict[str, int] = {}
    for r in recs:
        key = "over budget" if r.state == "complete" and not r.feasible else r.state
        if r.state == "fail" and r.reason and r.reason.startswith(("interrupted", "surplus")):
            key = r.reason.split(":")[0] + " (retried or not run)"
        states[key] = states.get(key, 0) + 1
    console.print("trials: " + ", ".join(f"{v} {k}" for k, v in sorted(states.items())))
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
    uniform = [r for r in recs if r.scored and r.baseline]
    searched = [r for r in recs if r.scored and not r.baseline]
    if uniform and searched:
        u = max(r.val_accuracy or 0 for r in uniform)
        s = max(r.val_accuracy or 0 for r in searched)
        console.print(
            f"best searched {s:.2%} vs best uniform baseline {u:.2%} "
            f"({(s - u) * 100:+.2f} pt, validation accuracy)"
        )


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


def _write_pareto(cfg: Config, recs: list[Any]) -> list[Any]:
    from autocompress.report.plots import pareto_html, pareto_png
    from autocompress.search.pareto import front_metrics
    from autocompress.search.study import pareto_paths, study_name

    front = _front(cfg, recs)
    metric = front_metrics(cfg)[0]
    title = f"{study_name(cfg)}: validation accuracy vs {metric}"
    png, html = pareto_paths(cfg)
    pareto_png(recs, front, metric, png, title)
    pareto_html(recs, front, metric, html, title)
    return front


def cmd_pareto(cfg: Config, args: argparse.Namespace) -> int:
    from autocompress.search.pareto import front_metrics
    from autocompress.search.study import load_study, pareto_paths, records

    study = load_study(cfg)
    recs = records(study)
    front = _write_pareto(cfg, recs)
    metrics = front_metrics(cfg)
    shown = list(
        dict.fromkeys(
            [
                *metrics,
                "macs",
                "size_bytes",
                *(["latency_ms"] if any("latency_ms" in r.ratios for r in front) else []),
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
            for r in front
        ]
        latency = study.user_attrs.get("latency")
        print(
            json.dumps(
                {"metrics": metrics, "front": rows, "trials": len(recs), "latency": latency},
                indent=2,
            )
        )
        return 0
    console.print(
        _trials_table(
            f"Pareto front · {cfg.name} · accuracy vs {', '.join(metrics)}",
            front,
            shown,
            ("params", lambda r: f"{int(r.costs.get('params', 0)):,}"),
        )
    )
    png, html = pareto_paths(cfg)
    console.print(
        f"{len(front)} of {len(recs)} trials on the front; wrote {png} and {html}", soft_wrap=True
    )
    return 0


def cmd_export(cfg: Config, args: argparse.Namespace) -> int:
    from autocompress.errors import ConfigError
    from autocompress.files import check_output_dir
    from autocompress.search.export import export_best_of, export_trial
    from autocompress.search.pareto import best_trial, best_trials, trial_by_number
    from autocompress.search.study import load_study, records

    limits = {
        metric: getattr(args, f"max_{flag}")
        for flag, metric in RATIO_FLAGS.items()
        if getattr(args, f"max_{flag}") is not None
    }
    if (limits or args.top != 1) and not args.best:
        raise ConfigError(
            "--max-*/--top", limits or args.top, "they choose among trials: use them with --best"
        )
    if args.top < 1:
        raise ConfigError("--top", args.top, "an integer >= 1")
    for metric, value in limits.items():
        if value <= 0:
            raise ConfigError(f"--max-{metric}", value, "a ratio to the base model > 0, e.g. 0.25")
    epochs = cfg.finetune.export_epochs if args.finetune_epochs is None else args.finetune_epochs
    _check_epochs(epochs)
    check_output_dir(args.out, args.force)
    recs = records(load_study(cfg))
    if args.best and args.top > 1:
        candidates = best_trials(recs, limits, args.top)
        console.print(
            f"exporting trials {[r.number for r in candidates]} with a {epochs:g}-epoch "
            "fine-tune each; keeping the best on validation"
        )
        run = _prepare(cfg)
        report = export_best_of(
            cfg,
            run.splits,
            run.base,
            run.profile,
            candidates,
            args.out,
            epochs,
            log=console.print,
            force=args.force,
        )
    else:
        record = best_trial(recs, limits) if args.best else trial_by_number(recs, args.trial)
        console.print(
            f"exporting trial {record.number} (val {record.val_accuracy:.2%} in the search) "
            f"with a {epochs:g}-epoch fine-tune",
        )
        run = _prepare(cfg)
        report = export_trial(
            cfg,
            run.splits,
            run.base,
            run.profile,
            record,
            args.out,
            epochs,
            log=console.print,
            force=args.force,
        )
    _print_report(report, f"trial {report['trial']} · {cfg.name}")
    console.print(
        f"wrote {args.out}/model.pt, model.onnx, weights.bin, policy.yaml, report.json",
        soft_wrap=True,
    )
    return 0
