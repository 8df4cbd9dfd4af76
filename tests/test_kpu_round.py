"""The post stage's rounding shift + bias + clamp (:func:`nangua.hdl.kpu.post.round_clamp`,
and :func:`~nangua.hdl.kpu.post.serial_round_clamp`, which spreads it over 16 cycles) against
the golden model's :func:`~nangua.hdl.kpu.model.rounding_shift`, on the values where a cheaper
circuit goes wrong: exact halves, odd and even quotients, quotients at the edge of the window
the circuit keeps, shifts past the width of ``t``, and every mask edge of every shift."""

import random

import numpy as np
from amaranth.hdl import Module, Signal, signed
from amaranth.sim import Simulator

from nangua.hdl.kpu import model
from nangua.hdl.kpu.post import ACC_BITS, SERIAL_PERIOD, round_clamp, serial_round_clamp

T_BITS = ACC_BITS + 17      # (v − x_start) · y_mul, as in the post pipeline


def cases(rng, count):
    lo, hi = -(1 << (T_BITS - 1)), (1 << (T_BITS - 1)) - 1
    out = []
    for _ in range(count):
        shift = rng.choice([0, 1, 2, rng.randrange(64), rng.randrange(50, 64)])
        kind = rng.randrange(4)
        if kind == 0:
            t = rng.randint(lo, hi)
        elif kind == 1:             # quotient near the saturation edges, any fraction
            q = rng.choice([-2049, -2048, -1024, -257, -256, -1, 0, 255, 256, 1023, 2047, 2048])
            t = (q << shift) + rng.randrange(1 << shift) if shift else q
        elif kind == 2:             # exact half, odd or even quotient
            q = rng.randint(-600, 600)
            t = (q << shift) + ((1 << (shift - 1)) if shift else 0)
        else:                       # half ± 1
            q = rng.randint(-600, 600)
            t = (q << shift) + ((1 << (shift - 1)) if shift else 0) + rng.choice([-1, 1])
        out.append((max(lo, min(hi, t)), shift, rng.randrange(256)))
    return out


def _run(values):
    """``round_clamp`` of each ``(t, shift, bias)``, in simulation."""
    m = Module()
    t, shift, bias = Signal(signed(T_BITS)), Signal(6), Signal(8)
    y = Signal(8)
    m.d.comb += y.eq(round_clamp(m, t, shift, bias, 0))
    got = []

    async def bench(ctx):
        for value, amount, b in values:
            ctx.set(t, value)
            ctx.set(shift, amount)
            ctx.set(bias, b)
            got.append(ctx.get(y))

    sim = Simulator(m)
    sim.add_testbench(bench)
    sim.run()
    return got


def _check(values, run=None):
    ts, shifts, biases = (np.array(column, dtype=np.int64) for column in zip(*values))
    expected = np.clip(model.rounding_shift(ts, shifts) + biases, 0, 255)
    got = (run or _run)(values)
    wrong = [(v, e, g) for v, e, g in zip(values, expected, got) if e != g]
    assert not wrong, f"{len(wrong)} of {len(values)} differ, e.g. (t, shift, bias), model, " \
                      f"gateware = {wrong[:3]}"


def test_round_clamp_matches_model():
    _check(cases(random.Random("round-clamp"), 3000))


def test_round_clamp_mask_edges():
    # One bit (or all bits) at each position around each shift: the sticky mask ends at
    # t[shift − 2], the round bit is t[shift − 1], the quotient's window ends at
    # t[shift + 7] and anything above it saturates. Every shift against every bit position
    # catches a mask boundary off by one anywhere.
    _check(_edge_values(range(64), None))


def _run_serial(values):
    """:func:`serial_round_clamp` of each ``(t, shift, bias)``, one loaded every
    ``SERIAL_PERIOD`` cycles and read ``SERIAL_PERIOD`` cycles after its load, on the cycle
    the next one is loaded (as the serial front end reads it)."""
    m = Module()
    t, shift, bias, load = Signal(signed(T_BITS)), Signal(6), Signal(8), Signal()
    y = serial_round_clamp(m, t, shift, bias, load)
    got = []

    async def bench(ctx):
        for n, (value, amount, b) in enumerate(values + [(0, 0, 0)]):
            ctx.set(t, value)
            ctx.set(shift, amount)
            ctx.set(bias, b)
            ctx.set(load, 1)
            if n:
                got.append(ctx.get(y))
            await ctx.tick()
            ctx.set(load, 0)
            # Garbage on the inputs between loads: only the loaded values may count.
            ctx.set(t, -1 - value)
            ctx.set(shift, 63 - amount)
            ctx.set(bias, 255 - b)
            await ctx.tick().repeat(SERIAL_PERIOD - 1)

    sim = Simulator(m)
    sim.add_clock(1e-8)
    sim.add_testbench(bench)
    sim.run()
    return got


def _edge_values(shifts, spread):
    """One bit, all low bits, or a bit and the rounding bit, at positions around each shift
    (every position when ``spread`` is None)."""
    lo, hi = -(1 << (T_BITS - 1)), (1 << (T_BITS - 1)) - 1
    values = []
    for shift in shifts:
        ks = range(T_BITS - 1) if spread is None else \
            [k for k in range(shift - 3, shift + spread) if 0 <= k < T_BITS - 1]
        for k in ks:
            for t in (1 << k, -(1 << k), (1 << k) - 1, (1 << k) | (1 << min(shift, k)),
                      -(1 << k) | (1 << max(shift - 1, 0))):
                values.append((max(lo, min(hi, t)), shift, (k * 37 + shift) % 256))
    return values


def test_serial_round_clamp_matches_model():
    rng = random.Random("serial-round-clamp")
    values = cases(rng, 600) + _edge_values(range(64), 12)
    _check(values, _run_serial)
