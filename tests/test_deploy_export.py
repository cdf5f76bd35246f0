"""``python -m repro export`` and the TensorRT plugin graphs, checked on the CPU: ONNX Runtime runs
the exported file and agrees with eager PyTorch; the plugin graph names its custom node as
TensorRT's ONNX parser expects (op type, namespace, attributes) with the right shapes around it;
``engine`` says why it cannot build without a GPU."""
from __future__ import annotations

import json

import pytest
import torch

from repro.cli import main
from repro.deploy.check import MAX_ABS_DIFF, custom_ops, export_and_check
from repro.layers.kernel_head import CombinationClassifier
from repro.ops.trajectory_conv import PLUGIN_NAMESPACE, PLUGIN_OP_TYPE, TrajectoryConv3d

onnx = pytest.importorskip("onnx")
pytest.importorskip("onnxruntime")


class _Trajectory(torch.nn.Module):
    """stem Conv3d -> trajectory conv (Δt = 1) -> pooled logits."""

    def __init__(self, channels: int = 4):
        super().__init__()
        torch.manual_seed(0)
        self.stem = torch.nn.Conv3d(3, channels, 3, padding=1)
        self.traj = TrajectoryConv3d(channels, 5, 3)

    def forward(self, video, flow_fwd, flow_bwd):
        return self.traj(self.stem(video), flow_fwd, flow_bwd).mean(dim=(2, 3, 4))


def _inputs():
    g = torch.Generator().manual_seed(0)
    video = torch.randn(1, 3, 5, 6, 7, generator=g)
    flow = torch.randn(1, 2, 5, 6, 7, generator=g)
    return video, flow, -flow


def test_export_and_check_agrees_with_eager(tmp_path):
    report = export_and_check(_Trajectory(), _inputs(), tmp_path / "t.onnx", input_names=["video", "flow_fwd", "flow_bwd"])
    assert report["ok"] and report["ort_ok"] and report["max_abs_diff"] < 1e-5
    assert report["custom_ops"] == {} and report["nodes"]["Gather"] >= 1  # the trajectory taps: row gathers
    assert report["inputs"]["video"] == ["batch", 3, 5, 6, 7] and report["outputs"]["output"] == ["batch", 5]
    assert report["opset"]["ai.onnx"] == report["opset_expected"] == 17


def test_plugin_graph_structure(tmp_path):
    from repro.deploy.tensorrt.engine import export_onnx_with_plugin, prepare_onnx

    model = _Trajectory().eval()
    raw, ready = tmp_path / "raw.onnx", tmp_path / "ready.onnx"
    export_onnx_with_plugin(model, _inputs(), str(raw), ["video", "flow_fwd", "flow_bwd"], ["logits"])
    graph = onnx.shape_inference.infer_shapes(onnx.load(str(raw))).graph
    (node,) = [n for n in graph.node if n.op_type == PLUGIN_OP_TYPE]
    attrs = {a.name: onnx.helper.get_attribute_value(a) for a in node.attribute}
    assert node.domain == PLUGIN_NAMESPACE == "repro"
    assert attrs == {"dt": 1, "plugin_namespace": b"repro", "plugin_version": b"1"}
    # inputs: the stem's output (N, C, T, H, W) and the two flows as given
    stem_conv = next(n for n in graph.node if n.output[0] == node.input[0])
    assert stem_conv.op_type == "Conv" and list(node.input[1:]) == ["flow_fwd", "flow_bwd"]
    shapes = {v.name: [d.dim_value for d in v.type.tensor_type.shape.dim] for v in graph.value_info}
    assert shapes[node.output[0]] == [1, 5, 3, 4, 6, 7]  # (N, T, K, C, H, W)
    # then Reshape to (N*T, K*C, H, W) and the 1x1 Conv of Eq. 1 with weight (C_out, K*C, 1, 1)
    (reshape,) = [n for n in graph.node if node.output[0] in n.input]
    assert reshape.op_type == "Reshape"
    conv = next(n for n in graph.node if reshape.output[0] in n.input)
    weight = next(i for i in graph.initializer if i.name == conv.input[1])
    assert conv.op_type == "Conv" and list(weight.dims) == [5, 3 * 4, 1, 1]
    assert custom_ops(graph) == {"repro::trajectory_sample": 1}
    # prepared for the parser: default domain, op type = plugin name, plugin_namespace kept, aot=1
    assert prepare_onnx(str(raw), str(ready), aot=True) == 1
    (marked,) = [n for n in onnx.load(str(ready)).graph.node if n.op_type == PLUGIN_OP_TYPE]
    marked_attrs = {a.name: onnx.helper.get_attribute_value(a) for a in marked.attribute}
    assert marked.domain == "" and marked_attrs["aot"] == 1 and marked_attrs["plugin_namespace"] == b"repro"
    assert custom_ops(onnx.load(str(ready)).graph) == {"repro::trajectory_sample": 1}


def test_plugin_sampler_is_restored_and_values_unchanged():
    from repro.deploy.tensorrt.engine import plugin_samplers

    model = _Trajectory().eval()
    with torch.no_grad():
        before = model(*_inputs())
        with plugin_samplers(model) as count:
            assert count == 1 and model.traj.sampler == "trt_plugin"
            torch.testing.assert_close(model(*_inputs()), before, atol=1e-5, rtol=1e-5)
    assert model.traj.sampler == "gather"


def test_cli_export_reports_max_abs_diff(tmp_path, capsys):
    out = tmp_path / "s3d.onnx"
    code = main(["export", "s3d_resnet18", "--input", "1x3x4x32x32", "--arg", "num_classes=7", "--out", str(out),
                 "--format", "json"])
    report = json.loads(capsys.readouterr().out)
    assert code == 0 and out.is_file()
    assert report["model"] == "s3d_resnet18" and report["input_shape"] == [1, 3, 4, 32, 32]
    assert report["ok"] and report["max_abs_diff"] <= 1e-3 and report["custom_ops"] == {}
    assert report["outputs"]["output"] == ["batch", 7]


def test_cli_export_plugins_lists_the_custom_op(tmp_path, capsys):
    code = main(["export", "trajectorynet:table3:trajectory_dim4", "--input", "1x3x4x32x32", "--plugins",
                 "--arg", "num_classes=3", "--out", str(tmp_path / "t.onnx"), "--format", "json"])
    report = json.loads(capsys.readouterr().out)
    assert code == 0 and report["custom_ops"] == {"repro::trajectory_sample": 1} and report["ort_ok"] is None


def test_cli_engine_says_why_it_cannot_build(tmp_path, capsys):
    if torch.cuda.is_available():
        pytest.skip("a GPU is present")
    code = main(["engine", "--demo", "--out", str(tmp_path / "x.engine")])
    err = capsys.readouterr().err
    assert code == 2 and "GPU" in err and err.count("\n") == 1


def test_cost_volume_plugin_graph_structure(tmp_path):
    """Dynamics' cost volume + soft-argmax exports as one plugin node with its attributes."""
    from repro.deploy.onnx import export_onnx
    from repro.deploy.tensorrt.cost_volume import PLUGIN_OP_TYPE, cost_volume_displacement_plugin
    from repro.deploy.tensorrt.plugins import PLUGIN_OP_TYPES
    from repro.ops.cost_volume import cost_volume_displacement

    class Head(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.embed = torch.nn.Conv2d(3, 8, 1)

        def forward(self, a, b):
            return cost_volume_displacement_plugin(self.embed(a), self.embed(b), 2, 0.5)

    torch.manual_seed(0)
    model = Head().eval()
    a, b = torch.randn(1, 3, 6, 7), torch.randn(1, 3, 6, 7)
    with torch.no_grad():  # same values as the op it exports
        torch.testing.assert_close(model(a, b), cost_volume_displacement(model.embed(a), model.embed(b), 2, 0.5))
    path = export_onnx(model, (a, b), tmp_path / "cv.onnx", input_names=["a", "b"], output_names=["disp"],
                       dynamic_batch=False, custom_opsets={PLUGIN_NAMESPACE: 1})
    graph = onnx.load(str(path)).graph
    (node,) = [n for n in graph.node if n.op_type == PLUGIN_OP_TYPE]
    attrs = {a.name: onnx.helper.get_attribute_value(a) for a in node.attribute}
    assert PLUGIN_OP_TYPE in PLUGIN_OP_TYPES and node.domain == "repro"
    assert attrs["max_disp"] == 2 and attrs["mask_outside"] == 1 and attrs["inv_tau"] == pytest.approx(2.0)
    assert attrs["plugin_namespace"] == b"repro" and attrs["eps"] > 0
    assert all(next(n for n in graph.node if n.output[0] == i).op_type == "Conv" for i in node.input)
    assert [d.dim_value for d in graph.output[0].type.tensor_type.shape.dim] == [1, 2, 6, 7]
    assert custom_ops(graph) == {"repro::cost_volume_softargmax": 1}


def test_cli_export_lgd_stage2_tensor_sketch(tmp_path, capsys):
    """LGD-3D stage 2 (Tensor Sketch head: rfft, complex product, irfft) exports at opset 17 as
    real arithmetic and ONNX DFT nodes, and ONNX Runtime agrees with eager PyTorch within the
    absolute 1e-3 (its logits are O(1): W_c's data-dependent scale, repro.layers.kernel_head)."""
    out = tmp_path / "lgd.onnx"
    code = main(["export", "lgd3d_resnet50", "--arg", "stage=2", "--arg", "num_classes=5", "--input", "1x3x8x32x32",
                 "--out", str(out), "--format", "json"])
    report = json.loads(capsys.readouterr().out)
    assert code == 0 and report["ok"] and report["custom_ops"] == {}
    assert report["nodes"]["DFT"] == 6  # local half: 2 rfft + 1 irfft of the mean spectrum; global half: 2 + 1
    assert report["tolerance"] == MAX_ABS_DIFF == 1e-3 and report["max_abs_diff"] <= 1e-4
    assert report["outputs"]["output"] == ["batch", 5]


class _Head(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.head = CombinationClassifier(8, 5, sketch_dim=30)

    def forward(self, x_local, x_global):
        return self.head(x_local, x_global)


def test_export_onnx_runs_a_pending_initialisation_before_the_trace(tmp_path):
    """A fresh combination classifier sets W_c's scale on its first forward: export_onnx runs that
    forward eagerly first, so the graph holds the weights eager PyTorch then computes with."""
    import onnxruntime as ort

    from repro.deploy.onnx import export_onnx

    torch.manual_seed(0)
    model = _Head().eval()
    x, g = 50 * torch.randn(2, 8, 3, 4, 4), 50 * torch.randn(2, 8)
    export_onnx(model, (x, g), tmp_path / "head.onnx", input_names=["x", "g"])
    assert not model.head.scale_pending
    (got,) = ort.InferenceSession(str(tmp_path / "head.onnx")).run(None, {"x": x.numpy(), "g": g.numpy()})
    with torch.no_grad():
        expected = model(x, g)
    assert expected.abs().max() < 10  # O(1) logits from features of RMS ~50
    assert abs(got - expected.numpy()).max() <= 1e-4


class _Unsupported(torch.nn.Module):
    def forward(self, x):
        return torch.fft.rfft(x).abs()  # complex: aten::fft_rfft has no opset-17 symbolic


def test_unsupported_operator_is_one_line_naming_model_and_operator(tmp_path, capfd, monkeypatch):
    import repro.deploy.commands as commands
    from repro.deploy.onnx import ExportError, export_onnx

    torch._C._jit_set_onnx_log_enabled(True)  # as any plain torch.onnx.export in this process leaves it
    with pytest.raises(ExportError) as raised:
        export_onnx(_Unsupported(), torch.randn(2, 8), tmp_path / "u.onnx")
    assert str(raised.value) == "the ONNX exporter cannot express aten::fft_rfft at opset 17"
    assert capfd.readouterr().out == ""  # no TorchScript graph dumped on stdout
    assert not (tmp_path / "u.onnx").exists()

    built = ("tiny", {}, (2, 8), _Unsupported(), (torch.randn(2, 8),), ["x"])
    monkeypatch.setattr(commands, "_build", lambda args: built)
    code = main(["export", "tiny", "--out", str(tmp_path / "u.onnx")])
    captured = capfd.readouterr()
    assert code == 2 and captured.out == ""
    expected = "repro: error: export tiny: the ONNX exporter cannot express aten::fft_rfft at opset 17"
    assert captured.err.strip() == expected
    torch._C._jit_set_onnx_log_enabled(False)


def test_exporter_error_lines():
    from torch.onnx.errors import UnsupportedOperatorError

    from repro.deploy.onnx import _export_error

    assert str(_export_error(UnsupportedOperatorError("aten::foo", 17, 18))) == (
        "the ONNX exporter cannot express aten::foo at opset 17 (it can from opset 18; why the project stays "
        "at 17: ONNX_OPSET in repro/deploy/onnx.py)")
