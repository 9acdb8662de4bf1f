# Shell helpers the benchmark scripts share (sourced, not run).

timed() {  # timed LABEL CMD...: run CMD, print its wall time; returns CMD's exit status
    local label="$1"; shift
    local t0 rc=0; t0=$(date +%s)
    echo "== $label: $*"
    "$@" || rc=$?
    echo "== $label: wall $(( $(date +%s) - t0 )) s"
    return "$rc"
}
