"""MotionNet: unsupervised multi-frame optical flow (Zhu et al., "Hidden Two-Stream
Convolutional Networks for Action Recognition", 2017), as used by TrajectoryNet (NeurIPS 2018,
§3.5 and Table 4) to learn trajectories.

``MotionNet-(M+1)`` takes ``M+1`` consecutive RGB frames stacked as ``3(M+1)`` channels and
predicts the ``M`` forward flows ``t -> t+1`` at five scales with a FlowNet-SD-like
"downsample-upsample" network.  It is trained without flow supervision by
:func:`unsupervised_loss`: backward-warping frame ``t+1`` with flow ``t`` must reconstruct frame
``t`` (Charbonnier photometric + SSIM terms), plus a Charbonnier smoothness prior, per scale.

* ``motionnet_2``: one image pair -> one flow (TrajectoryNet's MotionNet-(2)).
* ``motionnet_17``: 17 consecutive frames -> 16 flows (MotionNet-(17)).
* ``width`` scales every channel count (``width=1`` is the authors' network; tests use 1/8).

Layout (facts from the first author's release, open-mmlab/mmaction v1
``mmaction/models/tenons/flownets/motionnet.py``; code written here from scratch):
encoder ``conv1`` (stride 1), ``conv1_1``, ``conv2`` ... ``conv6_1`` (strides 2, 64-128-256-512-
512-1024 channels, 3×3, LeakyReLU 0.1); prediction at strides 32, 16, 8, 4, 2; each decoder level
concatenates the encoder skip, a 4×4 stride-2 transposed conv of the previous level's features
and a transposed-conv up-sampling of the previous flow, fuses them with a 3×3 conv and predicts
the flow with a 3×3 conv.  The raw predictions are ``flow / 20`` in full-resolution pixels
(FlowNet's convention); at stride ``s`` they are multiplied by ``20 / s`` to get pixels of that
scale.  Loss facts: per-scale SSIM weights 0.16/0.08/0.04/0.02/0.01 from the coarsest (stride 32)
to the finest (stride 2), photometric and smoothness weights 1; Charbonnier
``((β d)² + ε²)^α`` with (α, β) = (0.4, 255) photometric and (0.3, 5) smoothness, ε = 0.001;
SSIM on 8×8 Gaussian windows with stride 8, c1 = 1e-4, c2 = 1e-3; images for the loss go through
``LocalResponseNorm(9, alpha=1, beta=0.5)``; a border of 10 % of the short side is masked.

Input: frames ``(N, 3, M+1, H, W)`` RGB in **[0, 1]** (any H, W: the network pads to a multiple
of 32 and crops back).  Output: :class:`MotionNetOutput` with ``flow (N, 2, M, H, W)`` at the
input resolution (pixels, channel 0 = x) and ``flows {stride: (N, 2, M, ceil(H/s), ceil(W/s))}``
in pixels of each scale, which :func:`unsupervised_loss` consumes.  :meth:`MotionNet.forward_scales`
returns it; ``forward`` returns its ``flow`` alone, a plain tensor (the model contract of
:mod:`repro.models.contract`, so tracing and export need no wrapper), and ``forward_output`` gives
``ModelOutput(logits=None, flow=flow, losses={"unsup": L_unsup})`` (the loss in training mode).

Backward flows for TrajectoryNet: :func:`bidirectional_flows` runs the network a second time on
the time-reversed clip, as the authors' recognizer does (``TSN3D.forward_train`` flips the
frames in time and calls the flow net again; the backbone flips the result back).
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn as nn
import torch.nn.functional as F

from repro.models._builder import load_checkpoint_state
from repro.models.contract import ModelOutput, VideoModel
from repro.ops.warp import warp_backward
from repro.registry import register_model

__all__ = [
    "MotionNet",
    "MotionNetOutput",
    "unsupervised_loss",
    "bidirectional_flows",
    "motionnet_2",
    "motionnet_17",
    "STRIDES",
    "SSIM_WEIGHTS",
]

STRIDES = (32, 16, 8, 4, 2)  # prediction scales, coarse to fine
FLOW_DIV = 20.0  # raw prediction = flow (full-resolution pixels) / FLOW_DIV
PHOTOMETRIC_WEIGHTS = (1.0, 1.0, 1.0, 1.0, 1.0)
SSIM_WEIGHTS = (0.16, 0.08, 0.04, 0.02, 0.01)
SMOOTHNESS_WEIGHTS = (1.0, 1.0, 1.0, 1.0, 1.0)
BORDER_RATIO = 0.1


@dataclass
class MotionNetOutput:
    """``flow``: ``(N, 2, M, H, W)`` at the input resolution; ``flows``: stride -> flow in
    pixels of that scale ``(N, 2, M, ceil(H/s), ceil(W/s))``."""

    flow: torch.Tensor
    flows: dict[int, torch.Tensor]


def _conv(in_channels: int, out_channels: int, stride: int = 1) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(in_channels, out_channels, 3, stride=stride, padding=1),
        nn.LeakyReLU(0.1, inplace=True),
    )


class _DecoderLevel(nn.Module):
    """One up-sampling level: deconv(features) ++ skip ++ upflow(previous flow) -> fuse -> flow."""

    def __init__(self, in_features: int, skip_channels: int, out_features: int, flow_channels: int) -> None:
        super().__init__()
        self.deconv = nn.Sequential(
            nn.ConvTranspose2d(in_features, out_features, 4, stride=2, padding=1, bias=False),
            nn.LeakyReLU(0.1, inplace=True),
        )
        self.upsample_flow = nn.ConvTranspose2d(flow_channels, flow_channels, 4, stride=2, padding=1, bias=False)
        # No activation after the fusion conv, as in the authors' ``smooth_conv`` layers.
        self.fuse = nn.Conv2d(skip_channels + out_features + flow_channels, out_features, 3, padding=1)
        self.predict = nn.Conv2d(out_features, flow_channels, 3, padding=1)

    def forward(self, features: torch.Tensor, skip: torch.Tensor, flow: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        fused = self.fuse(torch.cat((skip, self.deconv(features), self.upsample_flow(flow)), dim=1))
        return fused, self.predict(fused)


class MotionNet(VideoModel):
    """MotionNet-(``num_frames``): ``num_frames`` RGB frames -> ``num_frames - 1`` forward flows.

    Contract: ``inputs = ("video",)``, frames ``(N, 3, num_frames, H, W)`` in [0, 1].
    """

    def __init__(self, num_frames: int = 2, width: float = 1.0) -> None:
        super().__init__()
        if num_frames < 2:
            raise ValueError(f"num_frames: MotionNet needs at least 2 frames, got {num_frames}")
        if width <= 0:
            raise ValueError(f"width: expected > 0, got {width}")
        self.num_frames, self.width = num_frames, width
        self.num_flows = num_frames - 1
        ch = [max(1, round(c * width)) for c in (64, 128, 256, 512, 512, 1024)]
        flow_ch = 2 * self.num_flows
        self.conv1 = _conv(3 * num_frames, ch[0])
        self.conv1_1 = _conv(ch[0], ch[0])
        self.conv2 = _conv(ch[0], ch[1], 2)
        self.conv2_1 = _conv(ch[1], ch[1])
        self.conv3 = _conv(ch[1], ch[2], 2)
        self.conv3_1 = _conv(ch[2], ch[2])
        self.conv4 = _conv(ch[2], ch[3], 2)
        self.conv4_1 = _conv(ch[3], ch[3])
        self.conv5 = _conv(ch[3], ch[4], 2)
        self.conv5_1 = _conv(ch[4], ch[4])
        self.conv6 = _conv(ch[4], ch[5], 2)
        self.conv6_1 = _conv(ch[5], ch[5])
        self.predict6 = nn.Conv2d(ch[5], flow_ch, 3, padding=1)
        # decoder outputs: 512, 256, 128, 64 (x width) at strides 16, 8, 4, 2
        self.level5 = _DecoderLevel(ch[5], ch[4], ch[3], flow_ch)
        self.level4 = _DecoderLevel(ch[3], ch[3], ch[2], flow_ch)
        self.level3 = _DecoderLevel(ch[2], ch[2], ch[1], flow_ch)
        self.level2 = _DecoderLevel(ch[1], ch[1], ch[0], flow_ch)
        for m in self.modules():
            if isinstance(m, (nn.Conv2d, nn.ConvTranspose2d)):
                nn.init.kaiming_normal_(m.weight, a=0.1, nonlinearity="leaky_relu")
                if m.bias is not None:
                    nn.init.zeros_(m.bias)

    def example_inputs(self, shape: tuple[int, ...]) -> tuple[torch.Tensor, ...]:
        return (torch.rand(shape),)  # RGB in [0, 1]

    def forward(self, frames: torch.Tensor) -> torch.Tensor:
        """``(N, 3, M+1, H, W)`` -> the ``M`` forward flows ``(N, 2, M, H, W)`` in pixels."""
        return self.forward_scales(frames).flow

    def forward_output(self, frames: torch.Tensor) -> ModelOutput:
        out = self.forward_scales(frames)
        losses = {"unsup": unsupervised_loss(frames, out.flows)["total"]} if self.training else {}
        return ModelOutput(logits=None, losses=losses, flow=out.flow)

    def forward_scales(self, frames: torch.Tensor) -> MotionNetOutput:
        """The flow at the input resolution and at every prediction stride (:class:`MotionNetOutput`)."""
        if frames.dim() != 5 or frames.shape[1] != 3 or frames.shape[2] != self.num_frames:
            raise ValueError(
                f"frames: expected (N, 3, {self.num_frames}, H, W) RGB in [0, 1], got {tuple(frames.shape)}"
            )
        n, _, f, height, width = frames.shape
        x = frames.transpose(1, 2).reshape(n, 3 * f, height, width) - 0.5
        pad_h, pad_w = (-height) % 32, (-width) % 32
        if pad_h or pad_w:
            x = F.pad(x, (0, pad_w, 0, pad_h), mode="replicate")
        c1 = self.conv1_1(self.conv1(x))
        c2 = self.conv2_1(self.conv2(c1))
        c3 = self.conv3_1(self.conv3(c2))
        c4 = self.conv4_1(self.conv4(c3))
        c5 = self.conv5_1(self.conv5(c4))
        c6 = self.conv6_1(self.conv6(c5))
        raw = {32: self.predict6(c6)}
        features, raw[16] = self.level5(c6, c5, raw[32])
        features, raw[8] = self.level4(features, c4, raw[16])
        features, raw[4] = self.level3(features, c3, raw[8])
        _, raw[2] = self.level2(features, c2, raw[4])

        flows = {}
        for stride in STRIDES:
            h, w = math.ceil(height / stride), math.ceil(width / stride)
            flows[stride] = self._to_flow(raw[stride][..., :h, :w] * (FLOW_DIV / stride))
        full = F.interpolate(raw[2] * FLOW_DIV, scale_factor=2, mode="bilinear", align_corners=False)
        return MotionNetOutput(flow=self._to_flow(full[..., :height, :width]), flows=flows)

    def _to_flow(self, channels: torch.Tensor) -> torch.Tensor:
        """``(N, 2M, h, w)`` with channels (x_0, y_0, x_1, y_1, ...) -> ``(N, 2, M, h, w)``."""
        n, _, h, w = channels.shape
        return channels.reshape(n, self.num_flows, 2, h, w).transpose(1, 2)


# ----------------------------------------------------------------------------------------------
# unsupervised loss
# ----------------------------------------------------------------------------------------------
def _charbonnier(diff: torch.Tensor, mask: torch.Tensor, alpha: float, beta: float, eps: float = 1e-3) -> torch.Tensor:
    """Masked mean of ``((β d)² + ε²)^α`` (the authors' ``charbonnier_loss``)."""
    value = ((diff * beta) ** 2 + eps**2) ** alpha
    mask = mask.expand_as(value)
    return (value * mask).sum() / mask.sum().clamp_min(1.0)


def _border_mask(height: int, width: int, like: torch.Tensor) -> torch.Tensor:
    # All four borders; the authors' make_border_mask masks top and bottom twice (a copy-paste
    # slip) and masks everything when the border rounds to 0 (``x[-0:]``), which we do not copy.
    border = round(BORDER_RATIO * min(height, width))
    mask = like.new_ones(1, 1, height, width)
    if border > 0:
        mask[..., :border, :] = 0
        mask[..., -border:, :] = 0
        mask[..., :, :border] = 0
        mask[..., :, -border:] = 0
    return mask


def _ssim_loss(x: torch.Tensor, y: torch.Tensor, c1: float = 1e-4, c2: float = 1e-3) -> torch.Tensor:
    """``sum(1 - SSIM) / N`` over 8×8 Gaussian windows with stride 8 (the authors' SSIM_loss);
    the window shrinks to the image when the scale is smaller than 8 pixels."""
    n, channels, height, width = x.shape
    k = min(8, height, width)
    sigma = (2 * k) / 12.0
    coords = torch.arange(k, dtype=x.dtype, device=x.device) - k / 2.0
    g = torch.exp(-(coords[:, None] ** 2 + coords[None, :] ** 2) / (2 * sigma**2))
    kernel = (g / g.sum()).expand(channels, 1, k, k)

    def blur(z: torch.Tensor) -> torch.Tensor:
        return F.conv2d(z, kernel, stride=k, groups=channels)

    mu_x, mu_y = blur(x), blur(y)
    var_x = blur(x * x) - mu_x**2
    var_y = blur(y * y) - mu_y**2
    cov = blur(x * y) - mu_x * mu_y
    luminance = (2 * mu_x * mu_y + c1) / (mu_x**2 + mu_y**2 + c1)
    structure = (2 * cov + c2) / (var_x + var_y + c2)
    return (1 - luminance * structure).sum() / n


def unsupervised_loss(
    frames: torch.Tensor,
    flows: dict[int, torch.Tensor],
    *,
    photometric_weights: tuple[float, ...] = PHOTOMETRIC_WEIGHTS,
    ssim_weights: tuple[float, ...] = SSIM_WEIGHTS,
    smoothness_weights: tuple[float, ...] = SMOOTHNESS_WEIGHTS,
) -> dict[str, torch.Tensor]:
    """MotionNet's unsupervised loss ``L_unsup`` (TrajectoryNet §3.5; Zhu et al. 2017).

    ``frames (N, 3, M+1, H, W)`` RGB in [0, 1]; ``flows``: :attr:`MotionNetOutput.flows`
    (stride -> ``(N, 2, M, h, w)`` pixels of that scale; any subset of :data:`STRIDES`).
    Weights are per stride in :data:`STRIDES` order (coarse to fine).  Returns
    ``{"photometric", "ssim", "smoothness", "total"}`` (scalars; total = the weighted sum).
    """
    if frames.dim() != 5 or frames.shape[1] != 3:
        raise ValueError(f"frames: expected (N, 3, M+1, H, W), got {tuple(frames.shape)}")
    n, _, f, height, width = frames.shape
    lrn = nn.LocalResponseNorm(9, alpha=1.0, beta=0.5)
    normed = lrn(frames.transpose(1, 2).reshape(n * f, 3, height, width))
    terms = {"photometric": frames.new_zeros(()), "ssim": frames.new_zeros(()), "smoothness": frames.new_zeros(())}
    for stride, flow in flows.items():
        if stride not in STRIDES:
            raise ValueError(f"flows: unknown stride {stride}; expected some of {STRIDES}")
        i = STRIDES.index(stride)
        if flow.shape[0] != n or flow.shape[1] != 2 or flow.shape[2] != f - 1:
            raise ValueError(f"flows[{stride}]: expected (N={n}, 2, M={f - 1}, h, w), got {tuple(flow.shape)}")
        h, w = flow.shape[-2:]
        images = F.interpolate(normed, size=(h, w), mode="bilinear", align_corners=False).reshape(n, f, 3, h, w)
        m = f - 1
        flow_pairs = flow.transpose(1, 2).reshape(n * m, 2, h, w)
        target = images[:, :-1].reshape(n * m, 3, h, w)  # frame t
        warped = warp_backward(images[:, 1:].reshape(n * m, 3, h, w), flow_pairs)  # frame t+1 at p + flow_t(p)
        border = _border_mask(h, w, flow)
        photometric = _charbonnier(target - warped, border, alpha=0.4, beta=255.0)
        # SSIM over all pairs at once: channels = 3M, as the authors concatenate the pairs.
        ssim = _ssim_loss(
            warped.reshape(n, m * 3, h, w), target.reshape(n, m * 3, h, w)
        )
        # Smoothness on the raw prediction units (full-resolution pixels / 20), forward differences;
        # the last column (row) has no right (lower) neighbour and is masked.
        raw = flow_pairs * (stride / FLOW_DIV)
        dx = raw[..., :, :-1] - raw[..., :, 1:]
        dy = raw[..., :-1, :] - raw[..., 1:, :]
        smooth = _charbonnier(dx, border[..., :, :-1], alpha=0.3, beta=5.0) + _charbonnier(
            dy, border[..., :-1, :], alpha=0.3, beta=5.0
        )
        terms["photometric"] = terms["photometric"] + photometric_weights[i] * photometric
        terms["ssim"] = terms["ssim"] + ssim_weights[i] * ssim
        terms["smoothness"] = terms["smoothness"] + smoothness_weights[i] * smooth
    terms["total"] = terms["photometric"] + terms["ssim"] + terms["smoothness"]
    return terms


# ----------------------------------------------------------------------------------------------
# forward + backward flows of a clip
# ----------------------------------------------------------------------------------------------
def _run_on_clip(net: MotionNet, clip: torch.Tensor) -> tuple[MotionNetOutput, torch.Tensor]:
    """Forward flows ``t -> t+1`` for every frame of ``clip (N, 3, T, H, W)``.

    MotionNet-(2) runs on the ``T-1`` consecutive pairs (batched).  MotionNet-(M+1) needs exactly
    ``M+1`` frames: a shorter clip is padded by repeating its last frame (the extra flows are
    ~0 and feed only zero-padded taps of the trajectory conv); a longer one is an error.
    Returns the output for ``T`` flows (the last one, past the clip's end, is the padding flow)
    and the frames it was computed on (for the loss).
    """
    n, _, length, height, width = clip.shape
    if net.num_frames == 2:
        padded = torch.cat((clip, clip[:, :, -1:]), dim=2)
        pairs = torch.stack((padded[:, :, :-1], padded[:, :, 1:]), dim=3)  # (N, 3, T, 2, H, W)
        pairs = pairs.permute(0, 2, 1, 3, 4, 5).reshape(n * length, 3, 2, height, width)
        out = net.forward_scales(pairs)

        def regroup(flow: torch.Tensor) -> torch.Tensor:  # (N·T, 2, 1, h, w) -> (N, 2, T, h, w)
            return flow.reshape(n, length, 2, *flow.shape[-2:]).transpose(1, 2)

        return MotionNetOutput(regroup(out.flow), {s: regroup(v) for s, v in out.flows.items()}), pairs
    if length > net.num_frames:
        raise ValueError(
            f"MotionNet-({net.num_frames}) takes at most {net.num_frames} frames; the clip has {length}"
        )
    repeat = net.num_frames - length
    padded = torch.cat((clip,) + (clip[:, :, -1:],) * repeat, dim=2) if repeat else clip
    out = net.forward_scales(padded)
    keep = length  # flows 0..T-1 (flow T-1 is towards a repeated frame)
    if repeat == 0:  # T = M+1 frames give M = T-1 flows: append a zero flow for the last frame
        out = MotionNetOutput(
            F.pad(out.flow, (0, 0, 0, 0, 0, 1)), {s: F.pad(v, (0, 0, 0, 0, 0, 1)) for s, v in out.flows.items()}
        )
    return MotionNetOutput(out.flow[:, :, :keep], {s: v[:, :, :keep] for s, v in out.flows.items()}), padded


def bidirectional_flows(
    net: MotionNet, clip: torch.Tensor, *, with_loss: bool = False
) -> tuple[MotionNetOutput, MotionNetOutput, dict[str, torch.Tensor] | None]:
    """Forward and backward flows of every frame of ``clip (N, 3, T, H, W)`` (RGB in [0, 1]).

    ``forward.flow[:, :, t]`` maps frame t to t+1 and ``backward.flow[:, :, t]`` frame t to t-1
    (the ``flow_fwd`` / ``flow_bwd`` of :mod:`repro.ops.trajectory_conv`).  The backward flows
    come from running the same network on the time-reversed clip (authors' recognizer); the
    flow at ``t = T-1`` (forward) and ``t = 0`` (backward) leave the clip.  With ``with_loss`` the
    unsupervised loss of both directions is returned (``terms["total"]`` is their sum).
    """
    forward, frames_fwd = _run_on_clip(net, clip)
    backward_rev, frames_bwd = _run_on_clip(net, clip.flip(2))

    def unflip(flow: torch.Tensor) -> torch.Tensor:
        return flow.flip(2)

    backward = MotionNetOutput(unflip(backward_rev.flow), {s: unflip(v) for s, v in backward_rev.flows.items()})
    if not with_loss:
        return forward, backward, None
    terms = {}
    for name, out_raw, frames in (("fwd", forward, frames_fwd), ("bwd", backward_rev, frames_bwd)):
        if net.num_frames == 2:
            # pairs (N·T, 3, 2, H, W); drop the last pair of each clip (frame T-1 with itself)
            n, length = clip.shape[0], clip.shape[2]
            pairs = frames.reshape(n, length, *frames.shape[1:])[:, :-1].reshape(-1, *frames.shape[1:])
            flows = {
                s: v[:, :, :-1].transpose(1, 2).reshape(-1, 2, 1, *v.shape[-2:]) for s, v in out_raw.flows.items()
            }
            loss = unsupervised_loss(pairs, flows)
        else:
            length = clip.shape[2]
            loss = unsupervised_loss(frames[:, :, :length], {s: v[:, :, : length - 1] for s, v in out_raw.flows.items()})
        for key, value in loss.items():
            terms[f"{key}_{name}"] = value
    terms["total"] = terms["total_fwd"] + terms["total_bwd"]
    return forward, backward, terms


# ----------------------------------------------------------------------------------------------
# constructors
# ----------------------------------------------------------------------------------------------
def _create_motionnet(variant: str, num_frames: int, pretrained_file: str | None = None, width: float = 1.0,
                      num_classes: int = 0) -> MotionNet:
    if num_classes:
        raise ValueError(f"{variant} is a flow network (no classes); got num_classes={num_classes}")
    model = MotionNet(num_frames=num_frames, width=width)
    if pretrained_file is not None:
        state = load_checkpoint_state(pretrained_file)
        missing, unexpected = model.load_state_dict(state, strict=False)
        if missing or unexpected:
            raise ValueError(
                f"{pretrained_file}: not a MotionNet-({num_frames}) checkpoint at width {width} "
                f"(missing {sorted(missing)[:5]}, unexpected {sorted(unexpected)[:5]})"
            )
    return model


# Keyword arguments: pretrained_file, width (1.0 = the authors' network); num_classes must be 0.
@register_model(paper="trajectorynet", default_input=(1, 3, 2, 112, 112), test_input=(1, 3, 2, 32, 32), tags=("flow",))
def motionnet_2(**kwargs: Any) -> MotionNet:
    """MotionNet-(2): an image pair -> one flow (TrajectoryNet Table 4)."""
    return _create_motionnet("motionnet_2", **dict(dict(num_frames=2), **kwargs))


@register_model(paper="trajectorynet", default_input=(1, 3, 17, 112, 112), test_input=(1, 3, 17, 32, 32), tags=("flow",))
def motionnet_17(**kwargs: Any) -> MotionNet:
    """MotionNet-(17): 17 consecutive frames -> 16 flows (TrajectoryNet Table 4)."""
    return _create_motionnet("motionnet_17", **dict(dict(num_frames=17), **kwargs))
