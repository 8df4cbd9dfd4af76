"""The block RAM wrapper: behavioural twin and SB_RAM40_4K primitives against a RAM model.

The primitive version is simulated by Icarus with Yosys's own SB_RAM40_4K model
(:mod:`icarus_cells`); the behavioural twin by the Amaranth simulator. Both run
the same random cycles (writes with partial enables, reads on every port, idle ports) and are
compared with :class:`BramModel`; a read of the word written in the same cycle is undefined.
"""

import random
from pathlib import Path

import pytest
from amaranth.back import verilog
from amaranth.hdl import Module
from amaranth.lib import data, wiring
from amaranth.lib.wiring import In, Out
from amaranth.sim import Simulator

from nangua.bench.synth import synthesize
from nangua.hdl.kpu.bram import BlockRam
from icarus_cells import needs_icarus, run_with_cell

BUILD = Path("build/test_kpu_bram")

#: (word bits, depth, granularity, read ports): one block; a wide word with byte enables; a word
#: over two blocks side by side and three deep, two read ports.
CASES = [(16, 256, None, 1), (72, 32, 8, 1), (25, 600, None, 2)]


class BramModel:
    """The contract of :class:`BlockRam`, one cycle per :meth:`step`: the read data of every
    port after the clock edge, ``None`` where undefined (a word never written, a collision)."""
    def __init__(self, width, granularity, ports):
        self.words = {}
        self.width = width
        self.granularity = granularity or width
        self.data = [None] * ports

    def step(self, w_en, w_addr, w_data, reads):
        for n, (r_en, r_addr) in enumerate(reads):
            if r_en:
                collided = w_en and r_addr == w_addr
                self.data[n] = None if collided else self.words.get(r_addr)
        self._write(w_en, w_addr, w_data)
        return list(self.data)

    def _write(self, w_en, w_addr, w_data):
        if w_en:
            old = self.words.get(w_addr)
            new = 0
            for e in range(self.width // self.granularity):
                mask = ((1 << self.granularity) - 1) << (e * self.granularity)
                source = w_data if w_en >> e & 1 else old
                if source is None:
                    new = None
                    break
                new |= source & mask
            self.words[w_addr] = new


def random_cycles(rng, width, depth, granularity, ports, n=400):
    """``(w_en, w_addr, w_data, [(r_en, r_addr)] * ports)`` per cycle, on a few addresses (first
    and last included), each written in full first; some reads collide with the write."""
    addrs = sorted({0, depth - 1, *rng.sample(range(depth), min(depth, 12))})
    enables = width // (granularity or width)
    full = (1 << enables) - 1
    cycles = [(full, a, rng.getrandbits(width), [(0, 0)] * ports) for a in addrs]
    for _ in range(n):
        w_en = rng.choice([0, 0, full, rng.randint(0, full)])
        w_addr = rng.choice(addrs)
        reads = [(rng.randint(0, 1), w_addr if rng.random() < 0.1 else rng.choice(addrs))
                 for _ in range(ports)]
        cycles.append((w_en, w_addr, rng.getrandbits(width), reads))
    return cycles


def make(width, depth, granularity, ports, platform=None):
    shape = data.ArrayLayout(granularity, width // granularity) if granularity else width
    return BlockRam(shape=shape, depth=depth, granularity=1 if granularity else None,
                    read_ports=ports, platform=platform)


def flat(value):
    return value.as_value() if hasattr(value, "as_value") else value


@pytest.mark.parametrize("width,depth,granularity,ports", CASES)
def test_behavioural_matches_model_and_poisons_collisions(width, depth, granularity, ports):
    rng = random.Random(f"behavioural-{width}-{depth}")
    dut = make(width, depth, granularity, ports)
    cycles = random_cycles(rng, width, depth, granularity, ports)
    model = BramModel(width, granularity, ports)
    checked, poisoned = [], []

    async def bench(ctx):
        words = {}
        for w_en, w_addr, w_data, reads in cycles:
            ctx.set(flat(dut.wr.en), w_en)
            ctx.set(dut.wr.addr, w_addr)
            ctx.set(flat(dut.wr.data), w_data)
            for port, (r_en, r_addr) in zip(dut.rd, reads):
                ctx.set(port.en, r_en)
                ctx.set(port.addr, r_addr)
            wants = model.step(w_en, w_addr, w_data, reads)
            collisions = [r_en and w_en and r_addr == w_addr for r_en, r_addr in reads]
            await ctx.tick()
            for port, want, collided, (_, r_addr) in zip(dut.rd, wants, collisions, reads):
                got = ctx.get(flat(port.data))
                if want is not None:
                    assert got == want
                    checked.append(want)
                elif collided and r_addr in words:
                    # Undefined in hardware: the twin gives the old word inverted.
                    assert got == words[r_addr] ^ ((1 << width) - 1)
                    poisoned.append(got)
            words.update({a: w for a, w in model.words.items() if w is not None})

    sim = Simulator(dut)
    sim.add_clock(1e-8)
    sim.add_testbench(bench)
    sim.run()
    assert len(checked) > len(cycles) // 4
    assert poisoned


class _Flat(wiring.Component):
    """The RAM with plain ports, for a Verilog test bench."""
    def __init__(self, ram):
        self._ram = ram
        ports = len(ram.rd)
        super().__init__({
            "w_en": In(len(flat(ram.wr.en))), "w_addr": In(len(ram.wr.addr)),
            "w_data": In(len(flat(ram.wr.data))),
            "r_en": In(ports), "r_addr": In(len(ram.rd[0].addr) * ports),
            "r_data": Out(len(flat(ram.rd[0].data)) * ports),
        })

    def elaborate(self, platform):
        m = Module()
        m.submodules.ram = ram = self._ram
        a, d = len(ram.rd[0].addr), len(flat(ram.rd[0].data))
        m.d.comb += [flat(ram.wr.en).eq(self.w_en), ram.wr.addr.eq(self.w_addr),
                     flat(ram.wr.data).eq(self.w_data)]
        for n, port in enumerate(ram.rd):
            m.d.comb += [port.en.eq(self.r_en[n]), port.addr.eq(self.r_addr[n * a:(n + 1) * a]),
                         self.r_data[n * d:(n + 1) * d].eq(flat(port.data))]
        return m


@needs_icarus
@pytest.mark.parametrize("width,depth,granularity,ports", CASES)
def test_primitives_match_model(width, depth, granularity, ports):
    rng = random.Random(f"primitives-{width}-{depth}")
    dut = _Flat(make(width, depth, granularity, ports, platform="ice40"))
    cycles = random_cycles(rng, width, depth, granularity, ports)
    model = BramModel(width, granularity, ports)
    expected = [model.step(*cycle) for cycle in cycles]
    ra, rd = len(dut.r_addr), len(dut.r_data)
    outputs = run_with_cell(
        BUILD / f"icarus-{width}-{depth}", verilog.convert(dut, name="top", emit_src=False),
        "SB_RAM40_4K",
        [("w_en", len(dut.w_en)), ("w_addr", len(dut.w_addr)), ("w_data", len(dut.w_data)),
         ("r_en", ports), ("r_addr", ra)],
        ("r_data", rd),
        [(w_en, w_addr, w_data, sum(en << n for n, (en, _) in enumerate(reads)),
          sum(addr << (n * (ra // ports)) for n, (_, addr) in enumerate(reads)))
         for w_en, w_addr, w_data, reads in cycles])
    checked = 0
    d = rd // ports
    for i, (line, wants) in enumerate(zip(outputs, expected)):
        bits = bin(int(line, 16))[2:].zfill(rd) if "x" not in line else None
        for n, want in enumerate(wants):
            if want is None:
                continue
            assert bits is not None, f"cycle {i}: X where port {n} should read {want:x}"
            assert int(bits[rd - (n + 1) * d:rd - n * d], 2) == want, f"cycle {i} port {n}"
            checked += 1
    assert checked > len(cycles) // 4


def test_one_block_takes_no_logic_on_ice40():
    """The point of the wrapper: a 256 × 16 RAM is one SB_RAM40_4K and nothing else (an
    Amaranth memory of the same size takes dozens of flip-flops and LUTs around the block)."""
    report = synthesize(_Flat(make(16, 256, None, 1, platform="ice40")), "ice40",
                        BUILD / "synth")
    assert report["BRAM"] == 1
    assert report["FF"] == 0
    assert report["LUT4"] <= 1          # the write enable inverted into the mask


@pytest.mark.parametrize("platform", [None, "ice40", "ecp5"])
def test_converts_to_verilog(platform):
    verilog.convert(_Flat(make(25, 600, None, 2, platform=platform)), name="ram",
                    emit_src=False)


def test_bad_parameters_raise():
    with pytest.raises(ValueError, match=r"^Depth must be an integer in 1\.\.65536, not 0$"):
        BlockRam(shape=8, depth=0)
    with pytest.raises(ValueError, match=r"^Read ports must be an integer in 1\.\.8, not 9$"):
        BlockRam(shape=8, depth=4, read_ports=9)
