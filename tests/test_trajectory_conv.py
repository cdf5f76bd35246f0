"""Trajectory convolution (TrajectoryNet Eq. 1-3): fast op vs loop reference, zero-flow identity,
gradients, offsets, module, ONNX export."""
from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from repro.deploy.onnx import export_onnx, ort_session
from repro.ops.trajectory_conv import (
    PLUGIN_NAMESPACE,
    PLUGIN_OP_TYPE,
    TrajectoryConv3d,
    trajectory_conv,
    trajectory_conv_reference,
    trajectory_offsets,
    trajectory_positions,
    trajectory_sample,
)
from repro.ops.warp import bilinear_sample_reference, sample_at, warp_backward


def _inputs(n=2, c=3, t=5, h=6, w=7, scale=1.5, dtype=torch.float64, seed=0):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, c, t, h, w, generator=g, dtype=dtype)
    ff = torch.randn(n, 2, t, h, w, generator=g, dtype=dtype) * scale
    fb = torch.randn(n, 2, t, h, w, generator=g, dtype=dtype) * scale
    return x, ff, fb


# ---------------------------------------------------------------------------------------------
# warp helpers
# ---------------------------------------------------------------------------------------------
def test_sample_at_matches_explicit_bilinear_formula():
    torch.manual_seed(0)
    image = torch.randn(1, 3, 5, 6, dtype=torch.float64)
    pos = torch.rand(1, 4, 4, 2, dtype=torch.float64) * 9 - 2  # partly outside the frame
    fast = sample_at(image, pos)[0]
    ref = bilinear_sample_reference(image[0], pos[0, ..., 0], pos[0, ..., 1])
    torch.testing.assert_close(fast, ref, rtol=1e-12, atol=1e-12)


def test_warp_backward_integer_translation():
    torch.manual_seed(0)
    image = torch.randn(1, 2, 6, 8)
    flow = torch.zeros(1, 2, 6, 8)
    flow[:, 0] = 2.0  # read two pixels to the right
    out = warp_backward(image, flow)
    torch.testing.assert_close(out[..., :-2], image[..., 2:], rtol=1e-5, atol=1e-5)
    assert out[..., -2:].abs().max() == 0  # zeros outside


# ---------------------------------------------------------------------------------------------
# zero flow == temporal conv
# ---------------------------------------------------------------------------------------------
@pytest.mark.parametrize("k", [1, 3, 5])
def test_zero_flow_equals_temporal_conv3d(k):
    x, _, _ = _inputs()
    zero = torch.zeros(x.shape[0], 2, *x.shape[2:], dtype=x.dtype)
    torch.manual_seed(1)
    weight = torch.randn(4, x.shape[1], k, 1, 1, dtype=x.dtype)
    bias = torch.randn(4, dtype=x.dtype)
    expected = F.conv3d(x, weight, bias, padding=(k // 2, 0, 0))
    torch.testing.assert_close(trajectory_conv(x, zero, zero, weight, bias), expected, rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(trajectory_conv_reference(x, zero, zero, weight, bias), expected, rtol=1e-12, atol=1e-12)


def test_zero_flow_float32_module_from_conv3d():
    torch.manual_seed(0)
    conv = torch.nn.Conv3d(8, 6, (3, 1, 1), padding=(1, 0, 0))
    traj = TrajectoryConv3d.from_conv3d(conv)
    x = torch.randn(2, 8, 6, 14, 13)
    zero = torch.zeros(2, 2, 6, 14, 13)
    # float32: equal up to summation order / grid normalisation rounding (float64 is exact to 1e-12 above)
    torch.testing.assert_close(traj(x, zero, zero), conv(x), rtol=1e-5, atol=1e-5)
    assert dict(traj.state_dict()).keys() == dict(conv.state_dict()).keys()


def test_from_conv3d_rejects_spatial_or_strided_conv():
    with pytest.raises(ValueError, match="kernel"):
        TrajectoryConv3d.from_conv3d(torch.nn.Conv3d(4, 4, (3, 3, 3), padding=1))
    with pytest.raises(ValueError, match="stride"):
        TrajectoryConv3d.from_conv3d(torch.nn.Conv3d(4, 4, (3, 1, 1), stride=(2, 1, 1), padding=(1, 0, 0)))


# ---------------------------------------------------------------------------------------------
# fast vs reference: values and gradients
# ---------------------------------------------------------------------------------------------
@pytest.mark.parametrize("k", [3, 5])
def test_fast_matches_reference_values_and_gradients(k):
    x, ff, fb = _inputs(scale=1.5)
    torch.manual_seed(2)
    weight = torch.randn(4, x.shape[1], k, 1, 1, dtype=x.dtype)
    bias = torch.randn(4, dtype=x.dtype)
    upstream = torch.randn(x.shape[0], 4, *x.shape[2:], dtype=x.dtype)

    grads = []
    outs = []
    for fn in (trajectory_conv, trajectory_conv_reference):
        leaves = [t.clone().requires_grad_(True) for t in (x, ff, fb, weight, bias)]
        out = fn(*leaves)
        (out * upstream).sum().backward()
        outs.append(out.detach())
        grads.append([leaf.grad for leaf in leaves])
    torch.testing.assert_close(outs[0], outs[1], rtol=1e-10, atol=1e-10)
    for name, g_fast, g_ref in zip(("x", "flow_fwd", "flow_bwd", "weight", "bias"), *grads):
        torch.testing.assert_close(g_fast, g_ref, rtol=1e-9, atol=1e-9, msg=lambda m: f"grad {name}: {m}")
    # the flows really matter: a different flow changes the output
    assert (outs[0] - trajectory_conv(x, ff * 0, fb * 0, weight, bias)).abs().max() > 1e-2


@pytest.mark.parametrize("k", [1, 3, 5])
def test_fast_inference_matches_reference_in_either_memory_format(k):
    """Inference (no autograd: the per-clip transposed copy) on a batch of 2, channels-first and
    channels_last_3d inputs: same values, and the output keeps the input's memory format."""
    x, ff, fb = _inputs(n=2, c=5, t=4, h=6, w=7, scale=2.5, dtype=torch.float32, seed=5)
    weight = torch.randn(6, 5, k, 1, 1, generator=torch.Generator().manual_seed(6))
    expected = trajectory_conv_reference(x, ff, fb, weight)
    with torch.no_grad():
        out = trajectory_conv(x, ff, fb, weight)
        out_cl = trajectory_conv(x.contiguous(memory_format=torch.channels_last_3d), ff, fb, weight)
    torch.testing.assert_close(out, expected, rtol=1e-4, atol=1e-4)  # float32 rounding
    torch.testing.assert_close(out_cl, expected, rtol=1e-4, atol=1e-4)
    assert out.is_contiguous()
    assert out_cl.is_contiguous(memory_format=torch.channels_last_3d)


def test_inference_weight_copy_follows_weight_changes():
    """The fast path keeps its mixing-weight copy between inference calls: a weight changed in
    place (optimizer step, load_state_dict) or a new weight tensor must be seen on the next call,
    and a weight that needs its gradient is never served from the copy."""
    x, ff, fb = _inputs(n=1, c=4, t=3, h=5, w=6, dtype=torch.float32, seed=9)
    conv = TrajectoryConv3d(4, 5, 3, bias=False)
    with torch.no_grad():
        first = conv(x, ff, fb)
        conv.weight.mul_(2.0)  # in place: a new version of the same tensor
        torch.testing.assert_close(conv(x, ff, fb), 2 * first)
        conv.weight = torch.nn.Parameter(-conv.weight)  # a new tensor
        torch.testing.assert_close(conv(x, ff, fb), -2 * first)
    out = conv(x, ff, fb)
    out.sum().backward()
    assert conv.weight.grad is not None and conv.weight.grad.abs().sum() > 0
    torch.testing.assert_close(out.detach(), trajectory_conv_reference(x, ff, fb, conv.weight.detach()), rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("k", [3, 5])
def test_gradcheck_including_flows(k):
    x, ff, fb = _inputs(n=1, c=2, t=3, h=4, w=4, scale=0.7, seed=3)
    weight = torch.randn(2, 2, k, 1, 1, dtype=torch.float64, generator=torch.Generator().manual_seed(4))
    bias = torch.randn(2, dtype=torch.float64)
    args = tuple(t.clone().requires_grad_(True) for t in (x, ff, fb, weight, bias))
    assert torch.autograd.gradcheck(trajectory_conv, args, eps=1e-6, atol=1e-5)


def test_constant_translation_moves_features():
    # A texture translating by (+1, 0) px per frame with matching flows: the trajectory conv with
    # weights picking the τ=+1 tap reads the *same physical point*, so it reproduces frame t.
    torch.manual_seed(0)
    t_len, h, w = 4, 6, 10
    base = torch.randn(1, 1, h, w + t_len)
    frames = torch.stack([base[..., s : s + w] for s in range(t_len)][::-1], dim=2)  # content moves right
    ff = torch.zeros(1, 2, t_len, h, w)
    ff[:, 0] = 1.0
    fb = -ff
    weight = torch.zeros(1, 1, 3, 1, 1)
    weight[0, 0, 2] = 1.0  # y_t = x_{t+1}(p + 1)
    out = trajectory_conv(frames, ff, fb, weight)
    torch.testing.assert_close(out[:, :, :-1, :, :-1], frames[:, :, :-1, :, :-1], rtol=1e-5, atol=1e-5)
    assert out[:, :, -1].abs().max() == 0  # temporal zero padding


# ---------------------------------------------------------------------------------------------
# trajectories and offsets
# ---------------------------------------------------------------------------------------------
def test_positions_follow_flow_iteratively():
    n, t, h, w = 1, 5, 8, 9
    ff = torch.zeros(n, 2, t, h, w)
    fb = torch.zeros(n, 2, t, h, w)
    ff[:, 0] = 1.0  # +1 px in x per step forward
    fb[:, 1] = -1.0  # -1 px in y per step backward
    pos = trajectory_positions(ff, fb, dt=2)  # (N, T, 5, H, W, 2)
    # pixel (h=4, w=3) of frame 2
    p = pos[0, 2, :, 4, 3]
    expected = torch.tensor([[3.0, 2.0], [3.0, 3.0], [3.0, 4.0], [4.0, 4.0], [5.0, 4.0]])
    torch.testing.assert_close(p, expected)


def test_second_step_reads_flow_bilinearly_at_the_moved_point():
    n, t, h, w = 1, 3, 5, 6
    ff = torch.zeros(n, 2, t, h, w)
    ff[0, 0, 0] = 0.5  # frame 0: move right by half a pixel
    ff[0, 1, 1, :, 2] = 2.0  # frame 1: column 2 moves down by 2, column 3 by 0
    pos = trajectory_positions(ff, torch.zeros_like(ff), dt=2)
    # from (x=2, y=1): step 1 -> (2.5, 1); step 2 reads flow_y of frame 1 at x=2.5 -> 1.0
    torch.testing.assert_close(pos[0, 0, 4, 1, 2], torch.tensor([2.5, 2.0]))


def test_trajectory_offsets_layout():
    x, ff, fb = _inputs(n=1, t=4, dtype=torch.float32)
    off = trajectory_offsets(ff, fb, dt=1)
    assert off.shape == (1, 6, 4, 6, 7)
    assert off[:, 2:4].abs().max() == 0  # centre tap
    torch.testing.assert_close(off[:, 4:6], ff)  # one forward step = the flow itself
    torch.testing.assert_close(off[:, 0:2], fb)


def test_sample_layout_and_padding():
    x, ff, fb = _inputs(n=1, c=2, t=3, dtype=torch.float32)
    s = trajectory_sample(x, ff, fb, dt=1)
    assert s.shape == (1, 3, 3, 2, 6, 7)
    torch.testing.assert_close(s[:, :, 1], x.transpose(1, 2))
    assert s[:, 0, 0].abs().max() == 0 and s[:, -1, 2].abs().max() == 0


def test_bad_inputs_name_the_argument():
    x, ff, fb = _inputs(dtype=torch.float32)
    w = torch.randn(4, 3, 3, 1, 1)
    with pytest.raises(ValueError, match="flow_fwd"):
        trajectory_conv(x, ff[:, :1], fb, w)
    with pytest.raises(ValueError, match="must match x"):
        trajectory_conv(x, ff[..., :3], fb[..., :3], w)
    with pytest.raises(ValueError, match="weight"):
        trajectory_conv(x, ff, fb, torch.randn(4, 3, 2, 1, 1))


# ---------------------------------------------------------------------------------------------
# ONNX
# ---------------------------------------------------------------------------------------------
class _Wrap(torch.nn.Module):
    def __init__(self, sampler="grid_sample"):
        super().__init__()
        torch.manual_seed(0)
        self.conv = TrajectoryConv3d(4, 5, 3, sampler=sampler)

    def forward(self, x, flow_fwd, flow_bwd):
        return self.conv(x, flow_fwd, flow_bwd)


def _export(module, args, path, **kwargs):
    export_onnx(module, args, path, dynamic_batch=False, **kwargs)  # fixed shapes: checked below


def test_onnx_export_4d_gridsample_matches_onnxruntime(tmp_path):
    onnx = pytest.importorskip("onnx")
    pytest.importorskip("onnxruntime")
    x, ff, fb = _inputs(n=1, c=4, t=5, dtype=torch.float32)
    model = _Wrap().eval()
    path = tmp_path / "traj.onnx"
    _export(model, (x, ff, fb), path, input_names=["x", "flow_fwd", "flow_bwd"])
    graph = onnx.shape_inference.infer_shapes(onnx.load(str(path))).graph
    grid_samples = [node for node in graph.node if node.op_type == "GridSample"]
    assert grid_samples, "expected GridSample nodes"
    ranks = {vi.name: len(vi.type.tensor_type.shape.dim) for vi in list(graph.value_info) + list(graph.input)}
    assert all(ranks[node.input[0]] == 4 for node in grid_samples), "5-D GridSample in the graph"
    session = ort_session(path)
    (got,) = session.run(None, {"x": x.numpy(), "flow_fwd": ff.numpy(), "flow_bwd": fb.numpy()})
    with torch.no_grad():
        expected = model(x, ff, fb)
    torch.testing.assert_close(torch.from_numpy(got), expected, rtol=1e-4, atol=1e-4)


def test_onnx_export_gather_path_matches_onnxruntime(tmp_path):
    """The default sampler exports as MatMul + Gather (no GridSample) and runs in ONNX Runtime."""
    onnx = pytest.importorskip("onnx")
    pytest.importorskip("onnxruntime")
    x, ff, fb = _inputs(n=1, c=4, t=5, scale=2.0, dtype=torch.float32)
    model = _Wrap("gather").eval()
    path = tmp_path / "traj_gather.onnx"
    _export(model, (x, ff, fb), path, input_names=["x", "flow_fwd", "flow_bwd"])
    ops = {node.op_type for node in onnx.load(str(path)).graph.node}
    assert "Gather" in ops and "GridSample" not in ops
    (got,) = ort_session(path).run(None, {"x": x.numpy(), "flow_fwd": ff.numpy(), "flow_bwd": fb.numpy()})
    with torch.no_grad():
        expected = model(x, ff, fb)
    torch.testing.assert_close(torch.from_numpy(got), expected, rtol=1e-4, atol=1e-4)


def test_onnx_export_plugin_node(tmp_path):
    onnx = pytest.importorskip("onnx")
    x, ff, fb = _inputs(n=1, c=4, t=5, dtype=torch.float32)
    model = _Wrap("trt_plugin").eval()
    with torch.no_grad():
        torch.testing.assert_close(model(x, ff, fb), _Wrap("grid_sample").eval()(x, ff, fb))
    path = tmp_path / "traj_plugin.onnx"
    _export(model, (x, ff, fb), path, custom_opsets={PLUGIN_NAMESPACE: 1})
    graph = onnx.load(str(path)).graph
    nodes = [node for node in graph.node if node.op_type == PLUGIN_OP_TYPE]
    assert len(nodes) == 1 and not any(node.op_type == "GridSample" for node in graph.node)
    attrs = {a.name: onnx.helper.get_attribute_value(a) for a in nodes[0].attribute}
    assert attrs["plugin_namespace"] == PLUGIN_NAMESPACE.encode() and attrs["dt"] == 1
    out_shape = next(vi for vi in graph.value_info if vi.name == nodes[0].output[0]).type.tensor_type.shape
    assert [d.dim_value for d in out_shape.dim] == [1, 5, 3, 4, 6, 7]
