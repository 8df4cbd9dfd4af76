"""cocotb bench of the whole miner top (``MinerLinkTop``): bytes in on ``rx``, bytes out of ``tx``.

The bench is the host: :class:`UartLine` bit-bangs 8N1 bytes into ``rx`` at the top's bit time
and decodes ``tx`` mid-bit. Frames are built and parsed by nangua's host code
(:mod:`nangua.link`), and what the miner reports is checked against the golden model.

Parameters from the environment (set by ``tests/test_cocotb_link.py``): ``NANGUA_PROTOCOL``
(``native`` or ``icarus``) and ``NANGUA_DIVISOR`` (clocks per bit). Tests of the other protocol
are skipped.
"""

import os
from pathlib import Path

import cocotb
from cocotb.triggers import Event, FallingEdge, SimTimeoutError, Timer, with_timeout

from ...hdl.miner.model import Job, header_nonce
from ...link import (DETECT_NONCE, DETECT_PACKET, Done, FrameDecoder, Identity, JobAck, Result,
                     Status, decode_nonce, encode_identify_request, encode_job,
                     encode_status_request)
from .streams import CLOCK_PERIOD_NS, start

HEADERS = Path(__file__).resolve().parents[2] / "tests" / "data" / "bitcoin_headers.txt"


def protocol():
    return os.environ.get("NANGUA_PROTOCOL", "native")


def divisor():
    return int(os.environ.get("NANGUA_DIVISOR", "8"))


class UartLine:
    """The host's end of the serial line: sends bytes into ``rx``, collects bytes from ``tx``."""

    def __init__(self, dut, clocks_per_bit):
        self.dut = dut
        self.bit_ns = clocks_per_bit * CLOCK_PERIOD_NS
        self.received = bytearray()
        self.framing_errors = 0
        self.arrived = Event()
        dut.rx.value = 1
        cocotb.start_soon(self._receive())

    async def send(self, data):
        for byte in bytes(data):
            for bit in [0] + [(byte >> i) & 1 for i in range(8)] + [1]:
                self.dut.rx.value = bit
                await Timer(self.bit_ns, unit="ns")

    async def _receive(self):
        while True:
            await FallingEdge(self.dut.tx)
            await Timer(self.bit_ns // 2, unit="ns")
            if int(self.dut.tx.value):
                continue  # a glitch, not a start bit
            byte = 0
            for i in range(8):
                await Timer(self.bit_ns, unit="ns")
                byte |= int(self.dut.tx.value) << i
            await Timer(self.bit_ns, unit="ns")
            if int(self.dut.tx.value):
                self.received.append(byte)
                self.arrived.set()
            else:
                self.framing_errors += 1

    async def read(self, count, timeout_bits):
        """The next ``count`` received bytes (waits up to ``timeout_bits`` bit times)."""
        while len(self.received) < count:
            # Sleep until a byte arrives: no Python wakes up while the miner scans.
            self.arrived.clear()
            try:
                await with_timeout(self.arrived.wait(), self.bit_ns * timeout_bits, "ns")
            except SimTimeoutError:
                raise AssertionError(f"only {len(self.received)} of {count} bytes came: "
                                     f"{bytes(self.received).hex()}") from None
        data = bytes(self.received[:count])
        del self.received[:count]
        return data


class NativeHost:
    """The native protocol's host over a :class:`UartLine`, with nangua's own frame decoder."""

    def __init__(self, line):
        self.line = line
        self.decoder = FrameDecoder()
        self.messages = []

    async def next(self, kinds, timeout_bits=20_000):
        waited = 0
        while True:
            for index, message in enumerate(self.messages):
                if isinstance(message, kinds):
                    return self.messages.pop(index)
            assert waited < timeout_bits, f"no {kinds} came; got {self.messages}"
            await Timer(self.line.bit_ns * 10, unit="ns")
            waited += 10
            data = bytes(self.line.received)
            self.line.received.clear()
            self.messages += self.decoder.feed(data)

    async def status(self):
        await self.line.send(encode_status_request())
        return await self.next(Status)


def real_header(index):
    lines = [line for line in HEADERS.read_text().splitlines() if not line.startswith("#")]
    return bytes.fromhex(lines[index].split()[1])


async def _native(dut):
    await start(dut, ["rx"])
    return NativeHost(UartLine(dut, divisor()))


native_test = cocotb.test(skip=protocol() != "native")
icarus_test = cocotb.test(skip=protocol() != "icarus")


@native_test
async def test_identify(dut):
    host = await _native(dut)
    await host.line.send(encode_identify_request())
    identity = await host.next(Identity)
    assert identity.name == b"nangua" and identity.baud * divisor() == identity.clk_hz


@native_test
async def test_job_from_a_real_header(dut):
    host = await _native(dut)
    header = real_header(2)
    nonce = header_nonce(header)
    job = Job.from_header(header, nonce_start=nonce - 3, nonce_end=nonce + 2, job_id=0x21)
    await host.line.send(encode_job(job))
    assert (await host.next(JobAck)).job_id == 0x21
    result = await host.next(Result)
    assert (result.job_id, result.nonce) == (0x21, nonce)
    assert [nonce] == job.scan(early_exit=True)
    done = await host.next(Done)
    assert (done.job_id, done.nonce) == (0x21, job.nonce_end)
    status = await host.status()
    assert status.hashes == 6 and status.results_dropped == 0 and status.jobs_accepted == 1


@native_test
async def test_corrupted_frame_is_counted_and_starts_nothing(dut):
    host = await _native(dut)
    job = Job.from_header(real_header(4), nonce_start=0, nonce_end=3, job_id=0x44)
    frame = bytearray(encode_job(job))
    frame[20] ^= 0x01
    await host.line.send(frame)
    status = await host.status()
    assert status.checksum_errors == 1 and status.jobs_accepted == 0 and not status.busy
    assert host.line.framing_errors == 0
    assert not any(isinstance(m, (JobAck, Result, Done)) for m in host.messages)


@icarus_test
async def test_icarus_detect_packet(dut):
    await start(dut, ["rx"])
    line = UartLine(dut, divisor())
    await line.send(DETECT_PACKET)
    # 100,259 hashes at the top's rate, plus the reply; generous for unroll 8.
    reply = await line.read(4, timeout_bits=10 ** 6)
    assert reply.hex() == "000187a2" and decode_nonce(reply) == DETECT_NONCE
    await Timer(line.bit_ns * 100, unit="ns")
    assert not line.received, "a fifth byte followed the detect reply"
