"""The native host-link protocol's constants: the one Python source for gateware and host code.

No Amaranth import, so host software can use it without the HDL. ``docs/protocol.md`` describes
the same protocol for people; tests check that the two agree with the gateware.

A frame on the wire is::

    SYNC  KIND  LENGTH  PAYLOAD[LENGTH]  CRC_HI  CRC_LO

* ``SYNC`` is :data:`SYNC`; ``KIND`` one of :class:`Kind`; ``LENGTH`` the payload's byte count,
  which is fixed per kind (:data:`PAYLOAD_BYTES`).
* The CRC is CRC-16/CCITT-FALSE (:data:`CRC`) over ``KIND``, ``LENGTH`` and the payload, sent most
  significant byte first, so the CRC of a whole frame after ``SYNC`` is 0.
* Multi-byte payload fields are little-endian unsigned integers (:data:`FIELDS`), so a job payload
  is exactly the bits of the gateware's ``JobLayout`` in byte order.

Why CRC-16 and not CRC-8: a job frame carries 85 payload bytes (680 bits). CRC-16/CCITT detects
every error burst up to 16 bits and every 1-, 2- and 3-bit error in frames this size, and lets a
random corruption through with probability 2**-16, against 2**-8 for a CRC-8 — a wrong job costs
a whole scan. In gateware it is one byte per clock of XORs; the UART delivers a byte every 10 bit
times, so it costs no throughput.
"""

from enum import IntEnum

#: First byte of every frame.
SYNC = 0xA5
#: Version of this protocol, reported by the identify frame.
PROTOCOL_VERSION = 1
#: Design name reported by the identify frame, NUL-padded to :data:`NAME_BYTES`.
DESIGN_NAME = b"nangua"
NAME_BYTES = 8
#: Design version (major, minor) reported by the identify frame.
DESIGN_VERSION = (0, 1)
#: Bytes before the payload (sync, kind, length) and after it (CRC).
HEADER_BYTES = 3
CRC_BYTES = 2
#: Default inter-byte timeout, in bit times: a frame whose next byte does not start within this
#: many bit times of the previous one is abandoned and counted as truncated.
TIMEOUT_BIT_TIMES = 100
#: Default line rate of the native protocol.
DEFAULT_BAUD = 115200


class Kind(IntEnum):
    """Frame kinds. Host → device kinds are below 0x80, device → host kinds at or above it."""
    #: Host → device: load a job; it replaces the current one once the CRC has matched.
    JOB = 0x01
    #: Host → device: ask for a :attr:`STATUS` frame.
    STATUS_REQUEST = 0x02
    #: Host → device: ask for an :attr:`IDENTIFY` frame.
    IDENTIFY_REQUEST = 0x03
    #: Device → host: the engine accepted the job with this id.
    JOB_ACK = 0x81
    #: Device → host: a nonce of the job meets its target.
    RESULT = 0x82
    #: Device → host: the job's range is exhausted; ``nonce`` is its last nonce.
    DONE = 0x83
    #: Device → host: counters.
    STATUS = 0x84
    #: Device → host: what this design is.
    IDENTIFY = 0x85


#: Payload fields of each kind, in wire order: (name, element count, bytes per element).
#: Every element is a little-endian unsigned integer; ``name`` is a byte string for IDENTIFY.
FIELDS = {
    Kind.JOB: (
        ("midstate",    8, 4),   # H0..H7
        ("tail",        3, 4),   # W0..W2 of the header's second block
        ("target",      1, 32),  # compared with SHA-256d read as a little-endian 256-bit number
        ("nonce_start", 1, 4),   # inclusive range of W3, wrapping through 0xffffffff
        ("nonce_end",   1, 4),
        ("job_id",      1, 1),
    ),
    Kind.STATUS_REQUEST: (),
    Kind.IDENTIFY_REQUEST: (),
    Kind.JOB_ACK: (
        ("job_id",      1, 1),
    ),
    Kind.RESULT: (
        ("job_id",      1, 1),
        ("nonce",       1, 4),   # W3, the big-endian word of header bytes 76..79
    ),
    Kind.DONE: (
        ("job_id",      1, 1),
        ("nonce",       1, 4),
    ),
    Kind.STATUS: (
        ("hashes",          1, 8),  # nonces hashed since reset
        ("results_dropped", 1, 4),  # results the engine withdrew unsent: must stay 0
        ("uart_errors",     1, 4),  # bytes with a bad stop bit
        ("checksum_errors", 1, 4),  # whole frames whose CRC did not match
        ("header_errors",   1, 4),  # unknown kind, or a length that does not fit the kind
        ("timeouts",        1, 4),  # frames abandoned after an inter-byte timeout (truncated)
        ("jobs_accepted",   1, 4),  # jobs the engine took
        ("overruns",        1, 4),  # bytes lost: the previous job still waited for the engine
        ("job_id",          1, 1),  # id of the current (or last) job
        ("busy",            1, 1),  # 1 while the engine scans
    ),
    Kind.IDENTIFY: (
        ("name",             1, NAME_BYTES),
        ("protocol_version", 1, 1),
        ("version_major",    1, 1),
        ("version_minor",    1, 1),
        ("unroll",           1, 2),
        ("cores",            1, 2),
        ("clk_hz",           1, 4),
        ("baud",             1, 4),
    ),
}

#: Payload length of each kind in bytes: the only length the receiver of that kind accepts.
PAYLOAD_BYTES = {kind: sum(count * size for _, count, size in fields)
                 for kind, fields in FIELDS.items()}
#: Kinds the device accepts (host → device) and the kinds it sends.
HOST_KINDS = tuple(kind for kind in Kind if kind < 0x80)
DEVICE_KINDS = tuple(kind for kind in Kind if kind >= 0x80)


class Crc16:
    """CRC-16/CCITT-FALSE: polynomial 0x1021, initial 0xFFFF, no reflection, no final XOR.

    The same parameters build the gateware's ``amaranth.lib.crc.Algorithm``.
    """
    width = 16
    polynomial = 0x1021
    initial = 0xFFFF
    reflect_input = False
    reflect_output = False
    xor_output = 0x0000
    #: The standard check value: CRC of b"123456789".
    check = 0x29B1


#: The frame checksum.
CRC = Crc16


def crc16(data, crc=CRC.initial):
    """CRC-16/CCITT-FALSE of ``data`` (bytes), optionally continuing from ``crc``."""
    for byte in data:
        crc ^= byte << 8
        for _ in range(8):
            crc = ((crc << 1) ^ CRC.polynomial) if crc & 0x8000 else crc << 1
            crc &= 0xFFFF
    return crc


def timeout_clocks(divisor, bit_times=TIMEOUT_BIT_TIMES):
    """Inter-byte timeout in clock cycles for a UART clock divisor."""
    return divisor * bit_times


#: Icarus-compatible mode: bytes of a work packet and of a reply.
ICARUS_WORK_BYTES = 64
ICARUS_NONCE_BYTES = 4
#: Icarus-compatible mode: a hash is reported when its H7 is zero, i.e. this target.
ICARUS_TARGET = (1 << 224) - 1
