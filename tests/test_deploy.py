"""Integer ONNX: the bits a policy promises are in the deployed file, and it computes what the
simulated model computed (`autocompress apply` on digits, then ONNX Runtime)."""

from __future__ import annotations

import json

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch
import yaml
from onnx import helper

import autocompress
from autocompress.cli import main
from autocompress.cost.latency import onnx_session_options, ort_session_config
from autocompress.data import digits

FACTORY = "tests.tiny_models:tiny_resnet"
W8A8 = {n: {"w_bits": 8, "a_bits": 8} for n in ("stem", "conv_a", "conv_b", "dw", "pw", "head")}
MIXED = {  # 2-, 4- and 8-bit weights, 4- and 8-bit inputs, with pruning, sparsity and low rank
    "stem": {"w_bits": 8, "a_bits": 8},
    "conv_a": {"w_bits": 4, "a_bits": 8, "prune": 0.25},
    "conv_b": {"w_bits": 4, "a_bits": 4},
    "dw": {"w_bits": 8, "a_bits": 8},
    "pw": {"w_bits": 2, "a_bits": 8, "sparsity": 0.5},
    "head": {"w_bits": 4, "a_bits": 8, "rank": 0.3},
}


def run(path, x: np.ndarray, optimise: bool) -> np.ndarray:
    """``path`` run in ONNX Runtime as the report says to open it; without ``optimise`` every
    op as written: the QDQ arithmetic itself, no fused kernels."""
    options = onnx_session_options(optimise=optimise)
    session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    return np.asarray(session.run(None, {"images": x})[0])


@pytest.fixture(scope="module")
def exports(tmp_path_factory) -> dict[str, tuple]:
    """The digits base model compressed by both policies with `apply` (fine-tuned 30 steps)."""
    from tests.conftest import DIGITS_CONFIG

    tmp = tmp_path_factory.mktemp("deploy")
    config = {**DIGITS_CONFIG, "runs_root": str(tmp / "runs"), "finetune": {"steps": 30}}
    (tmp / "config.yaml").write_text(yaml.safe_dump(config))
    out = {}
    for name, layers in (("w8a8", W8A8), ("mixed", MIXED)):
        policy = tmp / f"{name}.yaml"
        policy.write_text(yaml.safe_dump({"model": "tiny_resnet", "layers": layers}))
        folder = tmp / name
        argv = ["apply", str(tmp / "config.yaml"), "--policy", str(policy), "--out", str(folder)]
        assert main(argv) == 0
        report = json.loads((folder / "report.json").read_text())
        model = autocompress.load(folder / "model.pt", allow_factories=[FACTORY])
        out[name] = (folder, report, model)
    return out


@pytest.mark.parametrize("name", ["w8a8", "mixed"])
def test_the_integer_file_computes_what_the_simulated_model_did(exports, name) -> None:
    folder, report, model = exports[name]
    x, y = digits.load("")[2:]
    with torch.no_grad():
        simulated = model(x).numpy()
    exact = run(folder / "model.onnx", x.numpy(), optimise=False)
    # the same arithmetic op for op, up to float rounding where the exporter folded a BatchNorm
    # into its convolution: a value on a rounding boundary may take the next level (measured:
    # 0 to 1 of the 360 digits)
    same = np.isclose(exact, simulated, atol=1e-4).all(axis=1)
    assert same.mean() >= 0.99
    accuracy = float((exact.argmax(1) == y.numpy()).mean())
    assert abs(accuracy - report["accuracy"]) <= 1 / len(y) + 1e-9
    # ONNX Runtime's fused integer kernels quantize biases and requantize in their own order:
    # rare flips at rounding boundaries too (measured: 0 to 1 of 360 digits until 2026-12-01;
    # 4 of 360 on the mixed policy with the packages installed on 2026-12-02, the code
    # unchanged and ONNX Runtime 1.31.1 or 1.32.0 alike). The op-for-op check above is exact.
    fused = run(folder / "model.onnx", x.numpy(), optimise=True)
    assert (fused.argmax(1) == simulated.argmax(1)).mean() >= 0.98


def test_integer_weights_and_inputs_are_in_the_file(exports) -> None:
    folder, report, _ = exports["mixed"]
    graph = onnx.load(str(folder / "model.onnx")).graph
    int8 = {i.name for i in graph.initializer if i.data_type == onnx.TensorProto.INT8}
    assert {"model.stem.weight_int8", "model.pw.weight_int8"} <= int8
    # the 4-bit linear factors are stored packed, two codes a byte, in ONNX Runtime's op
    nbits = [n for n in graph.node if n.op_type == "MatMulNBits"]
    assert len(nbits) == 2
    assert all(
        helper.get_attribute_value(a) == 4 for n in nbits for a in n.attribute if a.name == "bits"
    )
    quantizers = [n for n in graph.node if n.op_type == "QuantizeLinear"]
    copies = [n for n in quantizers if n.output[0].endswith("_q")]  # moved to a layer's output
    assert len(quantizers) - len(copies) == 7  # one per weight layer (the low-rank head has two)
    layers = report["onnx"]["layers"]
    assert layers["model.pw"]["weights"].startswith("int8, 2-bit codes")
    assert layers["model.conv_b"]["inputs"].startswith("uint8, 4-bit levels")
    assert layers["model.head.first"]["weights"].startswith("4-bit packed (MatMulNBits")
    assert report["onnx_bytes"] == (folder / "model.onnx").stat().st_size
    # how to open it so that it computes this: exact integer kernels on x86 CPUs without VNNI,
    # the faster defaults (exact there) with VNNI; and the rule for the machine it goes to
    assert report["onnx"]["session_config"] == ort_session_config()
    assert "session.x64quantprecision=1" in report["onnx"]["session_config_rule"]


def test_the_integer_file_stores_about_a_quarter_of_the_float_weights(exports, tmp_path) -> None:
    _, report, model = exports["w8a8"]
    from autocompress.compress.layers import folded
    from autocompress.export import write_onnx
    from autocompress.inputs import Inputs

    float_file = tmp_path / "float.onnx"
    write_onnx(folded(model, float_inputs=True).eval(), float_file, Inputs.images((1, 8, 8)))

    def stored(path) -> int:  # initializer bytes: the exporter's metadata is the same in both
        return sum(len(i.raw_data) for i in onnx.load(str(path)).graph.initializer)

    integer_file = exports["w8a8"][0] / "model.onnx"
    assert stored(integer_file) < 0.35 * stored(float_file)
    assert report["onnx_bytes"] < float_file.stat().st_size


def test_the_latency_command_measures_both_runtimes(exports, capsys) -> None:
    folder = exports["w8a8"][0]
    assert main(["latency", str(folder), "--batch", "8", "--json"]) == 0
    measured = json.loads(capsys.readouterr().out)
    assert measured["runtime"] == "onnxruntime" and measured["ms"] > 0
    argv = ["latency", str(folder / "model.pt"), "--runtime", "torch", "--batch", "8"]
    assert main([*argv, "--allow-factory", FACTORY, "--compare", str(folder)]) == 0
    assert "ratio:" in capsys.readouterr().out
    other = exports["mixed"][0]
    assert main(["latency", str(folder), "--batch", "8", "--compare", str(other)]) == 0
    assert "runs alternated" in capsys.readouterr().out
    assert main(["latency", str(folder / "missing")]) == 2


def optimised_ops(path, tmp_path) -> list[str]:
    """The ops ONNX Runtime runs for the file at ``path``, after its graph optimisations."""
    options = onnx_session_options()
    options.optimized_model_filepath = str(tmp_path / "optimized.onnx")
    ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    return [n.op_type for n in onnx.load(str(tmp_path / "optimized.onnx")).graph.node]


def w8a8_export(
    model, sample: tuple[int, ...], tmp_path, skip: int = 0
) -> tuple[torch.nn.Module, list[str]]:
    """``model`` at W8A8 on every layer but its first ``skip`` (ranges calibrated on random
    batches), written as its deployed ``model.onnx``; returns the simulated model and the ops
    ONNX Runtime runs. Checks
    that the file computes what the simulation does, and ONNX Runtime's fused kernels nearly
    so (a value on a rounding boundary may take the next level: at most 1 in 64 here)."""
    from autocompress.export import write_deployed_onnx
    from autocompress.inputs import Inputs

    torch.manual_seed(0)
    example = torch.zeros(1, *sample)
    profile = autocompress.profile(model.eval(), example, name="model")
    policy = autocompress.Policy(
        "model",
        {n: autocompress.LayerChoice(w_bits=8, a_bits=8) for n in list(profile.layers)[skip:]},
    )
    calibration = [torch.randn(32, *sample) for _ in range(3)]
    small = autocompress.compress(model, policy, example, calibration=calibration).eval()
    path = tmp_path / "model.onnx"
    write_deployed_onnx(small, policy, path, Inputs((example,)))

    ops = optimised_ops(path, tmp_path)

    x = torch.randn(64, *sample)
    with torch.no_grad():
        simulated = small(x).numpy()
    exact = run(path, x.numpy(), optimise=False)
    assert np.isclose(exact, simulated, atol=1e-4).all(axis=1).mean() >= 0.95
    fused = run(path, x.numpy(), optimise=True)
    assert (fused.argmax(1) == simulated.argmax(1)).mean() >= 0.95
    return small, ops


def test_residual_adds_between_integer_layers_run_as_integer_kernels(tmp_path) -> None:
    """A W8A8 ResNet deploys as integer kernels end to end: the operands of its residual adds
    are quantized in the simulation and the file alike, so ONNX Runtime fuses every
    convolution into QLinearConv and the adds into QLinearAdd (only layer inputs quantized, the
    convolutions before an add ran in float: ResNet-20 1.7x slower than the float model)."""
    from autocompress.models.resnet_cifar import ResNetCifar

    model = ResNetCifar(depth=8, width=0.5, input_size=16)
    _, ops = w8a8_export(model, (3, 16, 16), tmp_path)
    convs = sum(isinstance(m, torch.nn.Conv2d) for m in model.modules())
    assert ops.count("QLinearConv") == convs and "Conv" not in ops and "FusedConv" not in ops
    assert ops.count("QLinearAdd") == 2  # of 3: the last add feeds the float pooling


def test_a_three_channel_integer_convolution_reads_its_input_padded_to_four(tmp_path) -> None:
    """ONNX Runtime's QLinearConv runs a 3-input-channel convolution faster with its input
    padded to 4 channels (0.59x on ResNet-20's first layer, RESULTS.md): the file pads the
    quantized images with the zero point and stores zero weights for the added channel, so
    ``w8a8_export`` finds it computing what the simulation does, still as integer kernels."""
    from autocompress.models.resnet_cifar import ResNetCifar

    model = ResNetCifar(depth=8, width=0.5, input_size=16)
    _, ops = w8a8_export(model, (3, 16, 16), tmp_path)
    assert ops.count("QLinearConv") == sum(isinstance(m, torch.nn.Conv2d) for m in model.modules())
    proto = onnx.load(str(tmp_path / "model.onnx"))
    inits = {i.name: onnx.numpy_helper.to_array(i) for i in proto.graph.initializer}
    first = next(n for n in proto.graph.node if n.op_type == "Conv")
    weight = next(n for n in proto.graph.node if n.output[0] == first.input[1])
    codes = inits[weight.input[0]]
    assert codes.shape[1] == 4 and not codes[:, 3].any()  # the added channel: zero weights
    pad = next(n for n in proto.graph.node if n.op_type == "Pad")
    assert first.input[0] in {
        o for n in proto.graph.node if pad.output[0] in n.input for o in n.output
    }
    # the other convolutions (8 input channels and more) are written as they were
    four = [a for a in inits.values() if a.ndim == 4 and a.shape[1] == 4]
    assert len(four) == 1


class TwoStems(torch.nn.Module):
    """Two convolutions reading the same RGB image: each gets its own padded input."""

    def __init__(self) -> None:
        super().__init__()
        self.a = torch.nn.Conv2d(3, 8, 3, padding=1)
        self.b = torch.nn.Conv2d(3, 8, 3, padding=1)
        self.head = torch.nn.Linear(16 * 8 * 8, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = torch.cat([torch.relu(self.a(x)), torch.relu(self.b(x))], 1)
        return self.head(torch.flatten(y, 1))


def test_two_convolutions_reading_one_image_are_both_padded(tmp_path) -> None:
    w8a8_export(TwoStems(), (3, 8, 8), tmp_path)  # checks the values
    written = [n.op_type for n in onnx.load(str(tmp_path / "model.onnx")).graph.node]
    assert written.count("Pad") == 2


def test_convolutions_before_max_pooling_run_as_integer_kernels(tmp_path) -> None:
    """LeNet-5 pools its convolutions' outputs before the next layer quantizes them: the export
    writes that quantizer at the convolution's output too (the same values: max pooling
    commutes with it), so ONNX Runtime runs both convolutions as QLinearConv and the pooling on
    uint8 — before, they ran as float convolutions with their weights dequantized every call."""
    from autocompress.models import ZOO

    _, ops = w8a8_export(ZOO["lenet5"](), (1, 28, 28), tmp_path)
    assert ops.count("QLinearConv") == 2 and "Conv" not in ops and "FusedConv" not in ops
    assert "MaxPool" not in ops  # on uint8 (NhwcMaxPool), not dequantized for a float one


def test_max_pooling_after_a_float_layer_stays_float(tmp_path) -> None:
    """LeNet-5 with its first convolution float: the second one's quantizer follows the max
    pooling, and ONNX Runtime would move it in front of the pooling, which then runs on uint8
    in NCHW layout (a slow generic kernel: the file at 0.92x its float file's latency against
    0.46x, RESULTS.md). The export holds the quantizer there with a ``Max`` at its lowest level,
    which changes no value (``w8a8_export`` checks the file against the simulation)."""
    from autocompress.models import ZOO

    _, ops = w8a8_export(ZOO["lenet5"](), (1, 28, 28), tmp_path, skip=1)
    written = [n.op_type for n in onnx.load(str(tmp_path / "model.onnx")).graph.node]
    assert written[:3] == ["Conv", "MaxPool", "Max"] and written[3] == "QuantizeLinear"
    assert ops.count("QLinearConv") == 1
    # the first pooling runs before the first quantizer: in float, on the float layer's output
    assert ops.index("MaxPool") < ops.index("QuantizeLinear")


def test_a_residual_add_with_a_float_operand_stays_float() -> None:
    """The identity operand is quantized only through an 8-bit integer layer reading it: with
    that layer's inputs left float, the add and the layer before it keep their float form."""
    from autocompress.models.resnet_cifar import ResNetCifar

    model = ResNetCifar(depth=8, width=0.5, input_size=16).eval()
    example = torch.zeros(1, 3, 16, 16)
    profile = autocompress.profile(model, example, name="resnet8")
    layers = {n: autocompress.LayerChoice(w_bits=8, a_bits=8) for n in profile.layers}
    layers["layer1.0.conv1"] = autocompress.LayerChoice(w_bits=8)  # float inputs
    policy = autocompress.Policy("resnet8", layers)
    small = autocompress.compress(model, policy, example, calibration=[torch.randn(8, 3, 16, 16)])
    quantized = {n for n, m in small.named_modules() if "output_quant" in m._modules}
    assert "layer1.0.bn2" not in quantized and "layer2.0.bn2" in quantized


@pytest.mark.parametrize("bits", [2, 3])  # 4-bit: the mixed policy's head, above
def test_low_bit_linear_layers_are_packed_and_compute_the_simulated_values(bits, tmp_path) -> None:
    """Linear layers with 2–4-bit codes are stored 2 or 4 bits a weight in ONNX Runtime's
    MatMulNBits (a 3-bit code in a 4-bit container), as a weight-only layer (float inputs) and
    behind 8-bit inputs; the file computes what the simulation does and is smaller than int8."""
    from autocompress.export import write_deployed_onnx
    from autocompress.inputs import Inputs

    torch.manual_seed(0)
    model = torch.nn.Sequential(
        torch.nn.Linear(256, 64), torch.nn.ReLU(), torch.nn.Linear(64, 10, bias=False)
    ).eval()
    example = torch.zeros(1, 256)
    profile = autocompress.profile(model, example, name="mlp")
    first, second = profile.layers
    policy = autocompress.Policy(
        "mlp",
        {
            first: autocompress.LayerChoice(w_bits=bits),  # weights only
            second: autocompress.LayerChoice(w_bits=bits, a_bits=8),
        },
    )
    small = autocompress.compress(model, policy, example, calibration=[torch.randn(32, 256)])
    path = tmp_path / "model.onnx"
    report = write_deployed_onnx(small.eval(), policy, path, Inputs((example,)))
    container = 2 if bits == 2 else 4
    nodes = onnx.load(str(path)).graph.node
    nbits = [n for n in nodes if n.op_type == "MatMulNBits"]
    assert len(nbits) == 2
    assert {
        helper.get_attribute_value(a) for n in nbits for a in n.attribute if a.name == "bits"
    } == {container}
    assert all(
        f.startswith(f"{container}-bit packed")
        for f in (layer["weights"] for layer in report["layers"].values())
    )
    assert report["layers"][first]["inputs"] == "float"
    assert report["layers"][second]["inputs"].startswith("uint8, 8-bit levels")

    x = torch.randn(64, 256)
    with torch.no_grad():
        simulated = small(x).numpy()
    session = ort.InferenceSession(str(path), onnx_session_options())
    deployed = session.run(None, {session.get_inputs()[0].name: x.numpy()})[0]
    assert np.isclose(deployed, simulated, atol=1e-4).all(axis=1).mean() >= 0.95
    # against the same layers at 8 bits: one byte a weight
    int8 = autocompress.Policy(
        "mlp", {n: autocompress.LayerChoice(w_bits=8) for n in (first, second)}
    )
    int8_path = tmp_path / "int8.onnx"
    write_deployed_onnx(
        autocompress.compress(model, int8, example).eval(), int8, int8_path, Inputs((example,))
    )

    def stored(path) -> int:
        return sum(len(i.raw_data) for i in onnx.load(str(path)).graph.initializer)

    assert stored(path) < (0.3 if container == 2 else 0.55) * stored(int8_path)


def test_float_weights_behind_quantized_inputs_stay_float_in_the_runtime(tmp_path) -> None:
    """A layer that keeps float weights but quantizes its inputs (``a_bits`` 8, ``w_bits`` 32)
    runs with its float weights: given ``DequantizeLinear → Conv`` ONNX Runtime would quantize
    them to int8 itself (outputs off by 2% of their range on LeNet-5), so the export
    dequantizes such inputs with plain arithmetic and the file computes what the report says."""
    from autocompress.export import write_deployed_onnx
    from autocompress.inputs import Inputs
    from autocompress.models import ZOO

    torch.manual_seed(0)
    model = ZOO["lenet5"]().eval()
    example = torch.zeros(1, 1, 28, 28)
    policy = autocompress.Policy(
        "lenet5",
        {
            "conv1": autocompress.LayerChoice(a_bits=8),
            "conv2": autocompress.LayerChoice(w_bits=8, a_bits=8),
            "fc1": autocompress.LayerChoice(a_bits=8, clusters=16),
            "fc2": autocompress.LayerChoice(a_bits=8),
        },
    )
    calibration = [torch.randn(32, 1, 28, 28)]
    small = autocompress.compress(model, policy, example, calibration=calibration).eval()
    path = tmp_path / "model.onnx"
    write_deployed_onnx(small, policy, path, Inputs((example,)))
    ops = optimised_ops(path, tmp_path)
    # conv2 alone has 8-bit weights: its integer kernel, and no other
    assert ops.count("QLinearConv") == 1 and "QGemm" not in ops

    x = torch.randn(256, 1, 28, 28)
    with torch.no_grad():
        simulated = small(x).numpy()
    deployed = run(path, x.numpy(), optimise=True)
    assert np.isclose(deployed, simulated, atol=1e-3).all(axis=1).mean() >= 0.99
