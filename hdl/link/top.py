"""The miner with its host link: serial pins in and out, engine inside. Board files and the
simulated board instantiate this."""

from amaranth.hdl import Module
from amaranth.lib import wiring
from amaranth.lib.wiring import In, Out

from ..params import checking
from ..miner.engine import MinerEngine
from .protocol import DEFAULT_BAUD, ICARUS_TARGET, TIMEOUT_BIT_TIMES
from .icarus import IcarusLink
from .native import NativeLink
from .uart import divisor_for

PROTOCOLS = ("native", "icarus")


class MinerLinkTop(wiring.Component):
    """A :class:`MinerEngine` behind the native or the Icarus serial protocol.

    Parameters
    ----------
    protocol : str
        ``"native"`` (framed protocol, ``docs/protocol.md``) or ``"icarus"``.
    unroll, cores : int
        The engine's round stages per compression and pipelines.
    clk_freq : int
        Clock frequency in Hz.
    baud : int
        Line rate; ``clk_freq / baud`` must be at least 4 and within 2.5 % of an integer.
    timeout_bits : int
        Inter-byte timeout of a frame or work packet, in bit times.
    icarus_target : int
        Target of Icarus jobs (default: H7 == 0). Only for ``protocol="icarus"``.
    **engine_options
        Passed to :class:`MinerEngine` (``precompute``, ``fold_constants``, ``early_exit``,
        ``fifo_depth``).

    Members
    -------
    rx : In(1)
        Serial line from the host (idle high).
    tx : Out(1)
        Serial line to the host (idle high).

    Attributes
    ----------
    engine, link
        The submodules, for testbenches that watch them.

    Raises
    ------
    ValueError
        For an unknown protocol, an impossible baud rate, or bad engine parameters.
    """

    def __init__(self, *, protocol="native", unroll=64, cores=1, clk_freq,
                 baud=DEFAULT_BAUD, timeout_bits=TIMEOUT_BIT_TIMES, icarus_target=ICARUS_TARGET,
                 **engine_options):
        with checking(self):
            if protocol not in PROTOCOLS:
                raise ValueError(f"protocol must be one of {', '.join(PROTOCOLS)}, "
                                 f"not {protocol!r}")
            divisor = divisor_for(clk_freq, baud)
        self._protocol = protocol
        self.engine = MinerEngine(unroll=unroll, cores=cores, **engine_options)
        if protocol == "native":
            self.link = NativeLink(divisor=divisor, unroll=self.engine.unroll,
                                   cores=self.engine.cores, clk_freq=clk_freq, baud=baud,
                                   timeout_bits=timeout_bits)
        else:
            self.link = IcarusLink(divisor=divisor, target=icarus_target,
                                   timeout_bits=timeout_bits)
        super().__init__({"rx": In(1, init=1), "tx": Out(1, init=1)})

    @property
    def protocol(self):
        return self._protocol

    def elaborate(self, platform):
        m = Module()
        m.submodules.engine = engine = self.engine
        m.submodules.link = link = self.link
        wiring.connect(m, link.job, engine.job)
        wiring.connect(m, engine.result, link.result)
        m.d.comb += [link.rx.eq(self.rx), self.tx.eq(link.tx)]
        if self._protocol == "native":
            m.d.comb += [link.busy.eq(engine.busy), link.hashes.eq(engine.hashes),
                         link.job_id.eq(engine.job_id)]
        return m
