"""Tensor Sketch projection (Pham & Pagh, KDD 2013; Gao et al., "Compact Bilinear Pooling",
CVPR 2016), the φ of LGD (Qiu et al., CVPR 2019) §3.2, Eq. 4-5.

φ: R^C -> R^d approximates the second-order polynomial (bilinear) kernel::

    E[⟨φ(a), φ(b)⟩] = (aᵀb)²

with two **independent** count sketches ``Ψ_k x`` (k = 1, 2), each given by a fixed hash
``h_k: [C] -> [d]`` and a fixed sign ``s_k: [C] -> {±1}``::

    (Ψ_k x)_j = Σ_{i: h_k(i) = j} s_k(i) x_i
    φ(x)      = Ψ_1 x ⊛ Ψ_2 x = IFFT( FFT(Ψ_1 x) ⊙ FFT(Ψ_2 x) )      (⊛: circular convolution)

φ(x) is the count sketch of x ⊗ x with hash ``(h_1(i) + h_2(j)) mod d`` and sign
``s_1(i) s_2(j)``; the sign is pairwise orthogonal over (i, j) only because the two pairs are
independent (one shared pair biases the estimator: ``tests/test_tensor_sketch.py`` shows it).

Tensor conventions
------------------
* inputs are channels-last ``(..., C)``; outputs ``(..., d)``, real.
* ``h``: ``(C,)`` int64 in ``[0, d)``; ``s``: ``(C,)`` float ±1.

Implementations
---------------
* :func:`tensor_sketch_reference`: explicit ``d x C`` count-sketch matrices and the circular
  convolution as an explicit sum ``y_k = Σ_j a_j b_{(k-j) mod d}``.
* :func:`tensor_sketch`: count sketch by ``index_add`` (C additions per vector, not a dense
  ``d x C`` matmul, which costs and is counted as C·d MACs), ``rfft``/``irfft`` with ``n = d``.
  :func:`tensor_sketch_spectrum` stops before the inverse FFT: a mean of sketches over positions
  (LGD Eq. 5) is then one ``irfft`` of the mean spectrum (the inverse FFT is linear).
* :func:`tensor_sketch_spectrum_real` / :func:`irfft_real`: the same φ with real tensors only,
  for ONNX export (ONNX has no complex dtype).  A one-sided spectrum is ``(..., d//2 + 1, 2)``
  (real, imaginary on the last axis: ONNX ``DFT``'s layout), the product ``(a+ib)(c+id) =
  (ac-bd) + i(ad+bc)`` is written with real mul/sub/add, and the two transforms are
  autograd functions whose ONNX symbolic is one ``DFT`` node each (opset 17): the forward with
  ``onesided=1``, the inverse on the Hermitian-completed spectrum ``X[k] = conj(X[d-k])``.
  The count sketch there is :func:`count_sketch_scatter` (ONNX ``ScatterElements``, add).
  In PyTorch they compute with ``torch.fft`` (same values) and have no backward: training uses
  the complex fast path.  ``TensorSketch.spectra = "real"`` selects them; :func:`real_spectra`
  does so for a whole model while it is exported (:func:`repro.deploy.onnx.export_onnx`).

MAC counting (``repro.profile``): rfft/irfft are counted (1.25·d·log2 d each), the sign product
and spectrum product as elementwise ops, the count sketch's ``index_add`` as one addition per
source element.  (The real-arithmetic export path is not profiled: its transforms are
``prim::PythonOp`` nodes there.)
"""
from __future__ import annotations

import contextlib
from typing import Literal

import torch
import torch.nn as nn

from repro.ops.module_swap import set_on_submodules

__all__ = [
    "count_sketch",
    "count_sketch_matrix",
    "count_sketch_scatter",
    "draw_sketch_hashes",
    "tensor_sketch",
    "tensor_sketch_spectrum",
    "tensor_sketch_reference",
    "tensor_sketch_spectrum_real",
    "rfft_real",
    "irfft_real",
    "complex_mul_real",
    "TensorSketch",
    "real_spectra",
]

Spectra = Literal["complex", "real"]


def draw_sketch_hashes(in_dim: int, out_dim: int, seed: int) -> tuple[torch.Tensor, ...]:
    """``(h1, s1, h2, s2)`` drawn from a local generator seeded with ``seed`` (global RNG untouched).

    h_k ~ uniform on [0, d), s_k ~ uniform on {-1, +1}, all four drawn independently.
    """
    if in_dim < 1 or out_dim < 1:
        raise ValueError(f"TensorSketch: in_dim and out_dim must be >= 1, got {in_dim}, {out_dim}")
    gen = torch.Generator().manual_seed(int(seed))
    h1 = torch.randint(out_dim, (in_dim,), generator=gen, dtype=torch.int64)
    s1 = torch.randint(2, (in_dim,), generator=gen, dtype=torch.int64).mul(2).sub(1).float()
    h2 = torch.randint(out_dim, (in_dim,), generator=gen, dtype=torch.int64)
    s2 = torch.randint(2, (in_dim,), generator=gen, dtype=torch.int64).mul(2).sub(1).float()
    return h1, s1, h2, s2


def count_sketch(x: torch.Tensor, h: torch.Tensor, s: torch.Tensor, out_dim: int) -> torch.Tensor:
    """Count sketch ``(Ψ x)_j = Σ_{i: h(i)=j} s(i) x_i``: ``(..., C) -> (..., d)``."""
    signed = x * s.to(x.dtype)  # (..., C)
    out = x.new_zeros(*x.shape[:-1], out_dim)  # (..., d)
    return out.index_add(-1, h, signed)


def tensor_sketch_spectrum(
    x: torch.Tensor, h1: torch.Tensor, s1: torch.Tensor, h2: torch.Tensor, s2: torch.Tensor, out_dim: int
) -> torch.Tensor:
    """``FFT(Ψ_1 x) ⊙ FFT(Ψ_2 x)`` as a one-sided spectrum ``(..., d//2 + 1)`` (complex)."""
    f1 = torch.fft.rfft(count_sketch(x, h1, s1, out_dim), n=out_dim, dim=-1)  # (..., d//2+1)
    f2 = torch.fft.rfft(count_sketch(x, h2, s2, out_dim), n=out_dim, dim=-1)  # (..., d//2+1)
    return f1 * f2


def tensor_sketch(
    x: torch.Tensor, h1: torch.Tensor, s1: torch.Tensor, h2: torch.Tensor, s2: torch.Tensor, out_dim: int
) -> torch.Tensor:
    """φ(x) = IFFT(FFT(Ψ_1 x) ⊙ FFT(Ψ_2 x)): ``(..., C) -> (..., d)`` (real, fast path)."""
    return torch.fft.irfft(tensor_sketch_spectrum(x, h1, s1, h2, s2, out_dim), n=out_dim, dim=-1)


# ---------------------------------------------------------------------------------------------
# real-arithmetic formulation (ONNX export)
# ---------------------------------------------------------------------------------------------
def _rank(value, what: str) -> int:
    from torch.onnx import symbolic_helper

    rank = symbolic_helper._get_tensor_rank(value)
    if rank is None:
        raise ValueError(f"TensorSketch export: the rank of the {what} is unknown to the ONNX exporter")
    return rank


# Departure (export only): the ONNX DFT nodes compute in float64, cast back to the input's dtype.
# ONNX Runtime's float32 DFT is less accurate than torch's (pocketfft), measured: relative error
# 8e-7 vs 1.7e-7 at n = 8192, and 6e-4 vs 1.6e-7 at n = 6000 (not a power of 2: a direct DFT);
# in float64 the graph is closer to exact than eager float32 is, at every n.  Cost, measured on an
# idle machine, 1 thread: LGD's head (C = 2048, d = 8192, 98 positions) runs in ONNX Runtime in
# 108 ms (float64 DFT) vs 77 ms (float32 DFT); eager PyTorch 14 ms.
def _to_double(g, value):
    from torch.onnx._internal.torchscript_exporter._type_utils import JitScalarType

    return g.op("Cast", value, to_i=JitScalarType.DOUBLE.onnx_type())


def _cast_like(g, value, like):
    from torch.onnx._internal.torchscript_exporter._type_utils import JitScalarType

    return g.op("Cast", value, to_i=JitScalarType.from_value(like, JitScalarType.FLOAT).onnx_type())


class _RFFTReal(torch.autograd.Function):
    """``rfft(x, n)`` along the last dim as a real tensor: ``(..., n) -> (..., n//2 + 1, 2)``."""

    @staticmethod
    def forward(ctx, x: torch.Tensor, n: int) -> torch.Tensor:
        return torch.view_as_real(torch.fft.rfft(x, n=n, dim=-1))

    @staticmethod
    def backward(ctx, grad):
        raise NotImplementedError("TensorSketch spectra='real' is for export; train with spectra='complex'")

    @staticmethod
    def symbolic(g, x, n: int):
        rank = _rank(x, "rfft input")
        signal = g.op("Unsqueeze", x, g.op("Constant", value_t=torch.tensor([rank])))  # (..., n, 1): real
        # DFT zero-pads / trims the signal to dft_length = n, as rfft(x, n) does
        length = g.op("Constant", value_t=torch.tensor(n, dtype=torch.int64))
        spectrum = g.op("DFT", _to_double(g, signal), length, axis_i=rank - 1, onesided_i=1, inverse_i=0)
        return _cast_like(g, spectrum, x)  # (..., n//2+1, 2)


class _IRFFTReal(torch.autograd.Function):
    """``irfft(X, n)`` of a real-layout one-sided spectrum: ``(..., n//2 + 1, 2) -> (..., n)``."""

    @staticmethod
    def forward(ctx, spectrum: torch.Tensor, n: int) -> torch.Tensor:
        return torch.fft.irfft(torch.view_as_complex(spectrum.contiguous()), n=n, dim=-1)

    @staticmethod
    def backward(ctx, grad):
        raise NotImplementedError("TensorSketch spectra='real' is for export; train with spectra='complex'")

    @staticmethod
    def symbolic(g, spectrum, n: int):
        rank = _rank(spectrum, "irfft spectrum")
        freq = rank - 2  # the frequency axis; the last axis is (real, imaginary)
        # Hermitian completion X[k] = conj(X[n-k]) for k = n//2+1 .. n-1 (ONNX DFT has no
        # one-sided inverse); the imaginary parts of X[0] (and X[n/2], n even) only reach the
        # imaginary part of the result, which is dropped, as irfft ignores them.
        mirror = torch.arange(n - n // 2 - 1, 0, -1, dtype=torch.int64)  # n-k for k = n//2+1 .. n-1
        tail = g.op("Gather", spectrum, g.op("Constant", value_t=mirror), axis_i=freq)
        tail = g.op("Mul", tail, g.op("Constant", value_t=torch.tensor([1.0, -1.0])))  # conj
        full = g.op("Concat", spectrum, tail, axis_i=freq)  # (..., n, 2)
        signal = g.op("DFT", _to_double(g, full), axis_i=freq, inverse_i=1)  # (..., n, 2), scaled by 1/n as irfft
        real = g.op("Gather", signal, g.op("Constant", value_t=torch.tensor(0, dtype=torch.int64)), axis_i=rank - 1)
        return _cast_like(g, real, spectrum)


def rfft_real(x: torch.Tensor, n: int) -> torch.Tensor:
    """``view_as_real(rfft(x, n))``: ``(..., n) -> (..., n//2 + 1, 2)``; one ONNX ``DFT`` node."""
    return _RFFTReal.apply(x, n)


def irfft_real(spectrum: torch.Tensor, n: int) -> torch.Tensor:
    """``irfft(view_as_complex(spectrum), n)``: ``(..., n//2 + 1, 2) -> (..., n)``; one ONNX ``DFT``."""
    return _IRFFTReal.apply(spectrum, n)


def complex_mul_real(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """``(a+ib)(c+id) = (ac - bd) + i(ad + bc)`` on ``(..., 2)`` real/imaginary pairs."""
    ar, ai = a[..., 0], a[..., 1]
    br, bi = b[..., 0], b[..., 1]
    return torch.stack([ar * br - ai * bi, ar * bi + ai * br], dim=-1)


def count_sketch_scatter(x: torch.Tensor, h: torch.Tensor, s: torch.Tensor, out_dim: int) -> torch.Tensor:
    """:func:`count_sketch` by ``scatter_add`` (ONNX ``ScatterElements``, reduction ``add``):
    the TorchScript exporter's ``index_add`` along the last dim of a batched input builds an
    ``Expand`` that ONNX Runtime rejects."""
    signed = x * s.to(x.dtype)  # (..., C)
    out = x.new_zeros(*x.shape[:-1], out_dim)  # (..., d)
    return out.scatter_add(-1, h.expand_as(signed), signed)


def tensor_sketch_spectrum_real(
    x: torch.Tensor, h1: torch.Tensor, s1: torch.Tensor, h2: torch.Tensor, s2: torch.Tensor, out_dim: int
) -> torch.Tensor:
    """:func:`tensor_sketch_spectrum` as a real tensor ``(..., d//2 + 1, 2)`` (real arithmetic only)."""
    f1 = rfft_real(count_sketch_scatter(x, h1, s1, out_dim), out_dim)  # (..., d//2+1, 2)
    f2 = rfft_real(count_sketch_scatter(x, h2, s2, out_dim), out_dim)  # (..., d//2+1, 2)
    return complex_mul_real(f1, f2)


def count_sketch_matrix(h: torch.Tensor, s: torch.Tensor, out_dim: int) -> torch.Tensor:
    """Dense count-sketch matrix ``M`` with ``M[j, i] = s(i)·[h(i) = j]``: ``(..., d, C)``.

    ``h``/``s`` may carry leading batch dims (one sketch per leading index).
    """
    one_hot = torch.nn.functional.one_hot(h, out_dim).to(s.dtype)  # (..., C, d)
    return (one_hot * s.unsqueeze(-1)).transpose(-1, -2)


def tensor_sketch_reference(
    x: torch.Tensor, h1: torch.Tensor, s1: torch.Tensor, h2: torch.Tensor, s2: torch.Tensor, out_dim: int
) -> torch.Tensor:
    """φ(x) with explicit sketch matrices and circular convolution ``y_k = Σ_j a_j b_{(k-j) mod d}``."""
    m1 = count_sketch_matrix(h1, s1.to(x.dtype), out_dim)  # (d, C)
    m2 = count_sketch_matrix(h2, s2.to(x.dtype), out_dim)  # (d, C)
    a = x @ m1.T  # (..., d)
    b = x @ m2.T  # (..., d)
    k = torch.arange(out_dim, device=x.device).view(-1, 1)
    j = torch.arange(out_dim, device=x.device).view(1, -1)
    wrapped = (k - j) % out_dim  # (d, d): index of b paired with a_j in output k
    return (a.unsqueeze(-2) * b[..., wrapped]).sum(-1)  # (..., d, d) summed over j -> (..., d)


class TensorSketch(nn.Module):
    """φ: ``(..., in_dim) -> (..., out_dim)`` with fixed hash/sign buffers drawn from ``seed``.

    The four buffers ``h1, s1, h2, s2`` are persistent (saved in the state dict) and are not
    parameters: the sketch has nothing to train (LGD trains only the linear layer on top).
    ``spectra``: ``"complex"`` (the fast path) or ``"real"`` (real arithmetic, exportable to ONNX,
    no backward; see :func:`real_spectra`).  :meth:`spectrum` returns its kind of spectrum and
    :meth:`inverse` takes it back to ``(..., d)``.
    """

    def __init__(self, in_dim: int, out_dim: int, seed: int = 0, spectra: Spectra = "complex") -> None:
        super().__init__()
        if spectra not in ("complex", "real"):
            raise ValueError(f"TensorSketch: spectra expected 'complex' or 'real', got {spectra!r}")
        self.in_dim, self.out_dim, self.seed, self.spectra = int(in_dim), int(out_dim), int(seed), spectra
        h1, s1, h2, s2 = draw_sketch_hashes(self.in_dim, self.out_dim, self.seed)
        self.register_buffer("h1", h1)
        self.register_buffer("s1", s1)
        self.register_buffer("h2", h2)
        self.register_buffer("s2", s2)

    def _check(self, x: torch.Tensor) -> None:
        if x.dim() < 1 or x.shape[-1] != self.in_dim:
            raise ValueError(f"TensorSketch: expected (..., {self.in_dim}) channels-last input, got {tuple(x.shape)}")

    def spectrum(self, x: torch.Tensor) -> torch.Tensor:
        """``(..., C) -> (..., d//2 + 1)`` complex, or ``(..., d//2 + 1, 2)`` real when
        ``spectra="real"``; ``inverse(mean spectrum)`` = mean of φ (the inverse FFT is linear)."""
        self._check(x)
        if self.spectra == "real":
            return tensor_sketch_spectrum_real(x, self.h1, self.s1, self.h2, self.s2, self.out_dim)
        return tensor_sketch_spectrum(x, self.h1, self.s1, self.h2, self.s2, self.out_dim)

    def inverse(self, spectrum: torch.Tensor) -> torch.Tensor:
        """A spectrum of :meth:`spectrum` (or a mean of some) back to ``(..., d)``."""
        if self.spectra == "real":
            return irfft_real(spectrum, self.out_dim)
        return torch.fft.irfft(spectrum, n=self.out_dim, dim=-1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.spectra == "real":
            return self.inverse(self.spectrum(x))
        self._check(x)
        return tensor_sketch(x, self.h1, self.s1, self.h2, self.s2, self.out_dim)

    def extra_repr(self) -> str:
        spectra = "" if self.spectra == "complex" else f", spectra={self.spectra}"
        return f"in_dim={self.in_dim}, out_dim={self.out_dim}, seed={self.seed}{spectra}"


def real_spectra(module: nn.Module) -> contextlib.AbstractContextManager[int]:
    """Within the block every ``TensorSketch`` of ``module`` computes with real spectra
    (``spectra="real"``: same values, exportable to ONNX opset 17, no backward); restored on exit.
    Yields how many sketches it switched."""
    return set_on_submodules(module, TensorSketch, "spectra", "real")
