"""The KPU top: control registers, descriptor FIFO, KPU RAM, weight memory and the engine.

With ``single_port_ram`` the KPU RAM and the weight memory are one iCE40 SPRAM: RAM words from
row 0, weight words above them (:attr:`Kpu.weight_offset`).

Registers (64-bit, K210 byte offsets; the bus addresses 64-bit words, ``offset // 8``):

====== ================== ==== ============================================================
offset name               acc. meaning
====== ================== ==== ============================================================
0x00   LAYER_FIFO         W    push one descriptor word; 12 words make a layer
0x08   INT_STATUS         R    ``INT_RAW & ~INT_MASK``; ``irq`` is its OR
0x10   INT_RAW            R    bit 0 layer done (``int_en`` layers), bit 1 layer rejected
                               (always), bit 2 FIFO at or below ``FIFO_THRESHOLD`` words
0x18   INT_MASK           RW   1 masks a bit of INT_RAW from INT_STATUS (reset: 0b100)
0x20   INT_CLEAR          W    1 clears bits 0 and 1 of INT_RAW (bit 2 follows the FIFO level)
0x28   FIFO_THRESHOLD     RW   words, for INT_RAW bit 2
0x30   FIFO_DATA_OUT      R    0: there is no main-memory output DMA
0x38   FIFO_CTRL          W    bit 0 drops every queued descriptor word
0x40   EIGHT_BIT_MODE     RW   1 (reset) 8-bit weights; 0 rejects layers (``CONFIG_LIMIT``)
0x48   STATUS             R    bit 0 busy, [31:16] FIFO words, [47:32] layers finished mod 2¹⁶
0x50   ERROR              R    bit 0 a layer was rejected since the last clear of INT_RAW
                               bit 1, [15:8] reason code (:class:`.layouts.GatewareReason`)
====== ================== ==== ============================================================

Registers 0x48 and 0x50 are nangua's own (the K210 has no error reporting).
"""

from amaranth.hdl import Cat, Const, Module, Mux, Signal, unsigned
from amaranth.lib import enum, memory, wiring
from amaranth.lib.wiring import In, Out

from .engine import WEIGHT_WORD_BYTES, KpuEngine
from .featuremap import LINE_BYTES
from .fifo import BlockRamFifo
from .layouts import DESCRIPTOR_WORDS, REASON_BITS, WORD_BITS
from ..params import checking, platform_family
from .spram import SPRAM_COUNT, SPRAM_DEPTH, SPRAM_WIDTH, Ice40Spram

#: KPU RAM word of the single-port (SPRAM) RAM: every SPRAM of an iCE40UP5K side by side, as
#: wide as a weight word.
SPRAM_WORD_BYTES = SPRAM_COUNT * SPRAM_WIDTH // 8
SPRAM_BYTES = SPRAM_WORD_BYTES * SPRAM_DEPTH
assert SPRAM_WORD_BYTES == WEIGHT_WORD_BYTES

__all__ = ["Register", "INT_DONE", "INT_ERROR", "INT_FIFO_LOW", "RegisterBusSignature",
           "HostMemorySignature", "Kpu"]


class Register(enum.IntEnum):
    """Register word index (byte offset // 8)."""
    LAYER_FIFO = 0x00 // 8
    INT_STATUS = 0x08 // 8
    INT_RAW = 0x10 // 8
    INT_MASK = 0x18 // 8
    INT_CLEAR = 0x20 // 8
    FIFO_THRESHOLD = 0x28 // 8
    FIFO_DATA_OUT = 0x30 // 8
    FIFO_CTRL = 0x38 // 8
    EIGHT_BIT_MODE = 0x40 // 8
    STATUS = 0x48 // 8
    ERROR = 0x50 // 8


INT_DONE = 1 << 0
INT_ERROR = 1 << 1
INT_FIFO_LOW = 1 << 2


class RegisterBusSignature(wiring.Signature):
    """Register access from the host's side: a write when ``w_stb``; ``r_data`` holds the
    register ``addr`` named on the previous cycle (reads have no side effects)."""
    def __init__(self):
        super().__init__({
            "addr": Out(4), "w_stb": Out(1), "w_data": Out(WORD_BITS), "r_data": In(WORD_BITS),
        })


class HostMemorySignature(wiring.Signature):
    """Host access to a memory from the host's side: byte-enabled write of word ``addr``
    (``w_en``), or a read of it (``r_en``): ``r_data`` is that word from the next cycle until
    the next read. Use only while the KPU is not busy."""
    def __init__(self, addr_width, word_bytes):
        super().__init__({
            "addr": Out(addr_width), "w_en": Out(word_bytes), "w_data": Out(8 * word_bytes),
            "r_en": Out(1), "r_data": In(8 * word_bytes),
        })


class Kpu(wiring.Component):
    """K210-style KPU with its memories.

    Parameters
    ----------
    ram_bytes : int
        KPU RAM size: a multiple of 64 bytes up to 2 MiB.
    weight_bytes : int
        Weight memory size: a multiple of 8 bytes.
    fifo_layers : int
        Descriptors the FIFO holds (12 words each).
    single_port_ram : bool
        See :class:`.engine.KpuEngine`. The KPU RAM and the weight memory are then one
        :class:`.spram.Ice40Spram` (SB_SPRAM256KA primitives with an iCE40 platform, as Yosys
        does not infer SPRAM from a memory; its behavioural twin otherwise) of words of 8
        bytes: the KPU RAM from word 0, the weights from word :attr:`weight_offset`, at most
        128 KiB together. The engine never reads a weight in a cycle it uses the KPU RAM. The
        host has one port to it, ``ram`` (there is no ``weights`` port): a host bridge
        writes a weight word at ``weight_offset`` plus its index, and the SPRAM's one port
        needs no choice between two host ports. ``r_data`` is undefined after a host write
        until the next read.
    ram_word_bytes, lanes, post_lanes, max_width, max_entries, serial_post, platform, dsp_budget
        See :class:`.engine.KpuEngine`.

    Members
    -------
    bus : In(RegisterBusSignature())
    irq : Out(1)
        OR of INT_STATUS.
    ram : In(HostMemorySignature(...))
        KPU RAM words of ``ram_word_bytes``; with ``single_port_ram`` every word of the SPRAM
        (KPU RAM, then weights).
    ram_memory : Memory or None
        The KPU RAM's memory (rows from 0), for simulations to load and read; ``None`` with
        SPRAM primitives.
    weights : In(HostMemorySignature(...))
        Weight memory, 64-bit words (little-endian byte order within a word); not with
        ``single_port_ram``.
    weight_memory : Memory or None
        The memory holding the weights, for simulations: ``ram_memory`` itself with
        ``single_port_ram``. Weight word ``i`` is its row ``weight_offset + i``.
    weight_offset : int
        Row of ``weight_memory`` holding weight word 0: ``ram_bytes // 8`` with
        ``single_port_ram``, 0 otherwise.

    Raises
    ------
    ValueError
        On a size out of range, e.g. ``"KPU RAM size must be a multiple of 64 bytes in
        64..2097152, not 100"``, or a KPU RAM and weights one iCE40 SPRAM cannot hold.
    """
    def __init__(self, *, ram_bytes=64 * 1024, weight_bytes=16 * 1024, fifo_layers=2,
                 ram_word_bytes=16, lanes=2, post_lanes=1, max_width=64, max_entries=64,
                 single_port_ram=False, serial_post=False, platform=None, dsp_budget=None):
        with checking(self):
            if (isinstance(ram_bytes, bool) or not isinstance(ram_bytes, int)
                    or not LINE_BYTES <= ram_bytes <= 2 * 1024 * 1024
                    or ram_bytes % LINE_BYTES):
                raise ValueError(f"KPU RAM size must be a multiple of {LINE_BYTES} bytes in "
                                 f"{LINE_BYTES}..{2 * 1024 * 1024}, not {ram_bytes!r}")
            if (isinstance(weight_bytes, bool) or not isinstance(weight_bytes, int)
                    or weight_bytes < 18 * WEIGHT_WORD_BYTES
                    or weight_bytes % WEIGHT_WORD_BYTES):
                raise ValueError(f"Weight memory size must be a multiple of "
                                 f"{WEIGHT_WORD_BYTES} bytes, at least {18 * WEIGHT_WORD_BYTES}, "
                                 f"not {weight_bytes!r}")
            if (isinstance(fifo_layers, bool) or not isinstance(fifo_layers, int)
                    or fifo_layers < 1):
                raise ValueError(f"FIFO depth must be a positive number of layers, not "
                                 f"{fifo_layers!r}")
            if single_port_ram and (ram_word_bytes != SPRAM_WORD_BYTES
                                    or ram_bytes + weight_bytes > SPRAM_BYTES):
                raise ValueError(f"A single-port KPU RAM shares iCE40 SPRAM with the weights: "
                                 f"at most {SPRAM_BYTES} bytes together in words of "
                                 f"{SPRAM_WORD_BYTES} bytes, not {ram_bytes} + {weight_bytes} "
                                 f"bytes in words of {ram_word_bytes!r}")
            self._engine = KpuEngine(
                ram_words=ram_bytes // ram_word_bytes, ram_word_bytes=ram_word_bytes,
                weight_words=weight_bytes // WEIGHT_WORD_BYTES, lanes=lanes, post_lanes=post_lanes,
                max_width=max_width, max_entries=max_entries,
                single_port_ram=single_port_ram, serial_post=serial_post, platform=platform,
                dsp_budget=dsp_budget)
        self._ram_bytes = ram_bytes
        self._weight_bytes = weight_bytes
        self._fifo_words = fifo_layers * DESCRIPTOR_WORDS
        self._platform = platform
        ram_addr = len(self._engine.ram_rd.addr)
        w_addr = len(self._engine.w_rd.addr)
        ports = {"bus": In(RegisterBusSignature()), "irq": Out(1)}
        if single_port_ram:
            # iCE40 SPRAM primitives on an iCE40 platform, their behavioural twin otherwise.
            self._spram = Ice40Spram(
                (ram_bytes + weight_bytes) // SPRAM_WORD_BYTES, SPRAM_WORD_BYTES,
                platform=platform if platform_family(platform) == "ice40" else None)
            self.ram_memory = self.weight_memory = self._spram.memory
            self.weight_offset = ram_bytes // SPRAM_WORD_BYTES
            spram_words = (ram_bytes + weight_bytes) // SPRAM_WORD_BYTES
            ports["ram"] = In(HostMemorySignature(max(1, (spram_words - 1).bit_length()),
                                                  SPRAM_WORD_BYTES))
        else:
            self._spram = None
            self.ram_memory = memory.Memory(shape=unsigned(8 * ram_word_bytes),
                                            depth=ram_bytes // ram_word_bytes, init=[])
            self.weight_memory = memory.Memory(shape=unsigned(64),
                                               depth=weight_bytes // WEIGHT_WORD_BYTES, init=[])
            self.weight_offset = 0
            ports["ram"] = In(HostMemorySignature(ram_addr, ram_word_bytes))
            ports["weights"] = In(HostMemorySignature(w_addr, WEIGHT_WORD_BYTES))
        super().__init__(ports)

    engine = property(lambda self: self._engine)
    ram_bytes = property(lambda self: self._ram_bytes)
    weight_bytes = property(lambda self: self._weight_bytes)

    def elaborate(self, platform):
        m = Module()
        m.submodules.engine = engine = self._engine
        m.submodules.fifo = desc_fifo = BlockRamFifo(width=WORD_BITS, depth=self._fifo_words,
                                                     platform=self._platform)

        # Memories: the engine owns the ports while busy, the host otherwise.
        busy = engine.busy
        if self._spram is not None:
            m.submodules.ram = spram = self._spram
            # One address: the engine never reads while it writes, nor reads weights while it
            # uses the KPU RAM (single_port_ram); the host's one port addresses every word.
            weight_addr = self.weight_offset + engine.w_rd.addr
            engine_addr = Mux(engine.ram_wr.en.any(), engine.ram_wr.addr,
                              Mux(engine.w_rd.en, weight_addr, engine.ram_rd.addr))
            m.d.comb += [
                spram.addr.eq(Mux(busy, engine_addr, self.ram.addr)),
                spram.r_en.eq(Mux(busy, engine.ram_rd.en | engine.w_rd.en, self.ram.r_en)),
                spram.w_data.eq(Mux(busy, engine.ram_wr.data, self.ram.w_data)),
                spram.w_en.eq(Mux(busy, engine.ram_wr.en, self.ram.w_en)),
                engine.ram_rd.data.eq(spram.r_data), engine.w_rd.data.eq(spram.r_data),
                self.ram.r_data.eq(spram.r_data),
            ]
        else:
            m.submodules.ram_memory = ram = self.ram_memory
            ram_rd = ram.read_port()
            ram_wr = ram.write_port(granularity=8)
            m.d.comb += [
                ram_rd.addr.eq(Mux(busy, engine.ram_rd.addr, self.ram.addr)),
                ram_rd.en.eq(Mux(busy, engine.ram_rd.en, self.ram.r_en)),
                engine.ram_rd.data.eq(ram_rd.data), self.ram.r_data.eq(ram_rd.data),
                ram_wr.addr.eq(Mux(busy, engine.ram_wr.addr, self.ram.addr)),
                ram_wr.data.eq(Mux(busy, engine.ram_wr.data, self.ram.w_data)),
                ram_wr.en.eq(Mux(busy, engine.ram_wr.en, self.ram.w_en)),
            ]
            m.submodules.weight_memory = wmem = self.weight_memory
            w_rd = wmem.read_port()
            w_wr = wmem.write_port(granularity=8)
            m.d.comb += [
                w_rd.addr.eq(Mux(busy, engine.w_rd.addr, self.weights.addr)),
                w_rd.en.eq(Mux(busy, engine.w_rd.en, self.weights.r_en)),
                engine.w_rd.data.eq(w_rd.data), self.weights.r_data.eq(w_rd.data),
                w_wr.addr.eq(self.weights.addr),
                w_wr.data.eq(self.weights.w_data),
                w_wr.en.eq(Mux(busy, 0, self.weights.w_en)),
            ]

        # Registers.
        int_raw = Signal(2)                 # layer done, layer rejected
        int_mask = Signal(3, init=INT_FIFO_LOW)
        threshold = Signal(16)
        eight_bit = Signal(init=1)
        layers_done = Signal(16)            # wraps: a host compares two readings
        error_reason = Signal(REASON_BITS)
        flush = Signal()
        draining = Signal()
        pending = Signal()                  # words queued or a layer not yet finished
        m.d.comb += engine.eight_bit_mode.eq(eight_bit)
        raw = Signal(3)
        int_status = Signal(3)
        # The level is narrower than the threshold: compare only its bits (a carry chain each).
        level_bits = len(desc_fifo.level)
        fifo_low = Signal()
        m.d.comb += fifo_low.eq((threshold[level_bits:] != 0)
                                | (desc_fifo.level <= threshold[:level_bits]))
        m.d.comb += [raw.eq(Cat(int_raw, fifo_low)),
                     int_status.eq(raw & ~int_mask),
                     self.irq.eq(int_status.any())]

        w_fifo = self.bus.w_stb & (self.bus.addr == Register.LAYER_FIFO)
        m.d.comb += [desc_fifo.w_data.eq(self.bus.w_data), desc_fifo.w_en.eq(w_fifo)]
        with m.If(self.bus.w_stb):
            with m.Switch(self.bus.addr):
                with m.Case(Register.INT_MASK):
                    m.d.sync += int_mask.eq(self.bus.w_data[:3])
                with m.Case(Register.INT_CLEAR):
                    m.d.sync += int_raw.eq(int_raw & ~self.bus.w_data[:2])
                with m.Case(Register.FIFO_THRESHOLD):
                    m.d.sync += threshold.eq(self.bus.w_data[:16])
                with m.Case(Register.FIFO_CTRL):
                    m.d.comb += flush.eq(self.bus.w_data[0])
                with m.Case(Register.EIGHT_BIT_MODE):
                    m.d.sync += eight_bit.eq(self.bus.w_data[0])
        with m.If(engine.done):
            m.d.sync += layers_done.eq(layers_done + 1)
            with m.If(engine.error):
                m.d.sync += [int_raw[1].eq(1), error_reason.eq(engine.reason)]
            with m.Elif(engine.int_en):
                m.d.sync += int_raw[0].eq(1)

        fifo_level = Signal(16)
        m.d.comb += fifo_level.eq(desc_fifo.level)
        read_values = {
            Register.INT_STATUS: int_status,
            Register.INT_RAW: raw,
            Register.INT_MASK: int_mask,
            Register.FIFO_THRESHOLD: threshold,
            Register.EIGHT_BIT_MODE: eight_bit,
            Register.STATUS: Cat(pending, Const(0, 15), fifo_level, layers_done),
            Register.ERROR: Cat(int_raw[1], Const(0, 7), error_reason),
        }
        with m.Switch(self.bus.addr):
            for reg, value in read_values.items():
                with m.Case(reg):
                    m.d.sync += self.bus.r_data.eq(value)
            with m.Default():
                m.d.sync += self.bus.r_data.eq(0)

        # Descriptor words go from the FIFO straight to the engine, which keeps the one copy.
        # FIFO_CTRL bit 0 drops the engine's partial descriptor and drains every queued word.
        m.d.comb += [pending.eq(busy | engine.partial | desc_fifo.r_rdy),
                     engine.flush.eq(flush),
                     engine.desc.valid.eq(desc_fifo.r_rdy & ~draining),
                     engine.desc.payload.eq(desc_fifo.r_data),
                     desc_fifo.r_en.eq(engine.desc.ready | draining)]
        with m.If(flush):
            m.d.sync += draining.eq(1)
        with m.Elif(draining & ~desc_fifo.r_rdy):
            m.d.sync += draining.eq(0)
        return m
