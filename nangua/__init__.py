"""nangua: open SHA-256d miner and K210-style KPU gateware, with the host software that drives them."""

__version__ = "0.1.0"
