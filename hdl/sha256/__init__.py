"""SHA-256: golden model and round/compression gateware."""
