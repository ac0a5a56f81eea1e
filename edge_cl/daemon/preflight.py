"""Checks of a validated config against the machine, run by both `edge-cl check-config` and `edge-cl run`
before anything starts, so that the two agree and every message names the key and the file: the files and
variables it reads, the directories it writes (edge_cl.daemon.state_dirs), the byte budget
(edge_cl.daemon.budget_plan). Every problem is reported at once."""

from __future__ import annotations

import os

from edge_cl.config import Config, ConfigError


def problems(cfg: Config) -> list[str]:
    """Everything ``run`` would trip over before learning; empty when fine."""
    from edge_cl.daemon import budget_plan, state_dirs

    return input_problems(cfg) + state_dirs.problems(cfg) + budget_plan.problems(cfg)


def input_problems(cfg: Config) -> list[str]:
    """What is wrong with the files and environment variables the config reads."""
    found: list[str] = []
    b = cfg.broker
    for key in ("ca_file", "cert_file", "key_file", "password_file"):
        path = getattr(b, key)
        if path is None:
            continue
        if not path.is_file():
            what = "is a directory" if path.is_dir() else "does not exist"
            found.append(f"broker.{key}={str(path)!r}: the file {what}; fix the path or remove the key")
        elif not os.access(path, os.R_OK):
            found.append(f"broker.{key}={str(path)!r}: the file is not readable by this user (uid {os.getuid()}); "
                         "fix its owner or mode")
    if b.password_env is not None and b.password_env not in os.environ:
        found.append(f"broker.password_env={b.password_env!r}: the environment variable is not set; export it "
                     "(systemd: Environment= or EnvironmentFile=) or use broker.password_file")
    return found


def check(cfg: Config) -> None:
    """Raise :class:`ConfigError` listing every problem :func:`problems` finds."""
    found = problems(cfg)
    if found:
        raise ConfigError("; ".join(found) if len(found) == 1 else "\n  " + "\n  ".join(found))
