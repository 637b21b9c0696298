"""IMAP wire layer (sans-IO): receiver (framing), commands (parsing), serialize (responses), state."""
