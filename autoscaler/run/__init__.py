"""RUN: the loop (the one clock read), backoff, daemon wiring, the CLI, leader election, metrics and /healthz, logs.
May import: every layer (read/, decide/, act/, clients/, model/).
"""
