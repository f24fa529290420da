"""The shipped load-balancer configurations (deploy/) pointed at loopback servers.

Used by ``gesturert bench --serve --fleet`` and the fleet tests: they change only the
addresses (the ``bind``/``listen`` lines, the servers, HAProxy's stats ``bind``) so what
runs is what ships. :func:`balancer_command` writes the configuration and returns the
command that runs the balancer in the foreground.
"""

from __future__ import annotations

import re
import shutil
from collections.abc import Sequence
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
HAPROXY_CFG = REPO / "deploy" / "haproxy" / "haproxy.cfg"
NGINX_CONF = REPO / "deploy" / "nginx" / "gesturert.conf"
LOOPBACK = "127.0.0.1"
BALANCERS = ("haproxy", "nginx")


def _replace_lines(text: str, pattern: str, new_lines: Sequence[str], what: str) -> str:
    """Replace the consecutive lines matching ``pattern`` with ``new_lines`` (same indent)."""
    regex = re.compile(rf"^([ \t]*){pattern}.*\n", re.M)
    matches = list(regex.finditer(text))
    if not matches:
        raise ValueError(f"no {what} line (pattern {pattern!r}) in the shipped config; "
                         "the fleet tests rewrite only those lines")
    indent = matches[0].group(1)
    block = "".join(f"{indent}{line}\n" for line in new_lines)
    out = text[:matches[0].start()] + block
    position = matches[0].end()
    for match in matches[1:]:
        out += text[position:match.start()]
        position = match.end()
    return out + text[position:]


def render_haproxy(listen_port: int, stats_port: int, backends: Sequence[tuple[str, int]],
                   shipped: str | None = None) -> str:
    """The shipped haproxy.cfg with loopback addresses: frontend, stats and servers."""
    text = shipped if shipped is not None else HAPROXY_CFG.read_text()
    text = _replace_lines(text, r"bind 127\.0\.0\.1:\d+", [f"bind {LOOPBACK}:{stats_port}"],
                          "stats bind")
    text = _replace_lines(text, r"bind :\d+", [f"bind {LOOPBACK}:{listen_port}"], "frontend bind")
    servers = [f"server {name} {LOOPBACK}:{port} check" for name, port in backends]
    return _replace_lines(text, r"server \S+ \S+ check", servers, "server")


def render_nginx(listen_port: int, backends: Sequence[tuple[str, int]], workdir: Path,
                 shipped: str | None = None) -> str:
    """A main nginx.conf for ``workdir`` holding the shipped gesturert.conf, on loopback."""
    text = shipped if shipped is not None else NGINX_CONF.read_text()
    text = _replace_lines(text, r"listen \d+;", [f"listen {LOOPBACK}:{listen_port};"], "listen")
    servers = [f"server {LOOPBACK}:{port} max_fails=1 fail_timeout=5s;  # {name}"
               for name, port in backends]
    text = _replace_lines(text, r"server \d+\.\d+\.\d+\.\d+:\d+ ", servers, "upstream server")
    (workdir / "gesturert.conf").write_text(text)
    temp = "\n".join(f"    {kind}_temp_path {workdir}/{kind}_temp;"
                     for kind in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi"))
    return (f"daemon off;\nworker_processes 1;\npid {workdir}/nginx.pid;\n"
            f"error_log {workdir}/error.log notice;\n"
            "events { worker_connections 1024; }\n"
            f"http {{\n    access_log {workdir}/access.log;\n{temp}\n"
            f"    include {workdir}/gesturert.conf;\n}}\n")


def balancer_binary(name: str) -> str | None:
    """The path of ``haproxy``/``nginx`` (Debian puts them in /usr/sbin), None if absent."""
    found = shutil.which(name)
    if found:
        return found
    candidate = Path("/usr/sbin") / name
    return str(candidate) if candidate.exists() else None


def balancer_command(kind: str, workdir: Path, listen_port: int,
                     backends: Sequence[tuple[str, int]], stats_port: int | None = None
                     ) -> list[str]:
    """Write ``kind``'s config for ``backends`` under ``workdir``; the foreground command."""
    if kind not in BALANCERS:
        raise ValueError(f"unknown balancer {kind!r}; expected one of {BALANCERS}")
    binary = balancer_binary(kind)
    if binary is None:
        package = "nginx-light" if kind == "nginx" else kind
        raise FileNotFoundError(f"{kind} is not installed (apt-get install -y {package})")
    workdir.mkdir(parents=True, exist_ok=True)
    if kind == "haproxy":
        if stats_port is None:
            raise ValueError("HAProxy needs a stats port")
        cfg = workdir / "haproxy.cfg"
        cfg.write_text(render_haproxy(listen_port, stats_port, backends))
        return [binary, "-db", "-f", str(cfg)]
    conf = workdir / "nginx.conf"
    conf.write_text(render_nginx(listen_port, backends, workdir))
    return [binary, "-e", str(workdir / "error.log"), "-p", str(workdir), "-c", str(conf)]
