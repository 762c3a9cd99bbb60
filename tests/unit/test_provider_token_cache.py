"""The APS hook turns the cross-process token cache on by default, per user, unless the connection says no."""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path

import pytest
from airflow.sdk import Connection

from aps_provider.hooks.aps import TOKEN_CACHE_DIR_ENV, config_from_connection, default_token_cache_dir


def aps_connection(**extra: object) -> Connection:
    return Connection(conn_id="aps_test", conn_type="aps", login="my-client", password="s3cr3t",
                      extra=json.dumps(extra) if extra else None)


def test_default_is_a_per_user_directory(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(TOKEN_CACHE_DIR_ENV, raising=False)
    expected = Path(tempfile.gettempdir()) / f"aps-token-cache-{os.getuid()}"
    assert default_token_cache_dir() == expected
    assert config_from_connection(aps_connection()).token_cache_dir == expected


def test_environment_variable_moves_the_default(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv(TOKEN_CACHE_DIR_ENV, str(tmp_path))
    assert config_from_connection(aps_connection(region="EMEA")).token_cache_dir == tmp_path


@pytest.mark.parametrize("off", [None, False, ""])
def test_connection_extra_can_switch_it_off(off: object) -> None:
    assert config_from_connection(aps_connection(token_cache_dir=off)).token_cache_dir is None


def test_connection_extra_can_choose_the_directory(tmp_path: Path) -> None:
    config = config_from_connection(aps_connection(token_cache_dir=str(tmp_path / "tokens")))
    assert config.token_cache_dir == tmp_path / "tokens"


def test_a_bad_value_names_the_connection_not_the_secret() -> None:
    with pytest.raises(ValueError, match="aps_test") as caught:
        config_from_connection(aps_connection(token_cache_dir=["not", "a", "path"]))
    assert "s3cr3t" not in str(caught.value)
