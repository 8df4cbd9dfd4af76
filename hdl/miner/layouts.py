"""Payload layouts of the miner's streams, defined once for gateware, host code and benches."""

from amaranth.hdl import unsigned
from amaranth.lib import data, enum

#: Width of the job tag carried by every result.
JOB_ID_BITS = 8


class JobLayout(data.StructLayout):
    """One job: what is fixed for every nonce of a header, plus the scan range.

    ``midstate`` holds H0..H7 (element 0 = H0); ``tail`` holds W0..W2 of the second block;
    ``target`` is compared with the SHA-256d digest read as a little-endian 256-bit integer;
    the range [``nonce_start``, ``nonce_end``] is inclusive and wraps through 0xffffffff.
    """

    def __init__(self):
        super().__init__({
            "midstate":    data.ArrayLayout(unsigned(32), 8),
            "tail":        data.ArrayLayout(unsigned(32), 3),
            "target":      unsigned(256),
            "nonce_start": unsigned(32),
            "nonce_end":   unsigned(32),
            "job_id":      unsigned(JOB_ID_BITS),
        })


class ResultKind(enum.Enum, shape=1):
    #: ``nonce`` meets the job's target.
    NONCE = 0
    #: The job's range is exhausted; ``nonce`` is its last nonce. Always the job's last result.
    DONE = 1


class ResultLayout(data.StructLayout):
    """One result of the engine: a nonce found, or the end of a job's range."""

    def __init__(self):
        super().__init__({
            "kind":   ResultKind,
            "job_id": unsigned(JOB_ID_BITS),
            "nonce":  unsigned(32),
        })
