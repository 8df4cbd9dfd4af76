"""The native framed protocol, host side: encoder, incremental decoder and a client.

Byte layouts and behaviour are in ``docs/protocol.md``; constants in
:mod:`nangua.hdl.link.protocol`, which the gateware is generated from too.
"""

import time
from collections import deque
from dataclasses import dataclass

from nangua.hdl.link.protocol import (CRC_BYTES, DESIGN_NAME, FIELDS, HEADER_BYTES, PAYLOAD_BYTES,
                                      SYNC, Kind, crc16)


def encode_payload(kind, **values):
    """Payload bytes of ``kind`` from its fields (see :data:`protocol.FIELDS`).

    Array fields (``midstate``, ``tail``) take a sequence; ``name`` takes bytes.

    Raises
    ------
    ValueError
        For a missing or unknown field, or a value that does not fit.
    """
    kind = Kind(kind)
    names = {name for name, _, _ in FIELDS[kind]}
    if set(values) != names:
        raise ValueError(f"{kind.name} payload needs fields {sorted(names)}, "
                         f"got {sorted(values)}")
    out = bytearray()
    for name, count, size in FIELDS[kind]:
        value = values[name]
        if name == "name":
            value = bytes(value)
            if len(value) > size:
                raise ValueError(f"name {value!r} is longer than {size} bytes")
            out += value.ljust(size, b"\0")
            continue
        elements = tuple(value) if count > 1 else (value,)
        if len(elements) != count:
            raise ValueError(f"field {name} has {count} elements, not {len(elements)}")
        for element in elements:
            if not 0 <= element < 1 << (8 * size):
                raise ValueError(f"field {name} value {element:#x} does not fit {size} bytes")
            out += element.to_bytes(size, "little")
    return bytes(out)


def decode_payload(kind, payload):
    """Fields of a payload as a dict (arrays as tuples, ``name`` as bytes without padding).

    Raises
    ------
    ValueError
        If the payload's length is not the kind's.
    """
    kind = Kind(kind)
    if len(payload) != PAYLOAD_BYTES[kind]:
        raise ValueError(f"{kind.name} payload has {PAYLOAD_BYTES[kind]} bytes, "
                         f"not {len(payload)}")
    values, offset = {}, 0
    for name, count, size in FIELDS[kind]:
        chunk = payload[offset:offset + count * size]
        offset += count * size
        if name == "name":
            values[name] = bytes(chunk).rstrip(b"\0")
            continue
        elements = tuple(int.from_bytes(chunk[i:i + size], "little")
                         for i in range(0, count * size, size))
        values[name] = elements if count > 1 else elements[0]
    return values


def encode_frame(kind, payload=b""):
    """A whole frame: SYNC, kind, length, payload, CRC-16 (most significant byte first)."""
    kind = Kind(kind)
    payload = bytes(payload)
    if len(payload) != PAYLOAD_BYTES[kind]:
        raise ValueError(f"{kind.name} payload has {PAYLOAD_BYTES[kind]} bytes, "
                         f"not {len(payload)}")
    body = bytes([kind, len(payload)]) + payload
    return bytes([SYNC]) + body + crc16(body).to_bytes(CRC_BYTES, "big")


def encode_job(job):
    """JOB frame for a :class:`nangua.hdl.miner.model.Job`."""
    return encode_frame(Kind.JOB, encode_payload(
        Kind.JOB, midstate=job.midstate, tail=job.tail, target=job.target,
        nonce_start=job.nonce_start, nonce_end=job.nonce_end, job_id=job.job_id))


def encode_status_request():
    return encode_frame(Kind.STATUS_REQUEST)


def encode_identify_request():
    return encode_frame(Kind.IDENTIFY_REQUEST)


@dataclass(frozen=True)
class JobAck:
    """The engine took the job ``job_id``: results of the previous job stop here."""
    job_id: int


@dataclass(frozen=True)
class Result:
    """``nonce`` (W3) of job ``job_id`` meets the job's target (re-check it: see the docs)."""
    job_id: int
    nonce: int


@dataclass(frozen=True)
class Done:
    """Job ``job_id`` has scanned its whole range; ``nonce`` is the range's last nonce."""
    job_id: int
    nonce: int


@dataclass(frozen=True)
class Status:
    hashes: int
    results_dropped: int
    uart_errors: int
    checksum_errors: int
    header_errors: int
    timeouts: int
    jobs_accepted: int
    overruns: int
    job_id: int
    busy: int


@dataclass(frozen=True)
class Identity:
    name: bytes
    protocol_version: int
    version_major: int
    version_minor: int
    unroll: int
    cores: int
    clk_hz: int
    baud: int


#: Message class of each device → host kind.
MESSAGES = {Kind.JOB_ACK: JobAck, Kind.RESULT: Result, Kind.DONE: Done, Kind.STATUS: Status,
            Kind.IDENTIFY: Identity}


class FrameDecoder:
    """Incremental decoder of device → host frames, with the device's own resynchronisation.

    Feed it bytes as they arrive; it returns the messages completed. Bytes that do not form a
    valid frame are skipped and counted (``checksum_errors``, ``header_errors``); after a bad
    frame it hunts for the next ``SYNC`` from the byte after the rejected one's ``SYNC``, so a
    real frame hidden in a bad one is still found.
    """

    def __init__(self, kinds=None):
        # ``kinds``: the kinds to accept (default: device → host). Kinds without a message class
        # (host → device, for a device model) come out as ``(kind, fields)`` tuples.
        self._lengths = {kind: PAYLOAD_BYTES[kind] for kind in (kinds or MESSAGES)}
        self._buffer = bytearray()
        self.checksum_errors = 0
        self.header_errors = 0

    def feed(self, data):
        """Messages completed by ``data`` (:class:`Result`, :class:`Done`, ...), in order."""
        self._buffer += data
        messages = []
        while True:
            start = self._buffer.find(SYNC)
            if start < 0:
                self._buffer.clear()
                return messages
            del self._buffer[:start]
            if len(self._buffer) < HEADER_BYTES:
                return messages
            kind, length = self._buffer[1], self._buffer[2]
            if self._lengths.get(kind) != length:
                self.header_errors += 1
                del self._buffer[:1]
                continue
            end = HEADER_BYTES + length + CRC_BYTES
            if len(self._buffer) < end:
                return messages
            if crc16(self._buffer[1:end]) != 0:
                self.checksum_errors += 1
                del self._buffer[:1]
                continue
            payload = bytes(self._buffer[HEADER_BYTES:HEADER_BYTES + length])
            del self._buffer[:end]
            kind = Kind(kind)
            cls = MESSAGES.get(kind)
            fields = decode_payload(kind, payload)
            messages.append(cls(**fields) if cls else (kind, fields))


class NativeClient:
    """Talks the native protocol over a byte stream with pyserial's ``read(n)`` / ``write(b)``.

    ``read(n)`` must return at most ``n`` bytes and may return fewer (``b""`` when nothing came
    within the port's own timeout); give the port a short read timeout (e.g. pyserial
    ``timeout=0.05``). Messages that arrive while the client waits for another one (results while
    waiting for a status frame) are kept and returned by later calls, in order.

    Parameters
    ----------
    port
        The byte stream.
    timeout : float
        Seconds to wait for a reply before :class:`TimeoutError`.
    """

    def __init__(self, port, *, timeout=2.0):
        self.port = port
        self.timeout = timeout
        self.decoder = FrameDecoder()
        self._pending = deque()

    def send(self, frame):
        self.port.write(bytes(frame))
        flush = getattr(self.port, "flush", None)
        if flush is not None:
            flush()

    def receive(self, timeout=None):
        """The next message, or ``None`` if none came within ``timeout`` seconds."""
        deadline = time.monotonic() + (self.timeout if timeout is None else timeout)
        while not self._pending:
            data = self.port.read(64)
            if data:
                self._pending.extend(self.decoder.feed(data))
            elif time.monotonic() >= deadline:
                return None
        return self._pending.popleft()

    def _wait_for(self, accept, what, timeout=None):
        deadline = time.monotonic() + (self.timeout if timeout is None else timeout)
        kept = []
        try:
            while True:
                message = self.receive(max(0.0, deadline - time.monotonic()))
                if message is None:
                    raise TimeoutError(f"no {what} from the device within "
                                       f"{self.timeout if timeout is None else timeout} s")
                if accept(message):
                    return message
                kept.append(message)
        finally:
            self._pending.extendleft(reversed(kept))

    def load_job(self, job, *, timeout=None):
        """Send ``job`` and wait for its :class:`JobAck`."""
        self.send(encode_job(job))
        return self._wait_for(lambda m: isinstance(m, JobAck) and m.job_id == job.job_id,
                              f"acknowledgement of job {job.job_id}", timeout)

    def status(self, timeout=None):
        self.send(encode_status_request())
        return self._wait_for(lambda m: isinstance(m, Status), "status frame", timeout)

    def identify(self, timeout=None):
        """The device's :class:`Identity`.

        Raises
        ------
        ValueError
            If the device is not a nangua miner.
        """
        self.send(encode_identify_request())
        identity = self._wait_for(lambda m: isinstance(m, Identity), "identify frame", timeout)
        if identity.name != DESIGN_NAME:
            raise ValueError(f"device calls itself {identity.name!r}, not {DESIGN_NAME!r}")
        return identity

    def scan(self, job, *, timeout=None):
        """Load ``job`` and collect its nonces until its :class:`Done`; returns the nonces."""
        self.load_job(job, timeout=timeout)
        nonces = []
        while True:
            message = self._wait_for(
                lambda m: isinstance(m, (Result, Done)) and m.job_id == job.job_id,
                f"result of job {job.job_id}", timeout)
            if isinstance(message, Done):
                return nonces
            nonces.append(message.nonce)

