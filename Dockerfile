# The costmeter exporter (and CLI) image, used by docker-compose.yml:
#   docker build -t costmeter .
#   docker run -p 9469:9469 -v costmeter-state:/var/lib/costmeter costmeter
FROM python:3.12-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

# Install the package with pip from the repository (wheels exist for every dependency,
# so no compiler is needed), then drop the sources.
WORKDIR /src
COPY pyproject.toml README.md ./
COPY exporter ./exporter
RUN pip install . && cd / && rm -rf /src

# A non-root user owning the state directory (the ledger and governance log). A named
# volume mounted there starts with this ownership.
RUN useradd --system --uid 10001 --user-group --home-dir /var/lib/costmeter --create-home \
        --shell /usr/sbin/nologin costmeter
USER costmeter
WORKDIR /var/lib/costmeter
ENV COSTMETER_STATE_DIR=/var/lib/costmeter
VOLUME ["/var/lib/costmeter"]

EXPOSE 9469
HEALTHCHECK --interval=15s --timeout=5s --start-period=10s --retries=3 \
    CMD ["python", "-c", "import urllib.request; urllib.request.urlopen('http://127.0.0.1:9469/-/healthy', timeout=4)"]

ENTRYPOINT ["costmeter"]
CMD ["serve"]
