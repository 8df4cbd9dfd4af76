"""What every board top shares: the miner with its host link on a serial port, and two LEDs.

A board file subclasses :class:`BoardMinerTop` and adds only what is its own: the platform, the
oscillator, the PLL and the names of its pins.
"""

from amaranth.hdl import Module, Signal
from amaranth.lib import io, wiring
from amaranth.lib.wiring import In, Out

from ..hdl.link.protocol import DEFAULT_BAUD
from ..hdl.link.top import MinerLinkTop
from ..hdl.miner.layouts import ResultKind

__all__ = ["BoardMinerTop", "FOUND_LED_SECONDS"]

#: How long the "found" LED stays lit after a nonce is found, so that a person can see it.
FOUND_LED_SECONDS = 0.25


class BoardMinerTop(wiring.Component):
    """A :class:`MinerLinkTop` wired to a board's UART and LEDs, on the board's PLL clock.

    Subclasses set :attr:`platform_class`, :attr:`oscillator_freq`, :attr:`busy_led` and
    :attr:`found_led` (resource ``(name, number)`` pairs), and implement :meth:`pll_settings`
    (the PLL's divider settings for a frequency, raising ``ValueError`` when it cannot be made)
    and :meth:`add_clocks` (the ``sync`` domain from the oscillator pin).

    With a platform, the ports below are not used: the UART and LED pins are. With ``platform is
    None`` (simulation) there is no PLL; the simulator drives ``sync`` and the ports stand in for
    the pins.

    Parameters
    ----------
    clk_freq : int or float
        Requested clock frequency in Hz. The oscillator's own frequency uses no PLL; any other is
        made by the PLL as nearly as it can (see :meth:`pll_settings`), and the achieved frequency
        is what the UART divisor and the identity report are computed from.
    protocol, unroll, cores, baud, **engine_options :
        Passed to :class:`MinerLinkTop`.

    Members
    -------
    rx : In(1)
        Serial line from the host (simulation only; idle high).
    tx : Out(1)
        Serial line to the host.
    busy : Out(1)
        The engine is scanning a job (the busy LED).
    found : Out(1)
        A nonce was found in the last :data:`FOUND_LED_SECONDS` (the found LED).

    Raises
    ------
    ValueError
        If the PLL cannot make ``clk_freq``, or for bad link or engine parameters.
    """

    platform_class = None
    oscillator_freq = None
    busy_led = None
    found_led = None

    def __init__(self, *, clk_freq, protocol="native", unroll=1, cores=1, baud=DEFAULT_BAUD,
                 **engine_options):
        if clk_freq == self.oscillator_freq:
            self._pll = None
            self._clk_freq = int(clk_freq)
        else:
            self._pll = self.pll_settings(clk_freq)
            self._clk_freq = round(self._pll.f_out)
        self.miner = MinerLinkTop(protocol=protocol, unroll=unroll, cores=cores,
                                  clk_freq=self._clk_freq, baud=baud, **engine_options)
        super().__init__({
            "rx": In(1, init=1),
            "tx": Out(1, init=1),
            "busy": Out(1),
            "found": Out(1),
        })

    #: The achieved clock frequency in Hz (an ``int``).
    clk_freq = property(lambda self: self._clk_freq)
    #: The PLL's divider settings, or ``None`` when the oscillator clocks the design directly.
    pll = property(lambda self: self._pll)

    @classmethod
    def pll_settings(cls, clk_freq):
        raise NotImplementedError

    def add_clocks(self, m, platform):
        raise NotImplementedError

    def elaborate(self, platform):
        m = Module()
        m.submodules.miner = miner = self.miner
        engine = miner.engine

        found_clocks = max(1, round(FOUND_LED_SECONDS * self._clk_freq))
        found_timer = Signal(range(found_clocks + 1))
        with m.If(engine.result.valid & engine.result.ready &
                  (engine.result.payload.kind == ResultKind.NONCE)):
            m.d.sync += found_timer.eq(found_clocks)
        with m.Elif(found_timer != 0):
            m.d.sync += found_timer.eq(found_timer - 1)
        m.d.comb += [
            self.busy.eq(engine.busy),
            self.found.eq(found_timer != 0),
            self.tx.eq(miner.tx),
        ]

        if platform is None:
            m.d.comb += miner.rx.eq(self.rx)
            return m

        self.add_clocks(m, platform)
        uart = platform.request("uart", 0, dir="-")
        m.submodules.uart_rx = uart_rx = io.Buffer("i", uart.rx)
        m.submodules.uart_tx = uart_tx = io.Buffer("o", uart.tx)
        m.submodules.busy_led = busy_led = io.Buffer("o", platform.request(*self.busy_led,
                                                                             dir="-"))
        m.submodules.found_led = found_led = io.Buffer("o", platform.request(*self.found_led,
                                                                               dir="-"))
        m.d.comb += [
            miner.rx.eq(uart_rx.i),
            uart_tx.o.eq(miner.tx),
            busy_led.o.eq(self.busy),
            found_led.o.eq(self.found),
        ]
        return m
