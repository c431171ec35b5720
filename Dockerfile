# One image for the worker and the API (the command differs).
FROM python:3.11-slim
WORKDIR /app
COPY pyproject.toml README.md ./
COPY rte ./rte
COPY workflows ./workflows
COPY activities ./activities
COPY worker ./worker
COPY api ./api
RUN pip install --no-cache-dir . && useradd --create-home --uid 10001 rte
USER rte
ENV RTE_DATA_DIR=/home/rte/data
CMD ["rte", "worker"]
