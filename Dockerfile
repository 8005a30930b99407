# kiroku's service image (used by docker-compose.yml).
FROM python:3.11-slim
WORKDIR /app
COPY pyproject.toml README.md ./
COPY api ./api
COPY domain ./domain
COPY projections ./projections
COPY consumers ./consumers
COPY kiroku ./kiroku
COPY schemas ./schemas
RUN pip install --no-cache-dir . && useradd --system --home /app kiroku
USER kiroku
ENTRYPOINT ["kiroku"]
CMD ["run"]
