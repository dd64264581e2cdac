from tests.integration.flows.conftest import world  # noqa: F401 - the same world as the flows
