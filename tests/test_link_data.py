"""Shared test data of the link tests: real headers and Icarus packets with early replies."""

from functools import cache
from pathlib import Path

DATA = Path(__file__).parent / "data"


@cache
def headers():
    """(height, 80-byte header) of the real mainnet headers in tests/data."""
    rows = []
    for line in (DATA / "bitcoin_headers.txt").read_text().splitlines():
        if line and not line.startswith("#"):
            height, header, _ = line.split()
            rows.append((int(height), bytes.fromhex(header)))
    return rows
