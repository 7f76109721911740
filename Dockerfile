# One image for every service of the chain; the command picks the service:
#   docker run IMAGE python -m services.core_api
FROM python:3.11.14-slim-bookworm AS build
ENV PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1
WORKDIR /src
COPY pyproject.toml constraints.txt README.md ./
COPY services ./services
COPY telemetry ./telemetry
# pip 23.x (a fresh venv's) crashes resolving this set: upgrade it first (TELEMETRY-NOTES, "Install").
RUN python -m venv /opt/venv \
 && /opt/venv/bin/pip install pip==26.3 \
 && /opt/venv/bin/pip install -c constraints.txt .

FROM python:3.11.14-slim-bookworm
ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 PATH=/opt/venv/bin:$PATH \
    FLLM_HOST=0.0.0.0 FLLM_DATA_DIR=/data FLLM_TELEMETRY_FILE=off
RUN apt-get update && apt-get install -y --no-install-recommends bubblewrap libseccomp2 && rm -rf /var/lib/apt/lists/*
RUN useradd --uid 10001 --user-group --no-create-home --shell /usr/sbin/nologin fllm \
 && mkdir /data && chown fllm:fllm /data
COPY --from=build /opt/venv /opt/venv
# The source tree as well: `python -m` runs from /app, so package data (the portal's page) is there too.
WORKDIR /app
COPY services ./services
COPY telemetry ./telemetry
USER 10001:10001
CMD ["python", "-m", "services.core_api"]
