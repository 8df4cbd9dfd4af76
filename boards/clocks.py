"""Clocking shared by the board tops: PLL divider settings computed (and checked) in Python, and
the reset that holds the design until the PLL has locked.

The divider searches follow the vendors' documented ranges, as Project IceStorm's ``icepll`` and
Project Trellis' ``ecppll`` encode them; the arithmetic is exact (``Fraction``), so the frequency a
board top reports to the UART divisor is the one the PLL really makes.
"""

import math
from dataclasses import dataclass
from fractions import Fraction

from amaranth.hdl import ClockDomain, ClockSignal, ResetSignal, Signal
from amaranth.lib.cdc import FFSynchronizer

__all__ = ["ICE40PLLSettings", "ECP5PLLSettings", "add_locked_domain", "MAX_PLL_ERROR"]

#: Largest relative difference between the requested and the achieved PLL output frequency.
#: The UART divisor is derived from the achieved frequency, so this only bounds how far the clock
#: may stray from what the user asked for.
MAX_PLL_ERROR = 0.01

MHZ = 1_000_000


def _mhz(hz):
    return f"{float(hz) / MHZ:g} MHz"


def _check_range(what, freq, low, high):
    if not low <= freq <= high:
        raise ValueError(f"{what} must be from {_mhz(low)} to {_mhz(high)}, not {_mhz(freq)}")


def _check_error(family, f_in, f_out, achieved, tolerance):
    if abs(achieved - f_out) > tolerance * f_out:
        raise ValueError(f"{family} PLL cannot make {_mhz(f_out)} from {_mhz(f_in)} within "
                         f"{tolerance:.1%}: the nearest is {_mhz(achieved)}")


@dataclass(frozen=True)
class ICE40PLLSettings:
    """Divider settings of an iCE40 ``SB_PLL40_*`` in SIMPLE feedback mode.

    ``f_out = f_in / (DIVR + 1) * (DIVF + 1) / 2 ** DIVQ``, with the phase detector input
    ``f_in / (DIVR + 1)`` in 10..133 MHz and the VCO ``f_in / (DIVR + 1) * (DIVF + 1)`` in
    533..1066 MHz (iCE40 sysCLOCK PLL design guide, as ``icepll`` encodes it).
    """

    divr: int
    divf: int
    divq: int
    filter_range: int
    #: Achieved output frequency in Hz (a ``Fraction``; exact).
    f_out: Fraction

    F_IN = (10 * MHZ, 133 * MHZ)
    F_PFD = (10 * MHZ, 133 * MHZ)
    F_VCO = (533 * MHZ, 1066 * MHZ)
    F_OUT = (16 * MHZ, 275 * MHZ)
    #: Loop filter setting by phase-detector frequency: (upper bound, FILTER_RANGE).
    FILTER_RANGES = ((17 * MHZ, 1), (26 * MHZ, 2), (44 * MHZ, 3), (66 * MHZ, 4), (101 * MHZ, 5))

    @classmethod
    def compute(cls, f_in, f_out, *, tolerance=MAX_PLL_ERROR):
        """The settings whose output is nearest to ``f_out`` Hz from an ``f_in`` Hz reference.

        Raises
        ------
        ValueError
            If ``f_in`` or ``f_out`` is outside the PLL's range, or the nearest achievable output
            is more than ``tolerance`` (relative) away from ``f_out``.
        """
        f_in, f_out = Fraction(f_in), Fraction(f_out)
        _check_range("iCE40 PLL input frequency", f_in, *cls.F_IN)
        _check_range("iCE40 PLL output frequency", f_out, *cls.F_OUT)
        best = None
        for divr in range(16):
            f_pfd = f_in / (divr + 1)
            if not cls.F_PFD[0] <= f_pfd <= cls.F_PFD[1]:
                continue
            for divf in range(128):
                f_vco = f_pfd * (divf + 1)
                if not cls.F_VCO[0] <= f_vco <= cls.F_VCO[1]:
                    continue
                for divq in range(1, 7):
                    achieved = f_vco / 2 ** divq
                    if best is None or abs(achieved - f_out) < abs(best[0] - f_out):
                        best = (achieved, divr, divf, divq, f_pfd)
        achieved, divr, divf, divq, f_pfd = best
        _check_error("iCE40", f_in, f_out, achieved, tolerance)
        filter_range = next((setting for bound, setting in cls.FILTER_RANGES if f_pfd < bound), 6)
        return cls(divr, divf, divq, filter_range, achieved)


@dataclass(frozen=True)
class ECP5PLLSettings:
    """Divider settings of an ECP5 ``EHXPLLL`` with CLKOP fed back (``FEEDBK_PATH="CLKOP"``).

    ``f_out = f_in / CLKI_DIV * CLKFB_DIV`` and the VCO runs at ``f_out * CLKOP_DIV``, which must
    lie in 400..800 MHz; the phase detector input ``f_in / CLKI_DIV`` in 3.125..400 MHz (ECP5
    sysCLOCK PLL usage guide, as ``ecppll`` encodes it). Among equally near outputs the one with
    the VCO nearest 600 MHz wins, as in ``ecppll``.
    """

    clki_div: int
    clkfb_div: int
    clkop_div: int
    f_out: Fraction
    f_vco: Fraction

    F_IN = (8 * MHZ, 400 * MHZ)
    F_PFD = (Fraction(3125, 1000) * MHZ, 400 * MHZ)
    F_VCO = (400 * MHZ, 800 * MHZ)
    F_OUT = (10 * MHZ, 400 * MHZ)
    VCO_PREFERRED = 600 * MHZ

    @property
    def clkop_cphase(self):
        """Coarse phase of CLKOP: half an output period, the value Lattice's tools choose."""
        return self.clkop_div // 2

    @classmethod
    def compute(cls, f_in, f_out, *, tolerance=MAX_PLL_ERROR):
        """The settings whose output is nearest to ``f_out`` Hz from an ``f_in`` Hz reference.

        Raises
        ------
        ValueError
            If ``f_in`` or ``f_out`` is outside the PLL's range, or the nearest achievable output
            is more than ``tolerance`` (relative) away from ``f_out``.
        """
        f_in, f_out = Fraction(f_in), Fraction(f_out)
        _check_range("ECP5 PLL input frequency", f_in, *cls.F_IN)
        _check_range("ECP5 PLL output frequency", f_out, *cls.F_OUT)
        best = None
        for clki_div in range(1, 129):
            f_pfd = f_in / clki_div
            if not cls.F_PFD[0] <= f_pfd <= cls.F_PFD[1]:
                continue
            for clkfb_div in range(1, 81):
                achieved = f_pfd * clkfb_div
                # The output divider only places the VCO; take the one nearest 600 MHz.
                lowest = max(1, math.ceil(cls.F_VCO[0] / achieved))
                highest = min(128, math.floor(cls.F_VCO[1] / achieved))
                if lowest > highest:
                    continue
                ideal = cls.VCO_PREFERRED / achieved
                candidates = {min(max(d, lowest), highest)
                              for d in (math.floor(ideal), math.ceil(ideal))}
                clkop_div = min(sorted(candidates),
                                key=lambda d: abs(achieved * d - cls.VCO_PREFERRED))
                key = (abs(achieved - f_out), abs(achieved * clkop_div - cls.VCO_PREFERRED))
                if best is None or key < best[0]:
                    best = (key, clki_div, clkfb_div, clkop_div, achieved)
        _, clki_div, clkfb_div, clkop_div, achieved = best
        _check_error("ECP5", f_in, f_out, achieved, tolerance)
        return cls(clki_div, clkfb_div, clkop_div, achieved, achieved * clkop_div)


def add_locked_domain(m, *, clk, locked, hold_clocks, domain="sync"):
    """Add clock domain ``domain`` on ``clk``, held in reset until ``locked`` has been high for
    ``hold_clocks`` clocks (and again whenever it falls).

    ``locked`` may be asynchronous (a PLL's LOCK); it passes a 2-FF synchroniser. The hold time
    also covers the iCE40 quirk of block RAMs reading as zero for about 3 us after configuration.
    """
    m.domains += ClockDomain(domain)
    m.domains.por = ClockDomain("por", reset_less=True, local=True)
    locked_sync = Signal()
    m.submodules.locked_sync = FFSynchronizer(locked, locked_sync, o_domain="por")
    timer = Signal(range(hold_clocks + 1))
    with m.If(~locked_sync):
        m.d.por += timer.eq(0)
    with m.Elif(timer != hold_clocks):
        m.d.por += timer.eq(timer + 1)
    m.d.comb += [
        ClockSignal("por").eq(clk),
        ClockSignal(domain).eq(clk),
        ResetSignal(domain).eq(timer != hold_clocks),
    ]
