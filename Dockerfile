# One image for every role; the command picks the role (handwerk api | relay | consume).
FROM python:3.11.10-slim-bookworm
WORKDIR /app
ENV PIP_NO_CACHE_DIR=1 HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1
RUN pip install --index-url https://download.pytorch.org/whl/cpu torch==2.13.0
COPY pyproject.toml README.md ./
COPY handwerk ./handwerk
COPY outbox ./outbox
COPY producer ./producer
COPY consumer ./consumer
COPY api ./api
RUN pip install .
RUN useradd --uid 10001 handwerk && mkdir -p /data && chown handwerk /data
USER handwerk
EXPOSE 8000
CMD ["handwerk", "--help"]
