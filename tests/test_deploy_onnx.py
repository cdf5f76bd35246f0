"""The one ONNX exporter: opset, dynamic batch, fixed shapes on request, and ONNX Runtime agreeing
with eager PyTorch on a trajectory convolution (4-D GridSample) at another batch size."""
from __future__ import annotations

import pytest
import torch

from repro.deploy.onnx import ONNX_OPSET, export_onnx, ort_session
from repro.ops.trajectory_conv import TrajectoryConv3d

onnx = pytest.importorskip("onnx")
pytest.importorskip("onnxruntime")


def _dims(value_info) -> list:
    return [d.dim_param or d.dim_value for d in value_info.type.tensor_type.shape.dim]


class _Trajectory(torch.nn.Module):
    """A trajectory convolution (TrajectoryNet Eq. 1-3) between two 3-D convolutions."""

    def __init__(self, sampler: str = "gather"):
        super().__init__()
        torch.manual_seed(0)
        self.stem = torch.nn.Conv3d(3, 4, 3, padding=1)
        self.traj = TrajectoryConv3d(4, 5, 3, sampler=sampler)
        self.head = torch.nn.Conv3d(5, 2, 1)

    def forward(self, video, flow_fwd, flow_bwd):
        return self.head(self.traj(self.stem(video), flow_fwd, flow_bwd)).mean(dim=(2, 3, 4))


def _inputs(batch: int):
    g = torch.Generator().manual_seed(batch)
    video = torch.randn(batch, 3, 5, 6, 7, generator=g)
    flow = torch.randn(batch, 2, 5, 6, 7, generator=g)
    return video, flow, -flow


@pytest.mark.parametrize("sampler,op", [("gather", "Gather"), ("grid_sample", "GridSample")])
def test_dynamic_batch_graph_runs_any_batch(tmp_path, sampler, op):
    model = _Trajectory(sampler).eval()
    path = export_onnx(model, _inputs(1), tmp_path / "traj.onnx", input_names=["video", "flow_fwd", "flow_bwd"],
                       output_names=["logits"])
    graph = onnx.load(str(path))
    assert {op.domain: op.version for op in graph.opset_import}[""] == ONNX_OPSET == 17
    assert [_dims(i)[0] for i in graph.graph.input] == ["batch"] * 3 and _dims(graph.graph.output[0]) == ["batch", 2]
    # the trajectory sampling: row gathers of the mixed taps, or 4-D GridSample (ranks checked in
    # test_trajectory_conv)
    assert any(n.op_type == op for n in graph.graph.node)
    session = ort_session(path, threads=1)
    video, flow, bwd = _inputs(3)  # another batch size than the example's
    (got,) = session.run(None, {"video": video.numpy(), "flow_fwd": flow.numpy(), "flow_bwd": bwd.numpy()})
    with torch.no_grad():
        expected = model(video, flow, bwd)
    assert got.shape == (3, 2)
    torch.testing.assert_close(torch.from_numpy(got), expected, rtol=1e-3, atol=1e-4)


def test_fixed_shapes_default_names_and_session_threads(tmp_path):
    conv = torch.nn.Conv3d(3, 4, 3, padding=1).eval()
    x = torch.randn(2, 3, 4, 6, 6)
    path = export_onnx(conv, x, tmp_path / "conv.onnx", dynamic_batch=False)
    graph = onnx.load(str(path)).graph
    assert [i.name for i in graph.input] == ["input_0"] and _dims(graph.input[0]) == [2, 3, 4, 6, 6]
    session = ort_session(path, threads=1)
    assert session.get_session_options().intra_op_num_threads == 1
    assert session.get_session_options().inter_op_num_threads == 1
    (got,) = session.run(None, {"input_0": x.numpy()})
    with torch.no_grad():
        torch.testing.assert_close(torch.from_numpy(got), conv(x), rtol=1e-4, atol=1e-5)
    with pytest.raises(Exception):
        session.run(None, {"input_0": torch.randn(1, 3, 4, 6, 6).numpy()})  # batch 2 is baked in
