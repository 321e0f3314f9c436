package stack

import (
	"errors"
	"fmt"
	"math"
	"math/big"
	"strconv"
	"strings"
)

// expandRefs replaces ${name} and $name in an interpolate/evaluate template
// with values from lookup; $$ is a literal $. Inside braces the whole text is
// the name, so ${a-b} never silently becomes ${a} followed by "-b".
func expandRefs(s string, lookup func(name string) (any, bool, error)) (string, error) {
	var b strings.Builder
	for i := 0; i < len(s); {
		c := s[i]
		if c != '$' || i+1 >= len(s) {
			b.WriteByte(c)
			i++
			continue
		}
		next := s[i+1]
		switch {
		case next == '$':
			b.WriteByte('$')
			i += 2
			continue
		case next == '{':
			end := strings.IndexByte(s[i+2:], '}')
			if end < 0 {
				return "", fmt.Errorf("unclosed ${ in %q", s)
			}
			name := s[i+2 : i+2+end]
			v, err := refValue(name, lookup)
			if err != nil {
				return "", err
			}
			b.WriteString(v)
			i += 3 + end
			continue
		case isNameStart(next):
			j := i + 1
			for j < len(s) && isNameChar(s[j]) {
				j++
			}
			v, err := refValue(s[i+1:j], lookup)
			if err != nil {
				return "", err
			}
			b.WriteString(v)
			i = j
			continue
		}
		b.WriteByte(c)
		i++
	}
	return b.String(), nil
}

func refValue(name string, lookup func(string) (any, bool, error)) (string, error) {
	v, declared, err := lookup(name)
	if err != nil {
		return "", err
	}
	if !declared {
		return "", fmt.Errorf("variable %q is not declared", name)
	}
	if v == nil {
		return "", fmt.Errorf("variable %q has no value (variables are resolved in order of use)", name)
	}
	return textOf(v), nil
}

func isNameStart(c byte) bool {
	return c == '_' || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z')
}

func isNameChar(c byte) bool {
	return isNameStart(c) || (c >= '0' && c <= '9')
}

// evalArithmetic computes + - * / and parentheses over integers and decimals,
// like Opto's evaluate: integer division floors, any decimal makes the
// result a decimal.
func evalArithmetic(expr string) (any, error) {
	p := &arith{s: strings.ReplaceAll(expr, " ", "")}
	if p.s == "" {
		return nil, errors.New("empty calculation")
	}
	v, err := p.sum(0)
	if err != nil {
		return nil, err
	}
	if p.i != len(p.s) {
		return nil, fmt.Errorf("unexpected %q in %q", p.s[p.i:], expr)
	}
	return v.result()
}

type num struct {
	isFloat bool
	i       *big.Int
	f       float64
}

func (n num) float() float64 {
	if n.isFloat {
		return n.f
	}
	f, _ := new(big.Float).SetInt(n.i).Float64()
	return f
}

func (n num) result() (any, error) {
	if n.isFloat {
		if math.IsInf(n.f, 0) || math.IsNaN(n.f) {
			return nil, errors.New("the result is not a finite number")
		}
		return n.f, nil
	}
	if !n.i.IsInt64() || n.i.Int64() > math.MaxInt || n.i.Int64() < math.MinInt {
		return nil, errors.New("the result is too large")
	}
	return int(n.i.Int64()), nil
}

type arith struct {
	s string
	i int
}

const maxArithDepth = 64

var bigLimit = new(big.Int).Lsh(big.NewInt(1), 256)

func (p *arith) sum(depth int) (num, error) {
	l, err := p.product(depth)
	if err != nil {
		return l, err
	}
	for p.i < len(p.s) && (p.s[p.i] == '+' || p.s[p.i] == '-') {
		op := p.s[p.i]
		p.i++
		r, err := p.product(depth)
		if err != nil {
			return r, err
		}
		if l.isFloat || r.isFloat {
			if op == '+' {
				l = num{isFloat: true, f: l.float() + r.float()}
			} else {
				l = num{isFloat: true, f: l.float() - r.float()}
			}
			continue
		}
		if op == '+' {
			l = num{i: new(big.Int).Add(l.i, r.i)}
		} else {
			l = num{i: new(big.Int).Sub(l.i, r.i)}
		}
	}
	return l, nil
}

func (p *arith) product(depth int) (num, error) {
	l, err := p.unary(depth)
	if err != nil {
		return l, err
	}
	for p.i < len(p.s) && (p.s[p.i] == '*' || p.s[p.i] == '/') {
		op := p.s[p.i]
		p.i++
		r, err := p.unary(depth)
		if err != nil {
			return r, err
		}
		if l.isFloat || r.isFloat {
			if op == '*' {
				l = num{isFloat: true, f: l.float() * r.float()}
			} else {
				if r.float() == 0 {
					return l, errors.New("division by zero")
				}
				l = num{isFloat: true, f: l.float() / r.float()}
			}
			continue
		}
		if op == '*' {
			l = num{i: new(big.Int).Mul(l.i, r.i)}
			if l.i.CmpAbs(bigLimit) > 0 {
				return l, errors.New("the result is too large")
			}
		} else {
			if r.i.Sign() == 0 {
				return l, errors.New("division by zero")
			}
			// Floor division, as in Ruby.
			q, m := new(big.Int).DivMod(l.i, r.i, new(big.Int))
			if m.Sign() != 0 && r.i.Sign() < 0 {
				q.Sub(q, big.NewInt(1))
			}
			l = num{i: q}
		}
	}
	return l, nil
}

func (p *arith) unary(depth int) (num, error) {
	if depth > maxArithDepth {
		return num{}, errors.New("the calculation is nested too deeply")
	}
	if p.i < len(p.s) && (p.s[p.i] == '-' || p.s[p.i] == '+') {
		neg := p.s[p.i] == '-'
		p.i++
		v, err := p.unary(depth + 1)
		if err != nil || !neg {
			return v, err
		}
		if v.isFloat {
			return num{isFloat: true, f: -v.f}, nil
		}
		return num{i: new(big.Int).Neg(v.i)}, nil
	}
	if p.i < len(p.s) && p.s[p.i] == '(' {
		p.i++
		v, err := p.sum(depth + 1)
		if err != nil {
			return v, err
		}
		if p.i >= len(p.s) || p.s[p.i] != ')' {
			return v, errors.New("missing )")
		}
		p.i++
		return v, nil
	}
	start := p.i
	for p.i < len(p.s) && (p.s[p.i] >= '0' && p.s[p.i] <= '9' || p.s[p.i] == '.') {
		p.i++
	}
	lit := p.s[start:p.i]
	if lit == "" {
		if p.i < len(p.s) {
			return num{}, fmt.Errorf("unexpected %q: only numbers, + - * / and parentheses are allowed", p.s[p.i:p.i+1])
		}
		return num{}, errors.New("the calculation ends too early")
	}
	if len(lit) > 40 {
		return num{}, errors.New("number too long")
	}
	if strings.Contains(lit, ".") {
		f, err := strconv.ParseFloat(lit, 64)
		if err != nil {
			return num{}, fmt.Errorf("bad number %q", lit)
		}
		return num{isFloat: true, f: f}, nil
	}
	i, ok := new(big.Int).SetString(lit, 10)
	if !ok {
		return num{}, fmt.Errorf("bad number %q", lit)
	}
	return num{i: i}, nil
}
