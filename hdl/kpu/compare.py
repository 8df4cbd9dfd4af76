"""Comparisons with constants as plain logic.

Yosys maps ``x > c`` (and ``<``, ``>=``, ``<=``) to a carry chain: on iCE40 a logic cell per bit
that ABC cannot merge with anything. Against a constant the comparison is a chain of ANDs and
ORs, one per bit, which folds into the LUTs that use it.
"""

from amaranth.hdl import Const

__all__ = ["gt_const", "at_least"]


def gt_const(x, limit, low_gt=Const(0)):
    """``x > limit`` for an unsigned value and a constant. With ``low_gt``, ``x`` and ``limit``
    are the upper parts of longer values whose lower parts compare ``low_gt`` (lower part of
    ``x`` > that of the limit)."""
    if limit > (1 << len(x)) - 1:
        return Const(0)
    gt = low_gt                         # x[:i] > limit[:i], from the least significant bit up
    for i in range(len(x)):
        gt = (x[i] & gt) if (limit >> i) & 1 else (x[i] | gt)
    return gt


def at_least(x, c):
    """``x ≥ c`` for an unsigned value and a constant."""
    return Const(1) if c <= 0 else gt_const(x, c - 1)
