from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from autocompress.cli import main
from autocompress.compress import KNOB_METHODS
from autocompress.config import Limit, base_key, load_config, parse_config
from autocompress.cost.check import check_policy
from autocompress.cost.profile import profile_model
from autocompress.errors import ConfigError
from autocompress.models import ZOO
from autocompress.policy import Policy

ROOT = Path(__file__).parent.parent
EXPERIMENTS = sorted((ROOT / "experiments").rglob("*.yaml"))


@pytest.mark.parametrize("path", EXPERIMENTS, ids=lambda p: p.relative_to(ROOT).as_posix())
def test_every_experiment_file_parses(path: Path) -> None:
    """Configs load (named after their file); policy files load and fit their zoo model."""
    raw = yaml.safe_load(path.read_text())
    if "layers" in raw:
        policy = Policy.load(path)
        grey = policy.model.startswith("lenet") or policy.model == "vgg_small"  # (Fashion-)MNIST
        shape = (1, 28, 28) if grey else (3, 32, 32)
        check_policy(policy, profile_model(ZOO[policy.model](), shape, policy.model), KNOB_METHODS)
    else:
        assert load_config(path).name == path.stem


def test_defaults_and_types(write_config) -> None:
    cfg = load_config(write_config())
    assert cfg.data.name == "digits" and cfg.data.val_size == 300
    assert isinstance(cfg.finetune.epochs, float)
    assert cfg.search.sampler == "tpe" and cfg.search.storage is None
    assert cfg.run_dir.name == "digits-test"


@pytest.mark.parametrize(
    ("changes", "objectives"),
    [
        ({}, ["macs"]),  # no budget: MACs
        ({"budget": {"bitops": "30%", "size_bytes": "50%"}}, ["bitops", "size_bytes"]),
        ({"budget": {"size_bytes": "5%"}, "search": {"objectives": []}}, []),
        ({"budget": {"size_bytes": "5%"}, "search": {"objectives": ["params"]}}, ["params"]),
        ({"budget": {"macs": "30%"}, "search": {"sampler": "cmaes"}}, []),  # single-objective
    ],
)
def test_the_objectives_default_to_the_budgets_costs(write_config, changes, objectives) -> None:
    cfg = load_config(write_config(changes))
    assert cfg.objectives == objectives
    assert parse_config(cfg.to_dict()).objectives == objectives


def test_config_is_frozen(write_config) -> None:
    cfg = load_config(write_config())
    with pytest.raises(AttributeError):
        cfg.train.epochs = 5  # type: ignore[misc]


@pytest.mark.parametrize(
    ("changes", "key", "fragment"),
    [
        ({"train": {"epochz": 3}}, "train.epochz", "allowed: epochs, lr"),
        ({"trian": {}}, "trian", "unknown key"),
        ({"train": {"epochs": "ten"}}, "train.epochs", "expected an integer"),
        ({"train": {"epochs": 0}}, "train.epochs", "an integer in [1, 100000]"),
        ({"train": {"lr": -1}}, "train.lr", "a number in (0, 1e6]"),
        ({"train": {"optimizer": "rmsprop"}}, "train.optimizer", "one of sgd, adam"),
        ({"finetune": {"distill_weight": 1.5}}, "finetune.distill_weight", "[0, 1]"),
        ({"data": {"augment": "yes"}}, "data.augment", "true or false"),
        ({"data": {"name": "imagenet"}}, "data.name", "one of cifar10, digits"),
        (
            {"model": {"name": "lenet5", "factory": None, "args": {"widht": 2}}},
            "model.args.widht",
            "allowed: width",
        ),
        ({"budget": {"flops": "25%"}}, "budget.flops", "allowed: macs, params"),
        ({"budget": {"macs": "250%"}}, "budget.macs", "(0%, 100%]"),
        ({"budget": {"macs": -3}}, "budget.macs", "a number > 0"),
        ({"search": {"sampler": "bayes"}}, "search.sampler", "one of tpe, nsga2"),
        ({"space": {"prune": [0, 1]}}, "space.prune", "unknown key; allowed: skip_first"),
        ({"name": "bad name!"}, "name", "letters, digits"),
    ],
)
def test_bad_values_name_the_dotted_key(write_config, changes, key, fragment) -> None:
    with pytest.raises(ConfigError) as err:
        load_config(write_config(changes))
    assert err.value.key == key
    assert f"'{key}'" in str(err.value) and fragment in str(err.value)


def test_model_needs_exactly_one_source(write_config) -> None:
    with pytest.raises(ConfigError, match="exactly one of model.name"):
        load_config(write_config({"model": {"name": "lenet5"}}))  # factory also set


def test_overrides_are_type_checked(write_config) -> None:
    path = write_config()
    cfg = load_config(path, ["train.epochs=7", "budget.macs=30%", "search.storage=null"])
    assert cfg.train.epochs == 7
    assert cfg.budget["macs"] == Limit(0.3, relative=True)
    with pytest.raises(ConfigError, match="'train.epochs'.*expected an integer"):
        load_config(path, ["train.epochs=many"])
    with pytest.raises(ConfigError, match="'train.nope'"):
        load_config(path, ["train.nope=1"])
    with pytest.raises(ConfigError, match="KEY=VALUE"):
        load_config(path, ["train.epochs"])


def test_round_trip_and_base_key(write_config) -> None:
    cfg = load_config(write_config({"budget": {"macs": "25%", "params": 1000}}))
    again = parse_config(yaml.safe_load(yaml.safe_dump(cfg.to_dict())))
    assert again == cfg
    assert base_key(again) == base_key(cfg)
    # the base key ignores where data lives and the search, but not training settings
    moved = load_config(write_config(), ["data.root=/elsewhere", "search.trials=5"])
    assert base_key(moved) == base_key(load_config(write_config()))
    assert base_key(load_config(write_config(), ["train.lr=0.1"])) != base_key(moved)


@pytest.mark.parametrize("command", ["train", "cost"])
def test_cli_exits_2_with_one_line_and_writes_nothing(write_config, tmp_path, capsys, command):
    path = write_config({"train": {"epochs": -1}})
    assert main([command, str(path)]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1
    assert "'train.epochs'" in err and "-1" in err and "[1, 100000]" in err
    assert not (tmp_path / "runs").exists()


def test_cli_bad_override_exits_2(write_config, capsys) -> None:
    assert main(["cost", str(write_config()), "--set", "data.batch_size=abc"]) == 2
    assert "'data.batch_size'" in capsys.readouterr().err


@pytest.mark.parametrize(
    "config", ["lenet5-mnist", "lenet5-fashion-mnist", "lenet300-mnist", "lenet300-fashion-mnist"]
)
def test_survey_rows_name_existing_files_and_valid_overrides(config: str, monkeypatch) -> None:
    """The commands of ``benchmarks/survey.py`` stay runnable: policies exist, --set items parse."""
    monkeypatch.syspath_prepend(str(ROOT / "benchmarks"))
    import survey

    path = f"experiments/{config}.yaml"
    cfg = load_config(ROOT / path)
    for row in survey.ROWS:
        for argv in survey.commands(path, cfg, row, ROOT / "runs" / "survey-check"):
            if argv[0] == "apply":
                policy = Policy.load(ROOT / argv[argv.index("--policy") + 1])
                assert policy.model == cfg.model.name
            if argv[0] == "search":
                sets = [argv[i + 1] for i, a in enumerate(argv) if a == "--set"]
                searched = load_config(ROOT / path, sets)
                assert searched.budget and searched.search.study
