"""SHA-256 round and compression components against the golden model and NIST vectors."""

import random

import pytest
from amaranth.back import verilog
from amaranth.sim import Simulator

from nangua.hdl.sha256 import model
from nangua.hdl.sha256.compress import CompressInputLayout, Sha256Compress, Sha256Round

from vectors import nist_vectors


def test_round_matches_model():
    dut = Sha256Round()
    rng = random.Random(0)

    async def bench(ctx):
        for _ in range(50):
            state = [rng.getrandbits(32) for _ in range(8)]
            k, w = rng.getrandbits(32), rng.getrandbits(32)
            ctx.set(dut.state, state)
            ctx.set(dut.k, k)
            ctx.set(dut.w, w)
            assert list(ctx.get(dut.next)) == list(model.round_step(state, k, w))

    sim = Simulator(dut)
    sim.add_testbench(bench)
    sim.run()


def single_block_vectors():
    """(chaining, block, digest) of the NIST short messages that fit one block."""
    for message, digest in nist_vectors("SHA256ShortMsg.rsp"):
        if len(message) <= 55:
            yield model.IV, model.words_be(model.pad(message)), model.words_be(digest)


def run_compress(unroll, inputs, ready_probability, seed):
    """Push (chaining, block) pairs through the component; returns outputs and input clocks."""
    dut = Sha256Compress(unroll=unroll)
    rng = random.Random(seed)
    outputs, taken = [], []
    layout = CompressInputLayout()

    async def producer(ctx):
        for chaining, block in inputs:
            ctx.set(dut.i.payload, layout.const({"chaining": list(chaining),
                                                 "block": list(block)}))
            ctx.set(dut.i.valid, 1)
            await ctx.tick().until(dut.i.ready)
            taken.append(ctx.get(dut.i.payload))
            ctx.set(dut.i.valid, 0)
            for _ in range(rng.choice([0, 0, 1, 3])):
                await ctx.tick()

    async def consumer(ctx):
        while len(outputs) < len(inputs):
            ready = rng.random() < ready_probability
            ctx.set(dut.o.ready, ready)
            await ctx.tick()
            # Sampled after the edge: a transfer happened if valid and ready were both high.
        return

    async def monitor(ctx):
        async for _, _, valid, ready, payload in ctx.tick().sample(dut.o.valid, dut.o.ready,
                                                                    dut.o.payload):
            if valid and ready:
                outputs.append(list(payload))

    sim = Simulator(dut)
    sim.add_clock(1e-8)
    sim.add_testbench(producer, background=True)
    sim.add_process(monitor)
    sim.add_testbench(consumer)
    sim.run()
    return outputs


@pytest.mark.parametrize("unroll", [64, 8, 1])
def test_compress_matches_model_with_backpressure(unroll):
    rng = random.Random(unroll)
    inputs = [([rng.getrandbits(32) for _ in range(8)], [rng.getrandbits(32) for _ in range(16)])
              for _ in range(6)]
    outputs = run_compress(unroll, inputs, ready_probability=0.4, seed=unroll)
    assert outputs == [list(model.compress(c, b)) for c, b in inputs]


def test_compress_nist_single_block_messages():
    vectors = list(single_block_vectors())[:24]
    outputs = run_compress(8, [(c, b) for c, b, _ in vectors], ready_probability=1.0, seed=1)
    assert outputs == [d for _, _, d in vectors]


@pytest.mark.parametrize("unroll", [64, 8, 1])
def test_compress_converts_to_verilog(unroll):
    assert "module sha256" in verilog.convert(Sha256Compress(unroll=unroll), name="sha256",
                                              emit_src=False)


def test_compress_rejects_bad_unroll():
    with pytest.raises(ValueError, match=r"^unroll must be one of 1, 2, 4, 8, 16, 32, 64, not 5$"):
        Sha256Compress(unroll=5)
