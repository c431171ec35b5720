# One image for the workers and the API (the command differs), on the Python the tests run.
FROM python:3.11.11-slim-bookworm

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

WORKDIR /app
COPY pyproject.toml README.md ./
COPY rte ./rte
COPY workflows ./workflows
COPY activities ./activities
COPY worker ./worker
COPY api ./api
RUN pip install . && useradd --create-home --uid 10001 rte

# Not root: the data folder (health reports, a SQLite store if no RTE_DATABASE_URL) is the user's.
USER rte
ENV RTE_DATA_DIR=/home/rte/data
RUN mkdir -m 0700 /home/rte/data
EXPOSE 8000
CMD ["rte", "worker"]
