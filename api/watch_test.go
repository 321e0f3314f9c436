package api

import (
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"sync"
	"testing"
	"time"
)

// Watch sends back the hash of the answer it holds, and hands fn only
// answers whose content changed (an unchanged answer at the end of a wait,
// or from a node that ignores ?hash, is not handed on again).
func TestWatchHandsOnChangedAnswersOnly(t *testing.T) {
	// The server's answers in turn: value and hash.
	answers := []struct{ v, hash string }{{"a", "h1"}, {"a", "h1"}, {"b", "h2"}, {"b", "h2"}, {"c", ""}, {"c", ""}}
	var mu sync.Mutex
	var queries []string
	srv := httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		k := len(queries)
		queries = append(queries, r.URL.RawQuery)
		mu.Unlock()
		if k >= len(answers) {
			<-r.Context().Done()
			return
		}
		w.Header().Set(HeaderIndex, fmt.Sprint(10+k))
		if answers[k].hash != "" {
			w.Header().Set(HeaderHash, answers[k].hash)
		}
		fmt.Fprintf(w, "%q", answers[k].v)
	}))
	defer srv.Close()
	c := NewClientTLS([]string{srv.URL}, srv.Client().Transport.(*http.Transport).TLSClientConfig, "")
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	var got []string
	Watch(ctx, c, "/v1/x", nil, func(v *string) {
		got = append(got, *v)
		if len(got) == 4 {
			cancel()
		}
	})
	// Without a hash every answer is new: "c" twice.
	if fmt.Sprint(got) != "[a b c c]" {
		t.Fatalf("fn got %v, want [a b c c]", got)
	}
	mu.Lock()
	defer mu.Unlock()
	want := []string{"", "index=10&wait=30s&hash=h1", "index=11&wait=30s&hash=h1", "index=12&wait=30s&hash=h2", "index=13&wait=30s&hash=h2", "index=14&wait=30s"}
	if fmt.Sprint(queries[:len(want)]) != fmt.Sprint(want) {
		t.Fatalf("queries %q, want %q", queries, want)
	}
}
