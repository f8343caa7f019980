#!/bin/sh
# cluster-generic status command: print exactly one of running, success, failed for the job id
# that submit.sh printed. Called by Snakemake, in the workflow's working directory, as:
#   status.sh <id>
set -u

state=.snakemake/cluster-generic
id=$1

finished() {
    if [ -f "$state/$id.rc" ]; then
        if [ "$(cat "$state/$id.rc")" = "0" ]; then echo success; else echo failed; fi
        return 0
    fi
    return 1
}

alive() {
    # kill -0 also succeeds for a zombie (a dead process whose parent has not reaped it, which
    # happens in containers whose PID 1 does not reap): read its state from /proc where there is one.
    kill -0 "$1" 2>/dev/null || return 1
    if [ -r "/proc/$1/stat" ]; then
        state_letter=$(sed 's/^.*) //' "/proc/$1/stat" | cut -c1)
        [ "$state_letter" != "Z" ] || return 1
    fi
    return 0
}

finished && exit 0
if [ ! -f "$state/$id.pid" ]; then
    echo "status.sh: unknown job id $id (no $state/$id.pid)" >&2
    echo failed
    exit 0
fi
if alive "$(cat "$state/$id.pid")"; then
    echo running
    exit 0
fi
# The process is gone: it either wrote its exit code just now, or it was killed.
finished && exit 0
echo "status.sh: job $id ended without an exit code (killed?); see $state/$id" >&2
echo failed
