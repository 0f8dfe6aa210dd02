#!/usr/bin/env bash
# Start a Docker engine where nothing else does (CI here: no systemd), and wait until it answers.
#
#   .ci/dockerd.sh start     start dockerd in the background unless one answers already
#   .ci/dockerd.sh wait      wait until `docker info` answers (60 s)
#
# The engine logs to $HOMESEC_DOCKERD_LOG (default /var/log/homesec-dockerd.log); its pid goes to
# /run/homesec-dockerd.pid, which tells the engine tests that this script owns the engine (the
# power-cut test kills only an engine started here). Also registers qemu's binfmt handlers so the
# engine can build and run linux/arm64 images.
set -euo pipefail

log_file=${HOMESEC_DOCKERD_LOG:-/var/log/homesec-dockerd.log}
pid_file=/run/homesec-dockerd.pid

answers() { docker info >/dev/null 2>&1; }

wait_engine() {
    for _ in $(seq 120); do
        answers && return 0
        sleep 0.5
    done
    echo "dockerd.sh: the engine did not answer within 60 s; last lines of $log_file:" >&2
    tail -n 30 "$log_file" >&2 || true
    return 1
}

binfmt() {
    if [ ! -e /proc/sys/fs/binfmt_misc/register ]; then
        mount -t binfmt_misc binfmt_misc /proc/sys/fs/binfmt_misc 2>/dev/null || true
    fi
    if [ ! -e /proc/sys/fs/binfmt_misc/qemu-aarch64 ] && command -v update-binfmts >/dev/null; then
        update-binfmts --enable qemu-aarch64 >/dev/null 2>&1 || true
    fi
}

start() {
    binfmt
    if answers; then
        echo "dockerd.sh: an engine answers already"
        return 0
    fi
    command -v dockerd >/dev/null || {
        echo "dockerd.sh: dockerd missing (apt-get install docker.io)" >&2
        return 1
    }
    # a dockerd killed hard leaves its pid files behind; it refuses to start over them
    rm -f /var/run/docker.pid /run/docker/containerd/containerd.pid
    setsid dockerd >>"$log_file" 2>&1 </dev/null &
    echo $! >"$pid_file"
    wait_engine
    echo "dockerd.sh: engine $(docker info --format '{{.ServerVersion}}') up (log: $log_file)"
}

case "${1:-start}" in
start) start ;;
wait) wait_engine ;;
*)
    echo "usage: $0 start|wait" >&2
    exit 2
    ;;
esac
