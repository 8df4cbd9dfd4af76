"""WideMul: the MULT18X18D decomposition (simulated with the primitive's behavioural twin) and the
behavioural form, both against Python integers.

The twin itself is checked against Python integers in all four SIGNEDA/SIGNEDB modes; Yosys has
no simulation model of MULT18X18D, so the instance's port wiring is checked by conversion and by
synthesis (the slow test) only.
"""

import itertools
import json
import random
import re
import subprocess
from pathlib import Path

import pytest
from amaranth.back import rtlil, verilog
from amaranth.hdl import Fragment, Shape, signed, unsigned
from amaranth.sim import Simulator

from nangua.bench.synth import yosys_command
from nangua.hdl.kpu.widemul import LATENCY, Ecp5Mult18x18D, WideMul, limbs

BUILD = Path("build/test_kpu_widemul")


def _corners(shape):
    """Most negative (or 0), -1, 0, 1 and the maximum of ``shape``, without repeats."""
    shape = Shape.cast(shape)
    if shape.signed:
        low, high = -2 ** (shape.width - 1), 2 ** (shape.width - 1) - 1
    else:
        low, high = 0, 2 ** shape.width - 1
    return sorted({v for v in (low, -1, 0, 1, high) if low <= v <= high})


def _random(rng, shape):
    shape = Shape.cast(shape)
    low = -2 ** (shape.width - 1) if shape.signed else 0
    return low + rng.randrange(2 ** shape.width)


def _elaborated(dut):
    """``dut`` after elaboration (a design that is only inspected would otherwise be reported
    as created but never used)."""
    Fragment.get(dut, None)
    return dut


def _run_pipelined(dut, vectors, latency):
    """Feed one (a, b) per cycle; returns what ``p`` holds ``latency`` cycles after each."""
    got = []

    async def bench(ctx):
        for cycle, (a, b) in enumerate(vectors + [vectors[0]] * latency):
            ctx.set(dut.a, a)
            ctx.set(dut.b, b)
            await ctx.tick()
            if cycle >= latency - 1 and len(got) < len(vectors):
                got.append(ctx.get(dut.p))

    sim = Simulator(dut)
    sim.add_clock(1e-8)
    sim.add_testbench(bench)
    sim.run()
    return got


SHAPES = [
    (signed(36), signed(24)),       # batch-norm product of the post-processing
    (signed(37), signed(16)),       # activation product
    (signed(18), signed(18)),
    (signed(19), signed(19)),
    (signed(8), signed(40)),
    (signed(38), signed(20)),       # 2-bit top limbs: DSP and logic pieces mixed
    (signed(1), signed(5)),         # all in logic
    (unsigned(20), signed(18)),
    (unsigned(36), unsigned(18)),
]


@pytest.mark.parametrize("form", ["ecp5-twins", "behavioural"])
@pytest.mark.parametrize("a_shape,b_shape", SHAPES, ids=lambda s: repr(s))
def test_product_equals_python_ints(form, a_shape, b_shape):
    """Every corner pair, then seeded random operands, one per cycle, exact products."""
    platform = "ecp5" if form == "ecp5-twins" else None
    dut = WideMul(a_shape, b_shape, platform=platform, sim_primitives=True)
    rng = random.Random(f"{form}-{a_shape!r}-{b_shape!r}")
    vectors = list(itertools.product(_corners(a_shape), _corners(b_shape)))
    vectors += [(_random(rng, a_shape), _random(rng, b_shape)) for _ in range(40)]
    assert _run_pipelined(dut, vectors, LATENCY) == [a * b for a, b in vectors]


@pytest.mark.parametrize("signed_a,signed_b", list(itertools.product([False, True], repeat=2)))
def test_primitive_twin_honours_signed_inputs(signed_a, signed_b):
    """SIGNEDx = 1 reads the 18 bits as two's complement, 0 as unsigned; P is the product."""
    dut = Ecp5Mult18x18D(signed_a=signed_a, signed_b=signed_b, simulate=True)
    rng = random.Random(f"twin-{signed_a}-{signed_b}")
    raw = [0, 1, 2 ** 17 - 1, 2 ** 17, 2 ** 18 - 1] + [rng.randrange(2 ** 18) for _ in range(8)]
    vectors = list(itertools.product(raw, raw))

    def value(bits, is_signed):
        return bits - 2 ** 18 if is_signed and bits >= 2 ** 17 else bits

    got = _run_pipelined(dut, vectors, 1)
    expected = [(value(a, signed_a) * value(b, signed_b)) % 2 ** 36 for a, b in vectors]
    assert got == expected


def test_limbs_are_unsigned_18_bit_below_a_signed_top():
    assert limbs(signed(36)) == [(0, 18, False), (18, 18, True)]
    assert limbs(signed(37)) == [(0, 18, False), (18, 18, False), (36, 1, True)]
    assert limbs(signed(16)) == [(0, 16, True)]
    assert limbs(unsigned(19)) == [(0, 18, False), (18, 1, False)]


def test_dsp_count():
    assert _elaborated(WideMul(signed(36), signed(24), platform="ecp5")).dsp_count == 4
    assert _elaborated(WideMul(signed(37), signed(16), platform="ecp5")).dsp_count == 2
    assert _elaborated(WideMul(signed(38), signed(20), platform="ecp5")).dsp_count == 2
    assert _elaborated(WideMul(signed(39), signed(21), platform="ecp5")).dsp_count == 6
    assert _elaborated(WideMul(signed(36), signed(24))).dsp_count == 0
    assert _elaborated(WideMul(signed(36), signed(24), platform="ice40")).dsp_count == 0


def test_product_port_holds_the_full_product():
    assert _elaborated(WideMul(signed(36), signed(24))).p.shape() == signed(60)
    assert _elaborated(WideMul(unsigned(8), signed(4))).p.shape() == signed(12)
    assert _elaborated(WideMul(unsigned(8), unsigned(4))).p.shape() == unsigned(12)


@pytest.mark.parametrize("a_shape,b_shape", [(signed(36), signed(24)), (signed(37), signed(16))],
                         ids=repr)
def test_converts_to_verilog_for_ulx3s(a_shape, b_shape):
    from amaranth_boards.ulx3s import ULX3S_85F_Platform
    dut = WideMul(a_shape, b_shape, platform=ULX3S_85F_Platform())
    text = verilog.convert(dut, name="widemul", emit_src=False)
    assert len(re.findall(r"^\s*MULT18X18D\b", text, re.M)) == dut.dsp_count


def test_converts_to_verilog_behavioural():
    text = verilog.convert(WideMul(signed(36), signed(24)), name="widemul", emit_src=False)
    assert "MULT18X18D" not in text


@pytest.mark.parametrize("a_shape,b_shape", [(signed(36), signed(24)), (signed(37), signed(16))],
                         ids=repr)
def test_ecp5_synthesis_keeps_the_products_in_dsps(a_shape, b_shape):
    """``synth_ecp5 -nodsp`` (as the KPU is built) keeps every MULT18X18D and adds only the
    partial-product sum: well under 1,000 LUT4, where the behavioural form of these products
    takes 4,312 and 2,885 LUT4."""
    dut = WideMul(a_shape, b_shape, platform="ecp5")
    workdir = BUILD / f"{a_shape.width}x{b_shape.width}"
    workdir.mkdir(parents=True, exist_ok=True)
    (workdir / "top.il").write_text(rtlil.convert(dut, name="top", emit_src=False))
    script = "read_rtlil top.il; synth_ecp5 -top top -nodsp; tee -q -o stat.json stat -json"
    result = subprocess.run([yosys_command(), "-q", "-p", script], cwd=workdir,
                            capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stdout + result.stderr
    cells = json.loads((workdir / "stat.json").read_text())["modules"]["\\top"]
    cells = cells["num_cells_by_type"]
    assert cells.get("MULT18X18D", 0) == dut.dsp_count
    assert cells.get("LUT4", 0) < 1000


def test_bad_parameters_raise():
    with pytest.raises(ValueError, match=r"^Operand b must have at least 1 bit, not "
                                         r"unsigned\(0\)$"):
        WideMul(signed(8), 0)


@pytest.mark.parametrize("platform", [None, "ecp5"], ids=["behavioural", "ecp5-twins"])
def test_enable_holds_the_pipeline(platform):
    """With ``en`` low nothing moves, the primitives' output registers included: the product of
    each input comes out after ``LATENCY`` enabled cycles (a stalled pipeline relies on it)."""
    rng = random.Random(f"enable-{platform}")
    dut = WideMul(signed(36), signed(24), platform=platform, sim_primitives=True)
    vectors = [(_random(rng, signed(36)), _random(rng, signed(24))) for _ in range(40)]
    enables = [rng.random() < 0.6 for _ in range(200)]
    got = []

    async def bench(ctx):
        fed = 0
        for enable in enables:
            a, b = vectors[fed % len(vectors)]
            if not enable:              # what is on the inputs while held must not matter
                a, b = _random(rng, signed(36)), _random(rng, signed(24))
            ctx.set(dut.a, a)
            ctx.set(dut.b, b)
            ctx.set(dut.en, enable)
            await ctx.tick()
            if enable:
                fed += 1
                if fed > LATENCY - 1:
                    got.append(ctx.get(dut.p))

    sim = Simulator(dut)
    sim.add_clock(1e-8)
    sim.add_testbench(bench)
    sim.run()
    expected = [a * b for a, b in (vectors * 10)[:len(got)]]
    assert len(got) > 50
    assert got == expected
