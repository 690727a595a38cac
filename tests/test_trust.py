"""Trust: nothing a user runs or loads can lose their work or run someone else's code.

One test (or more) per probe of the "Reliability" table in experiments/RESULTS.md; each of
them failed before the change that fixed it.
"""

from __future__ import annotations

import errno
import json
import os
import signal
import stat
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
import yaml

import autocompress
from autocompress.checkpoint import ALLOW_ENV, save_checkpoint
from autocompress.cli import main
from autocompress.errors import CheckpointError
from tests.tiny_models import TinyResNet

ROOT = Path(__file__).resolve().parents[1]
SEARCH = {
    "finetune": {"steps": 10, "lr": 0.01, "export_epochs": 0.2},
    "space": {"rules": [{"prune": [0.0, 0.8]}]},
    "budget": {"macs": "70%"},
    "search": {"trials": 3, "uniform": 1},
}
POLICY = "model: tests.tiny_models:tiny_resnet\nlayers:\n  conv_a: {prune: 0.5}\n"


def one_line_error(capsys: pytest.CaptureFixture[str]) -> str:
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "Traceback" not in err, err
    return err


# ---------------------------------------------------------------------------------------------
# 1. Loading a checkpoint never runs code it names


def test_loading_a_checkpoint_never_imports_the_factory_it_names(tmp_path, monkeypatch) -> None:
    marker = tmp_path / "pwned"
    spec = {"factory": "os:system", "args": {"command": f"touch {marker}"}}
    path = tmp_path / "model.pt"
    save_checkpoint(path, torch.nn.Linear(2, 2), spec)
    monkeypatch.delenv(ALLOW_ENV, raising=False)
    with pytest.raises(CheckpointError, match=ALLOW_ENV):
        autocompress.load(path)
    assert not marker.exists()


def test_a_factory_model_loads_when_the_user_allows_it(write_config, tmp_path, monkeypatch):
    """`load(path, model=...)` rebuilds on the user's module; naming the factory (argument or
    environment) allows it; nothing else does."""
    policy = tmp_path / "policy.yaml"
    policy.write_text(POLICY)
    out = tmp_path / "out"
    config = write_config({"finetune": {"steps": 5}})
    assert main(["apply", str(config), "--policy", str(policy), "--out", str(out)]) == 0
    monkeypatch.delenv(ALLOW_ENV, raising=False)
    with pytest.raises(CheckpointError, match="tests.tiny_models:tiny_resnet"):
        autocompress.load(out / "model.pt")
    x = torch.rand(4, 1, 8, 8)
    fresh = TinyResNet()
    by_module = autocompress.load(out / "model.pt", model=fresh)
    assert fresh.conv_a.out_channels == 16  # the user's instance is left as it was
    by_name = autocompress.load(out / "model.pt", allow_factories=["tests.tiny_models:tiny_resnet"])
    monkeypatch.setenv(ALLOW_ENV, "tests.tiny_models:tiny_resnet")
    by_env = autocompress.load(out / "model.pt")
    with torch.no_grad():
        assert torch.equal(by_module(x), by_name(x)) and torch.equal(by_name(x), by_env(x))


def test_a_base_checkpoint_naming_another_factory_is_refused(write_config, tmp_path, capsys):
    """A cached base model swapped for one that names another factory is not built."""
    from autocompress.config import load_config
    from autocompress.train.base import base_path

    config = write_config()
    marker = tmp_path / "pwned"
    spec = {"factory": "os:system", "args": {"command": f"touch {marker}"}}
    save_checkpoint(base_path(load_config(config)), torch.nn.Linear(2, 2), spec)
    policy = tmp_path / "policy.yaml"
    policy.write_text(POLICY)
    assert main(["apply", str(config), "--policy", str(policy), "--out", str(tmp_path / "o")]) == 2
    assert "os:system" in one_line_error(capsys) and not marker.exists()


# ---------------------------------------------------------------------------------------------
# 2. Secrets stay secret


def test_a_storage_password_is_masked_in_errors_and_never_written(write_config, tmp_path, capsys):
    secret = "Sw0rdf1sh-never-shown"
    url = f"postgresql://ann:{secret}@127.0.0.1:1/studies"  # nothing listens on port 1
    config = write_config(SEARCH)
    assert main(["search", str(config), "--storage", url]) == 2
    captured = capsys.readouterr()
    assert secret not in captured.out + captured.err
    assert "postgresql://ann:***@127.0.0.1:1/studies" in captured.err
    run_dir = tmp_path / "runs" / "digits-test"
    written = [p for p in run_dir.rglob("*") if p.is_file()] if run_dir.exists() else []
    assert not [p for p in written if secret.encode() in p.read_bytes()]


def test_postgres_search_keeps_the_password_out_of_output_and_files(
    write_config, tmp_path, capsys, monkeypatch
) -> None:
    url = os.environ.get("AUTOCOMPRESS_TEST_POSTGRES")
    if not url:
        if os.environ.get("AUTOCOMPRESS_REQUIRE_POSTGRES"):
            pytest.fail("AUTOCOMPRESS_TEST_POSTGRES is not set: run .ci/start-postgres")
        pytest.skip("no PostgreSQL server: set AUTOCOMPRESS_TEST_POSTGRES (.ci/start-postgres)")
    from autocompress.redact import password_of, strip_password

    password = password_of(url)
    assert password, "the test server's URL carries a password"
    user_and_password = url.split("//", 1)[1].split("@", 1)[0]  # user:password
    config = write_config({**SEARCH, "search": {**SEARCH["search"], "trials": 2}})
    study = f"secret-{os.getpid()}-{time.monotonic_ns()}"
    argv = ["search", str(config), "--storage", url, "--set", f"search.study={study}"]
    assert main(argv) == 0
    printed = capsys.readouterr()
    assert user_and_password not in printed.out + printed.err and ":***@" in printed.out
    run_dir = tmp_path / "runs" / "digits-test"
    for path in run_dir.rglob("*"):
        if path.is_file():
            assert user_and_password.encode() not in path.read_bytes(), path
    recorded = run_dir / f"config-{study}.yaml"
    assert stat.S_IMODE(recorded.stat().st_mode) == 0o600
    assert yaml.safe_load(recorded.read_text())["search"]["storage"] == strip_password(url)
    # later commands find the password where PostgreSQL users keep it
    monkeypatch.setenv("PGPASSWORD", password)
    assert main(["pareto", str(run_dir), "--study", study, "--json"]) == 0
    assert '"trials": 2' in capsys.readouterr().out


# ---------------------------------------------------------------------------------------------
# 3. A local Ray runtime listens on loopback only


RAY_RUNTIME = """
import sys
from autocompress.config import load_config
from autocompress.search.ray_runner import init_ray

init_ray(load_config(sys.argv[1]))  # what `search --backend ray` starts, before its trials
import ray

ray.get(ray.remote(lambda: 1).remote())  # a Ray worker process, as a trial has
print("ready", flush=True)
sys.stdin.read()  # until the test has looked
ray.shutdown()
"""


def test_a_local_ray_runtime_listens_on_loopback_only(write_config) -> None:
    """Every socket that a search's local Ray runtime (driver, GCS, raylet, a worker) listens
    on is a loopback one. The runtime is started as `search --backend ray` starts it, in a
    fresh process that has not imported Ray."""
    pytest.importorskip("ray")
    psutil = pytest.importorskip("psutil")
    config = write_config({"search": {"backend": "ray"}})
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    env.pop("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", None)  # init_ray sets it itself
    proc = subprocess.Popen(
        [sys.executable, "-c", RAY_RUNTIME, str(config)],
        cwd=ROOT,
        env=env,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stdout is not None and proc.stdout.readline().strip() == "ready", (
            proc.stderr.read() if proc.stderr else ""
        )
        parent = psutil.Process(proc.pid)
        names = {p.pid: p.name() for p in [parent, *parent.children(recursive=True)]}
        seen = {
            (names[c.pid], c.laddr.ip, c.laddr.port)
            for c in psutil.net_connections(kind="inet")
            if c.status == psutil.CONN_LISTEN and c.pid in names
        }
    finally:
        proc.communicate(timeout=120)  # closes stdin: the runtime shuts down
    assert {"gcs_server", "raylet"} <= {name for name, _, _ in seen}, seen
    exposed = {s for s in seen if not (s[1].startswith(("127.", "::ffff:127.")) or s[1] == "::1")}
    assert not exposed, exposed


def test_a_ray_imported_too_early_is_refused_rather_than_exposed(write_config) -> None:
    """A program that imported Ray before (so Ray took the node's network address) gets a
    clear refusal instead of a runtime listening beyond loopback."""
    pytest.importorskip("ray")
    config = write_config({"search": {"backend": "ray"}})
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    env.pop("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", None)
    script = "import ray, sys\n" + RAY_RUNTIME.replace("import ray\n", "")
    proc = subprocess.run(
        [sys.executable, "-c", script, str(config)],
        cwd=ROOT,
        env=env,
        input="",
        capture_output=True,
        text=True,
        timeout=120,
    )
    if proc.returncode == 0:  # this machine's only address is a loopback one
        pytest.skip("no network address besides loopback: nothing to refuse")
    assert "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER=0" in proc.stderr
    assert "ConfigError" in proc.stderr and "ready" not in proc.stdout


# ---------------------------------------------------------------------------------------------
# 4. Hostile YAML cannot hang or exhaust the machine


BOMB = """
a: &a ["x", "x", "x", "x", "x", "x", "x", "x", "x"]
b: &b [*a, *a, *a, *a, *a, *a, *a, *a, *a]
c: &c [*b, *b, *b, *b, *b, *b, *b, *b, *b]
d: &d [*c, *c, *c, *c, *c, *c, *c, *c, *c]
e: &e [*d, *d, *d, *d, *d, *d, *d, *d, *d]
f: &f [*e, *e, *e, *e, *e, *e, *e, *e, *e]
g: &g [*f, *f, *f, *f, *f, *f, *f, *f, *f]
h: &h [*g, *g, *g, *g, *g, *g, *g, *g, *g]
"""


def test_a_yaml_alias_bomb_in_a_config_is_refused_at_once(write_config, capsys) -> None:
    config = write_config()
    raw = config.read_text().replace("train:\n", "train:\n  epochs: *h\n", 1)
    # the anchors live inside a mapping of their own so the file stays one YAML document
    config.write_text("anchors:" + BOMB.replace("\n", "\n  ") + "\n" + raw)
    assert main(["cost", str(config)]) == 2  # refused while parsing: nothing is expanded
    err = one_line_error(capsys)
    assert "aliases" in err and len(err) < 400


def test_a_yaml_alias_in_a_policy_is_refused(write_config, tmp_path, capsys) -> None:
    policy = tmp_path / "policy.yaml"
    policy.write_text("model: m\nknobs: &k {prune: 0.5}\nlayers:\n  conv_a: *k\n")
    assert main(["cost", str(write_config()), "--policy", str(policy)]) == 2
    assert "aliases" in one_line_error(capsys)


@pytest.mark.parametrize(
    ("override", "key"),
    [
        ("model.args.width=100000", "model.args"),  # a user factory: sized before it is built
        ("finetune.epochs=.inf", "finetune.epochs"),
        ("train.lr=.inf", "train.lr"),
        ("train.lr=.nan", "train.lr"),
        ("train.epochs=1000000000", "train.epochs"),
        ("data.batch_size=100000000", "data.batch_size"),
        ("budget.macs=.inf", "budget.macs"),
        ("search.trials=10000000000", "search.trials"),
    ],
)
def test_numbers_without_a_finite_range_are_refused(write_config, capsys, override, key) -> None:
    assert main(["cost", str(write_config()), "--set", override]) == 2
    err = one_line_error(capsys)
    assert f"'{key}'" in err


def test_a_zoo_models_width_has_a_finite_range(write_config, capsys) -> None:
    model = {"factory": None, "name": "lenet300_100", "args": {"width": 100000}}
    config = write_config({"model": model})
    assert main(["cost", str(config)]) == 2
    assert "'model.args.width'" in one_line_error(capsys)


def test_an_error_message_shows_a_huge_value_cut_short(write_config, capsys) -> None:
    assert main(["cost", str(write_config()), "--set", f"name={'x' * 100_000}"]) == 2
    err = one_line_error(capsys)
    assert len(err) < 400 and "100,002 characters" in err


# ---------------------------------------------------------------------------------------------
# 5. An output folder is all from one trial, or untouched


@pytest.fixture(scope="module")
def searched_run(tmp_path_factory) -> Path:
    """A finished 3-trial search in a runs_root whose path holds an apostrophe and a space."""
    from tests.conftest import DIGITS_CONFIG

    root = tmp_path_factory.mktemp("trust") / "it's a run"
    raw = {**DIGITS_CONFIG, **SEARCH, "runs_root": str(root)}
    config = root.parent / "config.yaml"
    config.write_text(yaml.safe_dump(raw))
    assert main(["search", str(config)]) == 0
    return root / "digits-test"


def test_pareto_and_export_work_in_a_path_with_an_apostrophe(searched_run, capsys) -> None:
    assert main(["pareto", str(searched_run)]) == 0
    assert (searched_run / "pareto.html").is_file()
    out = searched_run.parent / "export's"
    assert main(["export", str(searched_run), "--trial", "0", "--out", str(out)]) == 0
    assert json.loads((out / "report.json").read_text())["trial"] == 0


def outputs(folder: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(folder.iterdir()) if p.is_file()}


def start_export(run_dir: Path, trial: int, out: Path) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [
            *(sys.executable, "-m", "autocompress", "export", str(run_dir)),
            *("--trial", str(trial), "--out", str(out)),
        ],
        cwd=ROOT,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )


def test_an_export_killed_midway_leaves_the_previous_one_whole(searched_run) -> None:
    out = searched_run.parent / "kill-9"
    assert main(["export", str(searched_run), "--trial", "0", "--out", str(out)]) == 0
    before = outputs(out)
    proc = start_export(searched_run, 1, out)
    deadline = time.monotonic() + 240
    # kill it while it writes its files: model.pt is in its staging folder, model.onnx not yet
    while not list(out.parent.glob(".kill-9.*.partial/model.pt")):
        assert proc.poll() is None and time.monotonic() < deadline, proc.stderr
        time.sleep(0.01)
    proc.send_signal(signal.SIGKILL)
    proc.wait(30)
    assert outputs(out) == before  # every file from trial 0, none from trial 1
    assert json.loads((out / "report.json").read_text())["trial"] == 0


def test_two_exports_into_one_folder_at_once_leave_one_whole_export(searched_run) -> None:
    out = searched_run.parent / "together"
    procs = [start_export(searched_run, trial, out) for trial in (0, 1)]
    for proc in procs:
        _, err = proc.communicate(timeout=240)
        assert proc.returncode == 0, err.decode()
    report = json.loads((out / "report.json").read_text())
    stored = torch.load(out / "model.pt", weights_only=True)
    assert stored["meta"]["report"]["trial"] == report["trial"]  # one trial's files, not a mix
    assert stored["sha256"] == report["state_dict_sha256"]
    policy = yaml.safe_load((out / "policy.yaml").read_text())
    assert policy == report["policy"] and (out / "model.onnx").is_file()
    assert (out / "weights.bin").stat().st_size == report["size_bytes"]
    assert not [p.name for p in out.parent.iterdir() if p.name.startswith(".together")]


def test_a_full_disk_during_export_leaves_the_previous_one_whole(
    searched_run, capsys, monkeypatch
) -> None:
    out = searched_run.parent / "full-disk"
    assert main(["export", str(searched_run), "--trial", "0", "--out", str(out)]) == 0
    before = outputs(out)

    def no_space(*args, **kwargs):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(out / "model.onnx"))

    monkeypatch.setattr(torch.onnx, "export", no_space)
    capsys.readouterr()
    assert main(["export", str(searched_run), "--trial", "1", "--out", str(out)]) == 1
    assert "no space left" in one_line_error(capsys)
    assert outputs(out) == before
    assert not [p.name for p in out.parent.iterdir() if p.name.startswith(".full-disk")]


@pytest.fixture
def small_disk(tmp_path):
    """A tmpfs of a given size, mounted for the test (root only); yields a mount function."""
    mounted: list[Path] = []

    def mount(size: int) -> Path:
        point = tmp_path / f"disk{len(mounted)}"
        point.mkdir()
        done = subprocess.run(
            ["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(point)],
            capture_output=True,
        )
        if done.returncode != 0:
            pytest.skip("cannot mount a tmpfs here (needs root)")
        mounted.append(point)
        return point

    if os.geteuid() != 0:
        pytest.skip("mounting a small disk needs root")
    yield mount
    for point in mounted:
        # lazily: the in-process search may still hold its SQLite file open on the disk
        subprocess.run(["umount", "--lazy", str(point)], check=False)


def test_a_real_full_disk_during_export_leaves_the_previous_one_whole(
    searched_run, small_disk, capsys
) -> None:
    """On a tmpfs with room for one export and a half, the second export runs out of space
    while writing its files beside the first: one line, exit 1, the first export untouched."""
    probe = searched_run.parent / "probe"
    assert main(["export", str(searched_run), "--trial", "0", "--out", str(probe)]) == 0
    pages = sum(-(-p.stat().st_size // 4096) * 4096 for p in probe.iterdir())
    disk = small_disk(pages * 3 // 2 + 16384)
    out = disk / "export"
    assert main(["export", str(searched_run), "--trial", "0", "--out", str(out)]) == 0
    before = outputs(out)
    capsys.readouterr()
    assert main(["export", str(searched_run), "--trial", "1", "--out", str(out)]) == 1
    assert "no space left" in one_line_error(capsys)
    assert outputs(out) == before
    assert [p.name for p in disk.iterdir()] == ["export"]  # no partial folder, no stray file


def test_a_disk_that_fills_during_a_search_is_one_line_and_keeps_the_trials(
    write_config, small_disk, capsys
) -> None:
    disk = small_disk(200 * 1024)  # the base model (32 kB) and a few dozen trials' records
    config = write_config({**SEARCH, "search": {"trials": 500, "uniform": 1}})
    config.write_text(config.read_text().replace(str(config.parent / "runs"), str(disk)))
    assert main(["search", str(config)]) == 1
    err = one_line_error(capsys)
    assert "database or disk is full" in err and "run the same command to resume" in err
    import optuna

    db = disk / "digits-test" / "study.db"
    study = optuna.load_study(study_name="digits-test", storage=f"sqlite:///{db}")
    assert len([t for t in study.get_trials() if t.state.is_finished()]) > 3


def test_out_naming_a_file_or_a_foreign_folder_is_refused_before_any_work(
    write_config, tmp_path, capsys
) -> None:
    config = write_config()
    policy = tmp_path / "policy.yaml"
    policy.write_text(POLICY)
    a_file = tmp_path / "notes.txt"
    a_file.write_text("mine")
    foreign = tmp_path / "photos"
    foreign.mkdir()
    (foreign / "cat.jpg").write_bytes(b"meow")
    for out, message in ((a_file, "is a file"), (foreign, "--force")):
        assert main(["apply", str(config), "--policy", str(policy), "--out", str(out)]) == 2
        assert message in one_line_error(capsys)
    assert not (tmp_path / "runs").exists()  # refused before the base model was trained
    assert a_file.read_text() == "mine" and outputs(foreign) == {"cat.jpg": b"meow"}
    argv = ["apply", str(config), "--policy", str(policy), "--out", str(foreign), "--force"]
    assert main([*argv, "--set", "finetune.steps=3"]) == 0
    assert (foreign / "model.pt").is_file() and not (foreign / "cat.jpg").exists()


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes into read-only folders")
def test_an_unwritable_out_is_refused_before_any_work(write_config, tmp_path, capsys) -> None:
    locked = tmp_path / "locked"
    locked.mkdir(mode=0o555)
    policy = tmp_path / "policy.yaml"
    policy.write_text(POLICY)
    argv = ["apply", str(write_config()), "--policy", str(policy), "--out", str(locked / "o")]
    assert main(argv) == 2
    assert "permission denied" in one_line_error(capsys)
    assert not (tmp_path / "runs").exists()


# ---------------------------------------------------------------------------------------------
# 6. A refused command changes nothing


def test_a_refused_search_trains_nothing_and_keeps_the_run_config(searched_run, capsys) -> None:
    config = searched_run.parent.parent / "config.yaml"
    recorded = searched_run / "config.yaml"
    before = recorded.read_bytes()
    bases = sorted(searched_run.glob("base-*.pt"))
    other_space = ["--set", "space.rules=[{prune: [0.0, 0.5]}, {rank: [0.3, 1.0]}]"]
    argv = ["search", str(config), *other_space, "--set", "train.epochs=4"]
    assert main(argv) == 2
    assert "another search space" in one_line_error(capsys)
    assert recorded.read_bytes() == before
    assert sorted(searched_run.glob("base-*.pt")) == bases  # no base trained for epochs=4


# ---------------------------------------------------------------------------------------------
# 8. Reports are written whole, and a full disk is one line


def test_a_full_disk_while_writing_the_pareto_report_is_one_line(
    searched_run, capsys, monkeypatch
) -> None:
    import plotly.graph_objects as go

    html = searched_run / "pareto.html"
    assert main(["pareto", str(searched_run)]) == 0
    before = html.read_bytes()

    def fill_disk(self, path, **kwargs):
        Path(path).write_text("<html>half a pl")
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(path))

    monkeypatch.setattr(go.Figure, "write_html", fill_disk)
    capsys.readouterr()
    assert main(["pareto", str(searched_run)]) == 1
    assert "no space left" in one_line_error(capsys)
    assert html.read_bytes() == before
    assert not [p for p in searched_run.iterdir() if p.name.endswith(".tmp")]


# ---------------------------------------------------------------------------------------------
# 9. Tampered checkpoints are detected


def test_a_checkpoint_with_altered_weights_is_refused(tmp_path) -> None:
    from autocompress.models import build_model

    model = build_model({"name": "lenet300_100", "args": {}})
    path = tmp_path / "model.pt"
    save_checkpoint(path, model, {"name": "lenet300_100", "args": {}})
    autocompress.load(path)  # intact: loads

    # one flipped byte inside a weight's bytes (found by its exact contents)
    blob = bytearray(path.read_bytes())
    weight = model.state_dict()["fc1.weight"].numpy().tobytes()
    at = blob.find(weight[:64])
    assert at > 0
    blob[at + 10] ^= 0xFF
    flipped = tmp_path / "flipped.pt"
    flipped.write_bytes(bytes(blob))
    with pytest.raises(CheckpointError):
        autocompress.load(flipped)

    # an edited tensor in an otherwise valid file
    payload = torch.load(path, weights_only=True)
    payload["state_dict"]["fc1.weight"][0, 0] += 1.0
    edited = tmp_path / "edited.pt"
    torch.save(payload, edited)
    with pytest.raises(CheckpointError, match="content hash"):
        autocompress.load(edited)
