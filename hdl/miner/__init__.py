"""SHA-256d mining: golden model, the pipelined double-SHA-256 core and the job/nonce engine."""
