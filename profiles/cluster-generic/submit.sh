#!/bin/sh
# cluster-generic submit command: start one job script as its own detached process (what a
# batch system does on a node) and print a job id. Called by Snakemake, in the workflow's
# working directory, as:   submit.sh <jobscript>
#
# Per job, under .snakemake/cluster-generic/ (relative to the working directory):
#   <id>      the job's stdout and stderr (the "cluster log")
#   <id>.pid  the process id of the job's wrapper shell (status.sh / cancel.sh read it)
#   <id>.rc   the job script's exit code, written when it ends (status.sh reads it)
# The job script ends with `exit 0 || exit 1` (because a status command is configured), so
# <id>.rc is 0 for success and non-zero for failure. A job killed before it could write
# <id>.rc (SIGKILL, OOM killer, reboot) is reported as failed by status.sh, not as running.
set -eu

jobscript=$1
state=.snakemake/cluster-generic
mkdir -p "$state"

# A unique, readable id: the job script is named snakejob.<rule>.<jobid>.sh, and Snakemake's
# job ids restart at 1 every run, so add a random suffix.
name=$(basename "$jobscript" .sh)
log=$(mktemp "$state/$name.XXXXXX")
id=$(basename "$log")

# The wrapper records the exit code atomically (write, then rename). setsid (where there is
# one) puts the job in a session of its own: Ctrl-C in Snakemake's terminal does not reach it
# directly (as on a real cluster; Snakemake cancels it through cancel.sh), and cancel.sh can
# signal the whole process group. stdout and stderr must not stay attached to this script's,
# or Snakemake would wait here until the job ends.
setsid=""
if command -v setsid >/dev/null 2>&1; then
    setsid="setsid"
fi
$setsid sh -c 'sh "$1"; rc=$?; echo "$rc" > "$2.rc.tmp"; mv "$2.rc.tmp" "$2.rc"' \
    cluster-generic-job "$jobscript" "$state/$id" </dev/null >"$log" 2>&1 &
echo "$!" > "$state/$id.pid"
echo "$id"
