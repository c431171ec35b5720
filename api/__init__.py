"""The FastAPI facade: one router per area, SSE streams, auth."""
