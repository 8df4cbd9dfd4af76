"""Wide multipliers for the KPU's post-processing, built from ECP5 MULT18X18D on ECP5.

The ECP5 build synthesises with ``synth_ecp5 -nodsp`` so that Yosys does not spend DSPs on
products of its own choosing: every DSP is an explicit instance. :class:`Ecp5Mult18x18D` is one
such instance (with a behavioural twin of the same ports for the simulator, as in
:mod:`.mac`); :class:`WideMul` splits a wide signed product into 18×18 pieces of it.

A DSP holds one 8×8 product of the MAC array (64 partial-product bits) but about 200 bits of a
wide post-processing product, so on a full device the post-processing multipliers belong in
DSPs and some MAC products in logic (:class:`.mac.MacArray`'s ``dsp_products``).
"""

from amaranth.hdl import (ClockSignal, EnableInserter, Instance, Module, ResetSignal, Shape,
                          Signal)
from amaranth.lib import wiring
from amaranth.lib.wiring import In, Out

from ..params import checking, platform_family

__all__ = ["LIMB_BITS", "LOGIC_LIMB_BITS", "LATENCY", "limbs", "dsp_count", "Ecp5Mult18x18D",
           "WideMul"]

#: Operand bits of one MULT18X18D.
LIMB_BITS = 18
#: A pair of limbs of which one has at most this many bits is multiplied in logic, not in a DSP:
#: ``synth_ecp5 -nodsp`` builds a registered 1×16 signed product from 16 LUT4 + 9 CCU2C and a
#: 2×18 one from 36 LUT4 + 10 CCU2C, while the 8×8 MAC product that the DSP would displace costs
#: 260 LUT4 + 8 CCU2C in logic. (It saves a DSP per ``signed(37)`` operand, e.g.)
LOGIC_LIMB_BITS = 2
#: Clock cycles from ``a``/``b`` to ``p`` of every :class:`WideMul` (DSP output register, then
#: the registered sum of the partial products; the behavioural form has the same two stages).
LATENCY = 2


def limbs(shape):
    """How an operand of ``shape`` is cut into MULT18X18D inputs: a list of
    ``(lsb, width, signed)`` from the least significant limb up.

    Every limb but the top one is 18 bits, unsigned (``SIGNEDx = 0``); the top limb holds the
    remaining 1..18 bits and carries the operand's signedness (its sign bit is the operand's).
    """
    shape = Shape.cast(shape)
    result = []
    lsb = 0
    while shape.width - lsb > LIMB_BITS:
        result.append((lsb, LIMB_BITS, False))
        lsb += LIMB_BITS
    result.append((lsb, shape.width - lsb, shape.signed))
    return result


def _limb_pairs(a_shape, b_shape):
    """Every ``(a limb, b limb, in_dsp)``: the pieces of an ``a × b`` product on ECP5."""
    return [(la, lb, min(la[1], lb[1]) > LOGIC_LIMB_BITS)
            for la in limbs(a_shape) for lb in limbs(b_shape)]


def dsp_count(a_shape, b_shape):
    """MULT18X18D primitives a :class:`WideMul` of these operand shapes takes on ECP5."""
    return sum(in_dsp for _, _, in_dsp in _limb_pairs(Shape.cast(a_shape), Shape.cast(b_shape)))


class Ecp5Mult18x18D(wiring.Component):
    """One ECP5 MULT18X18D: ``p = a × b``, registered in the primitive's output register.

    Latency 1 (combinational inputs, output register on ``CLK0``, synchronous reset from the
    ``sync`` domain). ``SIGNEDA``/``SIGNEDB`` are tied to constants: as Lattice's sysDSP guide
    documents, 1 reads the 18-bit operand as two's complement and 0 as unsigned; ``P`` is the
    36-bit product (two's complement when either operand is signed, which always fits: the
    widest mixed product, ``-2¹⁷ · (2¹⁸ - 1)``, is above ``-2³⁵``).

    Parameters
    ----------
    signed_a, signed_b : bool
        Tie ``SIGNEDA``/``SIGNEDB`` to 1 (``a``/``b`` two's complement) rather than 0.
    simulate : bool
        Elaborate a behavioural twin of the same ports (for the simulator: Yosys ships no
        simulation model of MULT18X18D, only a black box) instead of the instance.

    Members
    -------
    a : In(18)
    b : In(18)
    ce : In(1, init=1)
        Clock enable of the output register (``CE0``): 0 holds ``p``.
    p : Out(36)
        The product of the previous cycle's ``a`` and ``b``; read it with :meth:`product`.
    """
    a: In(LIMB_BITS)
    b: In(LIMB_BITS)
    ce: In(1, init=1)
    p: Out(2 * LIMB_BITS)

    def __init__(self, *, signed_a=False, signed_b=False, simulate=False):
        self._signed_a = bool(signed_a)
        self._signed_b = bool(signed_b)
        self._simulate = simulate
        super().__init__()

    @property
    def signed_a(self):
        return self._signed_a

    @property
    def signed_b(self):
        return self._signed_b

    def product(self):
        """``p`` read as the primitive defines it: signed when either operand is signed."""
        return self.p.as_signed() if self._signed_a or self._signed_b else self.p

    def elaborate(self, platform):
        m = Module()
        if self._simulate:
            a = self.a.as_signed() if self._signed_a else self.a
            b = self.b.as_signed() if self._signed_b else self.b
            with m.If(self.ce):
                m.d.sync += self.p.eq(a * b)
            return m
        m.submodules.mult = Instance(
            "MULT18X18D",
            p_REG_INPUTA_CLK="NONE", p_REG_INPUTB_CLK="NONE", p_REG_INPUTC_CLK="NONE",
            p_REG_PIPELINE_CLK="NONE", p_REG_OUTPUT_CLK="CLK0",
            p_CLK0_DIV="ENABLED", p_CLK1_DIV="ENABLED", p_CLK2_DIV="ENABLED",
            p_CLK3_DIV="ENABLED", p_GSR="DISABLED", p_SOURCEB_MODE="B_SHIFT",
            p_RESETMODE="SYNC",
            i_CLK0=ClockSignal(), i_CE0=self.ce, i_RST0=ResetSignal(),
            i_SIGNEDA=int(self._signed_a), i_SIGNEDB=int(self._signed_b),
            i_SOURCEA=0, i_SOURCEB=0,
            **{f"i_A{i}": self.a[i] for i in range(LIMB_BITS)},
            **{f"i_B{i}": self.b[i] for i in range(LIMB_BITS)},
            **{f"o_P{i}": self.p[i] for i in range(2 * LIMB_BITS)})
        return m


class WideMul(wiring.Component):
    """``p = a × b`` at full width, fully pipelined, latency :data:`LATENCY` (2) in every form.

    - ECP5 platform: ``a`` and ``b`` are cut into :func:`limbs` (unsigned 18-bit low limbs, a
      signed top limb) and each pair of limbs is one :class:`Ecp5Mult18x18D`, except pairs with
      a limb of at most :data:`LOGIC_LIMB_BITS` bits, which are multiplied in logic with the
      same one-cycle register; the shifted partial products are summed in logic and
      registered. :attr:`dsp_count` primitives: ``signed(36) × signed(24)`` takes 2 × 2 = 4,
      ``signed(37) × signed(16)`` takes 2 (its 1-bit top limb of ``a`` is done in logic).
    - ``platform=None``, iCE40 or any other family: behavioural ``a * b``, registered twice.
      On iCE40 the few SB_MAC16 belong to the MAC array and ``synth_ice40`` maps ``*`` to logic
      anyway; for other families no primitive is written here, so Yosys maps ``*`` itself.

    Parameters
    ----------
    a_shape, b_shape : shape-castable
        Operand shapes, e.g. ``signed(36)``; signed or unsigned, at least 1 bit.
    platform : platform, family name or None
    sim_primitives : bool
        On ECP5, simulate the primitives' behavioural twins instead of instantiating them (the
        same decomposition, for the simulator).

    Members
    -------
    a : In(a_shape)
    b : In(b_shape)
    en : In(1, init=1)
        Pipeline enable: 0 holds every register, the primitives' included (so a multiplier in
        a pipeline that stalls under an ``EnableInserter`` must get the same enable here: the
        inserter cannot reach into a primitive).
    p : Out(width a + width b, signed if either operand is)
        ``a × b`` of the inputs :data:`LATENCY` cycles earlier; one new product every cycle.
        The width always holds the exact product (no overflow).

    Raises
    ------
    TypeError
        If a shape is not shape-castable.
    ValueError
        If a shape has 0 bits.
    """
    def __init__(self, a_shape, b_shape, *, platform=None, sim_primitives=False):
        a_shape, b_shape = Shape.cast(a_shape), Shape.cast(b_shape)
        with checking(self):
            for name, shape in (("a", a_shape), ("b", b_shape)):
                if shape.width < 1:
                    raise ValueError(f"Operand {name} must have at least 1 bit, not {shape!r}")
        self._ecp5 = platform_family(platform) == "ecp5"
        self._sim_primitives = sim_primitives
        p_shape = Shape(a_shape.width + b_shape.width, a_shape.signed or b_shape.signed)
        super().__init__({"a": In(a_shape), "b": In(b_shape), "en": In(1, init=1),
                          "p": Out(p_shape)})

    @property
    def dsp_count(self):
        """MULT18X18D primitives this multiplier uses (0 unless on ECP5)."""
        return dsp_count(self.a.shape(), self.b.shape()) if self._ecp5 else 0

    def elaborate(self, platform):
        m = Module()
        if not self._ecp5:
            product = Signal(self.p.shape())
            m.d.sync += [product.eq(self.a * self.b), self.p.eq(product)]
            return EnableInserter(self.en)(m)
        dsps = Module()
        partials = []
        pieces = _limb_pairs(self.a.shape(), self.b.shape())
        for (a_lsb, a_width, a_signed), (b_lsb, b_width, b_signed), in_dsp in pieces:
            a_limb = self.a[a_lsb:a_lsb + a_width]
            b_limb = self.b[b_lsb:b_lsb + b_width]
            a_limb = a_limb.as_signed() if a_signed else a_limb
            b_limb = b_limb.as_signed() if b_signed else b_limb
            if in_dsp:
                mul = Ecp5Mult18x18D(signed_a=a_signed, signed_b=b_signed,
                                     simulate=self._sim_primitives)
                # Outside the EnableInserter below: the primitive is held by its own CE (and
                # so is its simulation twin, so the tests see a CE that is not wired).
                dsps.submodules[f"mul_a{a_lsb}_b{b_lsb}"] = mul
                # .eq() extends by the source's signedness: a signed top limb is sign-extended
                # to 18 bits, as the primitive expects with SIGNEDx = 1.
                m.d.comb += [mul.a.eq(a_limb), mul.b.eq(b_limb), mul.ce.eq(self.en)]
                partial = mul.product()
            else:
                partial = Signal(Shape(a_width + b_width, a_signed or b_signed),
                                 name=f"pp_a{a_lsb}_b{b_lsb}")
                m.d.sync += partial.eq(a_limb * b_limb)
            partials.append(partial << (a_lsb + b_lsb))
        # The exact product fits p, so the sum truncated to p's width is exact. All partial
        # products are added in one cycle (4 terms for 36×24): pipeline here if timing fails.
        m.d.sync += self.p.eq(sum(partials))
        dsps.submodules.logic = EnableInserter(self.en)(m)
        return dsps
