"""Command-line redaction: each secret form is masked, the rest of the command line is kept."""

from __future__ import annotations

import pytest

from portmon.history.redact import MASK, redact_cmdline

CASES = [
    (["app", "--password=hunter2"], ["app", f"--password={MASK}"]),
    (["app", "--db-password", "hunter2", "--port", "80"], ["app", "--db-password", MASK, "--port", "80"]),
    (["app", "--api-key", "k3y", "-v"], ["app", "--api-key", MASK, "-v"]),
    (["app", "token=abc123"], ["app", f"token={MASK}"]),
    (["mysql", "-phunter2", "-u", "bob"], ["mysql", f"-p{MASK}", "-u", "bob"]),
    (["psql", "postgres://bob:hunter2@db.example:5432/app"], ["psql", f"postgres://bob:{MASK}@db.example:5432/app"]),
    (["env", "DB_PASSWORD=x1", "AWS_SECRET_ACCESS_KEY=x2", "GITHUB_TOKEN=x3", "PATH=/bin"],
     ["env", f"DB_PASSWORD={MASK}", f"AWS_SECRET_ACCESS_KEY={MASK}", f"GITHUB_TOKEN={MASK}", "PATH=/bin"]),
    (["curl", "https://h.example/x?access_token=t0k&page=2"], ["curl", f"https://h.example/x?access_token={MASK}&page=2"]),
    (["curl", "-H", "Authorization: Bearer abc.def"], ["curl", "-H", f"Authorization: Bearer {MASK}"]),
    (["sh", "-c", "API_KEY=kkk ./run --secret s3 -v"], ["sh", "-c", f"API_KEY={MASK} ./run --secret {MASK} -v"]),
]


@pytest.mark.parametrize(("argv", "expected"), CASES)
def test_each_secret_form_is_masked(argv: list[str], expected: list[str]) -> None:
    assert list(redact_cmdline(argv)) == expected


@pytest.mark.parametrize(
    "argv",
    [
        ["python3", "-m", "http.server", "8080"],
        ["nginx", "-g", "daemon off;"],
        ["postgres", "-D", "/var/lib/postgresql/16/main", "-c", "config_file=/etc/pg.conf"],
        ["app", "--keep", "30d", "--listen", "http://127.0.0.1:8000/"],
        ["app", "--token"],  # nothing follows: nothing to hide
    ],
)
def test_ordinary_command_lines_are_kept(argv: list[str]) -> None:
    assert list(redact_cmdline(argv)) == argv


def test_the_option_before_another_option_keeps_it() -> None:
    assert list(redact_cmdline(["app", "--password", "--verbose"])) == ["app", "--password", "--verbose"]
