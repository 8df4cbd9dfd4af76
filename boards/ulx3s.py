"""ULX3S (ECP5 LFE5U-85F): the miner and its host link on the FTDI UART, clocked by the PLL.

Pins: ``uart`` (the FT231X: M1 from the host, L4 to it), LED 0 lit while a job is being scanned,
LED 1 lit briefly when a nonce is found; the 25 MHz oscillator on G2 feeds ``EHXPLLL``.
"""

from amaranth.hdl import Instance, Signal
from amaranth.lib import io
from amaranth_boards.ulx3s import ULX3S_85F_Platform

from .board_top import BoardMinerTop
from .clocks import ECP5PLLSettings, add_locked_domain

__all__ = ["ULX3SMiner"]

#: The board's oscillator (the platform's ``clk25`` resource).
OSCILLATOR_FREQ = 25_000_000
#: Reset held after the PLL locks (ECP5 block RAMs need no wait; this only debounces LOCK).
RESET_HOLD_CLOCKS = 16
#: Default miner: the largest unroll that fits the 85F (docs/boards.md): unroll 16 takes 62 % of
#: its LUTs; unroll 32 would take 120 %.
DEFAULTS = dict(unroll=16, cores=1, precompute=True, fold_constants=True, early_exit=True)
#: Default clock: the oscillator itself. nextpnr-ecp5 estimated 31.4 MHz after placing the default
#: miner (before routing, which usually loses some); no routed Fmax yet (docs/boards.md).
DEFAULT_CLK_FREQ = OSCILLATOR_FREQ


class ULX3SMiner(BoardMinerTop):
    """The miner on a ULX3S-85F; see :class:`~.board_top.BoardMinerTop` for the contract.

    Parameters
    ----------
    clk_freq : int or float
        Clock in Hz: 25 MHz uses the oscillator directly; 10 to 400 MHz come from the PLL
        (within 1 %).
    **options
        ``protocol``, ``baud``, ``unroll``, ``cores`` and the engine switches; defaults are
        :data:`DEFAULTS`.
    """

    platform_class = ULX3S_85F_Platform
    oscillator_freq = OSCILLATOR_FREQ
    busy_led = ("led", 0)
    found_led = ("led", 1)

    def __init__(self, *, clk_freq=DEFAULT_CLK_FREQ, **options):
        super().__init__(clk_freq=clk_freq, **{**DEFAULTS, **options})

    @classmethod
    def pll_settings(cls, clk_freq):
        return ECP5PLLSettings.compute(OSCILLATOR_FREQ, clk_freq)

    def add_clocks(self, m, platform):
        m.submodules.clk25_buf = clk25_buf = io.Buffer("i", platform.request("clk25", 0, dir="-"))
        clk, locked = Signal(), Signal()
        if self.pll is None:
            m.d.comb += [clk.eq(clk25_buf.i), locked.eq(1)]
        else:
            pll = self.pll
            m.submodules.pll = Instance(
                "EHXPLLL",
                # Loop-filter settings every ecppll-generated PLL carries; nextpnr reads the
                # FREQUENCY_PIN_* attributes to time the output clock.
                a_FREQUENCY_PIN_CLKI=f"{OSCILLATOR_FREQ / 1e6:g}",
                a_FREQUENCY_PIN_CLKOP=f"{float(pll.f_out) / 1e6:g}",
                a_ICP_CURRENT="12", a_LPF_RESISTOR="8", a_MFG_ENABLE_FILTEROPAMP="1",
                a_MFG_GMCREF_SEL="2",
                p_PLLRST_ENA="DISABLED", p_INTFB_WAKE="DISABLED", p_STDBY_ENABLE="DISABLED",
                p_DPHASE_SOURCE="DISABLED", p_OUTDIVIDER_MUXA="DIVA", p_FEEDBK_PATH="CLKOP",
                p_CLKOP_ENABLE="ENABLED", p_CLKI_DIV=pll.clki_div, p_CLKFB_DIV=pll.clkfb_div,
                p_CLKOP_DIV=pll.clkop_div, p_CLKOP_CPHASE=pll.clkop_cphase, p_CLKOP_FPHASE=0,
                i_CLKI=clk25_buf.i, i_CLKFB=clk, i_RST=0, i_STDBY=0,
                i_PHASESEL0=0, i_PHASESEL1=0, i_PHASEDIR=1, i_PHASESTEP=1, i_PHASELOADREG=1,
                i_PLLWAKESYNC=0, i_ENCLKOP=0,
                o_CLKOP=clk, o_LOCK=locked)
        # No constraint on the PLL's output: nextpnr derives it from the oscillator pin's (which
        # the platform's clock resource sets) and the divider settings.
        add_locked_domain(m, clk=clk, locked=locked, hold_clocks=RESET_HOLD_CLOCKS)
