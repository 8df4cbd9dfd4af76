"""UART receiver and transmitter: loopback, framing errors, glitches, overrun, parameters."""

import random

import pytest
from amaranth.back import verilog
from amaranth.hdl import Module
from amaranth.lib import wiring

from nangua.hdl.link.uart import UARTReceiver, UARTTransmitter, divisor_for

from link_sim import simulate, uart_send


class Loopback(wiring.Component):
    def __init__(self, divisor):
        self.tx = UARTTransmitter(divisor)
        self.rx = UARTReceiver(divisor)
        super().__init__({})

    def elaborate(self, platform):
        m = Module()
        m.submodules.tx = self.tx
        m.submodules.rx = self.rx
        m.d.comb += self.rx.rx.eq(self.tx.tx)
        return m


@pytest.mark.parametrize("divisor, seed", [(4, 1), (7, 2), (16, 3)])
def test_loopback_delivers_every_byte(divisor, seed):
    dut = Loopback(divisor)
    data = random.Random(seed).randbytes(24)
    got = []

    async def send(ctx):
        for byte in data:
            ctx.set(dut.tx.i.valid, 1)
            ctx.set(dut.tx.i.payload, byte)
            await ctx.tick().until(dut.tx.i.ready)
        ctx.set(dut.tx.i.valid, 0)

    async def receive(ctx):
        ctx.set(dut.rx.o.ready, 1)
        while len(got) < len(data):
            await ctx.tick()
            if ctx.get(dut.rx.o.valid):
                got.append(ctx.get(dut.rx.o.payload))
                assert not ctx.get(dut.rx.framing_error)

    simulate(dut, send, receive)
    assert bytes(got) == data


def collect(dut, drive, *, ready=1):
    """Run ``drive`` against a receiver; return (bytes, framing errors, overruns)."""
    got, errors, overruns = [], [0], [0]

    async def watch(ctx):
        ctx.set(dut.o.ready, ready)
        while True:
            await ctx.tick()
            if ctx.get(dut.o.valid) and ctx.get(dut.o.ready):
                got.append(ctx.get(dut.o.payload))
            errors[0] += ctx.get(dut.framing_error)
            overruns[0] += ctx.get(dut.overrun)

    async def bench(ctx):
        ctx.set(dut.rx, 1)
        await ctx.tick().repeat(8)
        await drive(ctx)
        await ctx.tick().repeat(8 * dut.divisor)

    simulate(dut, bench, background=[watch])
    return got, errors[0], overruns[0]


def test_bad_stop_bit_is_counted_and_not_delivered():
    dut = UARTReceiver(5)

    async def drive(ctx):
        await uart_send(ctx, dut.rx, b"\x5a", 5, stop_bit=0)
        await ctx.tick().repeat(20)     # the line stays low a while: one error, not several
        ctx.set(dut.rx, 1)
        await ctx.tick().repeat(10)
        await uart_send(ctx, dut.rx, b"\xc3", 5)

    got, errors, overruns = collect(dut, drive)
    assert (got, errors, overruns) == ([0xC3], 1, 0)


def test_glitch_shorter_than_half_a_bit_is_ignored():
    dut = UARTReceiver(8)

    async def drive(ctx):
        ctx.set(dut.rx, 0)
        await ctx.tick().repeat(3)
        ctx.set(dut.rx, 1)
        await ctx.tick().repeat(40)
        await uart_send(ctx, dut.rx, b"\x81", 8)

    assert collect(dut, drive) == ([0x81], 0, 0)


def test_byte_completed_while_output_full_is_dropped_and_counted():
    dut = UARTReceiver(4)

    async def drive(ctx):
        await uart_send(ctx, dut.rx, b"\x11\x22", 4)
        assert ctx.get(dut.o.valid) and ctx.get(dut.o.payload) == 0x11

    assert collect(dut, drive, ready=0) == ([], 0, 1)


def test_divisor_for_rounds_to_nearest():
    assert divisor_for(12_000_000, 115200) == 104
    assert divisor_for(1_000_000, 250_000) == 4


def test_divisor_for_rejects_too_fast_baud():
    with pytest.raises(ValueError, match=r"^baud rate 115200 needs at least 4 clocks per bit, but "
                                         r"a 400000 Hz clock gives 3\.47$"):
        divisor_for(400_000, 115200)


def test_divisor_for_rejects_inexact_baud():
    with pytest.raises(ValueError, match=r"^baud rate 115200 is off by 8\.5% at 500000 Hz "
                                         r"\(divisor 4\); at most 2\.5% is allowed$"):
        divisor_for(500_000, 115200)


@pytest.mark.parametrize("cls", [UARTReceiver, UARTTransmitter])
def test_rejects_small_divisor(cls):
    with pytest.raises(ValueError, match=r"^UART divisor must be an integer of at least 4, "
                                         r"not 3$"):
        cls(3)


@pytest.mark.parametrize("divisor", [4, 5, 7, 8, 16, 104])
@pytest.mark.parametrize("cls", [UARTReceiver, UARTTransmitter])
def test_converts_to_verilog(cls, divisor):
    assert "module" in verilog.convert(cls(divisor), emit_src=False)
