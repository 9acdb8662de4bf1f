# Shell helpers the benchmark scripts share (sourced, not run).

timed() {  # timed LABEL CMD...: run CMD, print its wall time
    local label="$1"; shift
    local t0; t0=$(date +%s)
    echo "== $label: $*"
    "$@"
    echo "== $label: wall $(( $(date +%s) - t0 )) s"
}
