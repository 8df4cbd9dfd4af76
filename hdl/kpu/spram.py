"""A single-port RAM built from iCE40UP5K SPRAM (SB_SPRAM256KA), with a behavioural twin.

Yosys does not map an Amaranth ``Memory`` to SPRAM: Amaranth always gives a memory an initial
value, and SPRAM cannot be initialised (``memory_libmap``: "does not support initialization"),
so the memory lands in block RAM. :class:`Ice40Spram` instantiates the primitives itself.
"""

from amaranth.hdl import Cat, ClockSignal, Instance, Module, Mux, Signal, unsigned
from amaranth.lib import memory, wiring
from amaranth.lib.wiring import In, Out

from ..params import checking, platform_family

__all__ = ["SPRAM_DEPTH", "SPRAM_WIDTH", "SPRAM_COUNT", "Ice40Spram"]

#: One SB_SPRAM256KA: 16384 words of 16 bits.
SPRAM_DEPTH = 16384
SPRAM_WIDTH = 16
#: SB_SPRAM256KA on an iCE40UP5K.
SPRAM_COUNT = 4


class Ice40Spram(wiring.Component):
    """Single-port RAM of ``depth`` words of ``word_bytes`` bytes (little-endian lanes).

    With an iCE40 platform, ``word_bytes / 2`` SB_SPRAM256KA side by side, each holding 16 bits
    of every word. With ``platform=None``, a behavioural :class:`amaranth.lib.memory.Memory`
    (:attr:`memory`; simulations load and read its rows directly).

    Contract, one port in the ``sync`` domain:

    - a write when any ``w_en`` bit is 1: the bytes of ``w_data`` whose ``w_en`` bit is 1 go to
      word ``addr``; ``r_en`` is ignored on that cycle;
    - otherwise a read when ``r_en``: ``r_data`` is word ``addr`` on the next cycle;
    - otherwise ``r_data`` holds.

    After a write cycle ``r_data`` is **undefined** until the next read: SB_SPRAM256KA drives X
    on ``DATAOUT`` during a write (Yosys's simulation model, ``ice40/cells_sim.v``); the
    behavioural twin then gives the last read word inverted, so that a design relying on
    ``r_data`` across a write fails its simulations. Contents start undefined (the twin:
    zero).

    Parameters
    ----------
    depth : int
        Words, 1..16384 (one SPRAM's depth).
    word_bytes : int
        2, 4, 6 or 8: 1 to 4 SPRAMs side by side (an iCE40UP5K has 4).
    platform : platform, family name or None
        An iCE40 platform (or ``"ice40"``) for the primitives; ``None`` for the behavioural
        memory.

    Members
    -------
    addr : In(ceil(log2(depth)))
    w_en : In(word_bytes)
        Byte enables; any bit set makes the cycle a write.
    w_data : In(8 * word_bytes)
    r_en : In(1)
    r_data : Out(8 * word_bytes)
        Word read on the previous cycle (see above).

    Raises
    ------
    ValueError
        On a size SPRAM cannot hold, e.g. ``"iCE40 SPRAM depth must be an integer in 1..16384
        words, not 32768"``, or a platform that is not iCE40.
    """
    def __init__(self, depth, word_bytes, *, platform=None):
        with checking(self):
            self._check_parameters(depth, word_bytes, platform)
        self._depth = depth
        self._word_bytes = word_bytes
        #: The behavioural memory (``platform=None``), or ``None`` for the primitives.
        self.memory = (memory.Memory(shape=unsigned(8 * word_bytes), depth=depth, init=[])
                       if platform is None else None)
        super().__init__({
            "addr": In(max(1, (depth - 1).bit_length())),
            "w_en": In(word_bytes),
            "w_data": In(8 * word_bytes),
            "r_en": In(1),
            "r_data": Out(8 * word_bytes),
        })

    @staticmethod
    def _check_parameters(depth, word_bytes, platform):
        if isinstance(depth, bool) or not isinstance(depth, int) or not 1 <= depth <= SPRAM_DEPTH:
            raise ValueError(f"iCE40 SPRAM depth must be an integer in 1..{SPRAM_DEPTH} words, "
                             f"not {depth!r}")
        widths = [n * SPRAM_WIDTH // 8 for n in range(1, SPRAM_COUNT + 1)]
        if isinstance(word_bytes, bool) or word_bytes not in widths:
            raise ValueError(f"iCE40 SPRAM word must be {', '.join(map(str, widths[:-1]))} or "
                             f"{widths[-1]} bytes (1 to {SPRAM_COUNT} SB_SPRAM256KA side by "
                             f"side), not {word_bytes!r}")
        if platform is not None and platform_family(platform) != "ice40":
            raise ValueError(f"Platform {platform!r} is not iCE40; pass platform=None for the "
                             f"behavioural memory")

    depth = property(lambda self: self._depth)
    word_bytes = property(lambda self: self._word_bytes)

    def elaborate(self, platform):
        m = Module()
        write = Signal()
        m.d.comb += write.eq(self.w_en.any())
        if self.memory is not None:
            m.submodules.memory = self.memory
            rd = self.memory.read_port()
            wr = self.memory.write_port(granularity=8)
            written = Signal()              # a write since the last read: r_data undefined
            with m.If(write):
                m.d.sync += written.eq(1)
            with m.Elif(self.r_en):
                m.d.sync += written.eq(0)
            m.d.comb += [rd.addr.eq(self.addr), rd.en.eq(self.r_en & ~write),
                         self.r_data.eq(Mux(written, ~rd.data, rd.data)),
                         wr.addr.eq(self.addr), wr.data.eq(self.w_data), wr.en.eq(self.w_en)]
            return m
        address = Signal((SPRAM_DEPTH - 1).bit_length())
        select = Signal()
        m.d.comb += [address.eq(self.addr), select.eq(self.r_en | write)]
        for i in range(self._word_bytes * 8 // SPRAM_WIDTH):
            lo, hi = self.w_en[2 * i], self.w_en[2 * i + 1]
            bits = slice(SPRAM_WIDTH * i, SPRAM_WIDTH * (i + 1))
            m.submodules[f"spram{i}"] = Instance(
                "SB_SPRAM256KA",
                i_ADDRESS=address, i_DATAIN=self.w_data[bits],
                # MASKWREN enables nibbles: two per byte.
                i_MASKWREN=Cat(lo, lo, hi, hi), i_WREN=write,
                # Selected on reads and writes only, so DATAOUT holds on idle cycles.
                i_CHIPSELECT=select, i_CLOCK=ClockSignal(),
                # Always on: no standby, no sleep; POWEROFF is active-low.
                i_STANDBY=0, i_SLEEP=0, i_POWEROFF=1,
                o_DATAOUT=self.r_data[bits])
        return m
