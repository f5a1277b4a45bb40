"""The router library run by whoever runs this module, for tests that need another user.

``python -m tests.e2e.router_as_user start|stop ARGS_JSON``: ``start`` starts nginx
on one route, gets a certificate for its host from pebble over HTTP-01 and applies
it, then exits, leaving nginx running (it daemonises); ``stop`` stops that nginx.
test_private_home.py runs it as a throwaway unprivileged user.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

from slipway.router import challenges
from slipway.router.acme_client import obtain
from slipway.router.certs import CertificateStore, new_key_pem
from slipway.router.controller import Nginx
from slipway.router.routes import HostCertificate, Route, RouteTable


def main(command: str, args: dict) -> None:
    nginx = Nginx(Path(args["state"]), args["http_port"], https_port=args["https_port"],
                  dynamic=args["dynamic"])
    if command == "stop":
        nginx.stop()
        return
    host, upstream = args["host"], args["upstream"]
    nginx.start(RouteTable(1, (Route("app", (host,), (upstream,)),)))
    store = CertificateStore(Path(args["certs"]))
    key = new_key_pem()
    chain = obtain(
        directory_url=args["directory"], account_key_pem=store.account_key(),
        email_address=None, host=host, key_pem=key,
        publish=lambda t, a: challenges.publish(nginx.state_dir, t, a),
        withdraw=lambda t: challenges.withdraw(nginx.state_dir, t),
        verify=Path(args["ca_bundle"]), timeout=60)
    saved = store.save(host, key, chain)
    cert = HostCertificate(host, str(saved.certificate), str(saved.key))
    nginx.apply(RouteTable(2, (Route("app", (host,), (upstream,), certificates=(cert,)),)))
    print(json.dumps({"runtime": str(nginx.paths.runtime)}))


if __name__ == "__main__":
    main(sys.argv[1], json.loads(sys.argv[2]))
