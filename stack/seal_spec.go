package stack

import (
	"encoding/json"
	"fmt"
	"regexp"
	"strings"
)

// keepSecretInVault gives a variable the file marks `secret: true` (and
// that names no vault entry itself) the vault as its home: it is read from
// stack/<stack>/<name> first and written back there, so an upgrade reuses
// it and it is never stored with the stack.
func (v *Variable) keepSecretInVault(stackName string) {
	if !v.Secret || v.VaultBacked() || stackName == "" {
		return
	}
	name := "stack/" + stackName + "/" + v.Name
	v.From = append([]Resolver{{Name: "vault", Hint: name}}, v.From...)
	v.To = append(v.To, Setter{Name: "vault", Target: name})
}

// minSensitiveLen is the shortest sensitive value looked for in a rendered
// spec: a one-letter value would be "found" everywhere.
const minSensitiveLen = 4

// envSecretName is a vault name for an environment entry.
var envSecretName = regexp.MustCompile(`^[A-Za-z0-9._-]{1,64}$`)

// SealSpec keeps sensitive values (from the vault, or marked secret) out of
// what is stored with r and its children: their variables' values are
// dropped, and an environment entry that holds one becomes a vault secret
// of its own (stack/<stack>/<service>/<NAME>, returned to be written
// before the install) injected as the same variable. A sensitive value
// anywhere else in a service (command, labels, hooks...) is an error: it
// would be stored in the clear.
func (r *Result) SealSpec() ([]VaultWrite, error) {
	var writes []VaultWrite
	var err error
	r.Walk(func(x *Result) {
		if err != nil || x.Stack == nil {
			return
		}
		var w []VaultWrite
		w, err = sealStack(x.Stack)
		writes = append(writes, w...)
	})
	return writes, err
}

func sealStack(st *Stack) ([]VaultWrite, error) {
	var values []string
	var names []string
	for _, v := range st.Variables {
		if !v.Sensitive() || v.Value == nil {
			continue
		}
		if s := textOf(v.Value); len(s) >= minSensitiveLen {
			values, names = append(values, s), append(names, v.Name)
		}
	}
	StripSensitive(st)
	var writes []VaultWrite
	for _, svc := range st.Services {
		kept := svc.Environment[:0:0]
		for _, e := range svc.Environment {
			i := indexAny(e.Value, values)
			if i < 0 {
				kept = append(kept, e)
				continue
			}
			if !envSecretName.MatchString(e.Name) {
				return nil, fmt.Errorf("service %s: environment %s holds the value of secret variable %s, and %q cannot name a vault secret: inject it with secrets: instead", svc.Name, e.Name, names[i], e.Name)
			}
			secret := "stack/" + st.Name + "/" + svc.Name + "/" + e.Name
			writes = append(writes, VaultWrite{Variable: names[i], Secret: secret, Value: e.Value})
			svc.Secrets = append(svc.Secrets, Secret{Secret: secret, Name: e.Name, Type: "env"})
		}
		svc.Environment = kept
		data, err := json.Marshal(svc)
		if err != nil {
			return nil, err
		}
		if i := indexAny(string(data), jsonQuoted(values)); i >= 0 {
			return nil, fmt.Errorf("service %s: the value of secret variable %s is used outside environment (command, labels, hooks...): it would be stored in the clear; pass it as an environment variable or with secrets:", svc.Name, names[i])
		}
	}
	return writes, nil
}

// StripSensitive drops the values of a stack's sensitive variables: the
// server applies it too, so none is stored whatever a client sends.
func StripSensitive(st *Stack) {
	for i, v := range st.Variables {
		if v.Sensitive() && v.Value != nil {
			c := *v
			c.Value = nil
			st.Variables[i] = &c
		}
	}
}

func indexAny(s string, subs []string) int {
	for i, sub := range subs {
		if strings.Contains(s, sub) {
			return i
		}
	}
	return -1
}

// jsonQuoted are values as they appear inside JSON strings.
func jsonQuoted(values []string) []string {
	out := make([]string, len(values))
	for i, v := range values {
		b, _ := json.Marshal(v)
		out[i] = strings.Trim(string(b), `"`)
	}
	return out
}
