package fsm

import (
	"time"

	memdb "github.com/hashicorp/go-memdb"
)

// The vault tables; no command writes them yet.
const (
	TableSecrets      = "secrets"
	TableCertificates = "certificates"
)

func secretTables() []*memdb.TableSchema {
	return []*memdb.TableSchema{
		{Name: TableSecrets, Indexes: map[string]*memdb.IndexSchema{"id": idIndex("Name")}},
		{Name: TableCertificates, Indexes: map[string]*memdb.IndexSchema{"id": idIndex("Subject")}},
	}
}

// Secret is a vault entry, sealed with the grid master key.
type Secret struct {
	Name        string    `json:"name"`
	Sealed      []byte    `json:"sealed"`
	CreatedAt   time.Time `json:"created_at"`
	UpdatedAt   time.Time `json:"updated_at"`
	ModifyIndex uint64    `json:"modify_index"`
}

// Certificate is a TLS certificate for services; its key is sealed.
type Certificate struct {
	Subject   string    `json:"subject"`
	AltNames  []string  `json:"alt_names,omitempty"`
	CertPEM   string    `json:"cert_pem"`
	KeySealed []byte    `json:"key_sealed"`
	ExpiresAt time.Time `json:"expires_at"`
}
