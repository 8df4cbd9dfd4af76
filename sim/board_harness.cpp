// The simulated board's main loop: a Verilated design with a UART (`rx` in, `tx` out) whose
// serial line is a file descriptor (the master side of a pseudo-terminal, given by nangua.sim.board).
//
// Every clock cycle: bytes read from the descriptor are bit-banged into `rx` (8N1, LSB first,
// `cycles_per_bit` clocks per bit, back to back as a host's UART sends them) and `tx` is sampled
// mid-bit like a UART receiver; received bytes are written to the descriptor. So simulated time
// runs continuously and the serial line carries bytes at the design's own baud rate in simulated
// time. The descriptor is polled once per byte time, without blocking, so an idle line costs one
// system call per ten bit times.
//
// Usage: board FD CYCLES_PER_BIT [MAX_CYCLES]
// Stops on SIGINT/SIGTERM (or after MAX_CYCLES) and prints "cycles N seconds S" to stderr.

#include <cerrno>
#include <chrono>
#include <csignal>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <deque>
#include <fcntl.h>
#include <memory>
#include <unistd.h>

#include "Vtop.h"
#include "verilated.h"

namespace {

volatile std::sig_atomic_t stop_requested = 0;

void request_stop(int) { stop_requested = 1; }

// Bytes the board has sent that the descriptor could not take yet; beyond this they are dropped,
// as a real UART's bytes are lost when nobody listens.
constexpr size_t OUT_QUEUE_LIMIT = 1 << 16;

// Host -> board: shifts bytes out onto the design's rx pin.
struct LineDriver {
    uint32_t cycles_per_bit;
    std::deque<uint8_t> queue;
    int bit = -1;          // -1 idle, 0 start bit, 1..8 data bits, 9 stop bit
    uint32_t count = 0;    // clocks left in the current bit
    uint16_t frame = 0;

    int level() const {
        if (bit < 0 || bit == 9) return 1;
        if (bit == 0) return 0;
        return (frame >> (bit - 1)) & 1;
    }

    void tick() {
        if (bit < 0) {
            if (queue.empty()) return;
            frame = queue.front();
            queue.pop_front();
            bit = 0;  // the start bit shows from the next cycle on, for cycles_per_bit cycles
            count = cycles_per_bit;
            return;
        }
        if (--count == 0) {
            bit = bit == 9 ? -1 : bit + 1;
            count = cycles_per_bit;
        }
    }
};

// Board -> host: samples the design's tx pin in the middle of each bit.
struct LineReceiver {
    uint32_t cycles_per_bit;
    int bit = -1;          // -1 waiting for a start bit, 0 start, 1..8 data, 9 stop
    uint32_t count = 0;
    uint8_t byte = 0;

    // Returns true with `out` set when a whole byte with a valid stop bit has arrived.
    bool tick(int tx, uint8_t &out) {
        if (bit < 0) {
            if (tx == 0) {
                bit = 0;
                count = cycles_per_bit / 2;
            }
            return false;
        }
        if (count-- != 0) return false;
        count = cycles_per_bit - 1;
        if (bit == 0) {
            if (tx != 0) bit = -1;  // a glitch, not a start bit
            else bit = 1;
            return false;
        }
        if (bit <= 8) {
            byte = (byte >> 1) | (tx ? 0x80 : 0);
            ++bit;
            return false;
        }
        bit = -1;
        if (tx == 0) return false;  // framing error: no stop bit
        out = byte;
        return true;
    }
};

}  // namespace

int main(int argc, char **argv) {
    if (argc < 3) {
        std::fprintf(stderr, "usage: %s FD CYCLES_PER_BIT [MAX_CYCLES]\n", argv[0]);
        return 2;
    }
    const int fd = std::atoi(argv[1]);
    const uint32_t cycles_per_bit = static_cast<uint32_t>(std::strtoul(argv[2], nullptr, 0));
    const uint64_t max_cycles = argc > 3 ? std::strtoull(argv[3], nullptr, 0) : 0;
    if (cycles_per_bit < 4) {
        std::fprintf(stderr, "cycles per bit must be at least 4\n");
        return 2;
    }
    fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK);
    std::signal(SIGINT, request_stop);
    std::signal(SIGTERM, request_stop);
    std::signal(SIGPIPE, SIG_IGN);

    auto context = std::make_unique<VerilatedContext>();
    auto top = std::make_unique<Vtop>(context.get());
    LineDriver driver{cycles_per_bit};
    LineReceiver receiver{cycles_per_bit};
    std::deque<uint8_t> out;
    const uint64_t poll_every = 10ull * cycles_per_bit;
    uint8_t buffer[4096];

    // Reset for two cycles with the line idle (high), as the board's power-on reset does.
    top->rx = 1;
    top->rst = 1;
    top->clk = 0;
    top->eval();
    for (int i = 0; i < 2; ++i) {
        top->clk = 1;
        top->eval();
        top->clk = 0;
        top->eval();
    }
    top->rst = 0;

    const auto start = std::chrono::steady_clock::now();
    uint64_t cycle = 0;
    uint64_t next_poll = 0;
    while (!stop_requested && (max_cycles == 0 || cycle < max_cycles)) {
        if (cycle >= next_poll) {
            next_poll = cycle + poll_every;
            ssize_t n = read(fd, buffer, sizeof buffer);
            for (ssize_t i = 0; i < n; ++i) driver.queue.push_back(buffer[i]);
            while (!out.empty()) {
                size_t k = 0;
                for (; k < out.size() && k < sizeof buffer; ++k) buffer[k] = out[k];
                ssize_t w = write(fd, buffer, k);
                if (w <= 0) break;
                out.erase(out.begin(), out.begin() + w);
            }
        }
        // Inputs change after the falling edge; outputs are sampled before the rising edge.
        top->rx = driver.level();
        top->clk = 1;
        top->eval();
        top->clk = 0;
        top->eval();
        uint8_t byte;
        if (receiver.tick(top->tx, byte) && out.size() < OUT_QUEUE_LIMIT) out.push_back(byte);
        driver.tick();
        ++cycle;
    }
    const double seconds =
        std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
    top->final();
    std::fprintf(stderr, "cycles %llu seconds %.6f\n", static_cast<unsigned long long>(cycle),
                 seconds);
    return 0;
}
