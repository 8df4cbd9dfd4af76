"""The native protocol's gateware: UART + frames in, jobs to the engine, results and status out.

See ``docs/protocol.md`` for the protocol and ``protocol.py`` for its constants.
"""

from amaranth.hdl import Module, Mux, Signal, unsigned
from amaranth.lib import data, stream, wiring
from amaranth.lib.wiring import In, Out

from ..params import checking
from ..miner.layouts import JOB_ID_BITS, JobLayout, ResultKind, ResultLayout
from . import protocol
from .framing import COUNTER_BITS, FrameLayout, FrameReceiver, FrameTransmitter
from .protocol import Kind
from .uart import UARTReceiver, UARTTransmitter, check_divisor


def payload_layout(kind):
    """``data.StructLayout`` of a kind's payload: the fields of ``protocol.FIELDS`` in wire order.

    Fields are little-endian, so field ``n`` occupies the bits right after field ``n - 1``.
    """
    return data.StructLayout({name: unsigned(8 * count * size)
                              for name, count, size in protocol.FIELDS[kind]})


def check_job_payload():
    """The wire layout of a JOB payload must be the bits of ``JobLayout``, byte for byte."""
    wire = payload_layout(Kind.JOB)
    job = JobLayout()
    for name, field in wire:
        if job[name].offset != field.offset or job[name].width != field.width:
            raise AssertionError(f"JOB field {name} is not where JobLayout has it")
    assert wire.size == job.size


class ResponseScheduler(wiring.Component):
    """Chooses the next device → host frame: job ack, status, identify, then engine results.

    Requests are flags that stay set until their frame is loaded, so each is answered once. A
    result is taken from the engine's stream only in the clock its frame is loaded into the output
    register (``o`` is registered and held while ``valid & ~ready``), so no result is ever taken
    without becoming a frame. Ack comes first so a job's ack precedes all its results.

    Members
    -------
    ack : In(1)
        Pulse: the engine took the job ``ack_id``.
    ack_id : In(8)
    status_request, identify_request : In(1)
        Pulse: send a status / identify frame.
    status : In(payload_layout(Kind.STATUS))
        Counters, sampled when the status frame is loaded.
    result : In(stream.Signature(ResultLayout()))
        The engine's results.
    o : Out(stream.Signature(FrameLayout(max payload)))
        Frames for the frame transmitter.
    """

    def __init__(self, identity):
        self._identity = identity
        self._payload_bytes = max(protocol.PAYLOAD_BYTES[k] for k in protocol.DEVICE_KINDS)
        super().__init__({
            "ack": In(1),
            "ack_id": In(JOB_ID_BITS),
            "status_request": In(1),
            "identify_request": In(1),
            "status": In(payload_layout(Kind.STATUS)),
            "result": In(stream.Signature(ResultLayout())),
            "o": Out(stream.Signature(FrameLayout(self._payload_bytes))),
        })

    @property
    def payload_bytes(self):
        return self._payload_bytes

    def takes_result(self, result_turn):
        """``result.ready``: exactly when a result frame is loaded. (A test subclass breaks it to
        show that the proof of "no result is lost" can fail.)"""
        return result_turn

    def elaborate(self, platform):
        m = Module()
        ack_pending = Signal()
        ack_id = Signal(JOB_ID_BITS)
        status_pending = Signal()
        identify_pending = Signal()

        load = ~self.o.valid | self.o.ready
        with m.If(self.o.valid & self.o.ready):
            m.d.sync += self.o.valid.eq(0)

        def send(kind, fields):
            fields_view = Signal(payload_layout(kind), name=f"{kind.name.lower()}_payload")
            m.d.comb += [fields_view[name].eq(value) for name, value in fields.items()]
            m.d.sync += [
                self.o.valid.eq(1),
                self.o.payload.kind.eq(kind),
                self.o.payload.length.eq(protocol.PAYLOAD_BYTES[kind]),
                self.o.payload.payload.eq(fields_view.as_value()),
            ]

        with m.If(load):
            with m.If(ack_pending):
                send(Kind.JOB_ACK, {"job_id": ack_id})
                m.d.sync += ack_pending.eq(0)
            with m.Elif(status_pending):
                send(Kind.STATUS, {name: self.status[name] for name, _ in payload_layout(
                    Kind.STATUS)})
                m.d.sync += status_pending.eq(0)
            with m.Elif(identify_pending):
                send(Kind.IDENTIFY, self._identity)
                m.d.sync += identify_pending.eq(0)
            with m.Elif(self.result.valid):
                with m.If(self.result.payload.kind == ResultKind.DONE):
                    send(Kind.DONE, {"job_id": self.result.payload.job_id,
                                     "nonce": self.result.payload.nonce})
                with m.Else():
                    send(Kind.RESULT, {"job_id": self.result.payload.job_id,
                                       "nonce": self.result.payload.nonce})
        result_turn = load & ~ack_pending & ~status_pending & ~identify_pending
        m.d.comb += self.result.ready.eq(self.takes_result(result_turn))
        # Requests arriving while their previous one waits merge into it (one answer).
        with m.If(self.ack):
            m.d.sync += [ack_pending.eq(1), ack_id.eq(self.ack_id)]
        with m.If(self.status_request):
            m.d.sync += status_pending.eq(1)
        with m.If(self.identify_request):
            m.d.sync += identify_pending.eq(1)
        return m


def identity_fields(*, unroll, cores, clk_freq, baud):
    """Values of the identify frame's fields."""
    return {
        "name": int.from_bytes(protocol.DESIGN_NAME.ljust(protocol.NAME_BYTES, b"\0"), "little"),
        "protocol_version": protocol.PROTOCOL_VERSION,
        "version_major": protocol.DESIGN_VERSION[0],
        "version_minor": protocol.DESIGN_VERSION[1],
        "unroll": unroll,
        "cores": cores,
        "clk_hz": int(clk_freq),
        "baud": int(baud),
    }


class NativeLink(wiring.Component):
    """Native framed protocol over a UART, between the serial pins and a miner engine.

    Host → device frames pass a :class:`FrameReceiver`: a job reaches ``job`` only after its
    whole frame has arrived with a matching CRC, and it is acked (JOB_ACK) when the engine takes
    it. Every engine result becomes one RESULT or DONE frame; the engine's stream is back-pressured
    while the UART is busy (results are never dropped here, and ``results_dropped`` counts results
    the engine withdrew without handing them over, which a correct engine never does). Status
    and identify requests are answered once each, between frames.

    Parameters
    ----------
    divisor : int
        UART clocks per bit.
    unroll, cores : int
        Reported by the identify frame.
    clk_freq, baud : int
        Reported by the identify frame (Hz, bits per second).
    timeout_bits : int
        Inter-byte timeout of a frame, in bit times.

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
    busy : In(1), hashes : In(64), job_id : In(8)
        The engine's state, reported by the status frame.
    uart_errors, checksum_errors, header_errors, timeouts, overruns, jobs_accepted,
    results_dropped : Out(32)
        The counters of the status frame (``docs/protocol.md``): ``overruns`` counts bytes lost
        while a job waited for the engine.

    Raises
    ------
    ValueError
        For a divisor below the UART's minimum, or a non-positive ``timeout_bits``.
    """

    def __init__(self, *, divisor, unroll=1, cores=1, clk_freq=0, baud=0,
                 timeout_bits=protocol.TIMEOUT_BIT_TIMES):
        check_job_payload()
        with checking(self):
            self._divisor = check_divisor(divisor)
            if not isinstance(timeout_bits, int) or timeout_bits < 1:
                raise ValueError(f"timeout_bits must be a positive integer, "
                                 f"not {timeout_bits!r}")
        self._timeout_bits = timeout_bits
        self._identity = identity_fields(unroll=unroll, cores=cores, clk_freq=clk_freq,
                                         baud=baud)
        super().__init__({
            "rx": In(1, init=1),
            "tx": Out(1, init=1),
            "job": Out(stream.Signature(JobLayout())),
            "result": In(stream.Signature(ResultLayout())),
            "busy": In(1),
            "hashes": In(64),
            "job_id": In(JOB_ID_BITS),
            "uart_errors": Out(COUNTER_BITS),
            "checksum_errors": Out(COUNTER_BITS),
            "header_errors": Out(COUNTER_BITS),
            "timeouts": Out(COUNTER_BITS),
            "overruns": Out(COUNTER_BITS),
            "jobs_accepted": Out(COUNTER_BITS),
            "results_dropped": Out(COUNTER_BITS),
        })

    @property
    def divisor(self):
        return self._divisor

    def elaborate(self, platform):
        m = Module()
        m.submodules.uart_rx = uart_rx = UARTReceiver(self._divisor)
        m.submodules.uart_tx = uart_tx = UARTTransmitter(self._divisor)
        m.submodules.frames_in = frames_in = FrameReceiver(
            {kind: protocol.PAYLOAD_BYTES[kind] for kind in protocol.HOST_KINDS},
            timeout=protocol.timeout_clocks(self._divisor, self._timeout_bits))
        m.submodules.scheduler = scheduler = ResponseScheduler(self._identity)
        m.submodules.frames_out = frames_out = FrameTransmitter(scheduler.payload_bytes)

        m.d.comb += [
            uart_rx.rx.eq(self.rx),
            self.tx.eq(uart_tx.tx),
            frames_in.abort.eq(uart_rx.framing_error | uart_rx.overrun),
        ]
        wiring.connect(m, uart_rx.o, frames_in.i)
        wiring.connect(m, scheduler.o, frames_out.i)
        wiring.connect(m, frames_out.o, uart_tx.i)
        wiring.connect(m, wiring.flipped(self.result), scheduler.result)

        frame = frames_in.o.payload
        is_job = frame.kind == Kind.JOB
        m.d.comb += [
            self.job.valid.eq(frames_in.o.valid & is_job),
            self.job.payload.eq(frame.payload[:JobLayout().size]),
            frames_in.o.ready.eq(Mux(is_job, self.job.ready, 1)),
            scheduler.status_request.eq(frames_in.o.valid & (frame.kind == Kind.STATUS_REQUEST)),
            scheduler.identify_request.eq(
                frames_in.o.valid & (frame.kind == Kind.IDENTIFY_REQUEST)),
            scheduler.ack.eq(self.job.valid & self.job.ready),
            scheduler.ack_id.eq(self.job.payload.job_id),
        ]
        with m.If(self.job.valid & self.job.ready):
            m.d.sync += self.jobs_accepted.eq(self.jobs_accepted + 1)
        with m.If(uart_rx.framing_error):
            m.d.sync += self.uart_errors.eq(self.uart_errors + 1)
        with m.If(uart_rx.overrun):
            m.d.sync += self.overruns.eq(self.overruns + 1)

        # A result offered and not taken must still be offered, unchanged, in the next clock.
        offered = Signal()
        offered_payload = Signal(ResultLayout())
        m.d.sync += [offered.eq(self.result.valid & ~self.result.ready),
                     offered_payload.eq(self.result.payload)]
        with m.If(offered & (~self.result.valid |
                             (self.result.payload.as_value() != offered_payload.as_value()))):
            m.d.sync += self.results_dropped.eq(self.results_dropped + 1)

        m.d.comb += [
            self.checksum_errors.eq(frames_in.checksum_errors),
            self.header_errors.eq(frames_in.header_errors),
            self.timeouts.eq(frames_in.timeouts),
        ]
        status = scheduler.status
        m.d.comb += [
            status.hashes.eq(self.hashes),
            status.results_dropped.eq(self.results_dropped),
            status.uart_errors.eq(self.uart_errors),
            status.checksum_errors.eq(frames_in.checksum_errors),
            status.header_errors.eq(frames_in.header_errors),
            status.timeouts.eq(frames_in.timeouts),
            status.jobs_accepted.eq(self.jobs_accepted),
            status.overruns.eq(self.overruns),
            status.job_id.eq(self.job_id),
            status.busy.eq(self.busy),
        ]
        return m
