package httpapi

import (
	"testing"
	"time"
)

func TestLoginGate(t *testing.T) {
	var g loginGate
	t0 := time.Unix(1000, 0)
	for i := 0; i < loginFailures; i++ {
		if !g.allow("10.0.0.1", t0) {
			t.Fatalf("refused after %d failures", i)
		}
		g.failed("10.0.0.1", t0)
	}
	if g.allow("10.0.0.1", t0.Add(time.Second)) {
		t.Fatal("a source past its failures is still examined")
	}
	if !g.allow("10.0.0.2", t0.Add(time.Second)) {
		t.Fatal("another source is throttled too")
	}
	if !g.allow("10.0.0.1", t0.Add(loginWindow)) {
		t.Fatal("the window ended but the source is still throttled")
	}
	// At most loginAuditMax refusals per window go on the record.
	var h loginGate
	audited := 0
	for i := 0; i < 2*loginAuditMax; i++ {
		if h.failed(string(rune('a'+i%26))+string(rune(i)), t0) {
			audited++
		}
	}
	if audited != loginAuditMax {
		t.Fatalf("audited %d refusals, want %d", audited, loginAuditMax)
	}
}
