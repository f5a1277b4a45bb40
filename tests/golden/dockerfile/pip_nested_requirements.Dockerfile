# Rendered by Slipway for a Python app; it is not part of the app's files.
# Dependencies are installed before the code is copied, so a push that changes
# only code reuses every layer but the last.
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
 && install -d -o 10001 -g 10001 /app \
 && python3 -m venv /app/.venv
WORKDIR /app
COPY ["requirements.txt", "constraints.txt", "./"]
COPY ["requirements/base.txt", "requirements/common.txt", "requirements/"]
RUN ["/app/.venv/bin/pip", "install", "-r", "requirements.txt"]
USER 10001
COPY --chown=10001:10001 . .
