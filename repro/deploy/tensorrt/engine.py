"""TensorRT engines of repro models whose custom ops (trajectory sampling) are plugin nodes.

    python -m repro engine --demo --out /tmp/traj.engine [--jit]
    python -m repro engine <model|paper:table:row> --out model.engine [--input SHAPE]
    python -m repro engine --onnx model_plugin.onnx --out model.engine

Steps (see README.md): export with ``sampler="trt_plugin"`` (one ``trajectory_sample`` node per
trajectory conv), :func:`prepare_onnx` (adds ``aot=1``, clears the node domain like NVIDIA's
sample), register the plugin, parse with TensorRT's ONNX parser, build a strongly typed engine.
Needs TensorRT >= 10.9 and a CUDA GPU; everything is imported lazily.
"""
from __future__ import annotations

import os
import tempfile

from repro.deploy.tensorrt.plugins import PLUGIN_OP_TYPES, register
from repro.fileio import atomic_write_bytes


def plugin_samplers(module):
    """Within the block, every ``TrajectoryConv3d`` of ``module`` exports its sampling as the
    plugin node (``sampler="trt_plugin"``; same values in PyTorch); restored on exit.  Yields how
    many it switched."""
    from repro.ops.module_swap import set_on_submodules
    from repro.ops.trajectory_conv import TrajectoryConv3d

    return set_on_submodules(module, TrajectoryConv3d, "sampler", "trt_plugin")


def export_onnx_with_plugin(module, example_inputs: tuple, path: str, input_names=None, output_names=None) -> None:
    """Export ``module`` with one ``repro::trajectory_sample`` node per trajectory convolution."""
    from repro.deploy.onnx import export_onnx
    from repro.ops.trajectory_conv import PLUGIN_NAMESPACE

    with plugin_samplers(module):
        # fixed shapes: the engine is built for the example's shapes
        export_onnx(module, example_inputs, path, input_names=input_names, output_names=output_names,
                    dynamic_batch=False, custom_opsets={PLUGIN_NAMESPACE: 1})


def prepare_onnx(src: str, dst: str, aot: bool = True, require: bool = True) -> int:
    """Mark plugin nodes for TensorRT: ``aot`` attribute, empty domain.  Returns how many nodes
    (``require``: a graph without any is an error)."""
    import onnx

    model = onnx.load(src)
    count = 0
    for node in model.graph.node:
        if node.op_type not in PLUGIN_OP_TYPES:
            continue
        count += 1
        node.domain = ""  # NVIDIA's QDP sample uses default-domain nodes; the parser matches op_type
        for attr in list(node.attribute):
            if attr.name == "aot":
                node.attribute.remove(attr)
        node.attribute.append(onnx.helper.make_attribute("aot", int(aot)))
    if count == 0 and require:
        raise ValueError(f"{src}: no plugin node ({', '.join(PLUGIN_OP_TYPES)}); export with export_onnx_with_plugin")
    atomic_write_bytes(dst, model.SerializeToString())
    return count


def build_engine(onnx_path: str) -> bytes:
    """Parse ``onnx_path`` (plugin registered first) and build a strongly typed serialized engine."""
    import tensorrt as trt

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


def engine_session(engine_bytes: bytes, inputs: dict):
    """A callable running a serialized engine on ``inputs`` (CUDA torch tensors by name, copied
    once into the engine's buffers); each call returns the outputs by name."""
    import tensorrt as trt
    import torch

    register()
    runtime = trt.Runtime(trt.Logger(trt.Logger.WARNING))
    engine = runtime.deserialize_cuda_engine(engine_bytes)
    context = engine.create_execution_context()
    outputs, keep = {}, []
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

    def run() -> dict:
        if not context.execute_async_v3(stream.cuda_stream):
            raise RuntimeError("TensorRT execution failed")
        stream.synchronize()
        return outputs

    run.keep = (engine, context, keep)  # the buffers live as long as the callable
    return run


def run_engine(engine_bytes: bytes, inputs: dict) -> dict:
    """Run a serialized engine once on CUDA torch tensors; returns the outputs by name."""
    return engine_session(engine_bytes, inputs)()


def build_model_engine(model, example_inputs: tuple, aot: bool = True) -> tuple[bytes, list[str], int]:
    """Export ``model`` with plugin nodes, mark them, build: ``(engine, input names, plugin nodes)``."""
    names = [f"input_{i}" for i in range(len(example_inputs))]
    with tempfile.TemporaryDirectory() as tmp:
        raw, ready = os.path.join(tmp, "model.onnx"), os.path.join(tmp, "model_trt.onnx")
        export_onnx_with_plugin(model, example_inputs, raw, input_names=names)
        count = prepare_onnx(raw, ready, aot=aot, require=False)
        return build_engine(ready), names, count


def engine_runner(model, cuda_inputs: tuple):
    """The ``tensorrt`` latency backend: ``run_once`` of ``model``'s engine on ``cuda_inputs``."""
    engine, names, _ = build_model_engine(model, tuple(x.cpu() for x in cuda_inputs))
    return engine_session(engine, dict(zip(names, cuda_inputs)))


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


def write_engine(out_path: str, *, onnx_path: str | None = None, model=None, example_inputs: tuple = (),
                 aot: bool = True) -> int:
    """Build an engine from an ONNX file (plugin nodes marked first) or from a model; write it to
    ``out_path``.  Returns the number of plugin nodes."""
    if onnx_path is not None:
        with tempfile.TemporaryDirectory() as tmp:
            ready = os.path.join(tmp, "ready.onnx")
            count = prepare_onnx(onnx_path, ready, aot=aot, require=False)
            engine = build_engine(ready)
    else:
        engine, _, count = build_model_engine(model, example_inputs, aot=aot)
    atomic_write_bytes(out_path, engine)
    return count
