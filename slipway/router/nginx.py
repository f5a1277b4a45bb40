"""Route table -> nginx.conf: validation and rendering, with no I/O.

:func:`render_nginx` is pure: the same table and arguments always give the same
text, byte for byte (the golden files in ``tests/golden/nginx`` hold it to that).
Every value that reaches the config is validated first by the ``validate_*``
functions here, which raise :class:`InvalidRouteError` naming the offending field;
nothing is escaped or quoted because nothing that would need it is accepted.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from slipway.router.errors import InvalidRouteError
from slipway.router.routes import HostCertificate, Route, RouteTable

# The default server answers this path with the table's generation, so the
# controller can tell when the workers started by a reload are serving.
GENERATION_PATH = "/.slipway/router/generation"
# The Host header the controller probes with: "_" is never a valid route host,
# so the probe always lands on the default server, whatever the routes claim.
PROBE_HOST = "_"

APP_NAME_RE = re.compile(r"^[a-z][a-z0-9-]{1,29}$")
_LABEL_RE = re.compile(r"^[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?$")
_IPV4_RE = re.compile(r"^(?:(?:25[0-5]|2[0-4][0-9]|1[0-9]{2}|[1-9]?[0-9])\.){3}"
                      r"(?:25[0-5]|2[0-4][0-9]|1[0-9]{2}|[1-9]?[0-9])$")
_USER_RE = re.compile(r"^[a-z_][a-z0-9_-]{0,31}$")
_PORT_RE = re.compile(r"^[1-9][0-9]{0,4}$")
_IPV6_CHARS_RE = re.compile(r"^[0-9a-f:.]+$")
# Paths are written into the config unquoted; allow only characters that mean
# nothing to nginx's parser (no spaces, quotes, semicolons, braces or "$").
_PATH_RE = re.compile(r"^/[A-Za-z0-9._/@+-]*$")
_MAX_HOST = 253
_MAX_LABEL = 63
_SHOW_MAX = 80

# The ACME HTTP-01 path, answered for every host: from the Lua dict the controller
# posts responses to (dynamic upstreams), or from files in the runtime directory.
ACME_CHALLENGE_PATH = "/.well-known/acme-challenge/"
# A year, as Let's Encrypt and most guides recommend once HTTPS is known to work.
_HSTS_MAX_AGE = 31536000

# Upstream tuning, kept together so the reasons sit beside the numbers.
# Idle connections each worker keeps per app. Requests beyond it open and close
# a connection each: at 64 concurrent clients a cap of 16 made nginx spend 60 us
# per request instead of 25 and halved throughput (bench/router.py); idle ones
# still close after the timeout below.
_UPSTREAM_KEEPALIVE = 128
# The same for the one upstream every balanced app shares: its idle connections
# are matched to an app by address, so the cap covers all of them together.
_SHARED_KEEPALIVE = 1024
# Shorter than the idle timeout of the servers apps commonly run (gunicorn 2 s,
# Node 5 s), so nginx never reuses a connection the app is about to close; a
# POST sent on such a connection would fail without a retry.
_UPSTREAM_KEEPALIVE_TIMEOUT = "1s"
_CLIENT_MAX_BODY_SIZE = "1g"
# Access log lines are written in batches, not one write(2) per request; a line
# waits at most the flush interval, and workers flush when they exit.
_ACCESS_LOG_BUFFER = "buffer=64k flush=1s"
_WORKER_CONNECTIONS = 4096
# Old workers keep long-lived connections (websockets, streams) after a
# reload; bound how long they may linger so reloads don't pile up processes.
_WORKER_SHUTDOWN_TIMEOUT = "60s"

# Dynamic upstreams (Debian's libnginx-mod-http-lua): the modules to load, the
# shared dict holding the address table, and the path the controller posts it to.
LUA_MODULES = (
    Path("/usr/lib/nginx/modules/ndk_http_module.so"),
    Path("/usr/lib/nginx/modules/ngx_http_lua_module.so"),
)
UPSTREAMS_PATH = "/upstreams"
_UPSTREAMS_DICT = "slipway_upstreams"
# The dict keeps two copies of the table while one replaces the other; 4 MiB
# holds thousands of apps with ten addresses each.
_UPSTREAMS_DICT_SIZE = "4m"
# The first line of every posted table, so a stray request is never taken for one.
UPSTREAMS_HEADER = "slipway-upstreams 1"
# Certificates of balanced apps' hosts, posted like addresses and picked per
# handshake by SNI, so a new or renewed certificate needs no reload.
CERTIFICATES_PATH = "/certificates"
_CERTIFICATES_DICT = "slipway_certificates"
# About 8,000 hosts with a 4 KB chain and key each.
_CERTIFICATES_DICT_SIZE = "32m"
CERTIFICATES_HEADER = "slipway-certificates 1"
# HTTP-01 responses, posted by whoever answers a challenge (see challenges.py).
# Each expires after an hour, so a publisher that died before withdrawing its
# tokens leaves nothing behind for long.
CHALLENGES_PATH = "/challenges"
_CHALLENGES_DICT = "slipway_challenges"
_CHALLENGES_DICT_SIZE = "1m"
_CHALLENGE_TTL = 3600
CHALLENGES_HEADER = "slipway-challenges 1"
# The largest body the control server reads (kept in memory, never on disk): a
# full set of certificates, base64-encoded.
_CONTROL_MAX_BODY = "64m"
# The variable the shared servers set to the app a request's host belongs to.
_APP_VARIABLE = "slipway_app"


# The Lua side of dynamic upstreams, loaded once per config into every worker as
# the module "slipway.router". The controller posts the whole address table as
# text; the control server checks every line (it trusts nothing it is sent) and
# stores it as one value, then bumps "version". Each worker parses the table
# again only when the version moved, so a switch is atomic: a worker sees the
# old table or the new one, never a mix.
_LUA_MODULE = """\
local balancer = require "ngx.balancer"
local ssl = require "ngx.ssl"
local dict = ngx.shared.@DICT@
local certificates = ngx.shared.@CERTIFICATES@
local challenges = ngx.shared.@CHALLENGES@
local M = {}
local seen, current = nil, nil
-- Round-robin position per app, in this worker.
local turn = {}

local function peer(text)
    local host, port = text:match("^(%d+%.%d+%.%d+%.%d+):([1-9]%d*)$")
    if host then
        for octet in host:gmatch("%d+") do
            if #octet > 3 or tonumber(octet) > 255 then return nil end
        end
    else
        host, port = text:match("^(%[[%x:.]+%]):([1-9]%d*)$")
    end
    if not host or #port > 5 or tonumber(port) > 65535 then return nil end
    return {host = host, port = tonumber(port), key = text}
end

local function split_words(line)
    local words = {}
    for word in line:gmatch("%S+") do words[#words + 1] = word end
    return words
end

-- The table in body, or nil and what is wrong with it.
function M.parse(body)
    local state = {apps = {}}
    local n = 0
    for line in body:gmatch("[^\\n]+") do
        n = n + 1
        local words = split_words(line)
        local kind, name = words[1], words[2]
        if n == 1 then
            if line ~= "@HEADER@" then return nil, "line 1: not an upstream table" end
        elseif kind == "generation" or kind == "config" then
            if #words ~= 2 or state[kind] or not name:match("^%d+$") or #name > 15 then
                return nil, "line " .. n .. ": bad " .. kind
            end
            state[kind] = tonumber(name)
        elseif kind == "app" then
            if not name or #name < 2 or #name > 30 or not name:match("^[a-z][a-z0-9-]+$")
                    or state.apps[name] then
                return nil, "line " .. n .. ": bad or repeated app name"
            end
            local peers = {}
            for i = 3, #words do
                peers[#peers + 1] = peer(words[i])
                if not peers[#peers] then return nil, "line " .. n .. ": bad address" end
            end
            state.apps[name] = peers
        else
            return nil, "line " .. n .. ": unknown line"
        end
    end
    if not state.generation or not state.config then
        return nil, "generation and config lines are required"
    end
    return state
end

-- This worker's parse of the stored table (nil before the first post).
function M.current()
    local version = dict:get("version")
    if version ~= seen then
        local body = dict:get("table")
        local state, err = M.parse(body or "")
        if state then
            current = state
        elseif body then
            ngx.log(ngx.ERR, "slipway: ignoring a bad upstream table: ", err)
        end
        seen = version
    end
    return current
end

-- A peer that always fails to connect, so nginx answers 502 as for a dead
-- upstream (ngx.exit here can only make a 500).
local function nowhere()
    return balancer.set_current_peer("unix:@NOWHERE@")
end

-- balancer_by_lua: round robin over the app's addresses; a retry
-- (proxy_next_upstream) takes the next address this request has not tried.
-- ngx.ctx costs a table per request: only apps with several addresses need it.
function M.balance(app)
    local state = M.current()
    local peers = state and state.apps[app]
    local count = peers and #peers or 0
    if count == 0 then
        ngx.log(ngx.ERR, "slipway: app ", app, " has no upstream addresses")
        return nowhere()
    end
    local ctx = count > 1 and ngx.ctx or nil
    local tried = ctx and ctx.slipway_tried
    local pick
    if not tried then
        pick = (turn[app] or 0) % count + 1
        turn[app] = pick
        if count > 1 then
            tried = {}
            ctx.slipway_tried = tried
            balancer.set_more_tries(count - 1)
        end
    else
        for step = 1, count do
            local i = (ctx.slipway_last + step - 1) % count + 1
            if not tried[peers[i].key] then
                pick = i
                break
            end
        end
        if not pick then return nowhere() end
    end
    local chosen = peers[pick]
    if tried then
        tried[chosen.key] = true
        ctx.slipway_last = pick
    end
    local ok, err = balancer.set_current_peer(chosen.host, chosen.port)
    if not ok then
        ngx.log(ngx.ERR, "slipway: could not use ", chosen.key, ": ", err)
        return ngx.exit(500)
    end
end

-- A POST to the control socket: its body parsed by parse, and the body; nil
-- once a wrong method or a body parse refuses has been answered.
local function posted(what, parse)
    if ngx.req.get_method() ~= "POST" then
        ngx.status = 405
        ngx.say("POST ", what)
        ngx.exit(ngx.HTTP_OK)
        return nil
    end
    ngx.req.read_body()
    local body = ngx.req.get_body_data()
    local result, err = parse(body or "")
    if not result then
        ngx.status = 400
        ngx.say(body and err or "empty or oversized body")
        ngx.exit(ngx.HTTP_OK)
        return nil
    end
    return result, body
end

-- content_by_lua on the control socket: replace the whole table at once.
function M.post()
    local state, body = posted("an upstream table", M.parse)
    if not state then return end
    -- safe_set never evicts, so a full dict refuses the table instead of losing "version".
    local ok, err = dict:safe_set("table", body)
    if ok then ok, err = dict:incr("version", 1, 0) end
    if not ok then
        ngx.status = 507
        ngx.say("could not store the table: ", err)
        return ngx.exit(ngx.HTTP_OK)
    end
    ngx.say(state.generation)
end

-- Certificates: the dict maps a host to "<chain PEM>\\0<key PEM>", one value so a
-- handshake never pairs a chain with another key. Each worker keeps what it
-- parsed, and parses again only when the stored value changed.
local parsed = {}

local function split(value)
    local cut = value:find("\\0", 1, true)
    if not cut then return nil end
    return value:sub(1, cut - 1), value:sub(cut + 1)
end

local function load_pair(chain_pem, key_pem)
    local chain, err = ssl.parse_pem_cert(chain_pem)
    if not chain then return nil, nil, "not a PEM certificate chain: " .. err end
    local key
    key, err = ssl.parse_pem_priv_key(key_pem)
    if not key then return nil, nil, "not a PEM private key: " .. err end
    return chain, key
end

-- ssl_certificate_by_lua: the certificate of the host the client names (SNI).
-- A name without one ends the handshake: the placeholder is never served.
function M.certificate()
    local name = ssl.server_name()
    name = name and name:lower()
    local value = name and certificates:get(name)
    if not value then
        if name then parsed[name] = nil end
        return ngx.exit(ngx.ERROR)
    end
    local entry = parsed[name]
    if not entry or entry.value ~= value then
        local chain, key, err = load_pair(split(value))
        if not chain then
            ngx.log(ngx.ERR, "slipway: certificate of ", name, ": ", err)
            return ngx.exit(ngx.ERROR)
        end
        entry = {value = value, chain = chain, key = key}
        parsed[name] = entry
    end
    local ok, err = ssl.clear_certs()
    if ok then ok, err = ssl.set_cert(entry.chain) end
    if ok then ok, err = ssl.set_priv_key(entry.key) end
    if not ok then
        ngx.log(ngx.ERR, "slipway: could not serve the certificate of ", name, ": ", err)
        return ngx.exit(ngx.ERROR)
    end
end

-- The changes in a posted certificate set, or nil and what is wrong with it:
-- "set <host> <base64 chain> <base64 key>", "drop <host>", and "replace" (drop
-- every host the set does not name).
function M.parse_certificates(body)
    local change = {set = {}, drop = {}, replace = false}
    local n = 0
    for line in body:gmatch("[^\\n]+") do
        n = n + 1
        local words = split_words(line)
        local kind, host = words[1], words[2]
        if n == 1 then
            if line ~= "@CERTIFICATES_HEADER@" then
                return nil, "line 1: not a certificate set"
            end
        elseif kind == "replace" and #words == 1 then
            change.replace = true
        elseif (kind == "set" and #words == 4) or (kind == "drop" and #words == 2) then
            if #host > 253 or not host:match("^[a-z0-9][a-z0-9.-]*$") then
                return nil, "line " .. n .. ": bad host"
            end
            if kind == "drop" then
                change.drop[host] = true
            else
                local chain_pem = ngx.decode_base64(words[3])
                local key_pem = ngx.decode_base64(words[4])
                if not chain_pem or not key_pem then
                    return nil, "line " .. n .. ": bad base64"
                end
                -- Only the armour is checked here: parsing costs 0.5 ms a pair, and
                -- a pair that does not parse fails its handshakes (and says so).
                if not chain_pem:find("-----BEGIN CERTIFICATE-----", 1, true) then
                    return nil, "line " .. n .. ": not a PEM certificate chain"
                end
                if not key_pem:match("^%-%-%-%-%-BEGIN [A-Z ]*PRIVATE KEY%-%-%-%-%-") then
                    return nil, "line " .. n .. ": not a PEM private key"
                end
                change.set[host] = chain_pem .. "\\0" .. key_pem
            end
        else
            return nil, "line " .. n .. ": unknown line"
        end
    end
    if n == 0 then return nil, "empty body" end
    return change
end

-- content_by_lua on the control socket: apply a certificate set.
function M.post_certificates()
    local change = posted("a certificate set", M.parse_certificates)
    if not change then return end
    local count = 0
    for host, value in pairs(change.set) do
        local ok, err = certificates:safe_set(host, value)
        if not ok then
            ngx.status = 507
            ngx.say("could not store the certificate of ", host, ": ", err)
            return ngx.exit(ngx.HTTP_OK)
        end
        count = count + 1
    end
    for host in pairs(change.drop) do certificates:delete(host) end
    if change.replace then
        for _, host in ipairs(certificates:get_keys(0)) do
            if not change.set[host] then certificates:delete(host) end
        end
    end
    ngx.say(count)
end

-- RFC 8555 tokens are base64url; nothing else is looked up or stored.
local function token_ok(token)
    return token ~= nil and #token >= 16 and #token <= 256
        and not token:find("[^A-Za-z0-9_%-]")
end

-- content_by_lua of the HTTP-01 path: the posted response for the token, else 404.
function M.challenge()
    local token = ngx.var.uri:sub(@CHALLENGE_PREFIX@ + 1)
    local answer = token_ok(token) and challenges:get(token)
    if not answer then return ngx.exit(ngx.HTTP_NOT_FOUND) end
    ngx.print(answer)
end

-- The changes in a posted challenge set, or nil and what is wrong with it:
-- "set <token> <key authorization>" and "drop <token>".
function M.parse_challenges(body)
    local change = {set = {}, drop = {}}
    local n = 0
    for line in body:gmatch("[^\\n]+") do
        n = n + 1
        local words = split_words(line)
        local kind, token, answer = words[1], words[2], words[3]
        if n == 1 then
            if line ~= "@CHALLENGES_HEADER@" then return nil, "line 1: not a challenge set" end
        elseif not token_ok(token) then
            return nil, "line " .. n .. ": bad token"
        elseif kind == "drop" and #words == 2 then
            change.drop[token] = true
        elseif kind == "set" and #words == 3 then
            -- A key authorization is the token, a dot and the account key's thumbprint.
            local thumbprint = answer:sub(#token + 2)
            if #answer > 512 or answer:sub(1, #token + 1) ~= token .. "."
                    or #thumbprint == 0 or thumbprint:find("[^A-Za-z0-9_%-]") then
                return nil, "line " .. n .. ": bad key authorization"
            end
            change.set[token] = answer
        else
            return nil, "line " .. n .. ": unknown line"
        end
    end
    if n == 0 then return nil, "empty body" end
    return change
end

-- content_by_lua on the control socket: store or drop challenge responses.
function M.post_challenges()
    local change = posted("a challenge set", M.parse_challenges)
    if not change then return end
    local count = 0
    for token, answer in pairs(change.set) do
        local ok, err = challenges:safe_set(token, answer, @CHALLENGE_TTL@)
        if not ok then
            ngx.status = 507
            ngx.say("could not store the challenge response: ", err)
            return ngx.exit(ngx.HTTP_OK)
        end
        count = count + 1
    end
    for token in pairs(change.drop) do challenges:delete(token) end
    ngx.say(count)
end

-- content_by_lua of the generation probe: the posted table's generation once it
-- belongs to this worker's config; the config's own generation while it does not
-- (old workers during a reload); 503 before any table is posted.
function M.generation(config)
    local state = M.current()
    if not state then
        ngx.status = 503
        ngx.say("no upstream table yet")
        return ngx.exit(ngx.HTTP_OK)
    end
    ngx.say(state.config == config and state.generation or config)
end

package.loaded["slipway.router"] = M
""".replace("@DICT@", _UPSTREAMS_DICT).replace("@HEADER@", UPSTREAMS_HEADER) \
    .replace("@CERTIFICATES@", _CERTIFICATES_DICT) \
    .replace("@CERTIFICATES_HEADER@", CERTIFICATES_HEADER) \
    .replace("@CHALLENGES@", _CHALLENGES_DICT).replace("@CHALLENGES_HEADER@", CHALLENGES_HEADER) \
    .replace("@CHALLENGE_PREFIX@", str(len(ACME_CHALLENGE_PATH))) \
    .replace("@CHALLENGE_TTL@", str(_CHALLENGE_TTL))


@dataclass(frozen=True)
class StatePaths:
    """Where nginx keeps its files: private ones under the router's state directory
    (``root``, in SLIPWAY_HOME, which only the master reads: it runs as the user who
    owns it, or root), and those its workers open themselves under ``runtime``,
    outside SLIPWAY_HOME: request-body and proxy temp files, and challenge
    responses served from files (static upstreams)."""

    root: Path
    runtime: Path

    @property
    def conf(self) -> Path:
        return self.root / "nginx.conf"

    @property
    def pid(self) -> Path:
        return self.root / "nginx.pid"

    @property
    def logs(self) -> Path:
        return self.root / "logs"

    @property
    def error_log(self) -> Path:
        return self.logs / "error.log"

    @property
    def access_log(self) -> Path:
        return self.logs / "access.log"

    def temp_path(self, kind: str) -> Path:
        return self.runtime / kind

    @property
    def control(self) -> Path:
        """The directory of the control socket: 0700, so only the router's user gets in."""
        return self.root / "control"

    @property
    def nowhere(self) -> Path:
        """A socket that never exists: the balancer sends requests for an app without
        addresses there, so they fail to connect and get a 502. In the runtime dir,
        which workers can enter, so the error log says "No such file"."""
        return self.runtime / "no-upstream"

    @property
    def control_socket(self) -> Path:
        """The unix socket the address table is posted to (dynamic upstreams only)."""
        return self.control / "upstreams.sock"

    @property
    def placeholder_certificate(self) -> Path:
        """A self-signed certificate nginx requires of a TLS server whose
        certificates come from Lua; never served (see the Lua ``M.certificate``)."""
        return self.root / "tls" / "placeholder.pem"

    @property
    def placeholder_key(self) -> Path:
        return self.root / "tls" / "placeholder.key"

    @property
    def challenges(self) -> Path:
        """HTTP-01 key authorizations, one file per token (world-readable), when
        upstreams are static; the directory exists only then."""
        return self.runtime / "acme-challenge"


TEMP_KINDS = ("client_body", "proxy", "fastcgi", "uwsgi", "scgi")


# --- validation -------------------------------------------------------------


def _show(value: object) -> str:
    """``repr`` of a bad value, cut short so junk input can't flood a message."""
    text = repr(value)
    return text if len(text) <= _SHOW_MAX else text[: _SHOW_MAX - 3] + "..."


def _invalid(field: str, value: object, reason: str) -> InvalidRouteError:
    return InvalidRouteError(f"{field}: {_show(value)} {reason}", field=field)


def validate_app_name(name: object, field: str = "app") -> str:
    """Return ``name`` if it is a valid app name (``^[a-z][a-z0-9-]{1,29}$``).

    Raises InvalidRouteError otherwise.
    """
    if not isinstance(name, str):
        raise _invalid(field, name, "is not a string")
    if not APP_NAME_RE.fullmatch(name):
        raise _invalid(
            field, name,
            "is not a valid app name (2-30 characters: a lowercase letter, then lowercase "
            "letters, digits or hyphens)",
        )
    return name


def validate_host(host: object, field: str = "host") -> str:
    """Return ``host`` if it is a lowercase DNS name usable as an nginx ``server_name``.

    Accepts RFC 1123 names: dot-separated labels of letters, digits and hyphens
    (no leading or trailing hyphen), each at most 63 characters, 253 in all, all
    lowercase, no trailing dot and no wildcards. Internationalised names must be
    given in their punycode (``xn--``) form. Raises InvalidRouteError otherwise,
    with a message that says which rule was broken.
    """
    if not isinstance(host, str):
        raise _invalid(field, host, "is not a string")
    if not host:
        raise InvalidRouteError(f"{field}: must not be empty", field=field)
    if not host.isascii():
        raise _invalid(field, host, "is not ASCII; give internationalised names in their "
                                    "punycode (xn--) form")
    if "*" in host:
        raise _invalid(field, host, "is a wildcard; wildcard hosts are not supported")
    if len(host) > _MAX_HOST:
        raise _invalid(field, host, f"is longer than {_MAX_HOST} characters")
    labels = host.split(".")
    lowered = host.lower()
    if host != lowered and all(_LABEL_RE.fullmatch(label) for label in lowered.split(".")):
        raise _invalid(field, host, "must be lowercase")
    for label in labels:
        if len(label) > _MAX_LABEL:
            raise _invalid(field, host, f"has a label longer than {_MAX_LABEL} characters")
        if not _LABEL_RE.fullmatch(label):
            raise _invalid(
                field, host,
                "is not a valid host name (lowercase letters, digits and hyphens in "
                "dot-separated labels; a label may not start or end with a hyphen)",
            )
    return host


def validate_upstream(address: object, field: str = "upstream") -> str:
    """Return ``address`` if it is ``host:port`` that nginx can proxy to.

    ``host`` is a dotted-quad IPv4 address (``127.0.0.1``), a bracketed IPv6
    address (``[::1]``) or a host name as :func:`validate_host` accepts; ``port``
    is 1-65535 without leading zeros. Raises InvalidRouteError otherwise.
    """
    if not isinstance(address, str):
        raise _invalid(field, address, "is not a string")
    bad = _invalid(field, address, "is not a valid upstream (expected host:port, "
                                   "e.g. 127.0.0.1:8000)")
    if not address.isascii() or any(c.isspace() for c in address):
        raise bad
    host, sep, port = address.rpartition(":")
    if not sep or not _PORT_RE.fullmatch(port) or not 1 <= int(port) <= 65535:
        raise bad
    if host.startswith("[") and host.endswith("]"):
        inner = host[1:-1]
        if not _IPV6_CHARS_RE.fullmatch(inner):
            raise bad
        try:
            ipaddress.IPv6Address(inner)
        except ValueError:
            raise bad from None
        return address
    if _IPV4_RE.fullmatch(host):
        return address
    if ":" in host or not host or (host[0].isdigit() and host.replace(".", "").isdigit()):
        # A bare IPv6 address, or digits-and-dots that are not a valid IPv4 address.
        raise bad
    try:
        validate_host(host, field)
    except InvalidRouteError:
        raise bad from None
    return address


def validate_listen_address(address: object, field: str = "listen_address") -> str:
    """Return the canonical text of an IPv4 or IPv6 listen address; raise if it isn't one."""
    if not isinstance(address, str):
        raise _invalid(field, address, "is not a string")
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:
        raise _invalid(field, address, "is not an IP address") from None
    if isinstance(ip, ipaddress.IPv6Address) and ip.scope_id:
        raise _invalid(field, address, "has a scope id, which is not supported")
    return str(ip)


def validate_port(port: object, field: str = "http_port") -> int:
    """Return ``port`` if it is an int in 1-65535; raise InvalidRouteError otherwise."""
    if isinstance(port, bool) or not isinstance(port, int) or not 1 <= port <= 65535:
        raise _invalid(field, port, "is not a port number (1-65535)")
    return port


def validate_workers(count: object, field: str = "worker_processes") -> int:
    """Return ``count`` if it is an int in 1-1024; raise InvalidRouteError otherwise."""
    if isinstance(count, bool) or not isinstance(count, int) or not 1 <= count <= 1024:
        raise _invalid(field, count, "is not a number of workers (1-1024)")
    return count


def validate_user(user: object, field: str = "worker_user") -> str:
    """Return ``user`` if it is a plain Unix user name; raise InvalidRouteError otherwise."""
    if not isinstance(user, str) or not _USER_RE.fullmatch(user):
        raise _invalid(field, user, "is not a valid user name")
    return user


def validate_state_dir(state_dir: object, field: str = "state_dir") -> Path:
    """Return ``state_dir`` if it is an absolute path that can be written into the config.

    Only letters, digits and ``._/@+-`` are allowed, so a path never needs quoting.
    """
    if not isinstance(state_dir, Path | str):
        raise _invalid(field, state_dir, "is not a path")
    text = str(state_dir)
    if not _PATH_RE.fullmatch(text) or "/../" in text + "/":
        raise _invalid(
            field, text,
            "must be an absolute path of letters, digits and ._/@+- (no spaces or quotes)",
        )
    return Path(text)


def validate_route(route: object, field: str = "route") -> Route:
    """Return ``route`` if its app name, hosts and upstreams are all valid.

    A route needs at least one host; it may have no upstreams (the app has no
    running web process), in which case its hosts answer 503. Duplicate hosts or
    upstreams within the route are refused. Raises InvalidRouteError.
    """
    if not isinstance(route, Route):
        raise _invalid(field, route, "is not a Route")
    validate_app_name(route.app, f"{field}.app")
    if not isinstance(route.hosts, tuple | list):
        raise _invalid(f"{field}.hosts", route.hosts, "is not a list of host names")
    if not route.hosts:
        raise InvalidRouteError(f"{field}.hosts: a route needs at least one host",
                                field=f"{field}.hosts")
    seen: set[str] = set()
    for i, host in enumerate(route.hosts):
        validate_host(host, f"{field}.hosts[{i}]")
        if host in seen:
            raise _invalid(f"{field}.hosts[{i}]", host, "is listed twice")
        seen.add(host)
    if not isinstance(route.upstreams, tuple | list):
        raise _invalid(f"{field}.upstreams", route.upstreams, "is not a list of upstreams")
    seen = set()
    for i, upstream in enumerate(route.upstreams):
        validate_upstream(upstream, f"{field}.upstreams[{i}]")
        if upstream in seen:
            raise _invalid(f"{field}.upstreams[{i}]", upstream, "is listed twice")
        seen.add(upstream)
    if not isinstance(route.certificates, tuple | list):
        raise _invalid(f"{field}.certificates", route.certificates,
                       "is not a list of certificates")
    certified: set[str] = set()
    for i, cert in enumerate(route.certificates):
        cfield = f"{field}.certificates[{i}]"
        if not isinstance(cert, HostCertificate):
            raise _invalid(cfield, cert, "is not a HostCertificate")
        if cert.host not in route.hosts:
            raise _invalid(f"{cfield}.host", cert.host, "is not one of the route's hosts")
        if cert.host in certified:
            raise _invalid(f"{cfield}.host", cert.host, "has more than one certificate")
        certified.add(cert.host)
        validate_state_dir(cert.certificate, f"{cfield}.certificate")
        validate_state_dir(cert.key, f"{cfield}.key")
    if not isinstance(route.hsts, bool):
        raise _invalid(f"{field}.hsts", route.hsts, "is not a boolean")
    return route


def validate_routes(routes: Iterable[object]) -> tuple[Route, ...]:
    """Validate a whole list of routes: each one, plus no app or host claimed twice.

    Fields are named ``routes[i]...`` by position in ``routes``. Returns the routes
    as a tuple; raises InvalidRouteError at the first problem.
    """
    checked: list[Route] = []
    apps: set[str] = set()
    owners: dict[str, str] = {}
    for i, route in enumerate(routes):
        field = f"routes[{i}]"
        validate_route(route, field)
        assert isinstance(route, Route)
        if route.app in apps:
            raise _invalid(f"{field}.app", route.app, "has more than one route")
        apps.add(route.app)
        for j, host in enumerate(route.hosts):
            if host in owners:
                raise _invalid(f"{field}.hosts[{j}]", host,
                               f"is already routed to app {owners[host]!r}")
            owners[host] = route.app
        checked.append(route)
    return tuple(checked)


def validate_table(table: object) -> RouteTable:
    """Validate a RouteTable: a non-negative int generation and valid routes."""
    if not isinstance(table, RouteTable):
        raise _invalid("table", table, "is not a RouteTable")
    generation = table.generation
    if isinstance(generation, bool) or not isinstance(generation, int) or generation < 0:
        raise _invalid("generation", generation, "is not a non-negative integer")
    if not isinstance(table.routes, tuple | list):
        raise _invalid("routes", table.routes, "is not a list of routes")
    validate_routes(table.routes)
    return table


# --- rendering --------------------------------------------------------------


def upstream_name(app: str) -> str:
    """The name of an app's ``upstream`` block (app names are validated, so it is safe)."""
    return f"app_{app}"


def is_dynamic(route: Route) -> bool:
    """True if ``route``'s addresses can live in the Lua table: some, all IP literals.

    The balancer connects to addresses without resolving names, so a route with
    a host name among its upstreams keeps a static ``upstream`` block; so does
    one with none, which answers 503 from the config itself.
    """
    return bool(route.upstreams) and all(
        _IPV4_RE.fullmatch(address.rpartition(":")[0]) or address.startswith("[")
        for address in route.upstreams
    )


def render_upstream_table(table: RouteTable, config_generation: int) -> str:
    """The address table the control socket takes, for the dynamic routes of ``table``.

    ``config_generation`` is the generation of the config the table goes with:
    the generation probe answers ``table.generation`` only from workers running
    that config. Pure and validated like :func:`render_nginx`; raises
    InvalidRouteError.
    """
    validate_table(table)
    if isinstance(config_generation, bool) or not isinstance(config_generation, int) \
            or config_generation < 0:
        raise _invalid("config_generation", config_generation, "is not a non-negative integer")
    lines = [UPSTREAMS_HEADER, f"generation {table.generation}", f"config {config_generation}"]
    for route in sorted(table.routes, key=lambda r: r.app):
        if is_dynamic(route):
            lines.append(" ".join(("app", route.app, *route.upstreams)))
    return "\n".join(lines) + "\n"


def render_nginx(
    table: RouteTable,
    *,
    http_port: int,
    state_dir: Path,
    runtime_dir: Path,
    listen_address: str = "0.0.0.0",
    worker_user: str | None = None,
    https_port: int | None = None,
    dynamic: bool = False,
    worker_processes: int | None = None,
) -> str:
    """Render a complete nginx.conf for ``table``.

    The config is meant for nginx run as a plain process with
    ``-p <state_dir> -c <conf> -e <error log>``: its pid file and logs live under
    ``state_dir``, which only the master opens; every temp path lives under
    ``runtime_dir``, where the workers open files themselves. Each route gets an ``upstream`` and a
    ``server`` for its hosts; a default server answers 404 for unknown hosts and
    serves ``GENERATION_PATH`` (the table's generation, to loopback only).
    ``worker_user`` adds a ``user`` directive (only meaningful when nginx is
    started by root; otherwise nginx ignores it with a warning).
    ``worker_processes`` is how many workers nginx runs (None: one per core).
    Routes are rendered sorted by app name, so equal tables render equal text.

    Every HTTP server answers ``ACME_CHALLENGE_PATH``: from responses posted to the
    Lua side with ``dynamic``, else from files in ``runtime_dir/acme-challenge``.
    With ``https_port``, each host that has a certificate in its route gets an HTTPS
    server on that port, and its HTTP requests (but the challenge path) redirect
    there; without it (TLS off) certificates are ignored and everything is HTTP.

    With ``dynamic``, the config loads the Lua module (:data:`LUA_MODULES`) and
    routes whose addresses are IP literals (:func:`is_dynamic`) share one
    upstream, whose balancer reads their addresses from a shared dict that the
    controller fills over ``paths.control_socket`` (:func:`render_upstream_table`),
    and share their servers (:func:`_shared_blocks`): their addresses and
    certificate paths do not appear in the text, so changing only them needs no
    reload. Their certificates are posted over the same socket and served by SNI.
    The probe then answers from the posted table (see the Lua ``M.generation``).

    Raises InvalidRouteError, before rendering anything, if any value is invalid.
    """
    validate_table(table)
    port = validate_port(http_port)
    root = validate_state_dir(state_dir)
    runtime = validate_state_dir(runtime_dir, "runtime_dir")
    listen_ip = validate_listen_address(listen_address)
    user = None if worker_user is None else validate_user(worker_user)
    workers = "auto" if worker_processes is None else validate_workers(worker_processes)
    paths = StatePaths(root, runtime)
    challenge = _challenge_location(paths, dynamic)
    listen = _listen(listen_ip, port)
    tls_port = None if https_port is None else validate_port(https_port, "https_port")
    routes = sorted(table.routes, key=lambda r: r.app)
    shared = [route for route in routes if dynamic and is_dynamic(route)]
    separate = [route for route in routes if not (dynamic and is_dynamic(route))]
    tls_listen = None if tls_port is None else _listen(listen_ip, tls_port)
    redirect_port = "" if tls_port in (None, 443) else f":{tls_port}"

    out: list[str] = [
        "# Generated by Slipway's router (slipway.router.nginx). Do not edit: every",
        "# route change rewrites this file.",
        f"# generation {table.generation}, {len(routes)} route(s)",
        "",
        *[f"load_module {module};" for module in (LUA_MODULES if dynamic else ())],
        *([f"user {user};"] if user else []),
        f"worker_processes {workers};",
        f"pid {paths.pid};",
        f"error_log {paths.error_log} warn;",
        f"worker_shutdown_timeout {_WORKER_SHUTDOWN_TIMEOUT};",
        "",
        "events {",
        f"    worker_connections {_WORKER_CONNECTIONS};",
        "}",
        "",
        "http {",
        "    log_format slipway '$remote_addr - [$time_local] \"$request\" $status '",
        "                       '$body_bytes_sent $request_time host=$host '",
        "                       'upstream=$upstream_addr upstream_time=$upstream_response_time '",
        "                       'request_id=$request_id \"$http_user_agent\"';",
        f"    access_log {paths.access_log} slipway {_ACCESS_LOG_BUFFER};",
        "",
    ]
    out += [f"    {kind}_temp_path {paths.temp_path(kind)};" for kind in TEMP_KINDS]
    out += [
        "",
        "    default_type application/octet-stream;",
        "    server_tokens off;",
        "    sendfile on;",
        "    tcp_nodelay on;",
        "    keepalive_timeout 65s;",
        f"    client_max_body_size {_CLIENT_MAX_BODY_SIZE};",
        "    # Room for many hosts and for names up to 253 characters.",
        "    server_names_hash_max_size 65536;",
        "    server_names_hash_bucket_size 512;",
        "    map_hash_max_size 65536;",
        "    map_hash_bucket_size 512;",
        "",
        "    # Websockets: pass Upgrade through; otherwise send an empty Connection",
        "    # header so upstream connections stay open for keepalive.",
        "    map $http_upgrade $connection_upgrade {",
        "        default upgrade;",
        "        '' '';",
        "    }",
        "",
        "    # Proxy settings for every route. nginx inherits proxy_set_header only",
        "    # into blocks that set none of their own: set none below this level.",
        "    proxy_http_version 1.1;",
        "    proxy_set_header Host $http_host;",
        "    proxy_set_header X-Real-IP $remote_addr;",
        "    proxy_set_header X-Forwarded-For $proxy_add_x_forwarded_for;",
        "    proxy_set_header X-Forwarded-Proto $scheme;",
        "    proxy_set_header X-Forwarded-Host $http_host;",
        "    proxy_set_header X-Forwarded-Port $server_port;",
        "    proxy_set_header X-Request-Id $request_id;",
        "    proxy_set_header Upgrade $http_upgrade;",
        "    proxy_set_header Connection $connection_upgrade;",
        "    proxy_redirect off;",
        "    proxy_connect_timeout 5s;",
        "    proxy_send_timeout 60s;",
        "    proxy_read_timeout 60s;",
        "    proxy_buffer_size 16k;",
        "    proxy_buffers 8 16k;",
        "    proxy_busy_buffers_size 32k;",
        "    # A dead upstream in a group is skipped (requests not yet sent are retried).",
        "    proxy_next_upstream error timeout;",
        "",
        *(_lua_setup(paths) if dynamic else []),
        "    # --- HTTPS ------------------------------------------------------------",
    ]
    if tls_port is None:
        out.append("    # TLS is off: every host is served over HTTP only.")
    else:
        out += [
            "    ssl_protocols TLSv1.2 TLSv1.3;",
            "    ssl_prefer_server_ciphers off;",
            "    ssl_session_cache shared:slipway_tls:10m;",
            "    ssl_session_timeout 1d;",
            "    ssl_session_tickets off;",
        ]
        for route in separate:
            for cert in sorted(route.certificates, key=lambda c: c.host):
                out += _https_server(route, cert, tls_listen)
    out.append("    # --- end HTTPS --------------------------------------------------------")
    if shared:
        out.append("")
        out += _shared_blocks(shared, listen, tls_listen, redirect_port, paths, challenge)
    for route in separate:
        out.append("")
        certified = set() if tls_port is None else {c.host for c in route.certificates}
        out += _route_blocks(route, listen, challenge, certified, redirect_port)
    out.append("")
    out += _default_server(table.generation, listen, listen_ip, challenge, dynamic)
    out.append("}")
    return "\n".join(out) + "\n"


def _lua_setup(paths: StatePaths) -> list[str]:
    """The shared dicts, the Lua module, and the control server on the unix socket."""
    code = _LUA_MODULE.replace("@NOWHERE@", str(paths.nowhere))
    module = [f"        {line}" if line else "" for line in code.splitlines()]
    return [
        "    # --- dynamic upstreams (Lua) ---------------------------------------------",
        f"    lua_shared_dict {_UPSTREAMS_DICT} {_UPSTREAMS_DICT_SIZE};",
        f"    lua_shared_dict {_CERTIFICATES_DICT} {_CERTIFICATES_DICT_SIZE};",
        f"    lua_shared_dict {_CHALLENGES_DICT} {_CHALLENGES_DICT_SIZE};",
        "    init_by_lua_block {",
        *module,
        "    }",
        "    # The controller posts the address table and certificates here, the ACME",
        "    # client its challenge responses. nginx makes the socket world-writable; its",
        "    # directory (0700) keeps everyone but Slipway's user out.",
        "    server {",
        f"        listen unix:{paths.control_socket};",
        "        access_log off;",
        "        default_type text/plain;",
        f"        client_max_body_size {_CONTROL_MAX_BODY};",
        f"        client_body_buffer_size {_CONTROL_MAX_BODY};",
        f"        location = {UPSTREAMS_PATH} {{",
        '            content_by_lua_block { require("slipway.router").post() }',
        "        }",
        f"        location = {CERTIFICATES_PATH} {{",
        '            content_by_lua_block { require("slipway.router").post_certificates() }',
        "        }",
        f"        location = {CHALLENGES_PATH} {{",
        '            content_by_lua_block { require("slipway.router").post_challenges() }',
        "        }",
        "        location / {",
        "            return 404;",
        "        }",
        "    }",
        "",
    ]


def _listen(ip: str, port: int) -> str:
    return f"[{ip}]:{port}" if ":" in ip else f"{ip}:{port}"


def _challenge_location(paths: StatePaths, dynamic: bool) -> list[str]:
    # ^~ so no regex location can take the path over. With Lua the response comes
    # from the shared dict (nginx reads no file); without, alias maps a token
    # straight to its file in the runtime dir. Anything missing is a plain 404.
    answer = ('            content_by_lua_block { require("slipway.router").challenge() }'
              if dynamic else f"            alias {paths.challenges}/;")
    return [
        f"        location ^~ {ACME_CHALLENGE_PATH} {{",
        "            default_type text/plain;",
        answer,
        "        }",
    ]


def _proxy_location(route: Route) -> list[str]:
    if route.upstreams:
        return [f"            proxy_pass http://{upstream_name(route.app)};"]
    # No running web process (e.g. scaled to zero): say so instead of a 502.
    return [
        "            default_type text/plain;",
        f'            return 503 "The app {route.app} has no running web process.\\n";',
    ]


def _https_server(route: Route, cert: HostCertificate, listen: str) -> list[str]:
    """One HTTPS server per certified host, since each host has its own certificate."""
    lines = [
        f"    # app {route.app}, HTTPS for {cert.host}",
        "    server {",
        # nginx 1.22 (Debian bookworm) predates the `http2 on;` directive.
        f"        listen {listen} ssl http2;",
        f"        server_name {cert.host};",
        f"        ssl_certificate {cert.certificate};",
        f"        ssl_certificate_key {cert.key};",
    ]
    if route.hsts:
        lines.append(f'        add_header Strict-Transport-Security "max-age={_HSTS_MAX_AGE}" '
                     "always;")
    lines += ["        location / {", *_proxy_location(route), "        }", "    }"]
    return lines


def _redirect_server(server_names: list[str], listen: str, challenge: list[str],
                     redirect_port: str) -> list[str]:
    """HTTP for hosts with a certificate: the challenge path, else off to HTTPS."""
    return [
        "    server {",
        f"        listen {listen};",
        *server_names,
        *challenge,
        "        location / {",
        f"            return 301 https://$host{redirect_port}$request_uri;",
        "        }",
        "    }",
    ]


def _route_blocks(route: Route, listen: str, challenge: list[str], certified: set[str],
                  redirect_port: str) -> list[str]:
    """The upstream and the HTTP server(s) of one route with its own blocks.

    Hosts without a certificate are proxied over HTTP; hosts in ``certified``
    get their own HTTP server that redirects to HTTPS. Both answer the ACME
    challenge path, so renewals keep working after the redirect is in place.
    """
    lines = [f"    # app {route.app}"]
    if route.upstreams:
        lines += [
            f"    upstream {upstream_name(route.app)} {{",
            *[f"        server {address};" for address in route.upstreams],
            f"        keepalive {_UPSTREAM_KEEPALIVE};",
            f"        keepalive_timeout {_UPSTREAM_KEEPALIVE_TIMEOUT};",
            "    }",
        ]
    plain = [h for h in route.hosts if h not in certified]
    secure = [h for h in route.hosts if h in certified]
    if plain:
        lines += [
            "    server {",
            f"        listen {listen};",
            f"        server_name {' '.join(plain)};",
            *challenge,
            "        location / {",
            *_proxy_location(route),
            "        }",
            "    }",
        ]
    if secure:
        lines += _redirect_server([f"        server_name {' '.join(secure)};"], listen,
                                  challenge, redirect_port)
    return lines


# Words a map block reads as its own parameters; a source value spelled like one
# must be escaped with a backslash (single-label hosts are valid route hosts).
_MAP_KEYWORDS = frozenset({"default", "hostnames", "include", "volatile"})


def _map_key(host: str) -> str:
    return f"\\{host}" if host in _MAP_KEYWORDS else host


def _server_names(hosts: list[str]) -> list[str]:
    """A ``server_name`` line per host: a server may have any number of them."""
    return [f"        server_name {host};" for host in hosts]


def _shared_blocks(routes: list[Route], listen: str, tls_listen: str | None,
                   redirect_port: str, paths: StatePaths, challenge: list[str]) -> list[str]:
    """The servers all balanced apps share (dynamic upstreams).

    One map from host to app, one upstream whose balancer reads the app from it,
    one HTTP server for the hosts without a certificate, one that redirects those
    with one, and one HTTPS server whose certificates come from the posted set.
    The config grows by a line or two per host instead of a few blocks per app:
    nginx parses a server block with the Lua module loaded about five times
    slower than without, and a TLS server block costs an SSL context of its own.
    """
    certified = set() if tls_listen is None else {
        cert.host for route in routes for cert in route.certificates}
    pairs = [(host, route) for route in routes for host in route.hosts]
    plain = [host for host, _ in pairs if host not in certified]
    secure = [host for host, _ in pairs if host in certified]
    hsts = [host for host, route in pairs if host in certified and route.hsts]
    upstream = "slipway_apps"
    lines = [
        "    # --- apps behind the Lua balancer -----------------------------------------",
        f"    map $host ${_APP_VARIABLE} {{",
        '        default "";',
        *[f"        {_map_key(host)} {route.app};" for host, route in pairs],
        "    }",
    ]
    if hsts:
        lines += [
            "    map $host $slipway_hsts {",
            '        default "";',
            *[f'        {_map_key(host)} "max-age={_HSTS_MAX_AGE}";' for host in hsts],
            "    }",
        ]
    lines += [
        f"    upstream {upstream} {{",
        "        # A placeholder nginx requires; the balancer picks the peer by app.",
        "        # keepalive comes after it so it wraps the balancer.",
        "        server 0.0.0.1:1;",
        "        balancer_by_lua_block {",
        f'            require("slipway.router").balance(ngx.var.{_APP_VARIABLE})',
        "        }",
        f"        keepalive {_SHARED_KEEPALIVE};",
        f"        keepalive_timeout {_UPSTREAM_KEEPALIVE_TIMEOUT};",
        "    }",
    ]
    if plain:
        lines += [
            "    server {",
            f"        listen {listen};",
            *_server_names(plain),
            *challenge,
            "        location / {",
            f"            proxy_pass http://{upstream};",
            "        }",
            "    }",
        ]
    if not secure:
        return lines
    lines += _redirect_server(_server_names(secure), listen, challenge, redirect_port)
    lines += [
        "    # The default TLS server: a name the posted set lacks ends the handshake.",
        "    server {",
        f"        listen {tls_listen} ssl http2 default_server;",
        *_server_names(secure),
        "        default_type text/plain;",
        f"        ssl_certificate {paths.placeholder_certificate};",
        f"        ssl_certificate_key {paths.placeholder_key};",
        "        ssl_certificate_by_lua_block {",
        '            require("slipway.router").certificate()',
        "        }",
        # An empty value adds no header: hosts without HSTS get none.
        *(["        add_header Strict-Transport-Security $slipway_hsts always;"] if hsts else []),
        "        location / {",
        f'            if (${_APP_VARIABLE} = "") {{',
        '                return 404 "No app is configured for this host.\\n";',
        "            }",
        f"            proxy_pass http://{upstream};",
        "        }",
        "    }",
    ]
    return lines


def _default_server(generation: int, listen: str, listen_ip: str,
                    challenge: list[str], dynamic: bool) -> list[str]:
    allowed = ["127.0.0.1", "::1"]
    if not ipaddress.ip_address(listen_ip).is_unspecified and listen_ip not in allowed:
        # The controller probes the address nginx listens on; let it in.
        allowed.append(listen_ip)
    answer = [f'            return 200 "{generation}\\n";']
    if dynamic:
        answer = ["            content_by_lua_block {",
                  f'                require("slipway.router").generation({generation})',
                  "            }"]
    return [
        "    # Unknown hosts, and the controller's probe of the applied generation.",
        "    server {",
        f"        listen {listen} default_server;",
        "        server_name _;",
        "        default_type text/plain;",
        *challenge,
        f"        location = {GENERATION_PATH} {{",
        *[f"            allow {address};" for address in allowed],
        "            deny all;",
        *answer,
        "        }",
        "        location / {",
        '            return 404 "No app is configured for this host.\\n";',
        "        }",
        "    }",
    ]

