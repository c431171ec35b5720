"""The end-to-end tests use the API fixtures: a real app, Temporal dev server, worker and store."""

from tests.api.conftest import _uvicorn, api_server, api_settings  # noqa: F401
