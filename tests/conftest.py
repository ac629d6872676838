"""Fixtures shared by the suite."""
from __future__ import annotations

import freezegun
import freezegun.config
import pytest


@pytest.fixture
def threads_follow_freezegun():
    """Make threads started by the code under test see freezegun's time too.

    freezegun answers with the real time to any call made within a few frames of the
    ``threading`` module (its default ignore list), so a background thread such as a billing
    pull would read today's real date while the test froze another: such a test passes only
    while the real month matches the frozen one. Use with ``freeze_time(..., tick=True)`` so
    waits in those threads still advance.
    """
    freezegun.configure(default_ignore_list=[m for m in freezegun.config.DEFAULT_IGNORE_LIST if m != "threading"])
    yield
    freezegun.config.reset_config()
