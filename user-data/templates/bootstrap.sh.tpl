#!/bin/bash
# bootstrap-agent user-data, rendered by {{rendered_by}}.
# Downloads the agent release, checks its sha256, installs Node if needed and the agent under
# /opt/bootstrap-agent/<version>, writes /etc/bootstrap-agent/agent.env and the systemd units, and
# starts bootstrap-agent.service (the boot run) and bootstrap-agent-watch.service (termination,
# spot interruption, warm pool). Safe to run again. Every path is under $PREFIX (empty: /).
# Log: /var/log/bootstrap-agent/user-data.log and the console. Re-render, never edit by hand.
set -euo pipefail
umask 022

PREFIX=${PREFIX:-}
PREFIX=${PREFIX%/}
case $PREFIX in '' | /*) ;; *) echo "user-data: PREFIX must be an absolute path, not $PREFIX" >&2 && exit 2 ;; esac
ARTIFACT_URL={{artifact_url}}
ARTIFACT_SHA256={{artifact_sha256}}
REGION={{region}}
NODE_INSTALL={{node_install}}
NODE_MAJOR={{node_major}}
NODE_URL={{node_url}}
NODE_SHA256={{node_sha256}}

OPT=$PREFIX/opt/bootstrap-agent
CACHE=$PREFIX/var/cache/bootstrap-agent
LOG=$PREFIX/var/log/bootstrap-agent/user-data.log
ARTIFACT=$CACHE/bootstrap-agent-$ARTIFACT_SHA256.tar.gz
UNIT=$PREFIX/etc/systemd/system/bootstrap-agent.service
WATCH_UNIT=$PREFIX/etc/systemd/system/bootstrap-agent-watch.service
export PATH=$PREFIX/usr/local/bin:$PATH

mkdir -p "${LOG%/*}"
exec > >(tee -a "$LOG") 2>&1

STEP=start
STAGING=
on_exit() {
  local rc=$?
  [ -z "$STAGING" ] || rm -rf "$STAGING"
  rm -f "$CACHE"/*.part
  if [ "$rc" -ne 0 ]; then echo "user-data: FAILED at step $STEP (exit $rc); log: $LOG" >&2; fi
}
trap on_exit EXIT
step() {
  STEP=$1
  echo "user-data: [$(date -u +%FT%TZ)] step $1: $2"
}
fail() {
  echo "user-data: $*" >&2
  exit 1
}
# fetch URL FILE: curl with retries; s3:// through the AWS CLI and the instance profile
fetch() {
  case $1 in
    s3://*) aws s3 cp --only-show-errors --region "$REGION" "$1" "$2" ;;
    *) curl --fail --silent --show-error --location --retry 5 --retry-connrefused --connect-timeout 10 --max-time 900 --output "$2" "$1" ;;
  esac
}
# verify FILE SHA256
verify() {
  printf '%s  %s\n' "$2" "$1" | sha256sum --check --strict -
}
node_major() {
  node -p 'process.versions.node.split(".")[0]' 2>/dev/null || echo 0
}

mkdir -p "$CACHE"

# Nothing is installed before the checksum matches; a verified download is kept (named by its
# sha256), so a second run does not fetch it again.
step download "$ARTIFACT_URL"
if [ -f "$ARTIFACT" ] && verify "$ARTIFACT" "$ARTIFACT_SHA256" >/dev/null 2>&1; then
  echo "user-data: $ARTIFACT is already here and verified"
else
  fetch "$ARTIFACT_URL" "$ARTIFACT.part"
  step verify "sha256 $ARTIFACT_SHA256"
  verify "$ARTIFACT.part" "$ARTIFACT_SHA256" || fail "the download does not match artifact-sha256: nothing was installed"
  mv -f "$ARTIFACT.part" "$ARTIFACT"
fi

step node "$NODE_INSTALL (at least Node $NODE_MAJOR)"
case $NODE_INSTALL in
  al2023)
    # namespaced packages (node-22, npm-22); alternatives makes them `node` and `npm`
    if [ "$(node_major)" -lt "$NODE_MAJOR" ]; then
      dnf install -y "nodejs$NODE_MAJOR" "nodejs$NODE_MAJOR-npm"
      alternatives --set node "/usr/bin/node-$NODE_MAJOR"
    fi
    ;;
  ubuntu)
    # Ubuntu's own nodejs is too old (24.04 ships 18): the official tarball, checked like the agent
    node_dir=$PREFIX/opt/node/$NODE_SHA256
    if [ ! -x "$node_dir/bin/node" ]; then
      fetch "$NODE_URL" "$CACHE/node.part"
      verify "$CACHE/node.part" "$NODE_SHA256" || fail "the Node download does not match node-sha256"
      rm -rf "$node_dir.tmp"
      mkdir -p "$node_dir.tmp"
      tar -xf "$CACHE/node.part" -C "$node_dir.tmp" --strip-components=1 --no-same-owner
      mv "$node_dir.tmp" "$node_dir"
      rm -f "$CACHE/node.part"
    fi
    mkdir -p "$PREFIX/usr/local/bin"
    for b in node npm npx; do ln -sfn "$node_dir/bin/$b" "$PREFIX/usr/local/bin/$b"; done
    ;;
  preinstalled) ;;
  *) fail "unknown node-install $NODE_INSTALL" ;;
esac
have_major=$(node_major)
[ "$have_major" != 0 ] || fail "node is not on PATH (node-install=$NODE_INSTALL)"
[ "$have_major" -ge "$NODE_MAJOR" ] || fail "Node $NODE_MAJOR or newer is needed, found Node $have_major"
command -v npm >/dev/null || fail "npm is missing (the agent runs npm ci)"

step install "$OPT"
version=$(tar -xzOf "$ARTIFACT" bootstrap-agent/package.json | node -p 'JSON.parse(require("fs").readFileSync(0, "utf8")).version')
case $version in '' | *[!0-9A-Za-z.+-]*) fail "the artifact has an odd version: $version" ;; esac
mkdir -p "$OPT"
if [ -f "$OPT/$version/.artifact-sha256" ] && [ "$(cat "$OPT/$version/.artifact-sha256")" = "$ARTIFACT_SHA256" ]; then
  echo "user-data: bootstrap-agent $version from this artifact is already installed"
else
  STAGING=$(mktemp -d "$OPT/.staging.XXXXXX")
  tar -xzf "$ARTIFACT" -C "$STAGING" --strip-components=1 --no-same-owner
  chmod 0755 "$STAGING"
  # run the new agent once: it works with this Node before anything points at it
  [ "$("$STAGING/bin/bootstrap-agent" --version)" = "$version" ] || fail "the new agent does not report version $version"
  echo "$ARTIFACT_SHA256" >"$STAGING/.artifact-sha256"
  rm -rf "$OPT/$version.old"
  if [ -e "$OPT/$version" ]; then mv "$OPT/$version" "$OPT/$version.old"; fi
  mv "$STAGING" "$OPT/$version"
  rm -rf "$OPT/$version.old"
fi
STAGING=
# rename over the old link: `current` always names a complete release
ln -sfn "$version" "$OPT/current.tmp"
mv -fT "$OPT/current.tmp" "$OPT/current"
mkdir -p "$PREFIX/usr/local/bin"
ln -sfn "$OPT/current/bin/bootstrap-agent" "$PREFIX/usr/local/bin/bootstrap-agent"

step config "$PREFIX/etc/bootstrap-agent/agent.env"
mkdir -p "$PREFIX/etc/bootstrap-agent"
cat >"$PREFIX/etc/bootstrap-agent/agent.env.tmp" <<'AGENT_ENV_EOF'
{{agent_env}}
AGENT_ENV_EOF
chmod 0644 "$PREFIX/etc/bootstrap-agent/agent.env.tmp"
mv -f "$PREFIX/etc/bootstrap-agent/agent.env.tmp" "$PREFIX/etc/bootstrap-agent/agent.env"

# install_unit FILE: the unit text from stdin, replaced by rename
install_unit() {
  mkdir -p "${1%/*}"
  cat >"$1.tmp"
  chmod 0644 "$1.tmp"
  mv -f "$1.tmp" "$1"
}
step unit "$UNIT $WATCH_UNIT"
install_unit "$UNIT" <<'UNIT_EOF'
{{unit}}
UNIT_EOF
install_unit "$WATCH_UNIT" <<'WATCH_UNIT_EOF'
{{watch_unit}}
WATCH_UNIT_EOF

# --no-block: the unit is a oneshot, so a blocking start would wait for the whole first run (npm
# ci included) inside cloud-init, and deadlock if the unit is ordered after cloud-init's stage.
# The run reports through the lifecycle hook, the journal and `bootstrap-agent status`. The watch
# starts beside it (not after it), so a termination during the first run is drained too.
step start "systemctl enable --now bootstrap-agent.service bootstrap-agent-watch.service"
systemctl daemon-reload
systemctl enable --now --no-block bootstrap-agent.service bootstrap-agent-watch.service
STEP=finished
echo "user-data: OK: bootstrap-agent $version installed; bootstrap-agent.service and bootstrap-agent-watch.service started (journalctl -u bootstrap-agent -u bootstrap-agent-watch)"
