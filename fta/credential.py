"""The local Prefect server's credential: generated once, kept 0600 in ``data_path`` (a folder 0700).

``fta up`` turns on the server's basic authentication with it, and every ``fta``/``check_fta`` command on the
machine reads it to talk to that server. Nothing here imports Prefect.

The files are opened without following a symlink and checked after opening (owner, mode, type), so that another
user who can write a parent folder cannot swap in a file of their own or make the agent write through a link.
"""

from __future__ import annotations

import argparse
import logging
import os
import secrets
import stat as stat_mode
from pathlib import Path
from urllib.parse import urlsplit

from dotenv import dotenv_values

from fta.errors import ConfigError
from fta.settings import ENV_PREFIX, Settings

log = logging.getLogger("fta.credential")

CREDENTIAL_FILE = "api-credential"
USER = "fta"  # the UI's login and curl's -u take the credential as user:password
PRIVATE = 0o077  # group and other bits: none on anything in data_path
LOCAL_HOSTS = {"127.0.0.1", "localhost", "::1"}


class CredentialError(ConfigError):
    """The credential or its folder cannot be made or read safely; one readable line."""


def _mine(path: Path, info: os.stat_result) -> None:
    if info.st_uid != os.geteuid():
        raise CredentialError(
            f"{path} belongs to uid {info.st_uid}, not to this user (uid {os.geteuid()}); "
            "data_path must be a folder of the agent's own"
        )


def private_folder(path: Path) -> None:
    """Make ``path`` a folder 0700 of this user: created so, or an existing one of ours tightened."""
    try:
        path.mkdir(mode=0o700, parents=True, exist_ok=True)
        info = os.stat(path, follow_symlinks=False)
    except OSError as exc:
        raise CredentialError(f"cannot create {path}: {exc.strerror or exc}") from None
    if not stat_mode.S_ISDIR(info.st_mode):
        raise CredentialError(f"{path} is not a folder")
    _mine(path, info)
    if info.st_mode & PRIVATE:
        os.chmod(path, 0o700, follow_symlinks=False)
        log.info("%s was readable by others (mode %o); now 0700", path, stat_mode.S_IMODE(info.st_mode))


def tighten_tree(root: Path) -> None:
    """Remove group and other access below ``root`` (files of an older, world-readable data_path)."""
    for folder, names, files in os.walk(root, followlinks=False):
        for name in [*names, *files]:
            path = os.path.join(folder, name)
            try:
                info = os.stat(path, follow_symlinks=False)
            except FileNotFoundError:  # a journal the server just removed
                continue
            if stat_mode.S_ISLNK(info.st_mode) or info.st_uid != os.geteuid() or not info.st_mode & PRIVATE:
                continue
            os.chmod(path, stat_mode.S_IMODE(info.st_mode) & ~PRIVATE)


def _read_open(fd: int, path: Path) -> str:
    info = os.fstat(fd)
    if not stat_mode.S_ISREG(info.st_mode):
        raise CredentialError(f"{path} is not a regular file")
    _mine(path, info)
    if info.st_mode & PRIVATE:
        os.fchmod(fd, 0o600)
    with os.fdopen(os.dup(fd), encoding="utf-8") as text:
        credential = text.read().strip()
    if not credential or "\n" in credential:
        raise CredentialError(f"{path} does not hold one credential line; remove it and start fta up again")
    return credential


def ensure_credential(data_path: Path) -> str:
    """The credential in ``data_path``, generated (``secrets``) and written 0600 at the first start."""
    path = data_path / CREDENTIAL_FILE
    flags = os.O_NOFOLLOW | os.O_CLOEXEC
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | flags, 0o600)
    except FileExistsError:
        pass
    else:
        with os.fdopen(fd, "w", encoding="utf-8") as out:
            out.write(f"{USER}:{secrets.token_urlsafe(32)}\n")
        log.info("generated the local server's credential in %s", path)
    try:
        fd = os.open(path, os.O_RDONLY | flags)
    except OSError as exc:
        raise CredentialError(f"cannot open {path}: {exc.strerror or exc}") from None
    try:
        return _read_open(fd, path)
    finally:
        os.close(fd)


def read_credential(data_path: Path) -> str | None:
    """The credential ``fta up`` wrote in ``data_path``; None when there is none (no ``fta up`` there yet)."""
    path = data_path / CREDENTIAL_FILE
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
    except FileNotFoundError:
        return None
    except PermissionError:
        raise CredentialError(
            f"cannot read {path}: permission denied (run as the agent's user, or set PREFECT_API_AUTH_STRING)"
        ) from None
    except OSError as exc:
        raise CredentialError(f"cannot read {path}: {exc.strerror or exc}") from None
    try:
        info = os.fstat(fd)
        if not stat_mode.S_ISREG(info.st_mode) or info.st_mode & PRIVATE:
            raise CredentialError(f"{path} is not a private file (mode 0600); not using it")
        with os.fdopen(os.dup(fd), encoding="utf-8") as text:
            return text.read().strip() or None
    finally:
        os.close(fd)


def local_setting(name: str, env_file: str | None = ".env") -> str:
    """One setting as ``fta up`` sees it (environment, then ``.env``, then the default), without validating others.

    The operator commands need only ``data_path`` and ``server_port``; a Nagios check must not fail because the
    source folder of the full settings is not visible to its user.
    """
    key = ENV_PREFIX + name.upper()
    value = os.environ.get(key)
    if value is None and env_file and Path(env_file).is_file():
        value = dotenv_values(env_file).get(key)
    if value is None:
        return str(Settings.model_fields[name].default)
    return value


def is_local_server(api_url: str, port: int) -> bool:
    """Is ``api_url`` the local server of ``fta up`` (loopback, its port)? Only that one gets the credential."""
    try:
        parts = urlsplit(api_url)
        return parts.hostname in LOCAL_HOSTS and parts.port == port
    except ValueError:
        return False


def client_settings(
    data_path: str | None = None,
    api_url: str | None = None,
    auth_string: str | None = None,
    env_file: str | None = ".env",
) -> dict[str, str]:
    """``PREFECT_API_URL`` and ``PREFECT_API_AUTH_STRING`` for a command that reads this machine's agent.

    ``api_url`` and ``auth_string``: what Prefect's settings say (environment, profile), if anything. Without an API
    URL the API is the local server of ``fta up`` (127.0.0.1, ``server_port``). Without an auth string, and only
    for that local server, the credential comes from the file in ``data_path`` (the option, else ``FTA_DATA_PATH``,
    else ``.env`` in the working folder, else ``fta-data``).
    """
    try:
        port = int(local_setting("server_port", env_file))
    except ValueError:
        raise CredentialError(f"server_port: not a number: {local_setting('server_port', env_file)!r}") from None
    api_url = api_url or os.environ.get("PREFECT_API_URL") or f"http://127.0.0.1:{port}/api"
    found = {"PREFECT_API_URL": api_url}
    given = auth_string or os.environ.get("PREFECT_API_AUTH_STRING")
    if given:
        found["PREFECT_API_AUTH_STRING"] = given
    elif is_local_server(api_url, port):
        folder = Path(data_path or local_setting("data_path", env_file)).expanduser()
        credential = read_credential(folder.resolve())
        if credential is not None:
            found["PREFECT_API_AUTH_STRING"] = credential
    return found


def add_client_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--data-path",
        default=None,
        help="data_path of the local fta up, whose credential file is read (default: FTA_DATA_PATH, .env, fta-data)",
    )
