"""iCEBreaker (iCE40UP5K): the miner and its host link on the FTDI UART, clocked by the PLL.

Pins: ``uart`` (FTDI channel B: pin 6 from the host, pin 9 to it), ``led_g`` lit while a job is
being scanned, ``led_r`` lit briefly when a nonce is found; the 12 MHz oscillator on pin 35 feeds
``SB_PLL40_PAD`` directly.
"""

from amaranth.hdl import Instance, Signal
from amaranth.lib import io
from amaranth_boards.icebreaker import ICEBreakerPlatform

from .board_top import BoardMinerTop
from .clocks import ICE40PLLSettings, add_locked_domain

__all__ = ["ICEBreakerMiner"]

#: The board's oscillator (the platform's ``clk12`` resource).
OSCILLATOR_FREQ = 12_000_000
#: Reset held after the PLL locks: the 15 us Amaranth's iCE40 platform uses, which covers the
#: block RAMs' zero reads for about 3 us after configuration.
RESET_HOLD_SECONDS = 15e-6
#: Default miner: the smallest configuration. Precompute buys nothing at unroll 1 (the folded stage
#: runs 64 rounds either way) and costs a round of logic, so it is off. It does NOT fit the
#: UP5K's 5,280 logic cells (measured: 7,692 with the native link; docs/boards.md).
DEFAULTS = dict(unroll=1, cores=1, precompute=False, fold_constants=True, early_exit=True)
#: Default clock: one SHA-256 round per clock reached 19.8 MHz on the UP5K (TOOLCHAIN.md), so
#: 18 MHz, until a miner that fits can be timed.
DEFAULT_CLK_FREQ = 18_000_000


class ICEBreakerMiner(BoardMinerTop):
    """The miner on an iCEBreaker; see :class:`~.board_top.BoardMinerTop` for the contract.

    Parameters
    ----------
    clk_freq : int or float
        Clock in Hz: 12 MHz uses the oscillator directly; 16 to 275 MHz come from the PLL
        (within 1 %).
    **options
        ``protocol``, ``baud``, ``unroll``, ``cores`` and the engine switches; defaults are
        :data:`DEFAULTS`.
    """

    platform_class = ICEBreakerPlatform
    oscillator_freq = OSCILLATOR_FREQ
    busy_led = ("led_g", 0)
    found_led = ("led_r", 0)

    def __init__(self, *, clk_freq=DEFAULT_CLK_FREQ, **options):
        super().__init__(clk_freq=clk_freq, **{**DEFAULTS, **options})

    @classmethod
    def pll_settings(cls, clk_freq):
        return ICE40PLLSettings.compute(OSCILLATOR_FREQ, clk_freq)

    def add_clocks(self, m, platform):
        clk12 = platform.request("clk12", 0, dir="-")
        clk, locked = Signal(), Signal()
        if self.pll is None:
            # The pin's GLOBAL attribute makes this buffer an SB_GB_IO.
            m.submodules.clk12_buf = clk12_buf = io.Buffer("i", clk12)
            m.d.comb += [clk.eq(clk12_buf.i), locked.eq(1)]
        else:
            pll = self.pll
            # The _PAD variant takes the oscillator straight from its pin: no input buffer, and
            # the pin's global buffer stays free.
            m.submodules.pll = Instance(
                "SB_PLL40_PAD",
                p_FEEDBACK_PATH="SIMPLE",
                p_DIVR=pll.divr, p_DIVF=pll.divf, p_DIVQ=pll.divq,
                p_FILTER_RANGE=pll.filter_range,
                i_PACKAGEPIN=clk12.io, i_RESETB=1, i_BYPASS=0,
                o_PLLOUTGLOBAL=clk, o_LOCK=locked)
        # No constraint on the PLL's output: nextpnr derives it from the oscillator pin's (which
        # the platform's clock resource sets) and the divider settings.
        add_locked_domain(m, clk=clk, locked=locked,
                                 hold_clocks=round(RESET_HOLD_SECONDS * self.clk_freq))
