"""TrajectoryNet (Zhao, Xiong & Lin, "Trajectory Convolution for Action Recognition", NeurIPS
2018): the Separable-3D ResNet-18 with trajectory convolutions (§3.1, §3.4) at named positions.

``forward(video, flow_fwd=None, flow_bwd=None)``: ``video (N, 3, T, H, W)`` (ImageNet-normalised,
as :mod:`repro.data.transforms` makes it), flows ``(N, 2, T, H, W)`` in input pixels (channel 0 =
x; ``flow_fwd[:, :, t]`` maps frame t to t+1, ``flow_bwd[:, :, t]`` to t-1).

Options (the rows of Tables 2-5):

* ``positions``: Caffe-style names of Table 2 (``"res2b1.conv1"``, ``"res3a.conv1"``,
  ``"res3b1.conv1"`` -- the default, ``"res3b1.conv1,2"``), resolved by the backbone's
  :func:`~repro.models.video_resnet.resolve_temporal_position`.
* ``downsample``: how the input-resolution flow reaches the feature resolution (Table 2):
  ``"avg"`` (average pooling) or ``"max"`` (max pooling).  Max pooling of a *signed* vector
  field is defined here as keeping, in every window, the flow vector of largest magnitude (a
  plain per-channel max would bias every displacement towards +x/+y).  Displacements are then
  rescaled by the spatial factor (feature pixels = input pixels × h/H).
* time: the backbone halves T twice (stem max pool, ``pool2``), so feature frame ``j`` at res3
  is input frame ``4j``; the flow between neighbouring feature frames is the trajectory over
  that many input frames, obtained by following the flow (Eq. 2 iterated) at the feature
  resolution (:func:`chain_flows`).  The paper does not say how it handled this.
* ``motion`` (Table 3): ``"none"`` (appearance only); ``"trajectory"`` -- the 4-channel
  trajectory offsets (Δx, Δy at τ = ±1, §3.3) normalised by BatchNorm and concatenated to the
  input of the trajectory conv; ``"feature"`` -- a motion feature map concatenated there:
  ``motion_feature="stream"`` (default) computes it with a flow-input S3D trunk up to the
  trajectory position (early fusion, the paper's reference [7]; this is what makes Table 3's
  15.9M vs 15.2M parameters), ``motion_feature="flow"`` uses the down-sampled flows themselves
  (4 channels: forward and backward).
* ``source`` (Table 4): ``"flow"`` (pre-computed TV-L1 or ground-truth flow passed to forward) or
  ``"motionnet_2"`` / ``"motionnet_17"`` (:mod:`repro.models.motionnet`, fed the de-normalised
  video; backward flows from the time-reversed clip) with ``motionnet_mode`` ``"frozen"``,
  ``"finetune"`` or ``"finetune_unsup"`` (L = γ L_unsup + L_cls, γ = ``unsup_weight`` = 0.01):
  then in training mode ``forward_output``'s losses are ``{"unsup": γ·L_unsup}`` (already weighted).
  The MotionNet flow at the scale equal to the feature resolution is used when there is one
  (§3.5: "produce optical flow map of the same resolution of feature maps").

Every extra input channel of a trajectory conv starts at zero weight and the conv copies the
S3D temporal conv, so with zero flow a fresh TrajectoryNet computes what its backbone computes.

``s3d_two_stream_resnet18``: Table 3's late-fusion baseline, an RGB S3D and a flow S3D whose
logits are averaged (:class:`repro.models.late_fusion.LateFusion`).
"""
from __future__ import annotations

import re
from typing import Any, Sequence

import torch
import torch.nn as nn
import torch.nn.functional as F

from repro.models.contract import FLOW_INPUT_SCALE, FLOW_INPUTS, ModelOutput, TrainingStage, VideoModel, require_flows
from repro.models.late_fusion import LateFusion
from repro.models.motionnet import MotionNet, MotionNetOutput, bidirectional_flows, motionnet_2, motionnet_17
from repro.models.temporal_positions import replace_temporal_conv
from repro.models.video_resnet import SeparableResNet, s3d_resnet18
from repro.ops.trajectory_conv import TrajectoryConv3d, trajectory_offsets
from repro.ops.warp import pixel_grid, sample_at
from repro.registry import register_model

__all__ = [
    "TrajectoryNet",
    "TwoStreamS3D",
    "TrajectoryTemporalConv",
    "TrajectoryContext",
    "MotionFeatureStream",
    "downsample_flow",
    "chain_flows",
    "trajectorynet_resnet18",
    "s3d_two_stream_resnet18",
]

_VIDEO_INPUT = (1, 3, 16, 112, 112)
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


# ----------------------------------------------------------------------------------------------
# flow at the feature resolution
# ----------------------------------------------------------------------------------------------
def downsample_flow(flow: torch.Tensor, size: tuple[int, int], method: str = "avg") -> torch.Tensor:
    """Pool ``flow (N, 2, T, H, W)`` (input pixels) to ``size = (h, w)`` in feature pixels.

    ``"avg"``: window average.  ``"max"``: the vector of largest magnitude in each window.
    Windows are ``H/h x W/w`` blocks (adaptive pooling windows when not divisible).
    """
    if flow.dim() != 5 or flow.shape[1] != 2:
        raise ValueError(f"flow: expected (N, 2, T, H, W), got {tuple(flow.shape)}")
    if method not in ("avg", "max"):
        raise ValueError(f"downsample: expected 'avg' or 'max', got {method!r}")
    n, _, length, height, width = flow.shape
    h, w = size
    if (h, w) == (height, width):
        pooled = flow
    elif height % h == 0 and width % w == 0:
        # 3-D pooling with a (1, kh, kw) window works on (N, 2, T, H, W) as is (no transposes).
        kernel = (1, int(height) // int(h), int(width) // int(w))  # int(): a constant window when traced (ONNX)
        if method == "avg":
            pooled = F.avg_pool3d(flow, kernel, stride=kernel)
        else:
            magnitude = (flow * flow).sum(dim=1, keepdim=True)
            _, index = F.max_pool3d(magnitude, kernel, stride=kernel, return_indices=True)
            pooled = flow.flatten(2).gather(2, index.flatten(2).expand(-1, 2, -1)).view(n, 2, length, h, w)
    else:
        planes = flow.transpose(1, 2).reshape(n * length, 2, height, width)
        if method == "avg":
            planes = F.adaptive_avg_pool2d(planes, (h, w))
        else:
            _, index = F.adaptive_max_pool2d((planes * planes).sum(dim=1, keepdim=True), (h, w), return_indices=True)
            planes = planes.flatten(2).gather(2, index.flatten(2).expand(-1, 2, -1))
        pooled = planes.reshape(n, length, 2, h, w).transpose(1, 2)
    scale = pooled.new_tensor([w / width, h / height]).view(1, 2, 1, 1, 1)
    return pooled * scale


def chain_flows(flow_fwd: torch.Tensor, flow_bwd: torch.Tensor, stride: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Flows between frames ``stride`` apart, kept at frames ``0, stride, 2·stride, ...``.

    The displacement from frame ``t`` to ``t ± stride`` is the trajectory through ``stride``
    single-frame flows (Eq. 2 iterated, flow read bilinearly, zeros outside the frame and the
    clip) -- the same positions as :func:`repro.ops.trajectory_conv.trajectory_positions` at
    ``τ = ±stride``, computed only for the kept frames.  ``stride = 1`` is the identity.
    """
    if stride == 1:
        return flow_fwd, flow_bwd
    n, _, length, height, width = flow_fwd.shape
    if length % stride != 0:
        raise ValueError(f"chain_flows: {length} frames is not a multiple of the temporal stride {stride}")
    kept = length // stride
    base = pixel_grid(height, width, device=flow_fwd.device, dtype=flow_fwd.dtype)

    def frames_at(flow: torch.Tensor, offset: int) -> torch.Tensor:
        """``flow[:, :, j·stride + offset]`` for j < kept (zeros outside the clip) as (N·kept, 2, h, w)."""
        if offset >= 0:
            picked = flow[:, :, offset::stride][:, :, :kept]
        else:  # only j >= 1 are inside the clip
            picked = F.pad(flow[:, :, stride + offset :: stride][:, :, : kept - 1], (0, 0, 0, 0, 1, 0))
        return picked.transpose(1, 2).reshape(n * kept, 2, height, width)

    # Both directions ride in one batch: one grid_sample per step.
    pos = base + torch.cat((frames_at(flow_fwd, 0), frames_at(flow_bwd, 0))).permute(0, 2, 3, 1)
    for step in range(1, stride):  # Eq. 2 iterated from the integer grid
        flow_step = torch.cat((frames_at(flow_fwd, step), frames_at(flow_bwd, -step)))
        pos = pos + sample_at(flow_step, pos).permute(0, 2, 3, 1)
    chained = (pos - base).reshape(2, n, kept, height, width, 2).permute(0, 1, 5, 2, 3, 4)
    return chained[0].contiguous(), chained[1].contiguous()


class TrajectoryContext:
    """What the trajectory convs of one forward pass share: the flows (input resolution, or
    MotionNet's multi-scale output), the pooling method, and the motion feature map.  Flows at a
    feature size are computed once and cached."""

    def __init__(
        self,
        flow_fwd: torch.Tensor,
        flow_bwd: torch.Tensor,
        downsample: str,
        motionnet_fwd: MotionNetOutput | None = None,
        motionnet_bwd: MotionNetOutput | None = None,
        motion_feature: torch.Tensor | None = None,
    ) -> None:
        self.flow_fwd, self.flow_bwd = flow_fwd, flow_bwd
        self.downsample = downsample
        self.motionnet_fwd, self.motionnet_bwd = motionnet_fwd, motionnet_bwd
        self.motion_feature = motion_feature
        self._cache: dict[tuple[int, int, int], tuple[torch.Tensor, torch.Tensor]] = {}

    def flows_at(self, length: int, height: int, width: int) -> tuple[torch.Tensor, torch.Tensor]:
        """``(flow_fwd, flow_bwd)`` ``(N, 2, length, height, width)`` in feature pixels."""
        key = (length, height, width)
        if key not in self._cache:
            fwd = bwd = None
            if self.motionnet_fwd is not None:
                for stride, flow in self.motionnet_fwd.flows.items():
                    if flow.shape[-2:] == (height, width):  # MotionNet's own scale (§3.5)
                        fwd, bwd = flow, self.motionnet_bwd.flows[stride]
                        break
            if fwd is None:
                fwd = downsample_flow(self.flow_fwd, (height, width), self.downsample)
                bwd = downsample_flow(self.flow_bwd, (height, width), self.downsample)
            t_in = fwd.shape[2]
            if t_in % length != 0:
                raise ValueError(f"features have {length} frames, not a divisor of the {t_in} input frames")
            self._cache[key] = chain_flows(fwd, bwd, t_in // length)
        return self._cache[key]


# ----------------------------------------------------------------------------------------------
# building blocks
# ----------------------------------------------------------------------------------------------
class TrajectoryTemporalConv(nn.Module):
    """A trajectory conv in place of an S3D temporal conv, called as ``module(x, context)``.

    ``motion``: ``"trajectory"`` concatenates the BN-normalised trajectory offsets (4 channels for
    kernel 3) to ``x``; ``"feature"`` concatenates a motion feature map of ``extra_channels``
    channels: ``context.motion_feature`` (``motion_feature="stream"``) or the forward and backward
    flows at the feature resolution (``motion_feature="flow"``, 4 channels).
    """

    def __init__(
        self, conv: nn.Conv3d, motion: str = "none", extra_channels: int = 0, motion_feature: str = "stream"
    ) -> None:
        super().__init__()
        if motion not in ("none", "trajectory", "feature"):
            raise ValueError(f"motion: expected 'none', 'trajectory' or 'feature', got {motion!r}")
        self.motion, self.motion_feature = motion, motion_feature
        self.dt = conv.kernel_size[0] // 2
        if motion == "trajectory":
            extra_channels = 4 * self.dt  # (Δx, Δy) for τ = -Δt..Δt without the (zero) centre
            self.offset_bn = nn.BatchNorm3d(extra_channels)
        elif motion == "feature" and motion_feature == "flow":
            extra_channels = 4
        elif motion == "none":
            extra_channels = 0
        self.extra_channels = extra_channels
        base = TrajectoryConv3d.from_conv3d(conv)
        self.conv = TrajectoryConv3d(
            conv.in_channels + extra_channels, conv.out_channels, conv.kernel_size, bias=conv.bias is not None
        )
        with torch.no_grad():  # appearance part = the S3D conv; motion channels start at zero
            self.conv.weight.zero_()
            self.conv.weight[:, : conv.in_channels].copy_(base.weight)
            if conv.bias is not None:
                self.conv.bias.copy_(base.bias)

    def forward(self, x: torch.Tensor, context: TrajectoryContext | None = None) -> torch.Tensor:
        if context is None:
            raise ValueError("a trajectory conv needs trajectories: call TrajectoryNet.forward with flows")
        flow_fwd, flow_bwd = context.flows_at(*x.shape[2:])
        if self.motion == "trajectory":
            offsets = trajectory_offsets(flow_fwd, flow_bwd, self.dt)
            centre = 2 * self.dt
            offsets = torch.cat((offsets[:, :centre], offsets[:, centre + 2 :]), dim=1)
            x = torch.cat((x, self.offset_bn(offsets)), dim=1)
        elif self.motion == "feature":
            if self.motion_feature == "flow":
                feature = torch.cat((flow_fwd, flow_bwd), dim=1)
            else:
                feature = context.motion_feature
            if feature is None or feature.shape[0] != x.shape[0] or feature.shape[2:] != x.shape[2:]:
                got = None if feature is None else tuple(feature.shape)
                raise ValueError(f"motion feature map {got} does not match the features {tuple(x.shape)}")
            x = torch.cat((x, feature), dim=1)
        return self.conv(x, flow_fwd, flow_bwd)


_CONV1_T_PATH = re.compile(r"^layer(\d)\.(\d+)\.conv1_t$")


class MotionFeatureStream(nn.Module):
    """A flow-input S3D-ResNet-18 trunk that stops at the input of the temporal conv at ``path``
    (``layerS.B.conv1_t``): stem, whole stages before S, blocks ``< B`` of stage S, and block B's
    spatial conv1-bn1-act1.  Its output has the appearance features' shape at that point."""

    def __init__(self, path: str, in_chans: int = 2, width: float = 1.0) -> None:
        super().__init__()
        match = _CONV1_T_PATH.match(path)
        if match is None:
            raise ValueError(
                f"motion='feature' with a motion stream needs a block's first temporal conv "
                f"(layerS.B.conv1_t, e.g. res3b1.conv1); got {path}"
            )
        stage, block = int(match.group(1)), int(match.group(2))
        trunk = s3d_resnet18(num_classes=1, in_chans=in_chans, dropout=0.0, width=width)
        self.conv1, self.bn1, self.act1, self.pool1, self.pool2 = trunk.conv1, trunk.bn1, trunk.act1, trunk.pool1, trunk.pool2
        self.stages = nn.ModuleList(trunk.stages()[: stage - 1])
        target = trunk.stages()[stage - 1]
        self.blocks = nn.Sequential(*list(target)[:block])
        entry = target[block]
        self.entry = nn.Sequential(entry.conv1, entry.bn1, entry.act1)
        self.pool2_after_blocks = stage == 1  # pool2 follows layer1 only once layer1 is complete

    def forward(self, flow: torch.Tensor) -> torch.Tensor:
        x = self.pool1(self.act1(self.bn1(self.conv1(flow))))
        for i, stage in enumerate(self.stages):
            x = stage(x)
            if i == 0:
                x = self.pool2(x)
        return self.entry(self.blocks(x))


# ----------------------------------------------------------------------------------------------
# models
# ----------------------------------------------------------------------------------------------
class TrajectoryNet(VideoModel):
    """S3D-ResNet-18 with trajectory convolutions; see the module docstring for the options.

    Contract (:mod:`repro.models.contract`): ``inputs`` is ``("video",)`` with a MotionNet source,
    else ``("video", "flow_fwd", "flow_bwd")``; ``forward`` returns logits; ``forward_output`` adds
    the loss ``"unsup"`` (``unsup_weight`` x MotionNet's unsupervised loss, training mode,
    ``motionnet_mode="finetune_unsup"``) and, with ``return_flow``, the forward flow it used; a
    MotionNet source declares the training stage ``motionnet_pretrain``
    (:class:`repro.models.motionnet_pretrain.MotionNetPretraining`).
    """

    def __init__(
        self,
        num_classes: int = 400,
        positions: Sequence[str] | str = ("res3b1.conv1",),
        downsample: str = "avg",
        motion: str = "none",
        motion_feature: str = "stream",
        source: str = "flow",
        motionnet_mode: str = "frozen",
        unsup_weight: float = 0.01,
        motionnet_width: float = 1.0,
        motionnet_file: str | None = None,
        dropout: float = 0.2,
        width: float = 1.0,
        pretrained_file: str | None = None,
        video_mean: Sequence[float] = IMAGENET_MEAN,
        video_std: Sequence[float] = IMAGENET_STD,
        return_flow: bool = False,
    ) -> None:
        super().__init__()
        if isinstance(positions, str):
            positions = (positions,)
        if downsample not in ("avg", "max"):
            raise ValueError(f"downsample: expected 'avg' or 'max', got {downsample!r}")
        if source not in ("flow", "motionnet_2", "motionnet_17"):
            raise ValueError(f"source: expected 'flow', 'motionnet_2' or 'motionnet_17', got {source!r}")
        if motionnet_mode not in ("frozen", "finetune", "finetune_unsup"):
            raise ValueError(f"motionnet_mode: expected 'frozen', 'finetune' or 'finetune_unsup', got {motionnet_mode!r}")
        if motion_feature not in ("stream", "flow"):
            raise ValueError(f"motion_feature: expected 'stream' or 'flow', got {motion_feature!r}")
        self.downsample, self.motion, self.source = downsample, motion, source
        self.motionnet_mode, self.unsup_weight, self.return_flow = motionnet_mode, unsup_weight, return_flow
        self.register_buffer("video_mean", torch.tensor(video_mean).view(1, 3, 1, 1, 1), persistent=False)
        self.register_buffer("video_std", torch.tensor(video_std).view(1, 3, 1, 1, 1), persistent=False)

        self.backbone: SeparableResNet = s3d_resnet18(num_classes=num_classes, pretrained_file=pretrained_file,
                                                      dropout=dropout, width=width)

        def factory(conv: nn.Conv3d) -> TrajectoryTemporalConv:
            # a motion stream's features have the block's width, i.e. the temporal conv's input
            return TrajectoryTemporalConv(conv, motion, conv.in_channels, motion_feature)

        self.trajectory_paths: list[str] = []
        for position in positions:
            # The paper's "resX.convK" is the block's K-th temporal conv (res3b1.conv1 ->
            # layer2.1.conv1_t).  The authors' released ResNet_S3D puts it on the block's second
            # temporal conv instead; pass "res3b1.conv2" for that.
            self.trajectory_paths += replace_temporal_conv(self.backbone, position, factory)
        self.motion_stream: MotionFeatureStream | None = None
        if motion == "feature" and motion_feature == "stream":
            if len(self.trajectory_paths) != 1:
                raise ValueError(
                    f"motion='feature' with a motion stream supports one trajectory position, got {self.trajectory_paths}"
                )
            self.motion_stream = MotionFeatureStream(self.trajectory_paths[0], width=width)

        self.motionnet: MotionNet | None = None
        self.inputs = ("video",) if source != "flow" else ("video", *FLOW_INPUTS)
        if source != "flow":
            build = motionnet_2 if source == "motionnet_2" else motionnet_17
            self.motionnet = build(pretrained_file=motionnet_file, width=motionnet_width)
            if motionnet_mode == "frozen":
                self.motionnet.requires_grad_(False)

    @property
    def uses_unsup_loss(self) -> bool:
        return self.motionnet is not None and self.motionnet_mode == "finetune_unsup"

    def _motionnet_flows(self, video: torch.Tensor):
        frames = video * self.video_std + self.video_mean  # MotionNet takes RGB in [0, 1]
        want_loss = self.training and self.uses_unsup_loss
        if self.motionnet_mode == "frozen":
            with torch.no_grad():
                return bidirectional_flows(self.motionnet, frames, with_loss=False)
        return bidirectional_flows(self.motionnet, frames, with_loss=want_loss)

    def training_stages(self) -> tuple[TrainingStage, ...]:
        if self.motionnet is None:
            return ()
        from repro.models.motionnet_pretrain import MotionNetPretraining

        return (MotionNetPretraining(self.motionnet, self.video_mean, self.video_std,
                                     freeze=self.motionnet_mode == "frozen"),)

    def forward(self, video: torch.Tensor, flow_fwd: torch.Tensor | None = None,
                flow_bwd: torch.Tensor | None = None) -> torch.Tensor:
        return self.forward_output(video, flow_fwd, flow_bwd).logits

    def forward_output(self, video: torch.Tensor, flow_fwd: torch.Tensor | None = None,
                       flow_bwd: torch.Tensor | None = None) -> ModelOutput:
        if video.dim() != 5 or video.shape[1] != 3:
            raise ValueError(f"video: expected (N, 3, T, H, W), got {tuple(video.shape)}")
        mn_fwd = mn_bwd = terms = None
        if self.motionnet is not None:
            mn_fwd, mn_bwd, terms = self._motionnet_flows(video)
            flow_fwd, flow_bwd = mn_fwd.flow, mn_bwd.flow
        else:
            flow_fwd, flow_bwd = require_flows(flow_fwd, flow_bwd, video)
        motion_feature = None
        if self.motion_stream is not None:
            motion_feature = self.motion_stream(flow_fwd * FLOW_INPUT_SCALE)
        context = TrajectoryContext(flow_fwd, flow_bwd, self.downsample, mn_fwd, mn_bwd, motion_feature)
        logits = self.backbone(video, temporal_inputs={path: context for path in self.trajectory_paths})
        losses = {"unsup": self.unsup_weight * terms["total"]} if terms is not None else {}
        return ModelOutput(logits, losses, flow_fwd if self.return_flow else None)


# ----------------------------------------------------------------------------------------------
# constructors
# ----------------------------------------------------------------------------------------------
@register_model(paper="trajectorynet", default_input=_VIDEO_INPUT, test_input=(2, 3, 4, 32, 32),
                tags=("trajectory", "flow_input"))
def trajectorynet_resnet18(
    num_classes: int = 400,
    pretrained_file: str | None = None,
    positions: Sequence[str] | str = ("res3b1.conv1",),
    downsample: str = "avg",
    motion: str = "none",
    source: str = "flow",
    **kwargs: Any,
) -> TrajectoryNet:
    """TrajectoryNet on S3D-ResNet-18 (§3.4).  ``pretrained_file``: a local 2D ResNet-18 or S3D
    checkpoint for the backbone (see :func:`repro.models.video_resnet.s3d_resnet18`); MotionNet
    weights via ``motionnet_file=``.  Other kwargs: see :class:`TrajectoryNet`."""
    return TrajectoryNet(
        num_classes,
        positions=positions,
        downsample=downsample,
        motion=motion,
        source=source,
        pretrained_file=pretrained_file,
        **kwargs,
    )


@register_model(paper="trajectorynet", default_input=_VIDEO_INPUT, test_input=(2, 3, 4, 32, 32),
                tags=("baseline", "two_stream", "flow_input"))
def s3d_two_stream_resnet18(
    num_classes: int = 400, pretrained_file: str | None = None, dropout: float = 0.2,
    flow_pretrained_file: str | None = None, width: float = 1.0,
) -> LateFusion:
    """Two-stream S3D-ResNet-18 with late fusion (Table 3, 30.4M parameters at 174 classes): an RGB
    S3D and a flow S3D (2 input channels), logits averaged (:class:`repro.models.late_fusion.LateFusion`)."""
    common = dict(num_classes=num_classes, dropout=dropout, width=width)
    return LateFusion(s3d_resnet18(pretrained_file=pretrained_file, **common),
                      s3d_resnet18(pretrained_file=flow_pretrained_file, in_chans=2, **common))
