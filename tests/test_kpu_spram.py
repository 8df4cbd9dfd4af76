"""The iCE40 SPRAM RAM: behavioural twin and SB_SPRAM256KA primitives against a RAM model.

The primitive version is simulated by Icarus with Yosys's own SB_SPRAM256KA model
(:mod:`icarus_cells`); the behavioural twin by the
Amaranth simulator. Both run the same random cycles (reads, byte-enabled writes, idle cycles,
reads requested together with writes) and are compared with :class:`SpramModel`.
"""

import random
from pathlib import Path

import pytest
from amaranth.back import verilog
from amaranth.sim import Simulator

from nangua.bench.kpu import make_kpu
from nangua.hdl.kpu.kpu import Kpu
from nangua.hdl.kpu.spram import SPRAM_DEPTH, Ice40Spram
from icarus_cells import needs_icarus, run_with_cell

BUILD = Path("build/test_kpu_spram")


class SpramModel:
    """The contract of :class:`Ice40Spram`, one cycle per :meth:`step`: returns ``r_data``
    after the clock edge, ``None`` where it is undefined (after a write; contents never
    written)."""
    def __init__(self, depth, word_bytes):
        self.words = [None] * depth
        self.word_bytes = word_bytes
        self.r_data = None

    def step(self, r_en, w_en, addr, w_data):
        if w_en:
            old = self.words[addr]
            new = 0
            for b in range(self.word_bytes):
                source = w_data if w_en >> b & 1 else old
                if source is None:          # a byte of a word never written
                    new = None
                    break
                new |= source & (0xff << 8 * b)
            self.words[addr] = new
            self.r_data = None
        elif r_en:
            self.r_data = self.words[addr]
        return self.r_data


def random_cycles(rng, depth, word_bytes, n=400):
    """``(r_en, w_en, addr, w_data)`` per cycle on a few addresses (first and last included),
    each written in full first so every later read is defined."""
    addrs = sorted({0, depth - 1, *rng.sample(range(depth), min(depth, 14))})
    full = (1 << word_bytes) - 1
    cycles = [(0, full, a, rng.getrandbits(8 * word_bytes)) for a in addrs]
    for _ in range(n):
        kind = rng.random()
        addr = rng.choice(addrs)
        data = rng.getrandbits(8 * word_bytes)
        if kind < 0.4:
            mask = rng.choice([full, 1 << rng.randrange(word_bytes), rng.randint(1, full)])
            cycles.append((rng.randint(0, 1), mask, addr, data))   # r_en ignored on a write
        elif kind < 0.8:
            cycles.append((1, 0, addr, data))
        else:
            cycles.append((0, 0, addr, data))                    # idle: r_data holds
    return cycles


def expected_outputs(cycles, depth, word_bytes):
    model = SpramModel(depth, word_bytes)
    return [model.step(*cycle) for cycle in cycles]


@pytest.mark.parametrize("depth,word_bytes", [(64, 8), (100, 4)])
@pytest.mark.parametrize("seed", range(2))
def test_behavioural_matches_model(depth, word_bytes, seed):
    rng = random.Random(f"behavioural-{depth}-{word_bytes}-{seed}")
    dut = Ice40Spram(depth, word_bytes)
    cycles = random_cycles(rng, depth, word_bytes)
    expected = expected_outputs(cycles, depth, word_bytes)
    checked = []

    async def bench(ctx):
        for (r_en, w_en, addr, w_data), want in zip(cycles, expected):
            ctx.set(dut.r_en, r_en)
            ctx.set(dut.w_en, w_en)
            ctx.set(dut.addr, addr)
            ctx.set(dut.w_data, w_data)
            await ctx.tick()
            if want is not None:
                assert ctx.get(dut.r_data) == want
                checked.append(want)

    sim = Simulator(dut)
    sim.add_clock(1e-8)
    sim.add_testbench(bench)
    sim.run()
    assert len(checked) > len(cycles) // 3


@needs_icarus
@pytest.mark.parametrize("depth,word_bytes", [(SPRAM_DEPTH, 8), (100, 4)])
def test_primitives_match_model(depth, word_bytes):
    """Icarus with Yosys's SB_SPRAM256KA; ``r_data`` after a write must be all X there."""
    rng = random.Random(f"primitives-{depth}-{word_bytes}")
    dut = Ice40Spram(depth, word_bytes, platform="ice40")
    cycles = random_cycles(rng, depth, word_bytes)
    expected = expected_outputs(cycles, depth, word_bytes)
    lines = run_with_cell(
        BUILD / f"icarus-{depth}-{word_bytes}", verilog.convert(dut, name="top", emit_src=False),
        "SB_SPRAM256KA",
        [("r_en", 1), ("w_en", len(dut.w_en)), ("addr", len(dut.addr)),
         ("w_data", len(dut.w_data))],
        ("r_data", len(dut.r_data)), cycles)
    for i, (line, want) in enumerate(zip(lines, expected)):
        if want is None:
            # Undefined: after a write, X whatever was stored (the initial writes included).
            assert set(line) == {"x"}, f"cycle {i}: {line}, expected X after a write"
        else:
            assert int(line, 16) == want, f"cycle {i} {cycles[i]}: {line} != {want:x}"


@pytest.mark.parametrize("platform", [None, "ice40"])
def test_converts_to_verilog(platform):
    verilog.convert(Ice40Spram(SPRAM_DEPTH, 8, platform=platform), name="spram", emit_src=False)


def test_bad_parameters_raise():
    with pytest.raises(ValueError, match=r"^iCE40 SPRAM depth must be an integer in 1\.\.16384 "
                                         r"words, not 16385$"):
        Ice40Spram(16385, 8)
    with pytest.raises(ValueError, match=r"^iCE40 SPRAM word must be 2, 4, 6 or 8 bytes \(1 to "
                                         r"4 SB_SPRAM256KA side by side\), not 16$"):
        Ice40Spram(64, 16)
    with pytest.raises(ValueError, match=r"^Platform 'ecp5' is not iCE40; pass platform=None "
                                         r"for the behavioural memory$"):
        Ice40Spram(64, 8, platform="ecp5")


def test_synthesis_uses_four_sprams_and_no_block_ram():
    from nangua.bench.synth import synthesize
    report = synthesize(Ice40Spram(SPRAM_DEPTH, 8, platform="ice40"), "ice40",
                        BUILD / "synth")
    assert report["SPRAM"] == 4
    assert report["BRAM"] == 0


def test_kpu_ice40_configuration_converts_to_verilog():
    kpu = make_kpu("ice40", simulation=False)
    assert kpu.ram_memory is None               # SPRAM primitives, nothing to simulate
    text = verilog.convert(kpu, name="kpu", emit_src=False)
    assert text.count("SB_SPRAM256KA ") == 4


def test_kpu_single_port_ram_beyond_spram_raises():
    with pytest.raises(ValueError, match=r"^A single-port KPU RAM shares iCE40 SPRAM with the "
                                         r"weights: at most 131072 bytes together in words of 8 "
                                         r"bytes, not 114688 \+ 32768 bytes in words of 8$"):
        Kpu(ram_bytes=112 * 1024, weight_bytes=32 * 1024, ram_word_bytes=8,
            single_port_ram=True)
    with pytest.raises(ValueError, match=r"^A single-port KPU RAM shares iCE40 SPRAM .* not "
                                         r"65536 \+ 16384 bytes in words of 16$"):
        Kpu(ram_bytes=64 * 1024, ram_word_bytes=16, single_port_ram=True)
