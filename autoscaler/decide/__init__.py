"""DECIDE, pure: snapshot + settings + now -> the plan (scheduling, packing, scale up, group health, node states, scale in).
May import: only model/ and decide/; no I/O library, never the clock.
"""
