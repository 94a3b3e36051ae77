# The Vigie worker / connector image for the production-shaped stack (docker-compose.yml).
FROM python:3.11-slim
WORKDIR /app
COPY pyproject.toml README.md ./
COPY schemas ./schemas
COPY connectors ./connectors
COPY streams ./streams
COPY sinks ./sinks
COPY dashboards ./dashboards
COPY vigie ./vigie
RUN pip install --no-cache-dir .
USER nobody
ENTRYPOINT ["vigie"]
CMD ["worker"]
