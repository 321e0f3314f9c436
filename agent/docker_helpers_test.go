package agent

import (
	"archive/tar"
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"
)

// Real-engine tests fail (never skip) without Docker: CI always has it.

func randID(t *testing.T) string {
	b := make([]byte, 4)
	if _, err := rand.Read(b); err != nil {
		t.Fatal(err)
	}
	return hex.EncodeToString(b)
}

func docker(t *testing.T, args ...string) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	out, err := exec.CommandContext(ctx, "docker", args...).CombinedOutput()
	if err != nil {
		t.Fatalf("docker %s: %v\n%s", strings.Join(args, " "), err, out)
	}
	return strings.TrimSpace(string(out))
}

// engine returns a Docker runtime and a fresh stack name whose containers
// and volumes are removed when the test ends.
func engine(t *testing.T) (Runtime, string) {
	t.Helper()
	ctx := context.Background()
	rt, closeFn, err := NewDockerRuntime(ctx, quiet())
	if err != nil {
		t.Fatalf("real-engine test needs Docker: %v", err)
	}
	stack := "agt" + randID(t)
	t.Cleanup(func() {
		sel := "label=" + LabelStack + "=" + stack
		if ids := docker(t, "ps", "-aq", "--filter", sel); ids != "" {
			docker(t, append([]string{"rm", "-f", "-v"}, strings.Fields(ids)...)...)
		}
		if vols := docker(t, "volume", "ls", "-q", "--filter", sel); vols != "" {
			docker(t, append([]string{"volume", "rm", "-f"}, strings.Fields(vols)...)...)
		}
		closeFn()
	})
	return rt, stack
}

// busyboxImage imports a ~2 MB image of the host's static busybox (install
// it with `apt-get install -y busybox-static`), removed at the end.
func busyboxImage(t *testing.T) string {
	t.Helper()
	bin, err := os.ReadFile("/bin/busybox")
	if err != nil {
		t.Fatalf("need a static /bin/busybox (apt-get install -y busybox-static): %v", err)
	}
	list, err := exec.Command("/bin/busybox", "--list").Output()
	if err != nil {
		t.Fatalf("busybox --list: %v", err)
	}
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	write := func(h *tar.Header, body []byte) {
		if err := tw.WriteHeader(h); err != nil {
			t.Fatal(err)
		}
		if _, err := tw.Write(body); err != nil {
			t.Fatal(err)
		}
	}
	for _, d := range []string{"bin/", "tmp/", "data/"} {
		write(&tar.Header{Name: d, Typeflag: tar.TypeDir, Mode: 0o1777}, nil)
	}
	write(&tar.Header{Name: "bin/busybox", Typeflag: tar.TypeReg, Mode: 0o755, Size: int64(len(bin))}, bin)
	for _, a := range strings.Fields(string(list)) {
		if a != "busybox" {
			write(&tar.Header{Name: "bin/" + a, Typeflag: tar.TypeSymlink, Linkname: "busybox", Mode: 0o777}, nil)
		}
	}
	if err := tw.Close(); err != nil {
		t.Fatal(err)
	}
	tag := "kontena-agent-test:" + randID(t)
	cmd := exec.Command("docker", "import", "--change", "ENV PATH=/bin", "-", tag)
	cmd.Stdin = &buf
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("docker import: %v\n%s", err, out)
	}
	t.Cleanup(func() { docker(t, "rmi", "-f", tag) })
	return tag
}

// inspect is `docker inspect` of one container, decoded loosely.
type inspected struct {
	ID    string
	State struct {
		Status    string
		StartedAt string
	}
	Config struct {
		Env        []string
		Labels     map[string]string
		StopSignal string
	}
	HostConfig struct {
		Memory         int64
		NanoCpus       int64
		PortBindings   map[string][]struct{ HostIP, HostPort string }
		CapAdd         []string
		ReadonlyRootfs bool
	}
}

func inspectContainer(t *testing.T, id string) inspected {
	t.Helper()
	var v []inspected
	if err := json.Unmarshal([]byte(docker(t, "inspect", id)), &v); err != nil || len(v) != 1 {
		t.Fatalf("docker inspect %s: %v", id, err)
	}
	return v[0]
}
