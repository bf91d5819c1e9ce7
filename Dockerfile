FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 PIP_NO_CACHE_DIR=1
WORKDIR /app
# SAML sign-in (gateway/authn/providers/saml.py): pysaml2 checks signatures with xmlsec1
RUN apt-get update && apt-get install -y --no-install-recommends xmlsec1 \
    && rm -rf /var/lib/apt/lists/*
COPY pyproject.toml README.md ./
COPY gateway ./gateway
COPY templates ./templates
RUN pip install . && useradd --system --uid 10001 --no-create-home gateway
USER gateway
EXPOSE 8000
HEALTHCHECK --interval=15s --timeout=3s --retries=3 \
  CMD python -c "import urllib.request,sys; sys.exit(urllib.request.urlopen('http://127.0.0.1:8000/healthz', timeout=2).status != 200)"
CMD ["gateway", "serve", "--config", "/etc/gateway/config.toml", "--host", "0.0.0.0", "--port", "8000"]
