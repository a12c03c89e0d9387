# The Riskmon stream worker (and its one-shot `riskmon topics` job), for docker-compose.yml.
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    RISKMON_ENV=prod \
    RISKMON_CONTRACT_DIR=/app/config/contract \
    RISKMON_WORKER__DATA_DIR=/app/data

WORKDIR /app

COPY pyproject.toml README.md ./
COPY riskmon ./riskmon
COPY streams ./streams
COPY detectors ./detectors
COPY rules ./rules
RUN pip install . \
    && useradd --system --create-home --home-dir /home/riskmon riskmon \
    && mkdir -p /app/data \
    && chown riskmon /app/data
COPY config ./config

USER riskmon
EXPOSE 6066
CMD ["riskmon", "worker"]
