"""Model families, one module per paper (plus the shared video backbones).

Importing this package registers every model with :mod:`repro.registry`.
"""
from repro.models import video_resnet  # noqa: F401  C2D/TSN, R3D, MC3, R(2+1)D, P3D, S3D
from repro.models import tvnet  # noqa: F401  TVNet (CVPR 2018)
from repro.models import motionnet  # noqa: F401  MotionNet (TrajectoryNet's learned trajectories)
from repro.models import trajectorynet  # noqa: F401  TrajectoryNet (NeurIPS 2018)
from repro.models import bninception  # noqa: F401  BN-Inception (TSN / Dynamics backbone)
from repro.models import dynamics  # noqa: F401  Disentangling Components of Dynamics (CVPR 2018)
