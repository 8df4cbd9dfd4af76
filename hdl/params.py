"""Parameter checking for components."""

from contextlib import contextmanager

__all__ = ["checking"]


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
