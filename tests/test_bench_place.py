"""The placement harness: every input of the wrapped design comes from the pin shift register,
every output reaches the output pin (so synthesis can remove nothing)."""

import random

from amaranth.hdl import Module
from amaranth.lib import wiring
from amaranth.lib.wiring import In, Out
from amaranth.sim import Simulator

from nangua.bench.place import PinHarness, utilisation


class Adder(wiring.Component):
    a: In(4)
    b: In(3)
    s: Out(5)

    def elaborate(self, platform):
        m = Module()
        m.d.comb += self.s.eq(self.a + self.b)
        return m


def test_inputs_come_from_the_chain_and_outputs_fold_into_so():
    dut = Adder()
    harness = PinHarness(dut)
    rng = random.Random(1)
    bits = [rng.randrange(2) for _ in range(60)]
    seen = []

    async def bench(ctx):
        for bit in bits:
            ctx.set(harness.si, bit)
            await ctx.tick()
            seen.append((ctx.get(dut.a), ctx.get(dut.b), ctx.get(harness.so)))

    sim = Simulator(harness)
    sim.add_clock(1e-8)
    sim.add_testbench(bench)
    sim.run()
    chain = 0
    signature = 0                   # one output port: the register accumulates its parity
    so_next = 0
    for n, bit in enumerate(bits):
        chain = ((chain << 1) | bit) & 0x7f
        a, b, so = seen[n]
        assert (a, b) == (chain & 0xf, chain >> 4)       # a first in the chain, then b
        assert so == so_next
        so_next = signature
        signature ^= bin((a + b) & 0x1f).count("1") & 1


def test_utilisation_of_a_design_that_does_not_fit_comes_from_the_packing_summary():
    log = ("Info: Device utilisation:\n"
           "Info: \t         ICESTORM_LC:   10503/   5280   198%\n"
           "Info: \t        ICESTORM_RAM:      29/     30    96%\n"
           "Info: \t        ICESTORM_PLL:       0/      1     0%\n"
           "ERROR: Unable to place cell 'x', no BELs remaining to implement cell type "
           "'ICESTORM_LC'\n")
    assert utilisation({}, log) == {"ICESTORM_LC": [10503, 5280], "ICESTORM_RAM": [29, 30]}
    report = {"utilization": {"ICESTORM_LC": {"used": 4000, "available": 5280},
                              "ICESTORM_PLL": {"used": 0, "available": 1}}}
    assert utilisation(report, log) == {"ICESTORM_LC": [4000, 5280]}


class Twins(wiring.Component):
    x: In(3)
    a: Out(3)
    b: Out(3)

    def elaborate(self, platform):
        m = Module()
        m.d.comb += [self.a.eq(self.x), self.b.eq(self.x)]
        return m


def test_two_outputs_carrying_the_same_value_do_not_cancel():
    """One XOR of every output bit would be constant 0 here (a ^ b = 0), and synthesis would
    remove what drives the outputs."""
    harness = PinHarness(Twins())
    rng = random.Random(2)
    seen = []

    async def bench(ctx):
        for _ in range(60):
            ctx.set(harness.si, rng.randrange(2))
            await ctx.tick()
            seen.append(ctx.get(harness.so))

    sim = Simulator(harness)
    sim.add_clock(1e-8)
    sim.add_testbench(bench)
    sim.run()
    assert 0 < sum(seen) < len(seen)
