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

MAC counting (``repro.profile``): rfft/irfft are counted (1.25·d·log2 d each), the sign product
and spectrum product as elementwise ops; ``aten::index_add`` has no MAC rule there yet (it is
reported as uncounted: its cost is C additions per vector and count sketch).
"""
from __future__ import annotations

import torch
import torch.nn as nn

__all__ = [
    "count_sketch",
    "count_sketch_matrix",
    "draw_sketch_hashes",
    "tensor_sketch",
    "tensor_sketch_spectrum",
    "tensor_sketch_reference",
    "TensorSketch",
]


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
    """

    def __init__(self, in_dim: int, out_dim: int, seed: int = 0) -> None:
        super().__init__()
        self.in_dim, self.out_dim, self.seed = int(in_dim), int(out_dim), int(seed)
        h1, s1, h2, s2 = draw_sketch_hashes(self.in_dim, self.out_dim, self.seed)
        self.register_buffer("h1", h1)
        self.register_buffer("s1", s1)
        self.register_buffer("h2", h2)
        self.register_buffer("s2", s2)

    def _check(self, x: torch.Tensor) -> None:
        if x.dim() < 1 or x.shape[-1] != self.in_dim:
            raise ValueError(f"TensorSketch: expected (..., {self.in_dim}) channels-last input, got {tuple(x.shape)}")

    def spectrum(self, x: torch.Tensor) -> torch.Tensor:
        """``(..., C) -> (..., d//2 + 1)`` complex; ``irfft(mean spectrum, n=d)`` = mean of φ."""
        self._check(x)
        return tensor_sketch_spectrum(x, self.h1, self.s1, self.h2, self.s2, self.out_dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self._check(x)
        return tensor_sketch(x, self.h1, self.s1, self.h2, self.s2, self.out_dim)

    def extra_repr(self) -> str:
        return f"in_dim={self.in_dim}, out_dim={self.out_dim}, seed={self.seed}"
