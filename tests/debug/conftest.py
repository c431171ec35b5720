"""The API fixtures (a served app with a worker and one key per role) for the debug API tests."""

from tests.api.conftest import _uvicorn, api_server, api_settings

__all__ = ["_uvicorn", "api_server", "api_settings"]
