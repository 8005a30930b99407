"""The Dockerfile and docker-compose.yml, checked without Docker (none runs here).

The image is rebuilt as its Dockerfile says, step by step, with no Docker:
its ``COPY`` lines copy the files into an empty directory, ``pip install``
installs what they hold into a directory of its own, and the installed
``kiroku`` command, run from there with Python's site machinery off (so the
work tree, which the development install puts on the path, is out of
reach), must import and work: ``policy init`` against PostgreSQL,
``tokens add``. The compose file's commands must be commands the CLI has,
its environment settings kiroku reads and accepts, and its health check
the API's port and path. What is not checked: the base images, Docker's
networking and volumes, and Kafka in a container.
"""

from __future__ import annotations

import base64
import os
import re
import shlex
import shutil
import subprocess
import sys
import sysconfig
from pathlib import Path
from typing import Any

import pytest
import yaml

from api.routes_ops import router as ops_router
from kiroku.cli import build_parser
from kiroku.settings import Settings
from tests.helpers import ROOT


def _dockerfile() -> list[tuple[str, str]]:
    """The Dockerfile's instructions, as (keyword, arguments); continuation lines joined."""
    text = (ROOT / "Dockerfile").read_text().replace("\\\n", " ")
    steps = []
    for raw in text.splitlines():
        line = raw.strip()
        if line and not line.startswith("#"):
            keyword, _, rest = line.partition(" ")
            steps.append((keyword.upper(), rest.strip()))
    return steps


def _compose() -> dict[str, Any]:
    loaded: dict[str, Any] = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
    return loaded


def _packages_of_the_project() -> set[str]:
    """The top-level packages ``pyproject.toml`` tells setuptools to install."""
    text = (ROOT / "pyproject.toml").read_text()
    found = re.search(r"\[tool\.setuptools\.packages\.find\]\s*include\s*=\s*\[([^\]]*)\]", text)
    assert found, "pyproject.toml names no packages to install"
    patterns = [p.strip().strip('"').rstrip("*") for p in found.group(1).split(",") if p.strip()]
    return {p for p in patterns if (ROOT / p / "__init__.py").exists()}


def _built_context(into: Path) -> Path:
    """The image's work directory after the Dockerfile's COPY steps (from the work tree)."""
    workdir = into / "app"
    workdir.mkdir()
    for keyword, args in _dockerfile():
        if keyword == "COPY":
            *sources, target = shlex.split(args)
            assert not any(s.startswith("--") for s in sources), f"COPY flags are not handled: {args}"
            destination = workdir / target
            for source in sources:
                path = ROOT / source
                if path.is_dir():
                    shutil.copytree(path, destination, ignore=shutil.ignore_patterns("__pycache__"))
                else:
                    destination.mkdir(parents=True, exist_ok=True)
                    shutil.copy2(path, destination / path.name)
    return workdir


@pytest.fixture(scope="module")
def image(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """kiroku as the image installs it: the directory pip installed it into (no dependencies)."""
    base = tmp_path_factory.mktemp("image")
    workdir = _built_context(base)
    installs = [args for keyword, args in _dockerfile() if keyword == "RUN" and "pip install" in args]
    assert installs and " . " in installs[0] + " ", "the Dockerfile should install the copied project"
    site = base / "site"
    done = subprocess.run(  # noqa: S603 - this interpreter's pip, on the work tree's files
        [sys.executable, "-m", "pip", "install", "--quiet", "--no-deps", "--target", str(site), str(workdir)],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert done.returncode == 0, f"pip install of the image's files failed:\n{done.stderr[-3000:]}"
    return site


def _in_image(site: Path, code: str, env: dict[str, str], cwd: Path) -> subprocess.CompletedProcess[str]:
    """Runs Python code with only the image's install of kiroku and the dependencies on the path.

    ``-S``: no site machinery, so the development install's path hook to the
    work tree is not read; the dependencies come from this interpreter's
    site-packages, after the image's directory.
    """
    path = os.pathsep.join([str(site), sysconfig.get_paths()["purelib"], sysconfig.get_paths()["platlib"]])
    return subprocess.run(  # noqa: S603 - this interpreter, on this module's own code
        [sys.executable, "-S", "-c", code],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
        cwd=cwd,
        env={"PATH": os.environ.get("PATH", ""), "PYTHONPATH": path, **env},
    )


#: Runs the ``kiroku`` console script the image's install declares, with the given arguments.
_ENTRY_POINT = """
import sys
from importlib.metadata import distribution
dist = distribution("kiroku")
assert str(dist.locate_file("")).startswith(sys.argv[1]), dist.locate_file("")
(script,) = [e for e in dist.entry_points if e.group == "console_scripts" and e.name == "kiroku"]
import kiroku
assert kiroku.__file__.startswith(sys.argv[1]), kiroku.__file__
raise SystemExit(script.load()(sys.argv[2:]))
"""


def _kiroku(site: Path, args: list[str], env: dict[str, str], cwd: Path) -> subprocess.CompletedProcess[str]:
    code = _ENTRY_POINT.replace("sys.argv[1]", repr(str(site))).replace("sys.argv[2:]", repr(args))
    return _in_image(site, code, env, cwd)


def _keys() -> dict[str, str]:
    return {
        "KIROKU_MASTER_KEY": base64.b64encode(os.urandom(32)).decode(),
        "KIROKU_PSEUDONYM_KEY": base64.b64encode(os.urandom(32)).decode(),
    }


def test_the_image_copies_every_package_the_project_installs() -> None:
    copied = {Path(shlex.split(args)[0]).name for keyword, args in _dockerfile() if keyword == "COPY"}
    missing = _packages_of_the_project() - copied
    assert not missing, f"the Dockerfile does not copy {sorted(missing)}"


def test_the_image_runs_kiroku_against_postgres(
    image: Path, tmp_path: Path, postgres_url: str, postgres_schema: str
) -> None:
    env = {"DATABASE_URL": f"{postgres_url}?schema={postgres_schema}", **_keys()}
    env["KIROKU_TOKENS_FILE"] = str(tmp_path / "tokens.json")
    first = _kiroku(image, ["policy", "init"], env, tmp_path)
    assert first.returncode == 0, first.stderr[-3000:]
    again = _kiroku(image, ["policy", "init"], env, tmp_path)
    assert again.returncode == 0, again.stderr[-3000:]
    assert first.stdout != again.stdout, "the second init should find the policy published"
    token = _kiroku(image, ["tokens", "add", "alice", "officer"], env, tmp_path)
    assert token.returncode == 0, token.stderr[-3000:]
    assert "token for alice (role officer)" in token.stdout
    assert (tmp_path / "tokens.json").exists()
    # The service's own modules, the API's included, import from the image, with their data files.
    imports = _in_image(
        image,
        "import api.app, consumers.contract, kiroku.service;"
        "api.app.create_app; consumers.contract.Contract.load(); print('ok')",
        {},
        tmp_path,
    )
    assert imports.returncode == 0 and imports.stdout.strip() == "ok", imports.stderr[-3000:]


def test_the_image_install_is_what_is_run_not_the_work_tree(image: Path, tmp_path: Path) -> None:
    # The check above means something only if a package the image lacks fails to import.
    shutil.copytree(image, tmp_path / "site")
    shutil.rmtree(tmp_path / "site" / "api")
    broken = _kiroku(tmp_path / "site", ["--help"], {}, tmp_path)
    assert broken.returncode != 0
    assert "No module named 'api'" in broken.stderr


def _compose_commands() -> list[tuple[str, list[str]]]:
    """Every kiroku command line the compose file runs or its header tells the user to run."""
    commands = []
    default = [args for keyword, args in _dockerfile() if keyword == "CMD"]
    for name, service in _compose()["services"].items():
        if service.get("build") is None:
            continue
        command = service.get("command")
        commands.append((name, list(command) if command else list(yaml.safe_load(default[-1]))))
    for line in (ROOT / "docker-compose.yml").read_text().splitlines():
        found = re.match(r"#\s+docker compose (?:--profile \S+ )?run --rm (\S+)\s+([^#\s][^#]*)", line)
        if found:  # (a line without arguments runs the service's own command, taken above)
            commands.append((found.group(1), shlex.split(found.group(2))))
    return commands


def test_every_command_the_compose_file_runs_is_one_the_cli_has() -> None:
    commands = _compose_commands()
    assert {name for name, _ in commands} >= {"policy", "kiroku", "publish"}
    assert any(args[:2] == ["tokens", "add"] for _, args in commands), "the header's tokens line was not read"
    parser = build_parser()
    for name, args in commands:
        try:
            parsed = parser.parse_args(args)
        except SystemExit:
            pytest.fail(f"service {name}: `kiroku {' '.join(args)}` is not a command the CLI has")
        assert callable(parsed.func)
    entrypoint = [args for keyword, args in _dockerfile() if keyword == "ENTRYPOINT"]
    assert entrypoint and yaml.safe_load(entrypoint[-1]) == ["kiroku"]


class _Recording(dict[str, str]):
    """An environment that notes every name read from it."""

    def __init__(self, values: dict[str, str]) -> None:
        super().__init__(values)
        self.read: set[str] = set()

    def get(self, key: str, default: Any = None) -> Any:
        self.read.add(key)
        return super().get(key, default)

    def __getitem__(self, key: str) -> str:
        self.read.add(key)
        return super().__getitem__(key)


def _service_environment(service: dict[str, Any], keys: dict[str, str]) -> dict[str, str]:
    """A service's environment with ``${NAME:?...}`` filled from ``keys``, as compose does."""
    env = {}
    for name, value in (service.get("environment") or {}).items():
        text = str(value)
        for match in re.finditer(r"\$\{(\w+)(?::\?[^}]*)?\}", text):
            text = text.replace(match.group(0), keys[match.group(1)])
        env[name] = text
    return env


def test_the_compose_environment_is_what_kiroku_reads_and_accepts() -> None:
    services = _compose()["services"]
    keys = _keys()
    for name, service in services.items():
        if service.get("build") is None:
            continue
        env = _Recording(_service_environment(service, keys))
        settings = Settings.from_env(env)
        unread = set(env) - env.read
        assert not unread, f"service {name} sets {sorted(unread)}, which kiroku does not read"
        assert settings.database.backend == "postgres"
        assert (settings.database.host, settings.database.port) == ("postgres", 5432)
        postgres = services["postgres"]["environment"]
        assert settings.database.dbname == postgres["POSTGRES_DB"]
        assert settings.database.user == postgres["POSTGRES_USER"]
        assert settings.kafka_bootstrap_servers == "kafka:9092"
        assert settings.master_key == base64.b64decode(keys["KIROKU_MASTER_KEY"])
    kiroku = services["kiroku"]
    settings = Settings.from_env(_service_environment(kiroku, keys))
    assert settings.http_host == "0.0.0.0"  # noqa: S104 - inside its container, for the published port
    published = [str(p).rsplit(":", 1)[-1] for p in kiroku["ports"]]
    assert str(settings.http_port) in published, "the API's port is not the one published"
    mounts = [v.split(":", 1)[1] for v in kiroku["volumes"]]
    assert any(settings.tokens_file.is_relative_to(m) for m in mounts), "the tokens file is on no volume"
    health = " ".join(kiroku["healthcheck"]["test"])
    found = re.search(r"http://127\.0\.0\.1:(\d+)(/\w+)", health)
    assert found, "the health check names no URL"
    assert int(found.group(1)) == settings.http_port
    assert found.group(2) in {getattr(route, "path", None) for route in ops_router.routes}


def test_compose_waits_for_what_each_service_needs() -> None:
    services = _compose()["services"]
    needs = services["kiroku"]["depends_on"]
    assert needs["postgres"]["condition"] == "service_healthy"
    assert needs["kafka"]["condition"] == "service_healthy"
    assert needs["policy"]["condition"] == "service_completed_successfully"
    assert services["kafka"]["environment"]["KAFKA_AUTO_CREATE_TOPICS_ENABLE"] == "false"
