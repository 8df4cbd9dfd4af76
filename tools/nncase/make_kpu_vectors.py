"""Regenerate nangua's nncase-derived KPU test data (``tests/data/kpu/``).

Run with the Python 3.10 virtual environment holding nncase 1.9 (never committed)::

    python3.10 -m venv build/nncase-venv
    build/nncase-venv/bin/pip install nncase==1.9.0.20230322 onnx==1.14.1 numpy==1.26.4
    build/nncase-venv/bin/python tools/nncase/make_kpu_vectors.py

For every case in :data:`CASES` it builds a small float ONNX model with the ``onnx`` helper API
(seeded weights), compiles it for the K210 with nncase (uint8 input and output, so that the
kmodel's input goes straight into KPU RAM and its output comes straight out of it: the K210
module is upload → KPU layers → download with no CPU operator in between), runs nncase's host
simulator on a seeded random input, and writes

- ``<name>.kmodel``: the compiled model (its KPU layers, weights and tables are extracted by
  ``nangua.hdl.kpu.kmodel`` in the tests);
- ``<name>.npz``: ``input`` and nncase's ``output`` (uint8, N×C×H×W);
- ``cases.json``: each case's ONNX recipe and what the kmodel turned out to contain.

The script refuses a case whose compiled model is not a pure KPU program (an operator left on
the CPU, or no KPU layer), because then the model's I/O would not be the KPU's I/O.
"""

import argparse
import importlib.util
import json
import pathlib
import sys

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

import nncase

ROOT = pathlib.Path(__file__).resolve().parents[2]


def _load_reader():
    """nangua's kmodel reader, loaded from its file: the nangua package needs Python 3.11."""
    package = "nangua_kpu_standalone"
    spec = importlib.util.spec_from_file_location(
        package, ROOT / "hdl" / "kpu" / "__init__.py",
        submodule_search_locations=[str(ROOT / "hdl" / "kpu")])
    module = importlib.util.module_from_spec(spec)
    sys.modules[package] = module
    spec.loader.exec_module(module)
    return importlib.import_module(f"{package}.kmodel")


kmodel_reader = _load_reader()

# Each case: name, input shape (C, H, W), input float range, the layers, and a seed.
# Layers: ("conv", out_channels, kernel, stride, pads (t, l, b, r), depthwise, activation)
#         ("maxpool" | "avgpool", kernel, stride, pads (t, l, b, r))
#         ("identity",): a 1×1 convolution with identity weights, no bias, no activation.
# Activations: None, "relu", "relu6", "leaky".
#
# nncase 1.9 cannot make a fused pool the model output ("Can't get model output range!": the
# fused pool's output has no calibrated range), so each pool case ends with an identity 1×1
# layer; the pooled map stays in KPU RAM between the two layers and the model runs both. The
# identity layer maps each pooled byte through a per-channel monotonic requantisation, so a
# wrong pooled byte still shows in the output.
CASES = [
    dict(name="conv3x3_c8_o16_12x12_relu", shape=(8, 12, 12), range=(0, 1), seed=1,
         layers=[("conv", 16, 3, 1, (1, 1, 1, 1), False, "relu")]),
    dict(name="conv1x1_c16_o8_20x20_signed_in", shape=(16, 20, 20), range=(-1, 1), seed=2,
         layers=[("conv", 8, 1, 1, (0, 0, 0, 0), False, None)]),
    dict(name="conv3x3_c3_o5_odd_13x7_leaky", shape=(3, 7, 13), range=(-2, 3), seed=3,
         layers=[("conv", 5, 3, 1, (1, 1, 1, 1), False, "leaky")]),
    dict(name="conv3x3_c4_o6_wide_130x5_relu6", shape=(4, 5, 130), range=(0, 4), seed=4,
         layers=[("conv", 6, 3, 1, (1, 1, 1, 1), False, "relu6")]),
    dict(name="conv1x1_c6_o3_65x9", shape=(6, 9, 65), range=(-3, 1), seed=5,
         layers=[("conv", 3, 1, 1, (0, 0, 0, 0), False, "relu")]),
    dict(name="dw3x3_c32_40x24_relu", shape=(32, 24, 40), range=(-1, 1), seed=6,
         layers=[("conv", 32, 3, 1, (1, 1, 1, 1), True, "relu")]),
    dict(name="dw1x1_c12_17x9", shape=(12, 9, 17), range=(0, 2), seed=7,
         layers=[("conv", 12, 1, 1, (0, 0, 0, 0), True, None)]),
    dict(name="pool_max2s2_c4_o8_16x16", shape=(4, 16, 16), range=(0, 1), seed=11,
         layers=[("conv", 8, 3, 1, (1, 1, 1, 1), False, "relu"), ("maxpool", 2, 2, (0, 0, 0, 0)),
                 ("identity",)]),
    dict(name="pool_mean2s2_c4_o8_18x10", shape=(4, 10, 18), range=(-1, 1), seed=12,
         layers=[("conv", 8, 3, 1, (1, 1, 1, 1), False, None), ("avgpool", 2, 2, (0, 0, 0, 0)),
                 ("identity",)]),
    dict(name="pool_max4s4_c5_o7_24x16", shape=(5, 16, 24), range=(0, 1), seed=13,
         layers=[("conv", 7, 1, 1, (0, 0, 0, 0), False, "relu"), ("maxpool", 4, 4, (0, 0, 0, 0)),
                 ("identity",)]),
    dict(name="pool_mean4s4_c6_o4_36x16", shape=(6, 16, 36), range=(-1, 2), seed=14,
         layers=[("conv", 4, 3, 1, (1, 1, 1, 1), False, "relu"), ("avgpool", 4, 4, (0, 0, 0, 0)),
                 ("identity",)]),
    dict(name="stride2_lefttop_c4_o8_16x12", shape=(4, 12, 16), range=(0, 1), seed=15,
         layers=[("conv", 8, 3, 2, (1, 1, 1, 1), False, "relu")]),
    dict(name="stride2_righttop_c4_o8_16x12", shape=(4, 12, 16), range=(0, 1), seed=16,
         layers=[("conv", 8, 3, 2, (1, 0, 1, 1), False, "relu")]),
    dict(name="pool_mean2s1_c4_o4_10x9", shape=(4, 9, 10), range=(0, 1), seed=17,
         layers=[("conv", 4, 3, 1, (1, 1, 1, 1), False, "relu"), ("avgpool", 2, 1, (0, 0, 1, 1)),
                 ("identity",)]),
    dict(name="pool_max2s1_c4_o4_10x9", shape=(4, 9, 10), range=(-1, 1), seed=18,
         layers=[("conv", 4, 3, 1, (1, 1, 1, 1), False, None), ("maxpool", 2, 1, (0, 0, 1, 1)),
                 ("identity",)]),
    dict(name="chain_c3_o8_o4_16x16", shape=(3, 16, 16), range=(0, 1), seed=21,
         layers=[("conv", 8, 3, 1, (1, 1, 1, 1), False, "relu"),
                 ("conv", 4, 1, 1, (0, 0, 0, 0), False, None)]),
    dict(name="chan_c4_o1024_1x1_4x4", shape=(4, 4, 4), range=(0, 1), seed=31,
         layers=[("conv", 1024, 1, 1, (0, 0, 0, 0), False, "relu")]),
    dict(name="chan_c1024_o8_3x3_4x4", shape=(1024, 4, 4), range=(-1, 1), seed=32,
         layers=[("conv", 8, 3, 1, (1, 1, 1, 1), False, None)]),
    dict(name="chan_dw1024_3x3_4x4", shape=(1024, 4, 4), range=(0, 1), seed=33,
         layers=[("conv", 1024, 3, 1, (1, 1, 1, 1), True, "relu")]),
    dict(name="chan_c256_o256_1x1_6x5", shape=(256, 5, 6), range=(0, 1), seed=34,
         layers=[("conv", 256, 1, 1, (0, 0, 0, 0), False, "relu")]),
]


def build_onnx(case):
    """The case's float ONNX model, shape-inferred."""
    rng = np.random.default_rng(case["seed"])
    channels = case["shape"][0]
    nodes, initializers = [], []
    current = "x"
    for index, layer in enumerate(case["layers"]):
        out = f"t{index}"
        if layer[0] == "identity":
            w = np.eye(channels, dtype=np.float32).reshape(channels, channels, 1, 1)
            initializers += [numpy_helper.from_array(w, f"w{index}"),
                             numpy_helper.from_array(np.zeros(channels, np.float32), f"b{index}")]
            nodes.append(helper.make_node("Conv", [current, f"w{index}", f"b{index}"], [out],
                                          kernel_shape=[1, 1]))
        elif layer[0] == "conv":
            _, out_channels, kernel, stride, pads, depthwise, act = layer
            group_in = 1 if depthwise else channels
            fan_in = group_in * kernel * kernel
            w = rng.normal(0, 1.5 / np.sqrt(fan_in), (out_channels, group_in, kernel, kernel))
            b = rng.normal(0, 0.2, (out_channels,))
            initializers += [numpy_helper.from_array(w.astype(np.float32), f"w{index}"),
                             numpy_helper.from_array(b.astype(np.float32), f"b{index}")]
            conv_out = out if act is None else f"c{index}"
            nodes.append(helper.make_node(
                "Conv", [current, f"w{index}", f"b{index}"], [conv_out],
                kernel_shape=[kernel, kernel], strides=[stride, stride],
                pads=[pads[0], pads[1], pads[2], pads[3]],
                group=channels if depthwise else 1))
            if act == "relu":
                nodes.append(helper.make_node("Relu", [conv_out], [out]))
            elif act == "relu6":
                initializers += [numpy_helper.from_array(np.array(0, np.float32), f"lo{index}"),
                                 numpy_helper.from_array(np.array(6, np.float32), f"hi{index}")]
                nodes.append(helper.make_node("Clip", [conv_out, f"lo{index}", f"hi{index}"],
                                              [out]))
            elif act == "leaky":
                nodes.append(helper.make_node("LeakyRelu", [conv_out], [out], alpha=0.1))
            channels = out_channels
        else:
            kind, kernel, stride, pads = layer
            op = "MaxPool" if kind == "maxpool" else "AveragePool"
            nodes.append(helper.make_node(op, [current], [out], kernel_shape=[kernel, kernel],
                                          strides=[stride, stride], pads=list(pads)))
        current = out
    graph = helper.make_graph(
        nodes, case["name"],
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, *case["shape"]])],
        [helper.make_tensor_value_info(current, TensorProto.FLOAT, None)], initializers)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 11)])
    model.ir_version = 7
    return onnx.shape_inference.infer_shapes(model)


def compile_kmodel(case, model, dump_dir):
    """Compile to a K210 kmodel with uint8 input and output; return the kmodel bytes."""
    rng = np.random.default_rng(case["seed"] + 1000)
    low, high = case["range"]
    options = nncase.CompileOptions()
    options.target = "k210"
    options.input_type = "uint8"
    options.output_type = "uint8"
    options.quant_type = "uint8"
    options.w_quant_type = "uint8"
    # preprocess carries the uint8 input range; with input_range = the calibrated range the
    # input dequantize folds into the KPU upload.
    options.preprocess = True
    options.input_range = [float(low), float(high)]
    options.input_shape = [1, *case["shape"]]
    options.input_layout = "NCHW"
    options.output_layout = "NCHW"
    options.model_layout = "NCHW"
    # nncase reads mean/std per channel when the input has 3 channels (RGB), else one value.
    channels = 3 if case["shape"][0] == 3 else 1
    options.mean = [0.0] * channels
    options.std = [1.0] * channels
    options.swapRB = False
    options.letterbox_value = 0.0
    options.dump_asm = True
    options.dump_dir = str(dump_dir)
    compiler = nncase.Compiler(options)
    compiler.import_onnx(model.SerializeToString(), nncase.ImportOptions())
    ptq = nncase.PTQTensorOptions()
    ptq.samples_count = 4
    calibration = rng.uniform(low, high, (4, *case["shape"])).astype(np.float32)
    ptq.set_tensor_data(calibration.tobytes())
    compiler.use_ptq(ptq)
    compiler.compile()
    return compiler.gencode_tobytes()


def cpu_ops(dump_dir):
    """Runtime ops of the stackvm (CPU) module other than the call into the K210 module."""
    ops_file = pathlib.Path(dump_dir) / "stackvm" / "main" / "runtime_ops.txt"
    return [line for line in ops_file.read_text().splitlines()
            if line.strip() and not line.startswith("[Call]")]


def simulate(kmodel, x):
    simulator = nncase.Simulator()
    simulator.load_model(kmodel)
    simulator.set_input_tensor(0, nncase.RuntimeTensor.from_numpy(x))
    simulator.run()
    return simulator.get_output_tensor(0).to_numpy()


def make_case(case, out_dir, work_dir):
    dump_dir = pathlib.Path(work_dir) / case["name"]
    model = build_onnx(case)
    kmodel = compile_kmodel(case, model, dump_dir)
    program = kmodel_reader.read_k210_program(kmodel)
    leftovers = cpu_ops(dump_dir)
    kinds = [type(op).__name__ if not isinstance(op, tuple) else op[0] for op in program.ops]
    if leftovers or not program.layers or kinds[0] != "KpuUpload" or kinds[-1] != "KpuDownload":
        raise RuntimeError(f"{case['name']}: not a pure KPU program: CPU ops {leftovers}, "
                           f"K210 ops {kinds}")
    rng = np.random.default_rng(case["seed"] + 2000)
    x = rng.integers(0, 256, (1, *case["shape"]), dtype=np.uint8)
    y = simulate(kmodel, x)
    if y.dtype != np.uint8:
        raise RuntimeError(f"{case['name']}: output is {y.dtype}, not uint8")
    (out_dir / f"{case['name']}.kmodel").write_bytes(kmodel)
    np.savez_compressed(out_dir / f"{case['name']}.npz", input=x, output=y)
    layers = [layer.descriptor for layer in program.layers]
    return dict(
        name=case["name"], seed=case["seed"], input_shape=list(case["shape"]),
        input_range=list(case["range"]),
        layers=[list(layer) for layer in case["layers"]],
        kpu_ops=kinds, output_shape=list(y.shape),
        kpu_layers=[dict(kernel_type=d.kernel_type, pool_type=d.pool_type,
                         depthwise=d.depth_wise_layer, i_ch=d.i_ch_num, o_ch=d.o_ch_num,
                         loads=d.load_time, arg_x=d.arg_x, arg_w=d.arg_w, arg_add=d.arg_add,
                         pad_value=d.pad_value) for d in layers],
    )


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=pathlib.Path, default=ROOT / "tests" / "data" / "kpu")
    parser.add_argument("--only", nargs="*", help="case names to regenerate")
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    index_file = args.out / "cases.json"
    index = json.loads(index_file.read_text()) if index_file.exists() and args.only else []
    index = [entry for entry in index if entry["name"] not in (args.only or [])]
    work = ROOT / "build" / "nncase-dump"
    work.mkdir(parents=True, exist_ok=True)
    for case in CASES:
        if args.only and case["name"] not in args.only:
            continue
        entry = make_case(case, args.out, work)
        index.append(entry)
        pools = [layer["pool_type"] for layer in entry["kpu_layers"]]
        print(f"{case['name']}: {entry['kpu_ops']} pools {pools}", flush=True)
    order = {case["name"]: i for i, case in enumerate(CASES)}
    index.sort(key=lambda entry: order.get(entry["name"], len(order)))
    index_file.write_text(json.dumps(index, indent=1) + "\n")


if __name__ == "__main__":
    main()
