"""The flows' world (sandbox clock, state DB and clients) for the backend tests too."""

from tests.integration.flows.conftest import world  # noqa: F401
