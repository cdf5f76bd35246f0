"""TV-L1 building blocks as convolutions (TVNet, Fan et al. CVPR 2018, Sec. 3.2 and 4.1).

Everything here is a pure function on tensors laid out as ``(N, C, H, W)``.  A flow has two
channels, ``u[:, 0] = u_1`` (horizontal, x, along W) and ``u[:, 1] = u_2`` (vertical, y, along H),
in pixels.  The dual variable of Algorithm 1 is kept as two tensors ``px = [p11, p21]`` (x
components of ``p_1``, ``p_2``) and ``py = [p12, p22]``; channel ``d`` belongs to flow component
``d``.

Fast versions (used by :class:`repro.models.tvnet.TVNet`):

* :func:`centred_gradient` -- image gradient, Eq. (3)/(7), kernel ``[-0.5, 0, 0.5]``.
* :func:`forward_gradient` -- flow gradient, Eq. (4)/(8), kernel ``w_f = [-1, 1]``.
* :func:`divergence` -- dual divergence, Eq. (5)/(9), shift + kernel ``w_b = [-1, 1]``.
* :func:`warp_bilinear` -- ``I(x + u)``, Eq. (10).
* :func:`tvl1_iteration` -- one pass of the while-loop of Algorithm 1 with the
  epsilon-stabilised divisions of Sec. 4.1 (Eq. 11).
* :func:`tvl1_energy` -- the TV-L1 energy of Eq. (1) with exact warping (the loss ``L_f``).
* :func:`tvl1_iteration_fused` -- the same iteration on a row-halo layout (:func:`to_row_halo`)
  whose neighbour reads are plain shifted views, so that ``torch.compile`` turns it into a few
  mask-free vectorised loops (the inference fast path of :class:`repro.models.tvnet.TVNet`).

Each has a ``*_reference`` twin written as plain per-pixel loops straight from the paper's
equations (tiny inputs only); ``tests/test_tvl1.py`` checks values and gradients agree.

Kernels are passed in (so TVNet can make them trainable, Sec. 4.2).  Shapes, with ``C`` the
number of channels they act on (2 for the flow/dual, one kernel per channel, ``groups=C``):
``forward_x``/``divergence_x``: ``(C, 1, 1, 2)``; ``forward_y``/``divergence_y``: ``(C, 1, 2, 1)``;
``centred_x``: ``(C, 1, 1, 3)``; ``centred_y``: ``(C, 1, 3, 1)``.  Convolutions are
cross-correlations (PyTorch's ``conv2d``), so the paper's convolution kernel
``w_c = [0.5, 0, -0.5]`` (Eq. 6) is the correlation kernel ``[-0.5, 0, 0.5]``; ``w_f = w_b =
[-1, 1]`` read ``out(i) = -x(i) + x(i+1)``, as in the authors' TensorFlow release.
"""
from __future__ import annotations

from typing import NamedTuple

import torch
import torch.nn.functional as F

from repro.ops.warp import bilinear_sample_reference, pixel_grid, pixels_to_normalized, warp_backward

__all__ = [
    "GRAD_IS_ZERO",
    "CENTRED_KERNEL",
    "DIFFERENCE_KERNEL",
    "GAUSSIAN_5X5",
    "DifferenceKernels",
    "default_difference_kernels",
    "depthwise_conv2d",
    "centred_kernels",
    "centred_gradient",
    "forward_gradient",
    "divergence",
    "warp_bilinear",
    "linearised_data_term",
    "tvl1_iteration",
    "tvl1_iteration_fused",
    "to_row_halo",
    "from_row_halo",
    "tvl1_energy",
    "photometric_residual",
    "centred_gradient_reference",
    "forward_gradient_reference",
    "divergence_reference",
    "warp_bilinear_reference",
    "tvl1_iteration_reference",
]

#: epsilon of the stabilised divisions (Sec. 4.1); the release's ``TVNet.GRAD_IS_ZERO``.
GRAD_IS_ZERO = 1e-12
#: Eq. (6) ``w_c`` written as a cross-correlation kernel.
CENTRED_KERNEL = (-0.5, 0.0, 0.5)
#: Eq. (6) ``w_f = w_b`` (cross-correlation: ``out(i) = x(i+1) - x(i)``).
DIFFERENCE_KERNEL = (-1.0, 1.0)
#: The release's fixed 5x5 pre-smoothing kernel (``TVNet.gaussian_smooth``, sigma about 0.85).
GAUSSIAN_5X5 = (
    (0.000874, 0.006976, 0.01386, 0.006976, 0.000874),
    (0.006976, 0.0557, 0.110656, 0.0557, 0.006976),
    (0.01386, 0.110656, 0.219833, 0.110656, 0.01386),
    (0.006976, 0.0557, 0.110656, 0.0557, 0.006976),
    (0.000874, 0.006976, 0.01386, 0.006976, 0.000874),
)


class DifferenceKernels(NamedTuple):
    """The four difference filters of one TV-L1 iteration (trainable in TVNet, Sec. 4.2).

    Channel ``d`` of each filter acts on flow component ``d`` (``u_d``, resp. ``p_d``), as the
    release creates separate filters for ``u1``/``u2`` and ``p1``/``p2`` in every iteration.
    """

    forward_x: torch.Tensor  # (2, 1, 1, 2)  Eq. (8) along x
    forward_y: torch.Tensor  # (2, 1, 2, 1)  Eq. (8) along y
    divergence_x: torch.Tensor  # (2, 1, 1, 2)  Eq. (9) w_b
    divergence_y: torch.Tensor  # (2, 1, 2, 1)  Eq. (9) w_b^T


def default_difference_kernels(
    channels: int = 2, *, dtype: torch.dtype = torch.float32, device=None
) -> DifferenceKernels:
    """The paper's fixed ``w_f = w_b = [-1, 1]`` (Eq. 6), one copy per channel."""
    row = torch.tensor(DIFFERENCE_KERNEL, dtype=dtype, device=device)
    kx = row.view(1, 1, 1, 2).repeat(channels, 1, 1, 1)
    ky = row.view(1, 1, 2, 1).repeat(channels, 1, 1, 1)
    return DifferenceKernels(kx, ky, kx.clone(), ky.clone())


def centred_kernels(channels: int = 1, *, dtype: torch.dtype = torch.float32, device=None):
    """``(kx (C,1,1,3), ky (C,1,3,1))`` for Eq. (7), correlation form of ``w_c``."""
    row = torch.tensor(CENTRED_KERNEL, dtype=dtype, device=device)
    return row.view(1, 1, 1, 3).repeat(channels, 1, 1, 1), row.view(1, 1, 3, 1).repeat(channels, 1, 1, 1)


def depthwise_conv2d(x: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
    """'valid' depthwise cross-correlation, identical to ``F.conv2d(x, weight, groups=C)``.

    ``x (N, C, H, W)``, ``weight (C, 1, kh, kw)`` -> ``(N, C, H-kh+1, W-kw+1)``.  Written as a sum
    of shifted views times per-channel taps because oneDNN's grouped convolution takes milliseconds
    on these 2- and 3-tap kernels where this takes microseconds (measured on CPU, 240x320).
    """
    channels, _, kh, kw = weight.shape
    if x.shape[1] != channels:
        raise ValueError(f"weight: expected {x.shape[1]} channels (one filter per input channel), got {channels}")
    out_h, out_w = x.shape[-2] - kh + 1, x.shape[-1] - kw + 1
    taps = weight.reshape(1, channels, kh * kw, 1, 1)
    out = None
    for a in range(kh):
        for b in range(kw):
            window = x[..., a : a + out_h, b : b + out_w]
            tap = taps[:, :, a * kw + b]
            out = window * tap if out is None else torch.addcmul(out, window, tap)
    return out


def _check_4d(name: str, x: torch.Tensor) -> None:
    if x.dim() != 4:
        raise ValueError(f"{name}: expected a 4-D (N, C, H, W) tensor, got shape {tuple(x.shape)}")
    if x.shape[-1] < 2 or x.shape[-2] < 2:
        raise ValueError(f"{name}: spatial size must be at least 2x2, got {tuple(x.shape[-2:])}")


# ----------------------------------------------------------------------------------------------
# Fast (convolution) versions
# ----------------------------------------------------------------------------------------------


def centred_gradient(
    image: torch.Tensor, kernel_x: torch.Tensor | None = None, kernel_y: torch.Tensor | None = None
) -> tuple[torch.Tensor, torch.Tensor]:
    """Image gradient by central differences, Eq. (3) as the convolution of Eq. (7).

    ``image (N, C, H, W)`` -> ``(dI/dx, dI/dy)`` each ``(N, C, H, W)``.
    """
    _check_4d("image", image)
    channels = image.shape[1]
    if kernel_x is None or kernel_y is None:
        kernel_x, kernel_y = centred_kernels(channels, dtype=image.dtype, device=image.device)
    # Departure from the paper: Eq. (3) sets the first/last column to 0.  The authors' release
    # (TVNet.centered_gradient) and OpenCV use the one-sided half difference 0.5*(I(1)-I(0)) there,
    # which is exactly what replicate padding produces with [-0.5, 0, 0.5]; we follow the release.
    dx = depthwise_conv2d(F.pad(image, (1, 1, 0, 0), mode="replicate"), kernel_x)
    dy = depthwise_conv2d(F.pad(image, (0, 0, 1, 1), mode="replicate"), kernel_y)
    return dx, dy


def forward_gradient(
    field: torch.Tensor, kernels: DifferenceKernels | None = None
) -> tuple[torch.Tensor, torch.Tensor]:
    """Forward differences of each channel, Eq. (4) as the convolution of Eq. (8).

    ``field (N, C, H, W)`` -> ``(dx, dy)``; the last column of ``dx`` and last row of ``dy``
    are 0 (Eq. 4's boundary), whatever the (possibly trained) kernel.
    """
    _check_4d("field", field)
    channels = field.shape[1]
    if kernels is None:
        kernels = default_difference_kernels(channels, dtype=field.dtype, device=field.device)
    # 'valid' convolution gives W-1 columns; the zero column appended is Eq. (4)'s boundary.
    dx = F.pad(depthwise_conv2d(field, kernels.forward_x), (0, 1, 0, 0))
    dy = F.pad(depthwise_conv2d(field, kernels.forward_y), (0, 0, 0, 1))
    return dx, dy


def divergence(px: torch.Tensor, py: torch.Tensor, kernels: DifferenceKernels | None = None) -> torch.Tensor:
    """Divergence by backward differences, Eq. (5) as the convolution of Eq. (9).

    ``px``, ``py`` ``(N, C, H, W)`` (x and y components of ``C`` dual fields) -> ``(N, C, H, W)``.
    As in the paper, ``p`` is shifted right/down by one pixel with a zero first column/row
    (``p-hat``), then convolved with ``w_b``; the zero padding after the shift reproduces the
    last-column case ``-p(W-1)`` of Eq. (5).
    """
    _check_4d("px", px)
    if py.shape != px.shape:
        raise ValueError(f"py: expected shape {tuple(px.shape)} (same as px), got {tuple(py.shape)}")
    channels = px.shape[1]
    if kernels is None:
        kernels = default_difference_kernels(channels, dtype=px.dtype, device=px.device)
    # p-hat = [0, p(0), ..., p(W-2)], then one more zero on the right for the 'same' output size.
    px_hat = F.pad(px[..., :, :-1], (1, 1, 0, 0))
    py_hat = F.pad(py[..., :-1, :], (0, 0, 1, 1))
    return depthwise_conv2d(px_hat, kernels.divergence_x) + depthwise_conv2d(py_hat, kernels.divergence_y)


def warp_bilinear(image: torch.Tensor, flow: torch.Tensor, mode: str = "bilinear") -> torch.Tensor:
    """``I(x + u(x))`` by bilinear interpolation, Eq. (10); ``image (N,C,H,W)``, ``flow (N,2,H,W)``.

    Samples outside the image take the nearest border value (coordinates clamped).
    ``mode="bicubic"`` interpolates bicubically instead, like the TV-L1 the paper compares with
    (OpenCV's ``remap(..., INTER_CUBIC)``); Sec. 4.1 names this the only difference of TVNet.
    """
    # Departure from the release: its spatial_transformer maps the displacement as
    # u * (W-1)/W pixels (u/W*2 on a linspace(-1, 1, W) grid) and, outside the image, returns 0 on
    # the left/top and extrapolates linearly on the right/bottom; OpenCV's remap pads with 0.
    # We warp by exactly u pixels and replicate the border (no artificial dark frame).
    if mode == "bilinear":
        return warp_backward(image, flow, padding_mode="border")
    if mode != "bicubic":
        raise ValueError(f"mode: expected 'bilinear' or 'bicubic', got {mode!r}")
    height, width = image.shape[-2:]
    positions = pixel_grid(height, width, device=flow.device, dtype=flow.dtype) + flow.permute(0, 2, 3, 1)
    grid = pixels_to_normalized(positions, height, width)
    return F.grid_sample(image, grid, mode="bicubic", padding_mode="border", align_corners=False)


def linearised_data_term(
    image0: torch.Tensor,
    image1: torch.Tensor,
    image1_grad: tuple[torch.Tensor, torch.Tensor],
    flow0: torch.Tensor,
    warp_mode: str = "bilinear",
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Warp step of Algorithm 1: returns ``(warped_grad (N,2,H,W), grad_sq (N,1,H,W), rho_c (N,1,H,W))``.

    ``rho(u) = grad I1(x+u0) . (u - u0) + I1(x+u0) - I0(x) = rho_c + warped_grad . u``;
    ``grad_sq = |grad I1(x+u0)|^2 + eps`` (the stabilised denominator of Sec. 4.1).
    ``image0``/``image1`` are ``(N, 1, H, W)``; ``image1_grad`` is ``centred_gradient(image1)``.
    """
    gx, gy = image1_grad
    warped = warp_bilinear(torch.cat((image1, gx, gy), dim=1), flow0, warp_mode)  # one sampling pass
    image1_warped, warped_grad = warped[:, :1], warped[:, 1:]
    grad_sq = (warped_grad * warped_grad).sum(1, keepdim=True) + GRAD_IS_ZERO
    rho_c = image1_warped - (warped_grad * flow0).sum(1, keepdim=True) - image0
    return warped_grad, grad_sq, rho_c


def tvl1_iteration(
    u: torch.Tensor,
    px: torch.Tensor,
    py: torch.Tensor,
    warped_grad: torch.Tensor,
    grad_sq: torch.Tensor,
    rho_c: torch.Tensor,
    *,
    lam: float = 0.15,
    theta: float = 0.3,
    tau: float = 0.25,
    eps: float = GRAD_IS_ZERO,
    kernels: DifferenceKernels | None = None,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """One iteration of the while-loop of Algorithm 1 (one TVNet layer, Fig. 2a).

    ``u (N,2,H,W)``, ``px``/``py (N,2,H,W)``; ``warped_grad``, ``grad_sq``, ``rho_c`` from
    :func:`linearised_data_term`.  Returns the new ``(u, px, py)``.

    * thresholding (Alg. 1's three cases, with the stabilised ``|grad I|^2 + eps``): written as
      ``v = u + clip(-rho / (|grad I|^2 + eps), -lam*theta, lam*theta) * grad I`` -- the same
      three cases in one clamp;
    * ``u = v + theta * div(p)``;
    * ``p = (p + tau/theta grad u) / (1 + tau/theta sqrt(|grad u|^2 + eps))`` (Eq. 11).
    """
    l_t = lam * theta
    taut = tau / theta
    # (Fused addcmul/alpha forms: each line is one pass over memory; this loop is memory bound.)
    rho = torch.addcmul(torch.addcmul(rho_c, warped_grad[:, :1], u[:, :1]), warped_grad[:, 1:], u[:, 1:])
    # Alg. 1 prints the update as "u = ..." and without "+ u"; the v-step is v = u + d (Zach et
    # al., the release and OpenCV).  Sec. 4.1 also drops the minus sign of -rho grad I/|grad I|^2.
    step = torch.clamp(rho / grad_sq, -l_t, l_t)
    v = torch.addcmul(u, step, warped_grad, value=-1.0)
    u = torch.add(v, divergence(px, py, kernels), alpha=theta)
    ux, uy = forward_gradient(u, kernels)
    denom = torch.sqrt(torch.addcmul(ux * ux, uy, uy) + eps) * taut + 1.0  # Eq. (11)
    return u, torch.add(px, ux, alpha=taut) / denom, torch.add(py, uy, alpha=taut) / denom


# ----------------------------------------------------------------------------------------------
# Fused-friendly version of tvl1_iteration (row-halo layout), for torch.compile
# ----------------------------------------------------------------------------------------------


def to_row_halo(field: torch.Tensor) -> torch.Tensor:
    """``(N, C, H, W)`` -> ``(N, C, H+2, W)`` contiguous, with a zero row above and below."""
    return F.pad(field, (0, 0, 1, 1))


def from_row_halo(state: torch.Tensor) -> torch.Tensor:
    """Inverse of :func:`to_row_halo`: the ``(N, C, H, W)`` interior (a view)."""
    return state[..., 1:-1, :]


def _halo_shifted(state: torch.Tensor, offset: int) -> torch.Tensor:
    """``(N, C, H+2, W)`` row-halo tensor -> ``(N, C, H, W)`` view of its interior moved by ``offset``
    elements in row-major order (``-1``: left neighbour, ``+W``: the row below).  A column shift
    past the edge lands on the neighbouring row's first/last pixel or on the zero halo row: callers
    make those reads harmless (a zero column, or a mask)."""
    n, c, rows, width = state.shape
    start = width + offset
    return state.flatten(2)[..., start : start + (rows - 2) * width].view(n, c, rows - 2, width)


def _taps(kernel: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """``(2, 1, 1, 2)`` or ``(2, 1, 2, 1)`` filter -> its two taps, each ``(1, 2, 1, 1)``."""
    flat = kernel.reshape(kernel.shape[0], 2)
    return flat[:, 0].reshape(1, -1, 1, 1), flat[:, 1].reshape(1, -1, 1, 1)


def tvl1_iteration_fused(
    u: torch.Tensor,
    px: torch.Tensor,
    py: torch.Tensor,
    warped_grad: torch.Tensor,
    grad_sq: torch.Tensor,
    rho_c: torch.Tensor,
    *,
    lam: float = 0.15,
    theta: float = 0.3,
    tau: float = 0.25,
    eps: float = GRAD_IS_ZERO,
    kernels: DifferenceKernels | None = None,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """:func:`tvl1_iteration` on row-halo tensors: ``u``, ``px``, ``py`` are ``(N, 2, H+2, W)``
    (:func:`to_row_halo`; zero halo rows), ``warped_grad``/``grad_sq``/``rho_c`` as there
    (``(N, ., H, W)``).  Returns the new ``(u, px, py)`` in the same layout.

    Precondition: the last column of ``px`` and the last row of ``py`` are 0.  It holds from
    ``p = 0`` (Algorithm 1's start) on, since Eq. (4) makes ``u_x`` 0 on the last column and
    ``u_y`` on the last row, so Eq. (11) keeps them 0; :func:`tvl1_iteration` instead ignores
    them (Eq. (5) never reads ``p(W)``).  Under that precondition the two are the same maths
    (``tests/test_tvl1.py``).  Every neighbour read is a shifted view, not a padded copy, so
    ``torch.compile`` emits two or three vectorised loops without per-element boundary masks
    (the convolution form costs about twice as much compiled, measured at 240x320 on one thread).
    """
    if kernels is None:
        kernels = default_difference_kernels(u.shape[1], dtype=u.dtype, device=u.device)
    width = u.shape[-1]
    l_t = lam * theta
    taut = tau / theta
    fx0, fx1 = _taps(kernels.forward_x)
    fy0, fy1 = _taps(kernels.forward_y)
    dx0, dx1 = _taps(kernels.divergence_x)
    dy0, dy1 = _taps(kernels.divergence_y)
    centre = _halo_shifted(u, 0)  # (N, 2, H, W)
    rho = rho_c + warped_grad[:, :1] * centre[:, :1] + warped_grad[:, 1:] * centre[:, 1:]
    v = centre - torch.clamp(rho / grad_sq, -l_t, l_t) * warped_grad  # thresholding, as tvl1_iteration
    # Eq. (5)/(9): p(i-1) at i = 0 reads the previous row's last px column (0, precondition) or the
    # zero halo row; p(W-1) itself is 0, which is Eq. (5)'s last-column case.
    div = (dx0 * _halo_shifted(px, -1) + dx1 * _halo_shifted(px, 0)
           + dy0 * _halo_shifted(py, -width) + dy1 * _halo_shifted(py, 0))
    u = to_row_halo(v + theta * div)
    centre = _halo_shifted(u, 0)
    # Eq. (4)/(8): 0 on the last column (the read past it lands on the next row: masked) and row.
    last_column = torch.arange(width, device=u.device) < width - 1
    ux = torch.where(last_column, fx0 * centre + fx1 * _halo_shifted(u, 1), 0.0)
    uy = F.pad((fy0 * centre + fy1 * _halo_shifted(u, width))[..., :-1, :], (0, 0, 0, 1))
    denom = torch.sqrt(ux * ux + uy * uy + eps) * taut + 1.0  # Eq. (11)
    px = to_row_halo((_halo_shifted(px, 0) + taut * ux) / denom)
    py = to_row_halo((_halo_shifted(py, 0) + taut * uy) / denom)
    return u, px, py


def photometric_residual(image0: torch.Tensor, image1: torch.Tensor, flow: torch.Tensor) -> torch.Tensor:
    """Exact (non-linearised) ``rho(u) = I1(x + u) - I0(x)`` (Sec. 3.2), ``(N, C, H, W)``."""
    return warp_bilinear(image1, flow) - image0


def tvl1_energy(
    flow: torch.Tensor,
    image0: torch.Tensor,
    image1: torch.Tensor,
    *,
    lam: float = 0.15,
    eps: float = GRAD_IS_ZERO,
    isotropic: bool = True,
    reduction: str = "mean",
) -> torch.Tensor:
    """TV-L1 energy, Eq. (1), with the exact warp for ``rho`` -- TVNet's flow loss ``L_f`` (Sec. 4.3).

    ``sum_x |grad u_1| + |grad u_2| + lam |I1(x+u) - I0(x)|`` averaged over pixels (and over
    channels of ``image*`` and the batch) with ``reduction="mean"``, per sample ``(N,)`` with
    ``reduction="none"``.  ``|grad u_d|`` is the Euclidean norm of the forward differences
    (``sqrt(. + eps)`` keeps it differentiable at 0).
    """
    ux, uy = forward_gradient(flow)
    if isotropic:
        smooth = torch.sqrt(ux * ux + uy * uy + eps).sum(1)
    else:
        # The release's get_loss uses the anisotropic |u_x| + |u_y| (and raw RGB frames).
        smooth = (ux.abs() + uy.abs()).sum(1)
    data = photometric_residual(image0, image1, flow).abs().mean(1)
    energy = (smooth + lam * data).flatten(1).mean(1)
    if reduction == "none":
        return energy
    if reduction == "mean":
        return energy.mean()
    raise ValueError(f"reduction: expected 'mean' or 'none', got {reduction!r}")


# ----------------------------------------------------------------------------------------------
# Plain per-pixel references (tiny inputs only), written straight from Eq. (3)-(5), (10), (11)
# and Algorithm 1.  They work on one channel/sample at a time and index pixels as (row j, col i).
# ----------------------------------------------------------------------------------------------


def _grid(rows: list[list[torch.Tensor]]) -> torch.Tensor:
    """Stack a nested list of scalar tensors into an ``(H, W)`` tensor (keeps autograd history)."""
    return torch.stack([torch.stack(row) for row in rows])


def centred_gradient_reference(image: torch.Tensor, kernel: tuple[float, float, float] = CENTRED_KERNEL):
    """Eq. (3) for ``image (H, W)``; interior ``k0*I(i-1) + k1*I(i) + k2*I(i+1)``, borders one-sided
    half differences (release/OpenCV), i.e. the missing neighbour replaced by the border pixel."""
    height, width = image.shape
    k0, k1, k2 = kernel
    dx = [[None] * width for _ in range(height)]
    dy = [[None] * width for _ in range(height)]
    for j in range(height):
        for i in range(width):
            left, right = image[j, max(i - 1, 0)], image[j, min(i + 1, width - 1)]
            up, down = image[max(j - 1, 0), i], image[min(j + 1, height - 1), i]
            dx[j][i] = k0 * left + k1 * image[j, i] + k2 * right
            dy[j][i] = k0 * up + k1 * image[j, i] + k2 * down
    return _grid(dx), _grid(dy)


def forward_gradient_reference(field: torch.Tensor, kernel_x=DIFFERENCE_KERNEL, kernel_y=DIFFERENCE_KERNEL):
    """Eq. (4) for ``field (H, W)``: ``a*u(i) + b*u(i+1)`` for ``i < W-1``, 0 on the last column
    (and the same along rows).  Kernels are pairs ``(a, b)`` of floats or scalar tensors."""
    height, width = field.shape
    zero = field.new_zeros(())
    dx = [[zero] * width for _ in range(height)]
    dy = [[zero] * width for _ in range(height)]
    for j in range(height):
        for i in range(width):
            if i < width - 1:
                dx[j][i] = kernel_x[0] * field[j, i] + kernel_x[1] * field[j, i + 1]
            if j < height - 1:
                dy[j][i] = kernel_y[0] * field[j, i] + kernel_y[1] * field[j + 1, i]
    return _grid(dx), _grid(dy)


def divergence_reference(px: torch.Tensor, py: torch.Tensor, kernel_x=DIFFERENCE_KERNEL, kernel_y=DIFFERENCE_KERNEL):
    """Eq. (5) for ``px``, ``py`` ``(H, W)``, generalised to a kernel ``[a, b]`` as
    ``a*p(i-1) + b*p(i)`` (``[-1, 1]`` gives ``p(i) - p(i-1)``), with Eq. (5)'s cases
    ``i = 1``: ``b*p(1)`` and ``i = W``: ``a*p(W-1)``."""
    height, width = px.shape
    div = [[None] * width for _ in range(height)]
    for j in range(height):
        for i in range(width):
            if i == 0:
                term_x = kernel_x[1] * px[j, i]
            elif i == width - 1:
                term_x = kernel_x[0] * px[j, i - 1]
            else:
                term_x = kernel_x[0] * px[j, i - 1] + kernel_x[1] * px[j, i]
            if j == 0:
                term_y = kernel_y[1] * py[j, i]
            elif j == height - 1:
                term_y = kernel_y[0] * py[j - 1, i]
            else:
                term_y = kernel_y[0] * py[j - 1, i] + kernel_y[1] * py[j, i]
            div[j][i] = term_x + term_y
    return _grid(div)


def warp_bilinear_reference(image: torch.Tensor, flow: torch.Tensor) -> torch.Tensor:
    """Eq. (10) for ``image (C, H, W)`` and ``flow (2, H, W)``: sample point ``x + u`` clamped into
    the image (border replicate), then ``sum_{m,n} I(m,n) max(0, 1-|x-m|) max(0, 1-|y-n|)``."""
    _, height, width = image.shape
    ys, xs = torch.meshgrid(
        torch.arange(height, dtype=flow.dtype), torch.arange(width, dtype=flow.dtype), indexing="ij"
    )
    x = (xs + flow[0]).clamp(0, width - 1)
    y = (ys + flow[1]).clamp(0, height - 1)
    return bilinear_sample_reference(image, x, y)


def tvl1_iteration_reference(
    u: torch.Tensor,
    px: torch.Tensor,
    py: torch.Tensor,
    warped_grad: torch.Tensor,
    grad_sq: torch.Tensor,
    rho_c: torch.Tensor,
    *,
    lam: float = 0.15,
    theta: float = 0.3,
    tau: float = 0.25,
    eps: float = GRAD_IS_ZERO,
    kernels: DifferenceKernels | None = None,
):
    """Algorithm 1's loop body, pixel by pixel, for one sample: ``u``, ``px``, ``py``,
    ``warped_grad`` ``(2, H, W)``; ``grad_sq``, ``rho_c`` ``(H, W)`` (``grad_sq`` already holds
    ``|grad I1|^2 + eps``).  Returns ``(u, px, py)``."""
    height, width = u.shape[-2:]
    l_t = lam * theta
    taut = tau / theta

    def taps(kernel: torch.Tensor | None, d: int):
        return DIFFERENCE_KERNEL if kernel is None else kernel[d].flatten()  # tensor: keeps gradients

    v = [[[None] * width for _ in range(height)] for _ in range(2)]
    for j in range(height):
        for i in range(width):
            g1, g2 = warped_grad[0, j, i], warped_grad[1, j, i]
            rho = rho_c[j, i] + g1 * u[0, j, i] + g2 * u[1, j, i]
            if rho < -l_t * grad_sq[j, i]:
                d1, d2 = l_t * g1, l_t * g2
            elif rho > l_t * grad_sq[j, i]:
                d1, d2 = -l_t * g1, -l_t * g2
            else:
                d1, d2 = -rho * g1 / grad_sq[j, i], -rho * g2 / grad_sq[j, i]
            v[0][j][i] = u[0, j, i] + d1
            v[1][j][i] = u[1, j, i] + d2

    new_u, new_px, new_py = [], [], []
    for d in range(2):
        kdx = taps(None if kernels is None else kernels.divergence_x, d)
        kdy = taps(None if kernels is None else kernels.divergence_y, d)
        div = divergence_reference(px[d], py[d], kdx, kdy)
        u_d = _grid([[v[d][j][i] + theta * div[j, i] for i in range(width)] for j in range(height)])
        kfx = taps(None if kernels is None else kernels.forward_x, d)
        kfy = taps(None if kernels is None else kernels.forward_y, d)
        ux, uy = forward_gradient_reference(u_d, kfx, kfy)
        rows_x, rows_y = [], []
        for j in range(height):
            row_x, row_y = [], []
            for i in range(width):
                norm = torch.sqrt(ux[j, i] ** 2 + uy[j, i] ** 2 + eps)
                row_x.append((px[d, j, i] + taut * ux[j, i]) / (1 + taut * norm))
                row_y.append((py[d, j, i] + taut * uy[j, i]) / (1 + taut * norm))
            rows_x.append(row_x)
            rows_y.append(row_y)
        new_u.append(u_d)
        new_px.append(_grid(rows_x))
        new_py.append(_grid(rows_y))
    new_u, new_px, new_py = torch.stack(new_u), torch.stack(new_px), torch.stack(new_py)
    return new_u, new_px, new_py
