"""``HOST:PORT`` addresses that a server of the project listens on (the web view of
``deen run --serve``, the model server of ``deen serve``)."""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass

from deen.errors import BadValueError

#: Where a server listens unless the user names an address: this machine only.
LOOPBACK = "127.0.0.1"


@dataclass(frozen=True)
class ListenAddress:
    host: str
    port: int

    @classmethod
    def parse(cls, text: str, parameter: str = "serve") -> ListenAddress:
        """``HOST:PORT``, ``:PORT`` or ``PORT`` (loopback); port 0 picks a free one.
        ``parameter`` names the setting in the error."""
        host, _, port = text.rpartition(":")
        host = host.strip("[]") or LOOPBACK
        if not port.isdigit() or int(port) > 65535:
            raise BadValueError(parameter, text, "expected HOST:PORT, :PORT or PORT with a "
                                 "port up to 65535 (e.g. 127.0.0.1:8080)")
        return cls(host, int(port))


def is_loopback(host: str) -> bool:
    """Whether the bound address ``host`` can be reached from this machine only."""
    try:
        return ipaddress.ip_address(host.split("%", 1)[0]).is_loopback
    except ValueError:
        return host == "localhost"
