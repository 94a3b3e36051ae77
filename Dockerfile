# The Vigie worker / connector image for the production-shaped stack (docker-compose.yml).
FROM python:3.11-slim
# Logs straight to `docker compose logs`; error lines are not wrapped at 80 columns.
ENV PYTHONUNBUFFERED=1 COLUMNS=200
WORKDIR /app
COPY pyproject.toml README.md ./
COPY schemas ./schemas
COPY connectors ./connectors
COPY streams ./streams
COPY sinks ./sinks
COPY dashboards ./dashboards
COPY vigie ./vigie
# The mssql extra: SQL Server sources (pymssql's wheel bundles FreeTDS, no ODBC driver needed).
# A fixed, unprivileged user owns /data, so a new named volume mounted there is writable by it
# (Docker copies the directory's ownership into an empty volume).
RUN pip install --no-cache-dir '.[mssql]' \
    && groupadd --system --gid 10001 vigie \
    && useradd --system --uid 10001 --gid vigie --home-dir /data --no-create-home vigie \
    && mkdir -p /data \
    && chown vigie:vigie /data \
    && chmod 0750 /data
USER vigie
VOLUME ["/data"]
ENTRYPOINT ["vigie"]
CMD ["worker"]
