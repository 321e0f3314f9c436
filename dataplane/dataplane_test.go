package dataplane

import (
	"io"
	"log/slog"
	"strings"
	"testing"
)

func TestOverlayModeOnOneHost(t *testing.T) {
	quietLog := slog.New(slog.NewTextHandler(io.Discard, nil))
	cases := []struct {
		overlay, advertise string
		enabled            bool
		reason             string
	}{
		{"auto", "127.0.0.2", false, "loopback address (development mode"},
		{"auto", "10.0.0.5", true, ""},
		{"off", "10.0.0.5", false, "--overlay off"},
		{"on", "127.0.0.2", true, ""},
	}
	for _, c := range cases {
		t.Run(c.overlay+" "+c.advertise, func(t *testing.T) {
			dp := New(Config{Overlay: c.overlay, Advertise: c.advertise, DataDir: t.TempDir(), Log: quietLog})
			st := dp.Status()
			if st.Enabled != c.enabled || !strings.Contains(st.Reason, c.reason) {
				t.Fatalf("enabled %v reason %q; want %v with %q", st.Enabled, st.Reason, c.enabled, c.reason)
			}
			if c.enabled && dp.key.PublicKey().String() == "" {
				t.Fatal("an enabled overlay has its key before anything reads it")
			}
		})
	}
}
