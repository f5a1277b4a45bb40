# Rendered by Slipway for a Python app; it is not part of the app's files.
# Dependencies are installed in a build stage (compilers and headers) and copied
# into the run stage before the code, so a push that changes only code reuses
# every layer before the code copy.
FROM slipway/python:3.11-build AS build
LABEL "slipway.app"="demo" \
      "slipway.managed"="1"
ENV PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_PROGRESS_BAR=off \
    PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin
WORKDIR /app
RUN ["python3", "-m", "venv", "--without-pip", "/app/.venv"]
COPY ["requirements.txt", "./"]
RUN ["python3", "-m", "pip", "--python", "/app/.venv/bin/python", "install", "-r", "requirements.txt", "gunicorn"]

FROM slipway/python:3.11
LABEL "slipway.app"="demo" \
      "slipway.managed"="1"
ENV PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_PROGRESS_BAR=off \
    VIRTUAL_ENV=/app/.venv \
    PATH=/app/.venv/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin
RUN useradd --uid 10001 --user-group --home-dir /app --no-create-home \
        --shell /usr/sbin/nologin app \
 && install -d -o 10001 -g 10001 /app
WORKDIR /app
COPY --from=build /app/.venv /app/.venv
USER 10001
COPY --chown=10001:10001 . .
