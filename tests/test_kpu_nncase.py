"""nangua's KPU golden model against nncase 1.9's K210 simulator, byte for byte.

The data under ``tests/data/kpu/`` comes from ``tools/nncase/make_kpu_vectors.py`` (Python 3.10
with nncase; not needed here): each case is a kmodel compiled by nncase from a small float ONNX
model, a random uint8 input and nncase's simulated uint8 output. The kmodel's K210 program is
upload → KPU layer(s) → download, so the model's input and output are the KPU's.
"""

import json
import pathlib

import numpy as np
import pytest

from nangua.hdl.kpu.descriptor import PoolType, Reason, make_layer
from nangua.hdl.kpu.featuremap import LINE_BYTES, read_fmap, write_fmap
from nangua.hdl.kpu.kmodel import (
    KmodelError, KpuDownload, KpuUpload, read_k210_program, weight_memory,
)
from nangua.hdl.kpu.model import KPU_RAM_BYTES, check, run_layers

DATA = pathlib.Path(__file__).parent / "data" / "kpu"
CASES = json.loads((DATA / "cases.json").read_text())


def _load(name):
    program = read_k210_program((DATA / f"{name}.kmodel").read_bytes())
    vectors = np.load(DATA / f"{name}.npz")
    return program, vectors["input"], vectors["output"]


def _run(program, x):
    upload, download = program.ops[0], program.ops[-1]
    assert isinstance(upload, KpuUpload) and isinstance(download, KpuDownload)
    assert upload.output.start % LINE_BYTES == 0 and download.input.start % LINE_BYTES == 0
    memory, descriptors = weight_memory(program)
    ram = bytearray(KPU_RAM_BYTES)
    write_fmap(ram, upload.output.start // LINE_BYTES, x[0])
    for d in descriptors:
        assert check(d, ram_size=len(ram), weight_size=len(memory)) == Reason.OK
    run_layers(descriptors, ram, memory)
    return read_fmap(ram, download.input.start // LINE_BYTES, *download.shape[1:])[None]


@pytest.mark.parametrize("name", [case["name"] for case in CASES])
def test_model_matches_nncase_byte_for_byte(name):
    program, x, expected = _load(name)
    got = _run(program, x)
    assert got.shape == expected.shape
    mismatches = np.argwhere(got != expected)
    assert len(mismatches) == 0, (
        f"{len(mismatches)} of {got.size} bytes differ; first at {tuple(mismatches[0])}: "
        f"nangua {got[tuple(mismatches[0])]}, nncase {expected[tuple(mismatches[0])]}")


@pytest.mark.parametrize("name", [case["name"] for case in CASES])
def test_make_layer_reproduces_nncase_descriptor(name):
    program, _, _ = _load(name)
    for layer in program.layers:
        d = layer.descriptor
        built = make_layer(
            in_channels=d.i_ch_num, out_channels=d.o_ch_num, width=d.i_row_wid,
            height=d.i_col_high, kernel_size=d.kernel_size, depthwise=bool(d.depth_wise_layer),
            pool_type=d.pool_type, src_addr=d.image_src_addr, dst_addr=d.image_dst_addr,
            arg_x=d.arg_x, shr_x=d.shr_x, arg_w=d.arg_w, shr_w=d.shr_w, arg_add=d.arg_add,
            pad_value=d.pad_value, int_en=d.int_en, send_data_out=d.send_data_out)
        assert built.to_words() == list(layer.words)


def test_cases_cover_every_pool_type_nncase_emits():
    pools = {layer["pool_type"] for case in CASES for layer in case["kpu_layers"]}
    # nncase 1.9 never emits LEFT_TOP_4_S4; test_kpu_model.py covers it by hand.
    assert pools == set(PoolType) - {PoolType.LEFT_TOP_4_S4}


def test_cases_cover_kernels_depthwise_and_channel_range():
    layers = [layer for case in CASES for layer in case["kpu_layers"]]
    assert {(layer["kernel_type"], layer["depthwise"]) for layer in layers} == {
        (0, 0), (1, 0), (0, 1), (1, 1)}
    assert min(layer["i_ch"] for layer in layers) <= 4
    assert max(layer["i_ch"] for layer in layers) == 1024
    assert max(layer["o_ch"] for layer in layers) == 1024
    assert max(layer["loads"] for layer in layers) > 1
    assert any(layer["arg_w"] != 0 and layer["arg_add"] != 0 for layer in layers)


def test_kmodel_tables_are_where_the_layer_says():
    program, _, _ = _load("conv3x3_c8_o16_12x12_relu")
    (layer,) = program.layers
    d = layer.descriptor
    assert layer.weights.size == d.o_ch_num * d.i_ch_num * 9 == d.para_size * d.load_time
    assert layer.batch_norm.size == 8 * d.o_ch_num
    assert layer.activation.size == 144


def test_kmodel_reader_rejects_other_files():
    with pytest.raises(KmodelError, match=r"^Not a version 5 kmodel \(identifier b'KMDL', "
                                          r"version 5\)$"):
        read_k210_program(b"KMDL" + (5).to_bytes(4, "little") + bytes(24))


def test_kmodel_reader_rejects_unknown_k210_opcode():
    data = bytearray((DATA / "conv3x3_c8_o16_12x12_relu.kmodel").read_bytes())
    program = read_k210_program(data)
    text_op = program.ops[0]
    assert isinstance(text_op, KpuUpload)
    # The upload's output range (KPU RAM, location 64) appears once: find the op by it.
    needle = bytes([64, text_op.output.datatype, 0, 0]) + text_op.output.start.to_bytes(4, "little")
    at = data.find(needle) - 16
    assert data[at] == 0
    data[at] = 9
    with pytest.raises(KmodelError, match=r"^Unknown K210 opcode 9 at text offset 0$"):
        read_k210_program(data)
