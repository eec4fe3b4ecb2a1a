# Sourced by the bench scripts: what several of them do alike.
#
#   ensure_wrk                       installs wrk from Debian when it is missing
#   wrk_point URL CONNECTIONS DURATION
#                                    a 2 s warm-up of URL, then DURATION of closed-loop load
#                                    (2 threads); prints "<requests/s> <p50 in ms>"
#   median N...                      the median of numbers
#   raise_max_map_count              vm.max_map_count to 4194304 when run as root (until
#                                    reboot), saying so; otherwise says how

ensure_wrk() {
    command -v wrk >/dev/null && return 0
    echo "installing wrk" >&2
    apt-get update -qq && apt-get install -y -qq wrk >/dev/null
}

wrk_point() {
    wrk -t2 -c"$2" -d2s "$1" >/dev/null
    wrk -t2 -c"$2" -d"$3" --latency "$1" | awk '
        /Requests\/sec/ {rps = $2}
        $1 == "50%" {
            v = $2
            if (v ~ /us$/) {sub(/us/, "", v); v /= 1000}
            else if (v ~ /ms$/) {sub(/ms/, "", v)}
            else if (v ~ /s$/) {sub(/s/, "", v); v *= 1000}
            p50 = v
        }
        END {print rps, p50}'
}

median() { printf '%s\n' "$@" | sort -g | awk '{a[NR] = $1} END {print a[int((NR + 1) / 2)]}'; }

raise_max_map_count() {
    local want=4194304
    [ "$(cat /proc/sys/vm/max_map_count)" -ge "$want" ] && return 0
    if [ "$(id -u)" = 0 ]; then
        echo "raising vm.max_map_count to $want (until reboot)" >&2
        echo "$want" > /proc/sys/vm/max_map_count
    else
        echo "vm.max_map_count is $(cat /proc/sys/vm/max_map_count); as root: sysctl -w vm.max_map_count=$want" >&2
    fi
}
