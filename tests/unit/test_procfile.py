from __future__ import annotations

import pytest

from slipway.builder.plan import BuildError
from slipway.builder.procfile import parse_procfile, validate_process_type


def error_of(text: str) -> str:
    with pytest.raises(BuildError) as info:
        parse_procfile(text)
    return info.value.message


def test_parses_types_and_commands_in_order():
    text = (
        "# Heroku-style\n"
        "\n"
        "web: gunicorn --bind 0.0.0.0:$PORT app:app\n"
        "worker: celery -A tasks worker\n"
        "release: flask db upgrade\n"
    )
    assert parse_procfile(text) == {
        "web": "gunicorn --bind 0.0.0.0:$PORT app:app",
        "worker": "celery -A tasks worker",
        "release": "flask db upgrade",
    }
    assert list(parse_procfile(text)) == ["web", "worker", "release"]


def test_is_lenient_on_whitespace_crlf_and_bom():
    text = "\ufeff  web :   python app.py  \r\n\t worker:python w.py\r\n   \r\n"
    assert parse_procfile(text) == {"web": "python app.py", "worker": "python w.py"}


def test_command_keeps_colons_quotes_and_shell_syntax():
    command = """sh -c 'echo "a:b" && exec gunicorn "app:create_app()"' # not a comment to us"""
    assert parse_procfile(f"web: {command}\n") == {"web": command}


def test_type_names_allow_digits_dash_underscore():
    assert parse_procfile("clock-2: a\nbg_jobs: b\n") == {"clock-2": "a", "bg_jobs": "b"}


def test_empty_procfile_is_empty():
    assert parse_procfile("") == {}
    assert parse_procfile("# nothing yet\n\n") == {}


def test_missing_colon_names_line_and_content():
    text = "web: ok\n\nweb gunicorn app:app\n"
    assert error_of(text) == 'Procfile line 3: expected "type: command", got "web gunicorn app:app"'


def test_line_without_colon():
    assert error_of("just words") == 'Procfile line 1: expected "type: command", got "just words"'


def test_invalid_type_names():
    assert error_of("Web: python app.py") == (
        'Procfile line 1: invalid process type "Web": use lowercase letters, digits, "-" and "_", '
        "starting with a letter, at most 30 characters"
    )
    assert "invalid process type \"1web\"" in error_of("1web: x")
    assert "invalid process type \"we.b\"" in error_of("we.b: x")
    assert "invalid process type" in error_of("w" * 31 + ": x")
    assert parse_procfile("w" * 30 + ": x") == {"w" * 30: "x"}


def test_duplicate_type_names_both_lines():
    assert error_of("web: a\nworker: b\nweb: c\n") == (
        'Procfile line 3: duplicate process type "web" (first defined on line 1)'
    )


def test_empty_command():
    assert error_of("worker: x\nweb:   \n") == 'Procfile line 2: process type "web" has no command'


@pytest.mark.parametrize("bad", ["\x00", "\x1b[31m", "\x0b", "\x7f", "\x1c"])
def test_control_characters_in_commands_are_refused(bad):
    message = error_of(f"web: echo {bad}oops\n")
    assert message == 'Procfile line 1: the command for "web" contains a control character'


def test_attack_strings_are_quoted_and_cut_in_messages():
    line = 'web"; rm -rf / # ' + "x" * 200
    message = error_of(line)
    assert message.startswith('Procfile line 1: expected "type: command", got "web\\"; rm -rf /')
    assert len(message) < 160
    assert "\n" not in error_of("we\x1bb: x")


@pytest.mark.parametrize("name", ["web", "worker", "release", "clock-2", "a", "a_b", "w" * 30])
def test_validate_process_type_accepts(name):
    assert validate_process_type(name) == name


@pytest.mark.parametrize(
    "name",
    ["", "Web", "1web", "-web", "web worker", "web:", "we/b", "w" * 31, "web\n", "wéb", "../x"],
)
def test_validate_process_type_refuses(name):
    with pytest.raises(BuildError) as info:
        validate_process_type(name)
    assert info.value.message.startswith("Invalid process type ")
    assert "\n" not in info.value.message
