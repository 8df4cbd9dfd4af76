"""cocotb bench for the miner engine (``nangua.hdl.miner.engine.MinerEngine``) on its Verilog.

Driver: a :class:`~.streams.StreamSource` on ``job`` with random idle gaps. Monitor: a
:class:`~.streams.StreamSink` on ``result`` with random back-pressure, which also checks that a
stalled result is held. Golden model: :meth:`Job.scan` of ``hdl/miner/model.py``. Scoreboard:
:class:`Scoreboard`, which knows what every job id may and must report.

Parameters come from the environment, set by the pytest wrapper (``tests/test_cocotb_miner.py``):
``NANGUA_EARLY_EXIT`` (``1`` when the engine compares only H7, as the model's ``early_exit``) and
``NANGUA_WINDOW`` (nonces per job: small, so that the slow simulators finish quickly).
"""

import os
import random
from pathlib import Path

import cocotb
from amaranth.lib import data

from ...hdl.miner.layouts import JOB_ID_BITS, JobLayout, ResultKind, ResultLayout
from ...hdl.miner.model import MASK, MAX_TARGET, Job, header_nonce, nonce_count
from .streams import StreamSink, StreamSource, run_until, start

#: Real Bitcoin headers (outside truth: each meets its own nBits target at its own nonce).
HEADERS = Path(__file__).resolve().parents[2] / "tests" / "data" / "bitcoin_headers.txt"
#: Clock budget per nonce: far above any unroll's cost, so only a hung engine times out.
CYCLES_PER_NONCE_BUDGET = 200
#: Cycles before and after a job's scan allowed for pipeline latency and result draining.
LATENCY_BUDGET = 2000


def early_exit():
    return os.environ.get("NANGUA_EARLY_EXIT", "1") == "1"


def window():
    return int(os.environ.get("NANGUA_WINDOW", "8"))


def real_headers():
    headers = []
    for line in HEADERS.read_text().splitlines():
        if line and not line.startswith("#"):
            headers.append(bytes.fromhex(line.split()[1]))
    return headers


def pack_job(job):
    return JobLayout().const({
        "midstate": list(job.midstate), "tail": list(job.tail), "target": job.target,
        "nonce_start": job.nonce_start, "nonce_end": job.nonce_end, "job_id": job.job_id,
    }).as_bits()


def unpack_result(bits):
    result = data.Const(ResultLayout(), bits)
    return ResultKind(result.kind), int(result.job_id), int(result.nonce)


class Scoreboard:
    """What each job id must report: the model's nonces in scan order, then DONE.

    A job replaced before its end may stop early: its results must then be a prefix of what the
    model expects, without DONE. Every result must carry the id of a job that was sent.
    """

    def __init__(self, early_exit):
        self.early_exit = early_exit
        self.expected = {}
        self.received = {}
        self.replaced = set()

    def add(self, job):
        assert job.job_id not in self.expected, "bench error: job ids must be unique per test"
        nonces = job.scan(self.early_exit)
        self.expected[job.job_id] = ([(ResultKind.NONCE, n) for n in nonces]
                                     + [(ResultKind.DONE, job.nonce_end)])
        self.received[job.job_id] = []

    def replace(self, job_id):
        self.replaced.add(job_id)

    def on_receive(self, bits):
        kind, job_id, nonce = unpack_result(bits)
        assert job_id in self.received, f"result {kind.name} {nonce:#010x} under unknown id {job_id}"
        got = self.received[job_id]
        got.append((kind, nonce))
        want = self.expected[job_id]
        assert got == want[:len(got)], (
            f"job {job_id}: got {[(k.name, hex(n)) for k, n in got]}, "
            f"model says {[(k.name, hex(n)) for k, n in want]}")

    def done(self, job_id):
        return self.received[job_id] == self.expected[job_id]

    def check(self):
        for job_id, want in self.expected.items():
            got = self.received[job_id]
            if job_id in self.replaced:
                assert got == want[:len(got)]
            else:
                assert got == want, f"job {job_id}: incomplete, got {got}, want {want}"


def random_job(rng, job_id, count, hits_per_nonce=0.25):
    """A random job whose target lets about ``hits_per_nonce`` of the nonces through."""
    start = rng.getrandbits(32)
    return Job(tuple(rng.getrandbits(32) for _ in range(8)),
               tuple(rng.getrandbits(32) for _ in range(3)),
               int(MAX_TARGET * hits_per_nonce), start, (start + count - 1) & MASK, job_id)


async def _bench(dut, *, idle, stall):
    rng = random.Random(random.getrandbits(64))
    await start(dut, ["job__valid", "job__payload", "result__ready"])
    scoreboard = Scoreboard(early_exit())
    source = StreamSource(dut, "job", idle=idle, rng=rng)
    sink = StreamSink(dut, "result", stall=stall, rng=rng, on_receive=scoreboard.on_receive)
    return rng, scoreboard, source, sink


async def _run_jobs(dut, jobs, *, idle, stall):
    """Send ``jobs`` one after the other, each when the previous one has reported DONE."""
    rng, scoreboard, source, sink = await _bench(dut, idle=idle, stall=stall)
    total = 0
    for job in jobs:
        scoreboard.add(job)
        source.send(pack_job(job))
        count = nonce_count(job.nonce_start, job.nonce_end)
        total += count
        await run_until(dut, [source, sink], lambda: scoreboard.done(job.job_id),
                        max_cycles=count * CYCLES_PER_NONCE_BUDGET + LATENCY_BUDGET,
                        what=f"job {job.job_id}")
    scoreboard.check()
    # Let the engine settle after the last DONE before reading its counters.
    await run_until(dut, [source, sink], lambda: not int(dut.busy.value), max_cycles=100,
                    what="going idle")
    assert dut.hashes.value.to_unsigned() == total
    assert dut.job_id.value.to_unsigned() == jobs[-1].job_id
    return scoreboard


@cocotb.test()
async def test_real_headers_find_their_nonce(dut):
    """Windows around real blocks' nonces, at the blocks' own targets: the block nonce is found."""
    rng = random.Random(random.getrandbits(64))
    headers = rng.sample(real_headers(), 3)
    jobs = []
    for job_id, header in enumerate(headers, start=1):
        nonce = header_nonce(header)
        before = rng.randrange(window())
        jobs.append(Job.from_header(header, nonce_start=nonce - before,
                                    nonce_end=nonce - before + window() - 1, job_id=job_id))
    scoreboard = await _run_jobs(dut, jobs, idle=0.3, stall=0.3)
    for job, header in zip(jobs, headers):
        assert (ResultKind.NONCE, header_nonce(header)) in scoreboard.received[job.job_id]


@cocotb.test()
async def test_random_jobs_with_gaps_and_backpressure(dut):
    rng = random.Random(random.getrandbits(64))
    jobs = [random_job(rng, job_id, window()) for job_id in (7, 8, 9)]
    # One range that wraps through 0xffffffff to 0.
    wrap = random_job(rng, 10, window())
    jobs.append(Job(wrap.midstate, wrap.tail, wrap.target, (-(window() // 2)) & MASK,
                    (window() - window() // 2 - 1) & MASK, wrap.job_id))
    await _run_jobs(dut, jobs, idle=0.5, stall=0.6)


@cocotb.test()
async def test_every_nonce_a_hit_under_heavy_backpressure(dut):
    """The most permissive target: a result per nonce, so the result FIFO fills and must stall."""
    rng = random.Random(random.getrandbits(64))
    job = random_job(rng, 3, 3 * window(), hits_per_nonce=1)
    await _run_jobs(dut, [job], idle=0.0, stall=0.9)


@cocotb.test()
async def test_new_job_aborts_the_old_one(dut):
    rng, scoreboard, source, sink = await _bench(dut, idle=0.2, stall=0.3)
    ids = rng.sample(range(1 << JOB_ID_BITS), 4)
    old = None
    for job_id in ids:
        job = random_job(rng, job_id, 4 * window(), hits_per_nonce=0.5)
        scoreboard.add(job)
        if old is not None:
            scoreboard.replace(old.job_id)
        source.send(pack_job(job))
        # Replace it somewhere in its scan, before it can finish.
        await run_until(dut, [source, sink], lambda: not source.queue and source.idle_now,
                        max_cycles=LATENCY_BUDGET, what="sending a job")
        old = job
        await run_until(dut, [source, sink], lambda: False if rng.random() < 0.995 else True,
                        max_cycles=10 ** 6)
    scoreboard.replaced.discard(old.job_id)
    await run_until(dut, [source, sink], lambda: scoreboard.done(old.job_id),
                    max_cycles=4 * window() * CYCLES_PER_NONCE_BUDGET + LATENCY_BUDGET,
                    what="the last job")
    scoreboard.check()
