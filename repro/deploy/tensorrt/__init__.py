"""TensorRT deployment: plugins (:mod:`.plugins`) and engines (:mod:`.engine`); see README.md.

Importing this package imports neither TensorRT nor CUDA; the functions do, lazily."""
