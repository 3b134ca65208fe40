"""`handwerk keys create|list|revoke` as a user runs them (real processes, real SQLite file):
the key is printed once, alone on stdout; `list` shows ids and scopes, never a key."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

from handwerk.access.keys import hash_token, key_id_of


def handwerk(data_dir: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("HANDWERK_")}
    env["HANDWERK_DATA_DIR"] = str(data_dir)
    return subprocess.run([sys.executable, "-m", "handwerk", "keys", *args], env=env,
                          capture_output=True, text=True, timeout=120)


def test_create_list_revoke(tmp_path: Path) -> None:
    created = handwerk(tmp_path, "create", "--name", "ci", "--scope", "write", "--scope", "read")
    assert created.returncode == 0, created.stderr
    token = created.stdout.strip()
    key_id = key_id_of(token)
    assert key_id is not None and "shown only now" in created.stderr

    listed = handwerk(tmp_path, "list")
    assert listed.returncode == 0, listed.stderr
    assert key_id in listed.stdout and "read write" in listed.stdout and "ci" in listed.stdout
    assert token not in listed.stdout + listed.stderr
    assert hash_token(token) not in listed.stdout

    assert handwerk(tmp_path, "revoke", key_id).returncode == 0
    assert key_id not in handwerk(tmp_path, "list").stdout
    assert re.search(rf"{key_id}.*ci", handwerk(tmp_path, "list", "--all").stdout)
    again = handwerk(tmp_path, "revoke", key_id)
    assert again.returncode == 1 and "no active key" in again.stderr


def test_unknown_scope_is_refused(tmp_path: Path) -> None:
    done = handwerk(tmp_path, "create", "--name", "x", "--scope", "root")
    assert done.returncode == 2 and "unknown scope" in done.stderr and not done.stdout
