"""Frame receiver and transmitter at the byte level, against the host-side encoder/decoder."""

import random

import pytest
from amaranth.back import verilog

from nangua.hdl.link import protocol
from nangua.hdl.link.framing import FrameReceiver, FrameTransmitter
from nangua.hdl.link.protocol import PAYLOAD_BYTES, SYNC, Kind
from nangua.hdl.miner.model import Job
from nangua.link import (FrameDecoder, JobAck, Result, Status, encode_frame, encode_job,
                         encode_payload, encode_status_request, encode_identify_request)

from link_sim import simulate
from test_link_data import headers

HOST_LENGTHS = {kind: PAYLOAD_BYTES[kind] for kind in protocol.HOST_KINDS}
TIMEOUT = 12


def job_frame(job_id, seed=0):
    header = headers()[seed][1]
    return encode_job(Job.from_header(header, nonce_start=seed, nonce_end=seed + 99,
                                      job_id=job_id))


def receive(chunks, *, lengths=HOST_LENGTHS, timeout=TIMEOUT):
    """Feed ``chunks`` (bytes, or an int = idle clocks) to a receiver; return frames and counts."""
    dut = FrameReceiver(lengths, timeout=timeout)
    frames = []

    async def bench(ctx):
        ctx.set(dut.o.ready, 1)
        for chunk in chunks:
            if isinstance(chunk, int):
                await ctx.tick().repeat(chunk)
                continue
            for byte in chunk:
                ctx.set(dut.i.valid, 1)
                ctx.set(dut.i.payload, byte)
                await ctx.tick().until(dut.i.ready)
                ctx.set(dut.i.valid, 0)
                await ctx.tick()    # a UART delivers a byte at most every 10 bit times
        await ctx.tick().repeat(timeout + 4)

    async def watch(ctx):
        while True:
            await ctx.tick()
            if ctx.get(dut.o.valid):
                frame = ctx.get(dut.o.payload)
                payload = frame.payload.to_bytes(max(lengths.values()), "little")
                frames.append(bytes([frame.kind, frame.length]) + payload[:frame.length])

    counts = {}

    async def finish(ctx):
        await bench(ctx)
        for name in ("checksum_errors", "header_errors", "timeouts"):
            counts[name] = ctx.get(getattr(dut, name))

    simulate(dut, finish, background=[watch])
    return frames, counts


def body(frame):
    """Kind, length and payload of an encoded frame (what the receiver delivers)."""
    return frame[1:-2]


ZERO = {"checksum_errors": 0, "header_errors": 0, "timeouts": 0}


def test_valid_frames_are_delivered_whole():
    frames = [job_frame(1), encode_status_request(), encode_identify_request(), job_frame(2, 5)]
    got, counts = receive(frames)
    assert got == [body(f) for f in frames]
    assert counts == ZERO


@pytest.mark.parametrize("position", [1, 2, 3, 40, 87, 88, 89])
def test_corrupt_job_frame_is_counted_and_not_delivered(position):
    frame = bytearray(job_frame(3))
    frame[position] ^= 0x04
    got, counts = receive([bytes(frame), 3 * TIMEOUT, encode_status_request()])
    assert got == [body(encode_status_request())]
    assert sum(counts.values()) >= 1
    expected = "header_errors" if position in (1, 2) else "checksum_errors"
    assert counts[expected] == 1


def test_truncated_frame_times_out_and_the_next_frame_arrives():
    frame = job_frame(4)
    got, counts = receive([frame[:50], TIMEOUT + 2, job_frame(5)])
    assert got == [body(job_frame(5))]
    assert counts == dict(ZERO, timeouts=1)


def test_gap_within_timeout_is_accepted():
    frame = job_frame(6)
    got, counts = receive([frame[:50], TIMEOUT - 1, frame[50:]])
    assert got == [body(frame)]
    assert counts == ZERO


def test_sync_bytes_before_a_frame_cost_nothing():
    frame = encode_status_request()
    got, counts = receive([bytes([SYNC, SYNC, SYNC]) + frame])
    assert got == [body(frame)]
    assert counts == ZERO


def test_unknown_kind_is_a_header_error():
    got, counts = receive([bytes([SYNC, 0x7F, 0x00, 0x12, 0x34]), TIMEOUT + 2,
                           encode_identify_request()])
    assert got == [body(encode_identify_request())]
    assert counts["header_errors"] == 1


@pytest.mark.parametrize("seed", [11, 12, 13])
def test_random_corruption_never_delivers_a_damaged_frame(seed):
    """Intact frames all arrive, damaged ones never do, and every damaged one is counted."""
    rng = random.Random(seed)
    chunks, intact, damaged = [], [], 0
    for i in range(12):
        frame = bytearray(rng.choice([job_frame(i, i), encode_status_request(),
                                      encode_identify_request()]))
        if rng.random() < 0.5:
            for _ in range(rng.randrange(1, 4)):
                frame[rng.randrange(1, len(frame))] ^= 1 << rng.randrange(8)
            if rng.random() < 0.3:
                del frame[rng.randrange(1, len(frame)):]
            damaged += 1
        else:
            intact.append(body(frame))
        chunks += [bytes(frame), TIMEOUT + 2]
    got, counts = receive(chunks)
    assert got == intact
    assert counts["checksum_errors"] + counts["header_errors"] + counts["timeouts"] >= damaged


def test_no_byte_is_taken_while_a_frame_waits_to_be_taken():
    dut = FrameReceiver(HOST_LENGTHS, timeout=TIMEOUT)

    async def bench(ctx):
        ctx.set(dut.o.ready, 0)
        for byte in encode_status_request():
            ctx.set(dut.i.valid, 1)
            ctx.set(dut.i.payload, byte)
            await ctx.tick().until(dut.i.ready)
        ctx.set(dut.i.payload, encode_identify_request()[0])
        await ctx.tick().repeat(3 * TIMEOUT)
        assert ctx.get(dut.o.valid) and ctx.get(dut.o.payload.kind) == Kind.STATUS_REQUEST
        assert not ctx.get(dut.i.ready)
        ctx.set(dut.o.ready, 1)
        await ctx.tick()
        ctx.set(dut.o.ready, 0)
        for byte in encode_identify_request():
            ctx.set(dut.i.valid, 1)
            ctx.set(dut.i.payload, byte)
            await ctx.tick().until(dut.i.ready)
        ctx.set(dut.i.valid, 0)
        await ctx.tick().repeat(3)
        assert ctx.get(dut.o.valid) and ctx.get(dut.o.payload.kind) == Kind.IDENTIFY_REQUEST
        assert (ctx.get(dut.checksum_errors), ctx.get(dut.timeouts)) == (0, 0)

    simulate(dut, bench)


@pytest.mark.parametrize("seed", [21, 22])
def test_transmitter_frames_decode_on_the_host(seed):
    rng = random.Random(seed)
    messages = [JobAck(7), Result(7, 0xDEADBEEF), Status(*range(1, 11))]
    frames = [(Kind.JOB_ACK, encode_payload(Kind.JOB_ACK, job_id=7)),
              (Kind.RESULT, encode_payload(Kind.RESULT, job_id=7, nonce=0xDEADBEEF)),
              (Kind.STATUS, encode_payload(Kind.STATUS, **messages[2].__dict__))]
    dut = FrameTransmitter(max(PAYLOAD_BYTES.values()))
    out = bytearray()

    async def send(ctx):
        for kind, payload in frames:
            ctx.set(dut.i.valid, 1)
            ctx.set(dut.i.payload, {"kind": kind, "length": len(payload),
                                    "payload": int.from_bytes(payload, "little")})
            await ctx.tick().until(dut.i.ready)
        ctx.set(dut.i.valid, 0)
        await ctx.tick().repeat(400)

    async def drain(ctx):   # random back-pressure
        while True:
            ctx.set(dut.o.ready, rng.random() < 0.6)
            await ctx.tick()

    async def sample(ctx):  # handshakes, as sampled at each clock edge
        async for _, _, valid, ready, payload in ctx.tick().sample(dut.o.valid, dut.o.ready,
                                                                    dut.o.payload):
            if valid and ready:
                out.append(payload)

    simulate(dut, send, background=[drain, sample])
    assert bytes(out) == b"".join(encode_frame(kind, payload) for kind, payload in frames)
    assert FrameDecoder().feed(bytes(out)) == messages


def test_receiver_rejects_sync_as_kind():
    with pytest.raises(ValueError, match=r"^frame kind 0xa5 is not a byte other than SYNC$"):
        FrameReceiver({SYNC: 1}, timeout=4)


def test_receiver_rejects_bad_timeout():
    with pytest.raises(ValueError, match=r"^timeout must be a positive integer of clocks, "
                                         r"not 0$"):
        FrameReceiver({1: 1}, timeout=0)


def test_transmitter_rejects_long_payload():
    with pytest.raises(ValueError, match=r"^payload_bytes must be an integer in 0\.\.164, "
                                         r"not 200$"):
        FrameTransmitter(200)


@pytest.mark.parametrize("make", [
    lambda: FrameReceiver(HOST_LENGTHS, timeout=TIMEOUT),
    lambda: FrameReceiver({1: 2, 2: 0}, timeout=3),
    lambda: FrameTransmitter(max(PAYLOAD_BYTES.values())),
    lambda: FrameTransmitter(2),
])
def test_converts_to_verilog(make):
    assert "module" in verilog.convert(make(), emit_src=False)
