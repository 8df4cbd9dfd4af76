"""The post stage's rounding shift + bias + clamp (:func:`nangua.hdl.kpu.post.round_clamp`)
against the golden model's :func:`~nangua.hdl.kpu.model.rounding_shift`, on the values where a cheaper
circuit goes wrong: exact halves, odd and even quotients, quotients at the edge of the window
the circuit keeps, shifts past the width of ``t``."""

import random

import numpy as np
from amaranth.hdl import Module, Signal, signed
from amaranth.sim import Simulator

from nangua.hdl.kpu import model
from nangua.hdl.kpu.post import ACC_BITS, round_clamp

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


def _check(values):
    ts, shifts, biases = (np.array(column, dtype=np.int64) for column in zip(*values))
    expected = np.clip(model.rounding_shift(ts, shifts) + biases, 0, 255)
    got = _run(values)
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
    lo, hi = -(1 << (T_BITS - 1)), (1 << (T_BITS - 1)) - 1
    values = []
    for shift in range(64):
        for k in range(T_BITS - 1):
            for t in (1 << k, -(1 << k), (1 << k) - 1, (1 << k) | (1 << min(shift, k)),
                      -(1 << k) | (1 << max(shift - 1, 0))):
                values.append((max(lo, min(hi, t)), shift, (k * 37 + shift) % 256))
    _check(values)
