"""SHA-256 word functions over values that may be known before the hardware runs.

The miner folds everything it can at elaboration time. Each 32-bit word handled by the pipeline
builders is one of three kinds:

* ``int`` — a **constant** (round constants, padding words, the second hash's IV): folded into the
  logic by Python before Yosys ever sees it;
* :class:`JobWord` — fixed for a whole job (midstate, W0..W2, precomputed rounds): computed from job
  registers, never carried through the pipeline;
* an Amaranth ``Value`` — changes with every nonce: **flows** through the pipeline registers.

The functions below accept any mix and return the narrowest kind that is correct. With all inputs
``int`` they are the golden model's functions, bit for bit.
"""

from amaranth.hdl import Cat, Const, Value

from . import model

MASK = model.MASK


class JobWord:
    """A word fixed for the duration of a job: an Amaranth value derived only from job registers."""

    __slots__ = ("value",)

    def __init__(self, value):
        self.value = Value.cast(value)

    def __repr__(self):
        return f"JobWord({self.value!r})"


def is_const(x):
    return isinstance(x, int)


def is_job(x):
    return isinstance(x, JobWord)


def is_flow(x):
    return not is_const(x) and not is_job(x)


def _unwrap(x):
    return x.value if is_job(x) else x


def _wrap(result, operands):
    """Tag ``result`` as a job word when no operand flows."""
    if any(is_flow(x) for x in operands):
        return result
    return JobWord(result)


def _same(name, word):
    return word


def add(*terms, keep=_same):
    """Sum modulo 2**32; constants are pre-summed so each costs at most one adder.

    Every intermediate sum goes through ``keep(name, word)``, which the pipeline builders use to
    give it a signal with a ``keep`` attribute. That matters for synthesis: Yosys merges a chain
    of additions whose intermediate results are not kept into one multi-operand sum and builds it
    as a carry-save tree in LUTs; kept, every addition maps to a carry chain, which costs half
    (ECP5: 16 CCU2C and no LUT4 per 32-bit adder). The result itself is not kept: callers keep it
    where it feeds another addition alone.
    """
    const = sum(t for t in terms if is_const(t)) & MASK
    others = [t for t in terms if not is_const(t)]
    if not others:
        return const
    # Job-only terms first: their partial sum is then a job word that needs no per-nonce logic.
    others.sort(key=is_flow)
    sums = [others[0]]
    for term in others[1:]:
        sums.append(_wrap((_unwrap(sums[-1]) + _unwrap(term))[:32], [sums[-1], term]))
        if term is not others[-1] or const:
            sums[-1] = keep("sum", sums[-1])
    if const:
        sums.append(_wrap((_unwrap(sums[-1]) + const)[:32], [sums[-1]]))
    return sums[-1]


def rotr(x, n):
    if is_const(x):
        return model.rotr(x, n)
    v = _unwrap(x)
    return _wrap(Cat(v[n:32], v[:n]), [x])


def shr(x, n):
    if is_const(x):
        return x >> n
    v = _unwrap(x)
    return _wrap(v[n:32], [x])


def xor(*xs):
    if all(is_const(x) for x in xs):
        result = 0
        for x in xs:
            result ^= x
        return result
    result = 0
    for x in xs:
        result = result ^ _unwrap(x)
    return _wrap(result, xs)


def big_sigma0(a):
    return xor(rotr(a, 2), rotr(a, 13), rotr(a, 22))


def big_sigma1(e):
    return xor(rotr(e, 6), rotr(e, 11), rotr(e, 25))


def small_sigma0(w):
    return xor(rotr(w, 7), rotr(w, 18), shr(w, 3))


def small_sigma1(w):
    return xor(rotr(w, 17), rotr(w, 19), shr(w, 10))


def ch(e, f, g):
    if all(is_const(x) for x in (e, f, g)):
        return model.ch(e, f, g)
    ev, fv, gv = (_as32(x) for x in (e, f, g))
    # (e & f) | (~e & g): a multiplexer per bit, one LUT3 each.
    return _wrap(((ev & fv) | (~ev & gv))[:32], [e, f, g])


def maj(a, b, c):
    if all(is_const(x) for x in (a, b, c)):
        return model.maj(a, b, c)
    av, bv, cv = (_as32(_unwrap(x)) for x in (a, b, c))
    return _wrap(((av & bv) | (av & cv) | (bv & cv))[:32], [a, b, c])


def _as32(x):
    """An Amaranth 32-bit value for a word of any kind (constants become 32-bit constants)."""
    if isinstance(x, int):
        return Const(x, 32)
    return Value.cast(_unwrap(x))


def schedule_word(w_2, w_7, w_15, w_16, keep=_same):
    """W[t] from W[t-2], W[t-7], W[t-15], W[t-16]."""
    return add(small_sigma1(w_2), w_7, small_sigma0(w_15), w_16, keep=keep)


def round_step(state, k, w, keep=_same):
    """One round on words of any kind; same result as :func:`model.round_step` on constants.

    ``keep(name, word)`` receives every sum that feeds another addition alone (see :func:`add`).
    """
    a, b, c, d, e, f, g, h = state
    t1 = add(h, big_sigma1(e), ch(e, f, g), k, w, keep=keep)
    t2 = keep("t2", add(big_sigma0(a), maj(a, b, c), keep=keep))
    return (add(t1, t2), a, b, c, add(d, t1), e, f, g)


def round_step_hk(state, w, k_next, keep=_same):
    """One round where the ``h`` slot of ``state`` already holds ``h + K[t]``.

    Returns the next state with its ``h`` slot holding ``h' + k_next`` (``h' = g``): the constant
    is added one stage early, off the round's critical path, at no extra cost.
    """
    a, b, c, d, e, f, g, hk = state
    t1 = add(hk, big_sigma1(e), ch(e, f, g), w, keep=keep)
    t2 = keep("t2", add(big_sigma0(a), maj(a, b, c), keep=keep))
    return (add(t1, t2), a, b, c, add(d, t1), e, f, add(g, k_next))


def as_value(x):
    """An Amaranth 32-bit value for a word of any kind."""
    return _as32(x)
