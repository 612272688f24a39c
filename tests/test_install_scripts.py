"""The install steps of `scripts/main_job.sh` and `.ci/run` (`scripts/python_env.sh`) on machines unlike ours: only
`python3` on PATH, a Python that cannot make virtual environments, an environment that already has torch."""

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def python_env(target: Path, path: str, **env) -> subprocess.CompletedProcess:
    """`python_env target` in a bash whose PATH is `path`, printing the interpreter it chose."""
    script = f'. scripts/python_env.sh && python_env "{target}" && echo "PY=$PY"'
    return subprocess.run(
        ["bash", "-c", script],
        cwd=ROOT,
        capture_output=True,
        text=True,
        env={"HOME": os.environ.get("HOME", "/root"), "PATH": path, **env},
        timeout=300,
    )


def fake_bin(tmp_path: Path, name: str, script: str) -> Path:
    folder = tmp_path / "bin"
    folder.mkdir(exist_ok=True)
    (folder / name).write_text("#!/bin/sh\n" + script)
    (folder / name).chmod(0o755)
    return folder


def test_a_python3_that_cannot_make_environments_gets_the_apt_line(tmp_path):
    """Debian without python3-venv: `python3 -m venv` fails, and the script says what to install."""
    folder = fake_bin(tmp_path, "python3", 'if [ "$1" = "-m" ] && [ "$2" = "venv" ]; then exit 1; fi\nexit 0\n')
    result = python_env(tmp_path / "env", f"{folder}:/usr/bin:/bin")
    assert result.returncode != 0
    assert "sudo apt-get install python3-venv" in result.stderr
    assert not (tmp_path / "env").exists()


def test_no_python_at_all_is_named(tmp_path):
    empty = tmp_path / "empty"
    empty.mkdir()
    for tool in ("bash", "rm", "dirname"):
        (empty / tool).symlink_to(f"/bin/{tool}" if Path(f"/bin/{tool}").exists() else f"/usr/bin/{tool}")
    result = python_env(tmp_path / "env", str(empty))
    assert result.returncode != 0 and "no python3 on this machine" in result.stderr


def test_an_active_environment_with_torch_is_used_as_it_is(tmp_path):
    """A user's activated environment that has torch: no environment is made, nothing is installed."""
    venv = Path(sys.prefix)
    result = python_env(tmp_path / "env", f"{venv / 'bin'}:/usr/bin:/bin", VIRTUAL_ENV=str(venv))
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip().endswith(f"PY={venv}/bin/python")
    assert not (tmp_path / "env").exists()


def test_the_scripts_call_python3_or_the_environment_never_a_bare_python():
    """`python` does not exist on Debian and Ubuntu: the scripts go through python_env's interpreter."""
    for script in (ROOT / "scripts" / "main_job.sh", ROOT / ".ci" / "run"):
        lines = [line.strip() for line in script.read_text().splitlines() if not line.strip().startswith("#")]
        assert not [line for line in lines if line.startswith(("python ", "pip "))], script
        assert "python_env" in script.read_text()
