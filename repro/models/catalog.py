"""Every model family, imported so that each registers its models with :mod:`repro.registry`.

The registry imports this module by name on its first lookup; add a new family file here.
"""
from repro.models import video_resnet  # noqa: F401  C2D/TSN, R3D, MC3, R(2+1)D, P3D, S3D
from repro.models import tvnet  # noqa: F401  TVNet flow networks (CVPR 2018)
from repro.models import tvnet_action  # noqa: F401  TVNet Table 3 classifiers
from repro.models import motionnet  # noqa: F401  MotionNet (TrajectoryNet's learned trajectories)
from repro.models import trajectorynet  # noqa: F401  TrajectoryNet (NeurIPS 2018)
from repro.models import bninception  # noqa: F401  BN-Inception (TSN / Dynamics backbone)
from repro.models import dynamics  # noqa: F401  Disentangling Components of Dynamics (CVPR 2018)
from repro.models import lgd  # noqa: F401  LGD-2D / LGD-3D (CVPR 2019)
