#!/usr/bin/env bash
# What `pip install SRC` adds to a fresh venv that already has the CPU torch 2.13.0 (a training
# environment): wall time, site-packages size before and after, `pip freeze` before and after.
#   bash benchmarks/install_size.sh NAME SRC      (WORK=/tmp/meas by default; venv in $WORK/venv-NAME)
# Light (this tree):  git archive HEAD | tar -x -C /tmp/meas/light-src;  bash benchmarks/install_size.sh light /tmp/meas/light-src
# Before issue 13:    git archive a8a6108 | tar -x -C /tmp/meas/today-src; bash benchmarks/install_size.sh today /tmp/meas/today-src
set -u
name=$1; src=$2; work=${WORK:-/tmp/meas}; v=$work/venv-$name
mkdir -p "$work"
rm -rf "$v"
python3 -m venv "$v"
"$v/bin/pip" install -q --no-cache-dir torch==2.13.0 2>/dev/null
sp=$("$v/bin/python" -c 'import sysconfig;print(sysconfig.get_paths()["purelib"])')
"$v/bin/pip" freeze > "$work/$name.before"
du -sk "$sp" | cut -f1 > "$work/$name.before_kb"
start=$(date +%s.%N)
(cd "$src" && "$v/bin/pip" install -q --no-cache-dir . 2>&1 | grep -v "is ignored: it is neither")
end=$(date +%s.%N)
echo "$end - $start" | bc > "$work/$name.seconds"
"$v/bin/pip" freeze > "$work/$name.after"
du -sk "$sp" | cut -f1 > "$work/$name.after_kb"
echo "$name: $(cat "$work/$name.seconds") s, site-packages $(cat "$work/$name.before_kb") KB -> $(cat "$work/$name.after_kb") KB"
