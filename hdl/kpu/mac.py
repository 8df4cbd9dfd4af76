"""The KPU's multiply-accumulate array: ``lanes`` output channels × 9 taps of uint8 × uint8.

With ``platform=None`` the products are behavioural ``*``; with an iCE40 or ECP5 platform each
product is an explicit DSP primitive (:class:`Ice40Mul8x8Pair`, :class:`Ecp5Mul8x8`), so Yosys
cannot spread them over logic cells. The primitives are simulated by behavioural twins of the
same ports (see :func:`_platform_family`), so the simulator checks the wiring around them.
"""

from amaranth.hdl import Cat, ClockSignal, Elaboratable, Instance, Module, ResetSignal, Signal
from amaranth.lib import data, wiring
from amaranth.lib.wiring import In, Out

__all__ = ["TAPS", "PRODUCT_BITS", "LANE_SUM_BITS", "TAP_SUM_BITS", "MacArray"]

#: Taps of one 3×3 window (also the 9 input channels a 1×1 step takes).
TAPS = 9
PRODUCT_BITS = 16
#: Bits of the sum of 9 products (9 · 255² < 2²⁰).
LANE_SUM_BITS = 20
#: Bits of the sum of 9 taps (9 · 255 < 2¹²).
TAP_SUM_BITS = 12
#: Clock cycles from ``x``/``w`` to ``sums``/``x_sum``.
LATENCY = 2


def _platform_family(platform):
    """``"ice40"``, ``"ecp5"`` or ``None`` (behavioural) for a platform object, a family name or
    ``None``."""
    if platform is None:
        return None
    if isinstance(platform, str):
        family = platform
    else:
        family = getattr(platform, "family", None) or type(platform).__name__.lower()
    for name in ("ice40", "ecp5"):
        if name in str(family).lower():
            return name
    raise ValueError(f"Platform {platform!r} is neither iCE40 nor ECP5; pass platform=None "
                     f"for behavioural multipliers")


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
        m.submodules.mac = Instance(
            "SB_MAC16",
            p_MODE_8x8=1, p_A_SIGNED=0, p_B_SIGNED=0,
            p_A_REG=0, p_B_REG=0, p_C_REG=0, p_D_REG=0,
            p_TOP_8x8_MULT_REG=1, p_BOT_8x8_MULT_REG=1,
            p_PIPELINE_16x16_MULT_REG1=0, p_PIPELINE_16x16_MULT_REG2=0,
            # Output muxes select the (registered) 8x8 products, not the accumulators.
            p_TOPOUTPUT_SELECT=0b10, p_BOTOUTPUT_SELECT=0b10,
            p_TOPADDSUB_LOWERINPUT=0, p_TOPADDSUB_UPPERINPUT=0, p_TOPADDSUB_CARRYSELECT=0,
            p_BOTADDSUB_LOWERINPUT=0, p_BOTADDSUB_UPPERINPUT=0, p_BOTADDSUB_CARRYSELECT=0,
            p_NEG_TRIGGER=0,
            i_CLK=ClockSignal(), i_CE=1, i_A=self.a, i_B=self.b, i_C=0, i_D=0,
            i_AHOLD=0, i_BHOLD=0, i_CHOLD=0, i_DHOLD=0,
            # No reset: the primitive's resets are asynchronous, and the array's results are
            # only used under the engine's (reset) valid flags.
            i_IRSTTOP=0, i_IRSTBOT=0, i_ORSTTOP=0, i_ORSTBOT=0,
            i_OLOADTOP=0, i_OLOADBOT=0, i_ADDSUBTOP=0, i_ADDSUBBOT=0,
            i_OHOLDTOP=0, i_OHOLDBOT=0, i_CI=0, i_ACCUMCI=0, i_SIGNEXTIN=0,
            o_O=self.o)
        return m


class Ecp5Mul8x8(Elaboratable):
    """One unsigned 8×8 product in a MULT18X18D, output registered in the primitive; latency 1."""
    def __init__(self, platform):
        self.platform = platform
        self.a = Signal(8)
        self.b = Signal(8)
        self.o = Signal(16)

    def elaborate(self, platform):
        m = Module()
        if self.platform is None:
            m.d.sync += self.o.eq(self.a * self.b)
            return m
        p = Signal(36)
        m.submodules.mult = Instance(
            "MULT18X18D",
            p_REG_INPUTA_CLK="NONE", p_REG_INPUTB_CLK="NONE", p_REG_INPUTC_CLK="NONE",
            p_REG_PIPELINE_CLK="NONE", p_REG_OUTPUT_CLK="CLK0",
            p_CLK0_DIV="ENABLED", p_CLK1_DIV="ENABLED", p_CLK2_DIV="ENABLED",
            p_CLK3_DIV="ENABLED", p_GSR="DISABLED", p_SOURCEB_MODE="B_SHIFT",
            p_RESETMODE="SYNC",
            i_CLK0=ClockSignal(), i_CE0=1, i_RST0=ResetSignal(),
            i_SIGNEDA=0, i_SIGNEDB=0, i_SOURCEA=0, i_SOURCEB=0,
            **{f"i_A{i}": (self.a[i] if i < 8 else 0) for i in range(18)},
            **{f"i_B{i}": (self.b[i] if i < 8 else 0) for i in range(18)},
            **{f"o_P{i}": p[i] for i in range(36)})
        m.d.comb += self.o.eq(p[:16])
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
        If ``lanes`` is not an integer in 1..64, or the platform is neither iCE40 nor ECP5.
    """
    def __init__(self, lanes, *, platform=None, sim_primitives=False):
        try:
            if not isinstance(lanes, int) or isinstance(lanes, bool) or not 1 <= lanes <= 64:
                raise ValueError(f"Lanes must be an integer in 1..64, not {lanes!r}")
            self._family = _platform_family(platform)
        except ValueError:
            self._MustUse__silence = True   # a rejected object is not an unused design
            raise
        self._lanes = lanes
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

    def elaborate(self, platform):
        m = Module()
        prim_platform = None if self._sim_primitives else self._family
        products = [[Signal(PRODUCT_BITS, name=f"p_{j}_{t}") for t in range(TAPS)]
                    for j in range(self._lanes)]
        flat = [(j, t) for j in range(self._lanes) for t in range(TAPS)]
        if self._family is None:
            for j, t in flat:
                m.d.sync += products[j][t].eq(self.x[t] * self.w[j][t])
        elif self._family == "ice40":
            for n in range(0, len(flat), 2):
                pair = flat[n:n + 2]
                mul = Ice40Mul8x8Pair(prim_platform)
                m.submodules[f"mul{n // 2}"] = mul
                for half, (j, t) in enumerate(pair):
                    m.d.comb += [mul.a[8 * half:8 * half + 8].eq(self.x[t]),
                                 mul.b[8 * half:8 * half + 8].eq(self.w[j][t])]
                    m.d.comb += products[j][t].eq(mul.o[16 * half:16 * half + 16])
        else:
            for n, (j, t) in enumerate(flat):
                mul = Ecp5Mul8x8(prim_platform)
                m.submodules[f"mul{n}"] = mul
                m.d.comb += [mul.a.eq(self.x[t]), mul.b.eq(self.w[j][t]),
                             products[j][t].eq(mul.o)]
        x_sum = Signal(TAP_SUM_BITS)
        m.d.sync += x_sum.eq(sum(self.x[t] for t in range(TAPS)))
        m.d.sync += self.x_sum.eq(x_sum)
        for j in range(self._lanes):
            m.d.sync += self.sums[j].eq(sum(products[j]))
        return m
