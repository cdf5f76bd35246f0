"""Build a TensorRT engine from a repro ONNX export whose trajectory sampling is a plugin node.

    python -m trt_plugins.trajectory_conv.build_engine --demo --out /tmp/traj.engine [--jit]
    python -m trt_plugins.trajectory_conv.build_engine --onnx model_plugin.onnx --out model.engine

Steps (see README.md): export with ``sampler="trt_plugin"`` (one ``trajectory_sample`` node per
trajectory conv), :func:`prepare_onnx` (adds ``aot=1``, clears the node domain like NVIDIA's
sample), register the plugin, parse with TensorRT's ONNX parser, build a strongly typed engine.
Needs TensorRT >= 10.9 and a CUDA GPU; everything is imported lazily.
"""
from __future__ import annotations

import argparse
import os
import sys
import tempfile

from repro.fileio import atomic_write_bytes

PLUGIN_OP_TYPE = "trajectory_sample"


def export_onnx_with_plugin(module, example_inputs: tuple, path: str, input_names=None, output_names=None) -> None:
    """Export ``module`` (its TrajectoryConv3d layers switched to ``sampler="trt_plugin"``)."""
    from repro.deploy.onnx import export_onnx
    from repro.ops.trajectory_conv import PLUGIN_NAMESPACE, TrajectoryConv3d

    previous = {}
    for name, sub in module.named_modules():
        if isinstance(sub, TrajectoryConv3d):
            previous[name] = sub.sampler
            sub.sampler = "trt_plugin"
    try:
        # fixed shapes: the engine is built for the example's shapes
        export_onnx(module, example_inputs, path, input_names=input_names, output_names=output_names,
                    dynamic_batch=False, custom_opsets={PLUGIN_NAMESPACE: 1})
    finally:
        for name, sub in module.named_modules():
            if name in previous:
                sub.sampler = previous[name]


def prepare_onnx(src: str, dst: str, aot: bool = True) -> int:
    """Mark plugin nodes for TensorRT: ``aot`` attribute, empty domain.  Returns how many nodes."""
    import onnx

    model = onnx.load(src)
    count = 0
    for node in model.graph.node:
        if node.op_type != PLUGIN_OP_TYPE:
            continue
        count += 1
        node.domain = ""  # NVIDIA's QDP sample uses default-domain nodes; the parser matches op_type
        for attr in list(node.attribute):
            if attr.name == "aot":
                node.attribute.remove(attr)
        node.attribute.append(onnx.helper.make_attribute("aot", int(aot)))
    if count == 0:
        raise ValueError(f"{src}: no '{PLUGIN_OP_TYPE}' node; export with sampler='trt_plugin'")
    atomic_write_bytes(dst, model.SerializeToString())
    return count


def build_engine(onnx_path: str) -> bytes:
    """Parse ``onnx_path`` (plugin registered first) and build a strongly typed serialized engine."""
    import tensorrt as trt

    from trt_plugins.trajectory_conv.plugin import register

    register()
    logger = trt.Logger(trt.Logger.WARNING)
    builder = trt.Builder(logger)
    flags = 0
    if hasattr(trt.NetworkDefinitionCreationFlag, "STRONGLY_TYPED"):
        flags |= 1 << int(trt.NetworkDefinitionCreationFlag.STRONGLY_TYPED)
    network = builder.create_network(flags)
    parser = trt.OnnxParser(network, logger)
    if not parser.parse_from_file(onnx_path):
        errors = "\n".join(str(parser.get_error(i)) for i in range(parser.num_errors))
        raise RuntimeError(f"TensorRT could not parse {onnx_path}:\n{errors}")
    config = builder.create_builder_config()
    serialized = builder.build_serialized_network(network, config)
    if serialized is None:
        raise RuntimeError(f"TensorRT engine build failed for {onnx_path}")
    return bytes(serialized)


def run_engine(engine_bytes: bytes, inputs: dict) -> dict:
    """Run a serialized engine on CUDA torch tensors; returns the outputs by name."""
    import tensorrt as trt
    import torch

    from trt_plugins.trajectory_conv.plugin import register

    register()
    runtime = trt.Runtime(trt.Logger(trt.Logger.WARNING))
    engine = runtime.deserialize_cuda_engine(engine_bytes)
    context = engine.create_execution_context()
    outputs = {}
    keep = []
    for i in range(engine.num_io_tensors):
        name = engine.get_tensor_name(i)
        if engine.get_tensor_mode(name) == trt.TensorIOMode.INPUT:
            tensor = inputs[name].contiguous().cuda()
            context.set_input_shape(name, tuple(tensor.shape))
        else:
            shape = tuple(context.get_tensor_shape(name))
            dtype = {trt.float32: torch.float32, trt.float16: torch.float16}[engine.get_tensor_dtype(name)]
            tensor = torch.empty(shape, dtype=dtype, device="cuda")
            outputs[name] = tensor
        keep.append(tensor)
        context.set_tensor_address(name, tensor.data_ptr())
    stream = torch.cuda.Stream()
    if not context.execute_async_v3(stream.cuda_stream):
        raise RuntimeError("TensorRT execution failed")
    stream.synchronize()
    return outputs


def demo(out_path: str, aot: bool = True) -> float:
    """Export a TrajectoryConv3d, build the engine, compare with PyTorch; returns max |error|."""
    import torch

    from repro.ops.trajectory_conv import TrajectoryConv3d

    class Demo(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.conv = TrajectoryConv3d(16, 16, 3)

        def forward(self, x, flow_fwd, flow_bwd):
            return self.conv(x, flow_fwd, flow_bwd)

    torch.manual_seed(0)
    model = Demo().eval()
    x = torch.randn(1, 16, 8, 14, 14)
    ff = torch.randn(1, 2, 8, 14, 14)
    fb = torch.randn(1, 2, 8, 14, 14)
    with tempfile.TemporaryDirectory() as tmp:
        raw = os.path.join(tmp, "demo.onnx")
        ready = os.path.join(tmp, "demo_trt.onnx")
        export_onnx_with_plugin(model, (x, ff, fb), raw, ["x", "flow_fwd", "flow_bwd"], ["y"])
        prepare_onnx(raw, ready, aot=aot)
        engine = build_engine(ready)
    atomic_write_bytes(out_path, engine)
    got = run_engine(engine, {"x": x, "flow_fwd": ff, "flow_bwd": fb})["y"].cpu()
    with torch.no_grad():
        expected = model(x, ff, fb)
    return float((got - expected).abs().max())


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--onnx", help="ONNX exported with sampler='trt_plugin'")
    parser.add_argument("--demo", action="store_true", help="export + build + check a small TrajectoryConv3d")
    parser.add_argument("--out", required=True, help="engine file to write")
    parser.add_argument("--jit", action="store_true", help="use the Python (JIT) plugin implementation, not AOT PTX")
    args = parser.parse_args(argv)
    if args.demo:
        err = demo(args.out, aot=not args.jit)
        print(f"engine written to {args.out}; max |TensorRT - PyTorch| = {err:.3g}")
        return 0 if err < 1e-3 else 1
    if not args.onnx:
        parser.error("give --onnx PATH or --demo")
    with tempfile.TemporaryDirectory() as tmp:
        ready = os.path.join(tmp, "ready.onnx")
        n = prepare_onnx(args.onnx, ready, aot=not args.jit)
        engine = build_engine(ready)
    atomic_write_bytes(args.out, engine)
    print(f"{n} trajectory_sample plugin node(s); engine written to {args.out}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
