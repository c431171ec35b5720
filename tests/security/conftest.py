"""Security tests run the real API (uvicorn on 127.0.0.1) with a real worker on the session's
Temporal dev server; the least-privilege tests share the API fixtures of tests/api."""

from tests.api.conftest import _uvicorn, api_server, api_settings

__all__ = ["_uvicorn", "api_server", "api_settings"]
