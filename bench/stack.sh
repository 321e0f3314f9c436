#!/usr/bin/env bash
# Benchmark of stack file loading (issue 3): load + render + validate of a
# generated 50-service stack. Writes the result into bench/RESULTS.md under
# "## Stack files (issue 3)", leaving the other sections alone.
set -euo pipefail

cd "$(dirname "$0")/.."
results=bench/RESULTS.md
cmd=(go test ./stack -run '^$' -bench '^BenchmarkLoad50Services$' -benchmem -count 5)

load_before=$(cut -d' ' -f1-3 /proc/loadavg)
out=$("${cmd[@]}" 2>&1) || { printf '%s\n' "$out" >&2; exit 1; }
load_after=$(cut -d' ' -f1-3 /proc/loadavg)
cmd_str="go test ./stack -run '^\$' -bench '^BenchmarkLoad50Services\$' -benchmem -count 5" # = cmd
printf '%s\n' "$out"

lines=$(printf '%s\n' "$out" | grep -E '^(goos|goarch|cpu|Benchmark)' || true)
median=$(printf '%s\n' "$out" | awk '/^BenchmarkLoad50Services/ {print $3}' | sort -n | awk '{a[NR]=$1} END {if (NR) print a[int((NR+1)/2)]}')

section=$(cat <<MD
## Stack files (issue 3)

Load + render (Liquid, \${}) + validate of a generated stack with 50 services
(variables of several types, a Liquid loop and conditional, extends, env_file,
links, ports, volumes, health checks). Median of 5 runs: **$(awk -v ns="$median" 'BEGIN {printf "%.2f ms", ns/1e6}') per load**.

Command (from the repository root): \`bench/stack.sh\`, which runs

\`\`\`
$cmd_str
\`\`\`

Measured $(date -u +%Y-%m-%d) on $(uname -m), $(nproc) CPUs shared with other work (load average
$load_before before, $load_after after), $(go version | awk '{print $3}'):

\`\`\`
$lines
\`\`\`
MD
)

# Replace our section (up to the next "## " heading) or append it.
tmp=$(mktemp)
if [ -f "$results" ]; then
  awk -v section="$section" '
    /^## Stack files \(issue 3\)[[:space:]]*$/ { print section; print ""; skip = 1; done = 1; next }
    skip && /^## / { skip = 0 }
    !skip { print }
    END { if (!done) { print ""; print section } }
  ' "$results" > "$tmp"
else
  { echo "# Benchmark results"; echo; printf '%s\n' "$section"; } > "$tmp"
fi
mv "$tmp" "$results"
echo "updated $results"
