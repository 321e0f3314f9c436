package stack

import (
	"fmt"
	"math"
	"sort"
	"strconv"
	"strings"

	"gopkg.in/yaml.v3"
)

// decoder turns YAML nodes of one file into typed values, recording every
// problem instead of stopping at the first.
type decoder struct {
	src   *source
	errs  *Errors
	warns *Errors
}

func (d *decoder) pos(n *yaml.Node) (int, int) {
	if n == nil {
		return 0, 0
	}
	return d.src.line(n.Line), n.Column
}

// maxProblems bounds the errors (and warnings) of one load: past it a
// broken or hostile file only costs time, not information.
const maxProblems = 1000

func (d *decoder) full() bool {
	return len(*d.errs) >= maxProblems || len(*d.warns) >= maxProblems
}

func (d *decoder) add(list *Errors, n *yaml.Node, path string, e Error) {
	switch {
	case len(*list) > maxProblems:
		return
	case len(*list) == maxProblems:
		*list = append(*list, &Error{File: d.src.name, Msg: fmt.Sprintf("more than %d problems; not listing the rest", maxProblems)})
		return
	}
	e.File = d.src.name
	e.Line, e.Col = d.pos(n)
	e.Path = path
	*list = append(*list, &e)
}

func (d *decoder) errorf(n *yaml.Node, path, format string, args ...any) {
	d.add(d.errs, n, path, Error{Msg: fmt.Sprintf(format, args...)})
}

func (d *decoder) warnf(n *yaml.Node, path, format string, args ...any) {
	d.add(d.warns, n, path, Error{Msg: fmt.Sprintf(format, args...)})
}

// expected reports a type or format mismatch, describing what n holds.
func (d *decoder) expected(n *yaml.Node, path, expected string) {
	d.add(d.errs, n, path, Error{Expected: expected, Found: describe(n)})
}

func (d *decoder) expectedFound(n *yaml.Node, path, expected, found string) {
	d.add(d.errs, n, path, Error{Expected: expected, Found: found})
}

// mapping calls fn for each key of a mapping node in order. Non-mapping
// nodes are reported and skipped.
func (d *decoder) mapping(n *yaml.Node, path, expected string, fn func(key string, k, v *yaml.Node)) bool {
	if n == nil || n.Kind != yaml.MappingNode {
		d.expected(n, path, expected)
		return false
	}
	for i := 0; i+1 < len(n.Content) && !d.full(); i += 2 {
		k, v := n.Content[i], n.Content[i+1]
		if k.Kind != yaml.ScalarNode {
			d.expected(k, path, "a plain key")
			continue
		}
		fn(k.Value, k, v)
	}
	return true
}

// scalarText is the text of a scalar of any tag; ok=false for null and
// collections.
func scalarText(n *yaml.Node) (string, bool) {
	if n == nil || n.Kind != yaml.ScalarNode || n.ShortTag() == "!!null" {
		return "", false
	}
	return n.Value, true
}

func (d *decoder) str(n *yaml.Node, path string) (string, bool) {
	if isNull(n) {
		return "", false
	}
	s, ok := scalarText(n)
	if !ok {
		d.expected(n, path, "a string")
	}
	return s, ok
}

// nonEmpty is str for keys whose empty value makes no sense.
func (d *decoder) nonEmpty(n *yaml.Node, path, expected string) (string, bool) {
	s, ok := scalarText(n)
	if !ok || strings.TrimSpace(s) == "" {
		d.expected(n, path, expected)
		return "", false
	}
	return s, true
}

// integer accepts YAML integers and strings holding one (values are often
// quoted as "${port}" to survive the YAML of old Kontena versions).
func (d *decoder) integer(n *yaml.Node, path string, min, max int64, expected string) (int, bool) {
	if isNull(n) {
		return 0, false
	}
	s, ok := scalarText(n)
	if ok {
		var i int64
		var err error
		if n.ShortTag() == "!!int" {
			err = n.Decode(&i)
		} else if n.ShortTag() == "!!str" {
			i, err = strconv.ParseInt(strings.TrimSpace(s), 10, 64)
		} else {
			err = fmt.Errorf("not an integer")
		}
		if err == nil && i >= min && i <= max {
			return int(i), true
		}
	}
	d.expected(n, path, expected)
	return 0, false
}

func (d *decoder) float(n *yaml.Node, path string, min, max float64, expected string) (float64, bool) {
	if isNull(n) {
		return 0, false
	}
	s, ok := scalarText(n)
	if ok {
		tag := n.ShortTag()
		if tag == "!!int" || tag == "!!float" || tag == "!!str" {
			f, err := strconv.ParseFloat(strings.TrimSpace(s), 64)
			if err == nil && !math.IsNaN(f) && f >= min && f <= max {
				return f, true
			}
		}
	}
	d.expected(n, path, expected)
	return 0, false
}

func (d *decoder) boolean(n *yaml.Node, path string) (bool, bool) {
	if isNull(n) {
		return false, false
	}
	if s, ok := scalarText(n); ok {
		switch n.ShortTag() {
		case "!!bool":
			var b bool
			if n.Decode(&b) == nil {
				return b, true
			}
		case "!!str":
			switch s {
			case "true":
				return true, true
			case "false":
				return false, true
			}
			if b, ok := yaml11Bool(s); ok {
				d.warnYAML11Bool(n, path, s, b)
				return b, true
			}
		}
	}
	d.expected(n, path, "true or false")
	return false, false
}

// strList reads a list of scalars.
func (d *decoder) strList(n *yaml.Node, path string) ([]string, bool) {
	if isNull(n) {
		return nil, false
	}
	if n.Kind != yaml.SequenceNode {
		d.expected(n, path, "a list of strings")
		return nil, false
	}
	out := make([]string, 0, len(n.Content))
	ok := true
	for i, c := range n.Content {
		s, good := scalarText(c)
		if !good {
			d.expected(c, fmt.Sprintf("%s[%d]", path, i), "a string")
			ok = false
			continue
		}
		out = append(out, s)
	}
	return out, ok
}

// strMap reads a mapping of scalars (null values become "").
func (d *decoder) strMap(n *yaml.Node, path string) (map[string]string, bool) {
	if isNull(n) {
		return nil, false
	}
	out := map[string]string{}
	ok := d.mapping(n, path, "a mapping of strings", func(key string, k, v *yaml.Node) {
		if isNull(v) {
			out[key] = ""
			return
		}
		s, good := scalarText(v)
		if !good {
			d.expected(v, joinPath(path, key), "a string")
			return
		}
		out[key] = s
	})
	return out, ok
}

// unknownKey reports a key that is not in known, suggesting the closest.
func unknownKeyMsg(kind, key string, known []string) string {
	msg := fmt.Sprintf("unknown %s %q", kind, key)
	if s := closest(key, known); s != "" {
		msg += fmt.Sprintf(" (did you mean %q?)", s)
	}
	return msg
}

// closest returns the candidate within edit distance 2 of s, if any.
func closest(s string, candidates []string) string {
	best, bestD := "", 3
	sorted := append([]string(nil), candidates...)
	sort.Strings(sorted)
	for _, c := range sorted {
		if d := editDistance(s, c, bestD); d < bestD {
			best, bestD = c, d
		}
	}
	return best
}

// editDistance is Levenshtein distance, giving up (returning limit) once it
// cannot be below limit.
func editDistance(a, b string, limit int) int {
	if len(a) > 64 || len(b) > 64 {
		return limit
	}
	if d := len(a) - len(b); d >= limit || -d >= limit {
		return limit
	}
	prev := make([]int, len(b)+1)
	cur := make([]int, len(b)+1)
	for j := range prev {
		prev[j] = j
	}
	for i := 1; i <= len(a); i++ {
		cur[0] = i
		rowMin := cur[0]
		for j := 1; j <= len(b); j++ {
			cost := 1
			if a[i-1] == b[j-1] {
				cost = 0
			}
			cur[j] = min(prev[j]+1, cur[j-1]+1, prev[j-1]+cost)
			rowMin = min(rowMin, cur[j])
		}
		if rowMin >= limit {
			return limit
		}
		prev, cur = cur, prev
	}
	return prev[len(b)]
}
