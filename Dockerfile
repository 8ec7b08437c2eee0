# drpilot's worker and webhook image: `drpilot worker`, `drpilot webhook serve ...`.
# Only the product and its dependencies: the sandbox twin (twin/, a distribution of its own,
# with moto, ...) is for rehearsals on a laptop or CI, never in a production image.
# Build: docker build -t drpilot:0.1.0 .
# Pin the base by digest where you build (docker buildx imagetools inspect python:3.11.7-slim-bookworm).
FROM python:3.11.7-slim-bookworm AS build
ENV PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1
WORKDIR /src
COPY pyproject.toml constraints.txt README.md ./
COPY drpilot ./drpilot
COPY workflows ./workflows
COPY activities ./activities
RUN python -m venv /opt/drpilot \
 && /opt/drpilot/bin/pip install -c constraints.txt .

FROM python:3.11.7-slim-bookworm
COPY --from=build /opt/drpilot /opt/drpilot
# The uid/gid the manifests run as (infra/kubernetes: runAsUser 10001).
RUN groupadd --system --gid 10001 drpilot \
 && useradd --system --uid 10001 --gid drpilot --home-dir /tmp --shell /usr/sbin/nologin drpilot
ENV PATH=/opt/drpilot/bin:$PATH PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1
USER 10001:10001
EXPOSE 8787 8788
ENTRYPOINT ["drpilot"]
CMD ["worker"]
