# Rendered by Slipway for a Node.js app; it is not part of the app's files.
# Dependencies are installed in a build stage (node-gyp's compilers and headers)
# and copied into the run stage before the code, so a push that changes only
# code reuses every layer before the code copy.
FROM slipway/node:20-build AS build
LABEL "slipway.app"="demo" \
      "slipway.managed"="1"
ENV NODE_ENV=production \
    npm_config_update_notifier=false \
    npm_config_fund=false \
    npm_config_audit=false \
    YARN_ENABLE_TELEMETRY=0 \
    PATH=/app/node_modules/.bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin
WORKDIR /app
RUN ["npm", "install", "--global", "yarn@1"]
COPY ["package.json", "yarn.lock", "./"]
RUN ["yarn", "install", "--frozen-lockfile", "--production=true", "--non-interactive"]

FROM slipway/node:20
LABEL "slipway.app"="demo" \
      "slipway.managed"="1"
ENV NODE_ENV=production \
    npm_config_update_notifier=false \
    npm_config_fund=false \
    npm_config_audit=false \
    YARN_ENABLE_TELEMETRY=0 \
    PATH=/app/node_modules/.bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin
RUN useradd --uid 10001 --user-group --home-dir /app --no-create-home \
        --shell /usr/sbin/nologin app \
 && install -d -o 10001 -g 10001 /app
WORKDIR /app
RUN ["npm", "install", "--global", "yarn@1"]
COPY --from=build /app /app
COPY --chown=10001:10001 . .
USER 10001
