"""Builders for SHA-256 round pipelines, fully unrolled or folded.

Both builders take the working variables before round ``first`` and the message words that are
known (``words[t]`` for ``t < 16``, and any later word the caller precomputed), and produce the
working variables after round ``last - 1``. Words may be constants, job words or flowing values
(see :mod:`.words`); only flowing values cost pipeline registers.

* :func:`unrolled_rounds` places one registered stage per round. A message-schedule word is
  computed one stage before its round and kept only while a later round or schedule word needs
  it, so the schedule window shrinks wherever words are constant and towards the end.
* :func:`folded_rounds` places ``(last - first) / rounds_per_stage`` stages, each running
  ``rounds_per_stage`` rounds on successive clocks with a 16-word schedule window; every stage hands
  its nonce to the next stage on the same clock (``handoff``).
"""

from amaranth.hdl import Array, Const, Module, Signal

from . import model
from .words import (JobWord, add, as_value, is_const, is_flow, is_job, round_step, round_step_hk,
                    schedule_word)

__all__ = ["unrolled_rounds", "folded_rounds", "schedule_words"]

SLOTS = "abcdefgh"


def schedule_words(words, first, count):
    """Symbolic W[first .. first+count-1] from the known ``words`` (a dict index -> word)."""
    words = dict(words)
    for t in range(first, first + count):
        if t not in words:
            if t < 16 or any(j not in words for j in (t - 2, t - 7, t - 15, t - 16)):
                raise ValueError(f"message word W{t} is neither given nor computable")
            words[t] = schedule_word(words[t - 2], words[t - 7], words[t - 15], words[t - 16])
    return words


class _Registers:
    """Pipeline registers sharing one clock enable; only flowing values get registered."""

    def __init__(self, m, enable):
        self.m = m
        self.enable = enable

    def __call__(self, name, word, width=32):
        if not is_flow(word):
            return word
        reg = Signal(width, name=name)
        with self.m.If(self.enable):
            self.m.d.sync += reg.eq(word)
        return reg


def keeper(m, prefix):
    """A ``keep(name, word)`` for :mod:`.words`: each computed word gets a signal of its own.

    The signals carry Yosys's ``keep`` attribute, so that synthesis maps every addition to a carry
    chain instead of merging chains into LUT adder trees (see :func:`.words.add`); they also let
    the simulator evaluate shared terms once, and show in waveforms.
    """
    def keep(name, word):
        if is_const(word):
            return word
        sig = Signal(32, name=f"{prefix}_{name}", attrs={"keep": 1})
        m.d.comb += sig.eq(word.value if is_job(word) else word)
        return JobWord(sig) if is_job(word) else sig
    return keep


def _clear(m, clear, registers):
    """Zero ``registers`` on ``clear``; it overrides the enable (later assignments win)."""
    if clear is not None:
        with m.If(clear):
            m.d.sync += [reg.eq(0) for reg in registers]


def _carry(m, regs, prefix, carry, clear):
    carry = {key: regs(f"{prefix}_{key}", value, len(value)) for key, value in carry.items()}
    _clear(m, clear, carry.values())
    return carry


def unrolled_rounds(m, *, name, first, last, state, words, carry, enable, clear=None):
    """One registered stage per round; returns ``(state, carry)`` after the last stage.

    Latency is ``last - first`` enabled clocks; a new input is taken on every enabled clock.
    ``carry`` is a dict of flowing values (valid bits, tags) delayed alongside the state; ``clear``
    zeroes every carry register (a flush).
    """
    words = dict(words)
    last_w = last - 1
    given = set(words)
    for t in range(first, min(16, last)):
        if t not in given:
            raise ValueError(f"message word W{t} must be given")

    def needed_after(i, t):
        """Is W[i] used by a stage after stage ``t``?"""
        if t < i <= last_w:
            return True
        # W[j] is computed at stage j - 1 from W[j-2], W[j-7], W[j-15], W[j-16].
        return any(16 <= j <= last_w and j not in given and j - 1 > t
                   for j in (i + 2, i + 7, i + 15, i + 16))

    # The h slot carries h + K[t] from here on.
    a, b, c, d, e, f, g, h = state
    state = (a, b, c, d, e, f, g, add(h, model.K[first], keep=keeper(m, f"{name}_in")))
    for t in range(first, last):
        prefix = f"{name}_r{t}"
        # Each stage is a module of its own: the simulator then re-evaluates only the stages
        # whose inputs changed, and synthesis reports group by stage.
        m.submodules[prefix] = stage = Module()
        regs = _Registers(stage, enable)
        keep = keeper(stage, prefix)
        if t + 1 <= last_w and t + 1 not in words:
            words[t + 1] = schedule_word(words[t - 1], words[t - 6], words[t - 14],
                                         words[t - 15], keep)
        k_next = model.K[t + 1] if t + 1 < last else 0
        state = round_step_hk(state, words[t], k_next, keep)
        state = tuple(regs(f"{prefix}_{slot}", word) for slot, word in zip(SLOTS, state))
        words = {i: regs(f"{prefix}_w{i}", w) if is_flow(w) else w
                 for i, w in words.items() if needed_after(i, t)}
        carry = _carry(stage, regs, prefix, carry, clear)
    return state, carry


def folded_rounds(m, *, name, first, last, rounds_per_stage, state, words, carry, enable,
                  phase, handoff, clear=None):
    """Stages of ``rounds_per_stage`` rounds each; returns ``(state, carry)`` output registers.

    The caller provides ``phase`` (counts ``0 .. rounds_per_stage - 1`` on enabled clocks) and
    ``handoff`` (``phase == rounds_per_stage - 1``). Inputs are sampled on ``handoff & enable``;
    the outputs are loaded ``stages * rounds_per_stage`` enabled clocks later, also on a handoff,
    and hold until the next one. A new input is taken every ``rounds_per_stage`` enabled clocks.
    ``clear`` zeroes every carry register (a flush).
    """
    r = rounds_per_stage
    count = last - first
    if count % r:
        raise ValueError(f"{count} rounds do not split into stages of {r}")
    stages = count // r
    window = schedule_words(words, first, 16)
    load_state = [as_value(x) for x in state]
    load_window = [as_value(window[t]) for t in range(first, first + 16)]
    load_carry = dict(carry)

    for s in range(stages):
        prefix = f"{name}_s{s}"
        st = [Signal(32, name=f"{prefix}_{slot}") for slot in SLOTS]
        win = [Signal(32, name=f"{prefix}_w{i}") for i in range(16)]
        car = {key: Signal(len(v), name=f"{prefix}_{key}") for key, v in load_carry.items()}
        base = first + s * r
        k = Array(Const(model.K[base + p], 32) for p in range(r))
        keep = keeper(m, prefix)
        next_state = round_step(tuple(st), k[phase], win[0], keep)
        shifted = win[1:] + [schedule_word(win[14], win[9], win[1], win[0], keep)]
        result_state, result_window = list(next_state), shifted
        with m.If(enable):
            with m.If(handoff):
                m.d.sync += [x.eq(y) for x, y in zip(st, load_state)]
                m.d.sync += [x.eq(y) for x, y in zip(win, load_window)]
                m.d.sync += [car[key].eq(load_carry[key]) for key in car]
            with m.Else():
                m.d.sync += [x.eq(y) for x, y in zip(st, result_state)]
                m.d.sync += [x.eq(y) for x, y in zip(win, result_window)]
        _clear(m, clear, car.values())
        load_state, load_window, load_carry = result_state, result_window, car

    out_state = [Signal(32, name=f"{name}_out_{slot}") for slot in SLOTS]
    out_carry = {key: Signal(len(v), name=f"{name}_out_{key}") for key, v in load_carry.items()}
    with m.If(enable & handoff):
        m.d.sync += [x.eq(y) for x, y in zip(out_state, load_state)]
        m.d.sync += [out_carry[key].eq(load_carry[key]) for key in out_carry]
    _clear(m, clear, out_carry.values())
    return tuple(out_state), out_carry

