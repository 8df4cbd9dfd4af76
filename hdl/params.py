"""Parameter checking for components, and the FPGA family a platform parameter names."""

from contextlib import contextmanager

__all__ = ["checking", "platform_family"]


@contextmanager
def checking(component):
    """Run a component's parameter checks; on ``ValueError`` the half-built component is dropped.

    Amaranth warns about elaboratables that are created but never elaborated. A component whose
    constructor rejects its parameters is never meant to be elaborated, so it is marked silent
    before the error propagates (Amaranth's own opt-out flag), leaving only the clear error.
    """
    try:
        yield
    except ValueError:
        component._MustUse__silence = True
        raise


def platform_family(platform):
    """``"ice40"``, ``"ecp5"`` or ``None`` for a platform object or a family name; ``None`` also
    for ``platform=None`` and for platforms of any other family."""
    if platform is None:
        return None
    if isinstance(platform, str):
        family = platform
    else:
        family = getattr(platform, "family", None) or type(platform).__name__
    for name in ("ice40", "ecp5"):
        if name in str(family).lower():
            return name
    return None
