"""Bench for any component whose stream ``o`` repeats its stream ``i`` in order (registers, FIFOs).

Golden model: the identity. Random payloads go in with random idle gaps while the sink applies
random back-pressure; the scoreboard compares what came out with what went in.
"""

import random

import cocotb

from .streams import StreamSink, StreamSource, run_until, start

#: Payloads per test: enough to hit every combination of gap and stall many times.
COUNT = 200


async def _run(dut, idle, stall):
    rng = random.Random(random.getrandbits(64))
    await start(dut, ["i__valid", "i__payload", "o__ready"])
    width = len(dut.i__payload)
    source = StreamSource(dut, "i", idle=idle, rng=rng)
    sink = StreamSink(dut, "o", stall=stall, rng=rng)
    sent = [rng.getrandbits(width) for _ in range(COUNT)]
    for payload in sent:
        source.send(payload)
    await run_until(dut, [source, sink], lambda: len(sink.received) == COUNT,
                    max_cycles=COUNT * 20, what="the pass-through")
    assert sink.received == sent


@cocotb.test()
async def test_full_rate(dut):
    await _run(dut, idle=0.0, stall=0.0)


@cocotb.test()
async def test_gaps_and_backpressure(dut):
    await _run(dut, idle=0.3, stall=0.4)
