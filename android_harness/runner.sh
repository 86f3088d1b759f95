#!/system/bin/sh
# Device-side runner for mobile-compress: runs one benchmark and samples memory, power and
# thermals around it. POSIX sh only, plus what Android's toybox provides (sleep with fractions,
# taskset, dumpsys); no awk, no bash.
#
# usage: sh runner.sh -o OUT_DIR [-i INTERVAL_S] [-b BASELINE_WHOLE_S] [-c COOLDOWN_S] [-m CPU_MASK]
#                     [-p POWER_SUPPLY_DIR] [-t THERMAL_DIR] -- BENCHMARK ARGS...
#
# OUT_DIR receives:
#   stdout.txt            what the benchmark printed (stdout and stderr)
#   baseline.tsv          idle samples just before the run:   uptime_s current_now voltage_now
#   power.tsv             samples during the run:             uptime_s current_now voltage_now
#   mem.tsv               /proc/PID/status during the run:    uptime_s VmHWM_kB VmRSS_kB
#   zones_before.tsv, zones_after.tsv   thermal zones:        type temp
#   thermalservice_before.txt, thermalservice_after.txt, battery_before.txt   dumpsys output
#   meta.txt              key=value: runner and benchmark pids, start, end, interval, exit code
#   done                  the benchmark's exit code, written last (the host polls for it)

OUT=
INTERVAL=0.1
BASELINE=2
COOLDOWN=0
MASK=
SUPPLY=/sys/class/power_supply/battery
THERMAL=/sys/class/thermal

while [ $# -gt 0 ]; do
    case "$1" in
        -o) OUT=$2; shift 2 ;;
        -i) INTERVAL=$2; shift 2 ;;
        -b) BASELINE=$2; shift 2 ;;
        -c) COOLDOWN=$2; shift 2 ;;
        -m) MASK=$2; shift 2 ;;
        -p) SUPPLY=$2; shift 2 ;;
        -t) THERMAL=$2; shift 2 ;;
        --) shift; break ;;
        *) echo "runner.sh: unknown option $1" >&2; exit 64 ;;
    esac
done
if [ -z "$OUT" ] || [ $# -eq 0 ]; then
    echo "usage: runner.sh -o OUT_DIR [options] -- BENCHMARK ARGS..." >&2
    exit 64
fi
mkdir -p "$OUT" || exit 65
rm -f "$OUT/done"
echo "runner=$$" > "$OUT/meta.txt"

uptime_s() {
    read -r up _rest < /proc/uptime
    echo "$up"
}

uptime_cs() {
    # /proc/uptime has two decimals: drop the dot to get centiseconds as an integer
    read -r up _rest < /proc/uptime
    echo "${up%%.*}${up##*.}"
}

read_value() {
    # one sysfs value, or "NA" when the file is missing or unreadable
    if [ -r "$1" ]; then
        read -r v < "$1" 2>/dev/null && { echo "$v"; return; }
    fi
    echo NA
}

power_sample() {
    echo "$(uptime_s)	$(read_value "$SUPPLY/current_now")	$(read_value "$SUPPLY/voltage_now")"
}

mem_sample() {
    hwm=NA
    rss=NA
    if [ -r "/proc/$1/status" ]; then
        while read -r key value _unit; do
            case "$key" in
                VmHWM:) hwm=$value ;;
                VmRSS:) rss=$value ;;
            esac
        done < "/proc/$1/status"
    fi
    echo "$(uptime_s)	$hwm	$rss"
}

thermal_snapshot() {
    : > "$OUT/zones_$1.tsv"
    for zone in "$THERMAL"/thermal_zone*; do
        [ -d "$zone" ] || continue
        echo "$(read_value "$zone/type")	$(read_value "$zone/temp")" >> "$OUT/zones_$1.tsv"
    done
    dumpsys thermalservice > "$OUT/thermalservice_$1.txt" 2>/dev/null || true
}

dumpsys battery > "$OUT/battery_before.txt" 2>/dev/null || true

if [ "$COOLDOWN" != 0 ]; then
    sleep "$COOLDOWN"
fi
thermal_snapshot before

# Idle baseline: the same power samples with nothing of ours running.
: > "$OUT/baseline.tsv"
baseline_end=$(( $(uptime_cs) + BASELINE * 100 ))
while [ "$BASELINE" != 0 ]; do
    power_sample >> "$OUT/baseline.tsv"
    [ "$(uptime_cs)" -ge "$baseline_end" ] && break
    sleep "$INTERVAL"
done

: > "$OUT/power.tsv"
: > "$OUT/mem.tsv"
start=$(uptime_s)
if [ -n "$MASK" ]; then
    taskset "$MASK" "$@" > "$OUT/stdout.txt" 2>&1 &
else
    "$@" > "$OUT/stdout.txt" 2>&1 &
fi
pid=$!
echo "pid=$pid" >> "$OUT/meta.txt"
while kill -0 "$pid" 2>/dev/null; do
    power_sample >> "$OUT/power.tsv"
    mem_sample "$pid" >> "$OUT/mem.tsv"
    sleep "$INTERVAL"
done
wait "$pid"
code=$?
end=$(uptime_s)

thermal_snapshot after
{
    echo "start=$start"
    echo "end=$end"
    echo "interval=$INTERVAL"
    echo "mask=$MASK"
    echo "exit_code=$code"
} >> "$OUT/meta.txt"
echo "$code" > "$OUT/done"
exit 0
