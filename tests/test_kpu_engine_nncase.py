"""The KPU gateware on the nncase-compiled layers of ``tests/data/kpu`` (see test_kpu_nncase.py):
each kmodel's KPU layers run on the simulated gateware; the downloaded output must equal
nncase's own simulator output byte for byte, and the whole RAM the golden model's."""

import json
import math
import pathlib

import numpy as np
import pytest

from nangua.hdl.kpu.featuremap import LINE_BYTES, read_fmap, write_fmap
from nangua.hdl.kpu.kmodel import read_k210_program, weight_memory
from nangua.hdl.kpu.kpu import Kpu
from nangua.hdl.kpu.model import run_layers
from nangua.sim.kpu import run_kpu

DATA = pathlib.Path(__file__).parent / "data" / "kpu"
CASES = [case["name"] for case in json.loads((DATA / "cases.json").read_text())]
RAM_BYTES = 128 * 1024          # every case's maps lie below line 2048
LANES = 4


def _cost(descriptors):
    """Rough simulated cycles of a program (to keep the default run short)."""
    cost = 0
    for d in descriptors:
        groups = d.o_ch_num if d.depth_wise_layer else math.ceil(d.o_ch_num / LANES)
        entries = (1 if d.depth_wise_layer
                   else d.i_ch_num if d.kernel_type == 1 else math.ceil(d.i_ch_num / 9))
        cost += groups * d.i_col_high * entries * max(d.i_row_wid, 9)
    return cost


def _params():
    params = []
    for name in CASES:
        program = read_k210_program((DATA / f"{name}.kmodel").read_bytes())
        _, descriptors = weight_memory(program)
        slow = _cost(descriptors) > 6000
        params.append(pytest.param(name, marks=[pytest.mark.slow] if slow else []))
    return params


@pytest.mark.parametrize("name", _params())
def test_gateware_matches_nncase(name):
    program = read_k210_program((DATA / f"{name}.kmodel").read_bytes())
    vectors = np.load(DATA / f"{name}.npz")
    upload, download = program.ops[0], program.ops[-1]
    memory, descriptors = weight_memory(program)
    weight_bytes = (len(memory) + 7) // 8 * 8
    memory = bytes(memory) + bytes(weight_bytes - len(memory))
    ram = bytearray(RAM_BYTES)
    write_fmap(ram, upload.output.start // LINE_BYTES, vectors["input"][0])
    kpu = Kpu(ram_bytes=RAM_BYTES, weight_bytes=max(weight_bytes, 144), lanes=LANES,
              post_lanes=2, max_width=max(d.i_row_wid for d in descriptors),
              max_entries=max(d.i_ch_num for d in descriptors))
    run = run_kpu(kpu, ram, memory, [d.to_words() for d in descriptors],
                  timeout_cycles=20 * _cost(descriptors) + 10_000)
    assert [layer.reason for layer in run.layers] == [0] * len(descriptors)
    got = read_fmap(run.ram, download.input.start // LINE_BYTES, *download.shape[1:])
    assert np.array_equal(got[None], vectors["output"])
    expected = bytearray(ram)
    run_layers(descriptors, expected, memory)
    assert run.ram == expected
