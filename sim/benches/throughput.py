"""cocotb "bench" that measures simulation speed: simulated clock cycles and hashes per second.

It loads the miner engine with a job that scans the whole nonce range and can never hit (target
0), lets the simulator run the clock alone (cocotb's C++ clock where the simulator allows it:
no Python per cycle) in growing chunks for ``NANGUA_BUDGET`` seconds of wall time, and writes
``{"cycles", "seconds", "hashes"}`` to the JSON file ``NANGUA_REPORT``. Used by ``nangua bench
sim`` (:mod:`nangua.bench.sim`).
"""

import json
import os
import time

import cocotb
from cocotb.clock import Clock
from cocotb.triggers import FallingEdge, ReadOnly, RisingEdge, Timer

from ...hdl.miner.model import MASK, Job
from .miner import pack_job
from .streams import CLOCK_PERIOD_NS

#: Cycles before the measurement: the pipeline fills and the hash counter starts.
WARM_UP = 300


@cocotb.test()
async def measure(dut):
    budget = float(os.environ.get("NANGUA_BUDGET", "5"))
    dut.rst.value = 1
    dut.job__valid.value = 0
    dut.result__ready.value = 1
    Clock(dut.clk, CLOCK_PERIOD_NS, unit="ns", impl="gpi").start(start_high=False)
    await RisingEdge(dut.clk)
    await RisingEdge(dut.clk)
    await FallingEdge(dut.clk)
    dut.rst.value = 0
    dut.job__payload.value = pack_job(Job((0,) * 8, (0,) * 3, 0, 0, MASK, 1))
    dut.job__valid.value = 1
    while True:
        await ReadOnly()
        accepted = int(dut.job__ready.value)
        await FallingEdge(dut.clk)
        if accepted:
            break
    dut.job__valid.value = 0
    await Timer(WARM_UP * CLOCK_PERIOD_NS, unit="ns")
    hashes = dut.hashes.value.to_unsigned()
    cycles, chunk = 0, 16
    start = time.perf_counter()
    while (elapsed := time.perf_counter() - start) < budget:
        await Timer(chunk * CLOCK_PERIOD_NS, unit="ns")
        cycles += chunk
        # Grow the chunks so that cocotb's own overhead stays negligible.
        if elapsed < budget / 4:
            chunk *= 2
    seconds = time.perf_counter() - start
    hashes = dut.hashes.value.to_unsigned() - hashes
    assert hashes > 0, "the engine hashed nothing"
    with open(os.environ["NANGUA_REPORT"], "w") as report:
        json.dump({"cycles": cycles, "seconds": seconds, "hashes": hashes}, report)
