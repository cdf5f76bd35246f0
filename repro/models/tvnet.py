"""TVNet: TV-L1 optical flow unrolled into a trainable network (Fan et al., CVPR 2018).

``TVNet-Ns-Nw-Ni`` runs ``Ns`` pyramid scales (coarse to fine), ``Nw`` warps per scale and ``Ni``
iterations of Algorithm 1 per warp, every iteration a layer with its own difference filters
(Sec. 4.1, Fig. 2a); ``TVNet-N`` is ``TVNet-1-1-N`` (Sec. 5), so TVNet-50 is 1-1-50.

Defaults and preprocessing follow the authors' TensorFlow release ``LijieFan/tvnet``
(``tvnet.py``: ``TVNet.tvnet_flow`` / ``dual_tvl1_optic_flow``; ``tvnet_supervised_training.py``):

* tau 0.25, lambda 0.15, theta 0.3, zoom factor 0.5, epsilon ``GRAD_IS_ZERO = 1e-12``;
* number of scales ``min(Ns, 1 + log(sqrt(H^2+W^2)/4) / log(1/zoom))`` (``Ns`` is a maximum);
* preprocessing: greyscale (luma weights 0.299 R, 0.587 G, 0.114 B -- the release's
  ``[0.114, 0.587, 0.299]`` applied to OpenCV's BGR order), both frames min-max normalised
  *together* to [0, 255], then the fixed 5x5 Gaussian (sigma about 0.85);
* every pyramid level is resampled from the smoothed full-resolution images; the flow is
  upsampled bilinearly and rescaled between levels;
* centred image gradient fixed; forward-difference and divergence filters trainable, separate
  for ``u1``/``u2`` and for every iteration, warp and scale; ``u0`` a trainable field at the
  coarsest scale (zeros at init);
* supervised training: Adam, lr 0.005, EPE loss (``repro.flow.train``).

This file is the flow network (the solver); the Table 3 classifiers built on it are in
:mod:`repro.models.tvnet_action` and the losses in :mod:`repro.models.tvnet_losses`.

Where the paper and the release differ (each also commented at the line that implements it):

1. Eq. (3) sets the image gradient to 0 on the border; the release (like OpenCV) uses one-sided
   half differences there.  We follow the release.
2. Sec. 4.2 relaxes "the convolutional filters in Eq. (7)-(9)"; the release keeps Eq. (7)'s
   centred-gradient filter fixed (``trainable=False``).  Default: fixed; ``train_image_gradient``
   makes it trainable.
3. Alg. 1 writes the thresholding step as ``u = ...`` without ``+ u``; Sec. 4.1 drops the minus
   sign of ``-rho grad I / (|grad I|^2 + eps)``.  The release (and Zach et al.) use
   ``v = u + d``, ``d = -rho grad I / (|grad I|^2 + eps)`` in the third case; so do we.
4. The release adds ``GRAD_IS_ZERO`` to ``rho`` as well and masks the third case with
   ``|grad I|^2 + eps > eps``; both are no-ops up to 1e-12 and are left out.
5. The release's warp (a spatial transformer) moves pixels by ``u (W-1)/W`` instead of ``u`` and
   is zero / linearly extrapolated outside the image; we warp by exactly ``u`` with border
   replication.
6. The release resamples each pyramid level straight from the full-resolution image with an
   unfiltered corner-aligned bilinear zoom and divides the upsampled flow by the nominal zoom
   factor.  Without a low-pass filter the coarse levels alias: TVNet-5-5-50 reached EPE 1.17 on
   the built-in benchmark's pairs (zero flow: 0.67, OpenCV TV-L1-5-5-50: 0.10).  Default here:
   anti-aliased resampling on a half-pixel grid, flow scaled by the exact size ratio
   (``antialias=False`` restores the release's zoom, with the exact corner-aligned factor).
7. The release's scale count is a float (``xrange`` fails unless ``Ns`` caps it); we floor it.
8. The release floors the greyscale image (uint8 emulation); we skip this non-differentiable
   step (min-max normalisation follows, so the input range does not matter).  Its Gaussian is
   zero padded ('same' convolution), which darkens the border; we pad by replication.
9. Paper Sec. 5.1 trains with "batch gradient descent, lr 0.05, 3000 iterations"; the release's
   supervised script uses Adam, lr 0.005, 2000 iterations, batch 32 of 240x240 Middlebury pairs.
10. ``L_f`` (Eq. 1, 13) has the isotropic TV ``|grad u_d|``; the release's ``get_loss`` uses the
   anisotropic ``|u_x| + |u_y|``, averages over pixels and warps the raw RGB frames.  Our
   :func:`tvnet_flow_loss` uses the isotropic form on the normalised greyscale frames.
11. The paper's TV-L1 uses bicubic warping (OpenCV), TVNet bilinear (Sec. 4.1) -- by design;
   ``warp_mode="bicubic"`` gives the TV-L1 variant for comparisons.
"""
from __future__ import annotations

import functools
import math
import os
import re
from typing import Any, Literal

import torch
import torch.nn as nn
import torch.nn.functional as F

from repro.fileio import atomic_write
from repro.models._builder import load_weights_into
from repro.models.contract import ModelOutput, VideoModel
from repro.models.tvnet_losses import epe, epe_loss, tvnet_flow_loss, tvnet_multitask_loss
from repro.ops.tvl1 import (
    CENTRED_KERNEL,
    DIFFERENCE_KERNEL,
    GAUSSIAN_5X5,
    GRAD_IS_ZERO,
    DifferenceKernels,
    centred_gradient,
    depthwise_conv2d,
    from_row_halo,
    linearised_data_term,
    to_row_halo,
    tvl1_iteration,
    tvl1_iteration_fused,
)
from repro.ops.tvl1_native import native_unavailable, tvl1_solve_native
from repro.registry import register_model

__all__ = [
    "TVNet",
    "Trainable",
    "num_pyramid_scales",
    "pyramid_size",
    "rgb_to_grey",
    "normalise_pair",
    "gaussian_smooth",
    "resize_image",
    "resize_flow",
    "parse_tvnet_name",
    "tvnet_from_name",
    "build_tvnet",
    "save_tvnet",
    "load_tvnet",
    # the losses live in repro.models.tvnet_losses; re-exported for the flow package
    "epe",
    "epe_loss",
    "tvnet_flow_loss",
    "tvnet_multitask_loss",
]

Trainable = Literal["none", "u0", "all"]
#: Luma weights for RGB input (the release's [0.114, 0.587, 0.299] is for BGR).
GREY_WEIGHTS_RGB = (0.299, 0.587, 0.114)


# ----------------------------------------------------------------------------------------------
# Preprocessing and pyramid geometry (release: grey_scale_image, normalize_images,
# gaussian_smooth, zoom_size, tvnet_flow)
# ----------------------------------------------------------------------------------------------


def rgb_to_grey(frames: torch.Tensor) -> torch.Tensor:
    """``(N, 3, H, W)`` RGB or ``(N, 1, H, W)`` grey -> ``(N, 1, H, W)``."""
    if frames.dim() != 4 or frames.shape[1] not in (1, 3):
        raise ValueError(f"frames: expected (N, 3, H, W) RGB or (N, 1, H, W) grey, got {tuple(frames.shape)}")
    if frames.shape[1] == 1:
        return frames
    weights = frames.new_tensor(GREY_WEIGHTS_RGB).view(1, 3, 1, 1)
    # Release floors the result (uint8 emulation); skipped: not differentiable, and the min-max
    # normalisation below makes the input scale irrelevant.
    return (frames * weights).sum(1, keepdim=True)


def normalise_pair(image0: torch.Tensor, image1: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Min-max normalise both frames of each sample *together* to [0, 255] (release
    ``normalize_images``); a constant pair is left unchanged."""
    lo = torch.minimum(image0.flatten(1).amin(1), image1.flatten(1).amin(1)).view(-1, 1, 1, 1)
    hi = torch.maximum(image0.flatten(1).amax(1), image1.flatten(1).amax(1)).view(-1, 1, 1, 1)
    span = hi - lo
    ok = span > 0
    scale = torch.where(ok, 255.0 / torch.where(ok, span, torch.ones_like(span)), torch.ones_like(span))
    shift = torch.where(ok, lo, torch.zeros_like(lo))
    return (image0 - shift) * scale, (image1 - shift) * scale


def gaussian_smooth(image: torch.Tensor) -> torch.Tensor:
    """The release's fixed 5x5 Gaussian pre-smoothing of ``(N, C, H, W)``."""
    channels = int(image.shape[1])  # int(): a constant kernel shape when traced (ONNX export)
    kernel = image.new_tensor(GAUSSIAN_5X5).view(1, 1, 5, 5).repeat(channels, 1, 1, 1)
    # Release: zero padding ('same' conv) darkens a 2-pixel frame; replicate padding avoids that.
    padded = F.pad(image, (2, 2, 2, 2), mode="replicate")
    if torch.compiler.is_compiling():
        # Same sum as shifted taps, which inductor fuses into one loop; oneDNN's grouped 5x5
        # convolution takes about 1 ms a frame at 240x320 on one thread.
        return depthwise_conv2d(padded, kernel)
    return F.conv2d(padded, kernel, groups=channels)


def num_pyramid_scales(height: int, width: int, max_scales: int, zoom_factor: float = 0.5) -> int:
    """``min(max_scales, 1 + floor(log(sqrt(H^2 + W^2) / 4) / log(1 / zoom)))``, at least 1."""
    if max_scales < 1:
        raise ValueError(f"max_scales: expected >= 1, got {max_scales}")
    if not 0.0 < zoom_factor < 1.0:
        raise ValueError(f"zoom_factor: expected in (0, 1), got {zoom_factor}")
    diagonal = math.hypot(height, width)
    # Release: the float 1 + log(...)/log(1/zoom) is passed to xrange; we take its floor.
    levels = 1 + int(math.floor(math.log(diagonal / 4.0) / math.log(1.0 / zoom_factor))) if diagonal > 4 else 1
    return max(1, min(max_scales, levels))


def pyramid_size(height: int, width: int, factor: float) -> tuple[int, int]:
    """Release ``zoom_size``: ``int(H * factor + 0.5)``, ``int(W * factor + 0.5)``."""
    return max(2, int(height * factor + 0.5)), max(2, int(width * factor + 0.5))


def resize_image(image: torch.Tensor, size: tuple[int, int], antialias: bool = True) -> torch.Tensor:
    """Bilinear resampling of ``(N, C, H, W)`` to ``size`` for the image pyramid.

    ``antialias=True`` (default): half-pixel grid with an anti-aliasing (area-weighted) filter when
    shrinking.  ``antialias=False``: the release's ``zoom_image`` -- bilinear on a corner-aligned
    grid, no filter.
    """
    if tuple(image.shape[-2:]) == tuple(size):
        return image
    if not antialias:
        return F.interpolate(image, size=size, mode="bilinear", align_corners=True)
    # Departure from the release: it samples every level straight from the full-resolution image
    # (1/16 of it at the 5th scale) without a low-pass filter; on textured frames the coarse levels
    # alias and TVNet-5-5-50 diverged (EPE 1.17 vs 0.07 on the built-in benchmark's pairs).
    return F.interpolate(image, size=size, mode="bilinear", align_corners=False, antialias=True)


def resize_flow(flow: torch.Tensor, size: tuple[int, int], antialias: bool = True) -> torch.Tensor:
    """Resample a flow ``(N, 2, h, w)`` to ``size`` and rescale its values to the new pixel units."""
    height, width = flow.shape[-2:]
    if (height, width) == tuple(size):
        return flow
    if antialias:
        # Half-pixel grid: x_new = (x + 0.5) * W_new / W - 0.5, so displacements scale by W_new / W.
        sx, sy = size[1] / width, size[0] / height
        resized = F.interpolate(flow, size=size, mode="bilinear", align_corners=False)
    else:
        # Corner-aligned grid (release): the exact factor is (W_new - 1) / (W - 1); the release
        # divides by the nominal zoom factor instead.
        sx, sy = (size[1] - 1) / max(width - 1, 1), (size[0] - 1) / max(height - 1, 1)
        resized = F.interpolate(flow, size=size, mode="bilinear", align_corners=True)
    return resized * flow.new_tensor([sx, sy]).view(1, 2, 1, 1)


# ----------------------------------------------------------------------------------------------
# The network
# ----------------------------------------------------------------------------------------------


class TVNet(VideoModel):
    """TV-L1 unrolled (Algorithm 1 + multi-scale, Sec. 4.1), optionally trainable (Sec. 4.2).

    ``forward(frame0, frame1)`` with ``(N, C, H, W)`` frames (C = 3 RGB or 1 grey, any value
    range) returns the forward flow ``(N, 2, H, W)`` from ``frame0`` to ``frame1`` in pixels
    (channel 0 = x).  ``forward(clip)`` with one ``(N, C, T, H, W)`` clip returns the flow of every
    consecutive pair, ``(N, 2, T-1, H, W)``.  Contract (:mod:`repro.models.contract`): ``inputs``
    is ``("video",)``, the clip form; ``forward_output`` gives the flow as ``ModelOutput.flow``.

    Args:
        num_scales, num_warps, num_iters: ``Ns``, ``Nw``, ``Ni`` (``Ns`` is a maximum, capped by
            the image size as in the release).
        tau, lam, theta: Algorithm 1's hyper-parameters (release defaults).
        zoom_factor: pyramid down-sampling factor per scale.
        eps: the stabilising epsilon of Sec. 4.1 / Eq. (11).
        trainable: ``"none"`` (plain TV-L1), ``"u0"`` (Table 1 "Training u0") or ``"all"`` (u0
            and every difference filter, "All Training").
        image_size: ``(H, W)`` the trainable ``u0`` is laid out for (needed unless
            ``trainable == "none"``); other input sizes get ``u0`` resampled.
        train_image_gradient: also train Eq. (7)'s centred-gradient filter (paper; the release
            keeps it fixed).  Only with ``trainable="all"``.
        antialias: anti-aliased image pyramid on a half-pixel grid (default); ``False`` gives the
            release's unfiltered corner-aligned resampling (see :func:`resize_image`).
        warp_mode: ``"bilinear"`` (TVNet, Sec. 4.1) or ``"bicubic"`` (as TV-L1/OpenCV).
        normalise, presmooth: the release's preprocessing (joint min-max to [0, 255]; 5x5
            Gaussian).  With both off, TVNet-1-1-N computes exactly OpenCV's TV-L1 on grey levels
            (``tests/test_tvnet.py``); on real frames they change the effective data weight.
    """

    def __init__(
        self,
        num_scales: int = 1,
        num_warps: int = 1,
        num_iters: int = 50,
        *,
        tau: float = 0.25,
        lam: float = 0.15,
        theta: float = 0.3,
        zoom_factor: float = 0.5,
        eps: float = GRAD_IS_ZERO,
        trainable: Trainable = "none",
        image_size: tuple[int, int] | None = None,
        train_image_gradient: bool = False,
        antialias: bool = True,
        warp_mode: Literal["bilinear", "bicubic"] = "bilinear",
        normalise: bool = True,
        presmooth: bool = True,
    ) -> None:
        super().__init__()
        for name, value in (("num_scales", num_scales), ("num_warps", num_warps), ("num_iters", num_iters)):
            if int(value) != value or value < 1:
                raise ValueError(f"{name}: expected a positive integer, got {value!r}")
        if trainable not in ("none", "u0", "all"):
            raise ValueError(f"trainable: expected 'none', 'u0' or 'all', got {trainable!r}")
        if trainable != "none" and image_size is None:
            raise ValueError(f"image_size: required with trainable={trainable!r} (u0 is an (H, W) field)")
        if train_image_gradient and trainable != "all":
            raise ValueError("train_image_gradient=True needs trainable='all'")
        self.num_scales, self.num_warps, self.num_iters = int(num_scales), int(num_warps), int(num_iters)
        self.tau, self.lam, self.theta = float(tau), float(lam), float(theta)
        self.zoom_factor, self.eps = float(zoom_factor), float(eps)
        self.trainable: Trainable = trainable
        self.image_size = None if image_size is None else (int(image_size[0]), int(image_size[1]))
        self.train_image_gradient = bool(train_image_gradient)
        self.antialias = bool(antialias)
        if warp_mode not in ("bilinear", "bicubic"):
            raise ValueError(f"warp_mode: expected 'bilinear' or 'bicubic', got {warp_mode!r}")
        self.warp_mode = warp_mode
        self.normalise, self.presmooth = bool(normalise), bool(presmooth)
        self._compiled_iterations = False  # set by use_compiled_iterations()
        self._native: bool | None = None  # None: the native solver where it can run (inference)

        layers = (self.num_scales, self.num_warps, self.num_iters, 2)
        train_filters = trainable == "all"
        diff = torch.tensor(DIFFERENCE_KERNEL)
        # One filter per (scale, warp, iteration, flow component): the release's per-layer
        # variables ("scale%d/warping%d/iter%d/..._diff_x").
        self.forward_x = nn.Parameter(diff.view(1, 1, 1, 1, 1, 1, 2).repeat(*layers, 1, 1, 1), train_filters)
        self.forward_y = nn.Parameter(diff.view(1, 1, 1, 1, 1, 2, 1).repeat(*layers, 1, 1, 1), train_filters)
        self.divergence_x = nn.Parameter(diff.view(1, 1, 1, 1, 1, 1, 2).repeat(*layers, 1, 1, 1), train_filters)
        self.divergence_y = nn.Parameter(diff.view(1, 1, 1, 1, 1, 2, 1).repeat(*layers, 1, 1, 1), train_filters)
        centred = torch.tensor(CENTRED_KERNEL)
        train_centred = train_filters and self.train_image_gradient
        self.centred_x = nn.Parameter(centred.view(1, 1, 1, 1, 3).repeat(self.num_scales, 1, 1, 1, 1), train_centred)
        self.centred_y = nn.Parameter(centred.view(1, 1, 1, 3, 1).repeat(self.num_scales, 1, 1, 1, 1), train_centred)

        if self.image_size is not None:
            height, width = self.image_size
            coarsest = num_pyramid_scales(height, width, self.num_scales, self.zoom_factor) - 1
            u0_size = pyramid_size(height, width, self.zoom_factor**coarsest)
            self.u0 = nn.Parameter(torch.zeros(1, 2, *u0_size), requires_grad=trainable != "none")
        else:
            self.u0 = None

    # -- naming / config ---------------------------------------------------------------------
    @property
    def name(self) -> str:
        return f"TVNet-{self.num_scales}-{self.num_warps}-{self.num_iters}"

    def config(self) -> dict[str, Any]:
        """Constructor arguments (stored with saved weights)."""
        return dict(
            num_scales=self.num_scales, num_warps=self.num_warps, num_iters=self.num_iters, tau=self.tau,
            lam=self.lam, theta=self.theta, zoom_factor=self.zoom_factor, eps=self.eps, trainable=self.trainable,
            image_size=self.image_size, train_image_gradient=self.train_image_gradient, antialias=self.antialias,
            warp_mode=self.warp_mode, normalise=self.normalise, presmooth=self.presmooth,
        )

    def extra_repr(self) -> str:
        return (f"{self.name}, tau={self.tau}, lam={self.lam}, theta={self.theta}, zoom={self.zoom_factor}, "
                f"trainable={self.trainable!r}, image_size={self.image_size}, warp={self.warp_mode}")

    def use_compiled_iterations(self, enabled: bool = True, native: bool | None = None) -> "TVNet":
        """Run the TV-L1 iterations as compiled kernels instead of ~30 eager ops each.

        Inference (no autograd) takes the native solver when it can run here
        (:func:`repro.ops.tvl1_native.tvl1_solve_native`: all ``Ni`` iterations of a warp in one
        native C call, about 0.15 ms an iteration at 240x320 on one thread); ``native=False`` (or
        ``REPRO_TVL1_NATIVE=0``) keeps the inductor kernel.  Otherwise (training, no compiler for
        the native library) each iteration is one ``torch.compile``-fused kernel (inductor):
        :func:`repro.ops.tvl1.tvl1_iteration_fused`, whose neighbour reads are shifted views, so
        the kernel is two or three mask-free vectorised loops (~0.4 ms an iteration); the first
        call per shape compiles (seconds on CPU, needs a C++ compiler).  Same maths: results equal
        the eager path up to float rounding; the inductor path is differentiable (AOTAutograd).
        A whole-model ``torch.compile`` takes this path by itself (see :meth:`solve_scale`)."""
        self._compiled_iterations = bool(enabled)
        self._native = native
        return self

    # -- building blocks -----------------------------------------------------------------------
    def preprocess(self, frame0: torch.Tensor, frame1: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Greyscale and (if ``normalise``) joint [0, 255] normalisation, as the release; the
        Gaussian pre-smoothing is applied in :meth:`forward` (``L_f`` uses unsmoothed frames)."""
        grey0, grey1 = rgb_to_grey(frame0), rgb_to_grey(frame1)
        return normalise_pair(grey0, grey1) if self.normalise else (grey0, grey1)

    def _kernels(self, scale: int, warp: int, iteration: int) -> DifferenceKernels:
        index = (scale, warp, iteration)
        return DifferenceKernels(
            self.forward_x[index], self.forward_y[index], self.divergence_x[index], self.divergence_y[index]
        )

    def _initial_flow(self, reference: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
        batch = reference.shape[0]
        if self.u0 is None:
            return reference.new_zeros(batch, 2, *size)
        # Input of another size than image_size: resample the learnt u0 (and its pixel units).
        return resize_flow(self.u0.to(reference.dtype), size, self.antialias).expand(batch, -1, -1, -1)

    def solve_scale(self, scale: int, image0: torch.Tensor, image1: torch.Tensor, flow: torch.Tensor) -> torch.Tensor:
        """Algorithm 1 at one pyramid level: ``Nw`` warps x ``Ni`` iterations from ``flow``."""
        if self._compiled_iterations or torch.compiler.is_compiling():
            return self._solve_scale_fused(scale, image0, image1, flow)
        image1_grad = centred_gradient(image1, self.centred_x[scale], self.centred_y[scale])
        px = torch.zeros_like(flow)  # dual variables, reset per scale (release and OpenCV)
        py = torch.zeros_like(flow)
        for warp in range(self.num_warps):
            warped_grad, grad_sq, rho_c = linearised_data_term(image0, image1, image1_grad, flow, self.warp_mode)
            for iteration in range(self.num_iters):
                flow, px, py = tvl1_iteration(
                    flow, px, py, warped_grad, grad_sq, rho_c, lam=self.lam, theta=self.theta, tau=self.tau,
                    eps=self.eps, kernels=self._kernels(scale, warp, iteration),
                )
        return flow

    def _takes_native(self, *tensors: torch.Tensor) -> bool:
        """Whether :meth:`_solve_scale_fused` runs the native solver: inference only (nothing
        needs a gradient), float32 CPU tensors, not switched off, and the library loads."""
        if self._native is False or any(t.device.type != "cpu" or t.dtype != torch.float32 for t in tensors):
            return False
        if torch.is_grad_enabled() and any(t.requires_grad for t in (*tensors, *self.parameters())):
            return False
        return native_unavailable() is None

    @torch.compiler.disable
    def _solve_scale_fused(self, scale: int, image0: torch.Tensor, image1: torch.Tensor,
                           flow: torch.Tensor) -> torch.Tensor:
        """:meth:`solve_scale` with compiled iterations: in inference, each warp's ``Ni``
        iterations in one native call (:func:`repro.ops.tvl1_native.tvl1_solve_native`), else
        every iteration one compiled :func:`tvl1_iteration_fused` call (row-halo layout; ``p = 0``
        at the start meets its precondition).  Excluded from a whole-model ``torch.compile``
        (``disable``): tracing ``Nw * Ni`` unrolled iterations takes minutes and gave slower code
        (5 FPS for TVNet-1-1-50 at 240x320, one thread) than this one fused kernel called
        ``Nw * Ni`` times."""
        image1_grad = centred_gradient(image1, self.centred_x[scale], self.centred_y[scale])
        filters = (self.forward_x, self.forward_y, self.divergence_x, self.divergence_y)
        if self._takes_native(image0, image1, flow):
            px = torch.zeros_like(flow)  # dual variables, reset per scale (release and OpenCV)
            py = torch.zeros_like(flow)
            for warp in range(self.num_warps):
                warped_grad, grad_sq, rho_c = linearised_data_term(image0, image1, image1_grad, flow, self.warp_mode)
                flow, px, py = tvl1_solve_native(
                    flow, px, py, warped_grad, grad_sq, rho_c, DifferenceKernels(*(f[scale, warp] for f in filters)),
                    lam=self.lam, theta=self.theta, tau=self.tau, eps=self.eps)
            return flow
        u = to_row_halo(flow)  # (N, 2, H+2, W)
        px = torch.zeros_like(u)  # dual variables, reset per scale (release and OpenCV)
        py = torch.zeros_like(u)
        for warp in range(self.num_warps):
            warped_grad, grad_sq, rho_c = linearised_data_term(
                image0, image1, image1_grad, from_row_halo(u), self.warp_mode)
            # the Ni iterations' filters in one unbind per filter (not 4 x Ni parameter indexings)
            for kernels in zip(*(f[scale, warp].unbind(0) for f in filters)):
                u, px, py = _fused_iteration(
                    u, px, py, warped_grad, grad_sq, rho_c, DifferenceKernels(*kernels),
                    lam=self.lam, theta=self.theta, tau=self.tau, eps=self.eps,
                )
        return from_row_halo(u)

    def forward(self, frame0: torch.Tensor, frame1: torch.Tensor | None = None) -> torch.Tensor:
        if frame1 is None:
            return self.forward_clip(frame0)
        if frame0.dim() != 4 or frame0.shape != frame1.shape:
            raise ValueError(
                f"frame0/frame1: expected two (N, C, H, W) tensors of equal shape, got "
                f"{tuple(frame0.shape)} and {tuple(frame1.shape)}"
            )
        image0, image1 = self.preprocess(frame0, frame1)
        if self.presmooth:
            image0, image1 = gaussian_smooth(image0), gaussian_smooth(image1)
        height, width = image0.shape[-2:]
        scales = num_pyramid_scales(height, width, self.num_scales, self.zoom_factor)
        flow = None
        for scale in range(scales - 1, -1, -1):  # coarse to fine; scale 0 = full resolution
            size = pyramid_size(height, width, self.zoom_factor**scale)
            flow = self._initial_flow(image0, size) if flow is None else resize_flow(flow, size, self.antialias)
            image0_s = resize_image(image0, size, self.antialias)
            image1_s = resize_image(image1, size, self.antialias)
            flow = self.solve_scale(scale, image0_s, image1_s, flow)
        return flow

    def forward_output(self, frame0: torch.Tensor, frame1: torch.Tensor | None = None) -> ModelOutput:
        """The contract's output: a flow network has no logits; ``flow`` is :meth:`forward`'s."""
        return ModelOutput(logits=None, flow=self(frame0, frame1))

    def forward_clip(self, clip: torch.Tensor) -> torch.Tensor:
        """``(N, C, T, H, W)`` -> flows of consecutive frames ``(N, 2, T-1, H, W)`` (one batch)."""
        if clip.dim() != 5 or clip.shape[2] < 2:
            raise ValueError(f"clip: expected (N, C, T>=2, H, W), got {tuple(clip.shape)}")
        n, c, t, h, w = clip.shape
        first = clip[:, :, :-1].transpose(1, 2).reshape(n * (t - 1), c, h, w)
        second = clip[:, :, 1:].transpose(1, 2).reshape(n * (t - 1), c, h, w)
        flow = self.forward(first, second)
        return flow.view(n, t - 1, 2, h, w).transpose(1, 2)


@functools.lru_cache(maxsize=1)
def _compiled_fused_iteration():
    # dynamic=None: specialise on the first shape, then switch to dynamic shapes on a new one
    # (multi-scale pyramids and varying batch sizes would otherwise hit the recompile limit).
    return torch.compile(tvl1_iteration_fused, fullgraph=True)


def _fused_iteration(u: torch.Tensor, px: torch.Tensor, py: torch.Tensor, warped_grad: torch.Tensor,
                     grad_sq: torch.Tensor, rho_c: torch.Tensor, kernels: DifferenceKernels, *,
                     lam: float, theta: float, tau: float, eps: float) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """One compiled :func:`tvl1_iteration_fused` call.  Without autograd (inference) the inductor
    kernel of this shape is called directly, skipping ``torch.compile``'s per-call frame guards
    (about 0.1 ms of a 0.5 ms iteration at 240x320 on one thread: ~5 ms of TVNet-1-1-50); with
    autograd it goes through ``torch.compile`` (AOTAutograd), which is differentiable."""
    tensors = (u, px, py, warped_grad, grad_sq, rho_c, *kernels)
    if torch.is_grad_enabled() and any(t.requires_grad for t in tensors):
        return _compiled_fused_iteration()(u, px, py, warped_grad, grad_sq, rho_c, lam=lam, theta=theta, tau=tau,
                                           eps=eps, kernels=kernels)
    signature = tuple((t.shape, t.stride(), t.dtype, t.device) for t in tensors)
    return _inference_kernel(signature, lam, theta, tau, eps)(*tensors)


@functools.lru_cache(maxsize=16)
def _inference_kernel(signature: tuple, lam: float, theta: float, tau: float, eps: float):
    """Inductor kernel of :func:`tvl1_iteration_fused` for one input signature (shapes, strides,
    dtypes, devices of ``u, px, py, warped_grad, grad_sq, rho_c`` and the four filters), forward
    only: traced to an aten graph (``make_fx``) and compiled by ``torch._inductor.compile``."""
    from torch.fx.experimental.proxy_tensor import make_fx

    def iteration(u, px, py, warped_grad, grad_sq, rho_c, *filters):
        return tvl1_iteration_fused(u, px, py, warped_grad, grad_sq, rho_c, lam=lam, theta=theta, tau=tau, eps=eps,
                                    kernels=DifferenceKernels(*filters))

    examples = [torch.empty_strided(shape, stride, dtype=dtype, device=device).zero_()
                for shape, stride, dtype, device in signature]
    with torch.no_grad():
        graph = make_fx(iteration)(*examples)
        # Inline rather than store intermediates read more than 4 times (inductor's default): the
        # Eq. (11) denominator is then recomputed inside the dual update instead of written and
        # re-read, 3 loops over memory instead of 4 (~15 % faster; the iteration is memory bound).
        kernel = torch._inductor.compile(graph, examples,
                                         options={"realize_reads_threshold": 100, "realize_opcount_threshold": 1000})
    return lambda *tensors: tuple(kernel(*tensors))

# ----------------------------------------------------------------------------------------------
# Names, weights
# ----------------------------------------------------------------------------------------------

_NAME = re.compile(r"^tvnet[-_](\d+)(?:[-_](\d+)[-_](\d+))?$", re.IGNORECASE)


def parse_tvnet_name(name: str) -> tuple[int, int, int]:
    """``"tvnet-50"`` -> (1, 1, 50); ``"tvnet-3-1-10"`` -> (3, 1, 10) (Sec. 5 naming)."""
    match = _NAME.match(name.strip())
    if not match:
        raise ValueError(f"TVNet name {name!r}: expected 'tvnet-Ni' or 'tvnet-Ns-Nw-Ni' (e.g. tvnet-50, tvnet-3-1-10)")
    a, b, c = match.groups()
    scales, warps, iters = (1, 1, int(a)) if b is None else (int(a), int(b), int(c))
    if min(scales, warps, iters) < 1:
        raise ValueError(f"TVNet name {name!r}: scales, warps and iterations must be >= 1")
    return scales, warps, iters


def tvnet_from_name(name: str, **kwargs: Any) -> TVNet:
    scales, warps, iters = parse_tvnet_name(name)
    return TVNet(scales, warps, iters, **kwargs)


def save_tvnet(model: TVNet, path: str | os.PathLike) -> None:
    """Write ``{"config", "state_dict"}`` atomically (:func:`repro.fileio.atomic_write`)."""
    with atomic_write(path) as tmp:
        torch.save({"config": model.config(), "state_dict": model.state_dict()}, tmp)


def _read_checkpoint(path: str | os.PathLike) -> dict[str, Any]:
    if not os.path.isfile(path):
        raise FileNotFoundError(f"TVNet weights file not found: {path}")
    data = torch.load(path, map_location="cpu", weights_only=True)
    if not isinstance(data, dict):
        raise ValueError(f"{path}: expected a dict checkpoint (from save_tvnet or a state_dict), got {type(data)}")
    return data


def load_tvnet(path: str | os.PathLike, **overrides: Any) -> TVNet:
    """Rebuild a TVNet saved by :func:`save_tvnet` (constructor arguments can be overridden)."""
    data = _read_checkpoint(path)
    if "config" not in data or "state_dict" not in data:
        raise ValueError(f"{path}: no 'config'/'state_dict' (not written by save_tvnet); build the model and "
                         "use load_state_dict")
    config = dict(data["config"])
    config.update(overrides)
    model = TVNet(**config)
    model.load_state_dict(data["state_dict"])
    return model


# ----------------------------------------------------------------------------------------------
# Registered flow networks (Table 1 structures).  Classifiers on TVNet: repro.models.tvnet_action.
# ----------------------------------------------------------------------------------------------
_FLOW_NET = dict(paper="tvnet", default_input=(1, 3, 6, 112, 112), test_input=(1, 3, 2, 16, 16), tags=("flow",))


def build_tvnet(variant: str, scales: int, warps: int, iters: int, pretrained_file: str | None = None,
                num_classes: int = 0, **kwargs: Any) -> TVNet:
    """TVNet-``scales``-``warps``-``iters``; ``kwargs``: :class:`TVNet`'s.  ``num_classes`` is accepted
    for the registry's uniform call and must be 0: a flow network has no classes."""
    if num_classes:
        raise ValueError(f"{variant} is a flow network (no classes); use {variant}_action for the classifier")
    if kwargs.get("image_size") is not None:
        kwargs["image_size"] = tuple(kwargs["image_size"])  # YAML gives a list
    model = TVNet(scales, warps, iters, **kwargs)
    if pretrained_file is not None:
        load_weights_into(model, pretrained_file)
    return model


@register_model(**_FLOW_NET)
def tvnet_10(**kwargs: Any) -> TVNet:
    """TVNet-10 (1-1-10)."""
    return build_tvnet("tvnet_10", **dict(dict(scales=1, warps=1, iters=10), **kwargs))


@register_model(**_FLOW_NET)
def tvnet_30(**kwargs: Any) -> TVNet:
    """TVNet-30 (1-1-30)."""
    return build_tvnet("tvnet_30", **dict(dict(scales=1, warps=1, iters=30), **kwargs))


@register_model(**_FLOW_NET)
def tvnet_50(**kwargs: Any) -> TVNet:
    """TVNet-50 (1-1-50), the paper's action-recognition flow network."""
    return build_tvnet("tvnet_50", **dict(dict(scales=1, warps=1, iters=50), **kwargs))


@register_model(**_FLOW_NET)
def tvnet_3_1_10(**kwargs: Any) -> TVNet:
    """TVNet-3-1-10 (3 scales, 1 warp, 10 iterations)."""
    return build_tvnet("tvnet_3_1_10", **dict(dict(scales=3, warps=1, iters=10), **kwargs))


@register_model(**_FLOW_NET)
def tvnet_1_3_10(**kwargs: Any) -> TVNet:
    """TVNet-1-3-10 (1 scale, 3 warps, 10 iterations)."""
    return build_tvnet("tvnet_1_3_10", **dict(dict(scales=1, warps=3, iters=10), **kwargs))
