package api

import (
	"bytes"
	"errors"
	"io"
	"net/http"
	"net/url"
	"reflect"
	"strings"
	"testing"
)

func TestFrames(t *testing.T) {
	var buf bytes.Buffer
	s := NewFrameSender(&buf)
	must := func(err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	must(s.Send(FrameStdin, []byte("hi")))
	must(s.Send(FrameStdin, nil)) // stdin EOF
	must(s.Send(FrameResize, ResizePayload(132, 43)))
	big := bytes.Repeat([]byte("x"), 3*frameChunk+5)
	if k, err := s.Writer(FrameStdout).Write(big); err != nil || k != len(big) {
		t.Fatalf("write %d: %v", k, err)
	}
	must(s.Send(FrameExit, ExitPayload(-2)))

	want := []struct {
		typ byte
		n   int
	}{{FrameStdin, 2}, {FrameStdin, 0}, {FrameResize, 4}, {FrameStdout, frameChunk}, {FrameStdout, frameChunk}, {FrameStdout, frameChunk}, {FrameStdout, 5}, {FrameExit, 4}}
	var out []byte
	for i, w := range want {
		typ, p, err := ReadFrame(&buf)
		if err != nil || typ != w.typ || len(p) != w.n {
			t.Fatalf("frame %d: type %d len %d err %v; want type %d len %d", i, typ, len(p), err, w.typ, w.n)
		}
		switch typ {
		case FrameResize:
			if c, r, err := ParseResize(p); err != nil || c != 132 || r != 43 {
				t.Fatalf("resize %d×%d %v", c, r, err)
			}
		case FrameStdout:
			out = append(out, p...)
		case FrameExit:
			if code, err := ParseExit(p); err != nil || code != -2 {
				t.Fatalf("exit %d %v", code, err)
			}
		}
	}
	if !bytes.Equal(out, big) {
		t.Fatal("chunked stdout does not reassemble")
	}
	if _, _, err := ReadFrame(&buf); err != io.EOF {
		t.Fatalf("after the last frame: %v, want io.EOF", err)
	}
}

func TestFrameErrors(t *testing.T) {
	if err := WriteFrame(io.Discard, FrameStdout, make([]byte, MaxFramePayload+1)); err == nil {
		t.Fatal("oversized frame written")
	}
	// A length above the limit is refused before anything is allocated.
	if _, _, err := ReadFrame(bytes.NewReader([]byte{1, 0xff, 0xff, 0xff, 0xff})); err == nil || !strings.Contains(err.Error(), "not a kontena exec stream") {
		t.Fatalf("huge length: %v", err)
	}
	if _, _, err := ReadFrame(bytes.NewReader([]byte{1, 0, 0})); !errors.Is(err, io.ErrUnexpectedEOF) {
		t.Fatalf("cut header: %v", err)
	}
	if _, _, err := ReadFrame(bytes.NewReader([]byte{1, 0, 0, 0, 9, 'a'})); !errors.Is(err, io.ErrUnexpectedEOF) {
		t.Fatalf("cut payload: %v", err)
	}
	if _, _, err := ParseResize([]byte{1}); err == nil {
		t.Fatal("short resize accepted")
	}
	if _, err := ParseExit(nil); err == nil {
		t.Fatal("empty exit accepted")
	}
}

func TestExecQuery(t *testing.T) {
	in := ExecOptions{Cmd: []string{"sh", "-c", "echo 'a b' && exit 3"}, Stdin: true, Tty: true, Cols: 200, Rows: 50}
	got, err := ParseExecQuery(in.Query())
	if err != nil || !reflect.DeepEqual(got, in) {
		t.Fatalf("round trip: %+v %v", got, err)
	}
	for _, q := range []string{"", "cmd=", "cmd=ls&cols=x", "cmd=ls&rows=70000"} {
		v, _ := url.ParseQuery(q)
		if _, err := ParseExecQuery(v); err == nil {
			t.Errorf("%q accepted", q)
		}
	}
	h := http.Header{"Connection": {"keep-alive, Upgrade"}, "Upgrade": {"Kontena-Exec"}}
	if !IsExecUpgrade(h) {
		t.Fatal("upgrade not recognised")
	}
	h.Set("Upgrade", "websocket")
	if IsExecUpgrade(h) {
		t.Fatal("websocket taken for exec")
	}
}
