# Sourced by qlora.sh and quantize.sh: times `peft train` the same way for both.
# The caller sets `peft` (the binary), `work` (a scratch folder) and the array `train_args`
# (model, data and method flags shared by every configuration).

# `timed_train NAME STEPS EXTRA...`: one run of STEPS steps; prints "seconds peak_kb".
timed_train() {
  local name=$1 steps=$2; shift 2
  /usr/bin/time -f "%e %M" -o "$work/$name-$steps.time" "$peft" train "${train_args[@]}" --steps "$steps" \
    --output "$work/$name-$steps" "$@" > "$work/$name-$steps.log" 2>&1
  cat "$work/$name-$steps.time"
}

# `machine_line`: the date and the machine, for a results file.
machine_line() {
  echo "$(date -u '+%Y-%m-%d %H:%M UTC'), $(nproc) cores, $(uname -m), $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs)."
}

# `timing_row NAME DECIMALS EXTRA...`: a 2-step and a 12-step run; prints the table row
# "| NAME | peak (12-step run) | step time = (12-step - 2-step) / 10 | what stayed packed |".
timing_row() {
  local name=$1 decimals=$2 short long peak step kept; shift 2
  read -r short _ < <(timed_train "$name" 2 "$@")
  read -r long peak < <(timed_train "$name" 12 "$@")
  step=$(python3 -c "print(f'{($long - $short) / 10:.${decimals}f} s')")
  kept=$(grep -o 'kept [0-9]* linear weights packed ([^)]*): [0-9.]* MB' "$work/$name-12.log" || echo "none")
  echo "| $name | $((peak / 1024)) MB | $step | $kept |"
}
