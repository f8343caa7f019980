#!/bin/sh
# cluster-generic cancel command: stop the given jobs (ids printed by submit.sh). Snakemake
# calls it, in the workflow's working directory, when it is interrupted (Ctrl-C):
#   cancel.sh <id> [<id> ...]
state=.snakemake/cluster-generic
for id in "$@"; do
    pid=$(cat "$state/$id.pid" 2>/dev/null) || continue
    # the whole process group when submit.sh could start the job in a session of its own
    kill -s TERM -- "-$pid" 2>/dev/null || kill -s TERM "$pid" 2>/dev/null || true
done
exit 0
