package httpapi

import (
	"testing"
	"time"

	"github.com/kontena-ng/kontena/fsm"
)

func TestRenewDue(t *testing.T) {
	t0 := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	c := &fsm.Certificate{Source: fsm.CertACME, ChallengeType: "http-01", IssuedAt: t0, ExpiresAt: t0.Add(90 * 24 * time.Hour)}
	for _, tc := range []struct {
		at   time.Time
		want bool
	}{{t0.Add(59 * 24 * time.Hour), false}, {t0.Add(61 * 24 * time.Hour), true}} {
		if got := renewDue(c, tc.at); got != tc.want {
			t.Errorf("renewDue at day %v = %v", tc.at.Sub(t0).Hours()/24, got)
		}
	}
	for _, other := range []fsm.Certificate{{Source: fsm.CertImported, IssuedAt: t0, ExpiresAt: t0.Add(time.Hour)},
		{Source: fsm.CertACME, ChallengeType: "dns-01", IssuedAt: t0, ExpiresAt: t0.Add(time.Hour)}} {
		if renewDue(&other, t0.Add(59*time.Minute)) {
			t.Errorf("%s/%s renews by itself", other.Source, other.ChallengeType)
		}
	}
}

func TestIsDomain(t *testing.T) {
	for d, want := range map[string]bool{"shop.example.com": true, "a.b": true, "localhost": false, "-a.com": false, "a..com": false, "UPPER.com": true, "a_b.com": false} {
		if isDomain(d) != want {
			t.Errorf("isDomain(%q) != %v", d, want)
		}
	}
}
