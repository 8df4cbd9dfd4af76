"""Pure-Python golden model of SHA-256d mining: headers, jobs, targets and the nonce scan.

No Amaranth import. Conventions used across nangua (gateware, host software, tests):

* A **header** is the 80-byte wire-order Bitcoin block header.
* The **midstate** is the SHA-256 chaining value after the header's first 64 bytes: 8 words H0..H7.
* The **tail** is the header's bytes 64..75 as three big-endian words W0, W1, W2 of the second
  block (merkle-root end, ntime, nbits).
* The **nonce** the gateware counts is W3, the big-endian word of header bytes 76..79. The header's
  nonce field (a little-endian uint32, as stratum's ``mining.submit`` prints it) is its byte swap;
  :func:`nonce_field` converts.
* A **hash value** is the SHA-256d digest read as a little-endian 256-bit integer, the number
  Bitcoin compares with a target; the display hash is the digest byte-reversed.
"""

from dataclasses import dataclass
from fractions import Fraction

from ..sha256.model import IV, MASK, bytes_be, compress, rounds, message_schedule, words_be

HEADER_BYTES = 80
#: Target of difficulty 1 (pool difficulty, "pdiff"): 0x00000000FFFF0000...0000.
DIFF1_TARGET = 0xFFFF << 208
MAX_TARGET = (1 << 256) - 1
#: Block-2 padding of an 80-byte message: W4 = 0x80000000, W5..W14 = 0, W15 = 640 bits.
BLOCK2_PADDING = (0x8000_0000,) + (0,) * 10 + (640,)
#: Padding of the 32-byte first digest as the second hash's block: W8 = 0x80000000, W15 = 256 bits.
DIGEST_PADDING = (0x8000_0000,) + (0,) * 6 + (256,)


def bswap32(x):
    return int.from_bytes((x & MASK).to_bytes(4, "big"), "little")


def nonce_field(w3):
    """The header's little-endian nonce field for the gateware nonce ``w3`` (and vice versa)."""
    return bswap32(w3)


def check_header(header):
    header = bytes(header)
    if len(header) != HEADER_BYTES:
        raise ValueError(f"a block header has {HEADER_BYTES} bytes, not {len(header)}")
    return header


def midstate(header):
    """SHA-256 chaining value after the header's first 64-byte block."""
    return compress(IV, words_be(check_header(header)[:64]))


def tail_words(header):
    """W0, W1, W2 of the second block: header bytes 64..75 as big-endian words."""
    return tuple(words_be(check_header(header)[64:76]))


def header_nonce(header):
    """The gateware nonce (W3) stored in ``header``."""
    return words_be(check_header(header)[76:80])[0]


def with_nonce(header, w3):
    """``header`` with its nonce replaced by the gateware nonce ``w3``."""
    return check_header(header)[:76] + (w3 & MASK).to_bytes(4, "big")


def second_block(tail, nonce):
    """The 16 words of the header's second block for ``nonce`` (W3)."""
    return tuple(tail) + (nonce & MASK,) + BLOCK2_PADDING


def first_hash(job_midstate, tail, nonce):
    """Chaining value after the second block: the first SHA-256 of the header, as 8 words."""
    return compress(job_midstate, second_block(tail, nonce))


def double_hash_words(job_midstate, tail, nonce):
    """SHA-256d of the header given by midstate, tail and nonce, as 8 big-endian words."""
    return compress(IV, first_hash(job_midstate, tail, nonce) + DIGEST_PADDING)


def hash_value(digest):
    """The 256-bit number Bitcoin compares with a target: the digest as a little-endian integer."""
    if isinstance(digest, (tuple, list)):
        digest = bytes_be(digest)
    return int.from_bytes(digest, "little")


def display_hash(digest):
    """Hex of the digest byte-reversed, as block explorers show a block hash."""
    if isinstance(digest, (tuple, list)):
        digest = bytes_be(digest)
    return digest[::-1].hex()


def second_hash_h7_early(job_midstate, tail, nonce):
    """H7 of the second hash computed the early-exit way: IV7 + e after round 61 of 64.

    h after round 64 is e after round 61, so the last three rounds are not needed for H7.
    """
    w = message_schedule(first_hash(job_midstate, tail, nonce) + DIGEST_PADDING)
    state = rounds(IV, w, 0, 61)
    return (IV[7] + state[4]) & MASK


def nbits_to_target(nbits):
    """The block target encoded by a header's compact ``nBits`` field.

    Raises
    ------
    ValueError
        For a negative or overflowing encoding, which no valid block carries.
    """
    if not 0 <= nbits <= MASK:
        raise ValueError(f"nBits {nbits:#x} is not a 32-bit value")
    exponent, mantissa = nbits >> 24, nbits & 0x7F_FFFF
    if nbits & 0x80_0000:
        raise ValueError(f"nBits {nbits:#010x} encodes a negative target")
    if exponent <= 3:
        target = mantissa >> (8 * (3 - exponent))
    else:
        target = mantissa << (8 * (exponent - 3))
    if target > MAX_TARGET:
        raise ValueError(f"nBits {nbits:#010x} encodes a target above 2**256")
    return target


def difficulty_to_target(difficulty):
    """Share target for a pool difficulty (fractions below 1 are legal and give easier targets).

    ``difficulty`` may be an int, float, :class:`~fractions.Fraction` or decimal string.

    Raises
    ------
    ValueError
        If the difficulty is not a positive finite number.
    """
    try:
        value = Fraction(difficulty)
    except (ValueError, TypeError, ZeroDivisionError, OverflowError):
        raise ValueError(f"difficulty {difficulty!r} is not a number") from None
    if value <= 0:
        raise ValueError(f"difficulty must be positive, not {difficulty!r}")
    return min(MAX_TARGET, int(DIFF1_TARGET / value))


def target_to_difficulty(target):
    """Pool difficulty of ``target`` as a float (for display)."""
    if target <= 0:
        raise ValueError("a target must be positive")
    return DIFF1_TARGET / target


def meets_target(digest, target):
    """Does the SHA-256d ``digest`` (bytes or words) meet ``target``?"""
    return hash_value(digest) <= target


def nonce_count(nonce_start, nonce_end):
    """Number of nonces in the inclusive, wrapping range [start, end] (2**32 when end = start - 1)."""
    return ((nonce_end - nonce_start) & MASK) + 1


def range_nonces(nonce_start, nonce_end):
    """The nonces of the inclusive, wrapping range [start, end], in scan order."""
    for i in range(nonce_count(nonce_start, nonce_end)):
        yield (nonce_start + i) & MASK


@dataclass(frozen=True)
class Job:
    """Mining work as the gateware takes it: what is fixed for every nonce of a header.

    Parameters
    ----------
    midstate : tuple of 8 int
        H0..H7 after the header's first block.
    tail : tuple of 3 int
        W0, W1, W2 of the header's second block.
    target : int
        A hash meets the job when its :func:`hash_value` is at most ``target``.
    nonce_start, nonce_end : int
        Inclusive scan range of W3; it wraps through 0xffffffff to 0.
    job_id : int
        Tag the gateware attaches to every result of this job.
    """

    midstate: tuple
    tail: tuple
    target: int
    nonce_start: int = 0
    nonce_end: int = MASK
    job_id: int = 0

    def __post_init__(self):
        if len(self.midstate) != 8 or len(self.tail) != 3:
            raise ValueError("a job has an 8-word midstate and a 3-word tail")
        for word in (*self.midstate, *self.tail, self.nonce_start, self.nonce_end):
            if not 0 <= word <= MASK:
                raise ValueError(f"{word:#x} is not a 32-bit word")
        if not 0 <= self.target <= MAX_TARGET:
            raise ValueError("the target must be a 256-bit unsigned number")

    @classmethod
    def from_header(cls, header, target=None, nonce_start=0, nonce_end=MASK, job_id=0):
        """The job for ``header``; the target defaults to the header's own nBits target."""
        header = check_header(header)
        if target is None:
            target = nbits_to_target(int.from_bytes(header[72:76], "little"))
        return cls(tuple(midstate(header)), tail_words(header), target, nonce_start & MASK,
                   nonce_end & MASK, job_id)

    def digest(self, nonce):
        """SHA-256d words of this job's header with ``nonce``."""
        return double_hash_words(self.midstate, self.tail, nonce)

    def hit(self, nonce, early_exit=False):
        """Would the gateware report ``nonce``?

        With ``early_exit`` the gateware sees only H7 (the hash value's top 32 bits): it reports a
        nonce whose top word is below the target's, or equal to it (then it may miss the target by
        the lower 224 bits: a tie has probability 2**-32 per hash, and host software re-checks).
        """
        if early_exit:
            top = bswap32(second_hash_h7_early(self.midstate, self.tail, nonce))
            return top <= self.target >> 224
        return meets_target(self.digest(nonce), self.target)

    def scan(self, early_exit=False):
        """Every nonce of the range the gateware must report, in scan order."""
        return [n for n in range_nonces(self.nonce_start, self.nonce_end)
                if self.hit(n, early_exit)]
