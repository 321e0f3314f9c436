package stack

import (
	"errors"
	"fmt"
	"sort"
	"strings"
)

// Error is one problem found in a stack file. Every field is optional except
// that at least one of Msg or Expected is set; the printed form is
//
//	kontena.yml:12:5: services.web.deploy.min_health: expected a number between 0.0 and 1.0, found "abc"
//
// so that editors and CI logs can jump to the spot.
type Error struct {
	File     string `json:"file,omitempty"`
	Line     int    `json:"line,omitempty"`
	Col      int    `json:"col,omitempty"`
	Path     string `json:"path,omitempty"`     // key path, e.g. services.web.deploy.min_health
	Expected string `json:"expected,omitempty"` // what the key takes
	Found    string `json:"found,omitempty"`    // what it holds, already quoted/described
	Msg      string `json:"msg,omitempty"`      // free text when expected/found does not fit
}

func (e *Error) Error() string {
	var b strings.Builder
	if e.File != "" {
		b.WriteString(e.File)
		b.WriteByte(':')
	}
	if e.Line > 0 {
		fmt.Fprintf(&b, "%d:", e.Line)
		if e.Col > 0 {
			fmt.Fprintf(&b, "%d:", e.Col)
		}
	}
	if b.Len() > 0 {
		b.WriteByte(' ')
	}
	if e.Path != "" {
		b.WriteString(e.Path)
		b.WriteString(": ")
	}
	b.WriteString(e.text())
	return b.String()
}

func (e *Error) text() string {
	var parts []string
	if e.Msg != "" {
		parts = append(parts, e.Msg)
	}
	if e.Expected != "" {
		s := "expected " + e.Expected
		if e.Found != "" {
			s += ", found " + e.Found
		}
		parts = append(parts, s)
	} else if e.Found != "" {
		parts = append(parts, "found "+e.Found)
	}
	return strings.Join(parts, ": ")
}

// Errors is every problem found in one load, so that a file with several
// mistakes is fixed in one round trip instead of one error per run.
type Errors []*Error

func (es Errors) Error() string {
	lines := make([]string, len(es))
	for i, e := range es {
		lines[i] = e.Error()
	}
	return strings.Join(lines, "\n")
}

// Unwrap lets errors.Is/As look at each problem.
func (es Errors) Unwrap() []error {
	out := make([]error, len(es))
	for i, e := range es {
		out[i] = e
	}
	return out
}

// sorted orders problems by file and position and drops exact duplicates
// (the same extended file can be read by several services).
func (es Errors) sorted() Errors {
	out := append(Errors(nil), es...)
	sort.SliceStable(out, func(i, j int) bool {
		a, b := out[i], out[j]
		if a.File != b.File {
			return a.File < b.File
		}
		if a.Line != b.Line {
			return a.Line < b.Line
		}
		return a.Col < b.Col
	})
	seen := map[string]bool{}
	uniq := out[:0]
	for _, e := range out {
		k := e.Error()
		if seen[k] {
			continue
		}
		seen[k] = true
		uniq = append(uniq, e)
	}
	return uniq
}

// ErrNeedsGrid is returned by a GridResolver (or reported when there is none)
// for lookups that only a running grid can answer.
var ErrNeedsGrid = errors.New("needs a grid")

// ErrNotTerminal is reported when a variable asks for a prompt but nobody can
// answer one.
var ErrNotTerminal = errors.New("not a terminal")

// describeScalar quotes a found string for messages (shortened), so that
// `found "abc"` reads naturally next to "found a mapping".
func describeScalar(s string) string {
	if len(s) > 60 {
		s = s[:57] + "..."
	}
	return fmt.Sprintf("%q", s)
}
