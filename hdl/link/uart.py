"""8N1 UART as byte streams: a receiver with mid-bit sampling and a transmitter.

Both take the bit time as a clock ``divisor`` (clocks per bit); :func:`divisor_for` derives it
from a clock frequency and a baud rate.
"""

from amaranth.hdl import Cat, Module, Signal
from amaranth.lib import cdc, stream, wiring
from amaranth.lib.wiring import In, Out

from ..params import checking

#: The smallest divisor: the receiver samples mid-bit and needs a half bit of at least 2 clocks.
MIN_DIVISOR = 4
#: Largest baud-rate error accepted by :func:`divisor_for`; 8N1 tolerates about 5 % in total
#: between both ends, so each end may take half of it.
MAX_BAUD_ERROR = 0.025


def check_divisor(divisor):
    if not isinstance(divisor, int) or divisor < MIN_DIVISOR:
        raise ValueError(f"UART divisor must be an integer of at least {MIN_DIVISOR}, "
                         f"not {divisor!r}")
    return divisor


def divisor_for(clk_freq, baud):
    """Clock divisor for ``baud`` at ``clk_freq`` Hz.

    Raises
    ------
    ValueError
        If the divisor would be below :data:`MIN_DIVISOR` or the resulting baud rate would be off
        by more than :data:`MAX_BAUD_ERROR`.
    """
    if clk_freq <= 0 or baud <= 0:
        raise ValueError(f"clock frequency and baud rate must be positive, not "
                         f"{clk_freq!r} and {baud!r}")
    divisor = round(clk_freq / baud)
    if divisor < MIN_DIVISOR:
        raise ValueError(f"baud rate {baud} needs at least {MIN_DIVISOR} clocks per bit, "
                         f"but a {clk_freq} Hz clock gives {clk_freq / baud:.2f}")
    error = abs(clk_freq / divisor - baud) / baud
    if error > MAX_BAUD_ERROR:
        raise ValueError(f"baud rate {baud} is off by {error:.1%} at {clk_freq} Hz "
                         f"(divisor {divisor}); at most {MAX_BAUD_ERROR:.1%} is allowed")
    return divisor


class UARTReceiver(wiring.Component):
    """8N1 receiver: line in, byte stream out.

    The line passes a 2-FF synchroniser. A falling edge starts a byte; the start bit is checked at
    its middle (a glitch shorter than half a bit is ignored) and every data bit and the stop bit are
    sampled mid-bit, LSB first. A byte whose stop bit is 0 is not delivered: ``framing_error``
    pulses and the receiver waits for the line to go idle (high) before it looks for the next start
    bit, so a break or a wrong baud rate produces one error, not a stream of garbage.

    Latency: a byte appears on ``o`` 2 clocks (synchroniser) after the middle of its stop bit.
    Throughput: the line rate. ``o`` holds its byte until taken; a byte completed while the
    previous one is still untaken is dropped and ``overrun`` pulses.

    Parameters
    ----------
    divisor : int
        Clocks per bit, at least :data:`MIN_DIVISOR`.

    Members
    -------
    rx : In(1)
        The serial line (idle high); asynchronous.
    o : Out(stream.Signature(8))
        Received bytes.
    framing_error : Out(1)
        Pulses for one clock for a byte with a bad stop bit.
    overrun : Out(1)
        Pulses for one clock for a byte dropped because ``o`` was still full.

    Raises
    ------
    ValueError
        For a divisor below :data:`MIN_DIVISOR`.
    """

    def __init__(self, divisor):
        with checking(self):
            self._divisor = check_divisor(divisor)
        super().__init__({
            "rx": In(1, init=1),
            "o": Out(stream.Signature(8)),
            "framing_error": Out(1),
            "overrun": Out(1),
        })

    @property
    def divisor(self):
        return self._divisor

    def elaborate(self, platform):
        m = Module()
        line = Signal(init=1)
        m.submodules.synchroniser = cdc.FFSynchronizer(self.rx, line, init=1)

        timer = Signal(range(self._divisor))
        bits = Signal(8)
        count = Signal(range(8))

        with m.If(self.o.ready):
            m.d.sync += self.o.valid.eq(0)
        m.d.sync += [
            self.framing_error.eq(0),
            self.overrun.eq(0),
        ]
        with m.If(timer != 0):
            m.d.sync += timer.eq(timer - 1)

        with m.FSM():
            with m.State("IDLE"):
                with m.If(~line):
                    # First check at the middle of the start bit.
                    m.d.sync += timer.eq(self._divisor // 2 - 1)
                    m.next = "START"
            with m.State("START"):
                with m.If(timer == 0):
                    with m.If(line):
                        m.next = "IDLE"     # a glitch, not a start bit
                    with m.Else():
                        m.d.sync += [timer.eq(self._divisor - 1), count.eq(0)]
                        m.next = "DATA"
            with m.State("DATA"):
                with m.If(timer == 0):
                    m.d.sync += [bits.eq(Cat(bits[1:], line)), timer.eq(self._divisor - 1)]
                    m.d.sync += count.eq(count + 1)
                    with m.If(count == 7):
                        m.next = "STOP"
            with m.State("STOP"):
                with m.If(timer == 0):
                    with m.If(~line):
                        m.d.sync += self.framing_error.eq(1)
                        m.next = "BREAK"
                    with m.Else():
                        with m.If(self.o.valid & ~self.o.ready):
                            m.d.sync += self.overrun.eq(1)
                        with m.Else():
                            m.d.sync += [self.o.payload.eq(bits), self.o.valid.eq(1)]
                        m.next = "IDLE"
            with m.State("BREAK"):
                with m.If(line):
                    m.next = "IDLE"
        return m


class UARTTransmitter(wiring.Component):
    """8N1 transmitter: byte stream in, line out.

    Throughput: one byte per ``10 * divisor`` clocks, back to back. ``i.ready`` is high exactly
    when the transmitter is idle; the line is registered (no glitches).

    Parameters
    ----------
    divisor : int
        Clocks per bit, at least :data:`MIN_DIVISOR`.

    Members
    -------
    i : In(stream.Signature(8))
        Bytes to send.
    tx : Out(1)
        The serial line, idle high.

    Raises
    ------
    ValueError
        For a divisor below :data:`MIN_DIVISOR`.
    """

    def __init__(self, divisor):
        with checking(self):
            self._divisor = check_divisor(divisor)
        super().__init__({
            "i": In(stream.Signature(8)),
            "tx": Out(1, init=1),
        })

    @property
    def divisor(self):
        return self._divisor

    def elaborate(self, platform):
        m = Module()
        timer = Signal(range(self._divisor))
        # Start bit, 8 data bits LSB first, stop bit; shifted out LSB first, refilled with 1s.
        frame = Signal(10, init=(1 << 10) - 1)
        remaining = Signal(range(11))

        m.d.comb += self.i.ready.eq(remaining == 0)
        with m.If(self.i.valid & self.i.ready):
            m.d.sync += [
                frame.eq(Cat(0, self.i.payload, 1)),
                remaining.eq(10),
                timer.eq(self._divisor - 1),
                self.tx.eq(0),
            ]
        with m.Elif(remaining != 0):
            with m.If(timer == 0):
                m.d.sync += [
                    timer.eq(self._divisor - 1),
                    frame.eq(Cat(frame[1:], 1)),
                    self.tx.eq(frame[1] | (remaining == 1)),
                    remaining.eq(remaining - 1),
                ]
            with m.Else():
                m.d.sync += timer.eq(timer - 1)
        return m
