"""render_nginx: golden files, validation messages, and attack strings that must raise.

Regenerate the golden files with ``UPDATE_GOLDEN=1 pytest tests/unit/test_nginx_render.py``
and read the diff before committing it.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from slipway.router.errors import InvalidRouteError, RouterError
from slipway.router.nginx import (
    is_dynamic,
    render_nginx,
    render_upstream_table,
    validate_host,
    validate_routes,
    validate_upstream,
)
from slipway.router.routes import HostCertificate, Route, RouteTable

GOLDEN = Path(__file__).resolve().parent.parent / "golden" / "nginx"
STATE = Path("/var/lib/slipway/router")
RUN = Path("/var/lib/slipway-nginx/0123456789ab")

WEB = Route(app="web", hosts=("web.example.com", "www.example.com"),
            upstreams=("127.0.0.1:32768", "127.0.0.1:32769"))
API = Route(app="api", hosts=("api.example.com",), upstreams=("app-host-2:8000", "[::1]:9000"))
IDLE = Route(app="idle", hosts=("idle.localhost",), upstreams=())
CERTS = "/var/lib/slipway/certs"
SECURE = Route(
    app="shop", hosts=("shop.example.com", "www.shop.test", "plain.shop.test"),
    upstreams=("127.0.0.1:32770",),
    certificates=(
        HostCertificate("www.shop.test", f"{CERTS}/www.shop.test/fullchain.pem",
                        f"{CERTS}/www.shop.test/privkey.pem"),
        HostCertificate("shop.example.com", f"{CERTS}/shop.example.com/fullchain.pem",
                        f"{CERTS}/shop.example.com/privkey.pem"),
    ),
    hsts=True,
)

CASES: dict[str, tuple[RouteTable, dict]] = {
    "empty": (RouteTable(generation=0, routes=()), {"http_port": 80, "state_dir": STATE}),
    # Given out of order on purpose: output is sorted by app.
    "routes": (RouteTable(generation=42, routes=(WEB, IDLE, API)),
               {"http_port": 80, "state_dir": STATE}),
    "listen_address": (RouteTable(generation=3, routes=(WEB,)),
                       {"http_port": 8080, "state_dir": STATE, "listen_address": "10.0.0.5",
                        "worker_user": "www-data"}),
    # HTTPS on 8443: certified hosts redirect, plain.shop.test stays on HTTP.
    "tls": (RouteTable(generation=9, routes=(SECURE, IDLE)),
            {"http_port": 8080, "https_port": 8443, "state_dir": STATE}),
    # TLS off: the same table renders without HTTPS servers or redirects.
    "tls_off": (RouteTable(generation=9, routes=(SECURE,)),
                {"http_port": 80, "state_dir": STATE}),
    "listen_ipv6": (RouteTable(generation=7, routes=(API,)),
                    {"http_port": 18080, "state_dir": STATE, "listen_address": "::"}),
    # Lua balancer: WEB's addresses leave the config, API (a host name) and IDLE
    # (no addresses) keep what they render statically.
    "dynamic": (RouteTable(generation=42, routes=(WEB, IDLE, API)),
                {"http_port": 80, "state_dir": STATE, "dynamic": True}),
    "dynamic_tls": (RouteTable(generation=9, routes=(SECURE, IDLE)),
                    {"http_port": 8080, "https_port": 8443, "state_dir": STATE,
                     "dynamic": True}),
}


for _table, _kwargs in CASES.values():
    _kwargs["runtime_dir"] = RUN


def table_with(**route_fields) -> RouteTable:
    fields = {"app": "web", "hosts": ("web.example.com",), "upstreams": ("127.0.0.1:8000",)}
    fields.update(route_fields)
    return RouteTable(generation=1, routes=(Route(**fields),))


def render(table: RouteTable, **kwargs) -> str:
    return render_nginx(table, **{"http_port": 80, "state_dir": STATE, "runtime_dir": RUN,
                                  **kwargs})


# --- golden files ---------------------------------------------------------------


@pytest.mark.parametrize("name", sorted(CASES))
def test_golden(name):
    table, kwargs = CASES[name]
    text = render_nginx(table, **kwargs)
    path = GOLDEN / f"{name}.conf"
    if os.environ.get("UPDATE_GOLDEN"):
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    assert path.exists(), f"{path} is missing; run with UPDATE_GOLDEN=1 to create it"
    assert text == path.read_text()


def test_every_golden_file_has_a_case():
    assert sorted(p.stem for p in GOLDEN.glob("*.conf")) == sorted(CASES)


def test_route_order_does_not_change_the_output():
    forward = render(RouteTable(generation=5, routes=(WEB, API, IDLE)))
    backward = render(RouteTable(generation=5, routes=(IDLE, API, WEB)))
    assert forward == backward


def test_generation_is_served_by_the_default_server_only():
    text = render(RouteTable(generation=123456, routes=(WEB,)))
    assert 'return 200 "123456\\n";' in text
    assert text.count("location = /.slipway/router/generation") == 1
    default = text[text.index("listen 0.0.0.0:80 default_server;"):]
    assert "location = /.slipway/router/generation" in default


def test_upstream_group_has_keepalive_and_every_address():
    text = render(RouteTable(generation=1, routes=(WEB,)))
    block = text[text.index("upstream app_web {"):]
    block = block[: block.index("}")]
    assert "server 127.0.0.1:32768;" in block
    assert "server 127.0.0.1:32769;" in block
    assert "keepalive 128;" in block
    assert "proxy_pass http://app_web;" in text
    assert "server_name web.example.com www.example.com;" in text


def test_route_without_upstreams_answers_503():
    text = render(RouteTable(generation=1, routes=(IDLE,)))
    assert "upstream app_idle" not in text
    assert 'return 503 "The app idle has no running web process.\\n";' in text


def test_logs_and_pid_live_under_the_state_dir_temp_paths_outside_it():
    text = render(RouteTable(generation=1, routes=()), state_dir=Path("/srv/x"),
                  runtime_dir=Path("/run/y"))
    for kind in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi"):
        assert f"    {kind}_temp_path /run/y/{kind};" in text
    assert "/srv/x/temp" not in text
    assert "pid /srv/x/nginx.pid;" in text
    assert "error_log /srv/x/logs/error.log warn;" in text
    assert "access_log /srv/x/logs/access.log slipway buffer=64k flush=1s;" in text
    assert "daemon" not in text  # the controller decides how nginx runs


# --- valid edge cases ---------------------------------------------------------------


@pytest.mark.parametrize("host", [
    "localhost",
    "a.b",
    "web.localhost",
    "xn--bcher-kva.example",
    "123.example.com",
    "10.0.0.1",
    "a-b--c.example.com",
    "a" * 63 + ".com",
    ".".join(["a" * 63] * 3 + ["b" * 61]),  # 253 characters
])
def test_valid_hosts(host):
    assert validate_host(host) == host
    assert f"server_name {host};" in render(table_with(hosts=(host,)))


@pytest.mark.parametrize("upstream", [
    "127.0.0.1:8000", "127.0.0.1:1", "127.0.0.1:65535", "10.1.2.3:80", "[::1]:8000",
    "[2001:db8::1]:443", "web-1:8000", "app.internal:5000",
])
def test_valid_upstreams(upstream):
    assert validate_upstream(upstream) == upstream
    assert f"server {upstream};" in render(table_with(upstreams=(upstream,)))


@pytest.mark.parametrize("app", ["ab", "web", "my-app-2", "a" * 30])
def test_valid_app_names(app):
    assert f"upstream app_{app} {{" in render(table_with(app=app))


# --- exact messages -------------------------------------------------------------


@pytest.mark.parametrize(("host", "message"), [
    ("a;b.com", "routes[0].hosts[0]: 'a;b.com' is not a valid host name (lowercase letters, "
                "digits and hyphens in dot-separated labels; a label may not start or end "
                "with a hyphen)"),
    ("Example.com", "routes[0].hosts[0]: 'Example.com' must be lowercase"),
    ("*.example.com", "routes[0].hosts[0]: '*.example.com' is a wildcard; wildcard hosts are "
                      "not supported"),
    ("bücher.example", "routes[0].hosts[0]: 'bücher.example' is not ASCII; give "
                       "internationalised names in their punycode (xn--) form"),
    ("a" * 64 + ".com", f"routes[0].hosts[0]: '{'a' * 64}.com' has a label longer than 63 "
                        "characters"),
    ("", "routes[0].hosts[0]: must not be empty"),
])
def test_host_messages(host, message):
    with pytest.raises(InvalidRouteError) as caught:
        render(table_with(hosts=(host,)))
    assert caught.value.message == message
    assert caught.value.field == "routes[0].hosts[0]"
    assert caught.value.code == "invalid_route"
    assert isinstance(caught.value, RouterError)


def test_long_junk_is_cut_short_in_messages():
    with pytest.raises(InvalidRouteError) as caught:
        render(table_with(hosts=("x;" * 5000,)))
    assert len(caught.value.message) < 300
    assert "..." in caught.value.message


def test_upstream_message():
    with pytest.raises(InvalidRouteError) as caught:
        render(table_with(upstreams=("127.0.0.1:80;",)))
    assert caught.value.message == (
        "routes[0].upstreams[0]: '127.0.0.1:80;' is not a valid upstream (expected host:port, "
        "e.g. 127.0.0.1:8000)"
    )


def test_app_name_message():
    with pytest.raises(InvalidRouteError) as caught:
        render(table_with(app="Web"))
    assert caught.value.message == (
        "routes[0].app: 'Web' is not a valid app name (2-30 characters: a lowercase letter, "
        "then lowercase letters, digits or hyphens)"
    )


def test_field_names_the_route_by_position():
    table = RouteTable(generation=1, routes=(WEB, Route("api", ("api.example.com", "a b"), ())))
    with pytest.raises(InvalidRouteError) as caught:
        render(table)
    assert caught.value.field == "routes[1].hosts[1]"


def test_host_claimed_by_two_apps_is_refused():
    other = Route("other", ("www.example.com",), ("127.0.0.1:9000",))
    with pytest.raises(InvalidRouteError) as caught:
        validate_routes([WEB, other])
    assert caught.value.message == (
        "routes[1].hosts[0]: 'www.example.com' is already routed to app 'web'"
    )


def test_app_with_two_routes_is_refused():
    with pytest.raises(InvalidRouteError) as caught:
        validate_routes([WEB, Route("web", ("other.example.com",), ())])
    assert caught.value.message == "routes[1].app: 'web' has more than one route"


def test_duplicates_within_a_route_are_refused():
    with pytest.raises(InvalidRouteError, match=r"hosts\[1\]: 'a.com' is listed twice"):
        render(table_with(hosts=("a.com", "a.com")))
    with pytest.raises(InvalidRouteError, match=r"upstreams\[1\]: '127.0.0.1:1' is listed twice"):
        render(table_with(upstreams=("127.0.0.1:1", "127.0.0.1:1")))


def test_route_without_hosts_is_refused():
    with pytest.raises(InvalidRouteError) as caught:
        render(table_with(hosts=()))
    assert caught.value.message == "routes[0].hosts: a route needs at least one host"


# --- attack strings -------------------------------------------------------------

HOST_ATTACKS = [
    "a;b.com", "evil.com; return 200 owned", "a{b.com", "a}b.com", "evil.com;\n}",
    "a\nb.com", "a.com\r\n", "a\rb", "a b.com", "a\tb.com", " a.com", "a.com ", "$host",
    "a$b.com", "${x}.com", "a'b.com", 'a"b.com', "a#b.com", "a/b.com", "a\\b.com", "a:80",
    "[::1]", "a.com/", "a\x00.com", "ex\u00e4mple.com", "\u4f8b\u3048.jp",
    "\uff45\uff58\uff41\uff4d\uff50\uff4c\uff45.com", "a\u200b.com", "a.com\u2028",
    "*.example.com", "*", "Example.com", "EXAMPLE.COM", "example.com.", ".example.com",
    "a..b", "-a.com", "a-.com", "a.-b.com", "a_b.com", "_", "a" * 64 + ".com",
    ".".join(["a" * 63] * 4), " ", "",
]


@pytest.mark.parametrize("host", HOST_ATTACKS)
def test_host_attacks_raise(host):
    with pytest.raises(InvalidRouteError) as caught:
        render(table_with(hosts=("ok.example.com", host)))
    assert caught.value.field == "routes[0].hosts[1]"


@pytest.mark.parametrize("host", [123, None, b"a.com", ["a.com"]])
def test_non_string_hosts_raise(host):
    with pytest.raises(InvalidRouteError, match="is not a string"):
        render(table_with(hosts=(host,)))


UPSTREAM_ATTACKS = [
    "127.0.0.1", "127.0.0.1:", ":80", "127.0.0.1:0", "127.0.0.1:65536", "127.0.0.1:99999",
    "127.0.0.1:080", "127.0.0.1:80;", "127.0.0.1:80 backup", "127.0.0.1:80 weight=5",
    "127.0.0.1:80\n}", "127.0.0.1:80\r\n", " 127.0.0.1:80", "http://127.0.0.1:80",
    "unix:/tmp/app.sock", "256.0.0.1:80", "1.2.3:80", "01.2.3.4:80", "::1:80",
    "[::1%eth0]:80", "[zz::1]:80", "[::1]", "[::1]:", "[127.0.0.1]:80", "$host:80",
    "a b:80", "a;b:80", "127.0.0.1:8o", "127.0.0.1:-1", "127.0.0.1:+80",
    "\uff11\uff12\uff17.0.0.1:80", "127.0.0.1:\uff18\uff10", "Host:80", "127.0.0.1:80:80",
    "a_b:80", "*.x:80", "", ":", "127.0.0.1:80}",
]


@pytest.mark.parametrize("upstream", UPSTREAM_ATTACKS)
def test_upstream_attacks_raise(upstream):
    with pytest.raises(InvalidRouteError) as caught:
        render(table_with(upstreams=("127.0.0.1:8000", upstream)))
    assert caught.value.field == "routes[0].upstreams[1]"


@pytest.mark.parametrize("upstream", [8000, None, b"127.0.0.1:80"])
def test_non_string_upstreams_raise(upstream):
    with pytest.raises(InvalidRouteError, match="is not a string"):
        render(table_with(upstreams=(upstream,)))


APP_ATTACKS = ["a", "A", "Web", "web_1", "1web", "-web", "web;", "web app", "web\n",
               "wéb", "a" * 31, "", "web{", "$web", "web}"]


@pytest.mark.parametrize("app", APP_ATTACKS)
def test_app_name_attacks_raise(app):
    with pytest.raises(InvalidRouteError) as caught:
        render(table_with(app=app))
    assert caught.value.field == "routes[0].app"


@pytest.mark.parametrize("kwargs", [
    {"http_port": 0}, {"http_port": 65536}, {"http_port": "80"}, {"http_port": True},
    {"listen_address": "0.0.0.0; evil"}, {"listen_address": "localhost"},
    {"listen_address": "fe80::1%eth0"}, {"listen_address": ""},
    {"state_dir": Path("relative/dir")}, {"state_dir": Path("/srv/with space")},
    {"state_dir": Path("/srv/semi;colon")}, {"state_dir": Path("/srv/$var")},
    {"state_dir": Path("/srv/quote'")}, {"state_dir": Path("/srv/new\nline")},
    {"state_dir": Path("/srv/../etc")}, {"state_dir": Path("/srv/br{ace")},
    {"runtime_dir": Path("relative")}, {"runtime_dir": Path("/run/semi;colon")},
    {"worker_user": "root; evil"}, {"worker_user": "Root"}, {"worker_user": ""},
    {"worker_processes": 0}, {"worker_processes": "2"}, {"worker_processes": True},
    {"worker_processes": 1025},
])
def test_render_arguments_are_validated(kwargs):
    with pytest.raises(InvalidRouteError):
        render(table_with(), **kwargs)


def test_worker_processes_default_to_one_per_core():
    assert "\nworker_processes auto;\n" in render(table_with())
    assert "\nworker_processes 3;\n" in render(table_with(), worker_processes=3)


@pytest.mark.parametrize("generation", [-1, "1", 1.0, True, None])
def test_generation_must_be_a_non_negative_int(generation):
    with pytest.raises(InvalidRouteError) as caught:
        render(RouteTable(generation=generation, routes=()))
    assert caught.value.field == "generation"


def test_routes_must_be_route_objects():
    with pytest.raises(InvalidRouteError, match=r"routes\[0\]: .* is not a Route"):
        render(RouteTable(generation=1, routes=({"app": "web"},)))


def test_error_as_data():
    with pytest.raises(InvalidRouteError) as caught:
        render(table_with(hosts=("a b",)))
    assert caught.value.to_dict() == {
        "code": "invalid_route",
        "message": caught.value.message,
        "field": "routes[0].hosts[0]",
    }


# --- dynamic upstreams ---------------------------------------------------------------


def test_dynamic_config_does_not_depend_on_ip_addresses():
    moved = Route(app="web", hosts=WEB.hosts, upstreams=("172.18.0.7:5000",))
    scaled = Route(app="web", hosts=WEB.hosts,
                   upstreams=("172.18.0.7:5000", "172.18.0.8:5000", "[fd00::3]:5000"))
    texts = {render(RouteTable(generation=3, routes=(r, API)), dynamic=True)
             for r in (WEB, moved, scaled)}
    assert len(texts) == 1
    text = texts.pop()
    assert "32768" not in text and "172.18" not in text
    assert "server app-host-2:8000;" in text  # a host name stays static


def test_dynamic_upstream_has_balancer_then_keepalive():
    text = render(RouteTable(generation=1, routes=(WEB,)), dynamic=True)
    block = text[text.index("upstream slipway_apps {"):]
    block = block[: block.index("\n    }")]
    assert block.index("balancer_by_lua_block") < block.index("keepalive 1024;")
    assert 'require("slipway.router").balance(ngx.var.slipway_app)' in block
    assert "upstream app_web" not in text
    assert text.startswith("# Generated") and "load_module /usr/lib/nginx/modules/" in text
    assert "listen unix:/var/lib/slipway/router/control/upstreams.sock;" in text


def test_balanced_apps_share_their_servers():
    """A thousand apps with certificates render the same blocks as one: a line or
    two per host, no server block (nor SSL context) per app."""
    def table(size: int) -> RouteTable:
        return RouteTable(generation=1, routes=tuple(
            Route(app=f"app{i}", hosts=(f"app{i}.example.com", f"plain{i}.example.com"),
                  upstreams=(f"10.0.{i // 250}.{i % 250 + 1}:5000",),
                  certificates=(HostCertificate(f"app{i}.example.com", f"{CERTS}/a/fullchain.pem",
                                                f"{CERTS}/a/privkey.pem"),),
                  hsts=i % 2 == 0)
            for i in range(size)))
    one, many = (render(table(n), https_port=443, dynamic=True) for n in (1, 1000))
    for text in (one, many):
        assert text.count("server {") == 5  # control, HTTP, redirect, HTTPS, default
        assert text.count("ssl_certificate ") == 1
        assert f"{CERTS}/a/fullchain.pem" not in text  # certificates are posted, not loaded
    assert "        app999.example.com app999;" in many
    assert "        plain999.example.com app999;" in many
    assert '        app998.example.com "max-age=31536000";' in many
    assert "app999.example.com \"max-age" not in many
    assert "listen 0.0.0.0:443 ssl http2 default_server;" in many
    assert "return 301 https://$host$request_uri;" in many


def test_hosts_spelled_like_map_parameters_are_escaped():
    routes = tuple(Route(app=f"app{i}", hosts=(host,), upstreams=("10.0.0.1:80",))
                   for i, host in enumerate(("include", "default", "hostnames", "volatile")))
    text = render(RouteTable(generation=1, routes=routes), dynamic=True)
    for i, host in enumerate(("include", "default", "hostnames", "volatile")):
        assert f"        \\{host} app{i};" in text
        assert f"        server_name {host};" in text


def test_shared_tls_server_needs_a_certified_host():
    text = render(RouteTable(generation=1, routes=(WEB,)), https_port=8443, dynamic=True)
    assert "ssl" not in text.split("# --- end HTTPS")[1]
    assert "slipway_hsts" not in text


def test_static_config_has_no_lua():
    text = render(RouteTable(generation=1, routes=(WEB,)))
    assert "lua" not in text and "load_module" not in text


@pytest.mark.parametrize("route, dynamic", [
    (WEB, True),
    (API, False),
    (IDLE, False),
    (Route(app="v6", hosts=("v6.example.com",), upstreams=("[::1]:80",)), True),
])
def test_is_dynamic(route, dynamic):
    assert is_dynamic(route) is dynamic


def test_upstream_table_lists_dynamic_routes_sorted():
    table = RouteTable(generation=12, routes=(WEB, IDLE, API, Route(
        app="api2", hosts=("api2.example.com",), upstreams=("10.0.0.2:80", "[fd00::1]:81"))))
    assert render_upstream_table(table, 10) == (
        "slipway-upstreams 1\n"
        "generation 12\n"
        "config 10\n"
        "app api2 10.0.0.2:80 [fd00::1]:81\n"
        "app web 127.0.0.1:32768 127.0.0.1:32769\n"
    )


@pytest.mark.parametrize("bad", [-1, True, "3", None])
def test_upstream_table_refuses_a_bad_config_generation(bad):
    with pytest.raises(InvalidRouteError, match="config_generation"):
        render_upstream_table(RouteTable(generation=1, routes=(WEB,)), bad)


def test_upstream_table_validates_routes_first():
    bad = Route(app="web", hosts=("web.example.com",), upstreams=("127.0.0.1:8000\napp x",))
    with pytest.raises(InvalidRouteError) as caught:
        render_upstream_table(RouteTable(generation=1, routes=(bad,)), 1)
    assert caught.value.field == "routes[0].upstreams[0]"
