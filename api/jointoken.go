package api

import (
	"errors"
	"strings"
)

const tokenPrefix = "K1"

// JoinToken is what `kontena grid token` prints: K1.<grid>.<CA sha256>.<secret>.
type JoinToken struct {
	Grid, CADigest, Secret string
}

func (t JoinToken) String() string {
	return strings.Join([]string{tokenPrefix, t.Grid, t.CADigest, t.Secret}, ".")
}

// ParseJoinToken reads a join token.
func ParseJoinToken(s string) (JoinToken, error) {
	parts := strings.Split(strings.TrimSpace(s), ".")
	if len(parts) != 4 || parts[0] != tokenPrefix || len(parts[2]) != 64 || parts[3] == "" {
		return JoinToken{}, errors.New("malformed join token: expected K1.<grid>.<ca digest>.<secret> as printed by `kontena grid token`")
	}
	return JoinToken{Grid: parts[1], CADigest: parts[2], Secret: parts[3]}, nil
}
