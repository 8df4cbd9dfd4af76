"""Pure-Python golden model of SHA-256 (FIPS 180-4), written round by round.

No Amaranth import: this is the truth the gateware is checked against, and it is itself checked
against ``hashlib`` and the NIST CAVP vectors. Words are Python ints in ``[0, 2**32)``.
"""

MASK = 0xFFFF_FFFF

#: Round constants: first 32 bits of the fractional parts of the cube roots of the first 64 primes.
K = (
    0x428A2F98, 0x71374491, 0xB5C0FBCF, 0xE9B5DBA5, 0x3956C25B, 0x59F111F1, 0x923F82A4, 0xAB1C5ED5,
    0xD807AA98, 0x12835B01, 0x243185BE, 0x550C7DC3, 0x72BE5D74, 0x80DEB1FE, 0x9BDC06A7, 0xC19BF174,
    0xE49B69C1, 0xEFBE4786, 0x0FC19DC6, 0x240CA1CC, 0x2DE92C6F, 0x4A7484AA, 0x5CB0A9DC, 0x76F988DA,
    0x983E5152, 0xA831C66D, 0xB00327C8, 0xBF597FC7, 0xC6E00BF3, 0xD5A79147, 0x06CA6351, 0x14292967,
    0x27B70A85, 0x2E1B2138, 0x4D2C6DFC, 0x53380D13, 0x650A7354, 0x766A0ABB, 0x81C2C92E, 0x92722C85,
    0xA2BFE8A1, 0xA81A664B, 0xC24B8B70, 0xC76C51A3, 0xD192E819, 0xD6990624, 0xF40E3585, 0x106AA070,
    0x19A4C116, 0x1E376C08, 0x2748774C, 0x34B0BCB5, 0x391C0CB3, 0x4ED8AA4A, 0x5B9CCA4F, 0x682E6FF3,
    0x748F82EE, 0x78A5636F, 0x84C87814, 0x8CC70208, 0x90BEFFFA, 0xA4506CEB, 0xBEF9A3F7, 0xC67178F2,
)

#: Initial hash value: first 32 bits of the fractional parts of the square roots of the first 8 primes.
IV = (0x6A09E667, 0xBB67AE85, 0x3C6EF372, 0xA54FF53A, 0x510E527F, 0x9B05688C, 0x1F83D9AB, 0x5BE0CD19)


def rotr(x, n):
    return ((x >> n) | (x << (32 - n))) & MASK


def big_sigma0(a):
    return rotr(a, 2) ^ rotr(a, 13) ^ rotr(a, 22)


def big_sigma1(e):
    return rotr(e, 6) ^ rotr(e, 11) ^ rotr(e, 25)


def small_sigma0(w):
    return rotr(w, 7) ^ rotr(w, 18) ^ (w >> 3)


def small_sigma1(w):
    return rotr(w, 17) ^ rotr(w, 19) ^ (w >> 10)


def ch(e, f, g):
    return (e & f) ^ (~e & g & MASK)


def maj(a, b, c):
    return (a & b) ^ (a & c) ^ (b & c)


def schedule_word(w_2, w_7, w_15, w_16):
    """W[t] from W[t-2], W[t-7], W[t-15] and W[t-16]."""
    return (small_sigma1(w_2) + w_7 + small_sigma0(w_15) + w_16) & MASK


def message_schedule(block_words):
    """Expand 16 message words into the 64 schedule words W[0..63]."""
    if len(block_words) != 16:
        raise ValueError(f"a block has 16 words, not {len(block_words)}")
    w = list(block_words)
    for t in range(16, 64):
        w.append(schedule_word(w[t - 2], w[t - 7], w[t - 15], w[t - 16]))
    return w


def round_step(state, k, w):
    """One SHA-256 round: the working variables (a..h) after mixing in ``k + w``."""
    a, b, c, d, e, f, g, h = state
    t1 = (h + big_sigma1(e) + ch(e, f, g) + k + w) & MASK
    t2 = (big_sigma0(a) + maj(a, b, c)) & MASK
    return ((t1 + t2) & MASK, a, b, c, (d + t1) & MASK, e, f, g)


def rounds(state, w, first, last):
    """Apply rounds ``first .. last - 1`` to ``state`` with schedule ``w``."""
    for t in range(first, last):
        state = round_step(state, K[t], w[t])
    return state


def compress(chaining, block_words):
    """The SHA-256 compression function: chaining value + 16 block words -> new chaining value."""
    state = rounds(tuple(chaining), message_schedule(block_words), 0, 64)
    return tuple((x + y) & MASK for x, y in zip(chaining, state))


def words_be(data):
    """Big-endian 32-bit words of ``data`` (length a multiple of 4)."""
    if len(data) % 4:
        raise ValueError(f"{len(data)} bytes is not a whole number of words")
    return [int.from_bytes(data[i:i + 4], "big") for i in range(0, len(data), 4)]


def bytes_be(words):
    return b"".join(w.to_bytes(4, "big") for w in words)


def pad(message):
    """SHA-256 padding: 0x80, zeros, and the 64-bit big-endian bit length, to 64-byte blocks."""
    length = len(message)
    padded = message + b"\x80" + b"\x00" * ((55 - length) % 64) + (8 * length).to_bytes(8, "big")
    assert len(padded) % 64 == 0
    return padded


def sha256(message):
    """SHA-256 digest of ``message`` (bytes), computed with this model's compression."""
    state = IV
    padded = pad(bytes(message))
    for offset in range(0, len(padded), 64):
        state = compress(state, words_be(padded[offset:offset + 64]))
    return bytes_be(state)


def sha256d(message):
    """Double SHA-256, as Bitcoin uses it."""
    return sha256(sha256(message))
