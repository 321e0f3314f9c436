package stack

import (
	"fmt"
	"math"
	"strings"

	"gopkg.in/yaml.v3"
)

// Variable types and the options each takes (besides the common keys).
var typeOptionKeys = map[string][]string{
	"string":  {"min_length", "max_length", "hexdigest", "empty_is_nil", "encode_64", "decode_64", "upcase", "downcase", "strip", "chomp", "capitalize"},
	"integer": {"min", "max", "nil_is_zero"},
	"boolean": {"truthy", "nil_is", "blank_is", "true", "false", "as"},
	"enum":    {"options", "can_be_other"},
	"uri":     {"schemes"},
	"array":   {"split", "join", "empty_is_nil", "sort", "uniq", "count", "compact"},
}

var commonVariableKeys = []string{"type", "label", "description", "default", "value", "required", "from", "to", "only_if", "skip_if", "in", "secret"}

// typeOpts are the parsed type options of one variable.
type typeOpts struct {
	// string
	minLen, maxLen                           int // -1 = unset
	hexdigest                                string
	emptyIsNil                               bool
	encode64, decode64                       bool
	upcase, downcase, strip, chomp, capitalz bool
	// integer
	min, max  *int64
	nilIsZero bool
	// boolean
	truthy            []string
	nilIs, blankIs    bool
	trueOut, falseOut any
	as                string
	// enum
	choices    []Choice
	choiceVals []any
	canBeOther bool
	// uri
	schemes []string
	// array
	split                     string
	join                      *string
	arrSort, arrUniq, arrCnt  bool
	arrCompact, arrEmptyIsNil bool
	// all types
	in []string
}

func defaultTypeOpts(typ string) typeOpts {
	o := typeOpts{minLen: -1, maxLen: -1, as: "string", trueOut: "true", falseOut: "false",
		truthy: []string{"true", "yes", "1", "on", "enabled", "enable"}, split: ",",
		schemes: []string{"http", "https"}}
	if typ == "string" {
		o.emptyIsNil = true
	}
	if typ == "integer" {
		zero := int64(0)
		o.min = &zero
	}
	return o
}

// parseTypeOption reads one type option key of variable v.
func (d *decoder) parseTypeOption(o *typeOpts, typ, key string, n *yaml.Node, path string) {
	boolOpt := func(dst *bool) {
		if b, ok := d.boolean(n, path); ok {
			*dst = b
		}
	}
	intOpt := func() (int, bool) {
		return d.integer(n, path, 0, math.MaxInt32, "a whole number")
	}
	switch typ + "." + key {
	case "string.min_length":
		if v, ok := intOpt(); ok {
			o.minLen = v
		}
	case "string.max_length":
		if v, ok := intOpt(); ok {
			o.maxLen = v
		}
	case "string.hexdigest":
		s, _ := d.str(n, path)
		switch s {
		case "md5", "sha1", "sha256", "sha384", "sha512":
			o.hexdigest = s
		default:
			d.expected(n, path, "one of md5, sha1, sha256, sha384, sha512")
		}
	case "string.empty_is_nil":
		boolOpt(&o.emptyIsNil)
	case "string.encode_64":
		boolOpt(&o.encode64)
	case "string.decode_64":
		boolOpt(&o.decode64)
	case "string.upcase":
		boolOpt(&o.upcase)
	case "string.downcase":
		boolOpt(&o.downcase)
	case "string.strip":
		boolOpt(&o.strip)
	case "string.chomp":
		boolOpt(&o.chomp)
	case "string.capitalize":
		boolOpt(&o.capitalz)
	case "integer.min", "integer.max":
		if isNull(n) {
			if key == "min" {
				o.min = nil
			}
			return
		}
		v, ok := d.integer(n, path, math.MinInt64, math.MaxInt64, "a whole number")
		if ok {
			x := int64(v)
			if key == "min" {
				o.min = &x
			} else {
				o.max = &x
			}
		}
	case "integer.nil_is_zero":
		boolOpt(&o.nilIsZero)
	case "boolean.truthy":
		if l, ok := d.strList(n, path); ok {
			o.truthy = nil
			for _, s := range l {
				o.truthy = append(o.truthy, strings.ToLower(strings.TrimSpace(s)))
			}
		}
	case "boolean.nil_is":
		boolOpt(&o.nilIs)
	case "boolean.blank_is":
		boolOpt(&o.blankIs)
	case "boolean.true":
		o.trueOut = nodeValue(n)
	case "boolean.false":
		o.falseOut = nodeValue(n)
	case "boolean.as":
		s, _ := d.str(n, path)
		switch s {
		case "string", "boolean", "integer", "true_or_nil":
			o.as = s
		default:
			d.expected(n, path, "one of string, boolean, integer, true_or_nil")
		}
	case "enum.options":
		d.parseEnumOptions(o, n, path)
	case "enum.can_be_other":
		boolOpt(&o.canBeOther)
	case "uri.schemes":
		if l, ok := d.strList(n, path); ok {
			o.schemes = l
		}
	case "array.split":
		if s, ok := scalarText(n); ok {
			o.split = s
		} else {
			d.expected(n, path, "a separator string")
		}
	case "array.join":
		if b, ok := plainYAML11Bool(n); ok {
			d.warnYAML11Bool(n, path, n.Value, b)
			if b {
				s := ","
				o.join = &s
			}
			return
		}
		if b, isBool := n.Value, n.ShortTag() == "!!bool"; isBool {
			if b == "true" {
				s := ","
				o.join = &s
			}
			return
		}
		if s, ok := scalarText(n); ok {
			o.join = &s
		} else {
			d.expected(n, path, "a separator string or false")
		}
	case "array.empty_is_nil":
		boolOpt(&o.arrEmptyIsNil)
	case "array.sort":
		boolOpt(&o.arrSort)
	case "array.uniq":
		boolOpt(&o.arrUniq)
	case "array.count":
		boolOpt(&o.arrCnt)
	case "array.compact":
		boolOpt(&o.arrCompact)
	}
}

func (d *decoder) parseEnumOptions(o *typeOpts, n *yaml.Node, path string) {
	o.choices, o.choiceVals = nil, nil
	add := func(val any, label, desc string) {
		o.choices = append(o.choices, Choice{Value: textOf(val), Label: label, Description: desc})
		o.choiceVals = append(o.choiceVals, val)
	}
	switch n.Kind {
	case yaml.SequenceNode:
		for i, item := range n.Content {
			ipath := fmt.Sprintf("%s[%d]", path, i)
			if item.Kind == yaml.MappingNode {
				vn := mapGet(item, "value")
				if isNull(vn) || vn.Kind != yaml.ScalarNode {
					d.expected(item, ipath, "an option with a value: key")
					continue
				}
				label, _ := scalarText(mapGet(item, "label"))
				desc, _ := scalarText(mapGet(item, "description"))
				if label == "" {
					label = vn.Value
				}
				add(nodeValue(vn), label, desc)
				continue
			}
			if item.Kind != yaml.ScalarNode || isNull(item) {
				d.expected(item, ipath, "an option value")
				continue
			}
			add(nodeValue(item), item.Value, "")
		}
	case yaml.MappingNode:
		for i := 0; i+1 < len(n.Content); i += 2 {
			desc, _ := scalarText(n.Content[i+1])
			add(nodeValue(n.Content[i]), n.Content[i].Value, desc)
		}
	default:
		d.expected(n, path, "a list of options")
		return
	}
	seen := map[string]bool{}
	for _, c := range o.choices {
		if seen[c.Value] {
			d.errorf(n, path, "option %q is listed twice", c.Value)
		}
		seen[c.Value] = true
	}
	if len(o.choices) == 0 {
		d.expected(n, path, "at least one option")
	}
}
