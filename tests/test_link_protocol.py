"""Host-side protocol code (the same code users run), checked against outside truth and the
gateware's layouts."""

import random
from importlib.metadata import version
from pathlib import Path

import pytest
from amaranth.lib import crc as amaranth_crc

from nangua.hdl.link import protocol
from nangua.hdl.link.native import payload_layout
from nangua.hdl.link.protocol import PAYLOAD_BYTES, SYNC, Kind, crc16
from nangua.hdl.miner.layouts import JobLayout
from nangua.hdl.miner.model import Job, header_nonce, midstate, tail_words
from nangua.link import (DETECT_NONCE, DETECT_PACKET, Done, FrameDecoder, JobAck, NativeClient,
                         Result, decode_nonce, decode_payload, decode_work, encode_frame,
                         encode_identify_request, encode_job, encode_payload,
                         encode_status_request, encode_work)

from test_link_data import headers

FPGAMINER_HEADER = bytes.fromhex(
    "010000007cc5c24c39fd05792c2865999e25fe87e066a37d7a08dc351f1400000000000049b6276425052b2f"
    "c24bfb784eca55369b2b9e8b4180c869778cacb2bed171159395e64d2194261a0e33337a")


def test_crc_is_crc16_ccitt_false():
    assert crc16(b"123456789") == protocol.CRC.check
    catalog = amaranth_crc.catalog.CRC16_CCITT_FALSE(data_width=8)
    data = random.Random(1).randbytes(100)
    assert crc16(data) == catalog.compute(data)


def test_frame_crc_over_body_is_zero():
    frame = encode_status_request()
    assert frame[0] == SYNC
    assert crc16(frame[1:]) == 0
    assert frame == bytes.fromhex("a502007b6d")   # the docs' example


def test_job_payload_is_job_layout_bits():
    header = headers()[100][1]
    job = Job.from_header(header, target=(1 << 240) + 12345, nonce_start=3, nonce_end=77,
                          job_id=0x5A)
    payload = encode_payload(Kind.JOB, midstate=job.midstate, tail=job.tail, target=job.target,
                             nonce_start=job.nonce_start, nonce_end=job.nonce_end,
                             job_id=job.job_id)
    bits = JobLayout().const({
        "midstate": list(job.midstate), "tail": list(job.tail), "target": job.target,
        "nonce_start": job.nonce_start, "nonce_end": job.nonce_end, "job_id": job.job_id,
    }).as_bits()
    assert payload == bits.to_bytes(PAYLOAD_BYTES[Kind.JOB], "little")
    assert encode_job(job) == encode_frame(Kind.JOB, payload)


@pytest.mark.parametrize("kind", list(Kind))
def test_payload_layout_size_matches_protocol(kind):
    assert payload_layout(kind).size == 8 * PAYLOAD_BYTES[kind]


def test_payload_round_trip():
    values = {"hashes": 2**40 + 5, "results_dropped": 0, "uart_errors": 1, "checksum_errors": 2,
              "header_errors": 3, "timeouts": 4, "jobs_accepted": 5, "overruns": 6,
              "job_id": 7, "busy": 1}
    assert decode_payload(Kind.STATUS, encode_payload(Kind.STATUS, **values)) == values


def test_encode_payload_rejects_missing_field():
    with pytest.raises(ValueError, match=r"^JOB_ACK payload needs fields \['job_id'\], got \[\]$"):
        encode_payload(Kind.JOB_ACK)


def test_encode_payload_rejects_overflow():
    with pytest.raises(ValueError, match=r"^field job_id value 0x100 does not fit 1 bytes$"):
        encode_payload(Kind.JOB_ACK, job_id=256)


def test_encode_frame_rejects_wrong_length():
    with pytest.raises(ValueError, match=r"^RESULT payload has 5 bytes, not 4$"):
        encode_frame(Kind.RESULT, bytes(4))


def device_frames(seed):
    rng = random.Random(seed)
    messages = []
    for _ in range(20):
        choice = rng.choice([Result, Done, JobAck])
        if choice is JobAck:
            messages.append(JobAck(rng.randrange(256)))
        else:
            messages.append(choice(rng.randrange(256), rng.randrange(2**32)))
    frames = []
    for message in messages:
        kind = {Result: Kind.RESULT, Done: Kind.DONE, JobAck: Kind.JOB_ACK}[type(message)]
        frames.append(encode_frame(kind, encode_payload(kind, **message.__dict__)))
    return messages, frames


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_decoder_survives_garbage_and_split_reads(seed):
    rng = random.Random(seed)
    messages, frames = device_frames(seed)
    stream = b"".join(rng.randbytes(rng.randrange(4)).replace(bytes([SYNC]), b"\0") + frame
                      for frame in frames)
    decoder = FrameDecoder()
    got = []
    position = 0
    while position < len(stream):
        step = rng.randrange(1, 9)
        got += decoder.feed(stream[position:position + step])
        position += step
    assert got == messages


def test_decoder_rejects_corrupt_frame_and_finds_the_next():
    messages, frames = device_frames(4)
    corrupt = bytearray(frames[0])
    corrupt[4] ^= 0x10
    decoder = FrameDecoder()
    assert decoder.feed(bytes(corrupt) + frames[1]) == messages[1:2]
    assert decoder.checksum_errors == 1


def test_fpgaminer_vector_packet():
    packet = encode_work(midstate(FPGAMINER_HEADER), tail_words(FPGAMINER_HEADER))
    assert packet.hex() == ("228ea4732a3c9ba860c009cda7252b9161a5e75ec8c582a5f106abb3af41f790"
                            + "00" * 20 + "2194261a9395e64dbed17115")
    assert decode_work(packet) == (midstate(FPGAMINER_HEADER), tail_words(FPGAMINER_HEADER))
    job = Job(*decode_work(packet), target=protocol.ICARUS_TARGET)
    assert job.hit(header_nonce(FPGAMINER_HEADER))
    assert job.hit(header_nonce(FPGAMINER_HEADER), early_exit=True)


def test_detect_packet_answers_000187a2():
    job = Job(*decode_work(DETECT_PACKET), target=protocol.ICARUS_TARGET)
    assert job.hit(DETECT_NONCE) and job.hit(DETECT_NONCE, early_exit=True)
    assert not job.hit(DETECT_NONCE + 1, early_exit=True)
    assert decode_nonce(bytes.fromhex("000187a2")) == DETECT_NONCE


def test_decode_work_rejects_short_packet():
    with pytest.raises(ValueError, match=r"^an Icarus work packet has 64 bytes, not 63$"):
        decode_work(DETECT_PACKET[:-1])


def doc_hex():
    """The hex examples of docs/protocol.md, spaces removed."""
    text = (Path(__file__).parent.parent / "docs" / "protocol.md").read_text()
    return "".join(text.split())


def test_docs_job_example_is_what_the_encoder_sends():
    header = dict(headers())[1]
    nonce = header_nonce(header)
    job = Job.from_header(header, nonce_start=nonce - 3, nonce_end=nonce + 2, job_id=9)
    assert encode_job(job).hex() in doc_hex()
    for kind, fields in [(Kind.JOB_ACK, {"job_id": 9}),
                         (Kind.RESULT, {"job_id": 9, "nonce": nonce}),
                         (Kind.DONE, {"job_id": 9, "nonce": nonce + 2})]:
        assert encode_frame(kind, encode_payload(kind, **fields)).hex() in doc_hex()


def test_docs_request_and_identify_examples():
    identify = encode_frame(Kind.IDENTIFY, encode_payload(
        Kind.IDENTIFY, name=b"nangua", protocol_version=1, version_major=0, version_minor=1,
        unroll=8, cores=1, clk_hz=12_000_000, baud=115200))
    for frame in (encode_status_request(), encode_identify_request(), identify):
        assert frame.hex() in doc_hex()


def test_docs_payload_sizes_match_protocol():
    text = (Path(__file__).parent.parent / "docs" / "protocol.md").read_text()
    for kind in Kind:
        assert f"| `{kind:#04x}` {kind.name} |" in text
        assert f"| {PAYLOAD_BYTES[kind]} |" in text


class FakeDevice:
    """A pure-Python device behind a pyserial-like port: the client's counterpart for tests of
    the client's own logic (the gateware is tested against the same encoder/decoder elsewhere).
    Replies come in small pieces to exercise reassembly."""

    def __init__(self):
        self.decoder = FrameDecoder(kinds=protocol.HOST_KINDS)
        self.outbox = bytearray()
        self.jobs = 0

    def send(self, kind, **fields):
        self.outbox += encode_frame(kind, encode_payload(kind, **fields))

    def write(self, data):
        for kind, fields in self.decoder.feed(data):
            if kind == Kind.JOB:
                job = Job(fields["midstate"], fields["tail"], fields["target"],
                          fields["nonce_start"], fields["nonce_end"], fields["job_id"])
                self.jobs += 1
                self.send(Kind.JOB_ACK, job_id=job.job_id)
                for nonce in job.scan(early_exit=True):
                    self.send(Kind.RESULT, job_id=job.job_id, nonce=nonce)
                self.send(Kind.DONE, job_id=job.job_id, nonce=job.nonce_end)
            elif kind == Kind.STATUS_REQUEST:
                self.send(Kind.STATUS, hashes=0, results_dropped=0, uart_errors=0,
                          checksum_errors=0, header_errors=0, timeouts=0,
                          jobs_accepted=self.jobs, overruns=0, job_id=0, busy=0)
            elif kind == Kind.IDENTIFY_REQUEST:
                self.send(Kind.IDENTIFY, name=b"nangua", protocol_version=1, version_major=0,
                          version_minor=1, unroll=8, cores=2, clk_hz=48_000_000, baud=115200)

    def read(self, n):
        n = min(n, 3)
        data, self.outbox[:n] = bytes(self.outbox[:n]), b""
        return data


def small_job(job_id):
    header = dict(headers())[1]
    nonce = header_nonce(header)
    return Job.from_header(header, nonce_start=nonce - 3, nonce_end=nonce + 2, job_id=job_id)


def test_client_scan_returns_the_model_nonces():
    client = NativeClient(FakeDevice(), timeout=1.0)
    job = small_job(3)
    assert client.scan(job) == job.scan(early_exit=True) == [header_nonce(dict(headers())[1])]


def test_client_keeps_results_that_arrive_while_it_waits_for_status():
    client = NativeClient(FakeDevice(), timeout=1.0)
    job = small_job(4)
    assert client.load_job(job) == JobAck(4)
    assert client.status().jobs_accepted == 1
    assert client.receive() == Result(4, header_nonce(dict(headers())[1]))
    assert client.receive() == Done(4, job.nonce_end)
    assert client.receive(timeout=0.01) is None


def test_client_identify():
    identity = NativeClient(FakeDevice(), timeout=1.0).identify()
    assert (identity.name, identity.unroll, identity.cores) == (b"nangua", 8, 2)


class SilentPort:
    def write(self, data):
        pass

    def read(self, n):
        return b""


def test_client_times_out_on_a_silent_port():
    with pytest.raises(TimeoutError, match=r"^no status frame from the device within 0\.05 s$"):
        NativeClient(SilentPort(), timeout=0.05).status()


def test_identify_version_is_the_package_version():
    major, minor = (int(part) for part in version("nangua").split(".")[:2])
    assert protocol.DESIGN_VERSION == (major, minor)
