"""The serial post front end (:func:`nangua.hdl.kpu.post.serial_front_end`): its SB_MAC16
multiplier (Yosys's model in Icarus) and the behavioural twin against a registered product,
its limbs, and its arithmetic on the values where a
serial schedule goes wrong (limb boundaries, the 36-bit wrap, a segment start equal to ``v``,
unsorted segment starts, no segment below ``v``, exact halves, saturation), byte for byte
against the golden model through the whole engine."""

import random
import re
from pathlib import Path

import numpy as np
import pytest
from amaranth.back import verilog
from amaranth.hdl import Shape, signed
from amaranth.sim import Simulator

from nangua.hdl.kpu import model
from nangua.hdl.kpu.descriptor import make_layer, pack_activation, pack_batchnorm
from nangua.hdl.kpu.featuremap import write_fmap
from nangua.hdl.kpu.kpu import Kpu
from nangua.hdl.kpu.post import Mul16, limbs
from nangua.sim.kpu import run_kpu
from icarus_cells import needs_icarus, run_with_cell

RAM_BYTES = 8192
WEIGHT_BYTES = 2048
BUILD = Path("build/test_kpu_post")


def _run_mul16(text, vectors, name):
    """Run ``vectors`` of (a, b, en) through the Verilog ``text`` of a :class:`Mul16` with
    Yosys's SB_MAC16 model in Icarus; returns ``p`` after each clock edge."""
    return run_with_cell(BUILD / name, text, "SB_MAC16", [("en", 1), ("a", 16), ("b", 16)],
                         ("p", 32), [(en, a, b) for a, b, en in vectors])


def _mul16_vectors():
    rng = random.Random("mul16")
    edges = [-(1 << 15), -(1 << 15) + 1, -1, 0, 1, (1 << 15) - 1, 1 << 14, (1 << 14) - 1]
    vectors = [(a, b, 1) for a in edges for b in edges]
    vectors += [(rng.randint(-(1 << 15), (1 << 15) - 1), rng.randint(-(1 << 15), (1 << 15) - 1),
                 rng.random() < 0.8) for _ in range(300)]
    return vectors


def _expected_mul16(vectors):
    p, out = 0, []
    for a, b, en in vectors:
        if en:
            p = (a * b) & 0xFFFFFFFF
        out.append(p)
    return out


@needs_icarus
def test_sb_mac16_16x16_equals_signed_product():
    """The SB_MAC16 (Yosys's model, in Icarus) gives the behavioural twin's registered signed
    product, holding it while ``en`` is 0; an unsigned A operand is caught."""
    vectors = _mul16_vectors()
    text = verilog.convert(Mul16("ice40"), name="top", emit_src=False)
    got = _run_mul16(text, vectors, "mul16")
    assert got == [f"{p:08x}" for p in _expected_mul16(vectors)]
    assert "A_SIGNED(32'd1)" in text or ".A_SIGNED(1" in text, text
    wrong = re.sub(r"\.A_SIGNED\((32'd)?1\)", ".A_SIGNED(32'd0)", text)
    got = _run_mul16(wrong, vectors, "mul16-unsigned")
    assert got != [f"{p:08x}" for p in _expected_mul16(vectors)]


def test_behavioural_mul16_is_the_registered_product():
    vectors = _mul16_vectors()
    dut = Mul16()
    got = []

    async def bench(ctx):
        for a, b, en in vectors:
            ctx.set(dut.a, a)
            ctx.set(dut.b, b)
            ctx.set(dut.en, en)
            await ctx.tick()
            got.append(ctx.get(dut.p) & 0xFFFFFFFF)

    sim = Simulator(dut)
    sim.add_clock(1e-8)
    sim.add_testbench(bench)
    sim.run()
    assert got == _expected_mul16(vectors)


@pytest.mark.parametrize("shape", [signed(16), signed(24), signed(36), signed(37), 15, 18, 22])
def test_limbs_rebuild_every_value(shape):
    # Each limb fits a signed 16-bit operand, and the limbs (unsigned low, signed top) add up
    # to the operand: checked on the extremes and random values.
    shape = Shape.cast(shape)
    parts = limbs(shape)
    width, is_signed = shape.width, shape.signed
    lo, hi = (-(1 << (width - 1)), (1 << (width - 1)) - 1) if is_signed else (0, (1 << width) - 1)
    rng = random.Random(f"limbs-{width}-{is_signed}")
    for value in [lo, hi, 0, -1 if is_signed else 1] + [rng.randint(lo, hi) for _ in range(200)]:
        total = 0
        for lsb, bits, limb_signed in parts:
            limb = (value >> lsb) & ((1 << bits) - 1)
            if limb_signed and limb >> (bits - 1):
                limb -= 1 << bits
            assert -(1 << 15) <= limb < (1 << 15)
            total += limb << lsb
        assert total == value


OUT_LINE = 32


def _edge_layer(rng, out_channels=4, size=16):
    """A 1×1 layer of one input channel whose pixels are 0..255 and whose outputs ``v`` are
    pushed to the edges: the x term with the most negative ``arg_x``, ``arg_add`` that wraps
    the 36-bit sum, batch-norm multipliers of both extremes; the activation table's starts
    are (unsorted) copies of output values, so ``v == x_start`` occurs, and its shifts and
    multipliers sit on the limb and rounding edges."""
    x = np.array(rng.sample(range(256), size * size), dtype=np.uint8).reshape(1, size, size)
    weights = bytes([1] * out_channels)
    args = dict(arg_x=-2 ** 23, shr_x=0, arg_w=2 ** 23 - 1, shr_w=0,
                arg_add=2 ** 35 - 2 ** 30 - 3)
    bn = [(1, 0, 0), (-1, 0, 7), (2 ** 23 - 1, 15, -2 ** 31), (-2 ** 23, 3, 2 ** 31 - 1)]
    bn = bn[:out_channels]
    acc = model.convolve(x, np.frombuffer(weights, np.uint8).reshape(out_channels, 1, 1, 1),
                         depthwise=False, pad_value=0, **args)
    v = model.batchnorm(acc, bn)
    # Mostly ascending (an unsorted table is mostly shadowed by its last small start), with
    # two pairs swapped; the largest start first, so it never qualifies, and the values below
    # every other start fall back to it.
    starts = sorted(rng.sample(sorted(set(v.ravel().tolist())), 12) + [-2 ** 34, 0, 1])
    for i in rng.sample(range(1, 14), 2):
        starts[i], starts[i + 1] = starts[i + 1], starts[i]
    starts = [2 ** 35 - 1] + starts
    y_muls = [-2 ** 15, 2 ** 15 - 1, 1, -1, 0, 3, -7, 12345]
    shifts = [0, 1, 2, 15, 16, 30, 31, 36, 40, 45, 52, 53, 63, 255]
    segments = [(s, rng.choice(y_muls), rng.choice(shifts), rng.randrange(256)) for s in starts]
    bn_addr = 16
    act_addr = bn_addr + 8 * out_channels
    memory = bytearray(WEIGHT_BYTES)
    memory[:out_channels] = weights
    memory[bn_addr:bn_addr + 8 * out_channels] = pack_batchnorm(bn)
    memory[act_addr:act_addr + 144] = pack_activation(segments)
    d = make_layer(in_channels=1, out_channels=out_channels, width=size, height=size,
                   kernel_size=1, src_addr=0, weights_addr=0, bn_addr=bn_addr,
                   act_addr=act_addr, dst_addr=OUT_LINE, **args)
    return d, bytes(memory), x


@pytest.mark.parametrize("seed", range(2))
def test_serial_post_edges_match_model(seed):
    rng = random.Random(f"serial-edges-{seed}")
    d, weights, x = _edge_layer(rng)
    ram = bytearray(rng.randrange(256) for _ in range(RAM_BYTES))
    write_fmap(ram, 0, x)
    kpu = Kpu(ram_bytes=RAM_BYTES, weight_bytes=WEIGHT_BYTES, lanes=1, ram_word_bytes=8,
              single_port_ram=True, serial_post=True, max_width=16, max_entries=2)
    run = run_kpu(kpu, ram, weights, [d.to_words()], timeout_cycles=40_000)
    expected = bytearray(ram)
    model.run_layer(d, expected, weights)
    got, want = np.frombuffer(run.ram, np.uint8), np.frombuffer(expected, np.uint8)
    diff = np.flatnonzero(got != want)
    assert diff.size == 0, f"{diff.size} bytes differ, first at {diff[0]}"
    # The layer did reach the edges it is meant to (so the test can fail).
    out = np.frombuffer(bytes(expected[OUT_LINE * 64:OUT_LINE * 64 + 1024]), np.uint8)
    assert 0 in out and 255 in out and len(set(out.tolist())) > 10


def test_serial_post_needs_one_lane():
    with pytest.raises(ValueError, match=r"^Serial post needs one lane, not 2$"):
        Kpu(lanes=2, serial_post=True)
