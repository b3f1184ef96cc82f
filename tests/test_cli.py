"""The ``fta`` command line: check-config and simulate, in-process and once as a real process."""

from __future__ import annotations

import io
import subprocess
import sys
from pathlib import Path

import pytest

from deployments.cli import EXIT_CONFIG, main
from fta import __version__
from fta.settings import Settings
from tests.conftest import write


def run(*argv: str) -> tuple[int, str]:
    out = io.StringIO()
    code = main(list(argv), out=out)
    return code, out.getvalue()


def settings_table(output: str) -> dict[str, str]:
    """The name/value rows printed by check-config (up to the blank line)."""
    rows = {}
    for line in output.split("\n\n")[0].splitlines():
        name, _, value = line.partition(" ")
        rows[name] = value.strip()
    return rows


def check_config(source: Path, destination: Path, *extra: str) -> tuple[int, str]:
    return run("check-config", "--source-path", str(source), "--destination-path", str(destination), *extra)


def test_check_config_prints_every_setting(source: Path, destination: Path) -> None:
    code, output = check_config(source, destination, "--polling-interval-seconds", "7")
    assert code == 0
    rows = settings_table(output)
    assert list(rows) == list(Settings.model_fields)
    assert rows["source_path"] == str(source)
    assert rows["destination_path"] == str(destination)
    assert rows["polling_interval_seconds"] == "7.0"
    assert rows["file_stable_time_seconds"] == "120.0"
    assert "configuration OK; destination reachable" in output
    assert "GB free" in output
    assert list(destination.iterdir()) == []  # the write probe cleaned up after itself
    assert not Path("logs").exists()


def test_check_config_reports_an_unreachable_destination_but_exits_0(source: Path, tmp_path: Path) -> None:
    missing = tmp_path / "nas-not-mounted"
    code, output = check_config(source, missing)
    assert code == 0
    assert "configuration OK; destination not reachable now:" in output
    assert str(missing) in output.splitlines()[-1]
    assert not missing.exists()


def test_check_config_reports_a_missing_marker(source: Path, destination: Path) -> None:
    code, output = check_config(source, destination, "--destination-marker", ".online")
    assert code == 0
    assert "not reachable now: marker file .online is missing" in output
    write(destination / ".online", b"")
    assert "destination reachable" in check_config(source, destination, "--destination-marker", ".online")[1]


@pytest.mark.parametrize(
    "bad",
    [
        ["--file-stable-time-seconds", "-1"],
        ["--max-retry-attempts", "three"],
        ["--log-level", "loud"],
        ["--destination-marker", "../x"],
    ],
)
def test_invalid_config_exits_2_with_one_line_and_writes_nothing(
    source: Path, destination: Path, capsys: pytest.CaptureFixture[str], bad: list[str]
) -> None:
    code, output = check_config(source, destination, *bad)
    assert code == EXIT_CONFIG
    assert output == ""
    err = capsys.readouterr().err
    assert err.count("\n") == 1
    assert err.startswith("fta: invalid configuration: ")
    assert list(destination.iterdir()) == []
    assert list(Path.cwd().iterdir()) == []  # no logs/ folder, nothing else


def test_invalid_dotenv_is_reported_like_any_invalid_config(
    source: Path, destination: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    write(Path("custom.env"), b"FTA_POLING_INTERVAL_SECONDS=5\n")
    code, _ = check_config(source, destination, "--env-file", "custom.env")
    assert code == EXIT_CONFIG
    err = capsys.readouterr().err
    assert err.startswith("fta: invalid configuration: unknown setting FTA_POLING_INTERVAL_SECONDS")
    assert err.count("\n") == 1


def test_options_override_environment_and_dotenv(
    source: Path, destination: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    write(Path(".env"), b"FTA_MAX_RETRY_ATTEMPTS=5\nFTA_VERIFY=size\n")
    monkeypatch.setenv("FTA_MAX_RETRY_ATTEMPTS", "6")
    rows = settings_table(check_config(source, destination)[1])
    assert (rows["max_retry_attempts"], rows["verify"]) == ("6", "size")
    rows = settings_table(check_config(source, destination, "--max-retry-attempts", "7", "--verify", "checksum")[1])
    assert (rows["max_retry_attempts"], rows["verify"]) == ("7", "checksum")


def test_boolean_and_list_options(source: Path, destination: Path) -> None:
    rows = settings_table(check_config(source, destination)[1])
    assert rows["use_temporary_file"] == "True"
    assert rows["require_mount"] == "False"
    extra = ["--no-use-temporary-file", "--stability-lock", "--exclude", "a", "--exclude", "b"]
    rows = settings_table(check_config(source, destination, *extra)[1])
    assert rows["use_temporary_file"] == "False"
    assert rows["stability_lock"] == "True"
    assert rows["exclude"] == "a,b"


@pytest.mark.parametrize(("source_flag", "destination_flag"), [("--source", "--destination"), ("--source", "--dest")])
def test_source_and_destination_aliases(
    source: Path, destination: Path, source_flag: str, destination_flag: str
) -> None:
    code, output = run("check-config", source_flag, str(source), destination_flag, str(destination))
    assert code == 0
    rows = settings_table(output)
    assert (rows["source_path"], rows["destination_path"]) == (str(source), str(destination))


def test_version_and_missing_command(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as done:
        main(["--version"])
    assert done.value.code == 0
    assert capsys.readouterr().out.strip() == f"fta {__version__}"
    with pytest.raises(SystemExit) as done:
        main([])
    assert done.value.code == 2


def test_simulate_writes_exactly_size_bytes(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    target = tmp_path / "out" / "clip.mxf"
    code, output = run("simulate", str(target), "--size", "64KiB", "--seconds", "0.05")
    assert code == 0
    assert output.strip() == str(target)
    assert target.stat().st_size == 64 * 1024
    assert "100.0%" in capsys.readouterr().err  # the progress bar ends full


def test_simulate_count_writes_numbered_files(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    folder = tmp_path / "out"
    code, output = run(
        "simulate", str(folder / "clip.mxf"), "--size", "1000", "--seconds", "0.05", "--count", "3", "--quiet"
    )
    assert code == 0
    expected = [folder / f"clip-00{i}.mxf" for i in (1, 2, 3)]
    assert output.split() == [str(p) for p in expected]
    assert sorted(folder.iterdir()) == expected
    assert all(p.stat().st_size == 1000 for p in expected)
    assert capsys.readouterr().err == ""  # --quiet: no progress bar


def test_simulate_with_a_pause(tmp_path: Path) -> None:
    target = tmp_path / "clip.mxf"
    extra = ["--pause-at", "50%", "--pause-seconds", "0.01", "--quiet"]
    assert run("simulate", str(target), "--size", "2KB", "--seconds", "0.05", *extra)[0] == 0
    assert target.stat().st_size == 2000


def test_simulate_refuses_to_overwrite(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    folder = tmp_path / "out"
    existing = write(folder / "clip-002.mxf", b"keep me")
    code, output = run("simulate", str(folder / "clip.mxf"), "--size", "10", "--count", "3", "--seconds", "0.05")
    assert code == EXIT_CONFIG
    assert output == ""
    err = capsys.readouterr().err
    assert err.startswith("fta: invalid configuration: refusing to overwrite")
    assert str(existing) in err
    assert existing.read_bytes() == b"keep me"
    assert sorted(folder.iterdir()) == [existing]  # none of the others was started


@pytest.mark.parametrize(
    "bad",
    [
        ["--size", "lots"],
        ["--size", "-5"],
        ["--size", "5XB"],
        ["--seconds", "-1"],
        ["--seconds", "soon"],
        ["--pause-at", "150%"],
        ["--pause-seconds", "-2"],
        ["--count", "0"],
    ],
)
def test_simulate_bad_arguments_exit_2(tmp_path: Path, capsys: pytest.CaptureFixture[str], bad: list[str]) -> None:
    code, _ = run("simulate", str(tmp_path / "clip.mxf"), *bad)
    assert code == EXIT_CONFIG
    err = capsys.readouterr().err
    assert err.startswith("fta: invalid configuration: ")
    assert err.count("\n") == 1
    assert list(tmp_path.iterdir()) == [tmp_path / "cwd"]  # nothing written


def test_installed_command_exits_2_with_one_line_on_stderr(tmp_path: Path, destination: Path) -> None:
    script = Path(sys.executable).with_name("fta")
    command = [str(script)] if script.is_file() else [sys.executable, "-m", "deployments.cli"]
    missing = tmp_path / "no-such-source"
    done = subprocess.run(
        [*command, "check-config", "--source", str(missing), "--destination", str(destination)],
        capture_output=True,
        text=True,
        cwd=Path.cwd(),
        timeout=60,
    )
    assert done.returncode == EXIT_CONFIG
    assert done.stdout == ""
    lines = done.stderr.splitlines()
    assert len(lines) == 1, done.stderr
    assert lines[0].startswith("fta: invalid configuration:")
    assert str(missing) in lines[0]
    assert list(destination.iterdir()) == []
    assert list(Path.cwd().iterdir()) == []
