"""`disco-server`: flags, environment fallbacks, validation, and a real start in a subprocess."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from unittest import mock

import httpx
import pytest

from disco.cli.server import build_parser, load_settings, main
from disco.server import runner
from disco.server.runner import event_loop_name, free_port, uvicorn_config
from disco.server.settings import MiB, Settings

FLAGS = [
    "--host",
    "--port",
    "--data-dir",
    "--tasks-dir",
    "--log-level",
    "--admin-token",
    "--max-body-mb",
    "--max-frame-mb",
    "--round-deadline",
    "--readiness-deadline",
    "--ws-ping-interval",
    "--ws-ping-timeout",
    "--no-default-tasks",
    "--event-loop",
    "--ssl-certfile",
    "--ssl-keyfile",
    "--version",
]


def settings_for(argv: list[str], env: dict[str, str] | None = None) -> Settings:
    """Settings from `argv` with exactly `env` as the process's DISCO_* variables."""
    others = {k: v for k, v in os.environ.items() if not k.startswith("DISCO_")}
    with mock.patch.dict(os.environ, {**others, **(env or {})}, clear=True):
        return load_settings(argv)


def test_help_lists_every_flag_with_its_env_var() -> None:
    text = build_parser().format_help()
    for flag in FLAGS:
        assert flag in text
    for default in ("127.0.0.1", "8080", "disco-data", "DISCO_ADMIN_TOKEN"):
        assert default in text


def test_help_from_the_module_entry_point() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "disco.cli.server", "--help"],
        capture_output=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stderr.decode()
    out = result.stdout.decode()
    assert out.startswith("usage: disco-server")
    for flag in FLAGS:
        assert flag in out


def test_defaults() -> None:
    settings = settings_for([])
    assert settings.host == "127.0.0.1"
    assert settings.port == 8080
    assert settings.data_dir == Path("disco-data")
    assert settings.tasks_dir is None
    assert settings.log_level == "info"
    assert settings.admin_token is None
    assert settings.load_default_tasks is True
    assert settings.max_body_bytes == Settings().max_body_bytes
    assert settings.max_frame_bytes == Settings().max_frame_bytes
    assert settings.round_deadline_s == Settings().round_deadline_s
    assert settings.event_loop == "asyncio"


def test_flags() -> None:
    settings = settings_for(
        [
            "--host=0.0.0.0",
            "--port=9000",
            "--data-dir=/tmp/d",
            "--tasks-dir=/tmp/t",
            "--log-level=DEBUG",
            "--admin-token=tok",
            "--max-body-mb=1.5",
            "--max-frame-mb=2",
            "--round-deadline=0.5",
            "--no-default-tasks",
        ]
    )
    assert (settings.host, settings.port) == ("0.0.0.0", 9000)
    assert settings.data_dir == Path("/tmp/d") and settings.tasks_dir == Path("/tmp/t")
    assert settings.log_level == "debug"
    assert settings.admin_token == "tok"
    assert settings.max_body_bytes == int(1.5 * MiB)
    assert settings.max_frame_bytes == 2 * MiB
    assert settings.round_deadline_s == 0.5
    assert settings.load_default_tasks is False


def test_environment_fallbacks_and_flag_precedence() -> None:
    env = {
        "DISCO_HOST": "::1",
        "DISCO_PORT": "9001",
        "DISCO_DATA_DIR": "/srv/disco",
        "DISCO_TASKS_DIR": "/srv/tasks",
        "DISCO_LOG_LEVEL": "warning",
        "DISCO_ADMIN_TOKEN": "from-env",
        "DISCO_MAX_BODY_MB": "3",
        "DISCO_MAX_FRAME_MB": "4",
        "DISCO_ROUND_DEADLINE": "7",
        "DISCO_NO_DEFAULT_TASKS": "yes",
    }
    settings = settings_for([], env)
    assert (settings.host, settings.port) == ("::1", 9001)
    assert settings.data_dir == Path("/srv/disco") and settings.tasks_dir == Path("/srv/tasks")
    assert settings.log_level == "warning"
    assert settings.admin_token == "from-env"
    assert settings.max_body_bytes == 3 * MiB and settings.max_frame_bytes == 4 * MiB
    assert settings.round_deadline_s == 7
    assert settings.load_default_tasks is False
    overridden = settings_for(["--port", "9002", "--admin-token", "flag"], env)
    assert overridden.port == 9002 and overridden.admin_token == "flag"


def test_every_option_reads_its_environment_variable() -> None:
    env = {
        "DISCO_READINESS_DEADLINE": "1.5",
        "DISCO_WS_PING_INTERVAL": "2",
        "DISCO_WS_PING_TIMEOUT": "3",
        "DISCO_LOG_LEVEL": "DEBUG",
        "DISCO_TASKS_DIR": "",  # empty: unset, as in a compose file's `DISCO_TASKS_DIR=`
        "DISCO_UPLOAD_RESUME": "0",
        "DISCO_RESUMABLE_UPLOADS": "3",
    }
    settings = settings_for([], env)
    assert (settings.upload_resume_s, settings.resumable_uploads) == (0, 3)
    assert settings_for(["--upload-resume", "30"], env).upload_resume_s == 30
    assert settings.readiness_deadline_s == 1.5
    assert (settings.ws_ping_interval_s, settings.ws_ping_timeout_s) == (2, 3)
    assert settings.log_level == "debug" and settings.tasks_dir is None
    assert settings_for(["--readiness-deadline", "4"], env).readiness_deadline_s == 4


def test_the_event_loop_option() -> None:
    assert settings_for(["--event-loop", "asyncio"]).event_loop == "asyncio"
    assert settings_for([], {"DISCO_EVENT_LOOP": "uvloop"}).event_loop == "uvloop"
    assert settings_for(["--event-loop=asyncio"], {"DISCO_EVENT_LOOP": "uvloop"}).event_loop == (
        "asyncio"
    )


def test_the_event_loop_uvicorn_runs(monkeypatch: pytest.MonkeyPatch) -> None:
    assert event_loop_name("asyncio") == "asyncio"
    monkeypatch.setattr(runner, "uvloop_available", lambda: True)
    assert event_loop_name("auto") == event_loop_name("uvloop") == "uvloop"
    assert uvicorn_config(object(), Settings(event_loop="auto")).loop == "uvloop"
    assert uvicorn_config(object(), Settings()).loop == "asyncio"
    monkeypatch.setattr(runner, "uvloop_available", lambda: False)
    assert event_loop_name("auto") == "asyncio"
    with pytest.raises(RuntimeError, match="uvloop is not installed"):
        event_loop_name("uvloop")


def test_a_bad_value_names_the_flag_and_the_variable(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("DISCO_PORT", "abc")
    with pytest.raises(SystemExit):
        main([])
    assert "--port / DISCO_PORT: " in capsys.readouterr().err


def test_token_never_shows_in_settings_repr() -> None:
    assert "hunter2" not in repr(settings_for(["--admin-token", "hunter2"]))


@pytest.mark.parametrize(
    ("argv", "env"),
    [
        (["--port", "70000"], {}),
        (["--port", "http"], {}),
        ([], {"DISCO_PORT": "abc"}),
        (["--max-body-mb", "0"], {}),
        (["--max-frame-mb", "-1"], {}),
        (["--round-deadline", "0"], {}),
        (["--log-level", "loud"], {}),
        ([], {"DISCO_NO_DEFAULT_TASKS": "maybe"}),
        (["--unknown-flag"], {}),
        (["--ssl-keyfile", "key.pem"], {}),
        (["--ssl-certfile", "/nonexistent/cert.pem"], {}),
        ([], {"DISCO_SSL_CERTFILE": "/nonexistent/cert.pem"}),
    ],
)
def test_bad_values_exit_with_usage_error(
    argv: list[str],
    env: dict[str, str],
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    for name in [n for n in os.environ if n.startswith("DISCO_")]:
        monkeypatch.delenv(name)
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    with pytest.raises(SystemExit) as exit_info:
        main(argv)
    assert exit_info.value.code == 2
    assert "disco-server: error:" in capsys.readouterr().err


def _console_script() -> list[str]:
    script = Path(sys.executable).parent / "disco-server"
    return [str(script)] if script.exists() else [sys.executable, "-m", "disco.cli.server"]


@pytest.mark.parametrize(
    ("stop_signal", "exit_codes"),
    [(signal.SIGINT, {0}), (signal.SIGTERM, {0, -signal.SIGTERM})],
)
def test_console_script_starts_serves_and_stops(
    tmp_path: Path, stop_signal: signal.Signals, exit_codes: set[int]
) -> None:
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("DISCO_")}
    log_path = tmp_path / "server.log"
    with log_path.open("wb") as log:
        process = subprocess.Popen(
            [
                *_console_script(),
                "--port",
                str(port),
                "--data-dir",
                str(tmp_path / "data"),
                "--no-default-tasks",
                "--log-level",
                "info",
            ],
            stdout=log,
            stderr=subprocess.STDOUT,
            env=env,
        )
        try:
            deadline = time.monotonic() + 60
            response = None
            while time.monotonic() < deadline and process.poll() is None:
                try:
                    response = httpx.get(f"http://127.0.0.1:{port}/", timeout=2)
                    break
                except httpx.TransportError:
                    time.sleep(0.1)
            assert response is not None, log_path.read_text()
            assert response.status_code == 200 and "disco" in response.text
            assert httpx.get(f"http://127.0.0.1:{port}/tasks", timeout=5).json() == []
        finally:
            process.send_signal(stop_signal)
            try:
                process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(timeout=5)
    output = log_path.read_text()
    assert f"starting on http://127.0.0.1:{port}" in output
    assert "admin token not set" in output
    assert process.returncode in exit_codes, output
    assert "Traceback" not in output
