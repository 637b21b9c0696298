"""mailaccess: one LMDB mail store served over IMAP, JMAP and Exchange ActiveSync."""

__version__ = "0.1.0"
