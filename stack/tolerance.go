package stack

import (
	"fmt"
	"math"
	"strconv"
	"strings"

	"gopkg.in/yaml.v3"
)

// Kontena read stack files with Ruby's YAML 1.1 parser and its own loose
// checks, and stack files in use rely on that. What it accepted and has one
// obvious meaning is accepted here too, with a warning that names the
// proper form, so that old files keep loading and get fixed over time:
//
//   - YAML 1.1 booleans (yes/no/on/off, y/n) for boolean keys;
//   - fractions for integer variables, truncated toward zero;
//   - upper-case service names, lowered (see serviceName);
//   - an unclosed ${NAME, read as ${NAME} (see substitute);
//   - a repeated mapping key, the last value winning (see expander.mapping).

// yaml11Bool reads the booleans of YAML 1.1 (yaml.org/type/bool.html) that
// YAML 1.2, and so yaml.v3, reads as strings. Ruby's parser matched
// yes/no/on/off/true/false in any case; the 1.1 spec also lists y and n.
func yaml11Bool(s string) (value, ok bool) {
	switch strings.ToLower(s) {
	case "yes", "on", "true", "y":
		return true, true
	case "no", "off", "false", "n":
		return false, true
	}
	return false, false
}

func (d *decoder) warnYAML11Bool(n *yaml.Node, path, s string, b bool) {
	d.warnf(n, path, "%s is read as %t: use true/false (write %t); yes/no/on/off are booleans only in YAML 1.1, other tools read them as strings",
		describeScalar(s), b, b)
}

// plainYAML11Bool is yaml11Bool for keys that take a string or a boolean:
// there only an unquoted word is a boolean (quoting says the string is
// meant), and y/n stay strings, as they were for Ruby's parser.
func plainYAML11Bool(n *yaml.Node) (value, ok bool) {
	if n.Kind != yaml.ScalarNode || n.ShortTag() != "!!str" || len(n.Value) < 2 ||
		n.Style&(yaml.SingleQuotedStyle|yaml.DoubleQuotedStyle) != 0 {
		return false, false
	}
	return yaml11Bool(n.Value)
}

// wholeNumber converts a number given to an integer variable. Kontena's
// integer type called to_i, which truncates toward zero; users relied on
// it for values like `evaluate: ${mem} * 0.8`. A fraction is therefore
// truncated, and note (non-empty) says so; only what no int64 holds is an
// error.
func wholeNumber(f float64) (i int64, note string, err error) {
	if math.IsNaN(f) || math.IsInf(f, 0) || math.Abs(f) > 1<<53 {
		return 0, "", &typeError{"a whole number", strconv.FormatFloat(f, 'g', -1, 64)}
	}
	t := math.Trunc(f)
	if t != f {
		note = fmt.Sprintf("%s is not a whole number: truncated to %d", strconv.FormatFloat(f, 'f', -1, 64), int64(t))
	}
	return int64(t), note, nil
}

// wholeNumberHint is the proper form for a fraction raw truncated to out.
func wholeNumberHint(origin string, raw, out any) string {
	s, isStr := raw.(string)
	_, notNumber := strconv.ParseFloat(strings.TrimSpace(s), 64)
	if origin == "evaluate" || (isStr && notNumber != nil) {
		// The calculator floors integer division, so whole numbers stay whole.
		return "keep the calculation in whole numbers, like * 8 / 10 instead of * 0.8"
	}
	switch origin {
	case "value", "default", "values":
		return fmt.Sprintf("write %s", textOf(out))
	}
	return "give a whole number"
}

// originNode is where a variable's value came from in the file, for
// warnings about that value: its default:, its value: or the resolver's
// hint; else the variable's key.
func (v *Variable) originNode(origin string) *yaml.Node {
	switch origin {
	case "default":
		if v.defaultNode != nil {
			return v.defaultNode
		}
	case "value":
		if v.valueNode != nil {
			return v.valueNode
		}
	default:
		for _, r := range v.From {
			if r.Name == origin && r.node != nil {
				return r.node
			}
		}
	}
	return v.keyNode
}
