"""Triton fused trajectory sampling (run in Triton's CPU interpreter) and the TensorRT plugin."""
from __future__ import annotations


import pytest
import torch

from tests._triton import interpreted, load_kernel_module

from repro.ops.trajectory_conv import trajectory_conv, trajectory_sample

triton = pytest.importorskip("triton")


@pytest.fixture(scope="module")
def tt():
    yield from interpreted("repro.ops.triton_trajectory")


def _inputs(n=2, c=5, t=4, h=6, w=7, scale=2.0, seed=0):
    g = torch.Generator().manual_seed(seed)
    return (
        torch.randn(n, c, t, h, w, generator=g),
        torch.randn(n, 2, t, h, w, generator=g) * scale,
        torch.randn(n, 2, t, h, w, generator=g) * scale,
    )


@pytest.mark.parametrize("dt", [0, 1, 2])
def test_triton_sampling_matches_pytorch(tt, dt):
    x, ff, fb = _inputs(n=2, t=3)
    # 42 pixels in blocks of 32 and C=5 in blocks of 4: both partial blocks are exercised.
    got = tt.trajectory_sample_triton(x, ff, fb, dt, block_p=32, block_c=4)
    expected = trajectory_sample(x, ff, fb, dt)
    assert got.shape == (2, 3, 2 * dt + 1, 5, 6, 7)
    torch.testing.assert_close(got, expected, rtol=1e-4, atol=1e-4)


def test_triton_zero_flow_is_temporal_shift(tt):
    x, _, _ = _inputs(n=1, c=3, t=3)
    zero = torch.zeros(1, 2, 3, 6, 7)
    got = tt.trajectory_sample_triton(x, zero, zero, 1, block_p=32, block_c=4)
    torch.testing.assert_close(got[:, 1:, 0], x.transpose(1, 2)[:, :-1])
    torch.testing.assert_close(got[:, :-1, 2], x.transpose(1, 2)[:, 1:])
    assert got[:, 0, 0].abs().max() == 0 and got[:, -1, 2].abs().max() == 0


def test_triton_sampler_in_trajectory_conv(tt):
    x, ff, fb = _inputs(n=1, c=4, t=3)
    weight = torch.randn(3, 4, 3, 1, 1, generator=torch.Generator().manual_seed(1))
    bias = torch.randn(3)
    torch.testing.assert_close(
        trajectory_conv(x, ff, fb, weight, bias, sampler="triton"),
        trajectory_conv(x, ff, fb, weight, bias),
        rtol=1e-4,
        atol=1e-4,
    )


def test_triton_bad_shapes_are_named(tt):
    x, ff, fb = _inputs(n=1)
    with pytest.raises(ValueError, match="flow_bwd"):
        tt.trajectory_sample_triton(x, ff, fb[:, :, :2], 1)


def test_aot_ptx_for_tensorrt_drops_hidden_parameters():
    """The AOT plugin's compile path: Triton -> PTX for sm_90 without a GPU, 8 kernel parameters."""
    from triton.backends.compiler import GPUTarget

    module = load_kernel_module("repro.ops.triton_trajectory", interpret=False)
    try:
        compiled = module.compile_trajectory_sample(1, "fp32", target=GPUTarget("cuda", 90, 32))
    except Exception as err:  # pragma: no cover - depends on the installed Triton backends
        pytest.skip(f"Triton cannot compile for CUDA here: {err}")
    ptx = module.ptx_for_tensorrt(compiled)
    entry = ptx[ptx.index(".entry") : ptx.index(")", ptx.index(".entry"))]
    assert entry.count(".param") == 8
    assert compiled.metadata.name in entry


@pytest.mark.gpu
@pytest.mark.parametrize("aot", [True, False])
def test_tensorrt_engine_matches_pytorch(tmp_path, aot):
    pytest.importorskip("tensorrt")
    if not torch.cuda.is_available():
        pytest.skip("needs CUDA")
    load_kernel_module("repro.ops.triton_trajectory", interpret=False)
    from repro.deploy.tensorrt.engine import demo

    assert demo(str(tmp_path / "traj.engine"), aot=aot) < 1e-3
