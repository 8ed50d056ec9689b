#!/usr/bin/env bash
# The baseline: what a user would write instead of the agent. Plain, serial bash; one step after
# the other, no parallelism, no reuse between runs (a re-run does everything again).
#
#   tags (IMDSv2, curl) -> secrets (AWS CLI + jq -> env file) -> git clone --depth 1 -> npm ci
#   -> npm run build (when package.json has one) -> pm2 restart-or-start + pm2 save
#   -> curl loop on /health
#
# It runs as root (the agent runs repo code as its service user; this script does not bother).
# Inputs, from the environment (bench/run.mjs sets them):
#   BASE_ROOT         everything lives under it: srv/<service> (the clone), etc/<service>.env,
#                     pm2/ (PM2_HOME), home/ (HOME: npm's cache and .npmrc)
#   IMDS_ENDPOINT     instance metadata (IMDSv2), e.g. http://127.0.0.1:PORT
#   AWS_ENDPOINT      the AWS endpoint (moto); the Debian AWS CLI 2.9 predates AWS_ENDPOINT_URL,
#                     so it is passed with --endpoint-url
#   PORT              the port the service listens on
#   SERVICE, REPOSITORY   optional: override the Service / Repository tags (several services on
#                     one instance)
#   BENCH_TIMINGS     optional: file to which each step appends "<step> <milliseconds>"
#   BASELINE_ONLY     optional: "secrets" stops after the secrets step (the key-count scale test)
#   STATIC_DIR        optional: serve this directory of the build with `pm2 serve --spa` (the
#                     admin panel) instead of starting server.js
#   HEALTH_PATH       optional: the path polled for health (default /health)
set -euo pipefail

: "${BASE_ROOT:?}" "${IMDS_ENDPOINT:?}" "${AWS_ENDPOINT:?}" "${PORT:?}"
export PM2_HOME="$BASE_ROOT/pm2" HOME="$BASE_ROOT/home" AWS_PAGER=""

# step timing without forking (bash 5's $EPOCHREALTIME is "seconds.microseconds")
now_ms() { local t=${EPOCHREALTIME/./}; echo $((t / 1000)); }
t0=$(now_ms)
mark() { # mark <step>: time since the previous mark
  local t; t=$(now_ms)
  if [ -n "${BENCH_TIMINGS:-}" ]; then echo "$1 $((t - t0))" >>"$BENCH_TIMINGS"; fi
  t0=$t
}

# 1. who am I: tags from instance metadata (IMDSv2)
token=$(curl -fsS -X PUT -H 'X-aws-ec2-metadata-token-ttl-seconds: 300' "$IMDS_ENDPOINT/latest/api/token")
md() { curl -fsS -H "X-aws-ec2-metadata-token: $token" "$IMDS_ENDPOINT/latest/meta-data/$1"; }
region=$(md placement/region)
service=${SERVICE:-$(md tags/instance/Service)}
environment=$(md tags/instance/Environment)
repository=${REPOSITORY:-$(md tags/instance/Repository)}
case "$environment" in
  test) branch='test' ;;
  stage) branch=stage ;;
  prod) branch=main ;;
  *) echo "unknown environment $environment" >&2; exit 2 ;;
esac
mark tags

# 2. secrets: the Secrets Manager JSON object and every parameter under the path -> env file
aws() { command aws --endpoint-url "$AWS_ENDPOINT" --region "$region" --output json "$@"; }
env_file="$BASE_ROOT/etc/$service.env"
mkdir -p "$BASE_ROOT/etc"
umask 077
aws secretsmanager get-secret-value --secret-id "$environment/$service" \
  | jq -r '.SecretString | fromjson | to_entries[] | "\(.key)=\(.value | tostring | @sh)"' >"$env_file.tmp"
prefix="/$environment/$service/"
aws ssm get-parameters-by-path --path "$prefix" --recursive --with-decryption \
  | jq -r --arg p "$prefix" '.Parameters[] | "\(.Name | ltrimstr($p) | gsub("[/.-]"; "_") | ascii_upcase)=\(.Value | @sh)"' >>"$env_file.tmp"
mv "$env_file.tmp" "$env_file"
umask 022
mark secrets
[ "${BASELINE_ONLY:-}" = secrets ] && exit 0

# 3. the code: a fresh shallow clone of the branch
app_dir="$BASE_ROOT/srv/$service"
rm -rf "$app_dir"
mkdir -p "$BASE_ROOT/srv"
git clone --quiet --depth 1 --branch "$branch" "$repository" "$app_dir"
mark clone

# 4. dependencies (same flags as the agent; npm's cache and offline=true come from $HOME)
(cd "$app_dir" && npm ci --no-audit --no-fund --loglevel=error >/dev/null)
mark npm_ci

# 4b. the build, when there is one (as the agent's manifest runs it: npm run build, production)
if jq -e '.scripts.build' "$app_dir/package.json" >/dev/null; then
  (cd "$app_dir" && NODE_ENV=production npm run build --silent >/dev/null)
fi
mark build

# 5. PM2: restart with the new environment, or start the first time; save for resurrection
set -a
# shellcheck disable=SC1090
. "$env_file"
set +a
export PORT
if ! pm2 restart "$service" --update-env >/dev/null 2>&1; then
  if [ -n "${STATIC_DIR:-}" ]; then
    pm2 serve "$app_dir/$STATIC_DIR" "$PORT" --spa --name "$service" >/dev/null
  else
    pm2 start "$app_dir/server.js" --name "$service" >/dev/null
  fi
fi
pm2 save --force >/dev/null
mark pm2

# 6. health: poll every 250 ms (the agent's interval) for up to 60 s
deadline=$((SECONDS + 60))
until curl -fs -o /dev/null --max-time 2 "http://127.0.0.1:$PORT${HEALTH_PATH:-/health}"; do
  if [ $SECONDS -ge $deadline ]; then echo "health check failed" >&2; exit 1; fi
  sleep 0.25
done
mark health
