"""Icarus-compatible mode: the classic FPGA miner serial protocol, so existing mining software
(cgminer/bfgminer ``driver-icarus.c``) drives nangua unchanged.

Host → device: 64-byte work packets, no framing. Device → host: the 4-byte nonce (W3,
big-endian) of every hash whose H7 is 0. A new packet aborts the current scan; a scan starts at
nonce 0 and goes up through the whole 32-bit range.
"""

from amaranth.hdl import Cat, Module, Signal
from amaranth.lib import stream, wiring
from amaranth.lib.wiring import In, Out

from ..params import checking
from ..miner.layouts import JOB_ID_BITS, JobLayout, ResultKind, ResultLayout
from . import protocol
from .framing import COUNTER_BITS
from .uart import UARTReceiver, UARTTransmitter, check_divisor

#: Byte offsets in a work packet.
TAIL_OFFSET = 52


class IcarusLink(wiring.Component):
    """Icarus protocol over a UART, between the serial pins and a miner engine.

    A work packet is committed to ``job`` only when all 64 bytes have arrived with no gap longer
    than the timeout; a partial packet is dropped (``timeouts``) and the next byte starts a new
    one, which is how the protocol resynchronises. Each packet becomes a job with the next job id,
    target ``target`` and range 0..0xffffffff. Results of any job but the newest are discarded (a
    new packet aborts the old scan, and the host would attribute a late nonce to the new work);
    ``kind=DONE`` results send nothing, as in the original protocol.

    Throughput: one 4-byte reply per 40 bit times; the engine is back-pressured meanwhile.

    Parameters
    ----------
    divisor : int
        UART clocks per bit.
    target : int
        Job target; the default (``2**224 - 1``) reports exactly the hashes with H7 == 0. Tests
        use easier targets to get replies within a few hundred nonces.
    timeout_bits : int
        Inter-byte timeout of a packet, in bit times.

    Members
    -------
    rx : In(1)
        Serial line from the host.
    tx : Out(1)
        Serial line to the host.
    job : Out(stream.Signature(JobLayout()))
        Jobs for the engine.
    result : In(stream.Signature(ResultLayout()))
        The engine's results.
    uart_errors, timeouts, jobs_accepted : Out(32)
        Counters (bytes lost: bad stop bit or overrun; partial packets dropped; jobs taken).

    Raises
    ------
    ValueError
        For a divisor below the UART's minimum, a target that is not a 256-bit number, or a
        non-positive ``timeout_bits``.
    """

    def __init__(self, *, divisor, target=protocol.ICARUS_TARGET,
                 timeout_bits=protocol.TIMEOUT_BIT_TIMES):
        with checking(self):
            self._divisor = check_divisor(divisor)
            if not isinstance(target, int) or not 0 <= target < 1 << 256:
                raise ValueError(f"target must be a 256-bit unsigned integer, not {target!r}")
            if not isinstance(timeout_bits, int) or timeout_bits < 1:
                raise ValueError(f"timeout_bits must be a positive integer, "
                                 f"not {timeout_bits!r}")
        self._target = target
        self._timeout = protocol.timeout_clocks(divisor, timeout_bits)
        super().__init__({
            "rx": In(1, init=1),
            "tx": Out(1, init=1),
            "job": Out(stream.Signature(JobLayout())),
            "result": In(stream.Signature(ResultLayout())),
            "uart_errors": Out(COUNTER_BITS),
            "timeouts": Out(COUNTER_BITS),
            "jobs_accepted": Out(COUNTER_BITS),
        })

    @property
    def target(self):
        return self._target

    def elaborate(self, platform):
        m = Module()
        m.submodules.uart_rx = uart_rx = UARTReceiver(self._divisor)
        m.submodules.uart_tx = uart_tx = UARTTransmitter(self._divisor)
        m.d.comb += [uart_rx.rx.eq(self.rx), self.tx.eq(uart_tx.tx)]
        with m.If(uart_rx.framing_error | uart_rx.overrun):
            m.d.sync += self.uart_errors.eq(self.uart_errors + 1)

        # Collect a packet straight into the job's word registers: packet byte n goes to the
        # byte of the word it encodes (words reversed, each big-endian); bytes 32..51 go to a
        # scratch register. The job is offered only when all 64 bytes are in, and no byte is
        # taken while it waits for the engine, so the engine never sees a partial packet.
        midstate = [Signal(32, name=f"h{i}") for i in range(8)]
        tail = [Signal(32, name=f"w{i}") for i in range(3)]
        padding = Signal(8 * (TAIL_OFFSET - 32))

        def big_endian_bytes(word):
            return [word[24:32], word[16:24], word[8:16], word[0:8]]

        packet = Cat(*(byte for word in reversed(midstate) for byte in big_endian_bytes(word)),
                     padding,
                     *(byte for word in reversed(tail) for byte in big_endian_bytes(word)))
        assert len(packet) == 8 * protocol.ICARUS_WORK_BYTES

        index = Signal(range(protocol.ICARUS_WORK_BYTES))
        idle = Signal(range(self._timeout + 1))
        take = uart_rx.o.valid & uart_rx.o.ready
        m.d.comb += uart_rx.o.ready.eq(~self.job.valid)
        newest_id = Signal(JOB_ID_BITS)
        with m.If(self.job.valid & self.job.ready):
            m.d.sync += [self.job.valid.eq(0), self.jobs_accepted.eq(self.jobs_accepted + 1)]
        with m.If(take):
            m.d.sync += [packet.word_select(index, 8).eq(uart_rx.o.payload), index.eq(index + 1),
                         idle.eq(0)]
            with m.If(index == protocol.ICARUS_WORK_BYTES - 1):
                m.d.sync += [index.eq(0), self.job.valid.eq(1), newest_id.eq(newest_id + 1)]
        with m.Elif(idle != self._timeout):
            m.d.sync += idle.eq(idle + 1)
        with m.Elif(index != 0):
            m.d.sync += [index.eq(0), self.timeouts.eq(self.timeouts + 1)]
        with m.If(uart_rx.framing_error | uart_rx.overrun):
            m.d.sync += index.eq(0)    # a lost byte would shift the packet: start over

        job = self.job.payload
        m.d.comb += [
            job.target.eq(self._target),
            job.nonce_start.eq(0),
            job.nonce_end.eq(0xFFFF_FFFF),
            job.job_id.eq(newest_id),
        ]
        m.d.comb += [job.midstate[i].eq(word) for i, word in enumerate(midstate)]
        m.d.comb += [job.tail[i].eq(word) for i, word in enumerate(tail)]

        # Replies: the nonce, big-endian, for results of the newest job.
        reply = Signal(8 * protocol.ICARUS_NONCE_BYTES)
        remaining = Signal(range(protocol.ICARUS_NONCE_BYTES + 1))
        result = self.result.payload
        wanted = (result.kind == ResultKind.NONCE) & (result.job_id == newest_id)
        m.d.comb += self.result.ready.eq((remaining == 0) | ~wanted)
        with m.If(self.result.valid & self.result.ready & wanted):
            m.d.sync += [reply.eq(result.nonce), remaining.eq(protocol.ICARUS_NONCE_BYTES)]
        m.d.comb += [uart_tx.i.valid.eq(remaining != 0), uart_tx.i.payload.eq(reply[24:])]
        with m.If(uart_tx.i.valid & uart_tx.i.ready):
            m.d.sync += [reply.eq(reply << 8), remaining.eq(remaining - 1)]
        return m
