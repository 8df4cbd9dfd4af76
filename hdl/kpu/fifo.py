"""A first-word-fall-through FIFO in block RAM, with no output buffer.

``amaranth.lib.fifo.SyncFIFOBuffered`` keeps the head word in a register beside its memory (64
flip-flops for a descriptor word), and its memory brings Yosys's read-during-write emulation on
iCE40 (see :mod:`.bram`). Here the head word is the block RAM's own read register, kept
pointing at the head, and a word becomes readable only once it was written a cycle before its
read, so no read ever meets the write of the same word.
"""

from amaranth.hdl import Module, Mux, Signal
from amaranth.lib import wiring
from amaranth.lib.wiring import In, Out

from ..params import checking
from .bram import BlockRam
from .descriptor import _check_int

__all__ = ["BlockRamFifo"]


class BlockRamFifo(wiring.Component):
    """``depth`` words of ``width`` bits, the interface of ``amaranth.lib.fifo.SyncFIFO``.

    A write when ``w_en`` and ``w_rdy`` (a write to a full FIFO is ignored); ``r_data`` is the
    oldest word while ``r_rdy``, and ``r_en`` then removes it. A word written at cycle ``t`` is
    readable from ``t + 2``. ``level`` counts the words written and not removed.

    Parameters
    ----------
    width : int
        Bits a word, 1..256.
    depth : int
        Words, 1..4096.
    platform : platform, family name or None
        As for :class:`.bram.BlockRam`.

    Raises
    ------
    ValueError
        On a parameter out of range, e.g. ``"FIFO depth must be an integer in 1..4096, not 0"``.
    """

    def __init__(self, *, width, depth, platform=None):
        with checking(self):
            _check_int("FIFO width", width, 1, 256)
            _check_int("FIFO depth", depth, 1, 4096)
        self._depth = depth
        # The pointers wrap at a power of two (plain counters, no compare with the depth);
        # ``level`` still holds the FIFO to ``depth`` words.
        self._ring = 1 << (depth - 1).bit_length()
        self._ram = BlockRam(shape=width, depth=self._ring, platform=platform)
        super().__init__({
            "w_data": In(width), "w_en": In(1), "w_rdy": Out(1),
            "r_data": Out(width), "r_en": In(1), "r_rdy": Out(1),
            "level": Out(range(depth + 1)),
        })

    def elaborate(self, platform):
        m = Module()
        m.submodules.ram = ram = self._ram
        depth = self._depth

        def after(pointer):
            return (pointer + 1)[:len(pointer)]

        write_at = Signal(range(self._ring))
        read_at = Signal(range(self._ring))     # the head
        level = Signal(range(depth + 1))
        readable = Signal(range(depth + 1))     # words written before the last cycle, not read
        write = Signal()
        read = Signal()
        m.d.comb += [self.w_rdy.eq(level != depth), self.r_rdy.eq(readable != 0),
                     write.eq(self.w_en & self.w_rdy), read.eq(self.r_en & self.r_rdy),
                     self.level.eq(level)]
        m.d.comb += [ram.wr.addr.eq(write_at), ram.wr.data.eq(self.w_data), ram.wr.en.eq(write),
                     # Always reading the head (the next one when the head leaves), so the read
                     # register holds the head whenever it is readable.
                     ram.rd[0].addr.eq(Mux(read, after(read_at), read_at)),
                     self.r_data.eq(ram.rd[0].data)]
        with m.If(write):
            m.d.sync += write_at.eq(after(write_at))
        with m.If(read):
            m.d.sync += read_at.eq(after(read_at))
        m.d.sync += [level.eq(level + write - read),
                     # A word written at t is read (its address presented) from t + 1 at the
                     # earliest, so it is in the read register from t + 2.
                     readable.eq(level - read)]
        return m
