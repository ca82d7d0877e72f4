"""The model: plain data the layers share (cluster objects, the plan's actions, settings, group labels, shared text).
May import: only model/; no I/O library, never the clock.
"""
