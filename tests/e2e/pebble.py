"""Pebble and pebble-challtestsrv on loopback, for ACME end-to-end tests.

pebble-challtestsrv is only the DNS server here: it answers every name with
127.0.0.1, so pebble's HTTP-01 validation of any host reaches the router on
``http_port``. Pebble makes a new root at every start; :meth:`Pebble.root_pem`
fetches it from the management port, to verify served certificates against.
"""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import requests

from slipway.router.certs import InternalCA, new_key_pem
from tests.support import free_port, wait_for


class Pebble:
    def __init__(self, root: Path, http_port: int) -> None:
        self.root = root
        self.http_port = http_port
        self.port = free_port()
        self.management_port = free_port()
        self.dns_port = free_port()
        self.dns_management_port = free_port()
        self.procs: list[subprocess.Popen] = []
        # Pebble's own listener certificate, from a throwaway CA the client trusts.
        ca = InternalCA(root / "listener-ca")
        key = new_key_pem()
        (root / "listener.key").write_bytes(key)
        (root / "listener.pem").write_bytes(ca.issue("localhost", key))
        self.ca_bundle = ca.certificate_path
        self.directory = f"https://localhost:{self.port}/dir"

    def start(self) -> None:
        config = {"pebble": {
            "listenAddress": f"127.0.0.1:{self.port}",
            "managementListenAddress": f"127.0.0.1:{self.management_port}",
            "certificate": str(self.root / "listener.pem"),
            "privateKey": str(self.root / "listener.key"),
            "httpPort": self.http_port,
            "tlsPort": free_port(),
            "ocspResponderURL": "",
            "externalAccountBindingRequired": False,
        }}
        (self.root / "pebble.json").write_text(json.dumps(config))
        with open(self.root / "challtestsrv.log", "wb") as log:
            self.procs.append(subprocess.Popen(
                ["pebble-challtestsrv", "-dns01", f"127.0.0.1:{self.dns_port}",
                 "-management", f"127.0.0.1:{self.dns_management_port}",
                 "-http01", "", "-https01", "", "-tlsalpn01", "",
                 "-defaultIPv4", "127.0.0.1", "-defaultIPv6", ""],
                stdout=log, stderr=subprocess.STDOUT))
        with open(self.root / "pebble.log", "wb") as log:
            self.procs.append(subprocess.Popen(
                ["pebble", "-config", str(self.root / "pebble.json"),
                 "-dnsserver", f"127.0.0.1:{self.dns_port}"],
                env={**os.environ, "PEBBLE_VA_NOSLEEP": "1"}, stdout=log,
                stderr=subprocess.STDOUT))
        wait_for(lambda: requests.get(self.directory, verify=str(self.ca_bundle),
                                      timeout=2).ok,
                 timeout=30, message=f"pebble (see {self.root / 'pebble.log'})")

    def root_pem(self) -> bytes:
        """Pebble's current issuing root (new at every start)."""
        response = requests.get(f"https://localhost:{self.management_port}/roots/0",
                                verify=str(self.ca_bundle), timeout=5)
        response.raise_for_status()
        return response.content

    def stop(self) -> None:
        for proc in reversed(self.procs):
            if proc.poll() is None:
                proc.terminate()
                try:
                    proc.wait(10)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait()
        self.procs.clear()
