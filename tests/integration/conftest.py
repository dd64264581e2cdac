import pytest

from stripe_sitecore.store import StateStore


@pytest.fixture
def store(state_db_url):
    """A migrated state store on each supported database (see ``state_db_url``)."""
    state = StateStore.from_url(state_db_url)
    state.migrate()
    yield state
    state.dispose()
