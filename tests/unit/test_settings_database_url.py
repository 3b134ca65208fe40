"""``HANDWERK_DATABASE_URL`` may carry the password (README): Settings never shows it."""

from __future__ import annotations

import logging

import pytest

from handwerk.settings import Settings

URL = "postgresql+asyncpg://handwerk:pw-s3cret@db:5432/handwerk"


def test_a_password_in_the_database_url_never_shows_in_repr_str_or_logs(
        caplog: pytest.LogCaptureFixture) -> None:
    settings = Settings(database_url=URL)
    logging.getLogger("test").warning("settings: %s / %r", settings, settings)
    for shown in (repr(settings), str(settings), caplog.text):
        assert "pw-s3cret" not in shown
        assert "postgresql+asyncpg://handwerk:***@db:5432/handwerk" in shown
    assert settings.database.url == URL  # what the code connects with is unchanged
    assert settings.resolved_database_url == URL


def test_an_unparseable_url_is_hidden_whole() -> None:
    assert "x:y" not in repr(Settings(database_url="::x:y@nonsense"))


def test_the_password_setting_still_goes_into_the_resolved_url() -> None:
    settings = Settings(database_url="postgresql://handwerk@db/handwerk",
                        database_password="pw-s3cret")  # type: ignore[arg-type]
    assert "pw-s3cret" not in repr(settings)
    assert settings.resolved_database_url == "postgresql://handwerk:pw-s3cret@db/handwerk"
