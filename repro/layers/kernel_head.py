"""Local-global combination ("kernelized") classifier of LGD (Qiu et al., CVPR 2019) §3.2.

The kernel between two videos is the sum of bilinear kernels ⟨a, b⟩₂ = (aᵀb)² on the local and
the global representation (Eq. 4)::

    k = (1/N²) Σ_i Σ_j ⟨x_L^i, x'_L^j⟩₂ + ⟨g_L, g'_L⟩₂ ≈ ⟨ϕ, ϕ'⟩,

with the Tensor Sketch φ (:mod:`repro.ops.tensor_sketch`) giving the explicit feature map (Eq. 5)::

    ϕ({x_L, g_L}) = [ (1/N) Σ_i φ(x_L^i) , φ(g_L) ]  ∈ R^{2d},   N = L·H·W positions,

followed by one linear layer W_c (Eq. 7).  The mean over positions is taken on the one-sided
spectra and inverted once (the inverse FFT is linear), so the cost per position is two rffts.

Scale of W_c at initialisation (an assumption: LGD states no initialisation for W_c)
-------------------------------------------------------------------------------------
ϕ is second order: ⟨φ(a), φ(b)⟩ ≈ (aᵀb)², so ‖φ(x)‖ ≈ ‖x‖² grows with the **square** of the
features' magnitude, which no fan-in rule can know in advance: it is the backbone's (random at
initialisation, or stage 1's trained one, §4.3).  Measured on ``lgd3d_resnet50`` at
initialisation (1x3x16x112x112): x_L has RMS 16 (‖x^i‖ ≈ 706 per position), ‖ϕ‖ ≈ 4.4e5, and
``nn.Linear``'s default W_c gives logits of std 2.0e3 (max 6.0e3): a saturated softmax, and an
fp32 rounding error of ~1e-3 in the logits.  So W_c starts at a **data-dependent scale**
(Mishkin & Matas, "All you need is a good init", ICLR 2016, LSUV; Krähenbühl et al. 2016): on
the first forward of a freshly built classifier, its randomly drawn W_c is multiplied by one
scalar so that that batch's logits (bias excluded) have RMS ``init_logit_rms`` (1: logits O(1)).
The rescaling is deterministic (no random draw), happens once, never while tracing or compiling,
and never for a classifier whose ``fc.weight`` was loaded from a state dict (a stage-2
checkpoint); a stage-2 row initialised from stage 1 (``head_c`` missing) rescales on its first
training batch.  ``init_logit_rms=None`` keeps ``nn.Linear``'s default init.

Tensor conventions
------------------
* ``x_local``: ``(N·S, C, *spatial)`` with ``*spatial`` = (H, W) or (T, H, W); ``S = segments``
  frames of a video are consecutive in the batch (video-major, as ``C2DResNet`` folds them).
  For LGD-2D the positions of all S frames of a video form its N = S·H·W positions.
* ``x_global``: ``(N, C)``.  Output: ``(N, num_classes)`` logits.

MACs (``repro.profile`` conventions), per video with P positions, d = sketch_dim, K classes:
rfft 2(P+1)·1.25·d·log2 d, irfft 2·1.25·d·log2 d, linear 2d·K; elementwise: signs 2(P+1)·C,
spectrum products (P+1)(d/2+1), mean P(d/2+1); the count-sketch scatter (``aten::index_add``)
2(P+1)·C additions.  Exported to ONNX, the sketch is real arithmetic and ``DFT`` nodes
(:func:`repro.ops.tensor_sketch.real_spectra`); training and profiling use the complex path.
"""
from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F

from repro.ops.capture import capturing_graph
from repro.ops.tensor_sketch import TensorSketch

__all__ = ["CombinationClassifier", "signed_sqrt_l2"]

# Assumption: LGD does not state d.  Gao et al. (CVPR'16) show d = 8192 already matches full
# bilinear pooling (C² = 4.2 M dims for C = 2048); it is the customary default.
DEFAULT_SKETCH_DIM = 8192


def signed_sqrt_l2(y: torch.Tensor, eps: float = 1e-12) -> torch.Tensor:
    """``sign(y)·sqrt(|y|)`` then ℓ2 normalisation over the last dim (Lin et al./Gao et al. practice)."""
    y = torch.sign(y) * torch.sqrt(y.abs() + eps)
    return F.normalize(y, dim=-1)


class CombinationClassifier(nn.Module):
    """``(x_local (N·S, C, *sp), x_global (N, C)) -> (N, K)``: W_c ϕ({x_L, g_L}) (LGD Eq. 5, 7).

    Only ``fc`` is trainable; the sketch is fixed buffers.  ``signed_sqrt=True`` applies signed
    square root + ℓ2 to each half of ϕ — not in LGD (off by default to stay faithful).
    ``init_logit_rms``: W_c's scale is set on the first forward so that batch's logits have this
    RMS (module docstring: an assumption, LGD states no init for W_c); ``None``: no rescaling.
    """

    def __init__(
        self,
        channels: int,
        num_classes: int,
        sketch_dim: int = DEFAULT_SKETCH_DIM,
        *,
        seed: int = 0,
        signed_sqrt: bool = False,
        dropout: float = 0.0,
        init_logit_rms: float | None = 1.0,
    ) -> None:
        super().__init__()
        self.channels, self.sketch_dim, self.signed_sqrt = int(channels), int(sketch_dim), bool(signed_sqrt)
        # One φ for both kernels, as Eq. 4 writes it; each half of ϕ estimates its own kernel,
        # so sharing the hashes between the halves leaves both estimates unbiased.
        self.sketch = TensorSketch(self.channels, self.sketch_dim, seed=seed)
        self.dropout = nn.Dropout(dropout)
        self.fc = nn.Linear(2 * self.sketch_dim, num_classes)
        # Assumption (LGD states no init for W_c): W_c's scale is data-dependent, set on the first
        # forward so the initial logits are O(1) (RMS init_logit_rms): ‖ϕ‖ ~ ‖x‖², unknown here.
        self.init_logit_rms = init_logit_rms
        self.scale_pending = init_logit_rms is not None

    def _load_from_state_dict(self, state_dict, prefix, *args, **kwargs) -> None:
        if prefix + "fc.weight" in state_dict:  # a trained W_c (a stage-2 checkpoint): keep its scale
            self.scale_pending = False
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)

    @torch.no_grad()
    def rescale_fc_(self, features: torch.Tensor) -> float:
        """Multiply W_c by the one scalar that gives ``fc(features)`` (bias excluded) an RMS of
        ``init_logit_rms``; returns the factor (1 when the logits are all zero).  ``features``: ``(N, 2d)``."""
        rms = (features.to(self.fc.weight.dtype) @ self.fc.weight.T).square().mean().sqrt()  # (N, K) -> scalar
        factor = float(self.init_logit_rms / rms) if rms > 0 and torch.isfinite(rms) else 1.0
        self.fc.weight.mul_(factor)
        self.scale_pending = False
        return factor

    def _check(self, x_local: torch.Tensor, x_global: torch.Tensor, segments: int) -> None:
        name = type(self).__name__
        if x_local.dim() not in (4, 5) or x_local.shape[1] != self.channels:
            raise ValueError(f"{name}: x_local expected (N·S, {self.channels}, [T,] H, W), got {tuple(x_local.shape)}")
        if x_global.dim() != 2 or x_global.shape[1] != self.channels:
            raise ValueError(f"{name}: x_global expected (N, {self.channels}), got {tuple(x_global.shape)}")
        if segments < 1 or x_local.shape[0] != x_global.shape[0] * segments:
            raise ValueError(
                f"{name}: x_local has {x_local.shape[0]} maps, expected N·segments = "
                f"{x_global.shape[0]}·{segments}"
            )

    def features(self, x_local: torch.Tensor, x_global: torch.Tensor, segments: int = 1) -> torch.Tensor:
        """ϕ({x_L, g_L}) of Eq. 5: ``(N, 2d)``."""
        self._check(x_local, x_global, segments)
        n, c = x_global.shape
        positions = x_local.reshape(n, segments, c, -1).transpose(2, 3).reshape(n, -1, c)  # (N, S·P, C)
        spectrum = self.sketch.spectrum(positions).mean(1)  # (N, d//2+1[, 2]): mean (1/N), not sum
        local = self.sketch.inverse(spectrum)  # (N, d) = (1/N) Σ_i φ(x^i)
        glob = self.sketch(x_global)  # (N, d)
        if self.signed_sqrt:  # not in LGD: flagged option
            local, glob = signed_sqrt_l2(local), signed_sqrt_l2(glob)
        return torch.cat([local, glob], dim=-1)  # (N, 2d)

    def forward(self, x_local: torch.Tensor, x_global: torch.Tensor, segments: int = 1) -> torch.Tensor:
        features = self.features(x_local, x_global, segments)  # (N, 2d)
        # first forward of a fresh W_c: its data-dependent scale (never in a captured graph, which
        # would record it; exporters run the model eagerly first)
        if self.scale_pending and not capturing_graph():
            self.rescale_fc_(features)
        return self.fc(self.dropout(features))  # (N, K)

    def extra_repr(self) -> str:
        return f"channels={self.channels}, sketch_dim={self.sketch_dim}, signed_sqrt={self.signed_sqrt}"

