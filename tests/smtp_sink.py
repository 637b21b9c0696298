"""An SMTP sink on loopback for the outbound tests: aiosmtpd (a third-party
server) records every transaction's envelope and content; recipients can be
made to fail temporarily (4xx N times) or for good (5xx)."""
from __future__ import annotations

import socket
import threading
from dataclasses import dataclass, field

from aiosmtpd.controller import Controller


@dataclass
class Received:
    mail_from: str
    rcpt_tos: list[str]
    content: bytes


@dataclass
class SinkHandler:
    received: list[Received] = field(default_factory=list)
    temp_fail: dict[str, int] = field(default_factory=dict)   # rcpt -> 4xx this many times
    reject: set[str] = field(default_factory=set)             # rcpt -> 550
    rcpt_attempts: dict[str, int] = field(default_factory=dict)
    lock: threading.Lock = field(default_factory=threading.Lock)
    arrived: threading.Condition = field(default_factory=threading.Condition)

    async def handle_RCPT(self, server, session, envelope, address, rcpt_options):
        with self.lock:
            self.rcpt_attempts[address] = self.rcpt_attempts.get(address, 0) + 1
            if address in self.reject:
                return "550 5.1.1 no such user here"
            if self.temp_fail.get(address, 0) > 0:
                self.temp_fail[address] -= 1
                return "451 4.3.0 try again later"
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server, session, envelope):
        with self.arrived:
            self.received.append(Received(envelope.mail_from, list(envelope.rcpt_tos),
                                           envelope.original_content or envelope.content))
            self.arrived.notify_all()
        return "250 2.0.0 accepted by the sink"


def free_port() -> int:
    """A loopback port nobody listens on now (aiosmtpd needs a fixed one)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Sink:
    def __init__(self, **smtp):
        """SMTP: aiosmtpd SMTP parameters (tls_context, require_starttls, ...)."""
        self.handler = SinkHandler()
        self.controller = Controller(self.handler, hostname="127.0.0.1", port=free_port(),
                                     **smtp)

    def __enter__(self) -> "Sink":
        self.controller.start()
        return self

    def __exit__(self, *exc) -> None:
        self.controller.stop()

    @property
    def port(self) -> int:
        return self.controller.port

    @property
    def received(self) -> list[Received]:
        return self.handler.received
