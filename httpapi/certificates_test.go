package httpapi

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/kontena-ng/kontena/dispatcher"
	"github.com/kontena-ng/kontena/fsm"
	"github.com/kontena-ng/kontena/stack"
)

// TestCertificateInjectionAndRollout: a service's certificates reach only
// its node's assignment as chain + key, and replacing one redeploys it.
func TestCertificateInjectionAndRollout(t *testing.T) {
	g := newTableGrid(t)
	n := g.srv
	ctx := context.Background()
	store := func(chain, key string) {
		t.Helper()
		sealed, err := g.keys.Seal.Seal([]byte(key), sealSecret(dispatcher.CertificateKeyName("shop.test")))
		if err != nil {
			t.Fatal(err)
		}
		if _, _, err := n.apply(ctx, &fsm.CertificateStore{Certificate: fsm.Certificate{Subject: "shop.test", CertPEM: chain, KeySealed: sealed,
			ExpiresAt: time.Now().Add(time.Hour), Source: fsm.CertImported}}, nil); err != nil {
			t.Fatal(err)
		}
	}
	store("CHAIN-1\n", "KEY-1\n")
	spec := stack.Stack{Name: "tls", Services: []*stack.Service{{Name: "lb", Image: "nginx", Instances: 1,
		Certificates: []stack.Certificate{{Subject: "shop.test", Name: "SSL_CERTS", Type: "env"}}}}}
	if _, _, err := n.apply(ctx, &fsm.StackInstall{Stack: fsm.Stack{Name: "tls", Spec: spec}}, nil); err != nil {
		t.Fatal(err)
	}
	if _, _, err := n.apply(ctx, &fsm.InstancesPlace{ServiceID: "tls/lb", Revision: 1, Place: []fsm.Placement{{Number: 1, NodeID: "id1"}}}, nil); err != nil {
		t.Fatal(err)
	}
	st, _ := n.store()
	as, err := n.nodeAssignments(st.Snapshot(), "id1")
	if err != nil {
		t.Fatal(err)
	}
	if len(as.Items) != 1 || as.Items[0].SecretEnv["SSL_CERTS"] != "CHAIN-1\nKEY-1\n" {
		t.Fatalf("assignment: %+v", as.Items)
	}
	before, _ := st.Service("tls/lb")
	store("CHAIN-2\n", "KEY-2\n")
	after, _ := st.Service("tls/lb")
	if after.Revision != before.Revision+1 || after.Deploy.Reason != fsm.ReasonSecret {
		t.Fatalf("replacing the certificate: revision %d -> %d, deploy %+v", before.Revision, after.Revision, after.Deploy)
	}
	evs, _ := st.Events(0)
	found := false
	for _, e := range evs {
		found = found || strings.Contains(e.Message, "certificate shop.test was replaced")
	}
	if !found {
		t.Error("no event says the certificate's user redeploys")
	}
}
