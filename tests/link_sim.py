"""Testbench helpers for the host link: drive and read 8N1 serial lines bit by bit.

The Amaranth simulator runs a few thousand cycles per second, so tests use a small clock divisor
(4..16 clocks per bit); the gateware's divisor is a parameter for exactly this reason.
"""

import os

from amaranth.sim import Simulator


async def uart_send(ctx, line, data, divisor, *, gap_bits=0, stop_bit=1):
    """Send ``data`` on ``line`` (8N1, LSB first), ``gap_bits`` idle bit times after each byte."""
    for byte in bytes(data):
        for bit in [0, *((byte >> i) & 1 for i in range(8)), stop_bit]:
            ctx.set(line, bit)
            await ctx.tick().repeat(divisor)
        ctx.set(line, 1)
        if gap_bits:
            await ctx.tick().repeat(divisor * gap_bits)


async def uart_receive_forever(ctx, line, divisor, sink):
    """Decode bytes from ``line`` into the list ``sink`` (run as a background testbench).

    A byte with a bad stop bit is appended as ``None``. Only plain ``ctx.tick()`` here: a
    background testbench is abandoned mid-await when the simulation ends.
    """
    async def ticks(count):
        for _ in range(count):
            await ctx.tick()

    while True:
        await ctx.tick()
        if ctx.get(line):
            continue
        await ticks(divisor // 2)   # middle of the start bit
        byte = 0
        for i in range(8):
            await ticks(divisor)
            byte |= ctx.get(line) << i
        await ticks(divisor)
        sink.append(byte if ctx.get(line) else None)


async def wait_for(ctx, predicate, *, limit, step=16):
    """Tick until ``predicate()`` is true; fail after ``limit`` cycles."""
    waited = 0
    while not predicate():
        if waited >= limit:
            raise AssertionError(f"condition not met within {limit} cycles")
        await ctx.tick().repeat(step)
        waited += step


def simulate(dut, *testbenches, background=(), name="link"):
    """Run ``testbenches`` (and ``background`` ones) on ``dut``; waves under build/ if WAVES=1."""
    sim = Simulator(dut)
    sim.add_clock(1e-6)
    for bench in testbenches:
        sim.add_testbench(bench)
    for bench in background:
        sim.add_testbench(bench, background=True)
    if os.environ.get("WAVES"):
        os.makedirs("build/waves", exist_ok=True)
        with sim.write_vcd(f"build/waves/{name}.vcd"):
            sim.run()
    else:
        sim.run()
