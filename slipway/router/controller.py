"""The adapter around a real nginx process: start, check, swap, reload, stop.

nginx runs as a daemon (its default): the master detaches from the controller,
so a crashed or restarted controller leaves the edge serving, and whoever
creates an :class:`Nginx` for the same state directory next finds it through the
pid file, adopts it on ``start()`` and can ``stop()`` it. Every nginx command
gets ``-p <state_dir>/ -c <conf> -e <error log>``; nginx opens its compiled-in
error log before reading the config unless told otherwise.

A change that needs a new config goes: render, write beside the live config,
check with ``nginx -t``, ``os.replace`` into place, SIGHUP the master, then poll
the default server's generation endpoint until the new workers answer with the
new generation. A failed check leaves the live config and the running nginx alone.

With dynamic upstreams (the Lua module is installed; see ``render_nginx``), app
addresses live in a shared dict that the controller replaces by posting the whole
address table to a unix socket. A change of addresses only (deploy, scale,
restart, rollback) is that post and nothing else: no reload, so keep-alive
client connections and requests in flight are never touched. A change that
needs a reload posts the table first (shared dicts survive reloads), so the new
workers never serve a route without its addresses. The certificates of those
apps' hosts are posted the same way, those that changed only, so a renewal
needs no reload either; certificates of hosts that left are dropped once the
config that named them is gone.

nginx's workers never open a file under the state directory (in SLIPWAY_HOME,
which is 0700 and holds keys and the database): the master reads the config and
certificate files and opens the logs, and everything the workers open themselves,
request-body and proxy temp files and (static upstreams only) challenge responses,
lives in a runtime directory outside it (see :func:`default_runtime_dir`).
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import http.client
import ipaddress
import logging
import os
import pwd
import shutil
import signal
import socket
import stat
import subprocess
import tempfile
import threading
import time
from collections.abc import Sequence
from pathlib import Path

from slipway.router.certs import self_signed_pem, write_private
from slipway.router.errors import ConfigRejectedError, NginxError
from slipway.router.nginx import (
    CERTIFICATES_HEADER,
    CERTIFICATES_PATH,
    GENERATION_PATH,
    LUA_MODULES,
    PROBE_HOST,
    TEMP_KINDS,
    UPSTREAMS_PATH,
    StatePaths,
    is_dynamic,
    render_nginx,
    render_upstream_table,
    validate_listen_address,
    validate_port,
)
from slipway.router.routes import RouteTable

log = logging.getLogger("slipway.router")

# nginx runs its workers as this user when the master is root and the config
# has no `user` directive (the compiled-in default).
_NGINX_DEFAULT_USER = "nobody"
_COMMAND_TIMEOUT = 30.0
_POLL_INTERVAL = 0.005

# (path, sha256) of each certificate and key file a config names.
_Certificates = tuple[tuple[str, str | None], ...]
# host -> (chain PEM, key PEM) of the certificates posted to the Lua side.
_Pems = dict[str, tuple[bytes, bytes]]


def lua_modules_installed() -> bool:
    """True if the modules dynamic upstreams need are where Debian's packages put them."""
    return all(module.is_file() for module in LUA_MODULES)


def default_runtime_dir(state_dir: Path, uid: int | None = None) -> Path:
    """Where the nginx of ``state_dir``, run by ``uid`` (default: this process's
    user), keeps the files its workers open: outside SLIPWAY_HOME, one per state dir.

    Under root, workers run as an unprivileged user: the directory is
    ``/var/lib/slipway-nginx/<key>`` (root's, 0711; nginx makes each temp dir in it
    0700 and the workers' own, as Debian's nginx does in /var/lib/nginx). Not /run:
    a tmpfs of a tenth of RAM could not buffer a few 1 GiB uploads; and not a
    world-writable parent, where another user could plant a symlink root would
    then write through. Otherwise workers run as this user, who cannot create
    anything in /var/lib: ``/var/tmp/slipway-nginx-<uid>-<key>``, 0700, refused if
    someone else made it first (disk-backed and there on every host, unlike
    $XDG_RUNTIME_DIR, which logind removes at logout). systemd-tmpfiles may clean
    an idle one after 30 days: the router makes it again (:meth:`Nginx.prepare_runtime`).
    """
    uid = os.geteuid() if uid is None else uid
    key = hashlib.sha256(str(Path(state_dir).absolute()).encode()).hexdigest()[:12]
    if uid == 0:
        return Path("/var/lib/slipway-nginx") / key
    return Path(f"/var/tmp/slipway-nginx-{uid}-{key}")


def post_control(socket_path: Path, path: str, body: str, what: str,
                 timeout: float = 30.0) -> str:
    """POST ``body`` to ``path`` on nginx's control socket once; return the answer.

    Raises NginxError if it is not taken, whose cause is the OSError when the
    socket could not be reached (nginx not running, or static upstreams).
    """
    conn = _UnixHTTPConnection(socket_path, timeout=timeout)
    try:
        conn.request("POST", path, body=body.encode("ascii"),
                     headers={"Host": "localhost", "Content-Type": "text/plain"})
        response = conn.getresponse()
        answer = response.read().decode("ascii", "replace").strip()
    except (OSError, http.client.HTTPException) as exc:
        raise NginxError(f"could not post the {what} to {socket_path}: {exc}") from exc
    finally:
        conn.close()
    if response.status != 200:
        raise NginxError(f"nginx refused the {what} ({response.status}): {answer}")
    return answer


class Nginx:
    """One nginx instance serving a route table from ``state_dir``.

    ``state_dir`` holds nginx.conf, nginx.pid, logs/ and control/; it may be as
    private as its owner likes, since only the master opens files in it.
    ``runtime_dir`` (default: :func:`default_runtime_dir`) holds what the workers open:
    temp files (request bodies over 16 KiB) and, with static upstreams, challenge
    responses. ``worker_user`` is the user nginx runs its workers as when started
    by root (nginx's default, ``nobody``, when None).

    ``dynamic`` picks how upstream addresses reach nginx: True posts them to the
    Lua balancer (no reload when only they change), False renders them into the
    config and reloads for every change; None (the default) is True when the Lua
    modules are installed and nginx accepts a config that loads them.

    ``workers`` is how many worker processes nginx runs (None: one per core).
    """

    def __init__(
        self,
        state_dir: Path,
        http_port: int,
        binary: str = "nginx",
        listen_address: str = "0.0.0.0",
        *,
        worker_user: str | None = None,
        reload_timeout: float = 10.0,
        stop_timeout: float = 10.0,
        https_port: int | None = None,
        dynamic: bool | None = None,
        workers: int | None = None,
        runtime_dir: Path | None = None,
    ) -> None:
        root = Path(state_dir).absolute()
        self.paths = StatePaths(root, Path(runtime_dir).absolute() if runtime_dir
                                else default_runtime_dir(root))
        self.http_port = validate_port(http_port)
        self.binary = binary
        # None: TLS is off, certificates in the table are ignored.
        self.https_port = None if https_port is None else validate_port(https_port, "https_port")
        self.listen_address = validate_listen_address(listen_address)
        self.worker_user = worker_user
        self.workers = workers
        self.reload_timeout = reload_timeout
        self.stop_timeout = stop_timeout
        # Seconds spent in each step of the last start()/apply(): render, check,
        # reload (swap + SIGHUP + until only the new generation answers), total.
        # For a switch without reload, "check" is 0 and "reload" is the post.
        self.last_timings: dict[str, float] = {}
        # "post" (addresses only, no reload) or "reload": how the last apply() went.
        self.last_switch = ""
        self.dynamic = lua_modules_installed() if dynamic is None else dynamic
        # Auto mode may still fall back to static upstreams until nginx -t has
        # accepted one dynamic config.
        self._may_fall_back = dynamic is None and self.dynamic
        # The generation and text of the config the running nginx serves, and the
        # certificates it loaded, once this object has started or reloaded it; an
        # adopted nginx is reloaded first.
        self._live: tuple[int, str, _Certificates] | None = None
        # The address table nginx holds (dynamic mode), to restore after a failed reload.
        self._posted: str | None = None
        # host -> digest of each certificate posted to the Lua side, and whether it
        # may hold others besides (an adopted nginx: hosts long gone).
        self._posted_certificates: dict[str, str] = {}
        self._stray_certificates = True
        # The master this object started or adopted, kept apart from the pid file so
        # stop() finds it even when that file is gone or names another process.
        self._master: int | None = None
        self._lock = threading.RLock()

    # --- the public operations ---------------------------------------------

    @property
    def state_dir(self) -> Path:
        return self.paths.root

    def render(self, table: RouteTable) -> str:
        """The config for ``table`` (raises InvalidRouteError). Tests override this."""
        return render_nginx(
            table, http_port=self.http_port, state_dir=self.paths.root,
            runtime_dir=self.paths.runtime, listen_address=self.listen_address,
            # `user` only means something to a root master; others warn about it.
            worker_user=self.worker_user if os.geteuid() == 0 else None,
            https_port=self.https_port, dynamic=self.dynamic, worker_processes=self.workers,
        )

    def start(self, table: RouteTable) -> None:
        """Serve ``table``: start nginx, or adopt the one already running from this state dir.

        Returns once nginx answers the generation probe with ``table.generation``.
        Raises InvalidRouteError or ConfigRejectedError (nothing started, an
        adopted nginx keeps its config) or NginxError (nginx would not start,
        e.g. the port is taken; nothing is left running).
        """
        with self._lock:
            if self.running():
                self._master = self.pid()
                log.info("nginx already running from %s (pid %s); adopting it",
                         self.paths.root, self._master)
                self.apply(table)
                return
            started = time.monotonic()
            try:
                self._prepare_dirs()
                text, candidate, rendered = self._render_checked(table)
                certificates, pems = self._certificates(table)
                checked = time.monotonic()
                self._prepare_challenges()
                self._swap_in(candidate)
                for stale in (self.paths.pid, self.paths.control_socket):
                    # Not the new master's pid; a socket left by a killed nginx makes
                    # bind() fail.
                    with contextlib.suppress(FileNotFoundError):
                        stale.unlink()
                self._launch()
            except BaseException:
                self._remove_runtime()  # nothing runs that would use it
                raise
            # A new master starts with empty shared dicts.
            self._posted_certificates, self._stray_certificates = {}, False
            try:
                if self.dynamic:
                    self._post_certificates(pems, retry=True)
                    # The probe answers 503 until the first table is posted.
                    self._post(table, table.generation, retry=True)
                self._wait_for_generation(table.generation, self.reload_timeout)
            except NginxError:
                self.stop()
                raise
            self._live = (table.generation, text, certificates)
            self.last_switch = "reload"
            done = time.monotonic()
            self.last_timings = {"render": rendered - started, "check": checked - rendered,
                                 "reload": done - checked, "total": done - started}
            log.info("nginx started (pid %s) serving generation %d on %s:%d",
                     self.pid(), table.generation, self.listen_address, self.http_port)

    def apply(self, table: RouteTable) -> float:
        """Switch the running nginx to ``table``; return the seconds it took.

        With dynamic upstreams, when ``table`` differs from the live config in
        upstream addresses only, posts the new address table and returns once the
        probe answers ``table.generation`` (nginx is not reloaded). Otherwise
        renders, writes the config beside the live one and checks it with
        ``nginx -t``; only then (posting the addresses first, when dynamic) swaps
        it in atomically and reloads, and returns once a fresh connection is
        answered with ``table.generation`` and the workers of the previous config
        no longer accept connections.

        Raises InvalidRouteError (a bad value; nothing written) or
        ConfigRejectedError (nginx -t failed; the candidate is deleted, the live
        config and nginx untouched), or NginxError: nginx is not running, refused
        the address table, or did not serve the new generation within
        ``reload_timeout`` (the previous config file and address table are put
        back, so they match what nginx still serves).
        """
        with self._lock:
            started = time.monotonic()
            pid = self.pid()
            if pid is None or not self._is_master(pid):
                self._live = None
                raise NginxError(f"nginx is not running from {self.paths.root}; start it first",
                                 generation=table.generation)
            if self.dynamic and self._live is not None:
                certificates, pems = self._certificates(table)
                live_generation, live_text, live_certificates = self._live
                # Rendered at the live generation, the text is the live one exactly
                # when nothing but dynamic upstream addresses and posted certificates
                # changed. A renewed certificate in a file the config names keeps
                # its path: only a reload loads its new files.
                same = self.render(RouteTable(live_generation, table.routes))
                if same == live_text and certificates == live_certificates:
                    rendered = time.monotonic()
                    self._post_certificates(pems)
                    self._post(table, live_generation)
                    self._wait_for_generation(table.generation, self.reload_timeout)
                    done = time.monotonic()
                    self.last_switch = "post"
                    self.last_timings = {"render": rendered - started, "check": 0.0,
                                         "reload": done - rendered, "total": done - started}
                    return done - started
            self._prepare_dirs()
            text, candidate, rendered = self._render_checked(table)
            certificates, pems = self._certificates(table)
            checked = time.monotonic()
            self._prepare_challenges()
            try:
                previous: bytes | None = self.paths.conf.read_bytes()
            except FileNotFoundError:
                previous = None
            previous_table = self._posted
            posted = False
            if self.dynamic:
                try:
                    # Before the reload, so the new workers find every address and
                    # certificate in place.
                    self._post_certificates(pems)
                    self._post(table, table.generation)
                    posted = True
                except NginxError as exc:
                    if not isinstance(exc.__cause__, OSError):
                        with contextlib.suppress(FileNotFoundError):
                            candidate.unlink()
                        raise
                    # No control socket: the live config (adopted, static) has none.
                    # Post once the new workers, which listen on it, are up.
            self._swap_in(candidate)
            retiring = [w for w in _children(pid) if not _shutting_down(w)]
            try:
                os.kill(pid, signal.SIGHUP)
                if self.dynamic and not posted:
                    self._post_certificates(pems, retry=True)
                    self._post(table, table.generation, retry=True)
                self._wait_for_generation(table.generation, self.reload_timeout)
            except (NginxError, OSError) as exc:
                if previous is not None:
                    self._write_atomically(self.paths.conf, previous)
                if previous_table is not None:
                    with contextlib.suppress(NginxError):
                        self._post_text(previous_table)
                        self._posted = previous_table
                self._live = None
                if isinstance(exc, NginxError):
                    raise
                raise NginxError(f"could not signal nginx (pid {pid}) to reload: {exc}",
                                 generation=table.generation) from exc
            # For ~100 ms after a reload old and new workers both accept (the master
            # sleeps before telling the old ones to quit), so the new generation
            # answering is not enough. Wait the old ones out too: once apply()
            # returns, no new request reaches an upstream the old table named.
            if not _wait_retired(retiring, self.reload_timeout):
                log.warning("old nginx workers %s still accept connections %g s after reload",
                            retiring, self.reload_timeout)
            if self.dynamic:
                self._drop_certificates(pems)
            self._live = (table.generation, text, certificates)
            self.last_switch = "reload"
            done = time.monotonic()
            self.last_timings = {"render": rendered - started, "check": checked - rendered,
                                 "reload": done - checked, "total": done - started}
            return done - started

    def running(self) -> bool:
        """True if the nginx master named in this state dir's pid file is alive."""
        pid = self.pid()
        return pid is not None and self._is_master(pid)

    def pid(self) -> int | None:
        """The pid in the pid file, or None if there is none (it may be stale)."""
        try:
            text = self.paths.pid.read_text().strip()
        except (FileNotFoundError, NotADirectoryError):
            return None
        return int(text) if text.isdigit() else None

    def served_generation(self) -> int | None:
        """The generation nginx answers the probe with right now, or None if it doesn't."""
        try:
            text = self._probe(timeout=1.0)
        except (OSError, http.client.HTTPException):
            return None
        return int(text) if text is not None and text.isdigit() else None

    def stop(self) -> None:
        """Stop every nginx master running this state dir's config, and their workers.

        The masters are the one in the pid file, the one this object started or
        adopted, and any other found in /proc with this config (a pid file can be
        missing or stale: removed by a start that did not recognise the running
        master, or not yet written by one just launched). A reload in progress in
        this object finishes first (the lock). Asks for a graceful stop (SIGQUIT:
        finish in-flight requests), then after ``stop_timeout`` a fast one
        (SIGTERM), then kills masters and workers. Returns once no master of this
        config is left; none running is not an error. Raises NginxError only if
        they survive SIGKILL.
        """
        with self._lock:
            self._live = self._posted = None
            self._posted_certificates, self._stray_certificates = {}, True
            stopped: list[int] = []
            # Again until none is found: one may have been launched meanwhile.
            for _ in range(3):
                masters = self._masters()
                if not masters:
                    break
                self._stop_masters(masters)
                stopped += masters
            else:
                raise NginxError(f"nginx masters of {self.paths.conf} keep coming back")
            self._master = None
            with contextlib.suppress(FileNotFoundError):
                self.paths.pid.unlink()
            self._remove_runtime()
            if stopped:
                log.info("nginx (pid %s) stopped", ", ".join(map(str, stopped)))

    def _masters(self) -> list[int]:
        """Live nginx masters of this state dir's config (see :meth:`stop`)."""
        named = {pid for pid in (self.pid(), self._master)
                 if pid is not None and self._is_master(pid)}
        return sorted(named | set(_masters_of(self.paths.conf)))

    def _stop_masters(self, masters: list[int]) -> None:
        workers = {w for pid in masters for w in _children(pid)}
        for sig, wait in ((signal.SIGQUIT, self.stop_timeout), (signal.SIGTERM, 5.0)):
            for pid in masters:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, sig)
            if _wait_gone(masters, wait):
                break
        else:
            log.warning("nginx (pid %s) ignored SIGQUIT and SIGTERM; killing it", masters)
            workers |= {w for pid in masters for w in _children(pid)}
            for victim in [*masters, *workers]:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(victim, signal.SIGKILL)
        # A SIGKILLed master leaves its workers (still holding the port) behind.
        leftovers = [w for w in workers if _alive(w)]
        for worker in leftovers:
            with contextlib.suppress(ProcessLookupError):
                os.kill(worker, signal.SIGKILL)
        if not _wait_gone([*masters, *leftovers], 5.0):
            raise NginxError(f"nginx (pid {masters}) did not exit after SIGKILL")

    def command(self, *extra: str, conf: Path | None = None) -> list[str]:
        """The nginx command line for this state dir, plus ``extra`` arguments."""
        return [
            self.binary, "-p", f"{self.paths.root}/", "-c", str(conf or self.paths.conf),
            "-e", str(self.paths.error_log), *extra,
        ]

    # --- steps -------------------------------------------------------------

    def preflight(self) -> None:
        """Check that nginx can serve from here, before anyone relies on it.

        Makes the directories, then has ``nginx -t`` check the empty table's config
        (which also settles auto mode: Lua or static upstreams). Raises NginxError
        or ConfigRejectedError saying what is missing; starts nothing.
        """
        with self._lock:
            if self.dynamic and not lua_modules_installed():
                raise NginxError(
                    "dynamic upstreams need nginx's Lua module (Debian: "
                    "libnginx-mod-http-lua), and it is not installed: "
                    + ", ".join(str(m) for m in LUA_MODULES if not m.is_file()))
            try:
                self._prepare_dirs()
                _text, candidate, _rendered = self._render_checked(RouteTable(0, ()))
                candidate.unlink()
            finally:
                if not self.running():
                    self._remove_runtime()  # the router makes it again when it starts

    def prepare_runtime(self) -> None:
        """Make the runtime dir, nginx's temp dirs and the challenge dir in it, if
        missing (see :func:`default_runtime_dir`); the router calls it again now and
        then, in case something cleaned them away. Raises NginxError when it cannot,
        or when the path is not a directory of this user's (someone else made it, or
        a symlink)."""
        run = self.paths.runtime
        as_root = os.geteuid() == 0
        try:
            run.parent.mkdir(mode=0o755, parents=True, exist_ok=True)
            with contextlib.suppress(FileExistsError):
                run.mkdir(mode=0o700)
            info = run.lstat()
            if not stat.S_ISDIR(info.st_mode) or info.st_uid != os.geteuid():
                raise NginxError(
                    f"nginx's runtime directory {run} is not a directory owned by uid "
                    f"{os.geteuid()}; remove it and start again")
            # Workers under root only pass through to their own temp dirs.
            run.chmod(0o711 if as_root else 0o700)
            worker = self._worker_ids() if as_root else None
            for kind in TEMP_KINDS:
                path = self.paths.temp_path(kind)
                try:
                    path.mkdir(mode=0o700)
                except FileExistsError:
                    continue
                if worker is not None:
                    os.chown(path, *worker)
        except OSError as exc:
            raise NginxError(f"could not make nginx's runtime directory {run}: {exc}") \
                from exc
        self._prepare_challenges()

    def _prepare_dirs(self) -> None:
        self.prepare_runtime()
        try:
            # Only the master (this user, or root) opens anything in the state dir.
            self.paths.root.mkdir(mode=0o700, parents=True, exist_ok=True)
            self.paths.logs.mkdir(exist_ok=True)
            # nginx makes the control socket world-writable: the directory keeps
            # everyone but this user (the master's) out.
            self.paths.control.mkdir(mode=0o700, parents=True, exist_ok=True)
            self.paths.control.chmod(0o700)
            if self.https_port is not None and not self.paths.placeholder_key.exists():
                key, certificate = self_signed_pem("placeholder.invalid")
                write_private(self.paths.placeholder_key, key)
                write_private(self.paths.placeholder_certificate, certificate, 0o644)
        except OSError as exc:
            raise NginxError(f"could not create nginx's directories in {self.paths.root}: "
                             f"{exc}") from exc

    def _prepare_challenges(self) -> None:
        """Make the challenge file directory when the config serves files from it
        (static upstreams), remove it when responses go to the Lua side: its
        existence is what tells :mod:`slipway.router.challenges` where to publish."""
        directory = self.paths.challenges
        try:
            if self.dynamic:
                shutil.rmtree(directory, ignore_errors=True)
            else:
                directory.mkdir(mode=0o755, exist_ok=True)
                directory.chmod(0o755)  # the responses are public; workers read them
        except OSError as exc:
            raise NginxError(f"could not make {directory}: {exc}") from exc

    def _remove_runtime(self) -> None:
        """Remove the runtime dir once nginx is gone: temp files and challenge
        responses mean nothing without it. Only a directory of this user's."""
        try:
            info = self.paths.runtime.lstat()
        except FileNotFoundError:
            return
        if stat.S_ISDIR(info.st_mode) and info.st_uid == os.geteuid():
            shutil.rmtree(self.paths.runtime, ignore_errors=True)

    def _worker_ids(self) -> tuple[int, int] | None:
        """(uid, gid) of the user root's nginx runs its workers as; None if unknown
        (nginx itself then refuses the config and says why)."""
        try:
            entry = pwd.getpwnam(self.worker_user or _NGINX_DEFAULT_USER)
        except KeyError:
            return None
        return entry.pw_uid, entry.pw_gid

    def _certificates(self, table: RouteTable) -> tuple[_Certificates, _Pems]:
        """The certificates of ``table``: a digest of each file the config names (None
        if unreadable), and the PEMs of those posted instead (balanced apps' hosts,
        with dynamic upstreams)."""
        if self.https_port is None:
            return (), {}  # TLS off: certificates are not in the config
        files: set[str] = set()
        pems: _Pems = {}
        for route in table.routes:
            for cert in route.certificates:
                if not (self.dynamic and is_dynamic(route)):
                    files.update((cert.certificate, cert.key))
                    continue
                try:
                    pems[cert.host] = (Path(cert.certificate).read_bytes(),
                                       Path(cert.key).read_bytes())
                except OSError as exc:
                    log.warning("cannot read the certificate of %s (%s); its TLS handshakes "
                                "fail until it can be read", cert.host, exc)
        found = []
        for path in sorted(files):
            try:
                digest: str | None = hashlib.sha256(Path(path).read_bytes()).hexdigest()
            except OSError:
                digest = None
            found.append((path, digest))
        return tuple(found), pems

    def _post_certificates(self, pems: _Pems, *, retry: bool = False) -> None:
        """Post the certificates in ``pems`` the Lua side lacks or holds older copies of.

        Never drops one: the config being replaced may still name its host (see
        :meth:`_drop_certificates`). With ``retry``, waits for the control socket
        as :meth:`_post` does. Raises NginxError.
        """
        known = self._posted_certificates
        digests = {host: _digest(pair) for host, pair in pems.items()}
        changed = sorted(host for host, digest in digests.items() if known.get(host) != digest)
        if not changed:
            return
        lines = [CERTIFICATES_HEADER, *(_set_line(host, pems[host]) for host in changed)]
        self._control_post(CERTIFICATES_PATH, "\n".join(lines) + "\n", retry=retry)
        self._posted_certificates = {**known, **{host: digests[host] for host in changed}}

    def _drop_certificates(self, pems: _Pems) -> None:
        """Drop the certificates of hosts not in ``pems``, once the live config is
        the one ``pems`` belongs to; after an adoption, of every host not in it
        (the set is sent whole, to replace all). A failure is only logged: a stray
        certificate serves nobody, its host being in no config."""
        lines = [CERTIFICATES_HEADER]
        if self._stray_certificates:
            lines += ["replace", *(_set_line(host, pems[host]) for host in sorted(pems))]
        else:
            lines += [f"drop {host}" for host in sorted(set(self._posted_certificates) - set(pems))]
        if len(lines) == 1:
            return
        try:
            self._control_post(CERTIFICATES_PATH, "\n".join(lines) + "\n")
        except NginxError as exc:
            log.warning("could not drop stale certificates: %s", exc)
            return
        self._posted_certificates = {host: _digest(pems[host]) for host in pems}
        self._stray_certificates = False

    def _render_checked(self, table: RouteTable) -> tuple[str, Path, float]:
        """Render ``table`` and ``nginx -t`` it: the text, the checked file, when rendered.

        In auto mode, if nginx rejects the first dynamic config but accepts the
        static one, falls back to static upstreams for good (and says so).
        Raises InvalidRouteError, ConfigRejectedError or NginxError like _check.
        """
        text = self.render(table)
        rendered = time.monotonic()
        try:
            candidate = self._check(text)
        except ConfigRejectedError as exc:
            if not self._may_fall_back:
                raise
            self.dynamic = False
            try:
                static = self.render(table)
                candidate = self._check(static)
            except ConfigRejectedError:
                self.dynamic = True
                raise exc from None
            self._may_fall_back = False
            log.warning("nginx rejected the Lua module (%s); upstreams are static and "
                        "every change reloads nginx", exc.message)
            return static, candidate, rendered
        self._may_fall_back = False
        return text, candidate, rendered

    def _post(self, table: RouteTable, config_generation: int, *, retry: bool = False) -> None:
        """Replace nginx's address table with ``table``'s, for config ``config_generation``.

        With ``retry``, waits up to ``reload_timeout`` for the control socket
        (nginx just started or reloaded). Raises NginxError, whose cause is the
        OSError when the socket could not be reached.
        """
        body = render_upstream_table(table, config_generation)
        try:
            self._control_post(UPSTREAMS_PATH, body, retry=retry)
        except NginxError as exc:
            exc.generation = table.generation
            raise
        self._posted = body

    def _control_post(self, path: str, body: str, *, retry: bool = False) -> None:
        """POST ``body`` to ``path`` on the control socket; raises NginxError if not
        taken, whose cause is the OSError when the socket could not be reached.
        With ``retry``, waits up to ``reload_timeout`` for the socket to appear."""
        deadline = time.monotonic() + self.reload_timeout
        while True:
            try:
                self._post_text(body, path)
                return
            except NginxError as exc:
                if not retry or not isinstance(exc.__cause__, OSError) \
                        or time.monotonic() > deadline:
                    raise
            time.sleep(_POLL_INTERVAL)

    def _post_text(self, body: str, path: str = UPSTREAMS_PATH) -> None:
        """POST ``body`` to the control socket once; raises NginxError if not taken."""
        what = "upstream table" if path == UPSTREAMS_PATH else "certificates"
        post_control(self.paths.control_socket, path, body, what, timeout=_COMMAND_TIMEOUT)

    def _check(self, text: str) -> Path:
        """Write ``text`` beside the live config and ``nginx -t`` it; return the file.

        Raises ConfigRejectedError (after deleting the file) if nginx rejects it.
        """
        try:
            fd, name = tempfile.mkstemp(prefix=".nginx.conf.", suffix=".tmp",
                                        dir=self.paths.root)
        except OSError as exc:
            raise NginxError(f"could not write a config file in {self.paths.root}: {exc}") \
                from exc
        candidate = Path(name)
        try:
            try:
                with os.fdopen(fd, "w", encoding="ascii") as handle:
                    handle.write(text)
                os.chmod(candidate, 0o644)
            except OSError as exc:
                raise NginxError(f"could not write {candidate}: {exc}") from exc
            result = self._run(self.command("-t", "-q", conf=candidate))
            if result.returncode != 0:
                detail = result.stderr.strip()
                raise ConfigRejectedError(
                    f"nginx rejected the configuration: {_first_error(detail)}", detail=detail,
                )
        except BaseException:
            with contextlib.suppress(FileNotFoundError):
                candidate.unlink()
            raise
        return candidate

    def _swap_in(self, candidate: Path) -> None:
        try:
            os.replace(candidate, self.paths.conf)
        except OSError as exc:
            with contextlib.suppress(OSError):
                candidate.unlink()
            raise NginxError(f"could not move the new config into place: {exc}") from exc

    def _launch(self) -> None:
        # stderr goes to a file, not a pipe: the daemonised master inherits it
        # for a moment and a pipe would keep us waiting for it.
        with tempfile.TemporaryFile(mode="w+", dir=self.paths.logs) as errors:
            try:
                result = subprocess.run(
                    self.command(), stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                    stderr=errors, timeout=_COMMAND_TIMEOUT, check=False,
                )
            except FileNotFoundError as exc:
                raise NginxError(f"nginx binary not found: {self.binary!r}") from exc
            except subprocess.TimeoutExpired as exc:
                raise NginxError(f"nginx did not start within {_COMMAND_TIMEOUT:g} s") from exc
            errors.seek(0)
            output = errors.read().strip()
        if result.returncode != 0:
            raise NginxError(f"nginx would not start: {_first_error(output)}", detail=output)
        deadline = time.monotonic() + self.reload_timeout
        while not self.running():
            if time.monotonic() > deadline:
                raise NginxError(
                    f"nginx did not write its pid file {self.paths.pid} within "
                    f"{self.reload_timeout:g} s", detail=self._error_log_tail(),
                )
            time.sleep(_POLL_INTERVAL)
        self._master = self.pid()

    def _wait_for_generation(self, generation: int, timeout: float) -> None:
        """Poll the probe on fresh connections until it answers ``generation``."""
        deadline = time.monotonic() + timeout
        last: str | None = None
        while True:
            try:
                last = self._probe(timeout=max(0.05, min(1.0, deadline - time.monotonic())))
            except (OSError, http.client.HTTPException) as exc:
                last = f"no answer ({exc!r})"
            if last == str(generation):
                return
            if time.monotonic() > deadline:
                raise NginxError(
                    f"nginx did not serve generation {generation} within {timeout:g} s "
                    f"(last answer: {last!r})",
                    generation=generation, detail=self._error_log_tail(),
                )
            time.sleep(_POLL_INTERVAL)

    def _probe(self, timeout: float) -> str | None:
        """GET the generation endpoint on a new connection; its body, or None if not 200."""
        conn = http.client.HTTPConnection(self.probe_address(), self.http_port, timeout=timeout)
        try:
            # A new connection per probe: a kept-alive one would stay with an old worker.
            conn.request("GET", GENERATION_PATH, headers={"Host": PROBE_HOST,
                                                          "Connection": "close"})
            response = conn.getresponse()
            body = response.read().decode("ascii", "replace").strip()
            return body if response.status == 200 else None
        finally:
            conn.close()

    def probe_address(self) -> str:
        """The address the controller reaches nginx on (loopback when it listens on all)."""
        ip = ipaddress.ip_address(self.listen_address)
        if ip.is_unspecified:
            return "::1" if ip.version == 6 else "127.0.0.1"
        return self.listen_address

    def _is_master(self, pid: int) -> bool:
        """True if ``pid`` is alive and is an nginx master running this state dir's config."""
        if not _alive(pid):
            return False
        try:
            title = Path(f"/proc/{pid}/cmdline").read_bytes()
        except FileNotFoundError:
            return False
        except OSError:
            return True  # no /proc to ask: trust the pid file
        return _is_master_title(title, self.paths.conf)

    def _run(self, argv: Sequence[str]) -> subprocess.CompletedProcess[str]:
        try:
            return subprocess.run(
                list(argv), stdin=subprocess.DEVNULL, capture_output=True, text=True,
                timeout=_COMMAND_TIMEOUT, check=False,
            )
        except FileNotFoundError as exc:
            raise NginxError(f"nginx binary not found: {self.binary!r}") from exc
        except subprocess.TimeoutExpired as exc:
            raise NginxError(f"nginx did not answer within {_COMMAND_TIMEOUT:g} s: "
                             f"{' '.join(argv)}") from exc

    def _error_log_tail(self, lines: int = 20) -> str:
        try:
            with self.paths.error_log.open("rb") as handle:
                handle.seek(0, os.SEEK_END)
                handle.seek(max(0, handle.tell() - 8192))
                text = handle.read().decode(errors="replace")
        except OSError:
            return ""
        return "\n".join(text.splitlines()[-lines:])

    @staticmethod
    def _write_atomically(path: Path, data: bytes) -> None:
        fd, name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
        os.chmod(name, 0o644)
        os.replace(name, path)


def _digest(pair: tuple[bytes, bytes]) -> str:
    return hashlib.sha256(b"\0".join(pair)).hexdigest()


def _set_line(host: str, pair: tuple[bytes, bytes]) -> str:
    """A certificate set's line storing ``host``'s chain and key."""
    return " ".join(("set", host, *(base64.b64encode(pem).decode("ascii") for pem in pair)))


class _UnixHTTPConnection(http.client.HTTPConnection):
    """HTTP over a unix socket (the control server's)."""

    def __init__(self, path: Path, timeout: float) -> None:
        super().__init__("localhost", timeout=timeout)
        self._path = str(path)

    def connect(self) -> None:
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            sock.settimeout(self.timeout)
            sock.connect(self._path)
        except OSError:
            sock.close()
            raise
        self.sock = sock


# --- process helpers (Linux /proc, with a portable fallback) ---------------------


def _alive(pid: int) -> bool:
    """True if ``pid`` exists and is not a zombie (an unreaped orphan counts as gone)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except FileNotFoundError:
        return False
    except OSError:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return False
        except PermissionError:
            return True
        return True
    return fields[0] not in ("Z", "X")


def _is_master_title(title: bytes, conf: Path) -> bool:
    """Whether a /proc cmdline is an nginx master's running ``conf``."""
    # The master rewrites its title to "nginx: master process <argv...>".
    words = title.replace(b"\0", b" ").decode(errors="replace").split()
    if words[:3] != ["nginx:", "master", "process"]:
        return False
    return any(a == "-c" and b == str(conf) for a, b in zip(words, words[1:], strict=False))


def _masters_of(conf: Path) -> list[int]:
    """Pids of live nginx masters running ``conf``, found in /proc (none without /proc)."""
    found = []
    for entry in Path("/proc").glob("[0-9]*/cmdline"):
        try:
            title = entry.read_bytes()
        except OSError:
            continue
        pid = int(entry.parent.name)
        if _is_master_title(title, conf) and _alive(pid):
            found.append(pid)
    return found


def _children(pid: int) -> list[int]:
    """Pids whose parent is ``pid`` (nginx workers of a master)."""
    found = []
    for entry in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = entry.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[1]) == pid:
            found.append(int(entry.parent.name))
    return found


def _shutting_down(pid: int) -> bool:
    """True if worker ``pid`` is gone or has stopped accepting (nginx retitles it)."""
    if not _alive(pid):
        return True
    try:
        title = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return True
    return b"shutting down" in title


def _wait_retired(pids: Sequence[int], timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while not all(_shutting_down(pid) for pid in pids):
        if time.monotonic() > deadline:
            return False
        time.sleep(_POLL_INTERVAL)
    return True


def _wait_gone(pids: Sequence[int], timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while any(_alive(pid) for pid in pids):
        if time.monotonic() > deadline:
            return False
        time.sleep(0.01)
    return True


def _first_error(output: str) -> str:
    """The line of nginx's output that says what is wrong (its first emerg/alert/crit)."""
    lines = [line.strip() for line in output.splitlines() if line.strip()]
    for line in lines:
        if any(level in line for level in ("[emerg]", "[alert]", "[crit]")):
            return line.removeprefix("nginx: ")
    return lines[0].removeprefix("nginx: ") if lines else "no output from nginx"
