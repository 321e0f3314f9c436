package stack

import (
	"crypto/md5"
	"crypto/sha1"
	"crypto/sha256"
	"crypto/sha512"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"hash"
	"math"
	"net/url"
	"sort"
	"strconv"
	"strings"
	"unicode"
	"unicode/utf8"
)

// textOf is the text form of a value, as ${} substitution inserts it.
func textOf(v any) string {
	switch x := v.(type) {
	case nil:
		return ""
	case string:
		return x
	case bool:
		return strconv.FormatBool(x)
	case int:
		return strconv.Itoa(x)
	case int64:
		return strconv.FormatInt(x, 10)
	case float64:
		return strconv.FormatFloat(x, 'f', -1, 64)
	case []any:
		parts := make([]string, len(x))
		for i, e := range x {
			parts[i] = textOf(e)
		}
		return strings.Join(parts, ",")
	case []string:
		return strings.Join(x, ",")
	}
	return fmt.Sprint(v)
}

// typeError is a value that does not fit the variable's type or options.
type typeError struct{ expected, found string }

func (e *typeError) Error() string { return "expected " + e.expected + ", found " + e.found }

func foundValue(v any) string {
	switch x := v.(type) {
	case string:
		return describeScalar(x)
	case nil:
		return "nothing"
	case []any:
		return "a list"
	case map[string]any:
		return "a mapping"
	}
	return textOf(v)
}

// sanitize converts a raw value (from the file, -v, env, a prompt or a
// resolver) to the variable's type, applies the transformations and checks
// the constraints. It returns the stored value and the value Liquid sees,
// and a note on what it tolerated (a fraction truncated) to warn about.
// eval computes a calculation given as an integer's value.
func (v *Variable) sanitize(raw any, eval func(string) (any, error)) (out, liquid any, note string, err error) {
	o := &v.opts
	switch v.Type {
	case "string":
		out, err = o.sanitizeString(raw)
	case "integer":
		out, note, err = o.sanitizeInteger(raw, eval)
	case "boolean":
		var truth bool
		out, truth, err = o.sanitizeBoolean(raw)
		if err == nil {
			return out, truth, "", nil
		}
	case "enum":
		out, err = o.sanitizeEnum(raw)
	case "uri":
		out, err = o.sanitizeURI(raw)
	case "array":
		out, err = o.sanitizeArray(raw)
	default:
		out = raw
	}
	if err != nil || out == nil {
		return nil, nil, "", err
	}
	if len(o.in) > 0 && !contains(o.in, textOf(out)) {
		return nil, nil, "", &typeError{"one of " + strings.Join(o.in, ", "), foundValue(out)}
	}
	return out, out, note, nil
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}

func scalarOnly(raw any, typ string) (string, error) {
	switch raw.(type) {
	case []any, map[string]any:
		return "", &typeError{"a " + typ, foundValue(raw)}
	}
	return textOf(raw), nil
}

func (o *typeOpts) sanitizeString(raw any) (any, error) {
	if raw == nil {
		return nil, nil
	}
	s, err := scalarOnly(raw, "string")
	if err != nil {
		return nil, err
	}
	if o.decode64 {
		b, err := base64.StdEncoding.DecodeString(strings.Join(strings.Fields(s), ""))
		if err != nil {
			return nil, &typeError{"base64 text (decode_64)", foundValue(s)}
		}
		s = string(b)
	}
	if o.strip {
		s = strings.TrimSpace(s)
	}
	if o.chomp {
		s = strings.TrimSuffix(strings.TrimSuffix(s, "\n"), "\r")
	}
	if o.upcase {
		s = strings.ToUpper(s)
	}
	if o.downcase {
		s = strings.ToLower(s)
	}
	if o.capitalz && s != "" {
		r, size := utf8.DecodeRuneInString(s)
		s = string(unicode.ToUpper(r)) + strings.ToLower(s[size:])
	}
	if o.emptyIsNil && strings.TrimSpace(s) == "" {
		return nil, nil
	}
	n := utf8.RuneCountInString(s)
	if o.minLen >= 0 && n < o.minLen {
		return nil, &typeError{fmt.Sprintf("at least %d characters", o.minLen), fmt.Sprintf("%d", n)}
	}
	if o.maxLen >= 0 && n > o.maxLen {
		return nil, &typeError{fmt.Sprintf("at most %d characters", o.maxLen), fmt.Sprintf("%d", n)}
	}
	if o.hexdigest != "" {
		var h hash.Hash
		switch o.hexdigest {
		case "md5":
			h = md5.New()
		case "sha1":
			h = sha1.New()
		case "sha256":
			h = sha256.New()
		case "sha384":
			h = sha512.New384()
		default:
			h = sha512.New()
		}
		h.Write([]byte(s))
		s = hex.EncodeToString(h.Sum(nil))
	}
	if o.encode64 {
		s = base64.StdEncoding.EncodeToString([]byte(s))
	}
	return s, nil
}

func (o *typeOpts) sanitizeInteger(raw any, eval func(string) (any, error)) (any, string, error) {
	if s, isStr := raw.(string); isStr && strings.TrimSpace(s) == "" {
		raw = nil
	}
	if raw == nil {
		if o.nilIsZero {
			return 0, "", nil
		}
		return nil, "", nil
	}
	i, note, err := integerOf(raw, eval)
	if err != nil {
		return nil, "", err
	}
	if o.min != nil && i < *o.min {
		return nil, "", &typeError{fmt.Sprintf("a number of at least %d", *o.min), strconv.FormatInt(i, 10)}
	}
	if o.max != nil && i > *o.max {
		return nil, "", &typeError{fmt.Sprintf("a number of at most %d", *o.max), strconv.FormatInt(i, 10)}
	}
	if i > math.MaxInt || i < math.MinInt {
		return nil, "", &typeError{"a smaller number", strconv.FormatInt(i, 10)}
	}
	return int(i), note, nil
}

// integerOf reads a number, a numeric string or a calculation; fractions
// are truncated (wholeNumber says why), with a note.
func integerOf(raw any, eval func(string) (any, error)) (int64, string, error) {
	switch x := raw.(type) {
	case int:
		return int64(x), "", nil
	case int64:
		return x, "", nil
	case float64:
		return wholeNumber(x)
	case string:
		s := strings.TrimSpace(x)
		if n, err := strconv.ParseInt(s, 10, 64); err == nil {
			return n, "", nil
		}
		if f, err := strconv.ParseFloat(s, 64); err == nil {
			return wholeNumber(f)
		}
		// Opto evaluated integer values as arithmetic over other
		// variables ("${a} * 2"); keep that.
		if eval == nil {
			return 0, "", &typeError{"a whole number", foundValue(raw)}
		}
		r, err := eval(s)
		if errors.Is(err, errQuiet) {
			return 0, "", err
		}
		if err != nil {
			return 0, "", &typeError{"a whole number or a calculation", foundValue(raw) + " (" + err.Error() + ")"}
		}
		return integerOf(r, nil)
	}
	return 0, "", &typeError{"a whole number", foundValue(raw)}
}

func (o *typeOpts) sanitizeBoolean(raw any) (any, bool, error) {
	var truth bool
	switch x := raw.(type) {
	case nil:
		truth = o.nilIs
	case bool:
		truth = x
	case []any, map[string]any:
		return nil, false, &typeError{"true or false", foundValue(raw)}
	default:
		s := strings.ToLower(strings.TrimSpace(textOf(x)))
		if s == "" {
			truth = o.blankIs
		} else {
			truth = contains(o.truthy, s)
		}
	}
	switch o.as {
	case "boolean":
		return truth, truth, nil
	case "integer":
		if truth {
			if n, ok := o.trueOut.(int); ok {
				return n, truth, nil
			}
			return 1, truth, nil
		}
		if n, ok := o.falseOut.(int); ok {
			return n, truth, nil
		}
		return 0, truth, nil
	case "true_or_nil":
		if truth {
			return true, true, nil
		}
		return nil, false, nil
	}
	if truth {
		return textOf(o.trueOut), truth, nil
	}
	return textOf(o.falseOut), truth, nil
}

func (o *typeOpts) sanitizeEnum(raw any) (any, error) {
	if raw == nil {
		return nil, nil
	}
	s, err := scalarOnly(raw, "value")
	if err != nil {
		return nil, err
	}
	if s == "" {
		return nil, nil
	}
	for i, c := range o.choices {
		if c.Value == s {
			return o.choiceVals[i], nil
		}
	}
	if o.canBeOther {
		return s, nil
	}
	vals := make([]string, len(o.choices))
	for i, c := range o.choices {
		vals[i] = c.Value
	}
	return nil, &typeError{"one of " + strings.Join(vals, ", "), foundValue(s)}
}

func (o *typeOpts) sanitizeURI(raw any) (any, error) {
	if raw == nil {
		return nil, nil
	}
	s, err := scalarOnly(raw, "URI")
	if err != nil {
		return nil, err
	}
	s = strings.TrimSpace(s)
	if s == "" {
		return nil, nil
	}
	u, err := url.Parse(s)
	if err != nil || u.Scheme == "" {
		return nil, &typeError{"a URI like https://host/path", foundValue(s)}
	}
	if len(o.schemes) > 0 && !contains(o.schemes, u.Scheme) {
		return nil, &typeError{"a URI with scheme " + strings.Join(o.schemes, " or "), foundValue(s)}
	}
	return s, nil
}

func (o *typeOpts) sanitizeArray(raw any) (any, error) {
	var items []string
	switch x := raw.(type) {
	case nil:
	case []any:
		for _, e := range x {
			if _, isMap := e.(map[string]any); isMap {
				return nil, &typeError{"a list of values", "a mapping in the list"}
			}
			if _, isList := e.([]any); isList {
				return nil, &typeError{"a list of values", "a nested list"}
			}
			if e == nil && o.arrCompact {
				continue
			}
			items = append(items, textOf(e))
		}
	case string:
		if x != "" {
			if o.split == "" {
				for _, r := range x {
					items = append(items, string(r))
				}
			} else {
				items = strings.Split(x, o.split)
			}
		}
	case map[string]any:
		return nil, &typeError{"a list", foundValue(raw)}
	default:
		items = []string{textOf(x)}
	}
	if o.arrCompact {
		kept := items[:0]
		for _, s := range items {
			if s != "" {
				kept = append(kept, s)
			}
		}
		items = kept
	}
	if o.arrUniq {
		seen := map[string]bool{}
		kept := items[:0]
		for _, s := range items {
			if !seen[s] {
				seen[s] = true
				kept = append(kept, s)
			}
		}
		items = kept
	}
	if o.arrSort {
		sort.Strings(items)
	}
	if len(items) == 0 && o.arrEmptyIsNil {
		return nil, nil
	}
	if o.join != nil {
		return strings.Join(items, *o.join), nil
	}
	if o.arrCnt {
		return len(items), nil
	}
	out := make([]any, len(items))
	for i, s := range items {
		out[i] = s
	}
	return out, nil
}
