"""The native protocol end to end in the Amaranth simulator: host-side encoder/decoder (the code
users run) ↔ UART pins ↔ MinerLinkTop with the real MinerEngine (unroll 1: the cheapest to
simulate), checked against the golden model."""

import pytest
from amaranth.back import verilog

from nangua.hdl.link.native import NativeLink
from nangua.hdl.link.top import MinerLinkTop
from nangua.hdl.miner.model import MAX_TARGET, Job, header_nonce
from nangua.link import (Done, FrameDecoder, Identity, JobAck, Result, Status, encode_job,
                         encode_identify_request, encode_status_request)

from link_sim import simulate, uart_receive_forever, uart_send
from test_link_data import headers

DIVISOR = 4
BAUD = 250_000
CLK = BAUD * DIVISOR
#: Bit times of the inter-byte timeout in these tests (the default is 100).
TIMEOUT_BITS = 30


def make_top(**options):
    return MinerLinkTop(protocol="native", unroll=1, clk_freq=CLK, baud=BAUD,
                        timeout_bits=TIMEOUT_BITS, **options)


def run(top, script, *, settle_bytes=60):
    """Send ``script`` (bytes, or an int = idle bit times) to ``top``; return what came back
    decoded, plus a record of whether a job ever reached the engine and whether it ever ran."""
    out = []
    seen = {"job_offered": False, "busy": False}

    async def bench(ctx):
        for item in script:
            if isinstance(item, int):
                await ctx.tick().repeat(item * DIVISOR)
            else:
                await uart_send(ctx, top.rx, item, DIVISOR)
        await ctx.tick().repeat(settle_bytes * 10 * DIVISOR)

    async def receive(ctx):
        await uart_receive_forever(ctx, top.tx, DIVISOR, out)

    async def watch(ctx):
        while True:
            await ctx.tick()
            seen["job_offered"] |= bool(ctx.get(top.link.job.valid))
            seen["busy"] |= bool(ctx.get(top.engine.busy))

    simulate(top, bench, background=[receive, watch], name="link_native")
    assert None not in out, "a byte from the device had a bad stop bit"
    decoder = FrameDecoder()
    messages = decoder.feed(bytes(out))
    assert (decoder.checksum_errors, decoder.header_errors) == (0, 0)
    return messages, seen


def status(messages):
    found = [m for m in messages if isinstance(m, Status)]
    assert len(found) == 1
    return found[0]


@pytest.mark.parametrize("height", [1, 170])
def test_real_header_nonce_is_found_in_a_small_window(height):
    header = dict(headers())[height]
    nonce = header_nonce(header)
    job = Job.from_header(header, nonce_start=nonce - 3, nonce_end=nonce + 2, job_id=height % 256)
    assert job.scan(early_exit=True) == [nonce]
    messages, _ = run(make_top(), [encode_job(job), 200, encode_status_request()])
    assert messages[:3] == [JobAck(job.job_id), Result(job.job_id, nonce),
                            Done(job.job_id, job.nonce_end)]
    state = status(messages)
    assert (state.hashes, state.jobs_accepted, state.results_dropped, state.busy) == (6, 1, 0, 0)
    assert state.checksum_errors == state.header_errors == state.timeouts == 0


def corrupted(frame, position, bit=0):
    frame = bytearray(frame)
    frame[position] ^= 1 << bit
    return bytes(frame)


def test_corrupt_and_truncated_frames_are_counted_and_start_nothing():
    header = headers()[2][1]
    frame = encode_job(Job.from_header(header, nonce_start=0, nonce_end=9, job_id=1))
    script = [
        corrupted(frame, 10), 5,           # payload bit: CRC mismatch
        corrupted(frame, len(frame) - 1, 7), 5,   # CRC bit
        corrupted(frame, 1, 2), TIMEOUT_BITS + 10,  # kind: header error, rest hunted for SYNC
        frame[:60], TIMEOUT_BITS + 10,     # truncated: timeout
        encode_status_request(),
    ]
    messages, seen = run(make_top(), script)
    state = status(messages)
    assert messages == [state]
    assert (state.checksum_errors, state.timeouts) == (2, 1)
    assert state.header_errors >= 1
    assert (state.jobs_accepted, state.hashes, state.uart_errors) == (0, 0, 0)
    assert not seen["job_offered"] and not seen["busy"]


def test_back_to_back_jobs_and_abort():
    first, second = headers()[3][1], headers()[4][1]
    n1, n2 = header_nonce(first), header_nonce(second)
    # A long job, aborted by the next one before it can finish (5000 nonces at 64 clocks each).
    long_job = Job.from_header(first, nonce_start=n1 + 1, nonce_end=n1 + 5000, job_id=10)
    job_a = Job.from_header(first, nonce_start=n1 - 1, nonce_end=n1 + 1, job_id=11)
    job_b = Job.from_header(second, nonce_start=n2, nonce_end=n2 + 2, job_id=12)
    messages, _ = run(make_top(), [encode_job(long_job) + encode_job(job_a) + encode_job(job_b)],
                      settle_bytes=60)
    assert messages == [
        JobAck(10),
        JobAck(11), Result(11, n1), Done(11, job_a.nonce_end),
        JobAck(12), Result(12, n2), Done(12, job_b.nonce_end),
    ]


def test_results_are_never_dropped_under_back_pressure():
    """Every nonce hits: the UART is ~6x slower than the engine, the FIFO fills, the engine
    stalls, and still every result arrives, in order."""
    job = Job(midstate=(1,) * 8, tail=(2, 3, 4), target=MAX_TARGET, nonce_start=100,
              nonce_end=139, job_id=5)
    messages, _ = run(make_top(fifo_depth=4), [encode_job(job)], settle_bytes=460)
    assert messages == ([JobAck(5)] + [Result(5, n) for n in range(100, 140)]
                        + [Done(5, 139)])


def test_identify_reports_the_design():
    messages, _ = run(make_top(), [encode_identify_request()])
    assert messages == [Identity(name=b"nangua", protocol_version=1, version_major=0,
                                 version_minor=1, unroll=1, cores=1, clk_hz=CLK, baud=BAUD)]


def test_withdrawn_result_is_counted_as_dropped():
    """The link's drop monitor works: an engine that takes back an offered result is caught."""
    dut = NativeLink(divisor=DIVISOR)

    async def bench(ctx):
        ctx.set(dut.rx, 1)
        await uart_send(ctx, dut.rx, encode_identify_request(), DIVISOR)
        await ctx.tick().repeat(20)      # the identify frame is now being sent: result waits
        ctx.set(dut.result.payload, {"kind": 0, "job_id": 1, "nonce": 42})
        ctx.set(dut.result.valid, 1)
        await ctx.tick().repeat(3)
        assert not ctx.get(dut.result.ready)
        ctx.set(dut.result.valid, 0)
        await ctx.tick().repeat(2)
        assert ctx.get(dut.results_dropped) == 1

    simulate(dut, bench)


def test_top_rejects_unknown_protocol():
    with pytest.raises(ValueError, match=r"^protocol must be one of native, icarus, "
                                         r"not 'stratum'$"):
        MinerLinkTop(protocol="stratum", unroll=1, clk_freq=CLK, baud=BAUD)


def test_link_rejects_bad_timeout():
    with pytest.raises(ValueError, match=r"^timeout_bits must be a positive integer, not 0$"):
        NativeLink(divisor=4, timeout_bits=0)


@pytest.mark.parametrize("options", [
    dict(protocol="native", unroll=1, clk_freq=CLK, baud=BAUD, timeout_bits=TIMEOUT_BITS),
    dict(protocol="native", unroll=1, clk_freq=CLK, baud=BAUD, timeout_bits=TIMEOUT_BITS,
         fifo_depth=4),
    dict(protocol="native", unroll=8, clk_freq=12_000_000, baud=115200),
    dict(protocol="icarus", unroll=1, clk_freq=CLK, baud=BAUD, timeout_bits=TIMEOUT_BITS),
])
def test_top_converts_to_verilog(options):
    assert "module top" in verilog.convert(MinerLinkTop(**options), name="top", emit_src=False)


def test_native_link_converts_to_verilog():
    assert "module" in verilog.convert(NativeLink(divisor=DIVISOR), emit_src=False)
