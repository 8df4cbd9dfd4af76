"""The block-RAM FIFO against a deque: random writes and reads, full and empty, words readable
two cycles after their write. Its RAM is the behavioural twin, which corrupts a read of the word
written in the same cycle, so a FIFO relying on one fails here."""

import random
from collections import deque

import pytest
from amaranth.back import verilog
from amaranth.sim import Simulator

from nangua.hdl.kpu.fifo import BlockRamFifo


@pytest.mark.parametrize("depth", [1, 5, 24])
@pytest.mark.parametrize("seed", range(2))
def test_matches_a_deque(depth, seed):
    rng = random.Random(f"fifo-{depth}-{seed}")
    dut = BlockRamFifo(width=16, depth=depth)
    counts = {"read": 0, "full": 0}

    async def bench(ctx):
        queue = deque()
        written_at = {}                     # word number -> cycle of its write
        n_written = 0
        for cycle in range(1500):
            phase = cycle // 300 % 3        # writes mostly, reads mostly, balanced
            w_en = rng.random() < (0.8, 0.2, 0.5)[phase]
            r_en = rng.random() < (0.2, 0.8, 0.5)[phase]
            data = rng.getrandbits(16)
            ctx.set(dut.w_en, w_en)
            ctx.set(dut.w_data, data)
            ctx.set(dut.r_en, r_en)
            assert ctx.get(dut.level) == len(queue)
            assert ctx.get(dut.w_rdy) == (len(queue) < depth)
            # The head is readable once written two cycles ago.
            ready = bool(queue) and written_at[queue[0][0]] <= cycle - 2
            assert ctx.get(dut.r_rdy) == ready
            if ready:
                assert ctx.get(dut.r_data) == queue[0][1]
            accepted = w_en and len(queue) < depth     # a write to a full FIFO is ignored,
            counts["full"] += w_en and not accepted     # even with a read in the same cycle
            if r_en and ready:
                queue.popleft()
                counts["read"] += 1
            if accepted:
                queue.append((n_written, data))
                written_at[n_written] = cycle
                n_written += 1
            await ctx.tick()

    sim = Simulator(dut)
    sim.add_clock(1e-8)
    sim.add_testbench(bench)
    sim.run()
    assert counts["read"] > 200 and counts["full"] > 0


@pytest.mark.parametrize("platform", [None, "ice40"])
def test_converts_to_verilog(platform):
    verilog.convert(BlockRamFifo(width=64, depth=24, platform=platform), name="fifo",
                    emit_src=False)


def test_bad_parameters_raise():
    with pytest.raises(ValueError, match=r"^FIFO depth must be an integer in 1\.\.4096, not 0$"):
        BlockRamFifo(width=8, depth=0)
    with pytest.raises(ValueError, match=r"^FIFO width must be an integer in 1\.\.256, not 300$"):
        BlockRamFifo(width=300, depth=4)
