"""Bit-serial arithmetic of the KPU engine: the descriptor check and the conv stage's constant
terms, built from shift-add steps instead of parallel multipliers.

- :class:`DescriptorCheck`: latches a descriptor's words, keeping only what the engine and the
  check need, then gives its reason code (the order of :func:`.model.check`, then this
  configuration's limits) and ``add_term = arg_add · G`` (modulo ``2**ACC_BITS``).
- :class:`WeightTerms`: ``w_term = (arg_w · Σw) >> shr_w`` of every lane.

Both run their products in lockstep, one multiplier bit a cycle (radix 2, least significant
bit first): a product of an ``n``-bit multiplicand costs one ``n + 1``-bit adder and its
register, whatever the multiplier's width; the latency is the widest multiplier's bits.
On iCE40 each step's choice between ``acc`` and ``acc + multiplicand`` shares the adder's LUT,
and comparisons with constants are written as plain logic (Yosys turns ``x > c`` into a carry
chain that ABC cannot shrink). The check keeps no product's low bits: it compares each bit as
a step shifts it out, into one flag a comparison, and a multiplier that is a field + 1 gets
its 1 bit-serially too (no incrementer).
"""

from amaranth.hdl import Cat, Const, Module, Mux, Signal, Value, signed, unsigned
from amaranth.lib import data, wiring
from amaranth.lib.wiring import In, Out

from ..params import checking
from .compare import gt_const
from .descriptor import ACT_TABLE_BYTES, BN_ENTRY_BYTES, FIELDS, PoolType, _check_int, pool_stride
from .layouts import (DESCRIPTOR_WORDS, DescriptorLayout, GatewareReason, REASON_BITS, WORD_BITS,
                      WORD_LAYOUTS)
from .post import ACC_BITS

__all__ = ["CHECK_STEPS", "CHECK_LATENCY", "DescriptorCheck", "WeightTerms", "config_limited"]

#: Multiplier bits of the check's products: channel counts, per-load channels and channel
#: blocks reach 1024 (11 bits); heights 512, load counts 64.
CHECK_STEPS = 11
#: Bits of a channel block's lines (``channel_switch_addr``) once LAYOUT has passed: fewer than
#: 16 lines a row, at most 512 rows.
BLOCK_LINE_BITS = (15 * 512).bit_length()
#: Bits of ``dma_total_byte`` (value − 1) once LAYOUT has passed: at most 65536 bytes a channel,
#: 1024 channels.
TOTAL_BYTE_BITS = (65536 * 1024 - 1).bit_length()
#: Fields the check only tests against the value each must have (for UNSUPPORTED_MODE, in the
#: order of :func:`.model.check`): each word keeps one flag for its fields, not the fields.
SUPPORTED_VALUES = {"first_stride": 0, "bypass_conv": 0, "pad_type": 0, "ram_flag": 0,
                    "full_add": 0, "coef_column_offset": 0, "coef_row_offset": 0,
                    "coef_size": 0, "load_para": 1, "load_coor": 1, "load_act": 1}
#: Fields nothing reads (accepted whatever their value, see :func:`.model.check`).
IGNORED_FIELDS = ("dma_burst_size", "send_data_out")
#: Fields only the check reads, one bit a step (a multiplier, or compared with a product): each
#: is latched in a register of the check's own that shifts right a bit a step, so that the bit
#: a step needs is bit 0 (no multiplexer of the step's bit).
SHIFTED_FIELDS = ("o_ch_num_coef", "para_size", "dma_total_byte")
#: Fields the check reads one bit a step that the engine reads too: each rotates through a
#: ``CHECK_STEPS``-bit ring (the field and zeros) a bit a step, back in place after the last
#: step. Fields kept wider than the ring are read through a multiplexer instead.
ROTATED_FIELDS = ("image_src_addr", "image_dst_addr", "i_col_high", "o_col_high", "o_ch_num")
#: Cycles from ``start`` to ``done`` of :class:`DescriptorCheck`: the cycle of ``start`` (the
#: descriptor is being latched), the step that adds the initial values, the multiplier steps,
#: then the cycle that compares and registers the reason.
CHECK_LATENCY = CHECK_STEPS + 3

#: The word of each field.
_WORD_OF = {field.name: field.word for field in FIELDS}
assert _WORD_OF["o_ch_num_coef"] == _WORD_OF["o_ch_num"]


def config_limited(d, *, max_width, max_entries, max_channels_1x1=None, eight_bit_mode=1):
    """Whether a descriptor the model accepts is beyond a gateware configuration
    (:attr:`.layouts.GatewareReason.CONFIG_LIMIT`): the Python statement of the limits
    :class:`DescriptorCheck` applies (and the engine's buffers assume). ``max_channels_1x1``:
    input channels of a 1×1 layer, ``9 · max_entries`` unless given
    (:attr:`.engine.KpuEngine.max_channels_1x1`)."""
    if max_channels_1x1 is None:
        max_channels_1x1 = 9 * max_entries
    if d.depth_wise_layer:
        too_many = False
    elif d.kernel_type == 1:
        too_many = d.i_ch_num > max_entries
    else:
        too_many = d.i_ch_num > max_channels_1x1
    return d.i_row_wid > max_width or too_many or not eight_bit_mode


def _lt(a, b, low_lt):
    """``a < b`` for unsigned values of one width, the upper parts of longer values whose lower
    parts compare ``low_lt``, from the least significant bit up (a bit that differs decides)."""
    lt = low_lt
    for i in range(len(a)):
        lt = Mux(a[i] ^ b[i], b[i], lt)
    return lt


def _sum_exceeds(a, b, limit):
    """``a + b > limit`` for unsigned values and a constant ``limit``, adding only ``limit``'s
    bits: a higher bit of ``a`` or ``b`` exceeds it by itself."""
    n = limit.bit_length()
    return Cat(a[n:], b[n:]).any() | gt_const(a[:n] + b[:n], limit)


class _MinusOne:
    """A :class:`_ShiftAdd` multiplier given as its value − 1 (a descriptor field as it is): the
    steps add the 1 bit-serially (a carry flag) instead of an incrementer."""

    def __init__(self, value):
        self.value = value


class _Serial:
    """A value seen a bit a step: ``bit`` is its bit ``k`` at the step for bit ``k`` (bit 0 of a
    register that shifts or rotates a bit a step), ``upper`` its bits from ``CHECK_STEPS`` up
    once the steps are done. A :class:`_ShiftAdd` multiplier (also inside :class:`_MinusOne`)
    or a field compared with a product."""

    def __init__(self, bit, width, upper=Const(0, 0), ring=None):
        self.bit = bit
        self.width = width
        self.upper = upper
        self.ring = ring                # a rotating register: bit i is the value's bit k + i

    @classmethod
    def shifting(cls, register):
        """A register that shifts right a bit a step."""
        return cls(register[0], len(register), register[:max(len(register) - CHECK_STEPS, 0)])


class _ShiftAdd:
    """``init + multiplicand × multiplier`` for unsigned ``init``, in ``steps + 1`` steps.

    A first step adds ``init``; each later one adds the multiplicand (when the multiplier's bit
    is 1) to the upper part ``acc``. Every step shifts the sum right by one: the step for
    multiplier bit ``k`` shifts out bit ``k`` of the result (``emitted``), the first step a 0.
    With ``keep_low`` the bits shifted out go into ``low`` (the first step's 0 falls out at the
    end) and after the last step ``product`` = ``Cat(low, acc)`` is the result; without it the
    caller uses ``emitted`` as it goes by, and ``acc`` holds the result's upper bits. ``acc``
    never exceeds the larger of ``init`` and the multiplicand, so it has their width. Folding
    ``init`` into the first step's addend costs no adder of its own. Operands must hold still
    from the first step to the last. ``multiplier_bit`` is the multiplier's bit at the step.
    """

    def __init__(self, m, name, multiplicand, multiplier, steps, init=None, keep_low=True):
        minus_one = isinstance(multiplier, _MinusOne)
        if minus_one:
            multiplier = multiplier.value
        width = multiplier.width if isinstance(multiplier, _Serial) else len(multiplier)
        if width + minus_one > steps:
            raise ValueError(f"{name}: a {width + minus_one}-bit multiplier needs more "
                             f"than {steps} steps")
        if init is not None and multiplicand.shape().signed:
            raise ValueError(f"{name}: init needs an unsigned multiplicand")
        self._name = name
        self._m = m
        self._multiplicand = multiplicand
        self._has_init = init is not None
        self._init = Const(0, 1) if init is None else init
        width = max(len(multiplicand), len(self._init))
        self.acc = Signal(signed(width) if multiplicand.shape().signed else unsigned(width),
                          name=f"{name}_acc")
        self.low = Signal(steps, name=f"{name}_low") if keep_low else None
        if isinstance(multiplier, _Serial):
            self._given = lambda k: multiplier.bit
        else:
            self._multiplier = Signal(steps, name=f"{name}_multiplier")
            m.d.comb += self._multiplier.eq(multiplier)
            self._given = lambda k: self._multiplier.bit_select(k, 1)
        # With a multiplier m − 1: m's bit k is (m − 1)'s bit k plus the carry of the bits below.
        self._carry = Signal(name=f"{name}_carry") if minus_one else None
        self.multiplier_bit = Signal(name=f"{name}_multiplier_bit")
        self.emitted = Signal(name=f"{name}_emitted")

    def clear(self):
        self._m.d.sync += self.acc.eq(0)

    def step(self, k, first):
        """The first step (``first``, a signal) or the one for multiplier bit ``k``."""
        width = len(self.acc)
        shape = signed(width + 1) if self.acc.shape().signed else unsigned(width + 1)
        bit = self.multiplier_bit
        given = self._given(k)
        if self._carry is None:
            self._m.d.comb += bit.eq(given)
        else:
            # The first step sets the carry in (the + 1), each later one the carry out.
            self._m.d.comb += bit.eq(given ^ self._carry)
            self._m.d.sync += self._carry.eq(first | (self._carry & given))
        # acc + Mux(bit, multiplicand, 0) as Mux(bit, acc + multiplicand, acc): each bit's
        # choice then shares the adder's LUT (its inputs: acc, multiplicand, carry and bit).
        if self._has_init:
            # init · 2 so that the shift leaves init (acc is 0 before the first step).
            addend, take = Mux(first, Cat(Const(0, 1), self._init), self._multiplicand), first | bit
        else:
            addend, take = self._multiplicand, bit & ~first
        chosen = Signal(shape, name=f"{self._name}_sum")
        self._m.d.comb += chosen.eq(Mux(take, self.acc + addend, self.acc))
        self._m.d.comb += self.emitted.eq(chosen[0])
        self._m.d.sync += self.acc.eq(chosen[1:])
        if self.low is not None:
            self._m.d.sync += self.low.eq(Cat(self.low[1:], chosen[0]))

    @property
    def product(self):
        if self.low is None:
            raise ValueError(f"{self._name}: no product without keep_low")
        value = Cat(self.low, self.acc)
        return value.as_signed() if self.acc.shape().signed else value


class DescriptorCheck(wiring.Component):
    """Latched descriptor and its reason code, over :data:`CHECK_LATENCY` cycles.

    The words are latched as they come, each reduced to what the engine and the check need:
    fields the check only tests (:data:`SUPPORTED_VALUES`) become one flag a word, and fields
    wider than any value that can pass (addresses, ``dma_total_byte``, ...) keep their low bits
    plus one flag a word for the bits above, set when they are not 0 (their layer fails with
    the reason the model gives); ``arg_add`` keeps the :data:`.post.ACC_BITS` bits the
    accumulators keep. :attr:`latched_layout` lists what is kept.

    The nine products the checks need (layout sizes, weight loads, map and weight ends, some
    with a descriptor field added) and ``arg_add · G`` are computed by as many shift-add
    datapaths in lockstep, one multiplier bit a cycle after a step that adds the initial
    values. Each step compares the product bit it shifts out (least significant first) into one
    flag a comparison; the cycle after the last step combines the flags with the products'
    upper bits. Every other value (widths, strides, channel blocks) is a few gates from the
    descriptor.

    Parameters
    ----------
    ram_lines : int
        KPU RAM size in 64-byte lines (:attr:`GatewareReason.SRC_RANGE` and ``DST_RANGE``).
    weight_bytes : int
        Weight memory size in bytes (:attr:`GatewareReason.WEIGHT_RANGE`).
    max_width, max_entries : int
        The configuration's limits (:attr:`GatewareReason.CONFIG_LIMIT`, see
        :func:`config_limited`).
    max_channels_1x1 : int or None
        Input channels of a 1×1 layer; ``9 · max_entries`` if None.

    Raises
    ------
    ValueError
        On a parameter out of range, e.g. ``"Maximum width must be an integer in 1..1024, not
        0"``.

    Members
    -------
    word : In(WORD_BITS)
        A descriptor word.
    index : In(range(DESCRIPTOR_WORDS))
        Its place in the descriptor.
    load : In(1)
        Latch ``word`` as word ``index``. Not from the cycle after ``start`` until ``done``;
        may come with ``start``.
    desc : Out(latched_layout)
        The latched fields (``minus_one`` fields as ``value − 1``, as in the words). A narrowed
        field is the value itself once the check has passed. Not valid from the cycle after
        ``start`` until ``done``: the :data:`ROTATED_FIELDS` rotate during a check.
    eight_bit_mode : In(1)
        0 (16-bit weights) gives ``CONFIG_LIMIT``; must hold still from the cycle after
        ``start`` until ``done``.
    start : In(1)
        Begin a check of the words latched (any check under way is abandoned; an abandoned
        check leaves the rotated fields out of place: latch the words again).
    done : Out(1)
        One-cycle pulse :data:`CHECK_LATENCY` cycles after ``start``.
    reason : Out(REASON_BITS)
        A :class:`.layouts.GatewareReason`: the first failing check in the order of
        :func:`.model.check`, then ``CONFIG_LIMIT``; ``OK`` if none. Valid from ``done`` until
        the next ``start``.
    add_term : Out(signed(ACC_BITS + CHECK_STEPS))
        ``arg_add · G`` (``G`` = input channels, 1 when depthwise) modulo ``2**ACC_BITS`` (the
        product of ``arg_add`` wrapped to :data:`.post.ACC_BITS` bits); valid like ``reason``,
        whatever the reason.
    """

    def __init__(self, *, ram_lines, weight_bytes, max_width, max_entries,
                 max_channels_1x1=None):
        if max_channels_1x1 is None:
            max_channels_1x1 = 9 * max_entries
        with checking(self):
            _check_int("KPU RAM lines", ram_lines, 1, 1 << 15)
            _check_int("Weight memory bytes", weight_bytes, ACT_TABLE_BYTES, 1 << 32)
            _check_int("Maximum width", max_width, 1, 1024)
            _check_int("Maximum entries", max_entries, 1, 1024)
            _check_int("Maximum 1×1 channels", max_channels_1x1, 1, 9 * max_entries)
        self._ram_lines = ram_lines
        self._weight_bytes = weight_bytes
        self._max_width = max_width
        self._max_entries = max_entries
        self._max_channels_1x1 = max_channels_1x1
        # Kept bits of the narrowed fields: a map's first line is below ram_lines, a table's or
        # the weights' first byte below weight_bytes (else its range check fails).
        ram_addr_bits = max(1, (ram_lines - 1).bit_length())
        weight_addr_bits = max(1, (weight_bytes - 1).bit_length())
        self._kept_bits = {
            "kernel_type": 1,                                 # 2..7: KERNEL_TYPE
            "image_src_addr": ram_addr_bits, "image_dst_addr": ram_addr_bits,
            "bwsx_base_addr": weight_addr_bits, "para_start_addr": weight_addr_bits,
            "active_addr": weight_addr_bits,
            "channel_switch_addr": BLOCK_LINE_BITS, "wb_channel_switch_addr": BLOCK_LINE_BITS,
            "dma_total_byte": TOTAL_BYTE_BITS,
            "arg_add": ACC_BITS,
        }
        fields = {}
        for field in FIELDS:
            if field.name in (*SUPPORTED_VALUES, *IGNORED_FIELDS, *SHIFTED_FIELDS):
                continue
            width = min(field.width, self._kept_bits.get(field.name, field.width))
            fields[field.name] = signed(width) if field.signed else unsigned(width)
        self._latched_layout = data.StructLayout(fields)
        super().__init__({
            "word": In(WORD_BITS),
            "index": In(range(DESCRIPTOR_WORDS)),
            "load": In(1),
            "desc": Out(self._latched_layout),
            "eight_bit_mode": In(1),
            "start": In(1),
            "done": Out(1),
            "reason": Out(REASON_BITS),
            "add_term": Out(signed(ACC_BITS + CHECK_STEPS)),
        })

    latched_layout = property(lambda self: self._latched_layout)

    def _latch(self, m, step):
        """Latch each word's kept bits, and its flags. Returns ``{reason: flag}`` (a flag of any
        word set) and ``{name: _Serial}`` of :data:`SHIFTED_FIELDS` (which shift right on
        ``step``) and the :data:`ROTATED_FIELDS` that fit their ring (which rotate)."""
        R = GatewareReason
        flags = {}
        serial = {}
        for index, word_layout in enumerate(WORD_LAYOUTS):
            word = data.View(word_layout, self.word)
            # Conditions of this word that make the layer fail, by reason.
            conditions = {}

            def fails(reason, condition):
                conditions[reason] = conditions.get(reason, Const(0)) | condition

            for name, _ in word_layout:
                value = Value.cast(word[name])
                if name in SUPPORTED_VALUES:
                    fails(R.UNSUPPORTED_MODE, value != SUPPORTED_VALUES[name])
                elif name in IGNORED_FIELDS:
                    continue
                elif name in SHIFTED_FIELDS:
                    kept = min(len(value), self._kept_bits.get(name, len(value)))
                    register = Signal(kept, name=f"chk_{name}")
                    serial[name] = _Serial.shifting(register)
                    with m.If(self.load & (self.index == index)):
                        m.d.sync += register.eq(value[:kept])
                    with m.Elif(step):
                        m.d.sync += register.eq(register >> 1)
                else:
                    kept = len(Value.cast(self.desc[name]))
                    rotates = name in ROTATED_FIELDS and kept <= CHECK_STEPS
                    zeros = Signal(CHECK_STEPS - kept, name=f"chk_{name}_zeros") if rotates else 0
                    with m.If(self.load & (self.index == index)):
                        m.d.sync += self.desc[name].eq(value[:kept])
                        if rotates:
                            m.d.sync += zeros.eq(0)
                    if rotates:
                        ring = Cat(self.desc[name], zeros)
                        with m.Elif(step):
                            m.d.sync += ring.eq(ring.rotate_right(1))
                        serial[name] = _Serial(ring[0], kept, ring=ring)
                    if name == "kernel_type":
                        fails(R.KERNEL_TYPE, value[kept:] != 0)
                    elif name in ("image_src_addr", "image_dst_addr"):
                        fails(R.SRC_RANGE if name == "image_src_addr" else R.DST_RANGE,
                              value[kept:] != 0)
                    elif name in ("bwsx_base_addr", "active_addr"):   # also 8-byte aligned
                        fails(R.WEIGHT_RANGE, (value[kept:] != 0) | (value[:3] != 0))
                    elif name == "para_start_addr":
                        fails(R.WEIGHT_RANGE, value[kept:] != 0)
                    elif name in ("channel_switch_addr", "wb_channel_switch_addr"):
                        fails(R.LAYOUT, value[kept:] != 0)
                    # arg_add: the bits above ACC_BITS do not change add_term's kept bits.
                if name == "dma_total_byte":
                    fails(R.LAYOUT, value[kept:] != 0)
            for reason, condition in conditions.items():
                flag = Signal(name=f"chk_word{index}_{R(reason).name.lower()}")
                with m.If(self.load & (self.index == index)):
                    m.d.sync += flag.eq(condition)
                flags.setdefault(reason, []).append(flag)
        return ({reason: Cat(*word_flags).any() for reason, word_flags in flags.items()},
                serial)

    def elaborate(self, platform):
        m = Module()
        step = Signal()                     # a multiplier step (not the first, adding init)
        flags, serial = self._latch(m, step)
        d = self.desc
        R = GatewareReason
        # o_ch_num_coef = o_ch_num (WEIGHT_LOADS), before o_ch_num_coef shifts: the two fields
        # share a word.
        word = _WORD_OF["o_ch_num"]
        per_load_all = Signal(name="chk_per_load_all")
        with m.If(self.load & (self.index == word)):
            fields = data.View(WORD_LAYOUTS[word], self.word)
            m.d.sync += per_load_all.eq(fields.o_ch_num_coef == fields.o_ch_num)

        # Sizes and derived counts: real values (descriptor fields hold value − 1). Where a
        # field's value − 1 serves as well, it is used as it is: each + 1 is an adder.
        C, OC = Signal(11), Signal(11)      # channels in, out
        W, OW, H, OH = Signal(11), Signal(11), Signal(10), Signal(10)
        k3, dw = Signal(), Signal()
        m.d.comb += [
            C.eq(d.i_ch_num + 1), OC.eq(d.o_ch_num + 1),
            W.eq(d.i_row_wid + 1), OW.eq(d.o_row_wid + 1),
            H.eq(d.i_col_high + 1), OH.eq(d.o_col_high + 1),
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
        # Row layout (featuremap.row_layout): lines a row ⌈width / 64⌉ = (width − 1) // 64 + 1,
        # groups of channels a line 4, 2, 1 for widths up to 16, 32, 64 and beyond.
        row_len_in, row_len_out = Signal(5), Signal(5)
        groups_in, groups_out = Signal(3), Signal(3)
        group_shift_in, group_shift_out = Signal(2), Signal(2)
        for width_m1, row_len, groups, shift in (
                (d.i_row_wid, row_len_in, groups_in, group_shift_in),
                (d.o_row_wid, row_len_out, groups_out, group_shift_out)):
            m.d.comb += [row_len.eq(width_m1[6:] + 1),
                         shift.eq(Mux(width_m1[4:] == 0, 2, Mux(width_m1[5:] == 0, 1, 0))),
                         groups.eq(1 << shift)]
        # The step: 0 for the first step and the one for multiplier bit 0, and so on.
        k = Signal(range(CHECK_STEPS))

        def stepped(name):
            """A field as a multiplier or compared bit-serially: rotating if it can."""
            return serial.get(name, d[name])

        # Channel blocks of the maps − 1: ⌈C / groups⌉ − 1 = (C − 1) >> log2(groups).
        in_blocks_m1 = Signal(10)
        m.d.comb += in_blocks_m1.eq(d.i_ch_num >> group_shift_in)
        # o_ch_num rotates: bit k + shift is in the ring at shift, unless past o_ch_num's top.
        ring = serial["o_ch_num"].ring
        out_blocks_m1 = _Serial(ring.bit_select(group_shift_out, 1)
                                & ~gt_const(k + group_shift_out, len(d.o_ch_num) - 1),
                                len(d.o_ch_num))
        PL = _MinusOne(serial["o_ch_num_coef"])                  # output channels a load
        # Multipliers that are fields + 1, given as they are (the + 1 bit-serially).
        H_bits, OH_bits, OC_bits = (_MinusOne(stepped(name))
                                    for name in ("i_col_high", "o_col_high", "o_ch_num"))

        # ---- products, in lockstep: (multiplicand, multiplier, init) ------------------------
        # (a multiplier that is a field + 1 is given as _MinusOne(field))
        ram_bits = self._ram_lines.bit_length()
        products = {
            "chsw": (row_len_in, H_bits, None),               # lines a channel block, input
            "wbchsw": (row_len_out, OH_bits, None),           # the same, output
            # OW·OH − 1 = (OW − 1)·OH + OH − 1: channel_byte_num as it is
            "plane": (d.o_row_wid, OH_bits, d.o_col_high),
            # channel_byte_num·O − 1 (dma_total_byte as it is), in the same way
            "total": (d.channel_byte_num, OC_bits, d.o_ch_num),
            "para": (per_oc, PL, None),                       # bytes a load
            # load_time = ⌈O / PL⌉  ⇔  (LT − 1)·PL ≤ O − 1 < LT·PL. With ~(O − 1) = 1023 − (O − 1)
            # added, (LT − 1)·PL ≤ O − 1 ⇔ the result is below 1024, and then O − 1 < LT·PL ⇔
            # the result + PL reaches 1024.
            "loads": (d.load_time, PL, ~d.o_ch_num),
            # the map's end line (the channel_switch_addr fields are the layout's lines a block
            # once LAYOUT has passed; from bit ram_bits up they alone put the end past the RAM)
            "src_end": (d.channel_switch_addr[:ram_bits], _MinusOne(in_blocks_m1),
                        d.image_src_addr),
            "dst_end": (d.wb_channel_switch_addr[:ram_bits], _MinusOne(out_blocks_m1),
                        d.image_dst_addr),
            # the end of the layer's weights (para_start_addr's kept bits: a flag has the rest)
            "weights_end": (per_oc, OC_bits, d.para_start_addr),
            "add_term": (d.arg_add, g_ic, None),
        }
        # The check's results are compared bit-serially (below) and need no register of their
        # low bits; add_term is an output.
        mul = {name: _ShiftAdd(m, f"chk_{name}", a, b, CHECK_STEPS, init,
                               keep_low=name == "add_term")
               for name, (a, b, init) in products.items()}
        m.d.comb += self.add_term.eq(mul["add_term"].product)

        # The cycle of start, a first step (the descriptor is valid from the cycle after
        # start), CHECK_STEPS steps, the comparisons.
        running = Signal()
        first = Signal()
        finishing = Signal()
        m.d.comb += step.eq(running & ~first & ~self.start)
        m.d.sync += [self.done.eq(0), finishing.eq(0)]
        with m.If(self.start):
            m.d.sync += [k.eq(0), running.eq(1), first.eq(1)]
            for unit in mul.values():
                unit.clear()
        with m.Elif(running):
            for unit in mul.values():
                unit.step(k, first)
            m.d.sync += first.eq(0)
            with m.If(~first):
                m.d.sync += k.eq(k + 1)
                with m.If(k == CHECK_STEPS - 1):
                    m.d.sync += [running.eq(0), finishing.eq(1)]

        # Comparisons of results, bit-serially as the steps shift each result's low bits out
        # (bit k at the step for multiplier bit k, least significant first) into one flag each;
        # the upper bits, left in acc, at the end. A bit of a field or constant at k is a mux
        # or a LUT of k.
        def serial_flag(name, initial, update):
            flag = Signal(name=f"chk_{name}")
            with m.If(self.start):
                m.d.sync += flag.eq(initial)
            with m.Elif(running & ~first):
                m.d.sync += flag.eq(update(flag))
            return flag

        def low_bit(value):
            """Bit k of a constant or signal (0 beyond its width)."""
            if isinstance(value, int):
                return Const(value % (1 << CHECK_STEPS), CHECK_STEPS).bit_select(k, 1)
            return value[:CHECK_STEPS].bit_select(k, 1)

        def equals(name, field):                            # result = field
            bit = mul[name].emitted
            if isinstance(field, _Serial):
                field_bit, upper = field.bit, field.upper
            else:
                field_bit, upper = low_bit(field), field[CHECK_STEPS:]
            low_eq = serial_flag(f"{name}_low_eq", 1, lambda eq: eq & (bit == field_bit))
            return low_eq & (upper == mul[name].acc)

        def exceeds(name, limit):                           # result > limit (a constant)
            bit, low_limit = mul[name].emitted, low_bit(limit)
            low_gt = serial_flag(f"{name}_low_gt", 0,
                                 lambda gt: Mux(low_limit, bit & gt, bit | gt))
            return gt_const(mul[name].acc, limit >> CHECK_STEPS, low_gt)

        def above(field, name, bits):
            """field < result, for values below 2^bits (at least CHECK_STEPS bits compared)."""
            upper = max(bits - CHECK_STEPS, 0)
            if isinstance(field, _Serial):                  # no bits from CHECK_STEPS up
                other, field_upper = field.bit, Const(0, upper)
            else:
                field = Cat(field, Const(0, max(bits - len(field), 0)))   # a narrowed field
                other, field_upper = low_bit(field), field[CHECK_STEPS:CHECK_STEPS + upper]
            bit = mul[name].emitted
            low_lt = serial_flag(f"{name}_low_above", 0,
                                 lambda lt: Mux(other ^ bit, bit, lt))
            return _lt(field_upper, mul[name].acc[:upper], low_lt)

        # ---- comparisons (the cycle after the last step), first failure wins ---------------
        # channel_byte_num = OW·OH makes channel_byte_num · O the real dma_total_byte check.
        layout_ok = (~flags[R.LAYOUT]                               # fields' bits too high
                     & (d.i_row_wid[6:] != 15) & (d.o_row_wid[6:] != 15)   # < 16 lines a row
                     & (d.row_switch_addr == row_len_in) & equals("chsw", d.channel_switch_addr)
                     & (d.coef_group == groups_in)
                     & (d.wb_row_switch_addr == row_len_out)
                     & equals("wbchsw", d.wb_channel_switch_addr)
                     & (d.wb_group == groups_out)
                     & equals("plane", d.channel_byte_num)
                     & equals("total", serial["dma_total_byte"]))
        # PL ≤ O as well: implied when LT > 1 (PL ≤ (LT − 1)·PL < O); when LT = 1 the loads
        # check gives O ≤ PL, so that PL ≤ O ⇔ PL = O.
        # The loads result L is below 2^n and L + PL reaches 2^n (n: o_ch_num's bits): the carry
        # of L + PL, bit-serially, then killed by any bit of L from n up (PL ≤ 2^n: its bit n
        # alone reaches 2^n).
        n = len(d.o_ch_num)
        loads_bit, pl_bit = mul["loads"].emitted, mul["loads"].multiplier_bit
        in_n = low_bit((1 << n) - 1)
        loads_carry = serial_flag(
            "loads_carry", 0,
            lambda c: Mux(in_n, (loads_bit & pl_bit) | (c & (loads_bit | pl_bit)),
                          ~loads_bit & (c | pl_bit)))
        loads_ok = (equals("para", serial["para_size"])
                    & loads_carry & ~mul["loads"].acc.any()
                    & ((d.load_time != 0) | per_load_all))
        src_bad = (flags[R.SRC_RANGE] | (d.channel_switch_addr[ram_bits:] != 0)
                   | exceeds("src_end", self._ram_lines))
        dst_bad = (flags[R.DST_RANGE] | (d.wb_channel_switch_addr[ram_bits:] != 0)
                   | exceeds("dst_end", self._ram_lines))
        # Reached only when both maps end inside the RAM: lines below 2^ram_bits.
        overlap = (above(stepped("image_src_addr"), "dst_end", ram_bits)
                   & above(stepped("image_dst_addr"), "src_end", ram_bits))
        # bwsx_base_addr + 8·O > size  ⇔  bwsx_base_addr // 8 + O − 1 ≥ size // 8 when
        # bwsx_base_addr is a multiple of 8 (else it is out of range anyway).
        # (Unaligned tables and addresses past the memory: flags[WEIGHT_RANGE].)
        weights_bad = (flags[R.WEIGHT_RANGE]
                       | exceeds("weights_end", self._weight_bytes)
                       | _sum_exceeds(d.bwsx_base_addr[3:], d.o_ch_num,
                                      self._weight_bytes // BN_ENTRY_BYTES - 1)
                       # active_addr + 144 > size  ⇔  active_addr > size − 144
                       | gt_const(d.active_addr, self._weight_bytes - ACT_TABLE_BYTES))
        # Input channels (config_limited): max_entries for 3×3, max_channels_1x1 for 1×1,
        # any when depthwise.
        limits_bad = (gt_const(d.i_row_wid, self._max_width - 1)
                      | (~dw & Mux(k3, gt_const(d.i_ch_num, self._max_entries - 1),
                                   gt_const(d.i_ch_num, self._max_channels_1x1 - 1)))
                      | ~self.eight_bit_mode)
        result = Signal(REASON_BITS)
        with m.If(flags[R.KERNEL_TYPE]):
            m.d.comb += result.eq(R.KERNEL_TYPE)
        with m.Elif(gt_const(d.pool_type, 9)):
            m.d.comb += result.eq(R.POOL_TYPE)
        with m.Elif(flags[R.UNSUPPORTED_MODE]):
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
