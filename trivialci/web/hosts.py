"""Which Host a request may name: the check that keeps DNS rebinding away from the UI and the log server.

A page on any web site can make a browser send requests to 127.0.0.1 or to an
internal address under the site's own name (DNS rebinding): the browser then
lets the page read the answers, and the Host header carries the site's name.
So both servers answer a request only when its Host (the port aside) is:

- an address literal (127.0.0.1, [::1], 192.0.2.7): a rebinding needs a name;
- `localhost`;
- the name the server was told to listen on, or, when it listens on every
  address (0.0.0.0, ::), this machine's name (socket.gethostname(), and its
  first label): the names its advertised URL and a person on the LAN use;
- a name given with `--allow-host NAME` (repeatable) or in TRIVIALCI_ALLOW_HOSTS
  (names separated by commas or spaces), e.g. a reverse proxy's public name.
  `*` accepts any Host: only behind a proxy that checks Host itself.

A request for another name gets 421 (Misdirected Request) and one line saying
which option lets it in; a request without exactly one Host, or with one that
is no host name, gets 400. Both close the connection.
"""

import ipaddress
import re
import socket

from ..errors import BadInput

ALLOW_HOSTS_ENV = "TRIVIALCI_ALLOW_HOSTS"
ANY_HOST = "*"
WILDCARDS = ("", "0.0.0.0", "::")
_NAME = re.compile(r"[a-z0-9_]([a-z0-9_-]{0,62})(\.[a-z0-9_][a-z0-9_-]{0,62})*\Z", re.ASCII)
_PORT = re.compile(r"(:[0-9]{0,5})?\Z", re.ASCII)


class HostCheck:
    """The names one server answers for (module docstring)."""

    def __init__(self, names):
        self.any = ANY_HOST in names
        self.names = {name for name in names if name != ANY_HOST}

    @classmethod
    def serving(cls, listen_host: str, allowed=()) -> "HostCheck":
        """The check of a server listening on `listen_host`, with the names of --allow-host / the environment."""
        own = _machine_names() if listen_host in WILDCARDS else [host_name(listen_host) or ""]
        return cls({"localhost", *own, *allowed_names(allowed)} - {""})

    def refusal(self, values: list[str] | None) -> tuple[int, str] | None:
        """None when a request with these Host headers is answered; else (status, one line saying why)."""
        if not values or len(values) > 1:
            return 400, "a request must carry exactly one Host header"
        name = host_name(values[0])
        if name is None:
            return 400, "the Host header is not a host name or address"
        if self.any or name in self.names or _is_address(name):
            return None
        return 421, (f"this server does not answer for the host {name}: if that name is yours (a reverse proxy's, "
                     f"a DNS alias), start it with --allow-host {name} or add the name to ${ALLOW_HOSTS_ENV}")


def host_name(value: str) -> str | None:
    """The host of a Host header value (or of a listen address): lowercase, no port, no final dot; None if none."""
    value = value.strip().lower()
    if value.startswith("["):
        address, bracket, port = value[1:].partition("]")
        return f"[{address}]" if bracket and _PORT.match(port) and _is_address(address) else None
    name, _, port = value.partition(":")
    if _is_address(value):  # an IPv6 listen address, written without brackets
        return f"[{value}]" if ":" in value else value
    name = name[:-1] if name.endswith(".") else name
    return name if _PORT.match(_ + port) and _NAME.match(name) and len(name) <= 253 else None


def allowed_names(values) -> list[str]:
    """The names of --allow-host options or the environment (each may list several: `a,b c`); BadInput if not names."""
    names = [text for value in values for text in re.split(r"[\s,]+", value) if text]
    for name in names:
        if name != ANY_HOST and host_name(name) != name.lower().rstrip("."):
            raise BadInput(f"--allow-host {name!r} is not a host name: give a name such as ci.example.org (no scheme, "
                           f"port or path), or {ANY_HOST} to accept any Host (only behind a proxy that checks it)")
    return [name if name == ANY_HOST else host_name(name) for name in names]


def _is_address(text: str) -> bool:
    try:
        ipaddress.ip_address(text.strip("[]"))
    except ValueError:
        return False
    return True


def _machine_names() -> list[str]:
    name = socket.gethostname().lower()
    return [name, name.split(".")[0]]
