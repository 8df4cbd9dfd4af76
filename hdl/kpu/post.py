"""The KPU engine's post stage: accumulators in, output bytes written to KPU RAM.

For each output (a pixel of one output channel) the post stage computes, as the golden model
(:mod:`.model`) does::

    alu = wrap36(acc + ((arg_x·Σx) >> shr_x) + w_term + add_term)
    v   = wrap36(((alu·bn_mul) >> bn_shift) + bn_add)
    s   = the last of the 16 segments whose x_start < v, 0 if none
    u   = clamp(round((v − x_start[s])·y_mul[s], shift[s]) + bias[s], 0, 255)

then pools the bytes ``u`` and writes them to KPU RAM. Two front ends compute ``u``:

- :func:`parallel_front_end`: a pipeline of ``post_lanes`` outputs a cycle, each product a
  :class:`.widemul.WideMul` (DSPs on ECP5), the activation table in flip-flops
  (:class:`FlopActTable`) searched by 16 parallel comparators.
- :func:`serial_front_end` (1 lane): one output every :data:`SERIAL_PERIOD` cycles, every product
  through one 16×16 signed multiplier (:class:`Mul16`, an SB_MAC16 on iCE40) in 15-bit limbs,
  the activation table in block RAM (:class:`MemoryActTable`) searched one segment a cycle.

Both hand activation bytes to the same back end (:func:`writer`): pooling, the coalescer that
gathers bytes into RAM words, and the write bank. The sequencer (:func:`sequencer`) that walks
the accumulator rows is shared too.
"""

from dataclasses import dataclass

from amaranth.hdl import Array, Cat, Const, EnableInserter, Module, Mux, Shape, Signal, signed
from amaranth.lib import data, enum, memory, wiring
from amaranth.lib.wiring import In, Out

from ..params import platform_family
from .bram import BlockRam
from .compare import at_least
from .descriptor import PoolType
from .featuremap import LINE_BYTES
from .layouts import ActSegmentLayout
from .mac import sb_mac16
from .widemul import LATENCY as WIDE_LATENCY
from .widemul import WideMul

__all__ = ["Pool", "SEGMENTS", "ACC_BITS", "POOL_BITS", "SERIAL_PERIOD", "PostContext",
           "FlopActTable", "MemoryActTable", "Mul16", "limbs", "round_clamp", "serial_round_clamp",
           "build_post", "sequencer", "parallel_front_end", "serial_front_end", "writer"]

ACC_BITS = 36           # conv and batch-norm results wrap to signed 36 bits, as in nncase
POOL_BITS = 12          # sum of 16 uint8 values
SEGMENTS = 16           # segments of the activation table
#: Cycles per output of the serial front end: the activation search reads one table row a
#: cycle (segments 1..15, then the chosen segment's values), and the 13 limb products of an
#: output fit beside it.
SERIAL_PERIOD = 16
#: Bits of a limb: a 15-bit unsigned limb, or a signed top limb of up to 16 bits, is a signed
#: 16-bit multiplier operand, so one signed 16×16 multiplier serves every piece.
LIMB_BITS = 15

#: ``pool_type`` as a signal shape, with the members of the one definition, ``PoolType``.
Pool = enum.Enum("Pool", {member.name: member.value for member in PoolType})


@dataclass
class PostContext:
    """The engine's signals the post stage reads (and ``row_freed``, which it drives)."""
    d: object               # the descriptor (DescriptorLayout view)
    W: object
    H: object
    OW: object
    OH: object
    pool: object            # Signal(Pool)
    out_shift: object       # log2(wb_group)
    oc0: object             # first output channel of the group
    group_size: object      # output channels per group (lanes, or 1 when depthwise)
    lanes_active: object
    rows_done: object       # accumulator rows complete
    row_freed: object       # driven here: 1 in a cycle post frees an accumulator row
    run_start: object       # pulse: a group begins
    acc_post: object        # accumulator memory read port
    xsum_post: object       # Σx memory read port
    act: object             # FlopActTable or MemoryActTable
    bn_mul: object          # per-lane Arrays
    bn_add: object
    bn_shift: object
    w_term: object
    add_term: object
    tables_ready: object
    acc_rows: int           # rows in the accumulator ring
    port_taken: object      # the KPU RAM port reads, or its read data is wanted (single port)
    ram_wr: object          # KPU RAM write port


def limbs(shape):
    """Limbs ``(lsb, width, signed)`` of an operand for a signed 16×16 multiplier: 15-bit
    unsigned limbs from the bottom, the top limb signed if the operand is; an operand that fits
    one signed 16-bit limb (or one unsigned 15-bit limb) is one limb."""
    shape = Shape.cast(shape)
    if shape.width <= LIMB_BITS or (shape.signed and shape.width <= LIMB_BITS + 1):
        return [(0, shape.width, shape.signed)]
    out = []
    for lsb in range(0, shape.width, LIMB_BITS):
        width = min(LIMB_BITS, shape.width - lsb)
        out.append((lsb, width, shape.signed and lsb + width == shape.width))
    return out


def _limb(value, limb):
    lsb, width, is_signed = limb
    part = value[lsb:lsb + width]
    return part.as_signed() if is_signed else part


#: Quotient bits the rounding keeps: what a uint8 result plus a bias depends on (see
#: :func:`round_clamp`).
_INTEGRAL = 9


def round_clamp(m, t, shift, bias, name):
    """nncase's rounding shift of ``t`` (floor, then + sign when the fraction is above one
    half, or exactly one half with an odd quotient), plus ``bias``, clamped to uint8;
    combinational.

    Only what the uint8 result depends on is computed: 9 bits of the quotient ``q``, the
    rounding bit below them, whether any lower bit is set, and whether ``q`` fits in 9
    signed bits at all. If it does not, the result is fixed by the sign of ``t``: ``q`` ≥
    256 gives 255, ``q`` ≤ −257 gives at most −257 + 1 + 255 < 0, so 0 (8 bits would not
    do: ``q`` = 200 must give 200 + ``bias``). A full-width shift and fraction compare
    cost about three times the logic. The masks of the low and the high bits compare
    ``shift`` with constants as plain logic (:func:`.compare.at_least`), not carry chains.
    """
    n = len(t)
    sign = t[n - 1]
    # Bit 0: t[shift − 1] (0 when shift is 0); bits 1.._INTEGRAL: (t >> shift)[0:_INTEGRAL].
    window = Signal(_INTEGRAL + 1, name=f"round_window_{name}")
    m.d.comb += window.eq((Cat(Const(0, 1), t).as_signed() >> shift)[:_INTEGRAL + 1])
    integral = window[1:].as_signed()
    round_bit = window[0]
    sticky = Signal(name=f"round_sticky_{name}")        # any of t[0 : shift − 1] set
    m.d.comb += sticky.eq(Cat(t[k] & at_least(shift, k + 2) for k in range(n)).any())
    fits = Signal(name=f"round_fits_{name}")            # t >> shift fits in _INTEGRAL bits
    # t[k] is above the quotient's _INTEGRAL bits when shift + _INTEGRAL − 1 ≤ k.
    m.d.comb += fits.eq(~Cat((t[k] != sign) & ~at_least(shift, k - _INTEGRAL + 2)
                             for k in range(_INTEGRAL - 1, n - 1)).any())
    return _round_bias_clamp(m, integral, round_bit, sticky, sign, fits, bias, f"_{name}")


def _round_bias_clamp(m, integral, round_bit, sticky, sign, fits, bias, name):
    """The byte of :func:`round_clamp` from the quotient's ``integral`` bits, the rounding
    bit, the sticky bit, the sign, whether the quotient ``fits`` those bits, and ``bias``."""
    up = round_bit & (sticky | integral[0])
    y = Signal(signed(len(integral) + 3), name=f"round_y{name}")
    m.d.comb += y.eq(integral + Mux(up, Mux(sign, -1, 1), 0) + bias)
    # y < 0 and y > 255 from its bits: compares would be carry chains.
    negative = y[-1]
    over = ~negative & y[8:].any()
    return Mux(~fits, Mux(sign, 0, 255), Mux(negative, 0, Mux(over, 255, y[:8])))


#: Bits the serial rounding shift (:func:`serial_round_clamp`) moves ``t`` each cycle.
ROUND_STEP = 4
#: Shifts of ``t`` (:data:`ACC_BITS` + 17 bits) at and above this one all give the result of
#: this one: the quotient is 0 or −1 and the rounding bit is the sign.
_ROUND_MAX_SHIFT = ACC_BITS + 17


def serial_round_clamp(m, t, shift, bias, load):
    """:func:`round_clamp` over :data:`SERIAL_PERIOD` cycles, for the serial front end.

    ``t``, ``shift`` and ``bias`` are read on the cycle ``load`` is 1; the returned byte is
    valid ``SERIAL_PERIOD`` cycles later, on the cycle of the next load when one comes every
    :data:`SERIAL_PERIOD` cycles (and changes after it). ``t`` is copied into a shift
    register that moves :data:`ROUND_STEP` bits a cycle (sign-filled), collecting whether the
    bits it drops are set; on step ``shift // ROUND_STEP`` the last ``shift % ROUND_STEP`` bits
    of the shift, the rounding, the bias and the clamp are done on the low bits. No barrel
    shifter and no mask of ``t``: a 54-bit mask and a 64-way shift cost several hundred
    iCE40 logic cells, this register one LUT a bit.
    """
    n = len(t)
    assert n == _ROUND_MAX_SHIFT, n
    tr = Signal(n, name="round_t")              # t >> (ROUND_STEP · steps), sign-filled
    dropped = Signal(name="round_dropped")      # any of the bits shifted out is set
    dropped_top = Signal(name="round_dropped_top")  # the last bit shifted out
    dropped_low = Signal(name="round_dropped_low")  # any shifted-out bit below that one
    steps = Signal(range(SERIAL_PERIOD), name="round_steps")
    whole = Signal(range(SERIAL_PERIOD), name="round_whole")   # shift // ROUND_STEP
    part = Signal(2, name="round_part")                         # shift % ROUND_STEP
    bias_r = Signal(8, name="round_bias")
    u = Signal(8, name="round_u")
    capped = Mux(at_least(shift, _ROUND_MAX_SHIFT), _ROUND_MAX_SHIFT, shift)
    sign = tr[n - 1]
    with m.If(load):
        m.d.sync += [tr.eq(t), dropped.eq(0), dropped_top.eq(0), dropped_low.eq(0),
                     steps.eq(0), whole.eq(capped[2:]), part.eq(capped[:2]), bias_r.eq(bias)]
    with m.Else():
        m.d.sync += [tr.eq(Cat(tr[ROUND_STEP:], sign.replicate(ROUND_STEP))),
                     dropped.eq(dropped | tr[:ROUND_STEP].any()),
                     dropped_top.eq(tr[ROUND_STEP - 1]),
                     dropped_low.eq(dropped | tr[:ROUND_STEP - 1].any()),
                     steps.eq(steps + 1)]
    # On step ``whole``: tr = t >> (shift − part); the rest of the shift is ``part`` bits.
    shifted = Signal(_INTEGRAL, name="round_q")         # (t >> shift)[0:_INTEGRAL]
    round_bit = Signal(name="round_bit")                # t[shift − 1], 0 when shift is 0
    sticky = Signal(name="round_sticky")                # any of t[0 : shift − 1] set
    with m.Switch(part):
        for p in range(ROUND_STEP):
            with m.Case(p):
                m.d.comb += shifted.eq(tr[p:p + _INTEGRAL])
                if p == 0:
                    m.d.comb += [round_bit.eq(dropped_top), sticky.eq(dropped_low)]
                else:
                    m.d.comb += [round_bit.eq(tr[p - 1]),
                                 sticky.eq(dropped | tr[:p - 1].any() if p > 1 else dropped)]
    # t >> shift fits in _INTEGRAL signed bits: tr[part + _INTEGRAL − 1 :] all equal the sign.
    fits = Signal(name="round_fits")
    high = _INTEGRAL - 1 + ROUND_STEP - 1
    m.d.comb += fits.eq(~Cat(tr[k] ^ sign for k in range(high, n - 1)).any()
                        & ~Cat((tr[_INTEGRAL - 1 + p] ^ sign) & ~at_least(part, p + 1)
                               for p in range(ROUND_STEP - 1)).any())
    with m.If(~load & (steps == whole)):
        m.d.sync += u.eq(_round_bias_clamp(m, shifted.as_signed(), round_bit, sticky, sign, fits,
                                           bias_r, ""))
    return u


# ---- activation tables --------------------------------------------------------------------

def _act_shift(seg):
    """A segment's shift, saturated to 6 bits (every shift ≥ 54 gives the same result)."""
    return Mux(seg.shift > 63, 63, seg.shift)


class FlopActTable:
    """The activation table in flip-flops, for the parallel front end's 16 comparators.

    Loading (driven by the engine's "tables" FSM): :attr:`load_steps` reads of weight words
    from ``active_addr / 8``, the address advancing after step ``step`` when
    :meth:`next_word` says so; each word arrives a cycle later and goes to :meth:`write` with
    its step. Words 0..15 are the segments, 16 and 17 the 16 biases.
    """
    load_steps = SEGMENTS + 2

    def __init__(self):
        self.xs = Array(Signal(signed(36), name=f"act_x_start_{s}") for s in range(SEGMENTS))
        self.ym = Array(Signal(signed(16), name=f"act_y_mul_{s}") for s in range(SEGMENTS))
        self.ash = Array(Signal(6, name=f"act_shift_{s}") for s in range(SEGMENTS))
        self.abias = Array(Signal(8, name=f"act_bias_{s}") for s in range(SEGMENTS))

    @staticmethod
    def next_word(step):
        """Whether step ``step + 1`` reads the word after step ``step``'s: always."""
        return Const(1)

    def write(self, m, step, word, byte):
        """Store the word of load step ``step`` (``byte``: unused here)."""
        seg = ActSegmentLayout(word)
        with m.If(step < SEGMENTS):
            m.d.sync += [self.xs[step].eq(seg.x_start), self.ym[step].eq(seg.y_mul),
                         self.ash[step].eq(_act_shift(seg))]
        for half in range(2):
            with m.If(step == SEGMENTS + half):
                m.d.sync += [self.abias[8 * half + b].eq(word.word_select(b, 8))
                             for b in range(8)]


#: Rows of :class:`MemoryActTable`: ``x_start`` of segment ``s`` at row ``s``, its values at row
#: ``SEGMENTS + s``.
_ValueRow = data.StructLayout({"y_mul": signed(16), "shift": 6, "_pad0": 2, "bias": 8,
                               "_pad1": 16})
_ROW_BITS = 48          # three 16-bit block RAMs side by side


class MemoryActTable:
    """The activation table in block RAM (three SB_RAM40_4K on iCE40), for the serial front end.

    32 rows of 48 bits, written byte-granular: row ``s`` holds ``x_start`` of segment ``s``
    (what the search compares), row ``16 + s`` its ``y_mul``, shift and bias (read once, for the
    segment found). ``x_start`` of segment 0 is also kept in a register (:attr:`x_start_0`):
    the search never needs to compare it (segment 0 is the answer when no other segment
    qualifies), only to subtract it.

    Loading takes :attr:`load_steps` (48) reads: each segment word twice (its ``x_start`` row,
    then its value row), then each bias word eight times, one bias byte per step (the weight
    memory's read port holds its word while the address stays the same).
    """
    load_steps = 3 * SEGMENTS

    def __init__(self):
        # The write port, as signals: the serial front end connects them to its block RAM
        # (:meth:`block_ram`), which needs the platform. A :class:`BlockRam`, not a ``Memory``:
        # Yosys would wrap each block in read-during-write emulation (measured: 7,823 → 7,759
        # iCE40 logic cells). No row read in the cycle of a write is used: the table loads
        # before tables_ready lets outputs issue.
        self._wr = memory.WritePort.Signature(addr_width=(2 * SEGMENTS - 1).bit_length(),
                                              shape=_ROW_BITS, granularity=8).create()
        self.x_start_0 = Signal(signed(36))

    def block_ram(self, m, platform):
        """The table's block RAM, added to ``m`` as ``act_table``; its read port is ``rd[0]``."""
        m.submodules.act_table = table = BlockRam(shape=_ROW_BITS, depth=2 * SEGMENTS,
                                                  granularity=8, platform=platform)
        m.d.comb += [table.wr.addr.eq(self._wr.addr), table.wr.data.eq(self._wr.data),
                     table.wr.en.eq(self._wr.en)]
        return table

    @staticmethod
    def next_word(step):
        """Whether step ``step + 1`` reads the word after step ``step``'s: after the second
        step of a segment word (steps below 32), after the eighth of a bias word."""
        assert 2 * SEGMENTS == 32 and len(step) == 6
        return Mux(step[5], step[:3] == 7, step[0])

    def write(self, m, step, word, byte):
        """Store the word of load step ``step``; ``byte`` is its byte ``step mod 8`` (a bias
        step's bias: the engine selects it, sharing the weight loader's byte selection)."""
        seg = ActSegmentLayout(word)
        value = _ValueRow(self._wr.data)
        with m.If(step < 2 * SEGMENTS):
            with m.If(step[0] == 0):
                m.d.comb += [self._wr.addr.eq(step >> 1), self._wr.data.eq(seg.x_start),
                             self._wr.en.eq(0b111111)]
                with m.If(step == 0):
                    m.d.sync += self.x_start_0.eq(seg.x_start)
            with m.Else():
                m.d.comb += [self._wr.addr.eq(SEGMENTS + (step >> 1)),
                             value.y_mul.eq(seg.y_mul), value.shift.eq(_act_shift(seg)),
                             self._wr.en.eq(0b000111)]
        with m.Elif(step < 3 * SEGMENTS):
            b = step - 2 * SEGMENTS
            m.d.comb += [self._wr.addr.eq(SEGMENTS + b), value.bias.eq(byte),
                         self._wr.en.eq(0b001000)]


# ---- the 16×16 multiplier of the serial front end ----------------------------------------

class Mul16(wiring.Component):
    """``p = a × b``, signed 16×16, registered: an iCE40 SB_MAC16 (16×16 mode, output register
    only) with an iCE40 platform, a behavioural twin otherwise. Latency 1, one product a cycle.

    Members
    -------
    a, b : In(signed(16))
    en : In(1, init=1)
        Clock enable of the output register: 0 holds ``p``.
    p : Out(signed(32))
    """
    a: In(signed(16))
    b: In(signed(16))
    en: In(1, init=1)
    p: Out(signed(32))

    def __init__(self, platform=None):
        self._ice40 = platform_family(platform) == "ice40"
        super().__init__()

    def elaborate(self, platform):
        m = Module()
        if not self._ice40:
            with m.If(self.en):
                m.d.sync += self.p.eq(self.a * self.b)
            return m
        # The 32-bit product through its one register (rH), nothing else.
        m.submodules.mac = sb_mac16(
            a=self.a, b=self.b, o=self.p, ce=self.en,
            p_MODE_8x8=0, p_A_SIGNED=1, p_B_SIGNED=1,
            p_TOP_8x8_MULT_REG=0, p_BOT_8x8_MULT_REG=0,
            p_PIPELINE_16x16_MULT_REG1=0, p_PIPELINE_16x16_MULT_REG2=1,
            p_TOPOUTPUT_SELECT=0b11, p_BOTOUTPUT_SELECT=0b11)
        return m


# ---- shared parts -------------------------------------------------------------------------

def _meta_layout(groups, post_lanes, max_width):
    Kind = data.StructLayout({"valid": 1, "xpad": 1, "ypad": 1})
    return data.StructLayout({"kind": Kind, "g": range(groups), "lanes": post_lanes,
                              "x": range(max_width + 1), "y": 10})


def _s1_pool(pool):
    return (pool == Pool.MEAN_2_S1) | (pool == Pool.MAX_2_S1)


def _last_x(ctx, pad_row):
    """The last column the post stage walks in a row: W − 1, or the pad column W of a stride-1
    pool (not on its pad row)."""
    return Mux(_s1_pool(ctx.pool) & ~pad_row, ctx.W, ctx.d.i_row_wid)


def sequencer(m, mp, ctx, stall, *, lanes, post_lanes, max_width, gate):
    """Walk the accumulator rows in order, lane groups, columns (+ pad column / pad row for the
    stride-1 pools), issuing one output position on each cycle ``gate`` is 1 and a row is
    ready. Returns the meta of the position issued this cycle (``kind.valid`` 0 if none) and
    the accumulator memory address to read."""
    Q = post_lanes
    NG = lanes // Q
    WMAX = max_width
    W, H = ctx.W, ctx.H
    Meta = _meta_layout(NG, Q, WMAX)
    s1_pool = _s1_pool(ctx.pool)
    py = Signal(10)
    pslot = Signal(range(ctx.acc_rows))     # accumulator row of py (in the ring)
    pg = Signal(range(NG + 1))
    px = Signal(range(WMAX + 2))
    posting = Signal()
    with mp.If(ctx.run_start):
        mp.d.sync += [py.eq(0), pslot.eq(0), pg.eq(0), px.eq(0), posting.eq(1)]
    # py only counts up from 0 to H (the pad row), and only past rows that are done, so
    # py ≤ H and py ≤ rows_done: the compares are equalities (a `<` is a carry chain).
    # W − 1 and H − 1 are the descriptor's fields.
    pad_row = Signal()
    m.d.comb += pad_row.eq(py == H)
    last_x = _last_x(ctx, pad_row)
    last_g = Signal(range(NG))
    m.d.comb += last_g.eq((ctx.lanes_active - 1) // Q)
    row_ready = ctx.tables_ready & ((py != ctx.rows_done) | pad_row)
    issue = Signal()
    m0 = Signal(Meta)
    mp.d.comb += [issue.eq(posting & row_ready & gate),
                  m0.kind.valid.eq(issue), m0.kind.xpad.eq(px == W),
                  m0.kind.ypad.eq(pad_row), m0.g.eq(pg), m0.x.eq(px), m0.y.eq(py)]
    mp.d.comb += [m0.lanes[q].eq(pg * Q + q < ctx.lanes_active) for q in range(Q)]
    with mp.If(issue):
        with mp.If(px == last_x):
            mp.d.sync += px.eq(0)
            with mp.If(pg == last_g):
                mp.d.sync += pg.eq(0)
                with mp.If(~pad_row):
                    # A pulse (comb, so the stall must gate it): the row's last output issues.
                    mp.d.comb += ctx.row_freed.eq(~stall)
                with mp.If(pad_row | ((py == ctx.d.i_col_high) & ~s1_pool)):
                    mp.d.sync += posting.eq(0)
                with mp.Else():
                    mp.d.sync += [py.eq(py + 1),
                                  pslot.eq(Mux(pslot == ctx.acc_rows - 1, 0, pslot + 1))]
            with mp.Else():
                mp.d.sync += pg.eq(pg + 1)
        with mp.Else():
            mp.d.sync += px.eq(px + 1)
    return m0, pslot * WMAX + px, posting


def build_post(m, ctx, *, lanes, post_lanes, ram_word_bytes, max_width, serial, platform):
    """The post stage: the sequencer, a front end and the writer. The front end and the pooling
    stages form one submodule under an :class:`EnableInserter` that stalls while the write
    bank still drains the previous words. Returns a signal that is 1 when the post stage has
    nothing left to do."""
    mp = Module()
    stall = Signal()
    m.submodules.post = EnableInserter(~stall)(mp)
    if serial:
        mu, p_u, front_idle = serial_front_end(m, mp, ctx, stall, max_width=max_width,
                                               platform=platform)
    else:
        mu, p_u, front_idle = parallel_front_end(m, mp, ctx, stall, lanes=lanes,
                                                 post_lanes=post_lanes, max_width=max_width,
                                                 platform=platform)
    back_idle = writer(m, mp, ctx, stall, mu, p_u, lanes=lanes, post_lanes=post_lanes,
                       ram_word_bytes=ram_word_bytes, max_width=max_width, spaced=serial)
    idle = Signal()
    m.d.comb += idle.eq(front_idle & back_idle)
    return idle


# ---- parallel front end ------------------------------------------------------------------

def parallel_front_end(m, mp, ctx, stall, *, lanes, post_lanes, max_width, platform):
    """``post_lanes`` outputs a cycle at the same pixel, fully pipelined. Returns the meta of
    the outputs leaving this cycle, their activation bytes and an idle signal."""
    Q = post_lanes
    NG = lanes // Q
    d = ctx.d
    act = ctx.act
    m.d.comb += [ctx.acc_post.en.eq(~stall), ctx.xsum_post.en.eq(~stall)]
    m0, addr, posting = sequencer(m, mp, ctx, stall, lanes=lanes, post_lanes=Q, max_width=max_width,
                                  gate=1)
    Meta = m0.shape()
    mp.d.comb += [ctx.acc_post.addr.eq(addr), ctx.xsum_post.addr.eq(addr)]

    stages = [m0]

    def stage(name):
        meta = Signal(Meta, name=f"post_meta_{name}")
        mp.d.sync += meta.eq(stages[-1])
        stages.append(meta)
        return meta

    def lane(array, g, q):
        """Element ``g·Q + q`` of a per-lane Array."""
        return Array(array[gg * Q + q] for gg in range(NG))[g]

    # Stages of one output (``stages[n]`` holds the meta of stage n): 1 the accumulator and Σx
    # memories answer; 1 + L the x term's product; A the conv result; V batch-norm; S the
    # segment; D the segment's values; U the activation byte. L = a WideMul's latency.
    L = WIDE_LATENCY

    def delayed(value, cycles, name):
        """``value`` registered ``cycles`` times (to meet a product of a WideMul)."""
        for n in range(cycles):
            reg = Signal(value.shape(), name=f"{name}_d{n}")
            mp.d.sync += reg.eq(value)
            value = reg
        return value

    def wide_mul(name, a, b):
        """``a × b`` of a :class:`.widemul.WideMul` in DSPs where the platform has them,
        stalling with the pipeline; the product comes ``WIDE_LATENCY`` cycles later."""
        mul = WideMul(a.shape(), b.shape(), platform=platform)
        mp.submodules[name] = mul
        mp.d.comb += [mul.a.eq(a), mul.b.eq(b), mul.en.eq(~stall)]
        return mul.p

    for n in range(1, 2 + L):
        stage(f"p{n}")
    x_prod = wide_mul("x_mul", d.arg_x, ctx.xsum_post.data)
    x_term = Signal(signed(48))
    mp.d.comb += x_term.eq(x_prod >> d.shr_x)
    acc_v = [delayed(lane(ctx.acc_post.data, stages[1].g, q), L, f"post_acc_{q}")
             for q in range(Q)]
    w_v = [delayed(lane(ctx.w_term, stages[1].g, q), L, f"post_w_{q}") for q in range(Q)]
    A = 2 + L                           # stage of the conv result (alu)
    V = A + L + 1                       # batch-norm result
    S = V + 1                           # segment found
    D = S + 1                           # (v − x_start), y_mul, shift, bias
    U = D + L + 1                       # activation byte
    for n in range(2 + L, U + 1):
        stage(f"p{n}")
    p_u = []
    for q in range(Q):
        alu = Signal(signed(ACC_BITS), name=f"post_alu_{q}")
        mp.d.sync += alu.eq((acc_v[q] + x_term + w_v[q] + ctx.add_term)[:ACC_BITS].as_signed())
        # (alu · mul) >> shift wraps to ACC_BITS: product bits above ACC_BITS + 14 (the
        # largest shift, 15, plus the result) cannot reach it.
        bn_prod = wide_mul(f"bn_mul_{q}", alu, lane(ctx.bn_mul, stages[A].g, q))[:ACC_BITS + 15]
        shift = delayed(lane(ctx.bn_shift, stages[A].g, q), L, f"post_bn_shift_{q}")
        add = delayed(lane(ctx.bn_add, stages[A].g, q), L, f"post_bn_add_{q}")
        v = Signal(signed(ACC_BITS), name=f"post_v_{q}")
        mp.d.sync += v.eq(((bn_prod >> shift) + add)[:ACC_BITS].as_signed())
        v_s = Signal(signed(ACC_BITS), name=f"post_v_s_{q}")
        above = Signal(SEGMENTS, name=f"post_above_{q}")
        mp.d.sync += [v_s.eq(v)]
        mp.d.sync += [above[s].eq(v > act.xs[s]) for s in range(SEGMENTS)]
        idx = Signal(4, name=f"post_segment_{q}")
        for s in range(SEGMENTS):       # the last segment whose x_start < v; 0 if none
            with mp.If(above[s]):
                mp.d.comb += idx.eq(s)
        dv = Signal(signed(ACC_BITS + 1), name=f"post_dv_{q}")
        y_mul = Signal(signed(16), name=f"post_y_mul_{q}")
        sh = Signal(6, name=f"post_act_shift_{q}")
        bias = Signal(8, name=f"post_bias_{q}")
        mp.d.sync += [dv.eq(v_s - act.xs[idx]), y_mul.eq(act.ym[idx]), sh.eq(act.ash[idx]),
                      bias.eq(act.abias[idx])]
        t = wide_mul(f"act_mul_{q}", dv, y_mul)
        u = Signal(8, name=f"post_u_{q}")
        mp.d.sync += u.eq(round_clamp(mp, t, delayed(sh, L, f"post_act_shift_{q}"),
                                      delayed(bias, L, f"post_bias_{q}"), q))
        p_u.append(u)
    idle = Signal()
    m.d.comb += idle.eq(~posting & ~Cat(s.kind.valid for s in stages[1:]).any())
    return stages[U], p_u, idle


# ---- serial front end --------------------------------------------------------------------

def serial_front_end(m, mp, ctx, stall, *, max_width, platform):
    """One lane, one output every :data:`SERIAL_PERIOD` (16) cycles, every product through one
    :class:`Mul16` and one accumulator, the activation table in block RAM.

    The stages of output ``n``, issued at cycle ``t0`` − 2 (phase 14 of the period before
    phase 0 of ``t0``):

    ========  =============================================================================
    t0 − 2    the accumulator and Σx memories are read (their ports hold the data 16 cycles)
    −1..+4    x term pieces ``arg_x' × Σx`` (3 × 2 limbs), the accumulator starting from
              ``(acc + w_term + add_term) << 15``; ``alu`` (bits 15.. of the sum) latched
              at +6
    +8..+13   batch-norm pieces ``alu × bn_mul`` (3 × 2 limbs), the product at +15, shifted
              right by ``bn_shift`` a bit a cycle; ``v`` latched at +31
    +32..+47  search: ``v − x_start`` of segment 0 at +32, rows 1..15 read at +32..+46 and
              compared at +33..+47 (keep the last segment with ``x_start < v`` and
              ``v − x_start``), the found segment's value row read at +47; ``dv``,
              ``y_mul``, shift, bias latched at +48
    +53..+55  activation pieces ``dv × y_mul`` (3 limbs), the product at +57, rounded and
              clamped by :func:`serial_round_clamp`; the byte leaves at +73
    ========  =============================================================================

    So in every period the multiplier takes the x term of one output (phases 15, 0..4), the
    activation of another (5..7) and the batch-norm of a third (8..13), the accumulator is
    loaded by each in turn (a product's pieces arrive one cycle after issue, its result is
    read the cycle after its last piece), and the table's read port is busy every cycle.

    The x term's shift right by ``shr_x`` is no shifter: ``arg_x' = arg_x << (15 − shr_x)``
    is shifted into a register a bit a cycle when the group starts (issue waits for it), and
    ``(arg_x·Σx) >> shr_x`` is then bits 15.. of ``arg_x'·Σx``. Adding ``C << 15`` to that
    product adds ``C`` to its bits 15.. exactly, so the accumulator that sums the pieces also
    adds the conv result and the w and add terms.
    Returns the meta of the output leaving, its byte and an idle signal.
    """
    d = ctx.d
    act = ctx.act
    T = SERIAL_PERIOD
    ISSUE = T - 2                           # the phase outputs issue at
    phase = Signal(range(T))
    mp.d.sync += phase.eq(Mux(phase == T - 1, 0, phase + 1))
    with mp.If(ctx.run_start):
        mp.d.sync += phase.eq(ISSUE)
    at = [phase == n for n in range(T)]

    # arg_x' = arg_x << (X_SHIFT − shr_x), shifted a bit a cycle from the group's start.
    X_SHIFT = 2 ** len(d.shr_x) - 1
    arg_x = Signal(signed(len(d.arg_x) + X_SHIFT))
    arg_x_left = Signal(len(d.shr_x))       # shifts still to do
    with m.If(ctx.run_start):
        m.d.sync += [arg_x.eq(d.arg_x), arg_x_left.eq(X_SHIFT - d.shr_x)]
    with m.Elif(arg_x_left != 0):
        m.d.sync += [arg_x.eq(arg_x << 1), arg_x_left.eq(arg_x_left - 1)]

    m0, addr, posting = sequencer(m, mp, ctx, stall, lanes=1, post_lanes=1, max_width=max_width,
                                  gate=at[ISSUE] & (arg_x_left == 0))
    Meta = m0.shape()
    # The memories are read only when an output issues: their ports then hold the data.
    m.d.comb += [ctx.acc_post.addr.eq(addr), ctx.xsum_post.addr.eq(addr),
                 ctx.acc_post.en.eq(m0.kind.valid & ~stall),
                 ctx.xsum_post.en.eq(m0.kind.valid & ~stall)]

    # Whether an output is in the x and batch-norm stages (valid_x: from issue to the phase
    # before the batch-norm product), the batch-norm shift, the search, the activation, and
    # the rounding until the byte leaves. Five: an output takes 75 cycles from issue.
    # Its position is not carried along: outputs leave in the order they issue, so a second
    # walk (below) knows it.
    valid_x, valid_v, valid_s, valid_a, valid_r = (Signal(name=f"serial_valid_{n}")
                                                   for n in "xvsar")
    with mp.If(at[ISSUE]):
        mp.d.sync += [valid_x.eq(m0.kind.valid), valid_v.eq(valid_x), valid_s.eq(valid_v),
                      valid_a.eq(valid_s)]

    # Operands held for the products.
    alu = Signal(signed(ACC_BITS))          # batch-norm stage input
    v = Signal(signed(ACC_BITS))            # search stage input
    dv = Signal(signed(ACC_BITS + 1))       # search: v − x_start of the segment so far
    idx = Signal(4)                         # search: that segment
    dv_a = Signal(signed(ACC_BITS + 1))     # activation stage inputs
    y_a = Signal(signed(16))
    sh_a = Signal(6)
    bias_a = Signal(8)
    xsum = ctx.xsum_post.data
    # What the x term's accumulator starts from: the conv result and the group's terms, at
    # bit X_SHIFT (see above); the memory's data is there from phase ISSUE + 1.
    x_base = Signal(ACC_BITS)
    m.d.comb += x_base.eq(ctx.acc_post.data[0] + ctx.w_term[0] + ctx.add_term)
    x_init = Cat(Const(0, X_SHIFT), x_base)

    # The pieces: phase → (base, A limb, B limb, shift), each product's pieces consecutive
    # from its first phase (−1: phase 15 of the period before) and done before the next
    # product's (Σx may have one limb only, then the x term takes fewer phases). A piece's
    # product is added to its base: 0 or x_init for a product's first piece, else the
    # accumulator (None). (Loading x_init into the accumulator a phase earlier, where no
    # piece arrives, measured 65 iCE40 logic cells more: the first piece's sum with the
    # accumulator is then one more full-width adder.)
    products = [(-1, 5, x_init, arg_x, xsum), (5, 8, 0, dv_a, y_a),
                (8, 14, 0, alu, ctx.bn_mul[0])]
    pieces = {}
    for first, end, base, a, b in products:
        n = first
        for limb_b in limbs(b.shape()):
            for limb_a in limbs(a.shape()):
                pieces[n % T] = (base if n == first else None, _limb(a, limb_a),
                                 _limb(b, limb_b), limb_a[0] + limb_b[0])
                n += 1
        assert n <= end, f"{n - first} pieces do not fit phases {first}..{end - 1}"

    mp.submodules.mul = mul = Mul16(platform)
    m.d.comb += mul.en.eq(~stall)
    acc = Signal(signed(ACC_BITS + 17))     # dv × y_mul exactly; the others modulo
    with mp.Switch(phase):
        for n, (base, a, b, shift) in pieces.items():
            with mp.Case(n):
                mp.d.comb += [mul.a.eq(a), mul.b.eq(b)]
    with mp.Switch(phase):               # a piece's product arrives the phase after its issue
        for n, (base, a, b, shift) in pieces.items():
            with mp.Case((n + 1) % T):
                mp.d.sync += acc.eq((acc if base is None else base) + (mul.p << shift))

    # x term (phase 6): the accumulator holds (acc + w_term + add_term) << X_SHIFT
    # + arg_x' · Σx, of which bits X_SHIFT.. are the conv result.
    with mp.If(at[6]):
        mp.d.sync += alu.eq(acc[X_SHIFT:X_SHIFT + ACC_BITS])
    # Batch-norm (phase 15): the accumulator holds alu · bn_mul (the low ACC_BITS + 15 bits
    # are exact; as in the parallel pipeline, no higher bit reaches v). It is shifted right by
    # bn_shift (0..15) a bit a cycle over the next period (a barrel shifter costs three times
    # the logic cells), and v is latched at the next phase 15 (``meta_v`` waits with it).
    bn_t = Signal(ACC_BITS + 15)            # alu · bn_mul >> (bits shifted so far)
    bn_left = Signal(4)                     # bits still to shift
    with mp.If(at[T - 1]):
        mp.d.sync += [bn_t.eq(acc[:ACC_BITS + 15]), bn_left.eq(ctx.bn_shift[0])]
    with mp.Elif(bn_left != 0):
        mp.d.sync += [bn_t.eq(bn_t[1:]), bn_left.eq(bn_left - 1)]
    with mp.If(at[T - 1]):
        mp.d.sync += v.eq((bn_t[:ACC_BITS] + ctx.bn_add[0])[:ACC_BITS].as_signed())
    # Activation (phase 9): the accumulator holds dv · y_mul, rounded over the next period
    # (``meta_r`` holds its meta); the byte leaves at the next phase 9.
    u = serial_round_clamp(mp, acc, sh_a, bias_a, at[9])
    with mp.If(at[9]):
        mp.d.sync += valid_r.eq(valid_a)
    # The position of the output leaving: the sequencer's walk (one lane group) once more.
    meta_u = Signal(Meta, name="serial_meta_u")
    u_x, u_y = Signal.like(m0.x, name="serial_u_x"), Signal.like(m0.y, name="serial_u_y")
    u_pad_row = Signal()
    m.d.comb += u_pad_row.eq(u_y == ctx.H)
    mp.d.comb += [meta_u.kind.valid.eq(valid_r & at[9]), meta_u.kind.xpad.eq(u_x == ctx.W),
                  meta_u.kind.ypad.eq(u_pad_row), meta_u.lanes.eq(1),     # the one lane
                  meta_u.x.eq(u_x), meta_u.y.eq(u_y)]
    with mp.If(ctx.run_start):
        mp.d.sync += [u_x.eq(0), u_y.eq(0)]
    with mp.Elif(meta_u.kind.valid):
        with mp.If(u_x == _last_x(ctx, u_pad_row)):
            mp.d.sync += [u_x.eq(0), u_y.eq(u_y + 1)]
        with mp.Else():
            mp.d.sync += u_x.eq(u_x + 1)

    # Search. At phase 0 the comparator's subtractor computes v − x_start of segment 0 (the
    # answer unless a later segment qualifies); row r (1..15) is read at phase r − 1 and
    # compared at phase r; the value row of the segment found is read at phase 15, and it and
    # ``dv`` are latched at the next phase 0.
    rd = act.block_ram(m, platform).rd[0]
    m.d.comb += rd.en.eq(~stall)
    row = Signal(range(SEGMENTS))
    m.d.comb += row.eq(phase)               # the row compared this phase (segment 0 at 0)
    x_start = Signal(signed(ACC_BITS))
    m.d.comb += x_start.eq(Mux(at[0], act.x_start_0, rd.data[:ACC_BITS].as_signed()))
    diff = Signal(signed(ACC_BITS + 1))
    m.d.comb += diff.eq(v - x_start)
    above = Signal()
    m.d.comb += above.eq(~at[0] & ~diff[-1] & diff.any())    # diff > 0, no carry chain
    last_idx = Signal(4)
    m.d.comb += last_idx.eq(Mux(above, row, idx))
    m.d.comb += rd.addr.eq(Mux(at[T - 1], Cat(last_idx, Const(1, 1)), (phase + 1)[:4]))
    with mp.If(at[0]):
        value = _ValueRow(rd.data)
        mp.d.sync += [dv_a.eq(dv), y_a.eq(value.y_mul), sh_a.eq(value.shift),
                      bias_a.eq(value.bias)]
    with mp.If(at[0] | above):
        mp.d.sync += [dv.eq(diff), idx.eq(row)]

    idle = Signal()
    m.d.comb += idle.eq(~posting & ~Cat(valid_x, valid_v, valid_s, valid_a, valid_r).any())
    return meta_u, [u], idle


# ---- back end: pooling, coalescer, write bank --------------------------------------------

def writer(m, mp, ctx, stall, mu, p_u, *, lanes, post_lanes, ram_word_bytes, max_width,
           spaced):
    """Pool the activation bytes ``p_u`` of the outputs ``mu`` (one pixel of ``post_lanes``
    channels a cycle at most; with ``spaced``, one every :data:`SERIAL_PERIOD` cycles at
    most), gather them into RAM words, write the words. The pooling
    stages and the coalescer are in ``mp`` (stalled), the write bank in ``m``; ``stall`` is
    driven here. Returns a signal that is 1 when nothing is left to write.

    Write addresses are sums, no products: each lane's channel line is found by a walk over the
    group's channels when the group starts (one channel a cycle; the bank waits for it), and
    the row line advances by ``wb_row_switch_addr`` as output rows advance (they come in
    order, one at a time, each with at least one word).
    """
    P = lanes
    Q = post_lanes
    NG = P // Q
    B = ram_word_bytes
    WMAX = max_width
    log_b = B.bit_length() - 1
    d = ctx.d
    pool, OW, OH = ctx.pool, ctx.OW, ctx.OH
    # Pool Q0 (meta mu, activation bytes p_u): horizontal combine, pick, or bypass; issue the
    # row-buffer read.
    is_max = (pool == Pool.MAX_2_S2) | (pool == Pool.MAX_4_S4) | (pool == Pool.MAX_2_S1)
    block2 = (pool == Pool.MAX_2_S2) | (pool == Pool.MEAN_2_S2)
    block4 = (pool == Pool.MAX_4_S4) | (pool == Pool.MEAN_4_S4)

    def op(a, b):
        # Max-pooled values are bytes: their compare needs 8 bits, not POOL_BITS.
        return Mux(is_max, Mux(a[:8] > b[:8], a, b), a + b)

    mp.submodules.pbuf = pbuf = memory.Memory(
        shape=data.ArrayLayout(POOL_BITS, Q), depth=NG * WMAX, init=[])
    pbuf_wr = pbuf.write_port()
    # The row buffer is read (pool stage Q0) in the cycle a column is written (Q1) only when
    # outputs come a cycle apart: a width-1 stride-1 pool's pad row reads its column right
    # after the last row wrote it. The serial front end's come SERIAL_PERIOD cycles apart,
    # and a read port without transparency is plain block RAM.
    pbuf_rd = pbuf.read_port(transparent_for=() if spaced else (pbuf_wr,))
    hacc = [Signal(POOL_BITS, name=f"hacc_{q}") for q in range(Q)]
    prev_u = [Signal(8, name=f"prev_u_{q}") for q in range(Q)]
    q_valid = Signal()                  # H-token for the vertical stage
    q_g = Signal(range(NG))
    q_lanes = Signal(Q)
    q_ox = Signal(range(WMAX + 1))
    q_y = Signal(10)
    q_h = [Signal(POOL_BITS, name=f"q_h_{q}") for q in range(Q)]
    q_ypad = Signal()
    o_valid = Signal()                  # output bytes of one pixel, ``Q`` lanes
    o_g = Signal(range(NG))
    o_lanes = Signal(Q)
    o_ox = Signal(range(WMAX + 1))
    o_oy = Signal(10)
    o_byte = [Signal(8, name=f"o_byte_{q}") for q in range(Q)]
    mp.d.sync += [q_valid.eq(0), o_valid.eq(0)]
    xq = mu.x
    yq = mu.y

    def out(ox, oy, values, g, lanes):
        mp.d.sync += [o_valid.eq(1), o_g.eq(g), o_lanes.eq(lanes), o_ox.eq(ox),
                      o_oy.eq(oy)]
        mp.d.sync += [o_byte[q].eq(values[q]) for q in range(Q)]

    def h_token(ox, values, ypad):
        mp.d.sync += [q_valid.eq(1), q_g.eq(mu.g), q_lanes.eq(mu.lanes), q_ox.eq(ox),
                      q_y.eq(yq), q_ypad.eq(ypad)]
        mp.d.sync += [q_h[q].eq(values[q]) for q in range(Q)]
        mp.d.comb += pbuf_rd.addr.eq(mu.g * WMAX + ox)

    # One horizontal combination serves the block pools (the row's sum or maximum so far with
    # the new value) and the stride-1 ones (the previous value with the new, or the pad).
    s1 = _s1_pool(pool)
    cur = [Mux(mu.kind.xpad, Mux(is_max, 0, prev_u[q]), p_u[q]) for q in range(Q)]
    h_op = [op(Mux(s1, prev_u[q], hacc[q]), Mux(s1, cur[q], p_u[q])) for q in range(Q)]
    with mp.If(mu.kind.valid):
        with mp.Switch(pool):
            with mp.Case(Pool.BYPASS):
                out(xq, yq, p_u, mu.g, mu.lanes)
            with mp.Case(Pool.LEFT_TOP_2_S2, Pool.RIGHT_TOP_2_S2, Pool.LEFT_TOP_4_S4):
                sh = Mux(pool == Pool.LEFT_TOP_4_S4, 2, 1)
                kmask = Mux(pool == Pool.LEFT_TOP_4_S4, 3, 1)
                want_x = Mux(pool == Pool.RIGHT_TOP_2_S2, 1, 0)
                # The block is whole: (x >> sh) < OW, (y >> sh) < OH. The engine's check
                # ensures OW = W >> sh and OH = H >> sh, and these pools have no pad column or
                # row (x < W, y < H), so x >> sh ≤ OW, y >> sh ≤ OH: equalities, not carry
                # chains, tell.
                with mp.If(((xq & kmask) == want_x) & ((yq & kmask) == 0)
                           & ((xq >> sh) != OW) & ((yq >> sh) != OH)):
                    out(xq >> sh, yq >> sh, p_u, mu.g, mu.lanes)
            with mp.Case(Pool.MAX_2_S2, Pool.MEAN_2_S2, Pool.MAX_4_S4, Pool.MEAN_4_S4):
                kmask = Mux(block4, 3, 1)
                sh = Mux(block4, 2, 1)
                new_h = [Mux((xq & kmask) == 0, p_u[q], h_op[q]) for q in range(Q)]
                mp.d.sync += [hacc[q].eq(new_h[q]) for q in range(Q)]
                with mp.If((xq & kmask) == kmask):
                    h_token(xq >> sh, new_h, 0)
            with mp.Case(Pool.MEAN_2_S1, Pool.MAX_2_S1):
                with mp.If(mu.kind.ypad):
                    h_token(xq, [0] * Q, 1)
                with mp.Else():
                    mp.d.sync += [prev_u[q].eq(p_u[q]) for q in range(Q)]
                    with mp.If(xq != 0):
                        h_token(xq - 1, h_op, 0)

    # Pool Q1: vertical combine with the row buffer.
    pb = pbuf_rd.data
    mp.d.comb += pbuf_wr.addr.eq(q_g * WMAX + q_ox)
    # One combination of the row buffer with the new values serves every pool (one adder and
    # one comparator a lane): a stride-1 pool's pad row repeats the last row, pb with itself.
    v_op = [op(pb[q], Mux(q_ypad, pb[q], q_h[q])) for q in range(Q)]
    with mp.If(q_valid):
        with mp.If(block2 | block4):
            kmask = Mux(block4, 3, 1)
            sh = Mux(block4, 2, 1)
            vr = q_y & kmask
            new_v = [Mux(vr == 0, q_h[q], v_op[q]) for q in range(Q)]
            mp.d.comb += pbuf_wr.en.eq(1)
            mp.d.comb += [pbuf_wr.data[q].eq(new_v[q]) for q in range(Q)]
            mean_shift = Mux(block4, 4, 2)
            with mp.If((vr == kmask) & (q_ox != OW) & ((q_y >> sh) != OH)):   # as above
                out(q_ox, q_y >> sh,
                    [Mux(is_max, new_v[q], new_v[q] >> mean_shift) for q in range(Q)],
                    q_g, q_lanes)
        with mp.Else():                 # stride-1 2×2
            with mp.If(~q_ypad):
                mp.d.comb += pbuf_wr.en.eq(1)
                mp.d.comb += [pbuf_wr.data[q].eq(q_h[q]) for q in range(Q)]
            with mp.If(q_ypad | (q_y != 0)):
                out(q_ox, q_y - 1, [Mux(is_max, v_op[q], v_op[q] >> 2) for q in range(Q)],
                    q_g, q_lanes)

    # Channel lines of the group's lanes: dst + (oc >> out_shift) · wb_channel_switch_addr
    # and the channel's slot within its line, walked one channel a cycle from the group's
    # first channel (the walk ends on the next group's first channel).
    line_shape = len(d.image_dst_addr) + 1
    slot_mask = Signal(2)
    m.d.comb += slot_mask.eq(Mux(ctx.out_shift == 2, 3, Mux(ctx.out_shift == 1, 1, 0)))
    lane_line = Array(Signal(line_shape, name=f"lane_line_{j}") for j in range(P))
    lane_slot = Array(Signal(2, name=f"lane_slot_{j}") for j in range(P))
    walk_ch = Signal(11)
    walk_line = Signal(line_shape)
    walk_j = Signal(range(P + 1))
    walking = Signal()
    with m.If(ctx.run_start):
        m.d.sync += [walking.eq(1), walk_j.eq(0)]
        with m.If(ctx.oc0 == 0):
            m.d.sync += [walk_ch.eq(0), walk_line.eq(d.image_dst_addr)]
    with m.Elif(walking):
        m.d.sync += [lane_line[walk_j].eq(walk_line), lane_slot[walk_j].eq(walk_ch & slot_mask),
                     walk_ch.eq(walk_ch + 1), walk_j.eq(walk_j + 1)]
        with m.If(((walk_ch + 1) & slot_mask) == 0):
            m.d.sync += walk_line.eq(walk_line + d.wb_channel_switch_addr)
        with m.If(walk_j == ctx.group_size - 1):
            m.d.sync += walking.eq(0)

    out_pitch_shift = Signal(3)
    m.d.comb += out_pitch_shift.eq(6 - ctx.out_shift)

    def write_address(j, row_line, word):
        """Byte address of word ``word`` of lane ``j``'s output row at line ``row_line``."""
        line = row_line if P == 1 else lane_line[j] + row_line
        if WMAX <= LINE_BYTES:
            # A row of at most LINE_BYTES bytes fits its channel's slot of the line (the check
            # requires the layout of wb_group channels a line, each slot LINE_BYTES / wb_group
            # bytes and the row no longer): the slot's offset and the word's share no bit and
            # stay below LINE_BYTES, so no adder.
            in_line = (lane_slot[j] << out_pitch_shift) | (word * B)
            return Cat(in_line[:(LINE_BYTES - 1).bit_length()], line)
        return line * LINE_BYTES + (lane_slot[j] << out_pitch_shift) + word * B

    if spaced:
        assert P == 1
        write_idle = _write_bytes(m, ctx, stall, o_valid, o_ox, o_byte[0], o_lanes[0],
                                  walking, walk_line, write_address, B)
        return ~q_valid & write_idle

    # Coalescer: each lane gathers the bytes of one RAM word of its output row, then the
    # ``Q`` words move to the write bank, which writes one a cycle. Every lane's row starts
    # 16-byte aligned, so all lanes cross word boundaries at the same column.
    c_data = [Signal(8 * B, name=f"c_data_{q}") for q in range(Q)]
    c_mask = [Signal(B, name=f"c_mask_{q}") for q in range(Q)]
    pos = o_ox[:log_b]
    new_data = [Signal(8 * B, name=f"c_new_data_{q}") for q in range(Q)]
    new_mask = [Signal(B, name=f"c_new_mask_{q}") for q in range(Q)]
    for q in range(Q):
        mp.d.comb += [new_data[q].eq(c_data[q]), new_mask[q].eq(c_mask[q])]
        mp.d.comb += [new_data[q].word_select(pos, 8).eq(o_byte[q]),
                      new_mask[q].bit_select(pos, 1).eq(o_lanes[q])]
    row_end = Signal()                  # the output is the last of its row (OW − 1)
    mp.d.comb += row_end.eq(o_ox == d.o_row_wid)
    flush = Signal()
    mp.d.comb += flush.eq(o_valid & ((pos == B - 1) | row_end))
    # With one lane the bank writes the coalescer's word in place (the coalescer waits while
    # the bank is busy) rather than a copy of it: 8·B flip-flops fewer. With more, the bank
    # takes copies, and the coalescer goes on while it writes them one by one.
    in_place = Q == 1
    with mp.If(o_valid):
        if in_place:
            mp.d.sync += c_data[0].eq(new_data[0])
        with mp.If(flush):
            mp.d.sync += [c_mask[q].eq(0) for q in range(Q)]
        with mp.Else():
            if not in_place:
                mp.d.sync += [c_data[q].eq(new_data[q]) for q in range(Q)]
            mp.d.sync += [c_mask[q].eq(new_mask[q]) for q in range(Q)]

    # Row line: oy · wb_row_switch_addr, advanced as the rows come. With one lane group an
    # output row is whole before the next begins, and its last column flushes: the line
    # advances after that flush, and the rows need not be compared.
    row_oy = Signal(10)
    row_line = Signal(line_shape)
    if NG == 1:
        next_row_line = row_line
    else:
        next_row_line = Mux(o_oy == row_oy, row_line, row_line + d.wb_row_switch_addr)

    # Write bank (outside the stalled pipeline).
    bank_busy = Signal()
    bank_q = Signal(range(Q))
    bank_g = Signal(range(NG))
    bank_row_line = Signal(line_shape)
    bank_word = Signal(range(WMAX // B + 2))
    bank_data = Array(c_data if in_place else
                      [Signal(8 * B, name=f"bank_data_{q}") for q in range(Q)])
    bank_mask = Array(Signal(B, name=f"bank_mask_{q}") for q in range(Q))
    bank_last = Signal()
    bank_go = Signal()                  # the bank writes a word this cycle
    m.d.comb += [bank_go.eq(bank_busy & ~ctx.port_taken & ~walking),
                 bank_last.eq(bank_go & (bank_q == Q - 1)),
                 stall.eq((o_valid if in_place else flush) & bank_busy & ~bank_last)]
    with m.If(bank_go):
        m.d.sync += bank_q.eq(bank_q + 1)
        with m.If(bank_last):
            m.d.sync += [bank_busy.eq(0), bank_q.eq(0)]
    with m.If(flush & ~stall):
        m.d.sync += [bank_busy.eq(1), bank_q.eq(0), bank_g.eq(o_g),
                     bank_row_line.eq(next_row_line), row_line.eq(next_row_line),
                     row_oy.eq(o_oy), bank_word.eq(o_ox >> log_b)]
        if NG == 1:
            with m.If(row_end):
                m.d.sync += row_line.eq(row_line + d.wb_row_switch_addr)
        if not in_place:
            m.d.sync += [bank_data[q].eq(new_data[q]) for q in range(Q)]
        m.d.sync += [bank_mask[q].eq(new_mask[q]) for q in range(Q)]
    with m.If(ctx.run_start):
        m.d.sync += [row_oy.eq(0), row_line.eq(0)]
    if P == 1:
        # One lane: the row line starts from the lane's channel line (the walk's one step,
        # long before the first output), so the address needs no sum of the two.
        with m.If(walking):
            m.d.sync += row_line.eq(walk_line)
    byte = write_address(bank_g * Q + bank_q, bank_row_line, bank_word)
    m.d.comb += [ctx.ram_wr.addr.eq(byte >> log_b), ctx.ram_wr.data.eq(bank_data[bank_q]),
                 ctx.ram_wr.en.eq(Mux(bank_go, bank_mask[bank_q], 0))]

    idle = Signal()
    m.d.comb += idle.eq(~q_valid & ~o_valid & ~bank_busy & ~walking)
    return idle


def _write_bytes(m, ctx, stall, o_valid, o_ox, o_byte, o_lane, walking, walk_line,
                 write_address, B):
    """One lane, an output every :data:`SERIAL_PERIOD` cycles at most: each output byte is
    written on its own (a byte enable of its word) in the first cycle the RAM port is free,
    the pooling stages stalled until then, rather than gathered into words: no word register,
    no write bank. Returns a signal that is 1 when no output waits to be written."""
    log_b = B.bit_length() - 1
    # Row line: oy · wb_row_switch_addr from the lane's channel line (the walk's one step,
    # long before the first output), advanced after the row's last output is written.
    row_line = Signal(len(walk_line))
    with m.If(walking):
        m.d.sync += row_line.eq(walk_line)
    write = Signal()
    m.d.comb += [write.eq(o_valid & ~ctx.port_taken & ~walking),
                 stall.eq(o_valid & ~write)]
    with m.If(write & (o_ox == ctx.d.o_row_wid)):
        m.d.sync += row_line.eq(row_line + ctx.d.wb_row_switch_addr)
    byte = write_address(0, row_line, o_ox >> log_b)
    m.d.comb += [ctx.ram_wr.addr.eq(byte >> log_b), ctx.ram_wr.data.eq(o_byte.replicate(B)),
                 ctx.ram_wr.en.eq(Mux(write & o_lane, 1 << o_ox[:log_b], 0))]
    idle = Signal()
    m.d.comb += idle.eq(~o_valid & ~walking)
    return idle
