# Helpers the benchmark scripts share; sourced, not run. The scripts set
# QUICK (1 for --quick) before calling verdict.

# The median (the lower one of the middle two for an even count).
median() {
    printf '%s\n' "$@" | sort -n | sed -n "$((($# + 1) / 2))p"
}

# Microseconds as "x.xx s".
seconds() { awk -v us="$1" 'BEGIN { printf "%.2f s", us / 1e6 }'; }

# verdict VALUE OP LIMIT TEXT: the target cell, saying whether it is met
# (OP: ge, le or lt).
verdict() {
    local value=$1 op=$2 limit=$3 text=$4
    # No value (no /usr/bin/time), or --quick data too small to judge.
    if [[ -z $value ]] || ((QUICK)); then
        echo "$text"
        return
    fi
    if awk -v v="$value" -v l="$limit" -v op="$op" \
        'BEGIN { exit !((op == "ge" && v >= l) || (op == "le" && v <= l) || (op == "lt" && v < l)) }'; then
        echo "$text: met"
    else
        echo "$text: **not met**"
    fi
}
