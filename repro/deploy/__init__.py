"""Deployment: ONNX export and the runtimes that run the exported graphs.

* :mod:`repro.deploy.onnx` -- :func:`~repro.deploy.onnx.export_onnx` (the one opset,
  :data:`~repro.deploy.onnx.ONNX_OPSET`, dynamic batch) and
  :func:`~repro.deploy.onnx.ort_session` (an ONNX Runtime CPU session).
"""
