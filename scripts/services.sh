#!/usr/bin/env bash
# Install and start what ctrfs's tests, demo and benchmarks need, on a Debian 12 host, as root.
#
#   scripts/services.sh install          apt-get install whatever is missing (apt-get update at most once)
#   scripts/services.sh start            install, then start dockerd / containerd / tracefs if absent;
#                                        prints the names of the services THIS call started, one a line
#   scripts/services.sh stop [NAME...]   stop services this script started (all recorded, or only NAMEs)
#   scripts/services.sh run CMD [ARG...] start, run CMD, stop what this call started (also on failure or
#                                        Ctrl-C), exit with CMD's status
#   scripts/services.sh status
#
# Every daemon this script starts is recorded as $STATE_DIR/NAME.pid; stop kills by that PID only, after
# checking that the PID still runs the same program. A daemon found already answering is never touched.
set -euo pipefail
shopt -s inherit_errexit

STATE_DIR=${CTRFS_SERVICES_STATE:-/run/ctrfs-services}
DOCKER_SOCK=/var/run/docker.sock
CONTAINERD_SOCK=/run/containerd/containerd.sock
TRACEFS=/sys/kernel/tracing

log() { printf 'services: %s\n' "$*" >&2; }
die() { log "error: $*"; exit 1; }

need_root() { [ "$(id -u)" = 0 ] || die "must run as root (containers, overlay mounts and tracefs need it)"; }

pkg_installed() { dpkg-query -W -f='${Status}' "$1" 2>/dev/null | grep -q 'install ok installed'; }

# command (or file) → Debian package providing it
REQUIREMENTS=(
  "dockerd:docker.io"
  "containerd:containerd"
  "ctr:containerd"
  "runc:runc"
  "podman:podman"
  "/bin/busybox:busybox-static"
  "bpftrace:bpftrace"
  "openssl:openssl"
  "newuidmap:uidmap"
  "gcc:gcc"
  "mmdebstrap:mmdebstrap"
  "/usr/lib/x86_64-linux-gnu/libc.a:libc6-dev"
  "make:make"
  "musl-gcc:musl-tools"
  "readelf:binutils"
  "dpkg-query:dpkg"
  "/usr/lib/x86_64-linux-gnu/libgnutls.so.30:libgnutls30"
  "/usr/lib/x86_64-linux-gnu/libpython3.11.so.1.0:libpython3.11"
  "/usr/lib/x86_64-linux-gnu/libssl.so.3:libssl3"
  "setpriv:util-linux"
  "unshare:util-linux"
  "tar:tar"
  "skopeo:skopeo"
  "lxc-create:lxc"
  "/usr/share/lxc/templates/lxc-busybox:liblxc-common"
  "systemd-nspawn:systemd-container"
  "fuse-overlayfs:fuse-overlayfs"
  "runuser:util-linux"
  "useradd:passwd"
  "nsenter:util-linux"
  # node-mode tests: the pod image (Debian with python3) is built offline
  "mmdebstrap:mmdebstrap"
  # kubectl ctrfs: the real kubectl finds and runs the plugin (Debian's kubectl is kubernetes-client)
  "kubectl:kubernetes-client"
  # ctrfs browse's terminal test (tmux) and the completion scripts' shells
  "tmux:tmux"
  "zsh:zsh"
  "fish:fish"
)

have() {
  case "$1" in
    /*) [ -e "$1" ] ;;
    *) command -v "$1" >/dev/null 2>&1 ;;
  esac
}

cmd_install() {
  need_root
  local missing=() req
  for req in "${REQUIREMENTS[@]}"; do
    have "${req%%:*}" || missing+=("${req#*:}")
  done
  # busybox (dynamic) also provides /bin/busybox; the images need the static build.
  pkg_installed busybox-static || missing+=(busybox-static)
  # Debian splits ensurepip out of python3: `python3 -m venv` fails without python3-venv.
  if ! python3 -c 'import ensurepip, venv' >/dev/null 2>&1; then
    missing+=(python3-venv)
  fi
  # The C core of ctrfs export (setup.py) is compiled against Python's headers.
  if [ ! -e "$(python3 -c 'import sysconfig; print(sysconfig.get_paths()["include"])')/Python.h" ]; then
    missing+=(python3-dev)
  fi
  [ ${#missing[@]} -eq 0 ] && return 0
  mapfile -t missing < <(printf '%s\n' "${missing[@]}" | sort -u)
  log "installing: ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${missing[@]}" >&2
}

docker_answers() { timeout 10 docker version --format '{{.Server.Version}}' >/dev/null 2>&1; }
containerd_answers() { timeout 10 ctr --address "$CONTAINERD_SOCK" version >/dev/null 2>&1; }

show_log() {  # the end of a daemon's log, so a CI transcript says why it failed
  local f="$STATE_DIR/$1.log"
  [ -f "$f" ] || return 0
  log "last lines of $f:"
  tail -n 15 "$f" | sed 's/^/  | /' >&2
}

wait_for() {  # wait_for SECONDS NAME PID CHECK...
  local secs=$1 name=$2 pid=$3; shift 3
  local i
  for ((i = 0; i < secs * 4; i++)); do
    "$@" && return 0
    if ! kill -0 "$pid" 2>/dev/null; then
      show_log "$name"
      die "$name exited during start-up; see $STATE_DIR/$name.log"
    fi
    sleep 0.25
  done
  show_log "$name"
  die "$name did not answer within ${secs}s; see $STATE_DIR/$name.log"
}

runs_program() {  # runs_program PID NAME: does PID run a program whose basename is NAME?
  local pid=$1 name=$2 exe
  [ -n "$pid" ] && [ -r "/proc/$pid/cmdline" ] || return 1
  exe=$(tr '\0' '\n' <"/proc/$pid/cmdline" | head -n1)
  [ "${exe##*/}" = "$name" ]
}

clear_stale() {
  # A daemon killed without a clean shutdown (a machine whose processes were ended, not rebooted)
  # leaves its socket and PID files behind. dockerd 20.10 then dials a dead
  # /run/containerd/containerd.sock instead of starting its own containerd and gives up after a
  # minute; its supervisor may wait on a reused PID. Remove only files no live daemon owns.
  local f pid
  if [ -S "$CONTAINERD_SOCK" ] && ! containerd_answers; then
    log "removing stale $CONTAINERD_SOCK (no containerd answers on it)"
    rm -f "$CONTAINERD_SOCK" "$CONTAINERD_SOCK.ttrpc"
  fi
  for f in /var/run/docker.pid /run/docker/containerd/containerd.pid; do
    [ -f "$f" ] || continue
    pid=$(cat "$f" 2>/dev/null || true)
    case "$f" in
      */docker.pid) runs_program "$pid" dockerd && continue ;;
      *) runs_program "$pid" containerd && continue ;;
    esac
    log "removing stale $f (pid ${pid:-?} is not running its daemon)"
    rm -f "$f"
  done
  # Records of daemons this script started that are gone: forget them.
  for f in "$STATE_DIR"/*.pid; do
    [ -e "$f" ] || continue
    pid=$(cat "$f" 2>/dev/null || true)
    runs_program "$pid" "$(basename "$f" .pid)" || rm -f "$f" "${f%.pid}.exe"
  done
}

spawn() {  # spawn NAME CMD...  → background daemon in its own session, PID recorded, NAME printed
  local name=$1; shift
  mkdir -p "$STATE_DIR"
  setsid "$@" >"$STATE_DIR/$name.log" 2>&1 </dev/null &
  echo $! >"$STATE_DIR/$name.pid"
  echo "$1" >"$STATE_DIR/$name.exe"
  echo "$name"
}

cmd_start() {
  need_root
  cmd_install
  # dockerd 20.10 uses a system containerd when /run/containerd/containerd.sock answers, and only
  # otherwise supervises its own (state under /run/docker/containerd). Start dockerd first so its
  # containers keep the same layout (containerd namespace "moby" under /run/docker) whether or not
  # the standalone containerd below is running.
  if ! docker_answers || ! containerd_answers; then
    clear_stale
  fi
  if docker_answers; then
    log "dockerd already answers on $DOCKER_SOCK"
  else
    log "starting dockerd"
    spawn dockerd dockerd --bridge=none --iptables=false --ip6tables=false --live-restore
    wait_for 60 dockerd "$(cat "$STATE_DIR/dockerd.pid")" docker_answers
  fi
  if containerd_answers; then
    log "containerd already answers on $CONTAINERD_SOCK"
  else
    log "starting containerd"
    # Defaults: --address /run/containerd/containerd.sock, state /run/containerd, root /var/lib/containerd.
    spawn containerd containerd
    wait_for 60 containerd "$(cat "$STATE_DIR/containerd.pid")" containerd_answers
  fi
  if ! mountpoint -q "$TRACEFS"; then
    # bpftrace needs tracefs for uprobes; left mounted on stop (other users may rely on it).
    log "mounting tracefs at $TRACEFS"
    mount -t tracefs tracefs "$TRACEFS"
  fi
}

stop_one() {
  local name=$1 pidf="$STATE_DIR/$1.pid" pid exe i
  [ -f "$pidf" ] || return 0
  pid=$(cat "$pidf")
  exe=$(cat "$STATE_DIR/$name.exe" 2>/dev/null || echo "$name")
  # The PID may have been reused since we recorded it: only signal it if it still runs our program.
  if [ -r "/proc/$pid/cmdline" ] && [ "$(tr '\0' '\n' <"/proc/$pid/cmdline" | head -n1)" = "$exe" ]; then
    log "stopping $name (pid $pid)"
    kill -TERM "$pid" 2>/dev/null || true
    for ((i = 0; i < 120; i++)); do
      kill -0 "$pid" 2>/dev/null || break
      sleep 0.25
    done
    if kill -0 "$pid" 2>/dev/null; then
      log "$name did not stop in 30s, sending SIGKILL"
      kill -KILL "$pid" 2>/dev/null || true
    fi
  else
    log "$name (pid $pid) is no longer running"
  fi
  rm -f "$pidf" "$STATE_DIR/$name.exe"
}

cmd_stop() {
  need_root
  local names=("$@") f
  if [ ${#names[@]} -eq 0 ]; then
    for f in "$STATE_DIR"/*.pid; do
      [ -e "$f" ] || continue
      f=${f##*/}
      names+=("${f%.pid}")
    done
  fi
  # containerd before dockerd: reverse of start order.
  local n
  for n in containerd dockerd; do
    [[ " ${names[*]} " == *" $n "* ]] && stop_one "$n"
  done
  return 0
}

cmd_run() {
  [ $# -gt 0 ] || die "usage: $0 run CMD [ARG...]"
  local rc=0
  # What start printed is what it started, even if it failed half-way: stop exactly that on exit.
  STARTED_FILE=$(mktemp)
  trap 'stop_started' EXIT
  trap 'exit 130' INT
  trap 'exit 143' TERM
  cmd_start >"$STARTED_FILE"
  "$@" || rc=$?
  exit "$rc"
}

stop_started() {
  local started
  started=$(cat "$STARTED_FILE")
  rm -f "$STARTED_FILE"
  # shellcheck disable=SC2086 # one service name per word; an empty list must stop nothing
  [ -z "$started" ] || cmd_stop $started
}

cmd_status() {
  if docker_answers; then echo "dockerd: answering"; else echo "dockerd: not answering"; fi
  if containerd_answers; then echo "containerd: answering"; else echo "containerd: not answering"; fi
  if mountpoint -q "$TRACEFS"; then echo "tracefs: mounted"; else echo "tracefs: not mounted"; fi
  local f
  for f in "$STATE_DIR"/*.pid; do
    [ -e "$f" ] && echo "started by this script: $(basename "$f" .pid) pid $(cat "$f")"
  done
  return 0
}

case "${1:-}" in
  install) shift; cmd_install "$@" ;;
  start) shift; cmd_start "$@" ;;
  stop) shift; cmd_stop "$@" ;;
  run) shift; cmd_run "$@" ;;
  status) shift; cmd_status "$@" ;;
  *) die "usage: $0 install|start|stop [NAME...]|run CMD...|status" ;;
esac
