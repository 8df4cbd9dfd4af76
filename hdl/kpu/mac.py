"""The KPU's multiply-accumulate array: ``lanes`` output channels × 9 taps of uint8 × uint8.

With ``platform=None`` the products are behavioural ``*``; with an iCE40 or ECP5 platform the
first ``dsp_products`` products are explicit DSP primitives (:class:`Ice40Mul8x8Pair`,
:class:`.widemul.Ecp5Mult18x18D`), so Yosys cannot spread them over logic cells, and the rest are
behavioural ``*`` (logic under ``synth_ecp5 -nodsp``), which leaves DSPs for the post-processing
multipliers. The primitives are simulated by behavioural twins of the same ports
(``sim_primitives``), so the simulator checks the wiring around them.
"""

from amaranth.hdl import Cat, ClockSignal, Elaboratable, Instance, Module, Mux, Signal, Value
from amaranth.lib import data, wiring
from amaranth.lib.wiring import In, Out

from ..params import checking, platform_family
from .widemul import Ecp5Mult18x18D

__all__ = ["TAPS", "PRODUCT_BITS", "LANE_SUM_BITS", "TAP_SUM_BITS", "adder_tree", "sb_mac16",
           "AccumulateAdd", "MacArray"]

#: Taps of one 3×3 window (also the 9 input channels a 1×1 step takes).
TAPS = 9
PRODUCT_BITS = 16
#: Bits of the sum of 9 products (9 · 255² < 2²⁰).
LANE_SUM_BITS = 20
#: Bits of the sum of 9 taps (9 · 255 < 2¹²).
TAP_SUM_BITS = 12
#: Clock cycles from ``x``/``w`` to ``sums``/``x_sum``.
LATENCY = 2


def adder_tree(m, values, name):
    """The sum of ``values`` as a balanced tree of two-operand adders, combinational.

    Each partial sum is a ``keep`` signal so that Yosys's ``alumacc`` does not merge the tree
    into one multi-operand ``$macc``: that maps to carry-save full adders, two LUTs per bit
    per operand removed, where a carry-chain adder takes one logic cell per bit (iCE40: 9
    products summed, 242 LUTs against 135 cells of LUT and carry)."""
    level = [Value.cast(v) for v in values]
    n = 0
    while len(level) > 1:
        pairs = []
        for a, b in zip(level[::2], level[1::2]):
            s = Signal(max(len(a), len(b)) + 1, name=f"{name}_t{n}", attrs={"keep": 1})
            m.d.comb += s.eq(a + b)
            pairs.append(s)
            n += 1
        level = pairs + level[len(pairs) * 2:]
    return level[0]


def sb_mac16(*, a, b, o, ce, **params):
    """An iCE40 SB_MAC16 computing ``a × b`` on ``o`` as the multiplier ``params`` (``p_...``)
    configure it. Unless ``params`` say otherwise (ports ``i_...`` too): no input registers, no
    C/D operands, no accumulator or adder in use, no loads, no holds, and no resets (the
    primitive's resets are asynchronous; its users qualify its results with valid flags of
    their own)."""
    ports = dict(
        p_A_REG=0, p_B_REG=0, p_C_REG=0, p_D_REG=0,
        p_TOPADDSUB_LOWERINPUT=0, p_TOPADDSUB_UPPERINPUT=0, p_TOPADDSUB_CARRYSELECT=0,
        p_BOTADDSUB_LOWERINPUT=0, p_BOTADDSUB_UPPERINPUT=0, p_BOTADDSUB_CARRYSELECT=0,
        p_NEG_TRIGGER=0,
        i_CLK=ClockSignal(), i_CE=ce, i_A=a, i_B=b, i_C=0, i_D=0,
        i_AHOLD=0, i_BHOLD=0, i_CHOLD=0, i_DHOLD=0,
        i_IRSTTOP=0, i_IRSTBOT=0, i_ORSTTOP=0, i_ORSTBOT=0,
        i_OLOADTOP=0, i_OLOADBOT=0, i_ADDSUBTOP=0, i_ADDSUBBOT=0,
        i_OHOLDTOP=0, i_OHOLDBOT=0, i_CI=0, i_ACCUMCI=0, i_SIGNEXTIN=0,
        o_O=o)
    ports.update(params)
    return Instance("SB_MAC16", **ports)


class AccumulateAdd(Elaboratable):
    """``o = add if first else acc + add``, combinational, ``width`` bits (1..32) modulo
    2^width.

    With an iCE40 platform, an SB_MAC16 with its multipliers bypassed: its two 16-bit adders
    chained into one 32-bit adder (``{A, B} + {C, D}``) and its output load (``OLOAD``)
    passing ``{C, D}`` unchanged when ``first``, so no logic cell is needed (a LUT4 can zero
    ``acc`` or add, not both: two cells a bit). Otherwise behavioural.
    """
    def __init__(self, width, platform=None):
        with checking(self):
            if not isinstance(width, int) or isinstance(width, bool) or not 1 <= width <= 32:
                raise ValueError(f"Width must be an integer in 1..32, not {width!r}")
        self.platform = platform
        self.acc = Signal(width)
        self.add = Signal(width)
        self.first = Signal()
        self.o = Signal(width)

    def elaborate(self, platform):
        m = Module()
        if platform_family(self.platform) != "ice40":
            m.d.comb += self.o.eq(Mux(self.first, 0, self.acc) + self.add)
            return m
        acc, add, o = Signal(32), Signal(32), Signal(32)
        m.d.comb += [acc.eq(self.acc), add.eq(self.add)]
        m.submodules.add = sb_mac16(
            a=acc[16:], b=acc[:16], o=o, ce=1,
            p_MODE_8x8=1, p_A_SIGNED=0, p_B_SIGNED=0,
            p_TOP_8x8_MULT_REG=0, p_BOT_8x8_MULT_REG=0,
            p_PIPELINE_16x16_MULT_REG1=0, p_PIPELINE_16x16_MULT_REG2=0,
            # Lower inputs A and B (not a product), upper inputs C and D; the bottom adder's
            # carry goes into the top one; the (unregistered) adder outputs.
            p_TOPADDSUB_LOWERINPUT=0, p_TOPADDSUB_UPPERINPUT=1, p_TOPADDSUB_CARRYSELECT=0b10,
            p_BOTADDSUB_LOWERINPUT=0, p_BOTADDSUB_UPPERINPUT=1, p_BOTADDSUB_CARRYSELECT=0,
            p_TOPOUTPUT_SELECT=0, p_BOTOUTPUT_SELECT=0,
            i_C=add[16:], i_D=add[:16], i_OLOADTOP=self.first, i_OLOADBOT=self.first)
        m.d.comb += self.o.eq(o)
        return m


class Ice40Mul8x8Pair(Elaboratable):
    """Two independent unsigned 8×8 products in one SB_MAC16 (``MODE_8x8``), registered output.

    ``a[15:8]·b[15:8]`` on ``o[31:16]`` and ``a[7:0]·b[7:0]`` on ``o[15:0]``; latency 1.
    """
    def __init__(self, platform):
        self.platform = platform
        self.a = Signal(16)
        self.b = Signal(16)
        self.o = Signal(32)

    def elaborate(self, platform):
        m = Module()
        if self.platform is None:           # behavioural twin, for simulation
            m.d.sync += self.o.eq(Cat(self.a[:8] * self.b[:8], self.a[8:] * self.b[8:]))
            return m
        # Output muxes select the (registered) 8x8 products, not the accumulators.
        m.submodules.mac = sb_mac16(
            a=self.a, b=self.b, o=self.o, ce=1,
            p_MODE_8x8=1, p_A_SIGNED=0, p_B_SIGNED=0,
            p_TOP_8x8_MULT_REG=1, p_BOT_8x8_MULT_REG=1,
            p_PIPELINE_16x16_MULT_REG1=0, p_PIPELINE_16x16_MULT_REG2=0,
            p_TOPOUTPUT_SELECT=0b10, p_BOTOUTPUT_SELECT=0b10)
        return m


class MacArray(wiring.Component):
    """``lanes`` × 9 uint8 products, summed per lane; also the sum of the 9 taps.

    Parameters
    ----------
    lanes : int
        Output channels computed in parallel (1..64).
    platform : platform or None
        ``None``: behavioural products; an iCE40 platform: SB_MAC16 in 8×8 mode, two products
        per DSP; an ECP5 platform: one MULT18X18D per product.
    sim_primitives : bool
        With a platform, simulate the primitives' behavioural twins instead of instantiating
        them (the same structure, for the simulator).
    dsp_products : int or None
        With a platform, how many products (lane-major: lane 0's 9 taps first) use a DSP
        primitive; the others are behavioural ``*`` with the same one-cycle register, so the
        latency does not change. ``None``: all of them. Ignored without a platform.

    Members
    -------
    x : In(ArrayLayout(8, 9))
        Tap values.
    w : In(ArrayLayout(ArrayLayout(8, 9), lanes))
        Weights of each lane.
    sums : Out(ArrayLayout(LANE_SUM_BITS, lanes))
        ``Σ_t x[t]·w[lane][t]``, :data:`LATENCY` cycles after ``x``/``w``; fully pipelined
        (one new set every cycle).
    x_sum : Out(TAP_SUM_BITS)
        ``Σ_t x[t]``, with the same latency.

    Raises
    ------
    ValueError
        If ``lanes`` is not an integer in 1..64, the platform is neither iCE40 nor ECP5, or
        ``dsp_products`` is not ``None`` or an integer in 0..9 × ``lanes``.
    """
    def __init__(self, lanes, *, platform=None, sim_primitives=False, dsp_products=None):
        with checking(self):
            if not isinstance(lanes, int) or isinstance(lanes, bool) or not 1 <= lanes <= 64:
                raise ValueError(f"Lanes must be an integer in 1..64, not {lanes!r}")
            self._family = platform_family(platform)
            if platform is not None and self._family is None:
                raise ValueError(f"Platform {platform!r} is neither iCE40 nor ECP5; pass "
                                 f"platform=None for behavioural multipliers")
            if dsp_products is None:
                dsp_products = TAPS * lanes
            if (not isinstance(dsp_products, int) or isinstance(dsp_products, bool)
                    or not 0 <= dsp_products <= TAPS * lanes):
                raise ValueError(f"DSP products must be None or an integer in "
                                 f"0..{TAPS * lanes}, not {dsp_products!r}")
        self._lanes = lanes
        self._dsp_products = dsp_products if self._family is not None else 0
        self._sim_primitives = sim_primitives
        super().__init__({
            "x": In(data.ArrayLayout(8, TAPS)),
            "w": In(data.ArrayLayout(data.ArrayLayout(8, TAPS), lanes)),
            "sums": Out(data.ArrayLayout(LANE_SUM_BITS, lanes)),
            "x_sum": Out(TAP_SUM_BITS),
        })

    @property
    def lanes(self):
        return self._lanes

    @property
    def family(self):
        return self._family

    @property
    def dsp_products(self):
        """Products in DSP primitives (0 without a platform)."""
        return self._dsp_products

    def elaborate(self, platform):
        m = Module()
        prim_platform = None if self._sim_primitives else self._family
        products = [[Signal(PRODUCT_BITS, name=f"p_{j}_{t}") for t in range(TAPS)]
                    for j in range(self._lanes)]
        flat = [(j, t) for j in range(self._lanes) for t in range(TAPS)]
        in_dsp, in_logic = flat[:self._dsp_products], flat[self._dsp_products:]
        for j, t in in_logic:
            m.d.sync += products[j][t].eq(self.x[t] * self.w[j][t])
        if self._family == "ice40":
            for n in range(0, len(in_dsp), 2):
                pair = in_dsp[n:n + 2]      # an odd count leaves the last pair's top half idle
                mul = Ice40Mul8x8Pair(prim_platform)
                m.submodules[f"mul{n // 2}"] = mul
                for half, (j, t) in enumerate(pair):
                    m.d.comb += [mul.a[8 * half:8 * half + 8].eq(self.x[t]),
                                 mul.b[8 * half:8 * half + 8].eq(self.w[j][t])]
                    m.d.comb += products[j][t].eq(mul.o[16 * half:16 * half + 16])
        elif self._family == "ecp5":
            for n, (j, t) in enumerate(in_dsp):
                mul = Ecp5Mult18x18D(simulate=self._sim_primitives)    # unsigned × unsigned
                m.submodules[f"mul{n}"] = mul
                m.d.comb += [mul.a.eq(self.x[t]), mul.b.eq(self.w[j][t]),
                             products[j][t].eq(mul.p)]
        x_sum = Signal(TAP_SUM_BITS)
        m.d.sync += x_sum.eq(adder_tree(m, [self.x[t] for t in range(TAPS)], "x_sum"))
        m.d.sync += self.x_sum.eq(x_sum)
        for j in range(self._lanes):
            m.d.sync += self.sums[j].eq(adder_tree(m, products[j], f"sum_{j}"))
        return m
