package stack

import (
	"bytes"
	"sort"
	"strconv"
)

// lineMap maps lines of Liquid output back to lines of the stack file, so
// that YAML errors after rendering still point into the file the user wrote
// (a {% for %} loop repeats the same source lines).
type lineMap struct {
	out []int // first output line of each segment, ascending
	src []int // source line of that output line
}

func (m *lineMap) source(line int) int {
	if m == nil || len(m.out) == 0 {
		return line
	}
	k := sort.SearchInts(m.out, line+1) - 1
	if k < 0 {
		return line
	}
	return m.src[k] + (line - m.out[k])
}

// Markers are written into the Liquid output before text chunks: NUL can
// never occur in YAML, so they cannot clash with content.
const (
	markerStart = '\x00'
	markerEnd   = '\x01'
)

func appendMarker(b []byte, srcLine int) []byte {
	b = append(b, markerStart)
	b = strconv.AppendInt(b, int64(srcLine), 10)
	return append(b, markerEnd)
}

// stripMarkers removes the markers from rendered text and builds the map.
func stripMarkers(in []byte) ([]byte, *lineMap) {
	m := &lineMap{}
	out := make([]byte, 0, len(in))
	line := 1
	for i := 0; i < len(in); {
		c := in[i]
		if c == markerStart {
			if n, end, ok := parseMarker(in[i:]); ok {
				if k := len(m.out); k > 0 && m.out[k-1] == line {
					m.src[k-1] = n
				} else {
					m.out = append(m.out, line)
					m.src = append(m.src, n)
				}
				i += end
				continue
			}
		}
		if c == '\n' {
			line++
		}
		out = append(out, c)
		i++
	}
	return out, m
}

func parseMarker(b []byte) (int, int, bool) {
	end := bytes.IndexByte(b, markerEnd)
	if end < 2 || end > 12 {
		return 0, 0, false
	}
	n, err := strconv.Atoi(string(b[1:end]))
	if err != nil || n < 1 {
		return 0, 0, false
	}
	return n, end + 1, true
}

// stripMarkerText drops markers from captured text, which is data, not output.
func stripMarkerText(s string) string {
	if !bytes.Contains([]byte(s), []byte{markerStart}) {
		return s
	}
	out, _ := stripMarkers([]byte(s))
	return string(out)
}
