# Shared by the bench scripts: source it, then call
#   write_section RESULTS_FILE "## Heading" SECTION_FILE
# to replace that section of bench/RESULTS.md (up to the next "## " heading)
# with SECTION_FILE, or append it; every other section is left as it is.
write_section() {
	local results=$1 heading=$2 file=$3 tmp
	touch "$results"
	tmp=$(mktemp "$results.XXXXXX")
	if [ ! -s "$results" ]; then
		{ echo "# Benchmark results"; echo; cat "$file"; } >"$tmp"
	else
		awk -v sec="$heading" -v file="$file" '
			function emit() { while ((getline l < file) > 0) print l; close(file); done = 1 }
			$0 == sec { emit(); skip = 1; next }
			skip && /^## / { skip = 0; print ""; }
			!skip { print }
			END { if (!done) { if (NR > 0) print ""; emit() } }
		' "$results" >"$tmp"
	fi
	mv "$tmp" "$results"
}
