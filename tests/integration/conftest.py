from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.integration.harness import DEMO, mediazen_emulator


@pytest.fixture(scope="session")
def mediazen_url() -> Iterator[str]:
    """One emulator for the session (its Vosk model takes seconds to load), on the demo's vocabulary."""
    from ivr.dialplan.loader import load_dialplan

    with mediazen_emulator(load_dialplan(DEMO).phrases()) as url:
        yield url
