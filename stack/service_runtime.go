package stack

import (
	"fmt"
	"math"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"

	"gopkg.in/yaml.v3"
)

var intervalRe = regexp.MustCompile(`^(\d+)(min|h|d|)$`)

func decodeDeploy(d *decoder, n *yaml.Node, path string, dr *draft) {
	if isNull(n) {
		return
	}
	dep := Deploy{}
	d.mapping(n, path, "a mapping {strategy, wait_for_port, min_health, interval}", func(key string, kn, vn *yaml.Node) {
		kpath := path + "." + key
		switch key {
		case "strategy":
			s, _ := d.str(vn, kpath)
			if s != "ha" && s != "daemon" && s != "random" {
				d.expected(vn, kpath, "ha, daemon or random")
				return
			}
			dep.Strategy = s
		case "wait_for_port":
			dep.WaitForPort, _ = d.integer(vn, kpath, 1, 65535, "a port number")
		case "min_health":
			if f, ok := d.float(vn, kpath, 0, 1, "a number between 0.0 and 1.0"); ok {
				dep.MinHealth = f
				dr.has["deploy.min_health"] = true
			}
		case "interval":
			s, ok := scalarText(vn)
			if !ok {
				d.expected(vn, kpath, `an interval like "7d", "1h" or "30min"`)
				return
			}
			if m := intervalRe.FindStringSubmatch(s); m != nil {
				v, err := strconv.ParseInt(m[1], 10, 64)
				unit := map[string]time.Duration{"min": time.Minute, "h": time.Hour, "d": 24 * time.Hour, "": time.Second}[m[2]]
				if err == nil && v <= int64(math.MaxInt64/unit) {
					dep.Interval = Duration(time.Duration(v) * unit)
					return
				}
			}
			if dd, err := time.ParseDuration(s); err == nil && dd > 0 {
				dep.Interval = Duration(dd)
				return
			}
			d.expected(vn, kpath, `an interval like "7d", "1h" or "30min"`)
		default:
			d.errorf(kn, kpath, "%s", unknownKeyMsg("deploy key", key, []string{"strategy", "wait_for_port", "min_health", "interval"}))
		}
	})
	dr.svc.Deploy = dep
}

func decodeHealthCheck(d *decoder, n *yaml.Node, path string, dr *draft) {
	if isNull(n) {
		return
	}
	hc := &HealthCheck{Timeout: 10, Interval: 60, InitialDelay: 10}
	hasProto, hasPort := false, false
	keys := []string{"protocol", "port", "uri", "timeout", "interval", "initial_delay"}
	ok := d.mapping(n, path, "a mapping {protocol, port, uri, timeout, interval, initial_delay}", func(key string, kn, vn *yaml.Node) {
		kpath := path + "." + key
		switch key {
		case "protocol":
			s, _ := d.str(vn, kpath)
			if s != "http" && s != "tcp" {
				d.expected(vn, kpath, "http or tcp")
				return
			}
			hc.Protocol, hasProto = s, true
		case "port":
			hc.Port, hasPort = d.integer(vn, kpath, 1, 65535, "a port number")
		case "uri":
			s, _ := d.str(vn, kpath)
			if !strings.HasPrefix(s, "/") || strings.ContainsAny(s, " \t\n") {
				d.expected(vn, kpath, `a path starting with "/"`)
				return
			}
			hc.URI = s
		case "timeout":
			hc.Timeout, _ = d.integer(vn, kpath, 1, 86400, "seconds (1 or more)")
		case "interval":
			hc.Interval, _ = d.integer(vn, kpath, 1, 86400, "seconds (1 or more)")
		case "initial_delay":
			hc.InitialDelay, _ = d.integer(vn, kpath, 0, 86400, "seconds")
		default:
			d.errorf(kn, kpath, "%s", unknownKeyMsg("health_check key", key, keys))
		}
	})
	if !ok {
		return
	}
	if !hasProto {
		d.expectedFound(n, path+".protocol", "http or tcp", "nothing")
	}
	if !hasPort {
		d.expectedFound(n, path+".port", "a port number", "nothing")
	}
	if hc.Protocol == "http" && hc.URI == "" {
		hc.URI = "/"
	}
	dr.svc.HealthCheck = hc
}

func decodeHooks(d *decoder, n *yaml.Node, path string, dr *draft) {
	if isNull(n) {
		return
	}
	h := &Hooks{}
	d.mapping(n, path, "a mapping {pre_build, pre_start, post_start, pre_stop}", func(key string, kn, vn *yaml.Node) {
		kpath := path + "." + key
		switch key {
		case "pre_build":
			h.PreBuild = d.hookList(vn, kpath, false)
		case "pre_start":
			h.PreStart = d.hookList(vn, kpath, true)
		case "post_start":
			h.PostStart = d.hookList(vn, kpath, true)
		case "pre_stop":
			h.PreStop = d.hookList(vn, kpath, true)
		default:
			d.errorf(kn, kpath, "%s", unknownKeyMsg("hook", key, []string{"pre_build", "pre_start", "post_start", "pre_stop"}))
		}
	})
	dr.svc.Hooks = h
}

var hookInstancesRe = regexp.MustCompile(`^(\*|\d+(,\d+)*)$`)

func (d *decoder) hookList(n *yaml.Node, path string, perInstance bool) []Hook {
	if isNull(n) {
		return nil
	}
	if n.Kind != yaml.SequenceNode {
		d.expected(n, path, "a list of hooks {name, cmd, ...}")
		return nil
	}
	keys := []string{"name", "cmd"}
	if perInstance {
		keys = append(keys, "instances", "oneshot")
	}
	var out []Hook
	for i, c := range n.Content {
		ipath := fmt.Sprintf("%s[%d]", path, i)
		h := Hook{}
		if !d.mapping(c, ipath, "a hook {name, cmd"+map[bool]string{true: ", instances, oneshot}", false: "}"}[perInstance], func(key string, kn, vn *yaml.Node) {
			kpath := ipath + "." + key
			switch {
			case key == "name":
				h.Name, _ = d.nonEmpty(vn, kpath, "a hook name")
			case key == "cmd":
				h.Cmd, _ = d.nonEmpty(vn, kpath, "a command")
			case key == "instances" && perInstance:
				s, ok := scalarText(vn)
				if !ok || !hookInstancesRe.MatchString(strings.ReplaceAll(s, " ", "")) {
					d.expected(vn, kpath, `"*" or instance numbers like 1 or "1,2"`)
					return
				}
				h.Instances = strings.ReplaceAll(s, " ", "")
			case key == "oneshot" && perInstance:
				h.Oneshot, _ = d.boolean(vn, kpath)
			default:
				d.errorf(kn, kpath, "%s", unknownKeyMsg("hook key", key, keys))
			}
		}) {
			continue
		}
		if mapKeyNode(c, "name") == nil {
			d.expectedFound(c, ipath+".name", "a hook name", "nothing")
		}
		if mapKeyNode(c, "cmd") == nil {
			d.expectedFound(c, ipath+".cmd", "a command", "nothing")
		}
		if perInstance && h.Instances == "" {
			h.Instances = "*"
		}
		out = append(out, h)
	}
	return out
}

func decodeSecrets(d *decoder, n *yaml.Node, path string, dr *draft) {
	for _, e := range d.injections(n, path, "secret") {
		dr.svc.Secrets = append(dr.svc.Secrets, Secret{Secret: e[0], Name: e[1], Type: e[2]})
	}
}

func decodeCertificates(d *decoder, n *yaml.Node, path string, dr *draft) {
	for _, e := range d.injections(n, path, "subject") {
		dr.svc.Certificates = append(dr.svc.Certificates, Certificate{Subject: e[0], Name: e[1], Type: e[2]})
	}
}

// IsSecretFileName tells whether name may be a secret's file under
// /run/secrets: one path element, so no secret lands outside the directory.
func IsSecretFileName(name string) bool {
	return secretFileRe.MatchString(name) && name != "." && name != ".."
}

var secretFileRe = regexp.MustCompile(`^[A-Za-z0-9._-]{1,128}$`)

// injections reads secrets/certificates: [{<first>, name, type: env}].
func (d *decoder) injections(n *yaml.Node, path, first string) [][3]string {
	if isNull(n) {
		return nil
	}
	types := []string{"env"}
	if first == "secret" {
		// type file (as Swarm does): the value is a file under
		// /run/secrets on a tmpfs, never on the node's disk.
		types = append(types, "file")
	}
	form := fmt.Sprintf("{%s, name, type: %s}", first, strings.Join(types, "|"))
	if n.Kind != yaml.SequenceNode {
		d.expected(n, path, "a list of "+form)
		return nil
	}
	var out [][3]string
	for i, c := range n.Content {
		ipath := fmt.Sprintf("%s[%d]", path, i)
		e := [3]string{"", "", "env"}
		var nameNode *yaml.Node
		if !d.mapping(c, ipath, form, func(key string, kn, vn *yaml.Node) {
			kpath := ipath + "." + key
			switch key {
			case first:
				e[0], _ = d.nonEmpty(vn, kpath, "a "+first)
			case "name":
				if s, ok := d.nonEmpty(vn, kpath, "an environment variable or file name"); ok {
					e[1], nameNode = s, vn
				}
			case "type":
				if s, _ := d.str(vn, kpath); slices.Contains(types, s) {
					e[2] = s
				} else {
					d.expected(vn, kpath, strings.Join(types, " or "))
				}
			default:
				d.errorf(kn, kpath, "%s", unknownKeyMsg("key", key, []string{first, "name", "type"}))
			}
		}) {
			continue
		}
		switch {
		case mapKeyNode(c, first) == nil:
			d.expectedFound(c, ipath+"."+first, "a "+first, "nothing")
		case mapKeyNode(c, "name") == nil:
			d.expectedFound(c, ipath+".name", "an environment variable name", "nothing")
		case nameNode == nil:
		case e[2] == "file" && !IsSecretFileName(e[1]):
			d.expected(nameNode, ipath+".name", "a file name under /run/secrets (letters, digits, . _ -; no /)")
			continue
		case e[2] == "env" && !envNameRe.MatchString(e[1]):
			d.expected(nameNode, ipath+".name", "an environment variable name")
			continue
		}
		out = append(out, e)
	}
	return out
}

var byteSizeRe = regexp.MustCompile(`(?i)^\s*(\d+(?:\.\d+)?)\s*([kmgt]?)b?\s*$`)

// byteSize reads 512m, 1g, 1.5GB or a plain number of bytes.
func (d *decoder) byteSize(n *yaml.Node, path string) int64 {
	if isNull(n) {
		return 0
	}
	s, _ := scalarText(n)
	m := byteSizeRe.FindStringSubmatch(s)
	if m == nil {
		d.expected(n, path, `a size like "512m", "1g" or a number of bytes`)
		return 0
	}
	f, err := strconv.ParseFloat(m[1], 64)
	mult := map[string]float64{"": 1, "k": 1 << 10, "m": 1 << 20, "g": 1 << 30, "t": 1 << 40}[strings.ToLower(m[2])]
	if err != nil || f*mult > math.MaxInt64/2 {
		d.expected(n, path, "a smaller size")
		return 0
	}
	return int64(f * mult)
}

func decodeLogging(d *decoder, n *yaml.Node, path string, dr *draft) {
	if isNull(n) {
		return
	}
	lg := &Logging{}
	d.mapping(n, path, "a mapping {driver, options}", func(key string, kn, vn *yaml.Node) {
		kpath := path + "." + key
		switch key {
		case "driver":
			lg.Driver, _ = d.str(vn, kpath)
		case "options":
			lg.Options, _ = d.strMap(vn, kpath)
		default:
			d.errorf(kn, kpath, "%s", unknownKeyMsg("logging key", key, []string{"driver", "options"}))
		}
	})
	dr.svc.Logging = lg
}

var signalRe = regexp.MustCompile(`^(SIG)?[A-Z][A-Z0-9+-]*$|^\d+$`)

func decodeStopSignal(d *decoder, n *yaml.Node, path string, dr *draft) {
	s, ok := d.str(n, path)
	if !ok {
		return
	}
	if !signalRe.MatchString(s) {
		d.expected(n, path, "a signal like SIGTERM, SIGINT or 15")
		return
	}
	dr.svc.StopSignal = s
}

func decodeStopGracePeriod(d *decoder, n *yaml.Node, path string, dr *draft) {
	if isNull(n) {
		delete(dr.has, "stop_grace_period")
		return
	}
	s, _ := scalarText(n)
	if n.ShortTag() == "!!int" {
		if secs, err := strconv.ParseInt(s, 10, 64); err == nil && secs >= 0 && secs < 1<<31 {
			dr.svc.StopGracePeriod = Duration(time.Duration(secs) * time.Second)
			return
		}
	}
	if dd, err := time.ParseDuration(strings.TrimSpace(s)); err == nil && dd >= 0 {
		dr.svc.StopGracePeriod = Duration(dd)
		return
	}
	d.expected(n, path, `a duration like "10s", "1m30s" or a number of seconds`)
	delete(dr.has, "stop_grace_period")
}

func decodeExtends(d *decoder, n *yaml.Node, path string, dr *draft) {
	if isNull(n) {
		return
	}
	ref := &extendsRef{at: posRef{d, n}}
	if s, ok := scalarText(n); ok {
		ref.service = s
		dr.extends = ref
		return
	}
	d.mapping(n, path, "a service name or {service, file} / {service, stack}", func(key string, kn, vn *yaml.Node) {
		kpath := path + "." + key
		switch key {
		case "service":
			ref.service, _ = d.nonEmpty(vn, kpath, "a service name")
		case "file":
			ref.file, _ = d.nonEmpty(vn, kpath, "a file name")
		case "stack":
			ref.stack, _ = d.nonEmpty(vn, kpath, "a stack like user/name:version")
		default:
			d.errorf(kn, kpath, "%s", unknownKeyMsg("extends key", key, []string{"service", "file", "stack"}))
		}
	})
	if ref.service == "" && mapKeyNode(n, "service") == nil {
		d.expectedFound(n, path+".service", "the name of the service to extend", "nothing")
		return
	}
	if ref.file != "" && ref.stack != "" {
		d.errorf(n, path, "give either file or stack, not both")
		return
	}
	if ref.service != "" {
		dr.extends = ref
	}
}
