"""A simple dual-port RAM that maps to iCE40 block RAM without emulation logic.

Yosys maps an Amaranth ``Memory`` with a synchronous read port to SB_RAM40_4K, but it must
honour Amaranth's read-during-write rule (a read of the address being written returns the old
word, or the new one for a transparent port), which the iCE40 block RAM does not promise. It
emulates the rule with registers and multiplexers around every block: measured on one 256 × 16
block, 42 flip-flops and 27 LUTs (a transparent port: 17 and 28), about 60 logic cells where
the block itself takes none. The KPU's buffers never read a word in the cycle it is written, so
:class:`BlockRam` instantiates the blocks itself and leaves that case undefined.
"""

from amaranth.hdl import Array, Cat, ClockSignal, Const, Instance, Module, Mux, Signal, Value
from amaranth.lib import memory, wiring
from amaranth.lib.wiring import Out

from ..params import checking, platform_family
from .descriptor import _check_int

__all__ = ["BRAM_DEPTH", "BRAM_WIDTH", "BlockRam"]

#: One SB_RAM40_4K in its 256 × 16 mode (the only mode with a bit-wise write mask).
BRAM_DEPTH = 256
BRAM_WIDTH = 16


class BlockRam(wiring.Component):
    """``depth`` words of ``shape``: one write port and ``read_ports`` read ports, in ``sync``.

    With an iCE40 platform, SB_RAM40_4K blocks in 256 × 16 mode: ⌈width / 16⌉ side by side,
    ⌈depth / 256⌉ deep, and a copy of them for each read port. Otherwise a behavioural
    :class:`amaranth.lib.memory.Memory` (:attr:`memory`).

    Contract:

    - a write when any ``wr.en`` bit is 1: the elements of ``wr.data`` (``granularity`` wide)
      whose bit is 1 go to word ``wr.addr``;
    - a read when ``rd[n].en``: ``rd[n].data`` is word ``rd[n].addr`` on the next cycle, and
      holds while ``en`` is 0;
    - a read of the word being written in the same cycle gives **undefined** data (the iCE40
      block RAM promises nothing). With ``platform=None`` the behavioural twin returns that word
      inverted, so that a design depending on it fails its simulations. Contents start undefined
      (the twin: zero).

    Parameters
    ----------
    shape : shape-like
        A word, as for :class:`amaranth.lib.memory.Memory` (e.g. a :class:`data.ArrayLayout`).
    depth : int
        Words, 1..65536.
    granularity : int or None
        Write enable granularity, as for :meth:`amaranth.lib.memory.Memory.write_port`; ``None``
        for one enable bit.
    read_ports : int
        1..8.
    platform : platform, family name or None

    Members
    -------
    wr : Out(memory.WritePort.Signature(...))
    rd : Out(memory.ReadPort.Signature(...)).array(read_ports)

    Raises
    ------
    ValueError
        On a parameter out of range, e.g. ``"Depth must be an integer in 1..65536, not 0"``.
    """

    def __init__(self, *, shape, depth, granularity=None, read_ports=1, platform=None):
        with checking(self):
            _check_int("Depth", depth, 1, 1 << 16)
            _check_int("Read ports", read_ports, 1, 8)
        self._ice40 = platform is not None and platform_family(platform) == "ice40"
        self._poison = platform is None
        self._depth = depth
        self._granularity = granularity
        addr_width = max(1, (depth - 1).bit_length())
        #: The behavioural memory, or ``None`` for the iCE40 primitives.
        self.memory = None if self._ice40 else memory.Memory(shape=shape, depth=depth, init=[])
        super().__init__({
            "wr": Out(memory.WritePort.Signature(addr_width=addr_width, shape=shape,
                                                 granularity=granularity)),
            "rd": Out(memory.ReadPort.Signature(addr_width=addr_width, shape=shape)
                      ).array(read_ports),
        })

    def elaborate(self, platform):
        m = Module()
        if self.memory is not None:
            m.submodules.memory = self.memory
            wr = self.memory.write_port(granularity=self._granularity)
            m.d.comb += [wr.addr.eq(self.wr.addr), wr.data.eq(self.wr.data),
                         wr.en.eq(self.wr.en)]
            for n, port in enumerate(self.rd):
                rd = self.memory.read_port()
                m.d.comb += [rd.addr.eq(port.addr), rd.en.eq(port.en)]
                if not self._poison:
                    m.d.comb += port.data.eq(rd.data)
                    continue
                collided = Signal()
                with m.If(port.en):
                    m.d.sync += collided.eq(self.wr.en.any() & (port.addr == self.wr.addr))
                m.d.comb += port.data.eq(Mux(collided, ~Value.cast(rd.data), rd.data))
            return m

        w_data = Value.cast(self.wr.data)
        width = len(w_data)
        bits_per_enable = width // len(self.wr.en)
        columns = (width + BRAM_WIDTH - 1) // BRAM_WIDTH
        rows = (self._depth + BRAM_DEPTH - 1) // BRAM_DEPTH
        # The write mask is active low, a bit per data bit; bits past the word are not written.
        pad = columns * BRAM_WIDTH - width
        mask = Cat(*(~self.wr.en[b // bits_per_enable] for b in range(width)),
                   Const((1 << pad) - 1, pad))
        w_data = Cat(w_data, Const(0, pad))
        block_bits = (BRAM_DEPTH - 1).bit_length()      # the address within a block
        write = self.wr.en.any()
        w_addr = Signal(11)     # the primitive's address: 11 bits, of which 8 in this mode
        m.d.comb += w_addr.eq(self.wr.addr[:block_bits])
        for n, port in enumerate(self.rd):
            r_addr = Signal(11, name=f"rd{n}_addr")
            m.d.comb += r_addr.eq(port.addr[:block_bits])
            # The row read, registered with the read so the output selection follows the data.
            row_read = Signal(range(rows), name=f"rd{n}_row")
            if rows > 1:
                with m.If(port.en):
                    m.d.sync += row_read.eq(port.addr[block_bits:])
            words = []
            for r in range(rows):
                word = Signal(columns * BRAM_WIDTH, name=f"rd{n}_word{r}")
                words.append(word)
                row_write = write if rows == 1 else write & (self.wr.addr[block_bits:] == r)
                for c in range(columns):
                    bits = slice(BRAM_WIDTH * c, BRAM_WIDTH * (c + 1))
                    m.submodules[f"rd{n}_r{r}_c{c}"] = Instance(
                        "SB_RAM40_4K",
                        p_READ_MODE=0, p_WRITE_MODE=0,          # 256 × 16
                        i_RCLK=ClockSignal(), i_RCLKE=port.en, i_RE=1,
                        i_RADDR=r_addr,
                        o_RDATA=word[bits],
                        i_WCLK=ClockSignal(), i_WCLKE=row_write, i_WE=1,
                        i_WADDR=w_addr,
                        i_WDATA=w_data[bits],
                        i_MASK=mask[bits])
            m.d.comb += port.data.eq(Array(words)[row_read][:width])
        return m
