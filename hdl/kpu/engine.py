"""The KPU layer engine: checks one descriptor, then runs it from KPU RAM to KPU RAM.

Dataflow of one layer (output channels in groups of ``lanes``; depthwise layers one channel
at a time)::

    weight memory ─► activation table, batch-norm entries, coefficient buffers (a group)
    KPU RAM ─► feeder (row words) ─► emitter (one column a cycle) ─► window (3×3 or 9×1)
          ─► MAC array (lanes × 9) ─► row accumulators (a ring of ACC_ROWS rows)
          ─► post (conv args, batch-norm, activation, pool) ─► KPU RAM

For output row ``y`` the engine sweeps every weight entry ``e`` (an input channel for 3×3, nine
input channels for 1×1) along the row: each cycle one column of the input enters, one window
leaves, and ``lanes × 9`` products are accumulated into ``acc[lane][x]``. While rows ``y + 1`` and
``y + 2`` accumulate into the other rows of the ring, the post pipeline turns row ``y`` into
output bytes.
"""

from typing import NamedTuple

from amaranth.hdl import Array, Cat, Const, Module, Mux, Signal, Value, signed, unsigned
from amaranth.lib import data, memory, stream, wiring
from amaranth.lib.wiring import In, Out

from ..params import checking, platform_family
from . import post
from .bram import BlockRam
from .check import DescriptorCheck, WeightTerms
from .compare import at_least
from .descriptor import _check_int
from .featuremap import LINE_BYTES
from .layouts import (ActSegmentLayout, BatchNormLayout, DESCRIPTOR_WORDS, DescriptorLayout,
                      GatewareReason, REASON_BITS, WORD_BITS)
from .mac import LATENCY as MAC_LATENCY
from .mac import TAPS, AccumulateAdd, MacArray
from .post import ACC_BITS
from .widemul import dsp_count

__all__ = ["KpuEngine"]

#: Rows of accumulators: the row being computed, the row being post-processed, and one more so
#: that compute never waits for post at row boundaries when the two take equally long (1×1).
ACC_ROWS = 3
WEIGHT_WORD_BYTES = 8   # the weight memory is 64-bit words (one side-table entry each)
#: Coefficient buffer entries with ``center_1x1``, where a 1×1 layer takes an entry per input
#: channel: the depth of one iCE40 block RAM (256 × 16), which holds them at no extra cost.
CENTER_1X1_ENTRIES = 256

_Pool = post.Pool


def _x_sum_bits(max_entries):
    """Bits of Σ x over the ``max_entries × 9`` taps of one output."""
    return (max_entries * TAPS * 255).bit_length()


def _next_slot(slot):
    """The accumulator row after ``slot`` in the ring of :data:`ACC_ROWS`."""
    return Mux(slot == ACC_ROWS - 1, 0, slot + 1)


class _CoefCopy(NamedTuple):
    """The coefficient loader's state that its two copy paths share (see ``_coef_loader``)."""
    active: Signal
    lane: Signal
    entry: Signal
    remaining: Signal
    lane_sum: Signal
    arrive: Signal


class KpuEngine(wiring.Component):
    """Runs K210 layer descriptors on a KPU RAM and a weight memory it does not own.

    Parameters
    ----------
    ram_words : int
        Depth of the KPU RAM in words of ``ram_word_bytes`` (a whole number of 64-byte lines).
    ram_word_bytes : int
        8 or 16: bytes per KPU RAM word. Every row of a feature map starts 16-byte aligned, so
        a row is read whole words at a time.
    weight_words : int
        Depth of the weight memory in 64-bit words.
    lanes : int
        Output channels computed in parallel; the MAC array has ``9 × lanes`` multipliers.
    post_lanes : int
        Output channels post-processed (conv arguments, batch-norm, activation, pool) in
        parallel; divides ``lanes``. A 1×1 layer of ``C`` channels needs about
        ``lanes / ⌈C / 9⌉`` of them to keep the MAC array busy.
    max_width : int
        Widest input map (accumulator depth per row).
    max_entries : int
        Depth of the coefficient buffer and the line buffer: input channels of a 3×3 layer,
        ⌈channels / 9⌉ of a 1×1 layer (a depthwise layer needs one); see
        :attr:`max_channels_1x1` for 1×1 layers with ``serial_post``.
    single_port_ram : bool
        Never read and write the KPU RAM in the same cycle (writes wait for a free cycle), nor
        read a weight in a cycle that uses the KPU RAM (the activation table and batch-norm
        entries load before a group computes, not while it does), so that one address port
        serves the KPU RAM and the weights, as an iCE40 SPRAM holding both needs.
    serial_post : bool
        Only with one lane: post-process one output every :data:`.post.SERIAL_PERIOD` (16)
        cycles through one 16×16 multiplier (an SB_MAC16 on iCE40), the activation table in
        block RAM (:func:`.post.serial_front_end`), instead of the pipeline of wide products
        (:func:`.post.parallel_front_end`). A 3×3 layer of 16 or more input channels keeps the
        MAC array busy; layers with fewer MACs per output wait for post. Implies
        :attr:`center_1x1`: a 1×1 layer, which waits for the post stage anyway, takes one
        input channel a cycle in the window's centre tap, so that the emitter needs only the
        three rows of a 3×3 window (:attr:`max_channels_1x1` input channels).
    platform : platform or None
        DSP primitives when given (:class:`.mac.MacArray`, :class:`.widemul.WideMul`),
        behavioural multipliers otherwise.
    dsp_budget : int or None
        ECP5 only: MULT18X18D the engine may use. The post-processing products take theirs
        first (:meth:`post_dsps_of`: a DSP there replaces about 200 partial-product bits of
        logic, in a MAC product only 64), the MAC array gets the rest and builds its other
        products in logic. ``None``: every MAC product in a DSP.

    Members
    -------
    desc : In(stream.Signature(WORD_BITS))
        Descriptor words in order, 12 make a layer; accepted only while idle. The engine keeps
        the one copy of the descriptor: each word goes straight to its place in it.
    flush : In(1)
        Drops the words of a partly received descriptor (a word offered on the same cycle is
        dropped too); no effect on a layer being checked or run.
    partial : Out(1)
        Some, not all, words of a descriptor have been received.
    done : Out(1)
        One-cycle pulse when a layer finishes or is rejected.
    error : Out(1)
        With ``done``: the layer was rejected (nothing was written).
    reason : Out(REASON_BITS)
        With ``done``: a :class:`.layouts.GatewareReason` (``OK`` when it ran).
    int_en : Out(1)
        With ``done``: the layer's ``int_en`` bit.
    busy : Out(1)
        A layer is being checked or run.
    eight_bit_mode : In(1)
        0 (16-bit weights) rejects layers with ``CONFIG_LIMIT``.
    ram_rd, ram_wr, w_rd : memory ports (driven by the engine)
        KPU RAM read and write (byte-granular) ports, weight memory read port. Each read
        enable is 1 only on the cycles a word is read; the data is used on the next cycle
        only.

    Throughput: one column per cycle (``9 × lanes`` MACs) while a row sweeps; between weight
    groups the coefficient buffers reload (about ``lanes · 9 · entries / 8`` cycles; with one
    lane a byte a cycle, about ``10 · entries``); the post pipeline handles ``post_lanes``
    outputs a cycle (one per 16 cycles with ``serial_post``).
    The check takes :data:`.check.CHECK_LATENCY` (14) cycles: a rejected descriptor is done 14
    cycles after its last word is accepted, an accepted one starts then. After a group's
    weights are loaded, its ``w_term`` products take :attr:`x_sum_bits` + ``shr_w`` more cycles
    (18 + ``shr_w`` for 64 entries), which the post pipeline waits for; they overlap the first
    row's compute.

    KPU RAM reads: every input byte is read once per layer pass, a pass being the sweep of one
    group of ``lanes`` output channels (one channel for depthwise layers): a layer with ``O``
    output channels reads its input ⌈O / lanes⌉ times. A 3×3 pass keeps, in a line buffer,
    the last two input rows of every input channel it has read (two RAM words for each of
    ``max_entries × ⌈max_width / ram_word_bytes⌉`` word blocks: one block-RAM array), so each
    output row reads only its new input row; pad rows are never read. Reading once per layer
    for every group would need the whole input map on chip. ``ram_rd.en`` is 1 only on the
    cycles a word is read. Reads and writes use separate ports unless ``single_port_ram``.

    Bad input: a descriptor the model's :func:`~nangua.hdl.kpu.model.check` rejects, or one
    beyond this configuration (:attr:`.layouts.GatewareReason.CONFIG_LIMIT`), is reported with
    ``done``, ``error`` and ``reason`` and changes nothing.
    """
    def __init__(self, *, ram_words, ram_word_bytes=16, weight_words, lanes=2, post_lanes=1,
                 max_width=64, max_entries=64, single_port_ram=False, serial_post=False,
                 platform=None, dsp_budget=None):
        with checking(self):
            self._check_parameters(ram_words, ram_word_bytes, weight_words, lanes, post_lanes,
                                   max_width, max_entries)
            if serial_post and lanes != 1:
                raise ValueError(f"Serial post needs one lane, not {lanes!r}")
            self._ecp5 = platform_family(platform) == "ecp5"
            self._mac_dsps = None
            if dsp_budget is not None and self._ecp5:
                post_dsps = self.post_dsps_of(post_lanes, max_entries)
                _check_int("DSP budget", dsp_budget, post_dsps, post_dsps + TAPS * lanes)
                self._mac_dsps = dsp_budget - post_dsps
        self._ram_words = ram_words
        self._ram_word_bytes = ram_word_bytes
        self._weight_words = weight_words
        self._lanes = lanes
        self._post_lanes = post_lanes
        self._single_port_ram = bool(single_port_ram)
        self._serial_post = bool(serial_post)
        self._max_width = max_width
        self._max_entries = max_entries
        self._platform = platform
        ram_shape = unsigned(8 * ram_word_bytes)
        ram_addr = max(1, (ram_words - 1).bit_length())
        w_addr = max(1, (weight_words - 1).bit_length())
        super().__init__({
            "desc": In(stream.Signature(WORD_BITS)),
            "flush": In(1),
            "partial": Out(1),
            "done": Out(1),
            "error": Out(1),
            "reason": Out(REASON_BITS),
            "int_en": Out(1),
            "busy": Out(1),
            "eight_bit_mode": In(1, init=1),
            "ram_rd": In(memory.ReadPort.Signature(addr_width=ram_addr, shape=ram_shape)),
            "ram_wr": In(memory.WritePort.Signature(addr_width=ram_addr, shape=ram_shape,
                                                    granularity=8)),
            "w_rd": In(memory.ReadPort.Signature(addr_width=w_addr, shape=unsigned(64))),
        })

    @staticmethod
    def _check_parameters(ram_words, ram_word_bytes, weight_words, lanes, post_lanes, max_width,
                          max_entries):
        if ram_word_bytes not in (8, 16):
            raise ValueError(f"KPU RAM word must be 8 or 16 bytes, not {ram_word_bytes!r}")
        _check_int("KPU RAM depth", ram_words, 1, 1 << 24)
        if ram_words * ram_word_bytes % LINE_BYTES:
            raise ValueError(f"KPU RAM of {ram_words} words of {ram_word_bytes} bytes is not a "
                             f"whole number of {LINE_BYTES}-byte lines")
        _check_int("Weight memory depth", weight_words, 18, 1 << 24)
        _check_int("Lanes", lanes, 1, 64)
        _check_int("Post lanes", post_lanes, 1, lanes)
        if lanes % post_lanes:
            raise ValueError(f"Post lanes ({post_lanes}) must divide lanes ({lanes})")
        _check_int("Maximum width", max_width, 1, 1024)
        _check_int("Maximum entries", max_entries, 1, 1024)

    lanes = property(lambda self: self._lanes)
    post_lanes = property(lambda self: self._post_lanes)
    single_port_ram = property(lambda self: self._single_port_ram)
    serial_post = property(lambda self: self._serial_post)
    max_width = property(lambda self: self._max_width)
    max_entries = property(lambda self: self._max_entries)
    ram_word_bytes = property(lambda self: self._ram_word_bytes)
    ram_words = property(lambda self: self._ram_words)
    weight_words = property(lambda self: self._weight_words)

    @property
    def center_1x1(self):
        """A 1×1 layer takes an input channel a cycle, through the window's centre tap (one
        coefficient entry a channel), rather than nine (an entry of nine channels)."""
        return self._serial_post

    @property
    def max_channels_1x1(self):
        """Input channels of a 1×1 layer the engine runs: ``9 · max_entries``, or with
        :attr:`center_1x1` as many as the coefficient buffer has entries, at least
        :data:`CENTER_1X1_ENTRIES` (but no more than ``9 · max_entries``, which bounds the
        accumulators' width)."""
        E = self._max_entries
        return min(TAPS * E, max(E, CENTER_1X1_ENTRIES)) if self.center_1x1 else TAPS * E

    @property
    def mac_units(self):
        return TAPS * self._lanes

    @staticmethod
    def post_dsps_of(post_lanes, max_entries):
        """MULT18X18D of the post pipeline on ECP5: the x term's product, and per post lane the
        batch-norm and activation products."""
        x_term = dsp_count(DescriptorLayout["arg_x"].shape, unsigned(_x_sum_bits(max_entries)))
        batchnorm = dsp_count(signed(ACC_BITS), BatchNormLayout["mul"].shape)
        activation = dsp_count(signed(ACC_BITS + 1), ActSegmentLayout["y_mul"].shape)
        return x_term + post_lanes * (batchnorm + activation)

    @property
    def acc_bits(self):
        """Bits of an accumulator: Σ x·w over the ``max_entries × 9`` taps of one output."""
        return (self._max_entries * TAPS * 255 * 255).bit_length()

    @property
    def x_sum_bits(self):
        """Bits of Σ x over the ``max_entries × 9`` taps of one output (and of Σ w of one output
        channel: as many bytes)."""
        return _x_sum_bits(self._max_entries)

    # ------------------------------------------------------------------------------------------
    def elaborate(self, platform):
        m = Module()
        P = self._lanes
        B = self._ram_word_bytes
        WMAX = self._max_width
        E = self._max_entries
        ram_lines = self._ram_words * B // LINE_BYTES
        weight_bytes = self._weight_words * WEIGHT_WORD_BYTES
        log_b = B.bit_length() - 1

        # ---- check: latches the descriptor; the reason code and arg_add · G, bit-serially ---
        m.submodules.check = check = DescriptorCheck(
            ram_lines=ram_lines, weight_bytes=weight_bytes, max_width=WMAX, max_entries=E,
            max_channels_1x1=self.max_channels_1x1)
        m.d.comb += check.eight_bit_mode.eq(self.eight_bit_mode)
        d = check.desc
        # Layer geometry (valid from CHECK onward).
        C = Signal(11)
        OC = Signal(11)
        W = Signal(11)
        H = Signal(10)
        OW = Signal(11)
        OH = Signal(10)
        k3 = Signal()
        dw = Signal()
        pool = Signal(_Pool)
        m.d.comb += [
            C.eq(d.i_ch_num + 1), OC.eq(d.o_ch_num + 1),
            W.eq(d.i_row_wid + 1), H.eq(d.i_col_high + 1),
            OW.eq(d.o_row_wid + 1), OH.eq(d.o_col_high + 1),
            k3.eq(d.kernel_type == 1), dw.eq(d.depth_wise_layer),
            pool.eq(d.pool_type),
        ]
        g_ic = Signal(11)                   # input channels per output channel
        # Coefficient entries per output channel (1 depthwise, C for 3×3, ⌈C / 9⌉ for 1×1, C
        # with center_1x1): counted by the coefficient loader as it fills lane 0, rather than
        # divided by 9.
        n_entries = Signal(11)
        per_oc = Signal(14)                 # weight bytes per output channel
        m.d.comb += [
            g_ic.eq(Mux(dw, 1, C)),
            per_oc.eq(Mux(k3, g_ic * 9, g_ic)),
        ]
        group_size = Signal(range(P + 1))
        m.d.comb += group_size.eq(Mux(dw, 1, P))
        in_shift = Signal(2)                # log2(coef_group)
        out_shift = Signal(2)               # log2(wb_group)
        m.d.comb += [
            in_shift.eq(Mux(d.coef_group == 4, 2, Mux(d.coef_group == 2, 1, 0))),
            out_shift.eq(Mux(d.wb_group == 4, 2, Mux(d.wb_group == 2, 1, 0))),
        ]

        # ---- group state ------------------------------------------------------------------
        oc0 = Signal(11)                    # first output channel of the group
        lanes_active = Signal(range(P + 1))
        last_group = Signal()
        if P == 1:
            # Constants where they are (no comparison of channel counts).
            m.d.comb += [lanes_active.eq(1), last_group.eq(oc0 == d.o_ch_num)]
        else:
            m.d.comb += [lanes_active.eq(Mux(OC - oc0 < group_size, OC - oc0, group_size)),
                         last_group.eq(oc0 + group_size >= OC)]

        # Activation table and per-lane batch-norm, Σw.
        act = post.MemoryActTable() if self._serial_post else post.FlopActTable()
        bn_mul = Array(Signal(signed(24), name=f"bn_mul_{j}") for j in range(P))
        bn_add = Array(Signal(signed(32), name=f"bn_add_{j}") for j in range(P))
        bn_shift = Array(Signal(4, name=f"bn_shift_{j}") for j in range(P))
        # (arg_w · Σw) >> shr_w of each lane, bit-serially once the lane's weights are loaded.
        m.submodules.w_terms = w_terms = WeightTerms(lanes=P, sum_bits=self.x_sum_bits)
        m.d.comb += [w_terms.arg_w.eq(d.arg_w), w_terms.shr_w.eq(d.shr_w)]
        w_term = [w_terms.terms[j] for j in range(P)]

        # ---- memories private to the engine -----------------------------------------------
        # Written a lane (array element) at a time; with one lane, a byte at a time (the byte
        # loader, :meth:`_copy_bytes`): the same bits, viewed as the lanes' taps when read.
        m.submodules.coef = coef = BlockRam(
            shape=data.ArrayLayout(8, TAPS) if P == 1 else data.ArrayLayout(
                data.ArrayLayout(8, TAPS), P),
            depth=self.max_channels_1x1 if self.center_1x1 else E, granularity=1,
            platform=self._platform)
        coef_wr, coef_rd = coef.wr, coef.rd[0]
        # Read ports: 0 for the accumulation, 1 for the post stage, which reads only rows whose
        # accumulation is done. A column reads its accumulators (S3) while the one before
        # writes (S4); two windows in a row never go to the same word (see ``flush_late``).
        m.submodules.acc = acc = BlockRam(
            shape=data.ArrayLayout(self.acc_bits, P), depth=ACC_ROWS * WMAX, read_ports=2,
            platform=self._platform)
        m.submodules.xsum = xsum = BlockRam(shape=self.x_sum_bits, depth=ACC_ROWS * WMAX,
                                            read_ports=2, platform=self._platform)
        acc_wr, acc_rd, acc_post = acc.wr, acc.rd[0], acc.rd[1]
        xsum_wr, xsum_rd, xsum_post = xsum.wr, xsum.rd[0], xsum.rd[1]

        # ---- control FSM ------------------------------------------------------------------
        layer_start = Signal()              # pulse: a checked layer begins (before its groups)
        run_start = Signal()                # pulse: a group's compute begins
        group_done = Signal()               # compute and post of the group have drained
        w_addr = Signal(range(self._weight_words + 1))    # weight word address being read
        w_read = Signal()                   # a weight memory word is read this cycle
        w_count = Signal(range(max(P, act.load_steps) + 1))
        w_arrive = Signal()                 # the read issued last cycle returns this cycle
        w_index = Signal.like(w_count)
        # A byte of the weight memory's read data: the one-lane coefficient loader's and the
        # activation table's biases' (one 8-way selection for both: they load in different
        # states).
        w_byte_sel = Signal(3)
        w_byte = Signal(8)
        m.d.comb += w_byte.eq(self.w_rd.data.word_select(w_byte_sel, 8))
        m.d.sync += [w_arrive.eq(0), self.done.eq(0)]
        m.d.comb += [self.w_rd.addr.eq(w_addr), self.w_rd.en.eq(w_read)]
        # Coefficient loader state.
        coef_start = Signal()
        coef_done = Signal()
        # The side tables (activation table, batch-norm entries) of a group.
        tables_start = Signal()
        tables_done = Signal()

        # Descriptor words go to the check, which latches what the engine and it need.
        desc_word = Signal(range(DESCRIPTOR_WORDS))
        m.d.comb += [self.partial.eq(desc_word != 0),
                     check.index.eq(desc_word), check.word.eq(self.desc.payload)]

        with m.FSM(name="ctrl"):
            with m.State("IDLE"):
                m.d.comb += self.desc.ready.eq(1)
                with m.If(self.desc.valid & ~self.flush):
                    m.d.comb += check.load.eq(1)
                    m.d.sync += desc_word.eq(desc_word + 1)
                    with m.If(desc_word == DESCRIPTOR_WORDS - 1):
                        m.d.sync += desc_word.eq(0)
                        m.d.comb += check.start.eq(1)
                        m.next = "CHECK"
                with m.If(self.flush):
                    m.d.sync += desc_word.eq(0)
            with m.State("CHECK"):
                m.d.comb += self.busy.eq(1)
                with m.If(check.done):
                    with m.If(check.reason != GatewareReason.OK):
                        m.d.sync += [self.done.eq(1), self.error.eq(1),
                                     self.reason.eq(check.reason), self.int_en.eq(d.int_en)]
                        m.next = "IDLE"
                    with m.Else():
                        m.d.comb += layer_start.eq(1)
                        m.d.sync += oc0.eq(0)
                        m.next = "GROUP"
            with m.State("GROUP"):
                m.d.comb += self.busy.eq(1)
                if self._single_port_ram:
                    m.d.comb += tables_start.eq(1)
                    m.next = "TABLES"
                else:
                    m.d.comb += coef_start.eq(1)
                    m.next = "COEF"
            if self._single_port_ram:
                # The weights share the KPU RAM's one port: the side tables load before the
                # group computes, not while it does.
                with m.State("TABLES"):
                    m.d.comb += self.busy.eq(1)
                    with m.If(tables_done):
                        m.d.comb += coef_start.eq(1)
                        m.next = "COEF"
            with m.State("COEF"):
                m.d.comb += self.busy.eq(1)
                with m.If(coef_done):
                    m.d.comb += run_start.eq(1)
                    m.next = "RUN"
            with m.State("RUN"):
                m.d.comb += self.busy.eq(1)
                with m.If(group_done):
                    with m.If(last_group):
                        m.d.sync += [self.done.eq(1), self.error.eq(0),
                                     self.reason.eq(GatewareReason.OK),
                                     self.int_en.eq(d.int_en)]
                        m.next = "IDLE"
                    with m.Else():
                        m.d.sync += oc0.eq(oc0 + group_size)
                        m.next = "GROUP"

        # Side tables: the activation table with a layer's first group, then the group's
        # batch-norm entries. Only the post pipeline needs them, so with a weight memory of its
        # own they load while the group computes; with single_port_ram, before.
        if not self._single_port_ram:
            m.d.comb += tables_start.eq(run_start)
        tables_ready = Signal()
        with m.FSM(name="tables"):
            with m.State("WAIT"):
                with m.If(tables_start):
                    m.d.sync += [w_count.eq(0), tables_ready.eq(0)]
                    with m.If(oc0 == 0):
                        m.d.sync += w_addr.eq(d.active_addr >> 3)
                        m.next = "ACT"
                    with m.Else():
                        m.d.sync += w_addr.eq((d.bwsx_base_addr >> 3) + oc0)
                        m.next = "BN"
            with m.State("ACT"):
                with m.If(~at_least(w_count, act.load_steps)):
                    m.d.comb += w_read.eq(1)
                    m.d.sync += [w_addr.eq(w_addr + act.next_word(w_count)),
                                 w_count.eq(w_count + 1), w_arrive.eq(1), w_index.eq(w_count)]
                with m.If(w_arrive):
                    m.d.comb += w_byte_sel.eq(w_index[:3])
                    act.write(m, w_index, self.w_rd.data, w_byte)
                    with m.If(w_index == act.load_steps - 1):
                        m.d.sync += [w_addr.eq((d.bwsx_base_addr >> 3) + oc0), w_count.eq(0)]
                        m.next = "BN"
            with m.State("BN"):
                with m.If((w_count == 0) if P == 1 else (w_count < lanes_active)):
                    m.d.comb += w_read.eq(1)
                    m.d.sync += [w_addr.eq(w_addr + 1), w_count.eq(w_count + 1),
                                 w_arrive.eq(1), w_index.eq(w_count)]
                with m.If(w_arrive):
                    bn = BatchNormLayout(self.w_rd.data)
                    m.d.sync += [bn_mul[w_index].eq(bn.mul), bn_add[w_index].eq(bn.add),
                                 bn_shift[w_index].eq(bn.shift)]
                with m.If((w_count == lanes_active) & ~w_arrive):
                    m.d.comb += tables_done.eq(1)
                    m.d.sync += tables_ready.eq(1)
                    m.next = "WAIT"

        self._coef_loader(m, d, layer_start, coef_start, coef_done, w_addr, w_read, w_terms,
                          coef_wr, per_oc, lanes_active, n_entries, (w_byte_sel, w_byte))

        # ---- feeder: KPU RAM words into a fill buffer of up to 9 row segments -------------
        # One block is word block ``fk`` of entry ``fe`` for output row ``fy``: up to nine
        # requests ``fr``, each one row segment for the emitter's row ``fr``. A 1×1 block
        # requests the nine channels of its entry (fr 0..8) into ``fill[fr]``; with
        # ``center_1x1`` its one channel's row fy (fr = 2). A 3×3 block needs input rows fy−1,
        # fy, fy+1 of one channel: the first two come from the line buffer (see below), the
        # third (fr = 2) from the KPU RAM (``fill[2]``, or with center_1x1 the RAM's read
        # data); the first output row also requests row 0 (fr = 1), which goes into the line
        # buffer. Pad rows (−1 and H) are never read from KPU RAM.
        center = self.center_1x1
        R_MAX = 3 if center else TAPS       # the emitter's rows
        last_fr = 2 if center else Mux(k3, 2, R_MAX - 1)
        n_blocks = Signal(range(WMAX // B + 2))
        m.d.comb += n_blocks.eq((W + B - 1) >> log_b)
        fy = Signal(10)
        fslot = Signal(range(ACC_ROWS))     # accumulator row of output row fy: fy mod ACC_ROWS
        fe = Signal(11)
        fk = Signal.like(n_blocks)
        fr = Signal(4)
        feeding = Signal()
        fill_state = Signal(2)              # 0 empty, 1 filling, 2 full
        x_valid = Signal()                  # the emitter holds a block
        # Rows double-buffered from the KPU RAM: every row of a 1×1 entry of nine channels.
        # With center_1x1 the one row from the KPU RAM (row 2) waits in the RAM's read data,
        # as 3×3 rows 0 and 1 wait in the line buffer's: nothing uses the RAM port from the
        # block's read until the emitter has taken the block (``row_held``; the post stage's
        # writes wait for it, as an SPRAM's read data is lost to a write).
        fill = {} if center else {r: Signal(8 * B, name=f"fill_{r}") for r in range(R_MAX)}
        xbuf = [Signal(8 * B, name=f"xbuf_{r}") for r in range(R_MAX)]     # the emitter's rows
        # ``ok``: which of the emitter's rows hold map bytes; the others are pad rows (the pad
        # value, 3×3) or rows past the last channel (0, 1×1), whatever their bytes: the
        # column leaving the emitter takes the pad byte for them (a byte, not a row of them).
        FillMeta = data.StructLayout({
            "slot": range(ACC_ROWS), "e": 11, "k": n_blocks.shape(),
            "ncols": range(B + 1), "last_e": 1, "last_block": 1, "group_last": 1,
            "ok": R_MAX,
        })
        fill_meta = Signal(FillMeta)
        rows_done = Signal(11)
        row_freed = Signal()                # the post stage frees an accumulator row
        row_credits = Signal(range(ACC_ROWS + 1))   # accumulator rows the feeder may start
        row_take = Signal()                 # the feeder starts an output row

        def first_request(y):
            """The first request of a block of output row ``y``."""
            return Mux(k3, Mux(y == 0, 1, 2), 2 if center else 0)

        # The line buffer: for every block of the row sweep, rows fy−1 (top) and fy (mid).
        LB_BLOCKS = (WMAX + B - 1) // B
        m.submodules.linebuf = linebuf = BlockRam(
            shape=data.StructLayout({"top": 8 * B, "mid": 8 * B}), depth=E * LB_BLOCKS,
            platform=self._platform)
        lb_slot = Signal(range(E * LB_BLOCKS))  # the block's slot, held until its fill is done

        fr_first = Signal(4)
        m.d.comb += fr_first.eq(first_request(fy))
        fb = Signal(range(E * LB_BLOCKS))   # block of the row sweep: fe · n_blocks + fk
        # Stage A: one row-segment request.
        a_valid = Signal()
        a_row_ok = Signal()
        a_r = Signal(4)
        a_last = Signal()
        a_addr = Signal(32)
        # Stage B: request on the port.
        b_valid = Signal()
        b_row_ok = Signal()
        b_r = Signal(4)
        b_last = Signal()
        # Read only rows inside the map: pad requests leave the port idle.
        ram_read = Signal()
        m.d.comb += [ram_read.eq(a_valid & a_row_ok),
                     self.ram_rd.addr.eq(a_addr), self.ram_rd.en.eq(ram_read)]
        m.d.sync += [a_valid.eq(0), b_valid.eq(a_valid), b_row_ok.eq(a_row_ok), b_r.eq(a_r),
                     b_last.eq(a_last)]

        with m.If(run_start):
            m.d.sync += [fy.eq(0), fslot.eq(0), fe.eq(0), fk.eq(0), fb.eq(0),
                         fr.eq(first_request(0)),
                         feeding.eq(1), fill_state.eq(0), rows_done.eq(0)]

        # The RAM word that request ``fr`` reads, kept up to date by additions as the requests
        # advance (no multiplier): where row 0 of the request's channel starts (c_chan: the
        # channel's number, its slot in its line and that word), plus fy rows, plus fk words; a
        # 3×3 request 2 (row fy + 1) one row more. e_chan is the entry's first channel, g_chan
        # the group's (channel 0, or oc0 of a depthwise layer).
        log_lpw = (LINE_BYTES // B).bit_length() - 1
        addr_shape = self.ram_rd.addr.shape()
        row_words = Signal(addr_shape)      # fy rows
        row_step = Signal(addr_shape)       # one row
        pitch = Signal(addr_shape)          # words from one channel's slot of a line to the next
        wrap_step = Signal(addr_shape)      # from the last slot of a line to the next line
        m.d.comb += [row_step.eq(d.row_switch_addr << log_lpw),
                     pitch.eq(Const(LINE_BYTES // B) >> in_shift),
                     wrap_step.eq((d.channel_switch_addr << log_lpw) - LINE_BYTES // B + pitch)]
        Chan = data.StructLayout({"addr": addr_shape, "slot": 2, "ch": 11})
        g_chan = Signal(Chan)
        c_chan = Signal(Chan)
        # With center_1x1 every entry is one channel, so c_chan never leaves it: no e_chan.
        e_chan = c_chan if center else Signal(Chan)

        def next_chan(chan, name):
            """The channel after ``chan``: the next slot of its line, or the next line."""
            nxt = Signal(Chan, name=name)
            wrap = chan.slot == Mux(in_shift == 2, 3, Mux(in_shift == 1, 1, 0))
            m.d.comb += [nxt.addr.eq(chan.addr + Mux(wrap, wrap_step, pitch)),
                         nxt.slot.eq(Mux(wrap, 0, chan.slot + 1)), nxt.ch.eq(chan.ch + 1)]
            return nxt

        c_next = next_chan(c_chan, "c_next")
        with m.If(layer_start):
            m.d.sync += [g_chan.addr.eq(d.image_src_addr << log_lpw), g_chan.slot.eq(0),
                         g_chan.ch.eq(0)]
        with m.If(group_done & dw):
            # The feeder ended the group's last block back on g_chan: c_next is g_chan's next.
            m.d.sync += g_chan.eq(c_next)
        with m.If(run_start):
            m.d.sync += [row_words.eq(0), e_chan.eq(g_chan), c_chan.eq(g_chan)]

        row_ok = Signal()
        last_row = Signal()                 # fy is the map's last row
        last_block = Signal()               # fk is the row's last block
        last_entry = Signal()               # fe is the last entry
        m.d.comb += [last_row.eq(fy == H - 1), last_block.eq(fk == n_blocks - 1),
                     last_entry.eq(fe == n_entries - 1)]
        with m.If(k3):
            # A 3×3 block requests input row fy (fr = 1, first output row only) or fy + 1
            # (fr = 2): only the latter can be past the map (the pad row H).
            m.d.comb += row_ok.eq((fr != 2) | ~last_row)
        with m.Else():
            # A 1×1 block requests row fy of one channel (center_1x1), or of nine channels,
            # those past the last being zero rows.
            m.d.comb += row_ok.eq(1 if center else Mux(dw, fr == 0, c_chan.ch < C))
        request_addr = Signal(addr_shape)
        row_addr = c_chan.addr + row_words + Mux(k3 & (fr == 2), row_step, 0)
        if WMAX <= LINE_BYTES:
            # A row fits its channel's slot of a line (the check requires the layout of
            # coef_group channels a line): the slot starts at a multiple of its words, which
            # fk stays below, so fk is ORed in, not added.
            m.d.comb += request_addr.eq(row_addr | fk)
        else:
            m.d.comb += request_addr.eq(row_addr + fk)
        row_gate = Signal()
        m.d.comb += row_gate.eq((fe != 0) | (fk != 0) | (row_credits != 0))
        m.d.comb += row_take.eq(feeding & (fill_state == 0) & (fe == 0) & (fk == 0)
                                & (row_credits != 0))
        with m.If(run_start):
            m.d.sync += row_credits.eq(ACC_ROWS)
        with m.Else():
            m.d.sync += row_credits.eq(row_credits + row_freed - row_take)
        # A 3×3 block of the first output row writes row 0 into the line buffer (request 1)
        # and reads it back (request 2): a cycle between the two keeps the read off the write.
        lb_bubble = k3 & a_valid & ~a_last
        with m.If(feeding & (((fill_state == 0) & row_gate)
                             | ((fill_state == 1) & (fr != fr_first) & ~lb_bubble))):
            m.d.sync += [a_valid.eq(1), a_row_ok.eq(row_ok), a_r.eq(fr),
                         a_last.eq(fr == last_fr), a_addr.eq(request_addr)]
            with m.If(fr == fr_first):
                m.d.sync += [
                    fill_state.eq(1), lb_slot.eq(fb),
                    fill_meta.slot.eq(fslot), fill_meta.e.eq(fe),
                    fill_meta.k.eq(fk),
                    # The row's last block holds the columns left: (W − 1) mod B + 1.
                    fill_meta.ncols.eq(Mux(last_block, (W - 1)[:log_b] + 1, B)),
                    fill_meta.last_e.eq(last_entry), fill_meta.last_block.eq(last_block),
                    fill_meta.group_last.eq(last_row & last_entry & last_block),
                    # Row −1 (3×3, first output row) is the pad row; the requests' rows
                    # follow as they arrive.
                    fill_meta.ok.eq(Cat(~k3 | (fy != 0), Const(-1, R_MAX - 1))),
                ]
            with m.If(fr == last_fr):
                m.d.sync += [fr.eq(fr_first), fb.eq(fb + 1)]
                with m.If(last_block):
                    m.d.sync += fk.eq(0)
                    with m.If(last_entry):
                        m.d.sync += [fe.eq(0), fb.eq(0), e_chan.eq(g_chan), c_chan.eq(g_chan)]
                        with m.If(last_row):
                            m.d.sync += feeding.eq(0)
                        with m.Else():
                            m.d.sync += [fy.eq(fy + 1), fr.eq(first_request(fy + 1)),
                                         fslot.eq(_next_slot(fslot)),
                                         row_words.eq(row_words + row_step)]
                    with m.Else():
                        # The next entry's first channel: after this one's (3×3, center
                        # 1×1) or after its ninth (1×1, c_chan being at the ninth).
                        m.d.sync += [fe.eq(fe + 1), e_chan.eq(c_next), c_chan.eq(c_next)]
                with m.Else():
                    m.d.sync += [fk.eq(fk + 1), c_chan.eq(e_chan)]
            with m.Else():
                m.d.sync += fr.eq(fr + 1)
                if not center:
                    with m.If(~k3):
                        m.d.sync += c_chan.eq(c_next)
        # A pad request (b_row_ok 0) leaves the port idle: the row takes whatever the read data
        # holds, and its ok bit says so.
        for r in range(R_MAX):
            with m.If(b_valid & (b_r == r)):
                m.d.sync += fill_meta.ok[r].eq(b_row_ok)
                if r in fill:
                    m.d.sync += fill[r].eq(self.ram_rd.data)
        with m.If(b_valid):
            with m.If(b_last):
                m.d.sync += fill_state.eq(2)

        # 3×3 line buffer: the block's last request (2) reads its slot, rows fy−1 and fy,
        # whose read data the emitter takes as its rows 0 and 1 (nothing reads the line buffer
        # again before: the next block's read waits for the emitter), and a cycle later writes
        # back rows fy and fy+1 for the next output row. The first output row's request 1
        # writes row 0 first (as mid; its top is the pad row: ``ok``). A row past the map is
        # written as it came (it is never read back: the sweep ends with it). A slot is read at
        # least a cycle after it is written, so the read port needs no transparency.
        lb_rd, lb_wr = linebuf.rd[0], linebuf.wr
        m.d.comb += [lb_rd.addr.eq(lb_slot), lb_rd.en.eq(a_valid & a_last & k3),
                     lb_wr.addr.eq(lb_slot), lb_wr.en.eq(b_valid & k3),
                     lb_wr.data.top.eq(lb_rd.data.mid), lb_wr.data.mid.eq(self.ram_rd.data)]
        # The emitter's rows as they load: 0 and 1 from the line buffer (3×3) or the fill, 2
        # from the RAM's read data (center_1x1) or the fill.
        if center:
            x_load = [lb_rd.data.top, lb_rd.data.mid, self.ram_rd.data]
        else:
            x_load = ([Mux(k3, lb_rd.data.top, fill[0]), Mux(k3, lb_rd.data.mid, fill[1])]
                      + [fill[r] for r in range(2, R_MAX)])
        row_held = Signal()                 # the RAM's read data holds a block's row
        m.d.comb += row_held.eq((fill_state != 0) if center else 0)

        # ---- emitter: one column a cycle ---------------------------------------------------
        # Its rows shift right a byte a cycle, so column cx is always their low byte (no
        # B-way byte selection per row).
        x_meta = Signal(FillMeta)
        cx = Signal(range(B))
        flush_pending = Signal()
        emitting = Signal()
        x_finishing = Signal()
        m.d.comb += [emitting.eq(x_valid & ~flush_pending),
                     x_finishing.eq(emitting & (cx == x_meta.ncols - 1))]
        with m.If((fill_state == 2) & (~x_valid | x_finishing) & ~flush_pending):
            m.d.sync += [x_valid.eq(1), cx.eq(0), x_meta.eq(fill_meta), fill_state.eq(0)]
            m.d.sync += [xbuf[r].eq(x_load[r]) for r in range(R_MAX)]
        with m.Elif(x_finishing):
            m.d.sync += x_valid.eq(0)
        with m.Elif(emitting):
            m.d.sync += [xbuf[r].eq(xbuf[r] >> 8) for r in range(R_MAX)]
        with m.If(emitting & ~x_finishing):
            m.d.sync += cx.eq(cx + 1)
        with m.If(x_finishing & x_meta.group_last):
            m.d.sync += [flush_pending.eq(1), x_valid.eq(0)]
        with m.If(flush_pending):
            m.d.sync += flush_pending.eq(0)
        with m.If(run_start):
            m.d.sync += [x_valid.eq(0), flush_pending.eq(0)]

        # Stage S1: the emitter's column as it leaves (not registered: the window stage's
        # registers follow).
        ColMeta = data.StructLayout({
            "x": range(WMAX + 1), "slot": range(ACC_ROWS), "e": 11, "first_e": 1, "last_e": 1,
            "last_x": 1,
        })
        s1_valid = Signal()
        s1_flush = Signal()
        s1_col = Signal(data.ArrayLayout(8, R_MAX))
        s1_meta = Signal(ColMeta)
        x_pos = x_meta.k * B + cx
        m.d.comb += [s1_valid.eq(emitting), s1_flush.eq(flush_pending)]
        # Pad rows take the pad byte (see ``ok``); rows a 3×3 sweep does not use must not
        # disturb the window: keep them at 0.
        pad_byte = Mux(k3, d.pad_value, 0)
        m.d.comb += [s1_col[r].eq(Mux(x_meta.ok[r], xbuf[r][:8], pad_byte) if r < 3
                                  else Mux(~k3 & x_meta.ok[r], xbuf[r][:8], 0))
                     for r in range(R_MAX)]
        m.d.comb += [s1_meta.x.eq(x_pos), s1_meta.slot.eq(x_meta.slot), s1_meta.e.eq(x_meta.e),
                     s1_meta.first_e.eq(x_meta.e == 0),
                     s1_meta.last_e.eq(x_meta.last_e),
                     s1_meta.last_x.eq(x_meta.last_block & (cx == x_meta.ncols - 1))]

        # ---- window stage (S1 → S2) --------------------------------------------------------
        s2_valid = Signal()
        s2_taps = Signal(data.ArrayLayout(8, TAPS))
        s2_meta = Signal(ColMeta)
        win_l = Signal(data.ArrayLayout(8, 3))
        win_m = Signal(data.ArrayLayout(8, 3))
        pend_valid = Signal()
        pend_meta = Signal(ColMeta)
        pad_col = Signal(data.ArrayLayout(8, 3))
        m.d.comb += [pad_col[r].eq(d.pad_value) for r in range(3)]
        m.d.sync += s2_valid.eq(0)

        def emit_window(left, mid, right, meta):
            taps = []
            for r in range(3):
                taps += [left[r], mid[r], right[r]]
            m.d.sync += [s2_valid.eq(1), s2_meta.eq(meta)]
            m.d.sync += [s2_taps[t].eq(taps[t]) for t in range(TAPS)]

        # On a one-column map the flush's window (x = 0) would follow the window before it (the
        # previous entry's, also x = 0) on the next cycle, to the same accumulators, which the
        # block RAM cannot read while they are written (S3 against S4): it waits a cycle.
        flush_late = Signal()
        flush_now = Signal()
        m.d.sync += flush_late.eq(s1_flush)
        m.d.comb += flush_now.eq(Mux(pend_meta.x == 0, flush_late, s1_flush))
        col3 = Signal(data.ArrayLayout(8, 3))
        m.d.comb += [col3[r].eq(s1_col[r]) for r in range(3)]
        with m.If(k3):
            with m.If(s1_valid):
                with m.If(s1_meta.x == 0):
                    with m.If(pend_valid):
                        emit_window(win_l, win_m, pad_col, pend_meta)
                    m.d.sync += [win_l.eq(pad_col), win_m.eq(col3), pend_meta.eq(s1_meta),
                                 pend_valid.eq(1)]
                with m.Else():
                    emit_window(win_l, win_m, col3, pend_meta)
                    m.d.sync += [win_l.eq(win_m), win_m.eq(col3), pend_meta.eq(s1_meta)]
            with m.If(flush_now & pend_valid):
                emit_window(win_l, win_m, pad_col, pend_meta)
                m.d.sync += pend_valid.eq(0)
        with m.Else():
            with m.If(s1_valid):
                m.d.sync += [s2_valid.eq(1), s2_meta.eq(s1_meta)]
                if center:
                    # The channel's byte (row 2) in the centre tap, whose weight the loader
                    # wrote; the other taps 0, so that neither their products nor Σx count.
                    m.d.sync += [s2_taps[t].eq(s1_col[2] if t == TAPS // 2 else 0)
                                 for t in range(TAPS)]
                else:
                    m.d.sync += s2_taps.eq(s1_col)
        with m.If(run_start):
            m.d.sync += pend_valid.eq(0)
        # The coefficient buffer is read for the window leaving this cycle, so its registered
        # output meets the window at the MAC array: no copy of the lanes × 9 weights is kept.
        m.d.comb += coef_rd.addr.eq(Mux(k3, pend_meta.e, s1_meta.e))

        # ---- MAC array and accumulation ----------------------------------------------------
        m.submodules.mac = mac = MacArray(P, platform=self._platform,
                                          dsp_products=self._mac_dsps)
        m.d.comb += [mac.x.eq(s2_taps), mac.w.eq(Value.cast(coef_rd.data))]
        metas = [(s2_valid, s2_meta)]
        for n in range(MAC_LATENCY):
            valid, meta = Signal(name=f"mac_valid_{n}"), Signal(ColMeta, name=f"mac_meta_{n}")
            m.d.sync += [valid.eq(metas[-1][0]), meta.eq(metas[-1][1])]
            metas.append((valid, meta))
        s3_valid, s3_meta = metas[-2]
        s4_valid, s4_meta = metas[-1]
        def acc_addr(slot, x):
            return slot * WMAX + x

        m.d.comb += [acc_rd.addr.eq(acc_addr(s3_meta.slot, s3_meta.x)),
                     xsum_rd.addr.eq(acc_addr(s3_meta.slot, s3_meta.x)),
                     acc_wr.addr.eq(acc_addr(s4_meta.slot, s4_meta.x)),
                     xsum_wr.addr.eq(acc_addr(s4_meta.slot, s4_meta.x))]
        # The first entry of an output starts its sums, the others add to them. With one lane
        # on iCE40 the UP5K's two SB_MAC16 left over (five for the products, one for the
        # serial post) do the adding, as adders with a load (:class:`.mac.AccumulateAdd`).
        add_platform = self._platform if P == 1 else None
        for n, (rd, wr, add) in enumerate(
                [(acc_rd.data[j], acc_wr.data[j], mac.sums[j]) for j in range(P)]
                + [(xsum_rd.data, xsum_wr.data, mac.x_sum)]):
            adder = AccumulateAdd(len(wr), platform=add_platform)
            m.submodules[f"accumulate{n}"] = adder
            m.d.comb += [adder.acc.eq(rd), adder.add.eq(add), adder.first.eq(s4_meta.first_e),
                         wr.eq(adder.o)]
        m.d.comb += [acc_wr.en.eq(s4_valid), xsum_wr.en.eq(s4_valid)]
        with m.If(s4_valid & s4_meta.last_e & s4_meta.last_x):
            m.d.sync += rows_done.eq(rows_done + 1)

        # ---- post: conv args, batch-norm, activation, pool, write back --------------------
        ctx = post.PostContext(
            d=d, W=W, H=H, OW=OW, OH=OH, pool=pool, out_shift=out_shift, oc0=oc0,
            group_size=group_size, lanes_active=lanes_active, rows_done=rows_done,
            row_freed=row_freed, run_start=run_start, acc_post=acc_post, xsum_post=xsum_post,
            act=act, bn_mul=bn_mul, bn_add=bn_add, bn_shift=bn_shift, w_term=w_term,
            add_term=check.add_term, tables_ready=tables_ready & w_terms.ready,
            acc_rows=ACC_ROWS,
            port_taken=(ram_read | row_held) if self._single_port_ram else Const(0),
            ram_wr=self.ram_wr)
        post_idle = post.build_post(m, ctx, lanes=P, post_lanes=self._post_lanes,
                                    ram_word_bytes=B, max_width=WMAX, serial=self._serial_post,
                                    platform=self._platform)

        compute_idle = Signal()
        m.d.comb += compute_idle.eq(~feeding & (fill_state == 0) & ~x_valid & ~flush_pending
                                    & ~a_valid & ~b_valid & ~s1_valid & ~s1_flush & ~flush_late
                                    & ~s2_valid & ~Cat(v for v, _ in metas[1:]).any())
        started = Signal()
        with m.If(run_start):
            m.d.sync += started.eq(1)
        with m.If(group_done):
            m.d.sync += started.eq(0)
        m.d.comb += group_done.eq(started & ~run_start & compute_idle & (rows_done == H)
                                  & post_idle)
        return m

    # ------------------------------------------------------------------------------------------
    def _coef_loader(self, m, d, layer_start, start, done, w_addr, w_read, w_terms, coef_wr,
                     per_oc, lanes_active, n_entries, w_byte):
        """Copy the group's weights into the coefficient buffer; hand each lane's Σw to
        ``w_terms`` as it completes and start it with the last lane; set ``n_entries`` to the
        entries of lane 0.

        The weights of a group are one run of bytes from byte ``first`` of the weight memory;
        the groups' runs follow each other from ``para_start_addr``, so the next group's run
        starts at ``read_end``, the end of this one, found by adding ``per_oc`` once per lane,
        one lane a cycle from the start, ahead of the reads it bounds (a lane takes at least a
        cycle to copy, and its first word two to arrive); with one lane, at ``first +
        per_oc``. Weights are read only between ``start`` and ``done``, and no word beyond the
        run.

        With several lanes (:meth:`_copy_words`) an entry (up to 9 bytes) is written a cycle
        at most; with one lane (:meth:`_copy_bytes`) a byte is taken a cycle, about 10 cycles an
        entry: a group of one lane computes for thousands of cycles, and the byte-serial copy
        is a fraction of the logic.
        """
        P = self._lanes
        weight_bytes = self._weight_words * WEIGHT_WORD_BYTES
        # Byte addresses within the weight memory (the check rejects a layer beyond it).
        first = Signal(range(weight_bytes + 1))     # the group's first weight
        with m.If(layer_start):
            m.d.sync += first.eq(d.para_start_addr)
        if P == 1:
            run_end = first + per_oc
        else:
            read_end = Signal(range(weight_bytes + 1))  # the byte after the lanes counted
            read_lanes = Signal(range(P + 1))   # lanes counted in read_end
            with m.If(read_lanes < lanes_active):
                m.d.sync += [read_end.eq(read_end + per_oc), read_lanes.eq(read_lanes + 1)]
            with m.If(start):
                m.d.sync += [read_end.eq(first + per_oc), read_lanes.eq(1)]
            run_end = read_end
        state = _CoefCopy(
            active=Signal(name="coef_active"),
            lane=Signal(range(P + 1), name="coef_lane"),
            entry=Signal(11, name="coef_entry"),
            # Bytes of the current lane not yet taken.
            remaining=Signal(14, name="coef_remaining"),
            # Σw of the current lane so far (bounded like Σx).
            lane_sum=Signal(self.x_sum_bits, name="coef_lane_sum"),
            # The read issued last cycle returns this cycle.
            arrive=Signal(name="coef_arrive"))
        m.d.sync += state.arrive.eq(0)

        def finish_lane(lane_total, entries):
            # The lane's last entry is written: its Σw goes to w_terms, the next lane starts.
            with m.If(state.lane == 0):
                m.d.sync += n_entries.eq(entries)
            m.d.sync += [state.entry.eq(0), state.remaining.eq(per_oc),
                         state.lane.eq(state.lane + 1), state.lane_sum.eq(0)]
            m.d.comb += [w_terms.load.eq(1), w_terms.lane.eq(state.lane),
                         w_terms.sum.eq(lane_total)]
            with m.If(state.lane == lanes_active - 1):
                # Every lane is counted by now: the next group's run starts here.
                m.d.sync += [state.active.eq(0), first.eq(run_end)]
                m.d.comb += [done.eq(1), w_terms.start.eq(1)]

        if P == 1:
            # With center_1x1 a 1×1 layer's byte is a whole entry, in the centre tap.
            one_tap = (d.kernel_type == 0) if self.center_1x1 else Const(0)
            self._copy_bytes(m, state, start, first, w_addr, w_read, coef_wr, finish_lane,
                             one_tap, *w_byte)
        else:
            self._copy_words(m, state, start, first, read_end, w_addr, w_read, coef_wr,
                             finish_lane)
        # Last, so that it overrides the streaming updates above.
        with m.If(start):
            m.d.sync += [state.active.eq(1), w_addr.eq(first >> 3), state.lane.eq(0),
                         state.entry.eq(0), state.remaining.eq(per_oc), state.lane_sum.eq(0)]

    def _copy_words(self, m, s, start, first, read_end, w_addr, w_read, coef_wr, finish_lane):
        """Several lanes: 8 bytes a cycle in, one entry (up to 9 bytes) a cycle out at most.

        Words wait in a queue of three; an entry starts at byte ``pos`` of the first and, being
        at most 9 bytes, always ends within the second, so cutting it out is one 8-way
        selection of 72 bits (a byte-granular FIFO needs two 192-bit byte shifters).
        """
        P = self._lanes
        queue = [Signal(64, name=f"coef_word_{i}") for i in range(3)]
        count = Signal(range(4))            # words in the queue
        pos = Signal(3)                     # byte of queue[0] where the next entry starts
        need = Signal(4)
        m.d.comb += need.eq(Mux(s.remaining < 9, s.remaining, 9))
        end = Signal(5)                     # byte after the entry, from the start of queue[0]
        pop = Signal()
        consumed = Signal(2)                # words the entry finishes: 0, 1 or 2
        kept = Signal(range(4))             # words left in the queue after the pop
        m.d.comb += [end.eq(pos + need), pop.eq(s.active & (count * 8 >= end)),
                     consumed.eq(Mux(pop, end >> 3, 0)), kept.eq(count - consumed)]
        entry_bytes = Signal(8 * TAPS)
        window = Cat(queue[0], queue[1])
        cut = Array(window[8 * k:8 * k + 8 * TAPS] for k in range(8))[pos]
        m.d.comb += entry_bytes.eq(cut & ((Const(1, 8 * TAPS + 1) << (need * 8)) - 1))
        # Shift out the consumed words, then append the arriving one behind those kept.
        for i in range(3):
            shifted = Array(queue[i + k] if i + k < 3 else Const(0, 64) for k in range(3))
            with m.If(s.arrive & (kept == i)):
                m.d.sync += queue[i].eq(self.w_rd.data)
            with m.Else():
                m.d.sync += queue[i].eq(shifted[consumed])
        m.d.sync += count.eq(kept + s.arrive)
        with m.If(pop):
            m.d.sync += pos.eq(end[:3])
        # A read issued now arrives next cycle: issue it only if the queue will have room then
        # even if nothing is popped meanwhile.
        with m.If(s.active & (Cat(Const(0, 3), w_addr) < read_end) & (kept + s.arrive < 3)):
            m.d.comb += w_read.eq(1)
            m.d.sync += [w_addr.eq(w_addr + 1), s.arrive.eq(1)]
        m.d.comb += [coef_wr.addr.eq(s.entry), coef_wr.en.eq(Mux(pop, 1 << s.lane, 0)),
                     coef_wr.data.eq(entry_bytes.replicate(P))]
        new_sum = Signal(self.x_sum_bits)
        m.d.comb += new_sum.eq(s.lane_sum
                               + sum(entry_bytes.word_select(t, 8) for t in range(TAPS)))
        with m.If(pop):
            m.d.sync += s.lane_sum.eq(new_sum)
            with m.If(s.remaining == need):
                finish_lane(new_sum, s.entry + 1)
            with m.Else():
                m.d.sync += [s.entry.eq(s.entry + 1), s.remaining.eq(s.remaining - need)]
        with m.If(start):
            m.d.sync += [pos.eq(first[:3]), count.eq(0)]

    def _copy_bytes(self, m, s, start, first, w_addr, w_read, coef_wr, finish_lane, one_tap,
                    byte_sel, byte):
        """One lane: a byte a cycle from the weight memory's read data into the buffer entry.

        ``w_addr`` is the next word to read. Byte ``pos`` of the word read last is taken each
        cycle and written to tap ``taps`` of entry ``s.entry`` (the buffer's byte enables; the
        memory's read data holds between reads, and nothing else reads it while coefficients
        load). A lane whose bytes end within an entry (1×1 layers) writes zero bytes to
        complete it, as the several-lane copy masks them. The next word is read as the last
        byte of a word is taken, so a word of 8 bytes takes 9 cycles; the entry advances with
        its last byte, and the lane is done the cycle after when that entry was its last.
        With ``one_tap`` each byte is an entry of its own, written to the centre tap (the
        window's other taps are 0 then, so the others' stale bytes count for nothing).
        """
        loaded = Signal()                   # the read data holds bytes still to take
        pos = Signal(3)                     # byte of the read data taken next
        taps = Signal(range(TAPS))          # bytes written into the entry so far
        completed = Signal()                # the entry's last byte was written last cycle
        take = Signal()                     # take byte ``pos``
        pad = Signal()                      # complete the lane's last entry with a zero byte
        with m.If(s.active):
            m.d.comb += byte_sel.eq(pos)
        m.d.comb += [
            take.eq(s.active & loaded & (s.remaining != 0)),
            pad.eq(s.active & (s.remaining == 0) & (taps != 0)),
        ]
        entry_end = Signal()                # the byte written now completes the entry
        m.d.comb += entry_end.eq(one_tap | (taps == TAPS - 1))
        m.d.sync += completed.eq(0)
        with m.If(take | pad):
            m.d.sync += [taps.eq(Mux(entry_end, 0, taps + 1)), completed.eq(entry_end)]
            with m.If(entry_end):
                m.d.sync += s.entry.eq(s.entry + 1)
        with m.If(take):
            m.d.sync += [pos.eq(pos + 1), s.remaining.eq(s.remaining - 1),
                         s.lane_sum.eq(s.lane_sum + byte)]
            with m.If(pos == 7):
                m.d.sync += loaded.eq(0)
        with m.If(s.arrive):
            m.d.sync += loaded.eq(1)
        # Read a word only when one of its bytes is wanted: the run's first, or the next
        # while the last byte of this one is taken and more bytes remain.
        with m.If(s.active & ~s.arrive & Mux(loaded, take & (pos == 7) & (s.remaining != 1),
                                             ~loaded & (s.remaining != 0))):
            m.d.comb += w_read.eq(1)
            m.d.sync += [w_addr.eq(w_addr + 1), s.arrive.eq(1)]
        m.d.comb += [coef_wr.addr.eq(s.entry),
                     coef_wr.en.eq(Mux(take | pad, 1 << Mux(one_tap, TAPS // 2, taps), 0)),
                     Value.cast(coef_wr.data).eq(Mux(take, byte, 0).replicate(TAPS))]
        with m.If(completed & (s.remaining == 0)):
            finish_lane(s.lane_sum, s.entry)    # advanced with the entry's last byte
        with m.If(start):
            m.d.sync += [pos.eq(first[:3]), loaded.eq(0), taps.eq(0), completed.eq(0)]
