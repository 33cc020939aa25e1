# syntax=docker/dockerfile:1
# One image for every Fly process (web, worker, beat, monitor); fly.toml picks the command.
# Two stages: "build" makes the virtualenv from the hashed lock, "runtime" is a clean slim image
# with that virtualenv and the app only (no pip cache, no build leftovers, nothing installed as
# the user the app runs as).

# Both stages start from this one, so the virtualenv runs on the interpreter it was made with.
FROM python:3.11-slim AS base


FROM base AS build

ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

# The same path as in the runtime stage: a virtualenv's scripts name their interpreter by path.
RUN python -m venv /opt/venv
COPY requirements.txt /tmp/requirements.txt
# Exactly the lock: every package pinned, every file checked against its hash. Wheels only:
# every locked package ships one for this platform, so no compiler is needed, and a release
# without one fails here instead of building from source with whatever is at hand.
RUN /opt/venv/bin/python -m pip install --require-hashes --only-binary :all: -r /tmp/requirements.txt


FROM base AS runtime

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    VIRTUAL_ENV=/opt/venv \
    PATH=/opt/venv/bin:$PATH \
    VAR_DIR=/app/var \
    PORT=8000

WORKDIR /app
RUN groupadd --system app && useradd --system --gid app --home-dir /app --shell /usr/sbin/nologin app

COPY --from=build /opt/venv /opt/venv
# The code belongs to root and is only read by the app; what it writes goes to VAR_DIR (and /tmp).
COPY . .
# Static files are collected at build time with a throwaway key; whitenoise serves them.
RUN SECRET_KEY=collectstatic-only python manage.py collectstatic --noinput -v0 \
    && mkdir -p /app/var \
    && chown -R app:app /app/var

USER app
EXPOSE 8000
HEALTHCHECK --interval=30s --timeout=3s --start-period=20s \
  CMD python -c "import os, urllib.request; urllib.request.urlopen(f'http://127.0.0.1:{os.environ.get(\"PORT\", \"8000\")}/healthz', timeout=2)"
CMD ["gunicorn", "-c", "gunicorn.conf.py", "adsplatform.wsgi"]
