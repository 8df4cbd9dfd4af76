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
from nangua.hdl.kpu.kpu import SPRAM_BYTES, Kpu
from nangua.hdl.kpu.model import run_layers
from nangua.sim.kpu import run_kpu

DATA = pathlib.Path(__file__).parent / "data" / "kpu"
CASES = [case["name"] for case in json.loads((DATA / "cases.json").read_text())]
RAM_BYTES = 128 * 1024          # every case's maps lie below line 2048
#: Engine configurations: 4 lanes with 2 post lanes, and the iCE40's 1 lane with serial post
#: (its KPU RAM and weights share the 128 KiB of SPRAM: :func:`_ram_bytes`).
CONFIGS = {
    "l4": dict(lanes=4, post_lanes=2),
    "l1s": dict(lanes=1, ram_word_bytes=8, single_port_ram=True, serial_post=True),
}

#: Rough cycles above which a case is slow (16 cycles an output with the serial post: the
#: default run keeps three of its cases).
SLOW_COST = {"l4": 6000, "l1s": 12000}


def _cost(descriptors, config):
    """Rough simulated cycles of a program (to keep the default run short)."""
    lanes = CONFIGS[config]["lanes"]
    serial = CONFIGS[config].get("serial_post", False)
    cost = 0
    for d in descriptors:
        groups = d.o_ch_num if d.depth_wise_layer else math.ceil(d.o_ch_num / lanes)
        # A 1×1 layer takes an entry per channel with the serial post (center_1x1).
        entries = (1 if d.depth_wise_layer
                   else d.i_ch_num if d.kernel_type == 1 or serial
                   else math.ceil(d.i_ch_num / 9))
        compute = groups * d.i_col_high * entries * max(d.i_row_wid, 9)
        post = 16 * d.o_ch_num * d.i_col_high * d.i_row_wid if serial else 0
        cost += max(compute, post)
    return cost


def _weight_bytes(memory):
    """The weight memory of a case: its weights in whole 8-byte words, at least one table."""
    return max((len(memory) + 7) // 8 * 8, 144)


def _ram_bytes(config, memory):
    """The KPU RAM of a case: 128 KiB, or on a single-port (SPRAM) engine what the SPRAM
    leaves beside the weights, in whole lines."""
    if CONFIGS[config].get("single_port_ram"):
        return (SPRAM_BYTES - _weight_bytes(memory)) // LINE_BYTES * LINE_BYTES
    return RAM_BYTES


def _fits(descriptors, ram_bytes):
    """Every map of the program lies inside a KPU RAM of ``ram_bytes``."""
    lines = ram_bytes // LINE_BYTES
    return all(d.image_src_addr + d.input_lines <= lines
               and d.image_dst_addr + d.output_lines <= lines for d in descriptors)


def _params():
    params = []
    for config in CONFIGS:
        for name in CASES:
            program = read_k210_program((DATA / f"{name}.kmodel").read_bytes())
            memory, descriptors = weight_memory(program)
            if not _fits(descriptors, _ram_bytes(config, memory)):
                continue                # e.g. 1024 channels beside 74 KiB of weights
            slow = _cost(descriptors, config) > SLOW_COST[config]
            params.append(pytest.param(name, config, id=f"{config}-{name}",
                                       marks=[pytest.mark.slow] if slow else []))
    return params


@pytest.mark.parametrize("name,config", _params())
def test_gateware_matches_nncase(name, config):
    program = read_k210_program((DATA / f"{name}.kmodel").read_bytes())
    vectors = np.load(DATA / f"{name}.npz")
    upload, download = program.ops[0], program.ops[-1]
    memory, descriptors = weight_memory(program)
    weight_bytes = _weight_bytes(memory)
    memory = bytes(memory) + bytes(weight_bytes - len(memory))
    ram = bytearray(_ram_bytes(config, memory))
    write_fmap(ram, upload.output.start // LINE_BYTES, vectors["input"][0])
    kpu = Kpu(ram_bytes=len(ram), weight_bytes=weight_bytes,
              max_width=max(d.i_row_wid for d in descriptors),
              max_entries=max(d.i_ch_num for d in descriptors), **CONFIGS[config])
    run = run_kpu(kpu, ram, memory, [d.to_words() for d in descriptors],
                  timeout_cycles=20 * _cost(descriptors, config) + 10_000)
    assert [layer.reason for layer in run.layers] == [0] * len(descriptors)
    got = read_fmap(run.ram, download.input.start // LINE_BYTES, *download.shape[1:])
    assert np.array_equal(got[None], vectors["output"])
    expected = bytearray(ram)
    run_layers(descriptors, expected, memory)
    assert run.ram == expected
