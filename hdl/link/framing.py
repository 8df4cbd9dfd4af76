"""Frames over a byte stream: ``SYNC KIND LENGTH PAYLOAD CRC_HI CRC_LO`` (see ``protocol.py``).

:class:`FrameReceiver` turns received bytes into whole, checked frames and counts what it rejects;
:class:`FrameTransmitter` turns frames into bytes with their CRC.
"""

from amaranth.hdl import Module, Signal, unsigned
from amaranth.lib import crc, data, stream, wiring
from amaranth.lib.wiring import In, Out

from . import protocol
from ..params import checking

#: Width of every error counter (they wrap).
COUNTER_BITS = 32


def crc_parameters():
    """The frame CRC (:data:`protocol.CRC`) as ``amaranth.lib.crc`` parameters for bytes."""
    c = protocol.CRC
    return crc.Algorithm(crc_width=c.width, polynomial=c.polynomial, initial_crc=c.initial,
                         reflect_input=c.reflect_input, reflect_output=c.reflect_output,
                         xor_output=c.xor_output)(data_width=8)


class FrameLayout(data.StructLayout):
    """A frame's kind and payload; payload byte ``n`` is bits ``8n .. 8n+7`` (little-endian)."""

    def __init__(self, payload_bytes):
        super().__init__({
            "kind":    unsigned(8),
            "length":  unsigned(8),
            "payload": unsigned(8 * max(1, payload_bytes)),
        })


def check_lengths(lengths):
    if not lengths:
        raise ValueError("a frame receiver needs at least one frame kind")
    for kind, length in lengths.items():
        if not 0 <= int(kind) <= 255 or int(kind) == protocol.SYNC:
            raise ValueError(f"frame kind {int(kind):#x} is not a byte other than SYNC")
        if not 0 <= length < protocol.SYNC:
            raise ValueError(f"payload length {length} of kind {int(kind):#x} is not below "
                             f"{protocol.SYNC:#x}")
    return {int(kind): length for kind, length in lengths.items()}


class FrameReceiver(wiring.Component):
    """Bytes in, whole frames with a matching CRC out; everything else rejected and counted.

    A frame is delivered on ``o`` only after its last CRC byte has arrived and the CRC over kind,
    length and payload matched; nothing of a frame is visible before that (``o.valid`` is low
    while its payload is collected). Rejected, each counted once:

    * a kind not in ``lengths``, or a length other than the kind's (``header_errors``);
    * a CRC mismatch (``checksum_errors``);
    * a gap of more than ``timeout`` clocks between two bytes of a frame (``timeouts``): the
      frame was truncated.

    The payload is collected in ``o``'s own register, so while ``o`` holds a frame that has not
    been taken, ``i.ready`` is low: no byte is taken until the consumer (the engine, for a job)
    takes the frame. A UART in front holds one byte meanwhile, i.e. 10 bit times of slack.

    ``abort`` (a byte lost by the UART) abandons the frame in progress without counting it here.
    After any rejection the receiver hunts for the next ``SYNC``; a ``SYNC`` byte where a kind or
    a length is expected restarts the frame there (no kind or length can equal ``SYNC``), so a
    stray ``SYNC`` before a frame costs nothing.

    Latency: ``o.valid`` rises 2 clocks after the last CRC byte is taken.

    Parameters
    ----------
    lengths : dict of int to int
        Accepted kinds and the payload length in bytes of each.
    timeout : int
        Inter-byte timeout in clock cycles (at least 1).

    Members
    -------
    i : In(stream.Signature(8))
        Received bytes.
    abort : In(1)
        Abandon the frame in progress.
    o : Out(stream.Signature(FrameLayout(max(lengths.values()))))
        Checked frames; payload bytes beyond the kind's length are 0.
    checksum_errors, header_errors, timeouts : Out(32)
        Wrapping counters of rejected frames.

    Raises
    ------
    ValueError
        For an empty ``lengths``, a kind that is ``SYNC`` or not a byte, a length not below
        ``SYNC``, or a timeout below 1.
    """

    def __init__(self, lengths, *, timeout):
        with checking(self):
            self._lengths = check_lengths(lengths)
            if not isinstance(timeout, int) or timeout < 1:
                raise ValueError(f"timeout must be a positive integer of clocks, "
                                 f"not {timeout!r}")
        self._timeout = timeout
        self._max_payload = max(self._lengths.values())
        #: The CRC unit, made at elaboration (``amaranth.lib.crc.Processor``) unless something
        #: with its signals is put here first: proofs put a stand-in with a free verdict.
        self.checker = None
        super().__init__({
            "i": In(stream.Signature(8)),
            "abort": In(1),
            "o": Out(stream.Signature(FrameLayout(self._max_payload))),
            "checksum_errors": Out(COUNTER_BITS),
            "header_errors": Out(COUNTER_BITS),
            "timeouts": Out(COUNTER_BITS),
        })

    @property
    def lengths(self):
        return dict(self._lengths)

    @property
    def timeout(self):
        return self._timeout

    def checksum_ok(self, m, checker):
        """The signal that accepts a frame's CRC; a test subclass replaces it to break the proof."""
        return checker.match_detected

    def elaborate(self, platform):
        m = Module()
        if self.checker is None:
            self.checker = crc_parameters().create()
        m.submodules.checker = checker = self.checker

        byte = self.i.payload
        take = self.i.valid & self.i.ready
        kind = Signal(8)
        length = Signal(8)
        index = Signal(range(self._max_payload + 1))
        buffer = self.o.payload.payload
        idle = Signal(range(self._timeout + 1))

        m.d.comb += [checker.data.eq(byte), self.i.ready.eq(~self.o.valid)]
        with m.If(self.o.ready):
            m.d.sync += self.o.valid.eq(0)

        with m.If(take):
            m.d.sync += idle.eq(0)
        with m.Elif(idle != self._timeout):
            m.d.sync += idle.eq(idle + 1)

        def abandon_if_stalled():
            # Last statement of every in-frame state, so that it overrides that state's `m.next`.
            with m.If(~take & (idle == self._timeout)):
                m.d.sync += self.timeouts.eq(self.timeouts + 1)
                m.next = "HUNT"
            with m.Elif(self.abort):
                m.next = "HUNT"

        def restart_on_sync():
            with m.If(byte == protocol.SYNC):
                m.d.comb += checker.start.eq(1)
                m.next = "KIND"

        with m.FSM():
            with m.State("HUNT"):
                with m.If(take & (byte == protocol.SYNC)):
                    m.d.comb += checker.start.eq(1)
                    m.next = "KIND"
            with m.State("KIND"):
                with m.If(take):
                    with m.If(byte != protocol.SYNC):
                        m.d.comb += checker.valid.eq(1)
                        m.d.sync += kind.eq(byte)
                        m.next = "LENGTH"
                abandon_if_stalled()
            with m.State("LENGTH"):
                with m.If(take):
                    known = Signal()
                    for k, n in self._lengths.items():
                        with m.If((kind == k) & (byte == n)):
                            m.d.comb += known.eq(1)
                    with m.If(known):
                        m.d.comb += checker.valid.eq(1)
                        m.d.sync += [length.eq(byte), index.eq(0), buffer.eq(0)]
                        m.next = "CRC_HI" if self._max_payload == 0 else "PAYLOAD"
                        with m.If(byte == 0):
                            m.next = "CRC_HI"
                    with m.Else():
                        m.d.sync += self.header_errors.eq(self.header_errors + 1)
                        m.next = "HUNT"
                        restart_on_sync()
                abandon_if_stalled()
            if self._max_payload:
                with m.State("PAYLOAD"):
                    with m.If(take):
                        m.d.comb += checker.valid.eq(1)
                        m.d.sync += [buffer.word_select(index, 8).eq(byte), index.eq(index + 1)]
                        with m.If(index + 1 == length):
                            m.next = "CRC_HI"
                    abandon_if_stalled()
            with m.State("CRC_HI"):
                with m.If(take):
                    m.d.comb += checker.valid.eq(1)
                    m.next = "CRC_LO"
                abandon_if_stalled()
            with m.State("CRC_LO"):
                with m.If(take):
                    m.d.comb += checker.valid.eq(1)
                    m.next = "CHECK"
                abandon_if_stalled()
            with m.State("CHECK"):
                # The checker's register now holds the CRC over the whole frame.
                m.d.comb += self.i.ready.eq(0)
                with m.If(~self.checksum_ok(m, checker)):
                    m.d.sync += self.checksum_errors.eq(self.checksum_errors + 1)
                with m.Else():
                    m.d.sync += [
                        self.o.valid.eq(1),
                        self.o.payload.kind.eq(kind),
                        self.o.payload.length.eq(length),
                    ]
                m.next = "HUNT"
        return m


class FrameTransmitter(wiring.Component):
    """Frames in, bytes out: ``SYNC``, kind, length, ``length`` payload bytes, CRC (MSB first).

    The frame on ``i`` is read in place while its bytes are sent (the stream rules hold it while
    ``valid & ~ready``), so it needs no copy; ``i.ready`` rises in the clock its last byte is
    loaded. Bytes leave on ``o`` back to back, one per clock when ``o.ready`` allows (``o`` is
    registered and holds each byte until taken). ``length`` must not exceed ``payload_bytes``
    (the payload field is only that wide); bytes beyond it are not sent.

    Parameters
    ----------
    payload_bytes : int
        Largest payload, in bytes.

    Members
    -------
    i : In(stream.Signature(FrameLayout(payload_bytes)))
        Frames to send.
    o : Out(stream.Signature(8))
        Bytes of the frames.

    Raises
    ------
    ValueError
        For a negative ``payload_bytes`` or one not below ``SYNC``.
    """

    def __init__(self, payload_bytes):
        with checking(self):
            if not isinstance(payload_bytes, int) or not 0 <= payload_bytes < protocol.SYNC:
                raise ValueError(f"payload_bytes must be an integer in 0..{protocol.SYNC - 1}, "
                                 f"not {payload_bytes!r}")
        self._payload_bytes = payload_bytes
        super().__init__({
            "i": In(stream.Signature(FrameLayout(payload_bytes))),
            "o": Out(stream.Signature(8)),
        })

    @property
    def payload_bytes(self):
        return self._payload_bytes

    def elaborate(self, platform):
        m = Module()
        m.submodules.generator = generator = crc_parameters().create()

        frame = self.i.payload
        index = Signal(range(max(2, self._payload_bytes + 1)))
        sent = self.o.valid & self.o.ready
        # The next byte may be loaded when the output register is empty or being emptied.
        free = ~self.o.valid | self.o.ready
        with m.If(sent):
            m.d.sync += self.o.valid.eq(0)

        def emit(value, next_state, add_to_crc=True):
            with m.If(free):
                m.d.sync += [self.o.payload.eq(value), self.o.valid.eq(1)]
                m.d.comb += [generator.data.eq(value), generator.valid.eq(add_to_crc)]
                m.next = next_state

        with m.FSM():
            with m.State("IDLE"):
                with m.If(self.i.valid):
                    m.d.comb += generator.start.eq(1)
                    m.next = "SYNC"
            with m.State("SYNC"):
                emit(protocol.SYNC, "KIND", add_to_crc=False)
            with m.State("KIND"):
                emit(frame.kind, "LENGTH")
            with m.State("LENGTH"):
                m.d.sync += index.eq(0)
                emit(frame.length, "PAYLOAD")
                with m.If(frame.length == 0):
                    emit(frame.length, "CRC_HI")
            with m.State("PAYLOAD"):
                emit(frame.payload.word_select(index, 8), "PAYLOAD")
                with m.If(free):
                    m.d.sync += index.eq(index + 1)
                    with m.If(index + 1 == frame.length):
                        m.next = "CRC_HI"
            with m.State("CRC_HI"):
                emit(generator.crc[8:], "CRC_LO", add_to_crc=False)
            with m.State("CRC_LO"):
                emit(generator.crc[:8], "IDLE", add_to_crc=False)
                m.d.comb += self.i.ready.eq(free)
        return m
