"""The miner's host link: UART, the native framed protocol, the Icarus-compatible mode, and the
top that joins them to the miner engine."""
