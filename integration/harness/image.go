package harness

import (
	"archive/tar"
	"bytes"
	"context"
	"crypto/sha256"
	"debug/elf"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"time"
)

// ImageOptions selects what goes into a node image.
type ImageOptions struct {
	// KontenaBinary is the host path of a statically linked kontena binary;
	// it is installed as /usr/local/bin/kontena.
	KontenaBinary string
	// WithDocker adds the host's dockerd, containerd, containerd-shim-runc-v2,
	// runc, docker-init, docker-proxy, docker CLI, iptables (nft) and their
	// shared libraries, so each node runs its own Docker engine; also dig and
	// wg when the host has them (dnsutils, wireguard-tools).
	WithDocker bool
}

const (
	baseRepo = "kontena-it-base"
	nodeRepo = "kontena-it-node"
	// layoutVersion is part of every image hash: bump it when the image
	// layout or the init script semantics change.
	layoutVersion = "kontena-it-layout-3"
	imagePath     = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
	initPath      = "/sbin/kontena-node-init"
)

var buildMu sync.Mutex

// BuildNodeImage builds (or reuses) a node image and returns its tag.
// The image is two layers: a base (busybox, init script and, WithDocker, the
// host's Docker engine binaries) made by `docker import`, tagged by a hash of
// its content, plus a layer with the kontena binary, tagged by a hash of the
// base tag and the binary. Existing tags are reused. Node images older than a
// day are pruned (best effort; images in use are kept by docker).
func BuildNodeImage(ctx context.Context, opts ImageOptions) (string, error) {
	buildMu.Lock()
	defer buildMu.Unlock()

	if opts.KontenaBinary == "" {
		return "", errors.New("harness: ImageOptions.KontenaBinary is required")
	}
	if err := checkStatic(opts.KontenaBinary); err != nil {
		return "", fmt.Errorf("harness: kontena binary: %w (build it with CGO_ENABLED=0)", err)
	}
	base, err := ensureBaseImage(ctx, opts.WithDocker)
	if err != nil {
		return "", err
	}
	sum, err := fileSHA256(opts.KontenaBinary)
	if err != nil {
		return "", err
	}
	h := sha256.Sum256([]byte(base + "\n" + sum))
	tag := nodeRepo + ":" + hex.EncodeToString(h[:8])
	if imageExists(ctx, tag) {
		return tag, nil
	}

	// base + kontena binary: create, copy in, commit.
	tmp := "kontena-it-build-" + randHex(6)
	if _, err := dockerCmd(ctx, nil, "create", "--name", tmp, base, initPath); err != nil {
		return "", err
	}
	defer func() {
		c, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		_, _ = dockerCmd(c, nil, "rm", "-f", "-v", tmp)
	}()
	f, err := os.Open(opts.KontenaBinary)
	if err != nil {
		return "", err
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return "", err
	}
	pr, pw := io.Pipe()
	go func() {
		tw := tar.NewWriter(pw)
		err := tw.WriteHeader(&tar.Header{Name: "usr/local/bin/kontena", Mode: 0o755, Size: st.Size(),
			ModTime: st.ModTime(), Typeflag: tar.TypeReg, Format: tar.FormatPAX})
		if err == nil {
			_, err = io.Copy(tw, f)
		}
		if err == nil {
			err = tw.Close()
		}
		pw.CloseWithError(err)
	}()
	_, err = dockerCmd(ctx, pr, "cp", "-", tmp+":/")
	pr.Close()
	if err != nil {
		return "", err
	}
	if _, err := dockerCmd(ctx, nil, "commit", tmp, tag); err != nil {
		return "", err
	}
	pruneImages(ctx, 24*time.Hour)
	return tag, nil
}

var baseCache sync.Map // withDocker bool -> tag

func ensureBaseImage(ctx context.Context, withDocker bool) (string, error) {
	if v, ok := baseCache.Load(withDocker); ok && imageExists(ctx, v.(string)) {
		return v.(string), nil
	}
	rf, err := planRootfs(withDocker)
	if err != nil {
		return "", err
	}
	tag := baseRepo + ":" + rf.hash()
	if !imageExists(ctx, tag) {
		pr, pw := io.Pipe()
		go func() { pw.CloseWithError(rf.writeTar(pw)) }()
		dockerLabel := "0"
		if withDocker {
			dockerLabel = "1"
		}
		_, err := dockerCmd(ctx, pr, "import",
			"--change", "LABEL kontena-it.docker="+dockerLabel,
			"--change", "ENV PATH="+imagePath,
			"--change", "ENV HOME=/root",
			"--change", "WORKDIR /root",
			"--change", "LABEL kontena-it=base",
			"--change", `CMD ["`+initPath+`"]`,
			"-", tag)
		pr.Close()
		if err != nil {
			return "", err
		}
	}
	baseCache.Store(withDocker, tag)
	return tag, nil
}

// pruneImages removes harness node images older than maxAge (best effort;
// docker refuses to remove images used by containers).
func pruneImages(ctx context.Context, maxAge time.Duration) {
	out, err := dockerCmd(ctx, nil, "images", nodeRepo, "--format", "{{.Repository}}:{{.Tag}}\t{{.CreatedAt}}")
	if err != nil {
		return
	}
	for _, line := range strings.Split(strings.TrimSpace(out), "\n") {
		ref, created, ok := strings.Cut(line, "\t")
		if !ok {
			continue
		}
		t, err := time.Parse("2006-01-02 15:04:05 -0700 MST", created)
		if err != nil || time.Since(t) < maxAge {
			continue
		}
		_, _ = dockerCmd(ctx, nil, "rmi", ref)
	}
}

func imageExists(ctx context.Context, ref string) bool {
	_, _, err := dockerRun(ctx, nil, "image", "inspect", "--format", "{{.Id}}", ref)
	return err == nil
}

func fileSHA256(path string) (string, error) {
	f, err := os.Open(path)
	if err != nil {
		return "", err
	}
	defer f.Close()
	h := sha256.New()
	if _, err := io.Copy(h, f); err != nil {
		return "", err
	}
	return hex.EncodeToString(h.Sum(nil)), nil
}

// checkStatic returns an error unless path is an ELF executable without an
// interpreter (statically linked).
func checkStatic(path string) error {
	f, err := elf.Open(path)
	if err != nil {
		return err
	}
	defer f.Close()
	for _, p := range f.Progs {
		if p.Type == elf.PT_INTERP {
			return fmt.Errorf("%s is dynamically linked", path)
		}
	}
	return nil
}

// ---- rootfs planning ----

type entry struct {
	name  string // absolute, clean path inside the image
	typ   byte   // tar.TypeDir, tar.TypeReg, tar.TypeSymlink
	mode  int64
	host  string // TypeReg: host file to copy (else data)
	data  []byte
	link  string
	size  int64
	mtime time.Time
}

type rootfs struct {
	entries  []*entry
	byName   map[string]*entry
	resolved map[string]string
}

func newRootfs() *rootfs {
	return &rootfs{byName: map[string]*entry{}, resolved: map[string]string{}}
}

func (r *rootfs) add(e *entry) {
	if _, ok := r.byName[e.name]; ok {
		return
	}
	r.ensureDir(filepath.Dir(e.name))
	r.byName[e.name] = e
	r.entries = append(r.entries, e)
}

func (r *rootfs) ensureDir(d string) {
	if d == "/" || d == "." {
		return
	}
	if _, ok := r.byName[d]; ok {
		return
	}
	r.ensureDir(filepath.Dir(d))
	e := &entry{name: d, typ: tar.TypeDir, mode: 0o755}
	r.byName[d] = e
	r.entries = append(r.entries, e)
}

// resolve maps a host path to the path of the real file, following symlinks
// like the host does, and records every symlink it crosses (so /lib ->
// usr/lib style layouts are reproduced). Missing components are kept as is.
func (r *rootfs) resolve(p string, depth int) (string, error) {
	p = filepath.Clean(p)
	if p == "/" {
		return p, nil
	}
	if v, ok := r.resolved[p]; ok {
		return v, nil
	}
	if depth > 40 {
		return "", fmt.Errorf("too many symlinks resolving %s", p)
	}
	dir, base := filepath.Split(p)
	rdir, err := r.resolve(dir, depth+1)
	if err != nil {
		return "", err
	}
	q := filepath.Join(rdir, base)
	res := q
	if fi, err := os.Lstat(q); err == nil && fi.Mode()&fs.ModeSymlink != 0 {
		target, err := os.Readlink(q)
		if err != nil {
			return "", err
		}
		r.add(&entry{name: q, typ: tar.TypeSymlink, mode: 0o777, link: target})
		if !filepath.IsAbs(target) {
			target = filepath.Join(rdir, target)
		}
		if res, err = r.resolve(target, depth+1); err != nil {
			return "", err
		}
	}
	r.resolved[p] = res
	return res, nil
}

// inDir resolves only the directory part of p on the host.
func (r *rootfs) inDir(p string) (string, error) {
	d, err := r.resolve(filepath.Dir(p), 0)
	if err != nil {
		return "", err
	}
	return filepath.Join(d, filepath.Base(p)), nil
}

func (r *rootfs) addHostFile(p string) (string, error) {
	real, err := r.resolve(p, 0)
	if err != nil {
		return "", err
	}
	st, err := os.Stat(real)
	if err != nil {
		return "", err
	}
	if !st.Mode().IsRegular() {
		return "", fmt.Errorf("%s is not a regular file", real)
	}
	r.add(&entry{name: real, typ: tar.TypeReg, mode: int64(st.Mode().Perm()), host: real,
		size: st.Size(), mtime: st.ModTime()})
	return real, nil
}

func (r *rootfs) addData(p string, mode int64, data string) error {
	q, err := r.inDir(p)
	if err != nil {
		return err
	}
	r.add(&entry{name: q, typ: tar.TypeReg, mode: mode, data: []byte(data), size: int64(len(data))})
	return nil
}

func (r *rootfs) addSymlink(p, target string) error {
	q, err := r.inDir(p)
	if err != nil {
		return err
	}
	r.add(&entry{name: q, typ: tar.TypeSymlink, mode: 0o777, link: target})
	return nil
}

func (r *rootfs) addDir(p string, mode int64) error {
	q, err := r.resolve(p, 0)
	if err != nil {
		return err
	}
	if e, ok := r.byName[q]; ok {
		if e.typ == tar.TypeDir {
			e.mode = mode
		}
		return nil
	}
	r.add(&entry{name: q, typ: tar.TypeDir, mode: mode})
	return nil
}

func (r *rootfs) hash() string {
	h := sha256.New()
	fmt.Fprintln(h, layoutVersion)
	es := append([]*entry(nil), r.entries...)
	sort.Slice(es, func(i, j int) bool { return es[i].name < es[j].name })
	for _, e := range es {
		fmt.Fprintf(h, "%s %c %o %s %d %d\n", e.name, e.typ, e.mode, e.link, e.size, e.mtime.UnixNano())
		h.Write(e.data)
	}
	return hex.EncodeToString(h.Sum(nil))[:16]
}

func (r *rootfs) writeTar(w io.Writer) error {
	tw := tar.NewWriter(w)
	for _, e := range r.entries {
		hdr := &tar.Header{Name: strings.TrimPrefix(e.name, "/"), Typeflag: e.typ, Mode: e.mode,
			ModTime: time.Unix(0, 0), Format: tar.FormatPAX}
		if !e.mtime.IsZero() {
			hdr.ModTime = e.mtime
		}
		switch e.typ {
		case tar.TypeDir:
			hdr.Name += "/"
			if err := tw.WriteHeader(hdr); err != nil {
				return err
			}
		case tar.TypeSymlink:
			hdr.Linkname = e.link
			if err := tw.WriteHeader(hdr); err != nil {
				return err
			}
		case tar.TypeReg:
			if e.host == "" {
				hdr.Size = int64(len(e.data))
				if err := tw.WriteHeader(hdr); err != nil {
					return err
				}
				if _, err := tw.Write(e.data); err != nil {
					return err
				}
				continue
			}
			f, err := os.Open(e.host)
			if err != nil {
				return err
			}
			hdr.Size = e.size
			if err := tw.WriteHeader(hdr); err != nil {
				f.Close()
				return err
			}
			_, err = io.CopyN(tw, f, e.size)
			f.Close()
			if err != nil {
				return fmt.Errorf("copying %s: %w", e.host, err)
			}
		}
	}
	return tw.Close()
}

// findHost finds a host binary in PATH or the usual sbin directories.
func findHost(name string) (string, error) {
	if p, err := exec.LookPath(name); err == nil {
		return filepath.Abs(p)
	}
	for _, d := range []string{"/usr/local/sbin", "/usr/local/bin", "/usr/sbin", "/usr/bin", "/sbin", "/bin"} {
		p := filepath.Join(d, name)
		if fi, err := os.Stat(p); err == nil && fi.Mode().IsRegular() && fi.Mode()&0o111 != 0 {
			return p, nil
		}
	}
	return "", fmt.Errorf("%s not found on this host", name)
}

func planRootfs(withDocker bool) (*rootfs, error) {
	r := newRootfs()
	bb, err := findHost("busybox")
	if err != nil {
		return nil, fmt.Errorf("harness: %w (apt-get install -y busybox-static)", err)
	}
	if err := checkStatic(bb); err != nil {
		return nil, fmt.Errorf("harness: busybox: %w (apt-get install -y busybox-static)", err)
	}

	var elfs []string // host binaries whose shared libraries must come along
	if withDocker {
		required := []string{"dockerd", "containerd", "containerd-shim-runc-v2", "runc", "docker", "xtables-nft-multi", "ip"}
		// dig, wg and iperf3 (when the host has them) let tests query a node's
		// resolver and drive a plain WireGuard peer from inside a node.
		optional := []string{"docker-init", "docker-proxy", "dig", "wg", "iperf3"}
		for i, name := range append(required, optional...) {
			p, err := findHost(name)
			if err != nil {
				if i >= len(required) {
					continue
				}
				return nil, fmt.Errorf("harness: WithDocker: %w", err)
			}
			real, err := r.addHostFile(p)
			if err != nil {
				return nil, err
			}
			elfs = append(elfs, real)
			if name == "xtables-nft-multi" {
				for _, l := range []string{"iptables", "iptables-save", "iptables-restore",
					"ip6tables", "ip6tables-save", "ip6tables-restore"} {
					if err := r.addSymlink(filepath.Join(filepath.Dir(real), l), "xtables-nft-multi"); err != nil {
						return nil, err
					}
				}
			}
		}
		// iptables extensions (dlopen()ed, so ldd of the binary misses them).
		var exts []string
		for _, g := range []string{"/usr/lib/*/xtables/*.so", "/usr/lib/xtables/*.so", "/usr/lib64/xtables/*.so", "/lib/*/xtables/*.so"} {
			m, _ := filepath.Glob(g)
			exts = append(exts, m...)
		}
		if len(exts) == 0 {
			return nil, errors.New("harness: WithDocker: no iptables extensions (xtables/*.so) found on this host")
		}
		for _, p := range exts {
			real, err := r.addHostFile(p)
			if err != nil {
				return nil, err
			}
			elfs = append(elfs, real)
		}
		libs, err := lddLibs(elfs)
		if err != nil {
			return nil, err
		}
		// the dynamic loader, under every name it may be asked for
		for _, g := range []string{"/lib64/ld-linux*.so*", "/lib/*/ld-linux*.so*", "/lib/ld-linux*.so*"} {
			m, _ := filepath.Glob(g)
			libs = append(libs, m...)
		}
		for _, l := range libs {
			if _, err := r.addHostFile(l); err != nil {
				return nil, err
			}
		}
	}

	// busybox and its applets (real binaries added above win)
	bbReal, err := r.inDir("/bin/busybox")
	if err != nil {
		return nil, err
	}
	st, err := os.Stat(bb)
	if err != nil {
		return nil, err
	}
	r.add(&entry{name: bbReal, typ: tar.TypeReg, mode: 0o755, host: bb, size: st.Size(), mtime: st.ModTime()})
	out, err := exec.Command(bb, "--list-full").Output()
	if err != nil {
		return nil, fmt.Errorf("harness: %s --list-full: %w", bb, err)
	}
	for _, a := range strings.Fields(string(out)) {
		if strings.HasSuffix(a, "/busybox") {
			continue
		}
		if err := r.addSymlink("/"+a, "/bin/busybox"); err != nil {
			return nil, err
		}
	}

	for _, d := range []string{"/var/lib/kontena", "/var/log", "/run", "/etc", "/usr/local/bin", "/usr/local/sbin", "/proc", "/sys", "/dev", "/home"} {
		if err := r.addDir(d, 0o755); err != nil {
			return nil, err
		}
	}
	if err := r.addDir("/root", 0o700); err != nil {
		return nil, err
	}
	if err := r.addDir("/tmp", 0o1777); err != nil {
		return nil, err
	}
	if withDocker {
		if err := r.addDir("/var/lib/docker", 0o711); err != nil {
			return nil, err
		}
	}
	if _, ok := r.byName["/var/run"]; !ok {
		if err := r.addSymlink("/var/run", "../run"); err != nil {
			return nil, err
		}
	}
	files := []struct {
		path string
		mode int64
		data string
	}{
		{"/etc/passwd", 0o644, "root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/nonexistent:/bin/false\n"},
		{"/etc/group", 0o644, "root:x:0:\ndocker:x:999:\nnogroup:x:65534:\n"},
		{"/etc/nsswitch.conf", 0o644, "hosts: files dns\n"},
		{"/etc/os-release", 0o644, "NAME=\"kontena-it-node\"\nID=kontena-it-node\n"},
		{initPath, 0o755, initScript},
	}
	for _, f := range files {
		if err := r.addData(f.path, f.mode, f.data); err != nil {
			return nil, err
		}
	}
	return r, nil
}

// lddLibs lists the shared libraries (as ldd prints their paths) needed by
// the given dynamically linked ELF files.
func lddLibs(files []string) ([]string, error) {
	var dyn []string
	for _, f := range files {
		if checkStatic(f) != nil {
			dyn = append(dyn, f)
		}
	}
	if len(dyn) == 0 {
		return nil, nil
	}
	cmd := exec.Command("ldd", dyn...)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil && len(out) == 0 {
		return nil, fmt.Errorf("harness: ldd: %v: %s", err, stderr.String())
	}
	seen := map[string]bool{}
	var libs []string
	for _, line := range strings.Split(string(out), "\n") {
		line = strings.TrimSpace(line)
		if strings.Contains(line, "=> not found") {
			return nil, fmt.Errorf("harness: ldd: missing library: %s", line)
		}
		var p string
		if _, after, ok := strings.Cut(line, "=> "); ok {
			p = after
		} else if strings.HasPrefix(line, "/") && strings.Contains(line, " (0x") {
			p = line
		} else {
			continue
		}
		p, _, _ = strings.Cut(p, " (")
		if strings.HasPrefix(p, "/") && !seen[p] {
			seen[p] = true
			libs = append(libs, p)
		}
	}
	return libs, nil
}
