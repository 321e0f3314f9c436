package stack

import (
	"fmt"
	"io"
	"math/big"
	"strings"

	crand "crypto/rand"
)

var charsets = map[string]string{
	"numbers":      "0123456789",
	"letters":      "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ",
	"downcase":     "abcdefghijklmnopqrstuvwxyz",
	"upcase":       "ABCDEFGHIJKLMNOPQRSTUVWXYZ",
	"alphanumeric": "0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ",
	"hex":          "0123456789abcdef",
	"hex_upcase":   "0123456789ABCDEF",
	"base64":       "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/",
	// Printable ASCII without the space, so values survive unquoted use.
	"ascii_printable": "!\"#$%&'()*+,-./0123456789:;<=>?@ABCDEFGHIJKLMNOPQRSTUVWXYZ[\\]^_`abcdefghijklmnopqrstuvwxyz{|}~",
}

func (l *loader) randReader() io.Reader {
	if l.opts.Rand != nil {
		return l.opts.Rand
	}
	return crand.Reader
}

// randomString draws length characters uniformly from a named charset or,
// as Opto allowed, from the characters of the charset text itself.
func (l *loader) randomString(length int, charset string) (string, error) {
	chars, ok := charsets[charset]
	if !ok {
		if charset == "" {
			return "", fmt.Errorf("charset: expected one of numbers, letters, downcase, upcase, alphanumeric, hex, hex_upcase, base64, ascii_printable or a set of characters")
		}
		chars = charset
	}
	set := []rune(chars)
	max := big.NewInt(int64(len(set)))
	var b strings.Builder
	for i := 0; i < length; i++ {
		n, err := crand.Int(l.randReader(), max)
		if err != nil {
			return "", fmt.Errorf("random source: %w", err)
		}
		b.WriteRune(set[n.Int64()])
	}
	s := b.String()
	if charset == "base64" {
		// Opto made base64 strings decodable; pad to a multiple of four.
		if r := len(s) % 4; r != 0 {
			s = s[:len(s)-r] + strings.Repeat("=", r)
		}
	}
	return s, nil
}

func (l *loader) randomInt(lo, hi int) (int, error) {
	span := new(big.Int).Sub(big.NewInt(int64(hi)), big.NewInt(int64(lo)))
	span.Add(span, big.NewInt(1))
	n, err := crand.Int(l.randReader(), span)
	if err != nil {
		return 0, fmt.Errorf("random source: %w", err)
	}
	return int(n.Int64() + int64(lo)), nil
}

// randomUUID is a version 4 UUID.
func (l *loader) randomUUID() (string, error) {
	var b [16]byte
	if _, err := io.ReadFull(l.randReader(), b[:]); err != nil {
		return "", fmt.Errorf("random source: %w", err)
	}
	b[6] = b[6]&0x0f | 0x40
	b[8] = b[8]&0x3f | 0x80
	return fmt.Sprintf("%x-%x-%x-%x-%x", b[0:4], b[4:6], b[6:8], b[8:10], b[10:16]), nil
}
