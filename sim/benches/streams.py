"""Stream agents for cocotb benches: a source with random idle gaps and a sink with back-pressure.

All agents of a bench advance together in one loop (:func:`run_until`), because the order matters:
inputs change only on the clock's falling edge, and handshakes are sampled in ``ReadOnly`` after
it, when every combinational signal has settled for the rising edge that follows. Sampling after
the rising edge instead would see the registers already updated.

Port names follow Amaranth's flattening of a stream member ``x``: ``x__valid``, ``x__ready``,
``x__payload``.
"""

import random
from collections import deque

from cocotb.clock import Clock
from cocotb.triggers import FallingEdge, ReadOnly, RisingEdge

__all__ = ["StreamSource", "StreamSink", "start", "run_until"]

#: Clock period of every bench, in ns (matches the runner's 1ns/1ps timescale).
CLOCK_PERIOD_NS = 10


class StreamSource:
    """Offers payloads (integers, already packed) on the stream ``name`` of ``dut``.

    With probability ``idle`` the source stays idle for a cycle before each offer, so the design
    sees valid gaps. The payload is held until the DUT accepts it, as the stream rules demand.
    """

    def __init__(self, dut, name, *, idle=0.0, rng=random):
        self.valid = getattr(dut, f"{name}__valid")
        self.ready = getattr(dut, f"{name}__ready")
        self.payload = getattr(dut, f"{name}__payload")
        self.idle = idle
        self.rng = rng
        self.queue = deque()
        self.accepted = []
        self._offer = None
        self.valid.value = 0

    def send(self, payload):
        self.queue.append(payload)

    @property
    def idle_now(self):
        return self._offer is None and not self.queue

    def drive(self):
        if self._offer is None and self.queue and self.rng.random() >= self.idle:
            self._offer = self.queue.popleft()
            self.payload.value = self._offer
        self.valid.value = int(self._offer is not None)

    def sample(self):
        if self._offer is not None and int(self.ready.value):
            self.accepted.append(self._offer)
            self._offer = None


class StreamSink:
    """Takes payloads from the stream ``name`` of ``dut``, refusing with probability ``stall``.

    It also checks the stream rule on the generated Verilog: once ``valid`` is high while
    ``ready`` is low, the next cycle must offer the same payload, still valid.
    """

    def __init__(self, dut, name, *, stall=0.0, rng=random, on_receive=None):
        self.valid = getattr(dut, f"{name}__valid")
        self.ready = getattr(dut, f"{name}__ready")
        self.payload = getattr(dut, f"{name}__payload")
        self.name = name
        self.stall = stall
        self.rng = rng
        self.received = []
        self.on_receive = on_receive
        self._held = None
        self.ready.value = 0

    def drive(self):
        self.ready.value = int(self.rng.random() >= self.stall)

    def sample(self):
        valid = int(self.valid.value)
        if self._held is not None:
            assert valid and self.payload.value.to_unsigned() == self._held, (
                f"{self.name}: payload {self._held:#x} was withdrawn or changed while stalled")
            self._held = None
        if not valid:
            return
        payload = self.payload.value.to_unsigned()
        if int(self.ready.value):
            self.received.append(payload)
            if self.on_receive is not None:
                self.on_receive(payload)
        else:
            self._held = payload


async def start(dut, inputs=()):
    """Set ``inputs`` (port names) to 0, start the clock and hold reset for two rising edges."""
    for name in inputs:
        getattr(dut, name).value = 0
    dut.rst.value = 1
    Clock(dut.clk, CLOCK_PERIOD_NS, unit="ns").start(start_high=False)
    await RisingEdge(dut.clk)
    await RisingEdge(dut.clk)
    await FallingEdge(dut.clk)
    dut.rst.value = 0


async def run_until(dut, agents, done, *, max_cycles, what="the bench"):
    """Advance ``agents`` cycle by cycle until ``done()`` is true; return the cycles taken.

    Raises
    ------
    AssertionError
        If ``done()`` is still false after ``max_cycles`` cycles.
    """
    for cycle in range(max_cycles):
        await FallingEdge(dut.clk)
        for agent in agents:
            agent.drive()
        await ReadOnly()
        for agent in agents:
            agent.sample()
        if done():
            return cycle + 1
    raise AssertionError(f"{what} did not finish within {max_cycles} cycles")
