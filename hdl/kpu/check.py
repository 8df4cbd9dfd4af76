"""Bit-serial arithmetic of the KPU engine: the descriptor check and the conv stage's constant
terms, built from shift-add steps instead of parallel multipliers.

- :class:`DescriptorCheck`: the reason code of a latched descriptor (the order of
  :func:`.model.check`, then this configuration's limits) and ``add_term = arg_add · G``.
- :class:`WeightTerms`: ``w_term = (arg_w · Σw) >> shr_w`` of every lane.

Both run their products in lockstep, one multiplier bit a cycle (radix 2, least significant
bit first): a product of an ``n``-bit multiplicand costs one ``n + 1``-bit adder and its
register, whatever the multiplier's width; the latency is the widest multiplier's bits.
"""

from amaranth.hdl import Cat, Const, Module, Mux, Signal, signed, unsigned
from amaranth.lib import data, wiring
from amaranth.lib.wiring import In, Out

from ..params import checking
from .descriptor import ACT_TABLE_BYTES, BN_ENTRY_BYTES, PoolType, _check_int, pool_stride
from .layouts import DescriptorLayout, GatewareReason, REASON_BITS

__all__ = ["CHECK_STEPS", "CHECK_LATENCY", "DescriptorCheck", "WeightTerms", "config_limited"]

#: Multiplier bits of the check's products: channel counts, per-load channels and channel
#: blocks reach 1024 (11 bits); heights 512, load counts 64.
CHECK_STEPS = 11
#: Bits of a channel block's lines (``channel_switch_addr``) once LAYOUT has passed: fewer than
#: 16 lines a row, at most 512 rows.
BLOCK_LINE_BITS = (15 * 512).bit_length()
#: Cycles from ``start`` to ``done`` of :class:`DescriptorCheck`: the cycle of ``start`` (the
#: descriptor is being latched), the steps, then the cycle that compares and registers the reason.
CHECK_LATENCY = CHECK_STEPS + 2


def config_limited(d, *, max_width, max_entries, eight_bit_mode=1):
    """Whether a descriptor the model accepts is beyond a gateware configuration
    (:attr:`.layouts.GatewareReason.CONFIG_LIMIT`): the Python statement of the limits
    :class:`DescriptorCheck` applies (and the engine's buffers assume)."""
    if d.depth_wise_layer:
        entries = 1
    elif d.kernel_type == 1:
        entries = d.i_ch_num
    else:
        entries = (d.i_ch_num + 8) // 9
    return d.i_row_wid > max_width or entries > max_entries or not eight_bit_mode


def _sum_exceeds(a, b, limit):
    """``(a + b > limit, a + b)`` for unsigned values and a constant ``limit``, adding only
    ``limit``'s bits: a higher bit of ``a`` or ``b`` exceeds it by itself. The sum returned is
    right only when it does not exceed ``limit``."""
    n = limit.bit_length()
    low = a[:n] + b[:n]
    return Cat(a[n:], b[n:]).any() | (low > limit), low


class _ShiftAdd:
    """``multiplicand × multiplier`` in ``steps`` steps, LSB first.

    Each step adds the multiplicand (when the multiplier's bit is 1) to the upper part ``acc``
    and shifts the sum right by one: its low bit moves into ``low``. After ``steps`` steps
    ``Cat(low, acc)`` is the product. ``acc`` never exceeds the multiplicand's magnitude, so it
    has the multiplicand's width. Operands must hold still from the first step to the last.
    """

    def __init__(self, m, name, multiplicand, multiplier, steps):
        if len(multiplier) > steps:
            raise ValueError(f"{name}: a {len(multiplier)}-bit multiplier needs more than "
                             f"{steps} steps")
        self._name = name
        self.acc = Signal(multiplicand.shape(), name=f"{name}_acc")
        self.low = Signal(steps, name=f"{name}_low")
        self._m = m
        self._multiplicand = multiplicand
        self._multiplier = Signal(steps, name=f"{name}_multiplier")
        m.d.comb += self._multiplier.eq(multiplier)

    def clear(self):
        self._m.d.sync += self.acc.eq(0)

    def step(self, k):
        """Add for multiplier bit ``k`` (a signal) and shift."""
        width = len(self.acc)
        shape = signed(width + 1) if self.acc.shape().signed else unsigned(width + 1)
        total = Signal(shape, name=f"{self._name}_sum")
        bit = self._multiplier.bit_select(k, 1)
        self._m.d.comb += total.eq(self.acc + Mux(bit, self._multiplicand, 0))
        self._m.d.sync += [self.acc.eq(total[1:]), self.low.eq(Cat(self.low[1:], total[0]))]

    @property
    def product(self):
        value = Cat(self.low, self.acc)
        return value.as_signed() if self.acc.shape().signed else value


class DescriptorCheck(wiring.Component):
    """Reason code of a layer descriptor, over :data:`CHECK_LATENCY` cycles.

    The ten products the checks need (layout sizes, weight loads, map and weight ranges) and
    ``arg_add · G`` are computed by as many shift-add datapaths in lockstep, one multiplier bit a
    cycle; the comparisons follow in one more cycle. Every other value (widths, strides, channel
    blocks) is a few gates from the descriptor.

    Parameters
    ----------
    ram_lines : int
        KPU RAM size in 64-byte lines (:attr:`GatewareReason.SRC_RANGE` and ``DST_RANGE``).
    weight_bytes : int
        Weight memory size in bytes (:attr:`GatewareReason.WEIGHT_RANGE`).
    max_width, max_entries : int
        The configuration's limits (:attr:`GatewareReason.CONFIG_LIMIT`, see
        :func:`config_limited`).

    Raises
    ------
    ValueError
        On a parameter out of range, e.g. ``"Maximum width must be an integer in 1..1024, not
        0"``.

    Members
    -------
    desc : In(DescriptorLayout)
        The descriptor; must hold still from the cycle after ``start`` until ``done``.
    eight_bit_mode : In(1)
        0 (16-bit weights) gives ``CONFIG_LIMIT``; must hold still like ``desc``.
    start : In(1)
        Begin a check (any check under way is abandoned).
    done : Out(1)
        One-cycle pulse :data:`CHECK_LATENCY` cycles after ``start``.
    reason : Out(REASON_BITS)
        A :class:`.layouts.GatewareReason`: the first failing check in the order of
        :func:`.model.check`, then ``CONFIG_LIMIT``; ``OK`` if none. Valid from ``done`` until
        the next ``start``.
    add_term : Out(signed(51))
        ``arg_add · G`` (``G`` = input channels, 1 when depthwise), exact; valid like
        ``reason``, whatever the reason.
    """

    def __init__(self, *, ram_lines, weight_bytes, max_width, max_entries):
        with checking(self):
            _check_int("KPU RAM lines", ram_lines, 1, 1 << 15)
            _check_int("Weight memory bytes", weight_bytes, ACT_TABLE_BYTES, 1 << 32)
            _check_int("Maximum width", max_width, 1, 1024)
            _check_int("Maximum entries", max_entries, 1, 1024)
        self._ram_lines = ram_lines
        self._weight_bytes = weight_bytes
        self._max_width = max_width
        self._max_entries = max_entries
        add_shape = signed(DescriptorLayout["arg_add"].shape.width + CHECK_STEPS)
        super().__init__({
            "desc": In(DescriptorLayout),
            "eight_bit_mode": In(1),
            "start": In(1),
            "done": Out(1),
            "reason": Out(REASON_BITS),
            "add_term": Out(add_shape),
        })

    def elaborate(self, platform):
        m = Module()
        d = self.desc
        R = GatewareReason

        # Sizes and derived counts: real values (descriptor fields hold value − 1).
        C, OC, PL = Signal(11), Signal(11), Signal(11)  # channels in, out, out per load
        W, OW, H, OH = Signal(11), Signal(11), Signal(10), Signal(10)
        LT = Signal(7)                      # weight loads
        plane = Signal(17)                  # channel_byte_num
        k3, dw = Signal(), Signal()
        m.d.comb += [
            C.eq(d.i_ch_num + 1), OC.eq(d.o_ch_num + 1), PL.eq(d.o_ch_num_coef + 1),
            W.eq(d.i_row_wid + 1), OW.eq(d.o_row_wid + 1),
            H.eq(d.i_col_high + 1), OH.eq(d.o_col_high + 1),
            LT.eq(d.load_time + 1), plane.eq(d.channel_byte_num + 1),
            k3.eq(d.kernel_type == 1), dw.eq(d.depth_wise_layer),
        ]
        # As the engine writes them, so that synthesis merges the two.
        g_ic = Signal(11)                   # input channels per output channel
        per_oc = Signal(14)                 # weight bytes per output channel
        m.d.comb += [
            g_ic.eq(Mux(dw, 1, C)),
            per_oc.eq(Mux(k3, g_ic * 9, g_ic)),
        ]
        # log2 of the pool stride (0 for the invalid pool types, rejected before it matters).
        stride_shift = Signal(2)
        with m.Switch(d.pool_type):
            for pool in PoolType:
                with m.Case(pool):
                    m.d.comb += stride_shift.eq(pool_stride(pool).bit_length() - 1)
        # Row layout (featuremap.row_layout): groups of channels a line, lines a row.
        row_len_in, row_len_out = Signal(5), Signal(5)
        groups_in, groups_out = Signal(3), Signal(3)
        group_shift_in, group_shift_out = Signal(2), Signal(2)
        for width, row_len, groups, shift in ((W, row_len_in, groups_in, group_shift_in),
                                              (OW, row_len_out, groups_out, group_shift_out)):
            m.d.comb += [row_len.eq((width + 63) >> 6),
                         shift.eq(Mux(width <= 16, 2, Mux(width <= 32, 1, 0))),
                         groups.eq(1 << shift)]
        in_blocks, out_blocks = Signal(11), Signal(11)  # channel blocks of the maps
        m.d.comb += [in_blocks.eq((C + groups_in - 1) >> group_shift_in),
                     out_blocks.eq((OC + groups_out - 1) >> group_shift_out)]

        # ---- products, in lockstep ---------------------------------------------------------
        products = {
            "chsw": (row_len_in, H),                          # lines a channel block, input
            "wbchsw": (row_len_out, OH),                      # the same, output
            "plane": (OW, OH),
            "total": (plane, OC),                             # channel_byte_num · O
            "para": (per_oc, PL),                             # bytes a load
            "loads": (PL, LT),                                # channels of LT loads
            "src_lines": (d.channel_switch_addr[:BLOCK_LINE_BITS], in_blocks),
            "dst_lines": (d.wb_channel_switch_addr[:BLOCK_LINE_BITS], out_blocks),
            "weights": (per_oc, OC),                          # weight bytes of the layer
            "add_term": (d.arg_add, g_ic),
        }
        mul = {name: _ShiftAdd(m, f"chk_{name}", a, b, CHECK_STEPS)
               for name, (a, b) in products.items()}
        p = {name: unit.product for name, unit in mul.items()}
        m.d.comb += self.add_term.eq(p["add_term"])

        k = Signal(range(CHECK_STEPS))
        running = Signal()
        finishing = Signal()
        m.d.sync += [self.done.eq(0), finishing.eq(0)]
        with m.If(self.start):
            m.d.sync += [k.eq(0), running.eq(1)]
            for unit in mul.values():
                unit.clear()
        with m.Elif(running):
            for unit in mul.values():
                unit.step(k)
            m.d.sync += k.eq(k + 1)
            with m.If(k == CHECK_STEPS - 1):
                m.d.sync += [running.eq(0), finishing.eq(1)]

        # ---- comparisons (the cycle after the last step), first failure wins ---------------
        unsupported = (d.first_stride | d.bypass_conv | d.pad_type | d.ram_flag | d.full_add
                       | (d.coef_column_offset != 0) | (d.coef_row_offset != 0)
                       | (d.coef_size != 0) | ~d.load_para | ~d.load_coor | ~d.load_act)
        # channel_byte_num = OW·OH makes channel_byte_num · O the real dma_total_byte check.
        layout_ok = ((row_len_in < 16) & (row_len_out < 16)
                     & (d.row_switch_addr == row_len_in) & (d.channel_switch_addr == p["chsw"])
                     & (d.coef_group == groups_in)
                     & (d.wb_row_switch_addr == row_len_out)
                     & (d.wb_channel_switch_addr == p["wbchsw"])
                     & (d.wb_group == groups_out)
                     & (plane == p["plane"])
                     # + 1 on the product's bits only
                     & (d.dma_total_byte[len(p["total"]):] == 0)
                     & (d.dma_total_byte[:len(p["total"])] + 1 == p["total"]))
        # load_time = ⌈O / PL⌉  ⇔  (LT − 1)·PL < O ≤ LT·PL.
        loads_ok = ((d.o_ch_num_coef <= d.o_ch_num) & (d.para_size == p["para"])
                    & (p["loads"] - PL < OC) & (p["loads"] >= OC))
        # The channel_switch_addr fields are the layout's lines a block once LAYOUT has passed
        # (so their top bits are 0 and the products above are exact).
        src_bad, src_end = _sum_exceeds(d.image_src_addr, p["src_lines"], self._ram_lines)
        dst_bad, dst_end = _sum_exceeds(d.image_dst_addr, p["dst_lines"], self._ram_lines)
        # Reached only when both maps end inside the RAM: the low bits of the addresses do.
        lines_bits = len(src_end) - 1
        overlap = ((d.image_src_addr[:lines_bits] < dst_end)
                   & (d.image_dst_addr[:lines_bits] < src_end))
        weights_bad = (_sum_exceeds(d.para_start_addr, p["weights"], self._weight_bytes)[0]
                       | _sum_exceeds(d.bwsx_base_addr, OC * BN_ENTRY_BYTES, self._weight_bytes)[0]
                       # active_addr + 144 > size  ⇔  active_addr > size − 144
                       | _sum_exceeds(d.active_addr, Const(0),
                                      self._weight_bytes - ACT_TABLE_BYTES)[0]
                       | (d.bwsx_base_addr[:3] != 0) | (d.active_addr[:3] != 0))
        # Entries (config_limited): C for 3×3, ⌈C / 9⌉ for 1×1, 1 when depthwise.
        limits_bad = ((W > self._max_width)
                      | (~dw & Mux(k3, C > self._max_entries, C > 9 * self._max_entries))
                      | ~self.eight_bit_mode)
        result = Signal(REASON_BITS)
        with m.If(d.kernel_type > 1):
            m.d.comb += result.eq(R.KERNEL_TYPE)
        with m.Elif(d.pool_type > 9):
            m.d.comb += result.eq(R.POOL_TYPE)
        with m.Elif(unsupported):
            m.d.comb += result.eq(R.UNSUPPORTED_MODE)
        with m.Elif(dw & (C != OC)):
            m.d.comb += result.eq(R.CHANNELS)
        with m.Elif((OW != (W >> stride_shift)) | (OH != (H >> stride_shift))):
            m.d.comb += result.eq(R.OUTPUT_SIZE)
        with m.Elif(~layout_ok):
            m.d.comb += result.eq(R.LAYOUT)
        with m.Elif(~loads_ok):
            m.d.comb += result.eq(R.WEIGHT_LOADS)
        with m.Elif(src_bad):
            m.d.comb += result.eq(R.SRC_RANGE)
        with m.Elif(dst_bad):
            m.d.comb += result.eq(R.DST_RANGE)
        with m.Elif(overlap):
            m.d.comb += result.eq(R.OVERLAP)
        with m.Elif(weights_bad):
            m.d.comb += result.eq(R.WEIGHT_RANGE)
        with m.Elif(limits_bad):
            m.d.comb += result.eq(R.CONFIG_LIMIT)
        with m.Else():
            m.d.comb += result.eq(R.OK)
        with m.If(finishing & ~self.start):
            m.d.sync += [self.reason.eq(result), self.done.eq(1)]
        return m


class WeightTerms(wiring.Component):
    """``w_term[j] = (arg_w · Σw[j]) >> shr_w`` of every lane, bit-serially, all lanes at once.

    Each lane's register first holds its ``Σw``; ``sum_bits`` shift-add steps (one ``arg_w``-wide
    adder a lane) turn it into ``arg_w · Σw``, then ``shr_w`` plain arithmetic shifts into the
    term: ``sum_bits + shr_w`` cycles after ``start`` (at most ``sum_bits + 15``).

    Parameters
    ----------
    lanes : int
    sum_bits : int
        Bits of ``Σw`` (unsigned).

    Raises
    ------
    ValueError
        On a parameter out of range.

    Members
    -------
    load : In(1)
        Store ``sum`` as lane ``lane``'s ``Σw``. May come with ``start`` (the last lane).
    lane : In(range(lanes))
    sum : In(sum_bits)
    start : In(1)
        Compute every lane's term from the sums loaded; ``arg_w`` and ``shr_w`` must hold still
        from the cycle after ``start`` until ``ready``.
    arg_w : In(signed(24))
    shr_w : In(4)
    ready : Out(1)
        The terms are those of the last ``start``; 0 from a ``load`` or ``start`` until they are.
    terms : Out(ArrayLayout(signed(24 + sum_bits), lanes))
        ``(arg_w · Σw) >> shr_w`` (floor) of each lane, exact.
    """

    def __init__(self, *, lanes, sum_bits):
        with checking(self):
            _check_int("Lanes", lanes, 1, 64)
            _check_int("Σw bits", sum_bits, 1, 32)
        self._lanes = lanes
        self._sum_bits = sum_bits
        arg_w = DescriptorLayout["arg_w"].shape
        shr_w = DescriptorLayout["shr_w"].shape
        super().__init__({
            "load": In(1),
            "lane": In(range(lanes)),
            "sum": In(sum_bits),
            "start": In(1),
            "arg_w": In(arg_w),
            "shr_w": In(shr_w),
            "ready": Out(1),
            "terms": Out(data.ArrayLayout(signed(arg_w.width + sum_bits), lanes)),
        })

    def elaborate(self, platform):
        m = Module()
        N = self._sum_bits
        n = Signal(range(N + 2 ** len(self.shr_w)))     # step
        running = Signal()
        with m.If(self.load | self.start):
            m.d.sync += self.ready.eq(0)
        with m.If(self.start):
            m.d.sync += [n.eq(0), running.eq(1)]
        with m.Elif(running):
            m.d.sync += n.eq(n + 1)
            with m.If(n == N - 1 + self.shr_w):
                m.d.sync += [running.eq(0), self.ready.eq(1)]
        adding = Signal()
        m.d.comb += adding.eq(n < N)
        for j in range(self._lanes):
            term = Signal(self.terms.shape().elem_shape, name=f"w_term_{j}")
            m.d.comb += self.terms[j].eq(term)
            low, acc = term[:N], term[N:].as_signed()   # Σw's remaining bits, upper product
            total = Signal(signed(len(self.arg_w) + 1), name=f"w_term_sum_{j}")
            m.d.comb += total.eq(acc + Mux(adding & low[0], self.arg_w, 0))
            with m.If(self.load & (self.lane == j)):
                m.d.sync += term.eq(self.sum)
            with m.Elif(running & ~self.start):
                m.d.sync += term.eq(Cat(low[1:], total))
        return m
